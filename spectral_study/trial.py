"""`run_trial`: one trial from a plain config dict — the unit a study schedules.

It loads the data, builds the model(s), trains, and returns a summary. It never imports Ray:
progress leaves through ``report(metrics, state)``, and a retried trial passes back the last
``state`` it reported as ``checkpoint`` to continue where it stopped.

With ``repeats > 1`` the trial trains seeds ``seed, seed+1, …`` in lockstep and reports their
mean each epoch (an Optuna objective averaged over seeds that ASHA can still stop early).
"""
from __future__ import annotations

import math
import platform
import socket
import time
from dataclasses import dataclass, replace

import torch

from spectral_study import pruning
from spectral_study.data import load_dataset
from spectral_study.models import ModelSpec, SpectralLinear, build_model, count_parameters
from spectral_study.train import METRICS, TrainConfig, Trainer, no_report
from spectral_study.widths import decode_widths

DEVICES = ("auto", "cpu", "cuda")

# Every key a trial config may hold, with its default. Unknown keys are refused: a typo in a
# config would otherwise silently run the default.
TRIAL_DEFAULTS = {
    "dataset": "fashion-mnist", "data_path": None, "normalize": "unit",
    "mode": "spectral-eigvals", "widths": [], "activation": "relu", "eigenvalues": "both",
    "bias": True, "phi_init": "uniform", "eigval_init": "uniform", "subset_seed": None,
    "optimizer": "adam", "lr": 1e-3, "lr_eigvals": None, "batch_size": 256, "epochs": 5,
    "seed": 0, "repeats": 1, "device": "auto",
    "pruning": None, "inject_failure": None,
    # Bookkeeping a study runner adds; carried through to the summary, not used here.
    "study": None, "cell": None,
    "synthetic_size": None,
}


class TrialConfigError(ValueError):
    """A trial config that cannot be run (names the key and what is allowed)."""


@dataclass(frozen=True)
class TrialSetup:
    model_spec: ModelSpec
    train_config: TrainConfig
    seeds: tuple[int, ...]


def resolve_config(config: dict) -> dict:
    """The config with defaults filled in and widths decoded; refuses unknown keys."""
    unknown = sorted(set(config) - set(TRIAL_DEFAULTS))
    if unknown:
        raise TrialConfigError(f"unknown trial config key(s) {unknown}; allowed: {sorted(TRIAL_DEFAULTS)}")
    resolved = {**TRIAL_DEFAULTS, **config}
    try:
        resolved["widths"] = decode_widths(resolved["widths"])
    except ValueError as error:
        raise TrialConfigError(f"widths: {error}") from None
    if resolved["device"] not in DEVICES:
        raise TrialConfigError(f"device must be one of {DEVICES}, got {resolved['device']!r}")
    if not isinstance(resolved["repeats"], int) or resolved["repeats"] < 1:
        raise TrialConfigError(f"repeats must be a positive integer, got {resolved['repeats']!r}")
    try:
        resolved["pruning"] = pruning.check_config(resolved["pruning"])
    except ValueError as error:
        raise TrialConfigError(f"pruning: {error}") from None
    return resolved


def pick_device(requested: str) -> torch.device:
    """``auto`` means CUDA when torch sees a device, else CPU (recorded in the summary)."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrialConfigError("device 'cuda' requested but torch sees no CUDA device")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def run_trial(config: dict, report=None, *, checkpoint: dict | None = None, data=None) -> dict:
    """Run one trial; returns its summary dict (see `summarize`).

    ``data``: an already loaded `Dataset` (a study passes it once through Ray's object store);
    otherwise it is loaded from ``config``. ``checkpoint``: a state this trial reported before
    (a retry continues from it).
    """
    report = report or no_report
    started = time.perf_counter()
    cfg = resolve_config(config)
    if cfg["inject_failure"] == "always":
        raise RuntimeError("injected failure (always) for testing")
    device = pick_device(cfg["device"])
    if data is None:
        data = load_dataset(cfg["dataset"], path=cfg["data_path"], normalize=cfg["normalize"],
                            **({"synthetic_size": tuple(cfg["synthetic_size"])} if cfg["synthetic_size"] else {}))
    data = data.to(device)
    setup = _setup(cfg, data)
    trainers = []
    for seed in setup.seeds:
        torch.manual_seed(seed)
        model = build_model(setup.model_spec, seed=seed).to(device)
        trainers.append(Trainer(model, data, _with_seed(setup.train_config, seed)))
    trainable, total = count_parameters(trainers[0].model)  # reported with every epoch
    history: list[dict] = []
    if checkpoint is not None:
        for trainer, state in zip(trainers, checkpoint["trainers"]):
            trainer.load_state_dict(state)
        history = list(checkpoint["history"])
    status, summary = "completed", None
    while summary is None:
        # A checkpoint taken at the last epoch (the driver died before it saw the trial end)
        # needs no more training: the trial only has to report its summary again.
        finished_before = bool(history) and trainers[0].epoch >= setup.train_config.epochs
        if finished_before:
            metrics = history[-1]
        else:
            per_seed = [trainer.run_epoch() for trainer in trainers]
            metrics = {**_mean_metrics(per_seed), "trainable_params": trainable, "total_params": total}
            history.append(metrics)
        if any(trainer.diverged for trainer in trainers):
            status = "diverged"
        if status == "diverged" or trainers[0].epoch >= setup.train_config.epochs:
            # Pruning rows (SCIENCE.md §2) only for a trained network: a diverged one has none.
            rows = pruning.trial_rows(cfg, trainers) if status == "completed" else []
            summary = summarize(cfg, trainers, history, status, device, time.perf_counter() - started)
            summary["pruning"] = rows
        # The state references live tensors: a report that keeps it must serialise it now.
        # The last report also carries the trial's summary (a study writes it as the trial ends).
        report(metrics, {"trainers": [t.state_dict() for t in trainers], "history": list(history),
                         "summary": summary})
        if cfg["inject_failure"] == "first_attempt" and checkpoint is None:
            # After the first report, so that the retry has a checkpoint to continue from.
            raise RuntimeError("injected failure (first attempt) for testing")
    return summary


def summarize(cfg: dict, trainers: list, history: list[dict], status: str,
              device: torch.device, wall_seconds: float) -> dict:
    """The trial's summary: config, exact parameter counts, accuracies, spectra, environment."""
    trainable, total = count_parameters(trainers[0].model)
    final = history[-1] if history else {}
    return {
        "config": cfg,
        "status": status,
        "epochs_completed": len(history),
        "final_test_accuracy": final.get("test_accuracy", math.nan),
        "best_test_accuracy": max((h["test_accuracy"] for h in history
                                   if math.isfinite(h["test_loss"])), default=math.nan),
        "final_train_loss": final.get("train_loss", math.nan),
        "trainable_params": trainable,
        "total_params": total,
        "wall_seconds": wall_seconds,
        "device": str(device),
        "host": socket.gethostname(),
        "history": history,
        "spectra": spectra(trainers[0].model),
        "weights": perceptron_weights(trainers[0].model),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }


def spectra(model) -> list[dict]:
    """Trained eigenvalues per spectral layer and node (empty for dense networks)."""
    rows = []
    for layer_index, layer in enumerate(getattr(model, "layers", [])):
        if not isinstance(layer, SpectralLinear):
            continue
        for side, values in (("in", layer.lambda_in), ("out", layer.lambda_out)):
            for node, value in enumerate(values.detach().cpu().tolist()):
                rows.append({"layer": layer_index, "side": side, "node": node, "eigenvalue": value,
                             "trained": isinstance(values, torch.nn.Parameter) and values.requires_grad})
    return rows


def perceptron_weights(model) -> list[dict]:
    """Every trained weight W[i, j] of a perceptron (one layer), for weight-distribution
    analysis; empty for deeper networks (their weights are too many to keep per trial)."""
    layers = getattr(model, "layers", [])
    if len(layers) != 1:
        return []
    layer = layers[0]
    weight = layer.weight.detach().cpu()
    trainable = torch.ones_like(weight, dtype=torch.bool)
    if hasattr(layer, "free_index"):  # dense-restricted: only the chosen subset was trained
        trainable = torch.zeros(weight.numel(), dtype=torch.bool)
        trainable[layer.free_index.cpu()] = True
        trainable = trainable.view_as(weight)
    elif isinstance(layer, SpectralLinear):
        trainable[:] = layer.phi.requires_grad or layer.lambda_out.requires_grad
    rows, cols = weight.shape
    return [{"layer": 0, "row": i, "col": j, "weight": float(weight[i, j]), "trainable": bool(trainable[i, j])}
            for i in range(rows) for j in range(cols)]


def _setup(cfg: dict, data) -> TrialSetup:
    try:
        model_spec = ModelSpec(mode=cfg["mode"], in_features=data.n_features, n_classes=data.n_classes,
                               widths=tuple(cfg["widths"]), activation=cfg["activation"],
                               eigenvalues=cfg["eigenvalues"], bias=cfg["bias"], phi_init=cfg["phi_init"],
                               eigval_init=cfg["eigval_init"], subset_seed=cfg["subset_seed"])
        train_config = TrainConfig(optimizer=cfg["optimizer"], lr=cfg["lr"], lr_eigvals=cfg["lr_eigvals"],
                                   batch_size=cfg["batch_size"], epochs=cfg["epochs"], seed=cfg["seed"])
    except ValueError as error:
        raise TrialConfigError(str(error)) from None
    seeds = tuple(cfg["seed"] + k for k in range(cfg["repeats"]))
    return TrialSetup(model_spec, train_config, seeds)


def _with_seed(config: TrainConfig, seed: int) -> TrainConfig:
    return replace(config, seed=seed)


def _mean_metrics(per_seed: list[dict]) -> dict:
    """Mean over seeds of every metric (the epoch number is shared)."""
    mean = {"epoch": per_seed[0]["epoch"]}
    for key in METRICS:
        mean[key] = sum(m[key] for m in per_seed) / len(per_seed)
    return mean
