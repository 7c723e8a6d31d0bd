"""Second derivatives of xentfast.torch.cross_entropy: gradgradcheck for every option,
Hessians against torch.nn.functional.cross_entropy's (and, for xentfast's own options,
against a direct torch transcription of the README's formula written here), gradient
penalties through a layer."""
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
xt = pytest.importorskip("xentfast.torch")

DT = torch.float64


def data(seed=0, n=5, c=4, extra=()):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, *extra, generator=g, dtype=DT) * 1.5
    t = torch.randint(0, c, (n, *extra), generator=g)
    return g, x, t


# every option, alone and combined; (kwargs for xt, can F compute it too?)
OPTION_CASES = {
    "plain": {},
    "weight": {"weight": "w"},
    "ignore_index": {"ignore_index": 1},
    "label_smoothing": {"label_smoothing": 0.2},
    "weight+smoothing+ignore": {"weight": "w", "label_smoothing": 0.1, "ignore_index": 2},
    "z_loss": {"z_loss": 0.05},
    "softcap": {"softcap": 2.0},
    "temperature": {"temperature": 0.7},
    "sample_weight": {"sample_weight": "s"},
    "everything": {"weight": "w", "label_smoothing": 0.1, "z_loss": 0.03, "softcap": 3.0,
                   "temperature": 1.3, "sample_weight": "s", "ignore_index": 0},
}


def resolve(kwargs, g, c, lead):
    out = dict(kwargs)
    if out.get("weight") == "w":
        out["weight"] = torch.rand(c, generator=g, dtype=DT) + 0.3
    if out.get("sample_weight") == "s":
        out["sample_weight"] = torch.rand(*lead, generator=g, dtype=DT) + 0.5
    return out


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_gradgradcheck_every_option(case, reduction):
    g, x, t = data(1)
    kw = resolve(OPTION_CASES[case], g, 4, (5,))
    t[1] = kw.get("ignore_index", -100)  # an ignored row
    x.requires_grad_()
    fn = lambda z: xt.cross_entropy(z, t, reduction=reduction, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("extra", [{}, {"z_loss": 0.02, "softcap": 2.5, "temperature": 0.8}])
def test_gradgradcheck_probability_targets_and_layouts(reduction, extra):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 2, generator=g, dtype=DT, requires_grad=True)  # (N, C, d)
    p = torch.softmax(torch.randn(3, 4, 2, generator=g, dtype=DT), dim=1)
    s = torch.rand(3, 2, generator=g, dtype=DT) + 0.5
    w = torch.rand(4, generator=g, dtype=DT) + 0.5
    fn = lambda z: xt.cross_entropy(z, p, w, reduction=reduction, label_smoothing=0.1,  # noqa
                                    sample_weight=s, **extra)
    assert torch.autograd.gradgradcheck(fn, (x,))
    row = torch.randn(6, generator=g, dtype=DT, requires_grad=True)  # a single (C,) row
    assert torch.autograd.gradgradcheck(
        lambda z: xt.cross_entropy(z, torch.tensor(2), reduction=reduction, **extra), (row,))


def hessian(fn, x):
    return torch.autograd.functional.hessian(fn, x)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kwargs", [{}, {"weight": "w"}, {"ignore_index": 2},
                                    {"label_smoothing": 0.15, "weight": "w"}])
def test_hessian_matches_torch(reduction, kwargs):
    g, x, t = data(3, n=4, c=5)
    kw = resolve(kwargs, g, 5, (4,))
    h_xt = hessian(lambda z: xt.cross_entropy(z, t, reduction=reduction, **kw), x)
    h_f = hessian(lambda z: F.cross_entropy(z, t, reduction=reduction, **kw), x)
    assert h_f.abs().max() > 1e-3  # a Hessian worth comparing
    torch.testing.assert_close(h_xt, h_f, rtol=1e-10, atol=1e-12)


def test_hessian_of_probability_targets_matches_torch():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, generator=g, dtype=DT)
    p = torch.softmax(torch.randn(3, 4, generator=g, dtype=DT), dim=1)
    for kw in ({}, {"label_smoothing": 0.2}, {"weight": torch.rand(4, generator=g, dtype=DT)}):
        torch.testing.assert_close(hessian(lambda z: xt.cross_entropy(z, p, **kw), x),
                                   hessian(lambda z: F.cross_entropy(z, p, **kw), x),
                                   rtol=1e-10, atol=1e-12)


def formula_loss(x, t, w, s, *, eps, lam, cap, temp, reduction, ignore_index=-100):
    """The README's "Exact semantics", transcribed into torch operations."""
    c = x.shape[1]
    z = x / temp
    if cap is not None:
        z = cap * torch.tanh(z / cap)
    lse = torch.logsumexp(z, 1)
    counted = t != ignore_index
    y = torch.where(counted, t, 0)
    nll = lse - z.gather(1, y[:, None])[:, 0]
    smooth = (w * (lse[:, None] - z)).sum(1) / c
    loss = (1 - eps) * w[y] * nll + eps * smooth + lam * lse**2
    loss = torch.where(counted, loss * s, 0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / torch.where(counted, s * w[y], 0).sum()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_hessian_of_xentfast_options_matches_formula(reduction):
    g, x, t = data(5, n=4, c=5)
    t[2] = -100
    w = torch.rand(5, generator=g, dtype=DT) + 0.3
    s = torch.rand(4, generator=g, dtype=DT) + 0.5
    opts = dict(eps=0.1, lam=0.04, cap=2.5, temp=0.8)
    ours = hessian(lambda z: xt.cross_entropy(
        z, t, w, reduction=reduction, sample_weight=s, label_smoothing=opts["eps"],
        z_loss=opts["lam"], softcap=opts["cap"], temperature=opts["temp"]), x)
    want = hessian(lambda z: formula_loss(z, t, w, s, reduction=reduction, **opts), x)
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-12)


def test_gradient_penalty_through_a_layer_matches_torch():
    """The reported failure: a penalty on d loss / d W dropped its own contribution."""
    g = torch.Generator().manual_seed(6)
    h = torch.randn(7, 3, generator=g, dtype=DT)
    t = torch.randint(0, 4, (7,), generator=g)
    w0 = torch.randn(3, 4, generator=g, dtype=DT)
    grads = []
    for fn in (F.cross_entropy, xt.cross_entropy):
        w = w0.clone().requires_grad_()
        loss = fn(h @ w, t, label_smoothing=0.1)
        (gw,) = torch.autograd.grad(loss, w, create_graph=True)
        (loss + gw.square().sum()).backward()
        grads.append(w.grad)
    penalty_only = grads[0] - torch.autograd.grad(F.cross_entropy(h @ w0.requires_grad_(), t,
                                                                  label_smoothing=0.1), w0)[0]
    assert penalty_only.abs().max() > 1e-4  # the penalty's part is not negligible
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


def test_create_graph_gradient_equals_fused_gradient():
    """Both backward routes (fused buffer, differentiable formula) give one gradient."""
    g, x, t = data(7, n=6, c=9)
    t[0] = -100
    kw = dict(weight=torch.rand(9, generator=g, dtype=DT) + 0.2, label_smoothing=0.05,
              z_loss=1e-2, softcap=4.0, temperature=0.9,
              sample_weight=torch.rand(6, generator=g, dtype=DT))
    for reduction, upstream in [("mean", torch.tensor(0.3, dtype=DT)),
                                ("none", torch.rand(6, generator=g, dtype=DT))]:
        x1 = x.clone().requires_grad_()
        (fused,) = torch.autograd.grad(xt.cross_entropy(x1, t, reduction=reduction, **kw),
                                       x1, upstream)
        (graph,) = torch.autograd.grad(xt.cross_entropy(x1, t, reduction=reduction, **kw),
                                       x1, upstream, create_graph=True)
        assert graph.requires_grad and not fused.requires_grad
        torch.testing.assert_close(graph, fused, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_second_derivative_in_lower_precision_is_close(dtype):
    g, x, t = data(8, n=4, c=6)
    hx = hessian(lambda z: xt.cross_entropy(z.to(dtype), t).double(), x)
    hf = hessian(lambda z: F.cross_entropy(z, t), x)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(hx, hf, rtol=tol, atol=tol)


def test_second_derivative_after_inplace_backward_raises():
    g, x, t = data(9)
    w = torch.randn(4, 4, generator=g, dtype=DT, requires_grad=True)
    loss = xt.cross_entropy(x @ w, t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="inplace_backward.*second derivative"):
        torch.autograd.grad(loss, w, create_graph=True)


@pytest.mark.parametrize("kwargs", [{}, {"softcap": 3.0}, {"label_smoothing": 0.1},
                                    {"z_loss": 0.1, "temperature": 0.5}])
def test_create_graph_gradient_on_adversarial_inputs(kwargs):
    """Masked (-inf) classes, a NaN row, huge and equal logits, C = 1, N = 0: the
    differentiable formula gives the fused pass's gradient (NaN where it is NaN)."""
    g = torch.Generator().manual_seed(10)
    x = torch.randn(6, 5, generator=g, dtype=DT)
    x[:, 1] = -float("inf")
    x[2, 3] = float("nan")
    x[3] = 1e4
    x[4] = torch.tensor([3e2, -float("inf"), -3e2, 0.0, 1.0])
    cases = [(x, torch.tensor([0, 2, 3, 4, 0, 2])),
             (torch.randn(3, 1, generator=g, dtype=DT), torch.zeros(3, dtype=torch.long)),
             (torch.randn(0, 4, dtype=DT), torch.zeros(0, dtype=torch.long))]
    for logits, t in cases:
        grads = []
        for create_graph in (False, True):
            xi = logits.clone().requires_grad_()
            (gx,) = torch.autograd.grad(xt.cross_entropy(xi, t, reduction="sum", **kwargs),
                                        xi, create_graph=create_graph)
            grads.append(gx.detach())
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-14, equal_nan=True)


# small logits are kept for the backward pass by reference, large ones as saved tensors
KEPT_SIZES = pytest.mark.parametrize("n,c", [(5, 4), (300, 256)])


@KEPT_SIZES
def test_logits_modified_after_the_forward_pass_raise_for_a_second_derivative(n, c):
    """Either way of keeping the logits notices an in-place change, as autograd does,
    instead of differentiating the modified values."""
    assert (n * c <= xt._HELD_ELEMENTS) == (n == 5)
    g, x, t = data(11, n=n, c=c)
    w = torch.eye(c, dtype=DT, requires_grad=True)
    logits = x @ w
    loss = xt.cross_entropy(logits, t)
    with torch.no_grad():
        logits.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(loss, w, create_graph=True)


@KEPT_SIZES
def test_second_derivative_and_second_backward_of_either_size(n, c):
    g, x, t = data(12, n=n, c=c)
    xr = x.clone().requires_grad_()
    x1 = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(xt.cross_entropy(x1, t), x1, create_graph=True)
    (gf,) = torch.autograd.grad(F.cross_entropy(xr, t), xr, create_graph=True)
    v = torch.randn(n, c, generator=g, dtype=DT)
    (hx,) = torch.autograd.grad((gx * v).sum(), x1)
    (hf,) = torch.autograd.grad((gf * v).sum(), xr)
    torch.testing.assert_close(hx, hf, rtol=1e-10, atol=1e-12)
    loss = xt.cross_entropy(x1, t)
    (first,) = torch.autograd.grad(loss, x1, retain_graph=True)
    (second,) = torch.autograd.grad(loss, x1)  # recomputed from the kept logits
    torch.testing.assert_close(second, first, rtol=0, atol=0)
