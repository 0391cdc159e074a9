"""analysis.search: what a search found, from its Parquet results (and its Optuna storage):
stopped trials scored at the epoch they reached but never ranked, importances over completed
trials, the best per mode."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis import search, testing
from analysis.testing import check_png
from spectral_study.results import ResultsWriter, write_text
from spectral_study.study import parse_study
from spectral_study.trial import run_trial

STUDY = {"name": "search-test", "dataset": "synthetic", "model": {"modes": ["spectral-eigvals", "dense"],
                                                                  "widths": [8]},
         "training": {"epochs": 3},
         "search": {"type": "optuna", "n_trials": 8, "space": {
             "modes": ["spectral-eigvals", "dense"], "lr": {"low": 1e-3, "high": 1e-1}}}}
LRS = (0.002, 0.005, 0.01, 0.03, 0.06)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A search's results written as a study writes them: 10 trials over mode and lr, two of
    them stopped after one epoch (as ASHA would), with the resolved study.yaml beside them."""
    root = tmp_path_factory.mktemp("search") / "results" / "search-test"
    spec = parse_study(STUDY)
    write_text(root, "study.yaml", spec.to_yaml())
    writer = ResultsWriter(root)
    for mode in ("spectral-eigvals", "dense"):
        for k, lr in enumerate(LRS):
            summary = run_trial({**testing.BASE, "mode": mode, "widths": [8], "epochs": 3, "lr": lr,
                                 "lr_eigvals": lr if mode == "spectral-eigvals" else None})
            trial_id = f"{mode}_{k}"
            if k == 0:  # stopped by the scheduler after its first epoch: no summary, one epoch
                writer.write_trial(trial_id, "search-test", None, status="stopped", epochs=summary["history"][:1],
                                   extra={"config": summary["config"]})
            else:
                writer.write_trial(trial_id, "search-test", summary)
    return root


def test_search_scores_every_trial_and_ranks_completed_ones(searched, tmp_path):
    assert search.main([str(searched), "--out", str(tmp_path), "--top", "3"]) == 0
    table = pd.read_csv(tmp_path / "search.csv")
    assert len(table) == 10 and set(table["status"]) == {"completed", "stopped"}
    stopped = table[table["status"] == "stopped"]
    assert (stopped["epochs_completed"] == 1).all() and stopped["score"].notna().all()
    done = table[table["status"] == "completed"]
    text = (tmp_path / "search.md").read_text()
    best = done.sort_values("score", ascending=False)
    assert best["trial_id"].iloc[0] in text.split("## Best completed trial per mode")[0]
    for trial_id in stopped["trial_id"]:  # never ranked
        assert trial_id not in text.split("## Parameter importances")[0]
    assert "## Parameter importances" in text and "lr" in text.split("## Parameter importances")[1]
    check_png(tmp_path / "search_history.png")
    check_png(tmp_path / "search_importances.png", min_width=300, min_height=100)


def test_importances_rebuilt_from_parquet_cover_the_suggested_parameters(searched):
    frame = search.scored_trials(search.load([str(searched)]), "test_accuracy")
    table = search.importances(frame, parse_study(STUDY), storage=None)
    assert set(table["parameter"]) == {"mode", "lr"} and table["source"].eq("Parquet results").all()
    assert abs(table["importance"].sum() - 1) < 1e-9


def test_a_grid_study_is_refused_with_a_hint(tmp_path):
    root = tmp_path / "grid"
    grid = parse_study({**STUDY, "search": {"type": "grid"}})
    write_text(root, "study.yaml", grid.to_yaml())
    ResultsWriter(root).write_trial("t", "g", run_trial({**testing.BASE, "mode": "dense", "widths": [8],
                                                         "epochs": 1}))
    assert search.main([str(root), "--out", str(tmp_path / "out")]) == 2
