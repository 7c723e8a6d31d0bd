"""Bitwise fingerprints of xentfast's outputs on every backend, for refactoring.

A change meant to keep results bit for bit (a restructuring of the C kernels,
say) is checked by hashing the exact bytes of every output (loss, gradient,
per-row arrays) over a fixed corpus of cases that reaches every kernel path
and option: plain, general, softcapped (one-loop and two-loop), narrow
(permute and gather), split, shared and masked rows, float16/bfloat16 inputs,
probability targets, the element-wise losses and the building blocks.  Each
case runs on every backend this CPU supports and with 1 and 2 threads.

Inputs come from ``np.random.default_rng`` seeded by the CRC-32 of the case
name, so a case's inputs never change unless its name or builder does.  One
line per (backend, threads, case)::

    avx512 2 plain_64x1000_f32_grad 3f2a9c0d1b7e6a54

Usage (xentfast is imported from wherever Python finds it)::

    PYTHONPATH=src python tools/fingerprint.py --out before.txt     # record
    PYTHONPATH=src python tools/fingerprint.py --compare before.txt # 0: identical
    PYTHONPATH=src python tools/fingerprint.py --oracle             # + oracle distances
    PYTHONPATH=src python tools/fingerprint.py --backend scalar --list

``--oracle`` appends to each printed line the largest relative distance of the
loss-like outputs (loss, z-loss, lse, entropy, ...) and the largest absolute
distance of the gradient-like ones (gradient, softmax, log-softmax) from the
float64 oracle ``xentfast.reference`` (equal NaNs and infinities count as 0),
so that a deliberate change of a formula can be shown to be no less accurate.
On the masked cases' row of huge logits (0.9 x the dtype's largest value)
the oracle itself fails: in float64, lse = M + log S rounds to M (its softmax
gives 1 where 1/500 is right) or inf - inf gives NaN; the large distances of
those cases are the oracle's, and they still serve to compare two builds.
"""
import argparse
import hashlib
import sys
import time
import zlib

import ml_dtypes
import numpy as np

import xentfast
from xentfast import _core, reference

F32, F64, F16, BF16 = np.float32, np.float64, np.float16, ml_dtypes.bfloat16
THREADS = (1, 2)
GRAD_LIKE = ("grad", "softmax", "log_softmax")  # compared to the oracle absolutely
OUTPUT_NAMES = {
    "cross_entropy": ("loss",), "cross_entropy_and_grad": ("loss", "grad"),
    "binary_cross_entropy_with_logits": ("loss",),
    "binary_cross_entropy_with_logits_and_grad": ("loss", "grad"),
    "mean_squared_error": ("loss",), "mean_squared_error_and_grad": ("loss", "grad"),
    "logsumexp": ("lse",), "softmax": ("softmax",), "log_softmax": ("log_softmax",),
}
EVALUATION_FIELDS = ("loss", "lse", "argmax", "correct", "entropy", "mean_loss", "accuracy",
                     "n_counted", "perplexity", "bits_per_token")

# ---------------------------------------------------------------------------
# inputs


def logits(rng, n, c, dtype=F32, scale=3.0):
    return (rng.standard_normal((n, c)) * scale).astype(dtype)


def targets(rng, n, c, ignored=0.1):
    t = rng.integers(0, c, n)
    t[rng.random(n) < ignored] = -100
    return t


def probs(rng, n, c, dtype=F32):
    p = rng.random((n, c)) ** 3
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def masked(rng, n, c, dtype=F32):
    """Rows in a cycle of 12 kinds: partly -inf, all -inf, NaN, +inf, huge,
    tiny, equal, +inf with NaN, a wide spread, one finite class, and two
    ignored rows (targets set here too)."""
    x, t = logits(rng, n, c, F64), targets(rng, n, c, ignored=0.0)
    huge, k = 0.9 * float(np.finfo(F32 if dtype != F64 else F64).max), min(5, c - 1)
    x[0::12, ::3] = -np.inf
    t[0::12] = 0  # a target on a masked class
    x[1::12] = -np.inf
    x[2::12, k] = np.nan
    x[3::12, min(7, c - 1)] = np.inf
    x[4::12] = np.where(np.arange(c) % 2, -huge, huge)
    x[5::12] *= 1e-38
    x[5::12, 0] = 1e-45
    x[6::12] = 0.5
    x[7::12, 0], x[7::12, c - 1] = np.inf, np.nan
    x[8::12] *= 1e4
    x[9::12] = -np.inf
    x[9::12, k] = 0.0
    t[10::12] = t[11::12] = -100
    return x.astype(dtype), t


# ---------------------------------------------------------------------------
# the corpus: name -> builder(rng) -> (function name, args, kwargs)

CASES = {}


def case(name, fn, make, **kw):
    """Register case `name`: `make(rng)` gives the positional arguments."""
    assert name not in CASES, name
    CASES[name] = lambda rng: (fn, make(rng), dict(kw))


def ce_case(name, n, c, dtype=F32, grad=True, target="index", ignored=0.1, scale=None, **kw):
    """A cross-entropy case on random rows (logits of scale 3, or 20 under a
    softcap, where the cap should bend them)."""
    scale = scale or (20.0 if kw.get("softcap") else 3.0)

    def make(rng):
        x = logits(rng, n, c, dtype, scale)
        y = targets(rng, n, c, ignored) if target == "index" else probs(rng, n, c, target)
        return x, y
    case(name, "cross_entropy_and_grad" if grad else "cross_entropy", make, **kw)


def _register():
    ce = ce_case
    # plain rows (the fast path for mean/sum, the plain row kernel otherwise)
    ce("plain_64x1000_f32_loss", 64, 1000, grad=False)
    ce("plain_64x1000_f32_grad", 64, 1000)
    ce("plain_64x1000_f64_grad", 64, 1000, F64)
    ce("plain_8x5000_f32_grad", 8, 5000)
    ce("plain_8x5000_f64_loss_sum", 8, 5000, F64, grad=False, reduction="sum")
    ce("plain_64x1000_f32_sum_go", 64, 1000, reduction="sum", grad_output=0.5)
    ce("plain_64x1000_f64_none_loss", 64, 1000, F64, grad=False, reduction="none")
    ce("plain_64x1000_f32_none_go", 64, 1000, reduction="none",
       grad_output=np.linspace(-1.0, 2.0, 64))
    case("plain_strided_f32_grad", "cross_entropy_and_grad",
         lambda r: (logits(r, 64, 1037)[:, 3:1003], targets(r, 64, 1000)))
    case("plain_misaligned_f32_grad", "cross_entropy_and_grad", lambda r: (
        np.frombuffer(b"\0" + logits(r, 64, 1000).tobytes(), F32, offset=1).reshape(64, 1000),
        targets(r, 64, 1000)))
    case("plain_axis1_3d_f32_grad", "cross_entropy_and_grad",
         lambda r: (logits(r, 4, 500 * 20).reshape(4, 500, 20), r.integers(0, 500, (4, 20))),
         axis=1)
    for dt in ("f32", "f64"):
        n = 256 if dt == "f32" else 128  # 8 MiB: non-temporal stores
        ce(f"plain_stream_{n}x8192_{dt}_grad", n, 8192, F32 if dt == "f32" else F64)
    # out= in place and out= a strided view: the builder passes them (see run_case)
    ce("plain_inplace_f32_grad", 64, 1000, out="logits")
    ce("plain_outview_f32_grad", 64, 1000, out="view")
    ce("plain_inplace_stream_f32_grad", 256, 8192, out="logits")
    # the general row
    ce("smooth_f32_grad", 64, 1000, label_smoothing=0.1)
    ce("smooth_f64_loss_none", 64, 1000, F64, grad=False, label_smoothing=0.2, reduction="none")
    ce("zloss_f32_grad", 64, 1000, z_loss=1e-3)
    ce("temp_f32_grad", 64, 1000, temperature=0.7)
    ce("temp_f64_loss", 64, 1000, F64, grad=False, temperature=1.9)
    ce("weight_f32_grad", 64, 1000, weight=np.random.default_rng(1).random(1000) + 0.5)
    ce("sample_weight_f64_grad", 64, 1000, F64, sample_weight=np.random.default_rng(2).random(64))
    ce("prob_f32_grad", 64, 1000, target=F32)
    ce("prob_f64_loss", 64, 1000, F64, grad=False, target=F64)
    ce("prob_f64target_f32_grad", 64, 1000, target=F64)
    ce("smooth_zloss_softcap30_f32_grad", 64, 1000, label_smoothing=0.1, z_loss=1e-4,
       softcap=30.0)
    ce("smooth_zloss_softcap90_f64_grad", 64, 1000, F64, label_smoothing=0.1, z_loss=1e-4,
       softcap=90.0)
    ce("prob_weight_smooth_f32_grad", 64, 1000, target=F32, label_smoothing=0.1,
       weight=np.random.default_rng(3).random(1000) + 0.5,
       sample_weight=np.random.default_rng(4).random(64))
    ce("weight_zloss_none_f32_loss", 64, 1000, grad=False, reduction="none", z_loss=1e-3,
       weight=np.random.default_rng(5).random(1000))
    ce("return_z_loss_f32_grad_none", 64, 1000, z_loss=1e-3, reduction="none",
       return_z_loss=True)
    ce("return_z_loss_f64_loss", 64, 1000, F64, grad=False, z_loss=1e-2, return_z_loss=True)
    for name, dt, kw in (("evaluate_f32", F32, {}),
                         ("evaluate_smooth_zloss_f64", F64, dict(label_smoothing=0.1, z_loss=1e-3)),
                         ("evaluate_softcap30_temp_f32", F32, dict(softcap=30.0, temperature=0.8)),
                         ("evaluate_weight_f32", F32, dict(weight=np.arange(1000) % 7 + 0.5))):
        case(name, "evaluate", lambda r, dt=dt: (logits(r, 64, 1000, dt), targets(r, 64, 1000)),
             **kw)
    case("evaluate_prob_f32", "evaluate", lambda r: (logits(r, 64, 1000), probs(r, 64, 1000)))
    # softcap: one loop on AVX-512 for caps <= 64, two loops above (exp clamp above 43)
    for cap in (30, 64, 90, 200):
        ce(f"softcap{cap}_f32_grad", 64, 3000, softcap=float(cap), scale=40.0)
        ce(f"softcap{cap}_f32_loss", 64, 3000, grad=False, softcap=float(cap), scale=40.0)
    ce("softcap30_f64_grad", 64, 1000, F64, softcap=30.0)
    ce("softcap200_f64_loss", 64, 1000, F64, grad=False, softcap=200.0)
    ce("softcap30_temp_f32_grad", 64, 1000, softcap=30.0, temperature=0.5)
    ce("softcap90_temp_f32_grad", 64, 1000, softcap=90.0, temperature=1.5)
    ce("softcap50_smooth_f32_grad", 64, 1000, softcap=50.0, label_smoothing=0.1)
    ce("softcap200_smooth_f32_grad", 64, 1000, softcap=200.0, label_smoothing=0.1)
    ce("softcap30_prob_f32_grad", 64, 1000, target=F32, softcap=30.0)
    ce("softcap90_prob_f32_grad", 64, 1000, target=F32, softcap=90.0)
    ce("softcap30_C1_f32_grad", 64, 1, softcap=30.0)
    ce("softcap200_C1_f64_grad", 64, 1, F64, softcap=200.0)
    ce("softcap30_smooth_stream_f32_grad", 256, 8192, softcap=30.0, label_smoothing=0.1)
    ce("softcap90_stream_f32_grad", 256, 8192, softcap=90.0)
    ce("softcap30_weight_f32_grad", 64, 1000, softcap=30.0, weight=np.arange(1000) % 5 + 0.5)
    ce("softcap90_sample_weight_none_f32_grad", 64, 1000, softcap=90.0, reduction="none",
       sample_weight=np.linspace(0.0, 2.0, 64), grad_output=np.linspace(1.0, -1.0, 64))
    ce("softcap30_C10_f32_grad", 4000, 10, softcap=30.0)  # narrow C, general row
    ce("smooth_C17_f32_grad", 2000, 17, label_smoothing=0.1)
    # narrow rows: C <= 16 permutes, 16 < C <= 32 gathers (AVX-512); N % 16 != 0
    for c in (2, 3, 10, 16, 17, 32):
        n = 32768 // c + 11  # over the serial threshold: blocks over 2 threads
        ce(f"narrow_C{c}_f32_grad", n, c)
        ce(f"narrow_C{c}_f32_loss", n, c, grad=False)
    for c in (3, 17, 32):
        ce(f"narrow_C{c}_f64_grad", 32768 // c + 5, c, F64)
    for c in (10, 17):
        n = 32768 // c + 13
        ce(f"narrow_C{c}_weight_zloss_f32_grad", n, c, z_loss=1e-3, weight=np.arange(c) % 3 + 0.5)
        ce(f"narrow_C{c}_sample_weight_none_f32_grad", n, c, reduction="none",
           sample_weight=np.linspace(0.0, 2.0, n), grad_output=np.linspace(1.0, -1.0, n))
        case(f"narrow_C{c}_lse_f32", "logsumexp", lambda r, n=n, c=c: (logits(r, n, c),),
             axis=-1)
        case(f"narrow_C{c}_lse_f64", "logsumexp", lambda r, n=n, c=c: (logits(r, n, c, F64),),
             axis=1)
        case(f"narrow_masked_C{c}_f32_grad", "cross_entropy_and_grad",
             lambda r, n=n, c=c: masked(r, n, c))
    # split rows: few long rows over 2 threads (n_rows * C > the serial threshold)
    for name, n, c, dt in (("split_1x65536_f32", 1, 65536, F32), ("split_2x40000_f32", 2, 40000, F32),
                           ("split_2x40000_f64", 2, 40000, F64), ("split_3x20000_f32", 3, 20000, F32)):
        ce(f"{name}_loss", n, c, dt, grad=False, ignored=0.0)
        ce(f"{name}_grad", n, c, dt, ignored=0.0)
    ce("split_2x40000_f32_inplace", 2, 40000, ignored=0.0, out="logits")
    # shared rows: in place, C >= XF_SHARED_MIN_CLASSES, a team (the one-thread run:
    # the row loop)
    ce("shared_40x245765_f32_inplace", 40, 245765, out="logits")
    case("split_3x20000_weight_zloss_f32_grad", "cross_entropy_and_grad",
         lambda r: (logits(r, 3, 20000), np.array([5, 19999, 7])), z_loss=1e-3,
         weight=np.random.default_rng(6).random(20000), reduction="none", grad_output=[1, -2, 3])
    case("split_4x20000_masked_f32_grad", "cross_entropy_and_grad",
         lambda r: split_masked(r, F32))
    case("split_4x20000_masked_f64_loss", "cross_entropy", lambda r: split_masked(r, F64),
         reduction="sum")
    case("split_2x40000_softmax_f32", "softmax", lambda r: (logits(r, 2, 40000),))
    case("split_2x40000_lse_f64", "logsumexp", lambda r: (logits(r, 2, 40000, F64),), axis=-1)
    # masked rows
    for dt, tag in ((F32, "f32"), (F64, "f64")):
        mk, pre, g = (lambda r, dt=dt: masked(r, 48, 1000, dt)), f"masked_C1000_{tag}", "_and_grad"
        case(f"{pre}_grad", "cross_entropy" + g, mk)
        case(f"{pre}_loss_none", "cross_entropy", mk, reduction="none")
        case(f"{pre}_smooth_grad", "cross_entropy" + g, mk, label_smoothing=0.1, reduction="sum")
        case(f"{pre}_softcap30_grad", "cross_entropy" + g, mk, softcap=30.0, reduction="none")
        case(f"{pre}_softcap90_grad", "cross_entropy" + g, mk, softcap=90.0, reduction="sum")
        case(f"{pre}_evaluate", "evaluate", mk)
        for fn in ("softmax", "log_softmax", "logsumexp"):
            case(f"{pre}_{fn}", fn, lambda r, mk=mk: mk(r)[:1],
                 **({"axis": -1} if fn == "logsumexp" else {}))
    case("masked_C5000_segment_f32_grad", "cross_entropy_and_grad", lambda r: masked_segment(r))
    # low-precision inputs
    ce("f16_grad", 64, 1000, F16)
    ce("bf16_grad", 64, 1000, BF16)
    ce("bf16_prob_smooth_loss", 64, 1000, BF16, grad=False, target=BF16, label_smoothing=0.1)
    ce("f16_softcap30_grad", 64, 1000, F16, softcap=30.0)
    ce("bf16_narrow_C10_grad", 4000, 10, BF16)
    # element-wise losses (300x200: blocks over 2 threads)
    for dt, tag in ((F32, "f32"), (F64, "f64")):
        bce = lambda r, dt=dt: (logits(r, 300, 200, dt), (r.random((300, 200)) < 0.3).astype(dt))
        case(f"bce_{tag}_loss", "binary_cross_entropy_with_logits", bce)
        case(f"bce_{tag}_grad_weights", "binary_cross_entropy_with_logits_and_grad", bce,
             weight=np.linspace(0.1, 2.0, 200), pos_weight=np.linspace(3.0, 0.5, 200),
             label_smoothing=0.1, reduction="sum")
        case(f"bce_{tag}_grad_none", "binary_cross_entropy_with_logits_and_grad", bce,
             reduction="none", pos_weight=2.0, grad_output=np.linspace(-1.0, 1.0, 200))
        mse = lambda r, dt=dt: (logits(r, 300, 200, dt), logits(r, 300, 200, dt))
        case(f"mse_{tag}_loss", "mean_squared_error", mse, reduction="sum")
        case(f"mse_{tag}_grad", "mean_squared_error_and_grad", mse)
        case(f"mse_{tag}_grad_none", "mean_squared_error_and_grad", mse, reduction="none",
             grad_output=0.25)
    # building blocks
    for dt, tag in ((F32, "f32"), (F64, "f64")):
        x3 = lambda r, dt=dt: (logits(r, 24, 300, dt).reshape(8, 3, 300),)
        case(f"lse_axis_none_{tag}", "logsumexp", x3)
        case(f"lse_axis_int_{tag}", "logsumexp", x3, axis=2)
        case(f"lse_axis_tuple_{tag}", "logsumexp", x3, axis=(0, 2))
        case(f"softmax_{tag}", "softmax", lambda r, dt=dt: (logits(r, 64, 1000, dt),))
        case(f"softmax_axis0_{tag}", "softmax", lambda r, dt=dt: (logits(r, 64, 1000, dt),), axis=0)
        case(f"log_softmax_{tag}", "log_softmax", lambda r, dt=dt: (logits(r, 64, 1000, dt),))
    case("softmax_inplace_f32", "softmax", lambda r: (logits(r, 64, 1000),), out="logits")


def split_masked(rng, dtype):
    """4 long rows: a -inf segment, an ignored row, a NaN row, a +inf row."""
    x = logits(rng, 4, 20000, dtype)
    x[0, 2048:6144] = -np.inf
    x[2, 9000] = np.nan
    x[3, 12345] = np.inf
    return x, np.array([100, -100, 3, 19999])


def masked_segment(rng):
    x, t = logits(rng, 8, 5000), targets(rng, 8, 5000, ignored=0.0)
    x[:, 2048:4096] = -np.inf  # a fully masked segment in every row
    t[1], t[2] = 3000, -100
    return x, t


_register()

# ---------------------------------------------------------------------------
# running


def outputs(fn, kw, result):
    """The named outputs of one call, in a fixed order."""
    if fn == "evaluate":
        get = result.get if isinstance(result, dict) else lambda k: getattr(result, k, None)
        return [(k, get(k)) for k in EVALUATION_FIELDS if get(k) is not None]
    names = OUTPUT_NAMES[fn]
    if kw.get("return_z_loss"):
        names = names[:1] + ("z_loss",) + names[1:]
    result = result if isinstance(result, tuple) else (result,)
    return list(zip(names, result, strict=True))


def build(name):
    fn, args, kw = CASES[name](np.random.default_rng(zlib.crc32(name.encode())))
    if kw.get("out") == "logits":
        kw["out"] = args[0]
    elif kw.get("out") == "view":
        x = args[0]
        kw["out"] = np.full((x.shape[0], x.shape[1] + 5), 7, x.dtype)[:, 5:]
    return fn, args, kw


def run_case(name, threads):
    fn, args, kw = build(name)
    return outputs(fn, kw, getattr(xentfast, fn)(*args, num_threads=threads, **kw))


def oracle(name):
    """The case's outputs from the float64 reference."""
    fn, args, kw = build(name)
    kw.pop("out", None)
    args = tuple(a.astype(F64) if getattr(a, "dtype", None) in (F16, BF16) else a for a in args)
    if fn == "evaluate":  # the API defines an ignored row's lse and entropy as NaN
        res = getattr(reference, fn)(*args, **kw)
        t = np.asarray(args[1])
        if t.dtype.kind in "iu":
            ignored = t == kw.get("ignore_index", -100)
            res["lse"] = np.where(ignored, np.nan, res["lse"])
            res["entropy"] = np.where(ignored, np.nan, res["entropy"])
        return outputs(fn, {}, res)
    if not kw.pop("return_z_loss", False):
        return outputs(fn, {}, getattr(reference, fn)(*args, **kw))
    res = getattr(reference, fn)(*args, **kw)
    zl = reference.cross_entropy_z_loss(*args, **{k: v for k, v in kw.items() if k != "grad_output"})
    res = res if isinstance(res, tuple) else (res,)
    return outputs(fn, {"return_z_loss": True}, (res[0], zl) + res[1:])


def fingerprint(outs):
    h = hashlib.sha256()
    for key, value in outs:
        a = np.asarray(value)
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def distance(a, b, relative):
    """Largest distance of output `a` from oracle `b` rounded to a's dtype (a
    float32 loss past float32's range is inf, as it should be)."""
    a = np.asarray(a)
    b = np.asarray(b).astype(a.dtype) if a.dtype.kind == "f" else np.asarray(b)
    a, b = a.astype(F64), np.broadcast_to(b.astype(F64), a.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        d = np.abs(a - b)
        if relative:
            d = d / np.where(b != 0, np.abs(b), 1.0)
    d = np.where(same, 0.0, np.where(np.isnan(d), np.inf, d))
    return float(d.max()) if d.size else 0.0


def oracle_columns(outs, ref):
    ref = dict(ref)
    rel = [distance(v, ref[k], True) for k, v in outs if k in ref and k not in GRAD_LIKE]
    ab = [distance(v, ref[k], False) for k, v in outs if k in ref and k in GRAD_LIKE]
    return (f" loss_rel={max(rel):.3g}" if rel else "") + (f" grad_abs={max(ab):.3g}" if ab else "")


def compute(backends, names, with_oracle):
    lines, refs = [], {}
    # NaN, inf and overflowing casts are results here, not warnings
    with np.errstate(all="ignore"):
        try:
            for backend in backends:
                _core.select_backend(backend)
                for threads in THREADS:
                    for name in names:
                        outs = run_case(name, threads)
                        line = f"{backend} {threads} {name} {fingerprint(outs)}"
                        if with_oracle:
                            if name not in refs:
                                refs[name] = oracle(name)
                            line += oracle_columns(outs, refs[name])
                        lines.append(line)
        finally:
            _core.select_backend("")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the fingerprint lines to this file")
    p.add_argument("--compare", metavar="FILE", help="print the lines that differ from FILE")
    p.add_argument("--oracle", action="store_true", help="append distances from the oracle")
    p.add_argument("--backend", action="append", help="only this backend (repeatable)")
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    p.add_argument("--list", action="store_true", help="list the case names and exit")
    opts = p.parse_args(argv)
    if opts.list:
        print("\n".join(CASES))
        return 0
    supported = _core.supported_backends()
    for b in opts.backend or ():
        if b not in supported:
            p.error(f"backend {b!r} not supported here (supported: {', '.join(supported)})")
    for c in opts.case or ():
        if c not in CASES:
            p.error(f"unknown case {c!r} (see --list)")
    backends = opts.backend or supported
    names = opts.case or list(CASES)
    t0 = time.perf_counter()
    lines = compute(backends, names, opts.oracle)
    took = time.perf_counter() - t0
    if opts.out:
        with open(opts.out, "w") as f:
            f.write("".join(" ".join(ln.split()[:4]) + "\n" for ln in lines))
    if opts.compare:
        with open(opts.compare) as f:
            old = {tuple(w[:3]): w[3] for w in (ln.split() for ln in f) if len(w) >= 4}
        differ = [ln for ln in lines if old.get(tuple(ln.split()[:3])) != ln.split()[3]]
        for ln in differ:
            was = old.get(tuple(ln.split()[:3]), "(absent)")
            print(f"DIFFERS {ln} (was {was})")
        if differ:
            print(f"{len(differ)} of {len(lines)} fingerprints differ", file=sys.stderr)
            return 1
        print(f"all {len(lines)} fingerprints identical ({len(names)} cases, "
              f"{', '.join(backends)}, threads {THREADS}; {took:.1f} s)")
        return 0
    if not opts.out or opts.oracle:
        print("\n".join(lines))
    print(f"{len(lines)} fingerprints: {len(names)} cases x {len(backends)} backends x "
          f"{len(THREADS)} thread counts in {took:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
