"""The kernels' own vector exp against float64 exp: at most 2 ulp."""
import numpy as np
import pytest

from xentfast import _core


def ulp_error(x32, exp=_core.exp_f32):
    y = np.empty_like(x32)
    exp(x32, y)
    exact = np.exp(x32.astype(np.float64))
    # one ulp of the float32 nearest the exact value (2^-149 in the subnormal range)
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    return np.abs(y.astype(np.float64) - exact) / ulp, y


# the general exp, and the row sums' exp of x <= 0 (one clamp fewer)
EXPS = pytest.mark.parametrize("exp", [_core.exp_f32, _core.exp_nonpos_f32],
                               ids=["exp", "exp_nonpos"])


@EXPS
def test_exp_within_2_ulp_on_the_softmax_range(backend, exp):
    # 2^22 points spanning [-104, 0]: the whole softmax range, subnormal
    # results (x < -87.34) and the underflow edge (-103.97) included
    x = np.linspace(-104.0, 0.0, 1 << 22, dtype=np.float32)
    err, _ = ulp_error(x, exp)
    assert err.max() <= 2.0, f"max {err.max():.3f} ulp at x={x[np.argmax(err)]!r}"


@EXPS
def test_exp_of_non_positive_special_values(backend, exp):
    """What a row's exps meet: -inf (a masked class, or x - m of a segment whose
    max is +inf), huge negatives, zeros (the max itself) and NaN."""
    x = np.array([-np.inf, -1e30, -104.5, -103.98, 0.0, -0.0, np.nan] * 3, dtype=np.float32)
    y = np.empty_like(x)
    exp(x, y)
    np.testing.assert_array_equal(y, np.array([0, 0, 0, 0, 1, 1, np.nan] * 3, np.float32))


@EXPS
@pytest.mark.parametrize("n", [1, 7, 17, 33])
def test_exp_of_non_positive_tail_lengths(backend, exp, n):
    x = np.linspace(-90, 0, n, dtype=np.float32)
    err, _ = ulp_error(x, exp)
    assert err.max() <= 2.0


def test_exp_within_2_ulp_on_random_and_positive_arguments(backend):
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-88.0, 88.7, 1 << 20), rng.uniform(-1e-3, 1e-3, 1 << 16),
                        rng.uniform(-104.0, -86.0, 1 << 18)]).astype(np.float32)
    err, _ = ulp_error(x)
    assert err.max() <= 2.0, f"max {err.max():.3f} ulp at x={x[np.argmax(err)]!r}"


def test_exp_special_values(backend):
    x = np.array([-np.inf, -1e30, -104.5, -103.98, 0.0, -0.0, 88.8, 1e30, np.inf, np.nan] * 3,
                 dtype=np.float32)
    y = np.empty_like(x)
    _core.exp_f32(x, y)
    expected = np.array([0, 0, 0, 0, 1, 1, np.inf, np.inf, np.inf, np.nan] * 3, np.float32)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 16, 17, 33])
def test_exp_tail_lengths(backend, n):
    x = np.linspace(-20, 20, n, dtype=np.float32)
    err, _ = ulp_error(x)
    assert n == 0 or err.max() <= 2.0


if __name__ == "__main__":
    # the figure the docs quote: the largest error on both point sets, per backend
    rng = np.random.default_rng(7)
    points = np.concatenate([
        np.linspace(-104.0, 0.0, 1 << 22), rng.uniform(-88.0, 88.7, 1 << 20),
        rng.uniform(-1e-3, 1e-3, 1 << 16), rng.uniform(-104.0, -86.0, 1 << 18)]).astype(np.float32)
    for name in _core.supported_backends():
        if name == "scalar":
            continue  # libm's expf
        _core.select_backend(name)
        print(f"{name}: exp within {ulp_error(points)[0].max():.3f} ulp of float64 exp "
              f"on {points.size} points in [-104, 88.7]; the row sums' exp within "
              f"{ulp_error(points[points <= 0], _core.exp_nonpos_f32)[0].max():.3f} ulp "
              f"on those <= 0")
