"""Compaction: one file per table, every trial still once, and writes after it still override."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from spectral_study.compaction import COMPACTED, compact_if_finished, compact_results
from spectral_study.results import TABLES, ResultsError, ResultsWriter, completed_trial_ids, load_results
from spectral_study.trial import run_trial

STUDY = "unit"


@pytest.fixture(scope="module")
def summary() -> dict:
    """One real trial summary with rows in every table but weights (a hidden layer, pruning)."""
    return run_trial({"dataset": "synthetic", "mode": "spectral-eigvals", "widths": [4], "epochs": 2,
                      "synthetic_size": [120, 40], "pruning": {"methods": ["eigenvalue"], "fractions": [0.5],
                                                               "retrain_epochs": 0}})


def variant(summary: dict, seed: int, accuracy: float | None = None) -> dict:
    out = copy.deepcopy(summary)
    out["config"]["seed"] = seed
    if accuracy is not None:
        out["final_test_accuracy"] = accuracy
        for row in out["history"]:
            row["test_accuracy"] = accuracy
    return out


def fragments(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet") if p.stem != COMPACTED)


def canonical(tables: dict) -> dict:
    """Tables sorted by their keys, index dropped (compaction may change the order of rows)."""
    keys = {"trials": ["trial_id"], "epochs": ["trial_id", "epoch"], "spectra": ["trial_id", "layer", "side", "node"],
            "pruning": ["trial_id", "epoch", "protocol", "method", "fraction"],
            "weights": ["trial_id", "layer", "row", "col"]}
    return {name: frame.sort_values(keys[name]).reset_index(drop=True) for name, frame in tables.items()}


def test_compaction_keeps_every_row_once_and_leaves_one_file_per_table(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    for i in range(5):
        writer.write_trial(f"t{i}", STUDY, variant(summary, i))
    before = canonical(load_results(tmp_path))
    report = compact_results(tmp_path)
    assert (report.trials, report.merged) == (5, 5) and report.fragments_removed == len(
        [t for t in TABLES if len(before[t])]) * 5
    assert fragments(tmp_path) == []
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet")) == sorted(
        f"{t}/{COMPACTED}.parquet" for t in TABLES if len(before[t]))
    after = canonical(load_results(tmp_path))
    for name in TABLES:
        pd.testing.assert_frame_equal(after[name], before[name])
    # Other readers see the folder as one data set, once compacted: each row once.
    assert len(pd.read_parquet(tmp_path / "trials")) == 5
    assert completed_trial_ids(tmp_path) == {f"t{i}" for i in range(5)}


def test_a_later_write_overrides_its_trials_compacted_rows_in_every_table(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    for i in range(3):
        writer.write_trial(f"t{i}", STUDY, variant(summary, i, accuracy=0.1))
    compact_results(tmp_path)
    # A retry rewrites t1 (new accuracy, and no spectra now); --extend adds t3.
    retried = variant(summary, 1, accuracy=0.9)
    retried["spectra"] = []
    writer.write_trial("t1", STUDY, retried)
    writer.write_trial("t3", STUDY, variant(summary, 3, accuracy=0.5))
    tables = load_results(tmp_path)
    trials = tables["trials"].set_index("trial_id")
    assert sorted(trials.index) == ["t0", "t1", "t2", "t3"]
    assert trials.loc["t1", "final_test_accuracy"] == 0.9 and trials.loc["t0", "final_test_accuracy"] == 0.1
    epochs = tables["epochs"]
    assert not epochs.duplicated(["trial_id", "epoch"]).any() and len(epochs) == 4 * len(summary["history"])
    assert set(epochs.loc[epochs.trial_id == "t1", "test_accuracy"]) == {0.9}
    assert "t1" not in set(tables["spectra"]["trial_id"])  # its compacted spectra rows are overridden too
    only = load_results(tmp_path, tables=["trials"])["trials"].set_index("trial_id")
    assert only.loc["t1", "final_test_accuracy"] == 0.9
    # Compacting again merges the new writes; the result reads the same.
    before = canonical(load_results(tmp_path))
    report = compact_results(tmp_path)
    assert report.trials == 4 and report.merged == 2 and fragments(tmp_path) == []
    after = canonical(load_results(tmp_path))
    for name in TABLES:
        pd.testing.assert_frame_equal(after[name], before[name])


def test_a_rewrite_still_under_way_leaves_the_compacted_trial_as_it_was(tmp_path, summary):
    """A new epochs fragment without its trials fragment (the trials row is written last) is
    not read yet: the trial reads whole from the compacted files."""
    root, scratch = tmp_path / "study", tmp_path / "scratch"
    ResultsWriter(root).write_trial("t0", STUDY, variant(summary, 0, accuracy=0.1))
    compact_results(root)
    ResultsWriter(scratch).write_trial("t0", STUDY, variant(summary, 0, accuracy=0.7))
    (scratch / "epochs" / "t0.parquet").rename(root / "epochs" / "t0.parquet")
    epochs = load_results(root)["epochs"]
    assert set(epochs["test_accuracy"]) == {0.1} and len(epochs) == len(summary["history"])
    report = compact_results(root)  # an incomplete write is neither merged nor removed
    assert report.merged == 0 and fragments(root) == ["epochs/t0.parquet"]


def test_load_results_reads_only_the_tables_asked_for(tmp_path, summary):
    ResultsWriter(tmp_path).write_trial("t0", STUDY, summary)
    assert list(load_results(tmp_path, tables=["trials"])) == ["trials"]
    assert list(load_results(tmp_path, tables="epochs")) == ["epochs"]
    only = load_results(tmp_path, tables=["weights"])  # none written: empty, not an error
    assert len(only["weights"]) == 0
    (tmp_path / "epochs" / "t0.parquet").write_bytes(b"not parquet")  # an unread table is not opened
    assert len(load_results(tmp_path, tables=["trials"])["trials"]) == 1
    with pytest.raises(ResultsError, match="unknown results table 'trial'"):
        load_results(tmp_path, tables=["trial"])


def test_compact_if_finished_waits_for_every_trial(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    writer.write_trial("t0", STUDY, summary)
    assert compact_if_finished(tmp_path, planned=2) is None and fragments(tmp_path)
    writer.write_trial("t1", STUDY, None, error="boom", extra={"config": summary["config"]})  # failed: finished
    assert compact_if_finished(tmp_path, planned=2).trials == 2 and fragments(tmp_path) == []


def test_the_compacted_name_is_not_a_trial_id(tmp_path, summary):
    with pytest.raises(ResultsError, match="not be 'compacted'"):
        ResultsWriter(tmp_path).write_trial(COMPACTED, STUDY, summary)


def test_cli_compact(tmp_path, summary):
    ResultsWriter(tmp_path).write_trial("t0", STUDY, summary)
    done = subprocess.run([sys.executable, "-m", "spectral_study.cli", "compact", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 trials compacted" in done.stdout and fragments(tmp_path) == []
    missing = subprocess.run([sys.executable, "-m", "spectral_study.cli", "compact", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no results folder" in missing.stderr
