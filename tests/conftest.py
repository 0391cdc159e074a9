"""Shared fixtures: real Ray (local, or several nodes on this machine) started and stopped
cleanly, and the one base study every study test builds on (`spectral_study.testing`)."""
import os

import pytest

# Every Ray this suite starts or joins uses token authentication (Ray reads the mode once, when
# it is imported: set it before any test module imports ray). A token is created if missing.
os.environ["RAY_AUTH_MODE"] = "token"


@pytest.fixture(scope="session", autouse=True)
def spectral_cpp_op():
    """The layer's C++ op, built before the first test (~30 s on a fresh machine, then cached):
    otherwise the build would run in the background of whichever test first trains a layer,
    beside Ray tests that time kills to the epoch. Where it cannot be built the tests run on the
    Python function (test_spectral.py says so, loudly)."""
    from spectral_study import _native

    return _native.load(timeout=600)


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


# Every test cluster's nodes run on this one machine, so a local results folder is the same folder
# on all of them: declare it shared (spectral_study._validate.check_shared_storage); a test of that
# check removes it with monkeypatch.delenv.
os.environ.setdefault("SPECTRAL_STUDY_SHARED_STORAGE", "1")


class S3Server:
    """A running S3-compatible server: its endpoint, a bucket, and the URIs that reach it."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint, self.bucket = endpoint, bucket

    def uri(self, prefix: str, *, query: bool = False, bucket: str | None = None) -> str:
        """``s3://bucket/prefix``, found through AWS_ENDPOINT_URL; ``query``: with the endpoint in
        the URI itself (pyarrow's ``?endpoint_override=…&scheme=http``), as for MinIO."""
        uri = f"s3://{bucket or self.bucket}/{prefix}"
        return uri + f"?endpoint_override={self.endpoint.split('://')[1]}&scheme=http" if query else uri

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``, listed through the S3 API (boto3)."""
        import boto3

        if not hasattr(self, "_client"):
            self._client = boto3.client("s3", endpoint_url=self.endpoint)
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """A real S3-compatible HTTP server (moto's, from the `test` extra) on 127.0.0.1 and a free
    port for one test module, with an empty bucket. While it runs, the environment holds fake
    credentials and AWS_ENDPOINT_URL (a Ray started after this hands them to its workers). It runs
    in a session of its own and is stopped by PID: nothing is left behind."""
    import re
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import boto3

    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "w") as out:  # port 0: the server picks a free port and logs it
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        endpoint, deadline = None, time.monotonic() + 60
        while endpoint is None:
            assert process.poll() is None and time.monotonic() < deadline, f"moto did not start: {log.read_text()}"
            found = re.search(r"Running on (http://127\.0\.0\.1:\d+)", log.read_text())
            endpoint = found and found.group(1)
            time.sleep(0.1)
        while True:  # listening is not yet answering
            try:
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"moto does not answer at {endpoint}: {log.read_text()}"
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                env.delenv(name, raising=False)
            missing = str(log.with_name("no-aws-config"))
            for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                                "AWS_ENDPOINT_URL": endpoint,
                                # never ask an EC2 metadata service for credentials, never read ~/.aws
                                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": missing,
                                "AWS_SHARED_CREDENTIALS_FILE": missing,
                                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}.items():
                env.setenv(name, value)
            server = S3Server(endpoint, "spectral-results")
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=server.bucket)
            yield server
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass


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
