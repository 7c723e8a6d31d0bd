"""Core benchmarks: xentfast's fused loss+gradient vs the copy bound and peers,
and the loss options against the plain fused loss+gradient.

Every method comes from :data:`xentfast.bench.METHODS` (the same code as
``python -m xentfast.bench`` and its ``--options``), grouped by shape (the
options: ``options NxC``), so ``pytest benchmarks/ --benchmark-group-by=group``
gives one table per shape and one for the options.
"""
import math

import pytest

import xentfast
from xentfast import bench

# torch's own modules warn about their deprecated parts on import
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torch")

KEYS = [m.key for m in bench.core_methods()]
# The options group: every row of ``python -m xentfast.bench --options``.
OPTION_KEYS = [m.key for m in bench.option_methods()]

# About 0.5 G elements timed per method and shape, at least 3 rounds (the big
# shapes: a few seconds each), at most 50 (the small ones).
_ELEMENTS_PER_METHOD = 5e8


def _rounds(elements):
    return int(min(50, max(3, _ELEMENTS_PER_METHOD // elements)))


def _prepare(m, problem):
    for module in m.requires:
        pytest.importorskip(module)
    try:
        return m.setup(problem)
    except bench.Unavailable as exc:
        pytest.skip(str(exc))


def _time(benchmark, m, prepared, problem, group):
    """Time `prepared` with pytest-benchmark; the last run's value."""
    n, c = problem.x.shape
    benchmark.group = group
    benchmark.name = m.name
    benchmark.extra_info.update(
        method=m.name, kind=m.kind, backend=xentfast.backend(), threads=problem.threads,
        shape=[n, c], elements=problem.elements, dtype=problem.x.dtype.name, limit=m.limit)
    def setup():  # pedantic would read a value returned by setup as the run's arguments
        prepared.before()

    return benchmark.pedantic(prepared.run, setup=setup if prepared.before else None,
                              rounds=_rounds(problem.elements), iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("key", KEYS)
def test_core(benchmark, problem, expected_loss, key):
    m = bench.method(key)
    prepared = _prepare(m, problem)
    try:
        value = _time(benchmark, m, prepared, problem, "{}x{}".format(*problem.x.shape))
        if prepared.result is not None:
            loss, grad = prepared.result(value)
            assert math.isclose(loss, expected_loss, rel_tol=1e-4), (loss, expected_loss)
            if grad is not None:
                assert grad.shape == problem.x.shape
    finally:
        if prepared.close is not None:
            prepared.close()


@pytest.mark.parametrize("key", OPTION_KEYS)
def test_options(benchmark, options_problem, key):
    m = bench.method(key)
    problem = options_problem
    for module in m.requires:  # skip before computing what it is checked against
        pytest.importorskip(module)
    expected = bench.expected_result(m, problem)  # untimed, before the buffers below
    expected_loss = None if expected is None else expected[0]
    del expected
    prepared = _prepare(m, problem)
    try:
        value = _time(benchmark, m, prepared, problem, "options {}x{}".format(*problem.x.shape))
        loss, grad = prepared.result(value)
        if expected_loss is not None:  # a PyTorch row against xentfast's same option
            assert math.isclose(loss, expected_loss, rel_tol=1e-4), (loss, expected_loss)
        if m.case is not None:  # an xentfast option row against the float64 oracle
            check = bench.option_oracle_check(m.case, problem)
            assert check["ok"], check
        if grad is not None:
            assert grad.shape == problem.x.shape
    finally:
        if prepared.close is not None:
            prepared.close()
