"""How long reading a study's results takes as it grows, before and after compaction.

    python benchmarks/results_scale.py [--trials 2000 20000] [--epochs 10] [--keep DIR]

For each size: a results folder of that many trials written by `ResultsWriter` from one real
trial summary (784–16–10 spectral network: ``--epochs`` epoch rows and 826 spectra rows per
trial, so 3 fragments per trial: trials, epochs, spectra), then the wall seconds of
``load_results`` (every table) and ``load_results(tables=["trials"])`` on the per-trial
fragments, of ``compact_results``, and of both reads again on the compacted folder.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path

from spectral_study.compaction import compact_results
from spectral_study.results import ResultsWriter, load_results
from spectral_study.trial import run_trial


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="write the folders here and keep them (default: a temp dir)")
    args = parser.parse_args()
    summary = run_trial({"dataset": "synthetic", "synthetic_size": [200, 100], "mode": "spectral-eigvals",
                         "widths": [16], "epochs": args.epochs})
    base = Path(args.keep or tempfile.mkdtemp(prefix="results-scale-"))
    print(f"{'trials':>7} {'write s':>8} | fragments: {'all s':>7} {'trials s':>8} | {'compact s':>9} | "
          f"compacted: {'all s':>7} {'trials s':>8} | rows (epochs, spectra)")
    try:
        for n in args.trials:
            root = base / f"study-{n}"
            writer = ResultsWriter(root)
            start = time.perf_counter()
            for i in range(n):
                trial = copy.copy(summary)
                trial["config"] = {**summary["config"], "seed": i}
                writer.write_trial(f"trial_{i:06d}", "scale", trial)
            write = time.perf_counter() - start
            all_before, tables = timed(lambda root=root: load_results(root))
            trials_before, _ = timed(lambda root=root: load_results(root, tables=["trials"]))
            compact, _ = timed(lambda root=root: compact_results(root))
            all_after, after = timed(lambda root=root: load_results(root))
            trials_after, _ = timed(lambda root=root: load_results(root, tables=["trials"]))
            assert all(len(after[t]) == len(tables[t]) for t in tables) and len(after["trials"]) == n
            print(f"{n:>7} {write:8.1f} | {'':>11}{all_before:7.2f} {trials_before:8.2f} | {compact:9.2f} | "
                  f"{'':>11}{all_after:7.2f} {trials_after:8.2f} | {len(tables['epochs']):,}, "
                  f"{len(tables['spectra']):,}", flush=True)
            if not args.keep:
                shutil.rmtree(root)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
