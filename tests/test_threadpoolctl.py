"""threadpoolctl can limit xentfast's threads, as it limits BLAS's and scikit-learn's."""
import io

import numpy as np
import pytest

import xentfast
from xentfast._config import config

threadpoolctl = pytest.importorskip("threadpoolctl")


def default_threads():
    return config()["default_threads"]


def test_threadpool_limits_makes_xentfast_single_threaded():
    before = default_threads()
    with threadpoolctl.threadpool_limits(limits=1):
        assert default_threads() == 1
        out = io.StringIO()
        xentfast.show_config(file=out)
        assert "default threads:    1" in out.getvalue()
        # and the work still gets done, on one thread
        x = np.zeros((4, 3), np.float32)
        assert xentfast.cross_entropy(x, np.array([0, 1, 2, 0])) == pytest.approx(np.log(3))
    assert default_threads() == before


def test_openmp_limit_alone_is_enough():
    before = default_threads()
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert default_threads() == 1
    assert default_threads() == before


def test_threadpoolctl_sees_xentfast_openmp():
    if not config()["openmp"]:
        pytest.skip("xentfast was built without OpenMP: always one thread")
    info = threadpoolctl.threadpool_info()
    assert any(lib["user_api"] == "openmp" for lib in info), info
    if default_threads() > 1:
        with threadpoolctl.threadpool_limits(limits=2):
            assert default_threads() == 2


def test_limit_of_one_opens_no_parallel_region():
    from xentfast import _core

    n_rows = 4 * _core.min_work_per_thread()["rows"] // 256 + 16
    x = np.random.default_rng(0).standard_normal((n_rows, 256)).astype(np.float32)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        before = _core.parallel_regions()[0]
        xentfast.logsumexp(x, axis=1)
        assert _core.parallel_regions()[0] == before
    if config()["openmp"] and default_threads() > 1:
        before = _core.parallel_regions()[0]
        xentfast.logsumexp(x, axis=1)
        regions, team = _core.parallel_regions()
        assert regions == before + 1 and team == default_threads()


def test_linear_kernel_threads_follow_the_blas_limit():
    """The fused head's kernel takes one thread while NumPy's OpenBLAS runs
    several, and the usual default once threadpoolctl limits that BLAS to one."""
    from xentfast import _core, _linear

    if _linear._BLAS_THREADS is None:
        pytest.skip("NumPy's BLAS is not a bundled OpenBLAS")
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert _linear._BLAS_THREADS() == 1
        assert _linear.default_kernel_threads() == _core.max_threads()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert _linear._BLAS_THREADS() == 2
        assert _linear.default_kernel_threads() == 1
