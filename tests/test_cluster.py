"""Studies on a real multi-node Ray cluster (several raylets on this machine): trials on every
node, a worker node killed mid-study, a driver killed and resumed against the same cluster."""
import os
import signal
import subprocess
import sys
import threading
import time

import ray

from spectral_study.results import load_results
from spectral_study.testing import write_study
from spectral_study.tune import run_study


def test_study_runs_on_both_nodes(two_node_cluster, make_study):
    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    outcome = run_study(make_study("two-nodes", search={"repeats": 2}), address=two_node_cluster.address)
    trials = load_results(outcome.results)["trials"]
    assert len(trials) == 12 and set(trials["status"]) == {"completed"}
    assert set(trials["node_id"]) == node_ids  # both nodes ran trials


def test_worker_node_killed_mid_study(start_cluster, make_study, tmp_path):
    """Kill the second node's raylet while its trial runs: the study completes, the lost trial is
    retried from its checkpoint on the surviving node, nothing is written twice."""
    cluster = start_cluster([{"num_cpus": 0}, {"num_cpus": 1}, {"num_cpus": 1}])
    victim = cluster.nodes[2]
    victim_id = victim.node_id()
    spec = make_study("node-loss", model={"widths": [256]}, training={"epochs": 8, "checkpoint_every": 1},
                      search={"repeats": 2})
    results = tmp_path / "results" / "node-loss"
    killed = threading.Event()

    def kill_victim_when_its_trial_has_checkpointed():
        # Each worker node has one CPU, so it runs one trial at a time: once two unfinished trials
        # have a checkpoint, one of them is the victim's (a single checkpointed trial may be the
        # survivor's, and killing then would test a restart from scratch, not a restore).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed.is_set():
            finished = {p.stem for p in (results / "trials").glob("*.parquet")}
            checkpointed = {p.parent.name for p in (results / "_tune").glob("*/checkpoint_*")}
            if len(checkpointed - finished) >= 2:
                # Mid-epoch, not at the report that wrote the checkpoint: a raylet killed while the
                # driver fetches a just-reported result makes Ray Tune 2.60 raise from fit()
                # (ObjectReconstructionFailedError, which its actor manager does not treat as a
                # failed actor; seen once in this suite). That is Ray's race, not the node loss
                # this test is about.
                time.sleep(0.3)
                os.kill(victim.raylet_pid(), signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_victim_when_its_trial_has_checkpointed, daemon=True)
    killer.start()
    outcome = run_study(spec, address=cluster.address)
    killer.join(timeout=5)
    assert killed.is_set(), "the study finished before the node could be killed"

    tables = load_results(outcome.results)
    trials, epochs = tables["trials"], tables["epochs"]
    # What happened to each trial (shown with `pytest -s`).
    print(trials[["trial_id", "cell", "status", "attempt", "restored_from_epoch", "node_id",
                  "wall_seconds"]].assign(node_id=trials["node_id"].str[:8]).to_string())
    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert set(trials["status"]) == {"completed"}
    assert len(epochs) == 6 * 8 and not epochs.duplicated(["trial_id", "epoch"]).any()
    retried = trials[trials["attempt"] > 1]
    assert len(retried) >= 1, trials[["trial_id", "node_id", "attempt"]]
    assert (retried["node_id"] != victim_id).all()  # finished on the survivor
    assert (retried["restored_from_epoch"] >= 1).all()  # from a checkpoint, not from scratch


def test_driver_killed_and_resumed_against_the_same_cluster(two_node_cluster, tmp_path):
    """The driver (`spectral-study run --address`) is SIGKILLed mid-study; the cluster lives on;
    `spectral-study resume --address` against it finishes the study, every trial once."""
    cluster = two_node_cluster
    spec_path = write_study(tmp_path, "driver-loss", model={"widths": [64, 128]}, training={"epochs": 6},
                            search={"repeats": 2})
    results = tmp_path / "results" / "driver-loss"
    driver = subprocess.Popen([sys.executable, "-m", "spectral_study.cli", "run", str(spec_path),
                               "--address", cluster.address],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if len(list(results.glob("trials/*.parquet"))) >= 2:
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the study ended before the driver could be killed:\n" + driver.stdout.read()
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    assert len(list(results.glob("trials/*.parquet"))) < 12

    resumed = subprocess.run([sys.executable, "-m", "spectral_study.cli", "resume", str(results),
                              "--address", cluster.address], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    tables = load_results(results)
    trials, epochs = tables["trials"], tables["epochs"]
    assert len(trials) == 12 and trials["trial_id"].is_unique and set(trials["status"]) == {"completed"}
    assert len(epochs) == 12 * 6 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(trials["node_id"]) <= {n["NodeID"] for n in ray.nodes()}
