"""Smoke test of examples/data_parallel_mpi.py under ``mpiexec -n 2``.

The example trains on ranks with uneven rows and uneven padding; its
distributed loss curve must equal the single-process one on the concatenated
data (to float32 rounding), and the naive average of per-rank means must not.
Without mpi4py and mpiexec the test skips with the reason, except where
XENTFAST_REQUIRE_DISTRIBUTED=1, where it fails (as tests/test_distributed.py).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import mpiexec_path

import xentfast

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data_parallel_mpi.py"
# Bounds a hung collective; the run takes about a second.
TIMEOUT_SECONDS = 300
STEPS = 20

pytestmark = pytest.mark.skipif(not EXAMPLE.is_file(), reason="no examples/ next to tests/")


_mpiexec = mpiexec_path


def test_data_parallel_matches_single_process(tmp_path):
    mpiexec = _mpiexec()
    # the xentfast this test imports, wherever it comes from (an install or a source tree)
    package_root = str(Path(xentfast.__file__).resolve().parents[1])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [package_root,
                                                        os.environ.get("PYTHONPATH")])))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    try:
        run = subprocess.run([mpiexec, "-n", "2", sys.executable, str(EXAMPLE), "--steps",
                              str(STEPS), "--print-every", "5"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the example did not finish in {TIMEOUT_SECONDS} s (a hung collective?)"
                    f"\n{e.stdout}\n{e.stderr}")
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    # the ranks count different numbers of tokens: the case the naive average gets wrong
    counted = [int(v) for v in re.search(r"counted \(not padding\) \[(\d+), (\d+)\]",
                                         out).groups()]
    assert counted[0] != counted[1], out
    distributed = float(re.search(r"max \|distributed - single-process\| = (\S+)", out).group(1))
    naive = float(re.search(r"max \|naive - single-process\| = (\S+)", out).group(1))
    assert distributed < 1e-5, out
    assert naive > 1e-4 and naive > 100 * distributed, out
    # the loss fell: the last printed row (step STEPS - 1) against step 0
    rows = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", out, re.M)
    assert rows[0][0] == "0" and rows[-1][0] == str(STEPS - 1), out
    assert float(rows[-1][2]) < float(rows[0][2]) - 0.5, out
    assert list(tmp_path.iterdir()) == []
