"""The training loop: in-memory tensors, seeded, NaN-safe, one `report` call per epoch.

    from spectral_study import build_model, load_dataset, train, TrainConfig
    data = load_dataset("synthetic")
    result = train(build_model({"mode": "spectral-eigvals", "widths": [64]}), data,
                   TrainConfig(epochs=3, lr_eigvals=0.03))

Batches are drawn by a permutation of indices (no DataLoader: the data sets studied here fit in
memory, and a DataLoader's workers would cost more than the step). `Trainer` runs one epoch at a
time, for one network or for several seeds' networks stacked into one (members), so that
`run_trial` can step a trial's seeds in lockstep either way.
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
from spectral_study.models import member_network, member_state_dict, stack_state_dicts

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
    """Trains one model, an epoch per `run_epoch` call: an ordinary network (one member, seed
    ``config.seed``) or K networks stacked into one (`spectral_study.models.stack_network`), one
    per seed of ``seeds``.

    Member k draws its batch order from its own generator seeded with ``seeds[k]`` and has its
    own loss, gradient and optimiser state (Adam, Adamax and SGD act element by element), so it
    trains exactly as it would alone; with K = 1 this is the ordinary loop. Batch orders are
    drawn on the CPU whatever the device, so a seed sees the same batches on a CPU and a GPU and
    a checkpoint's generator state restores on either.
    """

    def __init__(self, model: nn.Module, data, config: TrainConfig, *, seeds=None) -> None:
        self.model, self.data, self.config = model, data, config
        self.seeds = tuple(seeds) if seeds is not None else (config.seed,)
        self.members = len(self.seeds)
        self.stacked = getattr(model, "members", None) is not None
        if (model.members if self.stacked else 1) != self.members:
            raise ValueError(f"{self.members} seeds for a model of {getattr(model, 'members', None) or 1} member(s)")
        self.device = next(model.parameters()).device
        self.optimizer = make_optimizer(model, config)
        self.generators = [torch.Generator().manual_seed(seed) for seed in self.seeds]
        self.epoch = 0
        self.best_test_accuracy = [0.0] * self.members
        self.diverged = [False] * self.members

    def run_epoch(self) -> list[dict]:
        """Train one epoch, evaluate on the test set; the epoch's metrics, one dict per member."""
        start = time.perf_counter()
        x, y = self.data.x_train, self.data.y_train
        n, k = x.shape[0], self.members
        order = torch.stack([torch.randperm(n, generator=g) for g in self.generators]).to(self.device)
        loss_sum = torch.zeros(k, device=self.device)
        correct = torch.zeros(k, device=self.device, dtype=torch.long)
        self.model.train()
        for begin in range(0, n, self.config.batch_size):
            batch = order[:, begin:begin + self.config.batch_size]  # row k: member k's batch
            xb, yb = x[batch], y[batch]
            logits = self.model(xb) if self.stacked else self.model(xb[0]).unsqueeze(0)
            losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(k, -1).mean(1)
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # independent members: each gets the gradient of its own loss
            self.optimizer.step()
            # Accumulated on the device: no host sync inside the loop.
            loss_sum += losses.detach() * batch.shape[1]
            correct += (logits.detach().argmax(-1) == yb).sum(-1)
        tested = evaluate_members(self.model, self.data.x_test, self.data.y_test, k, self.config.eval_batch_size)
        self.epoch += 1
        seconds = time.perf_counter() - start
        metrics = []
        # One host sync per epoch, intended.
        for m, (loss, right, (test_loss, test_accuracy)) in enumerate(zip(loss_sum.tolist(), correct.tolist(), tested)):
            train_loss = loss / n
            self.diverged[m] = not (math.isfinite(train_loss) and math.isfinite(test_loss))
            if not self.diverged[m]:
                self.best_test_accuracy[m] = max(self.best_test_accuracy[m], test_accuracy)
            metrics.append({"epoch": self.epoch, "train_loss": train_loss, "train_accuracy": right / n,
                            "test_loss": test_loss, "test_accuracy": test_accuracy,
                            "best_test_accuracy": self.best_test_accuracy[m], "epoch_seconds": seconds})
        return metrics

    def member_model(self, k: int) -> nn.Module:
        """Member ``k`` as an ordinary network (the model itself when it is not stacked)."""
        return member_network(self.model, k) if self.stacked else self.model

    def member_state(self, k: int) -> dict:
        """Member ``k``'s checkpointable state, the same whether it trains alone or stacked (so a
        checkpoint restores under either). It references live tensors."""
        # `diverged` travels with the weights: a trial restored after it diverged must not
        # forget it and report NaN accuracies as "completed".
        optimizer = self.optimizer.state_dict()
        if self.stacked:
            optimizer = {"state": {i: {key: _member_value(v, k) for key, v in s.items()}
                                   for i, s in optimizer["state"].items()},
                         "param_groups": optimizer["param_groups"]}
        return {"epoch": self.epoch, "best_test_accuracy": self.best_test_accuracy[k],
                "diverged": self.diverged[k], "model": member_state_dict(self.model, k) if self.stacked
                else self.model.state_dict(), "optimizer": optimizer, "generator": self.generators[k].get_state()}

    def load_member_states(self, states: list[dict]) -> None:
        """Restore every member from `member_state` dicts (saved stacked or alone)."""
        if len(states) != self.members:
            raise ValueError(f"{len(states)} member states for {self.members} members")
        latest = max(range(len(states)), key=lambda m: states[m]["epoch"])  # its optimiser step counts
        self.epoch = states[latest]["epoch"]
        self.best_test_accuracy = [s["best_test_accuracy"] for s in states]
        self.diverged = [bool(s.get("diverged", False)) for s in states]
        if self.stacked:
            self.model.load_state_dict(stack_state_dicts([s["model"] for s in states]))
            template = states[latest]["optimizer"]
            self.optimizer.load_state_dict({
                "state": {i: {key: torch.stack([s["optimizer"]["state"][i][key] for s in states])
                              if _per_member(v) else _member_value(v, 0) for key, v in st.items()}
                          for i, st in template["state"].items()},
                "param_groups": template["param_groups"]})
        else:
            self.model.load_state_dict(states[0]["model"])
            self.optimizer.load_state_dict(states[0]["optimizer"])
        for generator, state in zip(self.generators, states):
            generator.set_state(state["generator"])

    def state_dict(self) -> dict:
        """The state of a one-member trainer (`member_state` of member 0)."""
        if self.members != 1:
            raise ValueError("state_dict() is for one member; use member_state(k)")
        return self.member_state(0)

    def load_state_dict(self, state: dict) -> None:
        self.load_member_states([state])


def _per_member(value) -> bool:
    """Optimiser state that has one value per parameter element (Adam's moments, SGD's
    momentum) has the member dimension; a step count (a 0-d tensor or a number) does not."""
    return isinstance(value, torch.Tensor) and value.dim() > 0


def _member_value(value, k: int):
    """Member ``k``'s share of one optimiser state value. A shared value (the step count) is
    copied: members restored one by one must not step one counter together."""
    if _per_member(value):
        return value[k]
    return value.clone() if isinstance(value, torch.Tensor) else value


@torch.no_grad()
def evaluate_members(model: nn.Module, x: torch.Tensor, y: torch.Tensor, members: int = 1,
                     batch_size: int = 8192) -> list[tuple[float, float]]:
    """(mean cross-entropy, accuracy) on ``x, y`` of each member of ``model`` (an ordinary network
    is one member; a stacked one sees every test example, ``batch_size // members`` at a time)."""
    model.eval()
    stacked = getattr(model, "members", None) is not None
    chunk = max(1, batch_size // members)
    loss_sum = torch.zeros(members, device=x.device)
    correct = torch.zeros(members, device=x.device, dtype=torch.long)
    for begin in range(0, x.shape[0], chunk):
        xb, target = x[begin:begin + chunk], y[begin:begin + chunk]
        logits = model(xb.expand(members, -1, -1)) if stacked else model(xb).unsqueeze(0)
        losses = F.cross_entropy(logits.flatten(0, 1), target.repeat(members), reduction="none")
        loss_sum += losses.view(members, -1).sum(1)
        correct += (logits.argmax(-1) == target).sum(-1)
    n = x.shape[0]
    return [(loss / n, right / n) for loss, right in zip(loss_sum.tolist(), correct.tolist())]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8192) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of an ordinary ``model`` on ``x, y``."""
    return evaluate_members(model, x, y, 1, batch_size)[0]


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
        [metrics] = trainer.run_epoch()
        result.history.append(metrics)
        report(metrics, trainer.state_dict())
        if trainer.diverged[0]:
            result.status = "diverged"
            break
    return result


