"""Benchmark xentfast against the memory bound and against its peers.

Run as ``python -m xentfast.bench`` (or the ``xentfast-bench`` console script).
It prints one table for a single problem, by default ``N = 8192`` rows of
``C = 32000`` float32 logits (a language model's batch), with one row per
method, each timed in this one process as the best of ``--repeat`` runs after
one untimed warm-up run:

- ``copy bound``: ``np.multiply(x, 2, out=y)``, one read and one write of every
  element, the traffic a fused loss+gradient cannot go below (single-threaded,
  as NumPy is; a row split over ``--threads`` threads is shown as well);
- xentfast's fused loss+gradient into a reused buffer, into a fresh array and
  in place (``out=logits``, the logits copied back outside the timed region),
  and its loss alone;
- the peers: a straightforward NumPy implementation, PyTorch eager and
  ``torch.compile``, JAX ``jit(value_and_grad)`` and scikit-learn's
  ``HalfMultinomialLoss``.  A peer that is not installed, or fails, is shown as
  ``unavailable: <reason>``.

Columns: time, throughput in G elements/s (``N*C / time``), time relative to
the copy bound (``x copy``, 1.0 is the floor), the xentfast speed-up (that
row's time over xentfast's fused loss+grad into a reused buffer), and, as a
correctness check, each row's distance from xentfast's mean loss and gradient.
A last line compares xentfast with the float64 oracle
:func:`xentfast.reference.cross_entropy` on the first 256 rows; the exit status
is 1 when that check fails.

Usage::

    python -m xentfast.bench [--shape N C] [--threads T] [--repeat R]
                             [--dtype {float32,float64}] [--json FILE]

The methods live in one registry, :data:`METHODS`: each is a
:class:`Method` whose ``setup(problem)`` returns a :class:`Prepared` (the
callable to time, an optional untimed step before each run and how to read
``(loss, grad)`` from its result).  The pytest-benchmark suite in
``benchmarks/`` times the same registry, so every peer is written once, here.

Examples
--------
>>> from xentfast import bench
>>> problem = bench.make_problem(64, 10)
>>> prepared = bench.method("numpy").setup(problem)
>>> loss, grad = prepared.result(prepared.run())
>>> grad.shape
(64, 10)
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

import xentfast
from xentfast import _core, reference

__all__ = [
    "METHODS",
    "Method",
    "Prepared",
    "Problem",
    "Unavailable",
    "main",
    "make_problem",
    "measure",
    "method",
    "numpy_cross_entropy_and_grad",
    "run_benchmark",
]

DEFAULT_SHAPE = (8192, 32000)
ORACLE_ROWS = 256
# Relative tolerances of the oracle check, per dtype (DESIGN.md: 1e-6 for the
# float32 loss; the bench is a smoke check and allows some slack).
_TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


# --------------------------------------------------------------------------
# the registry


class Unavailable(Exception):
    """Raised by a setup when its method cannot run here (the message says why)."""


@dataclass(frozen=True, eq=False)
class Problem:
    """One benchmark problem: logits ``x`` (N, C), class indices ``target`` (N,)."""

    x: np.ndarray
    target: np.ndarray
    threads: int

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def c(self) -> int:
        return self.x.shape[1]

    @property
    def elements(self) -> int:
        return self.x.size


@dataclass
class Prepared:
    """A method ready to time.

    Attributes
    ----------
    run : callable
        The timed call, no arguments; returns whatever `result` reads.
    before : callable, optional
        Untimed, before every run (e.g. restoring logits overwritten in place).
    result : callable, optional
        ``result(value_of_run) -> (loss, grad)`` (a float and an (N, C) array
        or None), for the correctness columns; None for no loss at all.
    close : callable, optional
        Releases what the setup started (threads), after the last run.
    """

    run: Callable[[], Any]
    before: Optional[Callable[[], None]] = None
    result: Optional[Callable[[Any], tuple]] = None
    close: Optional[Callable[[], None]] = None


@dataclass(frozen=True)
class Method:
    """A table row.

    Attributes
    ----------
    key : str
        Short id (pytest ids, JSON).
    name : str
        The label in the table.
    setup : callable
        ``setup(problem) -> Prepared``; allocates, compiles, imports what it
        needs; may raise :class:`Unavailable`.
    kind : {"bound", "xentfast", "peer"}
    requires : tuple of str
        Modules that must import for the row to run (see :meth:`check`).
    note : str
        Printed under the table when the row ran (threads used, ...).
    """

    key: str
    name: str
    setup: Callable[[Problem], Prepared]
    kind: str = "peer"
    requires: tuple = ()
    note: str = ""

    def check(self):
        """Raise :class:`Unavailable` if a required module does not import."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise Unavailable(f"{module} not installed ({exc})") from None


METHODS: list[Method] = []


def _register(key, name, kind="peer", requires=(), note=""):
    """Add the decorated setup to :data:`METHODS` (the table's row order)."""
    def decorate(setup):
        METHODS.append(Method(key, name, setup, kind, tuple(requires), note))
        return setup
    return decorate


def method(key: str) -> Method:
    """The registered :class:`Method` called `key`."""
    for m in METHODS:
        if m.key == key:
            return m
    raise KeyError(f"no benchmark method {key!r}; known: {', '.join(m.key for m in METHODS)}")


# --------------------------------------------------------------------------
# the memory bound


@_register("copy", "copy bound: np.multiply(x, 2, out=y)", kind="bound")
def _copy(p: Problem) -> Prepared:
    y = np.empty_like(p.x)
    return Prepared(lambda: np.multiply(p.x, 2, out=y))


@_register("copy-threads", "copy bound, split over the threads", kind="bound",
           note="'split over the threads' runs one np.multiply per row block, a block "
                "per thread")
def _copy_threads(p: Problem) -> Prepared:
    y = np.empty_like(p.x)
    edges = np.linspace(0, p.n, p.threads + 1).astype(int)
    blocks = [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    pool = ThreadPoolExecutor(max_workers=p.threads)

    def run():
        futures = [pool.submit(np.multiply, p.x[b], 2, out=y[b]) for b in blocks]
        for f in futures:
            f.result()
        return y
    return Prepared(run, close=pool.shutdown)


# --------------------------------------------------------------------------
# xentfast


def _loss_grad(value):
    """(loss, grad) from a call that returns exactly that."""
    return value


@_register("xentfast-out", "xentfast loss+grad (out= reused buffer)", kind="xentfast")
def _xentfast_out(p: Problem) -> Prepared:
    buf = np.empty_like(p.x)
    return Prepared(
        lambda: xentfast.cross_entropy_and_grad(p.x, p.target, out=buf, num_threads=p.threads),
        result=_loss_grad)


@_register("xentfast-fresh", "xentfast loss+grad (fresh gradient)", kind="xentfast")
def _xentfast_fresh(p: Problem) -> Prepared:
    return Prepared(
        lambda: xentfast.cross_entropy_and_grad(p.x, p.target, num_threads=p.threads),
        result=_loss_grad)


@_register("xentfast-inplace", "xentfast loss+grad (out=logits, in place)", kind="xentfast")
def _xentfast_inplace(p: Problem) -> Prepared:
    work = np.empty_like(p.x)
    return Prepared(
        lambda: xentfast.cross_entropy_and_grad(work, p.target, out=work, num_threads=p.threads),
        before=lambda: np.copyto(work, p.x),
        result=_loss_grad)


@_register("xentfast-loss", "xentfast loss only", kind="xentfast")
def _xentfast_loss(p: Problem) -> Prepared:
    return Prepared(
        lambda: xentfast.cross_entropy(p.x, p.target, num_threads=p.threads),
        result=lambda loss: (loss, None))


# --------------------------------------------------------------------------
# peers


def numpy_cross_entropy_and_grad(x, target):
    """Mean softmax cross-entropy and its gradient, as NumPy users write it.

    The straightforward, stable version: subtract the row max, exponentiate,
    sum, take the log, gather the target's log-probability; the gradient is
    ``(softmax - onehot) / N``.  Computes in `x`'s dtype; several N×C
    temporaries.
    """
    n = x.shape[0]
    rows = np.arange(n)
    shifted = x - x.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    log_prob_target = shifted[rows, target] - np.log(sum_exp[:, 0])
    loss = -log_prob_target.mean()
    grad = exp / sum_exp
    grad[rows, target] -= 1
    grad /= n
    return float(loss), grad


@_register("numpy", "NumPy (straightforward)",
           note="NumPy (and so the plain copy bound) runs on one thread")
def _numpy(p: Problem) -> Prepared:
    return Prepared(lambda: numpy_cross_entropy_and_grad(p.x, p.target), result=_loss_grad)


def _torch_backward(p: Problem, loss_fn) -> Prepared:
    """Time ``loss_fn(leaf, target).backward()`` on a leaf sharing x's memory."""
    import torch

    torch.set_num_threads(p.threads)
    leaf = torch.from_numpy(p.x).requires_grad_()
    target = torch.from_numpy(p.target)

    def run():
        loss = loss_fn(leaf, target)
        loss.backward()
        return loss

    def clear():
        leaf.grad = None  # each run allocates its gradient, as in training

    return Prepared(run, before=clear,
                    result=lambda loss: (loss.item(), leaf.grad.numpy()))


@_register("torch-eager", "PyTorch eager (cross_entropy + backward)", requires=["torch"])
def _torch_eager(p: Problem) -> Prepared:
    import torch.nn.functional as F

    return _torch_backward(p, F.cross_entropy)


@_register("torch-compile", "torch.compile (cross_entropy + backward)", requires=["torch"])
def _torch_compile(p: Problem) -> Prepared:
    import torch
    import torch.nn.functional as F

    compiled = torch.compile(lambda x, t: F.cross_entropy(x, t), dynamic=False)
    return _torch_backward(p, compiled)  # compiled during the warm-up run


@_register("jax-jit", "JAX jit(value_and_grad)", requires=["jax"],
           note="JAX (XLA) picks its own thread count")
def _jax_jit(p: Problem) -> Prepared:
    import jax

    if p.x.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def mean_cross_entropy(x, t):
        picked = jnp.take_along_axis(x, t[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(x, axis=1) - picked)

    step = jax.jit(jax.value_and_grad(mean_cross_entropy))
    x = jax.device_put(p.x)
    t = jax.device_put(p.target.astype(np.int32))
    return Prepared(lambda: jax.block_until_ready(step(x, t)),
                    result=lambda v: (float(v[0]), np.asarray(v[1])))


@_register("sklearn", "scikit-learn HalfMultinomialLoss", requires=["sklearn"])
def _sklearn(p: Problem) -> Prepared:
    try:  # a private API: it may move or change
        from sklearn._loss.loss import HalfMultinomialLoss
    except ImportError as exc:
        raise Unavailable(f"sklearn._loss.loss.HalfMultinomialLoss: {exc}") from None
    loss = HalfMultinomialLoss(n_classes=p.c)
    y_true = p.target.astype(p.x.dtype)  # it wants the raw predictions' dtype

    # Its per-row loss is the cross-entropy, log-sum-exp minus the target's
    # logit, and its gradient softmax - onehot per row: mean and / N.
    def result(value):
        row_loss, grad = value
        return float(np.mean(row_loss, dtype=np.float64)), grad / p.n

    return Prepared(
        lambda: loss.loss_gradient(y_true=y_true, raw_prediction=p.x, n_threads=p.threads),
        result=result)


# --------------------------------------------------------------------------
# measuring


def make_problem(n: int, c: int, dtype="float32", threads: Optional[int] = None,
                 seed: int = 0) -> Problem:
    """Standard-normal logits (N, C) of `dtype` and uniform int64 targets."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c), dtype=np.dtype(dtype).type)
    target = rng.integers(0, c, size=n, dtype=np.int64)
    return Problem(x, target, threads or _core.max_threads())


def _timed(prepared: Prepared):
    """One run: (seconds, value).  The value is released by the caller,
    outside the timed region (freeing a fresh N×C array takes time too)."""
    if prepared.before is not None:
        prepared.before()
    start = time.perf_counter()
    value = prepared.run()
    return time.perf_counter() - start, value


def _max_abs_diff(a, b, rows=1024):
    """max |a - b| in row blocks (no N×C temporary); NaN if either has NaN."""
    worst = 0.0
    for i in range(0, a.shape[0], rows):
        d = np.max(np.abs(np.asarray(a[i:i + rows], dtype=np.float64) - b[i:i + rows]),
                   initial=0.0)
        if math.isnan(d):
            return math.nan
        worst = max(worst, float(d))
    return worst


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def measure(m: Method, problem: Problem, repeat: int, ref_loss=None, ref_grad=None) -> dict:
    """Time method `m` on `problem` (best of `repeat` after a warm-up).

    Returns a dict: ``key``, ``name``, ``kind``, ``time`` (seconds, or None when
    unavailable with ``error``), ``loss``, ``loss_diff`` and ``grad_diff``
    (against `ref_loss`, `ref_grad` when given and the method has them).
    """
    row = {"key": m.key, "name": m.name, "kind": m.kind, "time": None, "times": [],
           "loss": None, "loss_diff": None, "grad_diff": None, "error": None}
    prepared = None
    try:
        m.check()
        prepared = m.setup(problem)
        _, value = _timed(prepared)  # warm-up (and compilation)
        if prepared.result is not None:
            loss, grad = prepared.result(value)
            row["loss"] = float(loss)
            if ref_loss is not None:
                row["loss_diff"] = abs(row["loss"] - ref_loss)
            if grad is not None and ref_grad is not None:
                row["grad_diff"] = _max_abs_diff(grad, ref_grad)
            del loss, grad
        del value
        for _ in range(repeat):
            seconds, value = _timed(prepared)
            del value
            row["times"].append(seconds)
        row["time"] = min(row["times"])
    except Unavailable as exc:
        row["error"] = str(exc)
    except Exception as exc:  # a peer failing must not stop the table
        row["error"] = _reason(exc)
    finally:
        if prepared is not None and prepared.close is not None:
            prepared.close()
    return row


def oracle_check(problem: Problem, rows: int = ORACLE_ROWS) -> dict:
    """xentfast against the float64 oracle on the first `rows` rows."""
    k = min(rows, problem.n)
    x, t = problem.x[:k], problem.target[:k]
    loss, grad = xentfast.cross_entropy_and_grad(x, t, num_threads=problem.threads)
    loss_only = xentfast.cross_entropy(x, t, num_threads=problem.threads)
    want_loss, want_grad = reference.cross_entropy_and_grad(x, t)
    tol = _TOLERANCE[problem.x.dtype]
    rel = abs(loss - want_loss) / abs(want_loss)
    rel_loss_only = abs(loss_only - want_loss) / abs(want_loss)
    grad_rel = _max_abs_diff(grad, want_grad) / float(np.max(np.abs(want_grad)))
    failures = [f"{what} relative error {err:.2e} > {tol:.0e}"
                for what, err in (("loss", rel), ("loss-only", rel_loss_only),
                                  ("gradient", grad_rel))
                if not err <= tol]  # NaN fails
    return {"rows": k, "loss": loss, "oracle_loss": want_loss, "loss_rel_error": rel,
            "loss_only_rel_error": rel_loss_only, "grad_rel_error": grad_rel,
            "tolerance": tol, "ok": not failures, "failures": failures}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_benchmark(n: int, c: int, *, threads: Optional[int] = None, repeat: int = 5,
                  dtype: str = "float32", methods=None, progress=None) -> dict:
    """Measure every method (default :data:`METHODS`) on one problem.

    Returns the results as a JSON-ready dict (what ``--json`` writes).
    """
    threads = threads or _core.max_threads()
    problem = make_problem(n, c, dtype, threads)
    info = {
        "xentfast": xentfast.__version__,
        "backend": xentfast.backend(),
        "threads": threads,
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "shape": [n, c],
        "dtype": np.dtype(dtype).name,
        "repeat": repeat,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    # xentfast's answer, which every row is compared with.  If xentfast
    # fails, the peers are still timed and the correctness check fails.
    failures = []
    try:
        ref_loss, ref_grad = xentfast.cross_entropy_and_grad(problem.x, problem.target,
                                                             num_threads=threads)
    except Exception as exc:
        ref_loss = ref_grad = None
        failures.append(f"xentfast.cross_entropy_and_grad raised {_reason(exc)}")
    methods = METHODS if methods is None else methods
    rows = []
    for m in methods:
        if progress:
            progress(m.name)
        rows.append(measure(m, problem, repeat, ref_loss, ref_grad))
    del ref_grad
    _add_ratios(rows, problem.elements)
    notes = [m.note for m, r in zip(methods, rows) if m.note and r["error"] is None]
    try:
        correctness = oracle_check(problem)
    except Exception as exc:
        correctness = {"rows": None, "tolerance": _TOLERANCE[problem.x.dtype],
                       "failures": [f"oracle check raised {_reason(exc)}"]}
    correctness["failures"] = (failures + correctness["failures"]
                               + _xentfast_row_failures(rows, ref_loss, correctness["tolerance"]))
    correctness["ok"] = not correctness["failures"]
    return {"info": info, "loss": ref_loss, "results": rows,
            "correctness": correctness, "notes": notes}


def _xentfast_row_failures(rows, loss, tol):
    """Every xentfast row must run and agree with xentfast's loss."""
    failures = []
    for r in rows:
        if r["kind"] != "xentfast":
            continue
        if r["error"] is not None:
            failures.append(f"{r['key']} failed: {r['error']}")
        elif loss is not None and not r["loss_diff"] <= tol * abs(loss):
            failures.append(f"{r['key']} loss {r['loss']!r} differs from {loss!r}")
    return failures


def _add_ratios(rows, elements):
    times = {r["key"]: r["time"] for r in rows}
    copy, fused = times.get("copy"), times.get("xentfast-out")
    for r in rows:
        t = r["time"]
        r["gelem_per_s"] = elements / t / 1e9 if t else None
        r["x_copy"] = t / copy if t and copy else None
        r["speedup"] = t / fused if t and fused else None


# --------------------------------------------------------------------------
# the table


def _three_digits(v):
    return f"{v:.{max(0, 2 - math.floor(math.log10(v)))}f}" if v > 0 else f"{v:g}"


_COLUMNS = (  # header, width, key, format
    ("time ms", 8, "time", lambda v: _three_digits(v * 1e3)),
    ("G el/s", 6, "gelem_per_s", lambda v: f"{v:.2f}"),
    ("x copy", 6, "x_copy", lambda v: f"{v:.2f}"),
    ("speed-up", 8, "speedup", lambda v: f"{v:.2f}"),
    ("|dloss|", 8, "loss_diff", lambda v: "0" if v == 0 else f"{v:.1e}"),
    ("max|dgrad|", 10, "grad_diff", lambda v: "0" if v == 0 else f"{v:.1e}"),
)


def format_report(report: dict) -> str:
    """The header, table and correctness line of a :func:`run_benchmark` result."""
    info = report["info"]
    n, c = info["shape"]
    itemsize = np.dtype(info["dtype"]).itemsize
    lines = [
        f"xentfast {info['xentfast']}, backend {info['backend']}, "
        f"{info['threads']} thread{'s' if info['threads'] != 1 else ''}",
        f"machine: {info['cpu']} ({info['machine']}, {info['cores']} cores), "
        f"numpy {info['numpy']}, python {info['python']}",
        f"problem: {n} x {c} {info['dtype']} ({n * c / 1e6:.1f} M elements, "
        f"{n * c * itemsize / 2**20:.0f} MiB), best of {info['repeat']} runs, {info['date']}",
        "",
    ]
    name_width = max(len("method"), *(len(r["name"]) for r in report["results"]))
    lines.append("  ".join([f"{'method':<{name_width}}"]
                           + [f"{h:>{w}}" for h, w, _, _ in _COLUMNS]))
    lines.append("  ".join(["-" * name_width] + ["-" * w for _, w, _, _ in _COLUMNS]))
    for r in report["results"]:
        if r["error"] is not None:
            reason = f"unavailable: {r['error']}"
            room = sum(w + 2 for _, w, _, _ in _COLUMNS)
            if len(reason) > room:
                reason = reason[:room - 3] + "..."
            lines.append(f"{r['name']:<{name_width}}  {reason}")
            continue
        cells = [fmt(r[key]) if r[key] is not None else "-" for _, _, key, fmt in _COLUMNS]
        lines.append("  ".join([f"{r['name']:<{name_width}}"]
                               + [f"{v:>{w}}" for v, (_, w, _, _) in zip(cells, _COLUMNS)]))
    lines.append("")
    lines.append("x copy = time / np.multiply copy time; speed-up = time / time of xentfast "
                 "loss+grad (out=);")
    if report["loss"] is not None:
        lines.append(f"|dloss|, max|dgrad|: distance from xentfast's loss "
                     f"({report['loss']:.7g}) and gradient.")
    lines.extend(f"note: {note}." for note in report["notes"])
    ch = report["correctness"]
    if ch["rows"] is not None:
        lines.append(
            f"oracle check, first {ch['rows']} rows: xentfast loss {ch['loss']:.9g}, float64 "
            f"xentfast.reference {ch['oracle_loss']:.9g},")
        lines.append(
            f"  relative error {ch['loss_rel_error']:.1e} (loss only "
            f"{ch['loss_only_rel_error']:.1e}), gradient {ch['grad_rel_error']:.1e} (of its "
            f"max); tolerance {ch['tolerance']:.0e}")
    lines.append("correctness: OK" if ch["ok"] else
                 "correctness: FAILED " + "\n  ".join(ch["failures"]))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# command line


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m xentfast.bench",
        description="Time xentfast's fused softmax cross-entropy loss+gradient against "
                    "the memory bound (a scale-copy) and its peers, in one process.")
    parser.add_argument("--shape", nargs=2, type=_positive_int, metavar=("N", "C"),
                        default=list(DEFAULT_SHAPE),
                        help="rows and classes of the logits (default: %d %d)" % DEFAULT_SHAPE)
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                        help=f"threads for xentfast, PyTorch and scikit-learn (default: "
                             f"xentfast's default, {_core.max_threads()})")
    parser.add_argument("--repeat", type=_positive_int, default=5, metavar="R",
                        help="timed runs per method, the best is shown (default: %(default)s)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return parser


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status (1 if correctness fails)."""
    args = _parser().parse_args(argv)
    n, c = args.shape

    def progress(name):
        print(f"  timing {name} ...", file=sys.stderr, flush=True)

    report = run_benchmark(n, c, threads=args.threads, repeat=args.repeat, dtype=args.dtype,
                           progress=progress if sys.stderr.isatty() else None)
    print(format_report(report), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, allow_nan=True)
            f.write("\n")
    return 0 if report["correctness"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
