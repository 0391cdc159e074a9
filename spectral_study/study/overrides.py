"""Command-line overrides, Hydra-style: ``KEY=VALUE`` pairs applied to a study before validation.

    spectral-study run studies/quickstart.yaml training.epochs=1 search.repeats=5 model.widths=[64,256]
    spec = load_study_with("studies/quickstart.yaml", ["training.epochs=1"])

KEY is a field's dotted path in the study file (``training.epochs``, ``dataset.path``,
``training.lr.dense``, ``name``); VALUE is read as YAML, as in the file (``1``, ``1e-3``,
``[64, 256]``, ``{default: 0.001, dense: 0.003}``, ``null``). The overrides are applied to the
study's mapping before validation, so the same rules check them, and a value they break names the
override it came from:

    command line: training.epochs=0: got 0; expected an integer >= 1

The resolved study saved beside the results holds the overridden values, and its header lists
the overrides. No Ray here.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

from spectral_study._validate import StudyError, _Loader, load_yaml
from spectral_study.study.parse import parse_study
from spectral_study.study.spec import StudySpec

WHERE = "command line"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")
# Fields a study may write in a short form (``dataset: fashion-mnist``, ``scheduler: asha``,
# ``lr: 0.001``): the key that short form sets, so that ``dataset.path=/data`` or
# ``training.lr.dense=0.003`` extends it instead of failing.
_SHORT_FORMS = {("dataset",): "name", ("scheduler",): "type", ("training", "lr"): "default",
                ("training", "lr_eigvals"): "default"}


@dataclass(frozen=True)
class Override:
    text: str                 # as typed: "training.epochs=1"
    path: tuple[str, ...]     # ("training", "epochs")
    value: Any                # the value, read as YAML

    @property
    def key(self) -> str:
        return ".".join(self.path)


def parse_override(text: str) -> Override:
    """``"training.epochs=1"`` -> an `Override`; a malformed one is a `StudyError`."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise StudyError(f"{WHERE}: {text!r}: expected KEY=VALUE with KEY a dotted field path, "
                         f"e.g. training.epochs=1 or model.widths=[64,256]")
    try:
        value = yaml.load(raw, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise StudyError(f"{WHERE}: {text}: the value is not valid YAML: {problem}") from None
    return Override(text, tuple(key.split(".")), value)


def parse_overrides(texts: Iterable[str | Override]) -> tuple[Override, ...]:
    return tuple(t if isinstance(t, Override) else parse_override(t) for t in texts)


def apply_overrides(mapping: Any, overrides: Iterable[Override]) -> dict:
    """A copy of the study ``mapping`` with each override set, in order (a later one wins)."""
    if not isinstance(mapping, Mapping):
        return mapping  # the parser says what a study should be
    study = copy.deepcopy(dict(mapping))
    for override in overrides:
        node = study
        for depth, key in enumerate(override.path[:-1]):
            child = node.get(key)
            if child is None:
                child = {}
            elif not isinstance(child, Mapping) and override.path[:depth + 1] in _SHORT_FORMS:
                child = {_SHORT_FORMS[override.path[:depth + 1]]: child}
            elif not isinstance(child, Mapping):
                where = ".".join(override.path[:depth + 1])
                raise StudyError(f"{WHERE}: {override.text}: {where} is {child!r}, not a mapping of fields")
            node[key] = child = dict(child)
            node = child
        node[override.path[-1]] = copy.deepcopy(override.value)
    return study


def parse_study_with(mapping: Any, source: str, overrides: Iterable[str | Override] = ()) -> StudySpec:
    """`parse_study` of ``mapping`` with ``overrides`` applied first; an error in a value an
    override set names that override."""
    overrides = parse_overrides(overrides)
    try:
        spec = parse_study(apply_overrides(mapping, overrides), source)
    except StudyError as error:
        raise _blame(error, overrides) from None
    return replace(spec, overrides=tuple(o.text for o in overrides)) if overrides else spec


def load_study_with(path, overrides: Iterable[str | Override] = ()) -> StudySpec:
    """`load_study` with command-line overrides (see the module docstring)."""
    return parse_study_with(load_yaml(path), str(path), overrides)


def override_spec(spec: StudySpec, overrides: Iterable[str | Override]) -> StudySpec:
    """``spec`` (already validated) with more overrides, validated again from its mapping."""
    overrides = parse_overrides(overrides)
    if not overrides:
        return spec
    changed = parse_study_with(spec.to_dict(), spec.source, overrides)
    return replace(changed, overrides=spec.overrides + changed.overrides)


def _blame(error: StudyError, overrides: tuple[Override, ...]) -> StudyError:
    """The error, naming the override that set the value it is about (the last one that did)."""
    field = error.field
    if not field:
        return error
    for override in reversed(overrides):
        key = override.key
        if field == key or field.startswith((key + ".", key + "[")):
            detail = error.reason if field == key else f"{field}: {error.reason}"
            blamed = StudyError(f"{WHERE}: {override.text}: {detail}")
            blamed.field, blamed.reason = field, error.reason
            return blamed
    return error
