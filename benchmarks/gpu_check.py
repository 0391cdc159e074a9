"""The GPU check's steps (benchmarks/gpu_check.sh runs them in an environment with a CUDA torch).

    python benchmarks/gpu_check.py WORKDIR [--rehearse]

1. a short study with ``resources.gpu: 0.25``: every trial must have run on ``cuda``;
2. the same study on the CPU (same seeds): each trial's final test accuracy within ``TOLERANCE``;
3. a checkpoint written on the GPU (an ordinary trial, and a packed one trained stacked) restores
   on the CPU and finishes there, within ``TOLERANCE`` of the GPU's own finish;
4. trials per minute at ``gpu`` 1, 0.5, 0.25, 0.125, and with packed seeds.

Why ``TOLERANCE`` = 0.02 of test accuracy (10 of the synthetic set's 500 test examples): a seed
starts from the same weights on both devices (drawn on the CPU) and sees the same batches (batch
orders are drawn on the CPU too), so the runs differ only by float32 rounding (cuBLAS and MKL sum
in different orders; TF32 stays off, torch's default for matmul). Those differences grow over
the epochs but only move examples that sit on a decision boundary; on a well-trained set that is
well under 2 % of them. A larger gap means something else differs (a device-dependent RNG, a
kernel bug). The mean absolute gap is printed as well.

``--rehearse`` runs every step on a machine without CUDA, to test the script itself: Ray is told
there is one GPU (a logical one), trials fall back to the CPU, and step 1 expects ``cpu``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

TOLERANCE = 0.02
FRACTIONS = (1.0, 0.5, 0.25, 0.125)
STUDY = {
    "dataset": "synthetic",
    "model": {"modes": ["spectral-full", "spectral-eigvals", "dense"], "widths": [64, 256]},
    "training": {"epochs": 3, "batch_size": 256, "lr_eigvals": 0.05},
    "search": {"type": "grid", "repeats": 2},
    "retries": 0,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="a folder for the studies' results")
    parser.add_argument("--rehearse", action="store_true", help="no CUDA here: test the steps on the CPU")
    parser.add_argument("--throughput-trials", type=int, default=16)
    args = parser.parse_args()
    import ray

    from spectral_study.results import load_table

    expected = "cpu" if args.rehearse else "cuda"
    if not args.rehearse and not torch.cuda.is_available():
        print("error: torch sees no CUDA device (torch " + torch.__version__ + "); use --rehearse to test "
              "the steps on a CPU", file=sys.stderr)
        return 2
    gpus = 1 if args.rehearse else torch.cuda.device_count()
    ray.init(address="local", num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    failures = []
    try:
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU (rehearsal)'}, "
              f"Ray sees {ray.cluster_resources().get('GPU', 0):g} GPU, {ray.cluster_resources().get('CPU', 0):g} CPU")

        # 1. every trial of a quarter-GPU study ran on the GPU
        gpu = load_table(_run(args.work, "gpu-quarter", resources={"cpu": 1, "gpu": 0.25}), "trials")
        devices = sorted(set(gpu["device"]))
        ok = len(gpu) == 12 and set(gpu["status"]) == {"completed"} and all(d.startswith(expected) for d in devices)
        _step(failures, ok, f"1. gpu 0.25: {len(gpu)} trials, statuses {sorted(set(gpu['status']))}, "
                            f"devices {devices}, gpu_ids {sorted(set(gpu['gpu_ids']))} (expected {expected})")

        # 2. the same study on the CPU: same seeds, accuracies within the tolerance
        cpu = load_table(_run(args.work, "cpu", resources={"cpu": 1, "gpu": 0}, device="cpu"), "trials")
        keys = ["mode", "widths", "seed"]
        both = gpu.merge(cpu, on=keys, suffixes=("_gpu", "_cpu"))
        gap = (both["final_test_accuracy_gpu"] - both["final_test_accuracy_cpu"]).abs()
        _step(failures, len(both) == 12 and gap.max() <= TOLERANCE,
              f"2. GPU vs CPU, {len(both)} trials: final test accuracy gap max {gap.max():.4f}, "
              f"mean {gap.mean():.4f} (tolerance {TOLERANCE})")

        # 3. a GPU checkpoint restores on the CPU: an ordinary trial and a packed one (stacked on the GPU)
        for name, extra in (("ordinary", {}), ("packed", {"repeats": 3, "pack_seeds": True})):
            ok, line = _restore_on_cpu(extra, "cuda" if not args.rehearse else "cpu")
            _step(failures, ok, f"3. {name} trial: {line}")

        # 4. throughput
        print("4. throughput (synthetic 2000/500, spectral-full 784-256-10, 2 epochs, cpu 1 per trial):")
        n = args.throughput_trials
        for fraction in FRACTIONS:
            seconds, rows = _timed(args.work, f"tp-{fraction:g}", n, resources={"cpu": 1, "gpu": fraction})
            print(f"   gpu {fraction:<5g} {n} trials in {seconds:6.1f} s: {60 * rows / seconds:6.1f} trials/min")
        for fraction in (0.25, 1.0):
            seconds, rows = _timed(args.work, f"tp-packed-{fraction:g}", n, resources={"cpu": 1, "gpu": fraction},
                                   pack=8)
            print(f"   gpu {fraction:<5g} packed 8 seeds per trial ({n // 8} Tune trials): {rows} results in "
                  f"{seconds:6.1f} s: {60 * rows / seconds:6.1f} trials/min")
    finally:
        ray.shutdown()
    print("GPU check: " + ("passed" if not failures else f"FAILED ({'; '.join(failures)})"))
    return 1 if failures else 0


def _step(failures: list, ok: bool, line: str) -> None:
    print(("   ok   " if ok else "   FAIL ") + line, flush=True)
    if not ok:
        failures.append(line.split(":")[0])


def _run(work: Path, name: str, *, resources: dict, device: str = "auto", study: dict | None = None) -> str:
    from spectral_study.study import load_study
    from spectral_study.tune import run_study

    body = copy.deepcopy(study or STUDY)
    body.update(name=name, storage=str(work / "results"), resources=resources, device=device)
    path = work / f"{name}.yaml"
    path.write_text("# gpu_check study\n" + yaml.safe_dump(body, sort_keys=False))
    return run_study(load_study(path), echo=lambda *a: None).results


def _timed(work: Path, name: str, n: int, *, resources: dict, pack: int = 1) -> tuple[float, int]:
    from spectral_study.results import load_table

    study = {"dataset": "synthetic", "model": {"modes": ["spectral-full"], "widths": [256]},
             "training": {"epochs": 2, "batch_size": 256, "lr_eigvals": 0.05},
             "search": {"type": "grid", "repeats": n, **({"pack_seeds": True} if pack > 1 else {})},
             "retries": 0}
    if pack > 1:  # n seeds as n // pack packed trials: one cell per group of seeds, as `pack` seeds each
        study["model"]["activations"] = ["relu", "tanh", "elu", "linear"][: max(1, n // pack)]
        study["search"]["repeats"] = pack
    start = time.perf_counter()
    root = _run(work, name, resources=resources, study=study)
    return time.perf_counter() - start, len(load_table(root, "trials"))


def _restore_on_cpu(extra: dict, device: str) -> tuple[bool, str]:
    from spectral_study.checkpoint import load_checkpoint, save_checkpoint
    from spectral_study.trial import run_trial

    config = {"dataset": "synthetic", "mode": "spectral-full", "widths": [64], "epochs": 3, "lr_eigvals": 0.05,
              "device": device, **extra}
    states = []
    on_gpu = run_trial(config, lambda m, s: states.append(copy.deepcopy(s)))
    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(states[0], directory)  # after epoch 1, tensors on the GPU
        state = load_checkpoint(directory)  # every tensor mapped to the CPU
    on_cpu = run_trial({**config, "device": "cpu"}, checkpoint=state)
    pairs = list(zip(on_gpu.get("members", [on_gpu]), on_cpu.get("members", [on_cpu])))
    gaps = [abs(a["final_test_accuracy"] - b["final_test_accuracy"]) for a, b in pairs]
    ok = (on_cpu["restored_from_epoch"] == 1 and on_cpu["device"] == "cpu" and on_gpu["device"].startswith(device)
          and all(b["status"] == "completed" and b["epochs_completed"] == 3 for _, b in pairs)
          and max(gaps) <= TOLERANCE)
    return ok, (f"saved on {on_gpu['device']} after epoch 1, finished on {on_cpu['device']} "
                f"({len(pairs)} seed(s), restored_from_epoch {on_cpu['restored_from_epoch']}), "
                f"accuracy gap to the GPU's own finish max {max(gaps):.4f}")


if __name__ == "__main__":
    sys.exit(main())
