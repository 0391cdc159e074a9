"""Reproducibility metadata (spectral_study.provenance): the checkout's commit and dirty flag,
the driver's and a trial's library versions. (A real study's rows: tests/test_runs.py.)"""
import re
import subprocess

import torch

from spectral_study.provenance import PACKAGE_DIR, driver_facts, git_state, trial_versions


def test_git_state_of_this_checkout_and_of_no_checkout(tmp_path):
    commit, dirty = git_state(PACKAGE_DIR.parent)
    head = subprocess.run(["git", "-C", str(PACKAGE_DIR.parent), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert commit == head and re.fullmatch(r"[0-9a-f]{40}", commit) and isinstance(dirty, bool)
    assert git_state(tmp_path) == (None, None)


def test_a_dirty_tree_is_seen(tmp_path):
    run = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    run("add", "a.py")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    assert git_state(tmp_path)[1] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    git_state.cache_clear()
    assert git_state(tmp_path)[1] is True


def test_versions():
    facts = driver_facts()
    assert set(facts) == {"git_commit", "git_dirty", "pyarrow_version", "optuna_version"}
    assert facts["pyarrow_version"] and facts["optuna_version"]
    versions = trial_versions(torch.device("cpu"))
    assert versions["torch"] == torch.__version__ and versions["numpy"] and versions["python"]
    assert versions["cuda"] is None and versions["gpu_name"] is None
