"""The AArch64 NEON kernels, cross-compiled and run under qemu-aarch64.

``tools/neon/harness.c`` drives every kernel entry point as the glue does
(the plan's rows over blocks, the split phases, the element-wise losses,
the exp/log1p maps), float32 and float64, with teams of 1, 2 and 3 OpenMP
threads; the corpus
and the checks are in ``tools/neon/neon_cases.py``.  Each test skips, with
the reason, only when the cross compiler or qemu is missing (Debian:
``apt-get install gcc-aarch64-linux-gnu qemu-user``).  Correctness only:
emulated timings say nothing of the speed of an AArch64 CPU.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools", "neon"))
import neon_cases as nc  # noqa: E402

_MISSING = nc.missing_tools()
if _MISSING and os.environ.get("XENTFAST_REQUIRE_NEON") == "1":
    # the CI stage that installs the toolchain: a skip there would hide it
    raise RuntimeError(f"XENTFAST_REQUIRE_NEON=1 but {_MISSING}")
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"NEON under emulation: {_MISSING}")


@pytest.fixture(scope="module")
def neon_run():
    """The whole corpus, once: (cases, outputs, summary, failures, workdir)."""
    with tempfile.TemporaryDirectory(prefix="xentfast-neon-") as workdir:
        cases = nc.corpus()
        name, results, _ = nc.run(cases, workdir=workdir)
        assert name == "neon"
        summary, fails = nc.check_all(cases, results)
        yield cases, results, summary, fails, workdir


def _fails(fails, *words):
    return [f for f in fails if any(w in f for w in words)]


def _harness_name(workdir, backend):
    """The table the harness runs for `backend`, on an empty case file."""
    empty, out = os.path.join(workdir, "empty.bin"), os.path.join(workdir, "empty.out")
    with open(empty, "wb") as f:
        f.write(np.int64(0).tobytes())
    subprocess.run([nc.QEMU, os.path.join(workdir, "harness"), backend, "1", empty, out],
                   check=True, capture_output=True, timeout=120, env=nc._clean_env())
    with open(out, "rb") as f:
        return f.read().split(b"\0")[0].decode()


def test_neon_is_the_default_on_aarch64_and_scalar_can_be_forced(neon_run):
    workdir = neon_run[4]
    assert _harness_name(workdir, "best") == "neon"
    assert _harness_name(workdir, "scalar") == "scalar"  # XENTFAST_BACKEND=scalar
    with pytest.raises(subprocess.CalledProcessError):  # not built for AArch64
        _harness_name(workdir, "avx2")


def _plans(neon_run, dtype):
    """How many runs of the rows cases of `dtype` took each plan."""
    counts = {}
    for c, runs in zip(neon_run[0], neon_run[1]):
        if c["kind"] == "rows" and c["x"].dtype == dtype:
            for r in runs:
                counts[r["plan"]] = counts.get(r["plan"], 0) + 1
    return counts


def test_neon_corpus_reaches_every_plan(neon_run):
    """float32: every plan, the one-loop softcap too (caps <= 64); float64:
    every plan its layer has (no narrow rows, no one loop: caps_f64 = 0)."""
    f32 = _plans(neon_run, np.float32)
    for plan in ("plain", "narrow", "split", "general", "softcap", "softcap_one_loop", "shared"):
        assert f32.get(plan, 0) > 0, (plan, f32)
    f64 = _plans(neon_run, np.float64)
    for plan in ("plain", "split", "general", "softcap"):
        assert f64.get(plan, 0) > 0, (plan, f64)
    assert "narrow" not in f64 and "softcap_one_loop" not in f64, f64
    assert sum(f32.values()) + sum(f64.values()) == sum(neon_run[2]["plans"].values())


def test_neon_rows_match_the_oracle(neon_run):
    """Loss, lse, z-loss, entropy (1e-6 relative), argmax (exact), gradient,
    softmax and log-softmax (1e-6 absolute, 1e-5 with a softcap), padding
    untouched, for every plan and option and the adversarial rows."""
    fails = [f for f in _fails(neon_run[3], "(rows") if "differs between" not in f]
    assert not fails, "\n".join(fails[:20])


def test_neon_float64_rows_and_elementwise_match_the_oracle_to_1e_12(neon_run):
    """The float64 layer's rows (every plan it reaches, every option) and
    BCE/MSE, against the float64 oracle at atol = rtol = 1e-12."""
    assert nc.F64_TOL <= 1e-12
    n64 = sum(c["kind"] in ("rows", "elem") and c["x"].dtype == np.float64
              for c in neon_run[0])
    assert n64 >= 100, n64
    fails = [f for f in neon_run[3] if "float64" in f and "differs between" not in f]
    assert not fails, "\n".join(fails[:20])
    worst = neon_run[2]["max error / tolerance (atol = rtol = 1e-06, 1e-05 softcap; "
                        "float64 1e-12)"]
    for slot in ("loss_f64", "grad_f64", "grad_softcap_f64", "elem_f64"):
        assert 0 < worst[slot] <= 1, (slot, worst)


def test_neon_streaming_stores_change_no_bit(neon_run):
    """STNP is a hint: every output of a streaming case equals, bit for bit,
    that of its twin with ordinary stores (float32 and float64; plain,
    general, both softcap loops, split)."""
    cases, results = neon_run[0], neon_run[1]
    twins = [(c["stream_twin"], i) for i, c in enumerate(cases) if "stream_twin" in c]
    assert len(twins) >= 8
    seen = set()
    for s, t in twins:
        assert cases[s]["streaming"] and not cases[t]["streaming"]
        for run, twin in zip(results[s], results[t]):  # each team size
            seen.add((cases[s]["x"].dtype.name, run["plan"]))
            assert run["plan"] == twin["plan"]
            for key, v in run.items():
                if key != "plan":
                    assert v.tobytes() == twin[key].tobytes(), (s, key)
    # and the benchmark's streaming copy (bounds.h), an unaligned head first
    err, unit, n = neon_run[2]["maps"]["stream_copy"]
    assert unit == "elements differing" and n > 100_000 and err == 0, neon_run[2]["maps"]
    for want in (("float32", "plain"), ("float32", "general"), ("float32", "softcap"),
                 ("float32", "softcap_one_loop"), ("float32", "split"),
                 ("float64", "plain"), ("float64", "softcap"), ("float64", "split")):
        assert want in seen, (want, seen)


def test_neon_elementwise_match_the_oracle(neon_run):
    fails = [f for f in _fails(neon_run[3], "(elem") if "differs between" not in f]
    assert not fails, "\n".join(fails[:20])


def test_neon_bitwise_identical_for_1_2_3_threads(neon_run):
    fails = _fails(neon_run[3], "differs between")
    assert not fails, "\n".join(fails[:20])


def test_neon_exp_within_2_ulp(neon_run):
    """The vector exp against float64 on >= 10^6 points, the underflow edge
    [-104, -86] densely; inf, NaN, overflow and underflow exactly."""
    err, unit, n = neon_run[2]["maps"]["exp"]
    assert unit == "ulp" and n >= 1_000_000
    assert err <= 2.0, err
    fails = _fails(neon_run[3], "(map exp)")
    assert not fails, "\n".join(fails)


def test_neon_log_log1p_and_cheap_exp_accuracy(neon_run):
    maps = neon_run[2]["maps"]
    assert maps["log"][0] <= 2.0, maps["log"]        # narrow rows' log, [1, 2^20]
    assert maps["log1p"][0] <= 2.0, maps["log1p"]    # BCE's log1p on [0, 1]
    assert maps["exp_mid"][0] <= 5e-7, maps["exp_mid"]  # the softcap's exp, relative
    fails = _fails(neon_run[3], "(map")
    assert not fails, "\n".join(fails)


def test_neon_exp2_of_the_one_loop_softcap(neon_run):
    """2^x on [-92.5, 92.5] and 2^(x k) for |x k| <= 40, relative."""
    maps = neon_run[2]["maps"]
    for name in ("exp2_mid", "exp2_scaled"):
        err, unit, n = maps[name]
        assert unit == "relative" and n >= 200_000 and err <= 5e-7, (name, maps[name])
    fails = _fails(neon_run[3], "(map exp2")
    assert not fails, "\n".join(fails)


def test_neon_exp_f64_within_2_ulp(neon_run):
    """The float64 vector exp against long double on >= 10^6 points, with the
    underflow edge (subnormal results, [-746, -707]) and the overflow edge
    ([700, 710]) densely; inf, NaN, overflow and underflow exactly."""
    err, unit, n = neon_run[2]["maps"]["exp_f64"]
    assert unit == "ulp" and n >= 1_000_000 and err <= 2.0, (err, unit, n)
    x = next(c["x"] for c in neon_run[0] if c["kind"] == "map" and c["which"] == 6)
    assert np.count_nonzero((x > -745.2) & (x < -708.4)) >= 100_000  # subnormal results
    assert np.count_nonzero((x > 700) & (x < 709.78)) >= 100_000     # up to DBL_MAX
    assert np.count_nonzero(x > 709.79) > 0 and np.count_nonzero(x < -745.14) > 0
    fails = _fails(neon_run[3], "(map exp_f64)")
    assert not fails, "\n".join(fails)


def test_neon_expm1_and_log1p_f64_within_2_ulp(neon_run):
    """The float64 softcap's expm1 on [-40, 40] (tiny |x| too) and BCE's
    log1p on [0, 1], against long double, >= 10^6 points each."""
    maps = neon_run[2]["maps"]
    for name in ("expm1_f64", "log1p_f64"):
        err, unit, n = maps[name]
        assert unit == "ulp" and n >= 1_000_000 and err <= 2.0, (name, maps[name])
    fails = _fails(neon_run[3], "(map expm1_f64)", "(map log1p_f64)")
    assert not fails, "\n".join(fails)


def test_neon_checks_can_fail(neon_run):
    """The checker reports a wrong gradient entry, a wrong loss and a bit that
    differs between thread counts (it is not vacuous)."""
    cases, results = neon_run[0], neon_run[1]
    i = next(k for k, c in enumerate(cases)
             if c["kind"] == "rows" and c["mode"] == "grad" and c["target"] is not None
             and c["x"].dtype == np.float32 and c["x"].shape[1] >= 10)
    c, runs = cases[i], results[i]
    bad = [dict(r) for r in runs]
    bad[0] = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in runs[0].items()}
    bad[0]["out"][0, 0] += 1e-4
    j = int(np.flatnonzero(np.isfinite(bad[0]["loss"]) & (bad[0]["loss"] > 0.1))[0])
    bad[0]["loss"][j] *= 1 + 1e-5
    for r in bad[1:]:
        r["out"] = bad[0]["out"].copy()
        r["loss"] = bad[0]["loss"].copy()
    bad[2] = dict(bad[2])
    bad[2]["lse"] = bad[2]["lse"].copy()
    j = int(np.flatnonzero(np.isfinite(bad[2]["lse"]))[0])
    bad[2]["lse"][j] = np.nextafter(bad[2]["lse"][j], np.inf)
    _, fails = nc.check_all([c], [bad])
    text = "\n".join(fails)
    assert ": out:" in text and ": loss:" in text and "lse differs between 1 and 3" in text, text


def test_neon_float64_checks_can_fail(neon_run):
    """At float64's 1e-12 a gradient entry off by 1e-11 and a loss off by
    1e-11 relative are reported, and so is a float64 map off by 3 ulp."""
    cases, results = neon_run[0], neon_run[1]
    i = next(k for k, c in enumerate(cases)
             if c["kind"] == "rows" and c["mode"] == "grad" and c["target"] is not None
             and c["x"].dtype == np.float64 and c["x"].shape[1] >= 10)
    bad = [{k: (v.copy() if hasattr(v, "copy") else v) for k, v in r.items()}
           for r in results[i]]
    j = int(np.flatnonzero(np.isfinite(bad[0]["loss"]) & (bad[0]["loss"] > 0.1))[0])
    for r in bad:
        r["out"][j, 0] += 1e-11
        r["loss"][j] *= 1 + 1e-11
    _, fails = nc.check_all([cases[i]], [bad])
    text = "\n".join(fails)
    assert ": out:" in text and ": loss:" in text, text
    m = next(k for k, c in enumerate(cases) if c["kind"] == "map" and c["which"] == 6)
    y = results[m][0]["y"].copy()
    k = int(np.flatnonzero(np.abs(cases[m]["x"]) < 1)[0])
    y[k] = np.nextafter(np.nextafter(np.nextafter(y[k], np.inf), np.inf), np.inf)
    assert nc.map_errors(cases[m], y)[0] > 2.0
