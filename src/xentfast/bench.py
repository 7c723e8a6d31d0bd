"""Benchmark xentfast against the memory bound and against its peers.

Run as ``python -m xentfast.bench`` (or the ``xentfast-bench`` console script).
By default it prints one table for a single problem, ``N = 8192`` rows of
``C = 32000`` float32 logits (a language model's batch), with one row per
method, each timed in this one process after one untimed warm-up run, as the
best of its timed runs: at least ``--repeat`` (3; 2 for a method slower than
1 s, 1 for slower than 5 s), then more until ``--budget`` seconds (1) of timed
runs -- on a shared machine, many short runs find the undisturbed ones:

- ``copy bound``: ``np.multiply(x, 2, out=y)``, one read and one write of every
  element, the traffic a fused loss+gradient cannot go below (single-threaded,
  as NumPy is; a row split over ``--threads`` threads is shown as well);
- ``np.max(x)``: one read of every element, the bound of a forward-only pass;
- xentfast's fused loss+gradient into a reused buffer (on ``--threads`` threads
  and on one thread), into a fresh array and in place (``out=logits``, the
  logits copied back outside the timed region), and its loss alone;
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

Other modes (they combine):

``--options``
    The loss options on the ``--shape`` problem, each fused loss+grad into a
    reused buffer: label smoothing, z-loss, softcap, temperature, sample
    weights, class weights, label smoothing + z-loss + softcap together, dense
    probability targets; the loss alone and :func:`xentfast.evaluate` with
    options; and PyTorch eager where PyTorch has the option.  ``x plain`` is
    each row's time over the plain fused loss+grad, next to the Options
    issue's limit (1.3, and 1.6 for probability targets); a row with a limit
    is timed run for run against plain runs interleaved with its own, and
    ``x plain`` is the ratio of the two bests (see :func:`measure`).  Each xentfast row is
    checked against the float64 oracle on its first 256 rows (``oracle rel``);
    each PyTorch row against the xentfast row with the same option.
``--all``
    Every shape of the Performance issue (:data:`ALL_SHAPES`) with every
    installed peer: each shape's table, then one summary table (one line per
    shape, targets that are missed marked ``!``).  Implies ``--rss``.
``--sweep``
    Shapes of about 2**27 elements for C in 2 ... 262144 (:func:`sweep_shapes`),
    each with its table (a second panel in ``--plot``; with ``--all``, in
    its summary).
``--rss``
    Peak memory per method, each in a fresh process: the process builds the
    inputs, runs the method twice and reports its peak resident set size minus
    its RSS after building the inputs (``+RSS MiB``, the memory the method
    itself needs).  See :func:`measure_rss`.
``--plot FILE.png``
    Throughput against C (log scale) for xentfast, every peer and the copy
    bound, from the shapes that ran (needs matplotlib).
``--json FILE``
    Everything above as JSON.

Usage::

    python -m xentfast.bench [--shape N C] [--threads T] [--repeat R] [--budget S]
                             [--dtype {float32,float64}] [--options] [--all]
                             [--sweep] [--rss] [--plot FILE.png] [--json FILE]

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
>>> prepared = bench.method("opt-combo").setup(problem)  # an option row
>>> loss, grad = prepared.result(prepared.run())
>>> bench.option_oracle_check(bench.method("opt-combo").case, problem)["ok"]
True
"""
from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

import xentfast
from xentfast import _core, reference

__all__ = [
    "ALL_SHAPES",
    "METHODS",
    "Method",
    "OptionCase",
    "Prepared",
    "Problem",
    "Unavailable",
    "core_methods",
    "expected_result",
    "main",
    "make_problem",
    "measure",
    "measure_rss",
    "method",
    "numpy_cross_entropy_and_grad",
    "option_methods",
    "option_oracle_check",
    "plot_throughput",
    "run_benchmark",
    "summarize",
    "sweep_shapes",
]

DEFAULT_SHAPE = (8192, 32000)
# The Performance issue's shapes: three language-model vocabularies, a
# classifier, a binary model as two classes, few huge rows, a tiny call.
ALL_SHAPES = [(8192, 32000), (4096, 128256), (1024, 262144), (65536, 10), (1_000_000, 2),
              (1, 262144), (2, 262144), (64, 10)]
SWEEP_ELEMENTS = 2**27
SWEEP_CLASSES = (2, 10, 100, 1000, 32000, 262144)
ORACLE_ROWS = 256
# Relative tolerances of the oracle check, per dtype (DESIGN.md: 1e-6 for the
# float32 loss; the bench is a smoke check and allows some slack).
_TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
# Adaptive timing (--all, --sweep): seconds of timed runs per method, and a cap.
TIME_BUDGET = 1.0
MAX_RUNS = 2000
# The Options issue's limits, time over the plain fused loss+grad.
OPTION_LIMIT = 1.3
PROBABILITY_LIMIT = 1.6


def sweep_shapes(elements: Optional[int] = None, classes=None) -> list:
    """Shapes of about `elements` (:data:`SWEEP_ELEMENTS`) elements, one per
    class count in `classes` (:data:`SWEEP_CLASSES`)."""
    elements = SWEEP_ELEMENTS if elements is None else elements
    classes = SWEEP_CLASSES if classes is None else classes
    return [(max(1, round(elements / c)), c) for c in classes]


# --------------------------------------------------------------------------
# the registry


class Unavailable(Exception):
    """Raised by a setup when its method cannot run here (the message says why)."""


@dataclass(frozen=True, eq=False)
class Problem:
    """One benchmark problem: logits ``x`` (N, C), class indices ``target`` (N,).

    Further inputs some methods need (dense probability targets, sample and
    class weights) are built on first use by :meth:`extra` and kept, so they
    are prepared outside any timed region.  ``may_overwrite`` lets a method
    overwrite ``x`` (the in-place row in :func:`measure_rss`'s process).
    """

    x: np.ndarray
    target: np.ndarray
    threads: int
    seed: int = 0
    may_overwrite: bool = False
    extras: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def c(self) -> int:
        return self.x.shape[1]

    @property
    def elements(self) -> int:
        return self.x.size

    def extra(self, name: str) -> np.ndarray:
        """The input called `name` (see :data:`EXTRAS`), built once."""
        if name not in self.extras:
            builder = EXTRAS[name]
            rng = np.random.default_rng([self.seed, sorted(EXTRAS).index(name) + 1])
            self.extras[name] = builder(self, rng)
        return self.extras[name]

    def head(self, rows: int) -> "Problem":
        """The problem of the first `rows` rows (its extras built afresh)."""
        return Problem(self.x[:rows], self.target[:rows], self.threads, self.seed)

    def input_bytes(self) -> int:
        return self.x.nbytes + self.target.nbytes + sum(a.nbytes for a in self.extras.values())


def _probability_target(p: Problem, rng) -> np.ndarray:
    """Dense class probabilities (N, C): the softmax of standard-normal scores."""
    probs = np.empty_like(p.x)
    _fill_standard_normal(probs, rng)
    return xentfast.softmax(probs, axis=1, out=probs, num_threads=p.threads)


EXTRAS: dict = {
    "prob_target": _probability_target,
    "sample_weight": lambda p, rng: rng.uniform(0.5, 1.5, p.n).astype(p.x.dtype),
    "class_weight": lambda p, rng: rng.uniform(0.5, 1.5, p.c).astype(p.x.dtype),
}
"""Builders of :meth:`Problem.extra`'s inputs: ``builder(problem, rng) -> array``."""


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
    warmup : int
        Untimed runs before timing, as long as each is short (< 0.1 s); the
        first always runs.
    """

    run: Callable[[], Any]
    before: Optional[Callable[[], None]] = None
    result: Optional[Callable[[Any], tuple]] = None
    close: Optional[Callable[[], None]] = None
    warmup: int = 1


@dataclass(frozen=True)
class OptionCase:
    """A call of xentfast with loss options, on a :class:`Problem`.

    Attributes
    ----------
    call : {"grad", "loss", "evaluate"}
        :func:`xentfast.cross_entropy_and_grad` (into a reused buffer when
        timed), :func:`xentfast.cross_entropy` or :func:`xentfast.evaluate`.
    options : callable
        ``options(problem) -> dict`` of keyword arguments (arrays from
        :meth:`Problem.extra`).
    probabilities : bool
        The target is the problem's dense ``prob_target``, not class indices.
    """

    call: str
    options: Callable[[Problem], dict] = lambda p: {}
    probabilities: bool = False

    def arguments(self, p: Problem):
        target = p.extra("prob_target") if self.probabilities else p.target
        return target, self.options(p)

    def loss_and_grad(self, module, p: Problem, **extra):
        """Call `module` (xentfast or xentfast.reference) on `p`: (loss, grad or None)."""
        target, options = self.arguments(p)
        if self.call == "grad":
            return module.cross_entropy_and_grad(p.x, target, **options, **extra)
        if self.call == "loss":
            return module.cross_entropy(p.x, target, **options, **extra), None
        ev = module.evaluate(p.x, target, **options, **extra)
        return (ev["mean_loss"] if isinstance(ev, dict) else ev.mean_loss), None


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
    kind : {"bound", "xentfast", "adapter", "peer"}
        ("adapter": xentfast inside another framework, not a peer)
    requires : tuple of str
        Modules that must import for the row to run (see :meth:`check`).
    note : str
        Printed under the table when the row ran (threads used, ...).
    group : {"core", "options"}
        The table the row belongs to (``--options`` is the second; the plain
        rows ``xentfast-out`` and ``xentfast-loss`` are in both).
    compare : str
        What the row's loss and gradient are checked against: ``"plain"``
        (xentfast's plain fused loss+grad), ``"none"``, or the key of the
        xentfast row computing the same thing.
    inputs : tuple of str
        :meth:`Problem.extra` inputs the row reads (built before timing, and
        before the baseline of :func:`measure_rss`).
    case : OptionCase, optional
        For xentfast's option rows: the call, checked against the oracle.
    limit : float, optional
        The issue's limit on the row's time over the plain fused loss+grad.
    """

    key: str
    name: str
    setup: Callable[[Problem], Prepared]
    kind: str = "peer"
    requires: tuple = ()
    note: str = ""
    group: str = "core"
    compare: str = "plain"
    inputs: tuple = ()
    case: Optional[OptionCase] = None
    limit: Optional[float] = None

    def check(self):
        """Raise :class:`Unavailable` if a required module does not import."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise Unavailable(f"{module} not installed ({exc})") from None

    @property
    def forward(self) -> bool:
        """A loss without gradient (compared with xentfast's loss alone too)."""
        return self.key == "xentfast-loss" or (self.case is not None and self.case.call != "grad")


METHODS: list[Method] = []


def _register(key, name, kind="peer", requires=(), note="", group="core", compare="plain",
              inputs=()):
    """Add the decorated setup to :data:`METHODS` (the table's row order)."""
    def decorate(setup):
        METHODS.append(Method(key, name, setup, kind, tuple(requires), note, group, compare,
                              tuple(inputs)))
        return setup
    return decorate


def method(key: str) -> Method:
    """The registered :class:`Method` called `key`."""
    for m in METHODS:
        if m.key == key:
            return m
    raise KeyError(f"no benchmark method {key!r}; known: {', '.join(m.key for m in METHODS)}")


def core_methods() -> list:
    """The rows of the default table (and of each ``--all`` shape)."""
    return [m for m in METHODS if m.group == "core"]


def option_methods() -> list:
    """The rows of the ``--options`` table: the plain references, then the options."""
    options = [m for m in METHODS if m.group == "options"]
    grad = [m for m in options if m.kind == "xentfast" and not m.forward]
    forward = [m for m in options if m.kind == "xentfast" and m.forward]
    peers = [m for m in options if m.kind != "xentfast"]
    return [method("xentfast-out")] + grad + [method("xentfast-loss")] + forward + peers


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


@_register("max", "read bound: np.max(x)", kind="bound",
           note="np.max(x) reads every element once (one thread): the bound of a "
                "forward-only pass")
def _max(p: Problem) -> Prepared:
    return Prepared(lambda: np.max(p.x))


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


@_register("xentfast-out-1t", "xentfast loss+grad (out=), 1 thread", kind="xentfast",
           note="the fused rows (1 thread, fresh, in place) must give the bitwise same "
                "gradient as out=, and the 1-thread row the same loss")
def _xentfast_out_1t(p: Problem) -> Prepared:
    buf = np.empty_like(p.x)
    return Prepared(
        lambda: xentfast.cross_entropy_and_grad(p.x, p.target, out=buf, num_threads=1),
        result=_loss_grad)


@_register("xentfast-fresh", "xentfast loss+grad (fresh gradient)", kind="xentfast")
def _xentfast_fresh(p: Problem) -> Prepared:
    return Prepared(
        lambda: xentfast.cross_entropy_and_grad(p.x, p.target, num_threads=p.threads),
        result=_loss_grad)


@_register("xentfast-inplace", "xentfast loss+grad (out=logits, in place)", kind="xentfast")
def _xentfast_inplace(p: Problem) -> Prepared:
    if p.may_overwrite:  # measure_rss: no copy of the logits to restore from
        return Prepared(
            lambda: xentfast.cross_entropy_and_grad(p.x, p.target, out=p.x,
                                                    num_threads=p.threads),
            result=_loss_grad)
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
# xentfast's options (the --options table)


def _xentfast_case(case: OptionCase, p: Problem) -> Prepared:
    target, options = case.arguments(p)
    if case.call == "grad":
        buf = np.empty_like(p.x)
        return Prepared(
            lambda: xentfast.cross_entropy_and_grad(p.x, target, out=buf,
                                                    num_threads=p.threads, **options),
            result=_loss_grad)
    if case.call == "loss":
        return Prepared(
            lambda: xentfast.cross_entropy(p.x, target, num_threads=p.threads, **options),
            result=lambda loss: (loss, None))
    return Prepared(
        lambda: xentfast.evaluate(p.x, target, num_threads=p.threads, **options),
        result=lambda ev: (ev.mean_loss, None))


def _register_option(key, name, call, options=None, *, probabilities=False, inputs=()):
    case = OptionCase(call, options or (lambda p: {}), probabilities)
    limit = None
    if call == "grad":
        limit = PROBABILITY_LIMIT if probabilities else OPTION_LIMIT
    inputs = (("prob_target",) if probabilities else ()) + tuple(inputs)
    METHODS.append(Method(key, name, lambda p: _xentfast_case(case, p), kind="xentfast",
                          group="options", compare="none", inputs=inputs, case=case,
                          limit=limit))


_COMBO = {"label_smoothing": 0.1, "z_loss": 1e-4, "softcap": 30.0}
_COMBO_NAME = "label_smoothing+z_loss+softcap"

_register_option("opt-ls", "xentfast, label_smoothing=0.1", "grad",
                 lambda p: {"label_smoothing": 0.1})
_register_option("opt-z", "xentfast, z_loss=1e-4", "grad", lambda p: {"z_loss": 1e-4})
_register_option("opt-softcap", "xentfast, softcap=30", "grad", lambda p: {"softcap": 30.0})
_register_option("opt-temp", "xentfast, temperature=2", "grad", lambda p: {"temperature": 2.0})
_register_option("opt-sw", "xentfast, sample_weight (per row)", "grad",
                 lambda p: {"sample_weight": p.extra("sample_weight")}, inputs=["sample_weight"])
_register_option("opt-weight", "xentfast, weight= (class weights)", "grad",
                 lambda p: {"weight": p.extra("class_weight")}, inputs=["class_weight"])
_register_option("opt-combo", f"xentfast, {_COMBO_NAME}", "grad", lambda p: dict(_COMBO))
_register_option("opt-prob", "xentfast, probability targets (dense N x C)", "grad",
                 probabilities=True)
_register_option("opt-loss-combo", f"xentfast loss only, {_COMBO_NAME}", "loss",
                 lambda p: dict(_COMBO))
_register_option("opt-loss-prob", "xentfast loss only, probability targets", "loss",
                 probabilities=True)
_register_option("opt-eval", "xentfast evaluate()", "evaluate")
_register_option("opt-eval-combo", f"xentfast evaluate(), {_COMBO_NAME}", "evaluate",
                 lambda p: dict(_COMBO))


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


def _torch_backward(p: Problem, loss_fn, target=None) -> Prepared:
    """Time ``loss_fn(leaf, target).backward()`` on a leaf sharing x's memory
    (`target`: p.target by default)."""
    import torch

    torch.set_num_threads(p.threads)
    leaf = torch.from_numpy(p.x).requires_grad_()
    target = torch.from_numpy(p.target if target is None else target)

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


@_register("torch-xentfast", "PyTorch + xentfast (xentfast.torch.cross_entropy + backward)",
           kind="adapter", requires=["torch"])
def _torch_xentfast(p: Problem) -> Prepared:
    """The gain inside PyTorch code: the adapter in place of F.cross_entropy."""
    import xentfast.torch

    return _torch_backward(p, xentfast.torch.cross_entropy)


@_register("torch-compile", "torch.compile (cross_entropy + backward)", requires=["torch"])
def _torch_compile(p: Problem) -> Prepared:
    import torch
    import torch.nn.functional as F

    # A fresh start per problem: dynamo caches compiled graphs per code
    # object and falls back to eager after a few shapes (--all runs many).
    torch.compiler.reset()
    compiled = torch.compile(lambda x, t: F.cross_entropy(x, t), dynamic=False)
    prepared = _torch_backward(p, compiled)  # compiled during the first warm-up run
    prepared.warmup = 5  # its next few calls can be 100 times slower than the rest
    return prepared


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


# PyTorch's own options, for the --options table.


@_register("torch-ls", "PyTorch eager, label_smoothing=0.1", requires=["torch"],
           group="options", compare="opt-ls")
def _torch_label_smoothing(p: Problem) -> Prepared:
    import torch.nn.functional as F

    return _torch_backward(p, lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1))


@_register("torch-weight", "PyTorch eager, weight= (class weights)", requires=["torch"],
           group="options", compare="opt-weight", inputs=["class_weight"])
def _torch_class_weight(p: Problem) -> Prepared:
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(p.extra("class_weight"))
    return _torch_backward(p, lambda x, t: F.cross_entropy(x, t, weight=weight))


@_register("torch-prob", "PyTorch eager, probability targets", requires=["torch"],
           group="options", compare="opt-prob", inputs=["prob_target"])
def _torch_probabilities(p: Problem) -> Prepared:
    import torch.nn.functional as F

    return _torch_backward(p, F.cross_entropy, target=p.extra("prob_target"))


# --------------------------------------------------------------------------
# problems and timing


_POOL = 1 << 22   # normal deviates drawn; larger arrays are tiled from them
_CHUNK = 1 << 16  # ... in chunks taken at random offsets of the pool


def _fill_standard_normal(out: np.ndarray, rng) -> None:
    """Standard-normal values into `out`.

    Arrays of up to 4 Mi elements are drawn directly; larger ones are filled
    with 64 Ki-element chunks of a 4 Mi-element pool of deviates taken at
    random offsets: the same distribution for a benchmark, about 30 times
    faster than drawing them all (which takes ~20 s for 2 GiB here, once per
    shape and once per ``--rss`` process).
    """
    flat = out.reshape(-1)
    dtype = out.dtype.type
    if flat.size <= _POOL:
        rng.standard_normal(dtype=dtype, out=flat)
        return
    pool = rng.standard_normal(_POOL + _CHUNK, dtype=dtype)
    starts = rng.integers(0, _POOL, size=-(-flat.size // _CHUNK))
    for i, s in enumerate(starts):
        chunk = flat[i * _CHUNK:(i + 1) * _CHUNK]
        chunk[:] = pool[s:s + chunk.size]


def make_problem(n: int, c: int, dtype="float32", threads: Optional[int] = None,
                 seed: int = 0, may_overwrite: bool = False) -> Problem:
    """Standard-normal logits (N, C) of `dtype` and uniform int64 targets."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, c), dtype=np.dtype(dtype))
    _fill_standard_normal(x, rng)
    target = rng.integers(0, c, size=n, dtype=np.int64)
    return Problem(x, target, threads or _core.max_threads(), seed, may_overwrite)


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


# --------------------------------------------------------------------------
# peak memory, one process per method

_RSS_TAG = "xentfast-bench-rss: "
_RSS_CHILD = "import sys; from xentfast import bench; sys.exit(bench._rss_child(sys.argv[1]))"
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


# --------------------------------------------------------------------------
# running a table


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
        # run for run against it
        paired = method("xentfast-out") if m.limit is not None else None
        row = measure(m, problem, repeat, want_loss, want_grad, budget, paired)
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
                            f"{r['loss_diff']!r} (DESIGN.md: bitwise identical)")
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


def _add_ratios(rows, elements):
    times = {r["key"]: r["time"] for r in rows}
    copy, fused = times.get("copy"), times.get("xentfast-out")
    loss_only = times.get("xentfast-loss")
    for r in rows:
        t = r["time"]
        r["gelem_per_s"] = elements / t / 1e9 if t else None
        r["x_copy"] = _ratio(t, copy)
        # "x plain" in the options table: against the plain runs interleaved
        # with this row's when it has them
        r["speedup"] = _ratio(t, r.get("paired_time") or fused)
        r["x_loss"] = _ratio(t, loss_only) if r["forward"] else None
        r["meets_limit"] = (r["speedup"] <= r["limit"]
                            if r["limit"] is not None and r["speedup"] is not None else None)


# --------------------------------------------------------------------------
# the summary of several shapes (--all)


def targets(n: int, c: int, threads: int) -> dict:
    """The Performance issue's targets for an N x C problem: ``{column: (op, value)}``."""
    t = {}
    if c >= 32000 and n >= 1024:
        t.update(x_copy=("<=", 1.1), inplace_x_copy=("<=", 1.0), fwd_x_max=("<=", 1.2),
                 vs_eager=(">=", 10.0), vs_compile=(">=", 8.0))
    if c == 10 and n >= 65536:
        t["gelem_per_s"] = (">=", 1.5)
    if c == 2 and n >= 100_000:
        t["gelem_per_s"] = (">=", 0.8)
    if n <= 2 and c >= 65536 and threads >= 2:
        t["thread_speedup"] = (">=", 1.7)
    if n * c <= 1024:
        t["time"] = ("<=", 5e-6)
    return t


def summarize(reports: list) -> list:
    """One dict per core report: the summary table's line (see :func:`format_summary`)."""
    lines = []
    for rep in reports:
        n, c = rep["info"]["shape"]
        threads = rep["info"]["threads"]
        by_key = {r["key"]: r for r in rep["results"]}

        def t(key):
            return by_key[key]["time"] if key in by_key else None

        fused = t("xentfast-out")
        peers = [r for r in rep["results"] if r["kind"] == "peer" and r["time"]]
        best = min(peers, key=lambda r: r["time"]) if peers else None
        s = {
            "shape": [n, c], "elements": n * c, "threads": threads,
            "time": fused, "gelem_per_s": n * c / fused / 1e9 if fused else None,
            "x_copy": _ratio(fused, t("copy")),
            "inplace_x_copy": _ratio(t("xentfast-inplace"), t("copy")),
            "fwd_x_max": _ratio(t("xentfast-loss"), t("max")),
            "thread_speedup": _ratio(t("xentfast-out-1t"), fused),
            "best_peer": best["key"] if best else None,
            "best_peer_gelem_per_s": best["gelem_per_s"] if best else None,
            "vs_eager": _ratio(t("torch-eager"), fused),
            "vs_compile": _ratio(t("torch-compile"), fused),
            "rss_mib": {r["key"]: r.get("rss_mib") for r in rep["results"] if "rss" in r},
            "correct": rep["correctness"]["ok"],
        }
        s["targets"] = targets(n, c, threads)
        s["missed"] = [col for col, (op, want) in s["targets"].items()
                       if s[col] is None or not (s[col] <= want if op == "<=" else s[col] >= want)]
        lines.append(s)
    return lines


# --------------------------------------------------------------------------
# formatting


def _three_digits(v):
    return f"{v:.{max(0, 2 - math.floor(math.log10(v)))}f}" if v > 0 else f"{v:g}"


def _with_unit(seconds):
    if seconds < 1e-3:
        return f"{_three_digits(seconds * 1e6)} us"
    if seconds < 1:
        return f"{_three_digits(seconds * 1e3)} ms"
    return f"{_three_digits(seconds)} s"


def _diff(v):
    return "0" if v == 0 else f"{v:.1e}"


def _mib(v):
    return f"{v:.0f}" if v >= 9.95 else f"{v:.1f}"


def _render(headers, lines, notes_width=None):
    """Columns: the first left-aligned, the others right-aligned.  A line is a
    list of cells, or a (first cell, message) tuple spanning the others."""
    widths = [len(h) for h in headers]
    for line in lines:
        if isinstance(line, list):
            widths = [max(w, len(cell)) for w, cell in zip(widths, line)]
        else:
            widths[0] = max(widths[0], len(line[0]))
    out = ["  ".join([headers[0].ljust(widths[0])]
                     + [h.rjust(w) for h, w in zip(headers[1:], widths[1:])]).rstrip(),
           "  ".join("-" * w for w in widths)]
    room = sum(w + 2 for w in widths[1:])
    for line in lines:
        if isinstance(line, list):
            out.append("  ".join([line[0].ljust(widths[0])]
                                 + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]))
        else:
            message = line[1] if len(line[1]) <= room else line[1][:room - 3] + "..."
            out.append(f"{line[0].ljust(widths[0])}  {message}")
    return out


def _header(info):
    threads = info["threads"]
    return [
        f"xentfast {info['xentfast']}, backend {info['backend']}, "
        f"{threads} thread{'s' if threads != 1 else ''}",
        f"machine: {info['cpu']} ({info['machine']}, {info['cores']} cores), "
        f"numpy {info['numpy']}, python {info['python']}",
    ]


def format_report(report: dict) -> str:
    """The header, table and correctness lines of a :func:`run_benchmark` result."""
    info = report["info"]
    n, c = info["shape"]
    itemsize = np.dtype(info["dtype"]).itemsize
    options = report["group"] == "options"
    rows = report["results"]
    fused = next((r["time"] for r in rows if r["key"] == "xentfast-out"), None)
    micro = fused is not None and fused < 1e-3
    scale, unit = (1e6, "us") if micro else (1e3, "ms")
    runs = (f"best of {info['repeat']} runs" if not info["budget"] else
            f"best of the runs in ~{info['budget']:g} s (>= {info['repeat']}; 2 if > 1 s, "
            f"1 if > 5 s)")
    lines = _header(info) + [
        f"problem: {n} x {c} {info['dtype']} ({n * c / 1e6:.3g} M elements, "
        f"{n * c * itemsize / 2**20:.3g} MiB), {runs} after a warm-up, {info['date']}",
        "",
    ]
    columns = [(f"time {unit}", lambda r: _three_digits(r["time"] * scale)),
               ("G el/s", lambda r: _three_digits(r["gelem_per_s"]))]
    if options:
        columns += [
            ("x plain", lambda r: f"{r['speedup']:.2f}"),
            ("x loss", lambda r: f"{r['x_loss']:.2f}" if r["x_loss"] is not None else "-"),
            ("limit", lambda r: "-" if r["limit"] is None else
             f"{r['limit']:g} {'ok' if r['meets_limit'] else 'MISS'}"),
            ("oracle rel", lambda r: f"{r['oracle']['loss_rel_error']:.1e}"
             if "loss_rel_error" in r.get("oracle", {}) else "-"),
        ]
    else:
        columns += [("x copy", lambda r: f"{r['x_copy']:.2f}"),
                    ("speed-up", lambda r: f"{r['speedup']:.2f}")]
    columns += [("|dloss|", lambda r: _diff(r["loss_diff"])),
                ("max|dgrad|", lambda r: _diff(r["grad_diff"])),
                ("runs", lambda r: str(r["runs"]))]
    if any("rss" in r for r in rows):
        columns.append(("+RSS MiB", lambda r: _mib(r["rss"]["extra_mib"])
                        if "extra_mib" in r.get("rss", {}) else
                        "failed" if "rss" in r else "-"))

    def cell(fmt, r):
        try:
            return fmt(r)
        except (TypeError, KeyError):  # a None
            return "-"

    table = []
    for r in rows:
        if r["error"] is not None:
            table.append((r["name"], f"unavailable: {r['error']}"))
        else:
            table.append([r["name"]] + [cell(fmt, r) for _, fmt in columns])
    lines += _render(["method"] + [h for h, _ in columns], table)
    lines.append("")
    if options:
        lines.append("x plain = time / time of xentfast's plain loss+grad (out=), for a row with a "
                     "limit the best of plain runs")
        lines.append("  interleaved with its own; x loss = time / time of its plain loss only;")
        lines.append("limit: the Options issue's limit on x plain; oracle rel: relative loss "
                     f"error against the float64 oracle, first {ORACLE_ROWS} rows;")
        lines.append("|dloss|, max|dgrad|: PyTorch rows against the xentfast row with the same "
                     "option, plain rows against the plain loss+grad.")
    else:
        lines.append("x copy = time / np.multiply copy time; speed-up = time / time of xentfast "
                     "loss+grad (out=);")
        if report["loss"] is not None:
            lines.append(f"|dloss|, max|dgrad|: distance from xentfast's loss "
                         f"({report['loss']:.7g}) and gradient.")
    if any("rss" in r for r in rows):
        lines.append(f"+RSS MiB: peak RSS of a process running the method {info['rss_calls']} "
                     f"times minus its RSS with the inputs built ({info['inputs_mib']:.4g} MiB, "
                     f"logits {n * c * itemsize / 2**20:.4g} MiB).")
        failed = [f"{r['key']}: {r['rss']['error']}" for r in rows
                  if "error" in r.get("rss", {})]
        lines.extend(f"  RSS not measured for {f}" for f in failed)
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


_SUMMARY_COLUMNS = (  # header, key, format
    ("fused time", "time", _with_unit),
    ("G el/s", "gelem_per_s", _three_digits),
    ("x copy", "x_copy", lambda v: f"{v:.2f}"),
    ("in-place x copy", "inplace_x_copy", lambda v: f"{v:.2f}"),
    ("fwd x max", "fwd_x_max", lambda v: f"{v:.2f}"),
    ("1->{T} threads", "thread_speedup", lambda v: f"{v:.2f}"),
    ("best peer G el/s", "best_peer_gelem_per_s", _three_digits),
    ("best peer", "best_peer", str),
    ("vs eager", "vs_eager", lambda v: f"{v:.1f}"),
    ("vs compile", "vs_compile", lambda v: f"{v:.1f}"),
)


def format_summary(summary: list, info: dict) -> str:
    """The ``--all`` summary: one line per shape; a missed target is marked ``!``."""
    threads = info["threads"]
    lines = ["summary: " + _header(info)[0] + f", {info['date']}", _header(info)[1], ""]
    headers = ["shape"] + [h.replace("{T}", str(threads)) for h, _, _ in _SUMMARY_COLUMNS]
    table = []
    for s in summary:
        n, c = s["shape"]
        cells = [f"{n}x{c}" + ("" if s["correct"] else " (WRONG)")]
        for _, key, fmt in _SUMMARY_COLUMNS:
            v = s[key]
            cells.append(("-" if v is None else fmt(v)) + ("!" if key in s["missed"] else ""))
        table.append(cells)
    lines += _render(headers, table)
    lines += [
        "",
        "fused = xentfast loss+grad into a reused buffer (out=); x copy = its time / "
        "np.multiply(x, 2, out=y);",
        "in-place = out=logits; fwd x max = loss-only time / np.max(x); 1->T threads = "
        "fused time on 1 thread / on T;",
        "best peer among NumPy, PyTorch eager, torch.compile, JAX, scikit-learn; vs eager, "
        "vs compile = their time / fused time.",
    ]
    missed = []
    for s in summary:
        n, c = s["shape"]
        for col in s["missed"]:
            op, want = s["targets"][col]
            got = s[col]
            shown = "-" if got is None else _with_unit(got) if col == "time" else f"{got:.3g}"
            wanted = _with_unit(want) if col == "time" else f"{want:g}"
            missed.append(f"{n}x{c} {col} {shown} (target {op} {wanted})")
    if missed:
        lines.append("! = misses the Performance issue's target: " + "; ".join(missed) + ".")
    else:
        lines.append("every Performance issue target shown is met.")
    wrong = ["{}x{}".format(*s["shape"]) for s in summary if not s["correct"]]
    if wrong:
        lines.append("correctness FAILED (see the shape's table) on: " + ", ".join(wrong) + ".")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# the plot


_PLOT_LINES = (  # key, label, matplotlib style
    ("copy", "copy bound: np.multiply(x, 2, out=y)",
     {"color": "black", "linestyle": "--", "linewidth": 2.5}),
    ("xentfast-out", "xentfast loss+grad (out= reused buffer)",
     {"color": "C3", "linewidth": 2.5, "marker": "o"}),
    ("xentfast-inplace", "xentfast loss+grad (out=logits, in place)",
     {"color": "C3", "linewidth": 1, "linestyle": ":", "marker": "."}),
    ("numpy", "NumPy", {"color": "C0", "marker": "s"}),
    ("torch-eager", "PyTorch eager", {"color": "C1", "marker": "^"}),
    ("torch-compile", "torch.compile", {"color": "C2", "marker": "v"}),
    ("jax-jit", "JAX jit", {"color": "C4", "marker": "D"}),
    ("sklearn", "scikit-learn", {"color": "C5", "marker": "x"}),
)


def _matplotlib():
    """pyplot with a file-only backend, or an ImportError that says what to install."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib, which is not installed: "
                          "pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_throughput(reports: list, path: str, min_rows: int = 64,
                    min_elements: int = 2**16) -> None:
    """Throughput (G elements/s) against C, log-log, one line per method.

    From the core `reports` of at least `min_rows` rows and `min_elements`
    elements (few huge rows and tiny calls are other questions);
    :func:`sweep_shapes` results, if any, in a second panel.  Saved to `path`.
    """
    plt = _matplotlib()
    sweep = {tuple(s) for s in sweep_shapes()}
    issue = [r for r in reports if tuple(r["info"]["shape"]) not in sweep
             and r["info"]["shape"][0] >= min_rows
             and r["info"]["shape"][0] * r["info"]["shape"][1] >= min_elements]
    swept = [r for r in reports if tuple(r["info"]["shape"]) in sweep]
    panels = [(f"shapes with N >= {min_rows} rows (--all: the Performance issue's)", issue),
              (f"N x C = 2^{round(math.log2(SWEEP_ELEMENTS))} elements", swept)]
    panels = [p for p in panels if p[1]] or [("every shape run", reports)]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(9.0, 7.5 * len(panels)), 6.8),
                             squeeze=False)
    for ax, (title, reps) in zip(axes[0], panels):
        reps = sorted(reps, key=lambda r: r["info"]["shape"][1])
        for key, label, style in _PLOT_LINES:
            points = [(r["info"]["shape"][1], row["gelem_per_s"]) for r in reps
                      for row in r["results"] if row["key"] == key and row["gelem_per_s"]]
            if points:
                ax.plot(*zip(*points), label=label, **style)
        cs = [r["info"]["shape"][1] for r in reps]
        ax.set_xscale("log")
        ax.set_yscale("log")
        labels, lowered = [], False
        for i, (c, r) in enumerate(zip(cs, reps)):
            label = f"{c}\nN={r['info']['shape'][0]}"
            # too close to its left neighbour's label (not lowered): lower it
            lowered = i > 0 and c < 4 * cs[i - 1] and not lowered
            labels.append("\n\n" + label if lowered else label)
        ax.set_xticks(cs, labels, fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("classes C (rows N)")
        ax.set_ylabel("G elements/s  (N*C / time of loss+grad)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=4 if len(panels) > 1 else 3, fontsize=9, frameon=False)
    info = reports[0]["info"]
    fig.suptitle(
        f"Softmax cross-entropy loss + gradient, {info['dtype']}: throughput against C\n"
        f"{info['cpu']}, {info['threads']} threads, xentfast {info['xentfast']} "
        f"({info['backend']}), {info['date'][:10]}", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {value}")
    return value


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m xentfast.bench",
        description="Time xentfast's fused softmax cross-entropy loss+gradient against "
                    "the memory bound (a scale-copy) and its peers, in one process.")
    parser.add_argument("--shape", nargs=2, type=_positive_int, metavar=("N", "C"),
                        default=list(DEFAULT_SHAPE),
                        help="rows and classes of the logits, for the default table and "
                             "--options (default: %d %d)" % DEFAULT_SHAPE)
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                        help=f"threads for xentfast, PyTorch and scikit-learn (default: "
                             f"xentfast's default, {_core.max_threads()})")
    parser.add_argument("--repeat", type=_positive_int, default=3, metavar="R",
                        help="timed runs per method at least (2 for methods slower than 1 s, "
                             "1 for slower than 5 s); the best is shown (default: %(default)s)")
    parser.add_argument("--budget", type=_seconds, default=TIME_BUDGET, metavar="S",
                        help="then more runs until S seconds of timed runs per method, at most "
                             f"{MAX_RUNS}; 0: exactly R runs (default: %(default)s)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--options", action="store_true",
                        help="the options table on --shape (instead of the default table): "
                             "each loss option's time over the plain fused loss+grad")
    parser.add_argument("--all", action="store_true",
                        help="every shape of the Performance issue with every installed peer, "
                             "then a summary table; implies --rss")
    parser.add_argument("--sweep", action="store_true",
                        help="shapes of ~2^27 elements for C in %s (with --all: added)"
                             % ", ".join(map(str, SWEEP_CLASSES)))
    parser.add_argument("--rss", action="store_true",
                        help="peak RSS of each method, each in its own process (slower)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="plot throughput against C to FILE.png (needs matplotlib)")
    parser.add_argument("--json", metavar="FILE", help="also write everything as JSON")
    return parser


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status (1 if correctness fails)."""
    args = _parser().parse_args(argv)
    if args.plot:
        try:
            _matplotlib()
        except ImportError as exc:
            print(f"python -m xentfast.bench: {exc}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    threads = args.threads or _core.max_threads()
    rss = args.rss or args.all
    many = args.all or args.sweep
    shapes = (ALL_SHAPES if args.all else []) + (sweep_shapes() if args.sweep else [])
    if not many and not args.options:
        shapes = [tuple(args.shape)]
    repeat, budget = args.repeat, args.budget or None

    def progress(name):
        if sys.stderr.isatty():
            print(f"  {name} ...", file=sys.stderr, flush=True)

    out = {"info": machine_info(threads), "argv": sys.argv[1:] if argv is None else list(argv),
           "core": [], "summary": None, "options": None, "plot": None}
    ok = True
    for i, (n, c) in enumerate(shapes):
        if many:
            print(f"== shape {i + 1}/{len(shapes)}: {n} x {c} "
                  f"({time.perf_counter() - started:.0f} s so far)", flush=True)
        report = run_benchmark(n, c, threads=threads, repeat=repeat, dtype=args.dtype,
                               progress=progress, budget=budget, rss=rss)
        print(format_report(report), end="\n\n", flush=True)
        out["core"].append(report)
        ok &= report["correctness"]["ok"]
    if len(out["core"]) > 1:
        out["summary"] = summarize(out["core"])
        print(format_summary(out["summary"], out["info"]), end="\n\n", flush=True)
    if args.options:
        n, c = args.shape
        report = run_benchmark(n, c, threads=threads, repeat=repeat, dtype=args.dtype,
                               methods=option_methods(), progress=progress,
                               budget=budget, rss=args.rss)
        print(format_report(report), end="\n\n", flush=True)
        out["options"] = report
        ok &= report["correctness"]["ok"]
    if args.plot and out["core"]:
        plot_throughput(out["core"], args.plot)
        out["plot"] = args.plot
        print(f"plot: {args.plot}")
    out["wall_seconds"] = time.perf_counter() - started
    print(f"wall time: {out['wall_seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, allow_nan=True, default=_json_default)
            f.write("\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
