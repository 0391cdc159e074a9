"""Where each data set is published and where a copy of it is kept.

The mirror table (base URL and each file's published MD5), replaced by ``$SPECTRAL_STUDY_MIRROR``;
the user's cache and the directory downloads go to; and the sentence telling a user how to get
the data, which every missing-or-corrupt error ends with.
"""
from __future__ import annotations

import os
from pathlib import Path

_CIFAR_TAR = "cifar-10-python.tar.gz"
# mkstemp's files are 0600; data and digests in a shared directory must be readable by everyone.
_SHARED_FILE_MODE = 0o644

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
