"""Studies on a real local Ray: grid and Optuna+ASHA, Parquet read back, determinism, a killed
driver resumed."""
import os
import shutil
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
    finished_before = {p.stem for p in (results / "trials").glob("*.parquet")}
    assert 3 <= len(finished_before) < 12
    # One unfinished trial loses its checkpoints, as when the saved experiment state names a
    # checkpoint that a later one replaced before the kill: that trial starts over, not fails.
    unfinished = sorted(d for d in (results / "_tune").iterdir()
                        if d.is_dir() and d.name not in finished_before and any(d.glob("checkpoint_*")))
    for checkpoint in unfinished[0].glob("checkpoint_*") if unfinished else ():
        shutil.rmtree(checkpoint)

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
