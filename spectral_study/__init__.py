"""spectral-study: ablation and hyperparameter studies of spectral neural networks.

The scientific core (layers, models, data, training, one trial) is plain PyTorch and never
imports Ray; `spectral_study.tune` is the only module that does. `run_study(path, **overrides)`
runs a whole study from a notebook (it imports Ray only then).
"""
from spectral_study.api import run_study
from spectral_study.config import PruningConfig, TrialConfig, TrialConfigError
from spectral_study.data import Dataset, DatasetError, load_dataset
from spectral_study.models import ModelSpec, Network, RestrictedLinear, build_model, count_parameters
from spectral_study.spectral import SpectralLinear
from spectral_study.train import TrainConfig, TrainResult, evaluate, train
from spectral_study.trial import run_trial
from spectral_study.vocabulary import (
                                       ACTIVATIONS,
                                       DATASETS,
                                       EIGENVALUE_SETS,
                                       EPOCH_METRICS,
                                       MODES,
                                       OPTIMIZERS,
                                       SPECTRAL_MODES,
)

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "DATASETS", "EIGENVALUE_SETS", "EPOCH_METRICS", "MODES", "OPTIMIZERS", "SPECTRAL_MODES",
    "Dataset", "DatasetError", "ModelSpec", "Network", "PruningConfig", "RestrictedLinear", "SpectralLinear",
    "TrainConfig", "TrainResult", "TrialConfig", "TrialConfigError", "build_model", "count_parameters",
    "evaluate", "load_dataset", "run_study", "run_trial", "train", "__version__",
]
