"""Dataset registry: Fashion-MNIST, MNIST, CIFAR-10 and a tiny synthetic set, as in-memory tensors.

    data = load_dataset("fashion-mnist")             # searched for, downloaded if absent
    data = load_dataset("synthetic").to("cuda")      # for tests and smoke runs, no files

File-based sets are looked for, in order, in: the explicit ``path``, ``$SPECTRAL_STUDY_DATA/<name>``
and ``$SPECTRAL_STUDY_DATA``, ``~/.cache/spectral-study/<name>``, ``/usr/share/datasets/<name>``
(where Debian's ``dataset-fashion-mnist`` puts its files). The first directory with the complete
set of files wins; `search_paths` lists them. Anything missing or corrupt raises `DatasetError`
naming the file, what was wrong and how to get the data: a trial should fail with a sentence,
not a gzip or pickle traceback. Files are parsed here with numpy (IDX) or a restricted unpickler
(CIFAR-10) so that no torchvision is needed and no pickle can run code.
"""
from __future__ import annotations

import codecs
import gzip
import hashlib
import http.client
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch

DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "cifar10", "synthetic")
NORMALIZATIONS = ("unit", "standard")
_STD_EPS = 1e-6  # pixels that never change (MNIST's borders) have std 0; keep them at 0, not NaN
_TIMEOUT_S = 30.0

# IDX stem -> magic number: 0x08 (unsigned byte) in the third byte, the number of dims in the fourth.
_IDX_FILES = {"train-images-idx3-ubyte": 0x803, "train-labels-idx1-ubyte": 0x801,
              "t10k-images-idx3-ubyte": 0x803, "t10k-labels-idx1-ubyte": 0x801}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TAR = "cifar-10-python.tar.gz"
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

# name -> (base URL, {file: md5}); the published checksums (torchvision uses the same ones).
_MIRRORS: dict[str, tuple[str, dict[str, str]]] = {
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", {_CIFAR_TAR: "c58f30108f718f92721af3b95e74349a"}),
}


class DatasetError(Exception):
    """A dataset is unknown, missing or corrupt; the message says which file and what to do."""


@dataclass(frozen=True)
class Dataset:
    """Train and test split as flat float32 features and int64 labels, on one device."""

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    n_classes: int
    source: str

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))


def search_paths(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for ``name``'s files, in order (none for the synthetic set)."""
    _check_name(name)
    if name == "synthetic":
        return []
    dirs = [Path(path).expanduser()] if path is not None else []
    if env := os.environ.get("SPECTRAL_STUDY_DATA"):
        dirs += [Path(env).expanduser() / name, Path(env).expanduser()]
    return dirs + [Path.home() / ".cache" / "spectral-study" / name, Path("/usr/share/datasets") / name]


def load_dataset(name: str, *, path: str | os.PathLike | None = None, normalize: str = "unit",
                 download: bool = True, synthetic_size: tuple[int, int] = (2000, 500),
                 seed: int = 0) -> Dataset:
    """Load ``name`` onto the CPU, features scaled to [0, 1] (``"unit"``) or by the train set's
    per-feature mean and std (``"standard"``); ``synthetic_size`` and ``seed`` only shape the
    synthetic set."""
    _check_name(name)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; available: {', '.join(NORMALIZATIONS)}")
    if name == "synthetic":
        if len(synthetic_size) != 2 or not all(isinstance(n, int) and n > 0 for n in synthetic_size):
            raise ValueError(f"synthetic_size must be two positive integers, got {synthetic_size!r}")
        x_train, y_train, x_test, y_test = _synthetic(synthetic_size, seed)
        source = "synthetic"
    else:
        directory = _find(name, path, download)
        x_train, y_train, x_test, y_test = (_load_cifar if name == "cifar10" else _load_idx)(name, directory)
        source = str(directory)
    if normalize == "standard":
        std, mean = torch.std_mean(x_train, dim=0, correction=0)
        std = std.clamp_min(_STD_EPS)
        x_train.sub_(mean).div_(std)  # in place: the tensors are ours, and CIFAR-10's are 600 MB
        x_test.sub_(mean).div_(std)
    return Dataset(name, x_train, y_train, x_test, y_test, 10, source)


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")


def _download_dir(name: str) -> Path:
    env = os.environ.get("SPECTRAL_STUDY_DATA")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "spectral-study") / name


def _how_to_get(name: str) -> str:
    base, files = _MIRRORS[name]
    apt = "install Debian's package (`apt-get install dataset-fashion-mnist`), or " \
        if name == "fashion-mnist" else ""
    return (f"To get the data: {apt}download {', '.join(files)} from {base} into "
            f"{_download_dir(name)} (or set SPECTRAL_STUDY_DATA to a directory holding them), "
            f"or call load_dataset({name!r}, download=True).")


def _find(name: str, path: str | os.PathLike | None, download: bool) -> Path:
    """The first searched directory with all of ``name``'s files; downloads them if allowed."""
    searched = search_paths(name, path)
    for directory in searched:
        if (found := _locate(name, directory)) is not None:
            return found
    lines = [f"  {d}: " + ("no such directory" if not d.is_dir() else _missing(name, d)) for d in searched]
    message = f"{name}: data files not found. Searched, in order:\n" + "\n".join(lines)
    if download:
        target = _download_dir(name)  # one of the searched directories, so not complete yet
        base, files = _MIRRORS[name]
        try:
            for file, md5 in files.items():
                if not (target / file).exists():
                    _download(base + file, target / file, md5, name)
            found = _locate(name, target)
        except DatasetError as error:
            raise DatasetError(f"{message}\nDownloading failed: {error}\n{_how_to_get(name)}") from error
        if found is not None:
            return found
        message += f"\nDownloaded into {target}, but the files there are still incomplete."
    raise DatasetError(f"{message}\n{_how_to_get(name)}")


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _missing(name: str, directory: Path) -> str:
    if name == "cifar10":
        return f"no {_CIFAR_DIR}/ with {', '.join(_CIFAR_BATCHES)}, and no {_CIFAR_TAR}"
    return "missing " + ", ".join(f"{s}[.gz]" for s in _IDX_FILES if _idx_path(directory, s) is None)


def _locate(name: str, directory: Path) -> Path | None:
    """``directory`` (or the CIFAR-10 folder in or extracted from it) if it holds every file."""
    if name != "cifar10":
        return directory if all(_idx_path(directory, s) for s in _IDX_FILES) else None
    for candidate in (directory, directory / _CIFAR_DIR):
        if all((candidate / b).is_file() for b in _CIFAR_BATCHES):
            return candidate
    archive = directory / _CIFAR_TAR
    return _extract_cifar(name, archive) if archive.is_file() else None


def _download(url: str, dest: Path, md5: str, name: str) -> Path:
    """Fetch ``url`` to ``dest`` through a temporary name, kept only if its MD5 is ``md5``,
    so that an interrupted or tampered download never looks like a complete file."""
    tmp, digest = None, hashlib.md5(usedforsecurity=False)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DatasetError(f"{name}: {url} has MD5 {digest.hexdigest()}, expected {md5}; the "
                               f"download is corrupt or the mirror changed, nothing was kept")
        os.replace(tmp, dest)
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError, timeouts, bad URL
        raise DatasetError(f"{name}: could not download {url} to {dest}: {error}") from error
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)  # a no-op once renamed
    return dest


def _corrupt(name: str, path: Path, what: str) -> DatasetError:
    return DatasetError(f"{name}: {path}: {what}. {_how_to_get(name)}")


def _read_idx(name: str, path: Path, magic: int) -> np.ndarray:
    """An IDX file (gzip or raw) as a uint8 array, its header checked against its length."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise _corrupt(name, path, f"cannot read it ({error}): truncated or corrupt file") from error
    found, ndim = int.from_bytes(raw[:4], "big"), magic & 0xFF
    if found != magic:
        raise _corrupt(name, path, f"magic number 0x{found:08x}, expected 0x{magic:08x} "
                                   f"(not an IDX file of this kind)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(name, path, f"{len(raw)} bytes end inside the {header}-byte header (truncated file)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) != header + int(np.prod(dims)):
        raise _corrupt(name, path, f"holds {len(raw)} bytes, but its header says {dims}, which needs "
                                   f"{header + int(np.prod(dims))} (truncated or padded file)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _load_idx(name: str, directory: Path):
    a = {stem: _read_idx(name, _idx_path(directory, stem), m) for stem, m in _IDX_FILES.items()}
    return (*_tensors(name, directory, "train", a["train-images-idx3-ubyte"], a["train-labels-idx1-ubyte"]),
            *_tensors(name, directory, "t10k", a["t10k-images-idx3-ubyte"], a["t10k-labels-idx1-ubyte"]))


def _check_split(name: str, where: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    if len(images) != len(labels):
        raise _corrupt(name, where, f"the {split} split has {len(images)} images but {len(labels)} "
                                    f"labels (files that do not belong together, or a truncated one)")
    if len(labels) and (labels.min() < 0 or labels.max() >= 10):
        raise _corrupt(name, where, f"the {split} labels range over {labels.min()}..{labels.max()}, "
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
            raise _corrupt(self.dataset, self.path, f"refers to the global {module}.{name}, which a "
                           f"CIFAR-10 batch never needs; refusing to unpickle it (not a genuine "
                           f"batch, possibly malicious)")
        return _PICKLE_GLOBALS[module, name]


def _read_cifar_batch(name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as file:
            batch = _RestrictedUnpickler(file, dataset=name, path=path).load()
    except DatasetError:
        raise
    except Exception as error:  # a broken pickle can raise nearly anything; none of it is ours
        raise _corrupt(name, path, f"cannot unpickle it ({type(error).__name__}: {error}): "
                                   f"truncated or corrupt file") from error
    keys = {b"data", b"labels", b"batch_label", b"filenames"}
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys() <= keys:
        got = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise _corrupt(name, path, f"expected a dict with keys b'data' and b'labels' (optionally "
                                   f"b'batch_label', b'filenames'), got {got}")
    data, labels = batch[b"data"], batch[b"labels"]
    try:
        labels = np.asarray(labels)
    except ValueError:  # a ragged list; reported as not integer labels just below
        labels = np.asarray(None)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise _corrupt(name, path, f"expected uint8 data of shape (N, 3072) and a list of integer "
                                   f"labels, got data {getattr(data, 'dtype', type(data).__name__)} "
                                   f"{getattr(data, 'shape', '')} and labels {labels.dtype} {labels.shape}")
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
                    raise _corrupt(name, archive, f"unsafe member {m.name!r} (absolute path, '..', "
                                                  f"link or device); refusing to extract it")
            tar.extractall(tmp, members=members,
                           **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        extracted = tmp / _CIFAR_DIR
        if not all((extracted / b).is_file() for b in _CIFAR_BATCHES):
            raise _corrupt(name, archive, f"no {_CIFAR_DIR}/ with {', '.join(_CIFAR_BATCHES)} inside")
        final = target / _CIFAR_DIR
        final.mkdir(exist_ok=True)
        for file in extracted.iterdir():
            os.replace(file, final / file.name)
        return final
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise _corrupt(name, archive, f"cannot extract it ({error}): truncated or corrupt "
                                      f"archive") from error
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _synthetic(size: tuple[int, int], seed: int):
    """Ten noisy class prototypes in [0, 1]^784: a linear model learns them within an epoch."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(10, 784, generator=g, dtype=torch.float32)

    def draw(n: int):
        y = torch.randint(0, 10, (n,), generator=g)
        return 0.6 * prototypes[y] + 0.4 * torch.rand(n, 784, generator=g, dtype=torch.float32), y

    return (*draw(size[0]), *draw(size[1]))
