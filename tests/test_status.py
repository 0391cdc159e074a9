"""`spectral-study status` (spectral_study.status): counts of the planned total from the results,
and, while a driver runs, its running trials from the progress file, or that the file is stale."""
import os
import time

from spectral_study.progress import STALE_SECONDS, Progress, TrialView
from spectral_study.results import results_root
from spectral_study.status import study_status
from spectral_study.testing import write_trials


def _running_driver(root, **changes):
    progress = Progress(study="st", total=6, epochs=3, metric="test_accuracy", root=root, interactive=False,
                        stream=open(os.devnull, "w"))
    progress.observe([TrialView("t0000", "spectral-eigvals_w16_relu_both_s0", "done", 3),
                      TrialView("run1", "dense_w64_relu_both_s0", "running", 2)])
    snapshot = {**progress.snapshot(), **changes}
    from spectral_study.progress import write_progress

    write_progress(root, snapshot)
    return snapshot


def test_status_counts_of_the_planned_total_and_the_best(make_study):
    spec = make_study("st")
    write_trials(spec, spec.trial_configs()[:4])
    text = study_status(results_root(spec.storage, spec.name))
    assert text.splitlines()[0].endswith("4 of 6 trials finished")
    assert "completed  4" in text and "best so far: t0000" in text
    assert "running" not in text and "stale" not in text  # no driver


def test_status_of_a_running_study_lists_its_running_trials_and_epochs(make_study):
    spec = make_study("st")
    root = results_root(spec.storage, spec.name)
    write_trials(spec, spec.trial_configs()[:1])
    _running_driver(root)
    text = study_status(root)
    assert "running (progress 0:00 ago): st: trials 1 done, 1 running, 0 failed of 6 | epochs 5/18" in text
    assert "  run1 dense_w64_relu_both_s0: epoch 2/3" in text


def test_status_says_when_the_progress_file_is_stale(make_study):
    spec = make_study("st")
    root = results_root(spec.storage, spec.name)
    write_trials(spec, spec.trial_configs()[:1])
    _running_driver(root, updated_at=time.time() - STALE_SECONDS - 120)
    text = study_status(root)
    assert "stale: the driver" in text and "last written 3:" in text and f"spectral-study resume {root}" in text
    assert "epoch 2/3" not in text

    _running_driver(root, pid=2 ** 22 + 7)  # fresh, on this host, but no such process
    assert "is gone" in study_status(root)


def test_status_of_a_finished_run_shows_no_live_section(make_study):
    spec = make_study("st")
    root = results_root(spec.storage, spec.name)
    write_trials(spec)
    _running_driver(root, state="finished")
    text = study_status(root)
    assert "6 of 6 trials finished" in text and "running" not in text and "stale" not in text
