"""analysis.cells: which trials are replicates of one cell, and what happens when they are not."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis import cells
from analysis.stats import AnalysisError
from spectral_study.config import config_columns
from spectral_study.vocabulary import STATUSES


def _trials(**columns) -> pd.DataFrame:
    n = max(len(v) for v in columns.values() if isinstance(v, list))
    base = {"dataset": "synthetic", "widths": "8", "activation": "relu", "eigenvalues": "both", "bias": True,
            "phi_init": "uniform", "eigval_init": "uniform", "dense_init": "uniform", "optimizer": "adam",
            "lr": 0.01, "lr_eigvals": None, "batch_size": 256, "epochs": 2, "repeats": 1, "normalize": "unit",
            "data_fingerprint": "sha256:ab", "results_dir": "results/a", "status": "completed",
            "seed": list(range(n)), "subset_seed": None}
    return pd.DataFrame({**base, **columns})


def test_completed_is_a_status_of_the_vocabulary_and_keeps_only_it():
    assert cells.COMPLETED in STATUSES
    frame = pd.DataFrame({"status": list(STATUSES), "x": range(len(STATUSES))})
    assert list(cells.completed(frame)["status"]) == ["completed"]


def test_settings_derive_from_the_trial_config():
    columns = set(config_columns())
    assert {"lr", "lr_eigvals", "epochs", "optimizer", "batch_size", "bias", "phi_init", "eigval_init",
            "dense_init", "normalize", "repeats"} <= set(cells.SETTINGS)
    assert {"data_fingerprint", "results_dir"} <= set(cells.SETTINGS)
    assert not set(cells.REPLICATES) & set(cells.SETTINGS)  # seeds are what a cell averages over
    assert "mode" not in cells.SETTINGS  # a variant starts from it
    assert set(cells.SETTINGS) - {"data_fingerprint", "results_dir"} <= columns


def test_label_variants_one_function_for_every_script():
    trials = _trials(mode=["spectral-eigvals", "spectral-eigvals", "dense", "dense-restricted", "dense-restricted"],
                     eigenvalues=["both", "receiving", "both", "receiving", "receiving"],
                     subset_seed=[None, None, None, 1, 2])
    plain = cells.label_variants(trials)["variant"].tolist()
    assert plain == ["spectral-eigvals (both)", "spectral-eigvals (receiving)", "dense",
                     "dense-restricted (receiving)", "dense-restricted (receiving)"]
    by_subset = cells.label_variants(trials, by_subset=True)["variant"].tolist()
    assert by_subset[3:] == ["dense-restricted (receiving) (subset 1)", "dense-restricted (receiving) (subset 2)"]
    one_set = cells.label_variants(_trials(mode=["spectral-full", "dense"]))["variant"].tolist()
    assert one_set == ["spectral-full", "dense"]


def test_a_setting_that_does_not_apply_to_a_mode_is_ignored():
    trials = _trials(mode=["dense", "dense", "spectral-eigvals", "spectral-eigvals"],
                     phi_init=["uniform", "glorot", "uniform", "uniform"],
                     dense_init=["uniform", "uniform", "uniform", "glorot"])
    text = cells.settings(trials, ["phi_init", "dense_init", "lr"])
    assert text["phi_init"].tolist() == ["n/a", "n/a", "uniform", "uniform"]
    assert text["dense_init"].tolist() == ["uniform", "uniform", "n/a", "n/a"]
    assert text["lr"].tolist() == ["0.01"] * 4
    assert cells.mixed_settings(cells.label_variants(trials), ["dataset", "variant"]).empty


def test_mixed_settings_names_the_cell_the_setting_and_its_values():
    trials = cells.label_variants(_trials(mode=["dense"] * 4, lr=[0.01, 0.01, 0.1, 0.1],
                                          results_dir=["results/a", "results/b", "results/a", "results/b"]))
    mixed = cells.mixed_settings(trials, ["dataset", "variant"])
    assert mixed[["variant", "setting", "values"]].values.tolist() == [
        ["dense", "lr", "0.01; 0.1"], ["dense", "results_dir", "results/a; results/b"]]
    assert cells.mixed_settings(trials, ["dataset", "variant"], exempt=["lr", "results_dir"]).empty


def test_split_mixed_makes_separate_variants():
    trials = cells.label_variants(_trials(mode=["dense", "dense", "spectral-eigvals", "spectral-eigvals"],
                                          epochs=[2, 5, 2, 2]))
    split = cells.split_mixed(trials, ["dataset", "variant", "widths"])
    assert split["variant"].tolist() == ["dense [epochs=2]", "dense [epochs=5]", "spectral-eigvals",
                                         "spectral-eigvals"]
    assert cells.mixed_settings(split, ["dataset", "variant", "widths"]).empty
    with pytest.raises(ValueError, match="must include 'variant'"):
        cells.split_mixed(trials, ["dataset"])


def test_refuse_mixed_names_the_setting():
    trials = cells.label_variants(_trials(mode=["dense", "dense"], data_fingerprint=["sha256:ab", "sha256:cd"]))
    with pytest.raises(AnalysisError, match=r"results/x: the trials of one cell \(dataset=synthetic, "
                                            r"variant=dense\) differ in data_fingerprint \(sha256:ab; sha256:cd\)"):
        cells.refuse_mixed(trials, ["dataset", "variant"], where="results/x")
    cells.refuse_mixed(trials.iloc[:1], ["dataset", "variant"], where="results/x")  # one trial: nothing to mix


def test_shared_settings_of_two_modes_skip_per_mode_rates_and_what_applies_to_one():
    c1 = cells.shared_settings("spectral-eigvals", "dense-restricted", cells.SETTINGS)
    assert "eigenvalues" in c1 and "results_dir" in c1 and "epochs" in c1
    assert not {"lr", "lr_eigvals", "phi_init", "dense_init"} & set(c1)
    c2 = cells.shared_settings("spectral-full", "dense", cells.SETTINGS)
    assert "eigenvalues" not in c2 and "bias" in c2
    assert "dense_init" in cells.shared_settings("dense-restricted", "dense", cells.SETTINGS)


def test_how_the_runner_ran_a_trial_does_not_split_a_cell():
    """A study resumed after an upgrade has rows without the newer runner columns (null) beside rows
    that have them: packing, stacked members and checkpoint frequency do not change a result."""
    trials = cells.label_variants(_trials(mode=["dense"] * 3, pack_seeds=[None, False, True],
                                          member_training=[None, "auto", "batched"], checkpoint_every=[None, 5, 1]))
    assert cells.mixed_settings(trials, ["dataset", "variant"]).empty
    assert not {"pack_seeds", "member_training", "checkpoint_every"} & set(cells.SETTINGS)
