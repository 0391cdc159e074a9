"""run_trial: one trial from a plain config; the paper's claim C1 at one width on real data."""
import copy
import dataclasses
import math
import subprocess
import sys

import pytest
import torch

from spectral_study.data import load_dataset
from spectral_study.trial import TrialConfig, TrialConfigError, member_groups, run_trial

SMALL = {"dataset": "synthetic", "synthetic_size": [600, 200], "widths": [16], "epochs": 2,
         "lr_eigvals": 0.05, "checkpoint_every": 1}


def test_summary_holds_config_counts_accuracy_and_spectra():
    epochs = []
    summary = run_trial({**SMALL, "mode": "spectral-eigvals"}, lambda m, s: epochs.append(m))
    assert summary["status"] == "completed"
    assert summary["epochs_completed"] == len(epochs) == len(summary["history"]) == 2
    assert summary["trainable_params"] == (784 + 16 + 16) + (16 + 10 + 10)
    assert summary["config"]["widths"] == [16] and summary["config"]["mode"] == "spectral-eigvals"
    assert summary["best_test_accuracy"] >= summary["final_test_accuracy"] > 0.3
    assert summary["device"] == "cpu" and summary["wall_seconds"] > 0
    layer0_out = [r for r in summary["spectra"] if r["layer"] == 0 and r["side"] == "out"]
    assert [r["node"] for r in layer0_out] == list(range(16))
    assert len(summary["spectra"]) == (784 + 16) + (16 + 10)


def test_dense_trial_has_no_spectra():
    assert run_trial({**SMALL, "mode": "dense"})["spectra"] == []


def test_same_config_same_result():
    a, b = run_trial({**SMALL, "mode": "spectral-full"}), run_trial({**SMALL, "mode": "spectral-full"})
    assert [h["test_accuracy"] for h in a["history"]] == [h["test_accuracy"] for h in b["history"]]


def test_repeats_train_seeds_in_lockstep_and_report_the_mean():
    single = [run_trial({**SMALL, "mode": "dense", "seed": s})["final_test_accuracy"] for s in (5, 6)]
    both = run_trial({**SMALL, "mode": "dense", "seed": 5, "repeats": 2})
    assert both["final_test_accuracy"] == pytest.approx(sum(single) / 2, abs=1e-12)


def test_checkpoint_continues_instead_of_restarting():
    states = []
    full = run_trial({**SMALL, "mode": "spectral-full", "epochs": 3}, lambda m, s: states.append(copy.deepcopy(s)))
    resumed_epochs = []
    resumed = run_trial({**SMALL, "mode": "spectral-full", "epochs": 3},
                        lambda m, s: resumed_epochs.append(m["epoch"]), checkpoint=states[0])
    assert resumed_epochs == [2, 3]  # epoch 1 is not run again
    assert [h["test_accuracy"] for h in resumed["history"]] == [h["test_accuracy"] for h in full["history"]]


def test_checkpoint_of_the_last_epoch_reports_without_training_again():
    """A driver that died after the last epoch's checkpoint: the resumed trial trains no more."""
    states = []
    full = run_trial({**SMALL, "mode": "dense"}, lambda m, s: states.append(copy.deepcopy(s)))
    reported = []
    again = run_trial({**SMALL, "mode": "dense"}, lambda m, s: reported.append(m["epoch"]), checkpoint=states[-1])
    assert reported == [2] and again["epochs_completed"] == 2
    assert [h["test_accuracy"] for h in again["history"]] == [h["test_accuracy"] for h in full["history"]]


def test_diverged_trial_is_a_result():
    summary = run_trial({**SMALL, "mode": "dense", "optimizer": "sgd", "lr": 1e12, "epochs": 4})
    assert summary["status"] == "diverged" and summary["epochs_completed"] < 4


@pytest.mark.parametrize("bad,match", [
    ({"mdoe": "dense"}, "^mdoe: got unknown key 'mdoe'; .*did you mean 'mode'"),
    ({"mode": "dense", "device": "tpu"}, "^device: got 'tpu'; expected one of: auto, cpu, cuda"),
    ({"mode": "nope"}, "^mode: got 'nope'"),
    ({"mode": "dense", "optimizer": "lbfgs"}, "^optimizer: got 'lbfgs'"),
    ({"mode": "dense", "repeats": 0}, "repeats"),
    ({"mode": "dense", "widths": "a-b"}, "widths"),
])
def test_bad_trial_configs_name_the_problem(bad, match):
    with pytest.raises(TrialConfigError, match=match):
        run_trial({**SMALL, **bad})


def test_widths_in_optuna_string_form_are_decoded():
    summary = run_trial({**SMALL, "mode": "dense", "widths": "16-8", "epochs": 1})
    assert summary["config"]["widths"] == [16, 8]
    assert summary["trainable_params"] == 784 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10


def test_injected_failures_for_fault_tests():
    states = []
    with pytest.raises(RuntimeError, match="first attempt"):
        run_trial({**SMALL, "mode": "dense", "inject_failure": "first_attempt"},
                  lambda m, s: states.append(copy.deepcopy(s)))
    assert len(states) == 1  # it failed after reporting epoch 1: a retry has a checkpoint
    retried = run_trial({**SMALL, "mode": "dense", "inject_failure": "first_attempt"}, checkpoint=states[0])
    assert retried["status"] == "completed" and retried["epochs_completed"] == 2
    with pytest.raises(RuntimeError, match="always"):
        run_trial({**SMALL, "mode": "dense", "inject_failure": "always"}, checkpoint=states[0])


def test_last_report_carries_the_summary():
    states = []
    summary = run_trial({**SMALL, "mode": "dense"}, lambda m, s: states.append(s))
    assert [s["summary"] is None for s in states] == [True, False]
    assert states[-1]["summary"] is summary


def test_cli_trial_prints_the_summary(tmp_path):
    config = tmp_path / "trial.yaml"
    config.write_text("dataset: synthetic\nsynthetic_size: [300, 100]\nmode: spectral-eigvals\n"
                      "widths: [8]\nepochs: 1\n")
    done = subprocess.run([sys.executable, "-m", "spectral_study.cli", "trial", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "status           completed" in done.stdout and "trainable" in done.stdout


def test_cli_trial_bad_config_exits_2_naming_the_file(tmp_path):
    config = tmp_path / "trial.yaml"
    config.write_text("dataset: synthetic\nmode: spectral-eigvals\nwidth: [8]\n")
    done = subprocess.run([sys.executable, "-m", "spectral_study.cli", "trial", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert str(config) in done.stderr and "width" in done.stderr and "Traceback" not in done.stderr


def test_importing_the_package_does_not_import_ray():
    code = "import sys, spectral_study, spectral_study.trial; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.slow
def test_claim_c1_on_real_fashion_mnist_784_256_10_relu():
    """The paper's C1 at one width, 5 epochs on the real data (≈ 25 s on 2 cores).

    dense and spectral-full reach ≥ 0.85; eigenvalues-only beats direct training restricted to
    the same number of free parameters. Each mode gets the learning rate that suits it
    (eigenvalues 0.03; the restricted weights 0.03, its best of {1e-3, 0.03, 0.1} at 5 epochs).
    """
    base = {"dataset": "fashion-mnist", "widths": [256], "activation": "relu", "epochs": 5,
            "batch_size": 256, "seed": 0}
    acc = {mode: run_trial({**base, "mode": mode, **lrs})
           for mode, lrs in {"dense": {"lr": 1e-3}, "spectral-full": {"lr": 1e-3, "lr_eigvals": 0.01},
                             "spectral-eigvals": {"lr": 1e-3, "lr_eigvals": 0.03},
                             "dense-restricted": {"lr": 0.03}}.items()}
    assert acc["dense"]["final_test_accuracy"] >= 0.85
    assert acc["spectral-full"]["final_test_accuracy"] >= 0.85
    assert acc["spectral-eigvals"]["trainable_params"] == acc["dense-restricted"]["trainable_params"]
    assert acc["spectral-eigvals"]["final_test_accuracy"] > acc["dense-restricted"]["final_test_accuracy"]


@pytest.mark.parametrize("epochs", [1, 4])  # diverged at its last epoch, or before it
def test_a_diverged_trial_restored_from_its_checkpoint_stays_diverged(epochs):
    """The divergence flag travels with the checkpoint: restored from the epoch it diverged at,
    the trial reports "diverged" again, trains no further and prunes nothing (before the fix, a
    trial that diverged at its last epoch came back "completed" and pruning crashed on NaN)."""
    config = {**SMALL, "mode": "spectral-full", "optimizer": "sgd", "lr": 1e12, "epochs": epochs,
              "pruning": {"methods": ["eigenvalue"], "fractions": [0.5]}}
    states = []
    first = run_trial(config, lambda m, s: states.append(copy.deepcopy(s)))
    assert first["status"] == "diverged"
    again = run_trial(config, checkpoint=states[-1])
    assert again["status"] == "diverged" and again["pruning"] == []
    assert again["epochs_completed"] == first["epochs_completed"]


def test_wall_seconds_and_attempts_add_up_over_restores():
    states = []
    run_trial({**SMALL, "mode": "dense", "epochs": 3}, lambda m, s: states.append(copy.deepcopy(s)))
    checkpoint = {**states[0], "elapsed_seconds": 100.0}  # as if the first attempt took 100 s
    resumed = run_trial({**SMALL, "mode": "dense", "epochs": 3}, checkpoint=checkpoint)
    assert resumed["attempts"] == 2 and resumed["restored_from_epoch"] == 1
    assert resumed["wall_seconds"] > 100.0
    twice = run_trial({**SMALL, "mode": "dense", "epochs": 3}, checkpoint={**checkpoint, "attempts": 2})
    assert twice["attempts"] == 3


# ------------------------------------------------------------------ seeds as members of one trial

OWN_FIELDS = ("pack_seeds", "member_training")  # what a packed seed's config says beyond its own trial's
PACK_PRUNING = {"methods": ["eigenvalue", "eigen-norm", "connectivity", "random"], "fractions": [0.5],
                "retrain_epochs": 1, "at_epochs": [1]}


@pytest.fixture
def float64():
    """Networks and data in float64, so that stacked (bmm) and separate (mm) products agree to
    1e-12 and any real difference between a packed seed and its own trial shows."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    data = load_dataset("synthetic", synthetic_size=(300, 100))
    yield dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test.double())
    torch.set_default_dtype(before)


def _without(config: dict, keys=OWN_FIELDS) -> dict:
    return {k: v for k, v in config.items() if k not in keys}


def assert_rows_close(ours: list[dict], theirs: list[dict], tol: float = 1e-12) -> None:
    """Same rows, same keys; numbers within ``tol`` (seconds excepted), the rest equal."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys()
        for key in a:
            if key == "epoch_seconds":
                continue
            if isinstance(a[key], float) and isinstance(b[key], float):
                assert a[key] == pytest.approx(b[key], abs=tol, nan_ok=True), key
            else:
                assert a[key] == b[key], key


def assert_same_result(member: dict, alone: dict, tol: float = 1e-12) -> None:
    assert _without(member["config"]) == _without(alone["config"])
    for key in ("status", "epochs_completed", "trainable_params", "total_params"):
        assert member[key] == alone[key], key
    for table in ("history", "spectra", "weights", "pruning"):
        assert_rows_close(member[table], alone[table], tol)


@pytest.mark.parametrize("mode", ["spectral-eigvals", "spectral-eigvecs", "spectral-full", "dense",
                                  "dense-restricted"])
def test_packed_seeds_are_the_trials_they_would_be_alone(float64, mode):
    """Each seed of a packed trial, stacked (bmm) or one by one, is its own trial: same config but
    the packing fields, same epochs, spectra and pruning rows (the retraining filter included)."""
    base = {"dataset": "synthetic", "mode": mode, "widths": [8], "epochs": 2, "batch_size": 64, "seed": 3,
            "lr_eigvals": 0.05 if mode in ("spectral-eigvals", "spectral-full") else None, "pruning": PACK_PRUNING}
    alone = [run_trial({**base, "seed": seed}, data=float64) for seed in (3, 4, 5)]
    for training in ("batched", "sequential"):
        packed = run_trial({**base, "repeats": 3, "pack_seeds": True, "member_training": training}, data=float64)
        assert [m["config"]["seed"] for m in packed["members"]] == [3, 4, 5]
        assert all(m["config"]["repeats"] == 1 and m["pruning"] for m in packed["members"])
        for member, own in zip(packed["members"], alone):
            assert_same_result(member, own)


def test_packed_perceptrons_keep_their_own_weights(float64):
    base = {"dataset": "synthetic", "mode": "spectral-eigvals", "widths": [], "epochs": 1, "lr_eigvals": 0.05}
    packed = run_trial({**base, "seed": 1, "repeats": 2, "pack_seeds": True, "member_training": "batched"},
                       data=float64)
    for member, seed in zip(packed["members"], (1, 2)):
        alone = run_trial({**base, "seed": seed}, data=float64)
        assert len(member["weights"]) == 7840
        assert_same_result(member, alone)


@pytest.mark.parametrize("training", ["batched", "sequential"])
def test_repeats_report_the_same_mean_however_the_seeds_train(float64, training):
    config = {**SMALL, "mode": "spectral-full", "seed": 5, "repeats": 2, "pruning": PACK_PRUNING}
    single = [run_trial({**config, "seed": s, "repeats": 1}, data=float64) for s in (5, 6)]
    both = run_trial({**config, "member_training": training}, data=float64)
    assert "members" not in both and both["config"]["repeats"] == 2
    assert both["final_test_accuracy"] == pytest.approx(sum(s["final_test_accuracy"] for s in single) / 2, abs=1e-12)
    for row, a, b in zip(both["pruning"], *(s["pruning"] for s in single)):
        assert row["test_accuracy"] == pytest.approx((a["test_accuracy"] + b["test_accuracy"]) / 2, abs=1e-12)
    assert_rows_close(both["spectra"], single[0]["spectra"])  # the first seed's, as before


@pytest.mark.parametrize("saved_as,restored_as", [("batched", "batched"), ("batched", "sequential"),
                                                  ("sequential", "batched")])
def test_a_packed_trial_restores_every_seed_from_its_checkpoint(float64, saved_as, restored_as):
    """Each seed's checkpoint state is the one it has alone, so a retry restores every seed, also
    when it trains the other way (a GPU's checkpoint, stacked, restored on a CPU, one by one)."""
    config = {**SMALL, "mode": "spectral-full", "epochs": 3, "repeats": 3, "pack_seeds": True,
              "pruning": PACK_PRUNING}
    states = []
    full = run_trial({**config, "member_training": saved_as}, lambda m, s: states.append(copy.deepcopy(s)),
                     data=float64)
    assert len(states[0]["trainers"]) == 3 and len(states[0]["members"]) == 3
    epochs = []
    resumed = run_trial({**config, "member_training": restored_as}, lambda m, s: epochs.append(m["epoch"]),
                        checkpoint=states[0], data=float64)
    assert epochs == [2, 3] and resumed["restored_from_epoch"] == 1 and resumed["attempts"] == 2
    for member, own in zip(resumed["members"], full["members"]):
        assert member["attempts"] == 2
        assert_same_result(member, own)


@pytest.mark.parametrize("training", ["batched", "sequential"])
def test_a_seed_that_diverges_ends_alone_and_the_others_train_on(float64, training):
    """Seed 1's weights are NaN after epoch 1: it diverges at epoch 2 (no pruning rows, like a
    diverged trial alone); seeds 0 and 2 train all three epochs, exactly as without it."""
    config = {**SMALL, "mode": "spectral-full", "epochs": 3, "repeats": 3, "pack_seeds": True,
              "member_training": training, "pruning": PACK_PRUNING}
    states = []
    full = run_trial(config, lambda m, s: states.append(copy.deepcopy(s)), data=float64)
    poisoned = copy.deepcopy(states[0])
    for tensor in poisoned["trainers"][1]["model"].values():
        tensor.fill_(math.nan)
    later = []
    summary = run_trial(config, lambda m, s: later.append(s), checkpoint=poisoned, data=float64)
    assert [m["status"] for m in summary["members"]] == ["completed", "diverged", "completed"]
    diverged = summary["members"][1]
    assert diverged["epochs_completed"] == 2 and diverged["pruning"] == []
    for k in (0, 2):
        assert_same_result(summary["members"][k], full["members"][k])
    # The diverged seed's state stays the one it diverged with, in every later checkpoint.
    assert later[-1]["trainers"][1]["epoch"] == 2 and later[-1]["trainers"][1]["diverged"]
    again = run_trial(config, checkpoint=copy.deepcopy(later[-1]), data=float64)
    assert [m["status"] for m in again["members"]] == ["completed", "diverged", "completed"]


def test_checkpoint_every_k_epochs_and_with_the_last():
    states = []
    run_trial({**SMALL, "mode": "dense", "epochs": 5, "checkpoint_every": 2}, lambda m, s: states.append(s))
    assert [s is not None for s in states] == [False, True, False, True, True]
    assert states[-1]["summary"] is not None


def test_a_retry_continues_from_the_last_checkpoint_losing_less_than_checkpoint_every():
    config = {**SMALL, "mode": "dense", "epochs": 5, "checkpoint_every": 3, "inject_failure": "first_attempt"}
    states = []
    with pytest.raises(RuntimeError, match="first attempt"):
        run_trial(config, lambda m, s: states.append(copy.deepcopy(s)))
    assert len(states) == 3 and states[-1]["history"][-1]["epoch"] == 3  # it failed after epoch 3's checkpoint
    epochs = []
    retried = run_trial(config, lambda m, s: epochs.append(m["epoch"]), checkpoint=states[-1])
    assert epochs == [4, 5] and retried["restored_from_epoch"] == 3
    clean = run_trial({**config, "inject_failure": None})
    assert [h["test_accuracy"] for h in retried["history"]] == [h["test_accuracy"] for h in clean["history"]]


def test_member_groups_stack_on_a_gpu_and_on_a_cpu_for_small_layers():
    config = TrialConfig(seed=4, repeats=3)
    small, large = (784, 768, 10), (784, 1024, 10)  # 602k and 803k weights in the first layer
    assert member_groups(config, torch.device("cpu"), small) == [(4, 5, 6)]
    assert member_groups(config, torch.device("cpu"), large) == [(4,), (5,), (6,)]
    assert member_groups(config, torch.device("cuda"), large) == [(4, 5, 6)]
    assert member_groups(config.replace(member_training="batched"), torch.device("cpu"), large) == [(4, 5, 6)]
    assert member_groups(config.replace(member_training="sequential"), torch.device("cuda"), small) == [
        (4,), (5,), (6,)]
    assert member_groups(TrialConfig(seed=2), torch.device("cuda"), small) == [(2,)]
    assert [c.seed for c in config.members()] == [4, 5, 6] and {c.repeats for c in config.members()} == {1}
