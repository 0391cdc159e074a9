"""Ray Tune's Optuna searcher, told how each trial really ended (part of the Ray adapter).

Ray's `OptunaSearch` reports every trial that ends with a result as COMPLETE with its last
value, so TPE ranks a 1-epoch accuracy of a trial ASHA stopped against the 8-epoch accuracy of
one that finished. Optuna's own answer to early stopping is the PRUNED state with per-step
intermediate values, which `StudySearch` gives it:

| how the trial ended                    | Optuna state | value                                  |
| -------------------------------------- | ------------ | -------------------------------------- |
| trained every epoch ("completed")      | COMPLETE     | the metric after the last epoch         |
| diverged (NaN loss)                    | COMPLETE     | its last metric, if finite (else FAIL) |
| stopped by the scheduler (ASHA)        | PRUNED       | Optuna takes the last intermediate one |
| raised after its retries ("failed")    | FAIL         | none                                   |

Intermediate values are reported at the trial's own epoch (not Tune's iteration counter, which
restarts with a retried trial), and every Optuna trial carries user attributes ``trial_id`` (the
results' trial id, to join the Optuna storage with the Parquet tables), ``status`` and ``epochs``.
"""
from __future__ import annotations

import math
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

# The key of a trial's final Tune result that holds its status (the trainable sets it when its
# summary goes out); a result without it ended before the trial's last epoch.
TRIAL_STATUS_KEY = "trial_status"


class StudySearch(OptunaSearch):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reported: dict[str, set[int]] = {}  # trial id -> epochs told to Optuna

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr("trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._completed_trials:
            self._report(trial_id, result)

    def _report(self, trial_id: str, result: dict) -> None:
        """The result's metric as the intermediate value at its epoch (once per epoch)."""
        ot_trial = self._ot_trials.get(trial_id)
        value, epoch = result.get(self.metric), result.get("epoch")
        reported = self._reported.setdefault(trial_id, set())
        if ot_trial is None or epoch is None or int(epoch) in reported or not _finite(value):
            return
        ot_trial.report(float(value), int(epoch))
        reported.add(int(epoch))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        result = result or {}
        # Tune hands a finished trial's last result to this method, not to on_trial_result.
        self._report(trial_id, result)
        status = "failed" if error else result.get(TRIAL_STATUS_KEY, "stopped")
        value = result.get(self.metric)
        if status in ("completed", "diverged") and _finite(value):
            state, told = optuna.trial.TrialState.COMPLETE, float(value)
        elif status == "stopped":
            state, told = optuna.trial.TrialState.PRUNED, None
        else:
            state, told = optuna.trial.TrialState.FAIL, None
        ot_trial.set_user_attr("status", status)
        if result.get("epoch") is not None:
            ot_trial.set_user_attr("epochs", int(result["epoch"]))
        self._ot_study.tell(ot_trial, told, state=state)
        self._completed_trials.add(trial_id)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
