"""xentfast.torch under torch.compile, torch.export and torch.func: the custom operator
torch.ops.xentfast.cross_entropy, its fake implementation, autograd formula and vmap
rule; values and gradients against eager and against torch.nn.functional."""
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
xt = pytest.importorskip("xentfast.torch")

OP = torch.ops.xentfast.cross_entropy.default


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def problem(seed=0, n=12, c=7, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=dtype) * 2
    t = torch.randint(0, c, (n,), generator=g)
    t[::5] = -100
    w = torch.rand(c, generator=g, dtype=dtype) + 0.5
    return x, t, w


def loss_and_grad(fn, x, *args, upstream=None, **kwargs):
    xi = x.clone().requires_grad_()
    loss = fn(xi, *args, **kwargs)
    loss.backward(torch.ones_like(loss) if upstream is None else upstream)
    return loss.detach(), xi.grad


def test_the_operator_passes_opcheck():
    """Schema, fake tensor, autograd registration and AOT dispatch, as PyTorch checks them."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, 3, generator=g, requires_grad=True)
    t = torch.randint(0, 5, (6, 3), generator=g)
    t[0, 0] = -100
    p = torch.softmax(torch.randn(6, 5, 3, generator=g, dtype=torch.float64), 1)
    cases = [
        (x, t, torch.rand(5, generator=g) + 0.5, None, 1, "mean", -100, 0.1, 1e-3, 5.0, 0.8,
         None, True),
        (x, t, None, None, 1, "none", -100, 0.0, 0.0, None, 1.0, None, False),
        (x.detach().double().requires_grad_(), p, None,
         torch.rand(6, 3, generator=g, dtype=torch.float64), 1, "sum", -100, 0.0, 0.0, None,
         1.0, 1, True),
    ]
    for args in cases:
        result = torch.library.opcheck(OP, args)
        assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.1, "weight": "w"}])
def test_compile_fullgraph_matches_eager_and_torch(reduction, kwargs):
    x, t, w = problem()
    kw = {k: (w if v == "w" else v) for k, v in kwargs.items()}
    upstream = torch.rand(12) if reduction == "none" else torch.tensor(0.7)

    def step(z):
        return xt.cross_entropy(z, t, reduction=reduction, **kw)

    compiled = torch.compile(step, fullgraph=True)  # any graph break raises
    got = loss_and_grad(compiled, x, upstream=upstream)
    eager = loss_and_grad(step, x, upstream=upstream)
    ref = loss_and_grad(F.cross_entropy, x, t, upstream=upstream, reduction=reduction, **kw)
    for a, b in zip(got, eager):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)


def test_compile_training_step_with_xentfast_options():
    """A compiled model + loss (softcap, z-loss, temperature, sample weights): the
    operator sits in the graph next to the layers; gradients as eager."""
    g = torch.Generator().manual_seed(2)
    h = torch.randn(16, 8, generator=g)
    t = torch.randint(0, 6, (16,), generator=g)
    s = torch.rand(16, generator=g) + 0.5
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 6)
    grads = []
    for wrap in (lambda f: f, lambda f: torch.compile(f, fullgraph=True)):
        model.zero_grad()

        def step(inp):
            return xt.cross_entropy(model(inp), t, sample_weight=s, softcap=3.0, z_loss=1e-2,
                                    temperature=0.9, label_smoothing=0.05)

        loss = wrap(step)(h)
        loss.backward()
        grads.append((loss.detach(), model.weight.grad.clone(), model.bias.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compile_without_grad_and_under_no_grad():
    x, t, w = problem(3)
    compiled = torch.compile(lambda z: xt.cross_entropy(z, t, w, reduction="none"),
                             fullgraph=True)
    torch.testing.assert_close(compiled(x), F.cross_entropy(x, t, w, reduction="none"))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x.requires_grad_()),
                                   F.cross_entropy(x, t, w, reduction="none"))


def test_compile_double_backward_is_refused_like_torch():
    """torch.compile has no double backward; xentfast gives the same error as F's."""
    x, t, _ = problem(4, dtype=torch.float64)
    errors = []
    for fn in (F.cross_entropy, xt.cross_entropy):
        w = torch.randn(7, 7, dtype=torch.float64, requires_grad=True)
        compiled = torch.compile(lambda m, fn=fn: fn(x @ m, t))
        with pytest.raises(RuntimeError) as info:
            (gw,) = torch.autograd.grad(compiled(w), w, create_graph=True)
            gw.sum().backward()
        errors.append(str(info.value))
    assert "double backward" in errors[1] and errors[0] == errors[1]


class _Head(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.criterion = xt.CrossEntropyLoss(weight, label_smoothing=0.1, reduction="sum")

    def forward(self, z, t):
        return self.criterion(z, t)


def test_export_has_the_operator_and_matches():
    x, t, w = problem(5)
    ep = torch.export.export(_Head(w), (x, t))
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert OP in targets
    torch.testing.assert_close(ep.module()(x, t),
                               F.cross_entropy(x, t, w, label_smoothing=0.1, reduction="sum"))
    # a batch of another size, with the batch dimension exported as dynamic
    batch = torch.export.Dim("batch")
    ep = torch.export.export(_Head(w), (x, t), dynamic_shapes=({0: batch}, {0: batch}))
    x2, t2, _ = problem(6, n=30)
    torch.testing.assert_close(ep.module()(x2, t2),
                               F.cross_entropy(x2, t2, w, label_smoothing=0.1, reduction="sum"))


def test_func_grad_hessian_and_jacrev_match_torch():
    x, t, w = problem(7, n=5, c=4, dtype=torch.float64)
    for kw in ({}, {"weight": w, "label_smoothing": 0.2}):
        for transform in (torch.func.grad, torch.func.jacrev, torch.func.hessian):
            got = transform(lambda z: xt.cross_entropy(z, t, **kw))(x)
            want = transform(lambda z: F.cross_entropy(z, t, **kw))(x)
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_vmap_and_per_sample_gradients_match_torch():
    x, t, w = problem(8, n=6, c=5, dtype=torch.float64)
    t = t.clamp(min=0)
    batched = torch.randn(3, 6, 5, dtype=torch.float64)
    for kw in ({}, {"weight": w, "reduction": "none"}, {"label_smoothing": 0.1}):
        got = torch.func.vmap(lambda z: xt.cross_entropy(z, t, **kw))(batched)
        want = torch.func.vmap(lambda z: F.cross_entropy(z, t, **kw))(batched)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # xentfast's own options: one eager call per batch entry
    opts = dict(z_loss=0.05, softcap=2.0, temperature=0.7, reduction="none")
    got = torch.func.vmap(lambda z: xt.cross_entropy(z, t, **opts))(batched)
    torch.testing.assert_close(got, torch.stack([xt.cross_entropy(b, t, **opts)
                                                 for b in batched]), rtol=1e-12, atol=1e-14)
    # per-sample gradients: vmap over rows of grad of a one-row loss (target batched too)
    per_sample = torch.func.vmap(torch.func.grad(lambda z, y: xt.cross_entropy(z, y, w)))
    want = torch.func.vmap(torch.func.grad(lambda z, y: F.cross_entropy(z, y, w)))(x, t)
    torch.testing.assert_close(per_sample(x, t), want, rtol=1e-10, atol=1e-12)
    # vmap over the class weights only (the input is not batched)
    ws = torch.rand(4, 5, dtype=torch.float64) + 0.5
    got = torch.func.vmap(lambda wi: xt.cross_entropy(x, t, wi))(ws)
    torch.testing.assert_close(got, torch.stack([F.cross_entropy(x, t, wi) for wi in ws]))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_forward_mode_jvp_matches_torch(reduction):
    x, t, w = problem(9, n=5, c=4, dtype=torch.float64)
    tangent = torch.randn_like(x)
    got = torch.func.jvp(lambda z: xt.cross_entropy(z, t, w, reduction=reduction),
                         (x,), (tangent,))
    want = torch.func.jvp(lambda z: F.cross_entropy(z, t, w, reduction=reduction),
                          (x,), (tangent,))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
