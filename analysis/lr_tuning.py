"""Learning rates per mode from a tuning study: each mode's best trials and their lr, lr_eigvals.

    python analysis/lr_tuning.py results/fmnist-lr-tuning [--out DIR] [--top 3]

Writes lr_tuning.md (winners, then the top trials of each mode) and lr_tuning.csv (every trial),
and a scatter of accuracy against each learning rate, one colour per mode (lr_tuning.png).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from analysis import _report  # noqa: E402
from analysis.stats import load, require_columns  # noqa: E402

HINT = "run a tuning study, e.g. `spectral-study run studies/fmnist-lr-tuning.yaml`"
COLUMNS = ["trial_id", "mode", "widths", "activation", "epochs", "lr", "lr_eigvals", "final_test_accuracy"]


def ranked(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed trials, best first within each mode."""
    done = trials[trials["status"] == "completed"]
    return (done.sort_values(["mode", "final_test_accuracy"], ascending=[True, False])
            [COLUMNS].reset_index(drop=True))


def plot(trials: pd.DataFrame):
    plt = _report.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for k, mode in enumerate(sorted(trials["mode"].unique(), key=_report.mode_rank)):
        part = trials[trials["mode"] == mode]
        for ax, column in zip(axes, ("lr", "lr_eigvals")):
            if part[column].notna().any():
                ax.scatter(part[column], part["final_test_accuracy"], s=22, label=mode,
                           color=_report.mode_color(mode, k))
    for ax, column, what in zip(axes, ("lr", "lr_eigvals"), ("weights, eigenvectors, biases", "eigenvalues")):
        ax.set_xscale("log")
        ax.set_xlabel(f"{column} ({what}, log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final test accuracy")
    axes[0].legend(fontsize=8)
    fig.suptitle("learning-rate tuning: one point per trial")
    return fig


def main(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--top", type=int, default=3, help="trials listed per mode (default 3)")

    args = _report.parse_args(argv, __doc__.splitlines()[0], extra)

    def body() -> list[Path]:
        trials = load(args.results)["trials"]
        require_columns(trials, COLUMNS + ["status"], "trials", HINT, where=_report.where(args.results))
        table = ranked(trials)
        winners = table.groupby("mode", sort=False).head(1).set_index("mode")
        top = table.groupby("mode", sort=False).head(args.top).set_index("mode")
        counts = trials.groupby("mode").size().rename("trials")
        def readable(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.assign(**{c: frame[c].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
                                   for c in ("lr", "lr_eigvals")})

        winners, top = readable(winners), readable(top)
        intro = (f"Results: {_report.where(args.results)}. Completed trials, ranked by final test "
                 f"accuracy; one trial per point (a single seed: the ranking of close values is noisy).")
        out = args.out
        return [_report.write_csv(out / "lr_tuning.csv", table),
                _report.write_markdown(out / "lr_tuning.md", "Learning rates per mode", intro,
                                       [("Winners", winners.join(counts)), (f"Top {args.top} per mode", top)]),
                _report.save_figure(plot(trials), out / "lr_tuning.png")]

    return _report.run(body)


if __name__ == "__main__":
    sys.exit(main())
