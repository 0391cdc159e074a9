"""analysis.pruning on a real pruning study: accuracy against the fraction of nodes removed."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis import pruning, testing
from analysis.stats import load
from analysis.testing import PRUNING, SEEDS, check_intervals, check_png

METHODS = PRUNING["methods"]
DIRECT_METHODS = [m for m in METHODS if m != "eigenvalue"]  # a dense network has no eigenvalues


@pytest.fixture(scope="module")
def pruning_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "pruning")


@pytest.fixture(scope="module")
def curve_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "curves")


def _lines() -> set[tuple[str, str, str]]:
    return {*{("dense", "direct", m) for m in DIRECT_METHODS},
            *{("spectral-full", "spectral-post", m) for m in METHODS},
            *{("spectral-eigvals", p, m) for p in ("spectral-pre", "spectral-eigvals-post") for m in METHODS}}


def test_pruning_curves_and_table_at_the_end_of_training(pruning_results, capsys):
    assert pruning.main([str(pruning_results), "--reps", "500"]) == 0
    out = pruning_results / "analysis"  # the default --out
    assert str(out / "pruning.png") in capsys.readouterr().out
    summary = pd.read_csv(out / "pruning.csv")
    pruned = summary[summary["fraction"] > 0]
    assert set(zip(pruned["mode"], pruned["protocol"], pruned["method"])) == _lines()
    for (protocol, line), fractions in pruned.groupby(["protocol", "line"])["fraction"]:
        expected = PRUNING["retrain_fractions"] if protocol == "spectral-pre" else PRUNING["fractions"]
        assert sorted(fractions) == expected, line
    assert (summary["n"] == len(SEEDS)).all()
    assert (summary["epoch"].astype(str) == str(testing.BASE["epochs"])).all()  # the last epoch's rows only
    check_intervals(summary)
    unpruned = summary[summary["fraction"] == 0]
    assert "spectral-pre" not in set(unpruned["protocol"]) and len(unpruned) == len(_lines()) - len(METHODS)
    trials = load([pruning_results])["trials"]
    final = trials.groupby("mode")["final_test_accuracy"].mean()
    for row in unpruned.itertuples():
        assert row.mean == pytest.approx(final[row.mode])
    markdown = (out / "pruning.md").read_text()
    assert "| dense: direct / connectivity |" in markdown and "| 25 % | 50 % | 75 % | 90 % |" in markdown
    assert "95 % t-interval over trials" in markdown and "end of training" in markdown
    check_png(out / "pruning.png")


def test_pruning_at_an_earlier_epoch(pruning_results, tmp_path):
    assert pruning.main([str(pruning_results), "--out", str(tmp_path), "--epoch", "1"]) == 0
    summary = pd.read_csv(tmp_path / "pruning.csv")
    assert set(summary["protocol"]) == {"direct", "spectral-post", "spectral-eigvals-post"}  # no retraining
    assert (summary["epoch"].astype(str) == "1").all() and (summary["n"] == len(SEEDS)).all()
    # The unpruned anchor is the network at epoch 1 (the epochs table), not the final one.
    tables = load([pruning_results])
    epochs = tables["epochs"].merge(tables["trials"][["trial_id", "mode"]], on="trial_id")
    at_one = epochs[epochs["epoch"] == 1].groupby("mode")["test_accuracy"].mean()
    for row in summary[summary["fraction"] == 0].itertuples():
        assert row.mean == pytest.approx(at_one[row.mode])
    assert "networks pruned at epoch 1" in (tmp_path / "pruning.md").read_text()


def test_pruning_at_an_epoch_never_pruned_names_those_that_were(pruning_results, tmp_path, capsys):
    assert pruning.main([str(pruning_results), "--out", str(tmp_path), "--epoch", "9"]) == 2
    assert "no pruning row at epoch 9; epochs pruned at: 1, 2" in capsys.readouterr().err


def test_pruning_rows_without_an_epoch_are_from_the_end_of_training(pruning_results):
    tables = load([pruning_results])
    old = {**tables, "pruning": tables["pruning"].query("epoch == 2").drop(columns="epoch")}
    data = pruning.labelled_rows(old, "old results")
    assert (data["epoch"] == data["epochs_completed"]).all()
    also_null = {**tables, "pruning": tables["pruning"].assign(epoch=pd.NA)}  # a column read as null
    assert set(pruning.labelled_rows(also_null, "old results")["epoch"]) == {2}
    new = pruning.summarize_pruning(pruning.pruning_rows(tables, "new"))
    assert new.equals(pruning.summarize_pruning(pruning.pruning_rows(old, "old")))


def test_pruning_without_pruning_rows_exits_2_naming_the_study(curve_results, tmp_path, capsys):
    assert pruning.main([str(curve_results), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert str(curve_results) in error and pruning.PRUNING_STUDY in error and "pruning table" in error
