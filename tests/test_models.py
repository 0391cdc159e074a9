"""Networks for every learning mode: exact parameter counts, frozen weights stay frozen."""
import pytest
import torch

from spectral_study.data import load_dataset
from spectral_study.models import ModelSpec, RestrictedLinear, build_model, count_parameters
from spectral_study.spectral import SpectralLinear
from spectral_study.train import TrainConfig, train
from spectral_study.vocabulary import ACTIVATIONS, MODES


def expected_counts(mode: str, n: int, eigenvalues: str, bias: bool = True) -> tuple[int, int]:
    """784–n–10 counted by hand, layer by layer (SCIENCE.md's table of learning modes)."""
    sizes = [(784, n), (n, 10)]
    trainable = total = 0
    for n_in, n_out in sizes:
        weights = n_in * n_out
        eigvals = n_in + n_out if eigenvalues == "both" else n_out
        b = n_out if bias else 0
        if mode == "spectral-eigvals":
            trainable += eigvals + b
            total += weights + eigvals + b
        elif mode == "spectral-eigvecs":
            trainable += weights + b
            total += weights + eigvals + b
        elif mode == "spectral-full":
            trainable += weights + eigvals + b
            total += weights + eigvals + b
        elif mode == "dense":
            trainable += weights + b
            total += weights + b
        else:  # dense-restricted: as many free weights as eigenvalues-only has eigenvalues
            trainable += min(eigvals, weights) + b  # (capped: a 1 → 10 layer has 10 weights)
            total += weights + b
    return trainable, total


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("eigenvalues", ["both", "receiving"])
@pytest.mark.parametrize("n", [1, 32, 100])
def test_count_parameters_784_n_10(mode, eigenvalues, n):
    model = build_model(ModelSpec(mode=mode, widths=(n,), eigenvalues=eigenvalues))
    assert count_parameters(model) == expected_counts(mode, n, eigenvalues)


def test_count_parameters_by_hand_literals():
    """A few literal values, so the test does not only restate the formula."""
    both = dict(widths=(256,), eigenvalues="both")
    assert count_parameters(build_model(ModelSpec(mode="spectral-eigvals", **both))) == (1572, 204836)
    assert count_parameters(build_model(ModelSpec(mode="dense", **both))) == (203530, 203530)
    assert count_parameters(build_model(ModelSpec(mode="dense-restricted", **both))) == (1572, 203530)
    receiving = dict(widths=(256,), eigenvalues="receiving", bias=False)
    assert count_parameters(build_model(ModelSpec(mode="spectral-eigvals", **receiving))) == (266, 203530)


def test_perceptron_has_no_hidden_layer():
    model = build_model(ModelSpec(mode="spectral-eigvals", widths=()))
    assert len(model.layers) == 1
    assert count_parameters(model) == (784 + 10 + 10, 7840 + 784 + 10 + 10)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_and_activation_builds_and_runs(mode, activation):
    model = build_model(ModelSpec(mode=mode, widths=(8, 6), activation=activation, in_features=12, n_classes=3))
    assert model(torch.rand(4, 12)).shape == (4, 3)
    kinds = {"dense": torch.nn.Linear, "dense-restricted": RestrictedLinear}
    assert all(isinstance(layer, kinds.get(mode, SpectralLinear)) for layer in model.layers)


def test_learning_modes_train_the_right_tensors():
    eigvals = build_model(ModelSpec(mode="spectral-eigvals", widths=(8,)))
    assert all(not layer.phi.requires_grad and layer.lambda_out.requires_grad for layer in eigvals.layers)
    eigvecs = build_model(ModelSpec(mode="spectral-eigvecs", widths=(8,)))
    assert all(layer.phi.requires_grad and not layer.lambda_out.requires_grad
               and not layer.lambda_in.requires_grad for layer in eigvecs.layers)
    full = build_model(ModelSpec(mode="spectral-full", widths=(8,)))
    assert all(p.requires_grad for p in full.parameters())


def test_dense_restricted_frozen_weights_are_bit_identical_after_training():
    data = load_dataset("synthetic", synthetic_size=(400, 100))
    model = build_model(ModelSpec(mode="dense-restricted", widths=(16,)), seed=3)
    before = [layer.weight.detach().clone() for layer in model.layers]
    # SGD with momentum and Adam with large steps: neither may touch the frozen entries.
    for optimizer in ("sgd", "adam"):
        train(model, data, TrainConfig(optimizer=optimizer, lr=0.5, epochs=2, batch_size=64))
    for layer, w0 in zip(model.layers, before):
        w1 = layer.weight.detach()
        free = torch.zeros(w1.numel(), dtype=torch.bool)
        free[layer.free_index] = True
        free = free.view_as(w1)
        assert torch.equal(w1[~free], w0[~free])  # bit for bit
        assert not torch.equal(w1[free], w0[free])  # and the free ones did train
        assert int(free.sum()) == layer.free_weight.numel()


def test_dense_restricted_subset_seed_changes_only_the_subset():
    a = build_model(ModelSpec(mode="dense-restricted", widths=(16,), subset_seed=1), seed=0)
    b = build_model(ModelSpec(mode="dense-restricted", widths=(16,), subset_seed=2), seed=0)
    torch.testing.assert_close(a.layers[0].weight, b.layers[0].weight)  # same initial weights
    assert not torch.equal(a.layers[0].free_index, b.layers[0].free_index)


def test_same_seed_same_model():
    a = build_model(ModelSpec(mode="spectral-full", widths=(16,)), seed=7)
    b = build_model(ModelSpec(mode="spectral-full", widths=(16,)), seed=7)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("bad,match", [
    (dict(mode="spectral"), "^mode: got 'spectral'; expected one of: spectral-eigvals"),
    (dict(mode="dense", activation="gelu"), "^activation: got 'gelu'; expected one of: linear"),
    (dict(mode="dense", widths=(0,)), r"^widths\[0\]: got 0; expected a positive integer"),
    (dict(mode="spectral-full", eigenvalues="sending"),
     "^eigenvalues: got 'sending'; expected one of: both, receiving"),
    (dict(mode="dense", dense_init="kaiming"), "^dense_init: got 'kaiming'; expected one of: uniform, glorot"),
])
def test_bad_specs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        ModelSpec(**bad)
