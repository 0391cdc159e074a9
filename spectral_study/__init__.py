"""spectral-study: ablation and hyperparameter studies of spectral neural networks.

The scientific core (layers, models, data, training, one trial) is plain PyTorch and never
imports Ray; `spectral_study.tune` is the only module that does.
"""
from spectral_study.data import DATASETS, Dataset, DatasetError, load_dataset
from spectral_study.models import (ACTIVATIONS, MODES, SPECTRAL_MODES, ModelSpec, Network,
                                   RestrictedLinear, build_model, count_parameters)
from spectral_study.spectral import EIGENVALUE_SETS, SpectralLinear
from spectral_study.train import METRICS, OPTIMIZERS, TrainConfig, TrainResult, evaluate, train
from spectral_study.trial import run_trial

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "DATASETS", "EIGENVALUE_SETS", "METRICS", "MODES", "OPTIMIZERS", "SPECTRAL_MODES",
    "Dataset", "DatasetError", "ModelSpec", "Network", "RestrictedLinear", "SpectralLinear",
    "TrainConfig", "TrainResult", "build_model", "count_parameters", "evaluate", "load_dataset",
    "run_trial", "train", "__version__",
]
