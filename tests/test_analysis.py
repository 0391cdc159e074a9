"""The analysis scripts on real results: tiny real trials (`run_trial` on the synthetic set, no
Ray) written by the real `ResultsWriter`, then each script's `main` as a user runs it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `analysis` is a folder of scripts, not an installed package
    sys.path.insert(0, str(ROOT))

from analysis import claims, curves, lr_tuning, pruning, weights
from analysis.stats import AnalysisError, bootstrap_ci, load, require_columns, summarize
from spectral_study.results import ResultsWriter
from spectral_study.trial import run_trial

BASE = {"dataset": "synthetic", "synthetic_size": [400, 200], "epochs": 2, "device": "cpu", "lr": 0.01}
SEEDS = (0, 1, 2)
CURVE_MODES = ("spectral-eigvals", "dense", "dense-restricted")
PRUNING = {"methods": ["eigenvalue", "connectivity"], "fractions": [0.25, 0.5, 0.9], "retrain_epochs": 1}


def _write(root: Path, study: str, configs: dict[str, dict]) -> Path:
    writer = ResultsWriter(root)
    for trial_id, config in configs.items():
        writer.write_trial(trial_id, study, run_trial({**BASE, **config}))
    return root


@pytest.fixture(scope="module")
def curve_results(tmp_path_factory):
    configs = {f"{mode}_w{width}_s{seed}": {"mode": mode, "widths": [width], "seed": seed}
               for mode in CURVE_MODES for width in (8, 32) for seed in SEEDS}
    return _write(tmp_path_factory.mktemp("curves"), "curves-test", configs)


@pytest.fixture(scope="module")
def weight_results(tmp_path_factory):
    runs = [("spectral-eigvals", None), ("dense", None), ("dense-restricted", 1), ("dense-restricted", 2)]
    configs = {f"{mode}_ss{subset}_s{seed}": {"mode": mode, "widths": [], "seed": seed, "subset_seed": subset}
               for mode, subset in runs for seed in (0, 1)}
    return _write(tmp_path_factory.mktemp("weights"), "weights-test", configs)


@pytest.fixture(scope="module")
def pruning_results(tmp_path_factory):
    configs = {f"{mode}_s{seed}": {"mode": mode, "widths": [16], "seed": seed, "activation": "tanh",
                                   "pruning": PRUNING}
               for mode in ("spectral-eigvals", "spectral-full", "dense") for seed in SEEDS}
    return _write(tmp_path_factory.mktemp("pruning"), "pruning-test", configs)


def _check_png(path: Path, *, min_width: int = 600, min_height: int = 400) -> tuple[int, int]:
    import matplotlib.image

    assert path.is_file(), path
    assert path.stat().st_size > 10_000, f"{path} is only {path.stat().st_size} bytes"
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width >= min_width and height >= min_height, (path, width, height)
    return width, height


def _check_intervals(frame: pd.DataFrame) -> None:
    assert (frame["ci_low"] <= frame["mean"] + 1e-12).all()
    assert (frame["mean"] <= frame["ci_high"] + 1e-12).all()


# ----------------------------------------------------------------------------------- stats


def test_bootstrap_ci_of_a_constant_has_zero_width():
    point, low, high = bootstrap_ci([0.8] * 5)
    assert point == low == high == pytest.approx(0.8)


def test_bootstrap_ci_is_reproducible_with_its_seed():
    values = np.random.default_rng(1).normal(size=20)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_ci_of_one_value_is_flagged():
    interval = bootstrap_ci([0.7])
    assert tuple(interval) == (0.7, 0.7, 0.7)
    assert interval.degenerate and interval.n == 1
    assert not bootstrap_ci([0.7, 0.8]).degenerate


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = [low <= 0.0 <= high for low, high in
            (bootstrap_ci(rng.normal(size=30), reps=1000, seed=k)[1:] for k in range(200))]
    assert 0.88 <= np.mean(hits) <= 0.99  # the percentile bootstrap runs a bit narrow at n = 30


def test_bootstrap_ci_with_another_statistic():
    point, low, high = bootstrap_ci([1.0, 2.0, 3.0, 100.0], stat=np.median)
    assert point == 2.5 and 1.0 <= low <= point <= high <= 100.0


@pytest.mark.parametrize("values, message", [([], "at least one"), ([1.0, np.nan], "NaN")])
def test_bootstrap_ci_refuses_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(values)


def test_summarize_keeps_completed_trials_and_counts_nans():
    frame = pd.DataFrame({"mode": ["a", "a", "a", "a", "b"],
                          "status": ["completed", "completed", "completed", "failed", "completed"],
                          "acc": [0.5, 0.7, np.nan, 0.1, 0.9]})
    summary = summarize(frame, ["mode"], "acc").set_index("mode")
    assert list(summary.columns[:5]) == ["n", "n_nan", "mean", "ci_low", "ci_high"]
    assert summary.loc["a", "n"] == 2 and summary.loc["a", "n_nan"] == 1
    assert summary.loc["a", "mean"] == pytest.approx(0.6)
    assert summary.loc["b", "n"] == 1 and summary.loc["b", "ci_low"] == summary.loc["b", "ci_high"] == 0.9
    assert summarize(frame, ["mode"], "acc", status=None).set_index("mode").loc["a", "n"] == 3


def test_require_columns_names_what_is_missing_and_the_study():
    with pytest.raises(AnalysisError, match=r"results/x: the pruning table lacks column\(s\) method; run s\.yaml"):
        require_columns(pd.DataFrame({"fraction": [0.5]}), ["fraction", "method"], "pruning", "run s.yaml",
                        where="results/x")
    with pytest.raises(AnalysisError, match="has no rows"):
        require_columns(pd.DataFrame({"fraction": []}), ["fraction"], "pruning", "run s.yaml")


def test_load_pools_several_folders(curve_results, weight_results):
    trials = load([curve_results, weight_results, curve_results])["trials"]
    assert len(trials) == 18 + 8
    assert set(trials["results_dir"]) == {str(curve_results), str(weight_results)}
    with pytest.raises(AnalysisError, match="nowhere"):
        load([curve_results / "nowhere"])


# ---------------------------------------------------------------------------------- curves


def test_curves_figures_and_table(curve_results, tmp_path):
    assert curves.main([str(curve_results), "--out", str(tmp_path), "--reps", "500"]) == 0
    summary = pd.read_csv(tmp_path / "curves.csv")
    assert set(zip(summary["mode"], summary["width"])) == {(m, w) for m in CURVE_MODES for w in (8, 32)}
    assert (summary["n"] == len(SEEDS)).all()
    _check_intervals(summary)
    restricted = summary.set_index(["mode", "width"])["trainable_params"]
    assert restricted["dense-restricted", 8] == restricted["spectral-eigvals", 8] < restricted["dense", 8]
    markdown = (tmp_path / "curves.md").read_text()
    for mode in CURVE_MODES:
        assert f"| {mode} |" in markdown
    assert "| mode \\ hidden widths | 8 | 32 |" in markdown
    assert "(3) |" in markdown
    for name in ("curves_synthetic_params.png", "curves_synthetic_width.png"):
        _check_png(tmp_path / name)
    # The figures can be redrawn from the CSV alone.
    assert curves.plot(summary, "synthetic", x="width", hidden_layers=1) is not None


def test_curves_pools_folders_and_skips_perceptrons_on_the_width_plot(curve_results, weight_results, tmp_path):
    assert curves.main([str(curve_results), str(weight_results), "--out", str(tmp_path), "--reps", "200"]) == 0
    summary = pd.read_csv(tmp_path / "curves.csv")
    assert set(summary["n_hidden_layers"]) == {0, 1}
    perceptron = summary[(summary["n_hidden_layers"] == 0) & (summary["mode"] == "dense-restricted")]
    assert perceptron["n"].item() == 4  # two seeds x two subsets, pooled on the curves
    _check_png(tmp_path / "curves_synthetic_width.png")


# ---------------------------------------------------------------------------------- weights


def test_weights_distributions_and_distances(weight_results, tmp_path):
    assert weights.main([str(weight_results), "--out", str(tmp_path), "--reps", "500"]) == 0
    summary = pd.read_csv(tmp_path / "weights.csv")
    variants = {"spectral-eigvals", "dense", "dense-restricted (subset 1)", "dense-restricted (subset 2)"}
    assert set(summary["variant"]) == variants
    assert set(zip(summary["weights"], summary["distance"])) == {
        (w, d) for w in ("all", "trainable") for d in ("wasserstein", "ks")}
    assert (summary["n"] == 2).all()
    _check_intervals(summary)
    per_trial = pd.read_csv(tmp_path / "weights_trials.csv")
    assert len(per_trial) == 8 and per_trial["wasserstein"].gt(0).all()
    assert per_trial["ks"].between(0, 1).all()
    restricted = per_trial[per_trial["mode"] == "dense-restricted"]
    assert (restricted["n_trainable"] < restricted["n_weights"] / 5).all()  # mostly frozen
    assert (restricted["wasserstein_trainable"] != restricted["wasserstein"]).all()
    assert set(per_trial.loc[per_trial["mode"] != "dense", "reference"]) == {"dense, same seed (1 trial)"}
    markdown = (tmp_path / "weights.md").read_text()
    assert all(f"| {v} |" in markdown for v in variants)
    width, height = _check_png(tmp_path / "weights_synthetic.png")
    assert width > 2 * height  # three panels side by side
    hist = pd.read_csv(tmp_path / "weights_histograms.csv")
    assert set(hist.loc[hist["weights"] == "trainable", "variant"]) == variants - {"spectral-eigvals", "dense"}
    assert weights.plot(hist, summary, "synthetic") is not None


def test_weights_without_perceptrons_exits_2_naming_the_study(curve_results, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "analysis" / "weights.py"), str(curve_results),
                          "--out", str(tmp_path)], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert str(curve_results) in run.stderr
    assert "perceptron" in run.stderr and weights.PERCEPTRON_STUDY in run.stderr
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------- pruning


def test_pruning_curves_and_table(pruning_results, capsys):
    assert pruning.main([str(pruning_results), "--reps", "500"]) == 0
    out = pruning_results / "analysis"  # the default --out
    assert str(out / "pruning.png") in capsys.readouterr().out
    summary = pd.read_csv(out / "pruning.csv")
    pruned = summary[summary["fraction"] > 0]
    lines = set(zip(pruned["mode"], pruned["protocol"], pruned["method"]))
    assert lines == {("dense", "direct", "connectivity"),
                     *{("spectral-full", "spectral-post", m) for m in PRUNING["methods"]},
                     *{("spectral-eigvals", p, m) for p in ("spectral-pre", "spectral-eigvals-post")
                       for m in PRUNING["methods"]}}
    for line, fractions in pruned.groupby("line")["fraction"]:
        assert sorted(fractions) == PRUNING["fractions"], line
    assert (summary["n"] == len(SEEDS)).all()
    _check_intervals(summary)
    unpruned = summary[summary["fraction"] == 0]
    assert "spectral-pre" not in set(unpruned["protocol"]) and len(unpruned) == len(lines) - 2
    markdown = (out / "pruning.md").read_text()
    assert "| dense: direct / connectivity |" in markdown and "| 25 % | 50 % | 90 % |" in markdown
    _check_png(out / "pruning.png")


def test_pruning_without_pruning_rows_exits_2_naming_the_study(curve_results, tmp_path, capsys):
    assert pruning.main([str(curve_results), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert str(curve_results) in error and pruning.PRUNING_STUDY in error and "pruning table" in error


def test_a_missing_results_folder_exits_2(tmp_path, capsys):
    assert curves.main([str(tmp_path / "absent")]) == 2
    assert str(tmp_path / "absent") in capsys.readouterr().err


def test_lr_tuning_lists_each_modes_best_trial(curve_results, tmp_path):
    assert lr_tuning.main([str(curve_results), "--out", str(tmp_path), "--top", "2"]) == 0
    table = pd.read_csv(tmp_path / "lr_tuning.csv")
    trials = load([curve_results])["trials"]
    assert len(table) == len(trials)
    best = table.groupby("mode", sort=False).head(1).set_index("mode")["final_test_accuracy"]
    assert best.to_dict() == trials.groupby("mode")["final_test_accuracy"].max().to_dict()
    text = (tmp_path / "lr_tuning.md").read_text()
    assert "## Winners" in text and all(mode in text for mode in CURVE_MODES)
    _check_png(tmp_path / "lr_tuning.png")


def test_claims_pair_modes_by_seed(curve_results, tmp_path):
    assert claims.main([str(curve_results), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "claims.csv")
    assert set(table["claim"]) == {"C1"}  # no spectral-full trials: no C2 rows
    assert sorted(table["width"]) == [8, 32] and (table["n"] == len(SEEDS)).all()
    _check_intervals(table)
    trials = load([curve_results])["trials"].set_index(["mode", "width", "seed"])["final_test_accuracy"]
    for row in table.itertuples():
        diffs = [trials[("spectral-eigvals", row.width, s)] - trials[("dense-restricted", row.width, s)]
                 for s in SEEDS]
        assert row.mean == pytest.approx(np.mean(diffs)) and row.wins == sum(d > 0 for d in diffs)
    assert (table["trainable_a"] == table["trainable_b"]).all()
