"""Contracts of spectral_study.study: shipped studies load and expand correctly, every bad study
is refused with one message naming file, field, value and what is allowed, the Optuna space is a
real define-by-run space, and the resolved study round-trips."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from spectral_study._validate import is_valid_gpu
from spectral_study.config import TrialConfig
from spectral_study.models import ModelSpec
from spectral_study.study import StudyError, StudySpec, load_study, parse_study, with_overrides
from spectral_study.train import TrainConfig
from spectral_study.vocabulary import ACTIVATIONS, DATASETS, EIGVAL_MODES, EPOCH_METRICS, MODES

TRIAL_CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(TrialConfig))

STUDIES = Path(__file__).resolve().parents[1] / "studies"
SHIPPED = sorted(STUDIES.glob("*.yaml"))

BASE = """\
name: t
dataset: synthetic
model:
  modes: [spectral-eigvals, dense]
  widths: [64, 128]
training:
  epochs: 3
"""


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def study_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------------------ shipped studies

def test_studies_are_shipped():
    assert {p.name for p in SHIPPED} >= {"quickstart.yaml", "fmnist-widths-linear.yaml",
                                          "fmnist-widths-relu.yaml", "fmnist-optuna.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_study_opens_with_command_time_and_expectation(path):
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    assert header[0] == f"# spectral-study run studies/{path.name}"
    text = " ".join(header)
    assert "minute" in text and "CPU cores" in text and "should" in text


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_study_loads_and_round_trips(path, tmp_path):
    spec = load_study(path)
    assert spec.name == path.stem
    assert parse_study(spec.to_dict(), "resolved") == spec
    resolved = write(tmp_path, spec.to_yaml(), "resolved.yaml")
    assert load_study(resolved) == spec


def check_config(config: dict) -> None:
    """A trial config is complete, JSON-able, and accepted by the real model and trainer specs."""
    assert sorted(config) == sorted(TRIAL_CONFIG_KEYS)
    json.dumps(config)
    trial = TrialConfig.from_dict(config)
    ModelSpec.from_config(trial, in_features=784, n_classes=10)
    TrainConfig.from_config(trial)
    assert config["dataset"] in DATASETS
    assert (config["lr_eigvals"] is not None) == (config["mode"] in EIGVAL_MODES)


def grid(spec: StudySpec) -> list[dict]:
    """The grid's trial configs as the dicts Ray carries."""
    return [config.to_dict() for config in spec.trial_configs()]


def test_quickstart_grid():
    spec = load_study(STUDIES / "quickstart.yaml")
    configs = grid(spec)
    assert len(configs) == spec.trial_count() == 5 * 3 * 1
    assert all(tuple(c) == TRIAL_CONFIG_KEYS for c in configs)  # grid configs in canonical order
    for config in configs:
        check_config(config)
    assert {(c["mode"], tuple(c["widths"])) for c in configs} == {
        (m, (w,)) for m in ("spectral-eigvals", "dense-restricted", "spectral-eigvecs", "spectral-full", "dense")
        for w in (32, 128, 512)}
    assert {c["epochs"] for c in configs} == {3} and {c["seed"] for c in configs} == {0}
    assert {c["dataset"] for c in configs} == {"fashion-mnist"}
    assert configs[0]["cell"] == "spectral-eigvals_w32_relu_both_s0"
    assert configs[0]["lr_eigvals"] == 0.03 and configs[0]["lr"] == 1e-3


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_width_studies_cover_every_mode_width_and_seed(activation):
    spec = load_study(STUDIES / f"fmnist-widths-{activation}.yaml")
    configs = grid(spec)
    assert len(configs) == spec.trial_count() == 5 * 5 * 3
    for config in configs:
        check_config(config)
    cells = {(c["mode"], c["widths"][0], c["seed"]) for c in configs}
    assert cells == {(m, w, s) for m in MODES for w in (16, 64, 256, 1024, 2048) for s in (0, 1, 2)}
    assert len({c["cell"] for c in configs}) == len(configs)
    assert {c["activation"] for c in configs} == {activation}
    assert {c["epochs"] for c in configs} == {5} and {c["repeats"] for c in configs} == {1}


def test_grid_order_is_seed_outermost_and_deterministic():
    spec = parse_study({**_base(), "search": {"repeats": 2, "seed": 7}})
    configs = grid(spec)
    assert [c["seed"] for c in configs] == [7] * 4 + [8] * 4
    assert [c["cell"] for c in configs[:4]] == [
        "spectral-eigvals_w64_relu_both_s7", "spectral-eigvals_w128_relu_both_s7",
        "dense_w64_relu_both_s7", "dense_w128_relu_both_s7"]
    assert configs == grid(spec)


def test_grid_expands_every_axis_and_looks_up_lr_per_mode():
    spec = parse_study({
        "name": "axes", "dataset": {"name": "mnist", "path": "/data/mnist", "normalize": "standard"},
        "model": {"modes": list(MODES), "widths": [[], 32, [64, 16]], "activations": ["tanh", "elu"],
                  "eigenvalues": ["both", "receiving"], "bias": False},
        "training": {"lr": {"default": 0.002, "dense": 0.005},
                     "lr_eigvals": {"spectral-eigvals": 0.05, "default": 0.01}},
        "pruning": {"methods": ["eigenvalue", "connectivity"], "fractions": [0.5, 0.9], "retrain_epochs": 0},
        "testing": {"inject_failure": "first_attempt"}})
    configs = grid(spec)
    # dense has no eigenvalues: it runs once per cell, not once per eigenvalue set
    assert len(configs) == (4 * 2 + 1) * 3 * 2
    for config in configs:
        check_config(config)
        mode = config["mode"]
        assert config["lr"] == (0.005 if mode == "dense" else 0.002)
        assert config["lr_eigvals"] == {"spectral-eigvals": 0.05, "spectral-full": 0.01}.get(mode)
        assert (config["data_path"], config["normalize"], config["bias"]) == ("/data/mnist", "standard", False)
        assert config["pruning"] == {"methods": ["eigenvalue", "connectivity"], "fractions": [0.5, 0.9],
                                     "retrain_epochs": 0, "retrain_fractions": None,
                                     "retrain_methods": None, "at_epochs": None}
        assert config["inject_failure"] == "first_attempt"
    assert {tuple(c["widths"]) for c in configs} == {(), (32,), (64, 16)}
    assert "dense-restricted_wnone_tanh_receiving_s0" in {c["cell"] for c in configs}
    assert {c["eigenvalues"] for c in configs if c["mode"] == "dense"} == {"both"}


def test_defaults():
    spec = parse_study({"name": "d", "dataset": "synthetic", "model": {"modes": "dense", "widths": 8}})
    assert spec.base.epochs == 10 and spec.base.batch_size == 256
    assert spec.base.optimizer == "adam" and spec.rates.lr.for_mode("dense") == 1e-3
    assert spec.search.type == "grid" and spec.search.repeats == 1 and spec.search.metric == "test_accuracy"
    assert spec.search.direction == "max" and spec.scheduler.type == "none"
    assert (spec.resources.cpu, spec.resources.gpu) == (1.0, 0.0)
    assert (spec.storage, spec.concurrency, spec.retries, spec.base.device) == ("results", None, 2, "auto")
    assert spec.base.pruning is None and spec.base.inject_failure is None
    assert spec.model.activations == ("relu",) and spec.model.eigenvalues == ("both",) and spec.base.bias
    assert spec.base.dense_init == "uniform" and spec.base.phi_init == "uniform"
    loss = parse_study({**_base(), "search": {"metric": "test_loss"}})
    assert loss.search.direction == "min"


def test_yaml_reads_1e_minus_3_as_a_float(tmp_path):
    spec = load_study(write(tmp_path, BASE + "  lr: 1e-3\n  lr_eigvals: 3E-2\n"))
    assert spec.rates.lr.default == 1e-3 and spec.rates.lr_eigvals.default == 0.03


def test_subset_seeds_and_init_options_reach_the_trial_configs():
    spec = parse_study({"name": "t", "dataset": "synthetic", "search": {"repeats": 2},
                        "model": {"modes": ["spectral-eigvals", "dense-restricted"], "widths": [[]],
                                  "subset_seeds": [4, 5, 6], "phi_init": "glorot", "eigval_init": "ones"}})
    configs = grid(spec)
    assert len(configs) == spec.trial_count() == (1 + 3) * 2
    restricted = [c for c in configs if c["mode"] == "dense-restricted"]
    assert sorted(c["subset_seed"] for c in restricted) == [4, 4, 5, 5, 6, 6]
    assert {c["subset_seed"] for c in configs if c["mode"] == "spectral-eigvals"} == {None}
    assert {(c["phi_init"], c["eigval_init"]) for c in configs} == {("glorot", "ones")}
    assert len({c["cell"] for c in configs}) == len(configs)
    assert parse_study(spec.to_dict()) == spec


def _base() -> dict:
    return {"name": "t", "dataset": "synthetic",
            "model": {"modes": ["spectral-eigvals", "dense"], "widths": [64, 128]}}


# ------------------------------------------------------------------------------ bad studies

MODES_LIST = ", ".join(MODES)
BAD = {
    "unknown top-level key": (
        BASE + "colour: red\n",
        ["colour: got unknown key 'colour'; expected one of: name, dataset, model"]),
    "unknown nested key": (
        BASE.replace("  widths:", "  widhts:"),
        ["model.widhts: got unknown key 'widhts'; expected one of: modes, widths, activations",
         "did you mean 'widths'?"]),
    "string for epochs": (
        BASE.replace("epochs: 3", "epochs: ten"),
        ["training.epochs: got 'ten'; expected a positive integer"]),
    "float for epochs": (
        BASE.replace("epochs: 3", "epochs: 3.0"),
        ["training.epochs: got 3.0; expected a positive integer"]),
    "bool where an int is expected": (
        BASE + "search:\n  repeats: true\n",
        ["search.repeats: got True; expected a positive integer"]),
    "unknown mode": (
        BASE.replace("[spectral-eigvals, dense]", "[dense, spectral]"),
        [f"model.modes[1]: got 'spectral'; expected one of: {MODES_LIST}"]),
    "unknown dataset": (
        BASE.replace("dataset: synthetic", "dataset: imagenet"),
        [f"dataset: got 'imagenet'; expected one of: {', '.join(DATASETS)}"]),
    "unknown activation": (
        BASE.replace("  widths: [64, 128]\n", "  widths: [64, 128]\n  activations: [relu, sigmoid]\n"),
        [f"model.activations[1]: got 'sigmoid'; expected one of: {', '.join(ACTIVATIONS)}"]),
    "empty widths list": (
        BASE.replace("[64, 128]", "[]"),
        ["model.widths: got []; expected a non-empty list", "[] is a perceptron"]),
    "negative width": (
        BASE.replace("[64, 128]", "[64, 128, -4]"),
        ["model.widths[2]: got -4; expected a positive integer"]),
    "negative width inside a layer list": (
        BASE.replace("[64, 128]", "[64, [256, -1]]"),
        ["model.widths[1][1]: got -1; expected a positive integer"]),
    "duplicate width": (
        BASE.replace("[64, 128]", "[64, 64]"),
        ["model.widths[1]: got 64; expected each value once"]),
    "gpu 1.5": (
        BASE + "resources: {gpu: 1.5}\n",
        ["resources.gpu: got 1.5; expected 0, a whole number of GPUs, or a fraction 1/n", "0.25"]),
    "gpu 0.3 is not 1/n": (
        BASE + "resources: {gpu: 0.3}\n",
        ["resources.gpu: got 0.3; expected 0, a whole number of GPUs, or a fraction 1/n"]),
    "negative gpu": (
        BASE + "resources: {gpu: -1}\n",
        ["resources.gpu: got -1; expected 0, a whole number"]),
    "bool gpu": (
        BASE + "resources: {gpu: true}\n",
        ["resources.gpu: got True; expected 0"]),
    "zero cpu": (
        BASE + "resources: {cpu: 0}\n",
        ["resources.cpu: got 0; expected a positive number of CPUs"]),
    "metric not reported": (
        BASE + "search: {metric: val_accuracy}\n",
        [f"search.metric: got 'val_accuracy'; expected one of: {', '.join(EPOCH_METRICS)}"]),
    "storage with an unknown scheme": (
        BASE + "storage: nosuchscheme://x\n",
        ["storage: cannot use 'nosuchscheme://x': ", "nosuchscheme"]),
    "missing name": (
        BASE.replace("name: t\n", ""),
        ["name: missing; expected a name of letters, digits"]),
    "name with a slash": (
        BASE.replace("name: t", "name: a/b"),
        ["name: got 'a/b'; expected a name of letters, digits"]),
    "missing model": (
        "name: t\ndataset: synthetic\n",
        ["model: missing; expected a mapping with at least modes and widths"]),
    "missing widths": (
        BASE.replace("  widths: [64, 128]\n", ""),
        ["model.widths: missing; expected a list"]),
    "optuna without n_trials": (
        BASE + "search:\n  type: optuna\n  space: {lr: {low: 1.0e-4, high: 0.1}}\n",
        ["search.n_trials: missing; expected a positive integer"]),
    "optuna with an inverted lr range": (
        BASE + "search:\n  type: optuna\n  n_trials: 5\n  space: {lr: {low: 0.1, high: 0.001}}\n",
        ["search.space.lr: got {'low': 0.1, 'high': 0.001}; expected low < high"]),
    "optuna with nothing to search": (
        BASE.replace("[spectral-eigvals, dense]", "[dense]").replace("[64, 128]", "[64]")
        + "search: {type: optuna, n_trials: 5}\n",
        ["search.space: got {}; expected at least one axis with two or more choices"]),
    "optuna-only key in a grid search": (
        BASE + "search: {n_trials: 20}\n",
        ["search.n_trials: got 20; expected no value here: only for search.type optuna"]),
    "empty modes list": (
        BASE.replace("[spectral-eigvals, dense]", "[]"),
        [f"model.modes: got []; expected a non-empty list; each entry one of: {MODES_LIST}"]),
    "unknown search type": (
        BASE + "search: {type: bayes}\n",
        ["search.type: got 'bayes'; expected one of: grid, optuna"]),
    "asha grace period beyond the epochs": (
        BASE + "scheduler: {type: asha, grace_period: 5}\n",
        ["scheduler.grace_period: got 5; expected an integer from 1 to training.epochs (3)"]),
    "asha reduction factor 1": (
        BASE + "scheduler: {type: asha, reduction_factor: 1}\n",
        ["scheduler.reduction_factor: got 1; expected a number > 1"]),
    "unknown scheduler": (
        BASE + "scheduler: fifo\n",
        ["scheduler: got 'fifo'; expected one of: none, asha"]),
    "cuda without a gpu": (
        BASE + "device: cuda\n",
        ["device: got 'cuda'; expected 'auto' or 'cpu' when resources.gpu is 0"]),
    "cpu with a reserved gpu": (
        BASE + "device: cpu\nresources: {gpu: 0.5}\n",
        ["device: got 'cpu'; expected 'auto' or 'cuda' when resources.gpu > 0"]),
    "lr_eigvals for a mode without eigenvalues": (
        BASE + "  lr_eigvals: {dense: 0.1}\n",
        ["training.lr_eigvals.dense: got 0.1; expected no value here: only modes that train eigenvalues"]),
    "negative lr": (
        BASE + "  lr: -0.1\n",
        ["training.lr: got -0.1; expected a positive number"]),
    "unknown optimizer": (
        BASE + "  optimizer: lbfgs\n",
        ["training.optimizer: got 'lbfgs'; expected one of: adam, adamax, sgd"]),
    "pruning fraction 1": (
        BASE + "pruning: {fractions: [0.5, 1.0]}\n",
        ["pruning.fractions[1]: got 1.0; expected a fraction of hidden nodes to remove, strictly between 0 and 1"]),
    "pruning after an epoch the study does not reach": (
        BASE + "pruning: {at_epochs: [2, 5]}\n",
        ["pruning.at_epochs[1]: got 5; expected an epoch from 1 to the training epochs (3)"]),
    "retraining at a fraction that is not pruned": (
        BASE + "pruning: {fractions: [0.5, 0.9], retrain_fractions: [0.75]}\n",
        ["pruning.retrain_fractions[0]: got 0.75; expected one of pruning.fractions (0.5, 0.9)"]),
    "retraining with a ranking that is not compared": (
        BASE + "pruning: {methods: [eigenvalue, random], retrain_methods: [random, eigen-norm]}\n",
        ["pruning.retrain_methods[1]: got 'eigen-norm'; expected one of pruning.methods (eigenvalue, random)"]),
    "optuna storage beside results on an object store": (
        BASE + "storage: s3://bucket/x\nsearch:\n  type: optuna\n  n_trials: 5\n  storage: auto\n"
        "  space: {lr: {low: 1.0e-4, high: 0.1}}\n",
        ["search.storage: search.storage 'auto' needs local results, but storage is 's3://bucket/x'"]),
    "unknown pruning method": (
        BASE + "pruning: {methods: [magnitude]}\n",
        ["pruning.methods[0]: got 'magnitude'; expected one of: eigenvalue, eigen-norm, connectivity, random"]),
    "fault injection outside testing": (
        BASE + "inject_failure: always\n",
        ["inject_failure: got 'always'; expected no value here: it belongs under testing:"]),
    "unknown fault injection": (
        BASE + "testing: {inject_failure: sometimes}\n",
        ["testing.inject_failure: got 'sometimes'; expected one of: first_attempt, always"]),
    "bias as a string": (
        BASE.replace("  widths: [64, 128]\n", "  widths: [64, 128]\n  bias: 'yes'\n"),
        ["model.bias: got 'yes'; expected true or false"]),
    "concurrency zero": (
        BASE + "concurrency: 0\n",
        ["concurrency: got 0; expected a positive integer or null"]),
    "top level is a list": (
        "- name: t\n",
        ["got [{'name': 't'}]; expected a mapping with keys from: name, dataset"]),
    "duplicate key": (
        BASE + "training:\n  epochs: 4\n",
        ["line 8, column 1: invalid YAML: duplicate key 'training'"]),
}

@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_study_is_refused_with_field_value_and_allowed(case, tmp_path):
    text, fragments = BAD[case]
    message = study_error(tmp_path, text)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    message = study_error(tmp_path, "name: t\ndataset: synthetic\nmodel: {modes: [dense, widths: [4]}\n")
    assert "line 3, column" in message and "invalid YAML" in message


def test_storage_under_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("")
    message = study_error(tmp_path, BASE + f"storage: {tmp_path / 'afile' / 'results'}\n")
    assert f"storage: cannot use '{tmp_path / 'afile' / 'results'}'" in message
    assert "is not a directory" in message


def test_storage_accepts_local_dirs_and_uris(tmp_path):
    for storage in (str(tmp_path / "new" / "results"), "results", f"file://{tmp_path}/r",
                    "s3://bucket/prefix", "gs://bucket/prefix"):
        assert parse_study({**_base(), "storage": storage}).storage == storage


def test_missing_file_is_a_study_error(tmp_path):
    with pytest.raises(StudyError, match=r"nope\.yaml: cannot read the study file"):
        load_study(tmp_path / "nope.yaml")


def test_model_fields_may_come_from_the_optuna_space_and_errors_point_there():
    spec = parse_study({"name": "o", "dataset": "synthetic", "search": {
        "type": "optuna", "n_trials": 2, "space": {"modes": ["dense", "spectral-full"], "widths": [8]}}})
    assert spec.model.modes == ("dense", "spectral-full") and spec.model.widths == ((8,),)
    with pytest.raises(StudyError, match=r"<study>: search\.space\.widths\[0\]: got 0; expected"):
        parse_study({"name": "o", "dataset": "synthetic", "search": {
            "type": "optuna", "n_trials": 2, "space": {"modes": ["dense", "spectral-full"], "widths": [0]}}})


# ------------------------------------------------------------------------------ optuna

def _ask(spec: StudySpec, n: int, seed: int = 0) -> list[dict]:
    """Run ``n`` trials of a real Optuna study on ``spec.define_by_run``; return full configs."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        constants = spec.define_by_run(trial)
        assert not set(trial.params) & set(constants), "suggested and constant keys overlap"
        config = {**trial.params, **constants}
        configs.append(config)
        # A deterministic objective so that TPE (after its 10 random start-up trials) has
        # something to model.
        study.tell(trial, -abs(math.log10(config["lr"]) + 3) + (config["lr_eigvals"] or 0))
    return configs


def test_define_by_run_gives_complete_configs_and_conditional_lr_eigvals():
    spec = load_study(STUDIES / "fmnist-optuna.yaml")
    configs = _ask(spec, 30)
    for config in configs:
        assert set(config) == set(TRIAL_CONFIG_KEYS)
        check_config(config)
        assert isinstance(config["widths"], str)
        assert 1e-4 <= config["lr"] <= 1e-2
        if config["mode"] in EIGVAL_MODES:
            assert 1e-3 <= config["lr_eigvals"] <= 0.5
        assert config["epochs"] == 8 and config["seed"] == 0 and config["repeats"] == 1
    assert {c["mode"] for c in configs} == {"spectral-eigvals", "spectral-full", "dense"}
    assert {c["widths"] for c in configs} <= {"64", "256", "1024", "256-128"}


def test_define_by_run_suggests_lr_eigvals_only_for_modes_that_train_eigenvalues():
    spec = load_study(STUDIES / "fmnist-optuna.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        constants = spec.define_by_run(trial)
        mode = trial.params["mode"]
        seen.add(mode)
        assert ("lr_eigvals" in trial.params) == (mode in EIGVAL_MODES)
        if mode not in EIGVAL_MODES:
            assert constants["lr_eigvals"] is None
        study.tell(trial, 0.0)
    assert seen == {"spectral-eigvals", "spectral-full", "dense"}


def test_seeded_tpe_is_reproducible():
    spec = load_study(STUDIES / "fmnist-optuna.yaml")
    first, second = _ask(spec, 15, seed=3), _ask(spec, 15, seed=3)
    assert first == second
    assert _ask(spec, 15, seed=4) != first


def test_define_by_run_constants_when_an_axis_has_one_choice():
    spec = parse_study({**_base(), "model": {"modes": ["spectral-eigvals"], "widths": [[32, 16]]},
                        "training": {"lr": {"spectral-eigvals": 0.004}, "lr_eigvals": 0.02},
                        "search": {"type": "optuna", "n_trials": 3, "repeats": 3, "seed": 5,
                                   "space": {"batch_sizes": [64, 128], "optimizers": ["adam", "adamax"]}}})
    trial = optuna.create_study().ask()
    constants = spec.define_by_run(trial)
    assert set(trial.params) == {"batch_size", "optimizer"}
    assert constants["widths"] == [32, 16] and constants["lr"] == 0.004 and constants["lr_eigvals"] == 0.02
    assert constants["cell"] == "spectral-eigvals_w32-16_relu_both_s5-7"
    assert (constants["seed"], constants["repeats"]) == (5, 3)
    check_config({**trial.params, **constants})


def test_grid_and_optuna_methods_refuse_the_other_kind():
    grid = parse_study(_base())
    optuna_spec = load_study(STUDIES / "fmnist-optuna.yaml")
    with pytest.raises(ValueError, match="grid study"):
        grid.define_by_run(optuna.create_study().ask())
    with pytest.raises(ValueError, match="optuna study"):
        optuna_spec.trial_configs()


def test_ray_optuna_search_accepts_define_by_run():
    """The contract tune.py relies on: Ray's OptunaSearch turns the space into full configs."""
    from ray.tune.search.optuna import OptunaSearch

    spec = load_study(STUDIES / "fmnist-optuna.yaml")
    search = OptunaSearch(space=spec.define_by_run, metric=spec.search.metric,
                          mode=spec.search.direction, sampler=optuna.samplers.TPESampler(seed=0))
    for i in range(5):
        config = search.suggest(f"trial_{i}")
        assert set(config) == set(TRIAL_CONFIG_KEYS)
        check_config(config)


# ------------------------------------------------------------------------------ round trip, overrides

ROUND_TRIP = {
    "grid with everything": {
        "name": "all", "dataset": {"name": "cifar10", "path": "/d", "normalize": "standard"},
        "model": {"modes": ["dense", "spectral-full"], "widths": [[], 4, [8, 2]],
                  "activations": ["elu"], "eigenvalues": ["receiving", "both"], "bias": False},
        "training": {"epochs": 4, "batch_size": 32, "optimizer": "sgd",
                     "lr": {"default": 0.1, "dense": 0.2}, "lr_eigvals": {"spectral-full": 0.3}},
        "search": {"repeats": 2, "seed": 3, "metric": "test_loss"},
        "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 3},
        "resources": {"cpu": 2, "gpu": 0.25}, "storage": "s3://b/p?region=eu-west-1",
        "concurrency": 8, "retries": 0, "device": "cuda",
        "pruning": {"methods": ["random"], "fractions": [0.1], "retrain_epochs": 20},
        "testing": {"inject_failure": "always"}},
    "optuna": {
        "name": "o", "dataset": "synthetic",
        "model": {"modes": ["dense"], "widths": [16]},
        "search": {"type": "optuna", "n_trials": 9, "sampler": "random", "storage": "sqlite:///o.db",
                   "space": {"widths": [16, [32, 8]], "lr": {"low": 1e-4, "high": 1e-1, "log": False}}},
        "scheduler": "asha"},
}


@pytest.mark.parametrize("case", ROUND_TRIP)
def test_to_dict_round_trips(case, tmp_path):
    spec = parse_study(ROUND_TRIP[case])
    assert parse_study(spec.to_dict()) == spec
    assert load_study(write(tmp_path, spec.to_yaml())) == spec
    json.dumps(spec.to_dict())


def test_with_overrides(tmp_path):
    spec = parse_study(_base())
    changed = with_overrides(spec, storage=str(tmp_path / "elsewhere"), name="renamed")
    assert (changed.storage, changed.name) == (str(tmp_path / "elsewhere"), "renamed")
    assert changed.model == spec.model and spec.name == "t"
    assert with_overrides(spec) == spec
    with pytest.raises(StudyError, match=r"command line: --storage: cannot use 'nosuchscheme://x'"):
        with_overrides(spec, storage="nosuchscheme://x")
    with pytest.raises(StudyError, match=r"command line: --name: got 'a b'; expected a name"):
        with_overrides(spec, name="a b")


# ------------------------------------------------------------------------------ helpers



@pytest.mark.parametrize("gpu, ok", [
    (0, True), (0.0, True), (1, True), (2, True), (4.0, True), (0.5, True), (0.25, True),
    (0.2, True), (0.125, True), (0.1, True), (0.3333, True), (1.5, False), (0.3, False),
    (0.4, False), (0.75, False), (-1, False), (-0.5, False), (True, False), ("0.5", False),
    (float("nan"), False), (float("inf"), False)])
def test_is_valid_gpu(gpu, ok):
    assert is_valid_gpu(gpu) is ok


def test_study_module_does_not_import_ray_or_optuna():
    code = ("import sys, spectral_study.study as s; s.load_study('studies/quickstart.yaml'); "
            "bad = [m for m in ('ray', 'optuna') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=STUDIES.parent)


def test_optuna_storage_auto_lives_beside_the_results(tmp_path):
    spec = parse_study({**_base(), "storage": str(tmp_path), "search": {
        "type": "optuna", "n_trials": 2, "storage": "auto", "space": {"lr": {"low": 1e-4, "high": 1e-2}}}})
    assert spec.optuna_storage(f"{tmp_path}/t") == f"sqlite:///{tmp_path}/t/optuna.db"
    assert parse_study(spec.to_dict()) == spec
    with pytest.raises(StudyError, match="command line: --storage: search.storage 'auto' needs local results"):
        with_overrides(spec, storage="s3://bucket/prefix")


# ------------------------------------------------------------------------------ packed seeds

def test_pack_seeds_puts_each_cells_seeds_in_one_trial(tmp_path):
    spec = load_study(write(tmp_path, BASE + "search:\n  repeats: 3\n  seed: 2\n  pack_seeds: true\n"))
    configs = spec.trial_configs()
    assert spec.trial_count() == 12 and spec.scheduled_count() == 4 == len(configs)
    assert {(c.seed, c.repeats, c.pack_seeds) for c in configs} == {(2, 3, True)}
    assert configs[0].cell == "spectral-eigvals_w64_relu_both_s2-4"
    members = configs[0].members()
    assert [(c.seed, c.repeats, c.cell) for c in members] == [
        (s, 1, f"spectral-eigvals_w64_relu_both_s{s}") for s in (2, 3, 4)]
    unpacked = load_study(write(tmp_path, BASE + "search:\n  repeats: 3\n  seed: 2\n"))
    # Each seed's config is the one the unpacked grid runs, but for the packing fields.
    expected = {json.dumps({k: v for k, v in c.to_dict().items() if k not in ("pack_seeds", "cell")}, sort_keys=True)
                for c in unpacked.trial_configs()}
    got = {json.dumps({k: v for k, v in m.to_dict().items() if k not in ("pack_seeds", "cell")}, sort_keys=True)
           for c in configs for m in c.members()}
    assert got == expected
    assert parse_study(spec.to_dict()) == spec and spec.to_dict()["search"]["pack_seeds"] is True
    one = load_study(write(tmp_path, BASE + "search:\n  pack_seeds: true\n"))  # one seed: nothing to pack
    assert not any(c.pack_seeds for c in one.trial_configs()) and one.scheduled_count() == one.trial_count()


@pytest.mark.parametrize("text, match", [
    ("search:\n  repeats: 2\n  pack_seeds: yes please\n", r"search\.pack_seeds: got 'yes please'"),
    ("search:\n  repeats: 2\n  pack_seeds: true\nscheduler: asha\n",
     r"search\.pack_seeds: a scheduler \(asha\) would stop a packed trial as a whole"),
    ("search:\n  type: optuna\n  n_trials: 2\n  pack_seeds: true\n  space: {lr: {low: 0.001, high: 0.1}}\n",
     r"search\.pack_seeds: .*only for search\.type grid"),
])
def test_bad_pack_seeds_is_refused(tmp_path, text, match):
    assert re.search(match, study_error(tmp_path, BASE + text))


def test_member_training_and_checkpoint_every_are_training_settings(tmp_path):
    spec = load_study(write(tmp_path, BASE + "  member_training: batched\n  checkpoint_every: 5\n"))
    assert {(c.member_training, c.checkpoint_every) for c in spec.trial_configs()} == {("batched", 5)}
    assert re.search(r"training\.checkpoint_every: got 0; expected a positive integer",
                     study_error(tmp_path, BASE + "  checkpoint_every: 0\n"))
    assert re.search(r"training\.member_training: got 'gpu'; expected one of: auto, batched, sequential",
                     study_error(tmp_path, BASE + "  member_training: gpu\n"))
