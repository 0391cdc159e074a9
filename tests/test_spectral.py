"""Contracts of SpectralLinear: the transfer operator's block is the weight; flags gate gradients;
the fast paths (fused loops, the receiving set without W, members) compute the plain formula."""
import ctypes
import itertools
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from spectral_study import _fused, _native
from spectral_study.models import Network, member_network, stack_network
from spectral_study.spectral import SpectralLinear, _ReceivingLinearFunction, _SpectralLinearFunction

PATHS = ["native", "fused", "eager"]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    """Each test runs on the C++ op, on the Python function with the fused CPU loops (while the
    op builds, or without a C++ compiler) and on the eager fallback (GPUs, no compiler at all)."""
    # The switches SPECTRAL_STUDY_FUSED and SPECTRAL_STUDY_NATIVE, as read at import.
    monkeypatch.setattr(_fused, "_ENABLED", request.param != "eager")
    monkeypatch.setattr(_native, "_ENABLED", request.param == "native")
    if request.param != "eager":
        assert _fused.usable(torch.zeros(2, 2)), "the fused loops should build on this machine (a C compiler)"
    if request.param == "native":
        assert _native.load() is not None, f"the C++ op should build on this machine: {_native.status()}"
    return request.param


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


def _reference(x, phi, lambda_in, lambda_out, bias):
    """The layer as plain autograd on the formula: W built explicitly, then x Wᵀ + b."""
    weight = phi * (lambda_in.unsqueeze(-2) - lambda_out.unsqueeze(-1))
    y = x @ weight.mT
    return y if bias is None else y + bias.unsqueeze(-2)


def _inputs(members: tuple, seed: int, n_in=9, n_out=5, batch=11):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn((*members, *shape), generator=g, dtype=torch.float64, requires_grad=True)
            for shape in ((batch, n_in), (n_out, n_in), (n_in,), (n_out,), (n_out,))]


@pytest.mark.parametrize("members", [(), (2,)], ids=["one", "members"])
def test_both_sets_layer_passes_gradcheck(path, members):
    """float64 gradcheck of the whole-layer function (its one-pass backward yields ∂x, ∂φ, both
    eigenvalue gradients and ∂b), with all and with none of the eigenvalues trained."""
    x, phi, lambda_in, lambda_out, bias = _inputs(members, seed=4, n_in=5, n_out=3, batch=4)
    assert torch.autograd.gradcheck(_SpectralLinearFunction.apply, (x, phi, lambda_in, lambda_out, bias))
    assert torch.autograd.gradcheck(lambda x, p: _SpectralLinearFunction.apply(x, p, lambda_in.detach(),
                                                                               lambda_out.detach(), None), (x, phi))


@pytest.mark.parametrize("members", [(), (3,)], ids=["one", "members"])
@pytest.mark.parametrize("trained", list(itertools.product([False, True], repeat=4)))
def test_both_sets_layer_equals_the_formula(path, members, trained):
    """Output and gradients against autograd on φ·(λ_in − λ_out), for every subset of trained
    tensors (the backward computes only what is trained)."""
    x, phi, lambda_in, lambda_out, bias = _inputs(members, seed=5)
    for tensor, on in zip((phi, lambda_in, lambda_out, bias), trained):
        tensor.requires_grad_(on)
    args = (x, phi, lambda_in, lambda_out, bias)
    ours = _SpectralLinearFunction.apply(*args)
    reference = _reference(*args)
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
    wanted = [t for t in args if t.requires_grad]
    for a, b in zip(torch.autograd.grad(ours.sin().sum(), wanted), torch.autograd.grad(reference.sin().sum(), wanted)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def _receiving_functions():
    """The receiving set's Python function and its C++ op (which must build on this machine)."""
    op = _native.load() and _native.receiving_op()
    assert op is not None, f"the C++ op should build on this machine: {_native.status()}"
    return {"python": _ReceivingLinearFunction.apply, "native": op}


@pytest.mark.parametrize("function", ["python", "native"])
@pytest.mark.parametrize("members", [(), (3,)], ids=["one", "members"])
@pytest.mark.parametrize("bias", [True, False])
def test_receiving_set_without_w_equals_the_formula(function, members, bias):
    """y = (c − λ_out) ⊙ (x φᵀ) + b: the bias is not scaled, c is the fixed λ_in (not 0 here);
    float64 gradcheck, and output and gradients against autograd on the explicit W."""
    receiving = _receiving_functions()[function]
    x, phi, _, lambda_out, b = _inputs(members, seed=6, n_in=5, n_out=3, batch=4)
    constant = torch.full((*members, 5), 0.3, dtype=torch.float64)
    b = b if bias else None
    args = (x, phi, constant, lambda_out, b)
    assert torch.autograd.gradcheck(lambda x, p, lo, *rest: receiving(x, p, constant, lo, *rest or (None,)),
                                    (x, phi, lambda_out) + ((b,) if bias else ()))
    ours, reference = receiving(*args), _reference(*args)
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
    wanted = [t for t in (x, phi, lambda_out, b) if t is not None]
    for a, c in zip(torch.autograd.grad(ours.sin().sum(), wanted), torch.autograd.grad(reference.sin().sum(), wanted)):
        torch.testing.assert_close(a, c, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("members", [(), (3,)], ids=["one", "members"])
def test_cpp_receiving_op_gives_the_python_functions_bits(dtype, members):
    """The receiving set's C++ op does its Python function's calls in its order: the same output
    and gradients, bit for bit, for every subset of trained φ, λ_out, bias and input (x φᵀ is
    kept only when λ_out is trained), and under no_grad."""
    functions = _receiving_functions()
    g = torch.Generator().manual_seed(22)
    rows, cols = 130, 300
    for trained in itertools.product((False, True), repeat=4):
        phi_on, out_on, bias_on, x_on = trained
        phi = torch.randn(*members, rows, cols, generator=g, dtype=dtype).requires_grad_(phi_on)
        constant = torch.full((*members, cols), -0.4, dtype=dtype)
        lambda_out = torch.randn(*members, rows, generator=g, dtype=dtype).requires_grad_(out_on)
        b = torch.randn(*members, rows, generator=g, dtype=dtype).requires_grad_() if bias_on else None
        x = torch.randn(*members, 9, cols, generator=g, dtype=dtype).requires_grad_(x_on)
        weights = torch.randn(*members, 9, rows, generator=g, dtype=dtype)
        inputs = [t for t in (x, phi, lambda_out, b) if t is not None and t.requires_grad]
        results = []
        for function in functions.values():
            y = function(x, phi, constant, lambda_out, b)
            results.append([y.detach(), *(torch.autograd.grad((y * weights).sum(), inputs) if inputs else ())])
            with torch.no_grad():
                results[-1].append(function(x, phi, constant, lambda_out, b))
        assert all(torch.equal(a, c) for a, c in zip(*results)), trained


@pytest.mark.parametrize("eigenvalues", ["both", "receiving"])
def test_layer_forward_equals_its_weight(path, eigenvalues):
    layer = SpectralLinear(7, 4, eigenvalues=eigenvalues, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(8))
    x = torch.randn(2, 3, 7, dtype=torch.float64)  # leading dimensions, as nn.Linear takes them
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-12, rtol=0)


def test_fused_and_eager_paths_agree_and_are_deterministic(monkeypatch):
    """Same W and ∂φ bit for bit (same operations, no fused multiply-add); eigenvalue gradients
    up to summation order; the same inputs give the same bits on 1 and 2 threads."""
    layer = SpectralLinear(600, 500, generator=torch.Generator().manual_seed(9))  # large enough for 2 threads
    x = torch.rand(32, 600, generator=torch.Generator().manual_seed(10))

    def run(flag: str, threads: int = 1):
        monkeypatch.setattr(_fused, "_ENABLED", flag == "1")  # SPECTRAL_STUDY_FUSED=flag
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            layer.zero_grad(set_to_none=True)
            y = layer(x)
            y.pow(2).sum().backward()
            return [y.detach()] + [p.grad.clone() for p in (layer.phi, layer.lambda_in, layer.lambda_out)]
        finally:
            torch.set_num_threads(before)

    fused, eager = run("1"), run("0")
    assert torch.equal(fused[0], eager[0]) and torch.equal(fused[1], eager[1])
    for a, b in zip(fused[2:], eager[2:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(fused, run("1", threads=2)))
    assert all(torch.equal(a, b) for a, b in zip(fused, run("1")))


def test_weight_is_kept_for_backward_only_when_the_input_needs_a_gradient(path):
    """W serves ∂L/∂x alone: for a first layer (data without gradient) it is not held between
    forward and backward; with an input that needs one, ∂L/∂x still comes out right."""
    layer = SpectralLinear(6, 4, generator=torch.Generator().manual_seed(3))
    for needs_grad in (False, True):
        x = torch.rand(3, 6, requires_grad=needs_grad)
        saved: list[torch.Tensor] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, seen=saved: seen.append(t) or t, lambda t: t):
            y = layer(x)
        held = [t for t in saved if t.shape == layer.phi.shape]
        assert len(held) == (2 if needs_grad else 1)  # φ itself, and W only for ∂L/∂x
        y.sum().backward()
        if needs_grad:
            torch.testing.assert_close(x.grad, layer.weight.detach().sum(0).expand(3, -1))


def test_vector_width_does_not_change_the_bits():
    """The library picks an AVX2 or a baseline copy of each loop by CPU; a build with the
    baseline copy alone must give the same bits (the sums' order is written in the source), so
    the nodes of a mixed cluster agree. Odd sizes: partial lane groups and row blocks."""
    if not _fused.usable(torch.zeros(2, 2)):
        pytest.fail("the fused loops should build on this machine (a C compiler)")
    baseline = _fused._declare(ctypes.CDLL(str(_fused._build(_fused._FLAGS + ("-DSPECTRAL_NO_CLONES",)))))
    g = torch.Generator().manual_seed(12)
    for dtype in (torch.float32, torch.float64):
        ours, plain = _fused._kernels[dtype], _fused.Kernels(baseline, dtype)
        for members, rows, cols in ((1, 37, 101), (3, 16, 47), (1, 600, 500)):
            phi, grad_weight = (torch.randn(members, rows, cols, generator=g, dtype=dtype) for _ in range(2))
            lambda_in = torch.randn(members, cols, generator=g, dtype=dtype)
            lambda_out = torch.randn(members, rows, generator=g, dtype=dtype)
            assert torch.equal(ours.weight(phi, lambda_in, lambda_out), plain.weight(phi, lambda_in, lambda_out))
            for a, b in zip(ours.grads(grad_weight.clone(), phi, lambda_in, lambda_out, True, True, True),
                            plain.grads(grad_weight.clone(), phi, lambda_in, lambda_out, True, True, True)):
                assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("members", [(), (3,)], ids=["one", "members"])
def test_cpp_op_gives_the_python_functions_bits(dtype, members):
    """The C++ op does the Python function's calls in its order: the same output and gradients,
    bit for bit, whichever parameters are trained, with or without bias, with an input that
    needs a gradient or not (W from per-thread memory then), at sizes that take one and two
    threads, and on the eager path inside the op (a φ that is not contiguous)."""
    op = _native.load()
    assert op is not None, f"the C++ op should build on this machine: {_native.status()}"
    g = torch.Generator().manual_seed(21)
    trained_sets = [(True, True, True), (False, True, True), (True, False, False), (False, False, True)]
    for (rows, cols), bias, x_grad, trained in itertools.product(((5, 7), (130, 300)), (True, False), (False, True),
                                                                  trained_sets):
        phi, lambda_in, lambda_out = (torch.randn(*members, *shape, generator=g, dtype=dtype).requires_grad_(t)
                                      for shape, t in zip(((rows, cols), (cols,), (rows,)), trained))
        b = torch.randn(*members, rows, generator=g, dtype=dtype).requires_grad_() if bias else None
        x = torch.randn(*members, 9, cols, generator=g, dtype=dtype).requires_grad_(x_grad)
        weights = torch.randn(*members, 9, rows, generator=g, dtype=dtype)
        inputs = [t for t in (x, phi, lambda_in, lambda_out, b) if t is not None and t.requires_grad]
        results = []
        for function in (_SpectralLinearFunction.apply, op):
            y = function(x, phi, lambda_in, lambda_out, b)
            results.append([y.detach(), *torch.autograd.grad((y * weights).sum(), inputs)])
            with torch.no_grad():
                results[-1].append(function(x, phi, lambda_in, lambda_out, b))
        assert all(torch.equal(a, c) for a, c in zip(*results)), (rows, cols, bias, x_grad, trained)
    phi = torch.randn(300, 40, generator=g, dtype=dtype).t().requires_grad_()  # not contiguous: eager
    lambda_in = torch.randn(300, generator=g, dtype=dtype, requires_grad=True)
    lambda_out = torch.randn(40, generator=g, dtype=dtype, requires_grad=True)
    x = torch.randn(9, 300, generator=g, dtype=dtype)
    results = []
    for function in (_SpectralLinearFunction.apply, op):
        y = function(x, phi, lambda_in, lambda_out, None)
        results.append([y.detach(), *torch.autograd.grad(y.square().sum(), (phi, lambda_in, lambda_out))])
    assert all(torch.equal(a, c) for a, c in zip(*results))


@pytest.mark.parametrize("eigenvalues", ["both", "receiving"])
def test_the_layer_uses_the_cpp_op_once_built_and_trains_to_the_same_bits(monkeypatch, eigenvalues):
    """`SpectralLinear` runs the C++ op once it is loaded (its node in the graph is the op's),
    the Python function with SPECTRAL_STUDY_NATIVE=0; ten SGD steps of a 2-layer network end
    with the same parameters, bit for bit, either way."""
    assert _native.load() is not None, _native.status()

    def train(native: str):
        monkeypatch.setattr(_native, "_ENABLED", native == "1")  # SPECTRAL_STUDY_NATIVE=native
        g = torch.Generator().manual_seed(4)
        first = SpectralLinear(40, 300, eigenvalues=eigenvalues, generator=g)
        second = SpectralLinear(300, 10, eigenvalues=eigenvalues, generator=g)
        optimizer = torch.optim.SGD([*first.parameters(), *second.parameters()], lr=0.05)
        nodes = set()
        for _ in range(10):
            x = torch.rand(32, 40, generator=g)
            target = torch.randint(0, 10, (32,), generator=g)
            hidden = first(x)
            nodes.add(type(hidden.grad_fn).__name__)
            loss = F.cross_entropy(second(torch.tanh(hidden)), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return nodes, [p.detach().clone() for p in (*first.parameters(), *second.parameters())]

    native_nodes, native = train("1")
    python_nodes, python = train("0")
    python_function = _SpectralLinearFunction if eigenvalues == "both" else _ReceivingLinearFunction
    assert python_nodes == {f"{python_function.__name__}Backward"}
    assert len(native_nodes) == 1 and native_nodes != python_nodes
    assert all(torch.equal(a, b) for a, b in zip(native, python))


def test_a_failed_cpp_build_is_remembered_and_the_layer_still_trains(tmp_path):
    """No working C++ compiler (here CXX=false): the layer trains on the Python function, says
    why in `_native.status()`, and keeps the compiler's answer in a .failed file so that later
    processes do not try again. Its own process and cache: the op's state is per process."""
    code = ("import torch; from spectral_study import _native; from spectral_study.spectral import SpectralLinear\n"
            "assert _native.load(timeout=120) is None\n"
            "layer = SpectralLinear(6, 4); layer(torch.rand(3, 6)).sum().backward()\n"
            "assert type(layer(torch.rand(3, 6)).grad_fn).__name__ == '_SpectralLinearFunctionBackward'\n"
            "assert layer.phi.grad is not None and layer.lambda_in.grad is not None\n"
            "print(_native.status())\n")
    env = {**os.environ, "CXX": "false", "SPECTRAL_STUDY_CACHE": str(tmp_path), "SPECTRAL_STUDY_NATIVE": "1"}
    for attempt in ("first", "later"):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Python function (no C++ op: ")
        failed = list((tmp_path / "kernels").glob("spectral_linear-*.failed"))
        assert len(failed) == 1 and "false exited 1" in failed[0].read_text()
        assert ("an earlier build failed" in done.stdout) == (attempt == "later")
    assert not list((tmp_path / "kernels").glob("*.tmp")) and not list((tmp_path / "kernels").glob("*.so.*"))


def test_a_cpp_build_killed_by_a_signal_is_tried_again_later(tmp_path):
    """A build that dies of a signal (a Ray worker ended mid-build, the OOM killer) says so in
    `_native.status()` but leaves no .failed file: the next process builds again."""
    killed = tmp_path / "killed-compiler"
    killed.write_text("#!/bin/sh\nkill -KILL $$\n")
    killed.chmod(0o755)
    code = ("from spectral_study import _native\n"
            "assert _native.load(timeout=120) is None\n"
            "print(_native.status())\n")
    env = {**os.environ, "CXX": str(killed), "SPECTRAL_STUDY_CACHE": str(tmp_path), "SPECTRAL_STUDY_NATIVE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "(exit 137)" in done.stdout
    assert not list((tmp_path / "kernels").glob("spectral_linear-*.failed"))
    assert not list((tmp_path / "kernels").glob("*.tmp"))


@pytest.mark.parametrize("eigenvalues", ["both", "receiving"])
def test_stacked_members_compute_what_each_layer_computes_alone(path, eigenvalues):
    layers = [SpectralLinear(6, 4, eigenvalues=eigenvalues, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(s)) for s in range(3)]
    stacked = stack_network([Network([layer], "linear") for layer in layers])
    assert stacked.members == 3 and stacked.layers[0].phi.shape == (3, 4, 6)
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    y = stacked(x)
    y.sum().backward()
    for k, layer in enumerate(layers):
        alone = layer(x[k])
        alone.sum().backward()
        torch.testing.assert_close(y[k], alone, atol=1e-12, rtol=0)
        for name, p in layer.named_parameters():
            torch.testing.assert_close(getattr(stacked.layers[0], name).grad[k], p.grad, atol=1e-12, rtol=0)
        back = member_network(stacked, k).layers[0]
        assert back.members is None and all(torch.equal(back.state_dict()[n], t)
                                            for n, t in layer.state_dict().items())
    with pytest.raises(ValueError, match=r"takes input of shape \(3, batch, 6\)"):
        stacked(x[0])


def test_phi_is_row_major_and_keeps_the_first_versions_draw():
    """φ is stored out × in, row-major; its values are those the first version drew (as in × out,
    transposed), so a seed still gives the same network."""
    layer = SpectralLinear(5, 3, generator=torch.Generator().manual_seed(11))
    drawn = (torch.rand((5, 3), generator=torch.Generator().manual_seed(11)) * 2 - 1) * 0.2
    assert layer.phi.is_contiguous() and torch.equal(layer.phi.detach(), drawn.t())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="eigenvalues"):
        SpectralLinear(3, 2, eigenvalues="sending")
    with pytest.raises(ValueError, match="positive"):
        SpectralLinear(0, 2)
    with pytest.raises(ValueError, match="phi_init"):
        SpectralLinear(3, 2, phi_init="normal")
