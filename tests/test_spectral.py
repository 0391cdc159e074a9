"""Contracts of SpectralLinear: the transfer operator's block is the weight; flags gate gradients."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from spectral_study.spectral import SpectralLinear, _SpectralWeight


@pytest.mark.parametrize("n_in,n_out,eigenvalues", [(3, 2, "both"), (7, 5, "both"), (16, 4, "receiving"),
                                                    (1, 9, "both"), (12, 12, "receiving")])
def test_transfer_operator_block_is_the_weight(n_in, n_out, eigenvalues):
    layer = SpectralLinear(n_in, n_out, eigenvalues=eigenvalues, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(n_in * 100 + n_out))
    with torch.no_grad():  # non-trivial fixed λ_in so the receiving form is checked too
        layer.lambda_in.copy_(torch.linspace(-1, 1, n_in, dtype=torch.float64) if eigenvalues == "both"
                              else torch.full((n_in,), 0.3, dtype=torch.float64))
    operator = layer.transfer_operator()
    assert operator.shape == (n_in + n_out, n_in + n_out)
    torch.testing.assert_close(operator[n_in:, :n_in], layer.weight.detach(), atol=1e-12, rtol=0)
    # Only the off-diagonal block reaches the next layer: the diagonal blocks are diag(Λ).
    torch.testing.assert_close(operator[:n_in, :n_in], torch.diag(layer.lambda_in), atol=1e-12, rtol=0)
    torch.testing.assert_close(operator[n_in:, n_in:], torch.diag(layer.lambda_out.detach()), atol=1e-12, rtol=0)
    assert torch.count_nonzero(operator[:n_in, n_in:]) == 0


@pytest.mark.parametrize("n_in,n_out", [(4, 3), (10, 6), (2, 8)])
def test_eigenvector_matrix_inverse_is_two_identity_minus_phi(n_in, n_out):
    layer = SpectralLinear(n_in, n_out, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    phi = layer.eigenvector_matrix()
    eye = torch.eye(n_in + n_out, dtype=torch.float64)
    torch.testing.assert_close(phi @ (2 * eye - phi), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.inv(phi), 2 * eye - phi, atol=1e-12, rtol=0)


def test_weight_formula_elementwise():
    layer = SpectralLinear(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w, phi = layer.weight.detach(), layer.phi.detach()
    lam_in, lam_out = layer.lambda_in.detach(), layer.lambda_out.detach()
    for i, j in itertools.product(range(3), range(5)):
        expected = phi[i, j] * (lam_in[j] - lam_out[i])
        assert abs(float(w[i, j] - expected)) < 1e-15


def test_receiving_set_scales_whole_rows():
    layer = SpectralLinear(6, 4, eigenvalues="receiving", generator=torch.Generator().manual_seed(3))
    assert not isinstance(layer.lambda_in, torch.nn.Parameter)  # a fixed constant, not a parameter
    expected = -layer.lambda_out.detach()[:, None] * layer.phi.detach()
    torch.testing.assert_close(layer.weight.detach(), expected)


@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=4)))
def test_gradients_flow_only_to_trained_parameters(flags):
    train_phi, train_in, train_out, train_bias = flags
    layer = SpectralLinear(7, 4, train_eigvecs=train_phi, train_eigvals_in=train_in,
                           train_eigvals_out=train_out, train_bias=train_bias,
                           generator=torch.Generator().manual_seed(4))
    x = torch.randn(5, 7, requires_grad=True)
    layer(x).pow(2).sum().backward()
    for param, on in ((layer.phi, train_phi), (layer.lambda_in, train_in),
                      (layer.lambda_out, train_out), (layer.bias, train_bias)):
        assert param.requires_grad is on
        assert (param.grad is not None) is on
        if on:
            assert torch.count_nonzero(param.grad) > 0
    assert x.grad is not None  # the input still gets its gradient (for deeper networks)


def test_custom_backward_matches_the_formula():
    """The hand-written backward passes gradcheck and equals autograd on φ·(λ_in − λ_out)."""
    g = torch.Generator().manual_seed(5)
    phi, lam_in, lam_out = (torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
                            for shape in ((5, 9), (9,), (5,)))
    x = torch.randn(11, 9, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p, a, b: F.linear(x, _SpectralWeight.apply(p, a, b)),
                                    (phi, lam_in, lam_out))
    ours = torch.autograd.grad(F.linear(x, _SpectralWeight.apply(phi, lam_in, lam_out)).sin().sum(),
                               (phi, lam_in, lam_out))
    reference = torch.autograd.grad(F.linear(x, phi * (lam_in[None, :] - lam_out[:, None])).sin().sum(),
                                    (phi, lam_in, lam_out))
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="eigenvalues"):
        SpectralLinear(3, 2, eigenvalues="sending")
    with pytest.raises(ValueError, match="positive"):
        SpectralLinear(0, 2)
    with pytest.raises(ValueError, match="phi_init"):
        SpectralLinear(3, 2, phi_init="normal")
