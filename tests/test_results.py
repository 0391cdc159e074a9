"""Contracts of `spectral_study.results`: real Parquet files in tmp_path, written from a real
`run_trial` summary; every trial once, every (trial, epoch) once, whatever is rewritten."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from spectral_study.results import (
    SCHEMAS,
    TABLES,
    ResultsError,
    ResultsWriter,
    check_location,
    completed_trial_ids,
    join_uri,
    load_results,
    load_table,
    member_trial_id,
    results_root,
    study_root,
)
from spectral_study.trial import run_trial

STUDY = "unit"
EPOCHS = 2


@pytest.fixture(scope="module")
def summary() -> dict:
    """One real trial summary (about a second on a CPU)."""
    return run_trial({"dataset": "synthetic", "mode": "spectral-eigvals", "widths": [8],
                      "epochs": EPOCHS, "synthetic_size": [200, 100]})


def variant(summary: dict, **config) -> dict:
    result = copy.deepcopy(summary)
    result["config"].update(config)
    return result


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_round_trip_keeps_every_trial_and_epoch_once(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    ids = ["t0", "t1", "t2"]
    for seed, trial_id in enumerate(ids):
        writer.write_trial(trial_id, STUDY, variant(summary, seed=seed),
                           extra={"node_id": f"node{seed}", "attempt": 1, "ray_version": "2.60.0"})
    tables = load_results(tmp_path)
    assert set(tables) == set(TABLES)
    trials, epochs, spectra = tables["trials"], tables["epochs"], tables["spectra"]
    assert list(trials.columns) == SCHEMAS["trials"].names
    assert sorted(trials["trial_id"]) == ids
    assert len(epochs) == len(ids) * EPOCHS
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert len(spectra) == len(ids) * len(summary["spectra"])
    assert len(tables["pruning"]) == 0 and list(tables["pruning"].columns) == SCHEMAS["pruning"].names

    row = trials.set_index("trial_id").loc["t1"]
    assert (row.study, row.status, row.dataset) == (STUDY, "completed", "synthetic")
    assert row["mode"] == "spectral-eigvals"  # row.mode is Series.mode
    assert (row.widths, row.n_hidden_layers, row.width, row.seed) == ("8", 1, 8, 1)
    assert row.final_test_accuracy == summary["final_test_accuracy"]
    assert row.trainable_params == summary["trainable_params"]
    assert math.isnan(row.lr_eigvals) and row.lr == summary["config"]["lr"]
    assert (row.node_id, row.attempt, row.ray_version) == ("node1", 1, "2.60.0")
    assert row.torch_version == summary["versions"]["torch"] and row.device_requested == "auto"
    assert row.finished_at.tzinfo is not None and pd.isna(row.error)
    first = epochs[(epochs.trial_id == "t1") & (epochs.epoch == 1)].iloc[0]
    assert first.test_accuracy == summary["history"][0]["test_accuracy"]
    eig = spectra[spectra.trial_id == "t0"].iloc[0]
    assert (eig.layer, eig.side, eig.node, eig.eigenvalue) == tuple(
        summary["spectra"][0][k] for k in ("layer", "side", "node", "eigenvalue"))


def test_rewriting_a_trial_replaces_its_rows(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    writer.write_trial("t0", STUDY, summary)
    writer.write_trial("t1", STUDY, summary)
    writer.write_trial("t0", STUDY, summary, status="stopped", extra={"attempt": 2})
    tables = load_results(tmp_path)
    assert len(tables["trials"]) == 2
    assert tables["trials"].set_index("trial_id").loc["t0", "status"] == "stopped"
    assert tables["trials"].set_index("trial_id").loc["t0", "attempt"] == 2
    assert len(tables["epochs"]) == 2 * EPOCHS
    assert len(tables["spectra"]) == 2 * len(summary["spectra"])


def test_a_failed_trial_without_summary_keeps_config_error_and_epochs(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    writer.write_trial("ok", STUDY, summary)
    config = {"dataset": "synthetic", "mode": "dense", "widths": "256-128", "lr": 0.01, "seed": 3}
    writer.write_trial("bad", STUDY, None, error="RuntimeError: boom", epochs=summary["history"][:1],
                       extra={"config": config, "attempt": 3, "node_id": "n1"})
    tables = load_results(tmp_path)
    row = tables["trials"].set_index("trial_id").loc["bad"]
    assert (row.status, row.error, row.attempt, row.node_id) == ("failed", "RuntimeError: boom", 3, "n1")
    assert (row["mode"], row.widths, row.n_hidden_layers, row.width) == ("dense", "256-128", 2, 256)
    assert row.lr == 0.01
    assert row.epochs_completed == 1
    assert row.final_test_accuracy == summary["history"][0]["test_accuracy"]
    assert row.trainable_params is pd.NA  # unknown, not zero
    assert '"widths": [256, 128]' in row.config_json  # the canonical form
    assert (tables["epochs"].trial_id == "bad").sum() == 1
    assert not (tables["spectra"].trial_id == "bad").any()


def test_a_trial_failing_before_any_epoch_still_has_a_row(tmp_path):
    ResultsWriter(tmp_path).write_trial("early", STUDY, None, error="OOM",
                                        extra={"config": {"mode": "dense", "widths": []}})
    tables = load_results(tmp_path)
    row = tables["trials"].iloc[0]
    assert (row.trial_id, row.status, row.epochs_completed) == ("early", "failed", 0)
    assert (row.widths, row.n_hidden_layers, row.width) == ("none", 0, 0)  # no hidden layer
    assert len(tables["epochs"]) == 0 and not (tmp_path / "epochs").exists()


def test_fragments_with_different_nulls_read_as_one_dataset(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    writer.write_trial("dense", STUDY, variant(summary, lr_eigvals=None, subset_seed=None))
    writer.write_trial("eig", STUDY, variant(summary, lr_eigvals=0.05, subset_seed=7))
    writer.write_trial("fail", STUDY, None, extra={"config": {}})  # almost every column null
    for frame in (load_table(tmp_path, "trials"), pd.read_parquet(tmp_path / "trials"),
                  ds.dataset(tmp_path / "trials").to_table().to_pandas()):
        by_id = frame.set_index("trial_id")
        assert len(frame) == 3
        assert math.isnan(by_id.loc["dense", "lr_eigvals"]) and by_id.loc["eig", "lr_eigvals"] == 0.05
        assert by_id.loc["eig", "subset_seed"] == 7
        assert frame["lr_eigvals"].dtype == "float64"
    trials = load_table(tmp_path, "trials")
    assert trials["seed"].dtype == "Int64" and trials["bias"].dtype == "boolean"
    assert trials.set_index("trial_id")["seed"].isna().tolist() == [False, False, True]


def test_empty_spectra_remove_a_stale_fragment_and_pruning_rows_are_kept(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    writer.write_trial("t0", STUDY, summary)
    assert (tmp_path / "spectra" / "t0.parquet").exists()
    dense = variant(summary, mode="dense")
    dense["spectra"] = []
    dense["pruning"] = [{"protocol": "post", "method": method, "fraction": fraction,
                         "nodes_kept": round(8 * (1 - fraction)), "test_accuracy": 0.5}
                        for method in ("eigenvalue", "random") for fraction in (0.0, 0.5)]
    writer.write_trial("t0", STUDY, dense)
    tables = load_results(tmp_path)
    assert len(tables["spectra"]) == 0 and not (tmp_path / "spectra" / "t0.parquet").exists()
    pruning = tables["pruning"]
    assert len(pruning) == 4 and not pruning.duplicated(["trial_id", "method", "fraction"]).any()
    assert pruning["nodes_kept"].tolist() == [8, 4, 8, 4]


def test_writes_leave_no_temporary_files(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    for _ in range(2):
        writer.write_trial("t0", STUDY, summary)
    assert all_files(tmp_path) == [f"{table}/t0.parquet" for table in ("epochs", "spectra", "trials")]


def test_a_stale_temporary_file_is_ignored(tmp_path, summary):
    ResultsWriter(tmp_path).write_trial("t0", STUDY, summary)
    stale = tmp_path / "trials" / ".t1.parquet.tmp-0123abcd"
    stale.write_bytes(b"half a parquet file")
    (tmp_path / "trials" / "notes.txt").write_text("not a fragment")
    assert load_results(tmp_path)["trials"]["trial_id"].tolist() == ["t0"]
    assert completed_trial_ids(tmp_path) == {"t0"}
    stale_only = tmp_path / "epochs" / ".t1.parquet.tmp-0123abcd"
    stale_only.write_bytes(b"junk")
    assert len(pd.read_parquet(tmp_path / "epochs")) == EPOCHS


def test_a_file_uri_root_works(tmp_path, summary):
    uri = (tmp_path / "results").as_uri()
    assert uri.startswith("file://")
    ResultsWriter(uri).write_trial("t0", STUDY, summary)
    assert (tmp_path / "results" / "trials" / "t0.parquet").exists()
    assert load_results(uri)["trials"]["trial_id"].tolist() == ["t0"]
    assert len(load_table(tmp_path / "results", "epochs")) == EPOCHS


def test_a_relative_root_is_made_absolute(tmp_path, monkeypatch, summary):
    monkeypatch.chdir(tmp_path)
    writer = ResultsWriter("results/study")
    assert writer.path == str(tmp_path / "results" / "study")
    writer.write_trial("t0", STUDY, summary)
    monkeypatch.chdir("/")
    assert len(load_table(tmp_path / "results" / "study", "trials")) == 1


def test_completed_trial_ids_are_terminal_statuses(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    (tmp_path / "study.yaml").write_text("name: unit\n")
    assert completed_trial_ids(tmp_path) == set()
    for trial_id, status in [("a", None), ("b", "stopped"), ("c", "running"), ("d", "diverged")]:
        writer.write_trial(trial_id, STUDY, summary, status=status)
    writer.write_trial("e", STUDY, None, error="boom")
    assert completed_trial_ids(tmp_path) == {"a", "b", "d", "e"}
    assert completed_trial_ids(tmp_path, statuses=frozenset({"completed"})) == {"a"}


def test_a_missing_or_empty_path_says_how_to_get_results(tmp_path):
    missing = tmp_path / "nowhere"
    for call in (lambda: load_results(missing), lambda: load_table(missing, "trials"),
                 lambda: completed_trial_ids(missing)):
        with pytest.raises(ResultsError, match="spectral-study run") as info:
            call()
        assert str(missing) in str(info.value)
    (tmp_path / "study.yaml").write_text("name: unit\n")
    with pytest.raises(ResultsError, match="holds no results.*spectral-study run"):
        load_results(tmp_path)


def test_bad_arguments_are_refused(tmp_path, summary):
    writer = ResultsWriter(tmp_path)
    with pytest.raises(ResultsError, match="available: trials, epochs, spectra, pruning"):
        load_table(tmp_path, "trial")
    for bad in ("../t0", ".hidden", "a/b", ""):
        with pytest.raises(ResultsError, match="trial_id must match"):
            writer.write_trial(bad, STUDY, summary)
    with pytest.raises(ResultsError, match=r"unknown extra key\(s\) \['nodeid'\]"):
        writer.write_trial("t0", STUDY, summary, extra={"nodeid": "x"})
    with pytest.raises(ResultsError, match="disagrees"):
        writer.write_trial("t0", STUDY, summary, extra={"trial_id": "t1"})
    writer.write_trial("t0", STUDY, summary, extra={"trial_id": "t0"})
    with pytest.raises(ResultsError, match="pyarrow can open"):
        ResultsWriter("nosuchscheme://bucket/x")


# Paths under a URI: pyarrow configures S3-compatible stores with a query
# (`?endpoint_override=host:port&scheme=http`), which must stay at the URI's end.
QUERY = "?endpoint_override=127.0.0.1:9000&scheme=http"


def test_joining_a_uri_keeps_its_query_at_the_end():
    assert join_uri(f"s3://bucket/r{QUERY}", "study", "trials") == f"s3://bucket/r/study/trials{QUERY}"
    assert join_uri(f"s3://bucket/r/{QUERY}", "study") == f"s3://bucket/r/study{QUERY}"
    assert join_uri(f"s3://bucket{QUERY}", "study") == f"s3://bucket/study{QUERY}"
    assert join_uri("s3://bucket/r", "study") == "s3://bucket/r/study"
    assert join_uri("results", "study") == str(Path("results", "study"))
    assert results_root(f"s3://bucket/r{QUERY}", "study") == f"s3://bucket/r/study{QUERY}"


def test_a_study_root_is_the_folder_or_its_tune_folder(tmp_path):
    root = f"s3://bucket/r/study{QUERY}"
    for typed in (root, f"s3://bucket/r/study/{QUERY}", f"s3://bucket/r/study/_tune{QUERY}",
                  f"s3://bucket/r/study/_tune/{QUERY}"):
        assert study_root(typed) == root
    assert study_root("s3://bucket/r/study/_tune") == "s3://bucket/r/study"
    assert study_root(str(tmp_path / "study" / "_tune")) == str(tmp_path / "study")
    assert study_root(str(tmp_path / "study") + "/") == str(tmp_path / "study")


def test_check_location_refuses_a_file_in_the_way(tmp_path):
    check_location(tmp_path / "new" / "study")  # a folder above it exists: fine, nothing written
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsError, match="is a file, not a folder"):
        check_location(tmp_path / "file" / "study")


# ------------------------------------------------------------------ trials that pack their seeds

@pytest.fixture(scope="module")
def packed() -> dict:
    return run_trial({"dataset": "synthetic", "mode": "spectral-eigvals", "widths": [8], "epochs": EPOCHS,
                      "synthetic_size": [200, 100], "seed": 4, "repeats": 2, "pack_seeds": True})


def test_a_packed_trial_writes_one_trial_per_seed_in_every_table(tmp_path, packed):
    ResultsWriter(tmp_path).write_trial("abc_00001", STUDY, packed, extra={"node_id": "n1", "attempt": 1})
    tables = load_results(tmp_path)
    trials = tables["trials"].set_index("trial_id")
    assert sorted(trials.index) == ["abc_00001-s4", "abc_00001-s5"]  # the pack itself has no row
    assert member_trial_id("abc_00001", 5) == "abc_00001-s5"
    assert trials["seed"].tolist() == [4, 5] and set(trials["repeats"]) == {1} and trials["pack_seeds"].all()
    assert trials["cell"].isna().all() and set(trials["node_id"]) == {"n1"}
    for member in packed["members"]:
        row = trials.loc[member_trial_id("abc_00001", member["config"]["seed"])]
        assert row.final_test_accuracy == member["final_test_accuracy"]
    for table in ("epochs", "spectra"):
        counts = tables[table].groupby("trial_id").size()
        assert counts.to_dict() == {f"abc_00001-s{m['config']['seed']}": len(m["history" if table == "epochs"
                                                                                 else "spectra"])
                                    for m in packed["members"]}
    # Rewritten (a retry), each seed's rows are replaced, not added.
    ResultsWriter(tmp_path).write_trial("abc_00001", STUDY, packed)
    assert len(load_results(tmp_path)["epochs"]) == 2 * EPOCHS


def test_a_packed_trial_that_failed_writes_a_failed_row_per_seed(tmp_path, packed):
    config = {k: v for k, v in packed["config"].items()}
    ResultsWriter(tmp_path).write_trial("abc_00002", STUDY, None, error="boom", epochs=[{"epoch": 1}],
                                        extra={"config": config, "attempt": 3})
    trials = load_results(tmp_path)["trials"].set_index("trial_id")
    assert sorted(trials.index) == ["abc_00002-s4", "abc_00002-s5"]
    assert set(trials["status"]) == {"failed"} and set(trials["error"]) == {"boom"}
    assert trials["seed"].tolist() == [4, 5] and set(trials["attempt"]) == {3}
    assert len(load_table(tmp_path, "epochs")) == 0  # a seed's own epochs are not known without its summary
