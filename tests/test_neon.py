"""The AArch64 NEON kernels, cross-compiled and run under qemu-aarch64.

``tools/neon/harness.c`` drives every kernel entry point as the glue does
(the plan's rows over blocks, the split phases, the element-wise losses,
the exp/log1p maps) with teams of 1, 2 and 3 OpenMP threads; the corpus
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
    workdir = tempfile.mkdtemp(prefix="xentfast-neon-")
    cases = nc.corpus()
    name, results, _ = nc.run(cases, workdir=workdir)
    assert name == "neon"
    summary, fails = nc.check_all(cases, results)
    return cases, results, summary, fails, workdir


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


def test_neon_corpus_reaches_every_plan(neon_run):
    plans = neon_run[2]["plans"]
    # one loop: the NEON layer's one_loop_cap is 0 (the two loops only)
    for plan in ("plain", "narrow", "split", "general", "softcap"):
        assert plans.get(plan, 0) > 0, (plan, plans)
    assert "softcap_one_loop" not in plans


def test_neon_rows_match_the_oracle(neon_run):
    """Loss, lse, z-loss, entropy (1e-6 relative), argmax (exact), gradient,
    softmax and log-softmax (1e-6 absolute, 1e-5 with a softcap), padding
    untouched, for every plan and option and the adversarial rows."""
    fails = [f for f in _fails(neon_run[3], "(rows") if "differs between" not in f]
    assert not fails, "\n".join(fails[:20])


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
