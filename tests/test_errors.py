"""Bad input: a TypeError or ValueError naming the argument, before any work."""
import numpy as np
import pytest

import xentfast

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
