"""xentfast.torch.cross_entropy(..., inplace_backward=True): the gradient written over
the logits, autograd's version counter bumped, and its contract enforced."""
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
xt = pytest.importorskip("xentfast.torch")


def layer_and_data(seed=0, n=12, c=7, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = torch.nn.Linear(5, c).to(dtype)
    h = torch.randn(n, 5, generator=g, dtype=dtype)
    t = torch.randint(0, c, (n,), generator=g)
    t[::4] = -100
    return layer, h, t


def param_grads(layer, loss_fn, h, upstream=None):
    layer.zero_grad()
    loss = loss_fn(layer(h))
    loss.backward(torch.ones_like(loss) if upstream is None else upstream)
    return loss.detach(), [p.grad.clone() for p in layer.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradients_match_torch(dtype, reduction):
    layer, h, t = layer_and_data(dtype=dtype)
    w = torch.rand(7, dtype=dtype) + 0.5
    upstream = (torch.rand(12, dtype=dtype) if reduction == "none"
                else torch.tensor(1.7, dtype=dtype))
    kw = dict(weight=w, reduction=reduction, label_smoothing=0.1)
    want = param_grads(layer, lambda z: F.cross_entropy(z, t, **kw), h, upstream)
    got = param_grads(layer, lambda z: xt.cross_entropy(z, t, inplace_backward=True, **kw),
                      h, upstream)
    tol = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: {},
           torch.bfloat16: dict(rtol=3e-2, atol=3e-2)}[dtype]
    torch.testing.assert_close(got[0], want[0], **tol)
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b, **tol)


def test_the_gradient_is_the_logits_memory():
    """No N x C allocation: the gradient handed to the layer is the logits' buffer."""
    layer, h, t = layer_and_data(1)
    seen = []
    logits = layer(h)
    logits.register_hook(lambda grad: seen.append(grad.data_ptr()))
    before = logits.detach().clone()
    loss = xt.cross_entropy(logits, t, inplace_backward=True)
    assert not torch.equal(logits.detach(), before)  # overwritten in the forward pass
    loss.backward()
    assert seen == [logits.data_ptr()]
    xr = before.clone().requires_grad_()
    F.cross_entropy(xr, t).backward()
    torch.testing.assert_close(logits.detach(), xr.grad)


def test_other_saved_uses_of_the_logits_raise():
    """tanh saves its output; overwriting it must make its backward pass fail with
    PyTorch's usual error, not use the gradient as logits."""
    layer, h, t = layer_and_data(2)
    logits = torch.tanh(layer(h))
    loss = xt.cross_entropy(logits, t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    # a second consumer that saved the logits (a product with a parameter)
    scale = torch.ones(7, requires_grad=True)
    logits = layer(h)
    other = (logits * scale).sum()  # mul saves logits for scale's gradient
    loss = xt.cross_entropy(logits, t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + other).backward()
    # without the flag, the same graph works
    logits = layer(h)
    (xt.cross_entropy(logits, t) + (logits * scale).sum()).backward()


def test_version_counter_is_bumped():
    layer, h, t = layer_and_data(3)
    logits = layer(h)
    version = logits._version
    xt.cross_entropy(logits, t, inplace_backward=True)
    assert logits._version > version
    logits = layer(h)
    version = logits._version
    xt.cross_entropy(logits, t)
    assert logits._version == version


def test_leaves_and_views_of_leaves_are_refused():
    x = torch.randn(4, 3, requires_grad=True)
    t = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="inplace_backward.*leaf tensor"):
        xt.cross_entropy(x, t, inplace_backward=True)
    with pytest.raises(ValueError, match="inplace_backward.*view of a leaf"):
        xt.cross_entropy(x[:, :3], t, inplace_backward=True)
    assert x.grad is None


def test_a_view_of_an_intermediate_works():
    """(N, C, d) as a transposed view of the layer's output: written through the view."""
    layer, h, t = layer_and_data(4, n=6)
    target = t.view(2, 3).clamp(min=0)
    got = param_grads(layer, lambda z: xt.cross_entropy(
        z.view(2, 3, 7).transpose(1, 2), target, inplace_backward=True), h)
    want = param_grads(layer, lambda z: F.cross_entropy(
        z.view(2, 3, 7).transpose(1, 2), target), h)
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_no_graph_leaves_the_logits_alone():
    layer, h, t = layer_and_data(5)
    with torch.no_grad():
        logits = layer(h)
        before = logits.clone()
        loss = xt.cross_entropy(logits, t, inplace_backward=True)
    assert torch.equal(logits, before)
    torch.testing.assert_close(loss, F.cross_entropy(before, t))


def test_second_backward_raises():
    layer, h, t = layer_and_data(6)
    loss = xt.cross_entropy(layer(h), t, inplace_backward=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace_backward.*second time"):
        loss.backward()


def test_module_option_and_repr():
    layer, h, t = layer_and_data(7)
    criterion = xt.CrossEntropyLoss(label_smoothing=0.1, inplace_backward=True)
    assert "inplace_backward=True" in repr(criterion)
    logits = layer(h)
    version = logits._version
    got = param_grads(layer, lambda z: criterion(z, t), h)
    want = param_grads(layer, lambda z: F.cross_entropy(z, t, label_smoothing=0.1), h)
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    criterion(logits, t)
    assert logits._version > version


def test_compiled_code_accepts_the_flag():
    """Under torch.compile the compiler owns the buffers: the flag is accepted, the
    results are those of eager."""
    torch._dynamo.reset()
    layer, h, t = layer_and_data(8)
    step = torch.compile(lambda inp: xt.cross_entropy(layer(inp), t, inplace_backward=True),
                         fullgraph=True)
    got = param_grads(layer, lambda z: xt.cross_entropy(z, t), h)
    layer.zero_grad()
    step(h).backward()
    for a, b in zip([p.grad for p in layer.parameters()], got[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()
