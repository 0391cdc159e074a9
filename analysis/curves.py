"""Test accuracy against trainable parameters and against hidden width, one line per mode.

    python -m analysis.curves results/fmnist-widths-relu [results/fmnist-widths-linear ...] [--out DIR]
        [--metric final_test_accuracy|best_test_accuracy] [--hidden-layers 1] [--interval auto|t|bootstrap]

The paper's main figure (SCIENCE.md, claims C1 and C2): for every dataset, one panel per
activation, one line per learning mode (and per eigenvalue set when several were run), the mean
over seeds with a shaded 95 % band (a t-interval up to 10 seeds, the percentile bootstrap above;
the figure and the table say which). Completed trials only. Trials of one cell that differ in a
setting (`analysis.cells`: learning rate, epochs, initialisation, data, results folder…) are
split into separate lines, whose label names the setting: "spectral-eigvals [lr=0.01]". Writes,
under --out (default <first RESULTS_DIR>/analysis):

    curves_<dataset>_params.png   accuracy vs trainable parameters (log x), every depth
    curves_<dataset>_width.png    accuracy vs first hidden width (log x), --hidden-layers deep only
    curves.md                     mode x widths tables, "mean [low, high] (n)"
    curves.csv                    the same summary, tidy: the figures can be redrawn from it
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import _report, cells
from analysis.stats import AnalysisError, load, require_columns, summarize

BY = ["dataset", "activation", "variant", "mode", "n_hidden_layers", "widths", "width"]
CELL = ["dataset", "activation", "variant", "widths"]  # the rest of BY derives from these
HINT = ("run a width study, e.g. studies/fmnist-widths-relu.yaml (`spectral-study run "
        "studies/fmnist-widths-relu.yaml`), to produce the trials table")


def cell_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed trials, labelled with their variant; unlike trials of one cell split apart."""
    return cells.split_mixed(cells.label_variants(cells.completed(trials)), CELL)


def summarize_curves(trials: pd.DataFrame, *, metric: str = "final_test_accuracy", method: str = "auto",
                     reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per dataset, activation, variant and architecture: trainable parameters (median
    over the cell's trials; exact counts agree) and ``metric``'s n, mean and interval."""
    done = cell_trials(trials)
    summary = summarize(done, BY, metric, method=method, reps=reps, seed=seed)
    params = (done.groupby(BY, dropna=False)["trainable_params"].median()
              .rename("trainable_params").reset_index())
    summary = summary.merge(params, on=BY, how="left")
    summary.insert(len(BY), "trainable_params", summary.pop("trainable_params").round().astype("Int64"))
    return summary.assign(metric=metric)


def tables(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Per dataset and activation: rows = variant, columns = hidden widths, "mean [low, high] (n)"."""
    sections = []
    for (dataset, activation), part in summary.groupby(["dataset", "activation"], sort=True):
        part = part.assign(cell=part.apply(_report.cell, axis=1),
                           column=part["widths"].map(_widths_label))
        order = sorted(part["column"].unique(), key=_widths_key)
        rows = sorted(part["variant"].unique(), key=_report.mode_rank)
        table = part.pivot(index="variant", columns="column", values="cell").reindex(index=rows, columns=order)
        table.index.name = "mode \\ hidden widths"
        params = part.pivot(index="variant", columns="column", values="trainable_params").reindex(
            index=rows, columns=order)
        params.index.name = "mode \\ hidden widths"
        sections.append((f"{dataset}, {activation}: {summary['metric'].iloc[0]}", table.fillna("–")))
        sections.append((f"{dataset}, {activation}: trainable parameters", params.astype("string").fillna("–")))
    return sections


def plot(summary: pd.DataFrame, dataset: str, *, x: str, hidden_layers: int | None = None):
    """One figure: a panel per activation, a line per variant (and depth), mean with CI band.

    ``x``: ``"trainable_params"`` (every depth) or ``"width"`` (``hidden_layers`` deep only)."""
    plt = _report.pyplot()
    data = summary[summary["dataset"] == dataset]
    if x == "width":
        data = data[(data["n_hidden_layers"] == hidden_layers) & (data["width"] > 0)]
    data = data[np.isfinite(data["mean"].astype(float))]
    if data.empty:
        return None
    activations = sorted(data["activation"].unique())
    fig, axes = plt.subplots(1, len(activations), figsize=(6.0 * len(activations), 4.6),
                             sharey=True, squeeze=False)
    several_depths = data["n_hidden_layers"].nunique() > 1
    styles = {d: s for d, s in zip(sorted(data["n_hidden_layers"].unique()), ["-", "--", ":", "-."] * 4)}
    for ax, activation in zip(axes[0], activations):
        panel = data[data["activation"] == activation]
        lines = sorted(panel.groupby(["variant", "n_hidden_layers"]).groups,
                       key=lambda k: (_report.mode_rank(k[0]), k[1]))
        for index, (variant, depth) in enumerate(lines):
            line = panel[(panel["variant"] == variant) & (panel["n_hidden_layers"] == depth)].sort_values(x)
            mode = line["mode"].iloc[0]
            color = _report.mode_color(mode, index)
            label = f"{variant}, {depth} hidden" if several_depths else variant
            xs = line[x].astype(float).to_numpy()
            ax.plot(xs, line["mean"], marker="o", ms=4, color=color, linestyle=styles[depth], label=label)
            ax.fill_between(xs, line["ci_low"].astype(float), line["ci_high"].astype(float),
                            color=color, alpha=0.18, linewidth=0)
        ax.set_xscale("log")
        if x == "width":
            ticks = sorted(panel["width"].astype(int).unique())
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("hidden width N2 (first hidden layer, log scale)" if hidden_layers != 1
                          else "hidden width N2 (log scale)")
        else:
            ax.set_xlabel("trainable parameters (log scale)")
        ax.set_title(f"activation: {activation}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0][0].set_ylabel(str(summary["metric"].iloc[0]).replace("_", " "))
    what = "trainable parameters" if x == "trainable_params" else "hidden width"
    depth_note = "" if x != "width" else f", {hidden_layers} hidden layer{'s' if hidden_layers != 1 else ''}"
    n_low, n_high = int(data["n"].min()), int(data["n"].max())
    seeds = f"n = {n_low}" if n_low == n_high else f"n = {n_low}–{n_high}"
    fig.suptitle(f"{dataset}: test accuracy vs {what}{depth_note}\n"
                 f"mean over seeds, {_report.band_note(data['interval'])} ({seeds} per point)", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--metric", default="final_test_accuracy",
                            choices=["final_test_accuracy", "best_test_accuracy"])
        parser.add_argument("--hidden-layers", type=int, default=1,
                            help="depth of the networks on the width plot (default 1)")

    args = _report.parse_args(argv, __doc__.splitlines()[0], extra)

    def body() -> list[Path]:
        trials = load(args.results)["trials"]
        require_columns(trials, ["dataset", "mode", "widths", "width", "n_hidden_layers", "activation",
                                 "eigenvalues", "status", args.metric, "trainable_params"],
                        "trials", HINT, where=_report.where(args.results))
        if cells.completed(trials).empty:
            raise AnalysisError(f"{_report.where(args.results)}: no completed trial in the trials table "
                                f"(statuses: {trials['status'].value_counts().to_dict()}); {HINT}")
        summary = summarize_curves(trials, metric=args.metric, method=args.interval, reps=args.reps,
                                   seed=args.seed)
        out = args.out
        written = [_report.write_csv(out / "curves.csv", summary)]
        intro = (f"Results: {_report.where(args.results)}. {_report.STATUS_NOTE}. Cells: mean "
                 f"[{_report.interval_note(summary['interval'], reps=args.reps, seed=args.seed)}] "
                 f"(n trials). A label's [setting=value] separates trials that differ in that setting.")
        written.append(_report.write_markdown(out / "curves.md", "Accuracy vs width and parameters",
                                              intro, tables(summary)))
        for dataset in sorted(summary["dataset"].unique()):
            for x, name in (("trainable_params", "params"), ("width", "width")):
                fig = plot(summary, dataset, x=x, hidden_layers=args.hidden_layers)
                if fig is None:
                    print(f"note: {dataset}: no {args.hidden_layers}-hidden-layer networks, "
                          f"no width plot", file=sys.stderr)
                    continue
                written.append(_report.save_figure(fig, out / f"curves_{_report.slug(dataset)}_{name}.png"))
        return written

    return _report.run(body)


def _widths_label(widths) -> str:
    return "none" if widths is None or pd.isna(widths) or str(widths) in ("", "none") else str(widths)


def _widths_key(label: str) -> tuple:
    if label == "none":
        return (0,)
    return (len(label.split("-")), *[int(p) for p in label.split("-")])


if __name__ == "__main__":
    sys.exit(main())
