"""Thread safety: many Python threads calling every public function at once.

* 8 threads run thousands of mixed calls (every function, several shapes --
  narrow rows, rows longer than a 2048-element segment, 3-d with a class axis
  in the middle --, float32/float64, options, explicit OpenMP thread counts,
  ``out=`` buffers, calls that must raise) on shared read-only inputs; every
  result must be bitwise equal to the same call made sequentially.
* Some calls are large enough to open OpenMP parallel regions, so several
  Python threads run their own OpenMP teams at once.
* The GIL is released while a kernel runs: a thread running Python code makes
  progress in the middle of a long kernel call (a functional check, with no
  timing bound: if the kernel held the GIL, that thread could not run at all).
"""
from __future__ import annotations

import math
import random
import threading
import time

import numpy as np
import pytest

import xentfast

N_THREADS = 8
CALLS_PER_THREAD = 1000  # 8000 calls in all


def _has(name):
    return hasattr(xentfast, name)


def _bits(value):
    """A hashable, bitwise representation of a result (NaN payloads included)."""
    if isinstance(value, tuple):
        return tuple(_bits(v) for v in value)
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (float, np.floating)):
        return ("float", np.float64(value).tobytes())
    if hasattr(value, "__dataclass_fields__"):  # xentfast.Evaluation
        return tuple((k, _bits(getattr(value, k))) for k in sorted(value.__dataclass_fields__))
    return ("other", repr(value))


def _readonly(a):
    a = np.asarray(a)
    a.flags.writeable = False
    return a


class Job:
    """One call: fn(*args, **kwargs), `fresh` makes per-call mutable arguments."""

    def __init__(self, name, args, kwargs=None, fresh=None, raises=None):
        self.name, self.args, self.kwargs = name, args, dict(kwargs or {})
        self.fresh, self.raises = fresh, raises

    def __call__(self):
        kwargs = dict(self.kwargs)
        args = self.args
        if self.fresh is not None:
            args, extra = self.fresh()
            kwargs.update(extra)
        fn = getattr(xentfast, self.name)
        if self.raises is not None:
            with pytest.raises(self.raises):
                fn(*args, **kwargs)
            return ("raised", self.raises.__name__)
        return _bits(fn(*args, **kwargs))

    def __repr__(self):
        return f"Job({self.name}, {[np.shape(a) for a in self.args]}, {sorted(self.kwargs)})"


def _in_place(args, k):
    """(args with a private copy of args[k], {"out": that copy})."""
    args = list(args)
    args[k] = np.array(args[k])
    return tuple(args), {"out": args[k]}


def _jobs():
    rng = np.random.default_rng(2024)
    jobs = []
    shapes = [(64, 10), (37, 3), (300, 31), (16, 1), (5, 2049), (3, 5000), (200, 100)]
    for (n, c), dtype in zip(shapes * 2, [np.float32] * len(shapes) + [np.float64] * len(shapes)):
        x = _readonly((rng.standard_normal((n, c)) * 3).astype(dtype))
        t = rng.integers(0, c, n)
        t[rng.random(n) < 0.1] = -100
        t = _readonly(t)
        w = _readonly(rng.uniform(0.5, 2.0, c))
        for threads in (None, 1, 2, 3):
            jobs.append(Job("cross_entropy", (x, t), {"num_threads": threads}))
            jobs.append(Job("cross_entropy_and_grad", (x, t), {"num_threads": threads,
                                                                   "reduction": "sum"}))
        jobs.append(Job("cross_entropy", (x, t), {"weight": w, "reduction": "none"}))
        jobs.append(Job("cross_entropy_and_grad", (x, t), {"weight": w, "reduction": "mean"}))
        jobs.append(Job("logsumexp", (x,), {"axis": 1}))
        jobs.append(Job("logsumexp", (x,), {"axis": None}))
        jobs.append(Job("softmax", (x,), {"axis": -1, "num_threads": 2}))
        jobs.append(Job("log_softmax", (x,), {"axis": 0}))
        # out= buffers and out=logits: one fresh buffer per call
        jobs.append(Job("cross_entropy_and_grad", None, fresh=lambda x=x, t=t: (
            (x, t), {"out": np.empty_like(x)})))
        jobs.append(Job("cross_entropy_and_grad", None,
                        fresh=lambda x=x, t=t: _in_place((x, t), 0)))
        jobs.append(Job("softmax", None, fresh=lambda x=x: _in_place((x,), 0)))
        # failing calls, interleaved with the others
        jobs.append(Job("cross_entropy", (x, np.full(n, c)), raises=ValueError))
        jobs.append(Job("cross_entropy", (x.astype(np.int32), t), raises=TypeError))
        jobs.append(Job("softmax", (x,), {"num_threads": 0}, raises=ValueError))
    x3 = _readonly(rng.standard_normal((4, 50, 6)).astype(np.float32))
    t3 = _readonly(rng.integers(0, 50, (4, 6)))
    jobs.append(Job("cross_entropy_and_grad", (x3, t3), {"axis": 1, "reduction": "none"}))
    jobs.append(Job("logsumexp", (x3,), {"axis": (0, 2), "keepdims": True}))
    import inspect
    options = inspect.signature(xentfast.cross_entropy).parameters
    x, t = jobs[0].args
    for key, value in (("label_smoothing", 0.1), ("z_loss", 1e-3), ("softcap", 5.0),
                       ("temperature", 0.7)):
        if key in options:
            jobs.append(Job("cross_entropy_and_grad", (x, t), {key: value, "num_threads": 2}))
    if "sample_weight" in options:
        jobs.append(Job("cross_entropy", (x, t), {"sample_weight": _readonly(np.linspace(
            0, 1, len(t))), "reduction": "sum"}))
    if _has("evaluate"):
        jobs.append(Job("evaluate", (x, t)))
    if _has("perplexity"):
        jobs.append(Job("perplexity", (x, t)))
    y01 = _readonly(rng.random((300, 31)).astype(np.float32))
    xb = _readonly(rng.standard_normal((300, 31)).astype(np.float32))
    for name in ("binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_and_grad",
                 "mean_squared_error", "mean_squared_error_and_grad"):
        if _has(name):
            jobs.append(Job(name, (xb, y01), {"reduction": "sum"}))
            jobs.append(Job(name, (xb, y01), {"reduction": "none"}))
    # calls large enough to open parallel regions: several Python threads, each
    # with its own OpenMP team, at once
    from xentfast import _core
    minimum = _core.min_work_per_thread()
    n = 2 * max(minimum["rows"], minimum["elementwise"]) // 512 + 16
    xl = _readonly(rng.standard_normal((n, 512)).astype(np.float32))
    tl = _readonly(rng.integers(0, 512, n))
    yl = _readonly(rng.random((n, 512)).astype(np.float32))
    long_rows = _readonly(rng.standard_normal((2, 2 * minimum["rows"] + 7)).astype(np.float32))
    jobs.append(Job("cross_entropy_and_grad", (xl, tl), {"num_threads": 2}))
    jobs.append(Job("cross_entropy_and_grad", (long_rows, _readonly(np.array([5, 9]))),
                    {"num_threads": 2}))
    jobs.append(Job("softmax", (xl,), {"num_threads": 2}))
    if _has("binary_cross_entropy_with_logits_and_grad"):
        jobs.append(Job("binary_cross_entropy_with_logits_and_grad", (xl, yl),
                        {"num_threads": 2}))
    return jobs


def test_eight_threads_match_sequential_results_bitwise():
    jobs = _jobs()
    expected = [job() for job in jobs]  # sequential, on this thread
    assert expected == [job() for job in jobs], "not even repeatable sequentially"
    barrier = threading.Barrier(N_THREADS)
    errors = []

    def worker(seed):
        order = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(CALLS_PER_THREAD):
                i = order.randrange(len(jobs))
                got = jobs[i]()
                if got != expected[i]:
                    errors.append(f"{jobs[i]!r}: differs from the sequential result")
                    return
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors[:5]


def test_shared_inputs_are_not_modified_by_concurrent_calls():
    # every shared input above is read-only, so a write would have raised;
    # check the same with writeable inputs, which the kernels must not touch
    rng = np.random.default_rng(7)
    x = rng.standard_normal((500, 40)).astype(np.float32)
    t = rng.integers(0, 40, 500)
    before_x, before_t = x.copy(), t.copy()

    def worker():
        for _ in range(50):
            xentfast.cross_entropy_and_grad(x, t)
            xentfast.softmax(x)
            xentfast.logsumexp(x, axis=1)

    threads = [threading.Thread(target=worker) for _ in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert np.array_equal(x, before_x) and np.array_equal(t, before_t)


def _long_call():
    """A cross_entropy call taking ~0.3-0.6 s on one thread, on a zero-stride
    view (no memory: one row repeated), so the work is all in the kernel."""
    row = np.random.default_rng(0).standard_normal((1, 4096)).astype(np.float32)
    n = 4096
    while True:
        x = np.broadcast_to(row, (n, 4096))
        t = np.zeros(n, np.int64)
        start = time.perf_counter()
        xentfast.cross_entropy(x, t, num_threads=1)
        took = time.perf_counter() - start
        if took >= 0.3 or n >= 1 << 22:
            return x, t
        n = min(1 << 22, int(n * max(2.0, 0.45 / max(took, 1e-4))))


def test_gil_is_released_while_the_kernel_runs():
    """A Python thread makes progress during the middle of a long kernel call.

    Functional, not a timing bound: if the kernel held the GIL, the spinning
    thread could not execute a single bytecode between the kernel's start and
    end, so it would record no timestamp in the middle third of the call."""
    x, t = _long_call()

    def spin(done, stamps):
        while not done.is_set():
            stamps.append(time.perf_counter())

    def kernel(done, window):
        window["start"] = time.perf_counter()
        xentfast.cross_entropy(x, t, num_threads=1)
        window["end"] = time.perf_counter()
        done.set()

    for _attempt in range(3):  # only against extreme starvation by other processes
        stamps = []
        done = threading.Event()
        window = {}
        spinner = threading.Thread(target=spin, args=(done, stamps))
        worker = threading.Thread(target=kernel, args=(done, window))
        spinner.start()
        worker.start()
        worker.join()
        spinner.join()
        third = (window["end"] - window["start"]) / 3
        lo, hi = window["start"] + third, window["end"] - third
        inside = sum(lo <= s <= hi for s in stamps)
        if inside > 10:
            return
    pytest.fail(f"no Python progress during the middle of a {3 * third:.2f} s kernel call "
                f"({inside} timestamps): is the GIL held?")


def test_two_threads_on_two_arrays_overlap(record_property):
    """Two threads on two arrays: measured (the ratio is recorded, not asserted,
    as the machine is shared), and checked functionally: both kernels are in
    flight at the same time at least once."""
    x, t = _long_call()
    start = time.perf_counter()
    xentfast.cross_entropy(x, t, num_threads=1)
    one = time.perf_counter() - start
    windows = [None, None]

    def run(k):
        s = time.perf_counter()
        xentfast.cross_entropy(x, t, num_threads=1)
        windows[k] = (s, time.perf_counter())

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    both = time.perf_counter() - start
    ratio = both / one
    record_property("two_threads_over_one", round(ratio, 3))
    print(f"\none call {one:.3f} s, two calls on two threads {both:.3f} s: ratio {ratio:.2f} "
          f"(2.0 = serialised, 1.0 = perfect overlap)")
    (s0, e0), (s1, e1) = windows
    assert max(s0, s1) < min(e0, e1), "the two calls did not even overlap in time"
    assert math.isfinite(ratio)
