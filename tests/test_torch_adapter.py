"""xentfast.torch against torch.nn.functional.cross_entropy, forward and backward."""
import inspect
import subprocess
import sys

import numpy as np
import pytest

import xentfast
from xentfast import _core

torch = pytest.importorskip("torch")
F = torch.nn.functional
xt = pytest.importorskip("xentfast.torch")

HAS_OPTIONS = "label_smoothing" in inspect.signature(xentfast.cross_entropy).parameters
needs_options = pytest.mark.skipif(not HAS_OPTIONS,
                                   reason="xentfast has no label_smoothing/z_loss yet")

TOL = {torch.float32: dict(rtol=2e-6, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}


def both(x, t, upstream=None, **kw):
    """(loss, grad) from torch and from the adapter, for the same upstream gradient."""
    results = []
    for fn in (F.cross_entropy, xt.cross_entropy):
        xi = x.detach().clone().requires_grad_()
        loss = fn(xi, t, **kw)
        loss.backward(torch.ones_like(loss) if upstream is None else upstream)
        results.append((loss.detach(), xi.grad))
    return results


def assert_match(results, dtype):
    (loss_t, grad_t), (loss_x, grad_x) = results
    assert loss_x.dtype == loss_t.dtype and loss_x.shape == loss_t.shape
    assert grad_x.dtype == grad_t.dtype and grad_x.shape == grad_t.shape
    torch.testing.assert_close(loss_x, loss_t, **TOL[dtype])
    torch.testing.assert_close(grad_x, grad_t, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_torch(dtype, reduction, weighted):
    g = torch.Generator().manual_seed(0)
    for n, c in [(64, 10), (7, 1000)]:
        x = torch.randn(n, c, generator=g, dtype=dtype) * 3
        t = torch.randint(0, c, (n,), generator=g)
        t[::5] = -100
        w = torch.rand(c, generator=g, dtype=dtype) + 0.2 if weighted else None
        upstream = (torch.rand(n, generator=g, dtype=dtype) if reduction == "none"
                    else torch.tensor(0.37, dtype=dtype))
        assert_match(both(x, t, weight=w, reduction=reduction), dtype)
        assert_match(both(x, t, upstream, weight=w, reduction=reduction), dtype)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_nchw_layout_and_custom_ignore_index(reduction):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, 4, 5, generator=g)
    t = torch.randint(0, 7, (3, 4, 5), generator=g)
    t[0, 0, :2] = 3
    upstream = torch.rand(3, 4, 5, generator=g) if reduction == "none" else None
    assert_match(both(x, t, upstream, ignore_index=3, reduction=reduction), torch.float32)


def test_single_row_with_scalar_target():
    x = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    for reduction in ["mean", "none"]:
        assert_match(both(x, torch.tensor(1), reduction=reduction), torch.float64)


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(10, 16, generator=g)
    t = torch.randint(0, 10, (16,), generator=g)
    assert_match(both(base.t(), t), torch.float32)  # transposed: classes strided
    x = torch.randn(2, 5, 3, 3, generator=g).to(memory_format=torch.channels_last)
    t4 = torch.randint(0, 5, (2, 3, 3), generator=g)
    assert_match(both(x, t4, reduction="sum"), torch.float32)
    assert_match(both(base[:, ::2], torch.randint(0, 8, (10,), generator=g)), torch.float32)


def test_gradcheck_every_reduction():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.tensor([0, 5, -100, 2])
    for reduction in ["mean", "sum", "none"]:
        assert torch.autograd.gradcheck(
            lambda z, r=reduction: xt.cross_entropy(z, t, reduction=r), (x,))


def test_retain_graph_second_backward_recomputes():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3, 0])
    for reduction, upstream in [("mean", torch.tensor(2.0, dtype=torch.float64)),
                                ("none", torch.arange(5, dtype=torch.float64))]:
        x.grad = None
        loss = xt.cross_entropy(x, t, reduction=reduction)
        loss.backward(upstream, retain_graph=True)
        first = x.grad.clone()
        loss.backward(upstream)  # accumulates the same gradient again
        torch.testing.assert_close(x.grad, 2 * first)
        xr = x.detach().clone().requires_grad_()
        F.cross_entropy(xr, t, reduction=reduction).backward(upstream)
        torch.testing.assert_close(first, xr.grad)


@pytest.mark.parametrize("reduction,scale", [("mean", 1.0), ("sum", 3.0), ("none", 2.0)])
def test_gradient_is_not_copied(monkeypatch, reduction, scale):
    """The leaf's .grad is the very buffer xentfast wrote in the forward pass
    (scaled in place when the upstream gradient is not 1)."""
    buffers = []
    fused = xentfast.cross_entropy_and_grad
    shortcut = _core.ce_fast  # the NumPy API's shortcut, which the adapter calls directly

    def spy(*args, **kwargs):
        result = fused(*args, **kwargs)
        buffers.append(result[-1].__array_interface__["data"][0])
        return result

    def spy_shortcut(x, target, out, *args):
        result = shortcut(x, target, out, *args)
        if result is not NotImplemented:
            buffers.append(out.__array_interface__["data"][0])
        return result

    monkeypatch.setattr(xentfast, "cross_entropy_and_grad", spy)
    monkeypatch.setattr(_core, "ce_fast", spy_shortcut)
    x = torch.randn(64, 100, requires_grad=True)
    t = torch.randint(0, 100, (64,))
    loss = xt.cross_entropy(x, t, reduction=reduction)
    (loss * scale).sum().backward()
    assert x.grad.data_ptr() == buffers[0]
    expected = x.detach().clone().requires_grad_()
    (F.cross_entropy(expected, t, reduction=reduction) * scale).sum().backward()
    torch.testing.assert_close(x.grad, expected.grad)


def test_no_gradient_is_computed_without_a_graph(monkeypatch):
    """Under no_grad/inference_mode (or for an input without requires_grad) only the
    loss is computed: one read of the logits, no N x C gradient."""
    def fail(*args, **kwargs):
        raise AssertionError("the gradient was computed")

    monkeypatch.setattr(xentfast, "cross_entropy_and_grad", fail)
    x = torch.randn(4, 3, requires_grad=True)
    t = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        xt.cross_entropy(x, t)
    with torch.inference_mode():
        xt.cross_entropy(x, t, reduction="none")
    xt.cross_entropy(x.detach(), t)


def test_no_grad_and_inputs_without_grad():
    x = torch.randn(6, 3)
    t = torch.randint(0, 3, (6,))
    loss = xt.cross_entropy(x, t)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(x, t))
    with torch.no_grad():
        loss = xt.cross_entropy(x.clone().requires_grad_(), t, reduction="none")
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(x, t, reduction="none"))


def test_inputs_not_modified():
    x = torch.randn(8, 5, requires_grad=True)
    t = torch.randint(0, 5, (8,))
    before = x.detach().clone()
    xt.cross_entropy(x, t).backward()
    assert torch.equal(x.detach(), before)


def test_training_step_matches_torch():
    """A few SGD steps of a small model: the same parameters as with F.cross_entropy."""
    g = torch.Generator().manual_seed(4)
    data = torch.randn(32, 8, generator=g)
    labels = torch.randint(0, 5, (32,), generator=g)
    models = []
    for loss_fn in (torch.nn.CrossEntropyLoss(), xt.CrossEntropyLoss()):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                    torch.nn.Linear(16, 5))
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(5):
            opt.zero_grad()
            loss_fn(model(data), labels).backward()
            opt.step()
        models.append(model)
    for p_torch, p_xf in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p_xf, p_torch, rtol=1e-5, atol=1e-6)


def test_module_mirrors_torch():
    w = torch.rand(6) + 0.5
    ours = xt.CrossEntropyLoss(w, ignore_index=2, reduction="sum")
    theirs = torch.nn.CrossEntropyLoss(w, ignore_index=2, reduction="sum")
    x = torch.randn(9, 6)
    t = torch.randint(0, 6, (9,))
    torch.testing.assert_close(ours(x, t), theirs(x, t))
    assert "weight" in dict(ours.named_buffers())
    assert "reduction='sum'" in repr(ours) and "ignore_index=2" in repr(ours)
    torch.testing.assert_close(ours.double()(x.double(), t), theirs.double()(x.double(), t))
    with pytest.raises(ValueError, match="reduction"):
        xt.CrossEntropyLoss(reduction="avg")


# --------------------------------------------------------------------------------------
# options that land with the loss-options work


@needs_options
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_label_smoothing_matches_torch(dtype, reduction):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(20, 9, generator=g, dtype=dtype) * 2
    t = torch.randint(0, 9, (20,), generator=g)
    t[::4] = -100
    w = torch.rand(9, generator=g, dtype=dtype) + 0.3
    for weight in (None, w):
        assert_match(both(x, t, weight=weight, reduction=reduction, label_smoothing=0.15),
                     dtype)
    m = both(x, t, reduction=reduction, label_smoothing=0.1)
    assert_match(m, dtype)


@needs_options
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_probability_targets_match_torch(reduction):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(12, 5, 3, generator=g, dtype=torch.float64)
    p = torch.softmax(torch.randn(12, 5, 3, generator=g, dtype=torch.float64), dim=1)
    assert_match(both(x, p, reduction=reduction), torch.float64)
    assert_match(both(x, p, reduction=reduction, label_smoothing=0.2), torch.float64)


@needs_options
def test_xentfast_only_options_match_numpy_api():
    """z_loss, softcap, temperature and sample_weight: the same numbers as the
    NumPy API, and the z-loss part comes back when asked."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((10, 6))
    t = rng.integers(0, 6, 10)
    s = rng.uniform(0.5, 2.0, 10)
    opts = dict(z_loss=1e-2, softcap=5.0, temperature=0.7)
    loss_np, zpart_np, grad_np = xentfast.cross_entropy_and_grad(
        x, t, sample_weight=s, return_z_loss=True, **opts)
    xt_in = torch.from_numpy(x.copy()).requires_grad_()
    loss, zpart = xt.cross_entropy(xt_in, torch.from_numpy(t), sample_weight=torch.from_numpy(s),
                                   return_z_loss=True, **opts)
    loss.backward()
    assert loss.item() == pytest.approx(loss_np, rel=1e-12)
    assert zpart.item() == pytest.approx(zpart_np, rel=1e-12)
    assert not zpart.requires_grad
    np.testing.assert_allclose(xt_in.grad.numpy(), grad_np, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------
# errors


class _FakeCudaTensor(torch.Tensor):
    """A CPU tensor that reports a CUDA device (there is no GPU here)."""

    @property
    def device(self):
        return torch.device("cuda", 0)


def test_non_cpu_tensors_are_rejected():
    t = torch.tensor([0, 1])
    fake = torch.zeros(2, 3).as_subclass(_FakeCudaTensor)
    assert fake.device.type == "cuda"
    with pytest.raises(TypeError, match=r"input is on device cuda:0.*\.cpu\(\)"):
        xt.cross_entropy(fake, t)
    with pytest.raises(TypeError, match="input is on device meta"):
        xt.cross_entropy(torch.zeros(2, 3, device="meta"), t)
    with pytest.raises(TypeError, match="target is on device meta"):
        xt.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long, device="meta"))
    with pytest.raises(TypeError, match="weight is on device cuda"):
        xt.cross_entropy(torch.zeros(2, 3), t,
                         weight=torch.ones(3).as_subclass(_FakeCudaTensor))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_unsupported_dtypes_are_rejected(dtype):
    # float16 and bfloat16 are supported (tests/test_torch_precision.py)
    with pytest.raises(TypeError, match=r"float32 or float64.*\.float\(\)"):
        xt.cross_entropy(torch.zeros(2, 3, dtype=dtype), torch.tensor([0, 1]))


def test_other_bad_arguments():
    x = torch.zeros(2, 3)
    t = torch.tensor([0, 1])
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        xt.cross_entropy(np.zeros((2, 3), np.float32), t)
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        xt.cross_entropy(x, [0, 1])
    with pytest.raises(ValueError, match="reduction"):
        xt.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="0-d"):
        xt.cross_entropy(torch.tensor(1.0), torch.tensor(0))
    with pytest.raises(ValueError, match="weight requires grad"):
        xt.cross_entropy(x, t, weight=torch.ones(3, requires_grad=True))
    with pytest.raises(ValueError, match="target"):  # out of range, from xentfast
        xt.cross_entropy(x, torch.tensor([0, 3]))


def test_import_xentfast_does_not_import_torch():
    code = ("import sys, xentfast, numpy as np; "
            "xentfast.cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 1])); "
            "assert 'torch' not in sys.modules, 'xentfast imported torch'; "
            "import xentfast.torch; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(xt, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def _adversarial_plain_cases():
    g = torch.Generator().manual_seed(21)
    x = torch.randn(6, 7, generator=g)
    x[0, 2] = float("-inf")
    x[1] = float("-inf")
    x[2, 3] = float("nan")
    x[3] = 3e38
    return [
        (torch.randn(0, 5, generator=g), torch.zeros(0, dtype=torch.long)),
        (torch.randn(4, 1, generator=g), torch.zeros(4, dtype=torch.long)),
        (x, torch.tensor([0, 1, 2, 3, -100, 6])),
        (torch.randn(8, 12, generator=g)[:, ::2], torch.randint(0, 6, (8,), generator=g)),
        (torch.randn(12, 8, generator=g).t(), torch.randint(0, 12, (8,), generator=g)),
        (torch.randn(5, 3, 4, generator=g), torch.randint(0, 3, (5, 4), generator=g)),
        (torch.randn(5, generator=g), torch.tensor(2)),
        (torch.randn(6, 5, dtype=torch.float64, generator=g),
         torch.randint(0, 5, (6,), dtype=torch.int32, generator=g)),
    ]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", range(8))
def test_the_shortest_route_equals_the_general_one(monkeypatch, reduction, case):
    """A call without options takes a shorter route (fewer checks, the NumPy API's
    shortcut); on adversarial inputs (N = 0, C = 1, -inf, NaN, huge logits, ignored
    rows, strided and transposed views, (N, C, d) and (C,) layouts, int32 targets)
    it gives the general route's loss and gradient bit for bit."""
    x, t = _adversarial_plain_cases()[case]

    def loss_and_grad():
        a = x.clone().requires_grad_()
        loss = xt.cross_entropy(a, t, reduction=reduction)
        loss.sum().backward()
        return loss.detach(), a.grad

    short = loss_and_grad()
    # the general route: every check, and the NumPy API's public entry point
    monkeypatch.setattr(xt._ops, "plain_call", lambda *args: False)
    monkeypatch.setattr(xt._ops, "plain_loss_and_grad", lambda input, target, opts:
                        xt._ops.loss_and_grad(input, target, None, None, opts, False)[::2])
    general = loss_and_grad()
    for s, g in zip(short, general):
        assert torch.equal(s.isnan(), g.isnan())
        assert torch.equal(torch.nan_to_num(s, 0.5), torch.nan_to_num(g, 0.5))
