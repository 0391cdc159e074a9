"""Study files: YAML -> a validated, frozen `StudySpec` -> trial configs (grid) or an Optuna space.

    spec = load_study("studies/quickstart.yaml")  # or StudyError: file, field, value, what's allowed
    configs = spec.trial_configs()                 # grid: one TrialConfig per trial
    OptunaSearch(space=spec.define_by_run, ...)    # optuna: suggested params + returned constants

One module per job: `spec` (the types), `parse` (YAML and validation), `expand` (trials),
`serialize` (back to YAML). The schema, its defaults and the error format are documented in
docs/studies.md. Nothing here imports Ray, Optuna or torch: validation runs before any of them.
"""
from __future__ import annotations

import yaml

from spectral_study._validate import StudyError
from spectral_study.study.expand import cell_label
from spectral_study.study.overrides import load_study_with, parse_study_with
from spectral_study.study.parse import load_study, parse_study, with_overrides
from spectral_study.study.serialize import RESOLVED_STUDY_FILE
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

__all__ = ["RESOLVED_STUDY_FILE", "FloatRange", "LearningRates", "ModelAxes", "PerMode", "ResourceSpec",
           "SchedulerSpec", "SearchSpec", "SpaceSpec", "StudyError", "StudySpec", "TrackingSpec", "cell_label",
           "load_resolved_study", "load_study", "load_study_with", "parse_study", "parse_study_with",
           "with_overrides"]


def load_resolved_study(results_root) -> StudySpec:
    """The resolved study a run saved beside its results (``<results>/study.yaml``)."""
    from spectral_study.results import read_text  # pyarrow: only when results are read

    text = read_text(results_root, RESOLVED_STUDY_FILE)
    return parse_study(yaml.safe_load(text), f"{results_root}/{RESOLVED_STUDY_FILE}")
