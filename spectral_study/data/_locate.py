"""The search order, and what each directory holds.

Without an explicit path, file-based sets are looked for, in order, in ``$SPECTRAL_STUDY_DATA/<name>``
and ``$SPECTRAL_STUDY_DATA``, ``~/.cache/spectral-study/<name>``, ``/usr/share/datasets/<name>``
(where Debian's ``dataset-fashion-mnist`` puts its files); the first complete directory wins.
An explicit path is searched alone. Nothing here reads a file's contents; only a CIFAR-10 tarball
is unpacked, when it is the complete copy found.
"""
from __future__ import annotations

import os
from pathlib import Path

from spectral_study.data._errors import _check_name
from spectral_study.data._formats import _CIFAR_BATCHES, _CIFAR_DIR, _IDX_FILES, _extract_cifar, _idx_path
from spectral_study.data._sources import _CIFAR_TAR, _user_cache


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


def survey(name: str) -> list[tuple[Path, str]]:
    """Each default search directory with what it holds for ``name``: "complete…",
    "incomplete: missing …" or "absent (…)". Reads no file, extracts and downloads nothing."""
    return [(d, _state(name, d)) for d in search_paths(name)]


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
