"""Forward+backward time of `SpectralLinear` in each learning mode, over `nn.Linear`.

    python benchmarks/layer_speed.py [--repeats 7] [--steps 20]

784 → N for N in {128, 512, 2048}, batch 256, CPU float32; each cell is the fastest of
``--repeats`` timings of ``--steps`` steps, ours and the baseline interleaved in one run so
that both see the same machine state. Target: every ratio ≤ 1.15.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from spectral_study.spectral import SpectralLinear

MODES = {  # mode → which of (φ, λ_in, λ_out) are trained
    "spectral-eigvals": dict(train_eigvecs=False),
    "spectral-eigvecs": dict(train_eigvals_in=False, train_eigvals_out=False),
    "spectral-full": dict(),
}


def time_steps(layer: nn.Module, x: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` training-style steps: fresh gradients, forward, backward."""
    start = time.perf_counter()
    for _ in range(steps):
        layer.zero_grad(set_to_none=True)  # as a training loop does; grads are not accumulated
        layer(x).sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print(f"{'784 -> N':>9} {'mode':<18} {'ours ms':>8} {'linear ms':>9} {'ratio':>6}")
    worst = 0.0
    for width in (128, 512, 2048):
        x = torch.rand(args.batch, 784)
        baseline = nn.Linear(784, width)
        for mode, flags in MODES.items():
            ours = SpectralLinear(784, width, **flags)
            for layer in (ours, baseline):  # warm-up: allocator, kernels
                time_steps(layer, x, 3)
            ours_t, base_t = [], []
            for _ in range(args.repeats):
                ours_t.append(time_steps(ours, x, args.steps))
                base_t.append(time_steps(baseline, x, args.steps))
            # The fastest repeat is the least disturbed by the rest of the machine (as timeit advises).
            o, b = min(ours_t), min(base_t)
            worst = max(worst, o / b)
            print(f"{width:>9} {mode:<18} {1e3 * o / args.steps:8.3f} {1e3 * b / args.steps:9.3f} {o / b:6.3f}")
    print(f"worst ratio: {worst:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
