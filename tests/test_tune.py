"""Studies on a real local Ray: grid and Optuna+ASHA, Parquet read back, determinism, a killed
driver resumed."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from spectral_study.models import ModelSpec, build_model, count_parameters
from spectral_study.results import load_results, load_table
from spectral_study.testing import write_study
from spectral_study.tune import resume_study, run_study

# The base study (spectral_study.testing) with the changes each test needs.
GRID = {"model": {"modes": ["spectral-eigvals", "dense-restricted", "dense"], "widths": [8, 16]},
        "training": {"epochs": 2, "batch_size": 128, "lr": 0.003}}
OPTUNA = {"model": {"modes": ["spectral-eigvals", "dense"], "widths": [8, 32]},
          "training": {"epochs": 4, "batch_size": 128, "lr_eigvals": None},
          "search": {"type": "optuna", "n_trials": 8, "seed": 3, "metric": "test_accuracy", "direction": "max",
                     "space": {"lr": {"low": 1.0e-4, "high": 3.0e-2, "log": True},
                               "lr_eigvals": {"low": 1.0e-3, "high": 0.3, "log": True}}},
          "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}}


def test_grid_study_writes_every_trial_and_epoch_once(local_ray, make_study):
    spec = make_study("grid", **GRID)
    outcome = run_study(spec)
    tables = load_results(outcome.results)
    trials, epochs, spectra = tables["trials"], tables["epochs"], tables["spectra"]

    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert set(trials["status"]) == {"completed"}
    expected = {(c.mode, "-".join(map(str, c.widths)), c.seed) for c in spec.trial_configs()}
    assert set(zip(trials["mode"], trials["widths"], trials["seed"])) == expected
    for row in trials.itertuples():  # exact counts, recomputed independently of the trial
        model = build_model(ModelSpec(mode=row.mode, widths=(row.width,), eigenvalues=row.eigenvalues))
        assert (row.trainable_params, row.total_params) == count_parameters(model)
        assert row.lr == 0.003 and row.lr_eigvals == (0.05 if row.mode == "spectral-eigvals" else None) \
            or pd.isna(row.lr_eigvals)
    assert len(epochs) == 12 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert all(sorted(group) == [1, 2] for _, group in epochs.groupby("trial_id")["epoch"])
    spectral = trials[trials["mode"] == "spectral-eigvals"]
    for row in spectral.itertuples():
        assert (spectra["trial_id"] == row.trial_id).sum() == (784 + row.width) + (row.width + 10)
    assert set(spectra["trial_id"]) == set(spectral["trial_id"])
    assert (Path(outcome.results) / "study.yaml").exists()
    assert trials["node_id"].notna().all() and trials["ray_version"].notna().all()


def test_same_grid_twice_gives_the_same_accuracies(local_ray, make_study):
    def accuracies(name):
        spec = make_study(name, **GRID)
        trials = load_table(run_study(spec).results, "trials")
        return trials.set_index("cell")["final_test_accuracy"].sort_index()

    pd.testing.assert_series_equal(accuracies("first"), accuracies("second"))


def test_optuna_study_with_asha_records_early_stops(local_ray, make_study, tmp_path):
    import optuna

    db = tmp_path / "optuna.db"
    spec = make_study("search", **{**OPTUNA, "search": {**OPTUNA["search"], "storage": f"sqlite:///{db}"}})
    tables = load_results(run_study(spec).results)
    trials, epochs = tables["trials"], tables["epochs"]

    assert len(trials) == 8 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "stopped"}
    stopped, completed = trials[trials["status"] == "stopped"], trials[trials["status"] == "completed"]
    assert len(stopped) >= 1, "ASHA stopped nothing"
    assert (stopped["epochs_completed"] < 4).all() and (completed["epochs_completed"] == 4).all()
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    per_trial = epochs.groupby("trial_id").size()
    assert (per_trial[trials.set_index("trial_id")["epochs_completed"].index]
            == trials.set_index("trial_id")["epochs_completed"]).all()
    # lr_eigvals is suggested only for spectral modes
    assert trials.loc[trials["mode"] == "dense", "lr_eigvals"].isna().all()
    assert trials.loc[trials["mode"] == "spectral-eigvals", "lr_eigvals"].notna().all()
    # the Optuna storage holds the study, for optuna-dashboard
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{db}")
    assert len(study.trials) == 8


def test_killed_driver_resumes_with_every_trial_once(tmp_path):
    study = write_study(tmp_path, "killed", model={"widths": [64, 128]}, training={"epochs": 6},
                        search={"repeats": 2})
    results = tmp_path / "results" / "killed"
    # A session of its own, so that whatever Ray leaves behind after the kill can be ended.
    driver = subprocess.Popen([sys.executable, "-m", "spectral_study.cli", "run", str(study)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            done = list((results / "trials").glob("*.parquet")) if (results / "trials").exists() else []
            if len(done) >= 3:
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the study ended before it could be killed:\n" + driver.stdout.read()
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        _end_session(driver.pid)
    finished_before = len(list((results / "trials").glob("*.parquet")))
    assert 3 <= finished_before < 12

    outcome = resume_study(str(results))
    tables = load_results(outcome.results)
    trials, epochs = tables["trials"], tables["epochs"]
    assert len(trials) == 12 and trials["trial_id"].is_unique
    assert set(trials["status"]) == {"completed"}
    assert len(epochs) == 12 * 6 and not epochs.duplicated(["trial_id", "epoch"]).any()


def _end_session(session_id: int) -> None:
    """SIGKILL what is left of the process group we started (Ray's agents outlive a killed driver)."""
    try:
        os.killpg(session_id, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_bad_study_exits_2_before_ray_starts(tmp_path):
    bad = write_study(tmp_path, "bad", model={"widths": [8, -16]})
    code = ("import sys; from spectral_study.cli import main; rc = main(['run', sys.argv[1]]); "
            "print('ray imported:', 'ray' in sys.modules); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "ray imported: False" in done.stdout
    assert str(bad) in done.stderr and "model.widths[1]" in done.stderr and "-16" in done.stderr
