"""The driver-side Tune callback: Parquet fragments as trials end, one progress line each.

It runs in the driver process, so results are written once per trial by one writer, whatever
node the trial ran on. It is pickled with the experiment (Tune restores it on resume), so it
keeps only plain data and opens the writer lazily.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import ray
from ray import tune

from spectral_study.results import ResultsWriter
from spectral_study.vocabulary import EPOCH_METRICS

# Keys of a reported result that are metrics of the trial's epoch (the rest is Tune's own).
_EPOCH_KEYS = ("epoch", *EPOCH_METRICS)


def trial_config(config: dict) -> dict:
    """A Tune trial's `TrialConfig` dict: a grid nests it under "trial"; Optuna's define-by-run
    hands over its suggested parameters and returned constants side by side."""
    return dict(config.get("trial", config))


class StudyCallback(tune.Callback):
    def __init__(self, *, study: str, results: str, total: int, epochs: int, metric: str) -> None:
        self.study, self.results, self.total, self.epochs, self.metric = study, results, total, epochs, metric
        self._reset()

    def _reset(self) -> None:
        self._epochs: dict[str, dict[int, dict]] = defaultdict(dict)
        self._summary: dict[str, dict] = {}
        self._facts: dict[str, dict] = defaultdict(dict)
        self._attempts: dict[str, int] = defaultdict(lambda: 1)
        self._finished = 0
        self._writer = None

    def __getstate__(self) -> dict:
        # What is in flight when Tune pickles us belongs to this driver session only.
        return {k: getattr(self, k) for k in ("study", "results", "total", "epochs", "metric")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def writer(self) -> ResultsWriter:
        if self._writer is None:
            self._writer = ResultsWriter(self.results)
        return self._writer

    # ---------------------------------------------------------------- Tune's hooks

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        tid = trial.trial_id
        if "epoch" in result:
            self._epochs[tid][int(result["epoch"])] = {k: result[k] for k in _EPOCH_KEYS if k in result}
        for key in ("node_id", "gpu_ids"):
            if key in result:
                self._facts[tid][key] = result[key]
        if "summary_json" in result:
            self._summary[tid] = json.loads(result["summary_json"])

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._attempts[trial.trial_id] += 1
        self._line(trial, f"retrying (attempt {self._attempts[trial.trial_id]}): {_error(trial)}",
                   count=False)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        tid = trial.trial_id
        summary = self._summary.pop(tid, None)
        # No summary: the trial was stopped before its last epoch (ASHA, a stopper).
        status = None if summary is not None else "stopped"
        history = summary["history"] if summary is not None else self._history(tid)  # before _write clears it
        self._write(trial, summary, status=status)
        if summary is not None:
            self._line(trial, f"{summary['status']:<9} {self.metric} {_metric(history, self.metric)}"
                              f"  {summary['wall_seconds']:.1f} s")
        else:
            self._line(trial, f"stopped   after epoch {len(history)} {self.metric} {_metric(history, self.metric)}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = _error(trial)
        self._write(trial, None, status="failed", error=error)
        self._line(trial, f"failed    {error}")

    # ---------------------------------------------------------------- helpers

    def _history(self, tid: str) -> list[dict]:
        return [self._epochs[tid][e] for e in sorted(self._epochs[tid])]

    def _write(self, trial, summary: dict | None, *, status: str | None, error: str | None = None) -> None:
        tid = trial.trial_id
        extra = {"attempt": self._attempts[tid], "ray_version": ray.__version__, **self._facts.pop(tid, {})}
        if summary is None:
            extra["config"] = trial_config(trial.config)
        # The summary's history includes epochs run before a retry or a resume.
        epochs = None if summary is not None else self._history(tid)
        self.writer.write_trial(tid, self.study, summary, status=status, error=error, epochs=epochs,
                                extra=extra)
        self._epochs.pop(tid, None)

    def _line(self, trial, text: str, *, count: bool = True) -> None:
        if count:
            self._finished += 1
        config = trial_config(trial.config)
        label = config.get("cell") or trial.trial_id
        print(f"[{self._finished:>{len(str(self.total))}}/{self.total}] {trial.trial_id} {label}: {text}",
              flush=True, file=sys.stdout)


def _metric(history: list[dict], metric: str) -> str:
    values = [h[metric] for h in history if metric in h]
    return f"{values[-1]:.4f}" if values else "n/a"


def _error(trial) -> str:
    """The trial's error, one line (the full traceback stays in Tune's error file)."""
    text = ""
    error_file = getattr(trial, "error_file", None)
    if error_file:
        try:
            with open(error_file) as handle:
                text = handle.read()
        except OSError:
            text = ""
    text = text or str(getattr(trial, "error_msg", "") or "unknown error")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "unknown error"
