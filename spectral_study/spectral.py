"""`SpectralLinear`: a fully connected layer parametrised in reciprocal space.

The transfer from a layer of ``in_features`` nodes to one of ``out_features`` nodes is the
off-diagonal block of the square operator A = Φ Λ Φ⁻¹ (Giambagli et al., Nat. Commun. 2021):
Φ is the identity plus one block φ (out × in) below the diagonal, Λ = diag(λ_in, λ_out).
Multiplying out gives the direct-space weight

    W[i, j] = φ[i, j] · (λ_in[j] − λ_out[i])        i: receiving node, j: sending node

so a forward pass is ``F.linear(x, W, b)``. Which of φ, λ_in, λ_out (and b) are trained defines
the learning mode (see `spectral_study.models`).

Speed: W is rebuilt on every forward pass. A plain autograd graph for φ·(λ_in − λ_out) keeps the
(out × in) difference matrix alive and makes several full passes over it in backward; the
custom `_SpectralWeight` function below builds W in two fused passes and, in backward, computes
only the gradients whose parameters are trained (eigenvalues-only training never forms ∂W/∂φ).
`benchmarks/layer_speed.py` measures the result against `nn.Linear`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spectral_study.vocabulary import EIGENVALUE_SETS, EIGVAL_INITS, PHI_INITS


class _SpectralWeight(torch.autograd.Function):
    """W = φ ⊙ (λ_in[None, :] − λ_out[:, None]) with a hand-written, need-driven backward."""

    @staticmethod
    def forward(ctx, phi, lambda_in, lambda_out):
        # φ·λ_in − φ·λ_out, as one multiply and one fused multiply-subtract.
        weight = phi * lambda_in
        weight.addcmul_(phi, lambda_out[:, None], value=-1.0)
        ctx.save_for_backward(phi, lambda_in, lambda_out)
        return weight

    @staticmethod
    def backward(ctx, grad_weight):
        phi, lambda_in, lambda_out = ctx.saved_tensors
        need_phi, need_in, need_out = ctx.needs_input_grad
        grad_phi = grad_in = grad_out = None
        if need_in or need_out:
            # ∂L/∂λ_in[j] = Σ_i g[i, j] φ[i, j];  ∂L/∂λ_out[i] = −Σ_j g[i, j] φ[i, j]
            projected = grad_weight * phi
            if need_in:
                grad_in = projected.sum(0)
            if need_out:
                grad_out = projected.sum(1).neg_()
        if need_phi:
            grad_phi = grad_weight * lambda_in
            grad_phi.addcmul_(grad_weight, lambda_out[:, None], value=-1.0)
        return grad_phi, grad_in, grad_out


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
        dtype = dtype or torch.get_default_dtype()

        def uniform(shape, bound):
            return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * bound

        if phi_init == "glorot":
            phi_scale = math.sqrt(6.0 / (in_features + out_features))
        # φ is (out × in) but stored column-major: F.linear's backward hands us ∂L/∂W in that
        # layout, and elementwise kernels on operands with mismatched strides are slower than
        # on matching ones. The price: the forward matmul reads a column-major W, which costs
        # a little too; row-major φ plus a copy of ∂L/∂W measured about the same on the 2-core
        # VM (benchmarks/layer_speed.py; run-to-run noise there is ±10 %).
        self.phi = nn.Parameter(uniform((in_features, out_features), phi_scale).t(),
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
        """The direct-space weight W (out × in)."""
        return _SpectralWeight.apply(self.phi, self.lambda_in, self.lambda_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

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
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"eigenvalues={self.eigenvalues!r}, bias={self.bias is not None}")
