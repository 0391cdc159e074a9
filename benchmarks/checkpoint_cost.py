"""What a checkpoint costs next to an epoch: the measurement behind `training.checkpoint_every`.

    python benchmarks/checkpoint_cost.py [--dataset fashion-mnist] [--threads 1] [--ray]

For each network: one training epoch (a trial's own loop, Adam, batch 256) and the write of the
checkpoint a trial reports after it: `save_checkpoint` into a temporary folder plus the copy Ray
Tune makes of that folder into the study's storage (a local folder here; S3 adds an upload),
the median of 5. Prints both and the overhead of a checkpoint every 1, 2, 5 and 10 epochs.

``--ray`` also measures the whole cost inside Ray Tune (the report with its checkpoint, Tune's
bookkeeping, the old checkpoint's deletion): the same small study of short epochs (synthetic
data) with ``checkpoint_every: 1`` and with a checkpoint at the last epoch only; the trials'
own wall seconds differ by (epochs − 1) checkpoints.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from spectral_study.checkpoint import save_checkpoint
from spectral_study.data import load_dataset
from spectral_study.models import ModelSpec, build_model
from spectral_study.train import TrainConfig, Trainer

NETWORKS = [  # (mode, widths, eigenvalues): small, medium, the pruning papers' widths
    ("spectral-eigvals", (64,), "both"),
    ("spectral-full", (256,), "both"),
    ("dense", (256,), "both"),
    ("spectral-full", (500,), "receiving"),
    ("spectral-full", (2000,), "receiving"),
]
EVERY = (1, 2, 5, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--threads", type=int, default=1, help="a study's trial gets resources.cpu threads (1)")
    parser.add_argument("--ray", action="store_true", help="also measure inside Ray Tune")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    print(f"{args.dataset}: {len(data.y_train)} train / {len(data.y_test)} test, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"{'network':<34} {'epoch s':>8} {'ckpt ms':>8} {'MB':>6}  overhead at checkpoint_every "
          + " ".join(f"{k:>6}" for k in EVERY))
    for mode, widths, eigenvalues in NETWORKS:
        spec = ModelSpec(mode=mode, widths=widths, eigenvalues=eigenvalues,
                         in_features=data.n_features, n_classes=data.n_classes)
        trainer = Trainer(build_model(spec, seed=0), data, TrainConfig(lr_eigvals=0.01))
        start = time.perf_counter()
        history = trainer.run_epoch()
        epoch = time.perf_counter() - start
        state = {"trainers": [trainer.member_state(0)], "history": history, "elapsed_seconds": epoch,
                 "attempts": 1, "pruning": []}
        seconds, size = [], 0
        with tempfile.TemporaryDirectory() as storage:
            for i in range(5):
                start = time.perf_counter()
                with tempfile.TemporaryDirectory() as directory:
                    path = save_checkpoint(state, directory)
                    size = path.stat().st_size
                    shutil.copytree(directory, Path(storage) / f"checkpoint_{i:06d}")  # what Tune persists
                seconds.append(time.perf_counter() - start)
        checkpoint = statistics.median(seconds)
        overhead = " ".join(f"{checkpoint / (k * epoch):6.1%}" for k in EVERY)
        name = f"{mode} 784-{'-'.join(map(str, widths))}-10 {eigenvalues}"
        print(f"{name:<34} {epoch:8.2f} {1e3 * checkpoint:8.1f} {size / 1e6:6.1f}  {'':>28}{overhead}", flush=True)
    if args.ray:
        through_ray()


def through_ray(epochs: int = 20) -> None:
    """Per-checkpoint cost inside Ray Tune, from runs of one study (see the docstring), in the
    order every / last-only / last-only / every, so that neither gets the warmer machine."""
    import yaml

    from spectral_study.results import load_table
    from spectral_study.study import load_study
    from spectral_study.tune import run_study

    runs = {1: [], epochs: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, every in enumerate((1, epochs, epochs, 1)):
            study = {"name": f"ckpt-{i}", "dataset": "synthetic", "storage": tmp, "retries": 0,
                     "model": {"modes": ["spectral-full", "dense"], "widths": [64]},
                     "training": {"epochs": epochs, "batch_size": 256, "checkpoint_every": every},
                     "search": {"type": "grid", "repeats": 2}, "resources": {"cpu": 1}}
            path = Path(tmp) / f"ckpt-{i}.yaml"
            path.write_text("# checkpoint cost\n" + yaml.safe_dump(study))
            outcome = run_study(load_study(path), echo=lambda *a: None)
            trials = load_table(outcome.results, "trials")
            runs[every].append((trials["wall_seconds"].median(), load_table(outcome.results, "epochs")))
    every_epoch = statistics.mean(w for w, _ in runs[1])
    last_only = statistics.mean(w for w, _ in runs[epochs])
    epoch_seconds = statistics.median(e["epoch_seconds"].median() for _, e in runs[epochs])
    cost = (every_epoch - last_only) / (epochs - 1)
    print(f"through Ray Tune (local storage, synthetic data, {epochs} epochs of {epoch_seconds:.2f} s, 2 runs "
          f"each): trial {every_epoch:.1f} s with a checkpoint every epoch, {last_only:.1f} s with the last "
          f"only: {1e3 * cost:.0f} ms per checkpoint")
