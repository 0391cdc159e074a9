"""What scheduling costs: the same short trials (a) back to back with `run_trial` in one process
and (b) as a study through Ray Tune (embedded local Ray, Parquet results), side by side.

    python benchmarks/study_overhead.py [--trials 24] [--epochs 3]

Prints both wall times and the ratio b / a (target ≤ 1.15 on 2 cores). Ray gets the same
cores: two 1-CPU trials at a time, against one process using both cores' threads — so (b)
includes Ray's start-up, actor placement, per-epoch checkpoints and Parquet writes.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from spectral_study.data import load_dataset
from spectral_study.study import load_study
from spectral_study.trial import run_trial

STUDY = """\
name: overhead
dataset: fashion-mnist
model:
  modes: [spectral-eigvals, spectral-full, dense]
  widths: [64, 256]
training:
  epochs: {epochs}
  batch_size: 256
  lr_eigvals: 0.03
search:
  type: grid
  repeats: {repeats}
storage: {storage}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="a multiple of 6")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overhead.yaml"
        path.write_text(STUDY.format(epochs=args.epochs, repeats=max(1, args.trials // 6), storage=tmp))
        spec = load_study(path)
        configs = spec.trial_configs()

        start = time.perf_counter()
        data = load_dataset("fashion-mnist")
        for config in configs:
            run_trial(config, data=data)
        plain = time.perf_counter() - start

        from spectral_study.tune import run_study

        start = time.perf_counter()
        run_study(spec, echo=lambda *a: None)
        ray_time = time.perf_counter() - start
    print(f"{len(configs)} trials x {args.epochs} epochs on Fashion-MNIST, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"(a) run_trial back to back: {plain:7.1f} s")
    print(f"(b) study through Ray Tune: {ray_time:7.1f} s")
    print(f"ratio b/a: {ray_time / plain:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
