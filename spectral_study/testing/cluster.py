"""A real multi-node Ray cluster on this one machine, for tests: each node is its own
`ray start --block` process (its own raylet), started and ended by PID.

Every node lives in a session of its own, so ending it ends the raylet, the object store and the
workers it started; the cluster keeps its files (and its `ray_current_cluster`) in a temporary
folder of its own, so nothing is left in /tmp/ray for a later `ray.init` to join by mistake.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# Token authentication on, whatever ~/.ray holds (the driver sets the same, see `connect`), and a
# killed node noticed within ~2 s instead of Ray's default ~30 s.
NODE_ENV = {"RAY_AUTH_MODE": "token","RAY_health_check_initial_delay_ms": "0", "RAY_health_check_period_ms": "500",
                      "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "3"}


@dataclass
class Node:
    process: subprocess.Popen
    log: Path
    label: str  # a custom Ray resource only this node has, to find its node id

    def node_id(self) -> str:
        import ray

        for info in ray.nodes():
            if info["Alive"] and self.label in info.get("Resources", {}):
                return info["NodeID"]
        raise RuntimeError(f"no live Ray node with resource {self.label!r}")

    def descendants(self) -> list[int]:
        """PIDs of every process this node started (read from /proc)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        found, stack = [], [self.process.pid]
        while stack:
            for child in children.get(stack.pop(), []):
                found.append(child)
                stack.append(child)
        return found

    def raylet_pid(self) -> int:
        for pid in self.descendants():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
            except OSError:
                continue
        raise RuntimeError(f"no raylet under node process {self.process.pid}; log: {self.log.read_text()[-2000:]}")


@dataclass
class LocalCluster:
    temp_dir: Path
    port: int
    nodes: list[Node] = field(default_factory=list)
    started: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_node(self, *, head: bool, num_cpus: float, num_gpus: float = 0) -> Node:
        self.started += 1
        log = self.temp_dir / f"node{self.started}.log"
        label = f"test_node_{self.started}"
        command = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
                   f"--num-gpus={num_gpus}", "--disable-usage-stats", f"--resources={{\"{label}\": 1}}"]
        if head:
            command += ["--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}",
                        "--include-dashboard=false"]
        else:
            command += [f"--address={self.address}"]
        with open(log, "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                       env={**os.environ, **NODE_ENV}, start_new_session=True)
        node = Node(process, log, label)
        self.nodes.append(node)
        return node

    def connect(self, count: int, timeout: float = 180) -> None:
        """ray.init to this cluster once ``count`` nodes are up (the driver's RAY_AUTH_MODE must
        be "token" before ray is imported: tests/conftest.py sets it)."""
        import ray

        ray.init(address=self.address, log_to_driver=False)
        self.wait_for_nodes(count, timeout)

    def wait_for_nodes(self, count: int, timeout: float = 180) -> None:
        import ray

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(n["Alive"] for n in ray.nodes()) >= count:
                return
            time.sleep(0.5)
        logs = "\n".join(f"--- {node.log.name}:\n{node.log.read_text()[-1500:]}" for node in self.nodes)
        raise TimeoutError(f"{count} Ray nodes did not come up in {timeout:.0f} s "
                           f"({sum(n['Alive'] for n in ray.nodes())} alive):\n{logs}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node
        for node in reversed(self.nodes):
            try:
                node.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever survived in the node's session
                os.killpg(node.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_cluster(nodes: list[dict]) -> LocalCluster:
    """Start the head (``nodes[0]``) and the other nodes; the caller connects with ray.init."""
    _ensure_auth_token()
    # Unix socket paths must stay short: a short folder directly in /tmp.
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="rt", dir="/tmp")), _free_port())
    try:
        for k, resources in enumerate(nodes):
            node = cluster.start_node(head=k == 0, **resources)
            if k == 0:
                _wait_for_port(cluster.port, node)
            # One node at a time: nodes started together on one machine can race for the same
            # free ports and one of them exits; such a node is started again, once.
            elif not _wait_until_started(node):
                cluster.nodes.remove(node)
                if not _wait_until_started(cluster.start_node(head=False, **resources)):
                    raise RuntimeError(f"Ray node {k} did not start twice; log:\n{node.log.read_text()[-3000:]}")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _ensure_auth_token() -> None:
    """`ray start` in token mode needs a token: make one where a new local Ray would
    (``~/.ray/auth_token``) if none exists yet, as on a fresh CI machine."""
    if os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").exists():
        return
    subprocess.run([RAY, "get-auth-token", "--generate"], check=True, capture_output=True, timeout=60)


def _wait_until_started(node: Node, timeout: float = 90) -> bool:
    """True once ``ray start`` says the node runs; False if it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Ray runtime started" in node.log.read_text():
            return True
        if node.process.poll() is not None:
            return False
        time.sleep(0.3)
    raise TimeoutError(f"Ray node did not start in {timeout:.0f} s; log:\n{node.log.read_text()[-3000:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, node: Node, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"the Ray head exited: {node.log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"the Ray head did not open port {port}")
