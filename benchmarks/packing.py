"""K seeds packed into one trial against the same K seeds as separate trials, on the CPU.

    python benchmarks/packing.py [--seeds 8] [--widths 16 64 256 1024] [--train 10000] [--repeats 3]

Per width of a 784–N–10 network (Adam, batch 256, one epoch of ``--train`` synthetic examples,
one thread, as a study's 1-CPU trial): ``sequential`` runs the K seeds as K trials one after
another (what a grid without ``search.pack_seeds`` does on one core); ``packed`` is one trial
with ``pack_seeds`` and ``member_training: auto``; ``batched`` and ``one-by-one`` force each way of
training the members inside the packed trial, to show what ``auto`` chose and why. Times are
this process's CPU seconds (with one thread, waiting for a busy machine's core does not count),
the fastest of ``--repeats`` interleaved runs. Target: packed / sequential ≤ 1.05 at every width.
"""
from __future__ import annotations

import argparse
import time

import torch

from spectral_study.config import TrialConfig
from spectral_study.data import load_dataset
from spectral_study.trial import member_groups, run_trial

TARGET = 1.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256, 1024, 2048])
    parser.add_argument("--mode", default="spectral-full")
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("synthetic", synthetic_size=(args.train, args.test))
    k = args.seeds
    print(f"K = {k} seeds, {args.mode} 784-N-10, Adam, batch 256, 1 epoch of {args.train} examples, "
          f"torch {torch.__version__}, 1 thread, CPU seconds")
    print(f"{'N':>6} {'sequential':>10} {'packed':>8} {'batched':>8} {'one-by-one':>10} {'packed/seq':>10} "
          f"{'batched/seq':>11}  auto")
    worst = 0.0
    for width in args.widths:
        base = {"dataset": "synthetic", "mode": args.mode, "widths": [width], "epochs": 1, "batch_size": 256,
                "lr_eigvals": 0.01 if args.mode in ("spectral-eigvals", "spectral-full") else None, "seed": 0}
        packed = {**base, "repeats": k, "pack_seeds": True}
        runs = {
            "sequential": lambda base=base: [run_trial({**base, "seed": s}, data=data) for s in range(k)],
            "packed": lambda packed=packed: run_trial(packed, data=data),
            "batched": lambda packed=packed: run_trial({**packed, "member_training": "batched"}, data=data),
            "one-by-one": lambda packed=packed: run_trial({**packed, "member_training": "sequential"}, data=data),
        }
        best = {name: float("inf") for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                start = time.process_time()
                run()
                best[name] = min(best[name], time.process_time() - start)
        ratio = best["packed"] / best["sequential"]
        worst = max(worst, ratio)
        groups = member_groups(TrialConfig.from_dict(packed), torch.device("cpu"), (784, width, 10))
        auto = "batched" if len(groups) == 1 else "one-by-one"
        print(f"{width:>6} {best['sequential']:10.2f} {best['packed']:8.2f} {best['batched']:8.2f} "
              f"{best['one-by-one']:10.2f} {ratio:10.3f} {best['batched'] / best['sequential']:11.3f}  {auto}",
              flush=True)
    print(f"worst packed / sequential: {worst:.3f} (target <= {TARGET:.2f})")


if __name__ == "__main__":
    main()
