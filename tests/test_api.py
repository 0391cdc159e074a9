"""The notebook front door (spectral_study.api): `spectral_study.run_study(path, **overrides)`
runs a study with overrides as keywords and returns its outcome; `import spectral_study` stays
Ray-free; bad overrides and a folder that holds a run are refused before Ray is imported."""
import subprocess
import sys

import pytest

import spectral_study
from spectral_study.api import study_spec
from spectral_study.runs import RunRefused
from spectral_study.study import StudyError, load_study
from spectral_study.testing import write_study, write_trials


def test_keyword_overrides_use_double_underscores_or_dots(tmp_path):
    path = write_study(tmp_path, "kw")
    spec = study_spec(path, {"training__epochs": 1, "model.widths": [8, 32], "search__repeats": 2, "name": "kw-2"})
    assert (spec.base.epochs, spec.model.widths, spec.search.repeats, spec.name) == (1, ((8,), (32,)), 2, "kw-2")
    assert spec.overrides == ("training.epochs=1", "model.widths=[8, 32]", "search.repeats=2", "name=kw-2")
    assert study_spec(load_study(path), {"training__epochs": 2}).base.epochs == 2  # a StudySpec too
    with pytest.raises(StudyError, match=r"^command line: training.epochs=0: got 0; expected a positive integer"):
        study_spec(path, {"training__epochs": 0})


def test_refusals_come_before_ray_is_imported(tmp_path):
    spec = load_study(write_study(tmp_path, "held"))
    write_trials(spec, spec.trial_configs()[:1])
    code = ("import sys, spectral_study\n"
            "try:\n    spectral_study.run_study(sys.argv[1])\n"
            "except spectral_study.runs.RunRefused as e:\n    print('refused:', e)\n"
            "print('ray imported:', 'ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "held.yaml")], capture_output=True,
                          text=True, timeout=300)
    assert "refused:" in done.stdout and "holds 1 trial already" in done.stdout, done.stderr
    assert "ray imported: False" in done.stdout
    assert issubclass(RunRefused, StudyError)


def test_run_study_from_python_returns_the_folder_and_statuses(local_ray, tmp_path, capsys):
    path = write_study(tmp_path, "nb", model={"modes": ["dense"], "widths": [8, 16]})
    outcome = spectral_study.run_study(path, training__epochs=1, name="nb-1")
    assert outcome.results.endswith("/results/nb-1") and outcome.statuses == {"completed": 2}
    assert outcome.exit_code == 0 and len(outcome.trials) == 2
    saved = open(f"{outcome.results}/study.yaml").read()
    assert "with command-line overrides training.epochs=1 name=nb-1" in saved.splitlines()[0]
    assert "progress: nb-1: trials 2 done" in capsys.readouterr().out
