"""Core benchmarks: xentfast's fused loss+gradient vs the copy bound and peers.

Every method comes from :data:`xentfast.bench.METHODS` (the same code as
``python -m xentfast.bench``), grouped by shape, so
``pytest benchmarks/ --benchmark-group-by=group`` gives one table per shape.
"""
import math

import pytest

import xentfast
from xentfast import bench

# torch's own modules warn about their deprecated parts on import
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torch")

KEYS = ["copy", "copy-threads", "xentfast-out", "xentfast-fresh", "xentfast-inplace",
        "xentfast-loss", "numpy", "torch-eager", "torch-compile"]

# About 0.5 G elements timed per method and shape, at least 3 rounds (the big
# shapes: a few seconds each), at most 50 (the small ones).
_ELEMENTS_PER_METHOD = 5e8


def _rounds(elements):
    return int(min(50, max(3, _ELEMENTS_PER_METHOD // elements)))


@pytest.mark.parametrize("key", KEYS)
def test_core(benchmark, problem, expected_loss, key):
    m = bench.method(key)
    for module in m.requires:
        pytest.importorskip(module)
    try:
        prepared = m.setup(problem)
    except bench.Unavailable as exc:
        pytest.skip(str(exc))

    n, c = problem.x.shape
    benchmark.group = f"{n}x{c}"
    benchmark.name = m.name
    benchmark.extra_info.update(
        method=m.name, kind=m.kind, backend=xentfast.backend(), threads=problem.threads,
        shape=[n, c], elements=problem.elements, dtype=problem.x.dtype.name)
    setup = None
    if prepared.before is not None:
        def setup():
            prepared.before()
    try:
        value = benchmark.pedantic(prepared.run, setup=setup, rounds=_rounds(problem.elements),
                                   iterations=1, warmup_rounds=1)
        if prepared.result is not None:
            loss, grad = prepared.result(value)
            assert math.isclose(loss, expected_loss, rel_tol=1e-4), (loss, expected_loss)
            if grad is not None:
                assert grad.shape == problem.x.shape
    finally:
        if prepared.close is not None:
            prepared.close()
