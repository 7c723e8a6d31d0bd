"""Benchmark of the fused linear + cross-entropy (a language-model head).

For one shape N × D → V (float32, ``T`` threads) it times, interleaved in one
process (round after round, best of each), loss + every gradient by:

* the three GEMMs alone at full size (``hidden @ W.T``, ``G @ W``, ``G.T @ hidden``
  with NumPy's BLAS): the floor any method has to pay;
* ``xentfast.linear_cross_entropy_and_grad`` (gradient buffers reused), and
  again with half of the targets set to ``ignore_index``;
* every installed peer: PyTorch ``F.linear`` + ``F.cross_entropy``,
  ``F.linear_cross_entropy`` unchunked and chunked
  (``options=torch.nn.LinearCrossEntropyOptions()``), and xentfast's PyTorch
  adapter;

then each method's peak resident memory in a fresh process of its own (and
that peak less the process's memory after imports and inputs), and the
distance of every method's loss and gradients from the float64 oracle on a
smaller shape.  ``python -m xentfast.bench --linear`` runs it on the default head
shape; ``python -m xentfast.bench.linear --shape 2048 512 128256`` on any.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import xentfast
from xentfast import _linear, reference
from xentfast.bench import memory

DEFAULT_SHAPES = ((4096, 1024, 32000), (2048, 512, 128256))
ORACLE_SHAPE = (512, 64, 4096)
IGNORE_INDEX = -100

#: Methods in table order: key -> label.
LABELS = {
    "gemms": "three GEMMs alone (NumPy BLAS, full size)",
    "xentfast": "xentfast linear_cross_entropy_and_grad",
    "xentfast-half": "xentfast, half the targets ignored",
    "xentfast-torch": "xentfast.torch linear_cross_entropy + backward",
    "torch-plain": "PyTorch F.linear + F.cross_entropy + backward",
    "torch-lce": "PyTorch F.linear_cross_entropy + backward",
    "torch-chunked": "PyTorch F.linear_cross_entropy(options=...) + backward",
}
TORCH_KEYS = ("xentfast-torch", "torch-plain", "torch-lce", "torch-chunked")


def _data(n, d, v, seed=0, half_ignored=False):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n, d), dtype=np.float32)
    weight = (rng.standard_normal((v, d), dtype=np.float32) * np.float32(2.0 / np.sqrt(d)))
    target = rng.integers(0, v, size=n)
    if half_ignored:
        target[rng.permutation(n)[: n // 2]] = IGNORE_INDEX
    return hidden, weight, target


def _torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def setup(key, n, d, v, threads, seed=0):
    """A zero-argument callable computing loss + gradients by `key`, returning
    ``(loss, grad_hidden, grad_linear_weight)`` as NumPy values."""
    hidden, weight, target = _data(n, d, v, seed, half_ignored=key == "xentfast-half")
    if key == "gemms":
        logits = np.empty((n, v), np.float32)
        grad = np.random.default_rng(seed + 1).standard_normal((n, v), dtype=np.float32)
        gh, gw = np.empty_like(hidden), np.empty_like(weight)

        def call():
            np.matmul(hidden, weight.T, out=logits)
            np.matmul(grad, weight, out=gh)
            np.matmul(grad.T, hidden, out=gw)
            return None, gh, gw
        return call
    # xentfast's calls take the default num_threads, as a user's would: the
    # threadpool_limits(threads) around the run bounds the kernel and the BLAS
    if key in ("xentfast", "xentfast-half"):
        out = (np.empty_like(hidden), np.empty_like(weight), None)

        def call():
            loss, gh, gw, _ = xentfast.linear_cross_entropy_and_grad(
                hidden, weight, target, out=out)
            return loss, gh, gw
        return call
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    th = torch.from_numpy(hidden).requires_grad_(True)
    tw = torch.from_numpy(weight).requires_grad_(True)
    tt = torch.from_numpy(target)
    if key == "xentfast-torch":
        from xentfast._torch_linear import linear_cross_entropy as xt_lce

        def loss_fn():
            return xt_lce(th, tw, tt)
    elif key == "torch-plain":
        def loss_fn():
            return F.cross_entropy(F.linear(th, tw), tt)
    elif key == "torch-lce":
        def loss_fn():
            return F.linear_cross_entropy(th, tw, tt)
    elif key == "torch-chunked":
        options = torch.nn.LinearCrossEntropyOptions()

        def loss_fn():
            return F.linear_cross_entropy(th, tw, tt, options=options)
    else:
        raise ValueError(f"unknown method {key!r}")

    def call():
        th.grad = tw.grad = None
        loss = loss_fn()
        loss.backward()
        return float(loss.detach()), th.grad.numpy(), tw.grad.numpy()
    return call


def _blas_limits(threads):
    """threadpoolctl's limit of NumPy's BLAS (and OpenMP) threads, if installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(threads)


def time_interleaved(calls, budget, min_rounds=2):
    """Best time of each callable, run round after round (one call each per
    round, after one warm-up call each) until `budget` seconds have passed and
    at least `min_rounds` rounds have run.  Returns (best times, rounds)."""
    best = {k: float("inf") for k in calls}
    for call in calls.values():  # warm-up: buffers, page faults, thread pools
        call()
    start, rounds = time.perf_counter(), 0
    while rounds < min_rounds or time.perf_counter() - start < budget:
        for key, call in calls.items():
            t0 = time.perf_counter()
            call()
            best[key] = min(best[key], time.perf_counter() - t0)
        rounds += 1
    return best, rounds


def rss_child(spec):
    """Run one method twice in this (fresh) process; print its peak RSS in MiB."""
    spec = json.loads(spec)
    limits = _blas_limits(spec["threads"])
    call = setup(spec["key"], spec["n"], spec["d"], spec["v"], spec["threads"])
    before = _current_mib()  # libraries and inputs (and for the GEMMs, their N×V operand)
    call()
    call()
    del limits
    print(json.dumps({"peak_mib": _peak_mib(), "setup_mib": before}))
    return 0


def _current_mib():
    current = memory._status_mib("VmRSS")
    return float("nan") if current is None else current


def _peak_mib():
    """This process's peak resident memory.  VmHWM (Linux) starts afresh at
    exec; ru_maxrss would carry the forking parent's peak over."""
    peak = memory._status_mib("VmHWM")
    return memory._ru_maxrss_mib() if peak is None else peak


def peak_rss(key, n, d, v, threads):
    """(peak RSS, peak RSS above the RSS after setup) in MiB of `key` run in a
    process of its own, or None if that process failed."""
    spec = json.dumps(dict(key=key, n=n, d=d, v=v, threads=threads))
    code = "import sys; from xentfast.bench import linear as b; sys.exit(b.rss_child(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True,
                          env=dict(os.environ))
    if proc.returncode != 0:
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["peak_mib"], result["peak_mib"] - result["setup_mib"]


def oracle_distance(key, threads):
    """(loss relative error, max |grad error| / max |grad|) on ORACLE_SHAPE."""
    n, d, v = ORACLE_SHAPE
    hidden, weight, target = _data(n, d, v, seed=3, half_ignored=key == "xentfast-half")
    loss, gh, gw = setup(key, n, d, v, threads, seed=3)()
    exp_loss, exp_gh, exp_gw, _ = reference.linear_cross_entropy_and_grad(hidden, weight, target)
    rel = abs(loss - exp_loss) / abs(exp_loss)
    grad = max(float(np.max(np.abs(gh - exp_gh)) / np.max(np.abs(exp_gh))),
               float(np.max(np.abs(gw - exp_gw)) / np.max(np.abs(exp_gw))))
    return rel, grad


def _fmt_time(t):
    return f"{t * 1e3:.0f} ms" if t < 10 else f"{t:.1f} s"


def run(shape, threads=2, budget=20.0, rss=True, methods=None):
    """Time, peak memory and oracle distance of every method on `shape`;
    prints the table and returns its rows (dicts)."""
    n, d, v = shape
    keys = [k for k in (methods or LABELS) if k in LABELS]
    if not _torch_available():
        keys = [k for k in keys if k not in TORCH_KEYS]
    limits = _blas_limits(threads)
    chunk = min(_linear.auto_chunk_rows(v, np.float32, n), n)
    print(f"linear + cross-entropy, N={n} D={d} V={v} float32, {threads} threads, "
          f"backend {xentfast.backend()}, gemm accumulation "
          f"{'CBLAS beta=1' if _linear._CBLAS is not None else 'matmul + add'}; "
          f"xentfast chunk {chunk} rows ({chunk * v * 4 / 2**20:.0f} MiB of logits; "
          f"N×V = {n * v * 4 / 2**20:.0f} MiB)")
    calls = {k: setup(k, n, d, v, threads) for k in keys}
    best, rounds = time_interleaved(calls, budget)
    del calls
    rows = []
    for k in keys:
        row = dict(key=k, label=LABELS[k], time=best[k])
        row["rss"] = peak_rss(k, n, d, v, threads) if rss else None
        row["oracle"] = None if k == "gemms" else oracle_distance(k, threads)
        rows.append(row)
    del limits
    gemms = best.get("gemms")
    fused = best.get("xentfast")
    print(f"best of {rounds} interleaved rounds; peak RSS of each method in a process of its "
          f"own; oracle distance on {ORACLE_SHAPE[0]}x{ORACLE_SHAPE[1]}->{ORACLE_SHAPE[2]}")
    header = ("| method | time | × GEMMs | peak RSS | peak − setup | xentfast speed-up | "
              "loss rel. err | grad err |")
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        k = row["key"]
        x_gemm = f"{row['time'] / gemms:.3f}" if gemms else ""
        speed = (f"{row['time'] / fused:.2f}×" if fused and k not in ("gemms", "xentfast",
                                                                       "xentfast-half") else "")
        rss_text = (f"{row['rss'][0]:.0f} MiB | {row['rss'][1]:.0f} MiB"
                    if row["rss"] is not None else " | ")
        err = row["oracle"]
        err_text = (f"{err[0]:.1e} | {err[1]:.1e}" if err else " | ")
        label = f"**{row['label']}**" if k == "xentfast" else row["label"]
        print(f"| {label} | {_fmt_time(row['time'])} | {x_gemm} | {rss_text} | {speed} | "
              f"{err_text} |")
    if "xentfast-half" in best and fused:
        print(f"half the targets ignored: {best['xentfast-half'] / fused:.2f} of the full time")
    sys.stdout.flush()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m xentfast.bench.linear",
        description="Fused linear + cross-entropy against the three GEMMs and PyTorch.")
    parser.add_argument("--shape", nargs=3, type=int, action="append", metavar=("N", "D", "V"),
                        help="tokens, features, vocabulary (repeatable; default: "
                             + ", ".join("x".join(map(str, s)) for s in DEFAULT_SHAPES) + ")")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds of interleaved timing per shape (at least two rounds)")
    parser.add_argument("--no-rss", action="store_true", help="skip the per-process peak RSS")
    parser.add_argument("--methods", nargs="+", choices=list(LABELS), help="a subset")
    args = parser.parse_args(argv)
    for shape in args.shape or DEFAULT_SHAPES:
        run(tuple(shape), args.threads, args.budget, rss=not args.no_rss, methods=args.methods)
        print()
    return 0


# A loss within this relative distance of the float64 oracle passes the
# --linear mode's correctness check (float32 GEMMs and kernel).
ORACLE_LOSS_TOLERANCE = 1e-5


def _run_mode(ctx) -> dict:
    """``python -m xentfast.bench --linear``: the table on the first default shape."""
    rows = run(DEFAULT_SHAPES[0], ctx.threads, ctx.budget or 20.0, rss=True)
    errors = [r["oracle"][0] for r in rows if r["oracle"] and r["key"].startswith("xentfast")]
    worst = max(errors, default=float("nan"))
    return {"shape": list(DEFAULT_SHAPES[0]), "rows": rows,
            "correctness": {"ok": bool(errors) and worst <= ORACLE_LOSS_TOLERANCE,
                            "loss_rel_error": worst, "tolerance": ORACLE_LOSS_TOLERANCE}}


def _format_mode(report: dict) -> str:
    ch = report["correctness"]
    return (f"oracle: xentfast's loss within {ch['loss_rel_error']:.1e} (tolerance "
            f"{ch['tolerance']:.0e})\n" + ("correctness: OK" if ch["ok"] else
                                            "correctness: FAILED"))


def _register() -> None:
    from .cli import Mode, register_mode
    register_mode(Mode(
        "linear",
        "the fused linear + cross-entropy (a language-model head, N x D -> V = "
        + "x".join(map(str, DEFAULT_SHAPES[0])) + ") against the three GEMMs and PyTorch: "
        "time, x GEMMs, peak RSS per process, oracle distance (instead of the default table)",
        _run_mode, _format_mode))


if __name__ == "__main__":
    sys.exit(main())
