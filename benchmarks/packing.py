"""K seeds packed into one trial against the same K seeds as separate trials, on the CPU.

    python benchmarks/packing.py [--seeds 8] [--widths 16 64 256 1024 2048] [--train 10000] [--repeats 5]

Per width of a 784–N–10 network (Adam, batch 256, one epoch of ``--train`` synthetic examples,
one thread, as a study's 1-CPU trial): ``sequential`` runs the K seeds as K trials one after
another (what a grid without ``search.pack_seeds`` does on one core); ``batched`` and
``one-by-one`` are one trial with ``pack_seeds``, its members trained as one stacked model or one
after another (``member_training``). ``packed`` is the way ``member_training: auto`` takes at that
width (`spectral_study.trial.member_groups`, shown under ``auto``): the same run, so it is not
run a third time. Times are this process's CPU seconds (with one thread, waiting for a busy
machine's core does not count). Each of ``--repeats`` rounds runs every way once, in turns (the
order reversed every other round); a ratio is the median over rounds of the round's own ratio
(both sides saw the same machine), the times are the median rounds. Target: packed / sequential
≤ 1.05 at every width.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from spectral_study.config import TrialConfig
from spectral_study.data import load_dataset
from spectral_study.trial import member_groups, run_trial

TARGET = 1.05


def paired_ratio(ours: list[float], baseline: list[float]) -> float:
    """Median over rounds of each round's ratio."""
    return statistics.median(a / b for a, b in zip(ours, baseline))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256, 1024, 2048])
    parser.add_argument("--mode", default="spectral-full")
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("synthetic", synthetic_size=(args.train, args.test))
    k = args.seeds
    print(f"K = {k} seeds, {args.mode} 784-N-10, Adam, batch 256, 1 epoch of {args.train} examples, "
          f"torch {torch.__version__}, 1 thread, CPU seconds")
    print(f"{'N':>6} {'sequential':>10} {'batched':>8} {'one-by-one':>10} {'auto':>10} {'packed/seq':>10} "
          f"{'batched/seq':>11} {'one-by-one/seq':>14}")
    worst = 0.0
    for width in args.widths:
        base = {"dataset": "synthetic", "mode": args.mode, "widths": [width], "epochs": 1, "batch_size": 256,
                "lr_eigvals": 0.01 if args.mode in ("spectral-eigvals", "spectral-full") else None, "seed": 0}
        packed = {**base, "repeats": k, "pack_seeds": True}
        runs = {
            "sequential": lambda base=base: [run_trial({**base, "seed": s}, data=data) for s in range(k)],
            "batched": lambda packed=packed: run_trial({**packed, "member_training": "batched"}, data=data),
            "one-by-one": lambda packed=packed: run_trial({**packed, "member_training": "sequential"}, data=data),
        }
        times = {name: [] for name in runs}
        for round_ in range(args.repeats):
            for name in (list(runs) if round_ % 2 == 0 else list(runs)[::-1]):
                start = time.process_time()
                runs[name]()
                times[name].append(time.process_time() - start)
        typical = {name: statistics.median(t) for name, t in times.items()}
        ratios = {name: paired_ratio(times[name], times["sequential"]) for name in ("batched", "one-by-one")}
        groups = member_groups(TrialConfig.from_dict(packed), torch.device("cpu"), (784, width, 10))
        auto = "batched" if len(groups) == 1 else "one-by-one"
        worst = max(worst, ratios[auto])
        print(f"{width:>6} {typical['sequential']:10.2f} {typical['batched']:8.2f} {typical['one-by-one']:10.2f} "
              f"{auto:>10} {ratios[auto]:10.3f} {ratios['batched']:11.3f} {ratios['one-by-one']:14.3f}", flush=True)
    print(f"worst packed / sequential: {worst:.3f} (target <= {TARGET:.2f})")


if __name__ == "__main__":
    main()
