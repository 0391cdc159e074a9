"""The command line (spectral_study.cli): KEY=VALUE overrides anywhere after the study, `validate
--list`, exit code 2 for bad input and for a folder that already holds a run (before Ray is
imported), and `make reproduce` stopping at the first study that fails."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spectral_study.cli import main
from spectral_study.study import load_study
from spectral_study.testing import write_study, write_trials

REPO = Path(__file__).resolve().parent.parent
PROBE = ("import sys; from spectral_study.cli import main; rc = main(sys.argv[1:]); "
         "print('ray imported:', 'ray' in sys.modules); sys.exit(rc)")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)


def test_run_into_a_folder_that_holds_trials_exits_2_before_ray(tmp_path):
    study = write_study(tmp_path, "again")
    write_trials(load_study(study))
    done = _cli("run", str(study))
    assert done.returncode == 2 and "ray imported: False" in done.stdout
    assert "holds 6 trials already" in done.stderr and "resume" in done.stderr
    assert "--extend" in done.stderr and "--name" in done.stderr and "Traceback" not in done.stderr
    refused = _cli("run", str(study), "--extend", "training.epochs=1")  # overrides after an option
    assert refused.returncode == 2 and "ray imported: False" in refused.stdout
    assert "at training.epochs: 3 in the saved study, 1 now" in refused.stderr


def test_a_bad_override_exits_2_naming_it(tmp_path):
    done = _cli("run", str(write_study(tmp_path, "o")), "training.epochs=0")
    assert done.returncode == 2 and "ray imported: False" in done.stdout
    assert done.stderr.strip() == "error: command line: training.epochs=0: got 0; expected a positive integer"


def test_validate_lists_every_trial_with_what_varies(tmp_path, capsys):
    study = write_study(tmp_path, "v", training={"lr": {"default": 0.001, "dense": 0.003}})
    assert main(["validate", str(study), "--list", "search.repeats=2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "12 trials (grid, 2 seed(s) per cell)" in lines[0] and len(lines) == 13
    assert lines[1].split() == ["1", "spectral-eigvals_w16_relu_both_s0", "mode=spectral-eigvals", "lr=0.001",
                                "lr_eigvals=0.05", "seed=0", "widths=16"]
    assert lines[12].split()[:3] == ["12", "spectral-full_w64_relu_both_s1", "mode=spectral-full"]
    assert any("mode=dense " in line and "lr=0.003" in line for line in lines)


def test_validate_lists_an_optuna_space(tmp_path, capsys):
    study = write_study(tmp_path, "s", search={"type": "optuna", "n_trials": 7,
                                               "space": {"lr": {"low": 1e-4, "high": 1e-2}}})
    assert main(["validate", str(study), "--list"]) == 0
    out = capsys.readouterr().out
    assert "7 Optuna trials (tpe), each sampled from:" in out and "lr: 0.0001 to 0.01 (log)" in out
    assert "modes: spectral-eigvals, dense, spectral-full" in out


def test_unknown_arguments_are_refused(tmp_path):
    with pytest.raises(SystemExit) as error:
        main(["validate", str(write_study(tmp_path, "u")), "--bogus"])
    assert error.value.code == 2
    with pytest.raises(SystemExit):
        main(["status", str(tmp_path), "x=1"])  # status takes no overrides


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target, studies", [("reproduce", "REPRO_STUDIES"), ("reproduce-tuned", "TUNED_STUDIES")])
def test_make_reproduce_stops_at_the_first_failed_study_and_resumes_started_ones(tmp_path, target, studies):
    """The reproduce target's loop with a stand-in `spectral-study` that fails study b."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "spectral-study"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncase "$2" in *b.yaml) exit 1;; esac\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "results" / "a" / "_tune").mkdir(parents=True)  # a started before: resumed
    (tmp_path / "results" / "a" / "study.yaml").write_text("name: a\n")
    done = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "-o", "setup", target,
                           f"BIN={bin_dir}", f"{studies}=a b c"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "MAKEFLAGS": ""})
    assert done.returncode != 0
    assert calls.read_text().splitlines() == ["resume results/a", "run studies/b.yaml"]  # c and figures never ran
    assert f"make {target}: study b failed (exit code 1)" in done.stdout
