"""pytest-benchmark configuration: the benchmark shapes and their problems.

Run with ``pytest benchmarks/`` (the default ``pytest`` run only collects
``tests/``).  ``--bench-shapes small`` (or the environment variable
``XENTFAST_BENCH_SMALL=1``) swaps the full shapes for small ones of the same
kind, for a quick smoke run.
"""
import os

import pytest

from xentfast import bench

# N x C: a language model's logits (two vocabularies), a classifier's, a
# binary model's as two classes.
FULL_SHAPES = [(8192, 32000), (4096, 128256), (65536, 10), (1_000_000, 2)]
SMALL_SHAPES = [(1024, 4000), (64, 128256), (8192, 10), (100_000, 2)]
# The loss options are timed on a language model's batch (bench --options' default).
FULL_OPTIONS_SHAPE = (8192, 32000)
SMALL_OPTIONS_SHAPE = (1024, 4000)


def pytest_addoption(parser):
    group = parser.getgroup("xentfast benchmarks")
    group.addoption(
        "--bench-shapes", choices=("full", "small"), default=None,
        help="problem sizes: 'full' (default) or 'small' for a smoke run; "
             "XENTFAST_BENCH_SMALL=1 also selects 'small'")


def _small(config):
    choice = config.getoption("--bench-shapes")
    if choice is None:
        return os.environ.get("XENTFAST_BENCH_SMALL", "") not in ("", "0")
    return choice == "small"


def bench_shapes(config):
    return SMALL_SHAPES if _small(config) else FULL_SHAPES


def pytest_generate_tests(metafunc):
    # Module scope: pytest runs all tests of one shape before allocating the
    # next shape's logits (1-2 GiB each at full size).
    if "shape" in metafunc.fixturenames:
        shapes = bench_shapes(metafunc.config)
        metafunc.parametrize("shape", shapes, ids=[f"{n}x{c}" for n, c in shapes],
                             indirect=True, scope="module")


@pytest.fixture(scope="module")
def shape(request):
    return request.param


@pytest.fixture(scope="module")
def problem(shape):
    """Standard-normal float32 logits of `shape` and uniform targets."""
    return bench.make_problem(*shape)


@pytest.fixture(scope="module")
def options_problem(request):
    """The options group's problem (its probability targets and weights are
    built on first use and kept for the module)."""
    shape = SMALL_OPTIONS_SHAPE if _small(request.config) else FULL_OPTIONS_SHAPE
    return bench.make_problem(*shape)


@pytest.fixture(scope="module")
def expected_loss(problem):
    """xentfast's mean loss on `problem`, every method's sanity check."""
    import xentfast

    return xentfast.cross_entropy(problem.x, problem.target, num_threads=problem.threads)
