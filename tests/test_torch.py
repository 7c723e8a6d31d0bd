"""xentfast against torch.nn.functional.cross_entropy, forward and backward."""
import numpy as np
import pytest

import xentfast

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_loss_and_grad(x, t, *, axis=-1, weight=None, ignore_index=-100, reduction="mean"):
    xt = torch.from_numpy(np.array(x)).requires_grad_()
    xm = torch.movedim(xt, axis, 1) if xt.ndim > 1 else xt
    w = None if weight is None else torch.from_numpy(np.asarray(weight, dtype=x.dtype))
    loss = F.cross_entropy(xm, torch.from_numpy(np.asarray(t, dtype=np.int64)), weight=w,
                           ignore_index=ignore_index, reduction=reduction)
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype,rtol,atol", [(np.float32, 2e-6, 1e-6), (np.float64, 1e-12, 1e-14)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_torch(backend, rng, dtype, rtol, atol, reduction, weighted):
    for n, c in [(257, 10), (33, 3001), (8, 32000)]:
        x = (rng.standard_normal((n, c)) * 3).astype(dtype)
        t = rng.integers(0, c, n)
        t[::7] = -100
        w = rng.uniform(0.2, 2.0, c) if weighted else None
        loss_t, grad_t = torch_loss_and_grad(x, t, weight=w, reduction=reduction)
        loss, grad = xentfast.cross_entropy_and_grad(x, t, weight=w, reduction=reduction)
        np.testing.assert_allclose(loss, loss_t, rtol=rtol, atol=atol)
        np.testing.assert_allclose(grad, grad_t, rtol=0, atol=atol)
        np.testing.assert_allclose(xentfast.cross_entropy(x, t, weight=w, reduction=reduction),
                                   loss_t, rtol=rtol, atol=atol)


def test_matches_torch_nchw_layout(backend, rng):
    """PyTorch's (N, C, d1, d2) layout is axis=1 here."""
    x = rng.standard_normal((3, 7, 4, 5)).astype(np.float32)
    t = rng.integers(0, 7, (3, 4, 5))
    t[0, 0, :2] = 3
    for reduction in ["mean", "none"]:
        loss_t, grad_t = torch_loss_and_grad(x, t, axis=1, ignore_index=3, reduction=reduction)
        loss, grad = xentfast.cross_entropy_and_grad(x, t, axis=1, ignore_index=3,
                                                     reduction=reduction)
        np.testing.assert_allclose(loss, loss_t, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(grad, grad_t, atol=1e-6)


def test_masked_and_extreme_logits_like_torch(backend, rng):
    x = (rng.standard_normal((50, 300)) * 1e4).astype(np.float32)
    x[:, 5:40] = -np.inf
    t = rng.integers(40, 300, 50)
    loss_t, grad_t = torch_loss_and_grad(x, t)
    loss, grad = xentfast.cross_entropy_and_grad(x, t)
    np.testing.assert_allclose(loss, loss_t, rtol=2e-6)
    np.testing.assert_allclose(grad, grad_t, atol=1e-6)


def test_building_blocks_match_torch(backend, rng):
    x = (rng.standard_normal((40, 513)) * 5).astype(np.float32)
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(xentfast.softmax(x), torch.softmax(xt, -1).numpy(), atol=1e-6)
    np.testing.assert_allclose(xentfast.log_softmax(x), torch.log_softmax(xt, -1).numpy(),
                               rtol=1e-6, atol=2e-6)
    np.testing.assert_allclose(xentfast.logsumexp(x, axis=1), torch.logsumexp(xt, 1).numpy(),
                               rtol=1e-6, atol=1e-6)
