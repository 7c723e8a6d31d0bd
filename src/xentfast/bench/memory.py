"""Peak memory of a method, each in a fresh process (``--rss``)."""
from __future__ import annotations

import gc
import importlib
import json
import resource
import subprocess
import sys
from typing import Optional

import numpy as np

from xentfast import _core

from .problem import make_problem
from .registry import Method, Unavailable, method
from .timing import _reason

_RSS_TAG = "xentfast-bench-rss: "
_RSS_CHILD = ("import sys; from xentfast.bench import memory; "
              "sys.exit(memory._rss_child(sys.argv[1]))")
RSS_CALLS = 2


def _status_mib(field_name: str) -> Optional[float]:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in MiB (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS, if the kernel lets us."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mib("VmHWM") is not None
    except OSError:
        return False


def _release_free_memory() -> None:
    """Give freed heap memory back to the OS (glibc's malloc_trim), so that a
    method reusing memory freed while building the inputs still counts it."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _ru_maxrss_mib() -> float:
    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _rss_child(spec_json: str) -> int:
    """The process :func:`measure_rss` starts: prints one tagged JSON line."""
    spec = json.loads(spec_json)

    def report(**fields):
        print(_RSS_TAG + json.dumps(fields), flush=True)
        return 0

    m = method(spec["key"])
    try:
        m.check()
        for module in m.requires:  # the libraries' own memory is not the method's
            importlib.import_module(module)
    except Unavailable as exc:
        return report(error=str(exc))
    problem = make_problem(spec["n"], spec["c"], spec["dtype"], spec["threads"],
                           may_overwrite=True)
    for name in m.inputs:
        problem.extra(name)
    gc.collect()
    _release_free_memory()
    reset = _reset_peak_rss()
    baseline = _status_mib("VmRSS") if reset else _ru_maxrss_mib()
    prepared = None
    try:
        prepared = m.setup(problem)
        for _ in range(spec["calls"]):
            if prepared.before is not None:
                prepared.before()
            value = prepared.run()
            del value
    except Unavailable as exc:
        return report(error=str(exc))
    except Exception as exc:
        return report(error=_reason(exc))
    finally:
        if prepared is not None and prepared.close is not None:
            prepared.close()
    peak = _status_mib("VmHWM") if reset else _ru_maxrss_mib()
    return report(baseline_mib=baseline, peak_mib=peak, extra_mib=max(0.0, peak - baseline),
                  inputs_mib=problem.input_bytes() / 2**20, calls=spec["calls"],
                  source="VmHWM after clear_refs" if reset else "ru_maxrss")


def measure_rss(m: Method, n: int, c: int, *, dtype="float32", threads=None,
                calls: int = RSS_CALLS, timeout: float = 1200.0) -> dict:
    """The extra peak memory of method `m` on an N x C problem, in its own process.

    A fresh Python process imports the method's libraries, builds the inputs
    (:func:`make_problem` and the method's :attr:`Method.inputs`), records its
    resident set size, runs the method `calls` times (setup included: a
    reused buffer, a copy JAX makes, torch.compile's compilation count) and
    reports its peak RSS minus that baseline: ``extra_mib``.

    The peak is Linux's ``VmHWM``, reset to the current RSS after the inputs
    are built (``/proc/self/clear_refs``): ``getrusage``'s ``ru_maxrss`` is
    not usable as such in a child process, as Linux carries the parent's
    peak RSS over into it at ``exec`` (a child of a 4 GiB benchmark process
    reports >= 4 GiB).  Where clear_refs is not available the child falls
    back to ``ru_maxrss`` (exact only when the parent is small).

    Returns a dict with ``extra_mib``, ``baseline_mib``, ``peak_mib``,
    ``inputs_mib``, or ``error``.
    """
    spec = {"key": m.key, "n": n, "c": c, "dtype": np.dtype(dtype).name,
            "threads": threads or _core.max_threads(), "calls": calls}
    try:
        proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, json.dumps(spec)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    tagged = [line for line in proc.stdout.splitlines() if line.startswith(_RSS_TAG)]
    if tagged:
        return json.loads(tagged[-1][len(_RSS_TAG):])
    lines = proc.stderr.strip().splitlines()
    return {"error": f"exit status {proc.returncode}" + (f": {lines[-1]}" if lines else "")}

