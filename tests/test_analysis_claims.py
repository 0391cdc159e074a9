"""analysis.claims: C1 and C2 as paired differences, one pair per seed."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import claims, testing
from analysis.stats import AnalysisError, load, t_interval
from analysis.testing import PERCEPTRON_SEEDS, SEEDS, SUBSET_SEEDS, check_intervals


@pytest.fixture(scope="module")
def curve_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "curves")


@pytest.fixture(scope="module")
def weight_results(tmp_path_factory):
    return testing.results(tmp_path_factory, "weights")


def test_claims_pair_modes_by_seed(curve_results, tmp_path):
    assert claims.main([str(curve_results), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "claims.csv")
    assert set(table["claim"]) == {"C1"}  # no spectral-full trials: no C2 rows
    assert sorted(table["width"]) == [8, 32] and (table["n"] == len(SEEDS)).all()
    check_intervals(table)
    trials = load([curve_results])["trials"].set_index(["mode", "width", "seed"])["final_test_accuracy"]
    for row in table.itertuples():
        diffs = [trials[("spectral-eigvals", row.width, s)] - trials[("dense-restricted", row.width, s)]
                 for s in SEEDS]
        assert row.mean == pytest.approx(np.mean(diffs)) and row.wins == sum(d > 0 for d in diffs)
        assert (row.ci_low, row.ci_high) == pytest.approx(tuple(t_interval(diffs))[1:])
        assert row.interval == "95 % t-interval"
    assert (table["trainable_a"] == table["trainable_b"]).all()
    assert "95 % t-interval over seeds" in (tmp_path / "claims.md").read_text()


def test_claims_pair_each_seed_once_whatever_the_subset_seeds(weight_results, tmp_path):
    # A perceptron study with three subset seeds of dense-restricted: each subset is its own
    # comparison with n = the number of seeds, not 3 x as many pairs from one seed.
    assert claims.main([str(weight_results), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "claims.csv")
    assert (table["n"] == len(PERCEPTRON_SEEDS)).all()
    assert sorted(table["variant_b"]) == [f"dense-restricted (subset {s})" for s in SUBSET_SEEDS]
    trials = load([weight_results])["trials"]
    accuracy = trials.set_index(["mode", "subset_seed", "seed"])["final_test_accuracy"]
    for row in table.itertuples():
        subset = int(row.variant_b.split("subset ")[1].rstrip(")"))
        diffs = [accuracy[("spectral-eigvals", pd.NA, s)] - accuracy[("dense-restricted", subset, s)]
                 for s in PERCEPTRON_SEEDS]
        assert row.mean == pytest.approx(np.mean(diffs))


def test_claims_pair_only_trials_run_alike(curve_results):
    trials = load([curve_results])["trials"]
    # The same study in a second folder, whose dense-restricted trials trained for other epochs:
    # nothing there is run like its spectral trials, and nothing pairs across the folders.
    other = trials.assign(results_dir="elsewhere")
    other.loc[other["mode"] == "dense-restricted", "epochs"] = 7
    table = claims.paired_differences(pd.concat([trials, other], ignore_index=True))
    assert (table["n"] == len(SEEDS)).all() and sorted(table["width"]) == [8, 32]
    assert set(table["variant_a"]) == {f"spectral-eigvals [results_dir={curve_results}]"}
    assert set(table["variant_b"]) == {f"dense-restricted [epochs=2, results_dir={curve_results}]"}


def test_claims_refuse_a_seed_that_pairs_twice(curve_results):
    trials = load([curve_results])["trials"]
    twin = trials[trials["mode"] == "dense-restricted"].assign(trial_id=lambda f: f["trial_id"] + "_twin")
    with pytest.raises(AnalysisError, match="seed 0 pairs more than once"):
        claims.paired_differences(pd.concat([trials, twin], ignore_index=True))
