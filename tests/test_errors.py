"""Bad input: a TypeError or ValueError naming the argument, before any work."""
import numpy as np
import pytest

import xentfast
from xentfast import reference

X = np.zeros((4, 5), dtype=np.float32)
T = np.array([0, 1, 2, 3])


@pytest.mark.parametrize("logits,exc,words", [
    (np.array([["a", "b"]]), TypeError, "logits"),
    (np.array([[object(), 1]], dtype=object), TypeError, "logits"),
    (np.zeros((4, 5), dtype=np.int32), TypeError, "logits"),
    (np.zeros((4, 5), dtype=np.complex64), TypeError, "logits"),
    (np.zeros((4, 5), dtype=bool), TypeError, "logits"),
    (np.float32(1.0), ValueError, "logits"),
    (np.zeros((4, 0), dtype=np.float32), ValueError, "class"),
])
def test_bad_logits(logits, exc, words):
    with pytest.raises(exc, match=words):
        xentfast.cross_entropy(logits, T)
    with pytest.raises(exc, match=words):
        xentfast.cross_entropy_and_grad(logits, T)


@pytest.mark.parametrize("target,exc,words", [
    (np.array([0, 1, 2, 5]), ValueError, r"target\[3\] = 5"),
    (np.array([0, -1, 2, 3]), ValueError, r"target\[1\] = -1"),
    (np.array([0, 1, 2, -101]), ValueError, "target"),
    (np.array([0.0, 1.0, 2.0, 3.0]), TypeError, "integer class indices"),
    (np.array([True, False, True, False]), TypeError, "target"),
    (np.array([0, 1, 2]), ValueError, "shape"),
    (np.array([[0, 1], [2, 3]]), ValueError, "shape"),
    (np.array([2**63 + 5, 0, 0, 0], dtype=np.uint64), ValueError, "target"),
    (np.array(["a", "b", "c", "d"]), TypeError, "target"),
])
def test_bad_target(target, exc, words):
    with pytest.raises(exc, match=words):
        xentfast.cross_entropy(X, target)
    with pytest.raises(exc, match=words):
        xentfast.cross_entropy_and_grad(X, target)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(weight=np.ones(4)), ValueError, "weight"),
    (dict(weight=np.ones((5, 1))), ValueError, "weight"),
    (dict(weight=np.array(["a"] * 5)), TypeError, "weight"),
    (dict(reduction="avg"), ValueError, "reduction"),
    (dict(reduction=None), ValueError, "reduction"),
    (dict(axis=2), ValueError, "axis"),
    (dict(axis=-3), ValueError, "axis"),
    (dict(axis=1.0), TypeError, "axis"),
    (dict(num_threads=0), ValueError, "num_threads"),
    (dict(num_threads=-2), ValueError, "num_threads"),
    (dict(num_threads=1.5), TypeError, "num_threads"),
    (dict(num_threads=True), TypeError, "num_threads"),
    (dict(ignore_index=1.5), TypeError, "ignore_index"),
])
def test_bad_options(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        xentfast.cross_entropy(X, T, **kwargs)
    with pytest.raises(exc, match=words):
        xentfast.cross_entropy_and_grad(X, T, **kwargs)


def test_bad_out():
    ro = np.zeros_like(X)
    ro.flags.writeable = False
    for out, exc, words in [(np.zeros((4, 6), np.float32), ValueError, "shape"),
                            (np.zeros((4, 5), np.float64), ValueError, "dtype"),
                            (ro, ValueError, "read-only"),
                            ([[0.0] * 5] * 4, TypeError, "out")]:
        with pytest.raises(exc, match=words):
            xentfast.cross_entropy_and_grad(X, T, out=out)
    x = np.zeros((4, 10), np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        xentfast.cross_entropy_and_grad(x[:, :5], T, out=x[:, 5:][:, ::-1])
    with pytest.raises(ValueError, match="out"):
        xentfast.softmax(X, out=np.zeros(3, np.float32))


def test_bad_grad_output():
    with pytest.raises(ValueError, match="grad_output"):
        xentfast.cross_entropy_and_grad(X, T, grad_output=np.ones(4))
    with pytest.raises(ValueError, match="grad_output"):
        xentfast.cross_entropy_and_grad(X, T, reduction="none", grad_output=np.ones(3))


def test_building_block_errors():
    # integers are computed in float64, as scipy.special does; other non-floats are refused
    np.testing.assert_allclose(xentfast.softmax(np.arange(2)), [1 / (1 + np.e), np.e / (1 + np.e)])
    assert xentfast.softmax(np.arange(2)).dtype == np.float64
    for bad in (np.zeros(3, np.complex64), np.array(["a", "b"]), np.array([None, 1.0])):
        with pytest.raises(TypeError, match="x"):
            xentfast.softmax(bad)
        with pytest.raises(TypeError, match="x"):
            xentfast.logsumexp(bad)
    with pytest.raises(ValueError, match="axis"):
        xentfast.log_softmax(X, axis=3)
    with pytest.raises(ValueError, match="axis"):
        xentfast.logsumexp(X, axis=(0, 0))
    with pytest.raises(TypeError, match="axis"):
        xentfast.logsumexp(X, axis="0")


def test_errors_leave_out_untouched():
    out = np.full_like(X, 3.0)
    with pytest.raises(ValueError):
        xentfast.cross_entropy_and_grad(X, np.array([0, 1, 2, 9]), out=out)
    assert np.all(out == 3.0)
    work = np.ones_like(X)
    with pytest.raises(ValueError):
        xentfast.cross_entropy_and_grad(work, np.array([0, 1, 2, 9]), out=work)
    assert np.all(work == 1.0)


# The target scan runs in fixed chunks of 65536 targets, in parallel: the
# first bad target is still the one reported, and the mean's denominator is
# the same for any thread count.
@pytest.mark.parametrize("bad_at", [0, 65535, 65536, 2 * 65536 + 7, 3 * 65536 + 4])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_first_bad_target_is_reported_across_scan_chunks(bad_at, threads):
    n = 3 * 65536 + 5
    x = np.zeros((n, 3), np.float32)
    t = np.ones(n, np.int64)
    t[bad_at] = 3
    t[-1] = 7  # a later bad target must not be the one named
    if bad_at == n - 1:
        t[-1] = 3
    with pytest.raises(ValueError, match=rf"target\[{bad_at}\] = 3 is not a class index"):
        xentfast.cross_entropy(x, t, num_threads=threads)
    with pytest.raises(ValueError, match=rf"target\[{bad_at}\] = 3 is not a class index"):
        xentfast.cross_entropy(x, t, weight=np.ones(3), num_threads=threads)


def test_mean_denominator_is_thread_independent_across_scan_chunks():
    rng = np.random.default_rng(3)
    n = 3 * 65536 + 5
    x = rng.standard_normal((n, 3)).astype(np.float32)
    t = rng.integers(0, 3, n)
    t[rng.random(n) < 0.1] = -100
    kw = {"weight": rng.random(3) + 0.5, "sample_weight": rng.random(n)}
    losses = {th: xentfast.cross_entropy(x, t, num_threads=th, **kw) for th in (1, 2, 3)}
    assert losses[1] == losses[2] == losses[3]
    want = reference.cross_entropy(x.astype(np.float64), t, **kw)
    np.testing.assert_allclose(losses[1], want, rtol=1e-6)


# --------------------------------------------------------------------------------------
# row and class weights

def _weighted_calls(module):
    """Every function of `module` that takes sample_weight and weight, as
    f(logits, target, **kw)."""
    return [module.cross_entropy, module.cross_entropy_and_grad, module.evaluate,
            module.perplexity]


@pytest.mark.parametrize("module", [xentfast, reference], ids=["xentfast", "reference"])
@pytest.mark.parametrize("bad", [-1.0, -1e-30, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("target", [T, np.full((4, 5), 0.2)], ids=["index", "probabilities"])
def test_sample_weight_must_be_finite_and_non_negative(module, bad, target):
    s = np.ones(4)
    s[2] = bad
    for fn in _weighted_calls(module):
        for dtype in (np.float32, np.float64):
            with pytest.raises(ValueError, match="sample_weight"):
                fn(X, target, sample_weight=s.astype(dtype))
    if module is xentfast:  # the message says which row, in the loss's shape
        with pytest.raises(ValueError, match=r"sample_weight\[1, 0\] = "):
            xentfast.cross_entropy(np.zeros((2, 3, 5)), np.zeros((2, 3), int),
                                   sample_weight=np.array([[1.0, 1, 1], [bad, 1, 1]]))


@pytest.mark.parametrize("module", [xentfast, reference], ids=["xentfast", "reference"])
def test_zero_sample_weights_are_fine_and_all_zero_mean_is_nan(module):
    s = np.array([0.0, -0.0, 2.0, 0.0])
    x = np.arange(20, dtype=np.float64).reshape(4, 5) % 3
    assert module.cross_entropy(x, T, sample_weight=s) == pytest.approx(
        module.cross_entropy(x[2:3], T[2:3]))
    zero = np.zeros(4)
    assert np.isnan(module.cross_entropy(x, T, sample_weight=zero))  # 0/0: an empty mean
    assert module.cross_entropy(x, T, sample_weight=zero, reduction="sum") == 0.0


@pytest.mark.parametrize("module", [xentfast, reference], ids=["xentfast", "reference"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_class_weight_must_be_finite(module, bad):
    w = np.ones(5)
    w[4] = bad  # a class no row targets: PyTorch would not even notice it
    for fn in _weighted_calls(module):
        with pytest.raises(ValueError, match="weight"):
            fn(X, T, weight=w)
    if module is xentfast:
        with pytest.raises(ValueError, match=r"weight\[4\] = "):
            xentfast.cross_entropy(X, T, weight=w)
        with pytest.raises(ValueError, match="weight"):  # finite float64, inf as float32
            xentfast.cross_entropy(X, T, weight=np.array([1, 1, 1, 1, 1e39]))


@pytest.mark.parametrize("module", [xentfast, reference], ids=["xentfast", "reference"])
def test_negative_class_weight_is_accepted_as_in_pytorch(module):
    # torch.nn.functional.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]),
    # weight=torch.tensor([-1., 2, 3])) is log 3 (reduction="none": [-log 3, 2 log 3])
    x = np.zeros((2, 3))
    t = np.array([0, 1])
    w = np.array([-1.0, 2.0, 3.0])
    np.testing.assert_allclose(module.cross_entropy(x, t, weight=w, reduction="none"),
                               [-np.log(3), 2 * np.log(3)], rtol=1e-7)
    assert module.cross_entropy(x, t, weight=w) == pytest.approx(np.log(3), rel=1e-7)


def test_negative_class_weight_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 4))
    t = rng.integers(0, 4, 6)
    w = np.array([-0.5, 2.0, 1.0, -1.5])
    for eps in (0.0, 0.2):
        want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t),
                                                 weight=torch.tensor(w), label_smoothing=eps)
        assert xentfast.cross_entropy(x, t, weight=w, label_smoothing=eps) == pytest.approx(
            float(want), rel=1e-9)
