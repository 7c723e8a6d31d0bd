"""No leaks: many calls of every public function, successful and failing,
leave the process's memory flat and the inputs' reference counts unchanged.

Three views of one loop per function (its successful calls interleaved with
calls that raise at different stages: a wrong dtype, a target out of range,
a bad option, a wrong ``out``):

* resident memory (``/proc/self/statm``, after ``malloc_trim``) grows by at
  most 1 MiB after a warm-up of max(25000, n/4) calls -- catches leaks in C
  (the kernels' scratch, buffers of failed calls) of about a KiB per call and
  up, as well as in Python (smaller C leaks: LeakSanitizer, tools/sanitize.sh);
* Python-visible allocations (``tracemalloc``, which also sees NumPy's array
  buffers) grow by less than 8 bytes per call -- catches one leaked Python
  object per call, far below what the RSS check resolves;
* ``sys.getrefcount`` of every input is the same before and after.

Budget: the default run makes ``XENTFAST_LEAK_CALLS`` (default 10_000) calls
per function for the RSS check; the ``slow`` variant makes 10**5 per function.
"""
from __future__ import annotations

import gc
import inspect
import os
import sys
import tracemalloc

import numpy as np
import pytest

import xentfast

from helpers import under_sanitizer

DEFAULT_CALLS = int(os.environ.get("XENTFAST_LEAK_CALLS", "10000"))
SLOW_CALLS = 10 ** 5
RSS_LIMIT = 1 << 20  # bytes
TRACED_PER_CALL = 8  # bytes


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _glibc():
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only
        return libc
    except (OSError, AttributeError):
        return None


def _settled_rss():
    """RSS after a collection and, with glibc, after free heap pages went
    back to the system (malloc_trim): what stays is memory in use."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
    return _rss()


def _options():
    return inspect.signature(xentfast.cross_entropy).parameters


_rng = np.random.default_rng(99)
X = (_rng.standard_normal((8, 10)) * 3).astype(np.float32)
X64 = X.astype(np.float64)
X3 = (_rng.standard_normal((2, 10, 3)) * 3).astype(np.float32)
T = _rng.integers(0, 10, 8)
T[2] = -100
T3 = _rng.integers(0, 10, (2, 3))
T_BAD = T + 10
T32 = T.astype(np.int32)
W = _rng.uniform(0.5, 2.0, 10)
P = _rng.random((8, 10)).astype(np.float32)
P /= P.sum(axis=1, keepdims=True)
OUT = np.empty_like(X)
OUT_RO = np.empty_like(X)
OUT_RO.flags.writeable = False
LSE_OUT = np.empty(8, np.float32)
Y01 = _rng.random((8, 10)).astype(np.float32)
INPUTS = {"X": X, "X64": X64, "X3": X3, "T": T, "T3": T3, "T_BAD": T_BAD, "T32": T32, "W": W,
          "P": P, "OUT": OUT, "OUT_RO": OUT_RO, "LSE_OUT": LSE_OUT, "Y01": Y01}


def _ce_calls(name):
    fn = getattr(xentfast, name)
    opts = _options()
    calls = [
        (lambda: fn(X, T), None),
        (lambda: fn(X64, T32, reduction="none"), None),
        (lambda: fn(X3, T3, axis=1, weight=W), None),
        (lambda: fn(X, T_BAD), ValueError),
        (lambda: fn(X.astype(np.int32), T), TypeError),
        (lambda: fn(X, T, reduction="avg"), ValueError),
        (lambda: fn(X, T, num_threads=0), ValueError),
        (lambda: fn(X, T[:5]), ValueError),
    ]
    if "label_smoothing" in opts:
        calls.append((lambda: fn(X, T, label_smoothing=0.1, z_loss=1e-3, softcap=20.0,
                                 temperature=0.9), None))
        calls.append((lambda: fn(X, T, label_smoothing=2.0), ValueError))
    if "sample_weight" in opts:
        calls.append((lambda: fn(X, P, sample_weight=W[:8]), None))
    if name == "cross_entropy_and_grad":
        calls.append((lambda: fn(X, T, out=OUT), None))
        calls.append((lambda: fn(X, T, out=OUT_RO), ValueError))
        calls.append((lambda: fn(X, T, reduction="none", grad_output=np.ones(8)), None))
        calls.append((lambda: fn(X, T, grad_output=np.ones(3)), ValueError))
    return calls


def _block_calls(name):
    fn = getattr(xentfast, name)
    calls = [
        (lambda: fn(X), None),
        (lambda: fn(X64, axis=0), None),
        (lambda: fn(X.astype(np.complex64)), TypeError),
        (lambda: fn(X, axis=5), ValueError),
    ]
    if name == "logsumexp":
        calls.append((lambda: fn(X, axis=1, out=LSE_OUT), None))
        calls.append((lambda: fn(X3, axis=(0, 2), keepdims=True), None))
        calls.append((lambda: fn(X, axis=1, out=OUT), ValueError))
    else:
        calls.append((lambda: fn(X, out=OUT), None))
        calls.append((lambda: fn(X, out=OUT_RO), ValueError))
    return calls


def _other_calls(name):
    fn = getattr(xentfast, name)
    if name in ("evaluate", "perplexity"):
        return [(lambda: fn(X, T), None), (lambda: fn(X3, T3, axis=1), None),
                (lambda: fn(X, T_BAD), ValueError), (lambda: fn(X, T.astype(bool)), TypeError)]
    calls = [(lambda: fn(X, Y01), None), (lambda: fn(X64, Y01, reduction="none"), None),
             (lambda: fn(X, Y01[:3]), ValueError), (lambda: fn(X, Y01, reduction="x"), ValueError),
             (lambda: fn(X.astype(np.complex64), Y01), TypeError)]
    if name.endswith("_and_grad"):
        calls.append((lambda: fn(X, Y01, out=OUT), None))
        calls.append((lambda: fn(X, Y01, out=OUT_RO), ValueError))
    return calls


FUNCTIONS = ["cross_entropy", "cross_entropy_and_grad", "logsumexp", "softmax", "log_softmax",
             "evaluate", "perplexity", "binary_cross_entropy_with_logits",
             "binary_cross_entropy_with_logits_and_grad", "mean_squared_error",
             "mean_squared_error_and_grad"]


def _calls(name):
    if name.startswith("cross_entropy"):
        return _ce_calls(name)
    if name in ("logsumexp", "softmax", "log_softmax"):
        return _block_calls(name)
    return _other_calls(name)


def _run(calls, n):
    """n calls, cycling through `calls`; each must succeed or raise as said."""
    k = len(calls)
    for i in range(n):
        call, exc = calls[i % k]
        if exc is None:
            call()
        else:
            try:
                call()
            except exc:
                pass
            else:
                raise AssertionError(f"call {i % k} should have raised {exc.__name__}")


def _check_rss(name, n):
    calls = _calls(name)
    if under_sanitizer():
        pytest.skip("RSS is meaningless under AddressSanitizer (quarantine)")
    libc = _glibc()
    if libc is not None:
        # a fixed mmap threshold: glibc's dynamic one moves blocks between
        # mmap and the heap, a one-off step of a few MiB of RSS
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    # warm-up: caches, pools, lazy imports (one of them fills up ~1 MiB
    # somewhere between 2000 and 25000 calls of log_softmax, then stays flat)
    _run(calls, max(25000, n // 4))
    before = _settled_rss()
    _run(calls, n)
    growth = _settled_rss() - before
    assert growth <= RSS_LIMIT, f"RSS grew by {growth / 1024:.0f} KiB over {n} calls of {name}"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_rss_flat(name):
    _check_rss(name, DEFAULT_CALLS)


@pytest.mark.slow
@pytest.mark.parametrize("name", FUNCTIONS)
def test_rss_flat_1e5(name):
    _check_rss(name, SLOW_CALLS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_python_allocations_flat(name):
    """A leak grows the traced memory in every window of calls; the
    interpreter's one-off growths (a cache or freelist that fills once, e.g.
    ~400 KiB after some 10**4 reads of ``__array_interface__``) do not, so a
    leak must show in each of three consecutive windows."""
    calls = _calls(name)
    if under_sanitizer():
        pytest.skip("tracemalloc under AddressSanitizer: ~50x slower, and LeakSanitizer "
                    "checks the same allocations there")
    n = 3000
    _run(calls, 500)
    gc.collect()
    tracemalloc.start()
    try:
        _run(calls, 500)  # tracemalloc's own first allocations
        growths = []
        for _ in range(3):
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            _run(calls, n)
            gc.collect()
            growths.append(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()
    assert min(growths) < TRACED_PER_CALL * n, (
        f"traced allocations grew by {growths} bytes in three windows of {n} calls of {name}")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_input_refcounts_unchanged(name):
    calls = _calls(name)
    _run(calls, 100)
    gc.collect()
    before = {k: sys.getrefcount(v) for k, v in INPUTS.items()}
    _run(calls, 2000)
    gc.collect()
    after = {k: sys.getrefcount(v) for k, v in INPUTS.items()}
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}


def test_the_leak_checks_can_fail():
    """The checks above are not vacuous: a deliberate leak of one small
    Python object per call is caught by the tracemalloc check's bound, and a
    deliberate reference leak by the refcount check."""
    keep = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(4000):
            keep.append(float(len(keep)) + 0.5)
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth >= TRACED_PER_CALL * 4000
    count = sys.getrefcount(X)
    keep.append(X)
    assert sys.getrefcount(X) == count + 1
    libc = _glibc()
    if libc is not None and not under_sanitizer():
        # and a C leak of 2 KiB per "call" (written, so its pages are
        # resident) over 10^4 calls is far above the RSS bound (freed right
        # after).  The margin is wide on purpose: how much free heap is still
        # resident after malloc_trim depends on the machine (transparent huge
        # pages, khugepaged), and a CI machine once absorbed a 5 MiB leak of
        # 512-byte blocks with 300 KiB of growth.  So the RSS check is the
        # coarse net for C leaks of about a KiB per call and up; small C leaks
        # are LeakSanitizer's job (tools/sanitize.sh, run by .ci/run), small
        # Python ones tracemalloc's and the refcounts' above.
        import ctypes
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        leak_bytes = 2048
        before = _settled_rss()
        blocks = [libc.malloc(leak_bytes) for _ in range(10000)]
        for b in blocks:
            ctypes.memset(b, 1, leak_bytes)
        growth = _settled_rss() - before
        for b in blocks:
            libc.free(b)
        assert growth > RSS_LIMIT, growth
