"""linear_cross_entropy(_and_grad): the fused LM-head loss against the float64
oracle, PyTorch, finite differences; chunking, ignored rows, accumulation,
layouts and every bad input."""
import tracemalloc

import numpy as np
import pytest

import xentfast
from xentfast import _core, _linear, reference

F32_LOSS_RTOL = 2e-6
F32_GRAD_TOL = 2e-6  # relative to the largest entry of the gradient
F64_TOL = 1e-11

OPTION_SETS = {
    "plain": {},
    "class_weight": {"weight": "w"},
    "sample_weight": {"sample_weight": "s"},
    "smoothing": {"label_smoothing": 0.1},
    "z_loss": {"z_loss": 1e-3},
    "softcap": {"softcap": 4.0},
    "temperature": {"temperature": 0.7},
    "everything": {"weight": "w", "sample_weight": "s", "label_smoothing": 0.05,
                   "z_loss": 1e-4, "softcap": 6.0, "temperature": 1.3},
}


def make(rng, n, d, v, dtype=np.float32, ignore_frac=0.25, lead=None):
    lead = (n,) if lead is None else lead
    hidden = rng.standard_normal(lead + (d,)).astype(dtype)
    w = (rng.standard_normal((v, d)) / np.sqrt(d) * 2).astype(dtype)
    bias = (rng.standard_normal(v) * 0.5).astype(dtype)
    target = rng.integers(0, v, size=lead)
    if ignore_frac:
        target[rng.random(lead) < ignore_frac] = -100
    return hidden, w, bias, target


def resolve(options, rng, v, lead):
    out = dict(options)
    if out.get("weight") == "w":
        out["weight"] = rng.uniform(0.2, 2.0, v)
    if out.get("sample_weight") == "s":
        out["sample_weight"] = rng.uniform(0.0, 3.0, lead)
    return out


def assert_grads(actual, expected, dtype):
    for a, e in zip(actual, expected):
        if e is None:
            assert a is None
            continue
        assert a.dtype == dtype
        e = np.asarray(e)
        assert a.shape == e.shape
        tol = F32_GRAD_TOL if dtype == np.float32 else F64_TOL
        scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
        np.testing.assert_allclose(a, e, rtol=0, atol=tol * scale)


def assert_loss(actual, expected, dtype):
    tol = F32_LOSS_RTOL if dtype == np.float32 else F64_TOL
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tol, atol=tol,
                               equal_nan=True)


# --------------------------------------------------------------------------
# against the oracle


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", list(OPTION_SETS))
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_oracle(rng, dtype, reduction, options, with_bias):
    # 1600 rows, about 1200 counted, in chunks of one block (512 rows for so few): three
    # chunks, the last partial
    n, d, v = 1600, 24, 67
    hidden, w, bias, target = make(rng, n, d, v, dtype)
    kw = resolve(OPTION_SETS[options], rng, v, (n,))
    kw["reduction"] = reduction
    if with_bias:
        kw["linear_bias"] = bias
    grad_output = rng.uniform(0.5, 2.0, n) if reduction == "none" else 1.7
    expected = reference.linear_cross_entropy_and_grad(hidden, w, target, grad_output=grad_output,
                                                       **kw)
    got = xentfast.linear_cross_entropy_and_grad(hidden, w, target, grad_output=grad_output,
                                                 chunk_size=512, **kw)
    assert_loss(got[0], expected[0], dtype)
    assert_grads(got[1:], expected[1:], dtype)
    loss = xentfast.linear_cross_entropy(hidden, w, target, chunk_size=512, **kw)
    assert_loss(loss, reference.linear_cross_entropy(hidden, w, target, **kw), dtype)
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == (n,)
        assert np.all(loss[target == -100] == 0)
    else:
        assert isinstance(loss, float)
        # the loss is the same number with or without the gradients
        assert loss == got[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_hidden(rng, dtype):
    """(B, T, D) hidden states and (B, T) targets, as a language model has them."""
    hidden, w, bias, target = make(rng, 0, 16, 40, dtype, lead=(3, 50))
    expected = reference.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias,
                                                       reduction="none")
    got = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias,
                                                 reduction="none")
    assert got[0].shape == (3, 50) and got[1].shape == (3, 50, 16)
    assert_loss(got[0], expected[0], dtype)
    assert_grads(got[1:], expected[1:], dtype)


def test_matches_cross_entropy_on_materialised_logits(rng):
    """The loss is xentfast.cross_entropy of the logits, to float32 rounding of the GEMM."""
    hidden, w, bias, target = make(rng, 700, 32, 300)
    logits = hidden @ w.T + bias
    loss, grad = xentfast.cross_entropy_and_grad(logits, target, label_smoothing=0.1)
    got = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias,
                                                 label_smoothing=0.1)
    assert got[0] == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(got[2], grad.T @ hidden, atol=1e-5)
    np.testing.assert_allclose(got[3], grad.sum(0), atol=1e-6)


# --------------------------------------------------------------------------
# against PyTorch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [{}, {"weight": "w"}, {"label_smoothing": 0.2},
                                     {"weight": "w", "label_smoothing": 0.1}])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_torch(rng, dtype, reduction, options, with_bias):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, d, v = 600, 20, 90
    hidden, w, bias, target = make(rng, n, d, v, dtype)
    kw = resolve(options, rng, v, (n,))
    th = torch.tensor(hidden, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(bias, requires_grad=True) if with_bias else None
    tkw = dict(reduction=reduction, label_smoothing=kw.get("label_smoothing", 0.0),
               weight=None if "weight" not in kw else torch.tensor(kw["weight"].astype(dtype)))
    upstream = rng.uniform(0.5, 2.0, n).astype(dtype) if reduction == "none" else None
    for torch_loss in (
            lambda: F.linear_cross_entropy(th, tw, torch.tensor(target), linear_bias=tb,
                                           ignore_index=-100, **tkw),
            lambda: F.cross_entropy(F.linear(th, tw, tb), torch.tensor(target), **tkw)):
        th.grad = tw.grad = None
        if tb is not None:
            tb.grad = None
        loss_t = torch_loss()
        loss_t.backward(None if upstream is None else torch.tensor(upstream))
        got = xentfast.linear_cross_entropy_and_grad(
            hidden, w, target, linear_bias=bias if with_bias else None, reduction=reduction,
            grad_output=upstream, **kw)
        tol = 2e-5 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(got[0], loss_t.detach().numpy(), rtol=tol, atol=tol)
        expected = (th.grad, tw.grad, None if tb is None else tb.grad)
        for a, e in zip(got[1:], expected):
            if e is None:
                assert a is None
                continue
            e = e.numpy()
            np.testing.assert_allclose(a, e, rtol=0, atol=tol * max(1.0, np.abs(e).max()))


# --------------------------------------------------------------------------
# finite differences


@pytest.mark.parametrize("options", ["plain", "everything"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_finite_differences(rng, options, reduction):
    n, d, v = 9, 5, 7
    hidden, w, bias, target = make(rng, n, d, v, np.float64)
    target[0] = -100
    kw = resolve(OPTION_SETS[options], rng, v, (n,))
    kw.update(reduction=reduction, linear_bias=bias)
    upstream = rng.uniform(0.5, 2.0, n) if reduction == "none" else 1.0

    def f(h, ww, b):
        loss = xentfast.linear_cross_entropy(h, ww, target, **{**kw, "linear_bias": b})
        return float(np.sum(np.asarray(loss) * upstream))

    _, gh, gw, gb = xentfast.linear_cross_entropy_and_grad(
        hidden, w, target, grad_output=upstream if reduction == "none" else None, **kw)
    step = 1e-6
    for array, grad in ((hidden, gh), (w, gw), (bias, gb)):
        for flat in rng.choice(array.size, size=4, replace=False):
            index = np.unravel_index(flat, array.shape)
            plus, minus = array.copy(), array.copy()
            plus[index] += step
            minus[index] -= step
            args = [hidden, w, bias]
            which = [a is array for a in args].index(True)
            args_p, args_m = list(args), list(args)
            args_p[which], args_m[which] = plus, minus
            numeric = (f(*args_p) - f(*args_m)) / (2 * step)
            assert grad[index] == pytest.approx(numeric, rel=1e-5, abs=1e-7)
    assert np.all(gh[0] == 0)


# --------------------------------------------------------------------------
# chunking and threads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_bitwise_for_any_chunk_size_and_thread_count(rng, dtype, reduction):
    n, d, v = 1700, 48, 333
    hidden, w, bias, target = make(rng, n, d, v, dtype)
    kw = dict(linear_bias=bias, reduction=reduction, label_smoothing=0.1, z_loss=1e-4)
    results = []
    for chunk in (None, 1, 100, 512, 513, 1024, 1536, 5000):
        for threads in (1, 2, 3):
            loss = xentfast.linear_cross_entropy(hidden, w, target, chunk_size=chunk,
                                                 num_threads=threads, **kw)
            loss_g = xentfast.linear_cross_entropy_and_grad(hidden, w, target, chunk_size=chunk,
                                                            num_threads=threads, **kw)[0]
            results += [np.asarray(loss), np.asarray(loss_g)]
    for r in results[1:]:
        assert r.tobytes() == results[0].tobytes()


def test_chunk_size_is_whole_blocks(rng):
    n = 2 * _linear.BLOCK_ROWS + 500
    hidden, w, bias, target = make(rng, n, 4, 10, ignore_frac=0)
    problem = _linear._LinearProblem(
        hidden, w, target, linear_bias=None, weight=None, sample_weight=None, ignore_index=-100,
        reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None, temperature=1.0,
        chunk_size=_linear.BLOCK_ROWS + 1, num_threads=None)
    assert problem.chunk == 2 * _linear.BLOCK_ROWS
    # automatic: the budget over V*itemsize in whole blocks, at most the counted rows
    auto = _linear._LinearProblem(
        hidden, w, target, linear_bias=None, weight=None, sample_weight=None, ignore_index=-100,
        reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None, temperature=1.0,
        chunk_size=None, num_threads=None)
    assert auto.chunk == n


def test_block_rows_depend_on_the_problem_only():
    full, half = _linear.BLOCK_ROWS, _linear.BLOCK_ROWS // 2
    largest = _linear.MAX_BLOCK_BYTES // (full * 4)  # float32 classes that still get full blocks
    rows = 10 * full
    assert _linear.block_rows(10, np.float32, rows) == full
    assert _linear.block_rows(largest, np.float32, rows) == full
    assert _linear.block_rows(largest + 1, np.float32, rows) == half
    assert _linear.block_rows(largest, np.float64, rows) == half
    # a batch of fewer than two full blocks gets half blocks, so it can still be chunked
    assert _linear.block_rows(10, np.float32, 2 * full) == full
    assert _linear.block_rows(10, np.float32, 2 * full - 1) == half
    # the automatic chunk is whole blocks: one block when a block passes the budget
    assert _linear.auto_chunk_rows(largest + 1, np.float32, rows) == half
    assert _linear.auto_chunk_rows(10, np.float32, rows) % full == 0


def test_never_allocates_n_by_v(rng):
    """Peak traced memory stays far below the N×V logits (8192 × 4096 float32: 128 MiB)."""
    n, d, v = 8192, 8, 4096
    hidden, w, bias, target = make(rng, n, d, v, ignore_frac=0.5)
    out = (np.empty_like(hidden), np.empty_like(w), None)
    tracemalloc.start()
    try:
        xentfast.linear_cross_entropy_and_grad(hidden, w, target, chunk_size=512, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    logits_bytes = n * v * 4
    assert peak < logits_bytes / 4, (peak, logits_bytes)


def test_without_cblas_same_results(rng, monkeypatch):
    """The matmul + add fallback (no CBLAS entry in NumPy's BLAS) gives the same
    gradients, accumulation included."""
    hidden, w, bias, target = make(rng, 1800, 24, 3000)
    kw = dict(linear_bias=bias, chunk_size=512)
    fast = xentfast.linear_cross_entropy_and_grad(hidden, w, target, **kw)
    acc = (None, fast[2].copy(), fast[3].copy())
    xentfast.linear_cross_entropy_and_grad(hidden, w, target, out=acc, accumulate=True, **kw)
    monkeypatch.setattr(_linear, "_CBLAS", None)
    slow = xentfast.linear_cross_entropy_and_grad(hidden, w, target, **kw)
    assert slow[0] == fast[0]
    assert_grads(slow[1:], fast[1:], np.float32)
    acc2 = (None, fast[2].copy(), fast[3].copy())
    xentfast.linear_cross_entropy_and_grad(hidden, w, target, out=acc2, accumulate=True, **kw)
    np.testing.assert_allclose(acc2[1], acc[1], atol=1e-6)
    np.testing.assert_allclose(acc2[2], 2 * fast[3], atol=1e-6)


# --------------------------------------------------------------------------
# edge cases


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_rows_ignored(rng, reduction):
    hidden, w, bias, target = make(rng, 30, 6, 11)
    target[:] = -100
    loss, gh, gw, gb = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias,
                                                              reduction=reduction)
    expected = reference.linear_cross_entropy(hidden, w, target, linear_bias=bias,
                                              reduction=reduction)
    np.testing.assert_array_equal(loss, expected)
    if reduction == "mean":
        assert np.isnan(loss)
    assert not gh.any() and not gw.any() and not gb.any()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch(rng, reduction):
    hidden, w, bias, target = make(rng, 0, 6, 11)
    loss, gh, gw, gb = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias,
                                                              reduction=reduction)
    if reduction == "none":
        assert loss.shape == (0,)
    elif reduction == "sum":
        assert loss == 0.0
    else:
        assert np.isnan(loss)
    assert gh.shape == (0, 6) and not gw.any() and not gb.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, d, v", [(50, 7, 1), (50, 1, 9), (1, 5, 6), (2, 1, 1)])
def test_degenerate_shapes(rng, dtype, n, d, v):
    hidden, w, bias, target = make(rng, n, d, v, dtype, ignore_frac=0.2)
    for kw in ({}, {"linear_bias": bias, "z_loss": 1e-2, "label_smoothing": 0.1}):
        got = xentfast.linear_cross_entropy_and_grad(hidden, w, target, reduction="sum", **kw)
        expected = reference.linear_cross_entropy_and_grad(hidden, w, target, reduction="sum",
                                                           **kw)
        assert_loss(got[0], expected[0], dtype)
        assert_grads(got[1:], expected[1:], dtype)


def test_single_row_1d_hidden(rng):
    hidden, w, bias, _ = make(rng, 1, 8, 12)
    h = hidden[0]
    loss, gh, gw, gb = xentfast.linear_cross_entropy_and_grad(h, w, np.array(3))
    expected = reference.linear_cross_entropy_and_grad(h, w, np.array(3))
    assert gh.shape == (8,)
    assert_loss(loss, expected[0], np.float32)
    assert_grads((gh, gw), expected[1:3], np.float32)


def test_ignored_rows_cost_nothing_and_stay_isolated(rng):
    """Ignored rows' hidden states are never read: NaN there changes nothing,
    and their grad_hidden rows are exactly 0."""
    hidden, w, bias, target = make(rng, 800, 16, 50, ignore_frac=0.4)
    clean = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias)
    poisoned = hidden.copy()
    poisoned[target == -100] = np.nan
    dirty = xentfast.linear_cross_entropy_and_grad(poisoned, w, target, linear_bias=bias)
    assert dirty[0] == clean[0]
    for a, b in zip(dirty[1:], clean[1:]):
        np.testing.assert_array_equal(a, b)
    assert np.all(dirty[1][target == -100] == 0)
    assert np.all(np.signbit(dirty[1][target == -100]) == 0)  # +0, not -0 or garbage


@pytest.mark.parametrize("layout", ["transposed", "strided", "negative", "every_other_column"])
def test_weight_layouts(rng, layout):
    """PyTorch hands W over as it is: transposed, sliced, reversed views."""
    hidden, w, bias, target = make(rng, 300, 12, 40)
    if layout == "transposed":
        view = np.asfortranarray(w)
    elif layout == "strided":
        big = np.zeros((40, 30), np.float32)
        big[:, 5:17] = w
        view = big[:, 5:17]
    elif layout == "negative":
        view = w[::-1].copy()[::-1]
    else:
        big = np.zeros((40, 24), np.float32)
        big[:, ::2] = w
        view = big[:, ::2]
    np.testing.assert_array_equal(view, w)
    base = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias)
    got = xentfast.linear_cross_entropy_and_grad(hidden, view, target, linear_bias=bias)
    assert got[0] == pytest.approx(base[0], rel=1e-6)
    assert_grads(got[1:], base[1:], np.float32)


def test_strided_hidden_and_bias(rng):
    hidden, w, bias, target = make(rng, 200, 10, 30)
    big = np.zeros((400, 20), np.float32)
    big[::2, ::2] = hidden
    bias_big = np.zeros(60, np.float32)
    bias_big[::2] = bias
    got = xentfast.linear_cross_entropy_and_grad(big[::2, ::2], w, target, linear_bias=bias_big[::2])
    base = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias)
    assert got[0] == pytest.approx(base[0], rel=1e-6)
    assert_grads(got[1:], base[1:], np.float32)


def test_out_buffers_and_accumulation(rng):
    hidden, w, bias, target = make(rng, 1100, 16, 70)
    gh = np.full_like(hidden, 7.0)
    gw = np.full_like(w, 7.0)
    gb = np.full_like(bias, 7.0)
    loss, a, b, c = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias,
                                                           out=(gh, gw, gb))
    assert a is gh and b is gw and c is gb
    expected = reference.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias)
    assert_grads((gh, gw, gb), expected[1:], np.float32)
    # two micro-batches accumulated == the sum of their gradients
    hidden2, _, _, target2 = make(rng, 500, 16, 70)
    _, _, gw2, gb2 = xentfast.linear_cross_entropy_and_grad(hidden2, w, target2, linear_bias=bias)
    acc = (None, gw.copy(), gb.copy())
    _, gh_acc, gw_acc, gb_acc = xentfast.linear_cross_entropy_and_grad(
        hidden2, w, target2, linear_bias=bias, out=acc, accumulate=True)
    assert gw_acc is acc[1] and gb_acc is acc[2]
    np.testing.assert_allclose(gw_acc, gw + gw2, atol=1e-6)
    np.testing.assert_allclose(gb_acc, gb + gb2, atol=1e-6)
    # accumulating nothing (all ignored) leaves the buffers as they were
    before = acc[1].copy()
    target2[:] = -100
    xentfast.linear_cross_entropy_and_grad(hidden2, w, target2, linear_bias=bias, out=acc,
                                           accumulate=True, reduction="sum")
    np.testing.assert_array_equal(acc[1], before)


def test_out_with_odd_layouts(rng):
    hidden, w, bias, target = make(rng, 300, 8, 20)
    base = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias)
    gh = np.zeros((8, 300), np.float32).T   # transposed grad_hidden
    gw = np.zeros((8, 20), np.float32).T    # transposed grad_linear_weight
    gb_big = np.zeros(40, np.float32)
    got = xentfast.linear_cross_entropy_and_grad(hidden, w, target, linear_bias=bias,
                                                 out=(gh, gw, gb_big[::2]))
    assert_grads(got[1:], base[1:], np.float32)
    assert_grads((gh, gw, gb_big[::2]), base[1:], np.float32)


# --------------------------------------------------------------------------
# bad input: TypeError/ValueError naming the argument, before any work


def _bad_calls(hidden, w, bias, target):
    f32, f64 = np.float32, np.float64
    return [
        (TypeError, "hidden", dict(hidden=hidden.astype(np.int32))),
        (ValueError, "hidden", dict(hidden=np.float32(1.0))),
        (ValueError, "features", dict(hidden=hidden[:, :-1])),
        (TypeError, "linear_weight", dict(w=w.astype(f64))),
        (ValueError, "linear_weight", dict(w=w[0])),
        (ValueError, "linear_weight", dict(w=w[:0])),
        (ValueError, "linear_bias", dict(linear_bias=bias[:-1])),
        (TypeError, "linear_bias", dict(linear_bias=bias.astype(f64))),
        (ValueError, "weight", dict(weight=np.ones(w.shape[0] + 1))),
        (ValueError, "sample_weight", dict(sample_weight=np.ones(3))),
        (ValueError, "chunk_size", dict(chunk_size=0)),
        (ValueError, "chunk_size", dict(chunk_size=-5)),
        (TypeError, "chunk_size", dict(chunk_size=2.5)),
        (ValueError, "target", dict(target=np.where(target == -100, w.shape[0], target))),
        (ValueError, "target", dict(target=np.full_like(target, -1))),
        (TypeError, "target", dict(target=target.astype(f32))),
        (ValueError, "target", dict(target=target[:-1])),
        (ValueError, "reduction", dict(reduction="avg")),
        (ValueError, "label_smoothing", dict(label_smoothing=1.5)),
        (ValueError, "z_loss", dict(z_loss=-1.0)),
        (ValueError, "softcap", dict(softcap=0.0)),
        (ValueError, "temperature", dict(temperature=0.0)),
        (ValueError, "num_threads", dict(num_threads=0)),
        (TypeError, "ignore_index", dict(ignore_index=1.5)),
    ]


def test_bad_input_named_before_any_work(rng):
    hidden, w, bias, target = make(rng, 20, 6, 9)
    for error, name, change in _bad_calls(hidden, w, bias, target):
        args = dict(hidden=hidden, w=w, target=target, linear_bias=bias)
        args.update(change)
        h, ww, t = args.pop("hidden"), args.pop("w"), args.pop("target")
        out = (np.full_like(hidden, 5.0), np.full_like(w, 5.0), np.full_like(bias, 5.0))
        with pytest.raises(error, match=name):
            xentfast.linear_cross_entropy(h, ww, t, **args)
        if "linear_bias" in args and args["linear_bias"].shape != bias.shape:
            out = (out[0], out[1], None)
        with pytest.raises(error, match=name):
            xentfast.linear_cross_entropy_and_grad(h, ww, t, out=out, accumulate=True, **args)
        for buf in out:
            assert buf is None or np.all(buf == 5.0), name


def test_bad_out_and_grad_output(rng):
    hidden, w, bias, target = make(rng, 20, 6, 9)
    call = xentfast.linear_cross_entropy_and_grad
    with pytest.raises(ValueError, match=r"out\[0\]"):
        call(hidden, w, target, out=(np.empty((20, 5), np.float32), None, None))
    with pytest.raises(ValueError, match=r"out\[1\]"):
        call(hidden, w, target, out=(None, np.empty((9, 6), np.float64), None))
    with pytest.raises(ValueError, match=r"out\[2\]"):
        call(hidden, w, target, out=(None, None, np.empty(9, np.float32)))
    with pytest.raises(ValueError, match=r"out\[1\]"):
        ro = np.empty_like(w)
        ro.flags.writeable = False
        call(hidden, w, target, out=(None, ro, None))
    with pytest.raises(TypeError, match="out"):
        call(hidden, w, target, out=[np.empty_like(hidden)])
    with pytest.raises(ValueError, match="accumulate"):
        call(hidden, w, target, accumulate=True)
    with pytest.raises(ValueError, match="accumulate"):
        call(hidden, w, target, linear_bias=bias, accumulate=True,
             out=(None, np.zeros_like(w), None))
    with pytest.raises(ValueError, match="overlaps hidden"):
        call(hidden, w, target, out=(hidden, None, None))
    with pytest.raises(ValueError, match="overlaps linear_weight"):
        call(hidden, w, target, out=(None, w, None))
    with pytest.raises(ValueError, match=r"out\[1\].*overlaps out\[0\]|overlaps"):
        shared = np.empty(20 * 6 + 9 * 6, np.float32)
        call(hidden, w, target, out=(shared[:120].reshape(20, 6), shared[100:154].reshape(9, 6),
                                     None))
    with pytest.raises(ValueError, match="grad_output"):
        call(hidden, w, target, grad_output=np.ones(3))
    with pytest.raises(ValueError, match="grad_output"):
        call(hidden, w, target, reduction="none", grad_output=np.ones(3))
    with pytest.raises(TypeError, match="accumulate"):
        call(hidden, w, target, accumulate="yes")


def test_docstring_examples():
    import doctest
    result = doctest.testmod(_linear, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0


def test_kernel_threads_default_to_one_while_the_blas_runs_several(rng, monkeypatch):
    hidden, w, bias, target = make(rng, 50, 4, 10)

    def problem(num_threads):
        return _linear._LinearProblem(
            hidden, w, target, linear_bias=None, weight=None, sample_weight=None,
            ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None,
            temperature=1.0, chunk_size=None, num_threads=num_threads)

    monkeypatch.setattr(_linear, "_BLAS_THREADS", lambda: 4)
    assert problem(None).threads == 1
    assert problem(3).threads == 3  # an explicit count is kept
    monkeypatch.setattr(_linear, "_BLAS_THREADS", lambda: 1)
    assert problem(None).threads == _core.max_threads()
    monkeypatch.setattr(_linear, "_BLAS_THREADS", None)  # NumPy's BLAS is not OpenBLAS
    assert problem(None).threads == _core.max_threads()
