"""Measure xentfast's thread decisions: training loops beside BLAS, and crossovers.

    python tools/threads_bench.py loops [--rounds 5] [--steps 100]
        The README's NumPy loop (X 4096x64 float32, W 64x10: matmul, xentfast
        loss+grad, matmul) and a PyTorch loop (torch.mm, xentfast.torch.cross_entropy,
        backward), each next to a yardstick with the loss computed by NumPy / torch
        instead, under four thread settings.  Every (setting, loop) is a fresh
        subprocess, the settings interleaved round by round; the table gives the best
        round of each and its ratio to the best setting of the same loop.

    python tools/threads_bench.py crossover [--kind rows10|rows1000|bce|mse|scan]
        Time one call on 1 thread and on 2 threads (the serial threshold lifted, so
        that 2 threads really run) over sizes 10^3..10^7 elements, interleaved,
        best of many; "cold" calls wait 20 ms before each timed call, so that the
        OpenMP workers have gone to sleep (the usual case between other work).

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
THREAD_VARS = ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOMP_SPINCOUNT",
               "MKL_NUM_THREADS")


def _numpy_loop(kind: str, steps: int) -> float:
    import numpy as np

    import xentfast

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 64)).astype(np.float32)
    y = (x @ rng.standard_normal((64, 10))).argmax(axis=1)
    w = np.zeros((64, 10), np.float32)
    grad_buf = np.empty((4096, 10), np.float32)
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
    x = torch.randn(4096, 64, generator=g)
    y = torch.mm(x, torch.randn(64, 10, generator=g)).argmax(dim=1)
    w = torch.zeros(64, 10, requires_grad=True)
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


def loops(rounds: int, steps: int, repeats: int) -> None:
    base = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    best = {}
    for r in range(rounds):
        for setting, extra in SETTINGS.items():
            for kind in LOOPS:
                out = subprocess.run(
                    [sys.executable, __file__, "_child", kind, str(steps), str(repeats)],
                    env={**base, **extra}, capture_output=True, text=True, check=True)
                t = float(out.stdout.split()[-1])
                best[setting, kind] = min(best.get((setting, kind), t), t)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    print(f"{steps} steps, best of {rounds} subprocesses x {repeats} runs each, "
          f"time (ratio to the loop's best setting)\n")
    print("| setting | " + " | ".join(LOOPS) + " |")
    print("|---|" + "---:|" * len(LOOPS))
    for setting in SETTINGS:
        cells = []
        for kind in LOOPS:
            low = min(best[s, kind] for s in SETTINGS)
            cells.append(f"{best[setting, kind] * 1e3:.1f} ms ({best[setting, kind] / low:.2f})")
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
    print("| kind | elements | 1 thread | 2 threads hot | 2 threads cold | hot 1/2 | cold 1/2 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        for n in sizes:
            call = _call(kind, n)
            best = {"1": 1e9, "2": 1e9, "2c": 1e9}
            deadline = time.perf_counter() + budget
            reps = 0
            while time.perf_counter() < deadline or reps < 5:
                reps += 1
                for key, k in (("1", 1), ("2", 2)):  # hot: back to back
                    call(k)
                    t0 = time.perf_counter()
                    call(k)
                    best[key] = min(best[key], time.perf_counter() - t0)
                time.sleep(0.02)  # the workers fall asleep
                t0 = time.perf_counter()
                call(2)
                best["2c"] = min(best["2c"], time.perf_counter() - t0)
            print(f"| {kind} | {n} | {best['1'] * 1e6:.1f} us | {best['2'] * 1e6:.1f} us | "
                  f"{best['2c'] * 1e6:.1f} us | {best['1'] / best['2']:.2f} | "
                  f"{best['1'] / best['2c']:.2f} |", flush=True)


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
    cp = sub.add_parser("crossover")
    cp.add_argument("--kind", action="append",
                    help="rows10, rows1000, bce, mse, scan (default: all)")
    cp.add_argument("--sizes", type=lambda s: [int(float(v)) for v in s.split(",")],
                    default=[1000, 3000, 10000, 30000, 100000, 300000, 1000000, 3000000,
                             10000000])
    cp.add_argument("--budget", type=float, default=0.5, help="seconds per size and kind")
    a = p.parse_args()
    if a.cmd == "loops":
        loops(a.rounds, a.steps, a.repeats)
    else:
        crossover(a.kind or ["rows10", "rows1000", "bce", "mse", "scan"], a.sizes, a.budget)


if __name__ == "__main__":
    main()
