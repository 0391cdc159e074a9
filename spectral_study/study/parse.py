"""Study files -> a validated, frozen `StudySpec`; any problem is one `StudyError` naming the
file, the field, the value and what is allowed:

    studies/x.yaml: model.widths[2]: got -4; expected a positive integer

The constants a study sets for every trial (``model.bias``, ``training.epochs``, ``device``,
``pruning`` …) are read generically: each is a `TrialConfig` field whose `setting` names its
section, and its own check validates it. What is read by hand here is what varies between
trials (the grid axes, the per-mode learning rates, the search) and the runner's settings.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from spectral_study._validate import (
    GPU_EXPECTED,
    At,
    StudyError,
    boolean,
    check_storage,
    choice,
    choices,
    distinct,
    integer,
    is_uri,
    is_valid_gpu,
    load_yaml,
    number,
    table,
    text,
)
from spectral_study.checks import Check, Integer, ListOf, Widths, one_of
from spectral_study.config import TrialConfig, TrialConfigError, study_constants
from spectral_study.study.spec import (
    FloatRange,
    LearningRates,
    ModelAxes,
    PerMode,
    ResourceSpec,
    SchedulerSpec,
    SearchSpec,
    SpaceSpec,
    StudySpec,
    TrackingSpec,
)
from spectral_study.vocabulary import (
    ACTIVATIONS,
    DATASETS,
    EIGENVALUE_SETS,
    EIGVAL_MODES,
    EPOCH_METRICS,
    MODES,
    OPTIMIZERS,
)

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"  # it names a results folder
NAME_EXPECTED = "a name of letters, digits, '.', '_' and '-' (it names the results folder)"
SEARCH_TYPES, SAMPLERS, DIRECTIONS, SCHEDULERS = ("grid", "optuna"), ("tpe", "random"), ("max", "min"), ("none", "asha")


class _WidthsEntry(Check):
    """One architecture of a widths axis: an int (one hidden layer) or a list of them."""

    expected = "a positive integer (one hidden layer) or a list of them ([] is a perceptron)"

    def __call__(self, value: Any) -> tuple[int, ...]:
        if isinstance(value, (list, tuple)):
            return Widths()(value)
        return (Integer(1, expected=self.expected)(value),)


_WIDTHS_AXIS = ListOf(_WidthsEntry(), single=True)
# Keys each section holds besides the trial constants `TrialConfig` declares for it.
_SECTION_KEYS = {
    "": ("name", "dataset", "model", "training", "search", "scheduler", "resources", "storage",
         "concurrency", "retries", "testing", "tracking"),
    "model": ("modes", "widths", "activations", "eigenvalues", "subset_seeds"),
    "training": ("lr", "lr_eigvals"),
    "testing": ("failing_modes",),
    "dataset": (),
}
_OPTUNA_ONLY = ("n_trials", "sampler", "storage", "space")


def load_study(path) -> StudySpec:
    """Read and validate a study file; any problem raises one `StudyError`."""
    return parse_study(load_yaml(path), source=str(path))


def parse_study(mapping: Any, source: str = "<study>") -> StudySpec:
    """Validate a study given as a mapping (a parsed YAML file, or `StudySpec.to_dict()`)."""
    root = At(source)
    raw = table(root, mapping, _keys(""),
                required={"name": NAME_EXPECTED,
                          "dataset": f"a dataset name ({one_of(DATASETS)}) or a mapping with name"},
                hints={"inject_failure": "it belongs under testing: (a test-only fault injection)"})
    if isinstance(raw["dataset"], str):  # the short form: `dataset: fashion-mnist`
        raw["dataset"] = {"name": choice(root.key("dataset"), raw["dataset"], DATASETS)}
    sections = {"": raw, **{name: table(root.key(name), _section(raw, name), _keys(name))
                            for name in ("training", "testing")},
                "dataset": table(root.key("dataset"), raw["dataset"], _keys("dataset"),
                                 required={"name": one_of(DATASETS)})}
    raw_space = _peek_space(raw.get("search"))
    model_raw = _model_section(root.key("model"), raw.get("model"), raw_space)
    sections["model"] = model_raw
    base = _base_config(root, sections)
    model = _model(root.key("model"), model_raw, raw_space)
    rates = _rates(root.key("training"), sections["training"])
    search = _search(root.key("search"), _section(raw, "search"), model, base)
    scheduler = _scheduler(root.key("scheduler"), raw.get("scheduler"), base.epochs)
    if search.pack_seeds and scheduler.type != "none":
        raise root.key("search").key("pack_seeds").fail(
            f"a scheduler ({scheduler.type}) would stop a packed trial as a whole, every seed of its cell "
            "together: use pack_seeds: false, or scheduler: none")
    resources = _resources(root.key("resources"), _section(raw, "resources"))
    _check_device(root.key("device"), base.device, resources)
    concurrency = raw.get("concurrency")
    if concurrency is not None:
        concurrency = integer(root.key("concurrency"), concurrency, minimum=1,
                              expected="a positive integer or null (as many as resources allow)")
    failing_modes = sections["testing"].get("failing_modes")
    storage = check_storage(root.key("storage"), raw.get("storage", "results"))
    _check_optuna_storage(root.key("search").key("storage"), search, storage)
    return StudySpec(
        name=text(root.key("name"), raw["name"], NAME_EXPECTED, pattern=NAME_PATTERN),
        base=base, model=model, rates=rates, search=search,
        scheduler=scheduler,
        resources=resources,
        storage=storage, concurrency=concurrency, retries=integer(root.key("retries"), raw.get("retries", 2)),
        failing_modes=None if failing_modes is None else choices(
            root.key("testing").key("failing_modes"), failing_modes, MODES),
        tracking=_tracking(root.key("tracking"), _section(raw, "tracking")),
        source=source)


def with_overrides(spec: StudySpec, *, storage: str | None = None, name: str | None = None) -> StudySpec:
    """The study with command-line overrides (``--storage``, ``--name``), validated."""
    at = At("command line")
    changes: dict[str, Any] = {}
    if storage is not None:
        changes["storage"] = check_storage(at.key("--storage"), storage)
        _check_optuna_storage(at.key("--storage"), spec.search, changes["storage"])
    if name is not None:
        changes["name"] = text(at.key("--name"), name, NAME_EXPECTED, pattern=NAME_PATTERN)
    return replace(spec, **changes)


# ------------------------------------------------------------------------ the constants

def _keys(section: str) -> tuple[str, ...]:
    constants = tuple(f.metadata.get("key") or f.name for f in study_constants()
                      if f.metadata["section"] == section)
    return _SECTION_KEYS[section] + constants


def _base_config(root: At, sections: Mapping[str, Mapping]) -> TrialConfig:
    """Every study constant, each read with its `TrialConfig` field's check."""
    values = {}
    for f in study_constants():
        section = f.metadata["section"]
        key = f.metadata.get("key") or f.name
        at = root.key(section).key(key) if section else root.key(key)
        value = sections[section].get(key, f.default)
        values[f.name] = at.check(f.metadata["check"], value)
    try:
        return TrialConfig(**values)
    except TrialConfigError as error:  # a rule across fields, e.g. pruning.at_epochs vs epochs
        if error.invalid is None:
            raise root.fail(str(error)) from None
        raise root.located(error.invalid) from None


def _section(raw: Mapping, key: str) -> Any:
    """A section's mapping; absent or empty (``training:`` with nothing under it) means defaults."""
    value = raw.get(key)
    return {} if value is None else value


def _peek_space(search: Any) -> Mapping:
    space = search.get("space") if isinstance(search, Mapping) else None
    return space if isinstance(space, Mapping) else {}


# ------------------------------------------------------------------------ what varies

def _model_section(at: At, value: Any, raw_space: Mapping) -> dict:
    """The model section's mapping; modes and widths may instead come from an Optuna search.space."""
    expected = {"modes": f"{one_of(MODES)}, or a list of them",
                "widths": "a list; each entry a positive integer (one hidden layer) or a list of them"}
    required = {k: v for k, v in expected.items() if k not in raw_space}
    if value is None:
        if required:
            raise at.fail("missing; expected a mapping with at least modes and widths")
        value = {}
    return table(at, value, _keys("model"), required=required)


def _model(at: At, raw: Mapping, raw_space: Mapping) -> ModelAxes:
    subset_seeds = raw.get("subset_seeds")
    if subset_seeds is not None:
        subset_seeds = distinct(at.key("subset_seeds"), subset_seeds, Integer(0))
    space_at = At(at.source, "search.space")
    modes_at, widths_at = ((at if k in raw else space_at).key(k) for k in ("modes", "widths"))
    return ModelAxes(
        modes=choices(modes_at, raw.get("modes", raw_space.get("modes")), MODES),
        widths=widths_at.check(_WIDTHS_AXIS, raw.get("widths", raw_space.get("widths"))),
        activations=choices(at.key("activations"), raw.get("activations", "relu"), ACTIVATIONS),
        eigenvalues=choices(at.key("eigenvalues"), raw.get("eigenvalues", "both"), EIGENVALUE_SETS),
        subset_seeds=subset_seeds)


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


def _rates(at: At, raw: Mapping) -> LearningRates:
    return LearningRates(
        lr=_per_mode(at.key("lr"), raw.get("lr", TrialConfig.lr), TrialConfig.lr, MODES),
        lr_eigvals=_per_mode(at.key("lr_eigvals"), raw.get("lr_eigvals"), None, EIGVAL_MODES))


def _search(at: At, value: Any, model: ModelAxes, base: TrialConfig) -> SearchSpec:
    keys = ("type", "repeats", "seed", "metric", "direction")
    kind = "grid"
    if isinstance(value, Mapping):  # otherwise `table` below says what a search should be
        kind = choice(at.key("type"), value.get("type", "grid"), SEARCH_TYPES)
    if kind == "optuna":
        raw = table(at, value, keys + _OPTUNA_ONLY,
                    required={"n_trials": "a positive integer (how many Optuna trials to run)"},
                    hints={"pack_seeds": "only for search.type grid (an Optuna trial's repeats are one result, "
                                         "their mean)"})
    else:
        raw = table(at, value, keys + ("pack_seeds",),
                    hints={k: "only for search.type optuna" for k in _OPTUNA_ONLY})
    metric = choice(at.key("metric"), raw.get("metric", "test_accuracy"), EPOCH_METRICS)
    default_direction = "min" if metric.endswith(("_loss", "_seconds")) else "max"
    spec = SearchSpec(
        type=kind, repeats=integer(at.key("repeats"), raw.get("repeats", 1), minimum=1),
        seed=integer(at.key("seed"), raw.get("seed", 0)), metric=metric,
        direction=choice(at.key("direction"), raw.get("direction", default_direction), DIRECTIONS))
    if kind == "grid":
        return replace(spec, pack_seeds=boolean(at.key("pack_seeds"), raw.get("pack_seeds", False)))
    storage = raw.get("storage")
    if storage is not None:
        storage = text(at.key("storage"), storage, "an Optuna storage URL such as sqlite:///optuna.db, 'auto' "
                       "(an sqlite file in the study's results folder), or null",
                       pattern=r"auto|[A-Za-z][A-Za-z0-9+]*://.*")
    return replace(spec, n_trials=integer(at.key("n_trials"), raw["n_trials"], minimum=1),
                   sampler=choice(at.key("sampler"), raw.get("sampler", "tpe"), SAMPLERS),
                   storage=storage, space=_space(at.key("space"), _section(raw, "space"), model, base))


def _check_optuna_storage(at: At, search: SearchSpec, storage: str) -> None:
    """``search.storage: auto`` puts an sqlite file beside the results: they must be local."""
    if search.storage == "auto" and is_uri(storage) and not storage.startswith("file://"):
        raise at.fail(f"search.storage 'auto' needs local results, but storage is {storage!r}; name an "
                      "Optuna storage URL instead (sqlite needs a local file; e.g. postgresql://...)")


def _space(at: At, value: Any, model: ModelAxes, base: TrialConfig) -> SpaceSpec:
    raw = table(at, value, ("modes", "widths", "activations", "eigenvalues", "optimizers",
                            "batch_sizes", "lr", "lr_eigvals"))
    space = SpaceSpec(
        modes=choices(at.key("modes"), raw["modes"], MODES) if "modes" in raw else model.modes,
        widths=at.key("widths").check(_WIDTHS_AXIS, raw["widths"]) if "widths" in raw else model.widths,
        activations=(choices(at.key("activations"), raw["activations"], ACTIVATIONS)
                     if "activations" in raw else model.activations),
        eigenvalues=(choices(at.key("eigenvalues"), raw["eigenvalues"], EIGENVALUE_SETS)
                     if "eigenvalues" in raw else model.eigenvalues),
        optimizers=(choices(at.key("optimizers"), raw["optimizers"], OPTIMIZERS)
                    if "optimizers" in raw else (base.optimizer,)),
        batch_sizes=(distinct(at.key("batch_sizes"), raw["batch_sizes"], Integer(1))
                     if "batch_sizes" in raw else (base.batch_size,)),
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


# ------------------------------------------------------------------------ the runner

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


_TRACKERS = {"tensorboard": ("tensorboardX", "a folder for TensorBoard event files, true (the results "
                                             "folder's tensorboard/) or false"),
             "mlflow": ("mlflow", "an MLflow tracking URI (http://host:5000, sqlite:///mlflow.db), a folder "
                                  "(a file store), true (the results folder's mlruns/) or false")}


def _tracking(at: At, value: Any) -> TrackingSpec:
    raw = table(at, value, tuple(_TRACKERS))
    out = {}
    for key, (package, expected) in _TRACKERS.items():
        item = raw.get(key)
        if item is None or item is False:
            out[key] = None
            continue
        if item is not True:
            item = text(at.key(key), item, expected)
            if not is_uri(item):
                check_storage(at.key(key), item)  # a writable folder, or one that can be made
        if importlib.util.find_spec(package) is None:
            raise at.key(key).fail(f"needs the {package} package: pip install 'spectral-study[tracking]'")
        out[key] = item
    return TrackingSpec(**out)


def _check_device(at: At, device: str, resources: ResourceSpec) -> None:
    if resources.gpu > 0 and device == "cpu":
        raise at.error(device, "'auto' or 'cuda' when resources.gpu > 0 (the reserved GPU would sit idle)")
    if resources.gpu == 0 and device == "cuda":
        raise at.error(device, "'auto' or 'cpu' when resources.gpu is 0 "
                               "(Ray hides the GPUs from trials that reserve none)")


__all__ = ["StudyError", "load_study", "parse_study", "with_overrides"]
