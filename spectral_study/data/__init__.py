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

This module is the front; the work lives in private modules, one job each:
``_dataset`` (Dataset, load_dataset), ``_locate`` (search order), ``_formats`` (IDX, CIFAR-10),
``_fingerprint`` (digests and their cache), ``_fetch`` (downloads), ``_verify``, ``_synthetic``,
``_sources`` (mirrors, directories, how to get the data) and ``_errors``.
"""
from __future__ import annotations

from spectral_study.data._dataset import Dataset, load_dataset
from spectral_study.data._errors import DatasetError
from spectral_study.data._fetch import fetch
from spectral_study.data._fingerprint import fingerprint
from spectral_study.data._locate import search_paths, survey
from spectral_study.data._verify import FileCheck, Verification, verify
from spectral_study.vocabulary import DATASETS, NORMALIZATIONS

__all__ = ["DATASETS", "NORMALIZATIONS", "Dataset", "DatasetError", "FileCheck", "Verification", "fetch",
           "fingerprint", "load_dataset", "search_paths", "survey", "verify"]

# The public types are spectral_study.data's, as before the split: pickles (a DatasetError sent
# back from a Ray worker) and tracebacks name this front, not the module that happens to hold them.
for _public in (Dataset, DatasetError, FileCheck, Verification):
    _public.__module__ = __name__
del _public
