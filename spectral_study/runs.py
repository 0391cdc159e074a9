"""Re-run rules: a results folder holds one study, and nothing in it runs twice.

    plan = plan_run(spec)                 # RunRefused when the folder already holds trials
    plan = plan_run(spec, extend=True)    # only the trials the folder lacks (a grid's new cells or seeds)
    plan.configs, plan.experiment         # what to run, and Tune's experiment folder for it

- `run` into a folder that holds trials (or a started run) is refused, naming `resume`,
  `--extend` and `--name`.
- `--extend` compares the study with the one saved beside the results (``study.yaml``): only
  changes that add cells or seeds are allowed (more modes, widths, activations, eigenvalue sets,
  subset seeds; more ``search.repeats``); any other change is refused, naming the field. Then
  the grid's trials whose config is not already in the ``trials`` table run, in a new Tune
  experiment folder (``_tune-extend-1``, ``-2``…) so Tune's own state never collides; `resume`
  continues the latest one. A failed trial has its row, so it counts as there.
- Settings that change no trial's result may differ: ``resources``, ``concurrency``,
  ``retries``, ``tracking`` (and ``name``/``storage``, which name the folder).

Ray-free: pyarrow reads the folder, nothing else.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from spectral_study._validate import StudyError
from spectral_study.config import TrialConfig, TrialConfigError
from spectral_study.progress import driver_alive, read_progress
from spectral_study.results import EXPERIMENT_DIR, filesystem, join_uri, load_table, results_root
from spectral_study.study import StudySpec, load_resolved_study

EXTEND_PREFIX = EXPERIMENT_DIR + "-extend-"
_EXPERIMENT = re.compile(re.escape(EXPERIMENT_DIR) + r"(?:-extend-(\d+))?")
# Fields of the resolved study that may differ on --extend: they change no trial's result.
RUNNER_FIELDS = ("name", "storage", "resources", "concurrency", "retries", "tracking")
# The grid axes an extension may add values to.
AXES = ("modes", "widths", "activations", "eigenvalues", "subset_seeds")


class RunRefused(StudyError):
    """A run that would mix two runs or two studies in one results folder."""


@dataclass(frozen=True)
class RunPlan:
    root: str                                   # the study's results folder
    experiment: str                             # Tune's experiment folder in it, for this run
    configs: tuple[TrialConfig, ...] | None     # a grid's trials to run; None: the search makes them
    existing: int = 0                           # trials already in the folder
    planned: int = 0                            # trials of the whole study

    @property
    def trials(self) -> int:
        """How many trials this run starts."""
        return self.planned if self.configs is None else len(self.configs)

    def describe(self) -> str:
        if self.existing == 0:
            return f"{self.trials} trials -> {self.root}"
        if not self.trials:
            return f"nothing to run: all {self.planned} trials of the study are in {self.root}"
        return (f"extending {self.root}: {self.existing} trials are there; running the {self.trials} missing "
                f"of {self.planned} (Tune experiment {self.experiment})")


def plan_run(spec: StudySpec, *, extend: bool = False) -> RunPlan:
    """What ``spectral-study run`` (``--extend``) may start for ``spec``; `RunRefused` otherwise."""
    root = results_root(spec.storage, spec.name)
    experiments = list_experiments(root)
    trials = _trials(root)
    if experiments:
        check_no_live_driver(root)
    if not extend:
        if len(trials) or experiments:
            raise RunRefused(_refusal(root, spec, len(trials), bool(experiments)))
        return RunPlan(root, EXPERIMENT_DIR, _grid(spec), 0, spec.trial_count())
    if spec.search.type != "grid":
        raise RunRefused(f"{spec.source}: --extend adds cells or seeds to a grid study; this is an Optuna "
                         f"search: continue it with `spectral-study resume {root}`, or start a new one with --name")
    experiment = next_experiment(experiments)
    if not len(trials) and not experiments:
        return RunPlan(root, experiment, _grid(spec), 0, spec.trial_count())
    try:
        saved = load_resolved_study(root)
    except FileNotFoundError:
        raise RunRefused(f"{root}: holds trials but no study.yaml to compare with; use --name for a new "
                         f"folder") from None
    problem = extension_problem(saved, spec)
    if problem:
        raise RunRefused(f"{spec.source}: differs from the study in {root} at {problem}; --extend only adds "
                         f"cells or seeds (more {', '.join('model.' + a for a in AXES)} values, or a larger "
                         f"search.repeats). Use --name NEW_NAME to run the changed study in a folder of its own")
    have = {_canonical(text) for text in trials["config_json"]}
    missing = tuple(c for c in spec.trial_configs() if c.columns()["config_json"] not in have)
    return RunPlan(root, experiment, missing, len(trials), spec.trial_count())


def check_no_live_driver(root: str) -> None:
    """`RunRefused` while another driver runs a study into ``root`` (its progress file is fresh)."""
    live = read_progress(root)
    if driver_alive(live):
        raise RunRefused(f"{root}: a study driver is running there now (pid {live.get('pid')} on "
                         f"{live.get('host')}); wait for it to end, or stop it, before starting another run")


def extension_problem(saved: StudySpec, new: StudySpec) -> str | None:
    """Where ``new`` differs from ``saved`` other than by adding cells or seeds (a field path and
    both values), or None when ``new`` only extends it."""
    old_dict, new_dict = saved.to_dict(), new.to_dict()
    for section in RUNNER_FIELDS:
        old_dict.pop(section, None)
        new_dict.pop(section, None)
    old_model, new_model = old_dict.pop("model"), new_dict.pop("model")
    for axis in AXES:
        before, after = old_model.pop(axis, None), new_model.pop(axis, None)
        if (before is None) != (after is None) or (before is not None and any(v not in after for v in before)):
            lost = before if after is None or before is None else [v for v in before if v not in after]
            return f"model.{axis}: the saved study has {_show(lost)}, which the new one lacks"
    old_repeats, new_repeats = old_dict["search"].pop("repeats"), new_dict["search"].pop("repeats")
    if new_repeats < old_repeats:
        return f"search.repeats: {old_repeats} in the saved study, {new_repeats} now (fewer seeds)"
    # Learning rates per mode: only those of the saved study's modes must stay.
    training_old, training_new = old_dict["training"], new_dict["training"]
    for key in ("lr", "lr_eigvals"):
        del training_old[key], training_new[key]
        for mode in saved.model.modes:
            before = getattr(saved.rates, key).for_mode(mode)
            after = getattr(new.rates, key).for_mode(mode)
            if before != after:
                return f"training.{key} (mode {mode}): {_show(before)} in the saved study, {_show(after)} now"
    difference = _first_difference({**old_dict, "model": old_model}, {**new_dict, "model": new_model})
    if difference:
        return difference
    # What the rules above allow must keep every saved trial: check it on the trials themselves.
    if saved.search.type == "grid":
        new_configs = {c.columns()["config_json"] for c in new.trial_configs()}
        for config in saved.trial_configs():
            if config.columns()["config_json"] not in new_configs:
                return f"the trial {config.cell} (the new study does not run it unchanged)"
    return None


# ---------------------------------------------------------------------------- experiment folders

def list_experiments(root: str) -> list[str]:
    """Tune experiment folders in ``root``, oldest first: ``_tune``, ``_tune-extend-1``, …"""
    from pyarrow import fs as pafs

    filesystem_, path = filesystem(root)
    try:
        infos = filesystem_.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (OSError, ValueError):
        return []
    names = [info.base_name for info in infos
             if info.type == pafs.FileType.Directory and _EXPERIMENT.fullmatch(info.base_name)]
    return sorted(names, key=_experiment_number)


def latest_experiment(root: str) -> str:
    """The experiment `resume` continues: the newest in ``root`` (``_tune`` when there is none)."""
    experiments = list_experiments(root)
    return experiments[-1] if experiments else EXPERIMENT_DIR


def next_experiment(experiments: list[str]) -> str:
    if not experiments:
        return EXPERIMENT_DIR
    return f"{EXTEND_PREFIX}{_experiment_number(experiments[-1]) + 1}"


def resume_target(path: str) -> tuple[str, str]:
    """(results folder, experiment) from what a user typed: the results folder (its latest
    experiment) or one experiment folder in it."""
    from spectral_study.results import study_root

    text = str(path).rstrip("/")
    tail = text.rsplit("/", 1)[-1].split("?", 1)[0]
    if _EXPERIMENT.fullmatch(tail) and tail != EXPERIMENT_DIR:
        return study_root(text[: len(text) - len(tail)].rstrip("/") or "."), tail
    root = study_root(text)
    return root, latest_experiment(root)


def experiment_uri(root: str, experiment: str) -> str:
    return join_uri(root, experiment)


# ---------------------------------------------------------------------------- helpers

def _trials(root: str):
    """The folder's trials table; an empty one when there is no folder yet."""
    import pandas as pd

    from spectral_study.results import ResultsError

    try:
        return load_table(root, "trials")
    except ResultsError:
        return pd.DataFrame({"trial_id": [], "config_json": []})


def _grid(spec: StudySpec) -> tuple[TrialConfig, ...] | None:
    return tuple(spec.trial_configs()) if spec.search.type == "grid" else None


def _canonical(config_json) -> str:
    """A stored trial config in today's canonical form (defaults of fields added since filled in)."""
    try:
        return TrialConfig.from_dict(json.loads(config_json)).columns()["config_json"]
    except (TypeError, ValueError, TrialConfigError):
        return str(config_json)


def _refusal(root: str, spec: StudySpec, n: int, started: bool) -> str:
    held = f"holds {n} trial{'s' if n != 1 else ''}" if n else "holds a run that was started"
    return (f"{root}: {held} already; a results folder holds one study, run once. "
            f"`spectral-study resume {root}` continues an interrupted run; "
            f"`spectral-study run {' '.join([spec.source, *spec.overrides])} --extend` adds only the missing "
            f"cells or seeds; "
            f"`--name NEW_NAME` runs it into a new folder")


def _experiment_number(name: str) -> int:
    match = _EXPERIMENT.fullmatch(name)
    return int(match.group(1)) if match and match.group(1) else 0


def _first_difference(old, new, path: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if old != new:
        return f"{path}: {_show(old)} in the saved study, {_show(new)} now"
    return None


def _show(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)
