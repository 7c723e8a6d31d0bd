"""xentfast.distributed over real MPI (mpiexec) and torch.distributed (gloo).

Each test starts the ranks of one scenario of tests/distributed_worker.py in
subprocesses with a bounded timeout; the worker compares every rank's
result with the single-process call on the whole batch and with the float64
oracle, and exits non-zero on any failure (printing it).  Without mpi4py and
mpiexec (the `mpi` extra: ``pip install .[mpi]``), or torch, the tests skip
with the reason, except where XENTFAST_REQUIRE_DISTRIBUTED=1 (CI's main run),
where they fail: that run must not skip them.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from helpers import distributed_missing, mpiexec_path

from xentfast import _core
import xentfast.distributed as xd

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")
# the ranks import the very xentfast this test imported (an installed wheel in
# CI, the source tree with an in-place build in development)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(_core.__file__)))
# Bounds a hung collective (a test fails instead of waiting forever); the
# slowest scenario takes about 45 s on two shared cores.
TIMEOUT_SECONDS = 300


_missing = distributed_missing
_mpiexec = mpiexec_path


def _env():
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _check(outputs, returncodes):
    text = "\n".join(outputs)
    assert all(code == 0 for code in returncodes), f"exit codes {returncodes}\n{text[-6000:]}"
    assert "OK " in text and "FAILED" not in text, text[-6000:]


@pytest.mark.parametrize("scenario,n_ranks", [
    ("vocab", 2), ("vocab", 4), ("data", 2), ("data", 4), ("grid", 4), ("errors", 2),
    ("errors", 4),
    # an odd rank count: shard widths 1, 20, 16 (and 1, 2500, 2499) of the
    # vocabulary; rows 0, 20, 9 with the last rank's all ignored
    ("vocab", 3), ("data", 3),
    ("evaluate", 2), ("evaluate", 3), ("evaluate", 4),
    # one rank's bad target, shape or options: the same error on every rank
    # (vocab_start given or not, data_comm, a grid), no rank left waiting
    ("agreement", 2), ("agreement", 4),
    # the collectives of a call, counted: vocab_comm with vocab_start 2
    # (agreement + the rows' SUM), data_comm 1 (2 for a "mean" loss+grad)
    ("count", 2), ("count", 3)])
def test_mpi(scenario, n_ranks):
    mpiexec = _mpiexec()
    try:
        run = subprocess.run([mpiexec, "-n", str(n_ranks), sys.executable, WORKER, "mpi",
                              scenario], capture_output=True, text=True, env=_env(),
                             timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec -n {n_ranks} {scenario} did not finish in {TIMEOUT_SECONDS} s "
                    f"(a hung collective?)\n{e.stdout}\n{e.stderr}")
    _check([run.stdout, run.stderr], [run.returncode])


@pytest.mark.parametrize("backend", ["scalar", "avx2"])
def test_mpi_vocab_other_backends(backend):
    """The shard passes of every backend (the runs above take the best one)."""
    if backend not in _core.supported_backends():
        pytest.skip(f"the {backend} kernels are not built or not supported by this CPU")
    mpiexec = _mpiexec()
    run = subprocess.run([mpiexec, "-n", "2", sys.executable, WORKER, "mpi", "vocab"],
                         capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
                         env=dict(_env(), XENTFAST_BACKEND=backend))
    _check([run.stdout, run.stderr], [run.returncode])
    assert f"({backend})" in run.stdout, run.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scenario,n_ranks", [
    ("vocab", 2), ("data", 2), ("grid", 4), ("errors", 2), ("torch_autograd", 2),
    ("evaluate", 2), ("agreement", 2), ("agreement", 4),
    ("count", 2)])  # with the autograd function: nothing in the backward pass
def test_torch_gloo(scenario, n_ranks):
    try:
        import torch.distributed as dist
    except ImportError:
        _missing("torch is not installed")
    if not dist.is_available() or not dist.is_gloo_available():
        _missing("torch.distributed with gloo is not available")
    port = _free_port()
    procs = []
    for rank in range(n_ranks):
        env = dict(_env(), RANK=str(rank), WORLD_SIZE=str(n_ranks), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, WORKER, "torch", scenario], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs, codes = [], []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT_SECONDS)
            outputs.append(out)
            codes.append(p.returncode)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"torch gloo {scenario} on {n_ranks} ranks did not finish in "
                    f"{TIMEOUT_SECONDS} s (a hung collective?)")
    _check(outputs, codes)


# --------------------------------------------------------------------------
# in this process: what needs no second rank


def test_import_needs_neither_mpi4py_nor_torch():
    code = ("import sys, xentfast, xentfast.distributed; "
            "assert 'mpi4py' not in sys.modules and 'torch' not in sys.modules, "
            "[m for m in ('mpi4py', 'torch') if m in sys.modules]")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), timeout=60)


def test_not_a_communicator():
    x, y = np.zeros((2, 3), np.float32), np.array([0, 1])
    with pytest.raises(TypeError, match="vocab_comm must be an mpi4py MPI.Comm or a torch"):
        xd.cross_entropy(x, y, vocab_comm=object())
    with pytest.raises(TypeError, match="data_comm must be"):
        xd.cross_entropy_and_grad(x, y, data_comm=[1, 2])
    with pytest.raises(ValueError, match="give vocab_comm, data_comm or both"):
        xd.cross_entropy(x, y)
    with pytest.raises(ValueError, match="vocab_start needs vocab_comm"):
        xd.cross_entropy(x, y, vocab_start=0)
    with pytest.raises(ValueError, match="give vocab_comm, data_comm or both"):
        xd.evaluate(x, y)
    with pytest.raises(TypeError, match="data_comm must be"):
        xd.perplexity(x, y, data_comm=object())
    with pytest.raises(TypeError, match="perplexity takes no reduction"):
        xd.perplexity(x, y, data_comm=object(), reduction="sum")


def test_one_rank_mpi_comm_self():
    """A single rank (COMM_SELF) holds the whole vocabulary: the shard
    kernels' two passes and the row end from combined statistics equal the
    single-process call to rounding, on every option."""
    pytest.importorskip("mpi4py")
    code = r"""
import numpy as np, xentfast, xentfast.distributed as xd
from mpi4py import MPI
rng = np.random.default_rng(0)
x = rng.standard_normal((40, 5000)).astype(np.float32) * 4
y = rng.integers(0, 5000, 40); y[::7] = -100
w = rng.uniform(0.5, 2, 5000).astype(np.float32)
for kw in ({}, {"weight": w, "label_smoothing": 0.1}, {"z_loss": 1e-3, "softcap": 30.0},
           {"temperature": 0.5, "sample_weight": rng.uniform(0.5, 2, 40)}):
    for reduction in ("mean", "sum", "none"):
        a = xd.cross_entropy_and_grad(x, y, vocab_comm=MPI.COMM_SELF, reduction=reduction, **kw)
        b = xentfast.cross_entropy_and_grad(x, y, reduction=reduction, **kw)
        np.testing.assert_allclose(a[0], b[0], rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(xd.cross_entropy(x, y, vocab_comm=MPI.COMM_SELF,
                                                    reduction=reduction, **kw), b[0],
                                   rtol=2e-6, atol=1e-6)
print("OK")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), timeout=TIMEOUT_SECONDS)
    assert run.returncode == 0 and "OK" in run.stdout, run.stdout + run.stderr


def _example_script(doc):
    """The indented literal block after the docstring's "::" (its Examples)."""
    import textwrap
    block = doc.split("::\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line.strip() and not line.startswith(" " * 8):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_and_grad", "evaluate",
                                      "perplexity"])
def test_docstring_example_mpi(function, tmp_path):
    mpiexec = _mpiexec()
    script = tmp_path / "example.py"
    script.write_text(_example_script(getattr(xd, function).__doc__))
    run = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script)], capture_output=True,
                         text=True, env=_env(), timeout=TIMEOUT_SECONDS)
    assert run.returncode == 0, run.stdout + run.stderr


def test_docstring_example_torch(tmp_path):
    torch = pytest.importorskip("torch")  # noqa: F841
    from xentfast import _torch_distributed
    script = tmp_path / "example.py"
    script.write_text(_example_script(_torch_distributed.cross_entropy.__doc__))
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=dict(_env(), RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r),
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)))
             for r in range(2)]
    try:
        outs = [p.communicate(timeout=TIMEOUT_SECONDS)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("the example did not finish")
    assert all(p.returncode == 0 for p in procs), "\n".join(outs)
