"""analysis.weights on a real perceptron study (no hidden layer): weight distributions vs dense."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from analysis import testing, weights
from analysis.testing import PERCEPTRON_SEEDS, SUBSET_SEEDS, check_intervals, check_png

VARIANTS = {"spectral-eigvals", "dense", *(f"dense-restricted (subset {s})" for s in SUBSET_SEEDS)}


@pytest.fixture(scope="module")
def weight_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "weights")


@pytest.fixture(scope="module")
def curve_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "curves")


def test_weights_distributions_and_distances(weight_results, tmp_path):
    assert weights.main([str(weight_results), "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "weights.csv")
    assert set(summary["variant"]) == VARIANTS
    assert set(zip(summary["weights"], summary["distance"])) == {
        (w, d) for w in ("all", "trainable") for d in ("wasserstein", "ks")}
    assert (summary["n"] == len(PERCEPTRON_SEEDS)).all()
    check_intervals(summary)
    assert (summary["interval"] == "95 % t-interval").all()
    per_trial = pd.read_csv(tmp_path / "weights_trials.csv")
    assert len(per_trial) == len(testing.perceptron_configs()) and per_trial["wasserstein"].gt(0).all()
    assert per_trial["ks"].between(0, 1).all()
    restricted = per_trial[per_trial["mode"] == "dense-restricted"]
    assert (restricted["n_trainable"] < restricted["n_weights"] / 5).all()  # mostly frozen
    assert (restricted["wasserstein_trainable"] != restricted["wasserstein"]).all()
    assert set(per_trial.loc[per_trial["mode"] != "dense", "reference"]) == {"dense, same seed (1 trial)"}
    markdown = (tmp_path / "weights.md").read_text()
    assert all(f"| {v} |" in markdown for v in VARIANTS)
    assert "mean [95 % t-interval over trials" in markdown
    width, height = check_png(tmp_path / "weights_synthetic.png")
    assert width > height  # three panels a row
    hist = pd.read_csv(tmp_path / "weights_histograms.csv")
    assert set(hist.loc[hist["weights"] == "trainable", "variant"]) == VARIANTS - {"spectral-eigvals", "dense"}
    assert weights.plot(hist, summary, "synthetic") is not None


def test_weights_refuse_to_pool_unlike_trials_naming_the_setting(weight_results, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(weight_results, copy)
    assert weights.main([str(weight_results), str(copy), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "differ in results_dir" in error and str(copy) in error
    assert not (tmp_path / "out").exists()


def test_weights_without_perceptrons_exits_2_naming_the_study(curve_results, tmp_path):
    run = subprocess.run([sys.executable, "-m", "analysis.weights", str(curve_results), "--out", str(tmp_path)],
                         check=False, capture_output=True, text=True, cwd=testing.ROOT)
    assert run.returncode == 2, run.stderr
    assert str(curve_results) in run.stderr
    assert "perceptron" in run.stderr and weights.PERCEPTRON_STUDY in run.stderr
    assert not list(tmp_path.iterdir())
