"""`spectral-study status`: where a study stands, from its Parquet results and, while a driver
runs it, the progress file that driver rewrites every few seconds (`spectral_study.progress`)."""
from __future__ import annotations

import os
import time

from spectral_study.progress import STALE_SECONDS, driver_alive, format_line, format_seconds, read_progress
from spectral_study.results import load_table

STATUS_ORDER = ("completed", "stopped", "diverged", "failed")


def study_status(path: str | os.PathLike, *, now: float | None = None) -> str:
    """A few lines: trials per status (of the planned total), the best trial so far, and, while
    the study runs, its running trials and their epochs (or that its driver stopped)."""
    root = os.fspath(path)
    trials = load_table(root, "trials")
    planned = _planned_trials(root)
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    done = sum(counts.values())
    lines = [f"{root}: {done} of {planned if planned is not None else '?'} trials finished"]
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
    lines += _live(root, now=time.time() if now is None else now)
    return "\n".join(lines)


def _live(root: str, *, now: float) -> list[str]:
    """What the progress file says about a run in progress (nothing once the run has ended)."""
    progress = read_progress(root)
    if not progress or progress.get("state") != "running":
        return []
    age = now - float(progress.get("updated_at", 0))
    if not driver_alive(progress, now=now):
        why = (f"last written {format_seconds(age)} ago" if age > STALE_SECONDS
               else f"its process {progress.get('pid')} is gone")
        return [f"stale: the driver (pid {progress.get('pid')} on {progress.get('host')}) is not running: "
                f"progress {why}; `spectral-study resume {root}` continues the study"]
    lines = [f"running (progress {format_seconds(age)} ago): {format_line(progress)}"]
    for trial in progress.get("running", []):
        lines.append(f"  {trial['trial_id']} {trial['label']}: epoch {trial['epoch']}/{trial['epochs']}")
    return lines


def _planned_trials(path) -> int | None:
    """The total from the study saved beside the results (None when it is not there)."""
    from spectral_study.study import load_resolved_study

    try:
        return load_resolved_study(path).trial_count()
    except FileNotFoundError:
        return None
