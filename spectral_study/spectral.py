"""`SpectralLinear`: a fully connected layer parametrised in reciprocal space.

The transfer from a layer of ``in_features`` nodes to one of ``out_features`` nodes is the
off-diagonal block of the square operator A = Φ Λ Φ⁻¹ (Giambagli et al., Nat. Commun. 2021):
Φ is the identity plus one block φ (out × in) below the diagonal, Λ = diag(λ_in, λ_out).
Multiplying out gives the direct-space weight

    W[i, j] = φ[i, j] · (λ_in[j] − λ_out[i])        i: receiving node, j: sending node

so a forward pass is ``F.linear(x, W, b)``. Which of φ, λ_in, λ_out (and b) are trained defines
the learning mode (see `spectral_study.models`).

Speed (benchmarks/layer_speed.py measures it against `nn.Linear`):

- both eigenvalue sets: one autograd node is the whole layer. It builds W in one pass over
  φ-sized memory and, in backward, turns ∂L/∂W into ∂L/∂φ and both eigenvalue gradients in one
  more pass (`spectral_study._fused`, compiled C on the CPU; the eager fallback computes the same
  W and ∂L/∂φ, and the eigenvalue gradients up to summation order), computing only what the
  trained parameters need. The node is a C++ op (`spectral_study._native`, built in the
  background on first use, ~30 s once per machine) and, until it is built or where it cannot be,
  `_SpectralLinearFunction` below: the same calls in the same order, so the same bits, but
  ~100 µs more a step in Python.
- the receiving set (λ_in a constant c): W is never built. y = (c − λ_out) ⊙ (x φᵀ) + b, a
  matrix product and a per-output scale, and backward the matrix products of `nn.Linear` plus
  vectors the size of the output (`_ReceivingLinearFunction`), again one node: a C++ op once
  built, the Python function until then, the same bits.

What is left over `nn.Linear` (784→N, batch 256, 2 threads, a 2-core machine; two runs of
benchmarks/layer_speed.py on this code): with both sets 1.08–1.14x at N = 128, 1.07–1.12x at
512, 1.06–1.08x at 2048; the receiving set 1.02–1.12x (0.57–0.69x when φ is frozen: no ∂L/∂φ
product). Two parts of about equal size at N = 128 (~50 µs each a step, of ~1.2 ms):
  - a fixed cost a step, measured on a 3 × 3 layer where the work is nil (steps in alternation):
    43–57 µs over nn.Linear's step. Against `F.linear` (before this code's trims of ~20 µs):
    +13 µs to call an op through the dispatcher, +11 µs for a C++ autograd Function, +15 µs
    for two more parameters (their gradients, their AccumulateGrad nodes), the rest the op's
    own bookkeeping and the module's Python;
  - the two passes over φ-sized memory. benchmarks/layer_phases.py shows them (it replays the
    Python function): inside a real step they read φ from memory, not cache (the products in
    between evict it). In one run (both modes with trained eigenvalues) the W pass took 66–68
    µs in a step at N = 128 and 17–19 µs repeated at once on the same φ; 238–252 against
    80–91 µs at 512; at N = 2048 both passes run at about this machine's memory speed
    (~15 GB/s). They are bound by that speed, not by latency: software prefetching in
    the loops changed little, and building W in row blocks small enough to stay in cache,
    each multiplied at once, was slower than one W pass and one product (every block's product
    packs x again). Only a matrix product of our own that scales φ while it packs it would
    drop the W pass.

Members: a layer may hold K independent copies ("members", each seed of a trial) with a leading
member dimension on every parameter and buffer (φ: K × out × in); its input is then K × batch ×
in and its products are batched (bmm). `spectral_study.models.stack_network` builds one from K
ordinary layers, so each member starts exactly where its seed alone would.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from spectral_study import _fused, _native
from spectral_study.vocabulary import EIGENVALUE_SETS, EIGVAL_INITS, PHI_INITS


def _scale(lambda_in: torch.Tensor, lambda_out: torch.Tensor) -> torch.Tensor:
    """λ_in[j] − λ_out[i] as a (..., out, in) tensor."""
    return lambda_in.unsqueeze(-2) - lambda_out.unsqueeze(-1)


def spectral_weight_grads(grad_weight: torch.Tensor, phi: torch.Tensor, lambda_in: torch.Tensor,
                          lambda_out: torch.Tensor, need_phi: bool, need_in: bool, need_out: bool,
                          kernels: _fused.Kernels | None = None):
    """(∂L/∂φ, ∂L/∂λ_in, ∂L/∂λ_out) from ∂L/∂W, None where not needed; ``grad_weight`` (fresh,
    contiguous) is reused for ∂L/∂φ. ``kernels``: the fused passes, None for the eager path.

        ∂L/∂φ[i, j] = g[i, j] (λ_in[j] − λ_out[i])
        ∂L/∂λ_in[j] = Σ_i g[i, j] φ[i, j]        ∂L/∂λ_out[i] = −Σ_j g[i, j] φ[i, j]
    """
    if kernels is not None:
        return kernels.grads(grad_weight, phi, lambda_in, lambda_out, need_phi, need_in, need_out)
    grad_in = grad_out = None
    if need_in or need_out:
        projected = grad_weight * phi
        grad_in = projected.sum(-2) if need_in else None
        grad_out = projected.sum(-1).neg_() if need_out else None
    grad_phi = grad_weight.mul_(_scale(lambda_in, lambda_out)) if need_phi else None
    return grad_phi, grad_in, grad_out


class _SpectralLinearFunction(torch.autograd.Function):
    """y = x Wᵀ + b with W = φ ⊙ (λ_in − λ_out): a plain layer (x: N × in, φ: out × in) or K
    members (x: K × N × in, φ: K × out × in). W is built once, and kept for ∂L/∂x only when x
    needs a gradient (a network's first layer does not: one φ-sized tensor less held per step).

    Lean on purpose: at small widths a step's Python (checks, wrappers, allocations) cost as much
    as its passes, so the fused-or-eager decision is taken once in forward and kept for backward.
    spectral_linear.cpp does the same calls in the same order (tests/test_spectral.py checks the
    bits): a change here is a change there."""

    @staticmethod
    def forward(ctx, x, phi, lambda_in, lambda_out, bias):
        kernels = _fused.kernels(phi, lambda_in, lambda_out)
        keep_weight = ctx.needs_input_grad[0]  # W is kept only for ∂L/∂x
        weight = kernels.weight(phi, lambda_in, lambda_out) if kernels else phi * _scale(lambda_in, lambda_out)
        if phi.dim() == 2:
            y = x.matmul(weight.t()) if bias is None else torch.addmm(bias, x, weight.t())
        else:
            y = torch.bmm(x, weight.mT) if bias is None else torch.baddbmm(bias.unsqueeze(-2), x, weight.mT)
        ctx.kernels = kernels
        ctx.save_for_backward(x, phi, lambda_in, lambda_out, weight if keep_weight else None)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, phi, lambda_in, lambda_out, weight = ctx.saved_tensors
        need_x, need_phi, need_in, need_out, need_bias = ctx.needs_input_grad
        grad_x = grad_phi = grad_in = grad_out = grad_bias = None
        if need_x:
            grad_x = grad.matmul(weight)
        if need_phi or need_in or need_out:
            grad_weight = grad.mT.matmul(x)  # fresh and contiguous: it becomes ∂L/∂φ in place
            grad_phi, grad_in, grad_out = spectral_weight_grads(
                grad_weight, phi, lambda_in, lambda_out, need_phi, need_in, need_out, ctx.kernels)
        if need_bias:
            grad_bias = grad.sum(-2)
        return grad_x, grad_phi, grad_in, grad_out, grad_bias


class _ReceivingLinearFunction(torch.autograd.Function):
    """The receiving set, W = (c − λ_out[i]) φ[i, :] with c the fixed λ_in, without W:
    y = (c − λ_out) ⊙ (x φᵀ) + b (the bias is not part of W, so it is added after the scale).
    c is read from the λ_in buffer, which holds that one constant for every sending node.

    Backward, with s = c − λ_out and h = ∂L/∂y ⊙ s: ∂L/∂x = h φ, ∂L/∂φ = hᵀ x,
    ∂L/∂λ_out = −Σ_batch ∂L/∂y ⊙ (x φᵀ), ∂L/∂b = Σ_batch ∂L/∂y: the products of `nn.Linear` plus
    vectors the size of the output. One node where the composite took five (and autograd's
    broadcasting bookkeeping for each). spectral_linear.cpp does the same calls in the same order
    (tests/test_spectral.py checks the bits): a change here is a change there."""

    @staticmethod
    def forward(ctx, x, phi, lambda_in, lambda_out, bias):
        members = phi.dim() != 2
        scale = lambda_in[..., :1] - lambda_out  # (..., out); [..., :1]: no host sync to read c
        if members:
            scale = scale.unsqueeze(-2)
        z = x.matmul(phi.mT)
        if bias is None:
            y = z * scale
        else:
            y = torch.addcmul(bias.unsqueeze(-2) if members else bias, z, scale)
        ctx.save_for_backward(x, phi, scale, z if lambda_out.requires_grad else None)  # x φᵀ: for ∂L/∂λ_out only
        return y

    @staticmethod
    def backward(ctx, grad):
        x, phi, scale, z = ctx.saved_tensors
        need_x, need_phi, _, need_out, need_bias = ctx.needs_input_grad
        grad_x = grad_phi = grad_out = grad_bias = None
        if need_x or need_phi:
            h = grad * scale
            if need_x:
                grad_x = h.matmul(phi)
            if need_phi:
                grad_phi = h.mT.matmul(x)
        if need_out:
            grad_out = (grad * z).sum(-2).neg_()
        if need_bias:
            grad_bias = grad.sum(-2)
        return grad_x, grad_phi, None, grad_out, grad_bias


class SpectralLinear(nn.Module):
    """Linear layer whose weight is W = φ ⊙ (λ_in[None, :] − λ_out[:, None]).

    Args:
        in_features, out_features: sizes of the sending and receiving layers.
        eigenvalues: ``"both"`` trains λ_in and λ_out (N_in + N_out eigenvalues, the paper's
            perceptron and Chicchi et al. 2021); ``"receiving"`` keeps λ_in fixed at
            ``fixed_lambda_in`` (a buffer, not a parameter) and trains one eigenvalue per
            receiving node, the authors' 2020 form where W = (c − λ_out[i]) φ[i, :].
        train_eigvecs, train_eigvals_in, train_eigvals_out, train_bias: which parameters are
            free. ``train_eigvals_in`` is ignored for ``eigenvalues="receiving"``.
        bias: add a bias vector (counted as a free parameter in every mode when trained).
        phi_init: ``"uniform"`` — φ ~ U(−phi_scale, phi_scale), the authors' 2020–21 choice
            (phi_scale 0.2); ``"glorot"`` — Glorot-uniform φ, the authors' 2022 library.
        eigval_init: ``"uniform"`` — λ ~ U(−eigval_scale, eigval_scale) (authors: 0.5);
            ``"ones"`` — λ_out = 1 (and λ_in = 0), which makes the initial W = −φ.
        fixed_lambda_in: the constant λ_in for ``eigenvalues="receiving"`` (0 by default, so
            W = −diag(λ_out) φ and |λ_out[i]| scales node i's whole incoming row).
        generator: a ``torch.Generator`` for reproducible initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        eigenvalues: str = "both",
        train_eigvecs: bool = True,
        train_eigvals_in: bool = True,
        train_eigvals_out: bool = True,
        bias: bool = True,
        train_bias: bool = True,
        phi_init: str = "uniform",
        phi_scale: float = 0.2,
        eigval_init: str = "uniform",
        eigval_scale: float = 0.5,
        fixed_lambda_in: float = 0.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"layer sizes must be positive, got {in_features=} {out_features=}")
        if eigenvalues not in EIGENVALUE_SETS:
            raise ValueError(f"eigenvalues must be one of {EIGENVALUE_SETS}, got {eigenvalues!r}")
        if phi_init not in PHI_INITS:
            raise ValueError(f"phi_init must be one of {PHI_INITS}, got {phi_init!r}")
        if eigval_init not in EIGVAL_INITS:
            raise ValueError(f"eigval_init must be one of {EIGVAL_INITS}, got {eigval_init!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.eigenvalues = eigenvalues
        self.members: int | None = None  # K when this layer holds K members (see the module docstring)
        dtype = dtype or torch.get_default_dtype()

        def uniform(shape, bound):
            return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * bound

        if phi_init == "glorot":
            phi_scale = math.sqrt(6.0 / (in_features + out_features))
        # φ is drawn as (in × out) and transposed, the draw order of the first version, so that a
        # seed gives the same network as before; it is stored row-major (out × in), the layout
        # of W and of ∂L/∂W, so the fused passes stream through matching memory.
        self.phi = nn.Parameter(uniform((in_features, out_features), phi_scale).t().contiguous(),
                                requires_grad=train_eigvecs)
        if eigval_init == "uniform":
            lambda_out = uniform((out_features,), eigval_scale)
            lambda_in = uniform((in_features,), eigval_scale)
        else:
            lambda_out = torch.ones(out_features, dtype=dtype)
            lambda_in = torch.zeros(in_features, dtype=dtype)
        self.lambda_out = nn.Parameter(lambda_out, requires_grad=train_eigvals_out)
        if eigenvalues == "both":
            self.lambda_in = nn.Parameter(lambda_in, requires_grad=train_eigvals_in)
        else:
            self.register_buffer("lambda_in", torch.full((in_features,), float(fixed_lambda_in), dtype=dtype))
        if bias:
            # Same bound as nn.Linear, so spectral and dense networks start with alike biases.
            self.bias = nn.Parameter(uniform((out_features,), 1 / math.sqrt(in_features)),
                                     requires_grad=train_bias)
        else:
            self.register_parameter("bias", None)

    @property
    def weight(self) -> torch.Tensor:
        """The direct-space weight W (out × in; K × out × in for members), with its graph."""
        return self.phi * _scale(self.lambda_in, self.lambda_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.members
        if members is not None and (x.dim() != 3 or x.shape[0] != members):
            raise ValueError(f"a layer of {members} members takes input of shape "
                             f"({members}, batch, {self.in_features}), got {tuple(x.shape)}")
        # nn.Linear takes any leading dimensions; the products want exactly one (or the members').
        flat = x if members is not None or x.dim() == 2 else x.reshape(-1, self.in_features)
        # The C++ op once it is built (same bits, less time a step); the Python function until then.
        if self.eigenvalues == "receiving":
            function = _native.receiving_op() or _ReceivingLinearFunction.apply
        else:
            function = (_native.op() if _fused.enabled() else None) or _SpectralLinearFunction.apply
        y = function(flat, self.phi, self.lambda_in, self.lambda_out, self.bias)
        return y if flat is x else y.reshape(*x.shape[:-1], self.out_features)

    def eigenvalue_parameters(self) -> list[nn.Parameter]:
        """The eigenvalue parameters (they get their own learning rate)."""
        return [p for p in (self.lambda_in, self.lambda_out) if isinstance(p, nn.Parameter)]

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) scalars; a fixed λ_in (a constant buffer) counts in neither."""
        params = list(self.parameters())
        return (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))

    @torch.no_grad()
    def transfer_operator(self) -> torch.Tensor:
        """The explicit (in + out) square matrix A = Φ Λ Φ⁻¹, for tests and teaching.

        Node order: the ``in`` sending nodes first, then the ``out`` receiving nodes, so the
        lower-left block A[in:, :in] is the layer's weight W.
        """
        n = self.in_features + self.out_features
        phi_full = self.eigenvector_matrix()
        lam = torch.diag(torch.cat([self.lambda_in, self.lambda_out]))
        phi_inverse = 2 * torch.eye(n, dtype=phi_full.dtype, device=phi_full.device) - phi_full
        return phi_full @ lam @ phi_inverse

    @torch.no_grad()
    def eigenvector_matrix(self) -> torch.Tensor:
        """Φ: the identity with φ in the lower-left block (nilpotent offset, so Φ⁻¹ = 2I − Φ)."""
        n_in, n = self.in_features, self.in_features + self.out_features
        phi_full = torch.eye(n, dtype=self.phi.dtype, device=self.phi.device)
        phi_full[n_in:, :n_in] = self.phi
        return phi_full

    def extra_repr(self) -> str:
        members = "" if self.members is None else f", members={self.members}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"eigenvalues={self.eigenvalues!r}, bias={self.bias is not None}{members}")
