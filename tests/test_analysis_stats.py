"""analysis.stats: intervals honest at small n, summaries, input checks, loading results."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import testing
from analysis.stats import (
    T_MAX_N,
    AnalysisError,
    bootstrap_ci,
    format_estimate,
    interval,
    load,
    require_columns,
    summarize,
    t_interval,
)


@pytest.fixture(scope="module")
def curve_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "curves")


@pytest.fixture(scope="module")
def weight_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "weights")


# ------------------------------------------------------------------------------ t-interval


def test_t_interval_equals_the_textbook_formula():
    # x = 1, 2, 3, 4, 5: mean 3, s = √2.5, t_{0.975, 4} = 2.776445 (any t table)
    low, high = 3 - 2.776445 * np.sqrt(2.5) / np.sqrt(5), 3 + 2.776445 * np.sqrt(2.5) / np.sqrt(5)
    estimate = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert estimate.point == 3.0
    assert estimate.low == pytest.approx(low, abs=1e-5) and estimate.high == pytest.approx(high, abs=1e-5)
    assert estimate.method == "t" and estimate.label == "95 % t-interval" and estimate.n == 5
    # 90 %: t_{0.95, 4} = 2.131847
    assert t_interval([1.0, 2.0, 3.0, 4.0, 5.0], confidence=0.9).high == pytest.approx(
        3 + 2.131847 * np.sqrt(0.5), abs=1e-5)


def test_at_three_seeds_the_t_interval_is_wider_than_the_percentile_bootstrap():
    values = [0.81, 0.84, 0.86]
    t, boot = interval(values), bootstrap_ci(values)
    assert t.method == "t" and boot.method == "bootstrap"
    assert (t.high - t.low) > 2 * (boot.high - boot.low)  # 4.30 s/√3 against at most the range
    assert t.low < boot.low and boot.high < t.high


def test_auto_takes_t_up_to_ten_values_and_the_bootstrap_above():
    rng = np.random.default_rng(0)
    assert interval(rng.normal(size=T_MAX_N)).method == "t"
    above = interval(rng.normal(size=T_MAX_N + 1), seed=3)
    assert above.method == "bootstrap" and above.label == "95 % bootstrap"
    assert interval(rng.normal(size=30), method="t").method == "t"
    assert interval(rng.normal(size=3), method="bootstrap").method == "bootstrap"


@pytest.mark.parametrize("function", [interval, t_interval, bootstrap_ci])
def test_one_value_is_flagged_degenerate(function):
    estimate = function([0.7])
    assert tuple(estimate) == (0.7, 0.7, 0.7)
    assert estimate.degenerate and estimate.n == 1
    assert estimate.method == "none" and estimate.label == "no interval (n = 1)"
    assert not function([0.7, 0.8]).degenerate


def test_a_constant_sample_has_a_zero_width_interval():
    for function in (interval, t_interval, bootstrap_ci):
        point, low, high = function([0.8] * 5)
        assert point == low == high == pytest.approx(0.8)


def test_t_interval_covers_the_true_mean_95_percent_of_the_time_at_n_3():
    rng = np.random.default_rng(0)
    hits = [low <= 0.0 <= high for low, high in (t_interval(rng.normal(size=3))[1:] for _ in range(2000))]
    assert 0.93 <= np.mean(hits) <= 0.97
    narrow = [low <= 0.0 <= high for low, high in
              (bootstrap_ci(rng.normal(size=3), reps=200, seed=k)[1:] for k in range(300))]
    assert np.mean(narrow) < 0.85  # why the percentile bootstrap is not used at small n


@pytest.mark.parametrize("values, message", [([], "at least one"), ([1.0, np.nan], "NaN")])
@pytest.mark.parametrize("function", [interval, t_interval, bootstrap_ci])
def test_intervals_refuse_bad_values(function, values, message):
    with pytest.raises(ValueError, match=message):
        function(values)


def test_interval_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="unknown interval method 'bca'; available: auto, t, bootstrap"):
        interval([1.0, 2.0], method="bca")


# ------------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_is_reproducible_with_its_seed():
    values = np.random.default_rng(1).normal(size=20)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time_at_n_30():
    rng = np.random.default_rng(0)
    hits = [low <= 0.0 <= high for low, high in
            (bootstrap_ci(rng.normal(size=30), reps=1000, seed=k)[1:] for k in range(200))]
    assert 0.88 <= np.mean(hits) <= 0.99  # the percentile bootstrap runs a bit narrow at n = 30


def test_bootstrap_ci_with_another_statistic():
    point, low, high = bootstrap_ci([1.0, 2.0, 3.0, 100.0], stat=np.median)
    assert point == 2.5 and 1.0 <= low <= point <= high <= 100.0


# ------------------------------------------------------------------------------- summaries


def test_summarize_keeps_completed_trials_counts_nans_and_names_its_interval():
    frame = pd.DataFrame({"mode": ["a", "a", "a", "a", "b"],
                          "status": ["completed", "completed", "completed", "failed", "completed"],
                          "acc": [0.5, 0.7, np.nan, 0.1, 0.9]})
    summary = summarize(frame, ["mode"], "acc").set_index("mode")
    assert list(summary.columns) == ["n", "n_nan", "mean", "ci_low", "ci_high", "interval"]
    assert summary.loc["a", "n"] == 2 and summary.loc["a", "n_nan"] == 1
    assert summary.loc["a", "mean"] == pytest.approx(0.6)
    assert summary.loc["a", "interval"] == "95 % t-interval"
    assert summary.loc["a", "ci_high"] == pytest.approx(0.6 + 12.7062 * 0.1 / 1, abs=1e-3)  # t_{.975,1} s/√2
    assert summary.loc["b", "n"] == 1 and summary.loc["b", "ci_low"] == summary.loc["b", "ci_high"] == 0.9
    assert summary.loc["b", "interval"] == "no interval (n = 1)"
    assert summarize(frame, ["mode"], "acc", status=None).set_index("mode").loc["a", "n"] == 3
    boot = summarize(frame, ["mode"], "acc", method="bootstrap").set_index("mode")
    assert boot.loc["a", "interval"] == "95 % bootstrap"


def test_format_estimate():
    assert format_estimate(0.8123, 0.8011, 0.8234, 3) == "0.812 [0.801, 0.823] (3)"
    assert format_estimate(0.8123, 0.8123, 0.8123, 1) == "0.812 (n=1, no CI)"
    assert format_estimate(np.nan, np.nan, np.nan, 0) == "–"


def test_require_columns_names_what_is_missing_and_the_study():
    with pytest.raises(AnalysisError, match=r"results/x: the pruning table lacks column\(s\) method; run s\.yaml"):
        require_columns(pd.DataFrame({"fraction": [0.5]}), ["fraction", "method"], "pruning", "run s.yaml",
                        where="results/x")
    with pytest.raises(AnalysisError, match="has no rows"):
        require_columns(pd.DataFrame({"fraction": []}), ["fraction"], "pruning", "run s.yaml")


def test_load_pools_several_folders(curve_results, weight_results):
    trials = load([curve_results, weight_results, curve_results])["trials"]
    assert len(trials) == len(testing.curve_configs()) + len(testing.perceptron_configs())
    assert set(trials["results_dir"]) == {str(curve_results), str(weight_results)}
    with pytest.raises(AnalysisError, match="nowhere"):
        load([curve_results / "nowhere"])
