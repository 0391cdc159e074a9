"""What a search found: its optimisation history, which hyperparameters mattered, the best trials.

    python -m analysis.search results/fmnist-optuna [--out DIR] [--top 5]

For an Optuna study (`search.type: optuna`). Every trial is scored by the last value it
reported of the study's metric (`search.metric`), read from the `epochs` table, with how far it
got: a trial ASHA stopped after 1 epoch is shown as such, never ranked as if it had finished.
Rankings and "best" use completed trials only (a stopped trial's score is not comparable with a
finished one's; Optuna records those as PRUNED). Parameter importances are Optuna's PED-ANOVA
(how much each parameter's distribution among the best quarter of the completed trials differs
from its distribution among all of them; no scikit-learn needed, unlike fANOVA), computed on the
study's Optuna storage when it has one (`search.storage`,
e.g. `auto`: results/<study>/optuna.db) and otherwise on the same trials rebuilt from the Parquet
results with the search space of the saved study.yaml. Writes under --out (default
<first RESULTS_DIR>/analysis):

    search_history.png     objective per trial in the order trials finished, best so far
    search_importances.png parameter importances
    search.md              best trials with their parameters, best per mode, importances
    search.csv             every trial: status, epochs, score, parameters
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from analysis import _report
from analysis.stats import AnalysisError, load, require_columns

HINT = "run an Optuna study, e.g. `spectral-study run studies/fmnist-optuna.yaml`"
# The hyperparameters a search may suggest (spectral_study.study.expand.define_by_run).
PARAMS = ("mode", "widths", "activation", "eigenvalues", "optimizer", "batch_size", "lr", "lr_eigvals")


def scored_trials(tables: dict[str, pd.DataFrame], metric: str) -> pd.DataFrame:
    """Every trial with ``score`` (its last reported ``metric``) and ``order`` (1 = finished
    first); trials that reported nothing have no score."""
    trials, epochs = tables["trials"], tables["epochs"]
    require_columns(trials, ["trial_id", "status", "epochs_completed", "finished_at", *PARAMS], "trials", HINT)
    if metric not in epochs.columns:
        raise AnalysisError(f"the epochs table has no column {metric!r}; {HINT}")
    keys = ["results_dir", "study", "trial_id"]
    last = (epochs.sort_values("epoch").groupby(keys, sort=False)[metric].last().rename("score").reset_index())
    frame = trials.merge(last, on=keys, how="left").sort_values("finished_at").reset_index(drop=True)
    return frame.assign(order=range(1, len(frame) + 1),
                        score=pd.to_numeric(frame["score"], errors="coerce").astype("float64"))


def best_trials(frame: pd.DataFrame, direction: str, top: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``top`` best completed trials, and the best completed trial of each mode."""
    done = frame[(frame["status"] == "completed") & frame["score"].notna()]
    if not len(done):
        raise AnalysisError(f"no completed trial has a score; {HINT}")
    ranked = done.sort_values("score", ascending=direction == "min")
    columns = ["trial_id", "score", "epochs_completed", *varying(frame)]
    return ranked.head(top)[columns], ranked.drop_duplicates("mode")[columns].set_index("mode", drop=False)


def varying(frame: pd.DataFrame) -> list[str]:
    """The hyperparameters that took more than one value in this search."""
    return [p for p in PARAMS if frame[p].nunique(dropna=False) > 1]


def importances(frame: pd.DataFrame, spec, storage: str | None) -> pd.DataFrame:
    """PED-ANOVA importance of each suggested parameter over the completed trials (the best
    quarter against all: a search of a few dozen trials has too few for Optuna's default tenth):
    from the Optuna storage when there is one, else from the trials rebuilt with the study's
    search space."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = None
    if storage is not None:
        try:
            study = optuna.load_study(study_name=spec.name, storage=storage)
        except KeyError:  # the storage exists but holds no study of that name
            study = None
    source = "Optuna storage" if study is not None else "Parquet results"
    if study is None:
        study = _rebuilt_study(frame, spec)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2 or not any(t.params for t in complete):
        return pd.DataFrame(columns=["parameter", "importance", "source"])
    values = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(target_quantile=0.25))
    return pd.DataFrame({"parameter": list(values), "importance": list(values.values()), "source": source})


def plot_history(frame: pd.DataFrame, metric: str, direction: str):
    plt = _report.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.4))
    for k, (status, marker) in enumerate((("completed", "o"), ("stopped", "x"), ("diverged", "v"))):
        part = frame[(frame["status"] == status) & frame["score"].notna()]
        if len(part):
            ax.scatter(part["order"], part["score"], marker=marker, s=26, label=f"{status} ({len(part)})",
                       color=("tab:blue", "tab:gray", "tab:red")[k])
    done = frame[(frame["status"] == "completed") & frame["score"].notna()].sort_values("order")
    if len(done):
        best = done["score"].cummin() if direction == "min" else done["score"].cummax()
        ax.step(done["order"], best, where="post", color="tab:orange", label="best completed so far")
    ax.set_xlabel("trial, in the order it finished")
    ax.set_ylabel(f"{metric} (last value reported)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("optimisation history: stopped trials at the epoch where the scheduler stopped them",
                 fontsize=9)
    return fig


def plot_importances(table: pd.DataFrame):
    plt = _report.pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * max(1, len(table))))
    if len(table):
        ordered = table.sort_values("importance")
        ax.barh(ordered["parameter"], ordered["importance"], color="tab:blue")
        ax.set_title(f"parameter importances (PED-ANOVA, completed trials; from the {table['source'].iloc[0]})",
                     fontsize=9)
    else:
        ax.text(0.5, 0.5, "fewer than two completed trials: no importances", ha="center", va="center")
    ax.set_xlabel("importance (sums to 1)")
    return fig


def main(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--top", type=int, default=5, help="best trials listed (default 5)")

    args = _report.parse_args(argv, __doc__.splitlines()[0], extra)

    def body() -> list[Path]:
        spec = _resolved_study(args.results[0])
        metric, direction = spec.search.metric, spec.search.direction
        frame = scored_trials(load(args.results), metric)
        top, per_mode = best_trials(frame, direction, args.top)
        storage = spec.optuna_storage(_absolute(args.results[0])) if spec.search.storage else None
        table = importances(frame, spec, storage)
        counts = ", ".join(f"{n} {status}" for status, n in frame["status"].value_counts().items())
        intro = (f"Results: {_report.where(args.results)}: {len(frame)} trials ({counts}). Score: the last "
                 f"{metric} each trial reported ({direction}). Best trials and best per mode: completed "
                 f"trials only (a stopped trial's score is not comparable with a finished one's). One trial "
                 f"per row: no interval.")
        out = args.out
        columns = ["order", "trial_id", "status", "epochs_completed", "score", *varying(frame)]
        return [_report.write_csv(out / "search.csv", frame[columns]),
                _report.write_markdown(out / "search.md", "What the search found", intro, [
                    (f"Best {len(top)} completed trials", top.set_index("trial_id")),
                    ("Best completed trial per mode", per_mode.drop(columns=["mode"])),
                    ("Parameter importances", table.set_index("parameter"))]),
                _report.save_figure(plot_history(frame, metric, direction), out / "search_history.png"),
                _report.save_figure(plot_importances(table), out / "search_importances.png")]

    return _report.run(body)


def _resolved_study(results: str):
    from spectral_study.study import StudyError, load_resolved_study

    try:
        spec = load_resolved_study(results)
    except (FileNotFoundError, StudyError) as error:
        raise AnalysisError(f"{results}: cannot read the study it ran ({error}); {HINT}") from None
    if spec.search.type != "optuna":
        raise AnalysisError(f"{results}: study {spec.name!r} is a {spec.search.type} study, not a search; "
                            "use analysis.curves or analysis.pruning for grids")
    return spec


def _rebuilt_study(frame: pd.DataFrame, spec):
    """An in-memory Optuna study holding the completed trials, with the search's distributions."""
    import optuna

    from spectral_study.checks import encode_widths

    space = spec.search.space
    choices = {"mode": space.modes, "widths": tuple(encode_widths(w) for w in space.widths),
               "activation": space.activations, "eigenvalues": space.eigenvalues,
               "optimizer": space.optimizers, "batch_size": space.batch_sizes}
    distributions = {name: optuna.distributions.CategoricalDistribution(list(options))
                     for name, options in choices.items() if len(options) > 1}
    for name in ("lr", "lr_eigvals"):
        if (r := getattr(space, name)) is not None:
            distributions[name] = optuna.distributions.FloatDistribution(r.low, r.high, log=r.log)
    study = optuna.create_study(direction="minimize" if spec.search.direction == "min" else "maximize")
    done = frame[(frame["status"] == "completed") & frame["score"].notna()]
    for row in done.itertuples():
        params = {name: _native(getattr(row, name)) for name in distributions}
        params = {k: v for k, v in params.items() if v is not None}  # lr_eigvals: not for every mode
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: distributions[k] for k in params}, value=float(row.score)))
    return study


def _absolute(results: str) -> str:
    """A local results folder as an absolute path (a URI as given)."""
    return results if "://" in str(results) else str(Path(results).resolve())


def _native(value):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


if __name__ == "__main__":
    sys.exit(main())
