"""The Ray adapter — the only module that imports Ray.

    outcome = run_study(load_study("studies/quickstart.yaml"))            # embedded local Ray
    outcome = run_study(spec, address="auto")                               # a running cluster
    outcome = resume_study("results/quickstart")                            # after a crash

Ray Tune schedules `spectral_study.trial.run_trial`; the data set goes into the object store
once (`tune.with_parameters`); every epoch is reported with a checkpoint so a retried trial
continues where it stopped; a driver-side callback (`spectral_study.progress`) writes each
trial's Parquet fragments as the trial ends and prints one line per finished trial.

Layout of ``<storage>/<study>/``: the Parquet tables, ``study.yaml`` (the resolved study), and
``_tune/`` (Ray Tune's experiment state, what `resume_study` restores from).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Tune's own JSON/CSV/TensorBoard loggers would duplicate our Parquet results (and serialise
# each trial's spectra into them): turn them off before Tune creates them.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# A study prints its own compact progress; Tune's table reporter is too noisy to read.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Small studies checkpoint every epoch by design; Tune warns about the snapshots that causes.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


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

from spectral_study.data import load_dataset  # noqa: E402
from spectral_study.progress import StudyCallback  # noqa: E402
from spectral_study.results import write_text  # noqa: E402
from spectral_study.study import RESOLVED_STUDY_FILE, StudySpec, load_resolved_study  # noqa: E402

EXPERIMENT_DIR = "_tune"
CHECKPOINT_FILE = "state.pt"


@dataclass(frozen=True)
class StudyOutcome:
    results: str        # where the Parquet tables are
    statuses: dict      # status -> number of trials
    seconds: float


def results_root(spec: StudySpec) -> str:
    """``<storage>/<name>``: an absolute local path, or a URI as given."""
    if "://" in spec.storage:
        return spec.storage.rstrip("/") + "/" + spec.name
    return str((Path(spec.storage).expanduser().resolve() / spec.name))


def run_study(spec: StudySpec, *, address: str | None = None, echo=print) -> StudyOutcome:
    """Run ``spec`` to the end; trials' results land in Parquet as they finish."""
    root = results_root(spec)
    write_text(root, RESOLVED_STUDY_FILE, spec.to_yaml())
    with _ray_session(address, echo):
        data = _load_data(spec, echo)
        tuner = tune.Tuner(_trainable(spec, data), param_space=_param_space(spec),
                           tune_config=_tune_config(spec), run_config=_run_config(spec, root))
        return _fit(tuner, root, echo)


def resume_study(path: str, *, address: str | None = None, echo=print) -> StudyOutcome:
    """Continue an interrupted study from its results folder (or its ``_tune`` folder)."""
    root = path.rstrip("/")
    if root.endswith("/" + EXPERIMENT_DIR) or root == EXPERIMENT_DIR:
        root = root[: -len(EXPERIMENT_DIR)].rstrip("/") or "."
    if "://" not in root:
        root = str(Path(root).expanduser().resolve())
    spec = load_study_from_results(root)
    experiment = root + "/" + EXPERIMENT_DIR
    with _ray_session(address, echo):
        if not tune.Tuner.can_restore(experiment):
            raise FileNotFoundError(f"{experiment}: no Ray Tune experiment state to resume from; "
                                    f"start the study with `spectral-study run {spec.source}`")
        data = _load_data(spec, echo)
        echo(f"resuming {spec.name} from {experiment}")
        tuner = tune.Tuner.restore(experiment, trainable=_trainable(spec, data),
                                   resume_unfinished=True, resume_errored=True)
        return _fit(tuner, root, echo)


def load_study_from_results(root: str) -> StudySpec:
    """The resolved study saved beside the results."""
    try:
        return load_resolved_study(root)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; is this a study's results folder (written by "
                                f"`spectral-study run`)?") from None


# ------------------------------------------------------------------------------ the trial side

def _trainable(spec: StudySpec, data):
    cpus = spec.resources.cpu

    def trainable(config: dict, data=None) -> None:
        import torch

        from spectral_study.trial import run_trial

        # Ray assigns this trial `cpus` cores: use them, no more (2-core machines oversubscribe
        # badly when every trial starts torch's default thread pool).
        torch.set_num_threads(max(1, int(cpus)))
        trial_config = dict(config.get("trial", config))
        data = _dataset_from_store(data)
        checkpoint = tune.get_checkpoint()
        state = None
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                state = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=False)
        context = ray.get_runtime_context()
        facts = {"node_id": context.get_node_id(),
                 "gpu_ids": ",".join(str(g) for g in context.get_accelerator_ids().get("GPU", [])),
                 "restored_from_epoch": 0 if state is None else len(state["history"])}

        def report(metrics: dict, state: dict) -> None:
            result = {**metrics, **facts}
            if state.get("summary") is not None:
                # JSON, so that Tune passes it through as one opaque value.
                result["summary_json"] = json.dumps(state["summary"], default=str)
            with tempfile.TemporaryDirectory() as directory:
                torch.save({"trainers": state["trainers"], "history": state["history"]},
                           Path(directory) / CHECKPOINT_FILE)
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))

        run_trial(trial_config, report, checkpoint=state, data=data)

    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return tune.with_resources(tune.with_parameters(trainable, data=_dataset_for_store(data)), resources)


_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _dataset_for_store(data) -> dict:
    """The data set as numpy arrays for Ray's object store.

    Ray maps numpy arrays into a trial's memory without a copy; torch tensors are unpickled,
    which cost 0.3 s per trial for Fashion-MNIST (measured), on every trial of a study.
    """
    return {"arrays": {name: getattr(data, name).numpy() for name in _ARRAYS},
            "name": data.name, "n_classes": data.n_classes, "source": data.source}


def _dataset_from_store(stored: dict):
    import warnings

    import torch

    from spectral_study.data import Dataset

    with warnings.catch_warnings():
        # The arrays are read-only views of the object store; training only reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensors = {name: torch.from_numpy(array) for name, array in stored["arrays"].items()}
    return Dataset(stored["name"], n_classes=stored["n_classes"], source=stored["source"], **tensors)


# ------------------------------------------------------------------------------ the driver side

def _param_space(spec: StudySpec) -> dict:
    if spec.search.type == "grid":
        return {"trial": tune.grid_search(spec.trial_configs())}
    return {}  # Optuna's define-by-run space supplies every key


def _tune_config(spec: StudySpec) -> tune.TuneConfig:
    metric, mode = spec.search.metric, spec.search.direction
    search_alg = scheduler = None
    if spec.search.type == "optuna":
        search_alg = _optuna_search(spec)
    if spec.scheduler.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # time_attr "epoch": the trial's own epoch counter survives retries and restores.
        scheduler = ASHAScheduler(time_attr="epoch", max_t=spec.training.epochs,
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


def _optuna_search(spec: StudySpec):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler_class = optuna.samplers.TPESampler if spec.search.sampler == "tpe" else optuna.samplers.RandomSampler
    storage = None
    if spec.search.storage:
        storage = optuna.storages.RDBStorage(spec.search.storage)
    return OptunaSearch(space=spec.define_by_run, metric=spec.search.metric, mode=spec.search.direction,
                        sampler=sampler_class(seed=spec.search.seed), study_name=spec.name, storage=storage)


def _run_config(spec: StudySpec, root: str) -> tune.RunConfig:
    callback = StudyCallback(study=spec.name, results=root, total=spec.trial_count(),
                             epochs=spec.training.epochs, metric=spec.search.metric)
    return tune.RunConfig(
        name=EXPERIMENT_DIR, storage_path=root,
        failure_config=tune.FailureConfig(max_failures=spec.retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[callback], verbose=0,
    )


def _fit(tuner: tune.Tuner, root: str, echo) -> StudyOutcome:
    started = time.perf_counter()
    # Tune's ResultGrid looks for the JSON/CSV logs we turned off; our results are the Parquet.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tuner.fit()
    from spectral_study.results import load_table

    trials = load_table(root, "trials")
    statuses = trials["status"].value_counts().to_dict() if len(trials) else {}
    seconds = time.perf_counter() - started
    counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "no trials"
    echo(f"done in {seconds:.0f} s: {counts}")
    if len(trials):
        echo(result_table(trials))
    echo(f"results: {root}  (spectral_study.results.load_results, or pandas.read_parquet('{root}/trials'))")
    return StudyOutcome(results=root, statuses=statuses, seconds=seconds)


def result_table(trials) -> str:
    """Final test accuracy per mode (rows) and hidden widths (columns), mean over seeds."""
    table = trials.pivot_table(index="mode", columns="widths", values="final_test_accuracy",
                               aggfunc="mean")
    table = table[sorted(table.columns, key=lambda w: [int(x) for x in w.split("-")] if w else [])]
    table.columns = [f"w={w or 'none'}" for w in table.columns]
    return "final test accuracy (mean over seeds):\n" + table.to_string(float_format="{:.4f}".format)


def _load_data(spec: StudySpec, echo):
    started = time.perf_counter()
    data = load_dataset(spec.dataset.name, path=spec.dataset.path, normalize=spec.dataset.normalize)
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
