"""analysis.pruning_epochs: accuracy of pruned networks against the epoch they were pruned at,
and each ranking's paired gain over random."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import pruning_epochs, testing
from analysis.stats import load, t_interval
from analysis.testing import PRUNING, SEEDS, check_intervals, check_png


@pytest.fixture(scope="module")
def pruning_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "pruning")


@pytest.fixture(scope="module")
def analysed(pruning_results, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruning_epochs")
    assert pruning_epochs.main([str(pruning_results), "--out", str(out)]) == 0
    return out


def _hand_tables(*, with_epoch: bool = True) -> dict[str, pd.DataFrame]:
    """Two dense trials pruned after epochs 1 and 3 (3 = the end), by connectivity and random."""
    keys = {"results_dir": "results/x", "study": "s"}
    trials = pd.DataFrame([{**keys, "trial_id": f"t{seed}", "dataset": "synthetic", "activation": "tanh",
                            "widths": "16", "mode": "dense", "eigenvalues": "both", "status": "completed",
                            "seed": seed, "epochs": 3, "epochs_completed": 3, "final_test_accuracy": 0.9 + seed / 100}
                           for seed in (0, 1)])
    accuracy = {("t0", 1, "connectivity"): 0.60, ("t0", 1, "random"): 0.50, ("t0", 3, "connectivity"): 0.80,
                ("t0", 3, "random"): 0.55, ("t1", 1, "connectivity"): 0.62, ("t1", 1, "random"): 0.64,
                ("t1", 3, "connectivity"): 0.85, ("t1", 3, "random"): 0.60}
    rows = pd.DataFrame([{**keys, "trial_id": t, "epoch": e, "protocol": "direct", "method": m, "fraction": 0.5,
                          "nodes_kept": 8, "test_accuracy": a} for (t, e, m), a in accuracy.items()])
    epochs = pd.DataFrame([{**keys, "trial_id": t, "epoch": e, "test_accuracy": 0.7 + e / 100}
                           for t in ("t0", "t1") for e in (1, 2, 3)])
    if not with_epoch:
        rows = rows[rows["epoch"] == 3].drop(columns="epoch")
    return {"trials": trials, "pruning": rows, "epochs": epochs}


def test_accuracy_against_epoch_per_method_and_fraction(analysed, pruning_results):
    summary = pd.read_csv(analysed / "pruning_epochs.csv")
    check_intervals(summary)
    assert (summary["interval"] == "95 % t-interval").all() and (summary["n"] == len(SEEDS)).all()
    no_retraining = summary[(summary["protocol"] != "spectral-pre") & (summary["method"] != "unpruned")]
    assert set(no_retraining["epoch"]) == {1, 2}
    assert set(no_retraining["fraction"]) == set(PRUNING["fractions"])
    assert set(summary.loc[summary["protocol"] == "spectral-pre", "epoch"]) == {2}  # retrains at the end only
    assert set(summary["method"]) == {*PRUNING["methods"], "unpruned"}
    # A cell is the mean over the trials' rows at that epoch, method and fraction.
    rows = load([pruning_results])["pruning"]
    mine = rows[(rows["protocol"] == "spectral-post") & (rows["method"] == "eigenvalue")
                & (rows["fraction"] == 0.75) & (rows["epoch"] == 1)]["test_accuracy"]
    cell = summary[(summary["protocol"] == "spectral-post") & (summary["method"] == "eigenvalue")
                   & np.isclose(summary["fraction"], 0.75) & (summary["epoch"] == 1)]
    assert cell["mean"].item() == pytest.approx(mine.mean())
    assert (cell["ci_low"].item(), cell["ci_high"].item()) == pytest.approx(tuple(t_interval(mine))[1:])
    markdown = (analysed / "pruning_epochs.md").read_text()
    assert "| method @ nodes removed \\ epoch | 1 | 2 |" in markdown
    assert "| eigenvalue @ 50 % |" in markdown and "| unpruned |" in markdown
    assert "| eigenvalue @ 25 % |" not in markdown  # the table shows the chosen fractions (the CSV has all)
    assert "Accuracy: synthetic, tanh, hidden 16: spectral-full, spectral-post" in markdown
    width, height = check_png(analysed / "pruning_epochs.png")
    assert width > height  # three panels (one per mode and protocol that pruned twice) by three fractions


def test_gain_over_random_is_paired_within_trials(analysed, pruning_results):
    gain = pd.read_csv(analysed / "pruning_gain.csv")
    assert "random" not in set(gain["method"]) and (gain["n"] == len(SEEDS)).all()
    check_intervals(gain)
    rows = load([pruning_results])["pruning"]
    on = ["trial_id", "protocol", "fraction", "epoch"]
    paired = rows[rows["method"] == "connectivity"].merge(rows[rows["method"] == "random"], on=on)
    paired = paired[(paired["protocol"] == "direct") & (paired["fraction"] == 0.9) & (paired["epoch"] == 2)]
    diffs = (paired["test_accuracy_x"] - paired["test_accuracy_y"]).to_numpy()
    row = gain[(gain["protocol"] == "direct") & (gain["method"] == "connectivity")
               & np.isclose(gain["fraction"], 0.9) & (gain["epoch"] == 2)]
    assert len(diffs) == len(SEEDS) and row["mean"].item() == pytest.approx(diffs.mean())
    assert row["wins"].item() == (diffs > 0).sum()
    assert (row["ci_low"].item(), row["ci_high"].item()) == pytest.approx(tuple(t_interval(diffs))[1:])
    markdown = (analysed / "pruning_epochs.md").read_text()
    assert "Gain over random: synthetic, tanh, hidden 16: dense, direct" in markdown
    assert "| method − random @ nodes removed \\ epoch | 1 | 2 |" in markdown and "wins " in markdown


def test_gain_over_random_by_hand():
    tables = _hand_tables()
    data = pruning_epochs.pruning.labelled_rows(tables, "results/x")
    gain = pruning_epochs.gain_over_random(data).set_index("epoch")
    assert gain.loc[1, "mean"] == pytest.approx(0.04) and gain.loc[1, "wins"] == 1  # +0.10 and -0.02
    assert gain.loc[3, "mean"] == pytest.approx(0.25) and gain.loc[3, "wins"] == 2  # +0.25 and +0.25
    half = 12.7062047 * np.std([0.10, -0.02], ddof=1) / np.sqrt(2)  # t_{0.975, 1} s / √n
    assert gain.loc[1, "ci_high"] == pytest.approx(0.04 + half)
    summary = pruning_epochs.summarize_epochs(data, tables).set_index(["method", "epoch"])
    assert summary.loc[("unpruned", 1), "mean"] == pytest.approx(0.71)  # the epochs table at epoch 1
    assert summary.loc[("unpruned", 3), "mean"] == pytest.approx(0.905)  # the final accuracy


def test_results_without_an_epoch_column_are_from_the_end_of_training(tmp_path):
    tables = _hand_tables(with_epoch=False)
    data = pruning_epochs.pruning.labelled_rows(tables, "results/x")
    assert set(data["epoch"]) == {3}
    assert set(pruning_epochs.gain_over_random(data)["epoch"]) == {3}


def test_no_random_ranking_means_no_gain_table(pruning_results, tmp_path):
    tables = load([pruning_results])
    data = pruning_epochs.pruning.labelled_rows(tables, "x")
    assert pruning_epochs.gain_over_random(data[data["method"] != "random"]).empty


def test_fractions_never_pruned_exit_2_naming_those_that_were(pruning_results, tmp_path, capsys):
    assert pruning_epochs.main([str(pruning_results), "--out", str(tmp_path), "--fractions", "0.6"]) == 2
    assert "fractions pruned: 0.25, 0.5, 0.75, 0.9" in capsys.readouterr().err
