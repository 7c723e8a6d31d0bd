"""Thread decisions: small calls open no parallel region, large ones use every thread.

The mechanism is checked, not a time: ``_core.team_size`` says how many threads
a call of a given size would get, and ``_core.parallel_regions()`` counts the
regions xentfast has opened (incremented inside each region, with the team size
the region really had).
"""
from __future__ import annotations

import io

import numpy as np
import pytest

import xentfast
from xentfast import _core

needs_openmp = pytest.mark.skipif(not _core.OPENMP, reason="built without OpenMP")
MIN = _core.min_work_per_thread()


def regions():
    return _core.parallel_regions()[0]


def opened(call):
    """(regions the call opened, team size of the last region) -- the count
    assumes no other thread calls xentfast meanwhile."""
    before = regions()
    call()
    n, team = _core.parallel_regions()
    return n - before, team


def test_minima_are_positive_and_reported():
    assert set(MIN) == {"rows", "elementwise", "scan"}
    assert all(isinstance(v, int) and v >= 1024 for v in MIN.values()), MIN
    out = io.StringIO()
    xentfast.show_config(file=out)
    text = out.getvalue()
    for kind, n in MIN.items():
        assert f"{kind} {n}" in text
    assert "forked child:       no" in text
    assert xentfast._config.config()["forked_child"] is False


@pytest.mark.parametrize("kind", ["rows", "elementwise", "scan"])
def test_team_size(kind):
    m = MIN[kind]
    assert _core.team_size(0, 2, kind) == 1
    assert _core.team_size(2 * m - 1, 2, kind) == 1  # each thread would get less than m
    assert _core.team_size(2 * m, 2, kind) == 2
    assert _core.team_size(10**12, 2, kind) == 2
    assert _core.team_size(10**12, 1, kind) == 1
    assert _core.team_size(10**12, 64, kind) == 64  # large work: every thread asked for
    assert _core.team_size(5 * m + 1, 64, kind) == 5  # medium: as many as get m each


def test_readme_loop_shape_is_serial():
    # the README's training loop: 4096 x 10 logits, between two BLAS products
    assert _core.team_size(4096 * 10, _core.max_threads(), "rows") == 1
    assert _core.team_size(4096, _core.max_threads(), "scan") == 1


def _calls(n_rows, n_cols, threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
    t = rng.integers(0, n_cols, n_rows)
    y = (rng.random((n_rows, n_cols)) < 0.5).astype(np.float32)
    g = np.empty_like(x)
    return {
        "cross_entropy_and_grad": lambda: xentfast.cross_entropy_and_grad(
            x, t, out=g, num_threads=threads),
        "cross_entropy (general path)": lambda: xentfast.cross_entropy(
            x, t, label_smoothing=0.1, num_threads=threads),
        "softmax": lambda: xentfast.softmax(x, num_threads=threads),
        "logsumexp": lambda: xentfast.logsumexp(x, axis=1, num_threads=threads),
        "bce_and_grad": lambda: xentfast.binary_cross_entropy_with_logits_and_grad(
            x, y, out=g, num_threads=threads),
        "mse": lambda: xentfast.mean_squared_error(x, y, num_threads=threads),
    }


@pytest.mark.parametrize("shape", [(4096, 10), (64, 10), (1, 1000), (300, 100)])
def test_small_calls_open_no_region(shape):
    for name, call in _calls(*shape, threads=2).items():
        n, _ = opened(call)
        assert n == 0, (name, shape)
    t = np.zeros(2 * MIN["scan"] - 1, np.int64)
    assert opened(lambda: _core.check_targets(t, 10, -100, None, None, 2))[0] == 0


@needs_openmp
@pytest.mark.parametrize("threads", [2, 3])
def test_large_calls_use_every_thread(threads):
    n_cols = 1000
    n_rows = threads * max(MIN["rows"], MIN["elementwise"]) // n_cols + 64
    for name, call in _calls(n_rows, n_cols, threads).items():
        n, team = opened(call)
        assert n >= 1 and team == threads, (name, n, team)
    t = np.zeros(threads * MIN["scan"] + 1, np.int64)
    n, team = opened(lambda: _core.check_targets(t, 10, -100, None, None, threads))
    assert n == 1 and team == threads


@needs_openmp
def test_default_uses_max_threads():
    threads = _core.max_threads()
    if threads < 2:
        pytest.skip("one thread by default here (OMP_NUM_THREADS or one CPU)")
    x = np.zeros((threads * MIN["rows"] // 512 + 64, 512), np.float32)
    n, team = opened(lambda: xentfast.logsumexp(x, axis=1))
    assert n == 1 and team == threads


@needs_openmp
def test_few_long_rows_split_over_threads():
    # two rows longer than the threads' share: segments of each row spread over the team
    x = np.random.default_rng(1).standard_normal((2, 2 * MIN["rows"])).astype(np.float32)
    t = np.array([3, 7])
    n, team = opened(lambda: xentfast.cross_entropy_and_grad(x, t, num_threads=2))
    assert n >= 1 and team == 2
    assert opened(lambda: xentfast.cross_entropy_and_grad(x[:, :2048 * 4], t,
                                                          num_threads=2))[0] == 0


def test_results_do_not_depend_on_the_team():
    """Lowering the minima sends the same calls to 2 threads: bitwise the same results."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((777, 33)) * 4).astype(np.float32)
    t = rng.integers(0, 33, 777)
    y = rng.random(x.shape).astype(np.float32)

    def run():
        return (xentfast.cross_entropy_and_grad(x, t, num_threads=2),
                xentfast.binary_cross_entropy_with_logits_and_grad(x, y, num_threads=2),
                _core.check_targets(np.tile(t, 200), 33, -100, None, None, 2))

    before = regions()
    serial = run()
    assert regions() == before
    old = _core._set_min_work_per_thread(1, 1, 1)
    try:
        parallel = run()
    finally:
        assert _core._set_min_work_per_thread(*old) == (1, 1, 1)
    if _core.OPENMP:
        assert regions() - before >= 3
    assert serial[0][0] == parallel[0][0]
    np.testing.assert_array_equal(serial[0][1], parallel[0][1])
    assert serial[1][0] == parallel[1][0]
    np.testing.assert_array_equal(serial[1][1], parallel[1][1])
    assert serial[2] == parallel[2]


def test_override_rejects_nonpositive():
    with pytest.raises(ValueError):
        _core._set_min_work_per_thread(0, 1, 1)
    assert _core.min_work_per_thread() == MIN
