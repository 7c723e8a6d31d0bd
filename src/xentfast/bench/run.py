"""Running a table: every method on one problem, and the summary of several."""
from __future__ import annotations

import datetime
import gc
import os
import platform
from typing import Optional

import numpy as np

import xentfast
from xentfast import _core

from .memory import RSS_CALLS, measure_rss
from .problem import make_problem
from .registry import core_methods, method
from .targets import shape_targets
from .timing import (_TOLERANCE, _reason, expected_result, measure, option_oracle_check,
                     oracle_check)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info(threads: Optional[int] = None) -> dict:
    """Versions, backend, CPU, threads and the date: every table's header."""
    return {
        "xentfast": xentfast.__version__,
        "backend": xentfast.backend(),
        "threads": threads or _core.max_threads(),
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def run_benchmark(n: int, c: int, *, threads: Optional[int] = None, repeat: int = 5,
                  dtype: str = "float32", methods=None, progress=None,
                  budget: Optional[float] = None, rss: bool = False,
                  rss_calls: int = RSS_CALLS) -> dict:
    """Measure every method (default :func:`core_methods`) on one problem.

    `repeat` and `budget` are :func:`measure`'s; with `rss`, each method that
    ran is run again in its own process by :func:`measure_rss` (after this
    process has released the problem).  Returns the results as a JSON-ready
    dict (what ``--json`` writes per table).
    """
    threads = threads or _core.max_threads()
    methods = core_methods() if methods is None else list(methods)
    group = "options" if any(m.group == "options" for m in methods) else "core"
    problem = make_problem(n, c, dtype, threads)
    info = dict(machine_info(threads), shape=[n, c], dtype=np.dtype(dtype).name, repeat=repeat,
                budget=budget, rss_calls=rss_calls if rss else None)
    # xentfast's answer, which the rows are compared with.  If xentfast
    # fails, the peers are still timed and the correctness check fails.
    failures = []
    try:
        ref_loss, ref_grad = expected_result(method("xentfast-out"), problem)
    except Exception as exc:
        ref_loss = ref_grad = None
        failures.append(f"xentfast.cross_entropy_and_grad raised {_reason(exc)}")
    rows = []
    keys = {m.key for m in methods}
    uncached = problem.x.nbytes >= _core.STREAMING_BYTES
    for m in methods:
        if progress:
            progress(m.name)
        want_loss, want_grad = ref_loss, ref_grad
        if m.compare != "plain":
            try:
                want_loss, want_grad = expected_result(m, problem) or (None, None)
            except Exception:  # that row shows the error itself
                want_loss = want_grad = None
        # a row with a limit on its time over the plain loss+grad is timed
        # run for run against it, and a fused row against its bound (when
        # the bound is in the table): each ratio then compares runs that saw
        # the same load on the machine.  Only for logits too large to stay
        # cached (the kernels' own threshold for streaming stores): with
        # smaller ones, the bound's run between two of the fused row's would
        # change what the caches hold for it.
        paired_key = None
        if m.limit is not None:
            paired_key = "xentfast-out"
        elif uncached and BOUND_OF.get(m.key) in keys:
            paired_key = BOUND_OF[m.key]
        paired = method(paired_key) if paired_key else None
        row = measure(m, problem, repeat, want_loss, want_grad, budget, paired)
        row["paired_key"] = paired_key
        del want_grad
        if m.case is not None and row["error"] is None:
            try:
                row["oracle"] = option_oracle_check(m.case, problem)
            except Exception as exc:
                row["oracle"] = {"ok": False, "error": _reason(exc)}
        rows.append(row)
    del ref_grad
    try:
        correctness = oracle_check(problem)
    except Exception as exc:
        correctness = {"rows": None, "tolerance": _TOLERANCE[problem.x.dtype],
                       "failures": [f"oracle check raised {_reason(exc)}"]}
    correctness["failures"] = (failures + correctness["failures"]
                               + _xentfast_row_failures(rows, ref_loss, correctness["tolerance"]))
    correctness["ok"] = not correctness["failures"]
    info["inputs_mib"] = problem.input_bytes() / 2**20
    del problem
    gc.collect()
    if rss:
        for m, row in zip(methods, rows):
            if row["error"] is None:
                if progress:
                    progress(f"peak RSS of {m.name}")
                row["rss"] = measure_rss(m, n, c, dtype=dtype, threads=threads, calls=rss_calls)
                row["rss_mib"] = row["rss"].get("extra_mib")
    _add_ratios(rows, n * c)
    notes = [m.note for m, r in zip(methods, rows) if m.note and r["error"] is None]
    return {"group": group, "info": info, "loss": ref_loss, "results": rows,
            "correctness": correctness, "notes": notes}


def _xentfast_row_failures(rows, loss, tol):
    """Every xentfast row must run and agree with xentfast's loss or the oracle."""
    failures = []
    for r in rows:
        if r["kind"] != "xentfast":
            continue
        if r["error"] is not None:
            failures.append(f"{r['key']} failed: {r['error']}")
            continue
        if r["compare"] == "plain" and loss is not None and not r["loss_diff"] <= tol * abs(loss):
            failures.append(f"{r['key']} loss {r['loss']!r} differs from {loss!r}")
        if r["key"] == "xentfast-out-1t" and r["loss_diff"] != 0:
            failures.append(f"1 thread and the default threads differ: loss by "
                            f"{r['loss_diff']!r} (expected bitwise identical)")
        if r["compare"] == "plain" and r["grad_diff"] not in (None, 0):
            # fresh, in place, one thread: the same computation as out=, so
            # the same bits (a difference has always been a bug)
            failures.append(f"{r['key']} gradient differs from the plain fused gradient (out=) "
                            f"by up to {r['grad_diff']:.2g}: expected bitwise equal")
        oracle = r.get("oracle")
        if oracle is not None and not oracle["ok"]:
            failures.append(f"{r['key']} against the float64 oracle: " + (
                oracle.get("error") or f"loss {oracle['loss_rel_error']:.1e}, gradient "
                                       f"{oracle['grad_rel_error']!r} > {oracle['tolerance']:.0e}"))
    return failures


def _ratio(a, b):
    return a / b if a and b else None


# each fused row against the bound of the same memory traffic (bounds.h)
BOUND_OF = {"xentfast-out": "bound-stream", "xentfast-fresh": "bound-stream",
            "xentfast-out-1t": "bound-stream-1t", "xentfast-inplace": "bound-inplace",
            "xentfast-inplace-1t": "bound-inplace-1t", "xentfast-loss": "bound-read",
            "xentfast-loss-1t": "bound-read-1t"}


def _add_ratios(rows, elements):
    times = {r["key"]: r["time"] for r in rows}
    copy, fused = times.get("copy"), times.get("xentfast-out")
    loss_only = times.get("xentfast-loss")
    for r in rows:
        t = r["time"]
        r["gelem_per_s"] = elements / t / 1e9 if t else None
        r["x_copy"] = _ratio(t, copy)
        paired = r["paired_key"]
        # the fraction of the machine's bound this row reaches (1 = at the
        # bound): against the bound's runs interleaved with this row's
        bound = BOUND_OF.get(r["key"])
        r["of_bound"] = _ratio(r["paired_time"] if paired == bound else times.get(bound), t)
        # "x plain" in the options table: against the plain runs interleaved
        # with this row's when it has them
        r["speedup"] = _ratio(t, r["paired_time"] if paired == "xentfast-out" else fused)
        r["x_loss"] = _ratio(t, loss_only) if r["forward"] else None
        r["meets_limit"] = (r["speedup"] <= r["limit"]
                            if r["limit"] is not None and r["speedup"] is not None else None)



def summarize(reports: list) -> list:
    """One dict per core report: the summary table's line (see :func:`format_summary`)."""
    lines = []
    for rep in reports:
        n, c = rep["info"]["shape"]
        threads = rep["info"]["threads"]
        by_key = {r["key"]: r for r in rep["results"]}

        def t(key):
            return by_key[key]["time"] if key in by_key else None

        def of_bound(key):
            return by_key[key]["of_bound"] if key in by_key else None

        fused = t("xentfast-out")
        peers = [r for r in rep["results"] if r["kind"] == "peer" and r["time"]]
        best = min(peers, key=lambda r: r["time"]) if peers else None
        s = {
            "shape": [n, c], "elements": n * c, "threads": threads,
            "time": fused, "gelem_per_s": n * c / fused / 1e9 if fused else None,
            "x_copy": _ratio(fused, t("copy")),
            "inplace_x_copy": _ratio(t("xentfast-inplace"), t("copy")),
            "fwd_x_max": _ratio(t("xentfast-loss"), t("max")),
            "of_bound": of_bound("xentfast-out"),
            "of_bound_1t": of_bound("xentfast-out-1t"),
            "inplace_of_bound": of_bound("xentfast-inplace"),
            "inplace_of_bound_1t": of_bound("xentfast-inplace-1t"),
            "fwd_of_bound": of_bound("xentfast-loss"),
            "fwd_of_bound_1t": of_bound("xentfast-loss-1t"),
            "thread_speedup": _ratio(t("xentfast-out-1t"), fused),
            "best_peer": best["key"] if best else None,
            "best_peer_gelem_per_s": best["gelem_per_s"] if best else None,
            "vs_eager": _ratio(t("torch-eager"), fused),
            "vs_compile": _ratio(t("torch-compile"), fused),
            "rss_mib": {r["key"]: r.get("rss_mib") for r in rep["results"] if "rss" in r},
            "correct": rep["correctness"]["ok"],
        }
        s["targets"] = shape_targets(n, c, threads)
        s["missed"] = [col for col, (op, want) in s["targets"].items()
                       if s[col] is None or not (s[col] <= want if op == "<=" else s[col] >= want)]
        lines.append(s)
    return lines

