"""Property-based fuzzing of every public function against the float64 oracle.

Each example builds one call from random pieces -- dtypes (float16/32/64,
integers, bool, complex, object, strings), shapes (0-d, empty axes, C = 1,
C across the SIMD widths and the 2048-element segment), layouts (reversed,
sliced, transposed, Fortran, zero-stride broadcast views, read-only,
misaligned, nested lists), NaN/±inf placements, targets (in and out of range,
ignore_index, wrong dtype or shape) and options (valid and invalid) -- and
checks the contract of the public API:

* the call returns a result that agrees with ``xentfast.reference`` (NaN
  where the oracle has NaN), or raises ``TypeError``/``ValueError``; never any
  other exception, never a crash;
* a call whose every piece is valid succeeds; a call with a piece that is
  invalid by the documented rules raises (no silently wrong answer);
* the inputs are never modified (except ``out=``, which the caller asked for).

Values come from a NumPy generator seeded by hypothesis, so hypothesis
shrinks the structure of a failing call (dtype, shape, layout, options) and
its seed rather than every element.

Examples per run: ``XENTFAST_FUZZ_EXAMPLES`` (default 10_000) split over the
functions below; the ``slow`` variants run 10**6 in total.
"""
from __future__ import annotations

import inspect
import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import xentfast
from xentfast import reference

from helpers import under_sanitizer

TOTAL_EXAMPLES = int(os.environ.get("XENTFAST_FUZZ_EXAMPLES", "10000"))
SLOW_EXAMPLES = 10 ** 6

# Class counts around the vector widths (8, 16 lanes), the unrolls and the
# 2048-element segment of the kernels; the large ones only with few rows.
SMALL_C = (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65)
LARGE_C = (2047, 2048, 2049, 4097)
DIMS = (0, 1, 1, 2, 3, 4, 5)
VALUE_SCALES = (0.0, 1e-3, 1.0, 1.0, 3.0, 10.0)

FLOAT_DTYPES = (np.float32, np.float32, np.float64, np.float16)
BAD_DTYPES = (np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.complex128, object, "U3")
INT_DTYPES = (np.int64, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32,
              np.uint64, np.intp)


UNDER_SANITIZER = under_sanitizer()  # the ASan+UBSan build of tools/sanitize.sh
LAYOUTS = ("contiguous", "contiguous", "fortran", "reversed", "sliced", "transposed",
           "broadcast", "readonly", "unaligned", "list")


def _params(name):
    return inspect.signature(getattr(xentfast, name)).parameters


class Case:
    """One fuzzed call: the arguments and what the contract expects of it."""

    def __init__(self):
        self.invalid = []      # reasons the call must raise TypeError/ValueError
        self.uncertain = []    # pieces whose validity the API may decide either way
        self.kwargs = {}
        self.name = "?"
        self.args = ()

    def bad(self, why):
        self.invalid.append(why)

    def unsure(self, why):
        self.uncertain.append(why)

    def describe(self):
        return f"invalid={self.invalid} uncertain={self.uncertain}"


# --------------------------------------------------------------------------
# values and layouts


def _values(rng, shape, dtype, scale, special):
    """Random values of `shape` and `dtype`, with NaN/±inf placed as asked."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        x = rng.standard_normal(shape) * scale
        if x.size and special != "none":
            flat = x.reshape(-1)
            k = max(1, flat.size // 8)
            where = rng.integers(0, flat.size, size=k)
            if special == "nan":
                flat[where] = np.nan
            elif special == "posinf":
                flat[where] = np.inf
            elif special == "neginf":
                flat[where] = -np.inf
            elif special == "mix":
                flat[where] = rng.choice([np.nan, np.inf, -np.inf], size=k)
            elif special == "row_neginf" and x.ndim:
                x[(rng.integers(0, x.shape[0]),)] = -np.inf
            elif special == "huge":
                flat[where] = rng.choice([1e4, -1e4, 60000.0], size=k)
        with np.errstate(over="ignore"):
            return x.astype(dtype)
    if dtype.kind in "iu":
        lo = 0 if dtype.kind == "u" else -5
        return rng.integers(lo, 6, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.kind == "O":
        return rng.standard_normal(shape).astype(object)
    return np.full(shape, "ab", dtype=dtype)


def _layout(draw, make, shape, allow_list=True):
    """An array of logical `shape` built by `make(shape)`, in a random memory
    layout.  Returns (array_like, layout name)."""
    layout = draw(st.sampled_from(LAYOUTS))
    ndim = len(shape)
    if layout == "list" and not allow_list or ndim == 0:
        return make(shape), "contiguous"
    if layout == "fortran":
        return np.asfortranarray(make(shape)), layout
    if layout == "reversed":
        return make(shape)[(slice(None, None, -1),) * ndim], layout
    if layout == "sliced" and ndim:
        k = draw(st.integers(0, ndim - 1))
        start = draw(st.integers(0, 1))
        big = list(shape)
        big[k] = 2 * shape[k] + start
        index = [slice(None)] * ndim
        index[k] = slice(start, None, 2)
        return make(tuple(big))[tuple(index)], layout
    if layout == "transposed" and ndim > 1:
        perm = draw(st.permutations(range(ndim)))
        base_shape = [0] * ndim
        for i, p in enumerate(perm):
            base_shape[p] = shape[i]
        return make(tuple(base_shape)).transpose(perm), layout
    if layout == "broadcast" and ndim:
        small = tuple(1 if draw(st.booleans()) else n for n in shape)
        return np.broadcast_to(make(small), shape), layout
    if layout == "readonly":
        a = make(shape)
        a.flags.writeable = False
        return a, layout
    if layout == "unaligned":
        a = make(shape)
        if a.dtype.kind in "OU" or a.itemsize == 1:
            return a, "contiguous"
        buf = bytearray(a.nbytes + 1)
        u = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(shape)
        u[...] = a
        return u, layout
    if layout == "list" and ndim and 0 < int(np.prod(shape)) <= 64:
        return make(shape).tolist(), layout
    return make(shape), "contiguous"


def _embed(draw, a):
    """The values of array `a` (a target) in a random memory layout."""
    layout = draw(st.sampled_from(LAYOUTS))
    ndim = a.ndim
    if ndim == 0:
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "reversed":
        rev = (slice(None, None, -1),) * ndim
        return a[rev].copy()[rev]
    if layout == "sliced":
        k = draw(st.integers(0, ndim - 1))
        start = draw(st.integers(0, 1))
        big_shape = list(a.shape)
        big_shape[k] = 2 * a.shape[k] + start
        big = np.zeros(big_shape, a.dtype)
        index = [slice(None)] * ndim
        index[k] = slice(start, None, 2)
        big[tuple(index)] = a
        return big[tuple(index)]
    if layout == "transposed" and ndim > 1:
        perm = draw(st.permutations(range(ndim)))
        return a.transpose(np.argsort(perm)).copy().transpose(perm)
    if layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if layout == "unaligned" and a.itemsize > 1 and a.dtype.kind not in "OU":
        buf = bytearray(a.nbytes + 1)
        u = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        u[...] = a
        return u
    if layout == "list" and 0 < a.size <= 64:
        return a.tolist()
    return a


def _array(draw, shape, dtype, *, special=True, scale=None, allow_list=True):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    if scale is None:
        scale = draw(st.sampled_from(VALUE_SCALES))
    kind = "none"
    if special:
        kind = draw(st.sampled_from(("none", "none", "none", "nan", "posinf", "neginf", "mix",
                                     "row_neginf", "huge")))
    return _layout(draw, lambda s: _values(rng, s, dtype, scale, kind), shape, allow_list)


def _snapshot(*values):
    """Byte-exact copies of the array-like inputs (to check they are not modified)."""
    snap = []
    for v in values:
        if isinstance(v, np.ndarray):
            snap.append((v, v.copy()))
        elif isinstance(v, list):
            import copy
            snap.append((v, copy.deepcopy(v)))
    return snap


def _is_nan(v):
    return isinstance(v, float) and math.isnan(v)


def _unchanged(snap, skip=()):
    for original, copy in snap:
        if any(original is s for s in skip):
            continue
        if isinstance(original, np.ndarray):
            if original.dtype.kind == "O":
                same = all(a is b or a == b or (_is_nan(a) and _is_nan(b))
                           for a, b in zip(original.ravel(), copy.ravel()))
            else:
                same = original.tobytes() == copy.tobytes()
        else:
            same = repr(original) == repr(copy)
        assert same, "an input was modified by the call"


# --------------------------------------------------------------------------
# comparisons


def _tolerances(dtype):
    """(rtol, atol) of a result computed from inputs of `dtype`."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return 1e-9, 1e-9
    if dtype == np.float16:
        return 2e-3, 2e-3
    return 1e-5, 1e-5


def _close(actual, expected, dtype, what, scale=1.0):
    """actual ~ expected: same shape, NaN where the oracle has NaN, infinities
    equal, finite values within tolerance (atol scaled by `scale`)."""
    rtol, atol = _tolerances(dtype)
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if np.dtype(dtype) == np.float16:  # the result is rounded to float16 (65504 -> inf)
        with np.errstate(over="ignore"):
            e = e.astype(np.float16).astype(np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != oracle's {e.shape}"
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * max(1.0, scale), equal_nan=True,
                               err_msg=what)


def _magnitude(values):
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else 1.0


def _describe(v):
    if isinstance(v, np.ndarray):
        return (f"array(shape={v.shape}, dtype={v.dtype}, strides={v.strides}, "
                f"writeable={v.flags.writeable}, aligned={v.flags.aligned}, "
                f"values={np.array2string(v.ravel()[:12], precision=4)})")
    if isinstance(v, list):
        return f"list(shape={np.shape(v)})"
    return repr(v)


def _call(case, fast, oracle, compare, inputs=()):
    """Run one fuzzed call and check the contract (see the module docstring)."""
    note(f"{case.name}(" + ", ".join(_describe(v) for v in case.args) + ", "
         + ", ".join(f"{k}={_describe(v)}" for k, v in case.kwargs.items()
                     if not k.startswith("_")) + ")")
    note(case.describe())
    snap = _snapshot(*inputs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = fast()
    except (TypeError, ValueError) as exc:
        assert not (not case.invalid and not case.uncertain), (
            f"a valid call raised {type(exc).__name__}: {exc}  [{case.describe()}]")
        _unchanged(snap, skip=case.kwargs.get("_skip_unchanged", ()))
        return
    assert not case.invalid, (
        f"an invalid call returned instead of raising  [{case.describe()}]")
    _unchanged(snap, skip=case.kwargs.get("_skip_unchanged", ()))
    try:
        compare(result, oracle())
    except AssertionError:
        _dump(case)
        raise


def _dump(case):
    """XENTFAST_FUZZ_DUMP=path: pickle the failing call (name, args, kwargs)
    there, to turn it into a reproducer."""
    path = os.environ.get("XENTFAST_FUZZ_DUMP")
    if path:
        import pickle
        with open(path, "wb") as f:
            pickle.dump((case.name, case.args, {k: v for k, v in case.kwargs.items()
                                                if not k.startswith("_")}), f)


# --------------------------------------------------------------------------
# options shared by the cross-entropy family


def _draw_shape(draw, case, *, min_ndim=1):
    """(shape, class axis, C) for logits; may be invalid (0-d, no classes)."""
    ndim = draw(st.integers(0, 3))
    if ndim < min_ndim:
        case.bad("0-d logits")
        return (), -1, 0
    large = draw(st.integers(0, 9)) == 0
    c = draw(st.sampled_from(LARGE_C if large else SMALL_C))
    if draw(st.integers(0, 29)) == 0:
        c = 0
        case.bad("no classes")
    lead = [draw(st.sampled_from((1, 2, 3) if large else DIMS)) for _ in range(ndim - 1)]
    axis_pos = draw(st.integers(0, ndim - 1))
    shape = lead[:axis_pos] + [c] + lead[axis_pos:]
    axis = draw(st.sampled_from((axis_pos, axis_pos - ndim)))
    return tuple(shape), axis, c


def _draw_axis_arg(draw, case, axis, ndim):
    choice = draw(st.integers(0, 19))
    if choice == 0:
        case.bad("axis out of range")
        return draw(st.sampled_from((ndim, -ndim - 1, 7)))
    if choice == 1:
        case.bad("axis not an int")
        return draw(st.sampled_from((1.0, "0", None, (0,))))
    if choice == 2:
        return np.int64(axis)
    return axis


def _draw_logits(draw, case, shape):
    if draw(st.integers(0, 9)) == 0:
        dtype = draw(st.sampled_from(BAD_DTYPES))
        case.bad(f"logits dtype {np.dtype(dtype)}")
    else:
        dtype = draw(st.sampled_from(FLOAT_DTYPES))
    # a nested list of floats (array_like) is float64 whatever the dtype drawn;
    # object arrays would turn into valid float lists, so no list for them
    x, layout = _array(draw, shape, dtype, allow_list=np.dtype(dtype) != object)
    return x, np.asarray(x).dtype, layout


def _draw_int_target(draw, case, lead, c, ignore_index):
    n = int(np.prod(lead)) if lead else 1
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    hi = min(c, int(np.iinfo(dtype).max) + 1) if c else 1
    t = rng.integers(0, max(hi, 1), size=lead)
    info = np.iinfo(dtype)
    can_ignore = isinstance(ignore_index, (int, np.integer)) and not isinstance(
        ignore_index, bool) and info.min <= int(ignore_index) <= info.max
    if n and can_ignore and draw(st.booleans()):
        t.reshape(-1)[rng.random(n) < 0.3] = int(ignore_index)
    if n and c and draw(st.integers(0, 7)) == 0:
        bad = [v for v in (c, c + 7, -1, -101, 2 ** 40) if info.min <= v <= info.max
               and v != ignore_index]
        if bad:
            t.reshape(-1)[rng.integers(0, n)] = draw(st.sampled_from(bad))
            case.bad("target out of range")
    t = t.astype(dtype)
    if draw(st.integers(0, 3)) == 0:
        return _embed(draw, t)
    return t


def _draw_prob_target(draw, case, shape, axis):
    dtype = draw(st.sampled_from((np.float32, np.float64, np.float16)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    p = rng.random(shape)
    if p.size and draw(st.booleans()):  # normalised along the class axis
        p = p / p.sum(axis=axis, keepdims=True)
    p = p.astype(dtype)
    if draw(st.integers(0, 3)) == 0:
        return _embed(draw, p)
    return p


def _draw_target(draw, case, shape, axis, c, ignore_index):
    lead = tuple(n for i, n in enumerate(shape) if i != (axis % len(shape))) if shape else ()
    kind = draw(st.integers(0, 19))
    if kind < 13:
        return _draw_int_target(draw, case, lead, c, ignore_index)
    if kind < 16:
        return _draw_prob_target(draw, case, shape, axis)
    if kind == 16:
        case.bad("target of a wrong shape")
        return np.zeros(lead + (2,), np.int64) if lead != (2,) else np.zeros((3,), np.int64)
    if kind == 17:
        case.bad("target of a wrong dtype")
        return np.zeros(lead, draw(st.sampled_from((np.bool_, np.complex64, object, "U2"))))
    if kind == 18:
        case.bad("float target of the loss's shape (not the logits')")
        if lead == shape:  # C = 1 with 1-d logits: the shapes coincide
            return np.zeros(lead + (2,), np.float32)
        return np.zeros(lead, np.float32)
    if len(lead) == 1 and lead[0]:  # a list of class indices (array_like)
        return [int(v) for v in np.random.default_rng(lead[0]).integers(0, max(c, 1), lead[0])]
    return np.zeros(lead, np.int64)


def _real_option(draw, case, name, valid, invalid, *, unsure=()):
    k = draw(st.integers(0, 9))
    if k == 0 and invalid:
        value = draw(st.sampled_from(invalid))
        case.bad(f"{name}={value!r}")
        return value
    if k == 1 and unsure:
        value = draw(st.sampled_from(unsure))
        case.unsure(f"{name}={value!r}")
        return value
    return draw(valid)


def _draw_ce_options(draw, case, name, shape, axis, c, lead):
    """Keyword options of a cross-entropy-like function (those it has)."""
    params = _params(name)
    kw = {}
    ndim = len(shape)
    if "axis" in params:
        kw["axis"] = _draw_axis_arg(draw, case, axis, ndim) if ndim else axis
    if "ignore_index" in params:
        k = draw(st.integers(0, 9))
        if k == 0:
            kw["ignore_index"] = draw(st.sampled_from((1.5, True, "1", None)))
            case.bad("ignore_index not an int")
        elif k < 4 and c:
            kw["ignore_index"] = draw(st.integers(0, c - 1))
        elif k == 4:
            kw["ignore_index"] = np.int64(-1)
        else:
            kw["ignore_index"] = -100
    if "reduction" in params:
        k = draw(st.integers(0, 14))
        if k == 0:
            kw["reduction"] = draw(st.sampled_from(("avg", None, "MEAN", 0)))
            case.bad("reduction unknown")
        else:
            kw["reduction"] = draw(st.sampled_from(("mean", "sum", "none")))
    if "weight" in params and draw(st.integers(0, 2)) == 0:
        k = draw(st.integers(0, 9))
        seed = draw(st.integers(0, 2 ** 32 - 1))
        w = np.random.default_rng(seed).uniform(0.0, 3.0, size=max(c, 1))
        if k == 0:
            kw["weight"] = np.ones(c + 1)
            case.bad("weight of a wrong length")
        elif k == 1:
            kw["weight"] = w.astype(np.complex64)
            case.bad("complex weight")
        elif k == 2:
            kw["weight"] = w.reshape(1, -1)
            case.bad("2-d weight")
        elif k == 3:
            kw["weight"] = list(w[:c])
        elif k == 4 and c:
            w = w[:c].copy()
            w[draw(st.integers(0, c - 1))] = draw(st.sampled_from((np.nan, np.inf, -np.inf)))
            kw["weight"] = w
            case.bad("non-finite weight")
        elif k == 5 and c:
            # negative class weights: allowed, as in PyTorch (all of one sign, so that
            # no sum cancels and the tolerances keep their meaning)
            kw["weight"] = -(w[:c] + 0.5)
        else:
            dtype = draw(st.sampled_from((np.float32, np.float64, np.float16, np.int64)))
            kw["weight"] = (w * (3 if dtype == np.int64 else 1)).astype(dtype)[:c]
    if "sample_weight" in params and draw(st.integers(0, 2)) == 0:
        k = draw(st.integers(0, 9))
        seed = draw(st.integers(0, 2 ** 32 - 1))
        s = np.random.default_rng(seed).uniform(0.0, 3.0, size=lead)
        if k == 0:
            kw["sample_weight"] = np.ones(tuple(lead) + (2,))
            case.bad("sample_weight of a wrong shape")
        elif k == 1:
            kw["sample_weight"] = s.astype(np.complex128)
            case.bad("complex sample_weight")
        elif k == 2:
            kw["sample_weight"] = 2.0
            case.unsure("scalar sample_weight")
        elif k == 3 and s.size:
            s = s.astype(np.float64)
            s.reshape(-1)[draw(st.integers(0, s.size - 1))] = draw(
                st.sampled_from((-1.0, -1e-300, np.nan, np.inf)))
            kw["sample_weight"] = s
            case.bad("negative or non-finite sample_weight")
        else:
            kw["sample_weight"] = s.astype(draw(st.sampled_from((np.float32, np.float64))))
    if "label_smoothing" in params and draw(st.booleans()):
        kw["label_smoothing"] = _real_option(
            draw, case, "label_smoothing", st.sampled_from((0.0, 0.1, 0.5, 1.0, 0.05)),
            (-0.1, 1.5, float("nan"), "0.1", None))
    if "z_loss" in params and draw(st.integers(0, 2)) == 0:
        kw["z_loss"] = _real_option(draw, case, "z_loss", st.sampled_from((0.0, 1e-4, 1e-2, 0.5)),
                                    (-1e-3, float("nan"), "x"))
    if "softcap" in params and draw(st.integers(0, 2)) == 0:
        kw["softcap"] = _real_option(draw, case, "softcap",
                                     st.sampled_from((None, 1.0, 5.0, 30.0)),
                                     (0.0, -5.0, float("nan"), "30"),
                                     unsure=(float("inf"),))
    if "temperature" in params and draw(st.integers(0, 2)) == 0:
        kw["temperature"] = _real_option(draw, case, "temperature",
                                         st.sampled_from((1.0, 0.5, 2.0, 0.7)),
                                         (0.0, -1.0, float("nan"), "1"),
                                         unsure=(float("inf"),))
    if "num_threads" in params and draw(st.booleans()):
        k = draw(st.integers(0, 9))
        if k == 0:
            kw["num_threads"] = draw(st.sampled_from((0, -1, 1.5, True, "2")))
            case.bad("num_threads invalid")
        else:
            kw["num_threads"] = draw(st.sampled_from((None, 1, 2, 3, 8, np.int32(2))))
    return kw


def _oracle_kwargs(kw, name):
    """The subset of `kw` the oracle function `name` takes."""
    params = inspect.signature(getattr(reference, name)).parameters
    return {k: v for k, v in kw.items() if k in params and not k.startswith("_")}


def _as_f64(x):
    return np.asarray(x, dtype=np.float64)


def _loss_scale(kw, logits):
    """Scale of the loss's absolute error: weights, z-loss and the logits'
    magnitude (float32 rounding of z = x/T before the cancellation lse - z_y)."""
    s = 1.0
    for key in ("weight", "sample_weight"):
        if kw.get(key) is not None:
            s *= max(1.0, _magnitude(kw[key]))
    mag = _magnitude(logits) / float(kw.get("temperature", 1.0) or 1.0)
    if kw.get("softcap"):
        mag = min(mag, float(kw["softcap"]))
    s *= max(1.0, mag / 10.0)
    s *= 1.0 + float(kw.get("z_loss", 0.0) or 0.0) * (mag + 10.0)
    return s


def _result_dtype(dtype):
    return np.dtype(np.float32) if np.dtype(dtype) == np.float16 else np.dtype(dtype)


# --------------------------------------------------------------------------
# the properties, one per public function


def _zero_denominator(kw, target, lead, axis):
    """True when the 'mean' reduction divides by zero (all rows ignored, or
    their class/sample weights sum to 0).  Both xentfast and the oracle then
    divide with IEEE rules, as PyTorch: NaN for 0/0, ±inf otherwise."""
    t = np.asarray(target)
    n = int(np.prod(lead))
    s = kw.get("sample_weight")
    s = np.ones(n) if s is None else np.broadcast_to(_as_f64(s), lead).reshape(n)
    if t.dtype.kind == "f":
        return float(np.sum(s)) == 0.0
    y = t.reshape(n).astype(np.int64)
    counted = y != kw.get("ignore_index", -100)
    w = kw.get("weight")
    wy = np.ones(n) if w is None else _as_f64(w)[np.where(counted, y, 0)]
    return float(np.sum((s * wy)[counted])) == 0.0


def check_cross_entropy(data, with_grad):
    draw = data.draw
    name = "cross_entropy_and_grad" if with_grad else "cross_entropy"
    case = Case()
    shape, axis, c = _draw_shape(draw, case)
    if not shape:
        logits = _values(np.random.default_rng(0), (), draw(st.sampled_from(FLOAT_DTYPES)), 1, "none")
        dtype, lead = logits.dtype, ()
    else:
        logits, dtype, _ = _draw_logits(draw, case, shape)
        lead = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    kw = _draw_ce_options(draw, case, name, shape, axis, c, lead)
    ignore_index = kw.get("ignore_index", -100)
    target = (_draw_target(draw, case, shape, axis, c, ignore_index) if shape
              else np.zeros((), np.int64))
    reduction = kw.get("reduction", "mean")
    params = _params(name)
    if "return_z_loss" in params and draw(st.integers(0, 3)) == 0:
        kw["return_z_loss"] = True

    if with_grad:
        _draw_grad_output(draw, case, kw, reduction, lead)
        _draw_out(draw, case, kw, logits, dtype)

    inputs = [logits, target] + [kw.get(k) for k in ("weight", "sample_weight", "grad_output")]
    if kw.get("out") is logits:
        kw["_skip_unchanged"] = (logits,)
    before = np.array(logits, copy=True) if isinstance(logits, np.ndarray) else logits
    fast_kw = {k: v for k, v in kw.items() if not k.startswith("_")}
    fn = getattr(xentfast, name)
    okw = _oracle_kwargs(kw, name)
    okw.pop("out", None)

    def oracle():
        x64 = _as_f64(before)
        if with_grad:
            loss, grad = reference.cross_entropy_and_grad(x64, target, **okw)
        else:
            loss, grad = reference.cross_entropy(x64, target, **okw), None
        z = None
        if kw.get("return_z_loss"):
            zkw = {k: v for k, v in okw.items() if k != "grad_output"}
            z = reference.cross_entropy_z_loss(x64, target, **zkw)
        return loss, z, grad

    def compare(result, expected):
        loss_ref, z_ref, grad_ref = expected
        if kw.get("return_z_loss"):
            loss, z = result[0], result[1]
        else:
            loss, z = (result[0] if with_grad else result), None
        scale = _loss_scale(kw, before)
        rdt = _result_dtype(dtype)
        if reduction == "mean" and _zero_denominator(kw, target, lead, axis):
            assert not math.isfinite(loss), loss  # x/0: NaN or ±inf, never a number
            return
        if reduction == "none":
            assert isinstance(loss, np.ndarray) and loss.dtype == dtype, type(loss)
        else:
            assert isinstance(loss, float), type(loss)
        _close(loss, loss_ref, rdt if reduction != "none" else dtype, "loss", scale)
        if z is not None:
            _close(z, z_ref, rdt if reduction != "none" else dtype, "z_loss", scale)
        if with_grad:
            grad = result[-1]
            assert isinstance(grad, np.ndarray) and grad.dtype == dtype
            assert grad.shape == np.shape(before)
            if kw.get("out") is not None:
                assert grad is kw["out"], "the gradient was not written into out"
            _close(grad, grad_ref, dtype, "grad", _magnitude(grad_ref))

    case.name, case.args, case.kwargs = name, (logits, target), kw
    _call(case, lambda: fn(logits, target, **fast_kw), oracle, compare, inputs)


def _draw_grad_output(draw, case, kw, reduction, lead):
    k = draw(st.integers(0, 9))
    if k < 5:
        return
    if reduction == "none" or reduction not in ("mean", "sum"):
        if k == 5:
            kw["grad_output"] = np.ones(tuple(lead) + (3,))
            case.bad("grad_output of a wrong shape")
        elif k == 6:
            kw["grad_output"] = 0.5
            if reduction == "none":
                case.unsure("scalar grad_output for reduction='none'")
        else:
            seed = draw(st.integers(0, 2 ** 32 - 1))
            kw["grad_output"] = np.random.default_rng(seed).uniform(-2, 2, size=lead).astype(
                draw(st.sampled_from((np.float32, np.float64))))
            if reduction not in ("none",):
                case.unsure("array grad_output")
    else:
        if k == 5:
            kw["grad_output"] = np.ones(2)
            case.bad("array grad_output for a reduced loss")
        elif k == 6:
            kw["grad_output"] = 1j
            case.bad("complex grad_output")
        else:
            kw["grad_output"] = draw(st.sampled_from((0.5, -2.0, np.float32(3.0),
                                                      np.array(0.25), 0.0)))


def _draw_out(draw, case, kw, logits, dtype):
    k = draw(st.integers(0, 11))
    shape = np.shape(logits)
    if k < 5 or dtype.kind not in "f":
        return
    if k == 5:
        kw["out"] = np.empty(shape, dtype)
    elif k == 6 and len(shape):
        kw["out"] = np.asfortranarray(np.empty(shape, dtype))
    elif k == 7 and len(shape):
        big = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)
        kw["out"] = big[..., ::2]
    elif k == 8 and isinstance(logits, np.ndarray):
        kw["out"] = logits
        if not logits.flags.writeable:
            case.bad("out=logits is read-only")
    elif k == 9:
        kw["out"] = np.empty(shape, np.float64 if dtype != np.float64 else np.float32)
        case.bad("out of a wrong dtype")
    elif k == 10:
        kw["out"] = np.empty(shape + (1,), dtype)
        case.bad("out of a wrong shape")
    elif k == 11:
        kw["out"] = np.zeros(shape, dtype).tolist()
        case.bad("out not an ndarray")


def check_building_block(data, name):
    """logsumexp / softmax / log_softmax."""
    draw = data.draw
    case = Case()
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.sampled_from(DIMS + SMALL_C[:6])) for _ in range(ndim))
    if draw(st.integers(0, 19)) == 0 and ndim:
        shape = shape[:-1] + (draw(st.sampled_from(LARGE_C)),)
    if int(np.prod(shape)) > 50000:
        shape = shape[-1:]
    ndim = len(shape)
    k = draw(st.integers(0, 9))
    if k == 0:
        dtype = np.dtype(draw(st.sampled_from((np.complex64, object, "U3"))))
        case.bad(f"x dtype {dtype}")
    elif k == 1:
        dtype = np.dtype(draw(st.sampled_from((np.int32, np.int64, np.uint8, np.bool_))))
    else:
        dtype = np.dtype(draw(st.sampled_from(FLOAT_DTYPES)))
    x, _ = _array(draw, shape, dtype, allow_list=dtype != object)
    dtype = np.asarray(x).dtype  # a nested list of numbers is float64 / int64
    kw = {}
    # The same axes for all three, as SciPy takes them: None, an int or a tuple
    # (jointly); a 0-d x is one element, which axis 0 or -1 also names.
    dims = max(ndim, 1)
    k = draw(st.integers(0, 10))
    if k < 2:
        kw["axis"] = None
    elif k < 6:
        kw["axis"] = draw(st.integers(-dims, dims - 1))
    elif k < 8:
        perm = draw(st.permutations(range(dims)))
        axes = perm[:draw(st.integers(0 if ndim else 1, dims))]
        kw["axis"] = tuple(a - dims if draw(st.booleans()) else a for a in axes)
    elif k == 8:
        kw["axis"] = draw(st.sampled_from((dims, -dims - 1, 1.5, [0])))
        case.bad("axis invalid")
    elif k == 9:
        kw["axis"] = (0, 0)
        case.bad("axis repeated")
    # k == 10: the default (None for logsumexp, -1 for softmax and log_softmax)
    if name == "logsumexp":
        kw["keepdims"] = draw(st.booleans())
    if draw(st.booleans()):
        kw["num_threads"] = draw(st.sampled_from((None, 1, 2, 3, 8)))
    elif draw(st.integers(0, 9)) == 0:
        kw["num_threads"] = 0
        case.bad("num_threads=0")

    axis_arg = kw.get("axis", None if name == "logsumexp" else -1)
    out_dtype = np.dtype(np.float64) if dtype.kind in "iub" else dtype
    if not case.invalid and draw(st.integers(0, 3)) == 0:
        if name == "logsumexp":
            expected_shape = np.shape(reference.logsumexp(np.zeros(shape), axis=axis_arg,
                                                          keepdims=kw["keepdims"]))
        else:
            expected_shape = shape
        k = draw(st.integers(0, 5))
        if k == 0:
            kw["out"] = np.empty(expected_shape, out_dtype)
        elif k == 1 and name != "logsumexp" and isinstance(x, np.ndarray) and x.dtype == out_dtype:
            kw["out"] = x
            kw["_skip_unchanged"] = (x,)
            if not x.flags.writeable:
                case.bad("out=x is read-only")
        elif k == 2:
            kw["out"] = np.empty(expected_shape, np.float32 if out_dtype != np.float32 else np.float64)
            case.bad("out of a wrong dtype")
        elif k == 3:
            kw["out"] = np.empty(tuple(expected_shape) + (2,), out_dtype)
            case.bad("out of a wrong shape")
        elif k == 4:
            ro = np.empty(expected_shape, out_dtype)
            ro.flags.writeable = False
            kw["out"] = ro
            case.bad("read-only out")
        else:
            kw["out"] = [0.0]
            case.bad("out not an ndarray")

    before = np.array(x, copy=True)
    fast_kw = {k: v for k, v in kw.items() if not k.startswith("_")}
    fn = getattr(xentfast, name)

    def oracle():
        x64 = _as_f64(before)
        if name == "logsumexp":
            return reference.logsumexp(x64, axis=axis_arg, keepdims=kw["keepdims"])
        if x64.ndim == 0:  # one element: softmax 1 / log-softmax 0, NaN for ±inf, NaN
            one = 1.0 if name == "softmax" else 0.0
            return np.where(np.isfinite(x64), one, np.nan)[()]
        return getattr(reference, name)(x64, axis=axis_arg)

    def compare(result, expected):
        r = np.asarray(result)
        assert r.dtype == out_dtype, (r.dtype, out_dtype)
        if kw.get("out") is not None:
            assert result is kw["out"], "the result was not written into out"
        _close(result, expected, out_dtype,
               name, _magnitude(before) / 10.0 if name != "softmax" else 1.0)

    case.name, case.args, case.kwargs = name, (x,), kw
    _call(case, lambda: fn(x, **fast_kw), oracle, compare, [x])


def _draw_row_problem(draw, case, options_for):
    """(shape, axis, C, logits, dtype, lead shape, options) of a call with a
    class axis (None for a 0-d draw): the common start of the checks of
    evaluate and perplexity."""
    shape, axis, c = _draw_shape(draw, case)
    if not shape:
        return None
    logits, dtype, _ = _draw_logits(draw, case, shape)
    lead = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    kw = _draw_ce_options(draw, case, options_for, shape, axis, c, lead)
    return shape, axis, c, logits, dtype, lead, kw


def check_evaluate(data):
    draw = data.draw
    case = Case()
    drawn = _draw_row_problem(draw, case, "evaluate")
    if drawn is None:
        return
    shape, axis, c, logits, dtype, lead, kw = drawn
    target = _draw_target(draw, case, shape, axis, c, kw.get("ignore_index", -100))
    before = np.array(logits, copy=True)
    okw = _oracle_kwargs(kw, "evaluate")

    def oracle():
        if int(np.prod(lead)) == 0:  # the oracle cannot argmax zero rows
            return None
        return reference.evaluate(_as_f64(before), target, **okw)

    def compare(ev, ref):
        if ref is None:
            for field in (ev.loss, ev.lse, ev.argmax, ev.correct, ev.entropy):
                assert np.shape(field) == lead
            assert math.isnan(ev.mean_loss) or int(np.prod(lead))
            return
        scale = _loss_scale(kw, before)
        rdt = _result_dtype(dtype)
        # per-row losses are float64 whatever the logits' dtype (not rounded to
        # float16): held to the precision they were computed in, as lse and entropy
        _close(ev.loss, ref["loss"], rdt, "evaluate.loss", scale)
        if _zero_denominator(kw, target, lead, axis):
            assert not math.isfinite(ev.mean_loss)  # x/0: NaN or ±inf
        else:
            _close(ev.mean_loss, ref["mean_loss"], rdt, "evaluate.mean_loss", scale)
        # ignored rows: NaN lse and entropy by Evaluation's documentation
        t = np.asarray(target)
        ignored = (t == kw.get("ignore_index", -100)) if t.dtype.kind in "iu" else False
        lse_ref = np.where(ignored, np.nan, ref["lse"])
        _close(ev.lse, lse_ref, rdt, "evaluate.lse", _magnitude(before))
        _close(ev.entropy, np.where(ignored, np.nan, ref["entropy"]), rdt, "evaluate.entropy",
               scale)
        x64 = np.moveaxis(_as_f64(before), axis, -1).reshape(-1, c)
        finite = np.isfinite(x64).all(axis=1)
        top2 = np.sort(x64, axis=1)[:, -2:] if c > 1 else None
        unique = finite if c == 1 else finite & (top2[:, 1] > top2[:, 0])
        a = np.asarray(ev.argmax).reshape(-1)
        np.testing.assert_array_equal(a[unique], np.asarray(ref["argmax"]).reshape(-1)[unique])
        if unique.all():
            np.testing.assert_array_equal(ev.correct, ref["correct"])
            _close(ev.accuracy, ref["accuracy"], np.float64, "evaluate.accuracy")

    case.name, case.args, case.kwargs = "evaluate", (logits, target), kw
    _call(case, lambda: xentfast.evaluate(logits, target, **kw), oracle, compare,
          [logits, target, kw.get("weight"), kw.get("sample_weight")])


def check_perplexity(data):
    draw = data.draw
    case = Case()
    drawn = _draw_row_problem(draw, case, "cross_entropy")
    if drawn is None:
        return
    shape, axis, c, logits, dtype, lead, kw = drawn
    kw.pop("reduction", None)  # perplexity takes none: a drawn bad one is not passed
    if "reduction unknown" in case.invalid:
        case.invalid.remove("reduction unknown")
    target = _draw_target(draw, case, shape, axis, c, kw.get("ignore_index", -100))
    before = np.array(logits, copy=True)
    okw = _oracle_kwargs(kw, "cross_entropy")

    def oracle():
        return reference.perplexity(_as_f64(before), target,
                                    **okw)

    def compare(ppl, ref):
        assert isinstance(ppl, float)
        if _zero_denominator(kw, target, lead, axis):
            assert not math.isfinite(ppl) or ppl == 0.0  # exp(x/0): NaN, inf or 0
            return
        rtol, _ = _tolerances(_result_dtype(dtype))
        scale = _loss_scale(kw, before) * max(1.0, math.log(ref) if ref > 1 else 1.0)
        if math.isfinite(ref) and ref < 1e300:
            assert math.isclose(ppl, ref, rel_tol=rtol * 10 * scale, abs_tol=0), (ppl, ref)
        else:
            assert (math.isnan(ppl) and math.isnan(ref)) or ppl == ref, (ppl, ref)

    case.name, case.args, case.kwargs = "perplexity", (logits, target), kw
    _call(case, lambda: xentfast.perplexity(logits, target, **kw), oracle, compare,
          [logits, target])


def check_elementwise(data, name):
    """binary_cross_entropy_with_logits(_and_grad), mean_squared_error(_and_grad)."""
    draw = data.draw
    case = Case()
    with_grad = name.endswith("_and_grad")
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.sampled_from(DIMS + SMALL_C[:8])) for _ in range(ndim))
    k = draw(st.integers(0, 9))
    if k == 0:
        dtype = np.dtype(draw(st.sampled_from((np.complex64, object, "U3", np.bool_))))
        case.bad(f"input dtype {dtype}")
    elif k == 1:
        dtype = np.dtype(draw(st.sampled_from((np.int32, np.int64))))
        case.unsure("integer input")
    else:
        dtype = np.dtype(draw(st.sampled_from(FLOAT_DTYPES)))
    x, _ = _array(draw, shape, dtype, allow_list=dtype != object)
    bce = name.startswith("binary")
    k = draw(st.integers(0, 9))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    if k == 0:
        target = np.zeros(shape + (2,), np.float32)
        case.bad("target of a wrong shape")
    elif k == 1:
        target = np.zeros(shape, np.complex64)
        case.bad("complex target")
    elif k == 2 and ndim:
        target = rng.random(shape[-1:]).astype(np.float32)
        case.unsure("broadcast target")
    else:
        t = rng.random(shape) if bce else rng.standard_normal(shape) * 3
        if bce and draw(st.booleans()):
            t = np.round(t)
        target = t.astype(draw(st.sampled_from((np.float32, np.float64))))
    params = _params(name)
    kw = {}
    if "reduction" in params:
        r = draw(st.integers(0, 14))
        kw["reduction"] = "avg" if r == 0 else draw(st.sampled_from(("mean", "sum", "none")))
        if r == 0:
            case.bad("reduction unknown")
    if bce and "weight" in params and draw(st.integers(0, 3)) == 0:
        kw["weight"] = rng.uniform(0, 3, size=shape).astype(np.float32)
    if bce and "pos_weight" in params and draw(st.integers(0, 3)) == 0 and ndim:
        kw["pos_weight"] = rng.uniform(0.5, 3, size=shape[-1:])
    if bce and "label_smoothing" in params and draw(st.integers(0, 3)) == 0:
        kw["label_smoothing"] = _real_option(draw, case, "label_smoothing",
                                             st.sampled_from((0.0, 0.1, 1.0)), (-0.5, 2.0))
    if "num_threads" in params and draw(st.booleans()):
        kw["num_threads"] = draw(st.sampled_from((None, 1, 2, 8)))
    reduction = kw.get("reduction", "mean")
    if with_grad and "grad_output" in params and draw(st.integers(0, 2)) == 0:
        if reduction == "none":
            kw["grad_output"] = rng.uniform(-2, 2, size=shape)
        elif reduction in ("mean", "sum"):
            kw["grad_output"] = 0.5
    dtype = np.asarray(x).dtype
    if with_grad and "out" in params and dtype.kind == "f":
        _draw_out(draw, case, kw, x, dtype)
    if kw.get("out") is x:
        kw["_skip_unchanged"] = (x,)
    before = np.array(x, copy=True)
    fn = getattr(xentfast, name)
    okw = _oracle_kwargs(kw, name)
    okw.pop("out", None)
    fast_kw = {k: v for k, v in kw.items() if not k.startswith("_")}

    def oracle():
        if np.size(before) == 0:  # ORACLE_EMPTY_ELEMWISE: the oracle divides by zero
            return None
        return getattr(reference, name)(_as_f64(before), target, **okw)

    def compare(result, expected):
        rdt = np.float64 if dtype.kind in "iu" else dtype
        if expected is None:
            loss = result[0] if with_grad else result
            if reduction == "mean":
                assert math.isnan(loss)
            elif reduction == "sum":
                assert loss == 0.0
            else:
                assert np.shape(loss) == np.shape(before)
            if with_grad:
                assert np.shape(result[1]) == np.shape(before)
            return
        scale = max(1.0, _magnitude(before), _magnitude(target)) ** (1 if bce else 2)
        ldt = rdt if reduction == "none" else _result_dtype(rdt)
        if with_grad:
            _close(result[0], expected[0], ldt, "loss", scale)
            _close(result[1], expected[1], rdt, "grad", _magnitude(expected[1]))
            assert np.shape(result[1]) == np.shape(before)
            if kw.get("out") is not None:
                assert result[1] is kw["out"], "the gradient was not written into out"
        else:
            _close(result, expected, ldt, "loss", scale)

    case.name, case.args, case.kwargs = name, (x, target), kw
    _call(case, lambda: fn(x, target, **fast_kw), oracle, compare,
          [x, target, kw.get("weight"), kw.get("pos_weight"), kw.get("grad_output")])


# --------------------------------------------------------------------------
# the tests: (property, share of the examples, functions it needs)

PROPERTIES = {
    "cross_entropy": (lambda d: check_cross_entropy(d, False), 0.20, ("cross_entropy",)),
    "cross_entropy_and_grad": (lambda d: check_cross_entropy(d, True), 0.25,
                               ("cross_entropy_and_grad",)),
    "logsumexp": (lambda d: check_building_block(d, "logsumexp"), 0.09, ("logsumexp",)),
    "softmax": (lambda d: check_building_block(d, "softmax"), 0.07, ("softmax",)),
    "log_softmax": (lambda d: check_building_block(d, "log_softmax"), 0.07, ("log_softmax",)),
    "evaluate": (check_evaluate, 0.08, ("evaluate",)),
    "perplexity": (check_perplexity, 0.04, ("perplexity",)),
    "binary_cross_entropy_with_logits": (
        lambda d: check_elementwise(d, "binary_cross_entropy_with_logits"), 0.05,
        ("binary_cross_entropy_with_logits",)),
    "binary_cross_entropy_with_logits_and_grad": (
        lambda d: check_elementwise(d, "binary_cross_entropy_with_logits_and_grad"), 0.05,
        ("binary_cross_entropy_with_logits_and_grad",)),
    "mean_squared_error": (lambda d: check_elementwise(d, "mean_squared_error"), 0.05,
                           ("mean_squared_error",)),
    "mean_squared_error_and_grad": (
        lambda d: check_elementwise(d, "mean_squared_error_and_grad"), 0.05,
        ("mean_squared_error_and_grad",)),
}


def _make_test(name, total):
    prop, share, needs = PROPERTIES[name]

    @settings(max_examples=max(20, int(total * share)), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much, HealthCheck.large_base_example])
    @given(st.data())
    def run(data):
        prop(data)

    def test():
        run()

    test.__name__ = f"test_fuzz_{name}"
    return test


for _name in PROPERTIES:
    globals()[f"test_fuzz_{_name}"] = _make_test(_name, TOTAL_EXAMPLES)
    globals()[f"test_fuzz_{_name}_slow"] = pytest.mark.slow(_make_test(_name, SLOW_EXAMPLES))
del _name


# --------------------------------------------------------------------------
# disagreements the fuzzing found, all fixed: each one kept as a regression test
# (an open one would be a strict xfail here, with its workaround in the
# properties above).


# KNOWN_Z_LOSS_NAN (a NaN in the row) and KNOWN_ALL_NAN_ROW (a row of NaN): found
# by the fuzzer, fixed; kept as regression tests
@pytest.mark.parametrize("row,z_loss", [([np.nan, 0.0, 1.0], 0.0), ([np.nan] * 3, 0.1)],
                         ids=["one-nan", "all-nan"])
def test_known_z_loss_part_of_nan_row_is_nan(row, z_loss):
    x = np.array([row], np.float32)
    _, z = xentfast.cross_entropy(x, np.array([1]), z_loss=z_loss, return_z_loss=True)
    assert math.isnan(z), z


def test_empty_batch_with_probability_targets():
    # found by this fuzzer (raised 'internal: target_prob must match x'), now fixed
    x = np.zeros((0, 3), np.float32)
    p = np.zeros((0, 3), np.float64)
    assert xentfast.cross_entropy(x, p, reduction="sum") == 0.0
    loss, grad = xentfast.cross_entropy_and_grad(x, p, reduction="sum")
    assert loss == 0.0 and grad.shape == (0, 3)


# KNOWN_ALL_NAN_ROW (all NaN -> NaN), KNOWN_LSE_POS_INF (+inf -> inf) and
# KNOWN_NARROW_LSE_NEGINF (all -inf -> -inf, in the narrow-row kernel): found by
# the fuzzer, fixed; kept as regression tests
@pytest.mark.parametrize("x,axis,expected", [
    (np.full(3, np.nan, np.float32), None, np.nan),
    (np.array([0.0, np.inf], np.float32), None, np.inf),
    (np.full((16, 3), -np.inf, np.float32), 1, -np.inf),
], ids=["all-nan", "pos-inf", "narrow-all-neginf"])
def test_known_logsumexp_of_special_rows(x, axis, expected):
    np.testing.assert_array_equal(xentfast.logsumexp(x, axis=axis),
                                  np.full(np.shape(x)[:1] if axis else (), expected))


# KNOWN_ALL_NAN_ROW: found by the fuzzer, fixed; kept as a regression test
def test_known_evaluate_lse_of_all_nan_row_is_nan():
    x = np.array([[np.nan, -np.inf, np.nan]], np.float32)
    assert np.isnan(xentfast.evaluate(x, np.array([0])).lse[0])


# ORACLE_POS_INF: found by the fuzzer, fixed; kept as a regression test
def test_oracle_pos_inf_row_is_nan():
    x = np.array([[np.inf, 0.0, 1.0]])
    assert math.isnan(reference.cross_entropy(x, np.array([1]), z_loss=0.5))
    assert np.isnan(reference.softmax(x)).all()


# KNOWN_F: found by the fuzzer, fixed; kept as a regression test
def test_known_float16_broadcast_logits():
    x = np.broadcast_to(np.zeros((1, 5), np.float16), (3, 5))
    assert xentfast.cross_entropy(x, np.zeros(3, np.int64)) == pytest.approx(math.log(5))


# KNOWN_PROB_TARGET_MASKED (mass on a masked class: inf) and
# KNOWN_PROB_TARGET_ALL_MASKED (every class masked: NaN): found by the fuzzer,
# fixed; kept as regression tests
@pytest.mark.parametrize("row,p,expected", [
    ([0.0, -np.inf, 1.0], [0.5, 0.25, 0.25], math.inf),
    ([-np.inf] * 3, [1 / 3] * 3, math.nan),
], ids=["masked-class", "all-masked"])
def test_known_probability_target_on_masked_classes(row, p, expected):
    got = xentfast.cross_entropy(np.array([row], np.float32), np.array([p], np.float32))
    assert got == expected or (math.isnan(expected) and math.isnan(got)), got


# KNOWN_ZERO_WEIGHT_MASKED: found by the fuzzer, fixed; kept as a regression test
def test_known_zero_weight_masked_class_with_smoothing():
    x = np.array([[0.0, -np.inf, 1.0]], np.float32)
    w = np.array([1.0, 0.0, 1.0], np.float32)
    expected = reference.cross_entropy(x.astype(np.float64), np.array([0]), weight=w,
                                       label_smoothing=0.1)
    got = xentfast.cross_entropy(x, np.array([0]), weight=w, label_smoothing=0.1)
    assert got == pytest.approx(expected, rel=1e-6)


# KNOWN_PPL_OVERFLOW: found by the fuzzer, fixed; kept as a regression test
def test_known_perplexity_of_huge_loss_is_inf():
    x = np.array([[0.0, -1e4]], np.float32)
    assert xentfast.perplexity(x, np.array([1])) == math.inf


# KNOWN_ELEMWISE_EMPTY: found by the fuzzer, fixed; kept as a regression test
def test_known_elementwise_losses_of_empty_2d_arrays():
    x = np.zeros((0, 2), np.float32)
    assert xentfast.mean_squared_error(x, x, reduction="none").shape == (0, 2)
    loss, grad = xentfast.mean_squared_error_and_grad(x, x, reduction="sum")
    assert loss == 0.0 and grad.shape == (0, 2)


# KNOWN_NARROW_Z_IGNORED: found by the fuzzer, fixed; kept as a regression test
def test_known_z_loss_part_of_ignored_rows_is_zero():
    x = np.zeros((16, 3), np.float32)
    t = np.zeros(16, np.int64)
    t[0] = -100
    parts = []
    for _ in range(5):
        junk = np.full(16, 12345.0)  # what the np.empty of the next call gets back
        del junk
        parts.append(xentfast.cross_entropy(x, t, reduction="sum", return_z_loss=True,
                                            weight=np.ones(3))[1])
    assert parts == [0.0] * 5, parts


# ORACLE_EMPTY_ELEMWISE: found by the fuzzer, fixed; kept as a regression test
def test_oracle_elementwise_grad_of_empty_array():
    loss, grad = reference.mean_squared_error_and_grad(np.zeros(0), np.zeros(0))
    assert math.isnan(loss) and grad.shape == (0,)


# KNOWN_ELEMWISE_EMPTY_SUM: found by the fuzzer, fixed; kept as a regression test
def test_known_elementwise_sum_of_empty_1d_is_zero():
    sums = []
    for _ in range(3):
        junk = np.full(1, 12345.0)
        del junk
        x = np.zeros(0, np.float32)
        sums.append(xentfast.mean_squared_error(x, x, reduction="sum"))
        sums.append(xentfast.binary_cross_entropy_with_logits(x, x, reduction="sum"))
    assert sums == [0.0] * 6, sums


# KNOWN_BCE_F: found by the fuzzer, fixed; kept as a regression test
def test_known_float64_bce_is_double_accurate():
    x = np.linspace(-5, 5, 101)
    y = np.linspace(0, 1, 101)
    got = xentfast.binary_cross_entropy_with_logits(x, y, reduction="none")
    want = reference.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)


def test_zero_mean_denominator_follows_ieee_like_pytorch():
    # ORACLE_ZERO_DENOMINATOR, settled: a 'mean' whose denominator is 0 divides
    # with IEEE rules (x/0 = inf, 0/0 = NaN), as PyTorch's reductions do, in
    # xentfast and in the oracle alike
    x = np.zeros((1, 3))
    kw = {"weight": np.array([1.0, 0.0, 1.0]), "z_loss": 0.1}
    assert reference.cross_entropy(x, np.array([1]), **kw) == math.inf
    assert xentfast.cross_entropy(x, np.array([1]), **kw) == math.inf
    assert math.isnan(xentfast.cross_entropy(x, np.array([1]), weight=kw["weight"]))


# KNOWN_UNALIGNED_OUT: found by the fuzzer, fixed; kept as a regression test
def test_known_misaligned_input_with_strided_out_is_not_modified():
    buf = bytearray(4 * 6 + 1)
    x = np.frombuffer(buf, np.float32, count=6, offset=1).reshape(2, 3)
    x[...] = [[1, 2, 3], [4, 5, 6]]
    before = x.copy()
    out = np.zeros((2, 6), np.float32)[:, ::2]
    xentfast.cross_entropy_and_grad(x, np.array([0, 1]), out=out)
    assert np.array_equal(x, before)


# KNOWN_SOFTCAP_NAN: found by the fuzzer, fixed; kept as a regression test
def test_known_softcap_keeps_nan_rows_nan():
    x = np.array([[np.nan, 0.0, 1.0]], np.float64)
    loss, grad = xentfast.cross_entropy_and_grad(x, np.array([1]), softcap=1.0)
    assert math.isnan(loss) and np.isnan(grad).all()


# KNOWN_EMPTY_STRIDED: found by the fuzzer, fixed; kept as a regression test
def test_known_empty_sliced_logits():
    x = np.zeros((1, 2), np.float32)[1:, :]  # shape (0, 2), strides (8, 4)
    loss, grad = xentfast.cross_entropy_and_grad(x, np.zeros(0, np.int64))
    assert math.isnan(loss) and grad.shape == (0, 2)


# KNOWN_NAN_ROW_MASKED_SEGMENT: found by the fuzzer, fixed; kept as a regression test
def test_known_nan_row_with_masked_segment_is_all_nan():
    x = np.zeros((1, 2049), np.float32)
    x[0, 5] = np.nan
    x[0, 2048] = -np.inf
    _, grad = xentfast.cross_entropy_and_grad(x, np.array([0]))
    assert np.isnan(grad).all()


_MISALIGNED = """
import sys, numpy as np, xentfast
dt = np.dtype(sys.argv[1])
buf = bytearray(dt.itemsize * 12 + 1)
x = np.frombuffer(buf, dt, count=12, offset=1).reshape(3, 4)   # misaligned by one byte
x[...] = np.arange(12).reshape(3, 4)
t = np.array([0, 1, 2])
xentfast.cross_entropy(x, t)
xentfast.cross_entropy(x, t, label_smoothing=0.1, reduction="none")
xentfast.evaluate(x, t)
xentfast.logsumexp(x, axis=1)
xentfast.binary_cross_entropy_with_logits(x, x)
xentfast.cross_entropy(np.ascontiguousarray(x), x)             # misaligned probabilities
print("ok")
"""


_MISALIGNED_AUX = """
import numpy as np, xentfast
def mis(a):
    a = np.asarray(a)
    u = np.frombuffer(bytearray(a.nbytes + 1), a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    return u
x = np.zeros((3, 4), np.float32)
t = np.array([0, 1, 2])
xentfast.cross_entropy(x, mis(t))
xentfast.cross_entropy(x, t, weight=mis(np.ones(4, np.float32)))
xentfast.cross_entropy(x, t, sample_weight=mis(np.ones(3)))
xentfast.cross_entropy_and_grad(x, t, reduction="none", grad_output=mis(np.ones(3)))
print("ok")
"""


# KNOWN_MISALIGNED_READ: found by tools/sanitize.sh (UBSan: load of misaligned
# address in the kernels, on the loss-only, evaluate, logsumexp, element-wise
# and probability-target paths), fixed; and KNOWN_MISALIGNED_AUX (UBSan:
# misaligned int64 and double loads in _core's target scan), fixed by aligned
# copies in _api.  Regression tests that mean something only in the sanitizer
# build; the value check below runs everywhere.
@pytest.mark.skipif(not UNDER_SANITIZER, reason="needs the UBSan build (tools/sanitize.sh)")
@pytest.mark.parametrize("script,args", [(_MISALIGNED, ["float32"]), (_MISALIGNED, ["float64"]),
                                         (_MISALIGNED_AUX, [])],
                         ids=["inputs-float32", "inputs-float64", "targets-and-weights"])
def test_known_misaligned_arrays_are_copied_before_the_kernels(script, args):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0 and "runtime error" not in proc.stderr, proc.stderr[-2000:]


def _misaligned(a):
    a = np.asarray(a)
    u = np.frombuffer(bytearray(a.nbytes + 1), a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned or a.itemsize == 1
    return u


@pytest.mark.parametrize("fast", [True, False])
def test_known_misaligned_targets_and_weights_give_the_aligned_result(fast):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 7)).astype(np.float32)
    t = rng.integers(0, 7, 5)
    kw = {} if fast else {"weight": rng.random(7) + 0.5, "sample_weight": rng.random(5) + 0.5}
    want = xentfast.cross_entropy_and_grad(x, t, **kw)
    got = xentfast.cross_entropy_and_grad(
        x, _misaligned(t), **{k: _misaligned(v) for k, v in kw.items()})
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    g = rng.random(5)
    want = xentfast.cross_entropy_and_grad(x, t, reduction="none", grad_output=g, **kw)
    got = xentfast.cross_entropy_and_grad(x, t, reduction="none", grad_output=_misaligned(g),
                                          **kw)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


# KNOWN_ZERO_WEIGHT_MASKED_TARGET: a class-index target whose class weight is
# 0, on a -inf logit, gave a NaN loss (0 * inf) where the oracle gives 0;
# every kernel path: narrow rows, plain rows, the general (options) path and
# the split path for one long row
@pytest.mark.parametrize("n_classes,options", [
    (3, {}), (3, {"label_smoothing": 0.0, "temperature": 2.0}), (40, {}),
    (40, {"label_smoothing": 0.2}), (40, {"softcap": 5.0}), (300000, {})])
def test_known_zero_weight_target_on_masked_class_adds_zero(backend, n_classes, options):
    x = np.zeros((1, n_classes), np.float32)
    x[0, 2] = -np.inf
    w = np.full(n_classes, 2.0)
    w[2] = 0.0
    t = np.array([2])
    want = reference.cross_entropy(x.astype(np.float64), t, weight=w, reduction="sum",
                                   **options)
    assert np.isfinite(want)
    got = xentfast.cross_entropy(x, t, weight=w, reduction="sum", **options)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    loss, grad = xentfast.cross_entropy_and_grad(x, t, weight=w, reduction="sum", **options)
    assert loss == got
    _, want_grad = reference.cross_entropy_and_grad(x.astype(np.float64), t, weight=w,
                                                    reduction="sum", **options)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
