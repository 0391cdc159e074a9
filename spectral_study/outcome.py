"""What a finished study says: trial statuses, a table of its results, where they are.

    outcome = read_outcome("results/quickstart", seconds=55.0)
    print(format_outcome(outcome, spec))
    sys.exit(outcome.exit_code)      # 0: every trial is a result; 1: some trial failed;
                                     # 130: stopped (Ctrl-C) before every trial ran (2: bad input, cli)

A grid study ends with the final test accuracy per mode and architecture (mean over seeds of
its completed trials); a search ends with its best trials and their hyperparameters, and the
best trial per mode — never a mean over trials of different learning rates and budgets.
Ray-free: pandas and the results reader only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from spectral_study.results import join_uri, load_table
from spectral_study.vocabulary import STATUSES

TOP_TRIALS = 5
# The hyperparameters a search may vary, shown beside each of its best trials.
SEARCH_PARAMS = ("mode", "widths", "activation", "eigenvalues", "optimizer", "batch_size", "lr", "lr_eigvals")


@dataclass(frozen=True)
class StudyOutcome:
    results: str                                   # where the Parquet tables are
    statuses: dict = field(default_factory=dict)   # status -> number of trials
    seconds: float = 0.0
    failed: tuple = ()                             # (trial_id, cell, error) of each failed trial
    expected: int | None = None                    # trials the study runs in all (None: not known)
    trials: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    epochs: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def finished(self) -> int:
        return sum(self.statuses.values())

    @property
    def interrupted(self) -> bool:
        """Fewer trials finished than the study runs: Ray Tune ended early (Ctrl-C, SIGTERM)."""
        return self.expected is not None and self.finished < self.expected

    @property
    def exit_code(self) -> int:
        """0 when every trial completed, was stopped by the scheduler or diverged (those are
        results); 1 when any trial failed (or none finished at all); 130 (as for Ctrl-C) when
        the run ended before every trial had run, so that a script does not take a study cut
        short for a finished one."""
        if self.failed or not self.statuses:
            return 1
        return 130 if self.interrupted else 0


def read_outcome(root: str, *, seconds: float = 0.0, with_epochs: bool = False,
                 expected: int | None = None) -> StudyOutcome:
    """The outcome of the study whose results are at ``root`` (``with_epochs``: also its
    per-epoch metrics, which a search's summary ranks by; ``expected``: how many trials the
    study runs in all)."""
    trials = load_table(root, "trials")
    statuses = trials["status"].value_counts().to_dict() if len(trials) else {}
    failed = trials[trials["status"] == "failed"] if len(trials) else trials
    return StudyOutcome(results=root, statuses=statuses, seconds=seconds, trials=trials, expected=expected,
                        epochs=load_table(root, "epochs") if with_epochs else None,
                        failed=tuple((r.trial_id, r.cell, r.error) for r in failed.itertuples()))


def format_outcome(outcome: StudyOutcome, spec) -> str:
    """The lines a study prints when it ends."""
    order = {status: i for i, status in enumerate(STATUSES)}
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.statuses.items(),
                                                              key=lambda item: order.get(item[0], 99)))
    lines = [f"done in {outcome.seconds:.0f} s: {counts or 'no trial finished'}"]
    trials = outcome.trials
    if trials is not None and len(trials):
        if spec.search.type == "grid":
            table = grid_table(trials)
            if table:
                lines.append(table)
        else:
            epochs = outcome.epochs if outcome.epochs is not None else load_table(outcome.results, "epochs")
            lines.append(search_table(trials, epochs, spec.search.metric, spec.search.direction))
    for trial_id, cell, error in outcome.failed:
        lines.append(f"failed: {trial_id} {cell}: {error}")
    if outcome.interrupted:
        lines.append(f"stopped early: {outcome.finished} of {outcome.expected} trials finished; "
                     f"`spectral-study resume {outcome.results}` runs the rest")
    lines.append(f"results: {outcome.results}  (spectral_study.results.load_results, "
                 f"or pandas.read_parquet('{join_uri(outcome.results, 'trials')}'))")
    return "\n".join(lines)


def grid_table(trials: pd.DataFrame) -> str:
    """Final test accuracy per mode (rows) and hidden widths (columns), mean over the seeds of
    completed trials; "" when no trial completed."""
    done = trials[trials["status"] == "completed"]
    if not len(done):
        return ""
    table = done.pivot_table(index="mode", columns="widths", values="final_test_accuracy", aggfunc="mean")
    if table.empty:  # completed, yet no accuracy to show: say nothing rather than print an empty frame
        return ""
    table = table[sorted(table.columns, key=_widths_key)]
    table.columns = [f"w={w}" for w in table.columns]
    seeds = done.groupby(["mode", "widths"]).size()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    return (f"final test accuracy (completed trials, mean over {n} seed(s) per cell):\n"
            + table.to_string(float_format="{:.4f}".format))


def search_table(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, direction: str) -> str:
    """A search's best trials by the last value of its metric, with their hyperparameters and
    how far each got (a trial stopped early shows the epoch it reached), then the best per mode."""
    last = epochs.sort_values("epoch").groupby("trial_id")[metric].last().rename("score")
    scored = trials[trials["status"].isin(("completed", "stopped"))].join(last, on="trial_id")
    scored = scored[pd.to_numeric(scored["score"], errors="coerce").notna()]
    if not len(scored):
        return f"no trial reported {metric}"
    scored = scored.sort_values("score", ascending=direction == "min")
    columns = ["trial_id", "status", "epochs_completed", "score"] + [
        p for p in SEARCH_PARAMS if p in scored and scored[p].nunique(dropna=False) > 1]
    best = scored.head(TOP_TRIALS)[columns].rename(columns={"score": metric, "epochs_completed": "epochs"})
    per_mode = scored.drop_duplicates("mode")[columns].rename(
        columns={"score": metric, "epochs_completed": "epochs"}).set_index("mode", drop=False)
    return "\n".join([
        f"best {min(TOP_TRIALS, len(scored))} of {len(scored)} scored trials by {metric} "
        f"(its last reported value; {direction}):",
        best.to_string(index=False, float_format=_format_float),
        "best trial per mode:",
        per_mode.to_string(index=False, float_format=_format_float)])


def summary_to_json(summary: dict) -> str:
    """A trial's summary as one JSON value (Tune passes it through untouched)."""
    return json.dumps(summary, default=str)


def _format_float(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e-2 else f"{value:.4f}"


def _widths_key(widths: str) -> list[int]:
    return [int(w) for w in widths.split("-")] if widths and widths != "none" else []
