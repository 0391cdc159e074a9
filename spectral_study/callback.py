"""The driver-side Tune callback: Parquet fragments as trials end, live progress, trackers.

It runs in the driver process, so results are written once per trial by one writer, whatever
node the trial ran on. It is pickled with the experiment (Tune restores it on resume), so it
keeps only plain data and opens the writer, the progress display (`spectral_study.progress`)
and the trackers (`spectral_study.tracking`) lazily. Every epoch a trial reports moves the
progress line and the trackers' curves; every trial that ends prints one line and writes its
fragments.
"""
from __future__ import annotations

import json
from collections import defaultdict

import ray
from ray import tune

from spectral_study.config import TrialConfig, TrialConfigError
from spectral_study.progress import Progress, TrialView
from spectral_study.provenance import driver_facts
from spectral_study.results import ResultsWriter
from spectral_study.tracking import Trackers
from spectral_study.vocabulary import EPOCH_METRICS

# Keys of a reported result that are metrics of the trial's epoch (the rest is Tune's own).
_EPOCH_KEYS = ("epoch", *EPOCH_METRICS)
# Tune's trial states as the progress display counts them.
_STATES = {"PENDING": "pending", "PAUSED": "pending", "RUNNING": "running", "TERMINATED": "done",
           "ERROR": "failed"}


def trial_config(config: dict) -> dict:
    """A Tune trial's `TrialConfig` dict: a grid nests it under "trial"; Optuna's define-by-run
    hands over its suggested parameters and returned constants side by side."""
    return dict(config.get("trial", config))


class StudyCallback(tune.Callback):
    # What is pickled with the experiment; `direction` and `tracking` came later (older
    # experiments restore without them).
    _STATE = ("study", "results", "total", "epochs", "metric", "direction", "tracking")

    def __init__(self, *, study: str, results: str, total: int, epochs: int, metric: str,
                 direction: str = "max", tracking: dict | None = None) -> None:
        self.study, self.results, self.total, self.epochs, self.metric = study, results, total, epochs, metric
        self.direction, self.tracking = direction, tracking
        self._reset()

    def _reset(self) -> None:
        self._epochs: dict[str, dict[int, dict]] = defaultdict(dict)
        self._summary: dict[str, dict] = {}
        self._facts: dict[str, dict] = defaultdict(dict)
        self._attempts: dict[str, int] = defaultdict(lambda: 1)
        self._tracked: set[str] = set()
        self._writer = self._progress = self._trackers = self._driver = None

    def __getstate__(self) -> dict:
        # What is in flight when Tune pickles us belongs to this driver session only.
        return {k: getattr(self, k, None) for k in self._STATE}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"direction": "max", "tracking": None, **state})
        self._reset()

    @property
    def writer(self) -> ResultsWriter:
        if self._writer is None:
            self._writer = ResultsWriter(self.results)
        return self._writer

    @property
    def progress(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(study=self.study, total=self.total, epochs=self.epochs, metric=self.metric,
                                      direction=self.direction, root=self.results)
        return self._progress

    @property
    def trackers(self) -> Trackers:
        if self._trackers is None:
            self._trackers = Trackers.from_settings(self.tracking, study=self.study, warn=self.progress.print)
        return self._trackers

    # ---------------------------------------------------------------- Tune's hooks

    def setup(self, **info) -> None:
        self.progress.tick(force=True)  # the first line: the total, before any trial reports

    def on_step_begin(self, iteration, trials, **info) -> None:
        self.progress.observe(_views(trials))

    def on_step_end(self, iteration, trials, **info) -> None:
        self.progress.tick()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        tid = trial.trial_id
        if "epoch" in result:
            metrics = {k: result[k] for k in _EPOCH_KEYS if k in result}
            self._epochs[tid][int(result["epoch"])] = metrics
            label = _label(trial)
            self.progress.epoch(tid, label, int(result["epoch"]))
            self.progress.score(tid, label, result.get(self.metric))
            if self.trackers:
                if tid not in self._tracked:
                    self._tracked.add(tid)
                    self.trackers.start(tid, label, _params(trial))
                self.trackers.log(tid, int(result["epoch"]), metrics)
        for key in ("node_id", "gpu_ids"):
            if key in result:
                self._facts[tid][key] = result[key]
        if "summary_json" in result:
            self._summary[tid] = json.loads(result["summary_json"])
        self.progress.tick()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._attempts[trial.trial_id] += 1
        self._line(trial, f"retrying (attempt {self._attempts[trial.trial_id]}): {_error(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        tid = trial.trial_id
        summary = self._summary.pop(tid, None)
        # No summary: the trial was stopped before its last epoch (ASHA, a stopper).
        status = None if summary is not None else "stopped"
        history = summary["history"] if summary is not None else self._history(tid)  # before _write clears it
        self._write(trial, summary, status=status)
        self._ended(trial, summary["status"] if summary is not None else "stopped", "done")
        if summary is not None:
            self._line(trial, f"{summary['status']:<9} {self.metric} {_metric(history, self.metric)}"
                              f"  {summary['wall_seconds']:.1f} s")
        else:
            self._line(trial, f"stopped   after epoch {len(history)} {self.metric} {_metric(history, self.metric)}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = _error(trial)
        self._write(trial, None, status="failed", error=error)
        self._ended(trial, "failed", "failed")
        self._line(trial, f"failed    {error}")

    def on_experiment_end(self, trials, **info) -> None:
        self.progress.observe(_views(trials))
        self.progress.close()
        if self._trackers is not None:
            self._trackers.close()

    # ---------------------------------------------------------------- helpers

    def _history(self, tid: str) -> list[dict]:
        return [self._epochs[tid][e] for e in sorted(self._epochs[tid])]

    def _ended(self, trial, status: str, state: str) -> None:
        tid = trial.trial_id
        self.progress.end(tid, _label(trial), state)
        if tid in self._tracked:
            self._tracked.discard(tid)
            self.trackers.end(tid, status)
        self.progress.tick(file=True)

    def _write(self, trial, summary: dict | None, *, status: str | None, error: str | None = None) -> None:
        tid = trial.trial_id
        if self._driver is None:
            self._driver = driver_facts()  # the code's commit and the driver's library versions, once
        extra = {"attempt": self._attempts[tid], "ray_version": ray.__version__, **self._driver,
                 **self._facts.pop(tid, {})}
        if summary is None:
            extra["config"] = trial_config(trial.config)
        # The summary's history includes epochs run before a retry or a resume.
        epochs = None if summary is not None else self._history(tid)
        self.writer.write_trial(tid, self.study, summary, status=status, error=error, epochs=epochs,
                                extra=extra)
        self._epochs.pop(tid, None)

    def _line(self, trial, text: str) -> None:
        """``[finished/total] trial_id cell: text``, above the live progress line."""
        finished = self.progress.finished
        self.progress.print(f"[{finished:>{len(str(self.total))}}/{self.total}] {trial.trial_id} "
                            f"{_label(trial)}: {text}")


def _label(trial) -> str:
    return trial_config(trial.config).get("cell") or trial.trial_id


def _views(trials) -> list[TrialView]:
    return [TrialView(t.trial_id, _label(t), _STATES.get(t.status, "pending"),
                      int((t.last_result or {}).get("epoch", 0) or 0)) for t in trials]


def _params(trial) -> dict:
    """The trial's flattened config (the trials table's config columns), for the trackers."""
    config = trial_config(trial.config)
    try:
        return TrialConfig.from_dict(config).columns()
    except TrialConfigError:
        return {k: v for k, v in config.items() if not isinstance(v, dict)}


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
