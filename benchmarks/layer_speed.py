"""Forward+backward time of `SpectralLinear` in each learning mode, over `nn.Linear`.

    python benchmarks/layer_speed.py [--pairs 301] [--threads N] [--clock wall|cpu]
                                     [--optimizer none|sgd|adam] [--back-to-back]

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
``--optimizer sgd|adam`` adds each side's optimizer step on its trained parameters to the timed
step, as a training step has it: the ratio of whole steps. ``--back-to-back`` times each step
right after an untimed step of the same layer, as a training loop runs them; by default the other
side's step comes in between (and in a step ours reads φ from memory rather than cache:
benchmarks/layer_phases.py). On the 2-core VM this changed nothing: worst cells 1.118 and 1.138
back to back, 1.123 and 1.135 in plain alternation (two runs each, the same cells on top). The
target is judged on the defaults (no optimizer, steps in plain alternation), the issue's own
measure.
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


OPTIMIZERS = {"none": None, "sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def time_step(layer: nn.Module, x: torch.Tensor, clock, optimizer: torch.optim.Optimizer | None) -> float:
    """Seconds for one training-style step: fresh gradients, forward, backward (and the
    optimizer's step when there is one)."""
    start = clock()
    layer.zero_grad(set_to_none=True)  # as a training loop does; grads are not accumulated
    layer(x).sum().backward()
    if optimizer is not None:
        optimizer.step()
    return clock() - start


def compare(ours: nn.Module, baseline: nn.Module, x: torch.Tensor, pairs: int, clock,
            optimizer: str = "none", back_to_back: bool = False) -> tuple[float, float, float]:
    """(median step of ours, median step of the baseline, median of the pairs' ratios)."""
    make = OPTIMIZERS[optimizer]
    # A tiny rate: the parameters stay near their start over the run, so the work is the same throughout.
    ours_opt, base_opt = ((make([p for p in m.parameters() if p.requires_grad], lr=1e-6) if make else None)
                          for m in (ours, baseline))
    for _ in range(5):  # warm-up: allocator, kernels, caches
        time_step(ours, x, clock, ours_opt), time_step(baseline, x, clock, base_opt)

    def step(layer: nn.Module, opt: torch.optim.Optimizer | None) -> float:
        if back_to_back:
            time_step(layer, x, clock, opt)  # untimed: the step a training loop runs just before
        return time_step(layer, x, clock, opt)

    ours_t, base_t = [], []
    for i in range(pairs):
        if i % 2:
            b = step(baseline, base_opt)
            o = step(ours, ours_opt)
        else:
            o = step(ours, ours_opt)
            b = step(baseline, base_opt)
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
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="none",
                        help="add each side's optimizer step to the timed step (default: none, the target's measure)")
    parser.add_argument("--back-to-back", action="store_true",
                        help="time each step right after an untimed step of the same layer, as in training")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.manual_seed(0)
    x0 = torch.rand(4, 784)
    fused = _fused.usable(x0, x0, x0)
    _native.load()  # the layer's own choice from the first step: not the Python function while it builds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.clock} clock, "
          f"{'fused CPU loops' if fused else 'eager path'}, {_native.status()}, optimizer step: {args.optimizer}"
          f"{', steps back to back' if args.back_to_back else ''}")
    print(f"{'784 -> N':>9} {'eigenvalues':<11} {'mode':<18} {'ours ms':>8} {'linear ms':>9} {'ratio':>6}")
    worst = 0.0
    for width in (128, 512, 2048):
        x = torch.rand(args.batch, 784)
        baseline = nn.Linear(784, width)
        for eigenvalues in SETS:
            for mode, flags in MODES.items():
                ours = SpectralLinear(784, width, eigenvalues=eigenvalues, **flags)
                o, b, ratio = compare(ours, baseline, x, args.pairs, clock, args.optimizer, args.back_to_back)
                worst = max(worst, ratio)
                print(f"{width:>9} {eigenvalues:<11} {mode:<18} {1e3 * o:8.3f} {1e3 * b:9.3f} {ratio:6.3f}",
                      flush=True)
    judged = "" if args.optimizer == "none" and not args.back_to_back else ", judged on the defaults"
    print(f"worst ratio: {worst:.3f} (target <= {TARGET:.2f}{judged})")


if __name__ == "__main__":
    main()
