"""A gradient row written while the next row is read.

The plain float32 gradient of a row waits in scratch and leaves, a vector at a
time, during the next row's pass (the drain, include/xentfast/rows.h), so that
the memory system reads and writes at once.  Nothing about a row may depend on
its neighbours: each row of a batch must equal, bit for bit, the same row
computed alone (where nothing is deferred), and the oracle.  The rows here
reach every branch of the drain: a wide row cut into segments with a ragged
tail, a segment that is all -inf (written without exps), a row with no
distribution, an ignored row between two deferred ones, NaN and +inf logits,
targets in the first and the last segment; with the general row's options
(smoothing, probability targets, temperature) and class weights; into a
separate buffer (with and without streaming stores) and in place; on one and
two threads; on every backend.
"""
import numpy as np
import pytest

import xentfast
from xentfast import _core, reference

from helpers import assert_grad_close

C = 5000  # three segments of the row pass (2048, 2048, 904): a ragged tail
STREAMED_ROWS = _core.STREAMING_BYTES // (C * 4) + 20  # enough for streaming stores


def adversarial_batch(n_rows, rng):
    x = rng.standard_normal((n_rows, C)).astype(np.float32) * 4
    t = rng.integers(0, C, n_rows)
    x[1, :2048] = -np.inf          # a masked segment: its gradient is written without exps
    t[1] = 3000
    x[2, :] = -np.inf              # no distribution: loss and gradient NaN
    t[3] = -100                    # ignored, between deferred rows
    x[4, 77] = np.nan
    x[5, 4999] = np.inf
    x[6, :] = 80.0                 # equal large logits: loss log C
    t[7], t[8] = 0, C - 1          # targets in the first and in the last segment
    x[9, :4096] = -np.inf          # two masked segments, the target in the tail
    t[9] = 4500
    return x, t


# the plain rows, and the general row's options (their gradient has shift terms)
OPTIONS = {
    "plain": {},
    "smoothing": {"label_smoothing": 0.1},
    "class_weights": {"weight": np.linspace(0.5, 2.0, C, dtype=np.float32)},
    "temperature": {"temperature": 1.7},
    "probabilities": {"label_smoothing": 0.05},  # with probability targets (below)
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("where", ["buffer", "in_place"])
@pytest.mark.parametrize("n_rows", [12, STREAMED_ROWS], ids=["cached", "streamed"])
@pytest.mark.parametrize("threads", [1, 2])
def test_each_row_as_if_alone(backend, option, where, n_rows, threads):
    rng = np.random.default_rng(n_rows + threads)
    x, t = adversarial_batch(n_rows, rng)
    kwargs = OPTIONS[option]
    if option == "probabilities":
        p = rng.random((n_rows, C)).astype(np.float32)
        p[7, :] = 0
        p[7, 0] = 1  # all the mass in the first segment
        t = p / p.sum(axis=1, keepdims=True)
    logits = x.copy()
    out = logits if where == "in_place" else np.empty_like(x)
    loss, grad = xentfast.cross_entropy_and_grad(logits, t, reduction="none", out=out,
                                                 num_threads=threads, **kwargs)
    assert grad is out
    for r in list(range(12)) + [n_rows - 1]:
        alone_loss, alone_grad = xentfast.cross_entropy_and_grad(
            x[r:r + 1], t[r:r + 1], reduction="none", num_threads=1, **kwargs)
        np.testing.assert_array_equal(loss[r], alone_loss[0], err_msg=f"row {r}")
        np.testing.assert_array_equal(grad[r], alone_grad[0], err_msg=f"row {r}")
    ref_loss, ref_grad = reference.cross_entropy_and_grad(x, t, reduction="none", **kwargs)
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(ref_loss))
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(ref_grad))
    ok = ~np.isnan(ref_loss)
    np.testing.assert_allclose(loss[ok], ref_loss[ok], rtol=1e-5, atol=1e-5)
    assert_grad_close(grad[ok], ref_grad[ok])
    if option != "probabilities":
        assert np.all(grad[3] == 0) and loss[3] == 0  # the ignored row
    assert np.isnan(loss[2]) and np.all(np.isnan(grad[2]))
    if option in ("plain", "temperature"):
        np.testing.assert_allclose(loss[6], np.log(C), rtol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_batches_reach_the_deferred_plans(backend, threads):
    """The rows above run the plain plan, and with options the general one."""
    x, _ = adversarial_batch(12, np.random.default_rng(0))
    assert _core.plan_of(x, _core.MODE_GRAD, threads) == "plain"
    assert _core.plan_of(x, _core.MODE_GRAD, threads, label_smoothing=0.1) == "general"
    assert _core.plan_of(x, _core.MODE_GRAD, threads, inv_temperature=0.5) == "general"
    assert _core.plan_of(x, _core.MODE_GRAD, threads, class_weight=True) == "plain"
    assert _core.plan_of(x, _core.MODE_GRAD, threads, target_prob=True) == "general"
