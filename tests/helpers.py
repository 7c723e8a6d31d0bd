"""Comparison helpers shared by the test modules."""
import os

import numpy as np
import pytest

from xentfast import reference

LOSS_RTOL = 1e-6  # reduced loss vs the float64 oracle
GRAD_ATOL = 1e-6  # gradient entries vs the float64 oracle


def assert_loss_close(actual, expected, rtol=LOSS_RTOL):
    """Relative error of a loss (scalar or per row) against the oracle; per-row
    losses near zero are held to rtol in absolute terms."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol, equal_nan=True)


def assert_grad_close(actual, expected, atol=GRAD_ATOL):
    """Gradient entries within atol of the oracle; entries larger than 1
    (z-loss, sums, large weights) within the same figure relative to them:
    a float32 result cannot do better than half an ulp of itself."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    np.testing.assert_allclose(a, e, rtol=atol, atol=atol, equal_nan=True)


def oracle(logits, target, **kw):
    """The float64 oracle's (loss, grad) on the same (float32-valued) data."""
    return reference.cross_entropy_and_grad(np.asarray(logits, dtype=np.float64), target, **kw)


def random_problem(rng, n, c, *, scale=3.0, dtype=np.float32, ignore_frac=0.1):
    x = (rng.standard_normal((n, c)) * scale).astype(dtype)
    t = rng.integers(0, c, size=n)
    if ignore_frac and n:
        t[rng.random(n) < ignore_frac] = -100
    return x, t


def under_sanitizer():
    """Is this process running the ASan+UBSan build of tools/sanitize.sh?
    (ASan also keeps freed memory in quarantine: RSS means nothing there.)"""
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def distributed_missing(what):
    """Skip a distributed test for want of `what`, or fail where
    XENTFAST_REQUIRE_DISTRIBUTED=1 (CI's main run) asks for them to run."""
    if os.environ.get("XENTFAST_REQUIRE_DISTRIBUTED") == "1":
        pytest.fail(f"{what}; XENTFAST_REQUIRE_DISTRIBUTED=1 asks for the distributed tests: "
                    f"install the mpi extra (pip install .[test,mpi]) and torch")
    pytest.skip(what)


def mpiexec_path():
    """mpiexec (the mpich wheel installs it beside the interpreter), with
    mpi4py importable; else distributed_missing."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        distributed_missing("mpi4py is not installed (pip install mpi4py mpich)")
    from xentfast.bench.distributed import _mpiexec  # one lookup for the bench and tests

    found = _mpiexec()
    if found is None:
        distributed_missing("mpiexec is not on PATH (pip install mpich)")
    return found
