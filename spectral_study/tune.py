"""The Ray adapter — with `spectral_study.callback`, the only code that imports Ray.

    outcome = run_study(load_study("studies/quickstart.yaml"))            # embedded local Ray
    outcome = run_study(spec, address="auto")                               # a running cluster
    outcome = resume_study("results/quickstart")                            # after a crash

It holds the Ray session, the trainable that runs `spectral_study.trial.run_trial` in a Tune
trial, and the Tuner; everything else belongs to Ray-free modules: the checkpoint format
(`spectral_study.checkpoint`), results paths (`spectral_study.results`), the data set in the
object store (`Dataset.to_arrays`), what a finished study prints (`spectral_study.outcome`).

Layout of ``<storage>/<study>/``: the Parquet tables, ``study.yaml`` (the resolved study), and
``_tune/`` (Ray Tune's experiment state, what `resume_study` restores from; each `--extend` adds
``_tune-extend-N/``, see `spectral_study.runs`).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path


def _use_token_auth_if_available() -> None:
    """Join a token-authenticated cluster with the token `ray start` uses.

    `ray start` turns token authentication on when a token exists (``$RAY_AUTH_TOKEN``,
    ``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), but a driver joining with an address
    does not: it is refused as "Authentication token is missing". Ray reads the mode once, when
    it is imported, so this runs before ``import ray``. (A new local Ray uses tokens anyway.)
    """
    if "RAY_AUTH_MODE" in os.environ:
        return  # the user decided
    token_path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_path.exists():
        os.environ["RAY_AUTH_MODE"] = "token"


_use_token_auth_if_available()

import ray  # noqa: E402
from ray import tune  # noqa: E402

from spectral_study import outcome as outcomes  # noqa: E402
from spectral_study import runs  # noqa: E402
from spectral_study._validate import check_shared_storage  # noqa: E402
from spectral_study.callback import StudyCallback, trial_config  # noqa: E402
from spectral_study.data import Dataset, load_dataset  # noqa: E402
from spectral_study.results import (  # noqa: E402
    EXPERIMENT_DIR,
    check_location,
    join_uri,
    results_root,
    write_text,
)
from spectral_study.searcher import TRIAL_STATUS_KEY  # noqa: E402
from spectral_study.study import RESOLVED_STUDY_FILE, StudySpec, load_resolved_study  # noqa: E402
from spectral_study.tracking import resolve as resolve_tracking  # noqa: E402

__all__ = ["run_study", "resume_study", "results_root"]


def run_study(spec: StudySpec, *, address: str | None = None, shared_storage: bool | None = None,
              extend: bool = False, echo=print) -> outcomes.StudyOutcome:
    """Run ``spec`` to the end; trials' results land in Parquet as they finish. ``shared_storage``:
    a local storage path is the same folder on every node (see `check_shared_storage`).
    ``extend``: run only the trials the results folder lacks (`spectral_study.runs`)."""
    root = results_root(spec.storage, spec.name)
    check_location(root)  # before Ray starts: a mistyped bucket or endpoint is one line
    plan = runs.plan_run(spec, extend=extend)  # a second run into one folder is refused here
    tracking = resolve_tracking(spec.tracking, root)
    if plan.existing or not plan.trials:
        echo(plan.describe())
    if not plan.trials:
        write_text(root, RESOLVED_STUDY_FILE, spec.to_yaml())
        return _outcome(spec, root, 0.0, echo)
    _quiet_tune()
    with _ray_session(address, echo):
        _check_storage_is_shared(root, spec, address, shared_storage)
        write_text(root, RESOLVED_STUDY_FILE, spec.to_yaml())  # the first write, before any trial
        data = _load_data(spec, echo)
        tuner = tune.Tuner(_trainable(spec, data), param_space=_param_space(spec, plan.configs),
                           tune_config=_tune_config(spec),
                           run_config=_run_config(spec, root, plan.experiment, plan.trials, tracking))
        return _fit(tuner, spec, root, echo)


def resume_study(path: str, *, address: str | None = None, shared_storage: bool | None = None,
                 echo=print) -> outcomes.StudyOutcome:
    """Continue an interrupted study from its results folder (its latest run: ``_tune``, or the
    last ``--extend``'s ``_tune-extend-N``) or from one of those experiment folders."""
    root, name = runs.resume_target(path)
    spec = load_study_from_results(root)
    runs.check_no_live_driver(root)
    experiment = join_uri(root, name)  # a URI's query stays at its end
    _quiet_tune()
    with _ray_session(address, echo):
        _check_storage_is_shared(root, spec, address, shared_storage)
        if not tune.Tuner.can_restore(experiment):
            raise FileNotFoundError(f"{experiment}: no Ray Tune experiment state to resume from; "
                                    f"start the study with `spectral-study run {spec.source}`")
        data = _load_data(spec, echo)
        echo(f"resuming {spec.name} from {experiment}")
        tuner = tune.Tuner.restore(experiment, trainable=_trainable(spec, data),
                                   resume_unfinished=True, resume_errored=True)
        return _fit(tuner, spec, root, echo)


def load_study_from_results(root: str) -> StudySpec:
    """The resolved study saved beside the results."""
    try:
        return load_resolved_study(root)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; is this a study's results folder (written by "
                                f"`spectral-study run`)?") from None


# ------------------------------------------------------------------------------ the trial side

def _trainable(spec: StudySpec, data: Dataset):
    cpus = spec.resources.cpu

    def trainable(config: dict, data=None) -> None:
        import torch

        from spectral_study.checkpoint import load_checkpoint, save_checkpoint
        from spectral_study.data import Dataset
        from spectral_study.trial import run_trial

        # Ray assigns this trial `cpus` cores: use them, no more (2-core machines oversubscribe
        # badly when every trial starts torch's default thread pool).
        torch.set_num_threads(max(1, int(cpus)))
        state = None
        if (checkpoint := tune.get_checkpoint()) is not None:
            with checkpoint.as_directory() as directory:
                state = load_checkpoint(directory)
        context = ray.get_runtime_context()
        facts = {"node_id": context.get_node_id(),
                 "gpu_ids": ",".join(str(g) for g in context.get_accelerator_ids().get("GPU", []))}

        def report(metrics: dict, state: dict | None) -> None:
            result = {**metrics, **facts}
            if state is None:  # an epoch between checkpoints (training.checkpoint_every)
                tune.report(result)
                return
            if state.get("summary") is not None:
                # JSON, so that Tune passes it through as one opaque value.
                result["summary_json"] = outcomes.summary_to_json(state["summary"])
                result[TRIAL_STATUS_KEY] = state["summary"]["status"]  # how the trial ended, for Optuna
            with tempfile.TemporaryDirectory() as directory:
                save_checkpoint(state, directory)
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))

        run_trial(trial_config(config), report, checkpoint=state, data=Dataset.from_arrays(data))

    trainable.__mixins__ = (_StartOverWhenCheckpointIsGone,)
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    # The data set goes into Ray's object store once, as numpy arrays (zero-copy for trials).
    return tune.with_resources(tune.with_parameters(trainable, data=data.to_arrays()), resources)


class _StartOverWhenCheckpointIsGone:
    """Mixed into Tune's function trainable (through Ray's ``__mixins__`` hook).

    A driver killed mid-study leaves an experiment state saved a little earlier, which may name a
    checkpoint that Tune has since replaced and deleted (num_to_keep), wholly or, when the kill
    came during the deletion, all but the folder. Tune's own restore then raises, and every retry
    of that trial fails the same way. Here the trial starts over from epoch 0 instead: the
    results' exactly-once rule makes a repeated trial harmless."""

    def restore(self, checkpoint_path):
        from spectral_study.checkpoint import is_whole

        checkpoint = getattr(checkpoint_path, "checkpoint", checkpoint_path)
        if isinstance(checkpoint, tune.Checkpoint) and not is_whole(checkpoint.filesystem, checkpoint.path):
            print(f"checkpoint {checkpoint.path} is gone or incomplete (saved before the driver stopped, "
                  f"deleted since); starting this trial from epoch 0")
            return None
        return super().restore(checkpoint_path)


# ------------------------------------------------------------------------------ the driver side

def _check_storage_is_shared(root: str, spec: StudySpec, address: str | None, shared: bool | None) -> None:
    check_shared_storage(root, ray.nodes(), address=address, cpu=spec.resources.cpu, gpu=spec.resources.gpu,
                         shared=shared)


def _quiet_tune() -> None:
    """Tune's own JSON/CSV/TensorBoard loggers would duplicate our Parquet results (and
    serialise each trial's spectra into them), its table reporter is too noisy to read, and
    it warns about the per-epoch checkpoints small studies take by design."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _param_space(spec: StudySpec, configs=None) -> dict:
    if spec.search.type == "grid":
        configs = spec.trial_configs() if configs is None else configs  # --extend: the missing ones
        return {"trial": tune.grid_search([config.to_dict() for config in configs])}
    return {}  # Optuna's define-by-run space supplies every key


def _tune_config(spec: StudySpec) -> tune.TuneConfig:
    metric, mode = spec.search.metric, spec.search.direction
    search_alg = scheduler = None
    if spec.search.type == "optuna":
        search_alg = _optuna_search(spec, results_root(spec.storage, spec.name))
    if spec.scheduler.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # time_attr "epoch": the trial's own epoch counter survives retries and restores.
        scheduler = ASHAScheduler(time_attr="epoch", max_t=spec.base.epochs,
                                  grace_period=spec.scheduler.grace_period,
                                  reduction_factor=spec.scheduler.reduction_factor)
    return tune.TuneConfig(
        metric=metric, mode=mode, search_alg=search_alg, scheduler=scheduler,
        num_samples=spec.search.n_trials if spec.search.type == "optuna" else 1,
        max_concurrent_trials=spec.concurrency,
        reuse_actors=True,  # saves ~2 s of actor start-up per trial
        trial_name_creator=lambda trial: f"{trial.trial_id}",
        trial_dirname_creator=lambda trial: f"{trial.trial_id}",
    )


def _optuna_search(spec: StudySpec, root: str):
    import optuna

    from spectral_study.searcher import StudySearch

    sampler_class = optuna.samplers.TPESampler if spec.search.sampler == "tpe" else optuna.samplers.RandomSampler
    storage = None
    if url := spec.optuna_storage(root):
        storage = optuna.storages.RDBStorage(url)
    return StudySearch(space=spec.define_by_run, metric=spec.search.metric, mode=spec.search.direction,
                       sampler=sampler_class(seed=spec.search.seed), study_name=spec.name, storage=storage)


def _run_config(spec: StudySpec, root: str, experiment: str = EXPERIMENT_DIR, total: int | None = None,
                tracking: dict | None = None) -> tune.RunConfig:
    callback = StudyCallback(study=spec.name, results=root, total=spec.trial_count() if total is None else total,
                             epochs=spec.base.epochs, metric=spec.search.metric,
                             direction=spec.search.direction, tracking=tracking)
    return tune.RunConfig(
        name=experiment, storage_path=root,
        failure_config=tune.FailureConfig(max_failures=spec.retries),
        # Two kept: a restore usually finds the one the last saved experiment state names.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[callback], verbose=0,
    )


def _fit(tuner: tune.Tuner, spec: StudySpec, root: str, echo) -> outcomes.StudyOutcome:
    started = time.perf_counter()
    # Tune's ResultGrid looks for the JSON/CSV logs we turned off; our results are the Parquet.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tuner.fit()
    _compact(spec, root, echo)
    return _outcome(spec, root, time.perf_counter() - started, echo)


def _compact(spec: StudySpec, root: str, echo) -> None:
    """One file per table once every trial has finished (spectral_study.compaction); a failure
    here loses nothing (the fragments stay), so it is reported, not raised."""
    from spectral_study.compaction import compact_if_finished
    from spectral_study.results import ResultsError

    try:
        report = compact_if_finished(root, spec.trial_count())
    except (OSError, ValueError, ResultsError) as error:  # pyarrow's errors are OSError/ValueError
        echo(f"results not compacted ({error}); `spectral-study compact {root}` retries")
        return
    if report is not None:
        echo(f"compacted: {report}")


def _outcome(spec: StudySpec, root: str, seconds: float, echo) -> outcomes.StudyOutcome:
    outcome = outcomes.read_outcome(root, seconds=seconds, with_epochs=spec.search.type == "optuna",
                                    expected=spec.trial_count())
    echo(outcomes.format_outcome(outcome, spec))
    return outcome


def _load_data(spec: StudySpec, echo) -> Dataset:
    started = time.perf_counter()
    base = spec.base
    data = load_dataset(base.dataset, path=base.data_path, normalize=base.normalize)
    echo(f"data: {data.name} from {data.source}: {len(data.y_train)} train / {len(data.y_test)} test "
         f"({time.perf_counter() - started:.1f} s)")
    return data


class _ray_session:
    """Join ``address``, or start an embedded local Ray sized to this machine; always leave it."""

    def __init__(self, address: str | None, echo) -> None:
        self.address, self.echo = address, echo

    def __enter__(self):
        if ray.is_initialized():
            self.owned = False
            return self
        self.owned = True
        # address="local" always starts a fresh local Ray: a stale /tmp/ray/ray_current_cluster
        # left by a killed head is never joined by mistake.
        ray.init(address=self.address or "local", include_dashboard=False,
                 logging_level=logging.ERROR, log_to_driver=False)
        resources = ray.cluster_resources()
        where = self.address or "embedded local Ray"
        self.echo(f"ray: {where}, {resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU, "
                  f"{len(ray.nodes())} node(s)")
        return self

    def __exit__(self, *exc) -> None:
        if self.owned:
            ray.shutdown()
