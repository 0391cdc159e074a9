"""Re-run rules (spectral_study.runs): a folder that holds trials is refused; --extend runs only
the missing cells or seeds, refuses any other change naming the field, and gets its own Tune
experiment that `resume` continues. The rules without Ray, then one real extension on Ray."""
import os
import time

import pytest

from spectral_study.progress import TrialView
from spectral_study.results import load_results, load_table, results_root
from spectral_study.runs import (
    RunRefused,
    extension_problem,
    latest_experiment,
    list_experiments,
    next_experiment,
    plan_run,
    resume_target,
)
from spectral_study.study.overrides import override_spec
from spectral_study.testing import write_trials

TINY = {"model": {"modes": ["spectral-eigvals", "dense"], "widths": [8]}, "training": {"epochs": 1}}


def test_a_new_folder_runs_the_whole_grid(make_study):
    spec = make_study("new")
    plan = plan_run(spec)
    assert plan.experiment == "_tune" and plan.trials == 6 and plan.existing == 0
    assert plan.configs == tuple(spec.trial_configs())


def test_a_folder_that_holds_trials_is_refused_naming_the_ways_on(make_study):
    spec = make_study("held")
    write_trials(spec, spec.trial_configs()[:2])
    with pytest.raises(RunRefused) as error:
        plan_run(spec)
    message = str(error.value)
    root = results_root(spec.storage, spec.name)
    assert message.startswith(f"{root}: holds 2 trials already")
    assert f"spectral-study resume {root}" in message and "--extend" in message and "--name" in message


def test_a_started_run_without_trials_is_refused_too(make_study):
    spec = make_study("started")
    os.makedirs(os.path.join(results_root(spec.storage, spec.name), "_tune"))
    with pytest.raises(RunRefused, match="holds a run that was started"):
        plan_run(spec)


def test_extend_after_raising_repeats_from_3_to_5_runs_seeds_3_and_4_only(make_study):
    spec = make_study("seeds", search={"repeats": 3})
    write_trials(spec)  # 18 trials: 6 cells x seeds 0-2
    os.makedirs(os.path.join(results_root(spec.storage, spec.name), "_tune"))
    more = override_spec(spec, ["search.repeats=5"])
    plan = plan_run(more, extend=True)
    assert plan.existing == 18 and plan.planned == 30 and plan.experiment == "_tune-extend-1"
    assert sorted({c.seed for c in plan.configs}) == [3, 4] and len(plan.configs) == 12
    cells = {(c.mode, c.widths) for c in plan.configs}
    assert len(cells) == 6 and all(sum(1 for c in plan.configs if (c.mode, c.widths) == cell) == 2 for cell in cells)
    assert "running the 12 missing of 30 (Tune experiment _tune-extend-1)" in plan.describe()


def test_extend_adds_new_cells_and_failed_trials_count_as_there(make_study):
    spec = make_study("cells")
    write_trials(spec, spec.trial_configs()[:3])
    write_trials(spec, spec.trial_configs()[3:], status="failed", prefix="f")
    more = override_spec(spec, ["model.widths=[16, 64, 128]", "model.modes=[spectral-eigvals, dense, "
                                "spectral-full, dense-restricted]", "training.lr.dense-restricted=0.03"])
    plan = plan_run(more, extend=True)
    assert plan.existing == 6 and plan.trials == 12 - 6
    assert all(c.widths == (128,) or c.mode == "dense-restricted" for c in plan.configs)


def test_extend_with_nothing_missing_runs_nothing(make_study):
    spec = make_study("same")
    write_trials(spec)
    plan = plan_run(spec, extend=True)
    assert plan.trials == 0 and plan.describe().startswith("nothing to run: all 6 trials")


@pytest.mark.parametrize("override, field", [
    ("training.epochs=5", "training.epochs: 3 in the saved study, 5 now"),
    ("training.lr=0.01", "training.lr (mode spectral-eigvals): 0.001 in the saved study, 0.01 now"),
    ("training.lr_eigvals=0.1", "training.lr_eigvals (mode spectral-eigvals): 0.05 in the saved study, 0.1 now"),
    ("dataset.normalize=standard", "dataset.normalize: 'unit' in the saved study, 'standard' now"),
    ("model.widths=[16]", "model.widths: the saved study has [64], which the new one lacks"),
    ("model.modes=[dense]", "model.modes: the saved study has [\"spectral-eigvals\", \"spectral-full\"]"),
    ("search.repeats=1", None),  # equal: fine
    ("search.seed=3", "search.seed: 0 in the saved study, 3 now"),
    ("model.bias=false", "model.bias: true in the saved study, false now"),
    ("scheduler=asha", "scheduler.type: 'none' in the saved study, 'asha' now"),
    ("pruning={}", "pruning: null in the saved study"),
    ("resources.cpu=2", None), ("retries=0", None), ("concurrency=1", None),  # change no result
])
def test_extend_refuses_any_change_but_more_cells_or_seeds(make_study, override, field):
    spec = make_study("diff", search={"repeats": 1})
    changed = override_spec(spec, [override])
    problem = extension_problem(spec, changed)
    assert problem == field if field is None else problem.startswith(field), problem


def test_extend_refusal_names_the_field(make_study):
    spec = make_study("refused")
    write_trials(spec)
    with pytest.raises(RunRefused, match=r"differs from the study in .* at training.epochs: 3 in the saved "
                                         r"study, 1 now; --extend only adds cells or seeds"):
        plan_run(override_spec(spec, ["training.epochs=1"]), extend=True)


def test_an_optuna_search_cannot_be_extended(make_study):
    spec = make_study("search", search={"type": "optuna", "n_trials": 4,
                                        "space": {"lr": {"low": 1e-4, "high": 1e-2}}})
    with pytest.raises(RunRefused, match="Optuna search: continue it with `spectral-study resume"):
        plan_run(spec, extend=True)


def test_a_live_driver_is_never_joined(make_study):
    from spectral_study.progress import Progress

    spec = make_study("live")
    root = results_root(spec.storage, spec.name)
    os.makedirs(os.path.join(root, "_tune"))
    progress = Progress(study="live", total=6, epochs=3, metric="test_accuracy", root=root, interactive=False,
                        stream=open(os.devnull, "w"))
    progress.observe([TrialView("a", "a", "running", 1)])
    progress.write_file()  # this process, just now
    with pytest.raises(RunRefused, match=rf"a study driver is running there now \(pid {os.getpid()}"):
        plan_run(spec, extend=True)


def test_experiment_folders(tmp_path):
    assert list_experiments(str(tmp_path / "none")) == [] and latest_experiment(str(tmp_path)) == "_tune"
    for name in ("_tune", "_tune-extend-2", "_tune-extend-10", "_tune-extend-1", "_tuner", "trials"):
        (tmp_path / name).mkdir()
    assert list_experiments(str(tmp_path)) == ["_tune", "_tune-extend-1", "_tune-extend-2", "_tune-extend-10"]
    assert latest_experiment(str(tmp_path)) == "_tune-extend-10"
    assert next_experiment(["_tune", "_tune-extend-10"]) == "_tune-extend-11" and next_experiment([]) == "_tune"
    assert resume_target(str(tmp_path)) == (str(tmp_path), "_tune-extend-10")
    assert resume_target(str(tmp_path / "_tune")) == (str(tmp_path), "_tune-extend-10")
    assert resume_target(str(tmp_path / "_tune-extend-2") + "/") == (str(tmp_path), "_tune-extend-2")


# ------------------------------------------------------------------------------ on Ray

def test_run_refuse_extend_and_resume_on_ray(local_ray, make_study, capsys):
    from spectral_study.tune import resume_study, run_study

    spec = make_study("ext", **TINY, search={"repeats": 2})
    first = run_study(spec)
    assert first.statuses == {"completed": 4} and first.exit_code == 0
    out = capsys.readouterr().out
    assert out.count("progress: ext: trials") >= 2 and "[4/4]" in out  # plain lines off a terminal

    with pytest.raises(RunRefused, match="holds 4 trials already"):
        run_study(spec)

    more = override_spec(spec, ["search.repeats=3"])
    extended = run_study(more, extend=True)
    root = extended.results
    trials = load_table(root, "trials")
    assert len(trials) == 6 and trials["trial_id"].is_unique and trials["config_json"].is_unique
    assert sorted(trials["seed"]) == [0, 0, 1, 1, 2, 2]
    assert list_experiments(root) == ["_tune", "_tune-extend-1"]
    out = capsys.readouterr().out
    assert "extending" in out and "running the 2 missing of 6 (Tune experiment _tune-extend-1)" in out
    assert "[2/2]" in out and "[3/" not in out  # the extension's own count: only the new trials
    assert "search.repeats=3" in open(os.path.join(root, "study.yaml")).readline()

    again = run_study(more, extend=True)  # nothing missing: no Ray run, the same outcome
    assert again.statuses == {"completed": 6} and "nothing to run" in capsys.readouterr().out

    started = time.monotonic()
    resumed = resume_study(root)  # the latest experiment, every trial of it finished already
    assert "_tune-extend-1" in capsys.readouterr().out and time.monotonic() - started < 120
    tables = load_results(resumed.results)
    assert len(tables["trials"]) == 6 and not tables["epochs"].duplicated(["trial_id", "epoch"]).any()

    # Reproducibility: the code's commit (a checkout here) and the versions, on every row.
    rows = tables["trials"]
    assert rows["git_commit"].str.fullmatch(r"[0-9a-f]{40}").all() and rows["git_dirty"].notna().all()
    for column in ("numpy_version", "pyarrow_version", "optuna_version", "torch_version", "ray_version"):
        assert rows[column].notna().all(), column
    assert rows["cuda_version"].isna().all() and rows["gpu_name"].isna().all()  # CPU trials
