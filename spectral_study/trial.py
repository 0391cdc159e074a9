"""`run_trial`: one trial from a `TrialConfig` (or its dict) — the unit a study schedules.

    summary = run_trial({"dataset": "synthetic", "mode": "spectral-eigvals", "widths": [64]})

It loads the data, builds the model(s), trains, prunes, and returns a summary. It never imports
Ray: progress leaves through ``report(metrics, state)``, and a retried trial passes back the
last ``state`` it reported as ``checkpoint`` to continue where it stopped (`spectral_study.
checkpoint` writes and reads that state on disk).

With ``repeats > 1`` the trial trains seeds ``seed, seed+1, …`` in lockstep, each a member of
a `Trainer`: one stacked model (batched products) or one model after another;
``member_training`` chooses, `member_groups` decides (stacked on a GPU, and on a CPU for layers
up to 640Ki weights, as measured). Either way a seed starts, draws its batches and trains exactly
as it would alone, and its checkpoint state is the same. Without ``pack_seeds`` the trial is one
result, the seeds' mean each epoch (an Optuna
objective averaged over seeds that ASHA can still stop early), ended when any seed diverges;
with ``pack_seeds`` (a grid packing a cell's seeds into one trial) each seed is its own result:
``summary["members"]`` holds one summary per seed, the one its trial alone would return.

Checkpoints: ``state`` goes out with every ``config.checkpoint_every``-th epoch's report and
with the last one (None with the others), so a retry repeats at most checkpoint_every − 1 epochs.
"""
from __future__ import annotations

import math
import socket
import time
from dataclasses import dataclass, field

import torch

from spectral_study import pruning
from spectral_study.config import TrialConfig, TrialConfigError
from spectral_study.data import load_dataset
from spectral_study.models import ModelSpec, SpectralLinear, build_model, count_parameters, stack_network
from spectral_study.provenance import trial_versions
from spectral_study.train import TrainConfig, Trainer, no_report
from spectral_study.vocabulary import EPOCH_METRICS

__all__ = ["TrialConfig", "TrialConfigError", "member_groups", "pick_device", "run_trial"]


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
    torch.manual_seed(config.seed)
    members = _members(config, model_spec, data, device)
    trainable, total = count_parameters(members[0].model())  # reported with every epoch
    separate = config.pack_seeds  # each seed its own result (else: one result, their mean)
    history: list[dict] = []
    # Time and attempts add up over retries and resumes (the checkpoint carries them), and so do
    # the pruning rows of earlier epochs (pruning.at_epochs).
    earlier_seconds, attempts, pruned_before = 0.0, 1, []
    if checkpoint is not None:
        _restore(members, checkpoint, config)
        history = list(checkpoint["history"])
        earlier_seconds = float(checkpoint.get("elapsed_seconds", 0.0))
        attempts = int(checkpoint.get("attempts", 1)) + 1
        pruned_before = list(checkpoint.get("pruning", []))
    prune_at = set(config.pruning.at_epochs or ()) if config.pruning is not None else set()
    restored_from_epoch = len(history)
    summary, checkpointed = None, False
    while summary is None:
        # A checkpoint taken at the last epoch, or after the trial diverged (the driver died
        # before it saw the trial end), needs no more training: only its summary, again.
        finished_before = bool(history) and _done(members, separate)
        if finished_before:
            metrics = history[-1]
        else:
            running = [m for m in members if m.status is None]
            per_member = _run_epoch(running)
            metrics = {**_mean_metrics(per_member), "trainable_params": trainable, "total_params": total}
            history.append(metrics)
            epoch = metrics["epoch"]
            for m, own in zip(running, per_member):
                m.history.append({**own, "trainable_params": trainable, "total_params": total})
                if m.trainer.diverged[m.index]:
                    m.status = "diverged"
                elif epoch >= config.epochs:
                    m.status = "completed"
            _freeze_stopped(members)
            stopped = _done(members, separate)
            if separate:  # each seed's own rows, pruned while its network is as this epoch left it
                for m in running:
                    if m.status == "completed":
                        m.pruning += pruning.member_rows(config, m.model(), data, m.train_config, epoch)
                    elif m.status is None and epoch in prune_at:
                        m.pruning += pruning.member_rows(config, m.model(), data, m.train_config, epoch,
                                                         final=False)
            elif not stopped and epoch in prune_at:
                pruned_before += pruning.mean_rows([
                    pruning.member_rows(config, m.model(), data, m.train_config, epoch, final=False)
                    for m in members])
        if _done(members, separate):
            elapsed = earlier_seconds + time.perf_counter() - started
            facts = {"wall_seconds": elapsed, "attempts": attempts, "restored_from_epoch": restored_from_epoch}
            summary = _summary(config, members, history, separate, pruned_before, device, data, facts)
        elapsed = earlier_seconds + time.perf_counter() - started
        # The state references live tensors: a report that keeps it must serialise it now.
        # The last report also carries the trial's summary (a study writes it as the trial ends).
        state = None
        if summary is not None or metrics["epoch"] % config.checkpoint_every == 0:
            state = {"trainers": [m.state() for m in members], "history": list(history),
                     "elapsed_seconds": elapsed, "attempts": attempts, "pruning": list(pruned_before),
                     "summary": summary}
            if separate:
                state["members"] = [{"history": list(m.history), "pruning": list(m.pruning)} for m in members]
        report(metrics, state)
        checkpointed = checkpointed or state is not None
        if config.inject_failure == "first_attempt" and checkpoint is None and checkpointed:
            # After the first report with a checkpoint, so that the retry continues from it.
            raise RuntimeError("injected failure (first attempt) for testing")
    return summary


# auto on a CPU stacks the seeds while every layer of a seed has at most this many weights:
# benchmarks/packing.py, K = 8 seeds of 784-N-10, 1 thread, with the layer's C++ op (it cut every
# separate trial's per-step Python, so 8 trials gained 8 times what one stacked model did). One
# stacked model took 0.42-0.49x the time of 8 separate trials at N = 16, 0.77-0.89x at 256,
# 0.80x at 384, 0.84x at 512, 0.95x at 768 (602k weights), but 1.17-1.27x at 1024 (803k) and
# 1.19-1.30x at 2048 (three runs, one more for 384-768 and one of 9 rounds at 1024): the limit
# sits between 768 and 1024. (Before the op, stacking still paid at 1024: 0.98-1.03x.)
CPU_STACK_MAX_WEIGHTS = 640 * 1024


def member_groups(config: TrialConfig, device: torch.device, sizes: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """The trial's seeds grouped by model: a group of several is one stacked model (batched
    products), a group of one an ordinary network. ``member_training: auto`` stacks on a GPU,
    where one batched step replaces K small ones (kernel launches), and on a CPU while the
    network's largest layer (``sizes``: its layer sizes) has at most `CPU_STACK_MAX_WEIGHTS`
    weights: there one Python loop for K seeds saves more than the batched products cost, until
    the stacked tensors outgrow the caches."""
    strategy = config.member_training
    if strategy == "auto":
        largest = max((a * b for a, b in zip(sizes, sizes[1:])), default=0)
        strategy = "batched" if device.type == "cuda" or largest <= CPU_STACK_MAX_WEIGHTS else "sequential"
    if strategy == "batched" and config.repeats > 1:
        return [config.seeds]
    return [(seed,) for seed in config.seeds]


@dataclass(eq=False)
class _Member:
    """One seed of a trial: its own config, where it trains, and (packed trials) its own results."""

    config: TrialConfig  # the seed's own config (`TrialConfig.members`)
    trainer: Trainer
    index: int  # its place among the trainer's members
    history: list[dict] = field(default_factory=list)
    pruning: list[dict] = field(default_factory=list)
    status: str | None = None  # None while it trains, then "completed" or "diverged"
    frozen: tuple | None = None  # (model, state) when it stopped while its stacked model trains on

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_config(self.config)

    def model(self):
        return self.frozen[0] if self.frozen is not None else self.trainer.member_model(self.index)

    def state(self) -> dict:
        return self.frozen[1] if self.frozen is not None else self.trainer.member_state(self.index)


def _freeze_stopped(members: list[_Member]) -> None:
    """A stopped member whose stacked model trains on (with its other members) is kept as it is
    now: its network for its summary and pruning, its state for checkpoints."""
    for m in members:
        if m.status is not None and m.frozen is None and any(
                o.status is None for o in members if o.trainer is m.trainer):
            m.frozen = (m.trainer.member_model(m.index), _cloned(m.trainer.member_state(m.index)))


def _members(config: TrialConfig, model_spec: ModelSpec, data, device: torch.device) -> list[_Member]:
    """Every seed of the trial as a member of the trainer of its group, in seed order."""
    own = dict(zip(config.seeds, config.members()))
    members = []
    for seeds in member_groups(config, device, model_spec.sizes):
        networks = [build_model(model_spec, seed=seed) for seed in seeds]  # each from its own seed
        model = networks[0] if len(networks) == 1 else stack_network(networks)
        trainer = Trainer(model.to(device), data, TrainConfig.from_config(config, seed=seeds[0]), seeds=seeds)
        members += [_Member(own[seed], trainer, k) for k, seed in enumerate(seeds)]
    return sorted(members, key=lambda m: m.config.seed)


def _restore(members: list[_Member], checkpoint: dict, config: TrialConfig) -> None:
    """Every member from its own saved state, whichever way it trained when it was saved."""
    states = checkpoint["trainers"]
    if len(states) != len(members):
        raise ValueError(f"the checkpoint holds {len(states)} seeds, the trial has {len(members)}")
    for trainer in dict.fromkeys(m.trainer for m in members):
        trainer.load_member_states([state for m, state in zip(members, states) if m.trainer is trainer])
    saved = checkpoint.get("members") or [{}] * len(members)
    for m, state, own in zip(members, states, saved):
        m.history, m.pruning = list(own.get("history", [])), list(own.get("pruning", []))
        if state.get("diverged"):
            m.status = "diverged"
        elif state["epoch"] >= config.epochs:
            m.status = "completed"
    _freeze_stopped(members)


def _done(members: list[_Member], separate: bool) -> bool:
    """Separate results end one by one; a mean of seeds ends with its first diverged seed."""
    if separate:
        return all(m.status is not None for m in members)
    return any(m.status == "diverged" for m in members) or all(m.status is not None for m in members)


def _run_epoch(running: list[_Member]) -> list[dict]:
    """One epoch of every trainer that has a running member; each running member's metrics."""
    metrics = {}
    for trainer in dict.fromkeys(m.trainer for m in running):
        metrics[trainer] = trainer.run_epoch()
    return [metrics[m.trainer][m.index] for m in running]


def _summary(config: TrialConfig, members: list[_Member], history: list[dict], separate: bool,
             pruned_before: list[dict], device: torch.device, data, facts: dict) -> dict:
    if not separate:
        status = "diverged" if any(m.status == "diverged" for m in members) else "completed"
        # Pruning rows (SCIENCE.md §2) only for a trained network: a diverged one has none.
        rows = pruned_before + pruning.mean_rows([
            pruning.member_rows(config, m.model(), data, m.train_config, history[-1]["epoch"]) for m in members
        ]) if status == "completed" else []
        return {**summarize(config, members[0].model(), history, status, device, data), "pruning": rows, **facts}
    own = [{**summarize(m.config, m.model(), m.history, m.status, device, data),
            "pruning": m.pruning if m.status == "completed" else [], **facts} for m in members]
    status = "completed" if any(m.status == "completed" for m in members) else "diverged"
    return {**summarize(config, None, history, status, device, data), "pruning": [], **facts, "members": own}


def _cloned(value):
    """``value`` with every tensor copied (a state that must not follow the live model)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _cloned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cloned(v) for v in value)
    return value


def summarize(config: TrialConfig, model, history: list[dict], status: str,
              device: torch.device, data) -> dict:
    """The trial's summary: config, exact parameter counts, accuracies, spectra, environment.
    ``model``: the trained network whose spectra and weights it keeps (None: none kept)."""
    trainable, total = (count_parameters(model) if model is not None
                        else (history[-1]["trainable_params"], history[-1]["total_params"]))
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
        "spectra": spectra(model) if model is not None else [],
        "weights": perceptron_weights(model) if model is not None else [],
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
