"""An autoscaling Ray cluster on this machine, built from cluster.yaml's node types, for tests.

    config = fake_cluster_config(CLUSTER_YAML, idle_timeout_minutes=0.25)
    cluster = start_autoscaling_cluster(config, dashboard=True)   # the head only, CPU: 0
    ...  # trials wait -> the autoscaler launches worker "nodes" of cluster.yaml's types
    cluster.stop()

The head runs the same autoscaler `ray up` runs on AWS (`ray start --head --autoscaling-config`),
with Ray's fake multi-node provider (`provider: type: fake_multinode`, ``RAY_FAKE_CLUSTER=1``)
in place of EC2: a launched worker is a raylet and its workers on this machine, with the
resources its node type declares (GPUs are logical: torch sees none). What only AWS can show
(instance start, set-up commands, spot, S3) is left out; docs/cluster.md names it.

Not `ray.cluster_utils.AutoscalingCluster`: it runs `ray stop --force` (ends every Ray process on
the machine, other people's too), uses /tmp/ray and port 6379, and reads an example.yaml that
Ray's wheel does not ship. Here, as in `spectral_study.testing.cluster`, the head is one
`ray start --block` in a session of its own with a temporary folder of its own, and every port is
free-picked; the workers the autoscaler starts live in that session too, so `stop` ends exactly
this cluster's processes, by PID.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spectral_study.testing.cluster import NODE_ENV, RAY, _ensure_auth_token, _free_port, _wait_for_port

# A label on every node (head and workers) naming its node type in cluster.yaml, so that a test
# maps the `node_id` in the trials table to the type the autoscaler launched.
NODE_TYPE_LABEL = "spectral-study/node-type"
# The fake provider's name for the head's node type, whatever cluster.yaml calls it.
FAKE_HEAD_TYPE = "ray.head.default"


def fake_cluster_config(cluster_yaml: str | Path, *, max_cpus: int = 4, max_workers: int = 2,
                        idle_timeout_minutes: float = 0.25) -> dict:
    """cluster.yaml's node types for the fake provider, as the autoscaler reads them.

    Kept from the file: each type's resources (GPUs stay whole, logical), min_workers, the head's
    resources (``CPU: 0``). Scaled down for a small machine: a type's CPUs capped at ``max_cpus``
    (a c6i.4xlarge's 16 would run 16 trials at once on 2 cores), each type's and the cluster's
    max_workers capped at ``max_workers``, and the idle timeout shortened. Every type gets the
    `NODE_TYPE_LABEL` label with its name in cluster.yaml.
    """
    source = yaml.safe_load(Path(cluster_yaml).read_text())
    head_name = source["head_node_type"]
    types = {}
    for name, spec in source["available_node_types"].items():
        resources = dict(spec.get("resources", {}))
        if "CPU" in resources:
            resources["CPU"] = min(resources["CPU"], max_cpus)
        node_type = {"resources": resources, "node_config": {},
                     "labels": {**spec.get("labels", {}), NODE_TYPE_LABEL: name}}
        if name == head_name:
            types[FAKE_HEAD_TYPE] = {**node_type, "max_workers": 0}
        else:
            types[name] = {**node_type, "min_workers": spec.get("min_workers", 0),
                           "max_workers": min(spec.get("max_workers", max_workers), max_workers)}
    return {
        "cluster_name": source["cluster_name"],
        "max_workers": min(source.get("max_workers", max_workers), max_workers),
        "upscaling_speed": source.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": idle_timeout_minutes,
        # Filled in by `start_autoscaling_cluster`: the head's GCS address.
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": types,
        "head_node_type": FAKE_HEAD_TYPE,
        # What `ray up` would run over SSH on an instance: nothing to run for a local process.
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


@dataclass
class NodeEvent:
    """A node as the driver saw it: its type, when it was first seen alive and first seen dead
    (`time.monotonic()`)."""
    node_id: str
    node_type: str
    up: float
    down: float | None = None


@dataclass
class AutoscalingCluster:
    temp_dir: Path
    port: int
    process: subprocess.Popen
    log: Path
    head_type: str  # the head's name in cluster.yaml
    dashboard_port: int | None = None
    events: dict[str, NodeEvent] = field(default_factory=dict)
    _stop_watching: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    # ---------------------------------------------------------------- what the autoscaler did

    def watch(self, period: float = 0.5) -> None:
        """Record in `events`, from the connected driver (after ray.init), when each node comes
        up and goes down: `ray.nodes()` polled every ``period`` seconds."""
        import ray

        def poll():
            while not self._stop_watching.wait(period):
                now = time.monotonic()
                for info in ray.nodes():
                    event = self.events.get(info["NodeID"])
                    if info["Alive"] and event is None:
                        self.events[info["NodeID"]] = NodeEvent(info["NodeID"], _node_type(info), now)
                    elif not info["Alive"] and event is not None and event.down is None:
                        event.down = now

        self._watcher = threading.Thread(target=poll, name="node-watcher", daemon=True)
        self._watcher.start()

    def node_types(self) -> dict[str, str]:
        """Every node id this cluster has had, alive or not -> its node type in cluster.yaml."""
        import ray

        return {info["NodeID"]: _node_type(info) for info in ray.nodes()}

    def workers_alive(self) -> list[str]:
        """Node ids of the live nodes other than the head."""
        import ray

        return [info["NodeID"] for info in ray.nodes() if info["Alive"] and _node_type(info) != self.head_type]

    def wait_for_no_workers(self, timeout: float) -> float:
        """Seconds until no worker node is alive: the autoscaler scaled down to the head."""
        started = time.monotonic()
        while self.workers_alive():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"worker nodes still alive after {timeout:.0f} s: {self.workers_alive()}; "
                                   f"autoscaler:\n" + "\n".join(self.autoscaler_decisions()))
            time.sleep(0.5)
        return time.monotonic() - started

    def autoscaler_decisions(self) -> list[str]:
        """The autoscaler's launch and termination lines from its log (what `ray monitor
        cluster.yaml` shows on AWS), e.g. "Launching 1 nodes, type gpu_spot."."""
        pattern = re.compile(r"Launching \d+ nodes, type \S+\.|Terminating the node with id .*")
        return [match.group(0) for line in self.monitor_log().splitlines() if (match := pattern.search(line))]

    def monitor_log(self) -> str:
        logs = sorted(self.temp_dir.glob("session_*/logs/monitor.log"))
        return logs[-1].read_text(errors="replace") if logs else ""

    # ---------------------------------------------------------------- stop

    def stop(self) -> None:
        """SIGTERM the head (`ray start --block` stops its own processes), then SIGKILL whatever
        is left in its session: the worker nodes the autoscaler started and their workers. Removes
        the folder holding this cluster's files (and its `ray_current_cluster`)."""
        self._stop_watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 30
        while (left := _session_pids(self.process.pid)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_autoscaling_cluster(config: dict, *, dashboard: bool = False) -> AutoscalingCluster:
    """Start the head of ``config`` (from `fake_cluster_config`) with its autoscaler; the caller
    connects with ray.init(address=cluster.address). ``dashboard``: the dashboard, and with it
    the job API (`ray job submit`), listening on 127.0.0.1 only, as cluster.yaml starts it."""
    from ray.autoscaler._private.util import validate_config

    _ensure_auth_token()
    temp_dir = Path(tempfile.mkdtemp(prefix="ra", dir="/tmp"))  # short: Unix socket paths are limited
    port = _free_port()
    config = copy.deepcopy(config)
    config["provider"]["gcs_address"] = f"127.0.0.1:{port}"
    validate_config(copy.deepcopy(config))  # what the autoscaler checks when it reads the file
    config_path = temp_dir / "autoscaling.yaml"
    config_path.write_text(json.dumps(config))

    head = config["available_node_types"][FAKE_HEAD_TYPE]
    resources = dict(head["resources"])
    command = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
               f"--temp-dir={temp_dir}", f"--autoscaling-config={config_path}", "--disable-usage-stats",
               f"--num-cpus={resources.pop('CPU', 0)}", f"--num-gpus={resources.pop('GPU', 0)}",
               f"--resources={json.dumps(resources)}", f"--labels={json.dumps(head['labels'])}",
               # Ports Ray would otherwise fix (10001, 52365): another cluster on this machine may hold them.
               f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}"]
    dashboard_port = None
    if dashboard:
        dashboard_port = _free_port()
        command += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}"]
    else:
        command += ["--include-dashboard=false"]
    env = {**os.environ, **NODE_ENV, "RAY_FAKE_CLUSTER": "1",
           "AUTOSCALER_UPDATE_INTERVAL_S": "1"}  # the autoscaler's loop: 5 s by default
    # This interpreter's bin first, as cluster.yaml's `source ~/venv/bin/activate` does on a node:
    # a job's entrypoint finds `spectral-study` there.
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    log = temp_dir / "head.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    cluster = AutoscalingCluster(temp_dir, port, process, log, head["labels"][NODE_TYPE_LABEL], dashboard_port)
    try:
        _wait_for_port(port, _LogView(process, log))
        if dashboard_port is not None:
            _wait_for_port(dashboard_port, _LogView(process, log))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node_type(info: dict) -> str:
    return info.get("Labels", {}).get(NODE_TYPE_LABEL, "?")


@dataclass
class _LogView:  # what `_wait_for_port` reads from a node
    process: subprocess.Popen
    log: Path


def _session_pids(sid: int) -> list[int]:
    """Live processes in session ``sid`` (read from /proc), zombies left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == sid:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found
