"""`verify`: re-read every file of a copy, check its format and its contents against the
published checksums, and refresh the cached digests (never trusting them)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from spectral_study.data._dataset import _find
from spectral_study.data._errors import DatasetError, _check_name, _FileError
from spectral_study.data._fingerprint import _manifest_digest, _remember, _stat_key, _write_sidecar
from spectral_study.data._formats import (
    _CIFAR_BATCHES,
    _IDX_FILES,
    _check_split,
    _contents,
    _data_files,
    _read_cifar_batch,
    _read_idx,
)

# Examples per file in a genuine copy ("train"/"t10k" IDX files, each CIFAR-10 batch).
_COUNTS = {"train": 60000, "t10k": 10000, **{b: 10000 for b in _CIFAR_BATCHES}}

# The published MD5s of what the loader reads: un-gzipped IDX files and the CIFAR-10 batches
# (torchvision's lists). `verify` compares contents, not archives, because packagers re-compress:
# Debian's dataset-fashion-mnist .gz files differ from the published ones, their contents do not.
_CONTENT_MD5: dict[str, dict[str, str]] = {
    "fashion-mnist": {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                      "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
                      "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
                      "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"},
    "mnist": {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
              "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
              "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
              "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"},
    "cifar10": {"data_batch_1": "c99cafc152244af753f735de768cd75f",
                "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
                "data_batch_4": "634d18415352ddfa80567beed471001a",
                "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
                "test_batch": "40351d587109b95175f43aff81a1287e"},
}


@dataclass(frozen=True)
class FileCheck:
    path: Path
    problem: str | None  # None: intact
    detail: str          # what was found: shape, and whether it matches the published checksum


@dataclass(frozen=True)
class Verification:
    name: str
    directory: Path
    files: tuple[FileCheck, ...]
    fingerprint: str | None  # None unless every file is intact

    @property
    def intact(self) -> bool:
        return all(f.problem is None for f in self.files)


def verify(name: str, *, path: str | os.PathLike | None = None) -> Verification:
    """Re-read every file of the first complete copy of ``name`` (or of ``path``), check its
    format (magic number, dimensions, counts, labels 0..9, CIFAR-10 batch structure) and its
    contents against the published MD5; the cached digests are refreshed, never trusted.
    A DatasetError if no complete copy is found."""
    _check_name(name)
    if name == "synthetic":
        raise DatasetError("synthetic: generated in memory from its size and seed; nothing to verify")
    directory = _find(name, path, download=False)
    checks, digests = [], {}
    for stem, file in _data_files(name, directory).items():
        key = _stat_key(file)
        try:
            raw = _contents(name, file)
            digests[stem] = _remember(file, key, hashlib.sha256(raw).hexdigest())  # even if malformed
            shape = (_check_cifar_batch if name == "cifar10" else _check_idx)(name, stem, file, raw)
        except _FileError as error:
            checks.append(FileCheck(file, error.problem, ""))
            continue
        found, published = hashlib.md5(raw, usedforsecurity=False).hexdigest(), _CONTENT_MD5[name][stem]
        problem = None if found == published else (
            f"well-formed ({shape}), but its contents have MD5 {found}, not the published "
            f"{published}: a modified file, or another data set's")
        checks.append(FileCheck(file, problem, f"{shape}, contents MD5 {found[:8]}… as published"))
    _write_sidecar(directory)
    result = Verification(name, directory, tuple(checks), None)
    return replace(result, fingerprint=_manifest_digest(digests)) if result.intact else result


def _check_idx(name: str, stem: str, path: Path, raw: bytes) -> str:
    array = _read_idx(name, path, _IDX_FILES[stem], raw)
    n = _COUNTS[stem.split("-")[0]]
    expected = (n, 28, 28) if "images" in stem else (n,)
    if array.shape != expected:
        raise _FileError(name, path, f"shape {array.shape}, expected {expected}")
    if "labels" in stem and array.max() >= 10:
        raise _FileError(name, path, f"labels range up to {array.max()}, expected 0..9")
    return "×".join(map(str, array.shape))


def _check_cifar_batch(name: str, batch: str, path: Path, raw: bytes) -> str:
    data, labels = _read_cifar_batch(name, path, raw)
    _check_split(name, path, batch, data, labels)
    if len(data) != _COUNTS[batch]:
        raise _FileError(name, path, f"{len(data)} images, expected {_COUNTS[batch]}")
    return "×".join(map(str, data.shape))
