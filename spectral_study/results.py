"""A study's results as Parquet: one fragment per trial and table, whole or absent.

    writer = ResultsWriter("results/ablation")          # or "s3://bucket/results/ablation"
    writer.write_trial(trial_id, "ablation", run_trial(config))
    tables = load_results("results/ablation")            # {"trials": DataFrame, "epochs": ..., ...}

Layout: ``<root>/<table>/<trial_id>.parquet`` for each table in `TABLES`, so pandas, pyarrow,
polars and DuckDB read ``<root>/<table>`` as one dataset (docs/results.md lists every column).
Each fragment is written under a hidden temporary name and renamed over its final name: a reader
never sees half a fragment, readers skip names starting with "." by default, and writing a trial
again (retry, resume) replaces its rows instead of adding to them. Every table has one fixed
schema, so fragments agree on types even where one trial holds None and another a number.

Only pyarrow, pandas and the standard library here (no Ray): any process can read results.
"""
from __future__ import annotations

import importlib.metadata
import json
import math
import os
import posixpath
import re
import urllib.parse
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spectral_study.config import TrialConfig, TrialConfigError, config_columns
from spectral_study.vocabulary import EPOCH_METRICS, STATUSES

TABLES = ("trials", "epochs", "spectra", "pruning", "weights")
TERMINAL_STATUSES = frozenset(STATUSES)
PRODUCER = "spectral-study run STUDY.yaml"
EXPERIMENT_DIR = "_tune"  # Ray Tune's experiment state, inside a study's results folder

_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
_KEYS = [pa.field("study", pa.string()), pa.field("trial_id", pa.string(), nullable=False)]
# The outcome of a trial and where it ran; the config columns come from `TrialConfig`.
_OUTCOME_COLUMNS = [
    ("status", pa.string()), ("epochs_completed", pa.int64()),
    ("final_test_accuracy", pa.float64()), ("best_test_accuracy", pa.float64()),
    ("final_train_loss", pa.float64()), ("trainable_params", pa.int64()),
    ("total_params", pa.int64()),
    # Seconds of training summed over every attempt (retries and resumes), and the attempts.
    ("wall_seconds", pa.float64()), ("attempt", pa.int64()),
    # The epoch the last attempt continued from (0: it started afresh).
    ("restored_from_epoch", pa.int64()), ("error", pa.string()),
    ("device", pa.string()), ("host", pa.string()), ("node_id", pa.string()),
    # GPUs Ray assigned (e.g. "0"; a 0.25 share still names its GPU), whether or not torch
    # could use them: device "cpu" with gpu_ids set records a fallback to the CPU.
    ("gpu_ids", pa.string()),
    # Which copy of the data the trial saw: its directory and the checksum of its files.
    ("data_source", pa.string()), ("data_fingerprint", pa.string()),
    ("python_version", pa.string()), ("torch_version", pa.string()), ("ray_version", pa.string()),
    ("package_version", pa.string()), ("finished_at", pa.timestamp("us", tz="UTC")),
    # Reproducibility (spectral_study.provenance): the code's commit when the driver ran from a
    # checkout, and whether its tree differed from it; the library versions; the GPU, if one was used.
    ("git_commit", pa.string()), ("git_dirty", pa.bool_()), ("numpy_version", pa.string()),
    ("pyarrow_version", pa.string()), ("optuna_version", pa.string()), ("cuda_version", pa.string()),
    ("gpu_name", pa.string()),
]
SCHEMAS = {
    "trials": pa.schema(_KEYS + [(name, _ARROW_TYPES[kind]) for name, kind in config_columns().items()]
                        + _OUTCOME_COLUMNS),
    "epochs": pa.schema(_KEYS + [("epoch", pa.int64())] + [(m, pa.float64()) for m in EPOCH_METRICS]),
    "spectra": pa.schema(_KEYS + [
        ("layer", pa.int64()), ("side", pa.string()), ("node", pa.int64()),
        ("eigenvalue", pa.float64()), ("trained", pa.bool_()),
    ]),
    # Trained direct-space weights W, kept only for perceptrons (no hidden layer: 784 × 10
    # values), which is what the weight-distribution analysis (claim C3) compares.
    "weights": pa.schema(_KEYS + [
        ("layer", pa.int64()), ("row", pa.int64()), ("col", pa.int64()), ("weight", pa.float64()),
        ("trainable", pa.bool_()),
    ]),
    "pruning": pa.schema(_KEYS + [
        # The training epoch after which the network was pruned (pruning.at_epochs).
        ("epoch", pa.int64()),
        ("protocol", pa.string()), ("method", pa.string()), ("fraction", pa.float64()),
        ("nodes_kept", pa.int64()), ("test_accuracy", pa.float64()),
    ]),
}
_SUMMARY_COLUMNS = ("epochs_completed", "final_test_accuracy", "best_test_accuracy", "final_train_loss",
                    "trainable_params", "total_params", "wall_seconds", "restored_from_epoch",
                    "device", "host", "data_source", "data_fingerprint")
# Runner facts `extra` may set: the outcome columns that neither the summary nor write_trial's
# own arguments fill.
_EXTRA_KEYS = {"config", "trial_id", "attempt", "node_id", "gpu_ids", "ray_version", "restored_from_epoch",
               "git_commit", "git_dirty", "pyarrow_version", "optuna_version"}
# Integers and flags as pandas' nullable types: a failed trial's missing seed is <NA>, and does
# not turn the whole seed column into floats.
_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
# A trial id becomes a file name: no separators, and no leading "." (readers would skip it).
_TRIAL_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=-]*")


class ResultsError(Exception):
    """Results that cannot be written or read (names the path and what to do)."""


class ResultsWriter:
    """Writes a study's per-trial fragments under ``root`` (a local path or a pyarrow URI)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.fspath(root)
        self.fs, self.path = filesystem(root)

    def write_trial(self, trial_id: str, study: str | None, summary: dict | None, *,
                    status: str | None = None, error: str | None = None,
                    epochs: list[dict] | None = None, extra: dict | None = None) -> None:
        """Write (or replace) every table's fragment of one trial.

        ``summary`` is what `run_trial` returned; None for a trial that failed or was stopped
        before it could return, whose row is built from ``extra["config"]`` and the ``epochs``
        it reported. ``status`` overrides the summary's (e.g. "stopped" by ASHA; default
        "failed" without a summary). ``extra`` adds runner facts (node_id, attempt, ray_version…).
        The trials row is written last: a trial counts as done (`completed_trial_ids`) only once
        all its other fragments are in place. A trial that packed its seeds (``pack_seeds``)
        writes one trial per seed, ``<trial_id>-s<seed>`` (`member_trial_id`), each from its own
        summary (``summary["members"]``); failed before it returned, each seed's row says so.
        """
        if not isinstance(trial_id, str) or not _TRIAL_ID.fullmatch(trial_id) or trial_id == "compacted":
            raise ResultsError(f"trial_id must match {_TRIAL_ID.pattern} (it names a file) and not be "
                               f"'compacted', got {trial_id!r}")
        members = _packed(trial_id, summary, extra)
        for member_id, member, member_extra in members:  # no per-seed epochs without its summary
            self.write_trial(member_id, study, member, status=status, error=error,
                             epochs=None if member else [], extra=member_extra)
        if members:
            return
        extra = dict(extra or {})
        unknown = sorted(set(extra) - _EXTRA_KEYS)
        if unknown:
            raise ResultsError(f"unknown extra key(s) {unknown}; allowed: {sorted(_EXTRA_KEYS)}")
        if extra.pop("trial_id", trial_id) != trial_id:
            raise ResultsError(f"extra['trial_id'] disagrees with trial_id {trial_id!r}")
        summary = summary or {}
        history = list(epochs if epochs is not None else summary.get("history") or [])
        keys = {"study": study, "trial_id": trial_id}
        row = _trial_row(summary, history, extra, status, error)
        self._write("epochs", trial_id, [{**h, **keys} for h in history])
        self._write("spectra", trial_id, [{**s, **keys} for s in summary.get("spectra") or []])
        self._write("pruning", trial_id, [{**p, **keys} for p in summary.get("pruning") or []])
        self._write("weights", trial_id, [{**w, **keys} for w in summary.get("weights") or []])
        self._write("trials", trial_id, [{**row, **keys}])

    def _write(self, table: str, trial_id: str, rows: list[dict]) -> None:
        """Write one fragment atomically; no rows means no fragment (a stale one is removed)."""
        directory = f"{self.path}/{table}"
        final = f"{directory}/{trial_id}.parquet"
        if not rows:
            if self.fs.get_file_info(final).type != pafs.FileType.NotFound:
                self.fs.delete_file(final)
            return
        schema = SCHEMAS[table]
        data = pa.Table.from_pylist([{f.name: _coerce(r.get(f.name), f.type) for f in schema}
                                     for r in rows], schema=schema)
        self.fs.create_dir(directory, recursive=True)
        temporary = f"{directory}/.{trial_id}.parquet.tmp-{uuid.uuid4().hex}"
        try:
            pq.write_table(data, temporary, filesystem=self.fs)
            if isinstance(self.fs, pafs.LocalFileSystem):
                os.replace(temporary, final)  # atomic over an existing fragment, on every OS
            else:
                self.fs.move(temporary, final)  # object stores: the final PUT is whole or absent
        except BaseException:
            if self.fs.get_file_info(temporary).type != pafs.FileType.NotFound:
                self.fs.delete_file(temporary)
            raise


def load_results(path: str | os.PathLike, tables=None) -> dict[str, pd.DataFrame]:
    """Every table of a study's results, or only those named in ``tables`` (``["trials"]``: the
    others are not read); a table no trial wrote is an empty frame."""
    names = TABLES if tables is None else ([tables] if isinstance(tables, str) else list(tables))
    for name in names:
        if name not in TABLES:
            raise ResultsError(f"unknown results table {name!r}; available: {', '.join(TABLES)}")
    fs, root = _existing(path)
    tables = {name: _read(fs, root, name) for name in names}
    trials = tables["trials"] if "trials" in tables else _read(fs, root, "trials", columns=["trial_id"])
    if len(trials) == 0 and all(len(frame) == 0 for frame in tables.values()):
        raise ResultsError(f"{os.fspath(path)}: holds no results (no {'/'.join(TABLES)} fragments); "
                           f"`{PRODUCER}` writes them")
    return tables


def load_table(path: str | os.PathLike, name: str) -> pd.DataFrame:
    """One table of a study's results (empty, with its columns, if no trial wrote it)."""
    if name not in TABLES:
        raise ResultsError(f"unknown results table {name!r}; available: {', '.join(TABLES)}")
    fs, root = _existing(path)
    return _read(fs, root, name)


def completed_trial_ids(path: str | os.PathLike, *,
                        statuses: frozenset[str] = TERMINAL_STATUSES) -> set[str]:
    """Trial ids whose trials row has one of ``statuses``: what a resume must not run again.

    An existing root with no trials yet gives an empty set; a missing root is an error, so a
    mistyped path does not silently rerun a whole study.
    """
    fs, root = _existing(path)
    frame = _read(fs, root, "trials", columns=["trial_id", "status"])
    return set(frame.loc[frame["status"].isin(statuses), "trial_id"])


def _trial_row(summary: dict, history: list[dict], extra: dict, status: str | None,
               error: str | None) -> dict:
    """The flat trials row: config columns, outcome, environment, runner facts."""
    raw_config = summary.get("config") or extra.pop("config", None) or {}
    extra.pop("config", None)
    try:
        # An empty config (a trial that failed before Ray handed it one) fills in no defaults.
        row = TrialConfig.from_dict(raw_config).columns() if raw_config else {"config_json": "{}"}
    except TrialConfigError:  # recorded anyway: the raw config stays readable in config_json
        row = {"config_json": json.dumps(raw_config, sort_keys=True, default=str)}
    if summary:
        row.update({key: summary.get(key) for key in _SUMMARY_COLUMNS})
        versions = summary.get("versions") or {}
        row.update(python_version=versions.get("python"), torch_version=versions.get("torch"),
                   numpy_version=versions.get("numpy"), cuda_version=versions.get("cuda"),
                   gpu_name=versions.get("gpu_name"))
        # The trial counts attempts that reached a checkpoint; the runner also those that did not.
        extra["attempt"] = max(int(extra.get("attempt") or 1), int(summary.get("attempts") or 1))
    elif history:  # a failed or stopped trial: what its reported epochs say
        tested = [h["test_accuracy"] for h in history if _finite(h.get("test_accuracy"))]
        row.update(epochs_completed=len(history), final_test_accuracy=history[-1].get("test_accuracy"),
                   best_test_accuracy=max(tested, default=None),
                   final_train_loss=history[-1].get("train_loss"))
    else:
        row.update(epochs_completed=0)
    row.update(status=status or summary.get("status") or "failed", error=error,
               package_version=_package_version(),
               finished_at=datetime.now(timezone.utc))
    row.update(extra)
    return row


def member_trial_id(trial_id: str, seed: int) -> str:
    """The trial id of one seed of a trial that packed its seeds: ``<trial_id>-s<seed>``."""
    return f"{trial_id}-s{seed}"


def _packed(trial_id: str, summary: dict | None, extra: dict | None) -> list[tuple[str, dict | None, dict]]:
    """(trial id, summary, extra) per seed of a trial that packed its seeds; [] for any other."""
    extra = dict(extra or {})
    if summary and summary.get("members"):
        return [(member_trial_id(trial_id, m["config"]["seed"]), m, extra) for m in summary["members"]]
    raw = (summary or {}).get("config") or extra.get("config") or {}
    if summary or not raw.get("pack_seeds") or int(raw.get("repeats") or 1) < 2:
        return []
    try:  # failed (or stopped) before it returned: one row per seed, with that seed's config
        configs = TrialConfig.from_dict(raw).members()
    except TrialConfigError:
        return []
    return [(member_trial_id(trial_id, c.seed), None, {**extra, "config": c.to_dict()}) for c in configs]


def _coerce(value, type_: pa.DataType):
    """A value as the column's type, or None: a result is recorded even if one field is odd."""
    if value is None:
        return None
    try:
        if pa.types.is_boolean(type_):
            return bool(value) if value in (True, False) else None
        if pa.types.is_integer(type_):
            return int(value) if float(value).is_integer() else None
        if pa.types.is_floating(type_):
            return float(value)
        if pa.types.is_string(type_):
            return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        if pa.types.is_timestamp(type_):
            return value if isinstance(value, datetime) else None
    except (TypeError, ValueError, OverflowError):
        return None
    return value


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _package_version() -> str | None:
    try:
        return importlib.metadata.version("spectral-study")
    except importlib.metadata.PackageNotFoundError:
        return None


def results_root(storage: str, name: str) -> str:
    """``<storage>/<name>``, a study's results folder: an absolute local path, or a URI."""
    if "://" in storage:
        return join_uri(storage, name)
    return str(Path(storage).expanduser().resolve() / name)


def study_root(path: str) -> str:
    """A study's results folder from what a user typed: the folder itself or its ``_tune``. A
    URI keeps its query: ``s3://b/r/x/_tune?scheme=http`` gives ``s3://b/r/x?scheme=http``."""
    text = os.fspath(path)
    if "://" in text:
        split = urllib.parse.urlsplit(text)
        return urllib.parse.urlunsplit(split._replace(path=_strip_experiment_dir(split.path)))
    root = _strip_experiment_dir(text) or "."
    return str(Path(root).expanduser().resolve())


def _strip_experiment_dir(path: str) -> str:
    path = path.rstrip("/")
    if path.endswith("/" + EXPERIMENT_DIR) or path == EXPERIMENT_DIR:
        path = path[: -len(EXPERIMENT_DIR)].rstrip("/")
    return path


def join_uri(root: str, *parts: str) -> str:
    """``root/part/…`` for a local path or a URI. A URI's query (``?endpoint_override=…``, the
    way pyarrow configures S3-compatible stores) stays at the end, after the joined path."""
    if "://" not in root:
        return str(Path(root, *parts))
    split = urllib.parse.urlsplit(root)
    return urllib.parse.urlunsplit(split._replace(path="/".join([split.path.rstrip("/"), *parts])))


def filesystem(root) -> tuple[pafs.FileSystem, str]:
    """A URI through pyarrow (s3://, gs://, file://…); a plain path as an absolute local one."""
    text = os.fspath(root)
    if "://" not in text:
        return pafs.LocalFileSystem(), os.path.abspath(text)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as error:
        raise ResultsError(f"{text}: not a results location pyarrow can open ({_first_line(error)})") from None
    return fs, path.rstrip("/")


def check_location(root) -> None:
    """Check, writing nothing, that ``root`` can be reached and that it or a folder above it
    exists (an object store's bucket, at least): a `ResultsError` naming the location otherwise.
    Runners call it before starting anything, so a mistyped bucket or endpoint is one line."""
    fs, path = filesystem(root)
    probe = path
    try:
        while probe:
            kind = fs.get_file_info(probe).type
            if kind == pafs.FileType.Directory:
                return
            if kind != pafs.FileType.NotFound:
                raise ResultsError(f"{os.fspath(root)}: {probe} is a file, not a folder")
            parent = posixpath.dirname(probe.rstrip("/"))
            probe = parent if parent != probe else ""
    except OSError as error:  # an endpoint that cannot be reached, access denied, ...
        raise ResultsError(f"{os.fspath(root)}: cannot reach it: {_first_line(error)}") from None
    bucket = path.split("/", 1)[0]
    hint = f": no bucket {bucket!r} there; create it first (`aws s3 mb s3://{bucket}`)" \
        if isinstance(fs, pafs.S3FileSystem) else ""
    raise ResultsError(f"{os.fspath(root)}: neither it nor a folder above it exists{hint}")


def write_text(root, name: str, text: str) -> None:
    """Write ``root/name`` (a local path or a URI), creating ``root`` if needed; a location that
    cannot be written (no such bucket, endpoint unreachable, access denied) is a `ResultsError`."""
    fs, base = filesystem(root)
    try:
        fs.create_dir(base, recursive=True)
        with fs.open_output_stream(f"{base}/{name}") as stream:
            stream.write(text.encode())
    except OSError as error:
        raise ResultsError(f"{join_uri(os.fspath(root), name)}: cannot write there: {_first_line(error)}") from None


def read_text(root, name: str) -> str:
    """The text of ``root/name``; FileNotFoundError naming the path when it is not there."""
    fs, base = filesystem(root)
    try:
        with fs.open_input_stream(f"{base}/{name}") as stream:
            return stream.read().decode()
    except (FileNotFoundError, OSError) as error:
        raise FileNotFoundError(f"{join_uri(os.fspath(root), name)}: cannot read ({_first_line(error)})") from None


def _existing(path) -> tuple[pafs.FileSystem, str]:
    fs, root = filesystem(path)
    try:
        kind = fs.get_file_info(root).type
    except OSError as error:  # an object store that cannot be reached, or refuses us
        raise ResultsError(f"{os.fspath(path)}: cannot read there: {_first_line(error)}") from None
    if kind != pafs.FileType.Directory:
        raise ResultsError(f"{os.fspath(path)}: no results folder there; `{PRODUCER}` writes one")
    return fs, root


def _first_line(error: BaseException) -> str:
    """pyarrow's reason, on one line (its S3 errors can run over several)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _read(fs: pafs.FileSystem, root: str, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one table with its fixed schema: per-trial fragments and, once the study was
    compacted, its compacted file (`spectral_study.compaction.read_table`)."""
    from spectral_study.compaction import read_table

    return read_table(fs, root, name, columns)
