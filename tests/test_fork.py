"""multiprocessing workers after the parent has used xentfast's threads.

Each case runs a small program in a fresh interpreter (a bounded subprocess, so
a hang fails the test instead of stalling the suite): the parent makes a large
call that opens a parallel region, then a ``multiprocessing`` pool of the given
start method runs the same calls; the workers' results must equal the
parent's bit for bit.  Forked workers must complete and run serially; spawn
and forkserver workers must use threads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from xentfast import _core

if not hasattr(os, "fork"):
    pytest.skip("no fork() here", allow_module_level=True)

PROGRAM = textwrap.dedent('''
    import hashlib, json, multiprocessing as mp, os, sys
    import numpy as np
    import xentfast
    from xentfast import _core

    N, C = 512, 1000  # 512000 elements: parallel in a plain process

    def work(seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((N, C)).astype(np.float32)
        t = rng.integers(0, C, N)
        before = _core.parallel_regions()[0]
        loss, grad = xentfast.cross_entropy_and_grad(x, t, num_threads=2)
        regions, team = _core.parallel_regions()
        return {"loss": loss.hex(), "grad": hashlib.sha256(grad.tobytes()).hexdigest(),
                "opened": regions - before, "team": team,
                "forked_child": _core.forked_child(), "max_threads": _core.max_threads(),
                "team_size": _core.team_size(N * C, 2),
                "preloaded_by": os.environ.get("PRELOADED_BY")}

    if __name__ == "__main__":
        method, preload = sys.argv[1], sys.argv[2:]
        parent = [work(0), work(1)]
        ctx = mp.get_context(method)
        if preload:
            ctx.set_forkserver_preload(preload)
        with ctx.Pool(2) as pool:
            children = pool.map_async(work, [0, 1]).get(timeout=60)
        print(json.dumps({"parent": parent, "children": children}))
''')

# modules a forkserver can import before it forks its workers
PRELOADS = {
    "quiet_import": "import os, xentfast\nos.environ['PRELOADED_BY'] = str(os.getpid())\n",
    "busy_import": ("import os, numpy as np, xentfast\nos.environ['PRELOADED_BY'] = "
                    "str(os.getpid())\nxentfast.logsumexp(np.ones((1024, 1024), np.float32), "
                    "axis=1, num_threads=2)\n"),
}


def run(tmp_path, method, program=PROGRAM, preload=()):
    path = tmp_path / "program.py"
    path.write_text(program)
    for name, text in PRELOADS.items():
        (tmp_path / f"{name}.py").write_text(text)
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(_core.__file__))
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(path), method, *preload], capture_output=True,
                         text=True,
                         timeout=180, env=env, cwd=tmp_path)  # forkserver preloads: cwd
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def same_results(result):
    for parent, child in zip(result["parent"], result["children"]):
        assert (child["loss"], child["grad"]) == (parent["loss"], parent["grad"])


@pytest.mark.skipif(not _core.OPENMP, reason="built without OpenMP: nothing to hang")
def test_fork_after_parallel_call_completes_serially(tmp_path):
    result = run(tmp_path, "fork")
    assert result["parent"][0]["opened"] >= 1 and result["parent"][0]["team"] == 2
    same_results(result)
    for child in result["children"]:
        assert child["forked_child"] is True
        assert child["opened"] == 0 and child["team_size"] == 1 and child["max_threads"] == 1


@pytest.mark.skipif(not _core.OPENMP, reason="built without OpenMP")
@pytest.mark.parametrize("method, preload", [("spawn", ()), ("forkserver", ()),
                                             ("forkserver", ("quiet_import",))])
def test_spawn_and_forkserver_workers_use_threads(tmp_path, method, preload):
    # with quiet_import, the forkserver has imported xentfast (and its fork hooks)
    # before forking the workers, but opened no parallel region
    result = run(tmp_path, method, preload=preload)
    same_results(result)
    for child in result["children"]:
        assert child["forked_child"] is False
        assert child["opened"] >= 1 and child["team"] == 2 and child["team_size"] == 2
        assert (child["preloaded_by"] is not None) == bool(preload)


@pytest.mark.skipif(not _core.OPENMP, reason="built without OpenMP")
def test_forkserver_that_opened_a_region_gives_serial_workers(tmp_path):
    # busy_import runs a parallel call in the forkserver: its runtime has a thread
    # pool, so its workers run serially (and complete)
    result = run(tmp_path, "forkserver", preload=("busy_import",))
    same_results(result)
    for child in result["children"]:
        assert child["preloaded_by"] is not None
        assert child["forked_child"] is True and child["opened"] == 0


NESTED = PROGRAM.split('if __name__ == "__main__":')[0] + textwrap.dedent('''
    def middle(queue):
        # a forked child (serial: it opens no region) forks workers in its turn
        with mp.get_context("fork").Pool(2) as pool:
            queue.put(pool.map_async(work, [0, 1]).get(timeout=60))

    if __name__ == "__main__":
        parent = [work(0), work(1)]
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        process = ctx.Process(target=middle, args=(queue,))
        process.start()
        children = queue.get(timeout=120)
        process.join(60)
        print(json.dumps({"parent": parent, "children": children}))
''')


@pytest.mark.skipif(not _core.OPENMP, reason="built without OpenMP")
def test_fork_of_a_forked_child_stays_serial(tmp_path):
    # the grandchildren inherit the first parent's runtime, broken all the same
    result = run(tmp_path, "fork", NESTED)
    same_results(result)
    assert all(child["forked_child"] and child["opened"] == 0 for child in result["children"])


def test_this_process_is_not_a_forked_child():
    assert _core.forked_child() is False
