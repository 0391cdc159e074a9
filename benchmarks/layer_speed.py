"""Forward+backward time of `SpectralLinear` in each learning mode, over `nn.Linear`.

    python benchmarks/layer_speed.py [--pairs 301] [--threads N] [--clock wall|cpu]

784 → N for N in {128, 512, 2048}, batch 256, CPU float32, both eigenvalue sets and the
receiving set (λ_in a constant). Ours and the baseline take turns one training step at a time
(which goes first alternates), ``--pairs`` times; the ratio is the median of the pairs' ratios.
A step is 1–30 ms and this machine's disturbances last longer than that, so the two steps of a
pair see the same machine; timing blocks of steps instead let a burst land on one side only
(the earlier version of this script, whose ratios swung by ±0.2 between runs). The times shown
are the median steps. ``--clock cpu`` times this process's CPU seconds instead of the wall clock
(with ``--threads 1`` it ignores time spent waiting for a core).
``SPECTRAL_STUDY_FUSED=0`` times the eager fallback instead of the fused CPU loops;
``SPECTRAL_STUDY_NATIVE=0`` the Python autograd function instead of the C++ op (the script
waits for the op's build first, ~30 s once per machine).
Target: every ratio ≤ 1.10 (goal ≤ 1.05).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from spectral_study import _fused, _native
from spectral_study.spectral import SpectralLinear

MODES = {  # mode → which of (φ, λ_in, λ_out) are trained
    "spectral-eigvals": dict(train_eigvecs=False),
    "spectral-eigvecs": dict(train_eigvals_in=False, train_eigvals_out=False),
    "spectral-full": dict(),
}
SETS = ("both", "receiving")
TARGET = 1.10


def time_step(layer: nn.Module, x: torch.Tensor, clock) -> float:
    """Seconds for one training-style step: fresh gradients, forward, backward."""
    start = clock()
    layer.zero_grad(set_to_none=True)  # as a training loop does; grads are not accumulated
    layer(x).sum().backward()
    return clock() - start


def compare(ours: nn.Module, baseline: nn.Module, x: torch.Tensor, pairs: int, clock) -> tuple[float, float, float]:
    """(median step of ours, median step of the baseline, median of the pairs' ratios)."""
    for _ in range(5):  # warm-up: allocator, kernels, caches
        time_step(ours, x, clock), time_step(baseline, x, clock)
    ours_t, base_t = [], []
    for i in range(pairs):
        if i % 2:
            b = time_step(baseline, x, clock)
            o = time_step(ours, x, clock)
        else:
            o = time_step(ours, x, clock)
            b = time_step(baseline, x, clock)
        ours_t.append(o)
        base_t.append(b)
    ratio = statistics.median(a / c for a, c in zip(ours_t, base_t))
    return statistics.median(ours_t), statistics.median(base_t), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=301, help="steps of each, taken in turns")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.manual_seed(0)
    x0 = torch.rand(4, 784)
    fused = _fused.usable(x0, x0, x0)
    _native.load()  # the layer's own choice from the first step: not the Python function while it builds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.clock} clock, "
          f"{'fused CPU loops' if fused else 'eager path'}, {_native.status()}")
    print(f"{'784 -> N':>9} {'eigenvalues':<11} {'mode':<18} {'ours ms':>8} {'linear ms':>9} {'ratio':>6}")
    worst = 0.0
    for width in (128, 512, 2048):
        x = torch.rand(args.batch, 784)
        baseline = nn.Linear(784, width)
        for eigenvalues in SETS:
            for mode, flags in MODES.items():
                ours = SpectralLinear(784, width, eigenvalues=eigenvalues, **flags)
                o, b, ratio = compare(ours, baseline, x, args.pairs, clock)
                worst = max(worst, ratio)
                print(f"{width:>9} {eigenvalues:<11} {mode:<18} {1e3 * o:8.3f} {1e3 * b:9.3f} {ratio:6.3f}",
                      flush=True)
    print(f"worst ratio: {worst:.3f} (target <= {TARGET:.2f})")


if __name__ == "__main__":
    main()
