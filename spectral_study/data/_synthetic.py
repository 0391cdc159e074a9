"""The synthetic set: generated in memory from its size and seed, for tests and smoke runs."""
from __future__ import annotations

import hashlib
import json

import torch

from spectral_study.data._fingerprint import _FINGERPRINT_HEX

_SYNTHETIC_VERSION = 1  # bump when _synthetic changes, so that its fingerprints change too


def _synthetic(size: tuple[int, int], seed: int):
    """Ten noisy class prototypes in [0, 1]^784: a linear model learns them within an epoch."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(10, 784, generator=g, dtype=torch.float32)

    def draw(n: int):
        y = torch.randint(0, 10, (n,), generator=g)
        return 0.6 * prototypes[y] + 0.4 * torch.rand(n, 784, generator=g, dtype=torch.float32), y

    return (*draw(size[0]), *draw(size[1]))


def _synthetic_fingerprint(size: tuple[int, int], seed: int) -> str:
    params = json.dumps({"dataset": "synthetic", "version": _SYNTHETIC_VERSION,
                         "size": list(size), "seed": seed}, sort_keys=True)
    return "sha256:" + hashlib.sha256(params.encode()).hexdigest()[:_FINGERPRINT_HEX]
