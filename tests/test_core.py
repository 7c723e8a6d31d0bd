"""xentfast.cross_entropy(_and_grad) against the float64 oracle, on every backend."""
import numpy as np
import pytest

import xentfast
from xentfast import reference

from helpers import assert_grad_close, assert_loss_close, oracle, random_problem

REDUCTIONS = ["mean", "sum", "none"]
# class counts around the vector widths (8, 16), the unroll (64) and the segment (2048)
CLASS_COUNTS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 2047, 2048, 2049, 4097, 32000]


@pytest.mark.parametrize("c", CLASS_COUNTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_oracle(backend, rng, c, reduction):
    n = 3000 if c < 100 else 37
    x, t = random_problem(rng, n, c)
    loss_ref, grad_ref = oracle(x, t, reduction=reduction)
    assert_loss_close(xentfast.cross_entropy(x, t, reduction=reduction), loss_ref)
    loss, grad = xentfast.cross_entropy_and_grad(x, t, reduction=reduction)
    assert_loss_close(loss, loss_ref)
    assert_grad_close(grad, grad_ref)
    assert grad.dtype == np.float32 and grad.shape == x.shape


@pytest.mark.parametrize("n", [0, 1, 2, 5, 1000, 4099])
def test_row_counts(backend, rng, n):
    x, t = random_problem(rng, n, 33)
    for reduction in REDUCTIONS:
        loss_ref, grad_ref = oracle(x, t, reduction=reduction)
        loss, grad = xentfast.cross_entropy_and_grad(x, t, reduction=reduction)
        assert_loss_close(loss, loss_ref)
        assert_grad_close(grad, grad_ref)


def test_largest_vocabulary_rows(backend, rng):
    x, t = random_problem(rng, 3, 262144, ignore_frac=0)
    loss_ref, grad_ref = oracle(x, t)
    loss, grad = xentfast.cross_entropy_and_grad(x, t)
    assert_loss_close(loss, loss_ref)
    assert_grad_close(grad, grad_ref)
    assert_loss_close(xentfast.cross_entropy(x[:1], t[:1], reduction="none"),
                      reference.cross_entropy(x[:1].astype(np.float64), t[:1], reduction="none"))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_class_weights_and_ignore_index(backend, rng, reduction):
    x, t = random_problem(rng, 500, 21, ignore_frac=0.3)
    w = rng.uniform(0.1, 3.0, size=21)
    for ignore_index in (-100, 4):
        t2 = np.where(t == -100, ignore_index, t)
        kw = dict(weight=w, ignore_index=ignore_index, reduction=reduction)
        loss_ref, grad_ref = oracle(x, t2, **kw)
        assert_loss_close(xentfast.cross_entropy(x, t2, **kw), loss_ref)
        loss, grad = xentfast.cross_entropy_and_grad(x, t2, **kw)
        assert_loss_close(loss, loss_ref)
        assert_grad_close(grad, grad_ref)


@pytest.mark.parametrize("shape,axis", [((6, 11, 5), 1), ((6, 11, 5), 0), ((4, 3, 5, 7), 1),
                                        ((9,), 0), ((2, 3, 13), -1), ((13, 4), 0)])
def test_any_axis(backend, rng, shape, axis):
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    lead = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    t = rng.integers(0, shape[axis], size=lead)
    for reduction in REDUCTIONS:
        loss_ref, grad_ref = oracle(x, t, axis=axis, reduction=reduction)
        loss, grad = xentfast.cross_entropy_and_grad(x, t, axis=axis, reduction=reduction)
        assert_loss_close(loss, loss_ref)
        assert_grad_close(grad, grad_ref)
        assert_loss_close(xentfast.cross_entropy(x, t, axis=axis, reduction=reduction), loss_ref)


def test_grad_output(backend, rng):
    x, t = random_problem(rng, 200, 19)
    g = rng.standard_normal(200)
    loss_ref, grad_ref = oracle(x, t, reduction="none", grad_output=g)
    loss, grad = xentfast.cross_entropy_and_grad(x, t, reduction="none", grad_output=g)
    assert_loss_close(loss, loss_ref)
    assert_grad_close(grad, grad_ref)
    for reduction in ("mean", "sum"):
        _, grad_ref = oracle(x, t, reduction=reduction, grad_output=2.5)
        _, grad = xentfast.cross_entropy_and_grad(x, t, reduction=reduction, grad_output=2.5)
        assert_grad_close(grad, grad_ref)


def test_finite_differences(rng):
    """The float64 gradient against central differences, one class at a time."""
    x = rng.standard_normal((4, 9)) * 2
    t = np.array([0, 8, 3, -100])
    w = rng.uniform(0.5, 2.0, size=9)
    for reduction in ("mean", "sum"):
        _, grad = xentfast.cross_entropy_and_grad(x, t, weight=w, reduction=reduction)
        h = 1e-6
        for i in range(4):
            for k in range(9):
                xp, xm = x.copy(), x.copy()
                xp[i, k] += h
                xm[i, k] -= h
                fd = (xentfast.cross_entropy(xp, t, weight=w, reduction=reduction)
                      - xentfast.cross_entropy(xm, t, weight=w, reduction=reduction)) / (2 * h)
                assert abs(grad[i, k] - fd) < 1e-7, (i, k, grad[i, k], fd)


def test_float64_is_computed_in_float64(backend, rng):
    x = rng.standard_normal((50, 300)) * 5
    t = rng.integers(0, 300, size=50)
    loss_ref, grad_ref = reference.cross_entropy_and_grad(x, t)
    loss, grad = xentfast.cross_entropy_and_grad(x, t)
    assert grad.dtype == np.float64
    assert abs(loss - loss_ref) <= 1e-13 * abs(loss_ref)
    np.testing.assert_allclose(grad, grad_ref, rtol=0, atol=1e-15)
    lse = xentfast.logsumexp(x, axis=1)
    assert lse.dtype == np.float64
    np.testing.assert_allclose(lse, reference.logsumexp(x, axis=1), rtol=1e-14)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_bitwise_identical_across_threads(rng, threads):
    for n, c in [(4096, 10), (300, 2049), (64, 32000), (1000, 1), (3, 70000)]:
        x, t = random_problem(rng, n, c)
        base = xentfast.cross_entropy_and_grad(x, t, num_threads=1)
        loss, grad = xentfast.cross_entropy_and_grad(x, t, num_threads=threads)
        assert loss == base[0]
        assert np.array_equal(grad, base[1])
        assert xentfast.cross_entropy(x, t, num_threads=threads) == xentfast.cross_entropy(
            x, t, num_threads=1)
        none = xentfast.cross_entropy(x, t, reduction="none", num_threads=threads)
        assert np.array_equal(none, xentfast.cross_entropy(x, t, reduction="none", num_threads=1))


# ---------------------------------------------------------------- adversarial inputs


@pytest.mark.parametrize("scale", [1e4, 1e-6, 1e30])
def test_huge_and_tiny_logits(backend, rng, scale):
    x, t = random_problem(rng, 64, 1000, scale=1.0)
    x = (x * scale).astype(np.float32)
    loss_ref, grad_ref = oracle(x, t)
    loss, grad = xentfast.cross_entropy_and_grad(x, t)
    assert np.isfinite(loss)
    assert_loss_close(loss, loss_ref)
    assert_grad_close(grad, grad_ref)


def test_masked_classes(backend, rng):
    x, t = random_problem(rng, 100, 4200, ignore_frac=0)
    x[:, ::3] = -np.inf          # masked columns
    x[:, 2048:4096] = -np.inf    # a whole masked segment
    t = (t // 3) * 3 + 1         # targets on unmasked columns
    t[t >= 2048] = 7
    loss_ref, grad_ref = oracle(x, t)
    loss, grad = xentfast.cross_entropy_and_grad(x, t)
    assert np.isfinite(loss)
    assert_loss_close(loss, loss_ref)
    assert_grad_close(grad, grad_ref)
    assert np.all(grad[:, ::3] == 0) and np.all(grad[:, 2048:4096] == 0)
    sm = xentfast.softmax(x)
    assert np.all(sm[:, ::3] == 0)


def test_nan_row_is_isolated(backend, rng):
    x, t = random_problem(rng, 6, 3000, ignore_frac=0)
    x[2, 1234] = np.nan
    rows = xentfast.cross_entropy(x, t, reduction="none")
    loss, grad = xentfast.cross_entropy_and_grad(x, t, reduction="none")
    assert np.isnan(rows[2]) and np.isnan(loss[2]) and np.all(np.isnan(grad[2]))
    keep = [0, 1, 3, 4, 5]
    assert np.all(np.isfinite(rows[keep]))
    assert_loss_close(rows[keep], reference.cross_entropy(x[keep].astype(np.float64), t[keep],
                                                          reduction="none"))
    assert_grad_close(grad[keep], reference.cross_entropy_and_grad(
        x[keep].astype(np.float64), t[keep], reduction="none")[1])
    assert np.isnan(xentfast.cross_entropy(x, t))


def test_inf_and_fully_masked_rows_are_nan_like_torch(backend):
    x = np.array([[np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf], [0.0, 1.0, 2.0]], np.float32)
    t = np.array([1, 0, 2])
    loss, grad = xentfast.cross_entropy_and_grad(x, t, reduction="none")
    assert np.isnan(loss[0]) and np.isnan(loss[1]) and np.isfinite(loss[2])
    assert np.all(np.isnan(grad[:2])) and np.all(np.isfinite(grad[2]))


def test_single_class(backend):
    x = np.array([[3.0], [-1e30], [0.5]], dtype=np.float32)
    t = np.zeros(3, dtype=np.int64)
    loss, grad = xentfast.cross_entropy_and_grad(x, t, reduction="none")
    assert np.array_equal(loss, np.zeros(3, np.float32))
    assert np.array_equal(grad, np.zeros((3, 1), np.float32))
    assert xentfast.cross_entropy(x, t) == 0.0


def test_empty_batch():
    x = np.empty((0, 7), dtype=np.float32)
    t = np.empty(0, dtype=np.int64)
    assert np.isnan(xentfast.cross_entropy(x, t))
    assert xentfast.cross_entropy(x, t, reduction="sum") == 0.0
    loss, grad = xentfast.cross_entropy_and_grad(x, t, reduction="none")
    assert loss.shape == (0,) and grad.shape == (0, 7)


def test_all_ignored_mean_is_nan(backend, rng):
    x, _ = random_problem(rng, 10, 5)
    t = np.full(10, -100)
    loss, grad = xentfast.cross_entropy_and_grad(x, t)
    assert np.isnan(loss)
    assert np.array_equal(grad, np.zeros_like(x))
    assert xentfast.cross_entropy(x, t, reduction="sum") == 0.0


# ---------------------------------------------------------------- layouts and out=


def _layouts(rng):
    base = (rng.standard_normal((64, 200)) * 3).astype(np.float32)
    yield "transposed", np.ascontiguousarray(base.T).T, None
    yield "fortran", np.asfortranarray(base), None
    yield "row-strided", base[::2], None
    yield "col-strided", base[:, ::2], None
    yield "reversed", base[::-1, ::-1], None
    ro = base.copy()
    ro.flags.writeable = False
    yield "read-only", ro, None
    yield "class-axis-0", np.ascontiguousarray(base.T), 0
    unaligned = np.frombuffer(b"\0" + base.tobytes(), dtype=np.float32, offset=1).reshape(base.shape)
    yield "unaligned", unaligned, None


def test_strided_and_readonly_layouts(backend, rng):
    for name, x, axis in _layouts(rng):
        axis = -1 if axis is None else axis
        lead = x.shape[1 - axis] if axis in (0, -2) else x.shape[0]
        n_classes = x.shape[axis]
        t = rng.integers(0, n_classes, size=lead)
        before = x.copy()
        loss_ref, grad_ref = oracle(x, t, axis=axis)
        loss, grad = xentfast.cross_entropy_and_grad(x, t, axis=axis)
        assert_loss_close(loss, loss_ref)
        assert_grad_close(grad, grad_ref)
        assert np.array_equal(x, before), name


def test_out_buffer_is_used(backend, rng):
    x, t = random_problem(rng, 100, 300)
    _, grad_ref = oracle(x, t)
    out = np.full_like(x, 7.0)
    loss, grad = xentfast.cross_entropy_and_grad(x, t, out=out)
    assert grad is out and np.shares_memory(grad, out)
    assert_grad_close(out, grad_ref)
    # a strided out: written through, not replaced
    big = np.zeros((100, 600), np.float32)
    _, grad = xentfast.cross_entropy_and_grad(x, t, out=big[:, ::2])
    assert np.shares_memory(grad, big)
    assert_grad_close(big[:, ::2], grad_ref)
    assert np.all(big[:, 1::2] == 0)


@pytest.mark.parametrize("axis", [-1, 0])
def test_out_is_logits(backend, rng, axis):
    x, t = random_problem(rng, 50, 5000)
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    loss_ref, grad_ref = oracle(x, t, axis=axis)
    work = x.copy()
    loss, grad = xentfast.cross_entropy_and_grad(work, t, axis=axis, out=work)
    assert grad is work
    assert_loss_close(loss, loss_ref)
    assert_grad_close(work, grad_ref)


def test_inputs_are_not_modified(backend, rng):
    x, t = random_problem(rng, 300, 50)
    w = rng.uniform(0.5, 2, 50)
    g = rng.standard_normal(300)
    copies = [a.copy() for a in (x, t, w, g)]
    xentfast.cross_entropy(x, t, weight=w)
    xentfast.cross_entropy_and_grad(x, t, weight=w, reduction="none", grad_output=g)
    xentfast.softmax(x)
    xentfast.log_softmax(x)
    xentfast.logsumexp(x, axis=1)
    for a, b in zip((x, t, w, g), copies):
        assert np.array_equal(a, b)


def test_target_dtypes(backend, rng):
    x, t = random_problem(rng, 40, 100, ignore_frac=0)
    expected = xentfast.cross_entropy(x, t)
    for dtype in (np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64):
        assert xentfast.cross_entropy(x, t.astype(dtype)) == expected
    assert xentfast.cross_entropy(x, list(t)) == expected


# ---------------------------------------------------------------- building blocks


@pytest.mark.parametrize("c", [1, 5, 16, 33, 2049, 40000])
def test_softmax_family(backend, rng, c):
    x = (rng.standard_normal((20, c)) * 4).astype(np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(xentfast.softmax(x), reference.softmax(x64), rtol=0, atol=1e-6)
    np.testing.assert_allclose(xentfast.log_softmax(x), reference.log_softmax(x64), rtol=1e-6,
                               atol=2e-6)
    np.testing.assert_allclose(xentfast.logsumexp(x, axis=-1), reference.logsumexp(x64, axis=-1),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(xentfast.softmax(x, axis=0), reference.softmax(x64, axis=0),
                               rtol=0, atol=1e-6)


def test_softmax_out_and_in_place(backend, rng):
    x = (rng.standard_normal((30, 70)) * 4).astype(np.float32)
    expected = reference.log_softmax(x.astype(np.float64))
    out = np.empty_like(x)
    assert xentfast.log_softmax(x, out=out) is out
    np.testing.assert_allclose(out, expected, atol=2e-6)
    work = x.copy()
    xentfast.softmax(work, out=work)
    np.testing.assert_allclose(work, reference.softmax(x.astype(np.float64)), atol=1e-6)
    lse_out = np.empty(30, np.float32)
    assert xentfast.logsumexp(x, axis=1, out=lse_out) is lse_out


def test_logsumexp_axes(backend, rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    x64 = x.astype(np.float64)
    for axis in (None, 0, 1, 2, (0, 2), (1, 2), -1):
        for keepdims in (False, True):
            got = xentfast.logsumexp(x, axis=axis, keepdims=keepdims)
            want = reference.logsumexp(x64, axis=axis, keepdims=keepdims)
            assert np.shape(got) == np.shape(want)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    big = np.array([1000.0, 1000.0], np.float32)
    assert xentfast.logsumexp(big) == pytest.approx(1000 + np.log(2), rel=1e-7)


@pytest.mark.parametrize("c", [2, 5, 16, 32])
def test_narrow_rows_adversarial(backend, rng, c):
    """Rows of few classes go XF_W at a time: NaN, inf, masked and ignored
    rows must stay confined to their own row inside a group."""
    x, t = random_problem(rng, 64, c, ignore_frac=0)
    x[3, 0] = np.nan
    x[5, :] = -np.inf
    x[7, c - 1] = np.inf
    x[9, 0] = -np.inf
    t[9] = c - 1
    x[11] = np.nan
    t[11] = -100                       # ignored row of NaNs: loss 0, gradient 0
    x[13] *= 1e4
    loss, grad = xentfast.cross_entropy_and_grad(x, t, reduction="none")
    bad = [3, 5, 7]
    assert np.all(np.isnan(loss[bad])) and np.all(np.isnan(grad[bad]))
    good = [i for i in range(64) if i not in bad]
    assert loss[11] == 0 and np.all(grad[11] == 0)
    ref_loss, ref_grad = oracle(x[good], t[good], reduction="none")
    assert_loss_close(loss[good], ref_loss)
    assert_grad_close(grad[good], ref_grad)
    assert grad[9, 0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_few_long_rows_split_over_threads(backend, rng, n, dtype):
    """Few rows of many classes are split over threads by segments; the
    result must equal the one-thread one bit for bit, and the oracle."""
    c = 3 * 2048 * 5 + 77
    x, t = random_problem(rng, n, c, ignore_frac=0, dtype=dtype)
    x[0, 2048:4096] = -np.inf          # a masked segment
    if n > 2:
        t[1] = -100
    w = rng.uniform(0.5, 2.0, c)
    g = rng.uniform(0.5, 2.0, n)
    for kw in (dict(), dict(weight=w, z_loss=1e-3, sample_weight=rng.uniform(0, 2, n)),
               dict(reduction="none", grad_output=g)):
        one = xentfast.cross_entropy_and_grad(x, t, num_threads=1, **kw)
        for threads in (2, 3, 8):
            many = xentfast.cross_entropy_and_grad(x, t, num_threads=threads, **kw)
            assert np.array_equal(one[0], many[0]) and np.array_equal(one[1], many[1])
            fwd = {k: v for k, v in kw.items() if k != "grad_output"}
            assert np.array_equal(xentfast.cross_entropy(x, t, num_threads=threads, **fwd),
                                  xentfast.cross_entropy(x, t, num_threads=1, **fwd))
        loss_ref, grad_ref = oracle(x, t, **kw)
        assert_loss_close(one[0], loss_ref)
        assert_grad_close(one[1], grad_ref)
    # in place: phase 2 overwrites the logits, the target entries must not care
    for threads in (1, 2):
        work = x.copy()
        loss, grad = xentfast.cross_entropy_and_grad(work, t, out=work, num_threads=threads)
        expected = xentfast.cross_entropy_and_grad(x, t, num_threads=1)
        assert loss == expected[0] and np.array_equal(work, expected[1])
    for f in (xentfast.softmax, xentfast.log_softmax):
        assert np.array_equal(f(x, num_threads=1), f(x, num_threads=2))
        work = x.copy()
        f(work, out=work, num_threads=2)
        assert np.array_equal(work, f(x, num_threads=1))
    assert np.array_equal(xentfast.logsumexp(x, axis=1, num_threads=1),
                          xentfast.logsumexp(x, axis=1, num_threads=2))
    np.testing.assert_allclose(xentfast.softmax(x, num_threads=2),
                               reference.softmax(x.astype(np.float64)), atol=1e-6)
