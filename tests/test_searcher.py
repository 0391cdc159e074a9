"""Optuna learns what each trial really did: ASHA-stopped trials reach it as PRUNED with their
per-epoch values, finished ones as COMPLETE with their final value; the Optuna storage is what
optuna-dashboard serves (read here through the dashboard's own HTTP API)."""
import json
import math
import threading
import urllib.request
from types import SimpleNamespace
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest

from spectral_study.results import load_results
from spectral_study.tune import run_study

SEARCH = {"model": {"modes": ["spectral-eigvals", "dense"], "widths": [8, 32]},
          "training": {"epochs": 4, "batch_size": 128, "lr_eigvals": None},
          "search": {"type": "optuna", "n_trials": 8, "seed": 3, "metric": "test_accuracy", "direction": "max",
                     "space": {"lr": {"low": 1.0e-4, "high": 3.0e-2, "log": True},
                               "lr_eigvals": {"low": 1.0e-3, "high": 0.3, "log": True}}},
          "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}}


@pytest.fixture(scope="module")
def searched(local_ray, tmp_path_factory):
    """One Optuna + ASHA study with a sqlite storage: its Parquet tables, Optuna study, storage URL
    and results folder."""
    from spectral_study.study import load_study
    from spectral_study.testing import write_study

    directory = tmp_path_factory.mktemp("search")
    storage = f"sqlite:///{directory / 'optuna.db'}"
    spec = load_study(write_study(directory, "search", **{**SEARCH, "search": {**SEARCH["search"],
                                                                                "storage": storage}}))
    outcome = run_study(spec)
    study = optuna.load_study(study_name="search", storage=storage)
    return SimpleNamespace(tables=load_results(outcome.results), study=study, storage=storage,
                           results=outcome.results)


def test_parquet_holds_every_trial_with_its_real_budget(searched):
    tables = searched.tables
    trials, epochs = tables["trials"], tables["epochs"]
    assert len(trials) == 8 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "stopped"}
    stopped, completed = trials[trials["status"] == "stopped"], trials[trials["status"] == "completed"]
    assert len(stopped) >= 1, "ASHA stopped nothing"
    assert (stopped["epochs_completed"] < 4).all() and (completed["epochs_completed"] == 4).all()
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert (epochs.groupby("trial_id").size() == trials.set_index("trial_id")["epochs_completed"]).all()
    # lr_eigvals is suggested only for modes that train eigenvalues
    assert trials.loc[trials["mode"] == "dense", "lr_eigvals"].isna().all()
    assert trials.loc[trials["mode"] == "spectral-eigvals", "lr_eigvals"].notna().all()


def test_stopped_trials_are_pruned_and_finished_ones_complete(searched):
    tables, study = searched.tables, searched.study
    trials = tables["trials"].set_index("trial_id")
    epochs = tables["epochs"]
    assert len(study.trials) == 8
    for ot_trial in study.trials:
        row = trials.loc[ot_trial.user_attrs["trial_id"]]  # the join key between Optuna and Parquet
        history = epochs[epochs["trial_id"] == row.name].sort_values("epoch")
        # every epoch the trial trained is an intermediate value at that epoch
        assert ot_trial.intermediate_values == dict(zip(history["epoch"], history["test_accuracy"]))
        assert ot_trial.user_attrs["status"] == row["status"]
        if row["status"] == "stopped":
            assert ot_trial.state == optuna.trial.TrialState.PRUNED
            assert ot_trial.user_attrs["epochs"] == row["epochs_completed"] < 4
        else:
            assert ot_trial.state == optuna.trial.TrialState.COMPLETE
            assert math.isclose(ot_trial.value, row["final_test_accuracy"])
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == (tables["trials"]["status"] == "stopped").sum()


def test_optuna_dashboard_serves_the_study(searched):
    """The dashboard's own WSGI app on the study's storage: every trial, state, params and
    intermediate values come back through its HTTP API."""
    from optuna_dashboard import wsgi

    study, storage = searched.study, searched.storage

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, wsgi(storage), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=30))["study_summaries"]
        (listed,) = [s for s in studies if s["study_name"] == "search"]
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{listed['study_id']}", timeout=30))
    finally:
        server.shutdown()
        server.server_close()
    served = {t["number"]: t for t in detail["trials"]}
    assert len(served) == len(study.trials) == 8
    for ot_trial in study.trials:
        trial = served[ot_trial.number]
        assert trial["state"].lower() == ot_trial.state.name.lower()
        assert {p["name"] for p in trial["params"]} == set(ot_trial.params)
        assert {v["step"]: v["value"] for v in trial["intermediate_values"]} == pytest.approx(
            ot_trial.intermediate_values)


def test_analysis_reads_importances_from_the_optuna_storage(searched, tmp_path):
    import pandas as pd

    from analysis import search

    assert search.main([searched.results, "--out", str(tmp_path)]) == 0
    text = (tmp_path / "search.md").read_text()
    assert "Optuna storage" in text
    assert len(pd.read_csv(tmp_path / "search.csv")) == 8
