"""Test helpers: small real results folders for the analysis tests, built once per test session.

    from analysis import testing

    @pytest.fixture(scope="module")
    def curve_results(tmp_path_factory):
        return testing.results(tmp_path_factory, "curves")

Each folder holds tiny real trials (`run_trial` on the synthetic data set, no Ray) written by
the real `ResultsWriter`, as a study would write them. A folder is built the first time a test
module asks for it and reused by the others (under the session's base temporary directory), so
splitting the tests into one module per script costs no extra training. Imports torch: for
tests only.
"""
from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: `python -m analysis.…` runs from here
BASE = {"dataset": "synthetic", "synthetic_size": [400, 200], "epochs": 2, "device": "cpu", "lr": 0.01}
SEEDS = (0, 1, 2)
CURVE_MODES = ("spectral-eigvals", "dense", "dense-restricted")
CURVE_WIDTHS = (8, 32)
PERCEPTRON_SEEDS = (0, 1)
SUBSET_SEEDS = (1, 2, 3)
PRUNING_MODES = ("spectral-eigvals", "spectral-full", "dense")
# Pruned after epoch 1 and at the end of training (epoch 2); spectral-pre retrains at the end only.
PRUNING = {"methods": ["eigenvalue", "connectivity", "random"], "fractions": [0.25, 0.5, 0.75, 0.9],
           "retrain_epochs": 1, "retrain_fractions": [0.5, 0.9], "at_epochs": [1]}


def curve_configs() -> dict[str, dict]:
    """A width study: three modes, two widths, three seeds."""
    return {f"{mode}_w{width}_s{seed}": {"mode": mode, "widths": [width], "seed": seed}
            for mode in CURVE_MODES for width in CURVE_WIDTHS for seed in SEEDS}


def perceptron_configs() -> dict[str, dict]:
    """A perceptron study (no hidden layer): dense-restricted with three subset seeds per seed."""
    runs = [("spectral-eigvals", None), ("dense", None)] + [("dense-restricted", s) for s in SUBSET_SEEDS]
    return {f"{mode}_ss{subset}_s{seed}": {"mode": mode, "widths": [], "seed": seed, "subset_seed": subset}
            for mode, subset in runs for seed in PERCEPTRON_SEEDS}


def pruning_configs() -> dict[str, dict]:
    """A pruning study that also prunes after epoch 1: three modes (every protocol), three seeds."""
    return {f"{mode}_s{seed}": {"mode": mode, "widths": [16], "seed": seed, "activation": "tanh",
                                "pruning": PRUNING}
            for mode in PRUNING_MODES for seed in SEEDS}


BUILDERS = {"curves": curve_configs, "weights": perceptron_configs, "pruning": pruning_configs}


def write(root: Path, study: str, configs: dict[str, dict], *, status: dict[str, str] | None = None) -> Path:
    """Run each config (on top of `BASE`) and write it under ``root`` as trial ``trial_id``;
    ``status`` overrides some trials' status (e.g. {"t1": "diverged"})."""
    from spectral_study.results import ResultsWriter
    from spectral_study.trial import run_trial

    writer = ResultsWriter(root)
    for trial_id, config in configs.items():
        writer.write_trial(trial_id, study, run_trial({**BASE, **config}), status=(status or {}).get(trial_id))
    return root


def write_failed(root: Path, study: str, trial_id: str, config: dict) -> Path:
    """A trial that raised before it returned: its row holds its config, status "failed"."""
    from spectral_study.results import ResultsWriter

    ResultsWriter(root).write_trial(trial_id, study, None, error="RuntimeError: boom",
                                    extra={"config": {**BASE, **config}})
    return root


def results(tmp_path_factory, name: str) -> Path:
    """The results folder ``name`` (a key of `BUILDERS`), built on first use in this session."""
    root = Path(tmp_path_factory.getbasetemp()) / "analysis-results" / name
    if not root.is_dir():  # built aside and renamed: a build that failed half-way is not reused
        partial = root.with_name(f".{name}-partial")
        shutil.rmtree(partial, ignore_errors=True)
        write(partial, f"{name}-test", BUILDERS[name]())
        partial.rename(root)
    return root


def check_png(path: Path, *, min_width: int = 600, min_height: int = 400) -> tuple[int, int]:
    """Assert ``path`` is a real figure of at least that size; returns (width, height)."""
    import matplotlib.image

    assert path.is_file(), path
    assert path.stat().st_size > 10_000, f"{path} is only {path.stat().st_size} bytes"
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width >= min_width and height >= min_height, (path, width, height)
    return width, height


def check_intervals(frame) -> None:
    """Assert every row's interval holds its mean, and names its kind."""
    assert (frame["ci_low"] <= frame["mean"] + 1e-12).all()
    assert (frame["mean"] <= frame["ci_high"] + 1e-12).all()
    if "interval" in frame.columns:
        assert frame["interval"].str.match(r"95 % (t-interval|bootstrap)|no interval").all()
