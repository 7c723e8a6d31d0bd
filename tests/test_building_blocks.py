"""logsumexp, softmax and log_softmax against scipy.special: axes (None, ints, tuples,
taken jointly), 0-d arrays, out= and in place, integer input."""
import warnings

import numpy as np
import pytest
import scipy.special

import xentfast

AXES = [None, 0, 1, -1, (0, 2), (2, 0), (1,), (), (0, 1, 2), (-1, -3), np.int64(1),
        (np.int32(0), 1)]
BLOCKS = ["softmax", "log_softmax"]
TOL = {np.float32: 2e-6, np.float64: 1e-13}

# SciPy's own inf - inf on the masked (-inf) slices
pytestmark = pytest.mark.filterwarnings(
    "ignore:invalid value encountered in subtract:RuntimeWarning")


def _x(dtype, layout="C"):
    x = np.random.default_rng(7).standard_normal((3, 4, 5)) * 4
    x[1, 2, :] = -np.inf  # a masked slice segment
    x = x.astype(dtype)
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "strided":
        big = np.zeros((3, 4, 10), dtype)
        big[:, :, ::2] = x
        return big[:, :, ::2]
    return x


def _close(actual, expected, dtype):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=TOL[dtype],
                               atol=TOL[dtype])


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("axis", AXES, ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_softmax_axes_match_scipy(name, axis, dtype, layout):
    x = _x(dtype, layout)
    want = getattr(scipy.special, name)(x.astype(np.float64), axis=axis)
    got = getattr(xentfast, name)(x, axis=axis)
    assert got.dtype == dtype and got.shape == x.shape
    _close(got, want, dtype)


@pytest.mark.parametrize("axis", AXES, ids=repr)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_axes_match_scipy(axis, keepdims):
    x = _x(np.float64, "F")
    want = scipy.special.logsumexp(x, axis=axis, keepdims=keepdims)
    got = xentfast.logsumexp(x, axis=axis, keepdims=keepdims)
    assert np.shape(got) == np.shape(want) or axis == ()  # SciPy's axis=() keeps a copy
    _close(got, np.broadcast_to(want, np.shape(got)), np.float64)


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("axis", [None, (0, 2), (2, 0), 1, ()], ids=repr)
@pytest.mark.parametrize("out_layout", ["C", "F", "strided", "in place"])
def test_softmax_axes_with_out(name, axis, out_layout):
    x = _x(np.float32)
    want = getattr(scipy.special, name)(x.astype(np.float64), axis=axis)
    fn = getattr(xentfast, name)
    if out_layout == "in place":
        y = x.copy()
        assert fn(y, axis=axis, out=y) is y
        _close(y, want, np.float32)
        return
    out = _x(np.float32, out_layout)
    out[...] = 123.0
    assert fn(x, axis=axis, out=out) is out
    _close(out, want, np.float32)
    assert np.array_equal(x, _x(np.float32), equal_nan=True)  # the input is untouched


def test_softmax_in_place_on_a_layout_that_cannot_be_merged():
    # axes (0, 2) of a transposed view do not merge into one: computed aside, copied back
    x = _x(np.float32).transpose(2, 0, 1)
    want = scipy.special.softmax(x.astype(np.float64), axis=(0, 2))
    y = x.copy(order="F").transpose(0, 1, 2)
    assert xentfast.softmax(y, axis=(0, 2), out=y) is y
    _close(y, want, np.float32)


def test_default_axis_is_the_last_not_scipys_none():
    x = _x(np.float64)
    _close(xentfast.softmax(x), scipy.special.softmax(x, axis=-1), np.float64)
    _close(xentfast.log_softmax(x), scipy.special.log_softmax(x, axis=-1), np.float64)
    assert not np.allclose(xentfast.softmax(x), scipy.special.softmax(x))  # SciPy's None
    # logsumexp keeps SciPy's default, None
    _close(xentfast.logsumexp(x), scipy.special.logsumexp(x), np.float64)


@pytest.mark.parametrize("value", [3.0, -2.5, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("axis", [None, 0, -1, (0,), (-1,), ()], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_d_is_one_element(value, axis, dtype):
    x = np.array(value, dtype)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # SciPy's inf - inf
        want_lse = scipy.special.logsumexp(np.float64(value), axis=axis)
        # SciPy's softmax takes None, 0 and -1 on a 0-d array but refuses (0,):
        # the one element's softmax is that of axis=None
        want_sm = scipy.special.softmax(np.float64(value), axis=None)
    got = xentfast.logsumexp(x, axis=axis)
    assert np.ndim(got) == 0 and np.asarray(got).dtype == dtype
    np.testing.assert_array_equal(np.float64(got), np.reshape(want_lse, ()))
    sm = xentfast.softmax(x, axis=axis)
    assert np.ndim(sm) == 0 and np.asarray(sm).dtype == dtype
    np.testing.assert_array_equal(np.float64(sm), np.reshape(want_sm, ()))
    # log_softmax: SciPy refuses axis=(0,) on 0-d while it accepts 0 and -1;
    # xentfast takes them all, as one element: 0, NaN for NaN and +-inf
    lsm = xentfast.log_softmax(x, axis=axis)
    assert np.ndim(lsm) == 0
    np.testing.assert_array_equal(np.float64(lsm), 0.0 if np.isfinite(value) else np.nan)
    # keepdims and out keep the 0-d shape
    assert np.shape(xentfast.logsumexp(x, axis=axis, keepdims=True)) == ()
    out = np.empty((), dtype)
    assert xentfast.softmax(x, axis=axis, out=out) is out
    np.testing.assert_array_equal(np.float64(out), np.reshape(want_sm, ()))
    y = x.copy()
    assert xentfast.log_softmax(y, axis=axis, out=y) is y


@pytest.mark.parametrize("name", ["logsumexp"] + BLOCKS)
def test_bad_axes(name):
    fn = getattr(xentfast, name)
    x = np.zeros((2, 3))
    for axis, exc in [(2, np.exceptions.AxisError), (-3, np.exceptions.AxisError),
                      ((0, 2), np.exceptions.AxisError), ((0, 0), ValueError),
                      ((1, -1), ValueError), (1.5, TypeError), ([0, 1], TypeError),
                      ("0", TypeError)]:
        with pytest.raises(exc, match="axis"):
            fn(x, axis=axis)
    scalar = np.array(1.0)
    for axis, exc in [(1, np.exceptions.AxisError), (-2, np.exceptions.AxisError),
                      ((0, 0), ValueError), ((0, -1), ValueError), ((1,), np.exceptions.AxisError)]:
        with pytest.raises(exc, match="axis"):
            fn(scalar, axis=axis)


# --------------------------------------------------------------------------------------
# integer input: the building blocks follow SciPy (float64), the losses refuse it


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.bool_])
def test_building_blocks_compute_integers_in_float64(dtype):
    # SciPy accepts integers too; its result dtype is that of np.exp (float16 for
    # int8 and bool, float32 for int16/uint16): xentfast always computes in float64
    x = (np.arange(12).reshape(3, 4) % 5).astype(dtype)
    for name, kw in [("logsumexp", {"axis": 1}), ("logsumexp", {}), ("softmax", {"axis": -1}),
                     ("log_softmax", {"axis": 0}), ("softmax", {"axis": None})]:
        got = getattr(xentfast, name)(x, **kw)
        want = getattr(scipy.special, name)(x.astype(np.float64), **kw)
        assert np.asarray(got).dtype == np.float64, name
        np.testing.assert_allclose(got, want, rtol=1e-13, err_msg=name)
        out = np.empty(np.shape(want))
        assert getattr(xentfast, name)(x, out=out, **kw) is out


def test_losses_refuse_integer_logits_with_a_hint():
    x = np.zeros((3, 4), np.int64)
    t = np.array([0, 1, 2])
    calls = [
        lambda: xentfast.cross_entropy(x, t),
        lambda: xentfast.cross_entropy(x, t, label_smoothing=0.1, reduction="none"),
        lambda: xentfast.cross_entropy_and_grad(x, t),
        lambda: xentfast.evaluate(x, t),
        lambda: xentfast.perplexity(x, t),
        lambda: xentfast.binary_cross_entropy_with_logits(x, np.zeros((3, 4))),
        lambda: xentfast.binary_cross_entropy_with_logits_and_grad(x, np.zeros((3, 4))),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"logits.*astype\(np\.float32\)"):
            call()
    for call in (lambda: xentfast.mean_squared_error(x, np.zeros((3, 4))),
                 lambda: xentfast.mean_squared_error_and_grad(x, np.zeros((3, 4)))):
        with pytest.raises(TypeError, match=r"pred.*astype\(np\.float32\)"):
            call()
    with pytest.raises(TypeError, match=r"logits.*astype\(np\.float32\)"):
        xentfast.cross_entropy(np.zeros((3, 4), bool), t)
    with pytest.raises(TypeError, match=r"logits"):  # nested lists of ints are ints too
        xentfast.cross_entropy([[0, 1], [1, 0]], [0, 1])
