"""Experiment trackers a study may also log to: TensorBoard (live per-trial curves) and MLflow.

    # the study file
    tracking:
      tensorboard: true      # event files in <results>/tensorboard/<cell>_<trial_id>/ (or a folder)
      mlflow: true           # a file store in <results>/mlruns (or a folder, or http://host:5000)

    trackers = Trackers.from_settings(resolve(spec.tracking, root), study=spec.name)
    trackers.start(trial_id, label, config.columns())   # the flattened TrialConfig, as parameters
    trackers.log(trial_id, epoch, metrics)              # per-epoch metrics (EPOCH_METRICS only)
    trackers.end(trial_id, "completed")
    trackers.close()

The driver's Tune callback calls these as results arrive, so each trial's curves grow while it
trains, whatever node it runs on. Only the config and the per-epoch metrics are logged, never a
trial's summary blobs (spectra, weights): those are in the Parquet results. One MLflow run per
trial (tagged ``trial_id``: a resumed trial continues its run); its status is FINISHED for a
completed, stopped or diverged trial (the ``status`` tag says which) and FAILED for a failed one.

A tracker that fails (a server that is down) is switched off with one warning; the study goes on.
MLflow 3 keeps a folder ("file store") only when ``MLFLOW_ALLOW_FILE_STORE`` is set: a folder
given here sets it for this process (read such a store with the same variable set). Needs the
``tracking`` extra: ``pip install 'spectral-study[tracking]'`` (tensorboardX, mlflow-skinny).
No Ray here.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from spectral_study._validate import StudyError
from spectral_study.vocabulary import EPOCH_METRICS

TENSORBOARD_DIR, MLFLOW_DIR = "tensorboard", "mlruns"
# MLflow run status per trial status.
_MLFLOW_STATUS = {"completed": "FINISHED", "stopped": "FINISHED", "diverged": "FINISHED", "failed": "FAILED"}


class TrackingError(StudyError):
    """Tracking settings that cannot work with this study's results (names the field)."""


def resolve(tracking, root: str) -> dict:
    """The study's ``tracking`` settings as concrete locations: ``{"tensorboard": folder or None,
    "mlflow": tracking URI or None}``; ``true`` means inside the results folder ``root``, which
    must then be local."""
    out = {}
    for key, inside in (("tensorboard", TENSORBOARD_DIR), ("mlflow", MLFLOW_DIR)):
        value = getattr(tracking, key, None)
        if value is True:
            if "://" in root:
                raise TrackingError(f"tracking.{key}: true puts it in the results folder, which is {root}; "
                                    f"give a local folder (or a tracking URI for mlflow) instead")
            value = str(Path(root, inside))
        elif isinstance(value, str) and "://" not in value:
            value = str(Path(value).expanduser().resolve())
        if key == "mlflow" and value and "://" not in value:
            value = Path(value).as_uri()  # a folder: MLflow's file store
        out[key] = value or None
    return out


class Trackers:
    """Every tracker the study asked for; each call reaches each of them."""

    def __init__(self, trackers: list, *, warn=print) -> None:
        self.trackers, self.warn = list(trackers), warn

    @classmethod
    def from_settings(cls, settings: dict | None, *, study: str, warn=print) -> Trackers:
        settings = settings or {}
        trackers = []
        if settings.get("tensorboard"):
            trackers.append(TensorBoardTracker(settings["tensorboard"]))
        if settings.get("mlflow"):
            trackers.append(MLflowTracker(settings["mlflow"], experiment=study))
        return cls(trackers, warn=warn)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def start(self, trial_id: str, label: str, params: dict) -> None:
        self._each("start", trial_id, label, params)

    def log(self, trial_id: str, epoch: int, metrics: dict) -> None:
        metrics = {k: float(v) for k, v in metrics.items() if k in EPOCH_METRICS and isinstance(v, (int, float))}
        self._each("log", trial_id, int(epoch), metrics)

    def end(self, trial_id: str, status: str) -> None:
        self._each("end", trial_id, status)

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as error:  # a tracker must never stop the study
                self.trackers.remove(tracker)
                self.warn(f"warning: {tracker.name} tracking switched off: {type(error).__name__}: {error}")


class TensorBoardTracker:
    """One event-file folder per trial: ``<logdir>/<label>_<trial_id>``, its metrics as scalars
    (step = epoch), its config as hyperparameters (the HPARAMS tab) and as a text table."""

    name = "TensorBoard"

    def __init__(self, logdir: str) -> None:
        from tensorboardX import SummaryWriter  # the tracking extra

        self.logdir, self._writer_class = logdir, SummaryWriter
        self.writers: dict = {}

    def start(self, trial_id: str, label: str, params: dict) -> None:
        from tensorboardX.summary import hparams

        writer = self._writer_class(logdir=os.path.join(self.logdir, f"{label}_{trial_id}"))
        self.writers[trial_id] = writer
        plain = {k: _param(v) for k, v in params.items() if k != "config_json"}
        for summary in hparams(plain, {f"hparams/{m}": 0.0 for m in ("test_accuracy", "train_loss")}):
            writer.file_writer.add_summary(summary)
        writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in plain.items()))
        writer.flush()

    def log(self, trial_id: str, epoch: int, metrics: dict) -> None:
        writer = self.writers.get(trial_id)
        if writer is None:
            return
        for key, value in metrics.items():
            writer.add_scalar(key, value, epoch)
        for key in ("test_accuracy", "train_loss"):
            if key in metrics:  # the HPARAMS tab's columns
                writer.add_scalar(f"hparams/{key}", metrics[key], epoch)
        writer.flush()  # live curves: TensorBoard sees each epoch as it ends

    def end(self, trial_id: str, status: str) -> None:
        writer = self.writers.pop(trial_id, None)
        if writer is not None:
            writer.add_text("status", status)
            writer.close()

    def close(self) -> None:
        for trial_id in list(self.writers):
            self.writers.pop(trial_id).close()


class MLflowTracker:
    """One MLflow run per trial in the experiment named after the study, through MlflowClient (no
    global active run: several trials run at once)."""

    name = "MLflow"

    def __init__(self, uri: str, *, experiment: str) -> None:
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # see the module docstring
        from mlflow.tracking import MlflowClient  # the tracking extra

        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.runs: dict[str, str] = {}

    def start(self, trial_id: str, label: str, params: dict) -> None:
        from mlflow.entities import Param

        existing = self.client.search_runs([self.experiment_id], f"tags.trial_id = '{trial_id}'", max_results=1)
        if existing:  # a resumed or retried trial continues its run
            self.runs[trial_id] = existing[0].info.run_id
            return
        run = self.client.create_run(self.experiment_id, run_name=label,
                                     tags={"trial_id": trial_id, "cell": label})
        self.runs[trial_id] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=[Param(k, str(_param(v))) for k, v in params.items()])

    def log(self, trial_id: str, epoch: int, metrics: dict) -> None:
        from mlflow.entities import Metric

        run_id = self.runs.get(trial_id)
        if run_id is None:
            return
        stamp = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, stamp, epoch) for k, v in metrics.items()])

    def end(self, trial_id: str, status: str) -> None:
        run_id = self.runs.pop(trial_id, None)
        if run_id is not None:
            self.client.set_tag(run_id, "status", status)
            self.client.set_terminated(run_id, _MLFLOW_STATUS.get(status, "FINISHED"))

    def close(self) -> None:
        self.runs.clear()  # runs left open are of trials this driver did not see end (a resume ends them)


def _param(value) -> str | int | float | bool:
    """A parameter value trackers accept: scalars as they are, None as "null", lists as JSON."""
    if value is None:
        return "null"
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, default=str)
