"""Test accuracy against the fraction of hidden nodes removed, one line per protocol and method.

    python -m analysis.pruning results/fmnist-pruning-tanh [more results dirs] [--out DIR] [--no-unpruned]
        [--epoch N]

Spectral pruning (SCIENCE.md §2): for every dataset, activation and architecture a panel; in it
one line per trained mode, pruning protocol (direct, spectral-post, spectral-pre,
spectral-eigvals-post) and ranking method (eigenvalue, eigen-norm, connectivity, random): the mean
over completed trials (a trial is one seed) with a shaded 95 % band (a t-interval up to 10
trials, the percentile bootstrap above; the figure and table say which). A trial that prunes at
several epochs (pruning.at_epochs; `analysis.pruning_epochs` draws those) counts here with the
rows of its last epoch, the end of training, unless --epoch picks another; rows without an
epoch (results written before the column existed) are from the end of training. At 0 % each
line starts from its trials' unpruned test accuracy at that epoch (--no-unpruned leaves it out),
except spectral-pre, which retrains every pruned network (its unpruned network is never tested).
Trials of one panel and line that differ in a setting (`analysis.cells`: initialisation,
learning rate, epochs, results folder…) are split into separate lines, whose label names it.
Writes under --out (default <first RESULTS_DIR>/analysis):

    pruning.png       the panels
    pruning.md        line x fraction tables, "mean [low, high] (n)"
    pruning.csv       the same summary, tidy: the figure can be redrawn from it
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import _report, cells
from analysis.stats import KEYS, AnalysisError, load, require_columns, summarize
from spectral_study.vocabulary import PRUNING_PROTOCOLS

PRUNING_STUDY = "studies/fmnist-pruning-tanh.yaml"
HINT = f"run {PRUNING_STUDY} (pruning: section) to produce the pruning table"
PANEL = ["dataset", "activation", "widths"]
LINE = ["variant", "mode", "protocol", "method"]
CELL = PANEL + ["variant"]
_TRIAL_COLUMNS = ["dataset", "activation", "widths", "mode", "eigenvalues", "status", "epochs_completed",
                  "final_test_accuracy"]
_ROW_COLUMNS = ["protocol", "method", "fraction", "nodes_kept", "test_accuracy"]
# Protocols that retrain the pruned network: their 0 % point would be a network they never test
# (the trained one, not retrained), so it gets no unpruned anchor.
RETRAINING_PROTOCOLS = frozenset({"spectral-pre"})


def labelled_rows(tables: dict[str, pd.DataFrame], where: str) -> pd.DataFrame:
    """The pruning rows of completed trials, with their trial's config, ``variant`` (unlike trials
    split apart, `analysis.cells.split_mixed`) and ``epoch``: the epoch the network was pruned
    at; a row without one (results older than the column) is from the end of training, the
    trial's ``epochs_completed``."""
    trials, rows = tables["trials"], tables["pruning"]
    require_columns(trials, _TRIAL_COLUMNS, "trials", HINT, where=where)
    require_columns(rows, _ROW_COLUMNS, "pruning", HINT, where=where)
    done = cells.split_mixed(cells.label_variants(cells.completed(trials)), CELL)
    rows = rows if "epoch" in rows.columns else rows.assign(epoch=pd.NA)
    data = rows[KEYS + ["epoch"] + _ROW_COLUMNS].merge(done, on=KEYS, how="inner")
    if data.empty:
        raise AnalysisError(f"{where}: no pruning row belongs to a completed trial of the trials table; {HINT}")
    epoch = pd.to_numeric(data["epoch"], errors="coerce").fillna(data["epochs_completed"])
    return data.assign(epoch=epoch.astype("int64"))


def pruning_rows(tables: dict[str, pd.DataFrame], where: str, *, unpruned: bool = True,
                 epoch: int | None = None) -> pd.DataFrame:
    """`labelled_rows` at one epoch per trial: its last (``epoch`` None) or ``epoch``; with
    ``unpruned``, one more row per trial and line at fraction 0: the trial's unpruned test
    accuracy at that epoch (its final one, or the epochs table's; not for protocols that
    retrain, `RETRAINING_PROTOCOLS`)."""
    data = labelled_rows(tables, where)
    if epoch is None:
        data = data[data["epoch"] == data.groupby(KEYS)["epoch"].transform("max")]
    else:
        available = sorted(data["epoch"].unique())
        data = data[data["epoch"] == epoch]
        if data.empty:
            raise AnalysisError(f"{where}: no pruning row at epoch {epoch}; epochs pruned at: "
                                f"{', '.join(map(str, available))}")
    if unpruned:
        lines = data[KEYS + PANEL + LINE + ["status", "epoch"]].drop_duplicates(KEYS + LINE)
        lines = lines[~lines["protocol"].isin(RETRAINING_PROTOCOLS)]
        lines = lines.merge(unpruned_accuracy(tables, data[KEYS + ["epoch"]].drop_duplicates()),
                            on=KEYS + ["epoch"], how="left")
        zero = lines.assign(fraction=0.0, nodes_kept=pd.NA)
        has_zero = data.loc[data["fraction"] == 0, KEYS + LINE].drop_duplicates()
        zero = zero.merge(has_zero, on=KEYS + LINE, how="left", indicator=True)
        zero = zero[zero.pop("_merge") == "left_only"]
        data = pd.concat([data, zero[data.columns.intersection(zero.columns)]], ignore_index=True)
    return data.assign(line=_line_label(data))


def unpruned_accuracy(tables: dict[str, pd.DataFrame], at: pd.DataFrame) -> pd.DataFrame:
    """``test_accuracy`` of each trial (``KEYS``) unpruned at ``epoch``: its final test accuracy at
    the end of training, else the epochs table's (NaN when that table lacks the epoch)."""
    trials = tables["trials"][KEYS + ["epochs_completed", "final_test_accuracy"]]
    out = at.merge(trials, on=KEYS, how="left")
    epochs = tables.get("epochs")
    if epochs is not None and {"epoch", "test_accuracy"} <= set(epochs.columns) and len(epochs):
        logged = epochs[KEYS + ["epoch", "test_accuracy"]].astype({"epoch": "int64"})
        out = out.merge(logged.rename(columns={"test_accuracy": "logged"}), on=KEYS + ["epoch"], how="left")
    else:
        out = out.assign(logged=np.nan)
    final = out["epoch"] == out["epochs_completed"]
    accuracy = out["final_test_accuracy"].astype(float).where(final, out["logged"].astype(float))
    return out[KEYS + ["epoch"]].assign(test_accuracy=accuracy.to_numpy())


def summarize_pruning(data: pd.DataFrame, *, method: str = "auto", reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per panel, line and fraction: n trials, mean test accuracy and its interval, and
    the hidden nodes kept (median over the trials)."""
    by = PANEL + LINE + ["line", "fraction"]
    summary = summarize(data, by, "test_accuracy", method=method, reps=reps, seed=seed)
    kept = data.groupby(by, dropna=False)["nodes_kept"].median().rename("nodes_kept").reset_index()
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
    fig.suptitle(f"Test accuracy after pruning hidden nodes{_epoch_note(summary)}\n"
                 f"mean over seeds, {_report.band_note(data['interval'])}; at 0 %: the unpruned network "
                 f"(not for spectral-pre)", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--no-unpruned", dest="unpruned", action="store_false",
                            help="do not add the unpruned accuracy at 0 %% removed")
        parser.add_argument("--epoch", type=int, default=None,
                            help="use the rows of networks pruned at this training epoch (default: each "
                                 "trial's last, the end of training)")

    args = _report.parse_args(argv, __doc__.splitlines()[0], extra)

    def body() -> list[Path]:
        where = _report.where(args.results)
        data = pruning_rows(load(args.results), where, unpruned=args.unpruned, epoch=args.epoch)
        summary = summarize_pruning(data, method=args.interval, reps=args.reps, seed=args.seed)
        summary = summary.merge(data.groupby(PANEL + LINE, dropna=False)["epoch"].agg(_epochs).rename("epoch")
                                .reset_index(), on=PANEL + LINE, how="left")
        out = args.out
        written = [_report.write_csv(out / "pruning.csv", summary)]
        when = (f"networks pruned at epoch {args.epoch}" if args.epoch is not None
                else "networks pruned at the end of training (each trial's last pruning epoch)")
        anchor = ("0 %: the trial's unpruned test accuracy at that epoch (none for spectral-pre, which "
                  "retrains every pruned network). " if args.unpruned else "")
        intro = (f"Results: {where}. {_report.STATUS_NOTE}; {when}. Lines: trained mode: pruning "
                 f"protocol / node ranking method; [setting=value] separates trials that differ in "
                 f"that setting. {anchor}Cells: test accuracy, mean "
                 f"[{_report.interval_note(summary['interval'], reps=args.reps, seed=args.seed)}] (n trials).")
        written.append(_report.write_markdown(out / "pruning.md", "Accuracy after pruning", intro, tables(summary)))
        written.append(_report.save_figure(plot(summary), out / "pruning.png"))
        return written

    return _report.run(body)


def _line_label(data: pd.DataFrame) -> pd.Series:
    return (data["variant"].astype("string") + ": " + data["protocol"].astype("string") + " / "
            + data["method"].astype("string"))


def _epochs(values: pd.Series) -> str:
    """The epochs a line's networks were pruned at: "20", or "5–20" when trials differ."""
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}–{high}"


def _epoch_note(summary: pd.DataFrame) -> str:
    if "epoch" not in summary.columns:
        return ""
    epochs = sorted(set(summary["epoch"].dropna().astype(str)))
    return f" (pruned at epoch {', '.join(epochs)})" if epochs else ""


def _line_order(part: pd.DataFrame) -> list[str]:
    lines = part[LINE + ["line"]].drop_duplicates()
    rank = {p: i for i, p in enumerate(PRUNING_PROTOCOLS)}
    key = lines.apply(lambda r: (rank.get(r["protocol"], len(rank)), _report.mode_rank(r["variant"]), r["method"]),
                      axis=1)
    return list(lines.assign(key=key).sort_values("key")["line"])


def _panel_title(panel) -> str:
    dataset, activation, widths = panel
    architecture = "no hidden layer" if widths in ("", None) else f"hidden {widths}"
    return f"{dataset}, {activation}, {architecture}"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g} %"


if __name__ == "__main__":
    sys.exit(main())
