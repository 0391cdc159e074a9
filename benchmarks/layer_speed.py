"""Forward+backward time of `SpectralLinear` in each learning mode, over `nn.Linear`.

    python benchmarks/layer_speed.py [--repeats 7] [--steps 20] [--threads N] [--clock wall|cpu]

784 → N for N in {128, 512, 2048}, batch 256, CPU float32, both eigenvalue sets and the
receiving set (λ_in a constant). Ours and the baseline are timed in alternation, ``--steps``
steps each, ``--repeats`` times; the ratio is the median of the paired ratios (each pair saw
the same machine state, so a busy machine slows both) and the times are the fastest repeats.
``--clock cpu`` times this process's CPU seconds instead of the wall clock (with ``--threads 1``
it is the one to use on a loaded machine: time spent waiting for a core does not count).
``SPECTRAL_STUDY_FUSED=0`` times the eager fallback instead of the fused CPU loops.
Target: every ratio ≤ 1.10 (goal ≤ 1.05).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from spectral_study import _fused
from spectral_study.spectral import SpectralLinear

MODES = {  # mode → which of (φ, λ_in, λ_out) are trained
    "spectral-eigvals": dict(train_eigvecs=False),
    "spectral-eigvecs": dict(train_eigvals_in=False, train_eigvals_out=False),
    "spectral-full": dict(),
}
SETS = ("both", "receiving")
TARGET = 1.10


def time_steps(layer: nn.Module, x: torch.Tensor, steps: int, clock) -> float:
    """Seconds for ``steps`` training-style steps: fresh gradients, forward, backward."""
    start = clock()
    for _ in range(steps):
        layer.zero_grad(set_to_none=True)  # as a training loop does; grads are not accumulated
        layer(x).sum().backward()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.clock} clock, "
          f"{'fused CPU loops' if fused else 'eager path'}")
    print(f"{'784 -> N':>9} {'eigenvalues':<11} {'mode':<18} {'ours ms':>8} {'linear ms':>9} {'ratio':>6}")
    worst = 0.0
    for width in (128, 512, 2048):
        x = torch.rand(args.batch, 784)
        baseline = nn.Linear(784, width)
        for eigenvalues in SETS:
            for mode, flags in MODES.items():
                ours = SpectralLinear(784, width, eigenvalues=eigenvalues, **flags)
                for layer in (ours, baseline):  # warm-up: allocator, kernels
                    time_steps(layer, x, 3, clock)
                ours_t, base_t = [], []
                for _ in range(args.repeats):
                    ours_t.append(time_steps(ours, x, args.steps, clock))
                    base_t.append(time_steps(baseline, x, args.steps, clock))
                # The fastest repeat is the least disturbed by the rest of the machine (as timeit
                # advises); the ratio pairs each repeat of ours with the baseline's right after it.
                o, b = min(ours_t), min(base_t)
                ratio = statistics.median(a / c for a, c in zip(ours_t, base_t))
                worst = max(worst, ratio)
                print(f"{width:>9} {eigenvalues:<11} {mode:<18} {1e3 * o / args.steps:8.3f} "
                      f"{1e3 * b / args.steps:9.3f} {ratio:6.3f}", flush=True)
    print(f"worst ratio: {worst:.3f} (target <= {TARGET:.2f})")


if __name__ == "__main__":
    main()
