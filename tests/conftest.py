"""Shared test configuration: hypothesis profiles, backends, slow tests."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import xentfast
from xentfast import _core

# Derandomized in CI so a red run is reproducible; no deadline anywhere (on a
# loaded host any example can be slow, and a slow example is not a failure).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

BACKENDS = _core.supported_backends()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test once per backend this machine supports (scalar included)."""
    previous = xentfast.backend()
    _core.select_backend(request.param)
    try:
        yield request.param
    finally:
        _core.select_backend(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
