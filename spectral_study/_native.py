"""`SpectralLinear` as compiled C++ autograd ops (spectral_linear.cpp): one for both eigenvalue
sets, one for the receiving set, built once per machine and torch version in the background, used
once they are there.

Why: the Python `_SpectralLinearFunction` costs ~100 µs a training step more than `nn.Linear`
even on a 3 × 3 layer (the autograd.Function, its checks, two ctypes calls); at 784 → 128 a step
with the op took 1.09–1.16x nn.Linear's, against 1.18–1.27x with the Python function
(benchmarks/layer_speed.py, see `spectral_study.spectral`). The op does the same calls in the
same order with the same fused loops (their addresses are handed over from
`spectral_study._fused`), so it gives the same bits, and switching to it in the middle of a trial
changes nothing but the time. The receiving set's op likewise mirrors `_ReceivingLinearFunction`
(784 → 128, λ_out and φ trained, in one process against nn.Linear: 1.08x against 1.12x for
the same function in Python and for the earlier five-node composite).

Building takes ~30 s (the torch headers), so it never blocks training: the first call starts the
build in a thread and returns None (the caller uses the Python function) until the library is
loaded. One process per machine builds (a lock file); the others wait for it in their threads.
No C++ compiler, no torch headers, a failed build (remembered, with its error, in a ``.failed``
file beside the library; a build killed by a signal is not remembered: it runs again in the next
process) or ``SPECTRAL_STUDY_NATIVE=0`` mean the Python function, with the same results.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from spectral_study import _fused

_SOURCE = Path(__file__).with_name("spectral_linear.cpp")
# -O2 and C++20, as torch's own extensions; no -ffast-math: the op must give the Python path's bits.
_FLAGS = ("-O2", "-std=c++20", "-shared", "-fPIC", "-w")

_lock = threading.Lock()
_state = "idle"  # idle -> building -> ready | failed
_op: Callable | None = None  # torch.ops.spectral_study.linear, once loaded
_receiving_op: Callable | None = None  # torch.ops.spectral_study.receiving_linear
_error: str | None = None
_builder: threading.Thread | None = None


_ENABLED = _fused.switched_on("SPECTRAL_STUDY_NATIVE")  # read once, as _fused's switch


def enabled() -> bool:
    """Whether the op may be used (``SPECTRAL_STUDY_NATIVE=0``, set before the package is
    imported, switches it off)."""
    return _ENABLED


def op() -> Callable | None:
    """``torch.ops.spectral_study.linear`` once it is built and loaded, else None (the first call
    starts the build in the background)."""
    return _op if _started() else None


def receiving_op() -> Callable | None:
    """``torch.ops.spectral_study.receiving_linear`` (the receiving set), as `op`."""
    return _receiving_op if _started() else None


def _started() -> bool:
    """False when switched off; else starts the build on the first call (both ops are one library)."""
    if not _ENABLED:
        return False
    if _state == "idle":
        _start()
    return True


def load(timeout: float | None = None) -> Callable | None:
    """The op, waiting for the build (tests, benchmarks); None if it cannot be had here."""
    if not enabled():
        return None
    _start()
    builder = _builder
    if builder is not None:
        builder.join(timeout)
    return _op


def status() -> str:
    """One line: whether the op is in use, and if not, why."""
    if not enabled():
        return "Python function (SPECTRAL_STUDY_NATIVE=0)"
    return {"ready": "C++ op", "building": "Python function while the C++ op builds",
            "idle": "C++ op not built yet"}.get(_state, f"Python function (no C++ op: {_error})")


def _start() -> None:
    global _state, _builder
    with _lock:
        if _state != "idle":
            return
        _state = "building"
        _builder = threading.Thread(target=_build_and_load, name="spectral-study-native-build", daemon=True)
        _builder.start()


def _build_and_load() -> None:
    global _state, _op, _receiving_op, _error
    try:
        fused = _fused._load()  # the loops the op calls; without them it has nothing to add
        if fused is None:
            raise OSError("the fused CPU loops are unavailable")
        library = _build()
        if not hasattr(torch.ops.spectral_study, "set_kernels"):
            torch.ops.load_library(str(library))
        address = {name: ctypes.cast(getattr(fused, name), ctypes.c_void_p).value
                   for name in ("weight_f32", "grads_f32", "weight_f64", "grads_f64")}
        torch.ops.spectral_study.set_kernels(address["weight_f32"], address["grads_f32"], address["weight_f64"],
                                             address["grads_f64"], _fused._THREADED_ELEMENTS, _fused._BLOCK)
        # The overloads themselves: the packets' Python __call__ is one more frame a step.
        _op = torch.ops.spectral_study.linear.default
        _receiving_op = torch.ops.spectral_study.receiving_linear.default
        _state = "ready"
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        _error = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        _state = "failed"


def _build() -> Path:
    """The compiled library, built once per machine, source, compiler and torch (the headers and
    the C++ ABI it is compiled against)."""
    compiler = os.environ.get("CXX", "c++")
    source = _SOURCE.read_text()
    root = Path(torch.__file__).parent
    compile_flags = (*_FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
                     f"-I{root / 'include'}", f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}")
    link_flags = (f"-L{root / 'lib'}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{root / 'lib'}")
    key = hashlib.sha256("\0".join((source, compiler, torch.__version__, str(root), *compile_flags)).encode())
    target = _fused._cache_dir() / f"spectral_linear-{key.hexdigest()[:16]}.so"
    failed = target.with_suffix(".failed")
    if target.exists():
        return target
    if failed.exists():
        raise OSError(f"an earlier build failed ({failed}): {failed.read_text().strip()[:200]}")
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per machine; the others wait here, in their threads
        if target.exists():  # built while this one waited
            return target
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        # The source on stdin, the libraries after it (linkers drop those named before the code
        # that needs them), the rename done by the shell, and a session of its own: a process
        # that ends mid-build (its thread is a daemon; Ray signals a finished worker's process
        # group) leaves the compiler running to put a whole library in place for the next one.
        command = [compiler, *compile_flags, "-x", "c++", "-", "-o", str(partial), *link_flags]
        done = subprocess.run(["sh", "-c", '"$@" && mv -f "$0" "$TARGET"', str(partial), *command],
                              input=source, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "TARGET": str(target)}, start_new_session=True)
        if done.returncode != 0 or not target.exists():
            partial.unlink(missing_ok=True)
            if 0 < done.returncode < 128:  # the compiler said no: remembered. A build killed by a
                # signal (a Ray worker ending, the OOM killer: < 0 or 128 + n) is tried again later.
                failed.write_text(f"{compiler} exited {done.returncode}: {done.stderr.strip()[-2000:]}\n")
            raise OSError(f"{compiler} failed (exit {done.returncode}): {done.stderr.strip()[:300]}")
    return target
