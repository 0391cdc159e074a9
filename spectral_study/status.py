"""`spectral-study status`: where a study stands, from its Parquet results alone."""
from __future__ import annotations

import os

from spectral_study.results import load_table

STATUS_ORDER = ("completed", "stopped", "diverged", "failed")


def study_status(path: str | os.PathLike) -> str:
    """A few lines: trials per status (of the planned total), and the best trial so far."""
    trials = load_table(path, "trials")
    planned = _planned_trials(path)
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    done = sum(counts.values())
    lines = [f"{os.fspath(path)}: {done} of {planned if planned is not None else '?'} trials finished"]
    lines += [f"  {status:<10} {counts.get(status, 0)}" for status in STATUS_ORDER]
    scored = trials.dropna(subset=["best_test_accuracy"]) if len(trials) else trials
    if len(scored):
        best = scored.loc[scored["best_test_accuracy"].idxmax()]
        lines.append(f"best so far: {best['trial_id']} {best['cell'] or best['mode']} "
                     f"best test accuracy {best['best_test_accuracy']:.4f} "
                     f"({int(best['trainable_params'])} trainable parameters)")
    failed = trials[trials["status"] == "failed"] if len(trials) else trials
    for _, row in failed.head(5).iterrows():
        lines.append(f"failed: {row['trial_id']} {row['cell']}: {row['error']}")
    return "\n".join(lines)


def _planned_trials(path) -> int | None:
    """The total from the study saved beside the results (None when it is not there)."""
    from spectral_study.study import load_resolved_study

    try:
        return load_resolved_study(path).trial_count()
    except FileNotFoundError:
        return None
