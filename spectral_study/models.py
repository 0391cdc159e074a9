"""Networks for every learning mode, built from a plain spec, with exact parameter counts.

| mode               | free per layer (besides bias)                                  |
| ------------------ | -------------------------------------------------------------- |
| spectral-eigvals   | eigenvalues only (φ frozen at its random init)                  |
| spectral-eigvecs   | φ only (eigenvalues frozen)                                     |
| spectral-full      | φ and eigenvalues                                               |
| dense              | every weight (standard training in direct space)                |
| dense-restricted   | a random subset of the weights, as many as spectral-eigvals has |

Biases, when on, are trained in every mode (SCIENCE.md: they count as free parameters).

Initialisation defaults and why:
- spectral modes: φ ~ U(−0.2, 0.2) and λ ~ U(−0.5, 0.5), the authors' 2020–21 code; the
  resulting W has a spread close to Glorot's for the widths studied here, so spectral and dense
  networks start on an equal footing. ``phi_init="glorot"`` / ``eigval_init="ones"`` give the
  authors' 2022 variant (initial W = −φ).
- dense modes: ``nn.Linear``'s default (U(±1/√in)), the standard a reader compares against;
  dense-restricted keeps that init for its frozen weights. ``dense_init="glorot"`` is Keras'
  default (Glorot-uniform weights, zero biases), what the authors' dense baselines used.

Members: `stack_network` turns K networks of one spec (one per seed) into one network whose every
parameter and buffer has a leading member dimension; it takes K × batch × features inputs and
trains the K networks at once with batched matrix products (a trial's seeds on a GPU).
`member_network` takes member k back out as an ordinary network. Each member keeps exactly the
values its seed gave it, and its state dict is the ordinary network's (`member_state_dict`).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spectral_study.checks import Invalid
from spectral_study.config import TrialConfig, field_check
from spectral_study.spectral import SpectralLinear
from spectral_study.vocabulary import SPECTRAL_MODES

_ACTIVATION_FUNCTIONS = {"linear": None, "relu": F.relu, "tanh": torch.tanh, "elu": F.elu}


@dataclass(frozen=True)
class ModelSpec:
    """What `build_model` needs. Fields named like `TrialConfig`'s take its default and its
    check (a bad value raises ValueError naming the field); the rest describe the data set and
    the authors' initialisation scales."""

    mode: str
    in_features: int = 784
    n_classes: int = 10
    widths: tuple[int, ...] = ()
    activation: str = TrialConfig.activation
    eigenvalues: str = TrialConfig.eigenvalues
    bias: bool = TrialConfig.bias
    phi_init: str = TrialConfig.phi_init
    phi_scale: float = 0.2
    eigval_init: str = TrialConfig.eigval_init
    eigval_scale: float = 0.5
    dense_init: str = TrialConfig.dense_init
    subset_seed: int | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = field_check(f.name)
            if check is not None:
                try:
                    object.__setattr__(self, f.name, check(getattr(self, f.name)))
                except Invalid as error:
                    raise ValueError(str(error.within(f.name))) from None

    @classmethod
    def from_config(cls, config: TrialConfig, *, in_features: int, n_classes: int) -> ModelSpec:
        """The network of a trial: every field of ``config`` this spec shares, by name."""
        shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        return cls(**shared, in_features=in_features, n_classes=n_classes)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.in_features, *self.widths, self.n_classes)


class RestrictedLinear(nn.Module):
    """A dense layer that trains only ``n_free`` randomly chosen weights.

    The frozen weights live in a buffer and the free ones in a separate parameter scattered
    into it on each forward pass, so the frozen entries stay bit-for-bit at their initial
    values whatever the optimiser does (weight decay, momentum), and the trainable count is
    exact by construction.
    """

    def __init__(self, in_features: int, out_features: int, n_free: int, *, bias: bool = True,
                 init: str = "uniform", generator: torch.Generator | None = None,
                 subset_generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0 <= n_free <= in_features * out_features:
            raise ValueError(f"n_free must be in [0, {in_features * out_features}], got {n_free}")
        self.in_features, self.out_features = in_features, out_features
        dense = dense_layer(in_features, out_features, bias=bias, init=init, generator=generator)
        chosen = torch.randperm(in_features * out_features, generator=subset_generator or generator)[:n_free]
        chosen, _ = chosen.sort()
        self.members: int | None = None  # K when stacked (`stack_network`)
        self.register_buffer("frozen_weight", dense.weight.detach().clone())
        self.register_buffer("free_index", chosen)
        self.free_weight = nn.Parameter(self.frozen_weight.view(-1)[chosen].clone())
        self.bias = dense.bias

    @property
    def weight(self) -> torch.Tensor:
        flat = self.frozen_weight.flatten(-2)
        return flat.scatter(-1, self.free_index, self.free_weight).view_as(self.frozen_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.weight, self.bias, self.members)

    def parameter_counts(self) -> tuple[int, int]:
        n_bias = 0 if self.bias is None else self.bias.numel()
        return self.free_weight.numel() + n_bias, self.frozen_weight.numel() + n_bias


class StackedLinear(nn.Module):
    """K dense layers as one (`stack_network`'s counterpart of nn.Linear): weight K × out × in,
    bias K × out, the same names as nn.Linear's so a member's state dict is an nn.Linear's."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.members, self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.weight, self.bias, self.members)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, members={self.members}")


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, members: int | None) -> torch.Tensor:
    """x Wᵀ + b for one layer (F.linear) or K members (x: K × batch × in, batched)."""
    if members is None:
        return F.linear(x, weight, bias)
    if bias is None:
        return torch.bmm(x, weight.mT)
    return torch.baddbmm(bias.unsqueeze(-2), x, weight.mT)


class Network(nn.Module):
    """A stack of layers with one activation between them; the last layer gives logits.
    ``members``: None for one network, K for K stacked ones (`stack_network`)."""

    def __init__(self, layers: list[nn.Module], activation: str, spec: ModelSpec | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.activation = activation
        self.spec = spec
        self._act = _ACTIVATION_FUNCTIONS[activation]

    @property
    def members(self) -> int | None:
        return getattr(self.layers[0], "members", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < last and self._act is not None:
                x = self._act(x)
        return x

    def eigenvalue_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers if isinstance(layer, SpectralLinear)
                for p in layer.eigenvalue_parameters()]


def build_model(spec: ModelSpec | dict, *, seed: int = 0) -> Network:
    """Build the network of ``spec`` (a `ModelSpec` or a dict of its fields), seeded."""
    if isinstance(spec, dict):
        spec = ModelSpec(**spec)
    generator = torch.Generator().manual_seed(seed)
    subset_generator = (torch.Generator().manual_seed(spec.subset_seed)
                        if spec.subset_seed is not None else generator)
    layers = []
    for n_in, n_out in zip(spec.sizes[:-1], spec.sizes[1:]):
        if spec.mode in SPECTRAL_MODES:
            layers.append(SpectralLinear(
                n_in, n_out, eigenvalues=spec.eigenvalues,
                train_eigvecs=spec.mode != "spectral-eigvals",
                train_eigvals_in=spec.mode != "spectral-eigvecs",
                train_eigvals_out=spec.mode != "spectral-eigvecs",
                bias=spec.bias, phi_init=spec.phi_init, phi_scale=spec.phi_scale,
                eigval_init=spec.eigval_init, eigval_scale=spec.eigval_scale, generator=generator))
        elif spec.mode == "dense":
            layers.append(dense_layer(n_in, n_out, bias=spec.bias, init=spec.dense_init, generator=generator))
        else:
            layers.append(RestrictedLinear(n_in, n_out, restricted_count(n_in, n_out, spec.eigenvalues),
                                           bias=spec.bias, init=spec.dense_init, generator=generator,
                                           subset_generator=subset_generator))
    return Network(layers, spec.activation, spec)


def eigenvalue_count(n_in: int, n_out: int, eigenvalues: str) -> int:
    """Eigenvalues one transfer trains: both sets, or the receiving set only."""
    return n_in + n_out if eigenvalues == "both" else n_out


def restricted_count(n_in: int, n_out: int, eigenvalues: str) -> int:
    """Free weights of a dense-restricted layer: as many as its spectral twin's eigenvalues,
    capped at the layer's weights (a 1 → 10 layer has 11 eigenvalues but only 10 weights)."""
    return min(eigenvalue_count(n_in, n_out, eigenvalues), n_in * n_out)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Exact (trainable, total) scalar counts.

    Layers that know better (`SpectralLinear`, `RestrictedLinear`) count themselves: a
    restricted layer's frozen weights are part of its total though stored as a buffer, and a
    fixed λ_in is a constant, counted in neither. Other modules count their parameters.
    """
    trainable = total = 0
    counted: set[int] = set()
    for module in model.modules():
        if hasattr(module, "parameter_counts"):
            t, n = module.parameter_counts()
            trainable, total = trainable + t, total + n
            counted.update(id(p) for p in module.parameters())
    for p in model.parameters():
        if id(p) not in counted:
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def dense_layer(n_in: int, n_out: int, *, bias: bool = True, init: str = "uniform",
                generator: torch.Generator | None = None) -> nn.Linear:
    """An nn.Linear initialised from ``generator`` (reproducible, torch's global RNG untouched):
    ``"uniform"``, nn.Linear's default U(±1/√in) for weights and biases; ``"glorot"``, Keras'
    default U(±√(6/(in+out))) weights and zero biases."""
    layer = nn.Linear(n_in, n_out, bias=bias, device="meta").to_empty(device="cpu")
    bound = math.sqrt(6.0 / (n_in + n_out)) if init == "glorot" else 1 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.copy_((torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound)
        if bias and init == "glorot":
            layer.bias.zero_()
        elif bias:
            layer.bias.copy_((torch.rand(n_out, generator=generator) * 2 - 1) * bound)
    return layer


# ------------------------------------------------------------------------------------ members

def stack_network(networks: Sequence[Network]) -> Network:
    """One network holding ``networks`` (same spec, ordinary, on one device) as members 0 … K−1:
    each parameter and buffer is their values stacked on a new leading dimension, each trainable
    flag kept. A member's forward pass and gradients are its own (nothing is shared)."""
    if not networks or any(n.members is not None for n in networks):
        raise ValueError("stack_network takes one or more ordinary (unstacked) networks")
    first = networks[0]
    shapes = [[tuple(t.shape) for t in n.state_dict().values()] for n in networks]
    if any(s != shapes[0] for s in shapes) or any(n.activation != first.activation for n in networks):
        raise ValueError("stack_network needs networks of one architecture")
    layers = [_restack([n.layers[i] for n in networks]) for i in range(len(first.layers))]
    return Network(layers, first.activation, first.spec)


def member_network(network: Network, k: int) -> Network:
    """Member ``k`` of a stacked network as an ordinary network (a copy); an ordinary network
    is its own member 0."""
    if network.members is None:
        if k != 0:
            raise IndexError(f"an ordinary network has only member 0, got {k}")
        return network
    if not 0 <= k < network.members:
        raise IndexError(f"member {k} of a network of {network.members} members")
    layers = [_unstack(layer, k) for layer in network.layers]
    return Network(layers, network.activation, network.spec).train(network.training)


def member_state_dict(network: Network, k: int) -> dict:
    """Member ``k``'s state dict, as its ordinary network's (views of the live tensors)."""
    state = network.state_dict()
    return state if network.members is None else {name: t[k] for name, t in state.items()}


def stack_state_dicts(states: Sequence[dict]) -> dict:
    """The stacked network's state dict from its members' (the inverse of `member_state_dict`)."""
    return {name: torch.stack([s[name] for s in states]) for name in states[0]}


def _restack(layers: Sequence[nn.Module]) -> nn.Module:
    first = layers[0]
    if type(first) is nn.Linear:
        return StackedLinear(torch.stack([layer.weight.detach() for layer in layers]),
                             None if first.bias is None else torch.stack([layer.bias.detach() for layer in layers]))
    return _rebuild(first, lambda name, _: torch.stack([_tensor(layer, name) for layer in layers]), len(layers))


def _unstack(layer: nn.Module, k: int) -> nn.Module:
    if isinstance(layer, StackedLinear):
        new = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                        device="meta", dtype=layer.weight.dtype).to_empty(device=layer.weight.device)
        with torch.no_grad():
            new.weight.copy_(layer.weight[k])
            if layer.bias is not None:
                new.bias.copy_(layer.bias[k])
        new.weight.requires_grad_(layer.weight.requires_grad)
        if layer.bias is not None:
            new.bias.requires_grad_(layer.bias.requires_grad)
        return new
    return _rebuild(layer, lambda _, t: t[k].clone(), None)


def _tensor(layer: nn.Module, name: str) -> torch.Tensor:
    return getattr(layer, name).detach()


def _rebuild(layer: nn.Module, values, members: int | None) -> nn.Module:
    """A copy of ``layer`` (a leaf: SpectralLinear, RestrictedLinear) whose parameters and
    buffers are ``values(name, tensor)``, trainable flags kept, ``members`` set."""
    new = copy.copy(layer)  # the plain attributes (sizes, flags); tensors are replaced below
    for key, value in list(new.__dict__.items()):  # hooks and the like: no dict shared with ``layer``
        if isinstance(value, (dict, set)):
            new.__dict__[key] = copy.copy(value)
    new.__dict__["_parameters"] = {
        name: None if p is None else nn.Parameter(values(name, p.detach()), requires_grad=p.requires_grad)
        for name, p in layer._parameters.items()}
    new.__dict__["_buffers"] = {name: None if b is None else values(name, b) for name, b in layer._buffers.items()}
    new.__dict__["_non_persistent_buffers_set"] = set(layer._non_persistent_buffers_set)
    new.__dict__["_modules"] = {}
    new.members = members
    return new
