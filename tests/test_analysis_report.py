"""analysis as a package: every script runs as `python -m analysis.<name>` (no import-path
hacks); analysis._report's shared output (interval notes, mode order)."""
from __future__ import annotations

import runpy
import sys

import pytest

from analysis import _report, testing
from spectral_study.vocabulary import MODES

SCRIPTS = ("curves", "claims", "pruning", "pruning_epochs", "weights", "lr_tuning")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_runs_as_a_module(script, monkeypatch, capsys):
    # What `python -m analysis.<script> --help` does, in this process (a subprocess per script
    # costs seconds of imports; tests/test_analysis_weights.py runs one for real).
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    monkeypatch.delitem(sys.modules, f"analysis.{script}", raising=False)  # run it afresh, as -m does
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module(f"analysis.{script}", run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "RESULTS_DIR" in out and "--interval" in out


def test_no_module_or_analysis_test_edits_sys_path():
    files = [*(testing.ROOT / "analysis").glob("*.py"), *(testing.ROOT / "tests").glob("test_analysis*.py")]
    assert len(files) > 10
    needle = "sys." + "path"  # not spelled out, or this file would find itself
    assert [f.name for f in files if needle in f.read_text()] == []


def test_makefile_runs_the_scripts_as_modules():
    recipes = [line for line in (testing.ROOT / "Makefile").read_text().splitlines()
               if line.startswith("\t") and "analysis" in line]
    assert len(recipes) >= 10
    assert all("-m analysis." in line and "analysis/" not in line for line in recipes)


def test_interval_notes_say_which_interval_and_how():
    labels = ["95 % t-interval", "95 % bootstrap", "no interval (n = 1)"]
    note = _report.interval_note(labels, reps=500, seed=2)
    assert note == ("95 % bootstrap over trials: percentile, 500 resamples, seed 2; "
                    "95 % t-interval over trials, mean ± t·s/√n")
    assert _report.band_note(labels[:1]) == "shaded: 95 % t-interval"
    assert _report.interval_note(labels[2:], reps=1, seed=0) == "no interval (one value per cell)"


def test_modes_sort_in_the_vocabularys_order():
    labels = ["dense [lr=0.1]", "spectral-full", "spectral-eigvals (both)", "unknown"]
    assert sorted(labels, key=_report.mode_rank) == ["spectral-eigvals (both)", "spectral-full", "dense [lr=0.1]",
                                                     "unknown"]
    assert [_report.mode_color(m) for m in MODES] == list(dict.fromkeys(_report.mode_color(m) for m in MODES))


def test_default_out_is_local_even_for_results_on_an_object_store():
    from pathlib import Path

    from analysis._report import default_out

    assert default_out("results/x") == Path("results/x/analysis")
    assert default_out("s3://bucket/runs/x?endpoint_override=127.0.0.1:9000&scheme=http") == Path("analysis-x")
