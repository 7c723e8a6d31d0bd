"""The public functions of xentfast: validation, layout and reductions.

Everything element-wise happens in the C kernels (via ``_core``); this module
checks arguments (before any work), moves the class axis last, turns targets
into int64 rows, allocates outputs and applies the reduction.
"""
from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass

import numpy as np

from . import _core

_REDUCTIONS = ("mean", "sum", "none")
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_STREAMING_BYTES = _core.STREAMING_BYTES
# float16/bfloat16 rows are widened to float32 this many elements at a time.
_CHUNK_ELEMENTS = 1 << 20
_EMPTY_F64 = np.empty(0, dtype=np.float64)
_EMPTY_I64 = np.empty(0, dtype=np.int64)


# --------------------------------------------------------------------------
# argument checks


def _is_low_precision(dtype):
    """float16, or bfloat16 from ml_dtypes: read as is, computed in float32."""
    return dtype == np.float16 or dtype.name == "bfloat16"


def _float_array(value, name):
    """`value` as an ndarray of a floating dtype the kernels read (no copy)."""
    arr = np.asarray(value)
    if arr.dtype not in _KERNEL_DTYPES and not _is_low_precision(arr.dtype):
        raise TypeError(
            f"{name} must be a float16, bfloat16, float32 or float64 array, got dtype "
            f"{arr.dtype}" + (" (cast it with .astype(np.float32))" if arr.dtype.kind in "iub" else ""))
    return arr


def _compute_dtype(dtype):
    return np.dtype(np.float32) if _is_low_precision(dtype) else dtype


def _num_threads(num_threads):
    if num_threads is None:
        return _core.max_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or an int, got {type(num_threads).__name__}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1 (or None for the default), got {num_threads}")
    return int(num_threads)


def _reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _class_axis(x, axis, name="logits"):
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the class axis), got a 0-d array")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an int, got {type(axis).__name__}") from None
    return np.lib.array_utils.normalize_axis_index(axis, x.ndim, msg_prefix="axis")


def _rows_view(a):
    """`a` (class axis last) as a 2-D (rows, C) array the kernels can read
    in place, or None when its layout needs a copy."""
    n_classes = a.shape[-1]
    n_rows = int(np.prod(a.shape[:-1], dtype=np.int64))
    try:
        rows = np.reshape(a, (n_rows, n_classes), copy=False)
    except ValueError:
        return None
    if n_classes > 1 and rows.strides[1] != rows.itemsize:
        return None
    if not rows.flags.aligned:
        return None
    return rows


def _rows(a):
    """`a` (class axis last) as 2-D rows for the kernels: a view when the
    layout allows, else one contiguous copy."""
    rows = _rows_view(a)
    if rows is None:
        rows = _aligned(a, a.dtype).reshape(-1, a.shape[-1])
    return rows


def _rows_and_out(moved, out_moved):
    """Input rows and output rows for a kernel that writes `out_moved`.

    Returns ``(rows, out_rows, copy_back)``: when `out_moved` cannot be
    written in place, out_rows is a private buffer (the private copy of the
    input when there is one: the kernels work in place) to copy back."""
    view = _rows_view(moved)
    # a real copy when the layout needs one (ascontiguousarray would hand back
    # a contiguous but misaligned input itself, which is then written to)
    rows = view if view is not None else np.array(moved, order="C").reshape(-1, moved.shape[-1])
    out_rows = _rows_view(out_moved)
    if out_rows is not None:
        return rows, out_rows, False
    return rows, (rows if view is None else np.empty(rows.shape, dtype=rows.dtype)), True


def _check_out(out, shape, dtype, name="out"):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")


def _same_view(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def _grad_buffer(x, axis, out, name="logits"):
    """(grad, grad with the class axis last, in_place) for an output like x."""
    if out is None:
        # allocated with the class axis last, so the kernels write it in place
        moved = np.empty(np.moveaxis(x, axis, -1).shape, dtype=x.dtype)
        return np.moveaxis(moved, -1, axis), moved, False
    _check_out(out, x.shape, x.dtype)
    in_place = _same_view(out, x)
    if not in_place and np.may_share_memory(out, x):
        raise ValueError(f"out overlaps {name} without being the same array; pass "
                         f"out={name} to overwrite it, or a separate buffer")
    return out, np.moveaxis(out, axis, -1), in_place


def _real_array(value, name):
    a = np.asarray(value)
    if a.dtype.kind not in "fiu" and not _is_low_precision(a.dtype):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def _class_weight(weight, n_classes, dtype):
    if weight is None:
        return None
    w = _real_array(weight, "weight")
    if w.shape != (n_classes,):
        raise ValueError(f"weight must have shape ({n_classes},) (one weight per class), got {w.shape}")
    with np.errstate(over="ignore"):  # too large for float32: refused just below
        w = _aligned(w, dtype)
    # Negative class weights are accepted, as PyTorch accepts them.  A non-finite one
    # is refused: it either changes nothing (its class absent, no smoothing) or makes
    # the loss inf or NaN (PyTorch's "mean" is then inf/inf = NaN).
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise ValueError(f"weight must be finite, got weight[{bad[0]}] = {w[bad[0]]}")
    return w


def _sample_weight(sample_weight, lead_shape):
    if sample_weight is None:
        return None
    s = _real_array(sample_weight, "sample_weight")
    if s.shape != tuple(lead_shape):
        raise ValueError(f"sample_weight must have the loss's shape (one weight per row), "
                         f"{tuple(lead_shape)}, got {s.shape}")
    s = _aligned(s, np.float64).reshape(-1)
    # A negative or non-finite row weight gives a loss of inf or NaN (or one that
    # decreases as the row gets worse): never what a weighting means.
    bad = np.flatnonzero(~(s >= 0.0) | np.isinf(s))
    if bad.size:
        where = ", ".join(map(str, np.unravel_index(bad[0], lead_shape))) if lead_shape else ""
        raise ValueError(f"sample_weight must be finite and >= 0, got "
                         f"sample_weight[{where}] = {s[bad[0]]}")
    return s


def _index_targets(t, lead, n_classes, ignore_index, weight, sample_weight, threads):
    """Integer class indices `t` of shape `lead`, checked in one pass: (the targets
    as flat int64, rows counted, the "mean" denominator); a ValueError naming the
    first target outside [0, n_classes) that is not ignore_index."""
    if t.dtype == np.uint64 and t.size and t.max() > np.iinfo(np.int64).max:
        raise ValueError(f"target holds {t.max()}, outside [0, {n_classes})")
    t64 = _aligned(t, np.int64).reshape(-1)
    w64 = None if weight is None else weight.astype(np.float64)
    bad, counted, weight_sum = _core.check_targets(t64, n_classes, ignore_index, w64,
                                                   sample_weight, threads)
    if bad >= 0:
        where = np.unravel_index(bad, lead) if lead else ()
        raise ValueError(
            f"target[{', '.join(map(str, where))}] = {t64[bad]} is not a class index in "
            f"[0, {n_classes}) nor ignore_index ({ignore_index})")
    return t64, counted, weight_sum


def _divide(numerator, denominator):
    """numerator / denominator with IEEE rules, as PyTorch's reductions: a
    zero denominator gives ±inf (nan for 0/0), not an exception."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(numerator) / np.float64(denominator))


def _exp(value):
    """exp that overflows to inf (a huge mean loss has perplexity inf)."""
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def _aligned(a, dtype):
    """`a` as a C-contiguous, aligned array of `dtype` (copied only when
    needed; np.ascontiguousarray keeps a misaligned array as it is)."""
    return np.require(a, dtype=dtype, requirements=["C", "A"])


def _ignore_index(ignore_index):
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    return int(ignore_index)


# --------------------------------------------------------------------------
# cross-entropy


class _Problem:
    """A validated cross-entropy call: rows, targets, weights, options."""

    def __init__(self, logits, target, *, axis, weight, sample_weight, ignore_index, reduction,
                 label_smoothing, z_loss, softcap, temperature, num_threads):
        x = _float_array(logits, "logits")
        self.axis = _class_axis(x, axis)
        self.reduction = _reduction(reduction)
        self.threads = _num_threads(num_threads)
        self.ignore_index = _ignore_index(ignore_index)
        eps = _real(label_smoothing, "label_smoothing")
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {eps}")
        lam = _real(z_loss, "z_loss")
        if lam < 0:
            raise ValueError(f"z_loss must be >= 0, got {lam}")
        cap = 0.0
        if softcap is not None:
            cap = _real(softcap, "softcap")
            if cap <= 0:
                raise ValueError(f"softcap must be > 0 (or None for no cap), got {cap}")
        temp = _real(temperature, "temperature")
        if temp <= 0:
            raise ValueError(f"temperature must be > 0, got {temp}")
        self.n_classes = n_classes = x.shape[self.axis]
        if n_classes == 0:
            raise ValueError(f"logits has no classes: its class axis ({self.axis}) has length 0")
        self.logits = x
        self.dtype = _compute_dtype(x.dtype)
        self.moved = np.moveaxis(x, self.axis, -1)
        self.lead_shape = self.moved.shape[:-1]
        self.weight = _class_weight(weight, n_classes, self.dtype)
        self.sample_weight = _sample_weight(sample_weight, self.lead_shape)
        self.options = dict(
            label_smoothing=eps, z_loss=lam, softcap=cap, inv_temperature=1.0 / temp,
            weight_total=float(n_classes if self.weight is None
                               else np.sum(self.weight, dtype=np.float64)),
            row_weight=self.sample_weight)
        self._targets(target)

    def _targets(self, target):
        t = np.asarray(target)
        n_classes, lead = self.n_classes, self.lead_shape
        self.target_prob = None
        if t.dtype.kind == "f" or _is_low_precision(t.dtype):
            if t.shape != self.logits.shape:
                raise TypeError(
                    f"target must hold integer class indices of shape {tuple(lead)}, or class "
                    f"probabilities of the logits' shape {self.logits.shape}; got a {t.dtype} "
                    f"array of shape {t.shape}")
            self.target = _EMPTY_I64
            self.target_prob = np.moveaxis(t, self.axis, -1)
            n = int(np.prod(lead, dtype=np.int64))
            self.counted = n
            self.weight_sum = float(n if self.sample_weight is None else np.sum(self.sample_weight))
            return
        if t.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer class indices (or float class "
                            f"probabilities), got dtype {t.dtype}")
        if t.shape != tuple(lead):
            raise ValueError(
                f"target must have the logits' shape without the class axis, {tuple(lead)}, "
                f"got {t.shape}")
        self.target, self.counted, self.weight_sum = _index_targets(
            t, lead, n_classes, self.ignore_index, self.weight, self.sample_weight, self.threads)

    def grad_scales(self, grad_output):
        """(shared scale, per-row scales) of the gradient for this reduction."""
        if self.reduction == "none":
            if grad_output is None:
                return 1.0, _EMPTY_F64
            g = _real_array(grad_output, "grad_output")
            try:
                g = np.broadcast_to(g, self.lead_shape)
            except ValueError:
                raise ValueError(
                    f"grad_output must broadcast to the loss shape {self.lead_shape}, "
                    f"got {g.shape}") from None
            return 1.0, _aligned(g, np.float64).reshape(-1)
        if grad_output is None:
            g = 1.0
        else:
            if np.ndim(grad_output) != 0:
                raise ValueError(
                    f"grad_output must be a scalar for reduction={self.reduction!r}, "
                    f"got shape {np.shape(grad_output)}")
            g = float(_real_array(grad_output, "grad_output"))
        if self.reduction == "mean":
            g = _divide(g, self.weight_sum)
        return g, _EMPTY_F64

    def reduce(self, row_values):
        """The loss from per-row (weighted) values."""
        if self.reduction == "none":
            return row_values.astype(self.logits.dtype).reshape(self.lead_shape)
        total = _core.fixed_sum(row_values)  # in a fixed order, as the fast path
        if self.reduction == "sum":
            return total
        return _divide(total, self.weight_sum)

    def run(self, mode, out_moved=None, *, in_place=False, scale=1.0, row_scale=_EMPTY_F64,
            **row_outputs):
        """Run the kernel over every row; returns the per-row losses."""
        row_loss = np.empty(self.target.shape[0] if self.target_prob is None
                            else int(np.prod(self.lead_shape, dtype=np.int64)), dtype=np.float64)
        prob_rows = None if self.target_prob is None else _rows(self.target_prob)
        if out_moved is None:
            x_rows, out_rows, copy_back = _rows(self.moved), None, False
        else:
            x_rows, out_rows, copy_back = _rows_and_out(self.moved, out_moved)
        _run(x_rows, out_rows, mode, self.threads, in_place=in_place or out_rows is x_rows,
             target=self.target, weight=self.weight, ignore_index=self.ignore_index, scale=scale,
             row_scale=row_scale, row_loss=row_loss, target_prob=prob_rows, **self.options,
             **row_outputs)
        if copy_back:
            np.copyto(out_moved, out_rows.reshape(out_moved.shape))
        return row_loss


def _run(x_rows, out_rows, mode, threads, *, in_place=False, target=_EMPTY_I64, weight=None,
         ignore_index=0, scale=1.0, row_scale=_EMPTY_F64, row_loss=_EMPTY_F64,
         row_lse=_EMPTY_F64, target_prob=None, **options):
    """One kernel call over all rows.  float16/bfloat16 rows, and probability
    targets of another dtype than the logits, are converted a bounded chunk
    at a time (never a whole N×C copy)."""
    compute = _compute_dtype(x_rows.dtype)
    if x_rows.dtype == compute and (target_prob is None or target_prob.dtype == compute):
        streaming = (out_rows is not None and not in_place
                     and out_rows.nbytes >= _STREAMING_BYTES)
        _core.rows(x_rows, out_rows, target, weight, ignore_index, scale, row_scale, row_loss,
                   row_lse, mode, streaming, threads, target_prob=target_prob, **options)
        return
    n_rows, n_classes = x_rows.shape
    # chunks start at multiples of 16 rows, as the kernels' blocks do, so a
    # chunked call groups rows (and rounds) exactly as one call would
    step = -(-max(1, _CHUNK_ELEMENTS // n_classes) // 16) * 16
    widen = x_rows.dtype != compute

    def part(a, sl):
        return a[sl] if a is not None and len(a) else a

    per_row_names = ("row_weight", "row_z_loss", "row_entropy", "row_argmax")
    scalars = {k: v for k, v in options.items() if k not in per_row_names}
    for start in range(0, n_rows, step):
        sl = slice(start, start + step)
        x_c = np.ascontiguousarray(x_rows[sl], dtype=compute) if widen else x_rows[sl]
        out_c = None if out_rows is None else (x_c if widen else out_rows[sl])
        prob = None if target_prob is None else target_prob[sl].astype(compute, copy=False)
        per_row = {k: part(v, sl) for k, v in options.items() if k in per_row_names}
        _core.rows(x_c, out_c, part(target, sl), weight, ignore_index, scale,
                   part(row_scale, sl), part(row_loss, sl), part(row_lse, sl), mode, False,
                   threads, target_prob=prob, **per_row, **scalars)
        if out_rows is not None and widen:
            out_rows[sl] = x_c


def _plain_call(reduction, axis, weight, sample_weight, label_smoothing, z_loss, softcap,
                temperature, return_z_loss, num_threads, ignore_index):
    """Can the call skip the general argument handling (``_core.ce_fast``)?

    Only a question of argument handling: which kernel runs is the plan's
    (kernels/plan.c) either way.  Exact types, so that any unusual value
    goes through the general path and its checks."""
    return ((reduction == "mean" or reduction == "sum") and type(axis) is int
            and axis in (-1, 1) and weight is None and sample_weight is None
            and type(label_smoothing) is float and label_smoothing == 0.0
            and type(z_loss) is float and z_loss == 0.0 and softcap is None
            and type(temperature) is float and temperature == 1.0 and not return_z_loss
            and (num_threads is None or (type(num_threads) is int and num_threads >= 1))
            and type(ignore_index) is int)


_CE_DOC_PARAMETERS = """
    logits : array_like of float32, float64, float16 or bfloat16
        Unnormalised scores, the classes along `axis`.  float16/bfloat16 are
        read as they are and computed in float32.  Integer or bool logits are
        a TypeError (cast them with ``.astype(np.float32)``): scores of a
        model are floats, and integer ones are almost surely a mistake (the
        building blocks :func:`logsumexp` and :func:`softmax` accept integers,
        as SciPy does).
    target : array_like
        Integer class indices in ``[0, C)`` of the logits' shape without
        `axis` (entries equal to `ignore_index` add nothing), or floating class
        probabilities of the logits' shape.
    axis : int, default -1
        The class axis (``1`` for PyTorch's ``(N, C, d1, ...)`` layout).
    weight : array_like of shape (C,), optional
        Per-class weights, as PyTorch's ``weight``: finite (a ValueError
        otherwise: an inf or NaN weight can only make the loss inf or NaN),
        negative values allowed as PyTorch allows them.
    sample_weight : array_like, optional
        One finite weight >= 0 per row (the loss's shape; a ValueError
        otherwise): ``mean`` becomes Σ s·l / Σ s·w_y over counted rows.  All
        zero gives NaN for ``"mean"`` (0/0, as PyTorch's mean of nothing).
    ignore_index : int, default -100
        Target value whose rows are ignored (index targets only).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` divides the summed loss by the summed class (and sample)
        weights of the counted rows, or by the number of rows for
        probability targets; ``"none"`` returns per-row losses (0 for ignored
        rows).
    label_smoothing : float in [0, 1], default 0
        Targets become (1-ε)·target + ε/C, as PyTorch's ``label_smoothing``.
    z_loss : float >= 0, default 0
        Adds λ·lse² per counted row (PaLM's z-loss, Liger's
        ``lse_square_scale``).
    softcap : float > 0, optional
        Logits become c·tanh(z/c) before the softmax (Gemma 2).
    temperature : float > 0, default 1
        Logits are divided by T before everything else.
    num_threads : int, optional
        Threads to use; default ``omp_get_max_threads()`` (honours
        ``OMP_NUM_THREADS`` and threadpoolctl).
    return_z_loss : bool, default False
        Also return the z-loss part of the loss (reduced the same way)."""


def _problem(logits, target, axis, weight, sample_weight, ignore_index, reduction,
             label_smoothing, z_loss, softcap, temperature, num_threads):
    return _Problem(logits, target, axis=axis, weight=weight, sample_weight=sample_weight,
                    ignore_index=ignore_index, reduction=reduction,
                    label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
                    temperature=temperature, num_threads=num_threads)


def cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None,
                  temperature=1.0, num_threads=None, return_z_loss=False):
    """Softmax cross-entropy loss of `logits` against `target`.

    Computed in one fused pass per row (max, sum of exponentials, loss, every
    option) without any N×C temporary.  Semantics are those of
    ``torch.nn.functional.cross_entropy``, extended by the options below.

    Parameters
    ----------{params}

    Returns
    -------
    loss : float or ndarray
        A Python float for ``"mean"``/``"sum"``; for ``"none"`` an array of the
        logits' dtype and the loss's shape.
    z_loss : float or ndarray
        Only with ``return_z_loss=True``: the λ·lse² part of `loss`.

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    >>> target = np.array([0, 2])
    >>> round(xentfast.cross_entropy(logits, target), 6)
    0.669962
    >>> xentfast.cross_entropy(logits, target, reduction="none")
    array([0.2413113, 1.0986123], dtype=float32)
    >>> round(xentfast.cross_entropy(logits, target, label_smoothing=0.1), 6)
    0.744962
    """
    if _plain_call(reduction, axis, weight, sample_weight, label_smoothing, z_loss, softcap,
                   temperature, return_z_loss, num_threads, ignore_index):
        loss = _core.ce_fast(logits, target, None, _core.MODE_LOSS, reduction == "mean",
                             ignore_index, 1.0, num_threads or _core.max_threads())
        if loss is not NotImplemented:
            return loss
    p = _problem(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                 label_smoothing, z_loss, softcap, temperature, num_threads)
    row_z = np.empty(len(p.target) or int(np.prod(p.lead_shape, dtype=np.int64))) \
        if return_z_loss else None
    row_loss = p.run(_core.MODE_LOSS, row_z_loss=row_z)
    loss = p.reduce(row_loss)
    return (loss, p.reduce(row_z)) if return_z_loss else loss


def cross_entropy_and_grad(logits, target, *, axis=-1, weight=None, sample_weight=None,
                           ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                           softcap=None, temperature=1.0, num_threads=None, return_z_loss=False,
                           grad_output=None, out=None):
    """Cross-entropy loss and its gradient with respect to `logits`, fused.

    One pass per row reads each logit once and writes each gradient entry
    once.  Arguments are those of :func:`cross_entropy`, plus:

    Parameters
    ----------
    grad_output : float or array_like, optional
        Upstream gradient: a scalar for ``"mean"``/``"sum"`` (default 1), an
        array of the loss's shape for ``"none"`` (default ones).
    out : ndarray, optional
        Where to write the gradient: the logits' shape and dtype, writeable.
        ``out=logits`` overwrites the logits with their gradient (no N×C
        allocation at all); a reused buffer avoids page faults on every call.

    Returns
    -------
    loss : float or ndarray
        As :func:`cross_entropy`.
    z_loss : float or ndarray
        Only with ``return_z_loss=True``.
    grad : ndarray
        d loss / d logits, the logits' shape and dtype (`out` when given).

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    >>> loss, grad = xentfast.cross_entropy_and_grad(logits, np.array([0, 2]))
    >>> round(loss, 6)
    0.669962
    >>> np.round(grad, 4)
    array([[-0.1072,  0.0876,  0.0196],
           [ 0.1667,  0.1667, -0.3333]], dtype=float32)
    """
    if (_plain_call(reduction, axis, weight, sample_weight, label_smoothing, z_loss, softcap,
                    temperature, return_z_loss, num_threads, ignore_index)
            and (grad_output is None or type(grad_output) is float)):
        grad = out
        if (out is None and type(logits) is np.ndarray and logits.ndim == 2
                and logits.dtype in _KERNEL_DTYPES):
            grad = np.empty(logits.shape, dtype=logits.dtype)
        loss = _core.ce_fast(logits, target, grad, _core.MODE_GRAD, reduction == "mean",
                             ignore_index, 1.0 if grad_output is None else grad_output,
                             num_threads or _core.max_threads())
        if loss is not NotImplemented:
            return loss, grad
    p = _problem(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                 label_smoothing, z_loss, softcap, temperature, num_threads)
    grad, grad_moved, in_place = _grad_buffer(p.logits, p.axis, out)
    scale, row_scale = p.grad_scales(grad_output)
    row_z = np.empty(len(p.target) or int(np.prod(p.lead_shape, dtype=np.int64))) \
        if return_z_loss else None
    row_loss = p.run(_core.MODE_GRAD, grad_moved, in_place=in_place, scale=scale,
                     row_scale=row_scale, row_z_loss=row_z)
    loss = p.reduce(row_loss)
    return (loss, p.reduce(row_z), grad) if return_z_loss else (loss, grad)


cross_entropy.__doc__ = cross_entropy.__doc__.format(params=_CE_DOC_PARAMETERS)


class _MeanLossMeasures:
    """What a mean loss in nats (``self.mean_loss``) says, for the evaluation records."""

    mean_loss: float

    @property
    def perplexity(self) -> float:
        """exp(mean loss in nats) = 2^(mean loss in bits)."""
        return _exp(self.mean_loss)

    @property
    def bits_per_token(self) -> float:
        """mean loss in bits (nats / ln 2)."""
        return self.mean_loss / math.log(2.0)


@dataclass(frozen=True, repr=False)
class Evaluation(_MeanLossMeasures):
    """Everything :func:`evaluate` measures in one read of the logits.

    Per-row arrays have the loss's shape; ignored rows have loss 0 and NaN
    lse/entropy, and do not count in the totals.  The per-row float arrays
    (``loss``, ``lse``, ``entropy``) are float64 whatever the logits' dtype:
    the kernels produce every per-row figure in float64, and keeping them so
    costs nothing beside the logits (N numbers, not N×C) and rounds nothing,
    so sums of them (per sequence, per class) agree with ``mean_loss``, which
    is formed from the same float64 values.  ``argmax`` is int64, ``correct``
    bool.  ``repr()`` is a one-line summary; the arrays are the fields.
    """

    loss: np.ndarray
    """per-row loss (the values of ``reduction="none"``, in float64)"""
    lse: np.ndarray
    """per-row log-sum-exp of the (tempered, capped) logits"""
    argmax: np.ndarray
    """per-row predicted class"""
    correct: np.ndarray
    """per-row: prediction == target (argmax of the target for probabilities)"""
    entropy: np.ndarray
    """per-row entropy of the softmax, in nats"""
    mean_loss: float
    """the ``"mean"`` reduction of the loss, in nats"""
    accuracy: float
    """share of counted rows predicted right"""
    n_counted: int
    """rows that count (target != ignore_index)"""

    def __repr__(self) -> str:
        return (f"Evaluation(shape={self.loss.shape}, n_counted={self.n_counted}, "
                f"mean_loss={self.mean_loss:.6g}, accuracy={self.accuracy:.6g}, "
                f"perplexity={self.perplexity:.6g}, "
                f"bits_per_token={self.bits_per_token:.6g})")


def evaluate(logits, target, *, axis=-1, weight=None, sample_weight=None, ignore_index=-100,
             label_smoothing=0.0, z_loss=0.0, softcap=None, temperature=1.0, num_threads=None):
    """Loss, log-sum-exp, prediction, correctness and entropy of every row, with
    the totals people watch in training and validation — in one pass.

    Shaped as one result object because every field comes out of the same
    read of the logits: asking separately for loss, accuracy and perplexity
    would read a large logits array three times.  Per-row fields are arrays
    so they can be aggregated further (per sequence, per class); totals are
    plain floats.  Options are those of :func:`cross_entropy`.

    Returns
    -------
    Evaluation
        ``loss``, ``lse``, ``entropy`` (float64 arrays), ``argmax`` (int64),
        ``correct`` (bool) per row; ``mean_loss``, ``accuracy``, ``n_counted``,
        ``perplexity`` and ``bits_per_token`` for the batch.  Its ``repr`` is a
        one-line summary of the batch figures.

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    >>> ev = xentfast.evaluate(logits, np.array([0, 2]))
    >>> ev.argmax, ev.correct, ev.accuracy
    (array([0, 1]), array([ True, False]), 0.5)
    >>> round(ev.perplexity, 4), round(ev.bits_per_token, 4)
    (2.4507, 1.2932)
    >>> ev
    Evaluation(shape=(2,), n_counted=2, mean_loss=0.896378, accuracy=0.5, perplexity=2.45071, bits_per_token=1.2932)
    """
    p = _problem(logits, target, axis, weight, sample_weight, ignore_index, "none",
                 label_smoothing, z_loss, softcap, temperature, num_threads)
    n = int(np.prod(p.lead_shape, dtype=np.int64))
    lse, entropy = np.empty(n), np.empty(n)
    argmax = np.empty(n, dtype=np.int64)
    row_loss = p.run(_core.MODE_EVAL, row_lse=lse, row_entropy=entropy, row_argmax=argmax)
    if p.target_prob is None:
        counted = p.target != p.ignore_index
        correct = (argmax == p.target) & counted
    else:
        counted = np.ones(n, dtype=bool)
        correct = argmax == np.argmax(_rows(p.target_prob), axis=1)
    mean = _divide(_core.fixed_sum(row_loss), p.weight_sum)
    n_counted = int(np.count_nonzero(counted))
    shape = p.lead_shape
    return Evaluation(
        loss=row_loss.reshape(shape), lse=lse.reshape(shape),
        argmax=argmax.reshape(shape), correct=correct.reshape(shape),
        entropy=entropy.reshape(shape), mean_loss=mean,
        accuracy=float(np.count_nonzero(correct)) / n_counted if n_counted else float("nan"),
        n_counted=n_counted)


def perplexity(logits, target, **options):
    """Perplexity, exp(mean cross-entropy in nats), of `logits` against `target`.

    Options are those of :func:`cross_entropy` (``reduction`` is ``"mean"``).

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> uniform = np.zeros((4, 10), dtype=np.float32)
    >>> round(xentfast.perplexity(uniform, np.array([1, 2, 3, 4])), 4)
    10.0
    """
    if "reduction" in options:
        raise TypeError("perplexity takes no reduction: it is exp of the mean loss")
    return _exp(cross_entropy(logits, target, **options))


# --------------------------------------------------------------------------
# element-wise losses: binary cross-entropy with logits, squared error


def _as_2d(a):
    """Rows of the last axis (a 0-d array is one row of one element)."""
    return a.reshape(1, 1) if a.ndim == 0 else a


def _broadcast_rows(value, shape, dtype, name):
    """`value` broadcast to `shape` as 2-D rows with column stride 0 or 1
    (a view when the layout allows, else one contiguous copy)."""
    v = _real_array(value, name).astype(dtype, copy=False)
    try:
        b = np.broadcast_to(v, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {v.shape} does not broadcast to {shape}") from None
    b = _as_2d(b)
    n_cols = b.shape[-1]
    try:
        rows = np.reshape(b, (int(np.prod(b.shape[:-1], dtype=np.int64)), n_cols), copy=False)
        if n_cols <= 1 or rows.strides[1] in (0, rows.itemsize):
            if rows.flags.aligned:
                return rows
    except ValueError:
        pass
    return _aligned(b, b.dtype).reshape(-1, n_cols)


class _Elementwise:
    """A validated element-wise loss call."""

    def __init__(self, x, target, reduction, num_threads, x_name):
        x = _float_array(x, x_name)
        self.reduction = _reduction(reduction)
        self.threads = _num_threads(num_threads)
        y = _real_array(target, "target")
        if y.shape != x.shape:
            raise ValueError(f"target must have the shape of {x_name}, {x.shape}, got {y.shape}")
        self.x = x
        self.x_name = x_name
        self.dtype = _compute_dtype(x.dtype)
        self.x_rows = _rows(_as_2d(x.astype(self.dtype, copy=False)))
        self.y_rows = _rows(_as_2d(y.astype(self.dtype, copy=False)))

    def grad_buffer(self, out):
        """The gradient array: `out` (checked) or a new one like x."""
        if self.x.ndim == 0:
            if out is None:
                return np.empty((), self.x.dtype)
            _check_out(out, (), self.x.dtype)
            return out
        return _grad_buffer(self.x, self.x.ndim - 1, out, self.x_name)[0]

    def grad_scale(self, grad_output):
        """(scalar scale, per-element upstream rows or None)."""
        if self.reduction == "none":
            if grad_output is None:
                return 1.0, None
            return 1.0, _broadcast_rows(grad_output, self.x.shape, self.dtype, "grad_output")
        g = 1.0
        if grad_output is not None:
            if np.ndim(grad_output) != 0:
                raise ValueError(f"grad_output must be a scalar for reduction="
                                 f"{self.reduction!r}, got shape {np.shape(grad_output)}")
            g = float(_real_array(grad_output, "grad_output"))
        if self.reduction == "mean":
            g = g / self.x.size if self.x.size else float("nan")
        return g, None

    def run(self, op, w=None, pw=None, eps=0.0, grad=None, grad_output=None):
        scale, g = self.grad_scale(grad_output) if grad is not None else (1.0, None)
        n_rows = self.x_rows.shape[0]
        elem = None
        row_loss = _EMPTY_F64
        if self.reduction == "none":
            elem = np.empty(self.x_rows.shape, dtype=self.dtype)
        else:
            row_loss = np.empty(n_rows, dtype=np.float64)
        grad_rows, copy_back = None, False
        if grad is not None:
            grad_rows = _rows_view(_as_2d(grad)) if grad.dtype == self.dtype else None
            copy_back = grad_rows is None
            if copy_back:
                grad_rows = np.empty(self.x_rows.shape, dtype=self.dtype)
        _core.elementwise(op, self.x_rows, self.y_rows, w, pw, g, grad_rows, row_loss, elem,
                          scale, eps, self.threads)
        if copy_back:
            np.copyto(grad, grad_rows.reshape(grad.shape), casting="unsafe")
        if self.reduction == "none":
            return elem.astype(self.x.dtype, copy=False).reshape(self.x.shape)
        total = _core.fixed_sum(row_loss)
        if self.reduction == "sum":
            return total
        return total / self.x.size if self.x.size else float("nan")


def _bce(logits, target, weight, pos_weight, reduction, label_smoothing, num_threads,
         grad=False, grad_output=None, out=None):
    e = _Elementwise(logits, target, reduction, num_threads, "logits")
    eps = _real(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {eps}")
    shape = e.x.shape
    w = None if weight is None else _broadcast_rows(weight, shape, e.dtype, "weight")
    pw = None
    if pos_weight is not None:
        last = shape[-1] if shape else 1
        p = _real_array(pos_weight, "pos_weight").astype(e.dtype, copy=False)
        if p.ndim > 1 or p.size not in (1, last):
            raise ValueError(f"pos_weight must be a scalar or have shape ({last},) (one weight "
                             f"per entry of the last axis), got {p.shape}")
        pw = _aligned(np.broadcast_to(p.reshape(-1), (last,)), e.dtype)
    if not grad:
        return e.run(_core.OP_BCE, w, pw, eps)
    g = e.grad_buffer(out)
    return e.run(_core.OP_BCE, w, pw, eps, grad=g, grad_output=grad_output), g


def binary_cross_entropy_with_logits(logits, target, *, weight=None, pos_weight=None,
                                     reduction="mean", label_smoothing=0.0, num_threads=None):
    """Binary cross-entropy of sigmoid(`logits`) against `target`, stably.

    PyTorch's ``binary_cross_entropy_with_logits``: per element
    l = -w·(pw·y'·log σ(x) + (1-y')·log(1-σ(x))) with y' = y(1-ε) + ε/2,
    computed as softplus terms so that no |x| overflows or takes log 0.

    Parameters
    ----------
    logits : array_like of float32 or float64 (float16/bfloat16 computed in float32)
        Integer or bool logits are a TypeError, as in :func:`cross_entropy`.
    target : array_like
        Targets in [0, 1] of the logits' shape.
    weight : array_like, optional
        Element weights, broadcast against the logits.
    pos_weight : array_like, optional
        Weight of the positive term, a scalar or one per entry of the last
        axis (broadcast along it, as PyTorch).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages over all elements.
    label_smoothing : float in [0, 1], default 0
    num_threads : int, optional

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> x = np.array([0.0, 3.0, -3.0], dtype=np.float32)
    >>> xentfast.binary_cross_entropy_with_logits(x, np.array([1.0, 1.0, 0.0]), reduction="none")
    array([0.6931472 , 0.04858735, 0.04858735], dtype=float32)
    """
    return _bce(logits, target, weight, pos_weight, reduction, label_smoothing, num_threads)


def binary_cross_entropy_with_logits_and_grad(logits, target, *, weight=None, pos_weight=None,
                                              reduction="mean", label_smoothing=0.0,
                                              num_threads=None, grad_output=None, out=None):
    """Binary cross-entropy with logits and its gradient, in one pass.

    Arguments as :func:`binary_cross_entropy_with_logits`, plus `grad_output`
    (a scalar for ``"mean"``/``"sum"``, broadcast per element for ``"none"``)
    and `out` (the logits' shape and dtype; ``out=logits`` works in place).

    Returns
    -------
    loss : float or ndarray
    grad : ndarray
        d loss / d logits = w·((1-y')·σ(x) - pw·y'·σ(-x)), scaled.

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> loss, grad = xentfast.binary_cross_entropy_with_logits_and_grad(
    ...     np.zeros(2, np.float32), np.array([1.0, 0.0]), reduction="sum")
    >>> grad
    array([-0.5,  0.5], dtype=float32)
    """
    return _bce(logits, target, weight, pos_weight, reduction, label_smoothing, num_threads,
                grad=True, grad_output=grad_output, out=out)


def _mse(pred, target, reduction, num_threads, grad=False, grad_output=None, out=None):
    e = _Elementwise(pred, target, reduction, num_threads, "pred")
    if not grad:
        return e.run(_core.OP_MSE)
    g = e.grad_buffer(out)
    return e.run(_core.OP_MSE, grad=g, grad_output=grad_output), g


def mean_squared_error(pred, target, *, reduction="mean", num_threads=None):
    """Squared error (pred - target)², reduced like PyTorch's ``mse_loss``.

    Parameters
    ----------
    pred : array_like of float32 or float64
        Integer or bool predictions are a TypeError, as logits are in
        :func:`cross_entropy` (cast them with ``.astype(np.float32)``).
    target : array_like of the same shape
    reduction : {"mean", "sum", "none"}, default "mean"
    num_threads : int, optional

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> actual = np.array([200000.0, 250000.0, 300000.0])
    >>> predicted = np.array([210000.0, 240000.0, 310000.0])
    >>> xentfast.mean_squared_error(predicted, actual)
    100000000.0
    """
    return _mse(pred, target, reduction, num_threads)


def mean_squared_error_and_grad(pred, target, *, reduction="mean", num_threads=None,
                                grad_output=None, out=None):
    """Squared error and its gradient 2·(pred - target)·scale, in one pass.

    Arguments as :func:`mean_squared_error`, plus `grad_output` and `out`
    (as in :func:`binary_cross_entropy_with_logits_and_grad`).

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> xentfast.mean_squared_error_and_grad(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    (5.0, array([1., 3.]))
    """
    return _mse(pred, target, reduction, num_threads, grad=True, grad_output=grad_output, out=out)


# --------------------------------------------------------------------------
# building blocks


def _block_input(x):
    """Input of the SciPy-like building blocks: integers and bools become
    float64 (as scipy.special does); other non-floats are a TypeError."""
    a = np.asarray(x)
    if a.dtype.kind in "iub":
        return a.astype(np.float64)
    return _float_array(a, "x")


def _normalize_axes(x, axis):
    """`axis` (None, an int or a tuple of ints) as a tuple of distinct axes of x.

    A 0-d x is one element: axis 0 or -1 (or a tuple of them) names it, as
    ``scipy.special.logsumexp`` has it; the caller reshapes x to (1,)."""
    if axis is None:
        return tuple(range(max(x.ndim, 1)))
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in axes:
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(f"axis must be None, an int or a tuple of ints, got {axis!r}") from None
        if x.ndim == 0 and a not in (0, -1):
            raise np.exceptions.AxisError(a, 0, "axis")
        out.append(np.lib.array_utils.normalize_axis_index(a, max(x.ndim, 1), msg_prefix="axis"))
    if len(set(out)) != len(out):
        raise ValueError(f"axis contains a repeated axis: {axis!r}")
    return tuple(out)


def _axes_last(shape, axes):
    """(permutation moving `axes` last, kept shape, reduced length)."""
    keep = [a for a in range(len(shape)) if a not in axes]
    perm = keep + list(axes)
    return perm, tuple(shape[a] for a in keep), math.prod(shape[a] for a in axes)


def logsumexp(x, axis=None, keepdims=False, *, out=None, num_threads=None):
    """Log of the sum of exponentials, ``log(sum(exp(x), axis))``, stably.

    Parameters
    ----------
    x : array_like
        Floating input.  Integers and bools are accepted and computed in
        float64, as ``scipy.special.logsumexp`` does (the losses refuse them:
        see :func:`cross_entropy`).
    axis : None, int or tuple of ints, default None
        Axes to reduce over, jointly (all of them by default, as
        ``scipy.special.logsumexp``).  A 0-d x is one element, which axis 0
        or -1 (or ``(0,)``) also names, as in SciPy.
    keepdims : bool, default False
        Keep the reduced axes with length one.
    out : ndarray, optional
        Output of the result's shape and x's dtype.
    num_threads : int, optional
        As in :func:`cross_entropy`.

    Returns
    -------
    ndarray or scalar
        Of x's dtype (float64 for integer x); ``-inf`` for an empty reduction.

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> x = np.array([[0.0, 1000.0], [-np.inf, 0.0]], dtype=np.float32)
    >>> xentfast.logsumexp(x, axis=1)
    array([1000.,    0.], dtype=float32)
    >>> float(xentfast.logsumexp(np.array([1, 1])))  # integers: float64, log 2 + 1
    1.6931471805599454
    """
    x = _block_input(x)
    threads = _num_threads(num_threads)
    axes = _normalize_axes(x, axis)
    if x.ndim == 0:
        out_shape = ()
        x = x.reshape(1)
    else:
        out_shape = (tuple(1 if a in axes else x.shape[a] for a in range(x.ndim)) if keepdims
                     else tuple(x.shape[a] for a in range(x.ndim) if a not in axes))
    perm, lead, k = _axes_last(x.shape, axes)
    moved = np.transpose(x, perm)
    if out is not None:
        _check_out(out, out_shape, x.dtype)
    n_rows = math.prod(lead)
    lse = np.empty(n_rows, dtype=np.float64)
    if k == 0:
        lse.fill(-np.inf)
    elif n_rows:
        _run(_rows(moved.reshape(lead + (k,))), None, _core.MODE_LSE, threads, row_lse=lse)
    result = lse.astype(x.dtype).reshape(out_shape)
    if out is not None:
        np.copyto(out, result)
        return out
    return result if result.ndim else result[()]


def _softmax_like(x, axis, out, num_threads, mode):
    x = _block_input(x)
    threads = _num_threads(num_threads)
    axes = _normalize_axes(x, axis)
    if out is not None:
        _check_out(out, x.shape, x.dtype)
        if not _same_view(out, x) and np.may_share_memory(out, x):
            raise ValueError("out overlaps x without being the same array; pass out=x to "
                             "overwrite it, or a separate buffer")
        result = out
    else:
        result = None
    scalar = x.ndim == 0
    if scalar:  # one element (softmax 1, log-softmax 0; NaN for NaN and +-inf)
        x = x.reshape(1)
    perm, lead, k = _axes_last(x.shape, axes)
    if result is None:
        # allocated with the reduced axes last, so the kernels write it in place
        buf = np.empty([x.shape[a] for a in perm], dtype=x.dtype)
        result = np.transpose(buf, np.argsort(perm)).reshape(()) if scalar else \
            np.transpose(buf, np.argsort(perm))
    if x.size == 0:
        return result
    res_moved = np.transpose(result.reshape(1) if scalar else result, perm)
    rows_in = np.transpose(x, perm).reshape(lead + (k,))  # a copy when not a view
    try:
        rows_out, staged = np.reshape(res_moved, lead + (k,), copy=False), False
    except ValueError:  # the reduced axes of out do not merge: compute aside, copy
        rows_out, staged = np.empty(lead + (k,), dtype=x.dtype), True
    rows, out_rows, copy_back = _rows_and_out(rows_in, rows_out)
    _run(rows, out_rows, mode, threads, in_place=out_rows is rows or _same_view(rows, out_rows))
    if copy_back:
        np.copyto(rows_out, out_rows.reshape(rows_out.shape))
    if staged:
        np.copyto(res_moved, rows_out.reshape(res_moved.shape))
    if scalar and out is None:
        return result[()]
    return result


_SOFTMAX_AXIS_DOC = """axis : None, int or tuple of ints, default -1
        The axis (or axes, taken jointly) along which the values sum to one;
        None is all of them, as in ``scipy.special.softmax``.  The default
        stays -1, the class axis of xentfast's losses and PyTorch's usual
        ``dim``, where SciPy's default is None (the whole array): a softmax
        over every element of a batch of rows is seldom what is meant.  A 0-d
        x is one element, which axis 0 or -1 (or ``(0,)``) also names."""


def softmax(x, axis=-1, *, out=None, num_threads=None):
    """Softmax along `axis`: ``exp(x - logsumexp(x))``, in one fused pass.

    Parameters
    ----------
    x : array_like
        Floating input; 0-d and empty arrays are fine.  Integers and bools are
        accepted and computed in float64, as ``scipy.special.softmax`` does.
    {axis}
    out : ndarray, optional
        x's shape and dtype (float64 for integer x); ``out=x`` works in place.
    num_threads : int, optional

    Returns
    -------
    ndarray
        x's shape and dtype (a scalar for 0-d x, as SciPy, unless `out`).

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> xentfast.softmax(np.array([0.0, np.log(3.0)], dtype=np.float32))
    array([0.25, 0.75], dtype=float32)
    >>> xentfast.softmax(np.zeros((2, 2)), axis=None)  # over all four elements
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    return _softmax_like(x, axis, out, num_threads, _core.MODE_SOFTMAX)


def log_softmax(x, axis=-1, *, out=None, num_threads=None):
    """Log-softmax along `axis`: ``x - logsumexp(x)``, in one fused pass.

    Parameters
    ----------
    x : array_like
        Floating input; 0-d and empty arrays are fine.  Integers and bools are
        accepted and computed in float64, as ``scipy.special.log_softmax`` does.
    {axis}
    out : ndarray, optional
        x's shape and dtype (float64 for integer x); ``out=x`` works in place.
    num_threads : int, optional

    Returns
    -------
    ndarray
        x's shape and dtype (a scalar for 0-d x, as SciPy, unless `out`).

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> xentfast.log_softmax(np.array([0.0, 0.0], dtype=np.float32))
    array([-0.6931472, -0.6931472], dtype=float32)
    """
    return _softmax_like(x, axis, out, num_threads, _core.MODE_LOG_SOFTMAX)


softmax.__doc__ = softmax.__doc__.format(axis=_SOFTMAX_AXIS_DOC)
log_softmax.__doc__ = log_softmax.__doc__.format(axis=_SOFTMAX_AXIS_DOC)
