"""The `Dataset` (train and test split as tensors, with where they came from), and
`load_dataset`, which finds a complete copy (downloading one if allowed), reads and scales it."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from spectral_study.data._errors import DatasetError, _check_name
from spectral_study.data._fetch import fetch
from spectral_study.data._fingerprint import fingerprint
from spectral_study.data._formats import _load_cifar, _load_idx
from spectral_study.data._locate import _locate, _state, search_paths
from spectral_study.data._sources import _how_to_get
from spectral_study.data._synthetic import _synthetic, _synthetic_fingerprint
from spectral_study.vocabulary import NORMALIZATIONS

_STD_EPS = 1e-6  # pixels that never change (MNIST's borders) have std 0; keep them at 0, not NaN
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """Train and test split as flat float32 features and int64 labels, on one device.

    ``source`` is the directory the files were read from ("synthetic" for the generated set),
    ``fingerprint`` identifies their contents ("sha256:" and 16 hex digits) and ``normalize`` the
    scaling applied; None only for a Dataset built by hand without them.
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    n_classes: int
    source: str
    fingerprint: str | None = field(default=None, kw_only=True)
    normalize: str | None = field(default=None, kw_only=True)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, **{a: getattr(self, a).to(device) for a in _ARRAYS})

    def to_arrays(self) -> dict:
        """``{"arrays": {x_train, y_train, x_test, y_test}, name, n_classes, source, fingerprint,
        normalize}`` with numpy views of the CPU tensors (no copy; a GPU set is copied to the host).

        Ray's object store maps numpy arrays into a trial's memory without a copy; torch tensors
        are unpickled, which cost 0.3 s per trial for Fashion-MNIST (measured)."""
        return {"arrays": {a: getattr(self, a).detach().cpu().numpy() for a in _ARRAYS},
                "name": self.name, "n_classes": self.n_classes, "source": self.source,
                "fingerprint": self.fingerprint, "normalize": self.normalize}

    @classmethod
    def from_arrays(cls, stored: dict) -> Dataset:
        """The Dataset `to_arrays` described, sharing the arrays' memory (zero-copy)."""
        keys = ("arrays", "name", "n_classes", "source", "fingerprint", "normalize")
        missing = [k for k in keys if k not in stored] + [
            f"arrays.{a}" for a in _ARRAYS if "arrays" in stored and a not in stored["arrays"]]
        if missing:
            raise ValueError(f"not a Dataset.to_arrays() dict: missing {', '.join(missing)}")
        with warnings.catch_warnings():
            # Read-only views of Ray's object store; training only reads them.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            tensors = {a: torch.from_numpy(stored["arrays"][a]) for a in _ARRAYS}
        return cls(stored["name"], n_classes=stored["n_classes"], source=stored["source"],
                   fingerprint=stored["fingerprint"], normalize=stored["normalize"], **tensors)


def load_dataset(name: str, *, path: str | os.PathLike | None = None, normalize: str = "unit",
                 download: bool = True, synthetic_size: tuple[int, int] = (2000, 500),
                 seed: int = 0) -> Dataset:
    """Load ``name`` onto the CPU, features scaled to [0, 1] (``"unit"``) or by the train set's
    per-feature mean and std (``"standard"``); ``synthetic_size`` and ``seed`` only shape the
    synthetic set. ``download`` applies to the default search only, never to an explicit path."""
    _check_name(name)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; available: {', '.join(NORMALIZATIONS)}")
    if name == "synthetic":
        if len(synthetic_size) != 2 or not all(isinstance(n, int) and n > 0 for n in synthetic_size):
            raise ValueError(f"synthetic_size must be two positive integers, got {synthetic_size!r}")
        x_train, y_train, x_test, y_test = _synthetic(synthetic_size, seed)
        source, digest = "synthetic", _synthetic_fingerprint(synthetic_size, seed)
    else:
        directory = _find(name, path, download)
        x_train, y_train, x_test, y_test = (_load_cifar if name == "cifar10" else _load_idx)(name, directory)
        source, digest = str(directory), fingerprint(name, directory)  # after loading: files parse
    if normalize == "standard":
        std, mean = torch.std_mean(x_train, dim=0, correction=0)
        std = std.clamp_min(_STD_EPS)
        x_train.sub_(mean).div_(std)  # in place: the tensors are ours, and CIFAR-10's are 600 MB
        x_test.sub_(mean).div_(std)
    return Dataset(name, x_train, y_train, x_test, y_test, 10, source,
                   fingerprint=digest, normalize=normalize)


def _find(name: str, path: str | os.PathLike | None, download: bool) -> Path:
    """The directory to load: ``path`` if it is complete (an error if not), else the first
    complete searched directory, downloaded into if allowed."""
    if path is not None:
        directory = Path(path).expanduser()
        if (found := _locate(name, directory)) is not None:
            return found
        raise DatasetError(f"{name}: {directory} is {_state(name, directory)}. An explicit path is "
                           f"searched alone, without falling back to another copy or downloading: "
                           f"put the files there (`spectral-study data fetch {name} --to {directory}`) "
                           f"or drop the path to use the default search.")
    searched = search_paths(name)
    for directory in searched:
        if (found := _locate(name, directory)) is not None:
            return found
    message = f"{name}: data files not found. Searched, in order:\n" + "\n".join(
        f"  {d}: {_state(name, d)}" for d in searched)
    if download:
        try:
            return fetch(name)  # into one of the searched directories
        except DatasetError as error:
            raise DatasetError(f"{message}\nDownloading failed: {error}\n{_how_to_get(name)}") from error
    raise DatasetError(f"{message}\n{_how_to_get(name)}")
