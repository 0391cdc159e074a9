"""`run_trial`: one trial from a `TrialConfig` (or its dict) — the unit a study schedules.

    summary = run_trial({"dataset": "synthetic", "mode": "spectral-eigvals", "widths": [64]})

It loads the data, builds the model(s), trains, prunes, and returns a summary. It never imports
Ray: progress leaves through ``report(metrics, state)``, and a retried trial passes back the
last ``state`` it reported as ``checkpoint`` to continue where it stopped (`spectral_study.
checkpoint` writes and reads that state on disk).

With ``repeats > 1`` the trial trains seeds ``seed, seed+1, …`` in lockstep and reports their
mean each epoch (an Optuna objective averaged over seeds that ASHA can still stop early).
"""
from __future__ import annotations

import math
import socket
import time

import torch

from spectral_study import pruning
from spectral_study.config import TrialConfig, TrialConfigError
from spectral_study.data import load_dataset
from spectral_study.models import ModelSpec, SpectralLinear, build_model, count_parameters
from spectral_study.provenance import trial_versions
from spectral_study.train import TrainConfig, Trainer, no_report
from spectral_study.vocabulary import EPOCH_METRICS

__all__ = ["TrialConfig", "TrialConfigError", "run_trial", "pick_device"]


def pick_device(requested: str) -> torch.device:
    """``auto`` means CUDA when torch sees a device, else CPU (recorded in the summary)."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrialConfigError("device: got 'cuda'; but torch sees no CUDA device")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def run_trial(config: TrialConfig | dict, report=None, *, checkpoint: dict | None = None, data=None) -> dict:
    """Run one trial; returns its summary dict (see `summarize`).

    ``data``: an already loaded `Dataset` (a study passes it once through Ray's object store);
    otherwise it is loaded from ``config``. ``checkpoint``: a state this trial reported before
    (a retry continues from it).
    """
    report = report or no_report
    started = time.perf_counter()
    config = TrialConfig.from_dict(config)
    if config.inject_failure == "always":
        raise RuntimeError("injected failure (always) for testing")
    device = pick_device(config.device)
    if data is None:
        data = load_dataset(config.dataset, path=config.data_path, normalize=config.normalize,
                            **({"synthetic_size": tuple(config.synthetic_size)} if config.synthetic_size else {}))
    data = data.to(device)
    try:
        model_spec = ModelSpec.from_config(config, in_features=data.n_features, n_classes=data.n_classes)
    except ValueError as error:
        raise TrialConfigError(str(error)) from None
    trainers = []
    for seed in config.seeds:
        torch.manual_seed(seed)
        model = build_model(model_spec, seed=seed).to(device)
        trainers.append(Trainer(model, data, TrainConfig.from_config(config, seed=seed)))
    trainable, total = count_parameters(trainers[0].model)  # reported with every epoch
    history: list[dict] = []
    # Time and attempts add up over retries and resumes (the checkpoint carries them), and so do
    # the pruning rows of earlier epochs (pruning.at_epochs).
    earlier_seconds, attempts, pruned_before = 0.0, 1, []
    if checkpoint is not None:
        for trainer, state in zip(trainers, checkpoint["trainers"]):
            trainer.load_state_dict(state)
        history = list(checkpoint["history"])
        earlier_seconds = float(checkpoint.get("elapsed_seconds", 0.0))
        attempts = int(checkpoint.get("attempts", 1)) + 1
        pruned_before = list(checkpoint.get("pruning", []))
    prune_at = set(config.pruning.at_epochs or ()) if config.pruning is not None else set()
    restored_from_epoch = len(history)
    status, summary = "completed", None
    while summary is None:
        # A checkpoint taken at the last epoch, or after the trial diverged (the driver died
        # before it saw the trial end), needs no more training: only its summary, again.
        finished_before = bool(history) and (trainers[0].epoch >= config.epochs
                                             or any(t.diverged for t in trainers))
        if finished_before:
            metrics = history[-1]
        else:
            per_seed = [trainer.run_epoch() for trainer in trainers]
            metrics = {**_mean_metrics(per_seed), "trainable_params": trainable, "total_params": total}
            history.append(metrics)
        if any(trainer.diverged for trainer in trainers):
            status = "diverged"
        epoch = trainers[0].epoch
        if not finished_before and status == "completed" and epoch in prune_at and epoch < config.epochs:
            pruned_before += pruning.trial_rows(config, trainers, final=False)
        if status == "diverged" or trainers[0].epoch >= config.epochs:
            # Pruning rows (SCIENCE.md §2) only for a trained network: a diverged one has none.
            rows = pruned_before + pruning.trial_rows(config, trainers) if status == "completed" else []
            summary = summarize(config, trainers, history, status, device, data)
            summary.update(pruning=rows, wall_seconds=earlier_seconds + time.perf_counter() - started,
                           attempts=attempts, restored_from_epoch=restored_from_epoch)
        elapsed = earlier_seconds + time.perf_counter() - started
        # The state references live tensors: a report that keeps it must serialise it now.
        # The last report also carries the trial's summary (a study writes it as the trial ends).
        report(metrics, {"trainers": [t.state_dict() for t in trainers], "history": list(history),
                         "elapsed_seconds": elapsed, "attempts": attempts, "pruning": list(pruned_before),
                         "summary": summary})
        if config.inject_failure == "first_attempt" and checkpoint is None:
            # After the first report, so that the retry has a checkpoint to continue from.
            raise RuntimeError("injected failure (first attempt) for testing")
    return summary


def summarize(config: TrialConfig, trainers: list, history: list[dict], status: str,
              device: torch.device, data) -> dict:
    """The trial's summary: config, exact parameter counts, accuracies, spectra, environment."""
    trainable, total = count_parameters(trainers[0].model)
    final = history[-1] if history else {}
    return {
        "config": config.to_dict(),
        "status": status,
        "epochs_completed": len(history),
        "final_test_accuracy": final.get("test_accuracy", math.nan),
        "best_test_accuracy": max((h["test_accuracy"] for h in history
                                   if math.isfinite(h["test_loss"])), default=math.nan),
        "final_train_loss": final.get("train_loss", math.nan),
        "trainable_params": trainable,
        "total_params": total,
        "device": str(device),
        "host": socket.gethostname(),
        "data_source": getattr(data, "source", None),
        "data_fingerprint": getattr(data, "fingerprint", None),
        "history": history,
        "spectra": spectra(trainers[0].model),
        "weights": perceptron_weights(trainers[0].model),
        "versions": trial_versions(device),  # python, torch, numpy; CUDA and GPU name on a GPU
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


def _mean_metrics(per_seed: list[dict]) -> dict:
    """Mean over seeds of every metric (the epoch number is shared)."""
    mean = {"epoch": per_seed[0]["epoch"]}
    for key in EPOCH_METRICS:
        mean[key] = sum(m[key] for m in per_seed) / len(per_seed)
    return mean
