"""`DatasetError`, what every data problem raises; its one-corrupt-file form; the name check."""
from __future__ import annotations

from pathlib import Path

from spectral_study.data._sources import _how_to_get
from spectral_study.vocabulary import DATASETS


class DatasetError(Exception):
    """A dataset is unknown, missing or corrupt; the message says which file and what to do."""


class _FileError(DatasetError):
    """One file is corrupt: ``path`` and ``problem`` (the message without the how-to) for `verify`."""

    def __init__(self, name: str, path: Path, problem: str):
        super().__init__(f"{name}: {path}: {problem}. {_how_to_get(name)}")
        self.path, self.problem = path, problem


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
