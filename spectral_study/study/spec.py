"""The study types: what a validated study file says, as frozen dataclasses.

A study is a base `TrialConfig` (every constant the file sets: data, ``model.bias``,
``training.epochs``, ``device``, ``pruning`` …) plus what varies between its trials: the grid
axes of `ModelAxes`, the learning rates per mode, and the seeds of `SearchSpec`. Parsing lives in
`spectral_study.study.parse`, expansion into trials in `.expand`, YAML in `.serialize`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from spectral_study.config import TrialConfig

Widths = tuple[int, ...]


@dataclass(frozen=True)
class ModelAxes:
    """The grid axes of the ``model:`` section (or an Optuna search's categorical choices)."""

    modes: tuple[str, ...]
    widths: tuple[Widths, ...]
    activations: tuple[str, ...] = ("relu",)
    eigenvalues: tuple[str, ...] = ("both",)
    # dense-restricted only: seeds of the random subset of trained weights, one grid axis, so
    # several subsets can be compared at one initialisation (claim C3). None: drawn from the seed.
    subset_seeds: tuple[int, ...] | None = None

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


@dataclass(frozen=True)
class LearningRates:
    """``training.lr`` and ``training.lr_eigvals``: one number, or one per mode."""

    lr: PerMode = PerMode(TrialConfig.lr)
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
    # grid only: each cell's seeds in one Ray trial, each seed still its own result (row)
    pack_seeds: bool = False
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
class TrackingSpec:
    """Where trials also log their config and per-epoch metrics (spectral_study.tracking).
    ``True``: inside the results folder (``tensorboard/``, ``mlruns/``); a string: that folder,
    or for MLflow a tracking URI (``http://host:5000``, ``sqlite:///mlflow.db``); None: off."""

    tensorboard: bool | str | None = None
    mlflow: bool | str | None = None


@dataclass(frozen=True)
class StudySpec:
    name: str
    base: TrialConfig
    model: ModelAxes
    rates: LearningRates = LearningRates()
    search: SearchSpec = SearchSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourceSpec = ResourceSpec()
    storage: str = "results"
    concurrency: int | None = None
    retries: int = 2
    failing_modes: tuple[str, ...] | None = None  # test-only: the modes a fault applies to (None: all)
    tracking: TrackingSpec = TrackingSpec()
    source: str = field(default="<study>", compare=False)
    # Command-line overrides applied to the file (``training.epochs=1``), as typed; the values
    # are in the fields above, these are only recorded (the resolved study's header).
    overrides: tuple[str, ...] = field(default=(), compare=False)

    def optuna_storage(self, results_root: str) -> str | None:
        """The Optuna storage URL; ``auto`` is ``optuna.db`` in the study's results folder
        (sqlite needs a local file: with results on an object store, name a database URL)."""
        if self.search.storage != "auto":
            return self.search.storage
        if "://" in results_root and not results_root.startswith("file://"):
            raise ValueError(f"{self.source}: search.storage: got 'auto' with results at {results_root}; "
                             "expected an Optuna storage URL (sqlite needs a local file; use e.g. "
                             "postgresql://... or sqlite:///path/optuna.db)")
        return f"sqlite:///{results_root.removeprefix('file://')}/optuna.db"

    # Thin fronts over the modules that do the work, so a caller needs only the spec.

    def trial_count(self) -> int:
        from spectral_study.study.expand import trial_count

        return trial_count(self)

    def scheduled_count(self) -> int:
        from spectral_study.study.expand import scheduled_count

        return scheduled_count(self)

    def trial_configs(self) -> list[TrialConfig]:
        from spectral_study.study.expand import grid_configs

        return grid_configs(self)

    def define_by_run(self, trial) -> dict:
        from spectral_study.study.expand import define_by_run

        return define_by_run(self, trial)

    def to_dict(self) -> dict:
        from spectral_study.study.serialize import to_dict

        return to_dict(self)

    def to_yaml(self) -> str:
        from spectral_study.study.serialize import to_yaml

        return to_yaml(self)
