"""The public functions of xentfast: validation, layout and reductions.

Everything element-wise happens in the C kernels (via ``_core``); this module
checks arguments (before any work), moves the class axis last, turns targets
into int64 rows, allocates outputs and applies the reduction.
"""
from __future__ import annotations

import numbers
import operator

import numpy as np

from . import _core

_REDUCTIONS = ("mean", "sum", "none")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Gradients of at least this many bytes are written with non-temporal stores
# (they would not stay in the caches anyway); smaller ones stay cached.
_STREAMING_BYTES = 8 << 20
_EMPTY_F64 = np.empty(0, dtype=np.float64)
_EMPTY_I64 = np.empty(0, dtype=np.int64)


# --------------------------------------------------------------------------
# argument checks


def _float_array(value, name):
    """`value` as an ndarray of float32/float64 (no copy), or TypeError."""
    arr = np.asarray(value)
    if arr.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a float32 or float64 array, got dtype {arr.dtype}"
            + (" (cast it with .astype(np.float32))" if arr.dtype.kind in "iub" else ""))
    return arr


def _num_threads(num_threads):
    if num_threads is None:
        return _core.max_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or an int, got {type(num_threads).__name__}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1 (or None for the default), got {num_threads}")
    return int(num_threads)


def _reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


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
        rows = np.ascontiguousarray(a).reshape(-1, a.shape[-1])
    return rows


def _rows_and_out(moved, out_moved):
    """Input rows and output rows for a kernel that writes `out_moved`.

    Returns ``(rows, out_rows, copy_back)``: when `out_moved` cannot be
    written in place, out_rows is a private buffer (the private copy of the
    input when there is one: the kernels work in place) to copy back."""
    view = _rows_view(moved)
    rows = view if view is not None else np.ascontiguousarray(moved).reshape(-1, moved.shape[-1])
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


def _class_weight(weight, n_classes, dtype):
    if weight is None:
        return None
    w = np.asarray(weight)
    if w.dtype.kind not in "fiu":
        raise TypeError(f"weight must be a real numeric array, got dtype {w.dtype}")
    if w.shape != (n_classes,):
        raise ValueError(f"weight must have shape ({n_classes},) (one weight per class), got {w.shape}")
    return np.ascontiguousarray(w, dtype=dtype)


def _class_targets(target, lead_shape, n_classes, ignore_index, weight):
    """Targets as contiguous int64 rows, checked; with the `mean` denominator."""
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        if t.dtype.kind == "f":
            raise TypeError(
                f"target must hold integer class indices (got dtype {t.dtype}); class "
                f"probabilities need a floating target of the logits' shape")
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    if t.shape != tuple(lead_shape):
        raise ValueError(
            f"target must have the logits' shape without the class axis, {tuple(lead_shape)}, "
            f"got {t.shape}")
    if t.dtype == np.uint64 and t.size and t.max() > np.iinfo(np.int64).max:
        raise ValueError(f"target holds {t.max()}, outside [0, {n_classes})")
    t64 = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
    w64 = None if weight is None else np.ascontiguousarray(weight, dtype=np.float64)
    bad, counted, weight_sum = _core.check_targets(t64, n_classes, int(ignore_index), w64)
    if bad >= 0:
        where = np.unravel_index(bad, lead_shape) if lead_shape else ()
        raise ValueError(
            f"target[{', '.join(map(str, where))}] = {t64[bad]} is not a class index in "
            f"[0, {n_classes}) nor ignore_index ({ignore_index})")
    return t64, counted, weight_sum


def _ignore_index(ignore_index):
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    return int(ignore_index)


# --------------------------------------------------------------------------
# cross-entropy


class _Problem:
    """A validated cross-entropy call: rows, targets, weights, reduction."""

    def __init__(self, logits, target, axis, weight, ignore_index, reduction, num_threads):
        x = _float_array(logits, "logits")
        self.axis = _class_axis(x, axis)
        self.reduction = _reduction(reduction)
        self.threads = _num_threads(num_threads)
        self.ignore_index = _ignore_index(ignore_index)
        self.n_classes = x.shape[self.axis]
        if self.n_classes == 0:
            raise ValueError(f"logits has no classes: its class axis ({self.axis}) has length 0")
        self.logits = x
        self.moved = np.moveaxis(x, self.axis, -1)
        self.lead_shape = self.moved.shape[:-1]
        self.weight = _class_weight(weight, self.n_classes, x.dtype)
        self.target, self.counted, self.weight_sum = _class_targets(
            target, self.lead_shape, self.n_classes, self.ignore_index, self.weight)

    def grad_scales(self, grad_output):
        """(shared scale, per-row scales) of the gradient for this reduction."""
        if self.reduction == "none":
            if grad_output is None:
                return 1.0, _EMPTY_F64
            g = np.asarray(grad_output)
            if g.dtype.kind not in "fiu":
                raise TypeError(f"grad_output must be real numbers, got dtype {g.dtype}")
            try:
                g = np.broadcast_to(g, self.lead_shape)
            except ValueError:
                raise ValueError(
                    f"grad_output must broadcast to the loss shape {self.lead_shape}, "
                    f"got {g.shape}") from None
            return 1.0, np.ascontiguousarray(g, dtype=np.float64).reshape(-1)
        if grad_output is None:
            g = 1.0
        else:
            if np.ndim(grad_output) != 0:
                raise ValueError(
                    f"grad_output must be a scalar for reduction={self.reduction!r}, "
                    f"got shape {np.shape(grad_output)}")
            g = float(grad_output)
        if self.reduction == "mean":
            g = g / self.weight_sum if self.weight_sum != 0 else g * float("nan")
        return g, _EMPTY_F64

    def reduce(self, row_loss):
        """The loss from the per-row (weighted) losses."""
        if self.reduction == "none":
            return row_loss.astype(self.logits.dtype, copy=False).reshape(self.lead_shape)
        total = float(np.sum(row_loss))  # pairwise, in a fixed order
        if self.reduction == "sum":
            return total
        return total / self.weight_sum if self.weight_sum != 0 else float("nan")


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", num_threads=None):
    """Softmax cross-entropy loss of `logits` against class indices.

    Computed in one fused pass per row (max, sum of exponentials, loss)
    without any N×C temporary.  Semantics are those of
    ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    logits : array_like of float32 or float64
        Unnormalised scores, the classes along `axis`.
    target : array_like of int
        Class indices in ``[0, C)``, of the logits' shape without `axis`.
        Entries equal to `ignore_index` add nothing to the loss.
    axis : int, default -1
        The class axis (``1`` for PyTorch's ``(N, C, d1, ...)`` layout).
    weight : array_like of shape (C,), optional
        Per-class weights, as PyTorch's ``weight``.
    ignore_index : int, default -100
        Target value whose rows are ignored.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` divides the summed loss by the summed class weights of the
        counted rows (their number without weights); ``"none"`` returns the
        per-row losses (0 for ignored rows).
    num_threads : int, optional
        Threads to use; default ``omp_get_max_threads()`` (honours
        ``OMP_NUM_THREADS`` and threadpoolctl).

    Returns
    -------
    float or ndarray
        A Python float for ``"mean"``/``"sum"``; for ``"none"`` an array of the
        logits' dtype and the target's shape.

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    >>> target = np.array([0, 2])
    >>> round(xentfast.cross_entropy(logits, target), 6)
    0.669962
    >>> xentfast.cross_entropy(logits, target, reduction="none")
    array([0.2413113, 1.0986123], dtype=float32)
    """
    p = _Problem(logits, target, axis, weight, ignore_index, reduction, num_threads)
    row_loss = np.empty(p.target.shape[0], dtype=np.float64)
    _core.rows(_rows(p.moved), None, p.target, p.weight, p.ignore_index, 1.0, _EMPTY_F64,
               row_loss, _EMPTY_F64, _core.MODE_LOSS, False, p.threads)
    return p.reduce(row_loss)


def cross_entropy_and_grad(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                           reduction="mean", num_threads=None, grad_output=None, out=None):
    """Cross-entropy loss and its gradient with respect to `logits`, fused.

    One pass per row reads each logit once and writes each gradient entry
    once: ``softmax(z) * scale`` minus ``scale`` at the target.  Arguments are
    those of :func:`cross_entropy`, plus:

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
    p = _Problem(logits, target, axis, weight, ignore_index, reduction, num_threads)
    x = p.logits
    if out is None:
        # allocated with the class axis last, so the kernels write it in place
        grad_moved = np.empty(p.moved.shape, dtype=x.dtype)
        grad = np.moveaxis(grad_moved, -1, p.axis)
        in_place = False
    else:
        _check_out(out, x.shape, x.dtype)
        in_place = _same_view(out, x)
        if not in_place and np.may_share_memory(out, x):
            raise ValueError("out overlaps logits without being the same array; pass "
                             "out=logits to overwrite the logits, or a separate buffer")
        grad = out
        grad_moved = np.moveaxis(out, p.axis, -1)
    scale, row_scale = p.grad_scales(grad_output)
    x_rows, out_rows, copy_back = _rows_and_out(p.moved, grad_moved)
    row_loss = np.empty(p.target.shape[0], dtype=np.float64)
    streaming = out_rows is not x_rows and not in_place and out_rows.nbytes >= _STREAMING_BYTES
    _core.rows(x_rows, out_rows, p.target, p.weight, p.ignore_index, scale, row_scale,
               row_loss, _EMPTY_F64, _core.MODE_GRAD, streaming, p.threads)
    if copy_back:
        np.copyto(grad_moved, out_rows.reshape(grad_moved.shape))
    return p.reduce(row_loss), grad


# --------------------------------------------------------------------------
# building blocks


def _normalize_axes(x, axis):
    if axis is None:
        return tuple(range(x.ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in axes:
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(f"axis must be None, an int or a tuple of ints, got {axis!r}") from None
        out.append(np.lib.array_utils.normalize_axis_index(a, x.ndim, msg_prefix="axis"))
    if len(set(out)) != len(out):
        raise ValueError(f"axis contains a repeated axis: {axis!r}")
    return tuple(out)


def logsumexp(x, axis=None, keepdims=False, *, out=None, num_threads=None):
    """Log of the sum of exponentials, ``log(sum(exp(x), axis))``, stably.

    Parameters
    ----------
    x : array_like of float32 or float64
    axis : None, int or tuple of ints, default None
        Axes to reduce over (all of them by default, as ``scipy.special.logsumexp``).
    keepdims : bool, default False
        Keep the reduced axes with length one.
    out : ndarray, optional
        Output of the result's shape and x's dtype.
    num_threads : int, optional
        As in :func:`cross_entropy`.

    Returns
    -------
    ndarray or scalar
        Of x's dtype; ``-inf`` for an empty reduction.

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> x = np.array([[0.0, 1000.0], [-np.inf, 0.0]], dtype=np.float32)
    >>> xentfast.logsumexp(x, axis=1)
    array([1000.,    0.], dtype=float32)
    """
    x = _float_array(x, "x")
    threads = _num_threads(num_threads)
    axes = _normalize_axes(x, axis)
    keep = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, keep + list(axes))
    lead = moved.shape[:len(keep)]
    k = int(np.prod(moved.shape[len(keep):], dtype=np.int64))
    out_shape = tuple(1 if a in axes else x.shape[a] for a in range(x.ndim)) if keepdims else lead
    if out is not None:
        _check_out(out, out_shape, x.dtype)
    n_rows = int(np.prod(lead, dtype=np.int64))
    lse = np.empty(n_rows, dtype=np.float64)
    if k == 0:
        lse.fill(-np.inf)
    else:
        rows = _rows(moved.reshape(lead + (k,)) if moved.ndim != len(keep) + 1 else moved)
        _core.rows(rows, None, _EMPTY_I64, None, 0, 1.0, _EMPTY_F64, _EMPTY_F64, lse,
                   _core.MODE_LSE, False, threads)
    result = lse.astype(x.dtype).reshape(out_shape)
    if out is not None:
        np.copyto(out, result)
        return out
    return result if result.ndim else result[()]


def _softmax_like(x, axis, out, num_threads, mode, name):
    x = _float_array(x, "x")
    threads = _num_threads(num_threads)
    ax = _class_axis(x, axis, "x")
    if out is None:
        res_moved = np.empty(np.moveaxis(x, ax, -1).shape, dtype=x.dtype)
        result = np.moveaxis(res_moved, -1, ax)
    else:
        _check_out(out, x.shape, x.dtype)
        if not _same_view(out, x) and np.may_share_memory(out, x):
            raise ValueError(f"out overlaps x without being the same array ({name})")
        result = out
        res_moved = np.moveaxis(out, ax, -1)
    if x.size == 0:
        return result
    rows, out_rows, copy_back = _rows_and_out(np.moveaxis(x, ax, -1), res_moved)
    _core.rows(rows, out_rows, _EMPTY_I64, None, 0, 1.0, _EMPTY_F64, _EMPTY_F64, _EMPTY_F64,
               mode, False, threads)
    if copy_back:
        np.copyto(res_moved, out_rows.reshape(res_moved.shape))
    return result


def softmax(x, axis=-1, *, out=None, num_threads=None):
    """Softmax along `axis`: ``exp(x - logsumexp(x))``, in one fused pass.

    Parameters
    ----------
    x : array_like of float32 or float64
    axis : int, default -1
    out : ndarray, optional
        x's shape and dtype; ``out=x`` works in place.
    num_threads : int, optional

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> xentfast.softmax(np.array([0.0, np.log(3.0)], dtype=np.float32))
    array([0.25, 0.75], dtype=float32)
    """
    return _softmax_like(x, axis, out, num_threads, _core.MODE_SOFTMAX, "softmax")


def log_softmax(x, axis=-1, *, out=None, num_threads=None):
    """Log-softmax along `axis`: ``x - logsumexp(x)``, in one fused pass.

    Parameters
    ----------
    x : array_like of float32 or float64
    axis : int, default -1
    out : ndarray, optional
        x's shape and dtype; ``out=x`` works in place.
    num_threads : int, optional

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> xentfast.log_softmax(np.array([0.0, 0.0], dtype=np.float32))
    array([-0.6931472, -0.6931472], dtype=float32)
    """
    return _softmax_like(x, axis, out, num_threads, _core.MODE_LOG_SOFTMAX, "log_softmax")
