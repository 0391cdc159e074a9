"""A copy's fingerprint: the SHA-256 of its files' *contents* (IDX files un-gzipped), so every
intact copy of a data set has the same one, however it was compressed or wherever it lies.

The per-file digests are cached beside the data (or under ~/.cache/spectral-study/sha256/ where
the data directory is read-only), keyed by size and mtime.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from spectral_study.data._errors import DatasetError
from spectral_study.data._formats import _contents, _data_files
from spectral_study.data._locate import _state
from spectral_study.data._sources import _SHARED_FILE_MODE, _user_cache

_FINGERPRINT_HEX = 16   # 64 bits: names a copy among a lab's copies, short enough for a table
_SIDECAR = ".spectral-study-sha256.json"


def fingerprint(name: str, directory: str | os.PathLike) -> str:
    """``"sha256:"`` and the first 16 hex digits of the SHA-256 of the lines
    ``"<sha256 of the file's contents>  <file stem>\\n"``, sorted by stem, over the files the
    loader reads in ``directory`` (IDX contents un-gzipped). Per-file digests are cached."""
    directory = Path(directory)
    files = _data_files(name, directory)
    if not all(f is not None and f.is_file() for f in files.values()):
        raise DatasetError(f"{name}: {directory} is {_state(name, directory)}; nothing to fingerprint")
    return _manifest_digest(_content_digests(name, files))


def _manifest_digest(digests: dict[str, str]) -> str:
    manifest = "".join(f"{digests[stem]}  {stem}\n" for stem in sorted(digests))
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()[:_FINGERPRINT_HEX]


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
