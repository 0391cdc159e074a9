"""Fused CPU loops for `SpectralLinear` with both eigenvalue sets: one pass over φ-sized memory
to build W, one pass to turn ∂L/∂W into ∂L/∂φ and both eigenvalue gradients.

Eager PyTorch needs several passes for the same work (W: a multiply and a fused multiply-add;
backward: a product for the eigenvalue gradients, two sums, and the φ gradient), and at batch 256
those passes, not the three matrix products, are what made `SpectralLinear` slower than
`nn.Linear` (benchmarks/layer_speed.py). The loops below are plain C compiled once per machine
with the system's C compiler (about a second) into ``~/.cache/spectral-study/kernels/`` and
called through ctypes; no compiler, a GPU tensor or ``SPECTRAL_STUDY_FUSED=0`` means the eager
path in `spectral_study.spectral`, which computes the same W and ∂L/∂φ bit for bit (same
operations, no fused multiply-add: ``-ffp-contract=off``) and the eigenvalue gradients up to
summation order.

Each loop exists twice in the library, an AVX2 copy and a baseline x86-64 copy, and the loader
picks one per CPU (GCC's ``target_clones``; a compiler without it builds the baseline alone).

Determinism: the reductions run over fixed blocks of rows whatever the number of threads, the
blocks are added in order, and each row's sum runs in a fixed number of lanes written out in the
source, so the same inputs give the same bits on any thread count and either copy.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#define BLOCK 16  /* rows per partial column sum: fixed, so results do not depend on threads */
#define LANES 16  /* partial sums per row: fixed, so results do not depend on the vector width */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(SPECTRAL_NO_CLONES)
/* An AVX2 copy and a baseline copy of each loop; the loader picks one per CPU. Both do the same
   arithmetic in the same order (explicit lanes, no fused multiply-add), so the same bits. */
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

/* Block b of the (members * nblocks) row blocks: member k, its n rows from global row r. */
#define LOCATE(b)                                                                                \
    const int64_t k = (b) / nblocks, r0 = ((b) % nblocks) * BLOCK;                               \
    const int64_t n = r0 + BLOCK < rows ? BLOCK : rows - r0, r = k * rows + r0;

#define DEFINE(T, NAME)                                                                          \
CLONES static void weight_rows_##NAME(const T* restrict phi, const T* restrict li,               \
                                      const T* restrict lout, T* restrict w,                     \
                                      int64_t nrows, int64_t cols) {                             \
    for (int64_t i = 0; i < nrows; i++) {                                                        \
        const T lo = lout[i];                                                                    \
        const T* restrict p = phi + i * cols;                                                    \
        T* restrict o = w + i * cols;                                                            \
        for (int64_t j = 0; j < cols; j++) o[j] = p[j] * (li[j] - lo);                           \
    }                                                                                            \
}                                                                                                \
/* One block of rows. g: dL/dW rows, overwritten with dL/dphi when want_phi; col: this block's  \
   column sums of g*phi (NULL: not wanted); gout: -row sums of g*phi (NULL: not wanted). */      \
CLONES static void grads_rows_##NAME(T* restrict g, const T* restrict phi, const T* restrict li, \
                                     const T* restrict lout, T* restrict col,                    \
                                     T* restrict gout, int want_phi, int64_t nrows,              \
                                     int64_t cols) {                                             \
    if (col) memset(col, 0, cols * sizeof(T));                                                   \
    for (int64_t i = 0; i < nrows; i++) {                                                        \
        T* restrict gr = g + i * cols;                                                           \
        const T* restrict p = phi + i * cols;                                                    \
        const T lo = lout[i];                                                                    \
        if (!gout && !col) {                                                                     \
            for (int64_t j = 0; j < cols; j++) gr[j] = gr[j] * (li[j] - lo);                     \
            continue;                                                                            \
        }                                                                                        \
        T acc[LANES] = {0};                                                                      \
        int64_t j = 0;                                                                           \
        for (; j + LANES <= cols; j += LANES) {                                                  \
            for (int l = 0; l < LANES; l++) {                                                    \
                const T gp = gr[j + l] * p[j + l];                                               \
                acc[l] += gp;                                                                    \
                if (col) col[j + l] += gp;                                                       \
                if (want_phi) gr[j + l] = gr[j + l] * (li[j + l] - lo);                          \
            }                                                                                    \
        }                                                                                        \
        for (int l = 0; j < cols; j++, l++) {                                                    \
            const T gp = gr[j] * p[j];                                                           \
            acc[l] += gp;                                                                        \
            if (col) col[j] += gp;                                                               \
            if (want_phi) gr[j] = gr[j] * (li[j] - lo);                                          \
        }                                                                                        \
        if (gout) {                                                                              \
            for (int w = LANES / 2; w > 0; w /= 2)                                               \
                for (int l = 0; l < w; l++) acc[l] += acc[l + w];                                \
            gout[i] = (T)(-acc[0]);                                                              \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
void weight_##NAME(const T* phi, const T* lin, const T* lout, T* w,                              \
                   int64_t members, int64_t rows, int64_t cols, int threads) {                   \
    const int64_t nblocks = (rows + BLOCK - 1) / BLOCK;                                          \
    _Pragma("omp parallel for schedule(static) num_threads(threads) if(threads > 1)")            \
    for (int64_t b = 0; b < members * nblocks; b++) {                                            \
        LOCATE(b)                                                                                \
        weight_rows_##NAME(phi + r * cols, lin + k * cols, lout + r, w + r * cols, n, cols);     \
    }                                                                                            \
}                                                                                                \
/* g: dL/dW (members, rows, cols), overwritten with dL/dphi when want_phi. gin (members, cols)  \
   and gout (members, rows) may be NULL. scratch: members * nblocks * cols values of T. */      \
void grads_##NAME(T* g, const T* phi, const T* lin, const T* lout, T* gin, T* gout,              \
                  int want_phi, int64_t members, int64_t rows, int64_t cols, int threads,        \
                  T* scratch) {                                                                  \
    const int64_t nblocks = (rows + BLOCK - 1) / BLOCK;                                          \
    _Pragma("omp parallel for schedule(static) num_threads(threads) if(threads > 1)")            \
    for (int64_t b = 0; b < members * nblocks; b++) {                                            \
        LOCATE(b)                                                                                \
        grads_rows_##NAME(g + r * cols, phi + r * cols, lin + k * cols, lout + r,                \
                          gin ? scratch + b * cols : NULL, gout ? gout + r : NULL, want_phi,     \
                          n, cols);                                                              \
    }                                                                                            \
    if (gin) {                                                                                   \
        _Pragma("omp parallel for schedule(static) num_threads(threads) if(members > 1 && threads > 1)") \
        for (int64_t k = 0; k < members; k++) {                                                  \
            const T* part = scratch + k * nblocks * cols;                                        \
            T* out = gin + k * cols;                                                             \
            memcpy(out, part, cols * sizeof(T));                                                 \
            for (int64_t b = 1; b < nblocks; b++)                                                \
                for (int64_t j = 0; j < cols; j++) out[j] += part[b * cols + j];                 \
        }                                                                                        \
    }                                                                                            \
}

DEFINE(float, f32)
DEFINE(double, f64)
"""
# The sums accumulate in the layer's dtype, as torch's own do: each row's in LANES partial sums
# (lane l takes columns l, l + LANES, ...; the lanes are then added pairwise, in a fixed tree),
# each column's over blocks of BLOCK rows, then the blocks in order. The order is written in the
# source rather than left to the vectoriser, and there is no fused multiply-add (the eager path
# has none either), so the AVX2 and the baseline copies give the same bits on every x86-64 node.
_FLAGS = ("-O3", "-fopenmp", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared")
_BLOCK = 16
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
# Below this many elements a pass takes a few microseconds and a second thread's start and the
# barrier cost more than they save, so one thread does it. Above, in a training step φ comes
# from memory rather than cache (the products in between evict it) and two threads read it
# faster: 784→128 (100k weights) took 0.97x the step time with both threads on the passes,
# 784→512 0.96x (steps of one and of two threads in alternation, 400 pairs, medians).
_THREADED_ELEMENTS = 1 << 15

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failed = False
_kernels: dict[torch.dtype, Kernels] = {}


def switched_on(variable: str) -> bool:
    """False when the environment variable says 0, false, no or off."""
    return os.environ.get(variable, "1") not in ("0", "false", "no", "off")


# Read once, at import: the layer asks on every forward, and an environment lookup of an unset
# variable costs ~3 µs (a KeyError inside os.environ). Tests switch this flag itself.
_ENABLED = switched_on("SPECTRAL_STUDY_FUSED")


def enabled() -> bool:
    """Whether the fused loops are switched on (``SPECTRAL_STUDY_FUSED=0``, set before the
    package is imported, switches them off)."""
    return _ENABLED


def kernels(*tensors: torch.Tensor) -> Kernels | None:
    """The fused passes for these tensors, or None when they cannot take them: not CPU, not
    float32/float64, mixed dtypes, not contiguous, switched off, or no library (it is built on
    the first call that could use it). The layer asks once per forward and keeps the answer for
    backward: at small widths these checks cost as much as the passes themselves."""
    first = tensors[0]
    dtype = first.dtype
    if first.device.type != "cpu" or dtype not in _SUFFIX or not enabled():
        return None
    for t in tensors:
        if t.dtype != dtype or not t.is_contiguous() or t.device.type != "cpu":
            return None
    found = _kernels.get(dtype)
    if found is None and _load() is not None:
        found = _kernels[dtype]
    return found


def usable(*tensors: torch.Tensor) -> bool:
    """True when the fused loops can take these tensors (see `kernels`)."""
    return kernels(*tensors) is not None


class Kernels:
    """The two compiled passes for one dtype, called through ctypes."""

    __slots__ = ("dtype", "_weight", "_grads")

    def __init__(self, library: ctypes.CDLL, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self._weight = getattr(library, f"weight_{_SUFFIX[dtype]}")
        self._grads = getattr(library, f"grads_{_SUFFIX[dtype]}")

    def weight(self, phi: torch.Tensor, lambda_in: torch.Tensor, lambda_out: torch.Tensor) -> torch.Tensor:
        """W = φ ⊙ (λ_in[..., None, :] − λ_out[..., :, None]) in one pass (φ: (..., out, in))."""
        *lead, rows, cols = phi.shape
        out = torch.empty_like(phi)
        self._weight(phi.data_ptr(), lambda_in.data_ptr(), lambda_out.data_ptr(), out.data_ptr(),
                     math.prod(lead), rows, cols, _threads(phi))
        return out

    def grads(self, grad_weight: torch.Tensor, phi: torch.Tensor, lambda_in: torch.Tensor,
              lambda_out: torch.Tensor, need_phi: bool, need_in: bool, need_out: bool):
        """(∂L/∂φ, ∂L/∂λ_in, ∂L/∂λ_out) from ∂L/∂W in one pass; None where not needed.
        ``grad_weight`` must be a fresh contiguous tensor: it becomes ∂L/∂φ in place."""
        *lead, rows, cols = phi.shape
        members = math.prod(lead)
        grad_in = grad_out = scratch = None
        if need_in:
            grad_in = torch.empty((*lead, cols), dtype=self.dtype)
            scratch = torch.empty(members * -(-rows // _BLOCK) * cols, dtype=self.dtype)
        if need_out:
            grad_out = torch.empty((*lead, rows), dtype=self.dtype)
        self._grads(grad_weight.data_ptr(), phi.data_ptr(), lambda_in.data_ptr(), lambda_out.data_ptr(),
                    grad_in.data_ptr() if need_in else None, grad_out.data_ptr() if need_out else None,
                    need_phi, members, rows, cols, _threads(phi), scratch.data_ptr() if need_in else None)
        return (grad_weight if need_phi else None), grad_in, grad_out


def _threads(tensor: torch.Tensor) -> int:
    return torch.get_num_threads() if tensor.numel() >= _THREADED_ELEMENTS else 1


def _load() -> ctypes.CDLL | None:
    global _library, _failed
    if _library is not None or _failed:
        return _library
    with _lock:
        if _library is None and not _failed:
            try:
                try:
                    built = _build()
                except OSError:  # a compiler without target_clones: the baseline copy alone
                    built = _build(_FLAGS + ("-DSPECTRAL_NO_CLONES",))
                _library = _declare(ctypes.CDLL(str(built)))
                _kernels.update({dtype: Kernels(_library, dtype) for dtype in _SUFFIX})
            except (OSError, subprocess.SubprocessError) as error:
                _failed = True
                warnings.warn(f"SpectralLinear: fused CPU loops unavailable ({error}); using the "
                              "eager path (same results up to summation order, slower)", stacklevel=3)
    return _library


def _build(flags: tuple[str, ...] = _FLAGS) -> Path:
    """The compiled library, built once per machine, source and flags (an atomic rename, so
    trials that build it at the same time each leave a whole file)."""
    compiler = os.environ.get("CC", "cc")
    key = hashlib.sha256("\0".join((_SOURCE, compiler, *flags)).encode()).hexdigest()[:16]
    directory = _cache_dir()
    target = directory / f"spectral_fused-{key}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        source = Path(tmp) / "spectral_fused.c"
        source.write_text(_SOURCE)
        built = Path(tmp) / target.name
        done = subprocess.run([compiler, *flags, str(source), "-o", str(built)],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise OSError(f"{compiler} failed: {done.stderr.strip()[:300]}")
        os.replace(built, target)
    return target


def _cache_dir() -> Path:
    base = os.environ.get("SPECTRAL_STUDY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "spectral-study")
    directory = Path(base) / "kernels"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    except OSError:  # a read-only home: a private temporary directory still works
        return Path(tempfile.mkdtemp(prefix="spectral-study-kernels-"))


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in _SUFFIX.values():
        getattr(library, f"weight_{suffix}").argtypes = [p, p, p, p, i64, i64, i64, i32]
        getattr(library, f"grads_{suffix}").argtypes = [p, p, p, p, p, p, i32, i64, i64, i64, i32, p]
    return library
