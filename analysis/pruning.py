"""Test accuracy against the fraction of hidden nodes removed, one line per protocol and method.

    python analysis/pruning.py results/fmnist-pruning-tanh [more results dirs] [--out DIR] [--no-unpruned]

Spectral pruning (SCIENCE.md §2): for every dataset, activation and architecture a panel; in it
one line per trained mode, pruning protocol (direct, spectral-post, spectral-pre,
spectral-eigvals-post) and ranking method (eigenvalue, eigen-norm, connectivity, random): the mean
over trials (a trial is one seed) with a shaded 95 % percentile-bootstrap band. At 0 % each line
starts from its trials' unpruned test accuracy (final_test_accuracy; --no-unpruned leaves it out),
except spectral-pre, which retrains every pruned network (its unpruned network is never tested).
Writes under --out (default <first RESULTS_DIR>/analysis):

    pruning.png       the panels
    pruning.md        line x fraction tables, "mean [low, high] (n)"
    pruning.csv       the same summary, tidy: the figure can be redrawn from it
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python analysis/pruning.py`: import from the repository root
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np
import pandas as pd

from analysis import _report
from analysis.stats import KEYS, AnalysisError, load, require_columns, summarize

PRUNING_STUDY = "studies/fmnist-pruning-tanh.yaml"
HINT = f"run {PRUNING_STUDY} (pruning: section) to produce the pruning table"
PANEL = ["dataset", "activation", "widths"]
LINE = ["mode", "protocol", "method"]
_TRIAL_COLUMNS = ["dataset", "activation", "widths", "mode", "status", "final_test_accuracy"]
_PROTOCOL_ORDER = ("direct", "spectral-post", "spectral-eigvals-post", "spectral-pre")
# Protocols that retrain the pruned network: their 0 % point would be a network they never test
# (the trained one, not retrained), so it gets no unpruned anchor.
RETRAINING_PROTOCOLS = frozenset({"spectral-pre"})


def pruning_rows(tables: dict[str, pd.DataFrame], where: str, *, unpruned: bool = True) -> pd.DataFrame:
    """The pruning rows labelled with their trial's config and status; with ``unpruned``, one
    more row per trial and (protocol, method) at fraction 0: the trial's final test accuracy
    (not for protocols that retrain, `RETRAINING_PROTOCOLS`)."""
    trials, rows = tables["trials"], tables["pruning"]
    require_columns(trials, _TRIAL_COLUMNS, "trials", HINT, where=where)
    require_columns(rows, ["protocol", "method", "fraction", "nodes_kept", "test_accuracy"], "pruning",
                    HINT, where=where)
    data = rows.merge(trials[KEYS + _TRIAL_COLUMNS], on=KEYS, how="inner")
    if data.empty:
        raise AnalysisError(f"{where}: no pruning row belongs to a trial of the trials table; {HINT}")
    if unpruned:
        lines = data[KEYS + PANEL + LINE + ["status", "final_test_accuracy"]].drop_duplicates(KEYS + LINE)
        lines = lines[~lines["protocol"].isin(RETRAINING_PROTOCOLS)]
        zero = lines.assign(fraction=0.0, nodes_kept=pd.NA, test_accuracy=lines["final_test_accuracy"])
        has_zero = data.loc[data["fraction"] == 0, KEYS + LINE].drop_duplicates()
        zero = zero.merge(has_zero, on=KEYS + LINE, how="left", indicator=True)
        zero = zero[zero.pop("_merge") == "left_only"]
        data = pd.concat([data, zero[data.columns.intersection(zero.columns)]], ignore_index=True)
    return data.assign(line=_line_label(data))


def summarize_pruning(data: pd.DataFrame, *, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per panel, line and fraction: n trials, mean test accuracy and its bootstrap CI,
    and the hidden nodes kept (median over the trials)."""
    by = PANEL + LINE + ["line", "fraction"]
    summary = summarize(data, by, "test_accuracy", reps=reps, seed=seed)
    done = data[data["status"] == "completed"]
    kept = done.groupby(by, dropna=False)["nodes_kept"].median().rename("nodes_kept").reset_index()
    summary = summary.merge(kept, on=by, how="left")
    summary.insert(len(by), "nodes_kept", summary.pop("nodes_kept").round().astype("Int64"))
    return summary


def tables(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    sections = []
    for panel, part in summary.groupby(PANEL, sort=True):
        part = part.assign(cell=part.apply(_report.cell, axis=1), column=part["fraction"].map(_percent))
        columns = [_percent(f) for f in sorted(part["fraction"].unique())]
        rows = _line_order(part)
        table = part.pivot(index="line", columns="column", values="cell").reindex(index=rows, columns=columns)
        table.index.name = "mode: protocol / method \\ nodes removed"
        sections.append((_panel_title(panel), table.fillna("–")))
    return sections


def plot(summary: pd.DataFrame):
    plt = _report.pyplot()
    data = summary[np.isfinite(summary["mean"].astype(float))]
    panels = sorted(data.groupby(PANEL).groups)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 4.8 * nrows), squeeze=False)
    lines_all = _line_order(data)
    colors = {line: plt.get_cmap("tab10")(i % 10) for i, line in enumerate(lines_all)}
    markers = dict(zip(lines_all, "osD^vP*Xh<>" * 3))
    for ax, panel in zip(axes.flat, panels):
        part = data[(data[PANEL] == pd.Series(panel, index=PANEL)).all(axis=1)]
        for line in _line_order(part):
            curve = part[part["line"] == line].sort_values("fraction")
            xs = 100 * curve["fraction"].astype(float).to_numpy()
            ax.plot(xs, curve["mean"], marker=markers[line], ms=4, color=colors[line], label=line)
            ax.fill_between(xs, curve["ci_low"].astype(float), curve["ci_high"].astype(float),
                            color=colors[line], alpha=0.18, linewidth=0)
        ax.set_xlim(-2, 100)
        ax.set_xlabel("hidden nodes removed (%)")
        ax.set_ylabel("test accuracy")
        n_low, n_high = int(part["n"].min()), int(part["n"].max())
        seeds = f"n = {n_low}" if n_low == n_high else f"n = {n_low}–{n_high}"
        ax.set_title(f"{_panel_title(panel)} ({seeds} seeds)", fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    # One legend for every panel (a line keeps its colour and marker throughout), under them.
    handles = [plt.Line2D([], [], color=colors[line], marker=markers[line], ms=5, label=line) for line in lines_all]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), max(2, ncols)),
               fontsize=8.5, frameon=False)
    fig.suptitle("Test accuracy after pruning hidden nodes\n"
                 "mean over seeds, shaded 95 % bootstrap CI; at 0 %: the unpruned network (not for spectral-pre)", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--no-unpruned", dest="unpruned", action="store_false",
                            help="do not add the unpruned accuracy at 0 %% removed")

    args = _report.parse_args(argv, __doc__.splitlines()[0], extra)

    def body() -> list[Path]:
        where = _report.where(args.results)
        data = pruning_rows(load(args.results), where, unpruned=args.unpruned)
        if not (data["status"] == "completed").any():
            raise AnalysisError(f"{where}: no completed trial has pruning rows; {HINT}")
        summary = summarize_pruning(data, reps=args.reps, seed=args.seed)
        out = args.out
        written = [_report.write_csv(out / "pruning.csv", summary)]
        intro = (f"Results: {where}. {_report.STATUS_NOTE}. Lines: trained mode: pruning protocol / "
                 f"node ranking method. " + ("0 %: the trial's unpruned final test accuracy (none for spectral-pre, which "
                                              "retrains every pruned network). " if args.unpruned else "")
                 + f"Cells: test accuracy, mean [95 % percentile-bootstrap CI, {args.reps} resamples, "
                 f"seed {args.seed}] (n trials).")
        written.append(_report.write_markdown(out / "pruning.md", "Accuracy after pruning", intro, tables(summary)))
        written.append(_report.save_figure(plot(summary), out / "pruning.png"))
        return written

    return _report.run(body)


def _line_label(data: pd.DataFrame) -> pd.Series:
    return data["mode"].astype("string") + ": " + data["protocol"].astype("string") + " / " + data["method"].astype("string")


def _line_order(part: pd.DataFrame) -> list[str]:
    lines = part[LINE + ["line"]].drop_duplicates()
    rank = {p: i for i, p in enumerate(_PROTOCOL_ORDER)}
    key = lines.apply(lambda r: (rank.get(r["protocol"], len(rank)), _report.mode_rank(r["mode"]), r["method"]), axis=1)
    return list(lines.assign(key=key).sort_values("key")["line"])


def _panel_title(panel) -> str:
    dataset, activation, widths = panel
    architecture = "no hidden layer" if widths in ("", None) else f"hidden {widths}"
    return f"{dataset}, {activation}, {architecture}"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g} %"


if __name__ == "__main__":
    sys.exit(main())
