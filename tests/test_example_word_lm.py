"""Smoke test of examples/word_lm.py: it runs, briefly, as a user would run it."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import xentfast

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "word_lm.py"

pytestmark = pytest.mark.skipif(not EXAMPLE.is_file(), reason="no examples/ next to tests/")


def test_word_lm_runs(tmp_path):
    # the xentfast this test imports, wherever it comes from (an install or a source tree)
    package_root = str(Path(xentfast.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps", "4", "--max-files", "60", "--batch", "600",
         "--chunk-size", "100", "--held-out", "500"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    vocab = int(re.search(r"vocabulary (\d+) words", out).group(1))
    assert vocab > 1000
    before = float(re.search(r"untrained (\d+)", out).group(1))
    after = float(re.search(r"after 4 steps: ([\d.]+)", out).group(1))
    assert after < before  # four steps already beat the untrained model
    # a step holds one chunk of 512 rows of logits (chunk_size 100 is rounded up to a
    # block), less than the 600-row batch's logits
    step = float(re.search(r"at most ([\d.]+) MiB", out).group(1))
    logits = float(re.search(r"would be (\d+) MiB", out).group(1))
    assert step < logits + 1
    assert list(tmp_path.iterdir()) == []
