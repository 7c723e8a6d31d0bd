"""xentfast._torch_linear: the fused LM head as a PyTorch autograd op, against
torch.nn.functional.linear_cross_entropy and linear + cross_entropy."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from xentfast import reference  # noqa: E402
from xentfast._torch_linear import LinearCrossEntropyLoss, linear_cross_entropy  # noqa: E402

V, D = 120, 24


def params(dtype, with_bias, seed=0, lead=(3, 70), transposed=False):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(lead + (D,), dtype=dtype, generator=g).requires_grad_(True)
    w = (torch.randn(V, D, dtype=dtype, generator=g) * 0.4)
    if transposed:  # W stored as the transpose of a (D, V) tensor, handed over as is
        w = w.T.contiguous().T
    w = w.detach().requires_grad_(True)
    b = (torch.randn(V, dtype=dtype, generator=g).requires_grad_(True) if with_bias else None)
    t = torch.randint(0, V, lead, generator=g)
    t[torch.rand(lead, generator=g) < 0.2] = -100
    return h, w, b, t


def grads(tensors):
    out = [None if t is None else t.grad.clone() for t in tensors]
    for t in tensors:
        if t is not None:
            t.grad = None
    return out


def torch_reference(h, w, b, t, **kw):
    """linear + cross_entropy with the classes of each token last (PyTorch's
    F.cross_entropy wants them on dim 1, so flatten the tokens)."""
    logits = F.linear(h, w, b)
    loss = F.cross_entropy(logits.reshape(-1, V), t.reshape(-1), **kw)
    return loss.reshape(t.shape) if kw.get("reduction") == "none" else loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"weight": True},
                                     {"weight": True, "label_smoothing": 0.05}])
def test_matches_linear_plus_cross_entropy(dtype, reduction, with_bias, options):
    h, w, b, t = params(dtype, with_bias)
    kw = dict(options, reduction=reduction)
    if kw.pop("weight", False):
        kw["weight"] = torch.rand(V, dtype=dtype) + 0.5
    upstream = (torch.rand(t.shape, dtype=dtype) + 0.5 if reduction == "none"
                else torch.tensor(1.7, dtype=dtype))
    tensors = (h, w, b)
    loss = linear_cross_entropy(h, w, t, linear_bias=b, **kw)
    loss.backward(upstream)
    got = grads(tensors)
    ref = torch_reference(h, w, b, t, **kw)
    ref.backward(upstream)
    expected = grads(tensors)
    tol = 3e-5 if dtype == torch.float32 else 1e-11
    assert loss.dtype == dtype and loss.shape == ref.shape
    torch.testing.assert_close(loss, ref.detach(), rtol=tol, atol=tol)
    for a, e in zip(got, expected):
        if e is None:
            assert a is None
        else:
            torch.testing.assert_close(a, e, rtol=tol, atol=tol * max(1.0, e.abs().max().item()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunked", [False, True])
def test_matches_torch_linear_cross_entropy(dtype, reduction, chunked):
    """PyTorch's own F.linear_cross_entropy (2-D input, as it documents), plain and chunked."""
    h, w, b, t = params(dtype, True, lead=(150,))
    kw = dict(reduction=reduction, label_smoothing=0.1)
    opts = torch.nn.LinearCrossEntropyOptions() if chunked else None
    upstream = (torch.rand(t.shape, dtype=dtype) + 0.5 if reduction == "none"
                else torch.tensor(0.6, dtype=dtype))
    tensors = (h, w, b)
    linear_cross_entropy(h, w, t, linear_bias=b, **kw).backward(upstream)
    got = grads(tensors)
    with _no_warning_check():
        ref = F.linear_cross_entropy(h, w, t, linear_bias=b, options=opts, **kw)
    ref.backward(upstream)
    expected = grads(tensors)
    tol = 5e-5 if dtype == torch.float32 else 1e-10
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, rtol=tol, atol=tol * max(1.0, e.abs().max().item()))


class _no_warning_check:
    """PyTorch's chunked path may warn about falling back; that is its business."""

    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_xentfast_options_against_oracle(dtype):
    h, w, b, t = params(dtype, True, transposed=True)
    sw = torch.rand(t.shape, dtype=torch.float64)
    kw = dict(z_loss=1e-3, softcap=5.0, temperature=0.8, label_smoothing=0.1)
    loss = linear_cross_entropy(h, w, t, linear_bias=b, sample_weight=sw, chunk_size=64, **kw)
    loss.backward()
    got = grads((h, w, b))
    exp = reference.linear_cross_entropy_and_grad(
        h.detach().numpy(), w.detach().numpy(), t.numpy(), linear_bias=b.detach().numpy(),
        sample_weight=sw.numpy(), **kw)
    tol = 3e-5 if dtype == torch.float32 else 1e-11
    assert loss.item() == pytest.approx(exp[0], rel=tol)
    for a, e in zip(got, exp[1:]):
        np.testing.assert_allclose(a.numpy(), e, rtol=0, atol=tol * max(1.0, np.abs(e).max()))


def test_no_grad_computes_loss_only(monkeypatch):
    import xentfast
    h, w, b, t = params(torch.float32, True)
    called = []
    original = xentfast.linear_cross_entropy_and_grad
    monkeypatch.setattr(xentfast, "linear_cross_entropy_and_grad",
                        lambda *a, **k: called.append(1) or original(*a, **k))
    with torch.no_grad():
        loss = linear_cross_entropy(h, w, t, linear_bias=b)
    assert not loss.requires_grad and not called
    # nothing requires grad: loss only as well
    loss2 = linear_cross_entropy(h.detach(), w.detach(), t, linear_bias=b.detach())
    assert not called and loss2.item() == loss.item()
    ref = torch_reference(h, w, b, t)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_only_weight_requires_grad():
    h, w, b, t = params(torch.float32, False)
    h = h.detach()
    linear_cross_entropy(h, w, t).backward()
    got = w.grad.clone()
    w.grad = None
    torch_reference(h, w, None, t).backward()
    torch.testing.assert_close(got, w.grad, rtol=3e-5, atol=3e-5)


def test_retain_graph_second_backward():
    h, w, b, t = params(torch.float64, True)
    loss = linear_cross_entropy(h, w, t, linear_bias=b)
    loss.backward(retain_graph=True)
    first = grads((h, w, b))
    loss.backward(torch.tensor(2.0, dtype=torch.float64))
    second = grads((h, w, b))
    for a, c in zip(first, second):
        torch.testing.assert_close(c, 2 * a)


def test_module_mirrors_torch():
    torch.manual_seed(0)
    ours = LinearCrossEntropyLoss(D, V, bias=True, label_smoothing=0.1, dtype=torch.float64)
    theirs = torch.nn.LinearCrossEntropyLoss(D, V, bias=True, label_smoothing=0.1,
                                             dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    h, _, _, t = params(torch.float64, False, lead=(80,))
    ours(h, t).backward()
    got = (h.grad.clone(), ours.linear.weight.grad, ours.linear.bias.grad)
    h.grad = None
    theirs(h, t).backward()
    expected = (h.grad, theirs.linear.weight.grad, theirs.linear.bias.grad)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)
    assert "num_classes=120" in repr(ours)


def test_module_batched_and_sample_weight():
    head = LinearCrossEntropyLoss(D, V, z_loss=1e-4)
    h = torch.randn(2, 9, D)
    t = torch.randint(0, V, (2, 9))
    loss = head(h, t, sample_weight=torch.rand(2, 9))
    loss.backward()
    assert head.linear.weight.grad.shape == (V, D)


def test_bad_input():
    h, w, b, t = params(torch.float32, True)
    with pytest.raises(TypeError, match="input"):
        linear_cross_entropy(h.detach().numpy(), w, t)
    with pytest.raises(TypeError, match="input"):
        linear_cross_entropy(h.detach().to(torch.int32), w, t)
    with pytest.raises(TypeError, match="linear_weight"):
        linear_cross_entropy(h, w.detach().double(), t)
    with pytest.raises(ValueError, match="features"):
        linear_cross_entropy(h, w[:, :-1], t)
    with pytest.raises(ValueError, match="linear_bias"):
        linear_cross_entropy(h, w, t, linear_bias=b[:-1])
    with pytest.raises(ValueError, match="target"):
        linear_cross_entropy(h, w, torch.full(t.shape, V))
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(h, w, t, reduction="avg")
    with pytest.raises(ValueError, match="chunk_size"):
        linear_cross_entropy(h, w, t, chunk_size=0)
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy(h, w, t, weight=torch.ones(V, requires_grad=True))
    with pytest.raises(ValueError, match="weight"):
        LinearCrossEntropyLoss(D, V, weight=torch.ones(V + 1))
    assert h.grad is None and w.grad is None


def test_docstring_examples():
    import doctest

    from xentfast import _torch_linear
    result = doctest.testmod(_torch_linear, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0
