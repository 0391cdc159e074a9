"""Spectral pruning (SCIENCE.md §2): rank hidden nodes, remove the lowest for real, measure.

    from spectral_study.pruning import prune, spectral_post
    smaller = prune(trained, 0.5, "eigenvalue").model   # a new network, half the hidden nodes
    rows = spectral_post(trained, data, [0.5, 0.9])      # [{"protocol", "method", ...}, ...]

Node scores, one vector per hidden layer k (its nodes are the out-nodes of ``layers[k]``):

- ``eigenvalue``: |λ_out[i]| of ``layers[k]``, node i's receiving eigenvalue. With the receiving
  set, W[i, :] = −λ_out[i] φ[i, :]: it scales the node's whole incoming row (the paper's
  criterion). With both sets we still use λ_out[i]; λ_in[i] of ``layers[k+1]`` is ignored.
- ``eigen-norm``: |λ_out[i]| · ‖φ_{k+1}[:, i]‖₂ (NeurIPS 2023). Node i's eigenvector is column i
  of the NEXT transfer's Φ (its column in ``layers[k]``'s Φ is a unit vector, φ being below the
  diagonal), so the norm says how strongly the node feeds forward.
- ``connectivity``: Σ_j |W[i, j]|, the incoming row of the direct-space weight (any layer type).
- ``random``: U(0, 1) scores, the floor any criterion must beat.

One global percentile over all hidden nodes of all hidden layers (the paper's rule): the
⌊fraction · N⌋ lowest-scored of the N hidden nodes go, ties broken by (layer, node) order, except
that each layer's best node always stays (a layer with no node would cut the network). Output
nodes are never pruned. Scores are not rescaled per layer: with connectivity, a layer with a
larger fan-in has larger sums, as in a plain global percentile.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from spectral_study.config import TrialConfig
from spectral_study.models import Network, RestrictedLinear
from spectral_study.spectral import SpectralLinear
from spectral_study.train import TrainConfig, evaluate, train
from spectral_study.vocabulary import DENSE_MODES, PRUNING_METHODS, SPECTRAL_PRUNING_METHODS


@dataclass(frozen=True)
class PruneResult:
    """The smaller network and, per hidden layer, the original indices of the nodes it kept."""

    model: Network
    kept: tuple[tuple[int, ...], ...]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(len(k) for k in self.kept)

    @property
    def nodes_kept(self) -> int:
        return sum(self.widths)


def applicable_methods(model: Network) -> tuple[str, ...]:
    """The methods that can rank ``model``'s nodes (eigenvalue-based ones need spectral layers)."""
    if all(isinstance(layer, SpectralLinear) for layer in model.layers):
        return PRUNING_METHODS
    return tuple(m for m in PRUNING_METHODS if m not in SPECTRAL_PRUNING_METHODS)


@torch.no_grad()
def node_scores(model: Network, method: str, *, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """One float64 CPU score vector per hidden layer; higher means more important.
    ``generator`` draws the ``random`` scores (None: torch's global generator)."""
    if method not in PRUNING_METHODS:
        raise ValueError(f"unknown pruning method {method!r}; available: {', '.join(PRUNING_METHODS)}")
    layers = list(model.layers)
    if method in SPECTRAL_PRUNING_METHODS:
        for k, layer in enumerate(layers):
            if not isinstance(layer, SpectralLinear):
                raise ValueError(f"pruning method {method!r} ranks nodes by eigenvalues and needs a spectral "
                                 f"network, but layer {k} is {type(layer).__name__}; use 'connectivity' or "
                                 f"'random' for direct-space networks")
    scores = []
    for k, layer in enumerate(layers[:-1]):
        if method == "eigenvalue":
            score = layer.lambda_out.abs()
        elif method == "eigen-norm":
            score = layer.lambda_out.abs() * layers[k + 1].phi.norm(dim=0)
        elif method == "connectivity":
            score = layer.weight.abs().sum(1)
        else:
            score = torch.rand(layer.out_features, generator=generator, dtype=torch.float64)
        scores.append(score.detach().to("cpu", torch.float64))
    return scores


def prune(model: Network, fraction: float, method: str, *,
          generator: torch.Generator | None = None) -> PruneResult:
    """Remove the ``fraction`` of hidden nodes that ``method`` scores lowest (see the module
    docstring); returns a new, physically smaller network, ``model`` untouched."""
    return prune_by_scores(model, fraction, node_scores(model, method, generator=generator))


@torch.no_grad()
def prune_by_scores(model: Network, fraction: float, scores: list[torch.Tensor]) -> PruneResult:
    """`prune` with given scores. Scoring once and pruning at every fraction makes the removed
    sets nested (what goes at 50 % also goes at 90 %), which matters for ``random``."""
    if isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction!r}")
    if len(model.layers) < 2:
        raise ValueError("a network without a hidden layer has no node to prune")
    flat = torch.cat(scores)
    if not torch.isfinite(flat).all():
        raise ValueError("node scores are not all finite (did training diverge?)")
    layer_of = [k for k, s in enumerate(scores) for _ in range(len(s))]
    order = torch.argsort(flat, stable=True).tolist()  # stable: ties go in (layer, node) order
    best = set({layer_of[p]: p for p in order}.values())  # each layer's last node in the order
    n_remove = math.floor(fraction * len(flat) + 1e-9)  # 1e-9: 0.29 · 100 is 28.999…
    removed = set([p for p in order if p not in best][:n_remove])
    offsets = [0] + torch.tensor([len(s) for s in scores]).cumsum(0).tolist()
    kept = tuple(tuple(i for i in range(len(s)) if offsets[k] + i not in removed) for k, s in enumerate(scores))
    device = next(model.parameters()).device
    index = [torch.tensor(k, dtype=torch.long, device=device) for k in kept]
    layers = []
    for k, layer in enumerate(model.layers):
        rows = index[k] if k < len(index) else torch.arange(layer.out_features, device=device)
        cols = index[k - 1] if k > 0 else torch.arange(layer.in_features, device=device)
        layers.append(_slice(layer, rows, cols))
    spec = replace(model.spec, widths=tuple(len(k) for k in kept)) if model.spec is not None else None
    smaller = Network(layers, model.activation, spec).train(model.training)
    return PruneResult(smaller, kept)


def _slice(layer: nn.Module, rows: torch.Tensor, cols: torch.Tensor) -> nn.Module:
    """A new layer of the same kind holding ``layer``'s values at (rows, cols), same flags.

    New layers are built by their constructors (φ keeps its row-major layout) from a
    throwaway generator or on the meta device, so pruning never draws from torch's global RNG.
    """
    n_out, n_in, has_bias = len(rows), len(cols), layer.bias is not None
    if isinstance(layer, SpectralLinear):
        new = SpectralLinear(n_in, n_out, eigenvalues=layer.eigenvalues, bias=has_bias, dtype=layer.phi.dtype,
                             generator=torch.Generator().manual_seed(0)).to(layer.phi.device)
        new.phi.copy_(layer.phi[rows][:, cols])
        new.lambda_out.copy_(layer.lambda_out[rows])
        new.lambda_in.copy_(layer.lambda_in[cols])  # a parameter, or the fixed buffer
    elif isinstance(layer, RestrictedLinear):
        # Stays restricted: the surviving free weights stay free, the frozen ones frozen.
        free = torch.zeros(layer.frozen_weight.numel(), dtype=torch.bool, device=rows.device)
        free[layer.free_index] = True
        free = free.view_as(layer.frozen_weight)[rows][:, cols].reshape(-1)
        new = RestrictedLinear(n_in, n_out, 0, bias=has_bias, generator=torch.Generator().manual_seed(0))
        new.to(device=rows.device, dtype=layer.frozen_weight.dtype)
        new.frozen_weight = layer.frozen_weight[rows][:, cols].clone()
        new.free_index = free.nonzero().view(-1)
        new.free_weight = nn.Parameter(layer.weight[rows][:, cols].reshape(-1)[new.free_index].clone())
    elif isinstance(layer, nn.Linear):
        new = nn.Linear(n_in, n_out, bias=has_bias, device="meta", dtype=layer.weight.dtype)
        new = new.to_empty(device=rows.device)
        new.weight.copy_(layer.weight[rows][:, cols])
    else:
        raise TypeError(f"cannot prune a {type(layer).__name__}; "
                        "expected SpectralLinear, RestrictedLinear or nn.Linear")
    if has_bias:
        new.bias.copy_(layer.bias[rows])
    for name, parameter in layer.named_parameters():
        getattr(new, name).requires_grad_(parameter.requires_grad)
    return new


def evaluate_pruning(model: Network, data, fractions, methods, protocol: str, *,
                     generator: torch.Generator | None = None, retrain=None) -> list[dict]:
    """Prune ``model`` at every fraction by every method and test each smaller network.

    Scores are computed once per method on ``model`` (so ``random`` removes nested subsets).
    ``retrain(pruned_model)``, if given, trains the smaller network before it is tested.
    Returns rows {"protocol", "method", "fraction", "nodes_kept", "test_accuracy"}.
    """
    rows = []
    for method in methods:
        scores = node_scores(model, method, generator=generator)
        for fraction in fractions:
            result = prune_by_scores(model, fraction, scores)
            if retrain is not None:
                retrain(result.model)
            _, accuracy = evaluate(result.model, data.x_test, data.y_test)
            rows.append({"protocol": protocol, "method": method, "fraction": float(fraction),
                         "nodes_kept": result.nodes_kept, "test_accuracy": accuracy})
    return rows


def direct(model: Network, data, fractions, *, methods=("connectivity",), generator=None) -> list[dict]:
    """Protocol 1, the direct-space baseline: a trained dense ``model``, no retraining."""
    return evaluate_pruning(model, data, fractions, methods, "direct", generator=generator)


def spectral_post(model: Network, data, fractions, *, methods=("eigenvalue",), generator=None) -> list[dict]:
    """Protocol 2: a ``model`` trained in full spectral mode (λ and φ), no retraining."""
    return evaluate_pruning(model, data, fractions, methods, "spectral-post", generator=generator)


def spectral_pre(model: Network, data, fractions, config: TrainConfig, *, retrain_epochs: int,
                 methods=("eigenvalue",), generator=None) -> list[dict]:
    """Protocol 3, the pre-training filter: ``model`` trained on eigenvalues only, so its φ is
    still the initial φ; each smaller network keeps the survivors' trained λ and initial φ and
    is retrained ``retrain_epochs`` epochs (0: not at all) with every parameter free (a fixed
    λ_in is a buffer and stays fixed), under ``config``'s optimiser, learning rates and seed."""
    if any(getattr(layer, "phi", None) is None or layer.phi.requires_grad for layer in model.layers):
        raise ValueError("spectral-pre needs a spectral network trained with φ frozen (mode spectral-eigvals)")

    def retrain(pruned: Network) -> None:
        pruned.requires_grad_(True)
        if retrain_epochs > 0:
            train(pruned, data, replace(config, epochs=retrain_epochs))

    return evaluate_pruning(model, data, fractions, methods, "spectral-pre", generator=generator, retrain=retrain)


def member_rows(config: TrialConfig, model: Network, data, train_config: TrainConfig, epoch: int, *,
                final: bool = True) -> list[dict]:
    """`run_trial`'s pruning rows for one seed's network as it is now, by mode (dense → direct,
    spectral-full and -eigvecs → spectral-post, spectral-eigvals → spectral-eigvals-post and, when
    ``final``, the retraining pre-training filter spectral-pre), with the requested methods that
    apply; each row carries ``epoch``, the epoch the network has reached. ``random`` scores are
    drawn from the seed of ``train_config``. No hidden layer: no rows."""
    spec = config.pruning
    if spec is None or not config.widths:
        return []
    fractions = spec.fractions
    methods = [m for m in spec.methods if m in applicable_methods(model)]

    def seeded(seed: int = train_config.seed) -> torch.Generator:  # same random scores per protocol
        return torch.Generator().manual_seed(seed)

    if config.mode in DENSE_MODES:
        rows = direct(model, data, fractions, methods=methods, generator=seeded())
    elif config.mode == "spectral-eigvals":
        rows = evaluate_pruning(model, data, fractions, methods, "spectral-eigvals-post", generator=seeded())
        if final:
            rows += spectral_pre(model, data, spec.fractions_to_retrain, train_config,
                                 retrain_epochs=spec.retrain_epochs, generator=seeded(),
                                 methods=[m for m in methods if m in spec.methods_to_retrain])
    else:
        rows = spectral_post(model, data, fractions, methods=methods, generator=seeded())
    return [{**row, "epoch": epoch} for row in rows]


def mean_rows(per_member: list[list[dict]]) -> list[dict]:
    """One row per (protocol, method, fraction) with the members' mean test accuracy: the
    pruning rows of a trial that reports the mean of its seeds (``repeats``)."""
    return [{**rows[0], "test_accuracy": sum(r["test_accuracy"] for r in rows) / len(rows)}
            for rows in zip(*per_member)]
