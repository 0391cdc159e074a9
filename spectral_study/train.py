"""The training loop: in-memory tensors, seeded, NaN-safe, one `report` call per epoch.

    from spectral_study import build_model, load_dataset, train, TrainConfig
    data = load_dataset("synthetic")
    result = train(build_model({"mode": "spectral-eigvals", "widths": [64]}), data,
                   TrainConfig(epochs=3, lr_eigvals=0.03))

Batches are drawn by a permutation of indices on the model's device (no DataLoader: the data
sets studied here fit in memory, and a DataLoader's workers would cost more than the step).
`Trainer` runs one epoch at a time so that `run_trial` can step several seeds in lockstep.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from spectral_study.checks import Invalid
from spectral_study.config import TrialConfig, field_check

Report = Callable[[dict, dict | None], None]


def no_report(metrics: dict, state: dict | None = None) -> None:
    """The default `report`: does nothing."""


@dataclass(frozen=True)
class TrainConfig:
    """How `train` trains. Fields named like `TrialConfig`'s take its default and its check."""

    optimizer: str = TrialConfig.optimizer
    lr: float = TrialConfig.lr
    # Eigenvalues want a larger step than weights (SCIENCE.md); None means "same as lr".
    lr_eigvals: float | None = TrialConfig.lr_eigvals
    batch_size: int = TrialConfig.batch_size
    epochs: int = TrialConfig.epochs
    seed: int = TrialConfig.seed
    adam_eps: float | None = TrialConfig.adam_eps
    momentum: float = 0.9  # SGD only
    eval_batch_size: int = 8192  # bounds evaluation memory, not a hyperparameter

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = field_check(f.name)
            if check is not None:
                try:
                    object.__setattr__(self, f.name, check(getattr(self, f.name)))
                except Invalid as error:
                    raise ValueError(str(error.within(f.name))) from None
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be a positive integer, got {self.eval_batch_size!r}")

    @classmethod
    def from_config(cls, config: TrialConfig, *, seed: int | None = None) -> TrainConfig:
        """The training settings of a trial (``seed``: one of its seeds, default its first)."""
        shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        return cls(**{**shared, "seed": config.seed if seed is None else seed})


@dataclass
class TrainResult:
    status: str  # "completed" | "diverged"
    history: list[dict] = field(default_factory=list)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """One parameter group for eigenvalues (lr_eigvals), one for everything else (lr)."""
    eigvals = [p for p in getattr(model, "eigenvalue_parameters", list)() if p.requires_grad]
    eigval_ids = {id(p) for p in eigvals}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in eigval_ids]
    groups = [g for g in ({"params": others, "lr": config.lr},
                          {"params": eigvals, "lr": config.lr_eigvals or config.lr}) if g["params"]]
    eps = {} if config.adam_eps is None else {"eps": config.adam_eps}
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, **eps)
    if config.optimizer == "adamax":
        return torch.optim.Adamax(groups, **eps)
    return torch.optim.SGD(groups, momentum=config.momentum)


class Trainer:
    """Trains one model on one data set, an epoch per `run_epoch` call."""

    def __init__(self, model: nn.Module, data, config: TrainConfig) -> None:
        self.model, self.data, self.config = model, data, config
        self.device = next(model.parameters()).device
        self.optimizer = make_optimizer(model, config)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.epoch = 0
        self.best_test_accuracy = 0.0
        self.diverged = False

    def run_epoch(self) -> dict:
        """Train one epoch, evaluate on the test set, return the epoch's metrics."""
        start = time.perf_counter()
        x, y = self.data.x_train, self.data.y_train
        n = x.shape[0]
        order = torch.randperm(n, device=self.device, generator=self.generator)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.model.train()
        for begin in range(0, n, self.config.batch_size):
            batch = order[begin:begin + self.config.batch_size]
            logits = self.model(x[batch])
            loss = F.cross_entropy(logits, y[batch])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            # Accumulated on the device: no host sync inside the loop.
            loss_sum += loss.detach() * batch.numel()
            correct += (logits.detach().argmax(1) == y[batch]).sum()
        test_loss, test_accuracy = evaluate(self.model, self.data.x_test, self.data.y_test,
                                            self.config.eval_batch_size)
        self.epoch += 1
        train_loss = loss_sum.item() / n  # one host sync per epoch, intended
        self.diverged = not (math.isfinite(train_loss) and math.isfinite(test_loss))
        if not self.diverged:
            self.best_test_accuracy = max(self.best_test_accuracy, test_accuracy)
        return {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "train_accuracy": correct.item() / n,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "best_test_accuracy": self.best_test_accuracy,
            "epoch_seconds": time.perf_counter() - start,
        }

    def state_dict(self) -> dict:
        # `diverged` travels with the weights: a trial restored after it diverged must not
        # forget it and report NaN accuracies as "completed".
        return {"epoch": self.epoch, "best_test_accuracy": self.best_test_accuracy,
                "diverged": self.diverged,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.best_test_accuracy = state["best_test_accuracy"]
        self.diverged = bool(state.get("diverged", False))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8192) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``x, y``."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for begin in range(0, x.shape[0], batch_size):
        logits = model(x[begin:begin + batch_size])
        target = y[begin:begin + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return loss_sum.item() / x.shape[0], correct.item() / x.shape[0]


def train(model: nn.Module, data, config: TrainConfig | dict, report: Report | None = None) -> TrainResult:
    """Train ``model`` on ``data`` (a `spectral_study.data.Dataset` on the model's device).

    ``report(metrics, state)`` is called once per epoch; ``state`` is the trainer's
    checkpointable state. A NaN/inf loss ends training with status ``"diverged"`` and the
    metrics so far (a diverged trial is a result, not a crash).
    """
    if isinstance(config, dict):
        config = TrainConfig(**config)
    report = report or no_report
    torch.manual_seed(config.seed)
    trainer = Trainer(model, data, config)
    result = TrainResult(status="completed")
    while trainer.epoch < config.epochs:
        metrics = trainer.run_epoch()
        result.history.append(metrics)
        report(metrics, trainer.state_dict())
        if trainer.diverged:
            result.status = "diverged"
            break
    return result


