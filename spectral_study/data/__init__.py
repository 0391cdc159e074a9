"""Dataset registry: Fashion-MNIST, MNIST, CIFAR-10 and a tiny synthetic set, as in-memory tensors.

    data = load_dataset("fashion-mnist")             # searched for, downloaded if absent
    data = load_dataset("synthetic").to("cuda")      # for tests and smoke runs, no files
    data.source, data.fingerprint, data.normalize    # which copy, which bytes, which scaling

An explicit ``path`` is the user's word: it is searched alone, and an incomplete or corrupt copy
there is a `DatasetError`, never a silent fallback to another copy. Without one, file-based sets
are looked for, in order, in ``$SPECTRAL_STUDY_DATA/<name>`` and ``$SPECTRAL_STUDY_DATA``,
``~/.cache/spectral-study/<name>``, ``/usr/share/datasets/<name>`` (where Debian's
``dataset-fashion-mnist`` puts its files); the first complete directory wins (`search_paths`,
`survey`). Anything missing or corrupt raises `DatasetError` naming the file, what was wrong and
how to get the data: a trial should fail with a sentence, not a gzip or pickle traceback. Files
are parsed here with numpy (IDX) or a restricted unpickler (CIFAR-10) so that no torchvision is
needed and no pickle can run code.

A copy's `fingerprint` is the SHA-256 of its files' *contents* (IDX files un-gzipped), so every
intact copy of a data set has the same one, however it was compressed or wherever it lies; the
per-file digests are cached beside the data (or under ~/.cache/spectral-study/sha256/ where the
data directory is read-only) keyed by size and mtime. `verify` re-reads everything and checks it
against the published checksums; `fetch` downloads with checksums. docs/data.md has the details.
"""
from __future__ import annotations

import codecs
import gzip
import hashlib
import http.client
import io
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch

DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "cifar10", "synthetic")
NORMALIZATIONS = ("unit", "standard")
_STD_EPS = 1e-6  # pixels that never change (MNIST's borders) have std 0; keep them at 0, not NaN
_TIMEOUT_S = 30.0
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")

# IDX stem -> magic number: 0x08 (unsigned byte) in the third byte, the number of dims in the fourth.
_IDX_FILES = {"train-images-idx3-ubyte": 0x803, "train-labels-idx1-ubyte": 0x801,
              "t10k-images-idx3-ubyte": 0x803, "t10k-labels-idx1-ubyte": 0x801}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TAR = "cifar-10-python.tar.gz"
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
# Examples per file in a genuine copy ("train"/"t10k" IDX files, each CIFAR-10 batch).
_COUNTS = {"train": 60000, "t10k": 10000, **{b: 10000 for b in _CIFAR_BATCHES}}

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
_SYNTHETIC_VERSION = 1  # bump when _synthetic changes, so that its fingerprints change too
_FINGERPRINT_HEX = 16   # 64 bits: names a copy among a lab's copies, short enough for a table
_SIDECAR = ".spectral-study-sha256.json"
# mkstemp's files are 0600; data and digests in a shared directory must be readable by everyone.
_SHARED_FILE_MODE = 0o644


class DatasetError(Exception):
    """A dataset is unknown, missing or corrupt; the message says which file and what to do."""


class _FileError(DatasetError):
    """One file is corrupt: ``path`` and ``problem`` (the message without the how-to) for `verify`."""

    def __init__(self, name: str, path: Path, problem: str):
        super().__init__(f"{name}: {path}: {problem}. {_how_to_get(name)}")
        self.path, self.problem = path, problem


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


def search_paths(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for ``name``'s files, in order: ``path`` alone if given (the
    user's word is not second-guessed), else the default search order (none for synthetic)."""
    _check_name(name)
    if name == "synthetic":
        return []
    if path is not None:
        return [Path(path).expanduser()]
    dirs = []
    if env := os.environ.get("SPECTRAL_STUDY_DATA"):
        dirs += [Path(env).expanduser() / name, Path(env).expanduser()]
    return dirs + [_user_cache() / name, Path("/usr/share/datasets") / name]


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


def survey(name: str) -> list[tuple[Path, str]]:
    """Each default search directory with what it holds for ``name``: "complete…",
    "incomplete: missing …" or "absent (…)". Reads no file, extracts and downloads nothing."""
    return [(d, _state(name, d)) for d in search_paths(name)]


def fetch(name: str, *, to: str | os.PathLike | None = None,
          report: Callable[[str], None] = lambda message: None) -> Path:
    """Download ``name``'s published files into ``to`` (default ``$SPECTRAL_STUDY_DATA/<name>``
    or ``~/.cache/spectral-study/<name>``), each kept only if its MD5 matches; files already there
    with the right MD5 are not fetched again. ``report`` hears of each download as it starts.
    Returns the directory the loader will read."""
    _check_name(name)
    if name == "synthetic":
        raise DatasetError("synthetic: generated in memory from its size and seed; nothing to fetch")
    target = Path(to).expanduser() if to is not None else _download_dir(name)
    base, files = _mirror(name)
    existed = target.exists()
    try:
        for file, md5 in files.items():
            if not _has_md5(target / file, md5):
                report(f"{name}: downloading {base + file} -> {target / file}")
                _download(base + file, target / file, md5, name)
    except DatasetError:
        if not existed and target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # leave no empty directory for `data list` to report
        raise
    if (found := _locate(name, target)) is None:
        raise DatasetError(f"{name}: downloaded into {target}, but it is {_state(name, target)}")
    return found


# ------------------------------------------------------------------------ fingerprint and verify

def fingerprint(name: str, directory: str | os.PathLike) -> str:
    """``"sha256:"`` and the first 16 hex digits of the SHA-256 of the lines
    ``"<sha256 of the file's contents>  <file stem>\\n"``, sorted by stem, over the files the
    loader reads in ``directory`` (IDX contents un-gzipped). Per-file digests are cached."""
    directory = Path(directory)
    files = _data_files(name, directory)
    if not all(f is not None and f.is_file() for f in files.values()):
        raise DatasetError(f"{name}: {directory} is {_state(name, directory)}; nothing to fingerprint")
    return _manifest_digest(_content_digests(name, files))


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


def _manifest_digest(digests: dict[str, str]) -> str:
    manifest = "".join(f"{digests[stem]}  {stem}\n" for stem in sorted(digests))
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()[:_FINGERPRINT_HEX]


def _synthetic_fingerprint(size: tuple[int, int], seed: int) -> str:
    params = json.dumps({"dataset": "synthetic", "version": _SYNTHETIC_VERSION,
                         "size": list(size), "seed": seed}, sort_keys=True)
    return "sha256:" + hashlib.sha256(params.encode()).hexdigest()[:_FINGERPRINT_HEX]


def _data_files(name: str, directory: Path) -> dict[str, Path]:
    """stem -> the file the loader reads, in a directory `_locate` returned."""
    if name == "cifar10":
        return {b: directory / b for b in _CIFAR_BATCHES}
    return {s: _idx_path(directory, s) for s in _IDX_FILES}


# --- the digest cache: this process's memory, then a sidecar file, then reading the file.
# Keyed by size and mtime, so that loading a copy costs one stat per file after the first time;
# a file rewritten with the same size and mtime would be missed, which `verify` (never cached)
# is there for.

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (absolute path, size, mtime_ns) -> sha256 of contents


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()  # before reading: a file changed while being read is re-read next time
    return str(path.absolute()), st.st_size, st.st_mtime_ns


def _content_digests(name: str, files: dict[str, Path]) -> dict[str, str]:
    directory = next(iter(files.values())).parent
    sidecars, digests, stale = _read_sidecars(directory), {}, False
    for stem, file in files.items():
        key = _stat_key(file)
        recorded = [d for sidecar in sidecars if (d := _sidecar_digest(sidecar.get(file.name), key))]
        digest = _DIGESTS.get(key) or next(iter(recorded), None) \
            or hashlib.sha256(_contents(name, file)).hexdigest()
        digests[stem] = _remember(file, key, digest)
        stale |= digest not in recorded
    if stale:
        _write_sidecar(directory)
    return digests


def _sidecar_digest(entry, key: tuple[str, int, int]) -> str | None:
    """The digest a sidecar entry holds, if it is for this size and mtime."""
    if isinstance(entry, dict) and (entry.get("size"), entry.get("mtime_ns")) == key[1:] \
            and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    return None


def _remember(path: Path, key: tuple[str, int, int], digest: str) -> str:
    _DIGESTS[key] = digest
    return digest


def _sidecars(directory: Path) -> list[Path]:
    """Where ``directory``'s digests may be cached: beside the files, then in the user's cache.
    Never beside files under /usr: it is the package manager's, read-only by the FHS, even to root."""
    resolved = directory.resolve()
    user = _user_cache() / "sha256" / f"{hashlib.sha256(str(resolved).encode()).hexdigest()[:16]}.json"
    return [user] if resolved.is_relative_to("/usr") else [directory / _SIDECAR, user]


def _read_sidecars(directory: Path) -> list[dict]:
    """{file name: {size, mtime_ns, sha256}} from each sidecar found; all of them, because one
    beside read-only data may be stale while the user's cache holds the current digests."""
    found = []
    for sidecar in _sidecars(directory):
        try:
            files = json.loads(sidecar.read_text()).get("files")
        except (OSError, ValueError, AttributeError):
            continue  # absent, unreadable or not ours: a cache miss, not an error
        if isinstance(files, dict):
            found.append(files)
    return found


def _write_sidecar(directory: Path) -> Path | None:
    """Record the digests this process knows for ``directory``'s files in the first writable
    sidecar location (through a temporary name: concurrent trials never see half a file)."""
    here = directory.absolute()
    files = {Path(p).name: {"size": size, "mtime_ns": mtime, "sha256": digest}
             for (p, size, mtime), digest in _DIGESTS.items() if Path(p).parent == here}
    text = json.dumps({"directory": str(here), "files": files}, indent=1, sort_keys=True)
    for sidecar in _sidecars(directory):
        tmp = None
        try:
            sidecar.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=sidecar.parent, prefix=f".{sidecar.name}.", suffix=".part")
            tmp = Path(tmp_name)
            os.chmod(tmp, _SHARED_FILE_MODE)
            with os.fdopen(fd, "w") as out:
                out.write(text + "\n")
            os.replace(tmp, sidecar)
            return sidecar
        except OSError:
            continue  # read-only data or home: the digests are still right, only not cached
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    return None


# ------------------------------------------------------------------------ finding and fetching

def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")


def _user_cache() -> Path:
    return Path.home() / ".cache" / "spectral-study"


def _download_dir(name: str) -> Path:
    env = os.environ.get("SPECTRAL_STUDY_DATA")
    return (Path(env).expanduser() if env else _user_cache()) / name


def _mirror(name: str) -> tuple[str, dict[str, str]]:
    """Base URL and {file: md5}. ``$SPECTRAL_STUDY_MIRROR`` replaces the public base with one
    under which ``<name>/<file>`` lies: an internal web server, or file:///mnt/usb/datasets/."""
    base, files = _MIRRORS[name]
    if mirror := os.environ.get("SPECTRAL_STUDY_MIRROR"):
        base = f"{mirror.rstrip('/')}/{name}/"
    return base, files


def _how_to_get(name: str) -> str:
    base, files = _mirror(name)
    apt = "install Debian's package (`apt-get install dataset-fashion-mnist`), or " \
        if name == "fashion-mnist" else ""
    return (f"To get the data: {apt}run `spectral-study data fetch {name}`, or copy "
            f"{', '.join(files)} from {base} into {_download_dir(name)} (or set SPECTRAL_STUDY_DATA "
            f"to a directory holding them) and run `spectral-study data verify {name}`.")


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


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _state(name: str, directory: Path) -> str:
    """What ``directory`` holds of ``name``, in words, without reading or extracting anything."""
    if not directory.is_dir():
        return "absent (no such directory)"
    if name != "cifar10":
        missing = [f"{s}[.gz]" for s in _IDX_FILES if _idx_path(directory, s) is None]
        if not missing:
            return "complete"
        return "absent (none of its files)" if len(missing) == len(_IDX_FILES) \
            else f"incomplete: missing {', '.join(missing)}"
    inner = directory / _CIFAR_DIR
    for candidate, where in ((directory, ""), (inner, f" (in {_CIFAR_DIR}/)")):
        if all((candidate / b).is_file() for b in _CIFAR_BATCHES):
            return "complete" + where
    if (directory / _CIFAR_TAR).is_file():
        return f"complete ({_CIFAR_TAR}, unpacked on first load)"
    batches = inner if inner.is_dir() else directory
    missing = [b for b in _CIFAR_BATCHES if not (batches / b).is_file()]
    if len(missing) == len(_CIFAR_BATCHES):
        return f"absent (no {_CIFAR_DIR}/, batches or {_CIFAR_TAR})"
    return f"incomplete: missing {', '.join(missing)} in {batches}, and no {_CIFAR_TAR}"


def _locate(name: str, directory: Path) -> Path | None:
    """``directory`` (or the CIFAR-10 folder in or extracted from it) if it holds every file."""
    if name != "cifar10":
        return directory if all(_idx_path(directory, s) for s in _IDX_FILES) else None
    for candidate in (directory, directory / _CIFAR_DIR):
        if all((candidate / b).is_file() for b in _CIFAR_BATCHES):
            return candidate
    archive = directory / _CIFAR_TAR
    return _extract_cifar(name, archive) if archive.is_file() else None


def _has_md5(path: Path, md5: str) -> bool:
    if not path.is_file():
        return False
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == md5


def _download(url: str, dest: Path, md5: str, name: str) -> Path:
    """Fetch ``url`` to ``dest`` through a temporary name, kept only if its MD5 is ``md5``,
    so that an interrupted or tampered download never looks like a complete file."""
    tmp, digest = None, hashlib.md5(usedforsecurity=False)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        os.chmod(tmp, _SHARED_FILE_MODE)
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


# ------------------------------------------------------------------------ parsing

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


def _synthetic(size: tuple[int, int], seed: int):
    """Ten noisy class prototypes in [0, 1]^784: a linear model learns them within an epoch."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(10, 784, generator=g, dtype=torch.float32)

    def draw(n: int):
        y = torch.randint(0, 10, (n,), generator=g)
        return 0.6 * prototypes[y] + 0.4 * torch.rand(n, 784, generator=g, dtype=torch.float32), y

    return (*draw(size[0]), *draw(size[1]))
