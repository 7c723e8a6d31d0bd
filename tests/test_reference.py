"""Tests of the float64 oracle ``xentfast.reference`` against PyTorch (float64, autograd)
and against central finite differences.

The oracle ships in the package, so these tests check the installed copy.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xentfast import reference as ref

RTOL, ATOL = 1e-10, 1e-12  # float64 oracle vs float64 torch
REDUCTIONS = ["mean", "sum", "none"]


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# ------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)


def random_case(rng, shape, axis, *, ignore_frac=0.0, ignore_index=-100):
    x = rng.normal(scale=2.0, size=shape)
    c = shape[axis]
    batch = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    y = rng.integers(0, c, size=batch)
    if ignore_frac:
        y = np.where(rng.random(batch) < ignore_frac, ignore_index, y)
    return x, y


def torch_ce(torch, x, y, *, axis=-1, reduction="mean", grad_output=None, **kw):
    """torch.nn.functional.cross_entropy with the class axis moved to dim 1."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y)
    xm = xt.movedim(axis, 1) if xt.ndim > 1 else xt
    if yt.is_floating_point() and yt.ndim > 1:
        yt = yt.movedim(axis, 1)
    if kw.get("weight") is not None:
        kw["weight"] = torch.tensor(kw["weight"], dtype=torch.float64)
    loss = torch.nn.functional.cross_entropy(xm, yt, reduction=reduction, **kw)
    go = 1.0 if grad_output is None else grad_output
    loss.backward(torch.as_tensor(go, dtype=torch.float64).expand_as(loss))
    return loss.detach().numpy(), xt.grad.numpy()


def fd_grad(f, x, h=1e-6):
    """Central finite differences of the scalar function f, one logit at a time."""
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


# ------------------------------------------------------------------------------------
# logsumexp, log_softmax, softmax
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_matches_torch(torch, axis, keepdims):
    x = np.random.default_rng(0).normal(scale=30.0, size=(3, 4, 5))
    got = ref.logsumexp(x, axis=axis, keepdims=keepdims)
    dims = tuple(range(x.ndim)) if axis is None else axis
    want = torch.logsumexp(torch.tensor(x), dim=dims, keepdim=keepdims).numpy()
    assert np.shape(got) == want.shape
    close(got, want)


def test_logsumexp_special_values():
    inf, nan = np.inf, np.nan
    assert ref.logsumexp([-inf, -inf]) == -inf
    assert ref.logsumexp([1.0, inf, -inf]) == inf
    assert np.isnan(ref.logsumexp([1.0, nan]))
    assert np.isnan(ref.logsumexp([inf, nan]))
    assert ref.logsumexp([]) == -inf
    close(ref.logsumexp(np.zeros((2, 0)), axis=1), [-inf, -inf])
    assert ref.logsumexp(3.5) == 3.5 and ref.logsumexp(np.float32(3.5)).dtype == np.float64
    close(ref.logsumexp([1e308, 1e308]), 1e308 + math.log(2))  # no overflow
    close(ref.logsumexp([-1e4, -1e4]), -1e4 + math.log(2))  # no underflow to -inf
    rows = ref.logsumexp([[0.0, 0.0], [nan, 0.0], [-inf, -inf]], axis=1)
    close(rows, [math.log(2), nan, -inf])  # rows do not contaminate each other


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_log_softmax_and_softmax_match_torch(torch, axis):
    x = np.random.default_rng(1).normal(scale=10.0, size=(4, 6, 3))
    xt = torch.tensor(x)
    close(ref.log_softmax(x, axis=axis), torch.log_softmax(xt, dim=axis).numpy())
    close(ref.softmax(x, axis=axis), torch.softmax(xt, dim=axis).numpy())
    close(ref.softmax(x, axis=axis).sum(axis=axis), 1.0)


def test_softmax_masked_and_all_masked_rows(torch):
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]])
    got, want = ref.softmax(x), torch.softmax(torch.tensor(x), dim=-1).numpy()
    assert got[0, 1] == 0.0 and np.isnan(got[1]).all()
    close(got, want)
    close(ref.log_softmax(x), torch.log_softmax(torch.tensor(x), dim=-1).numpy())


# ------------------------------------------------------------------------------------
# cross-entropy against torch
# ------------------------------------------------------------------------------------


SHAPES = [((7, 5), -1), ((4, 6, 3), 1), ((2, 3, 4, 5), -1), ((3, 4, 2, 2), 1), ((6, 4), 0),
          ((5,), 0)]


@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_plain_cross_entropy_matches_torch(torch, shape, axis, reduction):
    x, y = random_case(np.random.default_rng(2), shape, axis)
    loss, grad = ref.cross_entropy_and_grad(x, y, axis=axis, reduction=reduction)
    want_loss, want_grad = torch_ce(torch, x, y, axis=axis, reduction=reduction)
    close(loss, want_loss)
    close(grad, want_grad)
    assert grad.shape == x.shape and grad.dtype == np.float64
    close(ref.cross_entropy(x, y, axis=axis, reduction=reduction), loss)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == np.float64
    else:
        assert type(loss) is float


@settings(max_examples=40, deadline=None, derandomize=True)
@given(batch=st.lists(st.integers(0, 4), min_size=1, max_size=3),
       c=st.integers(1, 9), data=st.data())
def test_cross_entropy_random_shapes_matches_torch(batch, c, data):
    torch = pytest.importorskip("torch")
    axis = data.draw(st.integers(1, len(batch)), label="axis")  # torch's N stays first
    shape = tuple(batch[:axis]) + (c,) + tuple(batch[axis:])
    reduction = data.draw(st.sampled_from(["sum", "none"] if 0 in batch else REDUCTIONS))
    eps = data.draw(st.sampled_from([0.0, 0.3]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x, y = random_case(rng, shape, axis, ignore_frac=0.2)
    w = rng.uniform(0.1, 2.0, size=c)
    loss, grad = ref.cross_entropy_and_grad(x, y, axis=axis, weight=w, reduction=reduction,
                                            label_smoothing=eps)
    want_loss, want_grad = torch_ce(torch, x, y, axis=axis, weight=w, reduction=reduction,
                                    label_smoothing=eps)
    close(loss, want_loss)
    close(grad, want_grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_weights_ignore_index_smoothing_match_torch(torch, reduction, eps, weighted):
    rng = np.random.default_rng(3)
    x, y = random_case(rng, (5, 7, 3), 1, ignore_frac=0.3, ignore_index=4)
    y[0, 0] = 4  # at least one ignored row (4 is also a valid class here)
    w = rng.uniform(0.2, 3.0, size=7) if weighted else None
    kw = dict(weight=w, ignore_index=4, reduction=reduction, label_smoothing=eps)
    loss, grad = ref.cross_entropy_and_grad(x, y, axis=1, **kw)
    want_loss, want_grad = torch_ce(torch, x, y, axis=1, **kw)
    close(loss, want_loss)
    close(grad, want_grad)
    assert (grad[0, :, 0] == 0).all()  # ignored row


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_probability_targets_match_torch(torch, reduction, eps, weighted):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 6, 4))
    p = ref.softmax(rng.normal(scale=2.0, size=x.shape), axis=1)
    w = rng.uniform(0.2, 3.0, size=6) if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=eps)
    loss, grad = ref.cross_entropy_and_grad(x, p, axis=1, **kw)
    want_loss, want_grad = torch_ce(torch, x, p, axis=1, **kw)
    close(loss, want_loss)
    close(grad, want_grad)


def test_one_hot_probabilities_equal_class_indices():
    rng = np.random.default_rng(5)
    x, y = random_case(rng, (6, 5), -1)
    onehot = np.eye(5)[y]
    for r in REDUCTIONS:
        close(ref.cross_entropy(x, onehot, reduction=r, label_smoothing=0.2),
              ref.cross_entropy(x, y, reduction=r, label_smoothing=0.2))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_grad_output_matches_torch(torch, reduction):
    rng = np.random.default_rng(6)
    x, y = random_case(rng, (4, 5, 3), -1, ignore_frac=0.25)
    go = rng.normal(size=(4, 5)) if reduction == "none" else 2.5
    kw = dict(reduction=reduction, weight=rng.uniform(0.5, 2, 3), label_smoothing=0.1)
    loss, grad = ref.cross_entropy_and_grad(x, y, grad_output=go, **kw)
    want_loss, want_grad = torch_ce(torch, x, y, grad_output=go, **kw)
    close(loss, want_loss)
    close(grad, want_grad)


# torch composition of the extended options: softcap, temperature, z-loss, row weights
def torch_extended(torch, x, y, *, weight, sample_weight, ignore_index, reduction,
                   label_smoothing, z_loss, softcap, temperature, grad_output):
    xt = torch.tensor(x, requires_grad=True)
    z = xt / temperature
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    yt = torch.tensor(y)
    wt = None if weight is None else torch.tensor(weight)
    rows = torch.nn.functional.cross_entropy(z, yt, weight=wt, ignore_index=ignore_index,
                                             reduction="none",
                                             label_smoothing=label_smoothing)
    if yt.is_floating_point():
        counted = torch.ones(len(x), dtype=torch.bool)
    else:
        counted = yt != ignore_index
    rows = rows + torch.where(counted, z_loss * torch.logsumexp(z, 1) ** 2, 0.0)
    s = torch.tensor(sample_weight)
    rows = s * rows
    if reduction == "none":
        loss = rows
    elif reduction == "sum":
        loss = rows.sum()
    elif yt.is_floating_point():
        loss = rows.sum() / s.sum()
    else:
        wy = (torch.ones(x.shape[1], dtype=torch.float64) if wt is None else wt)
        loss = rows.sum() / (s[counted] * wy[yt[counted]]).sum()
    loss.backward(torch.as_tensor(grad_output, dtype=torch.float64).expand_as(loss))
    return loss.detach().numpy(), xt.grad.numpy()


EXTENDED = [
    dict(z_loss=1e-2),
    dict(softcap=2.0),
    dict(temperature=0.6),
    dict(sample_weight=True),
    dict(z_loss=0.5, softcap=3.0, temperature=1.7, sample_weight=True, weight=True,
         label_smoothing=0.2),
    dict(softcap=1.5, temperature=0.5, probs=True, weight=True, label_smoothing=0.1),
    dict(z_loss=0.1, sample_weight=True, probs=True),
]


def extended_case(seed, spec, reduction):
    rng = np.random.default_rng(seed)
    n, c = 5, 4
    x = rng.normal(scale=3.0, size=(n, c))
    if spec.get("probs"):
        y = ref.softmax(rng.normal(size=(n, c)))
    else:
        y = rng.integers(0, c, size=n)
        y[1] = -100
    kw = dict(weight=rng.uniform(0.3, 2.0, c) if spec.get("weight") else None,
              sample_weight=rng.uniform(0.0, 2.0, n) if spec.get("sample_weight") else None,
              ignore_index=-100, reduction=reduction,
              label_smoothing=spec.get("label_smoothing", 0.0),
              z_loss=spec.get("z_loss", 0.0), softcap=spec.get("softcap"),
              temperature=spec.get("temperature", 1.0))
    go = rng.normal(size=n) if reduction == "none" else 1.3
    return x, y, kw, go


@pytest.mark.parametrize("spec", EXTENDED)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_extended_options_match_torch_composition(torch, spec, reduction):
    x, y, kw, go = extended_case(7, spec, reduction)
    loss, grad = ref.cross_entropy_and_grad(x, y, grad_output=go, **kw)
    s = np.ones(len(x)) if kw["sample_weight"] is None else kw["sample_weight"]
    want_loss, want_grad = torch_extended(torch, x, y, grad_output=go,
                                          **{**kw, "sample_weight": s})
    close(loss, want_loss)
    close(grad, want_grad)


@pytest.mark.parametrize("spec", EXTENDED)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_extended_options_gradient_matches_finite_differences(spec, reduction):
    x, y, kw, go = extended_case(8, spec, reduction)
    _, grad = ref.cross_entropy_and_grad(x, y, grad_output=go, **kw)

    def f(v):
        return float(np.sum(np.multiply(go, ref.cross_entropy(v, y, **kw))))

    close(grad, fd_grad(f, x), rtol=1e-6, atol=1e-8)


def test_softcap_saturated_gradient_matches_finite_differences():
    x = np.array([[100.0, -25.0, 0.5, 2.0], [-90.0, 1.0, 9.0, 0.0]])
    y = np.array([1, 2])
    kw = dict(softcap=5.0, temperature=0.8, z_loss=0.05, reduction="sum")
    _, grad = ref.cross_entropy_and_grad(x, y, **kw)
    close(grad, fd_grad(lambda v: ref.cross_entropy(v, y, **kw), x), rtol=1e-6, atol=1e-9)
    assert abs(grad[0, 0]) < 1e-8  # tanh saturated: d z / d x ~ 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_z_loss_part_adds_up(reduction):
    rng = np.random.default_rng(9)
    x, y = random_case(rng, (6, 5), -1, ignore_frac=0.3)
    kw = dict(reduction=reduction, weight=rng.uniform(0.5, 2, 5),
              sample_weight=rng.uniform(0, 2, 6), label_smoothing=0.1, softcap=4.0)
    total = ref.cross_entropy(x, y, z_loss=0.2, **kw)
    plain = ref.cross_entropy(x, y, z_loss=0.0, **kw)
    zpart = ref.cross_entropy_z_loss(x, y, z_loss=0.2, **kw)
    close(np.add(plain, zpart), total)
    assert np.all(np.asarray(zpart) >= 0) and np.any(np.asarray(zpart) > 0)
    lse = ref.logsumexp(4.0 * np.tanh(x / 4.0), axis=1)
    rows = np.where(y != -100, kw["sample_weight"] * 0.2 * lse ** 2, 0.0)
    want = {"none": rows, "sum": rows.sum(),
            "mean": rows.sum() / np.sum(np.where(y != -100, kw["sample_weight"]
                                                 * kw["weight"][np.maximum(y, 0)], 0.0))}
    close(zpart, want[reduction])


def test_sample_weight_one_is_default_and_zero_drops_rows():
    rng = np.random.default_rng(10)
    x, y = random_case(rng, (6, 4), -1)
    for r in REDUCTIONS:
        close(ref.cross_entropy(x, y, sample_weight=np.ones(6), reduction=r),
              ref.cross_entropy(x, y, reduction=r))
    s = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    keep = s > 0
    close(ref.cross_entropy(x, y, sample_weight=s), ref.cross_entropy(x[keep], y[keep]))
    _, grad = ref.cross_entropy_and_grad(x, y, sample_weight=s)
    assert (grad[~keep] == 0).all()


# ------------------------------------------------------------------------------------
# edge cases
# ------------------------------------------------------------------------------------


def test_empty_batch(torch):
    x, y = np.zeros((0, 5)), np.zeros(0, dtype=np.int64)
    assert ref.cross_entropy(x, y, reduction="sum") == 0.0
    assert math.isnan(ref.cross_entropy(x, y, reduction="mean"))
    assert math.isnan(float(torch.nn.functional.cross_entropy(torch.tensor(x),
                                                              torch.tensor(y))))
    loss, grad = ref.cross_entropy_and_grad(x, y, reduction="none")
    assert loss.shape == (0,) and grad.shape == (0, 5)
    assert math.isnan(ref.cross_entropy(np.zeros((0, 3)), np.zeros((0, 3))))  # probs


def test_all_rows_ignored(torch):
    x = np.random.default_rng(11).normal(size=(3, 4))
    y = np.full(3, -100)
    loss, grad = ref.cross_entropy_and_grad(x, y)
    assert math.isnan(loss)
    assert math.isnan(float(torch.nn.functional.cross_entropy(torch.tensor(x),
                                                              torch.tensor(y))))
    assert (grad == 0).all()
    assert ref.cross_entropy(x, y, reduction="sum") == 0.0
    assert (ref.cross_entropy(x, y, reduction="none") == 0).all()


@pytest.mark.parametrize("kw", [{}, dict(z_loss=0.1, softcap=3.0, label_smoothing=0.1),
                                dict(weight=[0.0, 1.0, 1.0, 1.0])])
def test_nan_row_is_isolated(kw):
    rng = np.random.default_rng(12)
    x, y = random_case(rng, (5, 4), -1)
    y[2] = 0
    bad = x.copy()
    bad[2, 1] = np.nan
    loss, grad = ref.cross_entropy_and_grad(bad, y, reduction="none", **kw)
    clean_loss, clean_grad = ref.cross_entropy_and_grad(x, y, reduction="none", **kw)
    assert np.isnan(loss[2]) and np.isnan(grad[2]).all()
    others = np.arange(5) != 2
    close(loss[others], clean_loss[others], rtol=0, atol=0)
    close(grad[others], clean_grad[others], rtol=0, atol=0)
    assert math.isnan(ref.cross_entropy(bad, y, **kw))
    # an ignored NaN row counts for nothing
    y[2] = -100
    loss, grad = ref.cross_entropy_and_grad(bad, y, **kw)
    assert loss == ref.cross_entropy(x, y, **kw)
    assert (grad[2] == 0).all() and np.isfinite(grad).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_masked_column_matches_torch(torch, reduction):
    rng = np.random.default_rng(13)
    x, y = random_case(rng, (6, 5), -1)
    x[:, 2] = -np.inf
    y[y == 2] = 0
    loss, grad = ref.cross_entropy_and_grad(x, y, reduction=reduction)
    want_loss, want_grad = torch_ce(torch, x, y, reduction=reduction)
    assert np.isfinite(loss).all() and (grad[:, 2] == 0).all()
    close(loss, want_loss)
    close(grad, want_grad)
    # the masked class simply does not exist
    keep = [0, 1, 3, 4]
    close(loss, ref.cross_entropy(x[:, keep], np.searchsorted(keep, y), reduction=reduction))
    # with label smoothing the masked class has target mass: infinite loss, as in torch
    assert ref.cross_entropy(x, y, label_smoothing=0.1) == np.inf
    assert float(torch_ce(torch, x, y, label_smoothing=0.1)[0]) == np.inf


def test_masked_column_with_probability_targets_is_finite():
    """torch gives nan here (0 * -inf); the oracle takes 0 * log 0 = 0."""
    rng = np.random.default_rng(14)
    x = rng.normal(size=(4, 5))
    x[:, 3] = -np.inf
    p = ref.softmax(rng.normal(size=(4, 5)) + np.where(np.arange(5) == 3, -np.inf, 0.0))
    loss, grad = ref.cross_entropy_and_grad(x, p)
    keep = [0, 1, 2, 4]
    close(loss, ref.cross_entropy(x[:, keep], p[:, keep]))
    assert (grad[:, 3] == 0).all() and np.isfinite(grad).all()


def test_single_class():
    x = np.random.default_rng(15).normal(size=(4, 1))
    y = np.zeros(4, dtype=np.int64)
    for r in REDUCTIONS:
        loss, grad = ref.cross_entropy_and_grad(x, y, reduction=r)
        assert np.all(np.asarray(loss) == 0) and (grad == 0).all()


def test_target_out_of_range_and_unknown_reduction():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError):
        ref.cross_entropy(x, np.array([0, 3]))
    with pytest.raises(ValueError):
        ref.cross_entropy(x, np.array([0, -1]))
    for f in (ref.cross_entropy, ref.cross_entropy_and_grad, ref.cross_entropy_z_loss):
        with pytest.raises(ValueError, match="reduction"):
            f(x, np.array([0, 1]), reduction="avg")
    for f in (ref.binary_cross_entropy_with_logits,
              ref.binary_cross_entropy_with_logits_and_grad,
              ref.mean_squared_error, ref.mean_squared_error_and_grad):
        with pytest.raises(ValueError, match="reduction"):
            f(x, x, reduction="avg")


def test_out_and_inputs_not_mutated():
    rng = np.random.default_rng(16)
    x, y = random_case(rng, (4, 3, 5), 1)
    x32 = x.astype(np.float32)
    before_x, before_y = x32.copy(), y.copy()
    out = np.empty_like(x32)
    loss, grad = ref.cross_entropy_and_grad(x32, y, axis=1, out=out)
    assert grad is out and np.shares_memory(grad, out)
    _, grad64 = ref.cross_entropy_and_grad(x32, y, axis=1)
    close(out, grad64.astype(np.float32), rtol=0, atol=0)
    assert (x32 == before_x).all() and (y == before_y).all()
    # out=logits overwrites the logits with the gradient
    loss2, g = ref.cross_entropy_and_grad(x32, y, axis=1, out=x32)
    assert g is x32 and loss2 == loss
    close(x32, grad64.astype(np.float32), rtol=0, atol=0)


# ------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------


def test_evaluate_matches_torch(torch):
    rng = np.random.default_rng(17)
    x, y = random_case(rng, (3, 6, 4), 1, ignore_frac=0.25)
    y[0, 0] = -100
    x[1, :, 2] = x[1, :, 2] + 5.0
    y[1, 2] = np.argmax(x[1, :, 2])  # at least one correct row
    ev = ref.evaluate(x, y, axis=1)
    xt = torch.tensor(x).movedim(1, -1)
    counted = y != -100
    pred = xt.argmax(-1).numpy()
    mean_loss = float(torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(y)))
    assert ev["argmax"].dtype == np.int64 and (ev["argmax"] == pred).all()
    assert (ev["correct"] == (counted & (pred == y))).all()
    assert ev["accuracy"] == np.sum(counted & (pred == y)) / np.sum(counted) > 0
    close(ev["lse"], torch.logsumexp(xt, -1).numpy())
    close(ev["entropy"], torch.distributions.Categorical(logits=xt).entropy().numpy())
    close(ev["loss"], torch.nn.functional.cross_entropy(
        torch.tensor(x), torch.tensor(y), reduction="none").numpy())
    close(ev["mean_loss"], mean_loss)
    close(ev["perplexity"], math.exp(mean_loss))
    close(ev["bits_per_token"], mean_loss / math.log(2))
    close(ref.perplexity(x, y, axis=1), math.exp(mean_loss))


def test_evaluate_masked_and_uniform():
    x = np.array([[0.0, 0.0, -np.inf, 0.0], [1.0, 2.0, 3.0, 4.0]])
    ev = ref.evaluate(x, np.array([1, 3]), temperature=1e300)  # z ~ 0: uniform
    close(ev["entropy"], [math.log(3), math.log(4)])
    close(ref.perplexity(np.zeros((3, 7)), [0, 4, 6]), 7.0)
    close(ref.evaluate(np.zeros((2, 8)), [1, 2])["bits_per_token"], 3.0)


# ------------------------------------------------------------------------------------
# binary cross-entropy and mean squared error
# ------------------------------------------------------------------------------------


BCE_CASES = [dict(), dict(weight="full"), dict(weight="row"), dict(pos_weight=True),
             dict(weight="row", pos_weight=True, label_smoothing=0.2),
             dict(label_smoothing=0.1)]


@pytest.mark.parametrize("case", BCE_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_matches_torch(torch, case, reduction):
    rng = np.random.default_rng(18)
    x = rng.normal(scale=4.0, size=(5, 3))
    x[0] = [800.0, -800.0, 0.0]  # extremes stay finite
    y = rng.random(size=(5, 3))
    y[1] = [0.0, 1.0, 1.0]
    weight = {None: None, "full": rng.uniform(0, 2, (5, 3)),
              "row": rng.uniform(0, 2, (5, 1))}[case.get("weight")]
    pos_weight = rng.uniform(0.5, 3, 3) if case.get("pos_weight") else None
    eps = case.get("label_smoothing", 0.0)
    go = rng.normal(size=x.shape) if reduction == "none" else 0.7
    kw = dict(weight=weight, pos_weight=pos_weight, reduction=reduction, label_smoothing=eps)
    loss, grad = ref.binary_cross_entropy_with_logits_and_grad(x, y, grad_output=go, **kw)
    close(ref.binary_cross_entropy_with_logits(x, y, **kw), loss)

    xt = torch.tensor(x, requires_grad=True)
    t = lambda a: None if a is None else torch.tensor(a)  # noqa: E731
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        xt, torch.tensor(y * (1 - eps) + eps / 2), weight=t(weight),
        pos_weight=t(pos_weight), reduction=reduction)
    want.backward(torch.as_tensor(go, dtype=torch.float64).expand_as(want))
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    close(loss, want.detach().numpy())
    close(grad, xt.grad.numpy())


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_matches_torch(torch, reduction):
    rng = np.random.default_rng(19)
    pred, target = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    go = rng.normal(size=(4, 3)) if reduction == "none" else 1.7
    loss, grad = ref.mean_squared_error_and_grad(pred, target, reduction=reduction,
                                                 grad_output=go)
    close(ref.mean_squared_error(pred, target, reduction=reduction), loss)
    pt = torch.tensor(pred, requires_grad=True)
    want = torch.nn.functional.mse_loss(pt, torch.tensor(target), reduction=reduction)
    want.backward(torch.as_tensor(go, dtype=torch.float64).expand_as(want))
    close(loss, want.detach().numpy())
    close(grad, pt.grad.numpy())


def test_mse_exact_example():
    actual = np.array([200000, 250000, 300000])
    predicted = np.array([210000, 240000, 310000])
    assert ref.mean_squared_error(predicted, actual) == 1e8
    assert ref.mean_squared_error(predicted, actual, reduction="sum") == 3e8
    _, grad = ref.mean_squared_error_and_grad(predicted, actual)
    close(grad, [2e4 / 3, -2e4 / 3, 2e4 / 3])
