"""What produced a result: the package's git commit and the library versions, for every trials row.

    driver_facts()   # {"git_commit": "5c09903…", "git_dirty": False, "pyarrow_version": …, "optuna_version": …}
    trial_versions(device)   # {"python", "torch", "numpy", "cuda", "gpu_name"}, inside a trial

The driver (where `spectral-study run` runs, from a checkout or an installed package) knows the
code's commit and the versions of what it runs itself (pyarrow writes the results, Optuna
searches); a trial knows the versions it trained with and the GPU it used. No Ray here.
"""
from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


@functools.cache
def git_state(directory: str | Path = PACKAGE_DIR.parent) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding ``directory``; (None, None) when it is not one
    (an installed wheel) or git is missing. Dirty: tracked or untracked files differ from the
    commit (ignored files such as results/ do not count)."""
    directory = Path(directory)
    if not (directory / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=20, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(directory), "status", "--porcelain"], capture_output=True,
                                text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def driver_facts() -> dict:
    """The trials columns the driver fills: code commit, dirty flag, pyarrow and Optuna versions."""
    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "pyarrow_version": _version("pyarrow"),
            "optuna_version": _version("optuna")}


def trial_versions(device) -> dict:
    """The versions a trial trained with, and its GPU (``device`` a torch.device)."""
    import numpy
    import torch

    cuda = getattr(device, "type", str(device)) == "cuda"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "cuda": torch.version.cuda if cuda else None,
            "gpu_name": torch.cuda.get_device_name(device) if cuda else None}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
