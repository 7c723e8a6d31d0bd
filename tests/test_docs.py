"""The docstring examples of the public API run as doctests."""
import doctest
import inspect

import pytest

import xentfast
from xentfast import _api, _config, _linear, reference


@pytest.mark.parametrize("module", [_api, _config, _linear, reference], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_every_public_function_is_documented():
    for name in xentfast.__all__:
        obj = getattr(xentfast, name)
        if inspect.isfunction(obj):
            assert obj.__doc__ and "Examples" in obj.__doc__, name
        elif inspect.isclass(obj):
            assert obj.__doc__, name
