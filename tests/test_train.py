"""The training loop: learns, is deterministic on CPU, records divergence instead of crashing."""
import math

import pytest

from spectral_study.data import load_dataset
from spectral_study.models import ModelSpec, build_model
from spectral_study.train import TrainConfig, make_optimizer, train
from spectral_study.vocabulary import EPOCH_METRICS as METRICS


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", synthetic_size=(1000, 300))


@pytest.mark.parametrize("mode", ["spectral-eigvals", "spectral-full", "dense", "dense-restricted"])
def test_training_beats_chance_on_synthetic(synthetic, mode):
    model = build_model(ModelSpec(mode=mode, widths=(32,)), seed=0)
    result = train(model, synthetic, TrainConfig(epochs=4, lr=3e-3, lr_eigvals=0.05, batch_size=64))
    assert result.status == "completed"
    assert result.final["test_accuracy"] > 0.5  # chance is 0.1


def test_report_is_called_once_per_epoch_with_every_metric(synthetic):
    calls = []
    train(build_model(ModelSpec(mode="dense", widths=(8,))), synthetic, TrainConfig(epochs=3),
          report=lambda metrics, state: calls.append((metrics, state)))
    assert [m["epoch"] for m, _ in calls] == [1, 2, 3]
    for metrics, state in calls:
        assert set(METRICS) <= set(metrics)
        assert state["epoch"] == metrics["epoch"] and "model" in state and "optimizer" in state


def test_same_seed_same_metrics_on_cpu(synthetic):
    def run():
        model = build_model(ModelSpec(mode="spectral-full", widths=(16,)), seed=4)
        history = train(model, synthetic, TrainConfig(epochs=3, seed=4, lr_eigvals=0.02)).history
        return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in history]

    assert run() == run()


def test_different_seed_different_shuffle(synthetic):
    def final_loss(seed):
        model = build_model(ModelSpec(mode="dense", widths=(16,)), seed=0)
        return train(model, synthetic, TrainConfig(epochs=1, seed=seed)).final["train_loss"]

    assert final_loss(0) != final_loss(1)


def test_divergence_ends_the_run_with_status_and_metrics(synthetic):
    model = build_model(ModelSpec(mode="dense", widths=(16,)), seed=0)
    result = train(model, synthetic, TrainConfig(optimizer="sgd", lr=1e12, epochs=5))
    assert result.status == "diverged"
    assert 1 <= len(result.history) < 5
    assert not math.isfinite(result.history[-1]["train_loss"])


def test_eigenvalues_get_their_own_learning_rate():
    model = build_model(ModelSpec(mode="spectral-full", widths=(4,)))
    optimizer = make_optimizer(model, TrainConfig(lr=1e-3, lr_eigvals=0.05))
    by_lr = {group["lr"]: sum(p.numel() for p in group["params"]) for group in optimizer.param_groups}
    eigvals = (784 + 4) + (4 + 10)
    assert by_lr[0.05] == eigvals
    assert by_lr[1e-3] == sum(p.numel() for p in model.parameters()) - eigvals


@pytest.mark.parametrize("optimizer", ["adam", "adamax", "sgd"])
def test_every_optimizer_reduces_the_loss(synthetic, optimizer):
    model = build_model(ModelSpec(mode="spectral-eigvals", widths=(16,)), seed=1)
    result = train(model, synthetic, TrainConfig(optimizer=optimizer, lr=0.01, lr_eigvals=0.05, epochs=3))
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("bad,match", [
    (dict(optimizer="rmsprop"), "^optimizer: got 'rmsprop'; expected one of: adam, adamax, sgd"),
    (dict(batch_size=0), "^batch_size: got 0; expected a positive integer"),
    (dict(lr=-1.0), "^lr: got -1.0; expected a positive number"),
    (dict(eval_batch_size=0), "eval_batch_size"),
])
def test_bad_train_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


@pytest.mark.parametrize("optimizer", ["adam", "adamax"])
def test_adam_eps_reaches_the_optimizer(optimizer):
    model = build_model(ModelSpec(mode="spectral-full", widths=(4,)))
    assert make_optimizer(model, TrainConfig(optimizer=optimizer)).defaults["eps"] == 1e-8  # torch's
    assert make_optimizer(model, TrainConfig(optimizer=optimizer, adam_eps=1e-7)).defaults["eps"] == 1e-7
