"""Tracking (spectral_study.tracking): a real study logs every trial's per-epoch metrics and its
flattened config to TensorBoard event files and an MLflow file store, read back here; a tracker
that fails is switched off, never the study. tensorboardX and mlflow-skinny are in the `test`
extra, so these run in CI."""
import os
import struct
from pathlib import Path

import pytest

from spectral_study.study import StudyError
from spectral_study.study.spec import TrackingSpec
from spectral_study.tracking import MLflowTracker, Trackers, TrackingError, resolve


def read_scalars(directory: Path) -> dict[str, dict[int, float]]:
    """Every scalar in a TensorBoard run folder: tag -> {step: value} (TFRecord framing: length,
    its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def test_a_study_logs_each_trial_to_tensorboard_and_mlflow(local_ray, make_study, monkeypatch):
    import mlflow

    from spectral_study.results import load_table
    from spectral_study.tune import run_study

    spec = make_study("tracked", model={"modes": ["spectral-eigvals", "dense"], "widths": [8]},
                      training={"epochs": 2}, tracking={"tensorboard": True, "mlflow": True})
    outcome = run_study(spec)
    root = Path(outcome.results)
    trials = load_table(root, "trials")
    assert len(trials) == 2 and outcome.exit_code == 0

    runs = sorted((root / "tensorboard").iterdir())
    assert [r.name for r in runs] == sorted(f"{row.cell}_{row.trial_id}" for row in trials.itertuples())
    for run in runs:
        scalars = read_scalars(run)
        assert sorted(scalars["test_accuracy"]) == [1, 2], scalars.keys()
        assert {"train_loss", "test_loss", "train_accuracy", "epoch_seconds"} <= set(scalars)
        assert not any("spectr" in tag or "weight" in tag or "summary" in tag for tag in scalars)

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only with it
    mlflow.set_tracking_uri((root / "mlruns").as_uri())
    found = mlflow.search_runs(experiment_names=["tracked"])
    assert len(found) == 2 and set(found["tags.trial_id"]) == set(trials["trial_id"])
    assert set(found["params.mode"]) == {"spectral-eigvals", "dense"}
    assert set(found["status"]) == {"FINISHED"} and set(found["tags.status"]) == {"completed"}
    assert set(found["params.epochs"]) == {"2"} and found["metrics.test_accuracy"].notna().all()
    assert not [c for c in found.columns if any(word in c for word in ("spectra", "weights", "summary"))]
    client = mlflow.tracking.MlflowClient()
    for run_id in found["run_id"]:
        history = client.get_metric_history(run_id, "test_accuracy")
        assert sorted(m.step for m in history) == [1, 2]


def test_a_failing_tracker_is_switched_off_with_one_warning():
    class Broken:
        name = "Broken"

        def start(self, *args):
            raise ConnectionError("server down")

    class Fine:
        name = "Fine"
        seen: list = []

        def start(self, *args):
            self.seen.append(args[0])

        def log(self, *args):
            self.seen.append(args[1])

    warnings: list[str] = []
    trackers = Trackers([Broken(), Fine()], warn=warnings.append)
    trackers.start("a", "cell", {})
    trackers.start("b", "cell", {})
    trackers.log("a", 1, {"test_accuracy": 0.5, "summary_json": "{...}"})
    assert warnings == ["warning: Broken tracking switched off: ConnectionError: server down"]
    assert Fine.seen == ["a", "b", 1]


def test_mlflow_keeps_one_run_per_trial_across_a_resume(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    first = MLflowTracker(uri, experiment="resumed")
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    first.start("t1", "cell", {"mode": "dense", "widths": "8", "lr_eigvals": None})
    first.log("t1", 1, {"test_accuracy": 0.5})
    again = MLflowTracker(uri, experiment="resumed")  # a new driver
    again.start("t1", "cell", {"mode": "dense", "widths": "8", "lr_eigvals": None})
    again.log("t1", 2, {"test_accuracy": 0.6})
    again.end("t1", "failed")
    runs = again.client.search_runs([again.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED" and runs[0].data.params["lr_eigvals"] == "null"
    assert sorted(m.step for m in again.client.get_metric_history(runs[0].info.run_id, "test_accuracy")) == [1, 2]


def test_resolve_puts_true_in_the_results_folder_and_refuses_it_on_object_stores(tmp_path):
    root = str(tmp_path / "results" / "x")
    settings = resolve(TrackingSpec(tensorboard=True, mlflow=True), root)
    assert settings == {"tensorboard": f"{root}/tensorboard", "mlflow": Path(root, "mlruns").as_uri()}
    assert resolve(TrackingSpec(mlflow="http://mlflow:5000"), root) == {"tensorboard": None,
                                                                        "mlflow": "http://mlflow:5000"}
    with pytest.raises(TrackingError, match="tracking.tensorboard: true puts it in the results folder, which is s3"):
        resolve(TrackingSpec(tensorboard=True), "s3://bucket/x")
    assert issubclass(TrackingError, StudyError)  # the command line's exit code 2


def test_the_tracking_section_is_validated(make_study):
    with pytest.raises(StudyError, match=r"tracking.mlfow: got unknown key 'mlfow'.*did you mean 'mlflow'"):
        make_study("bad", tracking={"mlfow": True})
    with pytest.raises(StudyError, match=r"tracking.tensorboard: got 3; expected a folder"):
        make_study("bad", tracking={"tensorboard": 3})
    spec = make_study("ok", tracking={"tensorboard": False, "mlflow": "sqlite:///m.db"})
    assert spec.tracking == TrackingSpec(tensorboard=None, mlflow="sqlite:///m.db")
    assert spec.to_dict()["tracking"] == {"tensorboard": None, "mlflow": "sqlite:///m.db"}
