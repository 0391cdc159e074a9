"""cluster.yaml's autoscaling, run on this machine: the head of `ray up` (``CPU: 0``, its
autoscaler) with the file's worker types, launched as local processes by Ray's fake multi-node
provider (`spectral_study.testing.autoscaling`). A GPU study must make the autoscaler start
`gpu_spot` workers from zero and run there, a CPU-only study `cpu_spot` workers, and idle
workers must go away again. Run with ``pytest -s`` to see the timings (docs/cluster.md quotes
them).

Scaled down for 2 cores: a type's CPUs capped at 4 (cpu_spot's 16), at most 2 workers per type,
a 15 s idle timeout instead of 5 minutes; GPUs are logical (torch sees none, trials record
``device: cpu`` with their ``gpu_ids``).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import ray
import yaml
from ray.autoscaler._private.util import validate_config

from spectral_study.results import load_results
from spectral_study.testing.autoscaling import (
    FAKE_HEAD_TYPE,
    NODE_TYPE_LABEL,
    fake_cluster_config,
    start_autoscaling_cluster,
)
from spectral_study.tune import run_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
IDLE_TIMEOUT_MINUTES = 0.25
# Time for idle workers to go, beyond the idle timeout: the autoscaler's loop (1 s here), the
# node's drain and the driver noticing (a loaded 2-core machine is slow at all three).
SCALE_DOWN_SLACK_S = 90
# Four one-epoch trials: with `gpu: 0.25` they fit one GPU node, with `cpu: 1` one (4-CPU) CPU node.
SMALL = {"model": {"modes": ["spectral-eigvals", "dense"], "widths": [16]}, "training": {"epochs": 1},
         "search": {"repeats": 2}}


def test_the_fake_cluster_has_cluster_yaml_node_types():
    """What the tests below start is cluster.yaml's head and worker types, scaled as said above,
    in a config Ray's autoscaler accepts."""
    source = yaml.safe_load(CLUSTER_YAML.read_text())
    config = fake_cluster_config(CLUSTER_YAML, max_cpus=4, max_workers=2)
    validate_config(copy.deepcopy(config))
    types, head = config["available_node_types"], source["head_node_type"]
    assert types.pop(FAKE_HEAD_TYPE)["resources"] == source["available_node_types"][head]["resources"]
    source_workers = {name: spec for name, spec in source["available_node_types"].items() if name != head}
    assert set(types) == set(source_workers)
    for name, spec in source_workers.items():
        expected = {**spec["resources"], "CPU": min(spec["resources"]["CPU"], 4)}
        assert types[name]["resources"] == expected
        assert types[name]["min_workers"] == spec["min_workers"] == 0
        assert types[name]["labels"] == {NODE_TYPE_LABEL: name}


@pytest.fixture(scope="module")
def cluster():
    config = fake_cluster_config(CLUSTER_YAML, max_cpus=4, max_workers=2, idle_timeout_minutes=IDLE_TIMEOUT_MINUTES)
    cluster = start_autoscaling_cluster(config)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.watch()
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()


@pytest.fixture
def from_zero(cluster, monkeypatch):
    """The cluster with no worker node alive (as `ray up` leaves it: min_workers 0). The results
    folder is local, and every node here is on this machine: it is shared storage."""
    monkeypatch.setenv("SPECTRAL_STUDY_SHARED_STORAGE", "1")
    cluster.wait_for_no_workers(timeout=IDLE_TIMEOUT_MINUTES * 60 + SCALE_DOWN_SLACK_S)
    return cluster


def _run_and_scale_down(cluster, spec):
    """Run ``spec``, then wait until its workers are gone. Returns the trials table, the nodes
    launched for it, and timings: study start -> first worker up, study end -> last worker down."""
    known = set(cluster.node_types())
    decisions = len(cluster.autoscaler_decisions())
    started = time.monotonic()
    trials = load_results(run_study(spec, address=cluster.address).results)["trials"]
    ended = time.monotonic()
    cluster.wait_for_no_workers(timeout=IDLE_TIMEOUT_MINUTES * 60 + SCALE_DOWN_SLACK_S)
    time.sleep(1)  # the watcher's last poll
    launched = [event for node_id, event in cluster.events.items() if node_id not in known]
    up = min((e.up for e in launched), default=float("nan")) - started
    down = max((e.down or float("nan") for e in launched), default=float("nan")) - ended
    types = sorted({e.node_type for e in launched})
    print(f"\n{spec.name}: {len(trials)} trials on {types}; study {ended - started:.1f} s, "
          f"first worker up {up:.1f} s after the study started, last one gone {down:.1f} s after it ended "
          f"(idle timeout {IDLE_TIMEOUT_MINUTES * 60:.0f} s)\n  autoscaler: "
          + "\n  autoscaler: ".join(cluster.autoscaler_decisions()[decisions:]))
    return trials, launched, up, down


def test_gpu_study_launches_gpu_workers_from_zero_and_they_scale_down(from_zero, make_study):
    """`resources: {cpu: 1, gpu: 0.25}`: the head runs no trial, so the autoscaler must start a
    worker with a GPU: one gpu_spot node (4 CPU, 1 GPU) holds all four trials."""
    spec = make_study("gpu", resources={"cpu": 1, "gpu": 0.25}, **SMALL)
    trials, launched, up, down = _run_and_scale_down(from_zero, spec)

    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    types = from_zero.node_types()
    assert set(trials["node_id"].map(types)) == {"gpu_spot"}
    assert set(trials["gpu_ids"]) == {"0"} and set(trials["device"]) == {"cpu"}  # a logical GPU: no CUDA here
    assert [e.node_type for e in launched] == ["gpu_spot"]  # one node, launched from zero, none of cpu_spot
    assert all(e.down is not None for e in launched)  # scaled down to the head again
    assert down <= IDLE_TIMEOUT_MINUTES * 60 + SCALE_DOWN_SLACK_S


def test_cpu_study_lands_on_cpu_workers(from_zero, make_study):
    """`resources: {cpu: 1, gpu: 0}` (every shipped study): the autoscaler starts cpu_spot, not the
    GPU type that would also fit the trials (Ray keeps GPU nodes for GPU work)."""
    spec = make_study("cpu", resources={"cpu": 1, "gpu": 0}, **SMALL)
    trials, launched, up, down = _run_and_scale_down(from_zero, spec)

    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert set(trials["node_id"].map(from_zero.node_types())) == {"cpu_spot"}
    assert set(trials["gpu_ids"].fillna("")) == {""}
    assert [e.node_type for e in launched] == ["cpu_spot"]
    assert all(e.down is not None for e in launched)
