"""The distributed benchmark (``--distributed``): xentfast.distributed over 2 MPI ranks.

The whole batch is ``--shape`` N x C float32 (default 8192 x 32000).  Two
ranks, one thread each, started by ``mpiexec -n 2`` (this module's child,
with mpi4py), time in one run, interleaved:

* **vocabulary-parallel**: each rank holds the N rows' C/2 classes of its
  shard and calls :func:`xentfast.distributed.cross_entropy_and_grad` with
  ``vocab_comm`` (and ``vocab_start``), against the single-process
  :func:`xentfast.cross_entropy_and_grad` on an N x C/2 shard, which both
  ranks run at the same time (so both cores are as busy as in the
  distributed call).  A third row, the shard's own two passes on a one-rank
  communicator (no traffic), splits the ratio into the passes' cost and the
  communication's and agreement's; the loss alone (one pass in both) is timed
  too;
* **data-parallel**: each rank holds N/2 of the rows with every class, the
  same whole batch, and calls it with ``data_comm``, against the
  single-process call on its N/2 rows.

Each call's time is the slower rank's; each method runs ``repeat`` times
(at least :data:`MIN_ROUNDS`), the methods taking turns, and the table shows
the median, the best and the spread.  The bytes each rank hands to the
collectives in a call (counted by wrapping them) stand beside the size of
its logits.  Without mpi4py or ``mpiexec`` the mode reports why and fails.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from .report import _render, _with_unit

RANKS = 2
# The product's targets on 2 ranks of 1 thread: a vocabulary-parallel call at
# most this many times the single-process kernel on one rank's shard (what
# communication and agreement may add), a data-parallel one at most this
# many times the single-process kernel on the local rows.
VOCAB_PARALLEL_RATIO_LIMIT = 1.2
DATA_PARALLEL_RATIO_LIMIT = 1.05
# Each method is timed at least this many times: the median of a handful
# resists one busy moment of a shared machine.
MIN_ROUNDS = 5
# The distributed losses agree with the single-process call on the gathered
# logits of the first rows to this relative tolerance.
LOSS_RTOL = 1e-5
CHECK_ROWS = 64
_TAG = "xentfast-bench-distributed: "
# The ranks' runs are bounded: a hung collective fails the mode, not the shell.
TIMEOUT_SECONDS = 1800


def _mpiexec():
    """mpiexec beside the interpreter (where the mpich wheel installs it), else
    on PATH, else None."""
    for candidate in (os.path.join(os.path.dirname(sys.executable), "mpiexec"),
                      shutil.which("mpiexec")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def command(n, c, rounds):
    """The command line the mode runs (printed with the table)."""
    return [_mpiexec() or "mpiexec", "-n", str(RANKS), sys.executable, "-m",
            "xentfast.bench.distributed", str(n), str(c), str(rounds)]


def run_distributed(ctx) -> dict:
    """Start the ranks on ``ctx.args.shape``; their report (rank 0's), or
    the reason they could not run."""
    n, c = ctx.args.shape
    rounds = max(MIN_ROUNDS, ctx.repeat)
    report = {"shape": [n, c], "ranks": RANKS, "rounds": rounds,
              "load_before": list(os.getloadavg()), "command": None}
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return dict(report, correctness={"ok": False, "reason": "mpi4py is not installed "
                                         "(pip install mpi4py mpich)"})
    if _mpiexec() is None:
        return dict(report, correctness={"ok": False, "reason": "mpiexec is not on PATH "
                                         "(pip install mpich)"})
    if c < RANKS or n < RANKS:
        return dict(report, correctness={"ok": False,
                                         "reason": f"--shape needs N, C >= {RANKS}"})
    argv = command(n, c, rounds)
    report["command"] = " ".join(["OMP_NUM_THREADS=1"] + argv[:3] + ["python"] + argv[4:])
    # the ranks import the xentfast this process imported; mpiexec's helpers
    # sit beside the interpreter (the mpich wheel)
    import xentfast
    src = os.path.dirname(os.path.dirname(os.path.abspath(xentfast.__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
               PATH=os.pathsep.join(filter(None, [os.path.dirname(sys.executable),
                                                  os.environ.get("PATH")])))
    try:
        run = subprocess.run(argv, capture_output=True, text=True, env=env,
                             timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return dict(report, correctness={"ok": False, "reason": f"the ranks did not finish "
                                         f"in {TIMEOUT_SECONDS} s"})
    lines = [line[len(_TAG):] for line in run.stdout.splitlines() if line.startswith(_TAG)]
    if run.returncode != 0 or not lines:
        tail = (run.stdout + run.stderr)[-2000:]
        return dict(report, correctness={"ok": False, "reason": f"mpiexec exited with "
                                         f"{run.returncode}: {tail}"})
    report.update(json.loads(lines[-1]))
    report["load_after"] = list(os.getloadavg())
    return report


def _stats(times):
    t = np.asarray(times)
    return {"median": float(np.median(t)), "best": float(t.min()), "worst": float(t.max())}


def _ratio_row(label, num, den, limit):
    r_med, r_best = num["median"] / den["median"], num["best"] / den["best"]
    verdict = "" if limit is None else ("met" if r_med <= limit else "NOT met")
    return [label, f"{r_med:.2f}", f"{r_best:.2f}",
            "" if limit is None else f"<= {limit:.2f}", verdict]


def format_distributed_report(report) -> str:
    n, c = report["shape"]
    head = (f"distributed: {n} x {c} float32 over {report['ranks']} MPI ranks, 1 thread each, "
            f"{report['rounds']} rounds interleaved (time per call: the slower rank)")
    if not report["correctness"]["ok"] and "methods" not in report:
        return f"{head}\n  not run: {report['correctness']['reason']}"
    lines = [head, f"command: {report['command']}",
             "load average (1, 5, 15 min) before: %.2f %.2f %.2f, after: %.2f %.2f %.2f"
             % tuple(report["load_before"] + report["load_after"]), ""]
    rows = []
    for key, m in report["methods"].items():
        rows.append([m["label"], _with_unit(m["median"]), _with_unit(m["best"]),
                     f"{_with_unit(m['best'])} .. {_with_unit(m['worst'])}", m["logits"]])
    lines.extend(_render(["method", "median", "best", "spread", "logits per rank"], rows))
    lines.append("")
    meth = report["methods"]
    ratios = [
        _ratio_row("vocab-parallel / single-process on the shard", meth["vocab"],
                   meth["vocab_single"], VOCAB_PARALLEL_RATIO_LIMIT),
        _ratio_row("  of which the shard's two passes (no traffic)", meth["vocab_passes"],
                   meth["vocab_single"], None),
        _ratio_row("  of which communication and agreement", meth["vocab"],
                   meth["vocab_passes"], None),
        _ratio_row("vocab-parallel loss alone / single-process loss", meth["vocab_loss"],
                   meth["vocab_single_loss"], None),
        _ratio_row("data-parallel / single-process on the local rows", meth["data"],
                   meth["data_single"], DATA_PARALLEL_RATIO_LIMIT),
    ]
    lines.extend(_render(["ratio", "median", "best", "target", ""], ratios))
    lines.append("")
    traffic = []
    for key in ("vocab", "data"):
        t = report["traffic"][key]
        traffic.append([meth[key]["label"], str(t["collectives"]), f"{t['bytes']:,}",
                        f"{t['agreement_bytes']:,}", f"{t['logits_bytes']:,}",
                        f"{100.0 * t['bytes'] / t['logits_bytes']:.2g} %"])
    lines.extend(_render(["bytes per call and rank", "collectives", "handed to them",
                          "of which the agreement", "this rank's logits", "share"], traffic))
    check = report["correctness"]
    lines.append("")
    lines.append(f"correctness: {'OK' if check['ok'] else 'FAILED'} (the first {CHECK_ROWS} "
                 f"rows' losses against the single-process call on their gathered logits: "
                 f"largest relative difference {check['max_rel_diff']:.1e})")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# the ranks (run by mpiexec)


class _Traffic:
    """Counts what xentfast.distributed hands to its collectives."""

    def __init__(self, xd):
        self.xd, self.calls = xd, []
        reduce, gather = xd._Comm.allreduce, xd._Comm.allgather
        traffic = self

        def counting_reduce(comm, buf, op):
            traffic.calls.append(("reduce", buf.nbytes, buf.size == xd._FIELDS * comm.size
                                  + xd._SHARED))
            return reduce(comm, buf, op)

        def counting_gather(comm, obj):
            import pickle
            traffic.calls.append(("gather", len(pickle.dumps(obj)), True))
            return gather(comm, obj)

        self.saved = reduce, gather
        xd._Comm.allreduce, xd._Comm.allgather = counting_reduce, counting_gather

    def count(self, fn, logits_bytes):
        self.calls = []
        try:
            fn()
        finally:
            self.xd._Comm.allreduce, self.xd._Comm.allgather = self.saved
        calls = self.calls
        return {"collectives": len(calls), "bytes": sum(b for _, b, _ in calls),
                "agreement_bytes": sum(b for _, b, agree in calls if agree),
                "logits_bytes": logits_bytes}


def _child(n, c, rounds):
    from mpi4py import MPI

    import xentfast
    import xentfast.distributed as xd

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    width = c // size + (rank < c % size)
    start = sum(c // size + (r < c % size) for r in range(rank))
    rng = np.random.default_rng(rank)
    y = np.random.default_rng(size).integers(0, c, n)

    def timed(fn):
        comm.Barrier()
        t0 = time.perf_counter()
        fn()
        return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)

    def race(methods):
        for fn in methods.values():  # warm: the pages of out, the code paths
            fn()
        times = {k: [] for k in methods}
        for _ in range(rounds):
            for k, fn in methods.items():
                times[k].append(timed(fn))
        return {k: _stats(v) for k, v in times.items()}

    out_info = {"methods": {}, "traffic": {}}
    # vocabulary-parallel: this rank's classes of all the rows
    x = 3 * rng.standard_normal((n, width), dtype=np.float32)
    out = np.empty_like(x)
    y_shard = y % width  # the single-process call on the shard: its own classes
    vocab = {
        "vocab": lambda: xd.cross_entropy_and_grad(x, y, vocab_comm=comm, vocab_start=start,
                                                   out=out, num_threads=1),
        "vocab_single": lambda: xentfast.cross_entropy_and_grad(x, y_shard, out=out,
                                                                num_threads=1),
        "vocab_passes": lambda: xd.cross_entropy_and_grad(x, y_shard, vocab_comm=MPI.COMM_SELF,
                                                          out=out, num_threads=1),
        # where the passes' time goes: the statistics pass alone (a loss
        # without gradient on one rank), and one read of the logits (their max)
        "vocab_stats": lambda: xd.cross_entropy(x, y_shard, vocab_comm=MPI.COMM_SELF,
                                                num_threads=1),
        "vocab_read": lambda: np.max(x),
        # the loss alone: one pass in both
        "vocab_loss": lambda: xd.cross_entropy(x, y, vocab_comm=comm, vocab_start=start,
                                               num_threads=1),
        "vocab_single_loss": lambda: xentfast.cross_entropy(x, y_shard, num_threads=1),
    }
    labels = {"vocab": f"vocab-parallel, {n} x {width} per rank",
              "vocab_single": f"single-process on {n} x {width} (both ranks)",
              "vocab_passes": "the shard's two passes, no traffic (COMM_SELF)",
              "vocab_stats": "  its statistics pass alone (a loss, COMM_SELF)",
              "vocab_read": "  one read of the shard (NumPy max)",
              "vocab_loss": "vocab-parallel loss alone (no gradient)",
              "vocab_single_loss": "single-process loss alone on the shard (both ranks)"}
    for k, s in race(vocab).items():
        out_info["methods"][k] = dict(s, label=labels[k], logits=f"{n} x {width}")
    out_info["traffic"]["vocab"] = _Traffic(xd).count(vocab["vocab"], x.nbytes)
    # the first rows' losses against the single-process call on the gathered logits
    rows = min(n, CHECK_ROWS)
    got = xd.cross_entropy(x[:rows], y[:rows], vocab_comm=comm, vocab_start=start,
                           reduction="none")
    pieces = comm.gather(np.ascontiguousarray(x[:rows]), root=0)
    rel = 0.0
    if rank == 0:
        want = xentfast.cross_entropy(np.concatenate(pieces, axis=1), y[:rows],
                                      reduction="none")
        rel = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-30)))
    del x, out, vocab
    # data-parallel: this rank's rows of the same batch, every class
    n_local = n // size + (rank < n % size)
    first = sum(n // size + (r < n % size) for r in range(rank))
    xr = 3 * rng.standard_normal((n_local, c), dtype=np.float32)
    out = np.empty_like(xr)
    yr = y[first:first + n_local]
    data = {
        "data": lambda: xd.cross_entropy_and_grad(xr, yr, data_comm=comm, out=out,
                                                  num_threads=1),
        "data_single": lambda: xentfast.cross_entropy_and_grad(xr, yr, out=out,
                                                               num_threads=1),
    }
    labels = {"data": f"data-parallel, {n_local} x {c} per rank",
              "data_single": f"single-process on {n_local} x {c} (both ranks)"}
    for k, s in race(data).items():
        out_info["methods"][k] = dict(s, label=labels[k], logits=f"{n_local} x {c}")
    out_info["traffic"]["data"] = _Traffic(xd).count(data["data"], xr.nbytes)
    loss = xd.cross_entropy(xr, yr, data_comm=comm, reduction="sum")
    local = xentfast.cross_entropy(xr, yr, reduction="sum")
    total = comm.allreduce(local, op=MPI.SUM)
    if rank == 0:
        rel = max(rel, abs(loss - total) / abs(total))
        out_info["correctness"] = {"ok": bool(rel <= LOSS_RTOL), "max_rel_diff": rel}
        out_info["backend"] = xentfast.backend()
        print(_TAG + json.dumps(out_info), flush=True)


if __name__ == "__main__":
    _child(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
