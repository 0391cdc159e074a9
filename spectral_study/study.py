"""Study files: YAML -> a validated, frozen `StudySpec` -> trial configs (grid) or an Optuna space.

    spec = load_study("studies/quickstart.yaml")  # or StudyError: file, field, value, what's allowed
    configs = spec.trial_configs()                 # grid: one flat, JSON-able dict per trial
    OptunaSearch(space=spec.define_by_run, ...)    # optuna: suggested params + returned constants

Every trial config has exactly the keys of `TRIAL_CONFIG_KEYS`. The schema, its defaults and the
error format are documented in docs/studies.md. This module never imports Ray (validation runs
before Ray starts) nor Optuna (define-by-run only calls the trial it is given).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import yaml

from spectral_study._validate import (GPU_EXPECTED, At, StudyError, boolean, check_storage, choice,
                                      choices, distinct, integer, is_valid_gpu, load_yaml, number,
                                      one_of, table, text)
from spectral_study.data import DATASETS, NORMALIZATIONS
from spectral_study.models import ACTIVATIONS, EIGENVALUE_SETS, MODES, SPECTRAL_MODES
from spectral_study.spectral import EIGVAL_INITS, PHI_INITS
from spectral_study.train import METRICS, OPTIMIZERS
from spectral_study.widths import decode_widths, encode_widths

__all__ = ["StudyError", "StudySpec", "DatasetSpec", "ModelAxes", "TrainingSpec", "PerMode",
           "SearchSpec", "SpaceSpec", "FloatRange", "SchedulerSpec", "ResourceSpec", "PruningSpec",
           "load_study", "parse_study", "decode_widths", "encode_widths", "cell_label", "is_valid_gpu",
           "TRIAL_CONFIG_KEYS", "EIGVAL_MODES", "PRUNING_METHODS"]

# Modes whose eigenvalues are trained, so lr_eigvals means something (spectral-eigvecs freezes them).
EIGVAL_MODES = tuple(m for m in SPECTRAL_MODES if m != "spectral-eigvecs")
PRUNING_METHODS = ("eigenvalue", "eigen-norm", "connectivity", "random")
SEARCH_TYPES, SAMPLERS, DIRECTIONS = ("grid", "optuna"), ("tpe", "random"), ("max", "min")
SCHEDULERS, DEVICES, FAILURES = ("none", "asha"), ("auto", "cpu", "cuda"), ("first_attempt", "always")
TRIAL_CONFIG_KEYS = ("cell", "dataset", "data_path", "normalize", "mode", "widths", "activation",
                     "eigenvalues", "subset_seed", "phi_init", "eigval_init", "bias", "optimizer", "lr", "lr_eigvals", "batch_size", "epochs",
                     "seed", "repeats", "device", "pruning", "inject_failure")
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"  # it names a results folder
_NAME_EXPECTED = "a name of letters, digits, '.', '_' and '-' (it names the results folder)"
_WIDTHS_EXPECTED = "a positive integer (one hidden layer) or a list of them ([] is a perceptron)"

Widths = tuple[int, ...]


# ---------------------------------------------------------------------------------- widths

def cell_label(mode: str, widths: Widths | list[int], activation: str, eigenvalues: str,
               seed: int, repeats: int = 1, subset_seed: int | None = None) -> str:
    """A readable trial label for logs, e.g. ``spectral-eigvals_w256_relu_both_s0``."""
    seeds = f"s{seed}" if repeats == 1 else f"s{seed}-{seed + repeats - 1}"
    subset = "" if subset_seed is None else f"_sub{subset_seed}"
    return f"{mode}_w{encode_widths(widths)}_{activation}_{eigenvalues}{subset}_{seeds}"


# ---------------------------------------------------------------------------------- the spec

@dataclass(frozen=True)
class DatasetSpec:
    name: str
    path: str | None = None
    normalize: str = "unit"


@dataclass(frozen=True)
class ModelAxes:
    """The `model:` section: grid axes (or Optuna choices) for the network."""

    modes: tuple[str, ...]
    widths: tuple[Widths, ...]
    activations: tuple[str, ...] = ("relu",)
    eigenvalues: tuple[str, ...] = ("both",)
    bias: bool = True
    # dense-restricted only: seeds of the random subset of trained weights, one grid axis, so
    # several subsets can be compared at one initialisation (claim C3). None: drawn from the seed.
    subset_seeds: tuple[int, ...] | None = None
    # Initialisation of spectral layers (see spectral_study.models): the authors' 2020-21 code
    # ("uniform": φ ~ U(±0.2), λ ~ U(±0.5)) or their 2022 library ("glorot" φ, "ones": λ_out = 1).
    phi_init: str = "uniform"
    eigval_init: str = "uniform"

    def subsets_for(self, mode: str) -> tuple[int | None, ...]:
        return self.subset_seeds if mode == "dense-restricted" and self.subset_seeds else (None,)

    def eigenvalues_for(self, mode: str) -> tuple[str, ...]:
        """A dense network has no eigenvalues: one cell, not one per set (which would run the
        same trial twice). dense-restricted keeps the axis: the set fixes how many weights it trains."""
        return self.eigenvalues[:1] if mode == "dense" else self.eigenvalues


@dataclass(frozen=True)
class PerMode:
    """A value for every mode: ``default``, unless ``by_mode`` names the mode."""

    default: float | None
    by_mode: tuple[tuple[str, float | None], ...] = ()

    def for_mode(self, mode: str) -> float | None:
        return dict(self.by_mode).get(mode, self.default)

    def to_yaml_value(self) -> float | None | dict:
        return {"default": self.default, **dict(self.by_mode)} if self.by_mode else self.default


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "adam"
    lr: PerMode = PerMode(1e-3)
    lr_eigvals: PerMode = PerMode(None)  # None: the same as lr


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = True


@dataclass(frozen=True)
class SpaceSpec:
    """Optuna choices, resolved: a categorical axis with one choice is a constant, not suggested."""

    modes: tuple[str, ...]
    widths: tuple[Widths, ...]
    activations: tuple[str, ...]
    eigenvalues: tuple[str, ...]
    optimizers: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    lr: FloatRange | None = None
    lr_eigvals: FloatRange | None = None


@dataclass(frozen=True)
class SearchSpec:
    type: str = "grid"
    repeats: int = 1
    seed: int = 0
    metric: str = "test_accuracy"
    direction: str = "max"
    n_trials: int | None = None  # optuna only, like the three below
    sampler: str | None = None
    storage: str | None = None
    space: SpaceSpec | None = None


@dataclass(frozen=True)
class SchedulerSpec:
    type: str = "none"
    grace_period: int | None = None  # asha only: epochs before a trial may be stopped
    reduction_factor: float | None = None


@dataclass(frozen=True)
class ResourceSpec:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class PruningSpec:
    methods: tuple[str, ...] = PRUNING_METHODS
    fractions: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.9, 0.95)
    retrain_epochs: int = 5


@dataclass(frozen=True)
class StudySpec:
    name: str
    dataset: DatasetSpec
    model: ModelAxes
    training: TrainingSpec = TrainingSpec()
    search: SearchSpec = SearchSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourceSpec = ResourceSpec()
    storage: str = "results"
    concurrency: int | None = None
    retries: int = 2
    device: str = "auto"
    pruning: PruningSpec | None = None
    inject_failure: str | None = None  # test-only, `testing.inject_failure` in YAML
    failing_modes: tuple[str, ...] | None = None  # test-only: the modes it applies to (None: all)
    source: str = field(default="<study>", compare=False)

    # -------------------------------------------------------------- expansion

    def trial_count(self) -> int:
        """How many trials the study runs."""
        if self.search.type == "optuna":
            return self.search.n_trials
        m = self.model
        cells = sum(len(m.subsets_for(mode)) * len(m.eigenvalues_for(mode)) for mode in m.modes)
        return cells * len(m.widths) * len(m.activations) * self.search.repeats

    def trial_configs(self) -> list[dict]:
        """The grid, one complete trial config per (seed, mode, widths, activation, eigenvalues).

        The seed is the outer loop: every cell's first seed comes before any second seed, so
        a study cut short still covers the whole grid. Each trial trains one seed (repeats=1).
        """
        if self.search.type != "grid":
            raise ValueError(f"{self.source}: trial_configs() is for grid studies; "
                             "this is an optuna study: use define_by_run")
        m = self.model
        return [self._config(mode, list(widths), activation, eigenvalues, self.training.optimizer,
                             self.training.batch_size, self.search.seed + r, repeats=1,
                             subset_seed=subset_seed)
                for r in range(self.search.repeats)
                for mode, widths, activation in itertools.product(m.modes, m.widths, m.activations)
                for eigenvalues in m.eigenvalues_for(mode)
                for subset_seed in m.subsets_for(mode)]

    def define_by_run(self, trial: Any) -> dict:
        """Optuna define-by-run space (Ray Tune's ``OptunaSearch(space=spec.define_by_run)``).

        Suggests every axis with more than one choice (names: mode, widths as "256-128",
        activation, eigenvalues, optimizer, batch_size) and the lr ranges; ``lr_eigvals`` only
        for modes that train eigenvalues. Returns the rest of the trial config: suggested
        params and returned constants are disjoint and together hold `TRIAL_CONFIG_KEYS`.
        Each trial trains ``search.repeats`` seeds in lockstep and reports their mean.
        """
        space = self.search.space
        if space is None:
            raise ValueError(f"{self.source}: define_by_run() is for optuna studies; "
                             "this is a grid study: use trial_configs")
        constants: dict[str, Any] = {}

        def pick(name: str, options: tuple) -> Any:
            if len(options) > 1:
                return trial.suggest_categorical(name, list(options))
            constants[name] = options[0]
            return options[0]

        mode = pick("mode", space.modes)
        if len(space.widths) > 1:
            widths = trial.suggest_categorical("widths", [encode_widths(w) for w in space.widths])
        else:
            widths = constants["widths"] = list(space.widths[0])
        activation = pick("activation", space.activations)
        eigenvalues = pick("eigenvalues", space.eigenvalues)
        pick("optimizer", space.optimizers)
        pick("batch_size", space.batch_sizes)
        if space.lr is not None:
            trial.suggest_float("lr", space.lr.low, space.lr.high, log=space.lr.log)
        else:
            constants["lr"] = self.training.lr.for_mode(mode)
        if mode not in EIGVAL_MODES:
            constants["lr_eigvals"] = None
        elif space.lr_eigvals is not None:
            r = space.lr_eigvals
            trial.suggest_float("lr_eigvals", r.low, r.high, log=r.log)
        else:
            constants["lr_eigvals"] = self.training.lr_eigvals.for_mode(mode)
        constants["cell"] = cell_label(mode, decode_widths(widths), activation, eigenvalues,
                                       self.search.seed, self.search.repeats)
        constants.update(self._constants(self.search.seed, self.search.repeats))
        constants["inject_failure"] = self._failure_for(mode)
        constants["subset_seed"] = None
        return constants

    def _config(self, mode: str, widths: list[int], activation: str, eigenvalues: str,
                optimizer: str, batch_size: int, seed: int, *, repeats: int,
                subset_seed: int | None = None) -> dict:
        config = {
            "cell": cell_label(mode, widths, activation, eigenvalues, seed, repeats, subset_seed),
            "mode": mode, "widths": widths, "activation": activation, "eigenvalues": eigenvalues,
            "subset_seed": subset_seed,
            "optimizer": optimizer, "lr": self.training.lr.for_mode(mode),
            "lr_eigvals": self.training.lr_eigvals.for_mode(mode) if mode in EIGVAL_MODES else None,
            "batch_size": batch_size, **self._constants(seed, repeats),
            "inject_failure": self._failure_for(mode)}
        return {key: config[key] for key in TRIAL_CONFIG_KEYS}

    def _failure_for(self, mode: str) -> str | None:
        """The test-only fault to inject into a trial of ``mode``."""
        if self.failing_modes is not None and mode not in self.failing_modes:
            return None
        return self.inject_failure

    def _constants(self, seed: int, repeats: int) -> dict:
        p = self.pruning
        return {
            "dataset": self.dataset.name, "data_path": self.dataset.path,
            "normalize": self.dataset.normalize, "bias": self.model.bias,
            "phi_init": self.model.phi_init, "eigval_init": self.model.eigval_init,
            "epochs": self.training.epochs, "seed": seed, "repeats": repeats, "device": self.device,
            "pruning": None if p is None else {"methods": list(p.methods), "fractions": list(p.fractions),
                                               "retrain_epochs": p.retrain_epochs},
            "inject_failure": self.inject_failure}

    # -------------------------------------------------------------- serialisation

    def to_dict(self) -> dict:
        """The resolved study, every default filled in; `parse_study` reads it back equal."""
        t, s, sch, p = self.training, self.search, self.scheduler, self.pruning
        search: dict[str, Any] = {"type": s.type, "repeats": s.repeats, "seed": s.seed,
                                  "metric": s.metric, "direction": s.direction}
        if s.type == "optuna":
            sp = s.space
            search.update(n_trials=s.n_trials, sampler=s.sampler, storage=s.storage, space={
                "modes": list(sp.modes), "widths": _widths_to_yaml(sp.widths),
                "activations": list(sp.activations), "eigenvalues": list(sp.eigenvalues),
                "optimizers": list(sp.optimizers), "batch_sizes": list(sp.batch_sizes),
                **{k: vars(r).copy() for k, r in (("lr", sp.lr), ("lr_eigvals", sp.lr_eigvals)) if r}})
        return {
            "name": self.name,
            "dataset": vars(self.dataset).copy(),
            "model": {"modes": list(self.model.modes), "widths": _widths_to_yaml(self.model.widths),
                      "activations": list(self.model.activations),
                      "eigenvalues": list(self.model.eigenvalues), "bias": self.model.bias,
                      "subset_seeds": None if self.model.subset_seeds is None else list(self.model.subset_seeds),
                      "phi_init": self.model.phi_init, "eigval_init": self.model.eigval_init},
            "training": {"epochs": t.epochs, "batch_size": t.batch_size, "optimizer": t.optimizer,
                         "lr": t.lr.to_yaml_value(), "lr_eigvals": t.lr_eigvals.to_yaml_value()},
            "search": search,
            "scheduler": {"type": sch.type} if sch.type == "none" else vars(sch).copy(),
            "resources": {"cpu": self.resources.cpu, "gpu": self.resources.gpu},
            "storage": self.storage, "concurrency": self.concurrency, "retries": self.retries,
            "device": self.device,
            "pruning": None if p is None else {"methods": list(p.methods), "fractions": list(p.fractions),
                                               "retrain_epochs": p.retrain_epochs},
            "testing": {"inject_failure": self.inject_failure,
                        "failing_modes": None if self.failing_modes is None else list(self.failing_modes)},
        }

    def to_yaml(self) -> str:
        """`to_dict` as YAML, to save beside the results (``results/<name>/study.yaml``)."""
        header = f"# Resolved by spectral-study from {self.source}; every default filled in.\n"
        return header + yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False)

    def with_overrides(self, *, storage: str | None = None, name: str | None = None) -> StudySpec:
        """The study with command-line overrides (``--storage``, ``--name``), validated."""
        at = At("command line")
        changes: dict[str, Any] = {}
        if storage is not None:
            changes["storage"] = check_storage(at.key("--storage"), storage)
        if name is not None:
            changes["name"] = text(at.key("--name"), name, _NAME_EXPECTED, pattern=_NAME)
        return replace(self, **changes)


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style (``[64, 256]``) for lists of scalars."""


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data,
    flow_style=not any(isinstance(item, (list, dict)) for item in data)))


def _widths_to_yaml(axis: tuple[Widths, ...]) -> list:
    return [w[0] if len(w) == 1 else list(w) for w in axis]


# ---------------------------------------------------------------------------------- parsing

RESOLVED_STUDY_FILE = "study.yaml"  # the resolved study, saved beside a study's results


def load_resolved_study(results_root) -> StudySpec:
    """The resolved study a run saved beside its results (``<results>/study.yaml``)."""
    from spectral_study.results import read_text  # pyarrow: only when results are read

    text = read_text(results_root, RESOLVED_STUDY_FILE)
    return parse_study(yaml.safe_load(text), f"{results_root}/{RESOLVED_STUDY_FILE}")


def load_study(path) -> StudySpec:
    """Read and validate a study file; any problem raises one `StudyError`."""
    return parse_study(load_yaml(path), source=str(path))


def parse_study(mapping: Any, source: str = "<study>") -> StudySpec:
    """Validate a study given as a mapping (a parsed YAML file, or `StudySpec.to_dict()`)."""
    root = At(source)
    raw = table(root, mapping, ("name", "dataset", "model", "training", "search", "scheduler",
                                "resources", "storage", "concurrency", "retries", "device",
                                "pruning", "testing"),
                required={"name": _NAME_EXPECTED,
                          "dataset": f"a dataset name ({one_of(DATASETS)}) or a mapping with name"},
                hints={"inject_failure": "it belongs under testing: (a test-only fault injection)"})
    name = text(root.key("name"), raw["name"], _NAME_EXPECTED, pattern=_NAME)
    dataset = _dataset(root.key("dataset"), raw["dataset"])
    raw_space = _peek_space(raw.get("search"))
    model = _model(root.key("model"), raw.get("model"), raw_space)
    training = _training(root.key("training"), _section(raw, "training"))
    search = _search(root.key("search"), _section(raw, "search"), model, training)
    scheduler = _scheduler(root.key("scheduler"), raw.get("scheduler"), training.epochs)
    resources = _resources(root.key("resources"), _section(raw, "resources"))
    device = choice(root.key("device"), raw.get("device", "auto"), DEVICES)
    if resources.gpu > 0 and device == "cpu":
        raise root.key("device").error(device, "'auto' or 'cuda' when resources.gpu > 0 "
                                               "(the reserved GPU would sit idle)")
    if resources.gpu == 0 and device == "cuda":
        raise root.key("device").error(device, "'auto' or 'cpu' when resources.gpu is 0 "
                                               "(Ray hides the GPUs from trials that reserve none)")
    concurrency = raw.get("concurrency")
    if concurrency is not None:
        concurrency = integer(root.key("concurrency"), concurrency, minimum=1,
                              expected="a positive integer or null (as many as resources allow)")
    testing = table(root.key("testing"), _section(raw, "testing"), ("inject_failure", "failing_modes"))
    inject = testing.get("inject_failure")
    failing_modes = testing.get("failing_modes")
    return StudySpec(
        name=name, dataset=dataset, model=model, training=training, search=search,
        scheduler=scheduler, resources=resources,
        storage=check_storage(root.key("storage"), raw.get("storage", "results")),
        concurrency=concurrency, retries=integer(root.key("retries"), raw.get("retries", 2)),
        device=device, pruning=_pruning(root.key("pruning"), raw.get("pruning")),
        inject_failure=None if inject is None else choice(
            root.key("testing").key("inject_failure"), inject, FAILURES),
        failing_modes=None if failing_modes is None else choices(
            root.key("testing").key("failing_modes"), failing_modes, MODES),
        source=source)


def _section(raw: Mapping, key: str) -> Any:
    """A section's mapping; absent or empty (``training:`` with nothing under it) means defaults."""
    value = raw.get(key)
    return {} if value is None else value


def _peek_space(search: Any) -> Mapping:
    space = search.get("space") if isinstance(search, Mapping) else None
    return space if isinstance(space, Mapping) else {}


def _dataset(at: At, value: Any) -> DatasetSpec:
    if isinstance(value, str):
        return DatasetSpec(choice(at, value, DATASETS))
    raw = table(at, value, ("name", "path", "normalize"), required={"name": one_of(DATASETS)})
    path = raw.get("path")
    if path is not None:
        path = text(at.key("path"), path, "a directory holding the data set's files, or null")
    return DatasetSpec(name=choice(at.key("name"), raw["name"], DATASETS), path=path,
                       normalize=choice(at.key("normalize"), raw.get("normalize", "unit"), NORMALIZATIONS))


def _widths_axis(at: At, value: Any) -> tuple[Widths, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    return distinct(at, value, _widths_entry, _WIDTHS_EXPECTED)


def _widths_entry(at: At, value: Any) -> Widths:
    if isinstance(value, list):
        return tuple(integer(at.index(i), w, minimum=1) for i, w in enumerate(value))
    return (integer(at, value, minimum=1, expected=_WIDTHS_EXPECTED),)


def _model(at: At, value: Any, raw_space: Mapping) -> ModelAxes:
    """The model section; modes and widths may instead come from an Optuna search.space."""
    expected = {"modes": f"{one_of(MODES)}, or a list of them",
                "widths": f"a list; each entry {_WIDTHS_EXPECTED}"}
    required = {k: v for k, v in expected.items() if k not in raw_space}
    if value is None:
        if required:
            raise at.fail("missing; expected a mapping with at least modes and widths")
        value = {}
    raw = table(at, value, ("modes", "widths", "activations", "eigenvalues", "bias", "subset_seeds",
                            "phi_init", "eigval_init"),
                required=required)
    subset_seeds = raw.get("subset_seeds")
    if subset_seeds is not None:
        subset_seeds = distinct(at.key("subset_seeds"), subset_seeds,
                                lambda item_at, item: integer(item_at, item), "an integer >= 0")
    space_at = At(at.source, "search.space")
    modes_at, widths_at = ((at if k in raw else space_at).key(k) for k in ("modes", "widths"))
    return ModelAxes(
        modes=choices(modes_at, raw.get("modes", raw_space.get("modes")), MODES),
        widths=_widths_axis(widths_at, raw.get("widths", raw_space.get("widths"))),
        activations=choices(at.key("activations"), raw.get("activations", "relu"), ACTIVATIONS),
        eigenvalues=choices(at.key("eigenvalues"), raw.get("eigenvalues", "both"), EIGENVALUE_SETS),
        bias=boolean(at.key("bias"), raw.get("bias", True)), subset_seeds=subset_seeds,
        phi_init=choice(at.key("phi_init"), raw.get("phi_init", "uniform"), PHI_INITS),
        eigval_init=choice(at.key("eigval_init"), raw.get("eigval_init", "uniform"), EIGVAL_INITS))


def _per_mode(at: At, value: Any, default: float | None, modes: tuple[str, ...]) -> PerMode:
    """A positive number (null allowed where ``default`` is None), or ``{default: ..., <mode>: ...}``."""
    nullable = default is None
    expected = "a positive number" + (" or null (the same as lr)" if nullable else "")

    def read(item_at: At, item: Any) -> float | None:
        return None if nullable and item is None else number(item_at, item, expected=expected)

    if not isinstance(value, Mapping):
        return PerMode(read(at, value))
    if not value:
        raise at.error(value, f"{expected}, or a mapping from 'default' and modes to one")
    raw = table(at, value, ("default", *modes), hints={
        m: "only modes that train eigenvalues take an lr_eigvals" for m in MODES if m not in modes})
    by_mode = tuple((m, read(at.key(m), raw[m])) for m in modes if m in raw)
    return PerMode(read(at.key("default"), raw.get("default", default)), by_mode)


def _training(at: At, value: Any) -> TrainingSpec:
    raw = table(at, value, ("epochs", "batch_size", "optimizer", "lr", "lr_eigvals"))
    return TrainingSpec(
        epochs=integer(at.key("epochs"), raw.get("epochs", 10), minimum=1),
        batch_size=integer(at.key("batch_size"), raw.get("batch_size", 256), minimum=1),
        optimizer=choice(at.key("optimizer"), raw.get("optimizer", "adam"), OPTIMIZERS),
        lr=_per_mode(at.key("lr"), raw.get("lr", 1e-3), 1e-3, MODES),
        lr_eigvals=_per_mode(at.key("lr_eigvals"), raw.get("lr_eigvals"), None, EIGVAL_MODES))


_OPTUNA_ONLY = ("n_trials", "sampler", "storage", "space")


def _search(at: At, value: Any, model: ModelAxes, training: TrainingSpec) -> SearchSpec:
    keys = ("type", "repeats", "seed", "metric", "direction")
    kind = "grid"
    if isinstance(value, Mapping):  # otherwise `table` below says what a search should be
        kind = choice(at.key("type"), value.get("type", "grid"), SEARCH_TYPES)
    if kind == "optuna":
        raw = table(at, value, keys + _OPTUNA_ONLY,
                    required={"n_trials": "a positive integer (how many Optuna trials to run)"})
    else:
        raw = table(at, value, keys, hints={k: "only for search.type optuna" for k in _OPTUNA_ONLY})
    metric = choice(at.key("metric"), raw.get("metric", "test_accuracy"), METRICS)
    default_direction = "min" if metric.endswith(("_loss", "_seconds")) else "max"
    spec = SearchSpec(
        type=kind, repeats=integer(at.key("repeats"), raw.get("repeats", 1), minimum=1),
        seed=integer(at.key("seed"), raw.get("seed", 0)), metric=metric,
        direction=choice(at.key("direction"), raw.get("direction", default_direction), DIRECTIONS))
    if kind == "grid":
        return spec
    storage = raw.get("storage")
    if storage is not None:
        storage = text(at.key("storage"), storage, "an Optuna storage URL such as sqlite:///optuna.db, "
                       "or null", pattern=r"[A-Za-z][A-Za-z0-9+]*://.*")
    return replace(spec, n_trials=integer(at.key("n_trials"), raw["n_trials"], minimum=1),
                   sampler=choice(at.key("sampler"), raw.get("sampler", "tpe"), SAMPLERS),
                   storage=storage, space=_space(at.key("space"), _section(raw, "space"), model, training))


def _space(at: At, value: Any, model: ModelAxes, training: TrainingSpec) -> SpaceSpec:
    raw = table(at, value, ("modes", "widths", "activations", "eigenvalues", "optimizers",
                            "batch_sizes", "lr", "lr_eigvals"))

    def batch_size(item_at: At, item: Any) -> int:
        return integer(item_at, item, minimum=1)

    space = SpaceSpec(
        modes=choices(at.key("modes"), raw["modes"], MODES) if "modes" in raw else model.modes,
        widths=_widths_axis(at.key("widths"), raw["widths"]) if "widths" in raw else model.widths,
        activations=(choices(at.key("activations"), raw["activations"], ACTIVATIONS)
                     if "activations" in raw else model.activations),
        eigenvalues=(choices(at.key("eigenvalues"), raw["eigenvalues"], EIGENVALUE_SETS)
                     if "eigenvalues" in raw else model.eigenvalues),
        optimizers=(choices(at.key("optimizers"), raw["optimizers"], OPTIMIZERS)
                    if "optimizers" in raw else (training.optimizer,)),
        batch_sizes=(distinct(at.key("batch_sizes"), raw["batch_sizes"], batch_size, "a positive integer")
                     if "batch_sizes" in raw else (training.batch_size,)),
        lr=_range(at.key("lr"), raw["lr"]) if "lr" in raw else None,
        lr_eigvals=_range(at.key("lr_eigvals"), raw["lr_eigvals"]) if "lr_eigvals" in raw else None)
    categorical = (space.modes, space.widths, space.activations, space.eigenvalues,
                   space.optimizers, space.batch_sizes)
    if all(len(axis) == 1 for axis in categorical) and space.lr is None and space.lr_eigvals is None:
        raise at.error(dict(value), "at least one axis with two or more choices, or an lr range")
    return space


def _range(at: At, value: Any) -> FloatRange:
    raw = table(at, value, ("low", "high", "log"), required={"low": "a positive number",
                                                             "high": "a positive number"})
    low = number(at.key("low"), raw["low"])
    high = number(at.key("high"), raw["high"])
    if not low < high:
        raise at.error({"low": raw["low"], "high": raw["high"]}, "low < high")
    return FloatRange(low, high, boolean(at.key("log"), raw.get("log", True)))


def _scheduler(at: At, value: Any, epochs: int) -> SchedulerSpec:
    if value is None or isinstance(value, str):
        value = {"type": "none" if value is None else choice(at, value, SCHEDULERS)}
    raw = table(at, value, ("type", "grace_period", "reduction_factor"),
                required={"type": f"{one_of(SCHEDULERS)}"})
    kind = choice(at.key("type"), raw["type"], SCHEDULERS)
    if kind == "none":
        table(at, raw, ("type",), hints={"grace_period": "only for type asha",
                                         "reduction_factor": "only for type asha"})
        return SchedulerSpec("none")
    grace = integer(at.key("grace_period"), raw.get("grace_period", 1), minimum=1, maximum=epochs,
                    expected=f"an integer from 1 to training.epochs ({epochs})")
    factor = number(at.key("reduction_factor"), raw.get("reduction_factor", 2), above=1,
                    expected="a number > 1")
    return SchedulerSpec("asha", grace, factor)


def _resources(at: At, value: Any) -> ResourceSpec:
    raw = table(at, value, ("cpu", "gpu"))
    gpu = raw.get("gpu", 0)
    if not is_valid_gpu(gpu):
        raise at.key("gpu").error(gpu, GPU_EXPECTED)
    return ResourceSpec(cpu=number(at.key("cpu"), raw.get("cpu", 1), expected="a positive number of CPUs"),
                        gpu=float(gpu))


def _pruning(at: At, value: Any) -> PruningSpec | None:
    if value is None:
        return None
    raw = table(at, value, ("methods", "fractions", "retrain_epochs"))
    default = PruningSpec()

    def fraction(item_at: At, item: Any) -> float:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item < 1:
            raise item_at.error(item, "a fraction of hidden nodes to remove, strictly between 0 and 1")
        return float(item)

    return PruningSpec(
        methods=(choices(at.key("methods"), raw["methods"], PRUNING_METHODS)
                 if "methods" in raw else default.methods),
        fractions=(distinct(at.key("fractions"), raw["fractions"], fraction, "strictly between 0 and 1")
                   if "fractions" in raw else default.fractions),
        retrain_epochs=integer(at.key("retrain_epochs"), raw.get("retrain_epochs", default.retrain_epochs)))
