"""The trial contract: one frozen, typed `TrialConfig`, the single place that names a trial's
fields, their defaults and their rules.

    config = TrialConfig(mode="spectral-eigvals", widths=(256,), epochs=3)
    config.to_dict()                      # the plain dict Ray carries (JSON-able)
    TrialConfig.from_dict(that_dict)      # back, every value checked; unknown keys refused

Everything else derives from the fields below: the study parser reads a field's study constant
from the section its `setting` names (``model.bias``, ``training.epochs``…) with the field's own
check; the results writer makes a ``trials`` column of every scalar field (`config_columns`);
`build_model` and `TrainConfig` take the fields with their names. Adding a field is one edit
here (plus its use, its test and its line in docs/studies.md).

No torch, Ray or pyarrow here: a study is checked before any of them is imported.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from spectral_study.checks import (
    Boolean,
    Choice,
    Fraction,
    Integer,
    Invalid,
    ListOf,
    Number,
    Optional,
    Record,
    Text,
    Widths,
    check_fields,
    encode_widths,
    setting,
)
from spectral_study.vocabulary import (
    ACTIVATIONS,
    DATASETS,
    DENSE_INITS,
    DEVICES,
    EIGENVALUE_SETS,
    EIGVAL_INITS,
    EIGVAL_MODES,
    INJECTED_FAILURES,
    MEMBER_TRAINING,
    MODES,
    NORMALIZATIONS,
    OPTIMIZERS,
    PHI_INITS,
    PRUNING_METHODS,
)


class TrialConfigError(ValueError):
    """A trial config that cannot be run; names the field and what is allowed. ``invalid``, when
    set, holds the field path and the rule, so a study file can name its own line for it."""

    def __init__(self, problem: str | Invalid) -> None:
        self.invalid = problem if isinstance(problem, Invalid) else None
        super().__init__(str(problem))


@dataclass(frozen=True)
class PruningConfig:
    """What a trial prunes after training (SCIENCE.md §2); the study's ``pruning:`` section."""

    methods: tuple[str, ...] = setting(
        PRUNING_METHODS, ListOf(Choice(PRUNING_METHODS), single=True),
        doc="node rankings to compare (eigenvalue-based ones apply to spectral networks only)")
    fractions: tuple[float, ...] = setting(
        (0.05, 0.25, 0.5, 0.75, 0.9, 0.95),
        ListOf(Fraction("a fraction of hidden nodes to remove, strictly between 0 and 1")),
        doc="fractions of the hidden nodes removed")
    retrain_epochs: int = setting(
        5, Integer(0), doc="epochs the pre-training filter retrains each smaller network (authors: 20)")
    # Retraining is the costly part (one network per fraction and method): the pre-training
    # filter may run at fewer fractions than the no-retraining protocols. None: every fraction.
    retrain_fractions: tuple[float, ...] | None = setting(
        None, Optional(ListOf(Fraction("one of the fractions above")), expected="a list of the fractions above, "
                                                                                 "or null (every fraction)"),
        doc="fractions at which the pre-training filter retrains")
    # ... and with fewer rankings: each (method, fraction) pair is one more network to retrain.
    retrain_methods: tuple[str, ...] | None = setting(
        None, Optional(ListOf(Choice(PRUNING_METHODS), single=True),
                       expected="a list of the methods above, or null (every method)"),
        doc="rankings the pre-training filter retrains with")
    # Pruning over training time: the protocols without retraining also run after each of these
    # epochs (the retraining filter runs after the last epoch only). None: after the last epoch.
    at_epochs: tuple[int, ...] | None = setting(
        None, Optional(ListOf(Integer(1)), expected="a list of epochs (each from 1 to training.epochs), or null"),
        doc="epochs after which to prune as well as after the last one")

    def __post_init__(self) -> None:
        check_fields(self)
        # The filter retrains a subset of what is pruned: each retrain_* list names entries of its list.
        for subset, of in (("retrain_fractions", "fractions"), ("retrain_methods", "methods")):
            allowed = getattr(self, of)
            shown = ", ".join(f"{v:g}" if isinstance(v, float) else v for v in allowed)
            for i, value in enumerate(getattr(self, subset) or ()):
                if value not in allowed:
                    raise Invalid(value, f"one of pruning.{of} ({shown})", f"{subset}[{i}]")

    @property
    def fractions_to_retrain(self) -> tuple[float, ...]:
        return self.fractions if self.retrain_fractions is None else self.retrain_fractions

    @property
    def methods_to_retrain(self) -> tuple[str, ...]:
        return self.methods if self.retrain_methods is None else self.retrain_methods


@dataclass(frozen=True)
class TrialConfig:
    """One trial: data, network, training, pruning. Every field has the default a study gets."""

    # -- data (the study's dataset: section)
    dataset: str = setting("fashion-mnist", Choice(DATASETS), section="dataset", key="name")
    data_path: str | None = setting(
        None, Optional(Text("a directory holding the data set's files")), section="dataset", key="path")
    normalize: str = setting("unit", Choice(NORMALIZATIONS), section="dataset")

    # -- network: grid axes (mode, widths, activation, eigenvalues, subset_seed), then constants
    mode: str = setting("spectral-eigvals", Choice(MODES))
    widths: tuple[int, ...] = setting((), Widths())
    activation: str = setting("relu", Choice(ACTIVATIONS))
    eigenvalues: str = setting("both", Choice(EIGENVALUE_SETS))
    # dense-restricted only: which weights are free is drawn from this seed (None: from `seed`),
    # so several random subsets can be compared at one initialisation (claim C3).
    subset_seed: int | None = setting(None, Optional(Integer(0)))
    bias: bool = setting(True, Boolean(), section="model")
    phi_init: str = setting("uniform", Choice(PHI_INITS), section="model")
    eigval_init: str = setting("uniform", Choice(EIGVAL_INITS), section="model")
    dense_init: str = setting("uniform", Choice(DENSE_INITS), section="model")

    # -- training (lr and lr_eigvals may differ by mode: the study resolves them per trial)
    optimizer: str = setting("adam", Choice(OPTIMIZERS), section="training")
    # Adam's and Adamax's epsilon; None: torch's default (1e-8). Keras' default is 1e-7 (its
    # "epsilon hat", on the uncorrected second moment), what the authors' code ran with.
    adam_eps: float | None = setting(None, Optional(Number()), section="training")
    lr: float = setting(1e-3, Number())
    # None: the same as lr (one rate for every parameter, as in the authors' pruning code).
    lr_eigvals: float | None = setting(None, Optional(Number()))
    batch_size: int = setting(256, Integer(1), section="training")
    epochs: int = setting(10, Integer(1), section="training")
    seed: int = setting(0, Integer(0))
    # Seeds seed, seed+1, … trained in lockstep; the trial reports their mean (Optuna objectives).
    repeats: int = setting(1, Integer(1))
    # True: those seeds are separate results packed into one trial (a grid's search.pack_seeds),
    # each with its own row in every table (`members`); False: one result, their mean.
    pack_seeds: bool = setting(False, Boolean())
    # How the seeds train: one stacked model ("batched"), one after another ("sequential"), or
    # "auto": batched on a GPU, and on a CPU while no layer has over 640Ki weights (measured:
    # spectral_study.trial.member_groups, benchmarks/packing.py).
    member_training: str = setting("auto", Choice(MEMBER_TRAINING), section="training")
    # A checkpoint every this many epochs (and always with the last one): a retried trial repeats at
    # most checkpoint_every - 1 epochs. 5 because a checkpoint through Ray Tune measured 0.3-1.0 s
    # (the file itself 8-45 ms) against 1.7-22 s per Fashion-MNIST epoch on 1 core: every epoch
    # would add up to ~30 % to small networks, every 5th at most ~6 % (benchmarks/checkpoint_cost.py).
    checkpoint_every: int = setting(5, Integer(1), section="training")
    device: str = setting("auto", Choice(DEVICES), section="", column="device_requested")

    # -- after training
    pruning: PruningConfig | None = setting(None, Optional(Record(PruningConfig)), section="",
                                            column=False)

    # -- bookkeeping a study adds, carried to the results
    study: str | None = setting(None, Optional(Text()), column=False)
    cell: str | None = setting(None, Optional(Text()))
    # Test-only: a fault to inject (the study's testing.inject_failure).
    inject_failure: str | None = setting(None, Optional(Choice(INJECTED_FAILURES)), section="testing",
                                         column=False)
    # Test-only: the synthetic data set's (train, test) sizes.
    synthetic_size: tuple[int, ...] | None = setting(
        None, Optional(ListOf(Integer(1), distinct=False)), column=False)

    def __post_init__(self) -> None:
        try:
            check_fields(self)
        except Invalid as error:
            raise TrialConfigError(error) from None
        if self.pruning is not None:
            for i, epoch in enumerate(self.pruning.at_epochs or ()):
                if epoch > self.epochs:
                    raise TrialConfigError(Invalid(epoch, f"an epoch from 1 to the training epochs ({self.epochs})",
                                                   f"pruning.at_epochs[{i}]"))
        if self.mode not in EIGVAL_MODES:
            # A mode that trains no eigenvalues has no eigenvalue rate: recorded as null, so a
            # results table never shows a rate that did nothing.
            object.__setattr__(self, "lr_eigvals", None)

    # ------------------------------------------------------------------ conversions

    @classmethod
    def from_dict(cls, mapping: dict) -> TrialConfig:
        """A config from its dict form (`to_dict`, a YAML file); unknown keys are refused: a
        typo would otherwise silently run the default."""
        if isinstance(mapping, TrialConfig):
            return mapping
        try:
            return Record(cls)(mapping)
        except Invalid as error:
            raise TrialConfigError(error) from None

    def to_dict(self) -> dict:
        """Plain, JSON-able values (tuples as lists, pruning as a dict)."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.seed + k for k in range(self.repeats))

    def members(self) -> list[TrialConfig]:
        """One config per seed, as the trial of that seed alone would have (``repeats`` 1, its
        own cell label): the config of each result of a trial that packs its seeds."""
        return [self.replace(seed=seed, repeats=1,
                             cell=None if self.cell is None else cell_label(
                                 self.mode, self.widths, self.activation, self.eigenvalues, seed, 1,
                                 self.subset_seed))
                for seed in self.seeds]

    def columns(self) -> dict:
        """The ``trials`` table's config columns of this trial (see `config_columns`)."""
        row = {}
        for f, name in _column_fields():
            row[name] = getattr(self, f.name)
        row.update(widths=encode_widths(self.widths), n_hidden_layers=len(self.widths),
                   width=self.widths[0] if self.widths else 0)
        row["config_json"] = json.dumps(self.to_dict(), sort_keys=True)
        return row


def cell_label(mode: str, widths, activation: str, eigenvalues: str,
               seed: int, repeats: int = 1, subset_seed: int | None = None) -> str:
    """A readable trial label for logs, e.g. ``spectral-eigvals_w256_relu_both_s0``."""
    seeds = f"s{seed}" if repeats == 1 else f"s{seed}-{seed + repeats - 1}"
    subset = "" if subset_seed is None else f"_sub{subset_seed}"
    return f"{mode}_w{encode_widths(widths)}_{activation}_{eigenvalues}{subset}_{seeds}"


def config_columns() -> dict[str, type]:
    """Column name -> Python type of every ``trials`` column a `TrialConfig` fills."""
    columns = {name: f.metadata["check"].kind for f, name in _column_fields()}
    columns.update(widths=str, n_hidden_layers=int, width=int, config_json=str)
    return columns


def field_check(name: str):
    """The check of `TrialConfig`'s field ``name`` (None if there is no such field), for the
    library's own specs (`ModelSpec`, `TrainConfig`) so they apply the same rules."""
    f = _FIELDS.get(name)
    return None if f is None else f.metadata["check"]


def study_constants() -> list[dataclasses.Field]:
    """The fields a study file sets once for every trial, each in the section its `setting`
    names (``dataset``, ``model``, ``training``, or ``""`` for the top level)."""
    return [f for f in dataclasses.fields(TrialConfig) if f.metadata.get("section") is not None]


def study_key(f: dataclasses.Field) -> str:
    """A constant's dotted path in a study file: ``model.bias``, ``dataset.path``, ``device``."""
    key = f.metadata.get("key") or f.name
    section = f.metadata["section"]
    return f"{section}.{key}" if section else key


def _column_fields() -> list[tuple[dataclasses.Field, str]]:
    out = []
    for f in dataclasses.fields(TrialConfig):
        column = f.metadata.get("column", True)
        if column is False or f.name == "widths" or f.metadata["check"].kind is None:
            continue
        out.append((f, f.name if column is True else column))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_FIELDS = {f.name: f for f in dataclasses.fields(TrialConfig)}
