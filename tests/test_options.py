"""Loss options against the float64 oracle, PyTorch and finite differences."""
import numpy as np
import pytest

import xentfast
from xentfast import reference

from helpers import assert_grad_close, assert_loss_close, random_problem

REDUCTIONS = ["mean", "sum", "none"]
# softcap computes z = c*tanh(x/c) in float32: z is good to ~c * 1e-7 absolute
CAPPED_TOL = dict(loss=1e-5, grad=2e-6)


def both(x, t, **kw):
    """(loss, grad) of xentfast and of the oracle, plus cross_entropy's loss."""
    ref = reference.cross_entropy_and_grad(x.astype(np.float64), t, **kw)
    got = xentfast.cross_entropy_and_grad(x, t, **kw)
    fwd = xentfast.cross_entropy(x, t, **kw)
    return got, ref, fwd


def check(x, t, loss_rtol=1e-6, grad_atol=1e-6, **kw):
    (loss, grad), (loss_ref, grad_ref), fwd = both(x, t, **kw)
    assert_loss_close(loss, loss_ref, loss_rtol)
    assert_loss_close(fwd, loss_ref, loss_rtol)
    assert_grad_close(grad, grad_ref, grad_atol)


OPTION_SETS = [
    dict(label_smoothing=0.1),
    dict(label_smoothing=1.0),
    dict(z_loss=1e-3),
    dict(z_loss=0.5),
    dict(temperature=0.7),
    dict(temperature=3.0),
    dict(softcap=30.0),
    dict(softcap=2.0),
    dict(label_smoothing=0.1, z_loss=1e-4, softcap=30.0),
    dict(label_smoothing=0.2, z_loss=1e-3, softcap=15.0, temperature=1.5),
]


def tolerances(options):
    if "softcap" in options:
        return CAPPED_TOL["loss"], CAPPED_TOL["grad"]
    return 1e-6, 1e-6


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(o))
@pytest.mark.parametrize("c", [1, 7, 17, 100, 2049, 32000])
def test_options_match_oracle(backend, rng, options, c):
    n = 500 if c < 200 else 9
    x, t = random_problem(rng, n, c, scale=4.0)
    rtol, atol = tolerances(options)
    for reduction in REDUCTIONS:
        check(x, t, rtol, atol, reduction=reduction, **options)


# A cap far above the logits barely changes them: z = c tanh(x/c) ~ x must
# keep its relative accuracy (1 - 2/(e^{2x/c} + 1) cancelled to 0 there, and
# a softcap of 1e30 gave the uniform distribution).
@pytest.mark.parametrize("cap", [1e3, 1e6, 1e30, 3e38])
def test_large_softcap_keeps_relative_accuracy(backend, rng, cap):
    x, t = random_problem(rng, 300, 50, scale=4.0)
    for reduction in REDUCTIONS:
        check(x, t, 1e-6, 1e-6, reduction=reduction, softcap=cap)
    if cap >= 1e6:  # c tanh(x/c) = x (1 - x^2/(3 c^2) + ...): below float resolution
        plain = xentfast.cross_entropy(x, t)
        np.testing.assert_allclose(xentfast.cross_entropy(x, t, softcap=cap), plain, rtol=1e-6)


# Caps up to 64 take AVX-512's one-loop path (softcap.h: exps of z not
# shifted by the max, a tanh by exp); above, the two loops.  Either side of
# the switch, on saturated logits (|x| >> c: z = +-c, chain factors near 0),
# infinities and small ones, against the oracle.  z's absolute error grows
# with c, and the gradient's with 1/T: the tolerances too.
@pytest.mark.parametrize("cap", [0.5, 30.0, 63.99, 64.0, 64.01, 90.0])
@pytest.mark.parametrize("extra", [{}, dict(label_smoothing=0.1, z_loss=1e-4),
                                   dict(temperature=0.25, _weight=True), dict(_target="P")],
                         ids=["plain", "smoothing,z_loss", "temperature,weight", "probabilities"])
def test_softcap_either_side_of_the_one_loop_cap(backend, rng, cap, extra):
    n, c = 40, 2500
    x, t = random_problem(rng, n, c, scale=3.0)
    x[:10] *= 1000.0  # saturated rows
    x[10:13, ::7] = np.inf
    x[13:16, ::5] = -np.inf
    x[16:20] *= 1e-3
    kw = dict(extra)
    if kw.pop("_weight", None):
        kw["weight"] = rng.uniform(0.5, 2.0, c)
    target = t
    if kw.pop("_target", None):
        target = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    scale = max(1.0, cap / 30) / kw.get("temperature", 1.0)
    for reduction in REDUCTIONS:
        check(x, target, CAPPED_TOL["loss"] * scale, CAPPED_TOL["grad"] * scale,
              reduction=reduction, softcap=cap, **kw)


def test_softcap_certain_rows_have_a_small_nonnegative_loss(backend):
    """A row whose target's logit saturates at +c and every other at -c has
    loss log(1 + (C-1) e^{-2c}) (about 4e-23 for c = 30): the one loop's
    exps, not taken relative to the max, must not round it below zero.
    (2e-5: the float lanes that sum the exps, against the oracle's double.)"""
    c = 3000
    x = np.full((8, c), -1e4, np.float32)
    t = np.arange(8) * 300
    x[np.arange(8), t] = 1e4
    for cap in (5.0, 30.0, 64.0):
        rows = xentfast.cross_entropy(x, t, softcap=cap, reduction="none")
        expected = np.log1p((c - 1) * np.exp(-2 * cap))
        assert np.all(rows >= 0), (cap, rows)
        np.testing.assert_allclose(rows, expected, atol=2e-5)
        _, grad = xentfast.cross_entropy_and_grad(x, t, softcap=cap, reduction="sum")
        assert np.all(np.isfinite(grad))
        assert np.all(np.abs(grad) <= 1e-6)  # saturated: every chain factor ~0


# Temperatures so far from 1 that the one loop's scale 2 log2(e)/(T c)
# leaves float's comfortable range (1e-30 to 1e30): the two loops take over
# at 1e-33 and 1e33.  Gradients only for T > 1: below, 1/T times a chain
# factor's float quantum (2^-23 where the oracle's tanh' is 0) swamps them,
# whatever the path.
@pytest.mark.parametrize("temperature", [1e-33, 1e-20, 1e20, 1e33])
def test_softcap_with_extreme_temperatures(backend, rng, temperature):
    x, t = random_problem(rng, 30, 300, scale=3.0)
    x[:10] *= 1e25 if temperature > 1 else 1e-25
    if temperature > 1:
        check(x, t, *tolerances({"softcap": 1}), softcap=30.0, temperature=temperature)
    ref = reference.cross_entropy(x.astype(np.float64), t, softcap=30.0, temperature=temperature)
    assert_loss_close(xentfast.cross_entropy(x, t, softcap=30.0, temperature=temperature), ref,
                      CAPPED_TOL["loss"])


@pytest.mark.parametrize("options", OPTION_SETS[:3] + OPTION_SETS[-1:], ids=lambda o: ",".join(o))
def test_options_with_weights_and_ignore_index(backend, rng, options):
    x, t = random_problem(rng, 300, 37, ignore_frac=0.3)
    t[t == -100] = 5
    w = rng.uniform(0.2, 3, 37)
    s = rng.uniform(0, 2, 300)
    rtol, atol = tolerances(options)
    for reduction in REDUCTIONS:
        check(x, t, rtol, atol, weight=w, sample_weight=s, ignore_index=5, reduction=reduction,
              **options)


@pytest.mark.parametrize("c", [1, 3, 16, 100, 3000])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_probability_targets(backend, rng, c, smoothing):
    n = 200 if c < 1000 else 12
    x, _ = random_problem(rng, n, c)
    p = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    w = rng.uniform(0.5, 2.0, c)
    s = rng.uniform(0, 2, n)
    for reduction in REDUCTIONS:
        check(x, p, reduction=reduction, label_smoothing=smoothing)
        check(x, p, reduction=reduction, label_smoothing=smoothing, weight=w, sample_weight=s,
              z_loss=1e-3)
    # targets of another float dtype and layout give the same result
    a = xentfast.cross_entropy_and_grad(x, p)
    b = xentfast.cross_entropy_and_grad(x, np.asfortranarray(p.astype(np.float64)))
    assert a[0] == pytest.approx(b[0], rel=1e-6)
    assert_grad_close(a[1], b[1])


def test_probability_targets_any_axis(backend, rng):
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)
    p = rng.dirichlet(np.ones(6), size=(3, 5)).transpose(0, 2, 1)
    check(x, p, axis=1, label_smoothing=0.05)


def test_masked_classes_with_probability_targets(backend, rng):
    x, _ = random_problem(rng, 20, 50)
    x[:, :10] = -np.inf
    p = rng.dirichlet(np.ones(40), size=20)
    p = np.concatenate([np.zeros((20, 10)), p], axis=1).astype(np.float32)
    (loss, grad), (loss_ref, grad_ref), _ = both(x, p)
    assert np.isfinite(loss)
    assert_loss_close(loss, loss_ref)
    assert_grad_close(grad, grad_ref)
    assert np.all(grad[:, :10] == 0)


def test_return_z_loss(backend, rng):
    x, t = random_problem(rng, 100, 300)
    for reduction in REDUCTIONS:
        loss, zl = xentfast.cross_entropy(x, t, z_loss=1e-2, reduction=reduction,
                                          return_z_loss=True)
        loss2, zl2, grad = xentfast.cross_entropy_and_grad(x, t, z_loss=1e-2, reduction=reduction,
                                                           return_z_loss=True)
        zl_ref = reference.cross_entropy_z_loss(x.astype(np.float64), t, z_loss=1e-2,
                                                reduction=reduction)
        assert_loss_close(zl, zl_ref)
        assert_loss_close(zl2, zl_ref)
        assert_loss_close(loss, loss2)
        plain = xentfast.cross_entropy(x, t, reduction=reduction)
        assert_loss_close(np.asarray(loss) - np.asarray(zl), plain, 2e-6)


def test_finite_differences_of_every_option(rng):
    """float64 gradients against central differences, one class at a time."""
    x = rng.standard_normal((3, 6)) * 2
    t = np.array([0, 5, 2])
    s = np.array([0.5, 2.0, 1.0])
    kw = dict(z_loss=0.05, softcap=1.5, temperature=0.8, sample_weight=s, label_smoothing=0.1,
              weight=np.linspace(0.5, 1.5, 6))
    for reduction in ("mean", "sum"):
        _, grad = xentfast.cross_entropy_and_grad(x, t, reduction=reduction, **kw)
        h = 1e-6
        for i in range(3):
            for k in range(6):
                xp, xm = x.copy(), x.copy()
                xp[i, k] += h
                xm[i, k] -= h
                fd = (xentfast.cross_entropy(xp, t, reduction=reduction, **kw)
                      - xentfast.cross_entropy(xm, t, reduction=reduction, **kw)) / (2 * h)
                assert abs(grad[i, k] - fd) < 1e-7, (reduction, i, k, grad[i, k], fd)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_options_bitwise_identical_across_threads(rng, threads):
    x, t = random_problem(rng, 257, 2100)
    p = rng.dirichlet(np.ones(2100), size=257).astype(np.float32)
    for target in (t, p):
        for options in OPTION_SETS:
            a = xentfast.cross_entropy_and_grad(x, target, num_threads=1, **options)
            b = xentfast.cross_entropy_and_grad(x, target, num_threads=threads, **options)
            assert a[0] == b[0] and np.array_equal(a[1], b[1]), options


@pytest.mark.parametrize("options", [
    dict(softcap=30.0), dict(softcap=50.0, temperature=0.8), dict(softcap=15.0, label_smoothing=0.1),
    dict(softcap=30.0, weight="W"), dict(softcap=30.0, _target="P"),
    dict(softcap=20.0, label_smoothing=0.1, z_loss=1e-3, weight="W"),
    dict(softcap=30.0, label_smoothing=0.2, weight="W", _target="P"),
], ids=["softcap", "softcap,temperature", "softcap,smoothing", "softcap,weight",
        "softcap,probabilities", "softcap,smoothing,z_loss,weight",
        "softcap,smoothing,weight,probabilities"])
def test_deferred_softcap_rows_equal_rows_written_alone(backend, rng, options):
    """A softcapped gradient row is written during the next row's z and exp
    loops (softcap.h), with streaming stores for a large output; each row must
    equal, bit for bit, the same row computed alone (written at once, not
    streamed), also across ignored rows, unaligned output rows and segment
    tails (C = 7001: three whole segments and a tail)."""
    n, c = 300, 7001  # 8.4 MB of output: streamed
    x, t = random_problem(rng, n, c)
    x *= 8
    t[5::7] = -100
    options = dict(options)
    kw = {"reduction": "sum"}
    if options.pop("weight", None):
        kw["weight"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
    target = t
    if options.pop("_target", None):
        target = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    kw.update(options)
    flat = np.empty(n * c + 1, np.float32)
    out = flat[1:].reshape(n, c)  # rows 4 bytes off any vector alignment
    for threads in (1, 2):
        loss, grad = xentfast.cross_entropy_and_grad(x, target, out=out, num_threads=threads,
                                                     **kw)
        assert grad is out
        for i in range(n):
            _, gi = xentfast.cross_entropy_and_grad(x[i:i + 1], target[i:i + 1], **kw)
            assert np.array_equal(gi[0], grad[i]), (threads, i)
        ref = reference.cross_entropy_and_grad(x.astype(np.float64), target, **kw)
        assert_loss_close(loss, ref[0], CAPPED_TOL["loss"])
        assert_grad_close(grad, ref[1], CAPPED_TOL["grad"])


# ---------------------------------------------------------------- low precision


def test_float16_is_read_as_float16_and_computed_in_float32(backend, rng):
    x, t = random_problem(rng, 300, 1000)
    x16 = x.astype(np.float16)
    loss, grad = xentfast.cross_entropy_and_grad(x16, t, label_smoothing=0.1)
    assert grad.dtype == np.float16
    loss32, grad32 = xentfast.cross_entropy_and_grad(x16.astype(np.float32), t,
                                                     label_smoothing=0.1)
    assert loss == loss32
    assert np.array_equal(grad, grad32.astype(np.float16))
    assert xentfast.cross_entropy(x16, t) == xentfast.cross_entropy(x16.astype(np.float32), t)
    work = x16.copy()
    xentfast.cross_entropy_and_grad(work, t, out=work, label_smoothing=0.1)
    assert np.array_equal(work, grad)


def test_float16_in_chunks(backend, rng, monkeypatch):
    from xentfast import _api
    monkeypatch.setattr(_api, "_CHUNK_ELEMENTS", 64)
    x, t = random_problem(rng, 50, 30)
    x16 = x.astype(np.float16)
    loss, grad = xentfast.cross_entropy_and_grad(x16, t, reduction="none")
    loss32, grad32 = xentfast.cross_entropy_and_grad(x16.astype(np.float32), t, reduction="none")
    assert np.array_equal(loss, loss32.astype(np.float16))
    assert np.array_equal(grad, grad32.astype(np.float16))


def test_bfloat16(rng):
    import ml_dtypes  # in the test extra
    x, t = random_problem(rng, 64, 100)
    xb = x.astype(ml_dtypes.bfloat16)
    loss, grad = xentfast.cross_entropy_and_grad(xb, t)
    assert grad.dtype == ml_dtypes.bfloat16
    assert loss == xentfast.cross_entropy(xb.astype(np.float32), t)


# ---------------------------------------------------------------- evaluation


def _low_precision_dtypes():
    import ml_dtypes  # in the test extra
    return [np.float16, ml_dtypes.bfloat16]


@pytest.mark.parametrize("dtype", [np.float32, np.float64] + _low_precision_dtypes(),
                         ids=lambda d: np.dtype(d).name)
def test_evaluation_fields_have_documented_dtypes(rng, dtype):
    x, t = random_problem(rng, 50, 7, ignore_frac=0.2)
    x = x.astype(dtype)
    ev = xentfast.evaluate(x, t, label_smoothing=0.1)
    for name in ("loss", "lse", "entropy"):
        assert getattr(ev, name).dtype == np.float64, name
    assert ev.argmax.dtype == np.int64 and ev.correct.dtype == np.bool_
    for field in (ev.loss, ev.lse, ev.entropy, ev.argmax, ev.correct):
        assert field.shape == (50,)
    # the float64 rows are the ones the mean is formed from: no rounding in between
    assert np.sum(ev.loss) / np.count_nonzero(t != -100) == pytest.approx(ev.mean_loss,
                                                                          rel=1e-12)
    # and reduction="none", in the logits' (compute) dtype, is them rounded
    none = xentfast.cross_entropy(x, t, label_smoothing=0.1, reduction="none")
    np.testing.assert_array_equal(none, ev.loss.astype(none.dtype))


def test_evaluation_repr_is_a_short_summary(rng):
    x, t = random_problem(rng, 5000, 10)
    ev = xentfast.evaluate(x.reshape(50, 100, 10), t.reshape(50, 100))
    text = repr(ev)
    assert text == str(ev) and "\n" not in text and len(text) < 200, text
    assert text.startswith("Evaluation(shape=(50, 100), ")
    for field in ("n_counted", "mean_loss", "accuracy", "perplexity", "bits_per_token"):
        assert f"{field}=" in text, field
    assert f"n_counted={ev.n_counted}," in text
    assert f"mean_loss={ev.mean_loss:.6g}," in text
    assert f"perplexity={ev.perplexity:.6g}," in text
    assert "array" not in text


@pytest.mark.parametrize("options", [{}, dict(label_smoothing=0.1, temperature=2.0)],
                         ids=["plain", "options"])
def test_evaluate_matches_oracle(backend, rng, options):
    x, t = random_problem(rng, 400, 33, ignore_frac=0.2)
    x[3, :5] = -np.inf
    ev = xentfast.evaluate(x, t, **options)
    ref = reference.evaluate(x.astype(np.float64), t, **options)
    assert_loss_close(ev.loss, ref["loss"])
    counted = t != -100
    np.testing.assert_allclose(ev.lse[counted], ref["lse"][counted], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ev.entropy[counted], ref["entropy"][counted], rtol=1e-6, atol=1e-6)
    assert np.array_equal(ev.argmax, ref["argmax"])
    assert np.array_equal(ev.correct, ref["correct"])
    assert ev.accuracy == pytest.approx(ref["accuracy"])
    assert ev.mean_loss == pytest.approx(ref["mean_loss"], rel=1e-6)
    assert ev.perplexity == pytest.approx(ref["perplexity"], rel=1e-6)
    assert ev.bits_per_token == pytest.approx(ref["bits_per_token"], rel=1e-6)
    # the general pass (evaluate) and the plain one sum in different orders
    assert ev.mean_loss == pytest.approx(xentfast.cross_entropy(x, t, **options), rel=1e-9)
    assert xentfast.perplexity(x, t, **options) == pytest.approx(ev.perplexity, rel=1e-9)


def test_perplexity_of_a_uniform_model_is_the_class_count():
    x = np.zeros((7, 13), np.float32)
    t = np.arange(7)
    assert xentfast.perplexity(x, t) == pytest.approx(13.0, rel=1e-6)
    assert xentfast.evaluate(x, t).bits_per_token == pytest.approx(np.log2(13), rel=1e-6)


# ---------------------------------------------------------------- bad options


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    (dict(label_smoothing=float("nan")), ValueError, "label_smoothing"),
    (dict(label_smoothing="0.1"), TypeError, "label_smoothing"),
    (dict(temperature=0.0), ValueError, "temperature"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(temperature=float("inf")), ValueError, "temperature"),
    (dict(softcap=0.0), ValueError, "softcap"),
    (dict(softcap=-3.0), ValueError, "softcap"),
    (dict(z_loss=-1e-4), ValueError, "z_loss"),
    (dict(sample_weight=np.ones(3)), ValueError, "sample_weight"),
    (dict(sample_weight=np.ones((4, 1))), ValueError, "sample_weight"),
    (dict(sample_weight=np.array(["a"] * 4)), TypeError, "sample_weight"),
])
def test_bad_options(kwargs, exc, words):
    x = np.zeros((4, 5), np.float32)
    t = np.array([0, 1, 2, 3])
    for f in (xentfast.cross_entropy, xentfast.cross_entropy_and_grad, xentfast.evaluate):
        with pytest.raises(exc, match=words):
            f(x, t, **kwargs)


def test_bad_probability_targets():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(TypeError, match="probabilities"):
        xentfast.cross_entropy(x, np.full((4, 4), 0.2))
    with pytest.raises(TypeError, match="probabilities"):
        xentfast.cross_entropy_and_grad(x, np.full((4,), 0.2))
    with pytest.raises(TypeError, match="reduction"):
        xentfast.perplexity(x, np.arange(4), reduction="sum")


def test_probability_targets_of_another_dtype_go_in_chunks(backend, rng, monkeypatch):
    """float64 probabilities with float32 logits are converted a chunk at a
    time (no N×C copy), with exactly the result of converting them first."""
    from xentfast import _api
    x, _ = random_problem(rng, 100, 40)
    p = rng.dirichlet(np.ones(40), size=100)
    expected = xentfast.cross_entropy_and_grad(x, p.astype(np.float32), label_smoothing=0.1)
    monkeypatch.setattr(_api, "_CHUNK_ELEMENTS", 100)
    loss, grad = xentfast.cross_entropy_and_grad(x, p, label_smoothing=0.1)
    assert loss == expected[0] and np.array_equal(grad, expected[1])
    work = x.copy()
    xentfast.cross_entropy_and_grad(work, p, label_smoothing=0.1, out=work)
    assert np.array_equal(work, expected[1])


def test_full_smoothing_with_a_masked_class_is_inf(backend):
    """label_smoothing=1 leaves (1 - eps) = 0 in front of the target term: it
    must add 0, not 0 * inf, so a masked class with smoothing mass gives inf."""
    x = np.array([[0.0, -np.inf, 1.0]], np.float32)
    assert xentfast.cross_entropy(x, np.array([1]), label_smoothing=1.0) == np.inf
    p = np.array([[0.2, 0.5, 0.3]], np.float32)
    assert xentfast.cross_entropy(x, p, label_smoothing=1.0) == np.inf
