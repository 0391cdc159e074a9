"""Pruning over training time: accuracy with 50 / 75 / 90 % of the hidden nodes removed against
the epoch the network was pruned at, and each node ranking's gain over a random ranking.

    python -m analysis.pruning_epochs results/fmnist-pruning-epochs [more results dirs] [--out DIR]
        [--fractions 0.5 0.75 0.9]

A trial that prunes at several epochs (``pruning: {at_epochs: [5, 20, 50]}``) records, for each
epoch, protocol, ranking method and fraction, the test accuracy of its pruned network; rows
without an epoch (results older than the column) are from the end of training. Completed trials
only; trials of one panel that differ in a setting (`analysis.cells`: initialisation, learning
rate, epochs, results folder…) are split into separate variants, named in the panel's title.

(a) Accuracy: one panel per dataset, activation, widths, mode (variant) and protocol, one row of
panels per fraction; in each, one line per ranking method (eigenvalue |λ|, eigen-norm,
connectivity, random) against the epoch, mean over trials with a shaded 95 % band (a t-interval
up to 10 trials, the percentile bootstrap above), and the unpruned network at that epoch in
grey. A protocol that prunes at one epoch only (spectral-pre retrains, so it runs at the end of
training alone) is in the tables, not the figure.

(b) Gain over random: for each method other than random, the paired difference method − random
within one trial (same seed, protocol, fraction and epoch), its mean over trials with the same
kind of interval, and wins/n (trials where the method beat random).

Writes under --out (default <first RESULTS_DIR>/analysis):

    pruning_epochs.png    the panels (the chosen fractions)
    pruning_epochs.md     both tables (the chosen fractions), "mean [low, high] (n)"
    pruning_epochs.csv    accuracy per panel, method, fraction and epoch (every fraction; method
                          "unpruned" at fraction 0), tidy: the figure can be redrawn from it
    pruning_gain.csv      the gain over random per panel, method, fraction and epoch
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import _report, pruning
from analysis.stats import KEYS, AnalysisError, format_estimate, interval, load, summarize
from spectral_study.vocabulary import PRUNING_METHODS, PRUNING_PROTOCOLS

HINT = ("run a study that prunes during training (pruning: {at_epochs: [...]}), e.g. "
        f"{pruning.PRUNING_STUDY} with at_epochs added")
PANEL = ["dataset", "activation", "widths", "variant", "mode", "protocol"]
BY = PANEL + ["method", "fraction", "epoch"]
BASELINE = "random"
UNPRUNED = "unpruned"
FRACTIONS = (0.5, 0.75, 0.9)
_METHOD_COLORS = dict(zip(PRUNING_METHODS, ("tab:blue", "tab:purple", "tab:orange", "tab:gray")))


def summarize_epochs(data: pd.DataFrame, tables: dict[str, pd.DataFrame], *, method: str = "auto",
                     reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Test accuracy per panel, method, fraction and epoch (n trials, mean, interval), plus the
    unpruned network of each panel's trials at each epoch (method "unpruned", fraction 0; not
    for protocols that retrain, whose unpruned network is never what they test)."""
    pruned = summarize(data, BY, "test_accuracy", status=None, method=method, reps=reps, seed=seed)
    at = data.loc[~data["protocol"].isin(pruning.RETRAINING_PROTOCOLS), KEYS + PANEL + ["epoch"]].drop_duplicates()
    anchors = at.merge(pruning.unpruned_accuracy(tables, at[KEYS + ["epoch"]].drop_duplicates()),
                       on=KEYS + ["epoch"], how="left")
    anchors = anchors.assign(method=UNPRUNED, fraction=0.0)
    unpruned = summarize(anchors, BY, "test_accuracy", status=None, method=method, reps=reps, seed=seed)
    return pd.concat([pruned, unpruned], ignore_index=True).sort_values(BY).reset_index(drop=True)


def gain_over_random(data: pd.DataFrame, *, method: str = "auto", reps: int = 2000, seed: int = 0,
                     where: str = "results") -> pd.DataFrame:
    """Per panel, method (not random), fraction and epoch: the paired difference method − random
    of one trial's pruned networks, its mean over trials with an interval, wins (trials where the
    method scored higher) and ties. Empty when no trial ranked at random."""
    on = KEYS + PANEL + ["fraction", "epoch"]
    repeated = data[data.duplicated(on + ["method"], keep=False)]
    if len(repeated):
        raise AnalysisError(f"{where}: trial {repeated['trial_id'].iloc[0]} has several pruning rows for one "
                            f"protocol, method, fraction and epoch; cannot pair them with random")
    baseline = data.loc[data["method"] == BASELINE, on + ["test_accuracy"]]
    others = data.loc[data["method"] != BASELINE, on + ["method", "test_accuracy"]]
    pairs = others.merge(baseline, on=on, suffixes=("", "_random"))
    rows = []
    for key, group in pairs.groupby(PANEL + ["method", "fraction", "epoch"], sort=True):
        diff = (group["test_accuracy"] - group["test_accuracy_random"]).to_numpy(dtype=float)
        diff = diff[np.isfinite(diff)]
        if diff.size == 0:
            continue
        estimate = interval(diff, method=method, reps=reps, seed=seed)
        rows.append({**dict(zip(PANEL + ["method", "fraction", "epoch"], key)), "n": int(diff.size),
                     "mean": estimate.point, "ci_low": estimate.low, "ci_high": estimate.high,
                     "interval": estimate.label, "wins": int((diff > 0).sum()), "ties": int((diff == 0).sum())})
    return pd.DataFrame(rows, columns=[*BY, "n", "mean", "ci_low", "ci_high", "interval", "wins", "ties"])


def chosen(frame: pd.DataFrame, fractions) -> pd.DataFrame:
    """The rows at ``fractions`` (compared with a tolerance: fractions are floats)."""
    keep = np.zeros(len(frame), dtype=bool)
    for fraction in fractions:
        keep |= np.isclose(frame["fraction"].astype(float).to_numpy(), fraction)
    return frame[keep]


def accuracy_tables(summary: pd.DataFrame, fractions) -> list[tuple[str, pd.DataFrame]]:
    """Per panel: rows "method @ fraction" (and the unpruned network), columns epochs."""
    sections = []
    shown = pd.concat([chosen(summary, fractions), summary[summary["method"] == UNPRUNED]])
    for panel, part in shown.groupby(PANEL, sort=True):
        part = part.assign(row=_row_label(part), cell=part.apply(_report.cell, axis=1))
        table = part.pivot(index="row", columns="epoch", values="cell")
        table = table.reindex(index=_row_order(part), columns=sorted(part["epoch"].unique()))
        table.index.name = "method @ nodes removed \\ epoch"
        sections.append((f"Accuracy: {_panel_title(panel)}", table.fillna("–")))
    return sections


def gain_tables(gain: pd.DataFrame, fractions) -> list[tuple[str, pd.DataFrame]]:
    """Per panel: rows "method @ fraction", columns epochs; "+0.050 [0.010, 0.090] (3), wins 3/3"."""
    sections = []
    for panel, part in chosen(gain, fractions).groupby(PANEL, sort=True):
        cell = [f"{format_estimate(r.mean, r.ci_low, r.ci_high, r.n)}, wins {r.wins}/{r.n}"
                + (f" ({r.ties} tied)" if r.ties else "") for r in part.itertuples()]
        part = part.assign(row=_row_label(part), cell=cell)
        table = part.pivot(index="row", columns="epoch", values="cell")
        table = table.reindex(index=_row_order(part), columns=sorted(part["epoch"].unique()))
        table.index.name = f"method − {BASELINE} @ nodes removed \\ epoch"
        sections.append((f"Gain over {BASELINE}: {_panel_title(panel)}", table.fillna("–")))
    return sections


def plot(summary: pd.DataFrame, fractions):
    """Rows of panels: one per fraction; columns: one per panel that pruned at several epochs."""
    plt = _report.pyplot()
    data = summary[np.isfinite(summary["mean"].astype(float))]
    epochs_per_panel = data.groupby(PANEL)["epoch"].nunique()
    panels = sorted(epochs_per_panel[epochs_per_panel > 1].index, key=_panel_key)
    fractions = [f for f in fractions if len(chosen(data, [f]))]
    if not panels or not fractions:
        return None
    nrows, ncols = len(fractions), len(panels)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False, sharex="col")
    for col, panel in enumerate(panels):
        part = data[(data[PANEL] == pd.Series(panel, index=PANEL)).all(axis=1)]
        anchor = part[part["method"] == UNPRUNED].sort_values("epoch")
        for row, fraction in enumerate(fractions):
            ax = axes[row][col]
            if len(anchor):
                ax.plot(anchor["epoch"], anchor["mean"], color="black", linestyle=":", linewidth=1.3,
                        label="unpruned")
            mine = chosen(part[part["method"] != UNPRUNED], [fraction])
            for k, method in enumerate(_methods(mine)):
                curve = mine[mine["method"] == method].sort_values("epoch")
                color = _METHOD_COLORS.get(method, f"C{k}")
                ax.plot(curve["epoch"], curve["mean"], marker="o", ms=3.5, color=color, label=method)
                ax.fill_between(curve["epoch"].astype(float), curve["ci_low"].astype(float),
                                curve["ci_high"].astype(float), color=color, alpha=0.18, linewidth=0)
            seeds = _n_range(mine["n"])
            title = f"{_panel_title(panel)}\n" if row == 0 else ""
            ax.set_title(f"{title}{100 * fraction:g} % removed ({seeds})", fontsize=8.5)
            ax.grid(True, alpha=0.3)
            ax.set_xticks(sorted(part["epoch"].unique()))
            if row == nrows - 1:
                ax.set_xlabel("epoch pruned at")
            if col == 0:
                ax.set_ylabel("test accuracy")
    legend = {}
    for ax in axes.flat:
        legend.update({label: h for h, label in zip(*ax.get_legend_handles_labels()) if label not in legend})
    labels = sorted(legend, key=_method_rank)
    fig.legend([legend[label] for label in labels], labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=len(labels), fontsize=8.5, frameon=False)
    fig.suptitle("Test accuracy of pruned networks against the epoch they were pruned at\n"
                 f"mean over trials, {_report.band_note(data['interval'])}; dotted: the unpruned network",
                 fontsize=11)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS),
                            help="fractions of hidden nodes removed to show (default 0.5 0.75 0.9)")

    args = _report.parse_args(argv, __doc__.splitlines()[0], extra)

    def body() -> list[Path]:
        where = _report.where(args.results)
        tables = load(args.results)
        data = pruning.labelled_rows(tables, where)
        available = sorted(data["fraction"].unique())
        if chosen(data, args.fractions).empty:
            raise AnalysisError(f"{where}: no pruning row at the fractions {args.fractions}; fractions "
                                f"pruned: {', '.join(f'{f:g}' for f in available)}")
        missing = [f for f in args.fractions if chosen(data, [f]).empty]
        if missing:
            print(f"note: no pruning row at fraction(s) {', '.join(f'{f:g}' for f in missing)}", file=sys.stderr)
        summary = summarize_epochs(data, tables, method=args.interval, reps=args.reps, seed=args.seed)
        gain = gain_over_random(data, method=args.interval, reps=args.reps, seed=args.seed, where=where)
        out = args.out
        written = [_report.write_csv(out / "pruning_epochs.csv", summary),
                   _report.write_csv(out / "pruning_gain.csv", gain)]
        epochs = ", ".join(map(str, sorted(data["epoch"].unique())))
        intro = (f"Results: {where}. {_report.STATUS_NOTE}. Networks pruned after epochs {epochs}; "
                 f"a panel is a dataset, activation, widths, trained mode and protocol. Accuracy cells: "
                 f"test accuracy, mean [{_report.interval_note(summary['interval'], reps=args.reps, seed=args.seed)}]"
                 f" (n trials); 'unpruned': the network before pruning, at that epoch.")
        sections = accuracy_tables(summary, args.fractions)
        if gain.empty:
            gain_intro = f"No trial ranked nodes at {BASELINE}: no gain over {BASELINE} to report."
        else:
            gain_intro = (f"Gain over {BASELINE}: within each trial (same seed, protocol, fraction and "
                          f"epoch), the method's accuracy minus the {BASELINE} ranking's; mean "
                          f"[{_report.interval_note(gain['interval'], reps=args.reps, seed=args.seed)}] "
                          f"(n trials), and wins: trials where the method scored higher (ties: equal).")
            sections += gain_tables(gain, args.fractions)
        written.append(_report.write_markdown(out / "pruning_epochs.md", "Pruning over training time",
                                              f"{intro}\n\n{gain_intro}", sections))
        fig = plot(summary, args.fractions)
        if fig is None:
            print("note: no panel pruned at more than one epoch: no figure", file=sys.stderr)
        else:
            written.append(_report.save_figure(fig, out / "pruning_epochs.png"))
        return written

    return _report.run(body)


def _n_range(n: pd.Series) -> str:
    if n.empty:
        return "n = 0"
    low, high = int(n.min()), int(n.max())
    return f"n = {low}" if low == high else f"n = {low}–{high}"


def _method_rank(method: str) -> tuple:
    """Sort key: the unpruned network, then `PRUNING_METHODS` in their order, then any other."""
    rank = {m: i for i, m in enumerate(PRUNING_METHODS)}
    return method != UNPRUNED, rank.get(method, len(rank)), method


def _methods(part: pd.DataFrame) -> list[str]:
    return sorted(part["method"].unique(), key=_method_rank)


def _row_label(part: pd.DataFrame) -> pd.Series:
    percent = part["fraction"].map(lambda f: f"{100 * f:g} %")
    return (part["method"].astype(str) + " @ " + percent).where(part["method"] != UNPRUNED, UNPRUNED)


def _row_order(part: pd.DataFrame) -> list[str]:
    rows = part[["method", "fraction"]].drop_duplicates().assign(row=_row_label(part))
    key = rows.apply(lambda r: (r["method"] != UNPRUNED, r["fraction"], _method_rank(r["method"])), axis=1)
    return list(rows.assign(key=key).sort_values("key")["row"])


def _panel_key(panel) -> tuple:
    dataset, activation, widths, variant, mode, protocol = panel
    protocols = {p: i for i, p in enumerate(PRUNING_PROTOCOLS)}
    return dataset, activation, str(widths), protocols.get(protocol, len(protocols)), _report.mode_rank(variant)


def _panel_title(panel) -> str:
    dataset, activation, widths, variant, mode, protocol = panel
    return f"{dataset}, {activation}, hidden {widths}: {variant}, {protocol}"


if __name__ == "__main__":
    sys.exit(main())
