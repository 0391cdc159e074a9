"""Shared fixtures: real Ray (local, or several nodes on this machine) started and stopped
cleanly, and the one base study every study test builds on (`spectral_study.testing`)."""
import os

import pytest

# Every Ray this suite starts or joins uses token authentication (Ray reads the mode once, when
# it is imported: set it before any test module imports ray). A token is created if missing.
os.environ["RAY_AUTH_MODE"] = "token"


@pytest.fixture(scope="module")
def local_ray():
    """An embedded local Ray (2 CPUs) for one test module; `run_study` joins it."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def make_study(tmp_path):
    """``make_study(name, **overrides)`` -> a validated `StudySpec` of the base study (see
    `spectral_study.testing.study_dict`), written under this test's tmp_path."""
    from spectral_study.study import load_study
    from spectral_study.testing import write_study

    def make(name: str = "study", **overrides):
        return load_study(write_study(tmp_path, name, **overrides))

    return make


@pytest.fixture
def start_cluster():
    """``start_cluster([{"num_cpus": 1}, ...])`` -> a connected multi-node cluster on this
    machine (the first node is the head); every node is stopped after the test."""
    import ray

    from spectral_study.testing.cluster import start_cluster as start

    started = []

    def make(nodes: list[dict]):
        cluster = start(nodes)
        started.append(cluster)
        cluster.connect(len(nodes))
        return cluster

    yield make
    ray.shutdown()
    for cluster in started:
        cluster.stop()


@pytest.fixture
def two_node_cluster(start_cluster):
    """A head with one CPU and a second node with one CPU."""
    return start_cluster([{"num_cpus": 1}, {"num_cpus": 1}])


# --- data: every data test gets a home of its own; the real Fashion-MNIST ------------------------


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """Keep the developer's ~/.cache, $SPECTRAL_STUDY_DATA and $SPECTRAL_STUDY_MIRROR out of a test
    (HOME is tmp_path/home). The data tests use it for every test, through ``pytestmark``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPECTRAL_STUDY_DATA", raising=False)
    monkeypatch.delenv("SPECTRAL_STUDY_MIRROR", raising=False)


@pytest.fixture
def fashion_mnist():
    """The real Fashion-MNIST where Debian's dataset-fashion-mnist installs it (CI installs the
    package): ``.path``, and ``.fingerprint``, that of the published contents (Debian re-compressed
    the files, but their contents are the published ones)."""
    from pathlib import Path
    from types import SimpleNamespace

    return SimpleNamespace(path=Path("/usr/share/datasets/fashion-mnist"), fingerprint="sha256:d0a13531871adf77")
