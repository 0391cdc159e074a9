"""Trials that raise, injected by the test-only `testing:` section: retried from their checkpoint
and completed, or recorded as failed with their error while the rest of the study goes on."""
from pathlib import Path

from spectral_study.results import load_results
from spectral_study.tune import run_study


def test_trial_failing_once_is_retried_and_completes(local_ray, make_study):
    spec = make_study("flaky", testing={"inject_failure": "first_attempt", "failing_modes": ["dense"]})
    trials = load_results(run_study(spec).results)["trials"]
    assert len(trials) == 6 and set(trials["status"]) == {"completed"}
    dense = trials[trials["mode"] == "dense"]
    assert (dense["attempt"] == 2).all() and (dense["restored_from_epoch"] == 1).all()
    assert (trials.loc[trials["mode"] != "dense", "attempt"] == 1).all()


def test_trial_always_failing_is_recorded_and_the_study_goes_on(local_ray, make_study):
    spec = make_study("broken", testing={"inject_failure": "always", "failing_modes": ["dense"]})
    tables = load_results(run_study(spec).results)
    trials = tables["trials"]
    assert len(trials) == 6
    failed = trials[trials["status"] == "failed"]
    assert set(failed["mode"]) == {"dense"} and len(failed) == 2
    assert failed["error"].str.contains("injected failure").all()
    assert (failed["attempt"] == 3).all()  # the first try and two retries
    assert set(trials.loc[trials["mode"] != "dense", "status"]) == {"completed"}


def test_a_packed_trial_failing_once_restores_every_seed(local_ray, make_study):
    """search.pack_seeds: each cell's two seeds train in one Tune trial. The dense one fails after
    its first checkpoint and its retry restores both seeds from it; every seed has its own row in
    every table, and the finished run leaves one compacted file per table."""
    spec = make_study("packed-flaky", model={"modes": ["dense", "spectral-eigvals"], "widths": [16]},
                      search={"repeats": 2, "pack_seeds": True},
                      testing={"inject_failure": "first_attempt", "failing_modes": ["dense"]})
    assert (spec.scheduled_count(), spec.trial_count()) == (2, 4)
    outcome = run_study(spec)
    tables = load_results(outcome.results)
    trials, epochs = tables["trials"], tables["epochs"]
    assert len(trials) == 4 and set(trials["status"]) == {"completed"} and trials["pack_seeds"].all()
    assert {m: sorted(s) for m, s in trials.groupby("mode")["seed"]} == {"dense": [0, 1], "spectral-eigvals": [0, 1]}
    assert trials["trial_id"].str.fullmatch(r"\w+-s[01]").all()
    dense = trials[trials["mode"] == "dense"]
    assert (dense["attempt"] == 2).all() and (dense["restored_from_epoch"] == 1).all()
    assert len(epochs) == 4 * 3 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert sorted(p.name for p in Path(outcome.results, "trials").iterdir()) == ["compacted.parquet"]
