"""analysis.curves on real results: tiny real trials written by the real `ResultsWriter`."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from analysis import curves, testing
from analysis.testing import CURVE_MODES, SEEDS, check_intervals, check_png


@pytest.fixture(scope="module")
def curve_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "curves")


@pytest.fixture(scope="module")
def weight_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "weights")


def test_curves_figures_and_table(curve_results, tmp_path):
    assert curves.main([str(curve_results), "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "curves.csv")
    assert set(zip(summary["mode"], summary["width"])) == {(m, w) for m in CURVE_MODES for w in (8, 32)}
    assert (summary["n"] == len(SEEDS)).all()
    check_intervals(summary)
    assert (summary["interval"] == "95 % t-interval").all()  # 3 seeds: a t-interval, not the bootstrap
    restricted = summary.set_index(["mode", "width"])["trainable_params"]
    assert restricted["dense-restricted", 8] == restricted["spectral-eigvals", 8] < restricted["dense", 8]
    markdown = (tmp_path / "curves.md").read_text()
    for mode in CURVE_MODES:
        assert f"| {mode} |" in markdown
    assert "| mode \\ hidden widths | 8 | 32 |" in markdown
    assert "(3) |" in markdown and "95 % t-interval over trials" in markdown
    for name in ("curves_synthetic_params.png", "curves_synthetic_width.png"):
        check_png(tmp_path / name)
    # The figures can be redrawn from the CSV alone, and say which interval they shade.
    fig = curves.plot(summary, "synthetic", x="width", hidden_layers=1)
    assert "shaded: 95 % t-interval" in fig._suptitle.get_text()


def test_curves_pools_folders_and_skips_perceptrons_on_the_width_plot(curve_results, weight_results, tmp_path):
    assert curves.main([str(curve_results), str(weight_results), "--out", str(tmp_path), "--reps", "200"]) == 0
    summary = pd.read_csv(tmp_path / "curves.csv")
    assert set(summary["n_hidden_layers"]) == {0, 1}
    perceptron = summary[(summary["n_hidden_layers"] == 0) & (summary["mode"] == "dense-restricted")]
    # seeds x subsets, pooled on the curves: the subset seed is a random draw, like the seed
    assert perceptron["n"].item() == len(testing.PERCEPTRON_SEEDS) * len(testing.SUBSET_SEEDS)
    check_png(tmp_path / "curves_synthetic_width.png")


def test_curves_split_trials_of_one_cell_from_two_results_folders(curve_results, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(curve_results, copy)
    assert curves.main([str(curve_results), str(copy), "--out", str(tmp_path / "out")]) == 0
    summary = pd.read_csv(tmp_path / "out" / "curves.csv")
    assert (summary["n"] == len(SEEDS)).all()  # not 2 x 3 seeds pooled into one mean
    assert set(summary["variant"]) == {f"{mode} [results_dir={folder}]" for mode in CURVE_MODES
                                       for folder in (curve_results, copy)}


def test_curves_with_bootstrap_intervals_say_so(curve_results, tmp_path):
    assert curves.main([str(curve_results), "--out", str(tmp_path), "--interval", "bootstrap", "--reps", "300"]) == 0
    assert (pd.read_csv(tmp_path / "curves.csv")["interval"] == "95 % bootstrap").all()
    assert "95 % bootstrap over trials: percentile, 300 resamples, seed 0" in (tmp_path / "curves.md").read_text()


def test_a_missing_results_folder_exits_2(tmp_path, capsys):
    assert curves.main([str(tmp_path / "absent")]) == 2
    assert str(tmp_path / "absent") in capsys.readouterr().err
