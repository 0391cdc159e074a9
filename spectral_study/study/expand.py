"""A study's trials: the grid (one `TrialConfig` per cell and seed) or the Optuna space.

    configs = grid_configs(spec)                  # grid studies
    OptunaSearch(space=spec.define_by_run, ...)   # optuna: suggested params + returned constants

Every trial is the study's base config with its axes, rates and seed filled in, so a trial gets
exactly the fields `TrialConfig` names. No Ray and no Optuna import here (define-by-run only
calls the trial object it is given).
"""
from __future__ import annotations

import itertools
from typing import Any

from spectral_study.checks import decode_widths, encode_widths
from spectral_study.config import TrialConfig, cell_label
from spectral_study.study.spec import StudySpec, Widths
from spectral_study.vocabulary import EIGVAL_MODES

__all__ = ["cell_label", "define_by_run", "grid_configs", "scheduled_count", "trial_config", "trial_count"]


def trial_count(spec: StudySpec) -> int:
    """How many trials the study runs: one result (a trials row) per cell and seed, however the
    seeds are scheduled (`scheduled_count`)."""
    if spec.search.type == "optuna":
        return spec.search.n_trials
    m = spec.model
    cells = sum(len(m.subsets_for(mode)) * len(m.eigenvalues_for(mode)) for mode in m.modes)
    return cells * len(m.widths) * len(m.activations) * spec.search.repeats


def scheduled_count(spec: StudySpec) -> int:
    """How many Ray Tune trials the study schedules: `trial_count`, or one per cell when a grid
    packs each cell's seeds into one trial (``search.pack_seeds``)."""
    return trial_count(spec) // spec.search.repeats if _packs(spec) else trial_count(spec)


def grid_configs(spec: StudySpec) -> list[TrialConfig]:
    """The grid, one trial per (seed, mode, widths, activation, eigenvalues, subset seed).

    The seed is the outer loop: every cell's first seed comes before any second seed, so a
    study cut short still covers the whole grid. Each trial trains one seed (repeats=1), or,
    with ``search.pack_seeds``, all of its cell's seeds, each still its own result.
    """
    if spec.search.type != "grid":
        raise ValueError(f"{spec.source}: trial_configs() is for grid studies; "
                         "this is an optuna study: use define_by_run")
    m = spec.model
    cells = [(mode, widths, activation, eigenvalues, subset_seed)
             for mode, widths, activation in itertools.product(m.modes, m.widths, m.activations)
             for eigenvalues in m.eigenvalues_for(mode)
             for subset_seed in m.subsets_for(mode)]
    if _packs(spec):
        return [trial_config(spec, mode=mode, widths=widths, activation=activation, eigenvalues=eigenvalues,
                             seed=spec.search.seed, repeats=spec.search.repeats, subset_seed=subset_seed,
                             pack_seeds=True)
                for mode, widths, activation, eigenvalues, subset_seed in cells]
    return [trial_config(spec, mode=mode, widths=widths, activation=activation, eigenvalues=eigenvalues,
                         seed=spec.search.seed + r, repeats=1, subset_seed=subset_seed)
            for r in range(spec.search.repeats)
            for mode, widths, activation, eigenvalues, subset_seed in cells]


def _packs(spec: StudySpec) -> bool:
    return spec.search.type == "grid" and spec.search.pack_seeds and spec.search.repeats > 1


def trial_config(spec: StudySpec, *, mode: str, widths: Widths, activation: str, eigenvalues: str,
                 seed: int, repeats: int, subset_seed: int | None = None, **changes: Any) -> TrialConfig:
    """The base config with one cell's values; ``changes`` set suggested hyperparameters."""
    values = {
        "mode": mode, "widths": tuple(widths), "activation": activation, "eigenvalues": eigenvalues,
        "subset_seed": subset_seed, "seed": seed, "repeats": repeats, "study": spec.name,
        "cell": cell_label(mode, widths, activation, eigenvalues, seed, repeats, subset_seed),
        "lr": spec.rates.lr.for_mode(mode),
        "lr_eigvals": spec.rates.lr_eigvals.for_mode(mode) if mode in EIGVAL_MODES else None,
        "inject_failure": _failure_for(spec, mode)}
    return spec.base.replace(**{**values, **changes})


def define_by_run(spec: StudySpec, trial: Any) -> dict:
    """Optuna define-by-run space (Ray Tune's ``OptunaSearch(space=spec.define_by_run)``).

    Suggests every axis with more than one choice (names: mode, widths as "256-128",
    activation, eigenvalues, optimizer, batch_size) and the lr ranges; ``lr_eigvals`` only for
    modes that train eigenvalues. Returns the rest of the trial config: suggested params and
    returned constants are disjoint and together make a whole `TrialConfig` dict. Each trial
    trains ``search.repeats`` seeds in lockstep and reports their mean.
    """
    space = spec.search.space
    if space is None:
        raise ValueError(f"{spec.source}: define_by_run() is for optuna studies; "
                         "this is a grid study: use trial_configs")
    suggested: dict[str, Any] = {}

    def pick(name: str, options: tuple) -> Any:
        if len(options) > 1:
            suggested[name] = trial.suggest_categorical(name, list(options))
            return suggested[name]
        return options[0]

    mode = pick("mode", space.modes)
    if len(space.widths) > 1:
        suggested["widths"] = trial.suggest_categorical("widths", [encode_widths(w) for w in space.widths])
        widths = decode_widths(suggested["widths"])
    else:
        widths = space.widths[0]
    activation = pick("activation", space.activations)
    eigenvalues = pick("eigenvalues", space.eigenvalues)
    changes = {"optimizer": pick("optimizer", space.optimizers), "batch_size": pick("batch_size", space.batch_sizes)}
    if space.lr is not None:
        changes["lr"] = suggested["lr"] = trial.suggest_float("lr", space.lr.low, space.lr.high, log=space.lr.log)
    if mode in EIGVAL_MODES and space.lr_eigvals is not None:
        r = space.lr_eigvals
        changes["lr_eigvals"] = suggested["lr_eigvals"] = trial.suggest_float("lr_eigvals", r.low, r.high, log=r.log)
    config = trial_config(spec, mode=mode, widths=widths, activation=activation, eigenvalues=eigenvalues,
                          seed=spec.search.seed, repeats=spec.search.repeats, **changes)
    return {key: value for key, value in config.to_dict().items() if key not in suggested}


def _failure_for(spec: StudySpec, mode: str) -> str | None:
    """The test-only fault to inject into a trial of ``mode``."""
    if spec.failing_modes is not None and mode not in spec.failing_modes:
        return None
    return spec.base.inject_failure
