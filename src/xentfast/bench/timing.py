"""Timing one method (:func:`measure`) and checking correctness."""
from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np

import xentfast
from xentfast import reference

from .problem import Problem, Unavailable
from .registry import Method, OptionCase, Prepared, method

ORACLE_ROWS = 256
# Relative tolerances of the oracle check, per dtype (the float32 loss is
# within 1e-6 of the oracle; the bench is a smoke check and allows some slack).
_TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
# Adaptive timing (--all, --sweep): seconds of timed runs per method, and a cap.
TIME_BUDGET = 1.0
MAX_RUNS = 2000


def _timed(prepared: Prepared):
    """One run: (seconds, value).  The value is released by the caller,
    outside the timed region (freeing a fresh N×C array takes time too)."""
    if prepared.before is not None:
        prepared.before()
    start = time.perf_counter()
    value = prepared.run()
    return time.perf_counter() - start, value


def _max_abs_diff(a, b, elements=1 << 21):
    """max |a - b| in row blocks (no N×C temporary); NaN if either has NaN."""
    rows = max(1, elements // max(1, a.shape[1]))
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


def _min_runs(first: float, repeat: int) -> int:
    """Timed runs at least, under a time budget: `repeat`, fewer for slow methods."""
    return repeat if first < 1.0 else 2 if first < 5.0 else 1


def measure(m: Method, problem: Problem, repeat: int, ref_loss=None, ref_grad=None,
            budget: Optional[float] = None, paired: Optional[Method] = None) -> dict:
    """Time method `m` on `problem`: the best of several runs after a warm-up.

    Without `budget`, exactly `repeat` timed runs.  With a `budget` (seconds),
    runs go on until their total reaches it (at most :data:`MAX_RUNS`), and are
    at least `repeat` -- 2 for a method slower than 1 s, 1 for slower than 5 s.

    With `paired` (a method to compare `m` with), every timed run of `m` is
    followed by one of `paired`, and ``paired_time`` is the best of those: a
    ratio of the two bests then compares runs that saw the same load on the
    machine, where two rows timed a minute apart may not (a shared host's
    load drifts by more than the effects the options table shows).

    Returns a dict: ``key``, ``name``, ``kind``, ``time`` (the best, seconds, or
    None when unavailable with ``error``), ``median_time``, ``runs``, ``times``
    (every run; the first 5 and the 15 fastest beyond 20), ``loss``, ``loss_diff`` and
    ``grad_diff`` (against `ref_loss`, `ref_grad` when given and the method
    has them), ``paired_time`` (None without `paired`).
    """
    row = {"key": m.key, "name": m.name, "kind": m.kind, "group": m.group,
           "compare": m.compare, "forward": m.forward, "limit": m.limit,
           "time": None, "median_time": None, "runs": 0, "times": [], "loss": None,
           "loss_diff": None, "grad_diff": None, "error": None, "paired_time": None}
    prepared = reference = None
    try:
        m.check()
        for name in m.inputs:
            problem.extra(name)
        prepared = m.setup(problem)
        if paired is not None:
            reference = paired.setup(problem)
            _timed(reference)  # its warm-up
        # let the idle worker threads of the previous method (PyTorch's
        # OpenMP, XLA's pool) stop spinning: on 2 cores they steal a core
        time.sleep(0.2)
        seconds, value = _timed(prepared)  # warm-up (and compilation)
        for _ in range(prepared.warmup - 1):
            if seconds >= 0.1:
                break
            del value
            seconds, value = _timed(prepared)
        if prepared.result is not None:
            loss, grad = prepared.result(value)
            row["loss"] = float(loss)
            if ref_loss is not None:
                row["loss_diff"] = abs(row["loss"] - ref_loss)
            if grad is not None and ref_grad is not None:
                row["grad_diff"] = _max_abs_diff(grad, ref_grad)
            del loss, grad
        del value
        times = row["times"]
        paired_times = []
        while True:
            seconds, value = _timed(prepared)
            del value
            times.append(seconds)
            if reference is not None:
                paired_times.append(_timed(reference)[0])
            if not budget:
                if len(times) >= repeat:
                    break
            elif len(times) >= MAX_RUNS or (sum(times) >= budget
                                            and len(times) >= _min_runs(times[0], repeat)):
                break
        row["time"] = min(times)
        row["median_time"] = float(np.median(times))
        row["runs"] = len(times)
        if paired_times:
            row["paired_time"] = min(paired_times)
        if len(times) > 20:  # the JSON keeps a few (the first and the fastest)
            row["times"] = times[:5] + sorted(times)[:15]
    except Unavailable as exc:
        row["error"] = str(exc)
    except Exception as exc:  # a peer failing must not stop the table
        row["error"] = _reason(exc)
    finally:
        for p in (prepared, reference):
            if p is not None and p.close is not None:
                p.close()
    return row


def expected_result(m: Method, problem: Problem):
    """What `m`'s loss and gradient are checked against: ``(loss, grad)``, or
    None (see :attr:`Method.compare`); computed now, untimed."""
    if m.compare == "none":
        return None
    if m.compare == "plain":
        return xentfast.cross_entropy_and_grad(problem.x, problem.target,
                                               num_threads=problem.threads)
    other = method(m.compare)
    for name in other.inputs:
        problem.extra(name)
    prepared = other.setup(problem)
    try:
        return prepared.result(prepared.run())
    finally:
        if prepared.close is not None:
            prepared.close()


def option_oracle_check(case: OptionCase, problem: Problem, rows: int = ORACLE_ROWS) -> dict:
    """xentfast with `case`'s options against the float64 oracle, first `rows` rows.

    Returns ``loss_rel_error``, ``grad_rel_error`` (of the gradient's max; None
    without gradient), ``tolerance`` and ``ok``.
    """
    head = problem.head(min(rows, problem.n))
    loss, grad = case.loss_and_grad(xentfast, head, num_threads=problem.threads)
    want_loss, want_grad = case.loss_and_grad(reference, head)
    tol = _TOLERANCE[problem.x.dtype]
    rel = abs(loss - want_loss) / abs(want_loss)
    grad_rel = None
    if grad is not None:
        grad_rel = _max_abs_diff(grad, want_grad) / float(np.max(np.abs(want_grad)))
    ok = rel <= tol and (grad_rel is None or grad_rel <= tol)
    return {"rows": head.n, "loss": loss, "oracle_loss": want_loss, "loss_rel_error": rel,
            "grad_rel_error": grad_rel, "tolerance": tol, "ok": bool(ok)}


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

