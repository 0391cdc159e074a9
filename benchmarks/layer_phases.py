"""Where a training step of `SpectralLinear` spends its time, phase by phase, beside `nn.Linear`.

    python benchmarks/layer_phases.py [--steps 401] [--widths 128 512 2048]

`benchmarks/layer_speed.py` gives the ratio; this script says where the difference sits. Both
sets of eigenvalues, 784 → N, batch 256, CPU float32, torch's threads. The layer's own steps are
replayed by a copy of `_SpectralLinearFunction` with a clock around each call (the same calls:
`_fused.kernels(...).weight`, ``addmm``, ``∂L/∂W = gᵀx``, `spectral_weight_grads`, the bias sum;
the script first checks that the copy gives the layer's output and gradients bit for bit), and
nn.Linear's by the same calls without the passes. Ours and the baseline take turns, one step
each. Printed: the median of each phase in µs; "rest" is the step minus its phases (Python,
autograd, allocation). ``W pass, again`` repeats the W pass at once on the same, now warm, φ: the
difference from the first is what reading φ from memory (not cache) costs inside a real step.
The replica is the Python function; the C++ op the layer runs once it is built
(spectral_study/_native.py) makes the same calls without Python around them and takes W (input
without gradient) and ∂L/∂W (φ frozen) from per-thread memory, so its "rest" is smaller.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from spectral_study import _fused
from spectral_study.spectral import SpectralLinear, spectral_weight_grads

MODES = {"spectral-eigvals": dict(train_eigvecs=False), "spectral-full": dict()}
clock = time.perf_counter
phases: dict[str, list[float]] = {}


def record(name: str, start: float) -> float:
    now = clock()
    phases.setdefault(name, []).append(now - start)
    return now


class TimedSpectral(torch.autograd.Function):
    """`_SpectralLinearFunction` (2-D input without gradient, bias, fused passes) with a clock
    around each call."""

    @staticmethod
    def forward(ctx, x, phi, lambda_in, lambda_out, bias):
        t = clock()
        kernels = _fused.kernels(phi, lambda_in, lambda_out)
        weight = kernels.weight(phi, lambda_in, lambda_out)
        t = record("ours W pass", t)
        kernels._weight(phi.data_ptr(), lambda_in.data_ptr(), lambda_out.data_ptr(), weight.data_ptr(),
                        1, *phi.shape, _fused._threads(phi))  # the same pass into the same W: no allocation
        t = record("ours W pass, again", t)
        y = torch.addmm(bias, x, weight.t())
        record("ours forward product", t)
        ctx.kernels = kernels
        ctx.save_for_backward(x, phi, lambda_in, lambda_out, weight if ctx.needs_input_grad[0] else None)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, phi, lambda_in, lambda_out, _ = ctx.saved_tensors
        _, need_phi, need_in, need_out, _ = ctx.needs_input_grad
        t = clock()
        grad_weight = grad.mT.matmul(x)
        t = record("ours ∂L/∂W product", t)
        grad_phi, grad_in, grad_out = spectral_weight_grads(
            grad_weight, phi, lambda_in, lambda_out, need_phi, need_in, need_out, ctx.kernels)
        t = record("ours gradients pass", t)
        grad_bias = grad.sum(-2)
        record("ours bias sum", t)
        return None, grad_phi, grad_in, grad_out, grad_bias


class TimedLinear(torch.autograd.Function):
    """nn.Linear's forward and weight/bias backward for an input without gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        t = clock()
        y = torch.addmm(bias, x, weight.t())
        record("linear forward product", t)
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        t = clock()
        grad_weight = grad.mT.matmul(x)
        t = record("linear ∂L/∂W product", t)
        grad_bias = grad.sum(-2)
        record("linear bias sum", t)
        return None, grad_weight, grad_bias


def spectral_step(layer: SpectralLinear, x: torch.Tensor, timed: bool) -> torch.Tensor:
    layer.zero_grad(set_to_none=True)
    args = (x, layer.phi, layer.lambda_in, layer.lambda_out, layer.bias)
    y = TimedSpectral.apply(*args) if timed else layer(x)
    y.sum().backward()
    return y


def check_replica(layer: SpectralLinear, x: torch.Tensor) -> None:
    """The timed copy computes what the layer computes, bit for bit."""
    results = []
    for timed in (False, True):
        y = spectral_step(layer, x, timed).detach()
        results.append([y] + [p.grad.clone() for p in layer.parameters() if p.grad is not None])
    if not all(torch.equal(a, b) for a, b in zip(*results)):
        raise SystemExit("the timed copy of the layer does not match SpectralLinear: update this script")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=401, help="steps of each, taken in turns")
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    probe = torch.rand(4, 4)
    if not _fused.usable(probe, probe, probe):
        raise SystemExit("the fused CPU loops are unavailable here (no C compiler?): nothing to break down")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}; median µs per step")
    for width in args.widths:
        x = torch.rand(args.batch, 784)
        baseline = nn.Linear(784, width)
        for mode, flags in MODES.items():
            layer = SpectralLinear(784, width, **flags)
            check_replica(layer, x)
            phases.clear()
            for i in range(args.steps):
                for ours in ((True, False) if i % 2 else (False, True)):
                    t = clock()
                    if ours:
                        spectral_step(layer, x, timed=True)
                        record("ours step", t)
                    else:
                        baseline.zero_grad(set_to_none=True)
                        TimedLinear.apply(x, baseline.weight, baseline.bias).sum().backward()
                        record("linear step", t)
            median = {name: 1e6 * statistics.median(times[5:]) for name, times in phases.items()}
            median["ours step"] -= median["ours W pass, again"]  # the probe is not part of the layer's step
            for side in ("ours", "linear"):
                named = [n for n in median if n.startswith(side) and n not in (f"{side} step", "ours W pass, again")]
                median[f"{side} rest"] = median[f"{side} step"] - sum(median[n] for n in named)
            print(f"\n784 -> {width}, {mode}: step {median['ours step']:.0f} vs {median['linear step']:.0f} "
                  f"(ratio of medians {median['ours step'] / median['linear step']:.3f})")
            for name, value in median.items():
                if name not in ("ours step", "linear step"):
                    print(f"  {name:<26} {value:8.1f}")


if __name__ == "__main__":
    main()
