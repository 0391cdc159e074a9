"""Helpers for tests of spectral-study and of code built on it (as optuna ships `optuna.testing`).

    path = write_study(tmp_path, "grid", model={"widths": [8, 16]}, training={"epochs": 2})
    spec = load_study(path)

`study_dict` is the one small base study (synthetic data, three modes, two widths, seconds per
trial); a test states only what it changes. `spectral_study.testing.cluster` starts a real
multi-node Ray cluster on this machine.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# Small enough for a 2-core CI machine: 3 modes x 2 widths, 3 epochs of 2000 synthetic samples.
BASE_STUDY: dict[str, Any] = {
    "dataset": "synthetic",
    "model": {"modes": ["spectral-eigvals", "dense", "spectral-full"], "widths": [16, 64]},
    # A checkpoint every epoch: fault tests retry from epoch 1 (the default, 5, is for real studies).
    "training": {"epochs": 3, "batch_size": 32, "lr_eigvals": 0.05, "checkpoint_every": 1},
    "search": {"type": "grid", "repeats": 1},
    "resources": {"cpu": 1, "gpu": 0},
    "retries": 2,
}


def study_dict(name: str = "study", storage: str | Path = "results", **overrides: Any) -> dict:
    """The base study with ``overrides`` merged in, section by section: ``training={"epochs": 2}``
    changes one key of ``training:``; a value of None removes the key."""
    study = {"name": name, **copy.deepcopy(BASE_STUDY), "storage": str(storage)}
    return _merge(study, overrides)


def write_study(directory: str | Path, name: str = "study", **overrides: Any) -> Path:
    """`study_dict` written to ``directory/<name>.yaml``, its results under ``directory/results``."""
    directory = Path(directory)
    path = directory / f"{name}.yaml"
    text = yaml.safe_dump(study_dict(name, storage=directory / "results", **overrides), sort_keys=False)
    path.write_text(f"# test study {name}\n{text}")
    return path


def _merge(base: dict, overrides: dict) -> dict:
    for key, value in overrides.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def write_trials(spec, configs=None, *, status: str = "completed", prefix: str = "t") -> list[str]:
    """Trials rows (and their epochs) for ``configs`` (default: the whole grid of ``spec``) in
    ``spec``'s results folder, with its resolved study.yaml beside them, as a run would leave
    them, without running anything. Returns the trial ids."""
    from spectral_study.results import ResultsWriter, results_root, write_text
    from spectral_study.study import RESOLVED_STUDY_FILE

    root = results_root(spec.storage, spec.name)
    write_text(root, RESOLVED_STUDY_FILE, spec.to_yaml())
    writer, ids = ResultsWriter(root), []
    for i, config in enumerate(spec.trial_configs() if configs is None else configs):
        history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5, "test_loss": 1.0 / e,
                    "test_accuracy": 0.5 + e / 100, "epoch_seconds": 1.0} for e in range(1, config.epochs + 1)]
        trial_id = f"{prefix}{i:04d}"
        summary = {"config": config.to_dict(), "status": status, "history": history,
                   "epochs_completed": len(history), "final_test_accuracy": history[-1]["test_accuracy"],
                   "best_test_accuracy": history[-1]["test_accuracy"], "trainable_params": 10, "total_params": 20}
        if status == "failed":
            writer.write_trial(trial_id, spec.name, None, status="failed", error="RuntimeError: boom",
                               epochs=history[:1], extra={"config": config.to_dict()})
        else:
            writer.write_trial(trial_id, spec.name, summary)
        ids.append(trial_id)
    return ids
