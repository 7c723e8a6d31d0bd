"""The NEON kernels under emulation: a corpus of cases, the harness run, the checks.

Builds ``tools/neon/harness.c`` for AArch64 (``tools/neon/build.sh``), writes
every case below to one file, runs the harness under ``qemu-aarch64`` with
teams of 1, 2 and 3 OpenMP threads, and checks each output against the
float64 oracle (``xentfast.reference``) on the host: float32 and
float64 rows of every plan, BCE and MSE, and the layers' own functions
(float64 ones against long double).  ``tests/test_neon.py``
asserts on the results; run as a script it prints the figures::

    python tools/neon/neon_cases.py          # cases, plans, max errors, ULPs

Case file (little-endian): per case an int64 kind, then
  rows (1):  int64[16] header, double[8] options, then x (N x x_stride),
             targets (int64), class weights, row scales (float64), row
             weights (float64), probability targets (N x C), as present;
  elem (2):  int64[16] header, double[8] options, x, y, w, pos_weight, g;
  map (3):   int64 which (MAPS: 0 exp, 1 log1p, 2 the layer's log, 3 its
             cheaper exp, 4 and 5 the one-loop softcap's 2^x and 2^(x k),
             k first; 6-8 the float64 layer's exp, expm1, log1p; 9 a copy
             by the streaming bound pass), int64 n, then n float64 (6-8)
             or float32 (the others);
and kind 0 at the end.  The output repeats, per case and thread count, the
plan (rows only) and every output array (see harness.c).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
try:  # the installed package (CI's venv), else the in-place build under src/
    from xentfast import reference
except ImportError:
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from xentfast import reference

CC = os.environ.get("XENTFAST_AARCH64_CC", "aarch64-linux-gnu-gcc")
QEMU = os.environ.get("XENTFAST_QEMU_AARCH64", "qemu-aarch64")
THREADS = (1, 2, 3)
PLANS = ("plain", "narrow", "split", "general", "softcap", "softcap_one_loop", "shared")
MODES = {"loss": 0, "grad": 1, "softmax": 2, "log_softmax": 3, "lse": 4, "eval": 5}
WANT_LOSS, WANT_LSE, WANT_ZLOSS, WANT_ENTROPY, WANT_ARGMAX = 1, 2, 4, 8, 16
IGNORE = -100
# atol = rtol against the float64 oracle: float32 results (a softcap's z
# carries about c * 1e-7), float64 results (the x86 tests' float64 bound)
F32_TOL, F32_SOFTCAP_TOL, F64_TOL = 1e-6, 1e-5, 1e-12
EXP_POINTS = 1_200_000
MAPS = ("exp", "log1p", "log", "exp_mid", "exp2_mid", "exp2_scaled", "exp_f64", "expm1_f64",
        "log1p_f64", "stream_copy")
F64_MAPS = (6, 7, 8)  # the maps that take and give float64
EXP64_SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, 1e-300, -1e-300,
                           5e-324, 709.78, 709.7827, 709.79, 709.8, 710.0, 1e4, 1.7e308,
                           -708.39, -708.4, -744.44, -745.13, -745.14, -746.0, -1e4, -1.7e308])


def missing_tools():
    """A reason the emulated run cannot happen here, or None."""
    for tool, package in ((CC, "gcc-aarch64-linux-gnu"), (QEMU, "qemu-user")):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian: apt-get install {package})"
    return None


# ---------------------------------------------------------------- the corpus

def _adversarial(rng, x, kinds):
    """Puts special rows into x (float array, N x C) in place."""
    n, c = x.shape
    rows = rng.permutation(n)
    k = 0
    for kind in kinds:
        if k >= n:
            break
        r = rows[k]
        k += 1
        j = rng.integers(0, c)
        if kind == "posinf":
            x[r, j] = np.inf
        elif kind == "nan":
            x[r, j] = np.nan
        elif kind == "neginf" and c > 1:
            x[r, rng.random(c) < 0.5] = -np.inf
            x[r, j] = 1.0  # at least one class left
        elif kind == "all_neginf":
            x[r, :] = -np.inf
        elif kind == "huge":
            x[r, :] = rng.uniform(-3e38, 3e38, c)
        elif kind == "huge_equal":
            x[r, :] = 3e38
        elif kind == "tiny":
            x[r, :] = rng.uniform(-1e-30, 1e-30, c)
        elif kind == "equal":
            x[r, :] = 5.0
        elif kind == "spread":
            x[r, :] = rng.uniform(-200, 200, c)


def rows_cases(rng):
    """Every rows case: dicts of the call's arguments (float64 copies made at check)."""
    cases = []

    def add(n, c, mode="grad", *, dtype=np.float32, targets=True, ignore_frac=0.15,
            special=(), class_weight=False, row_weight=False, row_scale=False,
            probs=False, eps=0.0, z_loss=0.0, softcap=0.0, temperature=1.0,
            x_pad=0, out_pad=0, streaming=False, in_place=False, scale=1.0, want=None,
            x_scale=3.0):
        x = (rng.standard_normal((n, c)) * x_scale).astype(dtype)
        _adversarial(rng, x, special)
        t = None
        if targets and not probs:
            t = rng.integers(0, c, n).astype(np.int64)
            t[rng.random(n) < ignore_frac] = IGNORE
        p = None
        if probs:
            p = rng.random((n, c)).astype(dtype)
            p /= p.sum(axis=1, keepdims=True)
        m = MODES[mode]
        if want is None:
            want = {"loss": WANT_LOSS | WANT_LSE, "grad": WANT_LOSS | WANT_LSE,
                    "softmax": 0, "log_softmax": 0, "lse": WANT_LSE,
                    "eval": WANT_LOSS | WANT_LSE | WANT_ENTROPY | WANT_ARGMAX}[mode]
            if z_loss:
                want |= WANT_ZLOSS
        has_out = mode in ("grad", "softmax", "log_softmax")
        cases.append(dict(
            kind="rows", x=x, target=t, probs=p, mode=mode,
            class_weight=(rng.uniform(0.2, 2.0, c).astype(dtype) if class_weight else None),
            row_weight=(rng.uniform(0.0, 2.0, n) if row_weight else None),
            row_scale=(rng.uniform(-1.5, 1.5, n) if row_scale else None),
            eps=eps, z_loss=z_loss, softcap=softcap, temperature=temperature,
            x_stride=c + x_pad, out_stride=(c + (0 if in_place else out_pad)) if has_out else 0,
            streaming=streaming, in_place=in_place if has_out else False, scale=scale, want=want))

    specials = ("posinf", "nan", "neginf", "all_neginf", "huge", "huge_equal", "tiny", "equal",
                "spread")
    no_huge = tuple(s for s in specials if not s.startswith("huge"))
    calm = tuple(s for s in no_huge if s != "spread")
    # narrow widths (C <= 32; TBL columns for C <= 4), the plain path beyond,
    # segment edges (2048), and unaligned tails
    for c in (1, 2, 3, 4, 5, 7, 8, 10, 16, 17, 31, 32, 33, 100, 2047, 2048, 2049, 5000):
        n = max(9, min(4100, 40000 // c)) if c <= 100 else max(5, 30000 // c)
        add(n, c, "grad", special=specials)
        add(n, c, "loss", special=specials)
        add(n, c, "grad", class_weight=True, row_weight=True, row_scale=True, z_loss=1e-3,
            special=no_huge)
        add(n, c, "lse", targets=False, special=specials)
        add(n, c, "softmax", targets=False, special=specials)
        add(n, c, "log_softmax", targets=False)
        # smoothing's sum of w z in float lanes has an absolute error of about
        # 1e-7 |z| C: logits near 3e38 only without it (the x86 layers alike)
        add(n, c, "grad", eps=0.1, temperature=1.7, class_weight=True, special=calm)
        # z = x / T is rounded to float32 (an absolute error of ulp(z)/2 in the
        # loss: 4e-6 for |z| ~ 100): no spread rows under a temperature
        add(n, c, "grad", temperature=1.7, row_weight=True,
            special=tuple(s for s in specials if s != "spread"))
        add(n, c, "grad", probs=True, eps=0.05, row_weight=True)
        add(n, c, "eval", special=specials)
        add(n, c, "eval", z_loss=1e-4, row_weight=True, special=no_huge)
        add(n, c, "grad", softcap=30.0, special=specials)
        add(n, c, "grad", softcap=100.0, temperature=0.8, eps=0.1, z_loss=1e-4,
            class_weight=True, row_scale=True)
        add(n, c, "grad", x_pad=3, out_pad=5, streaming=True, scale=0.25)
        add(n, c, "grad", in_place=True, z_loss=1e-4)
    # streaming stores (STNP) against ordinary ones on the same logits, for
    # every kind of write: the plain and general rows, the softcap's drain
    # (one loop: cap 30; two loops: cap 100, and float64), the split's
    # phase 2; each case then its twin without streaming (stream_twin)
    for dtype, n, c, kw in ((np.float32, 300, 1000, {}),
                            (np.float32, 300, 1000, dict(eps=0.1, temperature=1.3)),
                            (np.float32, 300, 1000, dict(softcap=30.0)),
                            (np.float32, 300, 1000, dict(softcap=100.0, eps=0.1)),
                            (np.float32, 2, 20000, {}),
                            (np.float64, 150, 1000, {}),
                            (np.float64, 150, 1000, dict(softcap=30.0, eps=0.1)),
                            (np.float64, 2, 20000, {})):
        add(n, c, "grad", dtype=dtype, streaming=True, out_pad=3, **kw)
        twin = dict(cases[-1], streaming=False, stream_twin=len(cases) - 1)
        cases.append(twin)
    # every row ignored; large logit ranges
    add(64, 10, "grad", ignore_frac=1.0)
    add(64, 3, "grad", x_scale=40.0)
    add(64, 3000, "grad", x_scale=40.0)
    # the split plan (teams of 2 and 3; one thread: the plain rows, same bits)
    for n, c in ((1, 8229), (3, 8229), (2, 20000)):
        add(n, c, "grad", special=("neginf",))
        add(n, c, "loss")
        add(n, c, "grad", class_weight=True, row_weight=True, row_scale=True, z_loss=1e-3)
        add(n, c, "softmax", targets=False)
        add(n, c, "lse", targets=False)
        add(n, c, "grad", in_place=True)
    # the shared rows (in place, teams of 2 and 3, XF_SHARED_MIN_CLASSES = 196608
    # classes or more; one thread: the plain rows, same bits), a short last
    # segment, ignored rows
    add(40, 196608 + 77, "grad", in_place=True, special=("neginf",))
    add(40, 196608, "grad", in_place=True, class_weight=True, row_weight=True, row_scale=True,
        z_loss=1e-3)
    # the shared rows on every team, whatever the plan ("shared": the team of
    # one too), with parts of a few segments (6 and 2 of them) or none (1)
    add(40, 5 * 2048 + 77, "grad", in_place="shared", special=("neginf",))
    add(24, 2048 + 77, "grad", in_place="shared", class_weight=True, row_weight=True,
        row_scale=True, z_loss=1e-3)
    add(16, 77, "grad", in_place="shared")
    # float64: the NEON float64 layer (vec_neon_f64.h) on every plan it
    # reaches (plain, split, general, the two-loop softcap; no narrow rows)
    f64 = np.float64
    for c in (1, 3, 4, 5, 10, 33, 2049):
        n = max(9, 6000 // c)
        add(n, c, "grad", dtype=f64, special=specials)
        add(n, c, "loss", dtype=f64, special=specials)
        add(n, c, "grad", dtype=f64, class_weight=True, row_weight=True, row_scale=True,
            z_loss=1e-3, special=no_huge)
        add(n, c, "lse", dtype=f64, targets=False, special=specials)
        add(n, c, "softmax", dtype=f64, targets=False, special=specials)
        add(n, c, "log_softmax", dtype=f64, targets=False)
        add(n, c, "grad", dtype=f64, eps=0.1, temperature=1.7, class_weight=True, special=calm)
        add(n, c, "grad", dtype=f64, probs=True, eps=0.05, row_weight=True)
        add(n, c, "eval", dtype=f64, special=specials)
        add(n, c, "grad", dtype=f64, softcap=30.0, special=no_huge)
        add(n, c, "grad", dtype=f64, softcap=100.0, temperature=0.8, eps=0.1, z_loss=1e-4,
            class_weight=True, row_scale=True)
        add(n, c, "eval", dtype=f64, softcap=30.0, special=no_huge)
        add(n, c, "grad", dtype=f64, x_pad=3, out_pad=5, streaming=True, scale=0.25)
        add(n, c, "grad", dtype=f64, in_place=True, z_loss=1e-4)
    add(64, 3000, "grad", dtype=f64, x_scale=300.0)
    for n, c in ((1, 8229), (3, 8229), (2, 20000)):
        add(n, c, "grad", dtype=f64, special=("neginf",))
        add(n, c, "loss", dtype=f64)
        add(n, c, "grad", dtype=f64, class_weight=True, row_weight=True, row_scale=True,
            z_loss=1e-3)
        add(n, c, "softmax", dtype=f64, targets=False)
        add(n, c, "grad", dtype=f64, in_place=True, streaming=True)
    # the softcap's entropy (the two loops: the one loop leaves it to them)
    for c in (10, 2049):
        add(max(9, 20000 // c), c, "eval", softcap=30.0, special=no_huge)
    return cases


def elem_cases(rng):
    cases = []

    def add(n, c, op, *, dtype=np.float32, w=None, pw=False, g=None, eps=0.0, scale=1.0):
        x = (rng.standard_normal((n, c)) * 4).astype(dtype)
        x.flat[rng.integers(0, x.size, min(6, x.size))] = [90.0, -90.0, 0.0, 1e-30, 30.0,
                                                            -30.0][:min(6, x.size)]
        y = (rng.random((n, c)) if op == "bce" else rng.standard_normal((n, c))).astype(dtype)
        # w, g: None, "full" (r, c strides), "row" (broadcast over rows: (0, 1)),
        # "col" (one per row: (1, 0))
        def strided(kind):
            if kind is None:
                return None, 0, 0
            if kind == "full":
                return rng.uniform(0, 2, (n, c)).astype(dtype), c, 1
            if kind == "row":
                return rng.uniform(0, 2, c).astype(dtype), 0, 1
            return rng.uniform(0, 2, n).astype(dtype), 1, 0
        wa, wrs, wcs = strided(w)
        ga, grs, gcs = strided(g)
        cases.append(dict(kind="elem", op=op, x=x, y=y, w=wa, w_strides=(wrs, wcs),
                          pw=(rng.uniform(0.5, 3, c).astype(dtype) if pw else None),
                          g=ga, g_strides=(grs, gcs), eps=eps, scale=scale))

    for n, c in ((1, 1), (37, 1), (50, 7), (13, 33), (2100, 13), (3, 5000)):
        add(n, c, "bce")
        add(n, c, "bce", w="full", pw=True, g="full", eps=0.1, scale=0.5)
        add(n, c, "bce", w="row", g="col")
        add(n, c, "mse")
        add(n, c, "mse", g="row", scale=2.0)  # the API's squared error has no weights
    for n, c in ((1, 1), (37, 1), (50, 7), (13, 33), (3, 5000)):
        add(n, c, "bce", dtype=np.float64)
        add(n, c, "bce", dtype=np.float64, w="full", pw=True, g="full", eps=0.1, scale=0.5)
        add(n, c, "bce", dtype=np.float64, w="row", g="col")
        add(n, c, "mse", dtype=np.float64)
        add(n, c, "mse", dtype=np.float64, g="row", scale=2.0)
    return cases


def map_cases(rng):
    f32 = np.float32
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, 88.7228, 88.73, 100.0,
                         -103.97, -103.98, -104.0, -87.33, -87.34, -110.0, -1e4, 3.4e38,
                         -3.4e38, 1e-45, -1e-45, 1e-30, 0.5, -0.5, 1.0], dtype=f32)
    exp_x = np.concatenate([
        specials,
        rng.uniform(-104.0, 89.0, EXP_POINTS // 2).astype(f32),
        rng.uniform(-104.0, -86.0, EXP_POINTS // 3).astype(f32),  # the underflow edge
        rng.uniform(-1.0, 1.0, EXP_POINTS - EXP_POINTS // 2 - EXP_POINTS // 3).astype(f32),
    ])
    log1p_x = np.concatenate([np.array([0.0, 1.0, 1e-30, 1e-8], f32),
                              rng.uniform(0, 1, 200_000).astype(f32)])
    log_x = np.concatenate([np.array([1.0, 2.0, 2.0 ** 20, 0.0, np.inf, np.nan], f32),
                            np.exp(rng.uniform(0, 20 * np.log(2), 200_000)).astype(f32)])
    mid_x = rng.uniform(-87.3, 88.0, 200_000).astype(f32)
    # the one-loop softcap's 2^z2 (|z2| <= 64 log2 e = 92.3) and 2^(x k)
    # for cap 30 (|x k| clamped to 40)
    exp2_x = np.concatenate([np.array([0.0, -0.0, 0.5, -0.5, 92.5, -92.5], f32),
                             rng.uniform(-92.5, 92.5, 200_000).astype(f32)])
    k = f32(2 * np.log2(np.e) / 30.0)
    scaled_x = np.concatenate([[k], np.array([0.0, 40 / k, -40 / k], f32),
                               rng.uniform(-40 / k, 40 / k, 200_000).astype(f32)]).astype(f32)
    # float64: exp on >= 10^6 points, the underflow and overflow edges
    # densely; expm1 on the softcap's [-40, 40]; log1p on [0, 1]
    exp64_x = np.concatenate([
        EXP64_SPECIALS,
        rng.uniform(-746.0, 710.0, EXP_POINTS // 2),
        rng.uniform(-746.0, -707.0, EXP_POINTS // 4),  # subnormal results
        rng.uniform(700.0, 710.0, EXP_POINTS // 8),    # near DBL_MAX
        rng.uniform(-1.0, 1.0, EXP_POINTS - EXP_POINTS // 2 - EXP_POINTS // 4
                    - EXP_POINTS // 8)])
    tiny = 10.0 ** rng.uniform(-300, -5, 100_000) * rng.choice([-1.0, 1.0], 100_000)
    expm1_x = np.concatenate([np.array([0.0, -0.0, np.nan, 40.0, -40.0, 1e-300, -1e-300]),
                              rng.uniform(-40, 40, 400_000), rng.uniform(-1, 1, 400_000),
                              rng.uniform(-1e-5, 1e-5, 100_000), tiny])
    log1p64_x = np.concatenate([np.array([0.0, 1.0, 5e-324, 1e-300, 1e-20, 1e-8]),
                                rng.uniform(0, 1, 900_000), 10.0 ** rng.uniform(-20, 0, 100_000)])
    return [dict(kind="map", which=0, x=exp_x), dict(kind="map", which=1, x=log1p_x),
            dict(kind="map", which=2, x=log_x), dict(kind="map", which=3, x=mid_x),
            dict(kind="map", which=4, x=exp2_x), dict(kind="map", which=5, x=scaled_x),
            dict(kind="map", which=6, x=exp64_x), dict(kind="map", which=7, x=expm1_x),
            dict(kind="map", which=8, x=log1p64_x),
            dict(kind="map", which=9, x=np.concatenate([
                np.array([np.nan, -np.inf, np.inf, -0.0, 1e-45], f32),
                rng.standard_normal(100_003).astype(f32)]))]


def corpus(seed=20261206):
    rng = np.random.default_rng(seed)
    return rows_cases(rng) + elem_cases(rng) + map_cases(rng)


# --------------------------------------------------------- file in, file out

def _i64(*v):
    a = np.zeros(16, np.int64)
    a[:len(v)] = v
    return a.tobytes()


def _f64(*v):
    a = np.zeros(8, np.float64)
    a[:len(v)] = v
    return a.tobytes()


def write_rows_case(f, c):
    x = c["x"]
    n, k = x.shape
    ds = x.itemsize
    want = c["want"]
    f.write(np.int64(1).tobytes())
    w = c["class_weight"]
    weight_total = float(np.sum(w, dtype=np.float64)) if w is not None else float(k)
    f.write(_i64(ds, n, k, c["x_stride"], c["out_stride"], MODES[c["mode"]], c["streaming"],
                 c["target"] is not None, IGNORE, w is not None, c["row_scale"] is not None,
                 c["row_weight"] is not None, c["probs"] is not None, want,
                 2 if c["in_place"] == "shared" else int(bool(c["in_place"]))))
    f.write(_f64(c["scale"], c["eps"], c["z_loss"], c["softcap"], 1.0 / c["temperature"],
                 weight_total))
    xs = np.full((n, c["x_stride"]), 123.0, x.dtype)  # padding: never read
    xs[:, :k] = x
    f.write(xs.tobytes())
    if c["target"] is not None:
        f.write(c["target"].tobytes())
    if w is not None:
        f.write(w.tobytes())
    if c["row_scale"] is not None:
        f.write(c["row_scale"].tobytes())
    if c["row_weight"] is not None:
        f.write(c["row_weight"].tobytes())
    if c["probs"] is not None:
        f.write(c["probs"].tobytes())


def write_elem_case(f, c):
    x = c["x"]
    n, k = x.shape
    f.write(np.int64(2).tobytes())
    f.write(_i64(x.itemsize, n, k, 0 if c["op"] == "bce" else 1, c["w"] is not None,
                 *c["w_strides"], c["pw"] is not None, 1, c["g"] is not None, *c["g_strides"],
                 1, 1, 1))
    f.write(_f64(c["scale"], c["eps"]))
    for a in (x, c["y"], c["w"], c["pw"], c["g"]):
        if a is not None:
            f.write(np.ascontiguousarray(a).tobytes())


def _map_dtype(which):
    return np.float64 if which in F64_MAPS else np.float32


def write_map_case(f, c):
    f.write(np.array([3, c["which"], c["x"].size], np.int64).tobytes())
    f.write(c["x"].astype(_map_dtype(c["which"])).tobytes())


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, count, dtype):
        nbytes = count * np.dtype(dtype).itemsize
        a = np.frombuffer(self.data, dtype, count, self.pos)
        self.pos += nbytes
        return a.copy()


def read_outputs(data, cases, threads):
    """Per case: a list (one per thread count) of dicts of output arrays."""
    end = data.index(b"\0")
    name = data[:end].decode()
    r = _Reader(data)
    r.pos = end + 1
    results = []
    for c in cases:
        if c["kind"] == "rows":
            n, k = c["x"].shape
            runs = []
            for _ in threads:
                d = {"plan": PLANS[int(r.take(1, np.int64)[0])]}
                for key in ("loss", "lse", "z_loss", "entropy"):
                    d[key] = r.take(n, np.float64)
                d["argmax"] = r.take(n, np.int64)
                if c["out_stride"]:
                    d["out"] = r.take(n * c["out_stride"], c["x"].dtype).reshape(n, -1)
                runs.append(d)
            results.append(runs)
        elif c["kind"] == "elem":
            n, k = c["x"].shape
            runs = []
            for _ in threads:
                runs.append({"out": r.take(n * k, c["x"].dtype).reshape(n, k),
                             "row_loss": r.take(n, np.float64),
                             "elem_loss": r.take(n * k, c["x"].dtype).reshape(n, k)})
            results.append(runs)
        else:
            results.append([{"y": r.take(c["x"].size, _map_dtype(c["which"]))}])
    assert r.pos == len(data), "output longer than the cases"
    return name, results


def _clean_env(**extra):
    """The environment for the compiler and qemu: without a sanitizer runtime
    preloaded by tools/sanitize.sh (it would be loaded into them)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")}
    env.update(extra)
    return env


def build_harness(path, cc=CC):
    subprocess.run([os.path.join(ROOT, "tools", "neon", "build.sh"), path], check=True,
                   env=_clean_env(CC=cc), capture_output=True, text=True)


def run(cases=None, threads=THREADS, backend="neon", workdir=None, host=False):
    """Builds the harness, runs the cases under qemu (host=True: the host's
    scalar kernels, natively, to tell the oracle's side of a failure from
    the backend's); (backend name, outputs, seconds)."""
    cases = corpus() if cases is None else cases
    if workdir is None:  # the harness, its cases (about 100 MB) and outputs go with it
        with tempfile.TemporaryDirectory(prefix="xentfast-neon-") as tmp:
            return run(cases, threads, backend, tmp, host)
    tmp = workdir
    exe = os.path.join(tmp, "harness")
    build_harness(exe, cc="cc" if host else CC)
    cases_path, out_path = os.path.join(tmp, "cases.bin"), os.path.join(tmp, "out.bin")
    with open(cases_path, "wb") as f:
        for c in cases:
            {"rows": write_rows_case, "elem": write_elem_case,
             "map": write_map_case}[c["kind"]](f, c)
        f.write(np.int64(0).tobytes())
    t0 = time.perf_counter()
    subprocess.run(([] if host else [QEMU]) + [exe, "scalar" if host else backend, ",".join(map(str, threads)), cases_path, out_path],
                   check=True, capture_output=True, text=True, timeout=1200, env=_clean_env())
    seconds = time.perf_counter() - t0
    with open(out_path, "rb") as f:
        data = f.read()
    name, results = read_outputs(data, cases, threads)
    return name, results, seconds


# ------------------------------------------------------------------- oracle

def _z(x, c):
    u = x / c["temperature"]
    return c["softcap"] * np.tanh(u / c["softcap"]) if c["softcap"] else u


def rows_oracle(c):
    """The expected outputs of a rows case, in float64.

    The oracle itself loses log S against logits near 3e38 (lse = M + log S
    rounds to M); its rows of such logits are taken at x - max(x) instead
    (the loss, its gradient, softmax and entropy do not change with a shift,
    and lse shifts with it), in the cases without z-loss or softcap, the
    only ones given such rows (see rows_cases)."""
    x = c["x"].astype(np.float64)
    n, k = x.shape
    with np.errstate(invalid="ignore"):
        row_max = np.max(np.where(np.isnan(x), -np.inf, x), axis=1) if k else np.zeros(n)
    shift = np.where(np.isfinite(row_max) & (np.abs(row_max) > 1e30) & (c["softcap"] == 0),
                     row_max, 0.0)
    assert not (shift.any() and c["z_loss"]), "huge rows are not given a z-loss"
    xs = x - shift[:, None]
    kw = dict(weight=None if c["class_weight"] is None else c["class_weight"].astype(np.float64),
              sample_weight=c["row_weight"], ignore_index=IGNORE, label_smoothing=c["eps"],
              z_loss=c["z_loss"], softcap=c["softcap"] or None, temperature=c["temperature"])
    exp = {}
    mode = c["mode"]
    counted = (np.ones(n, bool) if c["target"] is None else c["target"] != IGNORE)
    target = c["target"] if c["probs"] is None else c["probs"].astype(np.float64)
    if mode in ("loss", "grad", "eval") and target is not None:
        go = np.full(n, c["scale"]) * (1.0 if c["row_scale"] is None else c["row_scale"])
        loss, grad = reference.cross_entropy_and_grad(xs, target, reduction="none",
                                                      grad_output=go, **kw)
        exp["loss"] = loss
        if mode == "grad":
            exp["out"] = grad
    z = _z(xs, c)
    lse = reference.logsumexp(z, axis=1) + shift / c["temperature"]
    # a NaN logit or a +inf z: no distribution, as the oracle's rows
    nan_row = np.isnan(x).any(axis=1) | np.isposinf(z).any(axis=1)
    if c["want"] & WANT_LSE:
        exp["lse"] = np.where(counted, lse, np.nan)
    if c["want"] & WANT_ZLOSS:
        s = np.ones(n) if c["row_weight"] is None else c["row_weight"]
        zl = np.where(nan_row, np.nan, s * c["z_loss"] * lse ** 2)
        exp["z_loss"] = np.where(counted, zl, 0.0)
    if mode == "eval":
        ev = reference.evaluate(xs, target, **kw)
        exp["entropy"] = np.where(counted, ev["entropy"], np.nan)
        exp["argmax"] = ev["argmax"]
    if mode == "softmax":
        exp["out"] = reference.softmax(xs)
    if mode == "log_softmax":
        exp["out"] = reference.log_softmax(xs)
    return exp


def elem_oracle(c):
    x = c["x"].astype(np.float64)
    n, k = x.shape
    y = c["y"].astype(np.float64)

    def full(a, strides):
        if a is None:
            return None
        a = a.astype(np.float64)
        if strides == (k, 1):
            return a
        return np.broadcast_to(a[None, :] if strides == (0, 1) else a[:, None], (n, k))

    w, g = full(c["w"], c["w_strides"]), full(c["g"], c["g_strides"])
    go = c["scale"] * (np.ones((n, k)) if g is None else g)
    if c["op"] == "bce":
        loss, grad = reference.binary_cross_entropy_with_logits_and_grad(
            x, y, weight=w, pos_weight=None if c["pw"] is None else c["pw"].astype(np.float64),
            reduction="none", label_smoothing=c["eps"], grad_output=go)
    else:
        loss, grad = reference.mean_squared_error_and_grad(x, y, reduction="none",
                                                           grad_output=go)
    return {"out": grad, "elem_loss": loss, "row_loss": loss.sum(axis=1)}


def ulp_error(y, exact):
    """|y - exact| in float32 ulps of the exact value (subnormal ulp below 2^-126)."""
    exact = np.asarray(exact, np.float64)
    mag = np.maximum(np.abs(exact), 2.0 ** -126)
    ulp = 2.0 ** (np.floor(np.log2(mag)) - 23)
    with np.errstate(invalid="ignore"):
        return np.abs(y.astype(np.float64) - exact) / ulp


def ulp_error64(y, exact):
    """|y - exact| in float64 ulps of the exact value (long double; subnormal
    ulp 2^-1074 below 2^-1022)."""
    exact = np.asarray(exact, np.longdouble)
    mag = np.maximum(np.abs(exact), np.longdouble(2.0) ** -1022)
    _, e = np.frexp(mag)
    ulp = np.ldexp(np.longdouble(1.0), e - 53)
    with np.errstate(invalid="ignore"):
        return (np.abs(y.astype(np.longdouble) - exact) / ulp).astype(np.float64)


def _map64_errors(c, y):
    """A float64 map against the long double result (x86's 64-bit significand:
    2^-11 ulp of float64).  Specials: a non-finite argument or result, exactly."""
    x = c["x"].astype(np.longdouble)
    f = {6: np.exp, 7: np.expm1, 8: np.log1p}[c["which"]]
    with np.errstate(all="ignore"):
        exact = f(x)
        ref = exact.astype(np.float64)
    special = ~np.isfinite(ref) | ~np.isfinite(c["x"])
    bad = []
    if special.any():
        a, b = y[special], ref[special]
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if not same.all():
            bad = list(zip(c["x"][special][~same][:5], a[~same][:5], b[~same][:5]))
    err = ulp_error64(y[~special], exact[~special])
    return float(err.max()), "ulp", bad


def map_errors(c, y):
    """(max error, unit, what failed) of a map case; specials checked exactly."""
    which = c["which"]
    if which in F64_MAPS:
        return _map64_errors(c, y)
    if which == 9:  # a copy by streaming stores: bit for bit
        wrong = np.flatnonzero(y.view(np.uint32) != c["x"].view(np.uint32))
        return float(wrong.size), "elements differing", list(wrong[:5])
    x = c["x"].astype(np.float64)
    if which == 5:  # 2^(x k): k first, then the arguments, relative error
        k, x = x[0], x[1:]
        exact = np.exp2(x * k)
        rel = np.abs(y[1:] / exact - 1.0)
        return float(rel.max()), "relative", [] if y[0] == c["x"][0] else [("k", y[0])]
    with np.errstate(all="ignore"):
        exact = (np.exp(x), np.log1p(x), np.log(x), np.exp(x), np.exp2(x))[which]
    ref32 = exact.astype(np.float32)  # the correctly rounded result's class
    special = ~np.isfinite(ref32) | ~np.isfinite(x) | (ref32 == 0)
    bad = []
    if special.any():
        a, b = y[special], ref32[special]
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if which == 0:  # exp: +0 for results below half the least subnormal
            same |= (b == 0) & (a == 0)
        if not same.all():
            bad = list(zip(x[special][~same][:5], a[~same][:5], b[~same][:5]))
    fin = ~special
    if which in (3, 4):
        rel = np.abs(y[fin] / exact[fin] - 1.0)
        return float(rel.max()), "relative", bad
    return float(ulp_error(y[fin], exact[fin]).max()), "ulp", bad


# ------------------------------------------------------------------ checks

@np.errstate(over="ignore")
def check_all(cases, results):
    """Figures and failures: (summary dict, list of failure strings)."""
    fails = []
    worst = {k + sfx: 0.0 for sfx in ("", "_f64")
             for k in ("loss", "grad", "grad_softcap", "elem")}
    plans = {}
    maps = {}
    for i, (c, runs) in enumerate(zip(cases, results)):
        tag = f"case {i} ({c['kind']}"
        if c["kind"] == "map":
            tag += " " + MAPS[c["which"]] + ")"
        elif c["kind"] == "rows":
            tag += (f" {c['mode']} {c['x'].shape} {c['x'].dtype} cap={c['softcap']} "
                    f"T={c['temperature']} eps={c['eps']})")
        else:
            tag += f" {c['op']} {c['x'].shape} {c['x'].dtype})"
        # bitwise identical for every team size
        for t, other in zip(THREADS[1:], runs[1:]):
            for key in runs[0]:
                if key == "plan":
                    continue
                if runs[0][key].tobytes() != other[key].tobytes():
                    fails.append(f"{tag}: {key} differs between 1 and {t} threads")
        if c["kind"] == "map":
            err, unit, bad = map_errors(c, runs[0]["y"])
            maps[MAPS[c["which"]]] = (err, unit, len(c["x"]))
            if bad:
                fails.append(f"{tag}: wrong (special values: x, got, want; a copy: indices): {bad}")
            continue
        if c["kind"] == "elem":
            exp = elem_oracle(c)
            for key in ("out", "elem_loss", "row_loss"):
                got = runs[0][key].astype(np.float64)
                e = np.asarray(exp[key], np.float64)
                tol = F32_TOL if c["x"].dtype == np.float32 else F64_TOL
                if key == "row_loss":
                    tol *= max(1, c["x"].shape[1])
                try:
                    np.testing.assert_allclose(got, e, rtol=tol, atol=tol, equal_nan=True)
                except AssertionError as err:
                    fails.append(f"{tag}: {key}: {str(err)[:400]}")
                d = np.abs(got - e) / (tol * (1.0 + np.abs(e)))
                slot = "elem" if c["x"].dtype == np.float32 else "elem_f64"
                worst[slot] = max(worst[slot], float(np.nanmax(d)) if d.size else 0.0)
            continue
        for one in runs:
            plans.setdefault(one["plan"], 0)
            plans[one["plan"]] += 1
        run = runs[0]
        exp = rows_oracle(c)
        n, k = c["x"].shape
        f32 = c["x"].dtype == np.float32
        tol = (F32_SOFTCAP_TOL if c["softcap"] else F32_TOL) if f32 else F64_TOL
        for key, e in exp.items():
            if key == "out":
                got = run["out"][:, :k].astype(np.float64)
                # the padding of the output rows is never written
                pad = run["out"][:, k:]
                if pad.size and not np.all(pad == -7.0):
                    fails.append(f"{tag}: output padding written")
            elif key == "argmax":
                if not np.array_equal(run["argmax"], e):
                    fails.append(f"{tag}: argmax differs at rows "
                                 f"{np.flatnonzero(run['argmax'] != e)[:5]}")
                continue
            else:
                got = run[key]
            e = np.asarray(e, np.float64)
            if c["x"].dtype == np.float32:
                # as the API returns them: in float32 (a loss past FLT_MAX is
                # inf there, whether a kernel's lanes or the cast made it so)
                got, e = got.astype(np.float32), e.astype(np.float32)
            try:
                np.testing.assert_allclose(got, e, rtol=tol, atol=tol, equal_nan=True)
            except AssertionError as err:
                fails.append(f"{tag}: {key}: {str(err)[:600]}")
            with np.errstate(invalid="ignore"):
                both = np.isfinite(got) & np.isfinite(e)
                # the share of the tolerance used (1 = at the limit)
                d = (np.abs(got - e)[both].astype(np.float64)
                     / (tol * (1.0 + np.abs(e[both].astype(np.float64)))))
            m = float(d.max()) if d.size else 0.0
            slot = ("grad_softcap" if c["softcap"] else "grad") if key == "out" else "loss"
            slot += "" if f32 else "_f64"
            worst[slot] = max(worst[slot], m)
        if c["mode"] in ("loss", "grad", "eval") and "loss" not in exp:
            fails.append(f"{tag}: no oracle for the loss")
    summary = {"cases": len(cases), "rows cases": sum(c["kind"] == "rows" for c in cases),
               "elem cases": sum(c["kind"] == "elem" for c in cases), "plans": plans,
               f"max error / tolerance (atol = rtol = {F32_TOL:g}, {F32_SOFTCAP_TOL:g} softcap; "
               f"float64 {F64_TOL:g})": worst, "maps": maps}
    return summary, fails


def main():
    host = "--host" in sys.argv
    reason = None if host else missing_tools()
    if reason:
        print("cannot run:", reason)
        return 1
    t0 = time.perf_counter()
    cases = corpus()
    if host:  # the scalar kernels: the same harness and corpus, no NEON maps
        cases = [c for c in cases if c["kind"] != "map" or c["which"] < 2]
    name, results, seconds = run(cases, host=host)
    summary, fails = check_all(cases, results)
    print(f"backend {name}; harness under qemu {seconds:.1f} s; "
          f"total {time.perf_counter() - t0:.1f} s")
    for key, value in summary.items():
        print(f"{key}: {value}")
    for f in fails:
        print("FAIL", f)
    print(f"{len(fails)} failures")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
