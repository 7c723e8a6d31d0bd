"""Measure xentfast's thread decisions: training loops beside BLAS, and crossovers.

    python tools/threads_bench.py loops [--rounds 5] [--steps 100] [--src DIR --src DIR2]
        The README's NumPy loop (X 4096x64 float32, W 64x10: matmul, xentfast
        loss+grad, matmul) and a PyTorch loop (torch.mm, xentfast.torch.cross_entropy,
        backward), each next to a yardstick with the loss computed by NumPy / torch
        instead, under four thread settings.  THREADS_BENCH_SHAPE=rows,features,classes
        changes the shape (default 4096,64,10).  Every (setting, loop) is a fresh
        subprocess, the settings interleaved round by round; the table gives the best
        round of each and its ratio to the best setting of the same loop.

    python tools/threads_bench.py crossover [--kind rows10|rows1000|bce|mse|scan]
        Time one call on 1 thread and on 2 threads (the serial threshold lifted, so
        that 2 threads really run) over sizes 10^3..10^7 elements, interleaved,
        best of many; "cold" calls wait 20 ms before each timed call, so that the
        OpenMP workers have gone to sleep and the caches cooled (the usual case
        between other work).  Below a block of rows (16384 elements) and a chunk
        of targets (65536) a call has one unit of work and runs serially anyway.

Run from the repository root with the package importable (PYTHONPATH=src).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
    "OPENBLAS_NUM_THREADS=1": {"OPENBLAS_NUM_THREADS": "1"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}
LOOPS = ("numpy+xentfast", "numpy yardstick", "torch+xentfast", "torch yardstick")
# rows, features, classes of the loops (X is rows x features, W features x classes)
SHAPE = tuple(int(v) for v in os.environ.get("THREADS_BENCH_SHAPE", "4096,64,10").split(","))
THREAD_VARS = ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOMP_SPINCOUNT",
               "MKL_NUM_THREADS")


def _numpy_loop(kind: str, steps: int) -> float:
    import numpy as np

    import xentfast

    rng = np.random.default_rng(0)
    n, f, c = SHAPE
    x = rng.standard_normal((n, f)).astype(np.float32)
    y = (x @ rng.standard_normal((f, c))).argmax(axis=1)
    w = np.zeros((f, c), np.float32)
    grad_buf = np.empty((n, c), np.float32)
    rows = np.arange(len(y))

    def step():
        nonlocal w
        logits = x @ w
        if kind == "numpy+xentfast":
            _, dlogits = xentfast.cross_entropy_and_grad(logits, y, out=grad_buf)
        else:  # the same gradient in plain NumPy
            z = logits - logits.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[rows, y] -= 1.0
            dlogits = p / len(y)
        w -= 0.5 * (x.T @ dlogits)

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - t0


def _torch_loop(kind: str, steps: int) -> float:
    import torch
    import torch.nn.functional as F

    import xentfast.torch as xt

    g = torch.Generator().manual_seed(0)
    n, f, c = SHAPE
    x = torch.randn(n, f, generator=g)
    y = torch.mm(x, torch.randn(f, c, generator=g)).argmax(dim=1)
    w = torch.zeros(f, c, requires_grad=True)
    loss_fn = xt.cross_entropy if kind == "torch+xentfast" else F.cross_entropy

    def step():
        loss = loss_fn(torch.mm(x, w), y)
        loss.backward()
        with torch.no_grad():
            w.sub_(0.5 * w.grad)
        w.grad = None

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - t0


def _child(kind: str, steps: int, repeats: int) -> None:
    run = _numpy_loop if kind.startswith("numpy") else _torch_loop
    print(min(run(kind, steps) for _ in range(repeats)))


def loops(rounds: int, steps: int, repeats: int, srcs: list[str]) -> None:
    base = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    best = {}
    for r in range(rounds):
        for src in srcs:
            for setting, extra in SETTINGS.items():
                for kind in LOOPS:
                    env = {**base, **extra}
                    if src:
                        env["PYTHONPATH"] = src
                    out = subprocess.run(
                        [sys.executable, __file__, "_child", kind, str(steps), str(repeats)],
                        env=env, capture_output=True, text=True, check=True)
                    t = float(out.stdout.split()[-1])
                    key = src, setting, kind
                    best[key] = min(best.get(key, t), t)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    print(f"{steps} steps, best of {rounds} subprocesses x {repeats} runs each, "
          f"time (ratio to the loop's best setting)")
    for src in srcs:
        print(f"\n{src or 'PYTHONPATH as is'}:\n")
        print("| setting | " + " | ".join(LOOPS) + " |")
        print("|---|" + "---:|" * len(LOOPS))
        for setting in SETTINGS:
            cells = []
            for kind in LOOPS:
                low = min(best[src, s, kind] for s in SETTINGS)
                t = best[src, setting, kind]
                cells.append(f"{t * 1e3:.1f} ms ({t / low:.2f})")
            print(f"| {setting} | " + " | ".join(cells) + " |")


def _call(kind: str, n: int):
    """A call of about n elements of the given kind, as a closure taking num_threads."""
    import numpy as np

    import xentfast
    from xentfast import _core

    rng = np.random.default_rng(0)
    if kind.startswith("rows"):
        c = int(kind[4:])
        rows = max(n // c, 1)
        x = rng.standard_normal((rows, c)).astype(np.float32)
        t = rng.integers(0, c, rows)
        out = np.empty_like(x)
        return lambda k: xentfast.cross_entropy_and_grad(x, t, out=out, num_threads=k)
    if kind in ("bce", "mse"):
        x = rng.standard_normal((max(n // 64, 1), 64)).astype(np.float32)
        y = (rng.random(x.shape) < 0.5).astype(np.float32)
        out = np.empty_like(x)
        fn = (xentfast.binary_cross_entropy_with_logits_and_grad if kind == "bce"
              else xentfast.mean_squared_error_and_grad)
        return lambda k: fn(x, y, out=out, num_threads=k)
    if kind == "scan":
        t = rng.integers(0, 32000, n)
        return lambda k: _core.check_targets(t, 32000, -100, None, None, k)
    raise SystemExit(f"unknown kind {kind!r}")


def crossover(kinds, sizes, budget: float) -> None:
    from xentfast import _core

    _core._set_min_work_per_thread(1, 1, 1)  # let every call with 2 threads open a team
    print("| kind | elements | 1 thread | 2 threads | 1/2 | 1 thread cold | 2 threads cold "
          "| 1/2 cold |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        for n in sizes:
            call = _call(kind, n)
            best = {key: 1e9 for key in ("1", "2", "1c", "2c")}
            deadline = time.perf_counter() + budget
            reps = 0
            while time.perf_counter() < deadline or reps < 5:
                reps += 1
                for key, k in (("1", 1), ("2", 2)):  # hot: back to back
                    call(k)
                    t0 = time.perf_counter()
                    call(k)
                    best[key] = min(best[key], time.perf_counter() - t0)
                for key, k in (("1c", 1), ("2c", 2)):
                    time.sleep(0.02)  # the workers (and the caches) go cold
                    t0 = time.perf_counter()
                    call(k)
                    best[key] = min(best[key], time.perf_counter() - t0)
            us = {key: f"{v * 1e6:.1f} us" for key, v in best.items()}
            print(f"| {kind} | {n} | {us['1']} | {us['2']} | {best['1'] / best['2']:.2f} | "
                  f"{us['1c']} | {us['2c']} | {best['1c'] / best['2c']:.2f} |", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("loops")
    lp.add_argument("--rounds", type=int, default=5)
    lp.add_argument("--steps", type=int, default=100)
    lp.add_argument("--repeats", type=int, default=3)
    lp.add_argument("--src", action="append",
                    help="PYTHONPATH for the children; several: compared round by round")
    cp = sub.add_parser("crossover")
    cp.add_argument("--kind", action="append",
                    help="rows10, rows1000, bce, mse, scan (default: all)")
    cp.add_argument("--sizes", type=lambda s: [int(float(v)) for v in s.split(",")],
                    default=[1000, 10000, 30000, 50000, 100000, 200000, 500000, 1000000,
                             3000000, 10000000])
    cp.add_argument("--budget", type=float, default=0.5, help="seconds per size and kind")
    a = p.parse_args()
    if a.cmd == "loops":
        loops(a.rounds, a.steps, a.repeats, a.src or [""])
    else:
        crossover(a.kind or ["rows10", "rows1000", "bce", "mse", "scan"], a.sizes, a.budget)


if __name__ == "__main__":
    main()
