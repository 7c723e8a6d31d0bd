"""Huge inputs: more than 2**31 elements, and requests that cannot be allocated.

* ``test_more_than_2_31_elements_in_place`` (marker ``huge``): 65536 x 32769
  float32 logits (2**31 + 65536 elements, 8.6 GB), loss with ``reduction=
  "none"`` and ``"mean"``, then the gradient with ``out=logits``, checked
  against the float64 oracle: every row's loss, and the gradient of rows on
  both sides of element 2**31 and the last row (where a 32-bit offset would
  wrap).  Runs only when /proc/meminfo reports >= 20 GiB available.
* A request whose output cannot be allocated (a zero-stride view of a tiny
  array posing as 2**61 bytes) raises MemoryError, in a subprocess so that a
  crash or a hang is reported as such.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xentfast
from xentfast import reference

N_ROWS, N_CLASSES = 65536, 32769  # N*C = 2**31 + 65536
NEED_GIB = 20
N_SCALES = 13


def _available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def _rows_pattern():
    """Row i of the huge array is one of N_SCALES float32 rows (base * scale
    of i % N_SCALES), so the oracle needs N_SCALES float64 rows only, while
    a kernel reading the wrong row (a wrapped offset) gets another row's
    values: the scales change every row's log-sum-exp."""
    rng = np.random.default_rng(31)
    base = rng.standard_normal(N_CLASSES).astype(np.float32)
    scales = (1.0 + np.arange(N_SCALES, dtype=np.float32) / 7).astype(np.float32)
    patterns = base[None, :] * scales[:, None]  # float32 products, as written below
    return patterns


@pytest.mark.huge
def test_more_than_2_31_elements_in_place():
    available = _available_gib()
    if available < NEED_GIB:
        pytest.skip(f"needs {NEED_GIB} GiB available, /proc/meminfo says {available:.1f} GiB")
    assert N_ROWS * N_CLASSES > 2 ** 31
    patterns = _rows_pattern()
    which = np.arange(N_ROWS) % N_SCALES
    target = (np.arange(N_ROWS, dtype=np.int64) * 7919) % N_CLASSES
    x = np.empty((N_ROWS, N_CLASSES), np.float32)
    for r0 in range(0, N_ROWS, 1024):
        x[r0:r0 + 1024] = patterns[which[r0:r0 + 1024]]

    # the oracle, from the N_SCALES distinct rows
    p64 = patterns.astype(np.float64)
    lse = reference.logsumexp(p64, axis=1)
    row_loss = lse[which] - p64[which, target]
    mean_loss = float(np.sum(row_loss)) / N_ROWS

    per_row = xentfast.cross_entropy(x, target, reduction="none")
    assert per_row.shape == (N_ROWS,)
    np.testing.assert_allclose(per_row, row_loss, rtol=1e-5, atol=1e-5)
    loss, grad = xentfast.cross_entropy_and_grad(x, target, out=x)
    assert grad is x
    assert loss == pytest.approx(mean_loss, rel=1e-6)

    # rows holding element 2**31 and around it, the last row, a few others
    boundary = (2 ** 31) // N_CLASSES
    rows = sorted({0, 1, boundary - 1, boundary, boundary + 1, N_ROWS - 2, N_ROWS - 1, 12345})
    for r in rows:
        k = which[r]
        _, g_ref = reference.cross_entropy_and_grad(p64[k:k + 1], target[r:r + 1],
                                                    reduction="sum")
        np.testing.assert_allclose(grad[r].astype(np.float64) * N_ROWS, g_ref[0], rtol=0,
                                   atol=1e-6, err_msg=f"gradient of row {r}")


# a view of 8 bytes posing as (2, 2**58) float32 = 2**61 bytes: any output or
# copy of its shape is impossible (more than the 2**47-byte address space),
# so the allocation fails at once even with memory overcommit
_IMPOSSIBLE = textwrap.dedent("""
    import json, numpy as np, xentfast
    shape = (2, 2 ** 58)
    x = np.broadcast_to(np.zeros((1, 1), np.float32), shape)
    y = np.broadcast_to(np.full((1, 1), 0.5, np.float32), shape)
    t = np.zeros(2, np.int64)
    cases = {
        "cross_entropy_and_grad": lambda: xentfast.cross_entropy_and_grad(x, t),
        "softmax": lambda: xentfast.softmax(x),
        "log_softmax": lambda: xentfast.log_softmax(x),
        "binary_cross_entropy_with_logits": lambda: xentfast.binary_cross_entropy_with_logits(
            x, y, reduction="none"),
        "binary_cross_entropy_with_logits_and_grad":
            lambda: xentfast.binary_cross_entropy_with_logits_and_grad(x, y),
        "mean_squared_error": lambda: xentfast.mean_squared_error(x, y, reduction="none"),
        "mean_squared_error_and_grad": lambda: xentfast.mean_squared_error_and_grad(x, y),
    }
    results = {}
    for name, call in cases.items():
        if not hasattr(xentfast, name):
            continue
        try:
            call()
            results[name] = "returned"
        except Exception as exc:
            results[name] = type(exc).__name__ + ": " + str(exc)[:200]
        print(name, results[name], flush=True)
    print("RESULTS " + json.dumps(results))
""")


def test_impossible_allocation_raises_memory_error():
    proc = subprocess.run([sys.executable, "-c", _IMPOSSIBLE], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="2"), check=False)
    assert proc.returncode == 0, f"the process died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")][-1]
    results = json.loads(line[len("RESULTS "):])
    assert results, "no function was tried"
    wrong = {k: v for k, v in results.items() if not v.startswith("MemoryError")}
    assert not wrong, wrong


def test_memory_error_leaves_the_process_usable():
    """After a MemoryError the next ordinary call works (no poisoned state)."""
    x = np.broadcast_to(np.zeros((1, 1), np.float32), (2, 2 ** 58))
    with pytest.raises(MemoryError):
        xentfast.cross_entropy_and_grad(x, np.zeros(2, np.int64))
    small = np.array([[0.0, 0.0]], np.float32)
    assert xentfast.cross_entropy(small, np.array([1])) == pytest.approx(np.log(2.0))
