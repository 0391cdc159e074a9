"""Readers for study files. Each checks one value and, if it is wrong, raises one `StudyError`
naming the file, the field path, the value and what is allowed:

    studies/x.yaml: model.widths[2]: got -4; expected a positive integer

Nothing here knows the study schema (that is `spectral_study.study`); these are the building
blocks: typed readers, the YAML loader, the storage and GPU-fraction checks.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spectral_study.checks import (
    Boolean,
    Check,
    Choice,
    Integer,
    Invalid,
    ListOf,
    Number,
    Text,
    join_path,
    known_keys,
)


class StudyError(Exception):
    """A study that cannot run, with one sentence saying where and why. ``field`` and ``reason``,
    when set, are the field path and the rule apart (a command-line override names itself with them)."""

    field: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class At:
    """Where a value sits: the file it came from and its field path (``model.widths[2]``)."""

    source: str
    path: str = ""

    def key(self, name: str) -> At:
        return At(self.source, join_path(self.path, name))

    def index(self, i: int) -> At:
        return At(self.source, f"{self.path}[{i}]")

    def fail(self, message: str) -> StudyError:
        where = f"{self.source}: {self.path}" if self.path else self.source
        error = StudyError(f"{where}: {message}")
        error.field, error.reason = self.path, message
        return error

    def error(self, value: Any, expected: str) -> StudyError:
        return self.fail(f"got {value!r}; expected {expected}")

    def check(self, check: Check, value: Any) -> Any:
        """``check(value)``, or the `StudyError` that names this place (and any sub-path)."""
        try:
            return check(value)
        except Invalid as error:
            raise self.located(error) from None

    def located(self, error: Invalid) -> StudyError:
        return At(self.source, join_path(self.path, error.path)).fail(error.message)


def table(at: At, value: Any, keys: Sequence[str], *, required: Mapping[str, str] | None = None,
          hints: Mapping[str, str] | None = None) -> dict:
    """A mapping whose keys are all in ``keys``; ``required`` maps a key to what it should hold,
    ``hints`` maps a known-elsewhere key to why it is not allowed here."""
    try:
        known_keys(value, keys, hints)
    except Invalid as error:
        raise at.located(error) from None
    for key, expected in (required or {}).items():
        if key not in value or value[key] is None:
            raise at.key(key).fail(f"missing; expected {expected}")
    return dict(value)


# Readers: the checks of `spectral_study.checks`, located at ``at``.

def integer(at: At, value: Any, *, minimum: int = 0, maximum: int | None = None,
            expected: str | None = None) -> int:
    return at.check(Integer(minimum, maximum, expected=expected), value)


def number(at: At, value: Any, *, above: float = 0.0, expected: str = "a positive number") -> float:
    return at.check(Number(above, expected=expected), value)


def boolean(at: At, value: Any) -> bool:
    return at.check(Boolean(), value)


def text(at: At, value: Any, expected: str, *, pattern: str | None = None) -> str:
    return at.check(Text(expected, pattern=pattern), value)


def choice(at: At, value: Any, allowed: Sequence[str]) -> str:
    return at.check(Choice(allowed), value)


def choices(at: At, value: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    """One allowed string, or a non-empty list of distinct ones."""
    return at.check(ListOf(Choice(allowed), single=True), value)


def distinct(at: At, value: Any, check: Check, expected: str | None = None) -> tuple:
    """A non-empty list of distinct items, each read by ``check``; a duplicate is refused
    because a grid would run the same trials twice."""
    return at.check(ListOf(check, expected=expected), value)


# ---------------------------------------------------------------------------------- resources

GPU_EXPECTED = ("0, a whole number of GPUs, or a fraction 1/n of one GPU "
                "(0.5, 0.25, 0.2, 0.125, ...) so that trials share a GPU without leaving a remainder")


def is_valid_gpu(gpu: Any) -> bool:
    """Whether ``gpu`` is a GPU reservation Ray can pack without waste: 0, a whole number, or
    1/n for a whole n (to Ray's resource precision of 1e-4, so 0.3333 counts as a third)."""
    if isinstance(gpu, bool) or not isinstance(gpu, (int, float)) or not math.isfinite(gpu) or gpu < 0:
        return False
    if gpu == 0 or (gpu >= 1 and float(gpu).is_integer()):
        return True
    if gpu > 1:
        return False
    return abs(round(1 / gpu) * gpu - 1) <= 1e-4


# ---------------------------------------------------------------------------------- storage

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(value: str) -> bool:
    return _URI.match(value) is not None


def check_storage(at: At, value: Any) -> str:
    """A local directory (it, or its nearest existing parent, must be a writable directory) or a
    URI pyarrow can open (s3://, gs://, file://, ...). Nothing is listed or written."""
    storage = text(at, value, "a directory path or a URI such as s3://bucket/prefix")
    if not is_uri(storage):
        _check_local_dir(at, storage, storage)
        return storage
    import pyarrow.fs  # light, and needed by Ray anyway; kept out of `import spectral_study.study`

    probe = storage
    if storage.startswith("s3://") and "region=" not in storage:
        # Without a region pyarrow asks AWS where the bucket lives (a network call that can take
        # seconds or hang offline). Validation checks the URI's form only; Ray resolves the region.
        probe += ("&" if "?" in storage else "?") + "region=us-east-1"
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(probe)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... with a useful first line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise at.fail(f"cannot use {storage!r}: {reason}") from None
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        _check_local_dir(at, storage, path)
    return storage


# Set (to 1/true/yes) where a local path is known to be the same folder on every node: an NFS
# mount, or every Ray node on one machine (the test suite's clusters). `--shared-storage` too.
SHARED_STORAGE_ENV = "SPECTRAL_STUDY_SHARED_STORAGE"


class StorageError(StudyError):
    """Storage the study's trials cannot share (a local folder on a cluster of several nodes)."""


def is_local_storage(storage: str) -> bool:
    """Whether ``storage`` names a folder on this machine's filesystem (a path or a file:// URI),
    as opposed to an object store every node reaches over the network (s3://, gs://, ...)."""
    return not is_uri(storage) or storage.lower().startswith("file://")


def check_shared_storage(root: str, nodes: Sequence[Mapping], *, address: str | None, cpu: float,
                         gpu: float, shared: bool | None = None) -> None:
    """Refuse a local results folder that the nodes running trials would not share.

    Every node writes trial checkpoints under ``root`` and reads them back when a trial is retried
    or a study resumed, possibly on another node: a local folder works on one machine only. It is
    refused when the live ``nodes`` (``ray.nodes()``) are more than one, or when, joining a cluster
    at ``address``, none of them can run a trial (``cpu``, ``gpu``): trials would then wait for
    nodes an autoscaler starts on other machines. ``shared`` (``--shared-storage``; None: the
    `SHARED_STORAGE_ENV` variable) declares the path the same folder on every node (NFS).
    """
    if shared is None:
        shared = os.environ.get(SHARED_STORAGE_ENV, "").strip().lower() in ("1", "true", "yes")
    if shared or not is_local_storage(root):
        return
    alive = [node for node in nodes if node.get("Alive")]
    fits = [node for node in alive if node.get("Resources", {}).get("CPU", 0) >= cpu
            and node.get("Resources", {}).get("GPU", 0) >= gpu]
    cluster = f"the Ray cluster at {address}" if address else "this Ray cluster"
    if len(alive) > 1:
        why = f"{cluster} has {len(alive)} nodes"
    elif address and not fits:
        why = f"no node of {cluster} can run a trial ({cpu:g} CPU, {gpu:g} GPU), so it runs on nodes started later"
    else:
        return
    raise StorageError(
        f"{root}: a local folder, but {why}: a trial on another node, or retried there, would not find "
        f"its checkpoints. Use storage every node reaches: --storage s3://BUCKET/prefix (or gs://...), or "
        f"a filesystem mounted at this path on every node (NFS) and --shared-storage "
        f"(or {SHARED_STORAGE_ENV}=1)")


def _check_local_dir(at: At, shown: str, path: str) -> None:
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise at.fail(f"cannot use {shown!r}: {str(probe)!r} exists and is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise at.fail(f"cannot use {shown!r}: directory {str(probe)!r} is not writable")


# ---------------------------------------------------------------------------------- YAML

class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys and reading ``1e-3`` as a float."""


# YAML 1.1 (PyYAML) wants a dot in a float ("1.0e-3") and reads "1e-3" as a string; accept both.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, (str, int, float, bool)) or key is None:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(path: str | os.PathLike) -> Any:
    """The file's YAML document; unreadable files and syntax errors become a `StudyError` with
    the file, line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except OSError as exc:
        raise StudyError(f"{path}: cannot read the study file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise StudyError(f"{path}: cannot read the study file: not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise StudyError(f"{path}: {where}invalid YAML: {detail}") from None
