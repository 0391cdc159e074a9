"""analysis.lr_tuning: winners per mode from completed trials, every trial counted by status."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from analysis import lr_tuning, testing
from analysis.stats import load
from analysis.testing import CURVE_MODES, check_png


@pytest.fixture(scope="module")
def curve_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "curves")


@pytest.fixture(scope="module")
def tuning_results(curve_results, tmp_path_factory):
    """The curve study plus dense trials that did not complete: diverged, stopped, failed."""
    root = tmp_path_factory.mktemp("tuning") / "results"
    shutil.copytree(curve_results, root)
    dense = {"mode": "dense", "widths": [8], "seed": 5, "lr": 0.3}
    testing.write(root, "curves-test", {"dense_diverged": dense, "dense_stopped": {**dense, "seed": 6}},
                  status={"dense_diverged": "diverged", "dense_stopped": "stopped"})
    testing.write_failed(root, "curves-test", "dense_failed", {**dense, "seed": 7})
    return root


def test_lr_tuning_lists_each_modes_best_trial(curve_results, tmp_path):
    assert lr_tuning.main([str(curve_results), "--out", str(tmp_path), "--top", "2"]) == 0
    table = pd.read_csv(tmp_path / "lr_tuning.csv")
    trials = load([curve_results])["trials"]
    assert len(table) == len(trials)
    best = table.groupby("mode", sort=False).head(1).set_index("mode")["final_test_accuracy"]
    assert best.to_dict() == trials.groupby("mode")["final_test_accuracy"].max().to_dict()
    text = (tmp_path / "lr_tuning.md").read_text()
    assert "## Winners" in text and all(mode in text for mode in CURVE_MODES)
    check_png(tmp_path / "lr_tuning.png")


def test_lr_tuning_ranks_and_plots_completed_trials_and_counts_every_status(tuning_results, tmp_path):
    assert lr_tuning.main([str(tuning_results), "--out", str(tmp_path)]) == 0
    trials = load([tuning_results])["trials"]
    done = trials[trials["status"] == "completed"]
    table = pd.read_csv(tmp_path / "lr_tuning.csv")
    assert sorted(table["trial_id"]) == sorted(done["trial_id"])  # the diverged one is not ranked
    # The scatter draws exactly the table's points.
    fig = lr_tuning.plot(table)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == len(done)
    # Counts: the dense winner's row holds one column per status, over every trial of its cell.
    counts = lr_tuning.status_counts(trials).set_index(["mode", "widths"])
    assert counts.loc[("dense", "8"), ["completed", "stopped", "diverged", "failed"]].tolist() == [3, 1, 1, 1]
    assert counts.loc[("dense", "32"), ["completed", "stopped", "diverged", "failed"]].tolist() == [3, 0, 0, 0]
    markdown = (tmp_path / "lr_tuning.md").read_text()
    winners = markdown.split("## Winners")[1].split("##")[0]
    header = winners.strip().splitlines()[0]
    assert "| completed | stopped | diverged | failed |" in header
    assert f"{len(trials)} trials (" in markdown and "1 diverged" in markdown and "1 failed" in markdown
