"""Trials that raise, injected by the test-only `testing:` section: retried from their checkpoint
and completed, or recorded as failed with their error while the rest of the study goes on."""
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
