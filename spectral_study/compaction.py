"""Compaction: a study's per-trial fragments merged into one file per table, each trial kept once.

    spectral-study compact results/ablation          # or: compact_results("results/ablation")

A study writes ``<root>/<table>/<trial_id>.parquet`` per trial and table (`spectral_study.results`);
reading thousands of them costs seconds (benchmarks/results_scale.py). Compaction merges them into
``<root>/<table>/compacted.parquet``; fragments written later (a retry, a resume, ``--extend``)
sit beside it until the next compaction. `read_table` keeps the exactly-once rule with this rule:

- a trial with a ``trials`` fragment is read from its fragments only, in every table: it was
  written after the last compaction, so it overrides its compacted rows (its trials row is the
  last fragment a write puts down, so until it lands the trial's compacted rows stand);
- every other trial is read from the compacted files (and, if it was never compacted, from
  whatever fragments it has, as without compaction).

`compact_results` rewrites each table's compacted file (streaming, in row groups: the old
compacted rows of trials with no newer fragment, then the fragments of every trial whose write
is complete), swaps it in atomically, and only then deletes the merged fragments, each trial's
``trials`` fragment first: at every moment a reader sees each trial once. Other readers (pandas,
DuckDB on ``<root>/<table>``) see every file: exact once a folder is compacted with no newer
fragment, which is how a study leaves it (run and resume compact at the end when every trial has
finished). Compact a folder no study is writing to: a fragment rewritten while compaction runs
is kept (its size or time changed), but the check and the delete are not one atomic step.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spectral_study import results

COMPACTED = "compacted"  # <table>/compacted.parquet; no trial may take this id
_ROWS_PER_GROUP = 256 * 1024
_FILES_PER_READ = 512


@dataclass(frozen=True)
class CompactionReport:
    """What `compact_results` did."""

    root: str
    trials: int  # trials in the compacted files
    merged: int  # trials whose fragments this compaction merged
    fragments_removed: int
    rows: dict = field(default_factory=dict)  # table -> rows in its compacted file
    seconds: float = 0.0

    def __str__(self) -> str:
        tables = ", ".join(f"{table} {n:,}" for table, n in self.rows.items())
        return (f"{self.root}: {self.trials:,} trials compacted ({self.merged:,} merged now, "
                f"{self.fragments_removed:,} fragments removed) in {self.seconds:.1f} s; rows: {tables}")


def read_table(fs: pafs.FileSystem, root: str, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """One table of the results at ``root`` (see the module docstring for which rows count), with
    its fixed schema: hidden temporaries and other files are skipped, and a column added to the
    schema later reads as null in older files."""
    schema = results.SCHEMAS[name]
    wanted = columns or schema.names
    directory = f"{root}/{name}"
    fragments = _fragments(fs, directory)
    compacted = f"{directory}/{COMPACTED}.parquet"
    parts = []
    if _exists(fs, compacted):
        written = set(fragments) if name == "trials" else set(_fragments(fs, f"{root}/trials"))
        compacted_ids = _compacted_ids(fs, root)
        read = wanted if "trial_id" in wanted else [*wanted, "trial_id"]
        table = _dataset(fs, [compacted], schema).to_table(
            columns=read, filter=~pc.field("trial_id").isin(pa.array(sorted(written), pa.string())))
        parts.append(table.select(wanted))
        fragments = {t: info for t, info in fragments.items() if t in written or t not in compacted_ids}
    if fragments or not parts:
        paths = [fragments[t].path for t in sorted(fragments)]
        parts.append(_dataset(fs, paths, schema).to_table(columns=wanted))
    return pa.concat_tables(parts).to_pandas(types_mapper=results._NULLABLE.get)


def compact_results(path: str | os.PathLike) -> CompactionReport:
    """Merge the fragments of every trial whose write is complete into the compacted files and
    remove them; see the module docstring for the order that keeps each trial once."""
    started = time.perf_counter()
    fs, root = results._existing(path)
    listing = {table: _fragments(fs, f"{root}/{table}") for table in results.TABLES}
    complete = set(listing["trials"])  # a trial's trials row is written last
    rows = {}
    for table in results.TABLES:
        merged = [listing[table][t] for t in sorted(listing[table]) if t in complete]
        rows[table] = _rewrite(fs, f"{root}/{table}", table, merged, complete)
    removed = 0
    for trial_id in sorted(complete):
        if not _unchanged(fs, listing["trials"][trial_id]):
            continue  # written again meanwhile: its fragments stay, and override
        fs.delete_file(listing["trials"][trial_id].path)  # from now on its compacted rows count
        removed += 1
        for table in results.TABLES:
            info = listing[table].get(trial_id)
            if table != "trials" and info is not None and _unchanged(fs, info):
                fs.delete_file(info.path)
                removed += 1
    return CompactionReport(root=os.fspath(path), trials=len(_compacted_ids(fs, root)), merged=len(complete),
                            fragments_removed=removed, rows={t: n for t, n in rows.items() if n is not None},
                            seconds=time.perf_counter() - started)


def compact_if_finished(path: str | os.PathLike, planned: int) -> CompactionReport | None:
    """`compact_results` once every one of the ``planned`` trials has its row (a finished trial's
    status); None while some are missing (an interrupted run: `resume` compacts at its end)."""
    if len(results.completed_trial_ids(path)) < planned:
        return None
    return compact_results(path)


def _rewrite(fs: pafs.FileSystem, directory: str, table: str, merged: list[pafs.FileInfo],
             complete: set[str]) -> int | None:
    """Write ``directory/compacted.parquet`` anew: its old rows of trials not in ``complete``,
    then the ``merged`` fragments; the rows it holds (None: no compacted file, none needed)."""
    schema = results.SCHEMAS[table]
    target = f"{directory}/{COMPACTED}.parquet"
    old = _exists(fs, target)
    if not merged and not old:
        return None
    temporary = f"{directory}/.{COMPACTED}.parquet.tmp-{uuid.uuid4().hex}"
    written = 0
    try:
        with pq.ParquetWriter(temporary, schema, filesystem=fs) as writer:
            pending: list[pa.RecordBatch] = []

            def flush(force: bool = False) -> None:
                nonlocal pending, written
                size = sum(len(b) for b in pending)
                if size and (force or size >= _ROWS_PER_GROUP):
                    writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=_ROWS_PER_GROUP)
                    written += size
                    pending = []

            if old:
                keep = ~pc.field("trial_id").isin(pa.array(sorted(complete), pa.string()))
                for batch in _dataset(fs, [target], schema).to_batches(filter=keep):
                    pending.append(batch)
                    flush()
            for begin in range(0, len(merged), _FILES_PER_READ):
                chunk = [info.path for info in merged[begin:begin + _FILES_PER_READ]]
                pending += _dataset(fs, chunk, schema).to_table().to_batches()
                flush()
            flush(force=True)
        _replace(fs, temporary, target)
    except BaseException:
        if _exists(fs, temporary):
            fs.delete_file(temporary)
        raise
    return written


def _replace(fs: pafs.FileSystem, source: str, target: str) -> None:
    """Rename ``source`` over ``target``: atomic on a local disk, a whole PUT on an object store."""
    if isinstance(fs, pafs.LocalFileSystem):
        os.replace(source, target)
    else:
        fs.move(source, target)


def _fragments(fs: pafs.FileSystem, directory: str) -> dict[str, pafs.FileInfo]:
    """trial id -> file info of the table's per-trial fragments (not the compacted file)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    except FileNotFoundError:
        return {}
    out = {}
    for info in infos:
        name = info.base_name
        if info.is_file and name.endswith(".parquet") and not name.startswith((".", "_")):
            trial_id = name[: -len(".parquet")]
            if trial_id != COMPACTED:
                out[trial_id] = info
    return out


def _compacted_ids(fs: pafs.FileSystem, root: str) -> set[str]:
    path = f"{root}/trials/{COMPACTED}.parquet"
    if not _exists(fs, path):
        return set()
    return set(_dataset(fs, [path], results.SCHEMAS["trials"]).to_table(columns=["trial_id"])
               .column("trial_id").to_pylist())


def _dataset(fs: pafs.FileSystem, paths: list[str], schema: pa.Schema) -> ds.Dataset:
    return ds.dataset(paths, schema=schema, format="parquet", filesystem=fs)


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def _unchanged(fs: pafs.FileSystem, info: pafs.FileInfo) -> bool:
    now = fs.get_file_info(info.path)
    return now.type == pafs.FileType.File and now.size == info.size and now.mtime == info.mtime
