"""Fused linear + cross-entropy: a language-model head's loss and gradients
without the N×V logits.

The logits ``hidden @ linear_weight.T`` are computed a chunk of rows at a time
into one reused buffer, turned into their gradient in place by xentfast's
fused kernel, and multiplied back (``grad_hidden = G @ W``,
``grad_linear_weight += G.T @ hidden``) before the next chunk overwrites them.

Design points, each measured or required:

* Rows whose target is ``ignore_index`` are dropped before any GEMM: a padded
  batch pays only for its real tokens; their ``grad_hidden`` rows are 0.
* The forward GEMM is issued in blocks of :func:`block_rows` counted rows
  that start at fixed positions, and chunks are whole blocks: every row's
  logits come out of the same BLAS call whatever the chunk size, so each
  row's loss is the same bits, and the per-row losses are summed in a fixed
  order once all are known.  (NumPy's BLAS gives rows of a product different
  last bits for different numbers of rows per call, so this is what makes the
  loss independent of the chunk size; it also gives different last bits for
  some shapes with a different number of BLAS threads, so the loss is the same
  bits for any ``chunk_size`` and ``num_threads`` at a given BLAS setting.)
* ``grad_linear_weight`` is accumulated over chunks by the BLAS itself
  (``gemm`` with beta = 1, through the CBLAS entry of the OpenBLAS that NumPy
  ships), so no V×D temporary is made per chunk; where NumPy's BLAS does not
  expose that entry, each chunk's product goes through a small slab of
  vocabulary rows and is added in (slower: one more pass over the V×D
  gradient per chunk).
* Threads: NumPy's BLAS and xentfast's OpenMP kernel run one after the other,
  never at once; ``num_threads`` sets the kernel's threads, the BLAS keeps its
  own setting (both follow ``threadpoolctl.threadpool_limits``).  By default
  the kernel runs on one thread while the BLAS runs several, whose workers
  still spin on the other cores when it starts (:func:`default_kernel_threads`).
"""
from __future__ import annotations

import ctypes
import glob
import numbers
import os

import numpy as np

from . import _api, _core

__all__ = ["BLOCK_ROWS", "CHUNK_BYTES", "MAX_BLOCK_BYTES", "block_rows", "linear_cross_entropy",
           "linear_cross_entropy_and_grad"]

#: Memory budget of the reused logits chunk (rows × V × itemsize); the
#: automatic chunk is the largest whole number of blocks within it (at least
#: one block, so a large vocabulary's chunk is one block, over the budget).
CHUNK_BYTES = 128 << 20

#: Rows per forward GEMM call (a chunk is whole blocks, so it is also the
#: smallest chunk).  Each call packs all of W again, so fewer, taller calls
#: pay: 4096 × 1024 @ 1024 × 32000 float32, 2 threads, 699 ms in blocks of 512
#: rows, 653 in blocks of 1024, 625 in one call (``python tools/linear_chunks.py
#: 4096 1024 32000 512,1024,2048,4096 --gemm-blocks``); 2048 × 512 @ 512 ×
#: 128256: 836 / 733 / 664 ms in blocks of 256 / 512 / 1024 (``... 2048 512
#: 128256 256,512,1024 --gemm-blocks``).
BLOCK_ROWS = 1024

#: The most logits one block may hold: a vocabulary whose BLOCK_ROWS rows
#: would pass it gets blocks of half as many rows (float32: V > 65536), so a
#: large vocabulary's smallest chunk stays 512 rows: 2048 × 512 → 128256 took
#: 1.11 and 1.14 × the three GEMMs in blocks of 512 rows, 1.13 and 1.09 in
#: blocks of 1024 (``python -m xentfast.bench.linear --shape 2048 512 128256``
#: with this at 256 and 512 MiB, alternate runs): not worth 501 MiB of logits
#: instead of 250.
MAX_BLOCK_BYTES = 256 << 20

# Vocabulary rows per slab when grad_linear_weight is accumulated by matmul + add
# (the fallback without a CBLAS gemm): the slab stays in L2.
_SLAB_BYTES = 1 << 20


# --------------------------------------------------------------------------
# gemm with beta = 1 on NumPy's own BLAS


class _Cblas:
    """``?gemm`` of the OpenBLAS bundled with NumPy (ILP64 CBLAS), or None."""

    RowMajor, NoTrans, Trans = 101, 111, 112

    def __init__(self, sgemm, dgemm):
        i64 = ctypes.c_int64
        for fn, real in ((sgemm, ctypes.c_float), (dgemm, ctypes.c_double)):
            fn.restype = None
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, real,
                           ctypes.c_void_p, i64, ctypes.c_void_p, i64, real, ctypes.c_void_p,
                           i64]
        self.fns = {np.dtype(np.float32): sgemm, np.dtype(np.float64): dgemm}

    @staticmethod
    def _operand(a):
        """(transpose flag, leading dimension) of a 2-D operand, or None."""
        item = a.itemsize
        if a.strides[1] == item and a.strides[0] % item == 0 and a.strides[0] >= item * max(1, a.shape[1]):
            return _Cblas.NoTrans, a.strides[0] // item
        if a.strides[0] == item and a.strides[1] % item == 0 and a.strides[1] >= item * max(1, a.shape[0]):
            return _Cblas.Trans, a.strides[1] // item
        return None

    def gemm(self, a, b, c, beta):
        """c = a @ b + beta * c in place; False when a layout does not fit."""
        if c.strides[1] != c.itemsize:
            if c.strides[0] != c.itemsize:
                return False
            a, b, c = b.T, a.T, c.T  # c.T is row-major: c.T = b.T @ a.T
        ta, tb, tc = self._operand(a), self._operand(b), self._operand(c)
        if ta is None or tb is None or tc is None or tc[0] != _Cblas.NoTrans:
            return False
        m, k = a.shape
        n = b.shape[1]
        if m == 0 or n == 0:
            return True
        self.fns[c.dtype](self.RowMajor, ta[0], tb[0], m, n, k, 1.0, a.ctypes.data, ta[1],
                          b.ctypes.data, tb[1], beta, c.ctypes.data, tc[1])
        return True


def _openblas_libraries():
    """The OpenBLAS libraries bundled with NumPy, loaded (usually one)."""
    root = os.path.dirname(np.__file__)
    paths = []
    for pattern in ("../numpy.libs/*openblas*", ".dylibs/*openblas*"):
        paths += sorted(glob.glob(os.path.join(root, pattern)))
    for path in paths:
        try:
            yield ctypes.CDLL(path)
        except OSError:
            continue


def _load_cblas():
    """NumPy's bundled OpenBLAS, checked on a small product, or None."""
    if os.environ.get("XENTFAST_LINEAR_GEMM", "").strip().lower() == "numpy":
        return None
    for lib in _openblas_libraries():
        for prefix in ("scipy_cblas_", "cblas_"):
            try:
                blas = _Cblas(getattr(lib, prefix + "sgemm64_"), getattr(lib, prefix + "dgemm64_"))
            except AttributeError:
                continue
            if _cblas_works(blas):
                return blas
    return None


def _load_blas_threads():
    """NumPy's OpenBLAS's ``get_num_threads`` (its current setting, which
    threadpoolctl changes), or None when NumPy's BLAS is another library."""
    for lib in _openblas_libraries():
        for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                     "openblas_get_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype, fn.argtypes = ctypes.c_int, []
                return fn
    return None


def _cblas_works(blas):
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a = rng.standard_normal((5, 3)).astype(dtype)
        b = rng.standard_normal((5, 4)).astype(dtype)
        c = rng.standard_normal((3, 4)).astype(dtype)
        expected = a.T.astype(np.float64) @ b + c
        if not blas.gemm(a.T, b, c, 1.0) or not np.allclose(c, expected, rtol=1e-4, atol=1e-4):
            return False
    return True


_CBLAS = _load_cblas()
_BLAS_THREADS = _load_blas_threads()


def default_kernel_threads():
    """The kernel's threads when ``num_threads`` is None: one while NumPy's
    OpenBLAS runs several, else ``omp_get_max_threads()``.

    OpenBLAS's workers spin for 2**28 clock ticks (0.13 s at 2.1 GHz) after each
    threaded GEMM before they sleep, and every chunk's kernel runs within that
    time of its forward GEMM; a kernel on every core shares them with the
    spinning workers, one kernel thread does not.  Twice each, 2 threads, a
    busy hour: 4096 × 1024 → 32000 took 1.085 and 1.091 × the three GEMMs
    with the kernel on two threads, 1.048 and 1.060 on one; 4096 × 64 →
    128256 (the kernel's largest share) 1.27 and 1.34 against 1.19 and 1.23
    (``python tools/linear_chunks.py N D V 2,1 --kernel-threads``).
    """
    blas = _BLAS_THREADS() if _BLAS_THREADS is not None else None
    return 1 if blas is not None and blas > 1 else _core.max_threads()


def _slab_for(c):
    """The buffer _accumulate_product's fallback adds through: rows of c, at most
    _SLAB_BYTES (allocated, not touched, unless the fallback runs)."""
    rows = max(1, min(c.shape[0], _SLAB_BYTES // max(1, c.shape[1] * c.itemsize)))
    return np.empty((rows, c.shape[1]), dtype=c.dtype)


def _accumulate_product(a, b, c, beta, slab):
    """c = a @ b + beta * c (beta 0 or 1) without a temporary of c's size (slab:
    _slab_for(c), for a BLAS without a CBLAS gemm)."""
    if _CBLAS is not None and _CBLAS.gemm(a, b, c, beta):
        return
    if beta == 0.0:
        np.matmul(a, b, out=c)
        return
    rows = slab.shape[0]
    for v0 in range(0, c.shape[0], rows):
        part = slab[:min(rows, c.shape[0] - v0)]
        np.matmul(a[v0:v0 + rows], b, out=part)
        c[v0:v0 + rows] += part


def block_rows(n_classes, dtype, counted_rows):
    """Rows per forward GEMM call: BLOCK_ROWS, or half of it where that many
    rows of logits would pass MAX_BLOCK_BYTES or be more than half of the
    counted rows (so that a batch of 1024 to 2047 counted rows can still be
    split into chunks).  It depends on the problem only, never on the chunk
    size, so every chunking of a problem has the same blocks."""
    per_row = max(1, int(n_classes)) * np.dtype(dtype).itemsize
    if BLOCK_ROWS * per_row > MAX_BLOCK_BYTES or 2 * BLOCK_ROWS > counted_rows:
        return BLOCK_ROWS // 2
    return BLOCK_ROWS


def auto_chunk_rows(n_classes, dtype, counted_rows):
    """Rows of logits per chunk by default: the whole blocks that fit in
    CHUNK_BYTES, at least one."""
    per_row = max(1, int(n_classes)) * np.dtype(dtype).itemsize
    block = block_rows(n_classes, dtype, counted_rows)
    return max(1, CHUNK_BYTES // per_row // block) * block


# --------------------------------------------------------------------------
# arguments


def _array(value, name, dtype=None):
    a = np.asarray(value)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but hidden has {dtype}: cast one of them "
                        f"(no implicit mixing of precisions)")
    return a


def _blasable(w):
    """w (2-D) as an array the BLAS reads in place (a unit stride along one axis)."""
    item = w.itemsize
    if w.size == 0:
        return w
    if w.flags.aligned and ((w.strides[1] == item and w.strides[0] >= item * w.shape[1])
                            or (w.strides[0] == item and w.strides[1] >= item * w.shape[0])):
        return w
    return np.ascontiguousarray(w)  # once per call: a V×D copy of an odd layout


class _LinearProblem:
    """A validated fused linear + cross-entropy call."""

    def __init__(self, hidden, linear_weight, target, *, linear_bias, weight, sample_weight,
                 ignore_index, reduction, label_smoothing, z_loss, softcap, temperature,
                 chunk_size, num_threads):
        h = _array(hidden, "hidden")
        if h.ndim == 0:
            raise ValueError("hidden must have at least one dimension (the features), got a "
                             "0-d array")
        self.dtype = h.dtype
        w = _array(linear_weight, "linear_weight", h.dtype)
        if w.ndim != 2:
            raise ValueError(f"linear_weight must be 2-D (V, D) as torch.nn.Linear's weight, "
                             f"got shape {w.shape}")
        n_features = h.shape[-1]
        if w.shape[1] != n_features:
            raise ValueError(f"linear_weight has {w.shape[1]} features (shape {w.shape}) but "
                             f"hidden has {n_features} (shape {h.shape})")
        self.n_classes = n_classes = w.shape[0]
        if n_classes == 0:
            raise ValueError("linear_weight has no rows: there must be at least one class")
        self.bias = None
        if linear_bias is not None:
            b = _array(linear_bias, "linear_bias", h.dtype)
            if b.shape != (n_classes,):
                raise ValueError(f"linear_bias must have shape ({n_classes},) (one per row of "
                                 f"linear_weight), got {b.shape}")
            self.bias = b
        self.reduction = _api._reduction(reduction)
        self.threads = (default_kernel_threads() if num_threads is None
                        else _api._num_threads(num_threads))
        self.ignore_index = _api._ignore_index(ignore_index)
        eps = _api._real(label_smoothing, "label_smoothing")
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {eps}")
        lam = _api._real(z_loss, "z_loss")
        if lam < 0:
            raise ValueError(f"z_loss must be >= 0, got {lam}")
        cap = 0.0
        if softcap is not None:
            cap = _api._real(softcap, "softcap")
            if cap <= 0:
                raise ValueError(f"softcap must be > 0 (or None for no cap), got {cap}")
        temp = _api._real(temperature, "temperature")
        if temp <= 0:
            raise ValueError(f"temperature must be > 0, got {temp}")
        if chunk_size is not None:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
                raise TypeError(f"chunk_size must be None or an int, got "
                                f"{type(chunk_size).__name__}")
            if chunk_size < 1:
                raise ValueError(f"chunk_size must be >= 1 (or None for automatic), got "
                                 f"{chunk_size}")
        self.lead_shape = h.shape[:-1]
        self.class_weight = _api._class_weight(weight, n_classes, h.dtype)
        self.sample_weight = _api._sample_weight(sample_weight, self.lead_shape)
        self.options = dict(
            label_smoothing=eps, z_loss=lam, softcap=cap, inv_temperature=1.0 / temp,
            weight_total=float(n_classes if self.class_weight is None
                               else np.sum(self.class_weight, dtype=np.float64)))
        t = np.asarray(target)
        if t.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer class indices, got dtype {t.dtype} "
                            f"(probability targets would be N×V themselves)")
        if t.shape != self.lead_shape:
            raise ValueError(f"target must have hidden's shape without the features, "
                             f"{self.lead_shape}, got {t.shape}")
        t64, self.counted, self.weight_sum = _api._index_targets(
            t, self.lead_shape, n_classes, self.ignore_index, self.class_weight,
            self.sample_weight, self.threads)
        self.n_rows = n_rows = t64.shape[0]
        self.hidden = _blasable(h.reshape(n_rows, n_features))
        self.weight_matrix = w
        self.n_features = n_features
        # the counted rows, in order: only they cost GEMM work
        self.rows = None if self.counted == n_rows else np.flatnonzero(t64 != self.ignore_index)
        self.target = t64 if self.rows is None else t64[self.rows]
        self.block = block_rows(n_classes, self.dtype, self.counted)
        self.chunk = self._chunk_rows(chunk_size)

    def _chunk_rows(self, chunk_size):
        """Rows per chunk: whole blocks, at most the counted rows."""
        if chunk_size is None:
            chunk_size = auto_chunk_rows(self.n_classes, self.dtype, self.counted)
        blocks = max(1, -(-int(chunk_size) // self.block))
        return min(blocks * self.block, max(1, self.counted))

    def compacted(self, per_row):
        """A per-row float64 array restricted to the counted rows."""
        return per_row if self.rows is None or len(per_row) == 0 else per_row[self.rows]

    def row_scales(self, grad_output):
        """(shared scale, per-counted-row scales) of the gradient."""
        if self.reduction == "none":
            if grad_output is None:
                return 1.0, _api._EMPTY_F64
            g = _api._real_array(grad_output, "grad_output")
            try:
                g = np.broadcast_to(g, self.lead_shape)
            except ValueError:
                raise ValueError(f"grad_output must broadcast to the loss shape "
                                 f"{self.lead_shape}, got {g.shape}") from None
            return 1.0, self.compacted(_api._aligned(g, np.float64).reshape(-1))
        g = 1.0
        if grad_output is not None:
            if np.ndim(grad_output) != 0:
                raise ValueError(f"grad_output must be a scalar for reduction="
                                 f"{self.reduction!r}, got shape {np.shape(grad_output)}")
            g = float(_api._real_array(grad_output, "grad_output"))
        if self.reduction == "mean":
            g = _api._divide(g, self.weight_sum)
        return g, _api._EMPTY_F64

    def reduce(self, row_loss):
        """The loss from the counted rows' (weighted) losses, in a fixed order."""
        if self.reduction == "none":
            full = np.zeros(self.n_rows, dtype=self.dtype)
            if self.rows is None:
                full[:] = row_loss
            else:
                full[self.rows] = row_loss
            return full.reshape(self.lead_shape)
        total = _core.fixed_sum(row_loss)
        if self.reduction == "sum":
            return total
        return _api._divide(total, self.weight_sum)

    def run(self, grads=None, scales=None, accumulate=False):
        """Every chunk: logits, loss (and gradients into `grads`, scaled by
        `scales`, row_scales()' result)."""
        m, chunk, d = self.counted, self.chunk, self.n_features
        w = _blasable(self.weight_matrix)
        row_loss = np.empty(m, dtype=np.float64)
        row_weight = None if self.sample_weight is None else self.compacted(self.sample_weight)
        scale, row_scale = (1.0, _api._EMPTY_F64)
        mode = _core.MODE_LOSS
        if grads is not None:
            scale, row_scale = scales
            mode = _core.MODE_GRAD
            grad_hidden, grad_weight, grad_bias = grads
            staged = False
            try:  # grad_hidden as (rows, D), a view when its layout allows
                gh_rows = np.reshape(grad_hidden, (self.n_rows, d), copy=False)
            except ValueError:
                gh_rows = np.empty((self.n_rows, d), dtype=self.dtype)
                staged = True
            if self.rows is not None:
                gh_rows[...] = 0  # ignored rows: exactly 0; counted rows are written below
            if not accumulate:
                if m == 0:
                    grad_weight[...] = 0
                if grad_bias is not None:
                    grad_bias[...] = 0
        if m:
            self._chunks(w, row_loss, row_weight, mode, scale, row_scale,
                         None if grads is None else (gh_rows, grad_weight, grad_bias), accumulate)
        if grads is not None and staged:
            grad_hidden[...] = gh_rows.reshape(grad_hidden.shape)
        return row_loss

    def _chunks(self, w, row_loss, row_weight, mode, scale, row_scale, grads, accumulate):
        m, chunk, d = self.counted, self.chunk, self.n_features
        logits = np.empty((chunk, self.n_classes), dtype=self.dtype)
        gathered = None if self.rows is None else np.empty((chunk, d), dtype=self.dtype)
        gh_chunk = slab = None
        if grads is not None:
            gh_rows, grad_weight, grad_bias = grads
            slab = _slab_for(grad_weight)
            if self.rows is not None:
                gh_chunk = np.empty((chunk, d), dtype=self.dtype)
        wt = w.T
        for start in range(0, m, chunk):
            stop = min(m, start + chunk)
            rows = stop - start
            if gathered is None:
                h_c = self.hidden[start:stop]
            else:
                h_c = np.take(self.hidden, self.rows[start:stop], axis=0, out=gathered[:rows])
            z = logits[:rows]
            for b0 in range(0, rows, self.block):  # fixed blocks: see the module docstring
                b1 = min(rows, b0 + self.block)
                np.matmul(h_c[b0:b1], wt, out=z[b0:b1])
            if self.bias is not None:
                z += self.bias
            _api._run(z, z if grads is not None else None, mode, self.threads,
                      in_place=grads is not None, target=self.target[start:stop],
                      weight=self.class_weight, ignore_index=self.ignore_index, scale=scale,
                      row_scale=row_scale[start:stop] if len(row_scale) else row_scale,
                      row_loss=row_loss[start:stop],
                      row_weight=None if row_weight is None else row_weight[start:stop],
                      **self.options)
            if grads is None:
                continue
            # z now holds G = d loss / d logits of this chunk's rows
            if gh_chunk is None:
                np.matmul(z, w, out=gh_rows[start:stop])
            else:
                np.matmul(z, w, out=gh_chunk[:rows])
                gh_rows[self.rows[start:stop]] = gh_chunk[:rows]
            _accumulate_product(z.T, h_c, grad_weight, 1.0 if accumulate or start else 0.0, slab)
            if grad_bias is not None:
                grad_bias += np.add.reduce(z, axis=0)


def _problem(hidden, linear_weight, target, linear_bias, weight, sample_weight, ignore_index,
             reduction, label_smoothing, z_loss, softcap, temperature, chunk_size, num_threads):
    return _LinearProblem(hidden, linear_weight, target, linear_bias=linear_bias, weight=weight,
                          sample_weight=sample_weight, ignore_index=ignore_index,
                          reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                          softcap=softcap, temperature=temperature, chunk_size=chunk_size,
                          num_threads=num_threads)


def linear_cross_entropy(hidden, linear_weight, target, *, linear_bias=None, weight=None,
                         sample_weight=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0, z_loss=0.0, softcap=None, temperature=1.0,
                         chunk_size=None, num_threads=None):
    """Cross-entropy of the logits ``hidden @ linear_weight.T (+ linear_bias)``
    against `target`, without ever holding all the logits.

    ``cross_entropy(hidden @ linear_weight.T + linear_bias, target, ...)`` with
    the logits computed a chunk of rows at a time into one reused buffer (see
    :data:`CHUNK_BYTES`); rows whose target is `ignore_index` cost no GEMM
    work.  PyTorch's ``torch.nn.functional.linear_cross_entropy``, plus
    xentfast's options.

    Parameters
    ----------
    hidden : ndarray of float32 or float64, shape (..., D)
        The features of every token (a language model's last hidden states).
    linear_weight : ndarray of shape (V, D), hidden's dtype
        The output layer's weight, as ``torch.nn.Linear.weight`` (any strides).
    target : array_like of int, hidden's shape without D
        Class indices in ``[0, V)``, or `ignore_index`.
    linear_bias : ndarray of shape (V,), optional
        The output layer's bias.
    weight, sample_weight, ignore_index, reduction, label_smoothing, z_loss, softcap, temperature
        Exactly as in :func:`xentfast.cross_entropy` (class weights, row weights,
        the three reductions, smoothing, z-loss, softcap, temperature).
    chunk_size : int, optional
        Rows of logits held at once; rounded up to a whole number of blocks
        (:func:`block_rows`: 1024 rows; 512 for float32 vocabularies over
        65536 classes and for fewer than 2048 counted rows).  Default: as
        many blocks as fit in :data:`CHUNK_BYTES` (at least one).  The loss
        is the same bits for every chunk size.
    num_threads : int, optional
        Threads of the cross-entropy kernel (default: one while NumPy's
        OpenBLAS runs several threads, see :func:`default_kernel_threads`,
        else ``omp_get_max_threads()``); the GEMMs use NumPy's BLAS with its
        own setting.

    Returns
    -------
    float or ndarray
        As :func:`xentfast.cross_entropy`: a float for ``"mean"``/``"sum"``,
        per-row losses of hidden's dtype for ``"none"`` (0 for ignored rows).

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> rng = np.random.default_rng(0)
    >>> hidden = rng.standard_normal((6, 4)).astype(np.float32)
    >>> w = rng.standard_normal((10, 4)).astype(np.float32)
    >>> target = np.array([1, 2, 3, -100, 5, 9])
    >>> loss = xentfast.linear_cross_entropy(hidden, w, target)
    >>> bool(np.isclose(loss, xentfast.cross_entropy(hidden @ w.T, target)))
    True
    """
    p = _problem(hidden, linear_weight, target, linear_bias, weight, sample_weight, ignore_index,
                 reduction, label_smoothing, z_loss, softcap, temperature, chunk_size,
                 num_threads)
    return p.reduce(p.run())


def _grad_out(out, accumulate, p, hidden, linear_weight):
    """The three gradient buffers: checked `out` entries or new arrays."""
    if out is None:
        out = (None, None, None)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise TypeError("out must be a tuple (grad_hidden, grad_linear_weight, "
                        "grad_linear_bias), any entry None to allocate it")
    d, v = p.n_features, p.n_classes
    shapes = ((p.lead_shape + (d,), "out[0] (grad_hidden)"),
              ((v, d), "out[1] (grad_linear_weight)"),
              ((v,), "out[2] (grad_linear_bias)"))
    if p.bias is None and out[2] is not None:
        raise ValueError("out[2] (grad_linear_bias) given but there is no linear_bias")
    if accumulate and (out[1] is None or (p.bias is not None and out[2] is None)):
        raise ValueError("accumulate=True adds into out[1] (grad_linear_weight) and out[2] "
                         "(grad_linear_bias, with a bias): pass them")
    bufs = []
    for k, (buf, (shape, name)) in enumerate(zip(out, shapes)):
        if k == 2 and p.bias is None:
            bufs.append(None)
            continue
        if buf is None:
            bufs.append(None)
            continue
        _api._check_out(buf, shape, p.dtype, name)
        for other, other_name in ((hidden, "hidden"), (linear_weight, "linear_weight")):
            if np.may_share_memory(buf, other):
                raise ValueError(f"{name} overlaps {other_name}")
        bufs.append(buf)
    for i in range(3):
        for j in range(i):
            if bufs[i] is not None and bufs[j] is not None and np.may_share_memory(bufs[i], bufs[j]):
                raise ValueError(f"{shapes[i][1]} overlaps {shapes[j][1]}")
    for k, (shape, _) in enumerate(shapes):
        if bufs[k] is None and (k < 2 or p.bias is not None):
            bufs[k] = np.empty(shape, dtype=p.dtype)
    return tuple(bufs)


def linear_cross_entropy_and_grad(hidden, linear_weight, target, *, linear_bias=None,
                                  weight=None, sample_weight=None, ignore_index=-100,
                                  reduction="mean", label_smoothing=0.0, z_loss=0.0,
                                  softcap=None, temperature=1.0, chunk_size=None,
                                  num_threads=None, grad_output=None, out=None,
                                  accumulate=False):
    """:func:`linear_cross_entropy` and its gradients with respect to `hidden`,
    `linear_weight` and `linear_bias`, without the N×V logits.

    Per chunk of counted rows: logits by one GEMM into a reused buffer, their
    gradient G written over them by the fused kernel, then
    ``grad_hidden = G @ linear_weight`` and ``grad_linear_weight += G.T @ hidden``
    (accumulated by the BLAS, no V×D temporary).  Arguments as
    :func:`linear_cross_entropy`, plus:

    Parameters
    ----------
    grad_output : float or array_like, optional
        Upstream gradient: a scalar for ``"mean"``/``"sum"`` (default 1), the
        loss's shape for ``"none"`` (default ones).
    out : tuple (grad_hidden, grad_linear_weight, grad_linear_bias), optional
        Caller-owned gradient buffers of the shapes of hidden, linear_weight
        and linear_bias and hidden's dtype; any entry may be None (allocated),
        and the last must be None without a bias.
    accumulate : bool, default False
        Add into ``out[1]`` and ``out[2]`` (which must be given) instead of
        overwriting them: gradient accumulation over micro-batches with no
        V×D temporary.  ``grad_hidden`` is always overwritten.

    Returns
    -------
    loss : float or ndarray
    grad_hidden : ndarray, hidden's shape (0 on ignored rows)
    grad_linear_weight : ndarray, (V, D)
    grad_linear_bias : ndarray (V,), or None without a bias
        All of hidden's dtype (float32 gradients accumulate in float32,
        float64 in float64).

    Examples
    --------
    >>> import numpy as np, xentfast
    >>> rng = np.random.default_rng(0)
    >>> hidden = rng.standard_normal((6, 4)).astype(np.float32)
    >>> w = rng.standard_normal((10, 4)).astype(np.float32)
    >>> target = np.array([1, 2, 3, -100, 5, 9])
    >>> loss, gh, gw, gb = xentfast.linear_cross_entropy_and_grad(hidden, w, target)
    >>> gh.shape, gw.shape, gb is None, bool(np.all(gh[3] == 0))
    ((6, 4), (10, 4), True, True)
    >>> _, g = xentfast.cross_entropy_and_grad(hidden @ w.T, target)
    >>> bool(np.allclose(gw, g.T @ hidden, atol=1e-6))
    True
    """
    p = _problem(hidden, linear_weight, target, linear_bias, weight, sample_weight, ignore_index,
                 reduction, label_smoothing, z_loss, softcap, temperature, chunk_size,
                 num_threads)
    if not isinstance(accumulate, (bool, np.bool_)):
        raise TypeError(f"accumulate must be a bool, got {type(accumulate).__name__}")
    grads = _grad_out(out, bool(accumulate), p, hidden, linear_weight)
    scales = p.row_scales(grad_output)  # checked before any work
    row_loss = p.run(grads, scales, bool(accumulate))
    return (p.reduce(row_loss),) + grads
