"""float16 and bfloat16 tensors in xentfast.torch, with and without torch.autocast:
dtypes as F.cross_entropy's, values against F and against a float64 computation."""
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
xt = pytest.importorskip("xentfast.torch")
ops = pytest.importorskip("xentfast._torch_ops")

HALF = [torch.float16, torch.bfloat16]
# one rounding of the result to the dtype, relative to its largest entry
EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def run(fn, x, t, upstream=None, **kw):
    xi = x.clone().requires_grad_()
    loss = fn(xi, t, **kw)
    loss.backward(torch.ones_like(loss) if upstream is None else upstream)
    return loss.detach(), xi.grad


def exact(x, t, upstream=None, **kw):
    """Loss and gradient in float64 from the same (rounded) inputs."""
    kw = {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
          for k, v in kw.items()}
    t = t.double() if t.is_floating_point() else t
    up = None if upstream is None else upstream.double()
    return run(F.cross_entropy, x.double(), t, up, **kw)


def assert_rounded_from_exact(got, want, dtype):
    """Every entry within a few roundings of the float64 value (relative to the
    largest magnitude, so a tiny entry needs no relative accuracy)."""
    scale = want.abs().max().clamp(min=1e-30)
    assert got.dtype == dtype
    err = (got.double() - want).abs().max() / scale
    assert err <= 3 * EPS[dtype], float(err)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_half_dtypes_match_torch_dtypes_and_float64_values(dtype, reduction):
    g = torch.Generator().manual_seed(0)
    for n, c, extra in [(64, 10, {}), (9, 3000, {"label_smoothing": 0.1}),
                        (16, 50, {"weight": (torch.rand(50, generator=g) + 0.5).to(dtype)})]:
        x = (torch.randn(n, c, generator=g) * 3).to(dtype)
        t = torch.randint(0, c, (n,), generator=g)
        t[::4] = -100
        upstream = (torch.rand(n, generator=g).to(dtype) if reduction == "none"
                    else torch.tensor(0.5, dtype=dtype))
        loss, grad = run(xt.cross_entropy, x, t, upstream, reduction=reduction, **extra)
        loss_f, grad_f = run(F.cross_entropy, x, t, upstream, reduction=reduction, **extra)
        assert loss.dtype == loss_f.dtype == dtype and loss.shape == loss_f.shape
        assert grad.dtype == grad_f.dtype == dtype
        loss_64, grad_64 = exact(x, t, upstream, reduction=reduction, **extra)
        assert_rounded_from_exact(loss, loss_64, dtype)
        assert_rounded_from_exact(grad, grad_64, dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_half_probability_targets_and_nchw(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 5, generator=g).to(dtype)
    p = torch.softmax(torch.randn(4, 6, 5, generator=g), 1).to(dtype)
    loss, grad = run(xt.cross_entropy, x, p, reduction="sum")
    loss_64, grad_64 = exact(x, p, reduction="sum")
    assert_rounded_from_exact(loss, loss_64, dtype)
    assert_rounded_from_exact(grad, grad_64, dtype)


def test_bfloat16_long_rows_keep_float32_accumulation():
    """32000 classes: a bfloat16 accumulation of the sum of exponentials would be off
    by far more than one rounding."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 32000, generator=g).bfloat16()
    t = torch.randint(0, 32000, (4,), generator=g)
    loss, grad = run(xt.cross_entropy, x, t, reduction="none")
    loss_64, grad_64 = exact(x, t, reduction="none")
    torch.testing.assert_close(loss.double(), loss_64, rtol=2 * EPS[torch.bfloat16], atol=0)
    assert_rounded_from_exact(grad, grad_64, torch.bfloat16)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk", [ops.WIDEN_CHUNK_ELEMENTS, 40])
def test_bfloat16_without_ml_dtypes_is_widened_in_blocks(monkeypatch, reduction, chunk):
    """Without ml_dtypes, blocks of rows are widened to float32 (40 elements: several
    blocks): the same results as through ml_dtypes."""
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(3, 7, 4, generator=g) * 2).bfloat16()  # (N, C, d): 12 rows
    t = torch.randint(0, 7, (3, 4), generator=g)
    t[0, 1] = -100
    kw = dict(reduction=reduction, weight=torch.rand(7, generator=g) + 0.5,
              sample_weight=torch.rand(3, 4, generator=g), label_smoothing=0.1, z_loss=1e-2,
              return_z_loss=True)
    up = torch.rand(3, 4, generator=g).bfloat16() if reduction == "none" else None

    def both():
        xi = x.clone().requires_grad_()
        loss, zpart = xt.cross_entropy(xi, t, **kw)
        loss.backward(torch.ones_like(loss) if up is None else up)
        with torch.no_grad():
            loss_only, zpart_only = xt.cross_entropy(x, t, **kw)
        return loss.detach(), zpart, xi.grad, loss_only, zpart_only

    with_ml = both()
    monkeypatch.setattr(ops, "_NP_BFLOAT16", None)
    monkeypatch.setattr(ops, "WIDEN_CHUNK_ELEMENTS", chunk)
    calls = []
    widen = ops._widened_bfloat16
    monkeypatch.setattr(ops, "_widened_bfloat16", lambda *a, **k: calls.append(1) or widen(*a, **k))
    without = both()
    assert len(calls) == 2  # the widening path ran (with and without the gradient)
    for a, b in zip(without, with_ml):
        assert a.dtype == b.dtype == torch.bfloat16
        torch.testing.assert_close(a, b, rtol=2**-7, atol=1e-6)
    xi = x.clone().requires_grad_()  # in place, over a non-leaf copy of the logits
    loss = xt.cross_entropy(xi.clone(), t, inplace_backward=True,
                            **dict(kw, return_z_loss=False))
    loss.backward(torch.ones_like(loss) if up is None else up)
    torch.testing.assert_close(xi.grad, with_ml[2], rtol=2**-7, atol=1e-6)


def test_bfloat16_without_ml_dtypes_checks_every_block_first(monkeypatch):
    """Widened block by block, the arguments are still checked once, up front: a bad
    target in the last block names its own row, and in place leaves the logits as
    they were."""
    monkeypatch.setattr(ops, "_NP_BFLOAT16", None)
    monkeypatch.setattr(ops, "WIDEN_CHUNK_ELEMENTS", 40)  # blocks of 4 rows
    g = torch.Generator().manual_seed(5)
    layer = torch.nn.Linear(6, 10).bfloat16()
    hidden = torch.randn(12, 6, generator=g).bfloat16()
    t = torch.randint(0, 10, (12,), generator=g)
    t[11] = 10
    logits = layer(hidden)
    before = logits.detach().clone()
    with pytest.raises(ValueError, match=r"target\[11\] = 10 is not a class index"):
        xt.cross_entropy(logits, t, inplace_backward=True)
    assert torch.equal(logits.detach(), before)
    t[11] = 0
    sw = torch.ones(12)
    sw[10] = -1.0
    with pytest.raises(ValueError, match=r"sample_weight must be finite and >= 0"):
        xt.cross_entropy(layer(hidden), t, sample_weight=sw, inplace_backward=True)


@pytest.mark.parametrize("autocast_dtype", HALF)
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.float16, torch.bfloat16,
                                         torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_autocast_behaves_like_torch(autocast_dtype, input_dtype, reduction):
    """cross_entropy is on autocast's float32 list: F widens float16/bfloat16 to float32
    (loss float32, gradient in the input's dtype) and leaves float64 alone."""
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(16, 9, generator=g) * 2).to(input_dtype)
    t = torch.randint(0, 9, (16,), generator=g)
    w = (torch.rand(9, generator=g) + 0.5).to(input_dtype)
    results = []
    for fn in (F.cross_entropy, xt.cross_entropy):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=autocast_dtype):
            loss = fn(xi, t, w, reduction=reduction, label_smoothing=0.05)
        loss.backward(torch.ones_like(loss))
        results.append((loss.detach(), xi.grad))
    (loss_f, grad_f), (loss_x, grad_x) = results
    assert loss_x.dtype == loss_f.dtype and grad_x.dtype == grad_f.dtype == input_dtype
    tol = dict(rtol=1e-5, atol=1e-6) if input_dtype != torch.float64 else {}
    torch.testing.assert_close(loss_x, loss_f, **tol)
    if input_dtype in HALF:
        # both round the float32 gradient to the input's dtype once
        assert (grad_x.double() - grad_f.double()).abs().max() <= 2 * EPS[input_dtype] * \
            grad_f.double().abs().max()
    else:
        torch.testing.assert_close(grad_x, grad_f, **tol)


def test_autocast_inside_a_model_step():
    """A linear layer under autocast produces bfloat16 logits; the loss is float32 and
    the parameter gradients match F's."""
    g = torch.Generator().manual_seed(5)
    h = torch.randn(32, 16, generator=g)
    t = torch.randint(0, 10, (32,), generator=g)
    grads = []
    for fn in (F.cross_entropy, xt.cross_entropy):
        torch.manual_seed(0)
        layer = torch.nn.Linear(16, 10)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = layer(h)
            assert logits.dtype == torch.bfloat16
            loss = fn(logits, t)
        assert loss.dtype == torch.float32
        loss.backward()
        grads.append(layer.weight.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=2e-2, atol=2e-3)
