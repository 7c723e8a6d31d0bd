"""Binary cross-entropy with logits and mean squared error."""
import numpy as np
import pytest

import xentfast
from xentfast import _core, reference

from helpers import assert_grad_close, assert_loss_close

REDUCTIONS = ["mean", "sum", "none"]


def bce_both(x, y, **kw):
    got = xentfast.binary_cross_entropy_with_logits_and_grad(x, y, **kw)
    ref = reference.binary_cross_entropy_with_logits_and_grad(np.asarray(x, np.float64), y, **kw)
    fwd = xentfast.binary_cross_entropy_with_logits(x, y, **{k: v for k, v in kw.items()
                                                             if k != "grad_output"})
    return got, ref, fwd


@pytest.mark.parametrize("shape", [(), (1,), (7,), (1000000 // 1000, 1000), (33, 17), (4, 3, 5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_matches_oracle(backend, rng, shape, reduction):
    x = (rng.standard_normal(shape) * 8).astype(np.float32)
    y = rng.random(shape)
    (loss, grad), (loss_ref, grad_ref), fwd = bce_both(x, y, reduction=reduction)
    assert_loss_close(loss, loss_ref)
    assert_loss_close(fwd, loss_ref)
    assert_grad_close(grad, grad_ref)
    assert grad.shape == x.shape and grad.dtype == np.float32


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_weights_and_smoothing(backend, rng, reduction):
    x = (rng.standard_normal((40, 23)) * 5).astype(np.float32)
    y = (rng.random((40, 23)) > 0.5).astype(np.float32)
    for kw in (dict(weight=rng.random(23)), dict(weight=rng.random((40, 1))),
               dict(weight=rng.random((40, 23))), dict(pos_weight=rng.random(23) * 3),
               dict(pos_weight=2.5), dict(label_smoothing=0.1),
               dict(weight=rng.random(23), pos_weight=rng.random(23) + 0.5, label_smoothing=0.2)):
        (loss, grad), (loss_ref, grad_ref), fwd = bce_both(x, y, reduction=reduction, **kw)
        assert_loss_close(loss, loss_ref)
        assert_loss_close(fwd, loss_ref)
        assert_grad_close(grad, grad_ref)


def test_bce_is_stable_for_huge_logits(backend):
    x = np.array([-1e30, -800, -88.8, -20, 0, 20, 88.8, 800, 1e30], np.float32)
    for y in (np.zeros(9), np.ones(9), np.full(9, 0.5)):
        (loss, grad), (loss_ref, grad_ref), _ = bce_both(x, y, reduction="none")
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert_loss_close(loss, loss_ref)
        assert_grad_close(grad, grad_ref)


def test_bce_nan_propagates_to_its_element_only(backend):
    x = np.array([0.0, np.nan, 1.0], np.float32)
    loss, grad = xentfast.binary_cross_entropy_with_logits_and_grad(x, np.ones(3), reduction="none")
    assert np.isnan(loss[1]) and np.isnan(grad[1])
    assert np.all(np.isfinite(loss[[0, 2]])) and np.all(np.isfinite(grad[[0, 2]]))


def test_bce_matches_torch(backend, rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((64, 10)) * 4).astype(np.float32)
    y = rng.random((64, 10)).astype(np.float32)
    w, pw = rng.random(10).astype(np.float32), (rng.random(10) * 2).astype(np.float32)
    for reduction in REDUCTIONS:
        xt = torch.from_numpy(x.copy()).requires_grad_()
        lt = torch.nn.functional.binary_cross_entropy_with_logits(
            xt, torch.from_numpy(y), weight=torch.from_numpy(w), pos_weight=torch.from_numpy(pw),
            reduction=reduction)
        lt.backward(torch.ones_like(lt))
        loss, grad = xentfast.binary_cross_entropy_with_logits_and_grad(
            x, y, weight=w, pos_weight=pw, reduction=reduction)
        np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_log1p_within_2_ulp(backend):
    t = np.concatenate([np.linspace(0, 1, 1 << 20), np.geomspace(1e-38, 1, 1 << 16)]).astype(
        np.float32)
    y = np.empty_like(t)
    _core.log1p_f32(t, y)
    exact = np.log1p(t.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    err = np.abs(y - exact) / ulp
    assert err.max() <= 2.0, (err.max(), t[np.argmax(err)])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_matches_oracle(backend, rng, reduction, dtype):
    for shape in [(), (5,), (300, 7), (3, 4, 5)]:
        p = rng.standard_normal(shape).astype(dtype)
        t = rng.standard_normal(shape)
        loss, grad = xentfast.mean_squared_error_and_grad(p, t, reduction=reduction)
        loss_ref, grad_ref = reference.mean_squared_error_and_grad(p.astype(np.float64), t,
                                                                   reduction=reduction)
        assert_loss_close(loss, loss_ref)
        assert_loss_close(xentfast.mean_squared_error(p, t, reduction=reduction), loss_ref)
        assert_grad_close(grad, grad_ref)


def test_mse_worked_example_is_exact():
    actual = np.array([200000.0, 250000.0, 300000.0])
    predicted = np.array([210000.0, 240000.0, 310000.0])
    assert xentfast.mean_squared_error(predicted, actual) == 1e8
    assert xentfast.mean_squared_error(predicted.astype(np.float32), actual) == 1e8


def test_elementwise_grad_output_and_out(backend, rng):
    x = rng.standard_normal((20, 9)).astype(np.float32)
    y = rng.random((20, 9))
    g = rng.standard_normal((20, 1))
    for fn, ref in ((xentfast.binary_cross_entropy_with_logits_and_grad,
                     reference.binary_cross_entropy_with_logits_and_grad),
                    (xentfast.mean_squared_error_and_grad, reference.mean_squared_error_and_grad)):
        _, grad = fn(x, y, reduction="none", grad_output=g)
        assert_grad_close(grad, ref(x.astype(np.float64), y, reduction="none", grad_output=g)[1])
        out = np.empty_like(x)
        _, grad = fn(x, y, out=out, grad_output=3.0)
        assert grad is out
        assert_grad_close(out, ref(x.astype(np.float64), y, grad_output=3.0)[1])
        work = x.copy()
        fn(work, y, out=work, reduction="sum")
        assert_grad_close(work, ref(x.astype(np.float64), y, reduction="sum")[1])


def test_empty_elementwise():
    e = np.empty((0, 3), np.float32)
    assert np.isnan(xentfast.mean_squared_error(e, e))
    assert xentfast.binary_cross_entropy_with_logits(e, e, reduction="sum") == 0.0


@pytest.mark.parametrize("call,exc,words", [
    (lambda x: xentfast.binary_cross_entropy_with_logits(x, np.zeros(4)), ValueError, "shape"),
    (lambda x: xentfast.mean_squared_error(x, np.zeros((3, 5))), ValueError, "shape"),
    (lambda x: xentfast.binary_cross_entropy_with_logits(x, np.zeros((3, 4)), weight=np.ones(3)),
     ValueError, "weight"),
    (lambda x: xentfast.binary_cross_entropy_with_logits(x, np.zeros((3, 4)),
                                                         pos_weight=np.ones(3)),
     ValueError, "pos_weight"),
    (lambda x: xentfast.binary_cross_entropy_with_logits(x, np.zeros((3, 4)),
                                                         label_smoothing=2.0),
     ValueError, "label_smoothing"),
    (lambda x: xentfast.binary_cross_entropy_with_logits(x.astype(int), np.zeros((3, 4))),
     TypeError, "logits"),
    (lambda x: xentfast.mean_squared_error(x, np.zeros((3, 4)), reduction="avg"),
     ValueError, "reduction"),
    (lambda x: xentfast.mean_squared_error(x, np.array([["a"] * 4] * 3)), TypeError, "target"),
    (lambda x: xentfast.mean_squared_error_and_grad(x, np.zeros((3, 4)), out=np.zeros((3, 3))),
     ValueError, "out"),
])
def test_elementwise_errors(call, exc, words):
    with pytest.raises(exc, match=words):
        call(np.zeros((3, 4), np.float32))
