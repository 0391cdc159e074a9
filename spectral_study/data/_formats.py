"""The files a data set is read from: IDX (Fashion-MNIST, MNIST), gzipped or not, and CIFAR-10's
pickled batches, through a restricted unpickler so that no pickle can run code, and its tarball,
unpacked refusing members that would land outside it. Parsed with numpy, no torchvision; every
fault is a `_FileError` naming the file and what was wrong.
"""
from __future__ import annotations

import codecs
import gzip
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from spectral_study.data._errors import DatasetError, _FileError
from spectral_study.data._sources import _download_dir

# IDX stem -> magic number: 0x08 (unsigned byte) in the third byte, the number of dims in the fourth.
_IDX_FILES = {"train-images-idx3-ubyte": 0x803, "train-labels-idx1-ubyte": 0x801,
              "t10k-images-idx3-ubyte": 0x803, "t10k-labels-idx1-ubyte": 0x801}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _data_files(name: str, directory: Path) -> dict[str, Path]:
    """stem -> the file the loader reads, in a directory `_locate` returned."""
    if name == "cifar10":
        return {b: directory / b for b in _CIFAR_BATCHES}
    return {s: _idx_path(directory, s) for s in _IDX_FILES}


def _contents(name: str, path: Path) -> bytes:
    """The bytes the loader parses: the file's, un-gzipped if its name ends in .gz."""
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise _FileError(name, path, f"cannot read it ({error}): truncated or corrupt file") from error


def _read_idx(name: str, path: Path, magic: int, raw: bytes | None = None) -> np.ndarray:
    """An IDX file (gzip or raw) as a uint8 array, its header checked against its length."""
    raw = _contents(name, path) if raw is None else raw
    found, ndim = int.from_bytes(raw[:4], "big"), magic & 0xFF
    if found != magic:
        raise _FileError(name, path, f"magic number 0x{found:08x}, expected 0x{magic:08x} "
                                      f"(not an IDX file of this kind)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _FileError(name, path, f"{len(raw)} bytes end inside the {header}-byte header (truncated file)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) != header + int(np.prod(dims)):
        raise _FileError(name, path, f"holds {len(raw)} bytes, but its header says {dims}, which needs "
                                      f"{header + int(np.prod(dims))} (truncated or padded file)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _load_idx(name: str, directory: Path):
    a = {stem: _read_idx(name, _idx_path(directory, stem), m) for stem, m in _IDX_FILES.items()}
    return (*_tensors(name, directory, "train", a["train-images-idx3-ubyte"], a["train-labels-idx1-ubyte"]),
            *_tensors(name, directory, "t10k", a["t10k-images-idx3-ubyte"], a["t10k-labels-idx1-ubyte"]))


def _check_split(name: str, where: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    if len(images) != len(labels):
        raise _FileError(name, where, f"the {split} split has {len(images)} images but {len(labels)} "
                                       f"labels (files that do not belong together, or a truncated one)")
    if len(labels) and (labels.min() < 0 or labels.max() >= 10):
        raise _FileError(name, where, f"the {split} labels range over {labels.min()}..{labels.max()}, "
                                       f"expected 0..9")


def _tensors(name: str, where: Path, split: str, images: np.ndarray, labels: np.ndarray):
    """Check a split's images against its labels; return flat [0, 1] float32 and int64 tensors."""
    _check_split(name, where, split, images, labels)
    x = images.reshape(len(images), -1).astype(np.float32)
    x /= 255.0  # in place: one float32 copy of the pixels, no more
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


def _latin1_encode(text: str, encoding: str) -> bytes:
    # Protocol-2 pickles written by Python 3 store a numpy array's buffer as encode(str, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


# The only globals a pickled dict of numpy arrays needs (protocol 5 rebuilds them with
# _frombuffer); anything else could run code. Taken from numpy itself, whatever its version.
_RECONSTRUCT, _FROMBUFFER = np.empty(1).__reduce__()[0], np.empty(1).__reduce_ex__(5)[0]
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, *, dataset: str, path: Path):
        super().__init__(file, encoding="bytes")  # the batches were pickled by Python 2
        self.dataset, self.path = dataset, path

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise _FileError(self.dataset, self.path, f"refers to the global {module}.{name}, which a "
                              f"CIFAR-10 batch never needs; refusing to unpickle it (not a genuine "
                              f"batch, possibly malicious)")
        return _PICKLE_GLOBALS[module, name]


def _read_cifar_batch(name: str, path: Path, raw: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    try:
        with (io.BytesIO(raw) if raw is not None else path.open("rb")) as file:
            batch = _RestrictedUnpickler(file, dataset=name, path=path).load()
    except DatasetError:
        raise
    except Exception as error:  # a broken pickle can raise nearly anything; none of it is ours
        raise _FileError(name, path, f"cannot unpickle it ({type(error).__name__}: {error}): "
                                      f"truncated or corrupt file") from error
    keys = {b"data", b"labels", b"batch_label", b"filenames"}
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys() <= keys:
        got = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise _FileError(name, path, f"expected a dict with keys b'data' and b'labels' (optionally "
                                      f"b'batch_label', b'filenames'), got {got}")
    data, labels = batch[b"data"], batch[b"labels"]
    try:
        labels = np.asarray(labels)
    except ValueError:  # a ragged list; reported as not integer labels just below
        labels = np.asarray(None)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        got = f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        raise _FileError(name, path, f"expected uint8 data of shape (N, 3072) and a list of integer "
                                      f"labels, got data {got} and labels {labels.dtype} {labels.shape}")
    return data, labels


def _load_cifar(name: str, directory: Path):
    batches = {b: _read_cifar_batch(name, directory / b) for b in _CIFAR_BATCHES}
    for batch, (data, labels) in batches.items():
        _check_split(name, directory / batch, batch, data, labels)
    train = [batches[b] for b in _CIFAR_BATCHES[:-1]]
    return (*_tensors(name, directory, "train", np.concatenate([d for d, _ in train]),
                      np.concatenate([y for _, y in train])),
            *_tensors(name, directory, "test_batch", *batches["test_batch"]))


def _extract_cifar(name: str, archive: Path) -> Path:
    """Unpack the CIFAR-10 tarball beside itself (or into the download dir if that is read-only),
    refusing members that would land outside it, and return the batches' folder."""
    target = archive.parent if os.access(archive.parent, os.W_OK) else _download_dir(name)
    tmp = None
    try:
        target.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target, prefix=".extract-"))
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                p = PurePosixPath(m.name)
                if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
                    raise _FileError(name, archive, f"unsafe member {m.name!r} (absolute path, '..', "
                                                     f"link or device); refusing to extract it")
            tar.extractall(tmp, members=members,
                           **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        extracted = tmp / _CIFAR_DIR
        if not all((extracted / b).is_file() for b in _CIFAR_BATCHES):
            raise _FileError(name, archive, f"no {_CIFAR_DIR}/ with {', '.join(_CIFAR_BATCHES)} inside")
        final = target / _CIFAR_DIR
        final.mkdir(exist_ok=True)
        for file in extracted.iterdir():
            os.replace(file, final / file.name)
        return final
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise _FileError(name, archive, f"cannot extract it ({error}): truncated or corrupt "
                                         f"archive") from error
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
