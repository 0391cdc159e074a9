"""Fractional GPUs: `gpu: 0.25` packs four trials on one GPU; without CUDA a trial falls back to
the CPU and records it. Tested with a logical GPU declared to Ray on this CPU-only machine."""
import pandas as pd
import ray

from spectral_study.results import load_results
from spectral_study.tune import run_study


def test_quarter_gpus_pack_four_trials_and_fall_back_to_cpu(make_study):
    """`gpu: 0.25` on a machine whose Ray declares one (logical) GPU: four trials at once; torch
    sees no CUDA device here, so each trial runs on the CPU and records it."""
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        spec = make_study("packed", model={"widths": [256]}, training={"epochs": 6}, search={"repeats": 2},
                          resources={"gpu": 0.25})
        trials = load_results(run_study(spec).results)["trials"]
    finally:
        ray.shutdown()
    assert len(trials) == 6 and set(trials["status"]) == {"completed"}
    assert set(trials["device"]) == {"cpu"} and set(trials["gpu_ids"]) == {"0"}
    end = pd.to_datetime(trials["finished_at"])
    start = end - pd.to_timedelta(trials["wall_seconds"], unit="s")
    events = sorted([(t, 1) for t in start] + [(t, -1) for t in end])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 4
