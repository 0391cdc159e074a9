"""Learning rates per mode from a tuning study: each mode's best trials and their lr, lr_eigvals.

    python -m analysis.lr_tuning results/fmnist-lr-tuning [--out DIR] [--top 3]

Ranks completed trials only (a stopped, diverged or failed trial has no final accuracy to rank),
and counts every trial: the winners table has one count column per status, so what was left out
is in plain sight. Trials that differ in a setting other than the learning rates (optimiser,
epochs, results folder…; `analysis.cells`) are split into separate variants, each with its own
winners. Writes lr_tuning.md (status counts and winners, then the top trials of each variant),
lr_tuning.csv (every completed trial, ranked: the scatter's points) and a scatter of accuracy
against each learning rate, one colour per mode (lr_tuning.png). One trial per point: no
interval, and the ranking of close values is noisy.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from analysis import _report, cells
from analysis.stats import load, require_columns
from spectral_study.vocabulary import STATUSES

HINT = "run a tuning study, e.g. `spectral-study run studies/fmnist-lr-tuning.yaml`"
GROUP = ["dataset", "activation", "widths", "mode"]
CELL = ["dataset", "activation", "widths", "variant"]
COLUMNS = ["trial_id", "variant", "mode", "dataset", "widths", "activation", "epochs", "lr", "lr_eigvals",
           "final_test_accuracy"]


def ranked(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed trials, best first within each variant (learning rates are what varies)."""
    done = cells.split_mixed(cells.label_variants(cells.completed(trials)), CELL, exempt=cells.PER_MODE)
    done = done.assign(_rank=done["variant"].map(_report.mode_rank))
    return (done.sort_values(["_rank", "final_test_accuracy"], ascending=[True, False])
            [COLUMNS].reset_index(drop=True))


def status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials per dataset, activation, widths and mode, one column per status (all trials)."""
    counts = trials.groupby(GROUP, dropna=False)["status"].value_counts().unstack(fill_value=0)
    columns = list(STATUSES) + sorted(set(counts.columns) - set(STATUSES))
    return counts.reindex(columns=columns, fill_value=0).astype("int64").reset_index()


def plot(table: pd.DataFrame):
    """The scatter of ``table`` (`ranked`: completed trials), one point per trial."""
    plt = _report.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for k, variant in enumerate(sorted(table["variant"].unique(), key=_report.mode_rank)):
        part = table[table["variant"] == variant]
        for ax, column in zip(axes, ("lr", "lr_eigvals")):
            if part[column].notna().any():
                ax.scatter(part[column], part["final_test_accuracy"], s=22, label=f"{variant} ({len(part)})",
                           color=_report.mode_color(part["mode"].iloc[0], k))
    for ax, column, what in zip(axes, ("lr", "lr_eigvals"), ("weights, eigenvectors, biases", "eigenvalues")):
        ax.set_xscale("log")
        ax.set_xlabel(f"{column} ({what}, log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final test accuracy")
    axes[0].legend(fontsize=8, title="mode (completed trials)", title_fontsize=8)
    fig.suptitle(f"learning-rate tuning: one point per completed trial ({len(table)})")
    return fig


def main(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--top", type=int, default=3, help="trials listed per mode (default 3)")

    args = _report.parse_args(argv, __doc__.splitlines()[0], extra)

    def body() -> list[Path]:
        where = _report.where(args.results)
        trials = load(args.results)["trials"]
        require_columns(trials, [c for c in COLUMNS if c != "variant"] + ["status", "eigenvalues"], "trials",
                        HINT, where=where)
        table = ranked(trials)
        counts = status_counts(trials)
        winners = table.groupby("variant", sort=False).head(1).merge(counts, on=GROUP, how="left")
        winners = winners.set_index("variant").drop(columns=["mode"])
        top = table.groupby("variant", sort=False).head(args.top).set_index("variant").drop(columns=["mode"])

        def readable(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.assign(**{c: frame[c].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
                                   for c in ("lr", "lr_eigvals")})

        overall = ", ".join(f"{n} {status}" for status, n in trials["status"].value_counts(dropna=False).items())
        intro = (f"Results: {where}. {len(trials)} trials ({overall}). Completed trials, ranked by "
                 f"final test accuracy; the status columns count every trial of the winner's mode, "
                 f"dataset, activation and widths. One trial per point (a single seed: the ranking "
                 f"of close values is noisy).")
        sections = [("Winners", readable(winners)), (f"Top {args.top} per mode", readable(top)),
                    ("Trials per status", counts.set_index("mode"))]
        out = args.out
        return [_report.write_csv(out / "lr_tuning.csv", table),
                _report.write_markdown(out / "lr_tuning.md", "Learning rates per mode", intro, sections),
                _report.save_figure(plot(table), out / "lr_tuning.png")]

    return _report.run(body)


if __name__ == "__main__":
    sys.exit(main())
