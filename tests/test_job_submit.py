"""`ray job submit`, as docs/cluster.md submits a study: the Ray CLI talks to the head's dashboard
(bound to 127.0.0.1), the job's driver runs `spectral-study run ... --address auto` on the head,
`ray job logs --follow` shows its output, and the results are Parquet where `--storage` says.

Needs Ray's job CLI and dashboard: ``pip install -e ".[cluster]"`` (`.[test]` includes it).
Run with ``pytest -s`` to see the job's log.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import ray

from spectral_study.results import load_results
from spectral_study.testing import write_study
from spectral_study.testing.autoscaling import FAKE_HEAD_TYPE, fake_cluster_config, start_autoscaling_cluster
from spectral_study.testing.cluster import RAY

pytest.importorskip("aiohttp", reason="`ray job` needs ray[default]: pip install -e '.[cluster]'")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
# Every "node" here is a process on this machine: a local --storage is shared storage.
SHARED = json.dumps({"env_vars": {"SPECTRAL_STUDY_SHARED_STORAGE": "1"}})
SMALL = {"model": {"modes": ["dense"], "widths": [16]}, "training": {"epochs": 1}, "search": {"repeats": 1}}


def ray_cli(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run([RAY, *args], capture_output=True, text=True, timeout=timeout, env=env)
    print(f"\n$ ray {' '.join(args)}   ({time.monotonic() - started:.1f} s, exit {done.returncode})\n"
          f"{done.stdout}{done.stderr[-2000:] if done.returncode else ''}")
    return done


@pytest.fixture
def laptop(tmp_path) -> dict:
    """The environment of `ray job` on the user's machine, as docs/cluster.md sets it: the head's
    token copied to a file of its own, RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH pointing at it
    (an empty HOME: the CLI must not find the token in ~/.ray by chance)."""
    token = os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").read_text()
    (tmp_path / "home").mkdir()
    (tmp_path / "head-token").write_text(token.strip())
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH_")}
    return {**env, "HOME": str(tmp_path / "home"), "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(tmp_path / "head-token")}


@pytest.fixture
def cluster_head():
    """cluster.yaml's head (`CPU: 0`, its autoscaler and worker types) with the dashboard."""
    cluster = start_autoscaling_cluster(fake_cluster_config(CLUSTER_YAML, idle_timeout_minutes=0.25), dashboard=True)
    yield cluster
    ray.shutdown()
    cluster.stop()


@pytest.fixture
def one_machine_head():
    """A head that runs the trials itself (1 CPU), with the dashboard, and no worker to start."""
    config = copy.deepcopy(fake_cluster_config(CLUSTER_YAML))
    config["available_node_types"][FAKE_HEAD_TYPE]["resources"] = {"CPU": 1}
    for node_type in config["available_node_types"].values():
        node_type["max_workers"] = 0
    config["max_workers"] = 0
    cluster = start_autoscaling_cluster(config, dashboard=True)
    yield cluster
    cluster.stop()


def test_study_submitted_as_a_job_runs_on_the_workers_the_autoscaler_starts(cluster_head, laptop, tmp_path):
    """Submit, follow the logs, read the results: the driver joined the head (`--address auto`:
    0 CPU, 1 node), its trial waited for a cpu_spot worker that the autoscaler started."""
    study = write_study(tmp_path, "job-study", **SMALL)
    storage = tmp_path / "shared"
    url = cluster_head.dashboard_url
    # Ray's client leaves token authentication off unless told; the head has it on.
    without_mode = {key: value for key, value in laptop.items() if key != "RAY_AUTH_MODE"}
    refused = ray_cli("job", "list", "--address", url, env=without_mode)
    assert refused.returncode != 0 and "Token authentication is enabled" in refused.stdout + refused.stderr

    submitted = ray_cli("job", "submit", "--address", url, "--submission-id", "job-study", "--no-wait",
                        "--runtime-env-json", SHARED, "--",
                        "spectral-study", "run", str(study), "--address", "auto", "--storage", str(storage), env=laptop)
    assert submitted.returncode == 0, submitted.stderr
    logs = ray_cli("job", "logs", "--address", url, "--follow", "job-study", env=laptop, timeout=600)
    status = ray_cli("job", "status", "--address", url, "job-study", env=laptop)
    assert "Job 'job-study' succeeded" in status.stdout, logs.stdout
    assert "ray: auto, 0 CPU, 0 GPU, 1 node(s)" in logs.stdout  # the driver on the head, no trial there
    assert ": completed test_accuracy" in logs.stdout and "done in" in logs.stdout

    trials = load_results(storage / "job-study")["trials"]
    assert len(trials) == 1 and set(trials["status"]) == {"completed"}
    ray.init(address=cluster_head.address, log_to_driver=False)
    assert set(trials["node_id"].map(cluster_head.node_types())) == {"cpu_spot"}
    assert "Launching 1 nodes, type cpu_spot." in cluster_head.autoscaler_decisions()


def test_job_with_the_working_dir_uploaded(one_machine_head, laptop, tmp_path):
    """The command of docs/cluster.md: `--working-dir` uploads a folder laid out like the checkout
    and the study's path is relative to it; `ray job submit` waits and prints the driver's output.

    On a head that runs the trials itself: on this machine every node shares one folder for
    unpacked working dirs, and a second node unpacking the same upload replaces the folder under
    the running driver (its cwd disappears). On AWS each node has its own disk."""
    workdir = tmp_path / "checkout"
    (workdir / "studies").mkdir(parents=True)
    write_study(workdir / "studies", "wd-study", **SMALL)
    storage = tmp_path / "shared"
    done = ray_cli("job", "submit", "--address", one_machine_head.dashboard_url, "--working-dir", str(workdir), "--",
                   "spectral-study", "run", "studies/wd-study.yaml", "--address", "auto", "--storage", str(storage),
                   env=laptop, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    assert "ray: auto, 1 CPU, 0 GPU, 1 node(s)" in done.stdout
    trials = load_results(storage / "wd-study")["trials"]
    assert len(trials) == 1 and set(trials["status"]) == {"completed"}
