"""A local results folder is refused, before any trial runs, where the nodes running trials would
not share it; object stores and declared shared folders (NFS) are not. The rule alone, then on a
real two-node cluster (with S3 on a local S3-compatible server, `s3_server`)."""
import pytest

from spectral_study._validate import SHARED_STORAGE_ENV, StorageError, check_shared_storage
from spectral_study.cli import main
from spectral_study.results import load_results
from spectral_study.testing import write_study


def node(cpu: float = 1, gpu: float = 0, *, alive: bool = True) -> dict:
    """What `ray.nodes()` says about a node, as far as the rule reads it."""
    return {"Alive": alive, "Resources": {"CPU": cpu, "GPU": gpu}}


def check(root: str, nodes: list[dict], *, address: str | None = "auto", shared: bool | None = None) -> None:
    check_shared_storage(root, nodes, address=address, cpu=1, gpu=0, shared=shared)


@pytest.fixture
def undeclared(monkeypatch):
    """No shared folder declared (the test suite declares one: its clusters are on one machine)."""
    monkeypatch.delenv(SHARED_STORAGE_ENV, raising=False)


def test_a_local_folder_on_several_nodes_is_refused_with_what_to_do(undeclared):
    for root in ("/data/results/x", "results/x", "file:///data/results/x"):
        with pytest.raises(StorageError) as info:
            check(root, [node(), node()])
        message = str(info.value)
        assert message.startswith(f"{root}: a local folder, but the Ray cluster at auto has 2 nodes")
        assert "--storage s3://BUCKET/prefix" in message and "--shared-storage" in message
        assert SHARED_STORAGE_ENV in message and "\n" not in message


def test_an_autoscaling_cluster_whose_nodes_cannot_run_a_trial_is_refused(undeclared):
    # cluster.yaml's head has `CPU: 0`: every trial runs on a worker the autoscaler starts later.
    with pytest.raises(StorageError, match=r"no node of the Ray cluster at auto can run a trial \(1 CPU, 0 GPU\)"):
        check("/data/results/x", [node(cpu=0)])
    with pytest.raises(StorageError, match="can run a trial"):
        check_shared_storage("/data/x", [node(cpu=4)], address="auto", cpu=1, gpu=1, shared=None)


def test_what_is_allowed(undeclared, monkeypatch):
    check("/data/results/x", [node()])                          # one node: it is this machine
    check("/data/results/x", [node(), node(alive=False)])       # a dead node runs nothing
    check("/data/results/x", [node(cpu=0)], address=None)       # an embedded Ray is this machine
    for uri in ("s3://bucket/x", "s3://bucket/x?endpoint_override=127.0.0.1:9000&scheme=http", "gs://b/x"):
        check(uri, [node(), node(), node(cpu=0)])               # every node reaches an object store
    check("/nfs/results/x", [node(), node()], shared=True)      # --shared-storage
    monkeypatch.setenv(SHARED_STORAGE_ENV, "1")
    check("/nfs/results/x", [node(), node()])                   # SPECTRAL_STUDY_SHARED_STORAGE=1


# Two trials of two epochs; the dense one fails once after its first epoch and is retried from its
# checkpoint, which, on S3, any node can read.
FLAKY = {"model": {"modes": ["dense", "spectral-eigvals"], "widths": [16]}, "training": {"epochs": 2},
         "testing": {"inject_failure": "first_attempt", "failing_modes": ["dense"]}}


def test_two_node_cluster_refuses_a_local_folder_and_runs_on_s3(s3_server, two_node_cluster, undeclared,
                                                                tmp_path, capsys):
    import ray

    study = write_study(tmp_path, "shared", **FLAKY)
    capsys.readouterr()
    assert main(["run", str(study), "--address", two_node_cluster.address]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has 2 nodes" in err and "--shared-storage" in err, err
    assert not (tmp_path / "results").exists()  # refused before anything was written or run

    uri = s3_server.uri("cluster", query=True)
    assert main(["run", str(study), "--address", two_node_cluster.address, "--storage", uri]) == 0
    trials = load_results(uri.replace("/cluster?", "/cluster/shared?"))["trials"]
    print(trials[["trial_id", "mode", "attempt", "restored_from_epoch", "node_id"]].to_string())
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    assert set(trials["node_id"]) <= {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    dense = trials[trials["mode"] == "dense"]
    assert dense["attempt"].tolist() == [2] and dense["restored_from_epoch"].tolist() == [1]
    assert not (tmp_path / "results").exists()
