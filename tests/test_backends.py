"""Backend selection through XENTFAST_BACKEND, each in its own process."""
import json
import os
import subprocess
import sys

import pytest

from xentfast import _core

SCRIPT = r"""
import json, numpy as np, xentfast
from xentfast import reference
rng = np.random.default_rng(3)
x = (rng.standard_normal((300, 2100)) * 3).astype(np.float32)
t = rng.integers(0, 2100, 300)
loss, grad = xentfast.cross_entropy_and_grad(x, t)
loss_ref, grad_ref = reference.cross_entropy_and_grad(x.astype(np.float64), t)
print(json.dumps({"backend": xentfast.backend(), "loss": loss, "loss_ref": loss_ref,
                  "grad_err": float(np.abs(grad - grad_ref).max())}))
"""


def run(backend, code=SCRIPT):
    env = dict(os.environ, XENTFAST_BACKEND=backend)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("backend", _core.supported_backends())
def test_forced_backend_agrees_with_oracle(backend):
    proc = run(backend)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["backend"] == backend
    assert abs(result["loss"] - result["loss_ref"]) <= 1e-6 * abs(result["loss_ref"])
    assert result["grad_err"] <= 1e-6


def test_unknown_backend_is_a_clear_error():
    proc = run("sse9", "import xentfast")
    assert proc.returncode != 0
    assert "unknown backend 'sse9'" in proc.stderr
    assert "avx512, avx2, neon, scalar" in proc.stderr


def test_missing_backend_names_what_the_cpu_has():
    missing = [b for b in _core.BACKENDS if b not in _core.supported_backends()]
    if not missing:
        pytest.skip("this CPU supports every backend; nothing to refuse")
    proc = run(missing[0], "import xentfast")
    assert proc.returncode != 0
    assert "not available" in proc.stderr and "supports" in proc.stderr


def test_best_backend_is_the_default():
    proc = run("", "import xentfast; print(xentfast.backend())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == _core.supported_backends()[0]


def test_show_config_names_everything(capsys):
    import xentfast
    xentfast.show_config()
    text = capsys.readouterr().out
    for word in ("xentfast", "backend", "cpu features", "compiler", "openmp", "threads"):
        assert word in text
    assert xentfast.backend() in text
