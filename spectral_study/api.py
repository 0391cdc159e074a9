"""The Python front door, for notebooks and scripts: run a study file with overrides.

    import spectral_study
    outcome = spectral_study.run_study("studies/quickstart.yaml", training__epochs=1, name="quickstart-1")
    outcome.results        # the results folder (spectral_study.results.load_results reads it)
    outcome.statuses       # {"completed": 15}
    outcome.exit_code      # 0, or 1 when a trial failed
    outcome.trials         # the trials table, a DataFrame

Overrides are the study file's fields by their dotted path, with ``__`` for the dot in a keyword
(``training__epochs=1``, ``model__widths=[64, 256]``, ``search__repeats=5``, ``name="try-2"``,
``storage="/tmp/results"``); ``**{"training.epochs": 1}`` works too. They are checked by the
same rules as the file and recorded in the saved study.yaml, as on the command line.

`import spectral_study` does not import Ray: this module imports it only when a study runs.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any

from spectral_study.study import StudySpec
from spectral_study.study.overrides import Override, load_study_with, override_spec

if TYPE_CHECKING:  # pandas and pyarrow only when a study runs
    from spectral_study.outcome import StudyOutcome


def run_study(study: str | PathLike | StudySpec, /, *, extend: bool = False, address: str | None = None,
              shared_storage: bool | None = None, echo=print, **overrides: Any) -> StudyOutcome:
    """Run ``study`` (a study file or a `StudySpec`) to the end on Ray Tune and return its outcome.

    ``extend``: run only the trials its results folder lacks (more cells or seeds than the run
    before); ``address``: a Ray cluster to join (default: an embedded local Ray, or the Ray this
    process already started); ``overrides``: see the module docstring. A results folder that
    already holds trials is refused (`spectral_study.runs.RunRefused`), as is an invalid study
    (`StudyError`), before Ray starts.
    """
    spec = study_spec(study, overrides)
    from spectral_study.runs import plan_run

    plan_run(spec, extend=extend)  # refused here, before Ray is imported
    from spectral_study.tune import run_study as run_on_ray

    return run_on_ray(spec, extend=extend, address=address, shared_storage=shared_storage, echo=echo)


def study_spec(study: str | PathLike | StudySpec, overrides: Mapping[str, Any] | None = None) -> StudySpec:
    """The validated study, with ``overrides`` (keyword form) applied."""
    items = [_override(key, value) for key, value in (overrides or {}).items()]
    if isinstance(study, StudySpec):
        return override_spec(study, items)
    return load_study_with(study, items)


def _override(key: str, value: Any) -> Override:
    path = tuple(key.replace("__", ".").split("."))
    shown = value if isinstance(value, str) else json.dumps(value, default=str)
    return Override(f"{'.'.join(path)}={shown}", path, value)
