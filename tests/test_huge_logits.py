"""Losses of huge logits: lse - z_y must keep log(sum exp(z - max)) next to a huge max.

With logits of 3e38 (float32) or 1e17 (float64), lse = max + log_sum rounds to max,
and lse - z_y then loses log_sum entirely: three equal logits have loss log 3, not 0
(PyTorch gives log 3).  The oracle takes the difference as (max - z_y) + log_sum; it is
checked here against an exact computation in Python's ``decimal`` at 60 digits, and
the fast path against the oracle.
"""
import math
from decimal import Decimal, localcontext

import numpy as np
import pytest

import xentfast
from xentfast import reference

# (dtype, magnitude): a float32 near its largest finite value, a float64 whose ulp is 16
HUGE = [(np.float32, 3e38), (np.float64, 1e17)]
HUGE_IDS = ["float32-3e38", "float64-1e17"]
CLASSES = [3, 3000]  # a narrow row (the kernels' many-rows-per-vector path) and a wide one


def huge_rows(dtype, big, c):
    """Four adversarial rows around `big`: all equal; one class an ulp lower; every
    other class lower (by 64 in float64, by half in float32); one class at -big."""
    x = np.full((4, c), big, dtype)
    x[1, 1] = np.nextafter(dtype(big), dtype(0))
    x[2, ::2] = dtype(big - 64) if dtype == np.float64 else dtype(big) * dtype(0.5)
    x[3, 0] = -dtype(big)
    return x


def exact_losses(x, target, *, label_smoothing=0.0, weight=None):
    """Per-row losses sum_k w_k q_k (lse - z_k) and log-softmax z_k - lse, exactly
    (decimal arithmetic, 60 digits; lse - z_k = (m - z_k) + log sum exp(z - m) is an
    identity, so the shift loses nothing there)."""
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    eps = Decimal(label_smoothing)
    losses, log_probs = [], []
    with localcontext() as ctx:
        ctx.prec = 60
        for i in range(n):
            z = [Decimal(float(v)) for v in x[i]]
            m = max(z)
            log_sum = sum((v - m).exp() for v in z).ln()
            nll = [(m - v) + log_sum for v in z]  # lse - z_k
            t = np.asarray(target)
            if t.dtype.kind in "iu":
                q = [eps / c + ((1 - eps) if k == int(t[i]) else 0) for k in range(c)]
            else:
                q = [Decimal(float(p)) * (1 - eps) + eps / c for p in t[i]]
            losses.append(float(sum(Decimal(float(w[k])) * q[k] * nll[k]
                                    for k in range(c) if q[k] != 0)))
            log_probs.append([float(-v) for v in nll])
    return np.array(losses), np.array(log_probs)


def grad_target(t, c, kw):
    """The target distribution q (smoothed), which the per-row gradient subtracts."""
    eps = kw.get("label_smoothing", 0.0)
    t = np.asarray(t)
    if t.dtype.kind == "f":
        return t.astype(np.float64) * (1 - eps) + eps / c
    return np.eye(c)[t] * (1 - eps) + eps / c


def targets(kind, c, dtype):
    if kind == "probabilities":
        p = np.random.default_rng(c).random((4, c))
        return (p / p.sum(axis=1, keepdims=True)).astype(dtype), {}
    t = np.array([0, 1, 2, 1])
    return t, ({"label_smoothing": 0.1} if kind == "smoothing" else {})


KINDS = ["index", "smoothing", "probabilities"]
# The fast path keeps log_sum for index targets (row_finish.h).  Its smoothing
# and probability-target sums (w z, w p z) are taken in the row's dtype and
# against the row's max M, which next to huge logits overflows or cancels (as
# PyTorch's float32 log-softmax sum does): those two are checked on the oracle
# only, above.
LOSS_KINDS = ["index"]


# --------------------------------------------------------------------------------------
# the oracle


def test_pytorch_figure():
    """The figure of the report: three equal huge logits have loss log 3."""
    for dtype, big in HUGE:
        x = np.full((1, 3), big, dtype)
        assert reference.cross_entropy(x, [0]) == pytest.approx(math.log(3), rel=1e-15)


@pytest.mark.parametrize("dtype,big", HUGE, ids=HUGE_IDS)
@pytest.mark.parametrize("c", [3, 300])  # decimal is slow: the oracle's wide rows below
@pytest.mark.parametrize("kind", KINDS)
def test_oracle_matches_exact_losses(dtype, big, c, kind):
    x = huge_rows(dtype, big, c)
    t, kw = targets(kind, c, dtype)
    weight = np.linspace(0.5, 2.0, c)
    for w in (None, weight):
        want, log_probs = exact_losses(x, t, weight=w, **kw)
        got = reference.cross_entropy(x, t, reduction="none", weight=w, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
        loss, grad = reference.cross_entropy_and_grad(x, t, reduction="none", weight=w, **kw)
        np.testing.assert_allclose(loss, want, rtol=1e-13, atol=0)
        if w is None:  # per row, d l / d z = (sum q) softmax(z) - q
            probs, q = np.exp(log_probs), grad_target(t, c, kw)
            np.testing.assert_allclose(grad, q.sum(axis=1, keepdims=True) * probs - q,
                                       rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(reference.log_softmax(x), log_probs, rtol=1e-13, atol=0)
    np.testing.assert_allclose(reference.softmax(x), np.exp(log_probs), rtol=1e-13, atol=0)
    ev = reference.evaluate(x, t, **kw)
    np.testing.assert_allclose(ev["loss"], exact_losses(x, t, **kw)[0], rtol=1e-13, atol=0)
    probs = np.exp(log_probs)
    entropy = -np.sum(np.where(probs > 0, probs * log_probs, 0.0), axis=1)
    np.testing.assert_allclose(ev["entropy"], entropy, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("dtype,big", HUGE, ids=HUGE_IDS)
def test_oracle_wide_rows_are_log_c(dtype, big):
    """3000 equal huge logits: loss log 3000 for every target kind; plus the z-loss
    part, which is lam * lse^2 of the (rounded) lse, untouched."""
    x = np.full((2, 3000), big, dtype)
    p = np.full((2, 3000), 1 / 3000)
    for t, kw in (([0, 5], {}), ([0, 5], {"label_smoothing": 0.3}), (p, {})):
        got = reference.cross_entropy(x, t, reduction="none", **kw)
        np.testing.assert_allclose(got, math.log(3000), rtol=1e-13)
    lse = float(np.float64(dtype(big)) + math.log(3000))
    z = reference.cross_entropy_z_loss(x, [0, 5], z_loss=1e-80, reduction="none")
    np.testing.assert_allclose(z, 1e-80 * lse ** 2, rtol=1e-13)


def test_oracle_ordinary_logits_unchanged():
    """Ordinary logits: the shifted form agrees with the textbook lse - z_y."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 17)) * 4
    t = rng.integers(0, 17, 50)
    lse = np.log(np.sum(np.exp(x), axis=1))
    want = lse - x[np.arange(50), t]
    np.testing.assert_allclose(reference.cross_entropy(x, t, reduction="none"), want,
                               rtol=1e-13)
    np.testing.assert_allclose(exact_losses(x, t)[0], want, rtol=1e-13)


# --------------------------------------------------------------------------------------
# the fast path: the kernels form each loss as (max - z) + log_sum too (row_finish.h)


def _problem(dtype, big, c, kind):
    x = huge_rows(dtype, big, c)
    t, kw = targets(kind, c, dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-9
    return x, t, kw, rtol


def _oracle_rows(x, t, kw):
    return reference.cross_entropy(x.astype(np.float64), t, reduction="none", **kw)


@pytest.mark.parametrize("dtype,big", HUGE, ids=HUGE_IDS)
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_cross_entropy_of_huge_logits(backend, dtype, big, c, kind):
    x, t, kw, rtol = _problem(dtype, big, c, kind)
    want = _oracle_rows(x, t, kw)
    got = xentfast.cross_entropy(x, t, reduction="none", **kw)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
    # "mean" over the three rows whose losses are O(1) (the fourth's can be ~big / C)
    mean = xentfast.cross_entropy(x[:3], t[:3], **kw)
    assert mean == pytest.approx(float(np.mean(want[:3])), rel=rtol)


@pytest.mark.parametrize("dtype,big", HUGE, ids=HUGE_IDS)
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_cross_entropy_and_grad_loss_of_huge_logits(backend, dtype, big, c, kind):
    x, t, kw, rtol = _problem(dtype, big, c, kind)
    loss, _ = xentfast.cross_entropy_and_grad(x, t, reduction="none", **kw)
    np.testing.assert_allclose(loss, _oracle_rows(x, t, kw), rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype,big", HUGE, ids=HUGE_IDS)
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_of_huge_logits(backend, dtype, big, c, kind):
    """The gradient is exp(z - lse) - target, which the kernels already get right."""
    x, t, kw, _ = _problem(dtype, big, c, kind)
    _, grad = xentfast.cross_entropy_and_grad(x, t, reduction="none", **kw)
    _, want = reference.cross_entropy_and_grad(x.astype(np.float64), t, reduction="none",
                                               **kw)
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6 if dtype == np.float32
                               else 1e-12)


@pytest.mark.parametrize("dtype,big", HUGE, ids=HUGE_IDS)
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_evaluate_loss_of_huge_logits(backend, dtype, big, c, kind):
    x, t, kw, rtol = _problem(dtype, big, c, kind)
    ev = xentfast.evaluate(x, t, **kw)
    np.testing.assert_allclose(ev.loss, _oracle_rows(x, t, kw), rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype,big", HUGE, ids=HUGE_IDS)
@pytest.mark.parametrize("c", CLASSES)
def test_evaluate_entropy_and_lse_of_huge_logits(backend, dtype, big, c):
    """Entropy and lse of huge logits, which the kernels already get right."""
    x, t, kw, rtol = _problem(dtype, big, c, "index")
    ev = xentfast.evaluate(x, t)
    want = reference.evaluate(x.astype(np.float64), t)
    np.testing.assert_allclose(ev.entropy, want["entropy"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ev.lse, want["lse"], rtol=rtol, atol=0)
