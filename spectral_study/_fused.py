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

Determinism: the reductions run over fixed blocks of rows whatever the number of threads, and
the blocks are added in order, so the same inputs give the same bits on any thread count.
"""
from __future__ import annotations

import ctypes
import hashlib
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
#include <stdlib.h>
#define BLOCK 16  /* rows per partial column sum: fixed, so results do not depend on threads */

#define DEFINE(T, NAME)                                                                          \
void weight_##NAME(const T* restrict phi, const T* restrict lin, const T* restrict lout,         \
                   T* restrict w, int64_t members, int64_t rows, int64_t cols, int threads) {    \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                            \
    for (int64_t r = 0; r < members * rows; r++) {                                               \
        const T* li = lin + (r / rows) * cols;                                                   \
        const T lo = lout[r];                                                                    \
        const T* p = phi + r * cols;                                                             \
        T* o = w + r * cols;                                                                     \
        _Pragma("omp simd")                                                                      \
        for (int64_t j = 0; j < cols; j++) o[j] = p[j] * (li[j] - lo);                           \
    }                                                                                            \
}                                                                                                \
/* g: dL/dW (members, rows, cols), overwritten with dL/dphi when want_phi. gin (members, cols)  \
   and gout (members, rows) may be NULL. scratch: members * nblocks * cols values of T. */      \
void grads_##NAME(T* restrict g, const T* restrict phi, const T* restrict lin,                   \
                  const T* restrict lout, T* restrict gin, T* restrict gout, int want_phi,       \
                  int64_t members, int64_t rows, int64_t cols, int threads,                      \
                  T* restrict scratch) {                                                         \
    const int64_t nblocks = (rows + BLOCK - 1) / BLOCK;                                          \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                            \
    for (int64_t b = 0; b < members * nblocks; b++) {                                            \
        const int64_t k = b / nblocks, r0 = (b % nblocks) * BLOCK;                               \
        const int64_t r1 = r0 + BLOCK < rows ? r0 + BLOCK : rows;                                \
        const T* li = lin + k * cols;                                                            \
        T* col = gin ? scratch + b * cols : NULL;                                                \
        if (gin) memset(col, 0, cols * sizeof(T));                                               \
        for (int64_t i = r0; i < r1; i++) {                                                      \
            const int64_t r = k * rows + i;                                                      \
            T* gr = g + r * cols;                                                                \
            const T* p = phi + r * cols;                                                         \
            const T lo = lout[r];                                                                \
            T acc = 0;                                                                           \
            if (gin && want_phi) {                                                               \
                _Pragma("omp simd reduction(+:acc)")                                             \
                for (int64_t j = 0; j < cols; j++) {                                             \
                    const T gp = gr[j] * p[j];                                                   \
                    acc += gp;                                                                   \
                    col[j] += gp;                                                                \
                    gr[j] = gr[j] * (li[j] - lo);                                                \
                }                                                                                \
            } else if (gin) {                                                                    \
                _Pragma("omp simd reduction(+:acc)")                                             \
                for (int64_t j = 0; j < cols; j++) {                                             \
                    const T gp = gr[j] * p[j];                                                   \
                    acc += gp;                                                                   \
                    col[j] += gp;                                                                \
                }                                                                                \
            } else if (want_phi && gout) {                                                       \
                _Pragma("omp simd reduction(+:acc)")                                             \
                for (int64_t j = 0; j < cols; j++) {                                             \
                    acc += gr[j] * p[j];                                                         \
                    gr[j] = gr[j] * (li[j] - lo);                                                \
                }                                                                                \
            } else if (want_phi) {                                                               \
                _Pragma("omp simd")                                                              \
                for (int64_t j = 0; j < cols; j++) gr[j] = gr[j] * (li[j] - lo);                 \
            } else {                                                                             \
                _Pragma("omp simd reduction(+:acc)")                                             \
                for (int64_t j = 0; j < cols; j++) acc += gr[j] * p[j];                          \
            }                                                                                    \
            if (gout) gout[r] = (T)(-acc);                                                       \
        }                                                                                        \
    }                                                                                            \
    if (gin) {                                                                                   \
        _Pragma("omp parallel for schedule(static) num_threads(threads) if(members > 1)")        \
        for (int64_t k = 0; k < members; k++) {                                                  \
            const T* part = scratch + k * nblocks * cols;                                        \
            for (int64_t j = 0; j < cols; j++) gin[k * cols + j] = 0;                            \
            for (int64_t b = 0; b < nblocks; b++, part += cols) {                                \
                _Pragma("omp simd")                                                              \
                for (int64_t j = 0; j < cols; j++) gin[k * cols + j] += part[j];                 \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
}

DEFINE(float, f32)
DEFINE(double, f64)
"""
# The sums accumulate in the layer's dtype, as torch's own do: each row's in SIMD partial sums,
# each column's over blocks of BLOCK rows, then the blocks in order. No fused multiply-add (the
# eager path has none either) and no target-specific code: the same
# source gives the same bits on every x86-64 node.
_FLAGS = ("-O3", "-fopenmp", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared")
_BLOCK = 16
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
# Below this many elements a pass takes tens of microseconds: a second thread's start and the
# barrier cost more than they save (and on a busy machine much more), so one thread does it.
_THREADED_ELEMENTS = 1 << 18

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failed = False


def enabled() -> bool:
    """Whether the fused loops are switched on (``SPECTRAL_STUDY_FUSED=0`` switches them off)."""
    return os.environ.get("SPECTRAL_STUDY_FUSED", "1") not in ("0", "false", "no", "off")


def usable(*tensors: torch.Tensor) -> bool:
    """True when the fused loops can take these tensors: CPU, float32 or float64, contiguous,
    one dtype, and the library built (it is built on the first call that could use it)."""
    first = tensors[0]
    if not enabled() or first.device.type != "cpu" or first.dtype not in _SUFFIX:
        return False
    if not all(t.dtype == first.dtype and t.device.type == "cpu" and t.is_contiguous() for t in tensors):
        return False
    return _load() is not None


def weight(phi: torch.Tensor, lambda_in: torch.Tensor, lambda_out: torch.Tensor) -> torch.Tensor:
    """W = φ ⊙ (λ_in[..., None, :] − λ_out[..., :, None]) in one pass (φ: (..., out, in))."""
    rows, cols = phi.shape[-2:]
    members = phi.numel() // (rows * cols) if phi.numel() else 0
    out = torch.empty_like(phi)
    fn = getattr(_library, f"weight_{_SUFFIX[phi.dtype]}")
    fn(phi.data_ptr(), lambda_in.data_ptr(), lambda_out.data_ptr(), out.data_ptr(),
       members, rows, cols, _threads(phi))
    return out


def grads(grad_weight: torch.Tensor, phi: torch.Tensor, lambda_in: torch.Tensor, lambda_out: torch.Tensor,
          *, need_phi: bool, need_in: bool, need_out: bool):
    """(∂L/∂φ, ∂L/∂λ_in, ∂L/∂λ_out) from ∂L/∂W in one pass; None where not needed.
    ``grad_weight`` must be a fresh contiguous tensor: it becomes ∂L/∂φ in place."""
    rows, cols = phi.shape[-2:]
    members = phi.numel() // (rows * cols) if phi.numel() else 0
    lead = phi.shape[:-2]
    grad_in = torch.empty((*lead, cols), dtype=phi.dtype) if need_in else None
    grad_out = torch.empty((*lead, rows), dtype=phi.dtype) if need_out else None
    blocks = -(-rows // _BLOCK)
    scratch = torch.empty(members * blocks * cols if need_in else 1, dtype=phi.dtype)
    fn = getattr(_library, f"grads_{_SUFFIX[phi.dtype]}")
    fn(grad_weight.data_ptr(), phi.data_ptr(), lambda_in.data_ptr(), lambda_out.data_ptr(),
       None if grad_in is None else grad_in.data_ptr(), None if grad_out is None else grad_out.data_ptr(),
       int(need_phi), members, rows, cols, _threads(phi), scratch.data_ptr())
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
                _library = _declare(ctypes.CDLL(str(_build())))
            except (OSError, subprocess.SubprocessError) as error:
                _failed = True
                warnings.warn(f"SpectralLinear: fused CPU loops unavailable ({error}); using the "
                              "eager path (same results up to summation order, slower)", stacklevel=3)
    return _library


def _build() -> Path:
    """The compiled library, built once per machine and source (an atomic rename, so trials that
    build it at the same time each leave a whole file)."""
    compiler = os.environ.get("CC", "cc")
    key = hashlib.sha256("\0".join((_SOURCE, compiler, *_FLAGS)).encode()).hexdigest()[:16]
    directory = _cache_dir()
    target = directory / f"spectral_fused-{key}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        source = Path(tmp) / "spectral_fused.c"
        source.write_text(_SOURCE)
        built = Path(tmp) / target.name
        done = subprocess.run([compiler, *_FLAGS, str(source), "-o", str(built)],
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
