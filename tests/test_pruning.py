"""pruning: a pruned network computes what the original computes with those nodes silenced."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from spectral_study.data import load_dataset
from spectral_study.models import RestrictedLinear, build_model
from spectral_study.pruning import applicable_methods, node_scores, prune, spectral_pre
from spectral_study.spectral import SpectralLinear
from spectral_study.train import TrainConfig, train
from spectral_study.trial import TrialConfigError, run_trial
from spectral_study.vocabulary import PRUNING_METHODS as METHODS

ACT = {"linear": lambda x: x, "relu": F.relu, "tanh": torch.tanh, "elu": F.elu}
KINDS = [("spectral-full", "both"), ("spectral-eigvals", "receiving"), ("dense", "both"),
         ("dense-restricted", "both")]


def model64(mode, widths, activation="tanh", eigenvalues="both", seed=0):
    spec = {"mode": mode, "in_features": 12, "n_classes": 5, "widths": widths,
            "activation": activation, "eigenvalues": eigenvalues}
    return build_model(spec, seed=seed).double()


def silenced_forward(model, x, kept):
    """The original network with every hidden node not in ``kept`` set to 0 after its activation."""
    act = ACT[model.activation]
    for k, layer in enumerate(model.layers):
        x = layer(x)
        if k < len(model.layers) - 1:
            x = act(x)
            mask = torch.zeros(x.shape[1], dtype=torch.bool)
            mask[list(kept[k])] = True
            x = x * mask
    return x


@pytest.mark.parametrize("activation", list(ACT))
@pytest.mark.parametrize("widths", [[9], [9, 7]])
@pytest.mark.parametrize("mode,eigenvalues", KINDS)
def test_pruned_network_equals_original_with_nodes_silenced(mode, eigenvalues, widths, activation):
    model = model64(mode, widths, activation, eigenvalues)
    x = torch.randn(20, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for method in applicable_methods(model):
        result = prune(model, 0.4, method, generator=torch.Generator().manual_seed(2))
        assert result.nodes_kept == sum(widths) - math.floor(0.4 * sum(widths))
        assert [layer.out_features for layer in result.model.layers] == [*result.widths, 5]
        assert list(result.model.spec.widths) == list(result.widths)
        with torch.no_grad():
            torch.testing.assert_close(result.model(x), silenced_forward(model, x, result.kept),
                                       rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode,eigenvalues", KINDS)
def test_layers_keep_their_kind_flags_and_phi_layout(mode, eigenvalues):
    model = model64(mode, [9, 7], eigenvalues=eigenvalues)
    smaller = prune(model, 0.5, "connectivity").model
    for old, new in zip(model.layers, smaller.layers):
        assert type(old) is type(new)
        assert ([(n, p.requires_grad) for n, p in old.named_parameters()]
                == [(n, p.requires_grad) for n, p in new.named_parameters()])
        if isinstance(new, SpectralLinear):
            assert new.phi.is_contiguous() and new.eigenvalues == old.eigenvalues  # row-major, as built
            assert isinstance(new.lambda_in, torch.nn.Parameter) == (eigenvalues == "both")
        if isinstance(new, RestrictedLinear):  # the surviving frozen weights are still frozen
            frozen = torch.ones(new.frozen_weight.numel(), dtype=torch.bool)
            frozen[new.free_index] = False
            assert torch.equal(new.weight.view(-1)[frozen], new.frozen_weight.view(-1)[frozen])


def test_one_global_percentile_over_both_hidden_layers():
    model = model64("spectral-full", [4, 4])
    with torch.no_grad():  # layer 0's nodes all score below layer 1's but its best
        model.layers[0].lambda_out.copy_(torch.tensor([0.1, -0.2, 0.3, 5.0]))
        model.layers[1].lambda_out.copy_(torch.tensor([0.9, -0.8, 0.7, 0.6]))
    result = prune(model, 0.5, "eigenvalue")
    assert result.kept == ((3,), (0, 1, 2))  # 4 of 8 removed: the 3 lowest of layer 0, then 0.6
    assert result.model.layers[-1].out_features == 5


def test_each_layer_keeps_its_best_node_and_ties_go_in_order():
    model = model64("spectral-full", [3, 3])
    with torch.no_grad():
        model.layers[0].lambda_out.fill_(0.5)
        model.layers[1].lambda_out.copy_(torch.tensor([0.0, 0.0, 0.0]))
    assert prune(model, 0.5, "eigenvalue").kept == ((1, 2), (2,))  # ties: lower index goes first
    assert prune(model, 0.99, "eigenvalue").kept == ((2,), (2,))   # never an empty layer


def test_method_rankings_on_a_hand_built_network():
    model = model64("spectral-full", [3])
    with torch.no_grad():
        first, second = model.layers
        first.lambda_out.copy_(torch.tensor([-3.0, 1.0, 2.0]))
        first.lambda_in.zero_()
        first.phi.fill_(1.0)
        second.phi.copy_(torch.tensor([[1.0, 10.0, 0.0]] * 5))
    assert node_scores(model, "eigenvalue")[0].tolist() == [3.0, 1.0, 2.0]
    assert node_scores(model, "eigen-norm")[0].tolist() == pytest.approx([3 * 5 ** 0.5, 10 * 5 ** 0.5, 0.0])
    assert node_scores(model, "connectivity")[0].tolist() == [36.0, 12.0, 24.0]  # 12 inputs · |W|
    a, b = (node_scores(model, "random", generator=torch.Generator().manual_seed(3))[0] for _ in range(2))
    assert torch.equal(a, b) and a.shape == (3,)
    assert prune(model, 0.4, "eigenvalue").kept == ((0, 2),)  # ⌊0.4 · 3⌋ = 1 removed
    assert prune(model, 0.4, "eigen-norm").kept == ((0, 1),)


def test_eigenvalue_methods_refuse_dense_networks():
    dense = model64("dense", [6])
    for method in ("eigenvalue", "eigen-norm"):
        with pytest.raises(ValueError, match="needs a spectral network.*layer 0 is Linear"):
            prune(dense, 0.5, method)
    assert applicable_methods(dense) == ("connectivity", "random")


@pytest.mark.parametrize("bad,match", [(0.0, "strictly between 0 and 1"), (1.0, "strictly between"),
                                       ("magnitude", "unknown pruning method")])
def test_bad_arguments_are_refused(bad, match):
    model = model64("spectral-full", [6])
    with pytest.raises(ValueError, match=match):
        prune(model, bad, "eigenvalue") if isinstance(bad, float) else prune(model, 0.5, bad)


def test_a_perceptron_has_nothing_to_prune():
    with pytest.raises(ValueError, match="without a hidden layer"):
        prune(model64("spectral-full", []), 0.5, "eigenvalue")


def test_original_is_unchanged_and_rng_untouched():
    model = model64("spectral-full", [8, 6])
    before = copy.deepcopy(model.state_dict())
    state = torch.get_rng_state()
    for method in METHODS[:3]:
        prune(model, 0.5, method)
    assert torch.equal(torch.get_rng_state(), state)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [layer.out_features for layer in model.layers] == [8, 6, 5]


def test_spectral_pre_needs_frozen_phi():
    data = load_dataset("synthetic", synthetic_size=(64, 32))
    with pytest.raises(ValueError, match="φ frozen"):
        spectral_pre(build_model({"mode": "spectral-full", "widths": [8]}), data, [0.5], TrainConfig(),
                     retrain_epochs=1)


def test_spectral_pre_retraining_frees_everything_and_beats_no_retraining():
    data = load_dataset("synthetic", synthetic_size=(2000, 500))
    model = build_model({"mode": "spectral-eigvals", "widths": [32]}, seed=0)
    config = TrainConfig(epochs=2, lr_eigvals=0.05, seed=0)
    train(model, data, config)
    [pre] = spectral_pre(model, data, [0.9], config, retrain_epochs=1)
    [zero] = spectral_pre(model, data, [0.9], config, retrain_epochs=0)
    assert pre["nodes_kept"] == zero["nodes_kept"] == 4 and pre["protocol"] == "spectral-pre"
    assert pre["test_accuracy"] > zero["test_accuracy"]
    assert not model.layers[0].phi.requires_grad  # the trained model itself is left as it was


PRUNING = {"methods": list(METHODS), "fractions": [0.25, 0.5, 0.9], "retrain_epochs": 1}
# 2000 training samples: with 600, one retraining epoch is 3 steps and moves nothing.
SMALL = {"dataset": "synthetic", "synthetic_size": [2000, 500], "widths": [32], "epochs": 2,
         "lr_eigvals": 0.05, "pruning": PRUNING, "checkpoint_every": 1}
TINY = {**SMALL, "synthetic_size": [300, 100]}
EXPECTED = {  # mode: {protocol: methods}
    "dense": {"direct": ["connectivity", "random"]},
    "dense-restricted": {"direct": ["connectivity", "random"]},
    "spectral-full": {"spectral-post": list(METHODS)},
    "spectral-eigvecs": {"spectral-post": list(METHODS)},
    "spectral-eigvals": {"spectral-eigvals-post": list(METHODS), "spectral-pre": list(METHODS)},
}


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_run_trial_adds_pruning_rows_by_mode(mode):
    summary = run_trial({**SMALL, "mode": mode, **({"lr_eigvals": None} if mode in ("dense", "dense-restricted",
                                                                                      "spectral-eigvecs") else {})})
    rows = summary["pruning"]
    assert {(r["protocol"], r["method"], r["fraction"]) for r in rows} == {
        (protocol, method, fraction) for protocol, methods in EXPECTED[mode].items()
        for method in methods for fraction in PRUNING["fractions"]}
    assert len(rows) == len({(r["protocol"], r["method"], r["fraction"]) for r in rows})
    assert all(set(r) == {"epoch", "protocol", "method", "fraction", "nodes_kept", "test_accuracy"} for r in rows)
    assert {r["epoch"] for r in rows} == {2}  # after the last epoch
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows)
    assert {r["fraction"]: r["nodes_kept"] for r in rows} == {0.25: 24, 0.5: 16, 0.9: 4}
    if mode == "spectral-eigvals":
        at = {(r["protocol"], r["method"]): r["test_accuracy"] for r in rows if r["fraction"] == 0.9}
        assert at[("spectral-pre", "eigenvalue")] > at[("spectral-eigvals-post", "eigenvalue")]


def test_run_trial_without_pruning_or_hidden_layer_has_no_rows():
    assert run_trial({**TINY, "mode": "dense", "pruning": None})["pruning"] == []
    assert run_trial({**TINY, "mode": "spectral-full", "widths": []})["pruning"] == []


def test_repeats_average_pruning_accuracy_over_seeds():
    config = {**TINY, "mode": "dense", "pruning": {**PRUNING, "fractions": [0.5]}}
    single = [run_trial({**config, "seed": s})["pruning"] for s in (3, 4)]
    both = run_trial({**config, "seed": 3, "repeats": 2})["pruning"]
    for row, a, b in zip(both, *single):
        assert row["test_accuracy"] == pytest.approx((a["test_accuracy"] + b["test_accuracy"]) / 2, abs=1e-12)


@pytest.mark.parametrize("bad,match", [
    ({"methods": ["magnitude"], "fractions": [0.5], "retrain_epochs": 0},
     r"methods\[0\]: got 'magnitude'; expected one of: eigenvalue"),
    ({"methods": ["random"], "fractions": [1.0], "retrain_epochs": 0},
     r"fractions\[0\]: got 1.0; expected .*strictly between 0 and 1"),
    ({"methods": ["random"], "fractions": [0.5], "retrain_epochs": -1},
     "retrain_epochs: got -1; expected an integer >= 0"),
    ({"methods": ["random"], "fraction": [0.5]}, "fraction: got unknown key 'fraction'; .*did you mean 'fractions'"),
])
def test_run_trial_refuses_a_bad_pruning_config_before_training(bad, match):
    with pytest.raises(TrialConfigError, match=f"^pruning.{match}"):
        run_trial({**TINY, "mode": "dense", "pruning": bad})


@pytest.mark.parametrize("mode", ["spectral-eigvals", "spectral-full", "dense"])
def test_pruning_at_earlier_epochs_equals_a_trial_that_stopped_there(mode):
    """`at_epochs`: the rows of epoch 1 of a 3-epoch trial are those of a 1-epoch trial (training
    is deterministic); the retraining filter runs after the last epoch only."""
    pruning = {**PRUNING, "at_epochs": [1, 2]}
    long = run_trial({**TINY, "mode": mode, "epochs": 3, "pruning": pruning})["pruning"]
    short = run_trial({**TINY, "mode": mode, "epochs": 1, "pruning": PRUNING})["pruning"]
    assert {r["epoch"] for r in long} == {1, 2, 3}
    no_retrain = [r for r in short if r["protocol"] != "spectral-pre"]
    assert [r for r in long if r["epoch"] == 1] == no_retrain
    assert {r["protocol"] for r in long if r["epoch"] < 3} == {r["protocol"] for r in no_retrain}
    if mode == "spectral-eigvals":
        assert {r["epoch"] for r in long if r["protocol"] == "spectral-pre"} == {3}


def test_retrain_fractions_limit_the_costly_filter():
    pruning = {**PRUNING, "retrain_fractions": [0.9]}
    rows = run_trial({**TINY, "mode": "spectral-eigvals", "pruning": pruning})["pruning"]
    assert {r["fraction"] for r in rows if r["protocol"] == "spectral-pre"} == {0.9}
    assert {r["fraction"] for r in rows if r["protocol"] == "spectral-eigvals-post"} == set(PRUNING["fractions"])


def test_retrain_methods_limit_the_filter_to_the_rankings_named():
    pruning = {**PRUNING, "methods": ["eigenvalue", "eigen-norm", "random"],
               "retrain_methods": ["eigenvalue", "random"]}
    rows = run_trial({**TINY, "mode": "spectral-eigvals", "pruning": pruning})["pruning"]
    assert {r["method"] for r in rows if r["protocol"] == "spectral-pre"} == {"eigenvalue", "random"}
    assert {r["method"] for r in rows if r["protocol"] == "spectral-eigvals-post"} == {"eigenvalue", "eigen-norm",
                                                                                       "random"}


def test_pruning_rows_of_earlier_epochs_survive_a_restore():
    pruning = {**PRUNING, "at_epochs": [1]}
    config = {**TINY, "mode": "spectral-full", "epochs": 3, "pruning": pruning}
    states = []
    full = run_trial(config, lambda m, s: states.append(copy.deepcopy(s)))
    resumed = run_trial(config, checkpoint=states[1])  # restored after epoch 2
    assert resumed["pruning"] == full["pruning"]


@pytest.mark.parametrize("bad, match", [
    ({"at_epochs": [1, 3]}, r"pruning\.at_epochs\[1\]: got 3; expected an epoch from 1 to the training epochs \(2\)"),
    ({"retrain_fractions": [0.3]}, r"pruning\.retrain_fractions\[0\]: got 0.3; expected one of pruning.fractions"),
    ({"methods": ["eigenvalue", "random"], "retrain_methods": ["connectivity"]},
     r"pruning\.retrain_methods\[0\]: got 'connectivity'; expected one of pruning.methods \(eigenvalue, random\)"),
])
def test_bad_pruning_epochs_and_retrain_fractions_are_refused(bad, match):
    with pytest.raises(TrialConfigError, match=match):
        run_trial({**TINY, "mode": "dense", "pruning": {**PRUNING, **bad}})
