"""Float64 reference implementation of the xentfast API (the test oracle).

Every public function of the fast path has a twin here, written for clarity in plain
NumPy float64: no SIMD, no threads, no fusion, and no code shared with the rest of the
package, so that a bug in the fast path cannot hide in the oracle too.  The semantics
are those of ``docs/design.md`` ("Semantics"), which are PyTorch's loss semantics:

* softmax cross-entropy, per counted row ``n`` with logits ``z`` (after temperature
  ``T`` and softcap ``c``: ``z = c * tanh((x / T) / c)``), ``lse = log sum_k exp z_k``::

      l_n = (1 - eps) w[y] (lse - z[y]) + (eps / C) sum_k w[k] (lse - z[k]) + lam lse^2

  ``mean`` divides ``sum_n s_n l_n`` by ``sum_n s_n w[y_n]`` (by ``sum_n s_n`` for
  probability targets); ``none`` returns ``s_n l_n`` (0 for ignored rows).
* binary cross-entropy with logits and mean squared error, as in PyTorch.

Differences from lse are taken as ``(max - z_k) + log sum_j exp(z_j - max)`` (see
``_shift_and_log_sum``), never as ``lse - z_k``: with huge logits (3e38 in float32, 1e17
in float64) lse rounds to the max and ``lse - z_k`` loses the log-sum entirely (three
equal logits would give loss 0 instead of log 3).  The z-loss uses lse itself.

Results are float64: a Python float for ``reduction="mean"``/``"sum"``, a float64 array
for ``"none"`` and for gradients.  Validation is deliberately minimal: this is an oracle
for tests, not a user-facing API.  NaN and infinities are computed, not reported, so all
floating-point warnings are silenced.
"""

import functools
import math
import types

import numpy as np

__all__ = [
    "logsumexp",
    "log_softmax",
    "softmax",
    "cross_entropy",
    "cross_entropy_and_grad",
    "cross_entropy_z_loss",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_and_grad",
    "mean_squared_error",
    "mean_squared_error_and_grad",
    "evaluate",
    "perplexity",
    "linear_cross_entropy",
    "linear_cross_entropy_and_grad",
]

_REDUCTIONS = ("mean", "sum", "none")


def _quiet(func):
    """Run `func` with floating-point warnings off: NaN and inf are results here."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)

    return wrapper


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )


def _divide(numerator, denominator):
    """``numerator / denominator`` as a Python float, IEEE style (0/0 -> nan)."""
    return float(np.float64(numerator) / np.float64(denominator))


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


@_quiet
def logsumexp(x, axis=None, keepdims=False):
    """Stable ``log(sum(exp(x)))`` over `axis`, in float64.

    Parameters
    ----------
    x : array_like
        Input values.
    axis : None, int or tuple of ints, optional
        Axes to reduce; None reduces over all of them.
    keepdims : bool, optional
        Keep the reduced axes with length one.

    Returns
    -------
    numpy.float64 or numpy.ndarray
        All ``-inf`` (or an empty axis) gives ``-inf``; a ``+inf`` gives ``inf``;
        NaN propagates.

    Examples
    --------
    >>> float(logsumexp([0.0, 0.0]))  # log 2
    0.6931471805599453
    >>> float(logsumexp([1000.0, 1000.0]))  # no overflow
    1000.6931471805599
    """
    x = np.asarray(x, dtype=np.float64)
    axis = _scalar_axis(x, axis)
    m, log_sum = _shift_and_log_sum(x, axis)
    out = m + log_sum
    if not keepdims:
        out = out.reshape(()) if axis is None else np.squeeze(out, axis=axis)
    return out[()] if out.ndim == 0 else out


def _scalar_axis(x, axis):
    """A 0-d x is one element, which axis 0 or -1 (or a tuple of them) also names,
    as in ``scipy.special.logsumexp``: such an axis becomes None."""
    if x.ndim or axis is None:
        return axis
    axes = axis if isinstance(axis, tuple) else (axis,)
    for a in axes:
        if a not in (0, -1):
            raise np.exceptions.AxisError(a, 0)
    return None if axes else ()


def _shift_and_log_sum(x, axis):
    """``(m, log(sum(exp(x - m))))`` over `axis` (kept with length one), m the max.

    lse = m + log_sum, but a difference from lse is better taken as
    ``(m - x) - log_sum``: m - x is exact for neighbouring values and log_sum is in
    [0, log n], so a small log_sum survives next to a huge m (lse of [3e38] * 3 is
    3e38 in any float, while lse - x is log 3).
    """
    # `initial` makes an empty axis give m = -inf instead of raising.
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    finite = np.isfinite(m)
    # A non-finite max (+-inf, nan) cannot be subtracted (inf - inf = nan): shift by
    # 0 instead, and let exp/log produce -inf (all -inf), inf (an inf) or nan.
    m = np.where(finite, m, 0.0)
    e = np.exp(x - m)
    # With a finite max, the sum is 1 (one max) + rest: log1p(rest) keeps a tiny rest
    # that log(1 + rest) rounds away (the loss of a confident right answer, ~e^-64).
    # Entries equal to the max have e = 1 exactly.
    at_max = x == m
    rest = (np.sum(np.where(at_max, 0.0, e), axis=axis, keepdims=True)
            + (np.sum(at_max, axis=axis, keepdims=True) - 1.0))
    log_sum = np.where(finite, np.log1p(np.where(finite, rest, 0.0)),
                       np.log(np.sum(e, axis=axis, keepdims=True)))
    return m, log_sum


@_quiet
def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along `axis` (None, an int or a tuple), in float64.

    A slice that is all ``-inf`` gives NaN, as in PyTorch.

    Examples
    --------
    >>> np.exp(log_softmax([0.0, 0.0])).tolist()
    [0.5, 0.5]
    """
    x = np.asarray(x, dtype=np.float64)
    m, log_sum = _shift_and_log_sum(x, _scalar_axis(x, axis))
    # a +inf logit leaves no finite distribution: the whole slice is NaN (as PyTorch);
    # (x - m) - log_sum keeps log_sum next to huge logits, where x - lse loses it
    return np.where(np.isposinf(m + log_sum), np.nan, (x - m) - log_sum)


@_quiet
def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along `axis`, in float64 (``exp(log_softmax(x))``).

    Examples
    --------
    >>> softmax([0.0, np.log(3.0)]).round(12).tolist()
    [0.25, 0.75]
    """
    return np.exp(log_softmax(x, axis=axis))


# --------------------------------------------------------------------------------------
# Softmax cross-entropy
# --------------------------------------------------------------------------------------


def _ce_rows(logits, target, axis, weight, sample_weight, ignore_index,
             label_smoothing, z_loss, softcap, temperature):
    """Move the class axis last, flatten to (N, C) and compute the per-row pieces.

    The row loss is written for both target kinds as one sum over classes::

        l_n = sum_k b[n, k] (lse_n - z[n, k]) + lam lse_n^2,   b = w * q

    where q is the smoothed target distribution: for a class index y,
    q = (1 - eps) onehot(y) + eps / C (which expands to the formula of the module
    docstring); for probabilities p, q = p (1 - eps) + eps / C.
    """
    r = types.SimpleNamespace()  # everything about the call, as N rows of C classes
    x = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    r.axis = axis
    r.batch_shape = x.shape[:-1]
    n, c = math.prod(r.batch_shape), x.shape[-1]
    r.x = x = x.reshape(n, c)
    r.nan_row = np.isnan(x).any(axis=1)

    # Temperature then softcap: z = c tanh((x / T) / c), and dz/dx for the chain rule.
    u = x / temperature
    if softcap is None:
        r.z = u
        r.dz_dx = np.full_like(x, 1.0 / temperature)
    else:
        r.z = softcap * np.tanh(u / softcap)
        # d/dx [c tanh(x / (T c))] = sech^2(x / (T c)) / T   (= (1 - (z/c)^2) / T,
        # written with cosh to avoid the cancellation of 1 - tanh^2 near saturation).
        r.dz_dx = 1.0 / (np.cosh(u / softcap) ** 2 * temperature)
    # lse = m + log_sum; differences from it are taken as (z - m) - log_sum (see
    # _shift_and_log_sum): with huge logits lse - z would lose log_sum entirely.
    m, log_sum = _shift_and_log_sum(r.z, -1)
    r.lse = (m + log_sum)[:, 0]
    r.log_p = (r.z - m) - log_sum  # log softmax(z) = z - lse

    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    r.s = (np.ones(n) if sample_weight is None else
           np.broadcast_to(np.asarray(sample_weight, dtype=np.float64),
                           r.batch_shape).reshape(n))
    # The two checks of the public API that change what a result means: row weights
    # are finite and >= 0, class weights finite (negative ones allowed, as PyTorch).
    if not np.all(np.isfinite(r.s) & (r.s >= 0.0)):
        raise ValueError("sample_weight must be finite and >= 0")
    if not np.all(np.isfinite(w)):
        raise ValueError("weight must be finite")
    eps = float(label_smoothing)
    target = np.asarray(target)

    if np.issubdtype(target.dtype, np.integer):
        y = target.reshape(n).astype(np.int64)
        r.counted = y != ignore_index
        if np.any(r.counted & ((y < 0) | (y >= c))):
            raise ValueError(f"target has a class index outside [0, {c})")
        y = np.where(r.counted, y, 0)  # any valid index; ignored rows are zeroed
        q = np.full((n, c), eps / c if c else 0.0)
        q[np.arange(n), y] += 1.0 - eps
        q[~r.counted] = 0.0
        # PyTorch's mean: the row weights times the class weight of each target.
        r.denominator = np.sum(r.s[r.counted] * w[y[r.counted]])
    else:
        p = np.moveaxis(target.astype(np.float64), axis, -1).reshape(n, c)
        q = p * (1.0 - eps) + eps / c
        r.counted = np.ones(n, dtype=bool)  # no ignore_index for probabilities
        r.denominator = np.sum(r.s)

    r.b = w * q
    # A zero coefficient contributes 0 even against a masked class (0 * inf := 0).
    terms = np.where(r.b != 0.0, r.b * -r.log_p, 0.0)
    r.ce = np.sum(terms, axis=1)
    r.zl = z_loss * r.lse ** 2
    r.lam = z_loss
    # A NaN anywhere in a row, or a +inf logit (no finite distribution, as
    # PyTorch), poisons exactly that row.
    r.nan_row = r.nan_row | np.any(np.isposinf(r.z), axis=1)
    r.ce[r.nan_row] = np.nan
    r.zl[r.nan_row] = np.nan
    return r


def _ce_reduce(r, per_row, reduction):
    """Reduce per-row losses ``l_n`` with row weights and the denominator of `r`."""
    weighted = np.where(r.counted, r.s * per_row, 0.0)  # s_n l_n, 0 if ignored
    if reduction == "none":
        return weighted.reshape(r.batch_shape)
    total = float(np.sum(weighted))
    if reduction == "sum":
        return total
    return _divide(total, r.denominator)


def _row_scale(r, reduction, grad_output):
    """d(reduced loss)/d(l_n) times the upstream gradient, one number per row."""
    n = r.s.shape[0]
    if reduction == "none":
        go = (np.ones(n) if grad_output is None else
              np.broadcast_to(np.asarray(grad_output, dtype=np.float64),
                              r.batch_shape).reshape(n))
        g = go * r.s
    else:
        go = 1.0 if grad_output is None else float(grad_output)
        g = go * r.s
        if reduction == "mean":
            g = g / r.denominator
    return np.where(r.counted, g, 0.0)


def _grad_to_logits(r, grad_rows, out):
    """Reshape an (N, C) gradient back to the logits' layout; fill `out` if given."""
    grad = grad_rows.reshape(r.batch_shape + grad_rows.shape[-1:])
    grad = np.moveaxis(grad, -1, r.axis)
    if out is None:
        return np.ascontiguousarray(grad)
    np.copyto(out, grad, casting="same_kind")
    return out


@_quiet
def cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None,
                  ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                  softcap=None, temperature=1.0, num_threads=None):
    """Softmax cross-entropy of `logits` against `target`, in float64.

    Parameters
    ----------
    logits : array_like
        Scores, classes along `axis`.
    target : array_like
        Integer class indices (the logits' shape without `axis`), or floating class
        probabilities (the logits' shape).
    axis : int, optional
        The class axis.
    weight : array_like of shape (C,), optional
        Class weights ``w``: finite (negative allowed, as PyTorch), else ValueError.
    sample_weight : array_like, optional
        Row weights ``s`` (the logits' shape without `axis`): finite and >= 0, else
        ValueError.  All zero gives NaN for "mean" (0/0, as PyTorch's empty mean).
    ignore_index : int, optional
        Rows whose class index equals it are not counted (integer targets only).
    reduction : {"mean", "sum", "none"}, optional
    label_smoothing : float, optional
        ``eps``: the target becomes ``(1 - eps) target + eps / C``.
    z_loss : float, optional
        ``lam``: adds ``lam * lse**2`` per row.
    softcap : float, optional
        ``c``: logits become ``c * tanh(z / c)``.
    temperature : float, optional
        ``T``: logits are divided by it first.
    num_threads : int, optional
        Ignored (the oracle is single-threaded).

    Returns
    -------
    float or numpy.ndarray
        A float for "mean"/"sum"; per-row float64 losses for "none".

    Examples
    --------
    >>> cross_entropy([[0.0, 0.0]], [1])  # log 2
    0.6931471805599453
    """
    _check_reduction(reduction)
    r = _ce_rows(logits, target, axis, weight, sample_weight, ignore_index,
                 label_smoothing, z_loss, softcap, temperature)
    return _ce_reduce(r, r.ce + r.zl, reduction)


@_quiet
def cross_entropy_z_loss(logits, target, *, axis=-1, weight=None, sample_weight=None,
                         ignore_index=-100, reduction="mean", label_smoothing=0.0,
                         z_loss=0.0, softcap=None, temperature=1.0, num_threads=None):
    """Only the z-loss part ``lam * lse**2`` of :func:`cross_entropy`.

    Reduced exactly as the full loss (same rows, row weights and denominator), so
    ``cross_entropy(z_loss=lam) == cross_entropy(z_loss=0) + cross_entropy_z_loss(...)``.
    """
    _check_reduction(reduction)
    r = _ce_rows(logits, target, axis, weight, sample_weight, ignore_index,
                 label_smoothing, z_loss, softcap, temperature)
    return _ce_reduce(r, r.zl, reduction)


@_quiet
def cross_entropy_and_grad(logits, target, *, axis=-1, weight=None, sample_weight=None,
                           ignore_index=-100, reduction="mean", label_smoothing=0.0,
                           z_loss=0.0, softcap=None, temperature=1.0, num_threads=None,
                           grad_output=None, out=None):
    """:func:`cross_entropy` and its exact gradient with respect to `logits`.

    Takes the parameters of :func:`cross_entropy`, and:

    Parameters
    ----------
    grad_output : float or array_like, optional
        Upstream gradient: a scalar for "mean"/"sum", one value per row (the loss's
        shape) for "none".  Defaults to ones.
    out : numpy.ndarray, optional
        If given, the gradient is also written into it and `out` is returned.

    Returns
    -------
    loss : float or numpy.ndarray
    grad : numpy.ndarray
        float64 (unless `out`), the logits' shape; 0 for ignored rows.

    Examples
    --------
    >>> loss, grad = cross_entropy_and_grad([[0.0, 0.0]], [1])
    >>> grad.tolist()
    [[0.5, -0.5]]
    """
    _check_reduction(reduction)
    r = _ce_rows(logits, target, axis, weight, sample_weight, ignore_index,
                 label_smoothing, z_loss, softcap, temperature)
    loss = _ce_reduce(r, r.ce + r.zl, reduction)
    # Per row, with p = softmax(z) and dlse/dz = p:
    #   d/dz_j [sum_k b_k (lse - z_k)] = (sum_k b_k) p_j - b_j
    #   d/dz_j [lam lse^2]             = 2 lam lse p_j
    p = np.exp(r.log_p)
    a = np.sum(r.b, axis=1) + 2.0 * r.lam * r.lse
    dl_dz = p * a[:, None] - r.b
    # Chain rule: reduction (row scale) and dz/dx (temperature, softcap).
    scale = _row_scale(r, reduction, grad_output)
    grad = scale[:, None] * dl_dz * r.dz_dx
    grad[r.nan_row] = np.nan
    grad[~r.counted] = 0.0  # even if the ignored row holds NaN
    return loss, _grad_to_logits(r, grad, out)


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


@_quiet
def evaluate(logits, target, *, axis=-1, ignore_index=-100, weight=None,
             sample_weight=None, label_smoothing=0.0, z_loss=0.0, softcap=None,
             temperature=1.0, num_threads=None):
    """Per-row loss, lse, argmax, correctness and entropy, plus summary figures.

    Returns
    -------
    dict
        ``loss`` (as ``cross_entropy(reduction="none")``), ``lse`` (of the scaled
        logits z), ``argmax`` (int64), ``correct`` (bool; False for ignored rows;
        for probability targets, argmax of logits == argmax of target), ``entropy``
        (of softmax(z), nats) - all with the logits' shape without `axis`; and
        ``mean_loss`` (``reduction="mean"``), ``accuracy`` (fraction of counted rows
        that are correct, unweighted), ``perplexity`` = exp(mean_loss),
        ``bits_per_token`` = mean_loss / ln 2.
    """
    options = dict(axis=axis, weight=weight, sample_weight=sample_weight,
                   ignore_index=ignore_index, label_smoothing=label_smoothing,
                   z_loss=z_loss, softcap=softcap, temperature=temperature)
    r = _ce_rows(logits, target, **options)
    rows_loss = _ce_reduce(r, r.ce + r.zl, "none")
    mean_loss = _ce_reduce(r, r.ce + r.zl, "mean")
    # Entropy H = -sum_k p_k log p_k, with 0 log 0 = 0 for masked classes.
    logp = r.log_p
    p = np.exp(logp)
    entropy = -np.sum(np.where(p == 0.0, 0.0, p * logp), axis=1)
    entropy[r.nan_row] = np.nan
    # Argmax of the raw logits x: z is monotone in x, and x has no softcap ties.
    n = r.x.shape[0]
    pred = np.argmax(r.x, axis=1).astype(np.int64)
    target = np.asarray(target)
    if np.issubdtype(target.dtype, np.integer):
        truth = target.reshape(n)
    else:
        truth = np.argmax(np.moveaxis(target, axis, -1).reshape(n, -1), axis=1)
    correct = r.counted & (pred == truth)
    shape = r.batch_shape
    return {
        "loss": rows_loss,
        "lse": r.lse.reshape(shape),
        "argmax": pred.reshape(shape),
        "correct": correct.reshape(shape),
        "entropy": entropy.reshape(shape),
        "mean_loss": mean_loss,
        "accuracy": _divide(np.count_nonzero(correct), np.count_nonzero(r.counted)),
        "perplexity": float(np.exp(mean_loss)),
        "bits_per_token": mean_loss / math.log(2.0),
    }


@_quiet
def perplexity(logits, target, **options):
    """``exp(cross_entropy(logits, target, reduction="mean", **options))``.

    Examples
    --------
    >>> round(perplexity(np.zeros((3, 5)), [0, 1, 2]), 12)  # uniform over 5 classes
    5.0
    """
    return float(np.exp(cross_entropy(logits, target, reduction="mean", **options)))


# --------------------------------------------------------------------------------------
# Binary cross-entropy with logits
# --------------------------------------------------------------------------------------


def _softplus(x):
    """``log(1 + exp(x))`` without overflow: max(x, 0) + log1p(exp(-|x|))."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _bce_parts(logits, target, weight, pos_weight, label_smoothing):
    x = np.asarray(logits, dtype=np.float64)
    y = np.broadcast_to(np.asarray(target, dtype=np.float64), x.shape)
    eps = float(label_smoothing)
    y = y * (1.0 - eps) + eps / 2.0  # smoothed toward 1/2
    w = np.broadcast_to(1.0 if weight is None else
                        np.asarray(weight, dtype=np.float64), x.shape)
    # pos_weight has one entry per class along the last axis: plain broadcasting.
    pw = np.broadcast_to(1.0 if pos_weight is None else
                         np.asarray(pos_weight, dtype=np.float64), x.shape)
    return x, y, w, pw


def _reduce_elements(values, reduction):
    if reduction == "none":
        return values
    total = float(np.sum(values))
    return total if reduction == "sum" else _divide(total, values.size)


def _element_scale(x, reduction, grad_output):
    """d(reduced loss)/d(element loss) times the upstream gradient."""
    if reduction == "none":
        go = 1.0 if grad_output is None else np.asarray(grad_output, dtype=np.float64)
        return np.broadcast_to(go, x.shape)
    go = 1.0 if grad_output is None else float(grad_output)
    if reduction == "mean":
        return go / x.size if x.size else np.nan
    return go


@_quiet
def binary_cross_entropy_with_logits(logits, target, *, weight=None, pos_weight=None,
                                     reduction="mean", label_smoothing=0.0):
    """Binary cross-entropy on logits (PyTorch semantics), in float64.

    ``l = -w (pw y' log sigmoid(x) + (1 - y') log(1 - sigmoid(x)))`` with
    ``y' = y (1 - eps) + eps / 2``; `weight` broadcasts against `logits`,
    `pos_weight` along the last axis; "mean" averages over all elements.

    Examples
    --------
    >>> binary_cross_entropy_with_logits([0.0], [1.0])  # log 2
    0.6931471805599453
    """
    _check_reduction(reduction)
    x, y, w, pw = _bce_parts(logits, target, weight, pos_weight, label_smoothing)
    # log sigmoid(x) = -softplus(-x),  log(1 - sigmoid(x)) = -softplus(x).
    loss = w * (pw * y * _softplus(-x) + (1.0 - y) * _softplus(x))
    return _reduce_elements(loss, reduction)


@_quiet
def binary_cross_entropy_with_logits_and_grad(logits, target, *, weight=None,
                                              pos_weight=None, reduction="mean",
                                              label_smoothing=0.0, grad_output=None):
    """:func:`binary_cross_entropy_with_logits` and its gradient w.r.t. `logits`.

    ``dl/dx = w ((1 - y') sigmoid(x) - pw y' sigmoid(-x))``; `grad_output` is a scalar
    for "mean"/"sum" and an array of the logits' shape for "none".
    """
    _check_reduction(reduction)
    x, y, w, pw = _bce_parts(logits, target, weight, pos_weight, label_smoothing)
    sp_pos, sp_neg = _softplus(x), _softplus(-x)
    loss = w * (pw * y * sp_neg + (1.0 - y) * sp_pos)
    # sigmoid(x) = exp(-softplus(-x)), sigmoid(-x) = exp(-softplus(x)): no overflow.
    dl_dx = w * ((1.0 - y) * np.exp(-sp_neg) - pw * y * np.exp(-sp_pos))
    grad = _element_scale(x, reduction, grad_output) * dl_dx
    return _reduce_elements(loss, reduction), np.array(grad, dtype=np.float64)


# --------------------------------------------------------------------------------------
# Mean squared error
# --------------------------------------------------------------------------------------


@_quiet
def mean_squared_error(pred, target, *, reduction="mean"):
    """``(pred - target)**2``, reduced; "mean" averages over all elements.

    Examples
    --------
    >>> mean_squared_error([200000, 250000, 300000], [210000, 240000, 310000])
    100000000.0
    """
    _check_reduction(reduction)
    x = np.asarray(pred, dtype=np.float64)
    d = x - np.broadcast_to(np.asarray(target, dtype=np.float64), x.shape)
    return _reduce_elements(d * d, reduction)


@_quiet
def mean_squared_error_and_grad(pred, target, *, reduction="mean", grad_output=None):
    """:func:`mean_squared_error` and its gradient ``2 (pred - target)`` (scaled)."""
    _check_reduction(reduction)
    x = np.asarray(pred, dtype=np.float64)
    d = x - np.broadcast_to(np.asarray(target, dtype=np.float64), x.shape)
    grad = _element_scale(x, reduction, grad_output) * (2.0 * d)
    return _reduce_elements(d * d, reduction), np.array(grad, dtype=np.float64)


# --------------------------------------------------------------------------------------
# Linear + cross-entropy (a language-model head)
# --------------------------------------------------------------------------------------


def _linear_logits(hidden, linear_weight, linear_bias):
    """``hidden @ linear_weight.T + linear_bias`` in float64, classes last."""
    h = np.asarray(hidden, dtype=np.float64)
    w = np.asarray(linear_weight, dtype=np.float64)
    logits = h @ w.T
    if linear_bias is not None:
        logits = logits + np.asarray(linear_bias, dtype=np.float64)
    return h, w, logits


@_quiet
def linear_cross_entropy(hidden, linear_weight, target, *, linear_bias=None, weight=None,
                         sample_weight=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0, z_loss=0.0, softcap=None, temperature=1.0,
                         chunk_size=None, num_threads=None):
    """:func:`cross_entropy` of the logits ``hidden @ linear_weight.T + linear_bias``.

    `hidden` is (..., D), `linear_weight` (V, D), `target` hidden's shape without D.
    The logits are materialised (this is the oracle); `chunk_size` and `num_threads`
    are ignored.

    Examples
    --------
    >>> linear_cross_entropy([[1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [1])  # log 2
    0.6931471805599453
    """
    _, _, logits = _linear_logits(hidden, linear_weight, linear_bias)
    return cross_entropy(logits, target, weight=weight, sample_weight=sample_weight,
                         ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
                         temperature=temperature)


@_quiet
def linear_cross_entropy_and_grad(hidden, linear_weight, target, *, linear_bias=None,
                                  weight=None, sample_weight=None, ignore_index=-100,
                                  reduction="mean", label_smoothing=0.0, z_loss=0.0,
                                  softcap=None, temperature=1.0, chunk_size=None,
                                  num_threads=None, grad_output=None):
    """:func:`linear_cross_entropy` and its gradients, by the chain rule.

    With G = d loss / d logits (from :func:`cross_entropy_and_grad`)::

        grad_hidden = G @ linear_weight,  grad_linear_weight = G^T @ hidden,
        grad_linear_bias = sum of G over rows

    Returns
    -------
    (loss, grad_hidden, grad_linear_weight, grad_linear_bias)
        float64 gradients; ``grad_linear_bias`` is None without a bias.

    Examples
    --------
    >>> loss, gh, gw, gb = linear_cross_entropy_and_grad(
    ...     [[1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [1], linear_bias=[0.0, 0.0])
    >>> gw.tolist(), gb.tolist()
    ([[0.5, 0.0], [-0.5, 0.0]], [0.5, -0.5])
    """
    h, w, logits = _linear_logits(hidden, linear_weight, linear_bias)
    loss, g = cross_entropy_and_grad(logits, target, weight=weight,
                                     sample_weight=sample_weight, ignore_index=ignore_index,
                                     reduction=reduction, label_smoothing=label_smoothing,
                                     z_loss=z_loss, softcap=softcap, temperature=temperature,
                                     grad_output=grad_output)
    g_rows = g.reshape(-1, w.shape[0])
    h_rows = h.reshape(-1, w.shape[1])
    grad_hidden = (g_rows @ w).reshape(h.shape)
    grad_weight = g_rows.T @ h_rows
    grad_bias = None if linear_bias is None else g_rows.sum(axis=0)
    return loss, grad_hidden, grad_weight, grad_bias
