"""The training-loop benchmark (``--loop``): xentfast inside a training step,
next to BLAS, under several thread settings.

Each loop runs :data:`LOOP_STEPS` SGD steps of a linear classifier (the
README's NumPy loop: ``X`` 4096 x 64 float32, ``W`` 64 x 10 starting at
zero), in a fresh process per loop and setting, since the settings are
environment variables read when NumPy's BLAS, the OpenMP runtime and PyTorch
load.  A process times one untimed loop, then at least ``repeat`` loops and
more until ``budget`` seconds (see ``_loop_child.py``).  The table shows each
loop's best time under each setting and its ratio to that loop's best time
under any setting; a ratio above
:data:`~xentfast.bench.targets.LOOP_SETTING_RATIO_LIMIT` means that setting
costs the loop more than it should.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

from . import _loop_child
from .report import _render, _three_digits, _with_unit
from .targets import LOOP_SETTING_RATIO_LIMIT

LOOP_ROWS, LOOP_FEATURES, LOOP_CLASSES = 4096, 64, 10
LOOP_STEPS = 100
LOOP_LEARNING_RATE = 0.5
# Each loop runs in a fresh process per setting this many times, the best of
# all its runs kept: on a shared machine one process can meet a busy moment.
LOOP_ROUNDS = 2
# The final losses of a loop and its yardstick (same steps, same data) agree
# to this relative tolerance; float32 sums in another order drift a little.
LOOP_LOSS_RTOL = 1e-4

# The thread settings, each an environment variable (or none) set in the
# loop's process.  Every setting starts from this process's environment
# without the variables of :data:`LOOP_VARIABLES`.
LOOP_SETTINGS = (
    ("default", {}),
    ("OMP_WAIT_POLICY=passive", {"OMP_WAIT_POLICY": "passive"}),
    ("OPENBLAS_NUM_THREADS=1", {"OPENBLAS_NUM_THREADS": "1"}),
    ("OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}),
)
LOOP_VARIABLES = ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")

_CHILD_FILE = pathlib.Path(__file__).with_name("_loop_child.py")
# Runs the child file as a script without adding its directory to sys.path
# (the package's modules would shadow top-level ones).
_CHILD_LAUNCH = ("import runpy, sys; sys.argv = sys.argv[1:]; "
                 "runpy.run_path(sys.argv[0], run_name='__main__')")
_CHILD_TAG = _loop_child.TAG


@dataclass(frozen=True)
class Loop:
    """A row of the loop table.

    Attributes
    ----------
    key : str
        The loop's function in ``_loop_child.LOOPS``.
    name : str
        The label in the table.
    yardstick : str, optional
        For a loop calling xentfast: the key of the same loop without it, whose
        final loss it must match and whose time it is compared with.
    """

    key: str
    name: str
    yardstick: Optional[str] = None


LOOPS = (
    Loop("numpy-xentfast", "NumPy + xentfast.cross_entropy_and_grad(out=)", "numpy-softmax"),
    Loop("numpy-softmax", "NumPy softmax gradient (yardstick)"),
    Loop("torch-xentfast", "PyTorch + xentfast.torch.cross_entropy", "torch-eager"),
    Loop("torch-eager", "PyTorch F.cross_entropy (yardstick)"),
)


def _setting_environment(variables: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LOOP_VARIABLES}
    env.update(variables)
    return env


def measure_loop(loop: Loop, variables: dict, *, repeat: int = 3, budget: float = 1.0,
                 max_runs: int = 200, timeout: float = 600.0) -> dict:
    """Time `loop` in a fresh process whose environment has `variables` set.

    Returns a dict with ``time`` (the best, seconds per :data:`LOOP_STEPS`
    steps), ``median_time``, ``runs``, ``times``, ``final_loss``, or ``error``.
    """
    spec = {"loop": loop.key, "rows": LOOP_ROWS, "features": LOOP_FEATURES,
            "classes": LOOP_CLASSES, "steps": LOOP_STEPS, "learning_rate": LOOP_LEARNING_RATE,
            "repeat": repeat, "budget": budget, "max_runs": max_runs}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD_LAUNCH, str(_CHILD_FILE), json.dumps(spec)],
            capture_output=True, text=True, timeout=timeout, env=_setting_environment(variables))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    tagged = [line for line in proc.stdout.splitlines() if line.startswith(_CHILD_TAG)]
    if not tagged:
        lines = proc.stderr.strip().splitlines()
        return {"error": f"exit status {proc.returncode}" + (f": {lines[-1]}" if lines else "")}
    return _with_best(json.loads(tagged[-1][len(_CHILD_TAG):]))


def _with_best(result: dict) -> dict:
    if "times" in result:
        times = sorted(result["times"])
        result.update(time=times[0], median_time=times[len(times) // 2], runs=len(times))
    return result


def _merge(old: Optional[dict], new: dict) -> dict:
    """One setting's results over several rounds: every run's time; a round
    that failed is kept in ``round_errors`` (``error`` when every round failed)."""
    if old is None:
        return new
    if "error" in old or "error" in new:
        ok, failed = (new, old) if "error" in old else (old, new)
        errors = old.get("round_errors", []) + new.get("round_errors", []) + [failed["error"]]
        return dict(ok, round_errors=errors)
    errors = old.get("round_errors", []) + new.get("round_errors", [])
    merged = dict(old, times=old["times"] + new["times"])
    if errors:
        merged["round_errors"] = errors
    return _with_best(merged)


def run_loops(*, repeat: int = 3, budget: float = 1.0, rounds: int = LOOP_ROUNDS,
              progress=None) -> dict:
    """Every loop under every setting, `rounds` times (a fresh process each);
    the ``--loop`` report (JSON-ready)."""
    rows = []
    for loop in LOOPS:
        cells = dict.fromkeys(label for label, _ in LOOP_SETTINGS)
        missing = False
        for i in range(rounds):
            # every other round in reverse order: a load that drifts during
            # the loop's rounds weighs on every setting alike
            for label, variables in LOOP_SETTINGS[::-1 if i % 2 else 1]:
                if progress:
                    progress(f"{loop.name}, {label}, round {i + 1}/{rounds}")
                result = measure_loop(loop, variables, repeat=repeat, budget=budget)
                cells[label] = _merge(cells[label], result)
                missing = "not installed" in result.get("error", "")
                if missing:
                    break  # the same under every setting
            if missing:
                break
        cells = {label: c for label, c in cells.items() if c is not None}
        rows.append({"key": loop.key, "name": loop.name, "yardstick": loop.yardstick,
                     "settings": cells})
    by_key = {r["key"]: r for r in rows}
    failures = []
    for r in rows:
        times = [c["time"] for c in r["settings"].values() if c.get("time")]
        best = min(times) if times else None
        for c in r["settings"].values():
            c["x_best"] = c["time"] / best if best and c.get("time") else None
        r["best_time"] = best
        r["worst_x_best"] = max((c["x_best"] for c in r["settings"].values()
                                 if c["x_best"] is not None), default=None)
        r["meets_limit"] = (None if r["worst_x_best"] is None
                            else r["worst_x_best"] <= LOOP_SETTING_RATIO_LIMIT)
        if r["yardstick"] is None:
            continue
        for label, c in r["settings"].items():
            other = by_key[r["yardstick"]]["settings"].get(label, {})
            if "final_loss" in c and "final_loss" in other:
                c["x_yardstick"] = c["time"] / other["time"]
                rel = abs(c["final_loss"] - other["final_loss"]) / abs(other["final_loss"])
                c["loss_rel_diff"] = rel
                if not rel <= LOOP_LOSS_RTOL:
                    failures.append(f"{r['key']}, {label}: final loss {c['final_loss']!r} vs "
                                    f"{other['final_loss']!r} of {r['yardstick']}")
            elif "error" in c and "not installed" not in c["error"]:
                failures.append(f"{r['key']}, {label}: {c['error']}")
        failures.extend(f"{r['key']}, {label}: {e}" for label, c in r["settings"].items()
                        for e in c.get("round_errors", ()))
    removed = sorted(v for v in LOOP_VARIABLES if v in os.environ)
    return {"shape": [LOOP_ROWS, LOOP_FEATURES, LOOP_CLASSES], "steps": LOOP_STEPS,
            "repeat": repeat, "budget": budget, "rounds": rounds,
            "limit": LOOP_SETTING_RATIO_LIMIT,
            "settings": [label for label, _ in LOOP_SETTINGS], "removed_variables": removed,
            "results": rows, "correctness": {"ok": not failures, "failures": failures}}


def format_loop_report(report: dict) -> str:
    """The ``--loop`` table and its notes."""
    rows_n, features, classes = report["shape"]
    settings = report["settings"]
    lines = [
        f"training loops: {report['steps']} SGD steps of a linear classifier, X {rows_n} x "
        f"{features} float32, W {features} x {classes}; each loop and setting in a fresh process "
        f"{report['rounds']} times,",
        f"each timing the loops in ~{report['budget']:g} s (>= {report['repeat']}; 2 if > 1 s, 1 "
        f"if > 5 s) after a warm-up loop; cell = the best time per {report['steps']} steps (x the "
        "row's best)",
        "",
    ]
    table = []
    for r in report["results"]:
        errors = [c["error"] for c in r["settings"].values() if "error" in c]
        if errors and r["best_time"] is None:
            table.append((r["name"], f"unavailable: {errors[0]}"))
            continue
        cells = [r["name"]]
        for label in settings:
            c = r["settings"].get(label, {})
            cells.append(f"{_with_unit(c['time'])} ({c['x_best']:.2f})" if c.get("time")
                         else "failed" if "error" in c else "-")
        worst = r["worst_x_best"]
        cells.append("-" if worst is None else f"{worst:.2f}")
        cells.append("-" if r["meets_limit"] is None else
                     f"{'ok' if r['meets_limit'] else 'above'} ({report['limit']:.2f})")
        table.append(cells)
    lines += _render(["loop"] + settings + ["worst", "target"], table)
    lines.append("")
    lines.append("worst = the largest (x best) of the row; target: the most it may be ('above' "
                 "when it is over): a loop should not depend on the thread setting.")
    for r in report["results"]:
        ratios = [(label, c["x_yardstick"]) for label, c in r["settings"].items()
                  if c.get("x_yardstick")]
        if ratios:
            lines.append(f"{r['name']} over its yardstick: " + ", ".join(
                f"{_three_digits(x)} ({label})" for label, x in ratios))
    lines.append("default: none of " + ", ".join(LOOP_VARIABLES) + " set" + (
        f" (removed from this environment: {', '.join(report['removed_variables'])})"
        if report["removed_variables"] else "") + "; each other setting sets one of them.")
    for r in report["results"]:
        failed = [f"{label}: {e}" for label, c in r["settings"].items()
                  for e in ([c["error"]] if "error" in c else []) + c.get("round_errors", [])
                  if r["best_time"] is not None]
        lines.extend(f"  {r['name']} failed under {f}" for f in failed)
    ch = report["correctness"]
    lines.append(f"loop correctness (final loss against the yardstick's, rel <= "
                 f"{LOOP_LOSS_RTOL:.0e}): OK" if ch["ok"] else
                 "loop correctness: FAILED " + "\n  ".join(ch["failures"]))
    return "\n".join(lines)
