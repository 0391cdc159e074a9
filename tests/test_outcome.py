"""What a finished study says and its exit code (spectral_study.outcome): 0 when every trial is a
result (completed, stopped, diverged), 1 when any failed (listed), never an empty table printed;
and a real study whose every trial fails exits 1 from the command line."""
import pandas as pd

from spectral_study.outcome import StudyOutcome, format_outcome, grid_table, read_outcome
from spectral_study.results import results_root
from spectral_study.testing import write_trials


def test_exit_code_is_0_for_results_and_1_for_failures():
    assert StudyOutcome("r", {"completed": 3, "stopped": 2, "diverged": 1}).exit_code == 0
    assert StudyOutcome("r", {"completed": 3, "failed": 1}, failed=(("t", "c", "boom"),)).exit_code == 1
    assert StudyOutcome("r", {}).exit_code == 1  # nothing finished is not a success


def test_a_run_cut_short_exits_130_and_says_how_to_finish_it(make_study):
    spec = make_study("cut")
    write_trials(spec, status="completed")  # 6 of the study's 6 trials
    root = results_root(spec.storage, spec.name)
    assert read_outcome(root, expected=6).exit_code == 0
    short = read_outcome(root, expected=10)  # as if Ctrl-C had ended the run after 6 of 10
    assert short.interrupted and short.exit_code == 130
    assert f"stopped early: 6 of 10 trials finished; `spectral-study resume {root}` runs the rest" in (
        format_outcome(short, spec))
    assert "stopped early" not in format_outcome(read_outcome(root, expected=6), spec)


def test_every_trial_failed_lists_them_and_prints_no_empty_table(make_study):
    spec = make_study("broken")
    write_trials(spec, status="failed")
    outcome = read_outcome(results_root(spec.storage, spec.name))
    text = format_outcome(outcome, spec)
    assert outcome.exit_code == 1 and outcome.statuses == {"failed": 6}
    assert text.splitlines()[0].endswith("6 failed")
    assert sum(line.startswith("failed: f") or line.startswith("failed: t") for line in text.splitlines()) == 6
    assert "RuntimeError: boom" in text
    assert "Empty DataFrame" not in text and "final test accuracy" not in text


def test_completed_without_accuracy_prints_no_empty_table():
    trials = pd.DataFrame({"status": ["completed"], "mode": ["dense"], "widths": ["8"],
                           "final_test_accuracy": [float("nan")]})
    assert grid_table(trials) == ""


def test_a_study_whose_every_trial_fails_exits_1_listing_them(local_ray, tmp_path, capsys):
    from spectral_study.cli import main
    from spectral_study.testing import write_study

    study = write_study(tmp_path, "allfail", model={"modes": ["dense"], "widths": [8, 16]},
                        training={"epochs": 1}, retries=0, testing={"inject_failure": "always"})
    code = main(["run", str(study)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "done in" in out and "2 failed" in out
    failed = [line for line in out.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 2 and all("injected failure (always)" in line for line in failed)
    assert "Empty DataFrame" not in out
    assert "0 done, 0 running, 2 failed of 2" in out  # the last progress line


def test_the_pandas_hint_puts_the_table_before_a_uri_s_query():
    outcome = StudyOutcome("s3://bucket/study?endpoint_override=127.0.0.1:9000&scheme=http", {"completed": 1})
    text = format_outcome(outcome, None)
    assert "pandas.read_parquet('s3://bucket/study/trials?endpoint_override=127.0.0.1:9000&scheme=http')" in text
