"""Typical xentfast calls, checked twice by tests/test_typing.py: by ``mypy --strict``
(the types the stubs promise, via assert_type) and by running this file (the values
really have those types)."""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

import xentfast

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:
    def assert_type(value, _type):
        return value

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
Floats = NDArray[np.floating[Any]]


def training_step(w: F32, x: F32, y: NDArray[np.int64], grad_buf: F32, lr: float) -> float:
    """One step of softmax regression: the loss, and the weights updated in place."""
    logits: F32 = x @ w
    loss, dlogits = xentfast.cross_entropy_and_grad(logits, y, out=grad_buf)
    assert_type(loss, float)
    assert_type(dlogits, F32)
    w -= lr * (x.T @ dlogits)
    return loss


def main() -> None:
    rng = np.random.default_rng(0)
    logits: F32 = rng.standard_normal((8, 5)).astype(np.float32)
    target = rng.integers(0, 5, 8)

    # reductions: a float, or the per-row losses in the logits' dtype
    mean = xentfast.cross_entropy(logits, target)
    assert_type(mean, float)
    total = xentfast.cross_entropy(logits, target, reduction="sum", label_smoothing=0.1,
                                   z_loss=1e-4, softcap=30.0, temperature=1.0)
    assert_type(total, float)
    rows = xentfast.cross_entropy(logits, target, reduction="none", weight=np.ones(5))
    assert_type(rows, F32)
    assert rows.dtype == np.float32
    loss, z_part = xentfast.cross_entropy(logits, target, z_loss=1e-3, return_z_loss=True)
    assert_type(z_part, float)
    assert isinstance(mean, float) and isinstance(total, float) and isinstance(z_part, float)

    # gradients: the logits' dtype; float64 in, float64 out
    loss, grad = xentfast.cross_entropy_and_grad(logits.astype(np.float64), target)
    assert_type(grad, F64)
    assert grad.dtype == np.float64
    rows, grad32 = xentfast.cross_entropy_and_grad(logits, target, reduction="none",
                                                   grad_output=np.full(8, 0.5))
    assert_type(rows, F32)
    loss, z_part, grad32 = xentfast.cross_entropy_and_grad(
        logits, target, z_loss=1e-3, return_z_loss=True, out=np.empty_like(logits))
    assert_type(grad32, F32)

    # a reduction chosen at run time: the caller narrows the union
    reduction: str = "mean"
    anything = xentfast.cross_entropy(logits, target, reduction=reduction)
    if isinstance(anything, float):
        print(f"loss {anything:.4f}")

    w = np.zeros((3, 5), dtype=np.float32)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    training_step(w, x, target, np.empty((8, 5), dtype=np.float32), 0.1)

    # evaluation
    ev = xentfast.evaluate(logits, target, ignore_index=-100)
    assert_type(ev, xentfast.Evaluation)
    accuracy: float = ev.accuracy
    bits: float = ev.bits_per_token
    predicted: NDArray[np.int64] = ev.argmax
    row_losses: NDArray[np.float64] = ev.loss  # float64 whatever the logits' dtype
    assert row_losses.dtype == np.float64
    summary: str = repr(ev)
    assert summary.startswith("Evaluation(shape=(8,)")
    assert isinstance(accuracy, float) and isinstance(bits, float) and predicted.shape == (8,)
    ppl = xentfast.perplexity(logits, target, temperature=2.0)
    assert_type(ppl, float)

    # building blocks
    probs = xentfast.softmax(logits, axis=1)
    assert_type(probs, F32)
    logp = xentfast.log_softmax([[0.0, 1.0]])
    assert_type(logp, Floats)
    joint = xentfast.softmax(logits, axis=None)  # over every element, as SciPy
    assert_type(joint, F32)
    assert abs(float(joint.sum()) - 1.0) < 1e-5
    logp_joint = xentfast.log_softmax(logits, axis=(0, 1))
    assert_type(logp_joint, F32)
    lse_all = xentfast.logsumexp(logits)
    assert_type(lse_all, np.float32)
    assert isinstance(lse_all, np.float32)
    lse_rows = xentfast.logsumexp(logits, axis=1)
    assert isinstance(lse_rows, np.ndarray)

    # element-wise losses
    p = rng.uniform(size=(4, 3))
    bce = xentfast.binary_cross_entropy_with_logits(p, (p > 0.5).astype(np.float64),
                                                    pos_weight=np.ones(3))
    assert_type(bce, float)
    bce_rows, bce_grad = xentfast.binary_cross_entropy_with_logits_and_grad(
        p, (p > 0.5).astype(np.float64), reduction="none")
    assert_type(bce_grad, F64)
    mse, mse_grad = xentfast.mean_squared_error_and_grad(
        np.array([210000.0, 240000.0, 310000.0], dtype=np.float64),
        np.array([200000.0, 250000.0, 300000.0], dtype=np.float64))
    assert_type(mse, float)
    assert mse == 1e8

    # configuration
    name: str = xentfast.backend()
    version: str = xentfast.__version__
    buffer = io.StringIO()
    xentfast.show_config(file=buffer)
    assert name in buffer.getvalue() and version in buffer.getvalue()


if __name__ == "__main__":
    main()
