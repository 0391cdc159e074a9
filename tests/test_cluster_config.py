"""Contracts of cluster.yaml (the `ray up` config, docs/cluster.md): it passes the checks `ray up`
makes before it talks to AWS, and it keeps our rules: no trials on the head, spot GPU workers
whose resources match the instance, no Ray port open to the internet, the dashboard bound to the
head's localhost, torch installed before the package and the package installed from the copied
checkout; and every shipped study's trial fits a worker type without GPUs (the head takes none).
Broken copies show that each check refuses what it should. Offline: no AWS, no Ray
started.

`ray up` does, in order: yaml.safe_load, `prepare_config` (fills in Ray's AWS defaults, merges
setup_commands into head_/worker_setup_commands: local files only), an instance-type lookup on
AWS (skipped here: it only fills in `resources` we set ourselves, and its failure is only a
warning), `validate_config` (Ray's JSON schema, ray/autoscaler/ray-schema.json, and a few
cross-field checks), then the AWS bootstrap (subnets, security group, key pair: network, skipped).
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"

# vCPUs and GPUs per instance type (`aws ec2 describe-instance-types`), for the types we use and a
# few likely substitutes. A node type's `resources` must not promise more than its instance has.
INSTANCE_SHAPES = {
    "m5.large": (2, 0), "m5.xlarge": (4, 0),
    "c6i.2xlarge": (8, 0), "c6i.4xlarge": (16, 0), "c6i.8xlarge": (32, 0),
    "g4dn.xlarge": (4, 1), "g5.xlarge": (4, 1), "g5.2xlarge": (8, 1), "g6.xlarge": (4, 1),
}
# Ray ports that must never be reachable from the internet: whoever reaches them runs code on the
# cluster (GCS, dashboard and its job API, Ray client).
RAY_PORTS = {6379: "GCS", 8265: "dashboard", 10001: "Ray client"}
WORLD = {"0.0.0.0/0", "::/0"}
LOCALHOST = {"127.0.0.1", "localhost"}


def cluster_problems(config: dict) -> list[str]:
    """Our rules, checked on a prepared config (what Ray will run, defaults included): one
    sentence per broken rule, empty when all hold."""
    problems: list[str] = []
    types = config["available_node_types"]
    head = config["head_node_type"]

    head_resources = types[head]["resources"]
    if head_resources.get("CPU") != 0 or head_resources.get("GPU", 0) != 0:
        problems.append(f"available_node_types.{head}.resources: got {head_resources!r}; "
                        "expected {CPU: 0} so that no trial runs on the head")

    workers = {name: spec for name, spec in types.items() if name != head}
    for name, spec in workers.items():
        if spec.get("min_workers", 0) != 0:
            problems.append(f"available_node_types.{name}.min_workers: got {spec['min_workers']!r}; "
                            "expected 0 (workers scale to zero)")
        instance = spec["node_config"].get("InstanceType")
        if instance not in INSTANCE_SHAPES:
            known = ", ".join(sorted(INSTANCE_SHAPES))
            problems.append(f"available_node_types.{name}: unknown InstanceType {instance!r}; add its "
                            f"vCPUs and GPUs to INSTANCE_SHAPES (known: {known})")
            continue
        cpus, gpus = INSTANCE_SHAPES[instance]
        resources = spec["resources"]
        if resources.get("CPU", 0) > cpus or resources.get("GPU", 0) != gpus:
            problems.append(f"available_node_types.{name}.resources: got {resources!r}; expected at "
                            f"most {cpus} CPU and exactly {gpus} GPU, what a {instance} has")

    gpu_types = [name for name, spec in workers.items()
                 if isinstance(spec["resources"].get("GPU"), int) and spec["resources"]["GPU"] >= 1]
    if not gpu_types:
        problems.append("available_node_types: no worker type with a whole number of GPUs "
                        "(resources.GPU >= 1)")
    for name in gpu_types:
        market = workers[name]["node_config"].get("InstanceMarketOptions", {}).get("MarketType")
        if market != "spot":
            problems.append(f"available_node_types.{name}.node_config.InstanceMarketOptions."
                            f"MarketType: got {market!r}; expected 'spot'")

    for i, rule in enumerate(config["provider"].get("security_group", {}).get("IpPermissions", [])):
        sources = {r.get("CidrIp") for r in rule.get("IpRanges", [])}
        sources |= {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])}
        if not sources & WORLD:
            continue
        all_ports = str(rule.get("IpProtocol")) in ("-1", "all")
        low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
        for port, what in RAY_PORTS.items():
            if all_ports or (str(rule.get("IpProtocol")) in ("tcp", "6") and low <= port <= high):
                problems.append(f"provider.security_group.IpPermissions[{i}]: opens port {port} ({what}) "
                                f"to {', '.join(sorted(sources & WORLD))}; reach it through SSH instead "
                                "(`ray dashboard cluster.yaml`)")

    head_starts = [cmd for cmd in config["head_start_ray_commands"]
                   if re.search(r"\bray start\b.*--head\b", cmd)]
    hosts = {m.group(1) for cmd in head_starts for m in re.finditer(r"--dashboard-host[= ](\S+)", cmd)}
    if not head_starts or not hosts or not hosts <= LOCALHOST:
        problems.append(f"head_start_ray_commands: got {config['head_start_ray_commands']!r}; expected "
                        "`ray start --head ... --dashboard-host=127.0.0.1` (the dashboard on localhost only)")

    mounts = [remote for remote, local in config["file_mounts"].items() if local in (".", "./")]
    if not mounts:
        problems.append(f"file_mounts: got {config['file_mounts']!r}; "
                        "expected the checkout ('.') copied to the nodes")
        return problems
    from_checkout = r"\bpip install\b.*\s-e\s+(" + "|".join(map(re.escape, mounts)) + r")/?(\s|$)"
    setups = {"head_setup_commands": config["head_setup_commands"]}
    for name, spec in workers.items():  # a node type's own list replaces the merged global one
        own = spec.get("worker_setup_commands", config["worker_setup_commands"])
        setups[f"{name} worker_setup_commands"] = own
    for where, commands in setups.items():
        torch_at = _first(commands, r"\bpip install\b.*[\s\"']torch(==|>=|~=|[\s\"']|$)")
        package_at = _first(commands, from_checkout)
        if torch_at is None or package_at is None or torch_at > package_at:
            problems.append(f"{where}: torch installed at command {torch_at}, the package from the checkout "
                            f"({', '.join(mounts)}) at {package_at}; expected torch first, then "
                            "`pip install -e <mount>`")
    return problems


def _first(commands: list[str], pattern: str) -> int | None:
    return next((i for i, cmd in enumerate(commands) if re.search(pattern, cmd)), None)


@pytest.fixture(scope="module")
def raw_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())  # what `ray up` does with the file


@pytest.fixture
def config(raw_config) -> dict:
    return copy.deepcopy(raw_config)


def test_cluster_yaml_passes_ray_up_offline_checks(config):
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))  # the file as written, before defaults
    validate_config(prepare_config(config))


def test_cluster_yaml_keeps_our_rules(config):
    assert cluster_problems(prepare_config(config)) == []


def _set(config: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        config = config[key]
    config[last] = value


@pytest.mark.parametrize(("breaks", "message"), [
    (lambda c: _set(c, "spectral_study", {"storage": "s3://x"}), r"'spectral_study' was unexpected"),
    (lambda c: _set(c, "available_node_types.gpu_spot.resources", {"CPU": 4, "GPU": 0.5}),
     r"0\.5 is not of type 'integer'"),
    (lambda c: _set(c, "available_node_types.head.node_type", "m5.large"), r"'node_type' was unexpected"),
], ids=["unknown-top-level-key", "fractional-GPU-node-resource", "unknown-node-type-key"])
def test_ray_validate_config_refuses_broken_copies(config, breaks, message):
    """Refused by Ray itself: `validate_config`, through ray-schema.json (node resources are
    integers; unknown keys are errors), exactly as `ray up` would refuse them."""
    breaks(config)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate_config(prepare_config(config))


def _open_to_world(config: dict, rule: dict) -> None:
    config["provider"].setdefault("security_group", {}).setdefault("IpPermissions", []).append(rule)


def _replace_in(commands: list[str], old: str, new: str) -> None:
    commands[:] = [cmd.replace(old, new) for cmd in commands]


@pytest.mark.parametrize(("breaks", "message"), [
    (lambda c: _set(c, "available_node_types.head.resources", {"CPU": 2}), r"head\.resources.*CPU: 0"),
    (lambda c: c["available_node_types"]["gpu_spot"]["node_config"].pop("InstanceMarketOptions"),
     r"gpu_spot\.node_config\.InstanceMarketOptions\.MarketType: got None"),
    (lambda c: _set(c, "available_node_types.gpu_spot.resources", {"CPU": 4, "GPU": 2}),
     r"gpu_spot\.resources.*exactly 1 GPU, what a g5\.xlarge has"),
    (lambda c: c["available_node_types"].pop("gpu_spot"), r"no worker type with a whole number"),
    (lambda c: _set(c, "available_node_types.cpu_spot.min_workers", 1), r"cpu_spot\.min_workers: got 1"),
    (lambda c: _open_to_world(c, {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265,
                                  "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}), r"opens port 8265 \(dashboard\)"),
    (lambda c: _open_to_world(c, {"IpProtocol": "tcp", "FromPort": 10000, "ToPort": 10010,
                                  "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}), r"opens port 10001 \(Ray client\)"),
    (lambda c: _open_to_world(c, {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}),
     r"opens port 6379 \(GCS\)"),
    (lambda c: _replace_in(c["head_start_ray_commands"], "127.0.0.1", "0.0.0.0"),
     r"head_start_ray_commands: got .*0\.0\.0\.0"),
    # Without our own start commands Ray's AWS defaults apply, and they bind the dashboard to 0.0.0.0.
    (lambda c: c.pop("head_start_ray_commands"), r"head_start_ray_commands: got .*0\.0\.0\.0"),
    (lambda c: c["setup_commands"].append(c["setup_commands"].pop(_first(c["setup_commands"], "torch=="))),
     r"head_setup_commands: torch installed at command \d+, .* at \d+"),
    (lambda c: _replace_in(c["setup_commands"], "-e ~/spectral-study", "spectral-study"),
     r"gpu_spot worker_setup_commands: .* at None"),
    (lambda c: _set(c, "file_mounts", {}), r"file_mounts: got \{\}"),
], ids=["trials-on-head", "on-demand-GPU", "GPU-count-not-the-instance's", "no-GPU-type",
        "worker-min-1", "dashboard-port-open", "client-port-open-ipv6", "all-ports-open",
        "dashboard-on-0.0.0.0", "ray-default-start-commands", "torch-after-package",
        "package-not-from-checkout", "no-checkout-mount"])
def test_our_rules_refuse_broken_copies(config, breaks, message):
    """Refused by `cluster_problems` (this module): Ray's schema accepts every one of these."""
    breaks(config)
    prepared = prepare_config(config)
    validate_config(copy.deepcopy(prepared))  # Ray has no objection...
    problems = cluster_problems(prepared)  # ...but we do
    assert any(re.search(message, p) for p in problems), problems


# ------------------------------------------------------------------ trials against node types

STUDIES = sorted((CLUSTER_YAML.parent / "studies").glob("*.yaml"))


def trials_per_node(node_resources: dict, *, cpu: float, gpu: float) -> int:
    """How many trials reserving ``cpu`` and ``gpu`` one node of a type holds at once."""
    fits = [node_resources.get("CPU", 0) // cpu if cpu else float("inf"),
            node_resources.get("GPU", 0) // gpu if gpu else float("inf")]
    return int(min(fits)) if min(fits) != float("inf") else 0


def _workers(config: dict) -> dict:
    return {name: spec["resources"] for name, spec in config["available_node_types"].items()
            if name != config["head_node_type"]}


@pytest.mark.parametrize("study", STUDIES, ids=lambda path: path.stem)
def test_every_study_fits_a_worker_type_without_gpus(config, study):
    """The head has `CPU: 0`, so a trial runs only on a worker type that holds its `resources`;
    otherwise the autoscaler starts nothing and the study waits for ever (on AWS only). Every
    shipped study is CPU-only and must fit a type without GPUs: it never needs a GPU node."""
    from spectral_study.study import load_study

    resources = load_study(study).resources
    fits = {name: trials_per_node(node, cpu=resources.cpu, gpu=resources.gpu)
            for name, node in _workers(config).items() if not node.get("GPU")}
    assert any(fits.values()), f"{study.name}: resources {resources} fit no CPU worker type: {fits}"


def test_trials_per_node_as_docs_cluster_md_says(config):
    """docs/cluster.md: 16 CPU-only trials per c6i.4xlarge; `{cpu: 1, gpu: 0.25}` packs four per
    A10G node, `{cpu: 2, gpu: 0.25}` only two (a g5.xlarge has 4 vCPUs)."""
    workers = _workers(config)
    assert {name: trials_per_node(node, cpu=1, gpu=0) for name, node in workers.items()} == \
        {"gpu_spot": 4, "cpu_spot": 16}
    assert {name: trials_per_node(node, cpu=1, gpu=0.25) for name, node in workers.items()} == \
        {"gpu_spot": 4, "cpu_spot": 0}
    assert trials_per_node(workers["gpu_spot"], cpu=2, gpu=0.25) == 2
