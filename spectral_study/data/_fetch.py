"""Downloads: each published file fetched through a temporary name and kept only if its MD5 is
the published one, so that an interrupted or tampered download never looks like a complete file.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from spectral_study.data._errors import DatasetError, _check_name
from spectral_study.data._locate import _locate, _state
from spectral_study.data._sources import _SHARED_FILE_MODE, _download_dir, _mirror

_TIMEOUT_S = 30.0


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
