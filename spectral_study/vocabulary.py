"""Every name a study, a trial or a results table may use, defined once.

No torch, Ray or pyarrow here: the study validator, the trial config, the results schema and the
analysis scripts all import these tuples, so a new mode or metric is one edit.
"""
from __future__ import annotations

# ------------------------------------------------------------------------------------ models

MODES = ("spectral-eigvals", "spectral-eigvecs", "spectral-full", "dense", "dense-restricted")
SPECTRAL_MODES = ("spectral-eigvals", "spectral-eigvecs", "spectral-full")
DENSE_MODES = ("dense", "dense-restricted")
# Modes whose eigenvalues are trained, so a separate eigenvalue learning rate means something
# (spectral-eigvecs freezes them).
EIGVAL_MODES = ("spectral-eigvals", "spectral-full")
ACTIVATIONS = ("linear", "relu", "tanh", "elu")
# "both": λ_in and λ_out trained (N_in + N_out per transfer); "receiving": λ_in a constant,
# one eigenvalue per receiving node (the authors' 2020 code and their pruning paper).
EIGENVALUE_SETS = ("both", "receiving")
PHI_INITS = ("uniform", "glorot")
EIGVAL_INITS = ("uniform", "ones")
# Dense layers: "uniform" is nn.Linear's default U(±1/√in); "glorot" is Keras' default
# Glorot-uniform U(±√(6/(in+out))), what the authors' dense baselines used.
DENSE_INITS = ("uniform", "glorot")
# How many hidden layers a network has is "none" for a perceptron (784 → 10), in every table.
NO_HIDDEN = "none"

# ---------------------------------------------------------------------------------- training

OPTIMIZERS = ("adam", "adamax", "sgd")
DEVICES = ("auto", "cpu", "cuda")
# How a trial trains its seeds: one stacked model ("batched", bmm), one model after another
# ("sequential"), or "auto": batched on a GPU, on a CPU for small layers (spectral_study.trial).
MEMBER_TRAINING = ("auto", "batched", "sequential")
# Reported once per epoch by the training loop; a study's search metric is one of these.
EPOCH_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "best_test_accuracy",
                 "epoch_seconds")

# ------------------------------------------------------------------------------------ data

DATASETS = ("fashion-mnist", "mnist", "cifar10", "synthetic")
NORMALIZATIONS = ("unit", "standard")

# --------------------------------------------------------------------------------- pruning

PRUNING_METHODS = ("eigenvalue", "eigen-norm", "connectivity", "random")
SPECTRAL_PRUNING_METHODS = ("eigenvalue", "eigen-norm")  # need eigenvalues: spectral networks
PRUNING_PROTOCOLS = ("direct", "spectral-post", "spectral-pre", "spectral-eigvals-post")

# ---------------------------------------------------------------------------------- results

# A finished trial's status. completed, stopped (by the scheduler) and diverged are results;
# failed means the trial raised after its retries.
STATUSES = ("completed", "stopped", "diverged", "failed")
RESULT_STATUSES = ("completed", "stopped", "diverged")

# ---------------------------------------------------------------------------------- testing

INJECTED_FAILURES = ("first_attempt", "always")
