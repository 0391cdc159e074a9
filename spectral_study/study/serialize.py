"""A `StudySpec` back to a mapping and YAML, every default filled in, so the study a run used
can be saved beside its results and read back equal (``parse_study(to_dict(spec)) == spec``).

Built from the dataclasses themselves: the constants go back to the section their
`TrialConfig` setting names, the other sections are their dataclass as a dict.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from spectral_study.config import study_constants
from spectral_study.study.spec import PerMode, StudySpec, Widths

RESOLVED_STUDY_FILE = "study.yaml"  # the resolved study, saved beside a study's results


def to_dict(spec: StudySpec) -> dict:
    """The resolved study as plain data (lists, dicts, scalars)."""
    out: dict[str, Any] = {"name": spec.name, "dataset": {}, "model": {}, "training": {}}
    model = _plain(dataclasses.asdict(spec.model))
    model["widths"] = _widths_to_yaml(spec.model.widths)
    out["model"].update(model)
    out["training"].update(lr=_per_mode(spec.rates.lr), lr_eigvals=_per_mode(spec.rates.lr_eigvals))
    out["search"] = _search(spec)
    scheduler = dataclasses.asdict(spec.scheduler)
    out["scheduler"] = {"type": "none"} if spec.scheduler.type == "none" else scheduler
    out["resources"] = dataclasses.asdict(spec.resources)
    out.update(storage=spec.storage, concurrency=spec.concurrency, retries=spec.retries)
    out["testing"] = {"failing_modes": _plain(spec.failing_modes)}
    out["tracking"] = dataclasses.asdict(spec.tracking)
    for f in study_constants():
        section, key = f.metadata["section"], f.metadata.get("key") or f.name
        value = _plain(getattr(spec.base, f.name))
        (out.setdefault(section, {}) if section else out)[key] = value
    return out


def to_yaml(spec: StudySpec) -> str:
    """`to_dict` as YAML, to save beside the results (``results/<name>/study.yaml``)."""
    typed = " ".join(spec.overrides).replace("\n", " ")  # a comment stays one line
    overrides = f" with command-line overrides {typed}" if spec.overrides else ""
    header = f"# Resolved by spectral-study from {spec.source}{overrides}; every default filled in.\n"
    return header + yaml.dump(to_dict(spec), Dumper=_Dumper, sort_keys=False)


def _search(spec: StudySpec) -> dict:
    search = _plain(dataclasses.asdict(spec.search))
    if spec.search.type == "optuna":
        search.pop("pack_seeds")  # grid only
    if spec.search.type != "optuna":
        return {key: search[key] for key in ("type", "repeats", "seed", "pack_seeds", "metric", "direction")}
    space = search["space"]
    space["widths"] = _widths_to_yaml(spec.search.space.widths)
    search["space"] = {key: value for key, value in space.items() if value is not None}
    return search


def _per_mode(value: PerMode) -> float | None | dict:
    return {"default": value.default, **dict(value.by_mode)} if value.by_mode else value.default


def _widths_to_yaml(axis: tuple[Widths, ...]) -> list:
    return [w[0] if len(w) == 1 else list(w) for w in axis]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style (``[64, 256]``) for lists of scalars."""


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data,
    flow_style=not any(isinstance(item, (list, dict)) for item in data)))
