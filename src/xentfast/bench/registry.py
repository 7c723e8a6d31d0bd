"""The registry of timed methods (:data:`METHODS`): the memory bounds,
xentfast's variants and its loss options.  The peers are in :mod:`.peers`."""
from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

import xentfast

from .problem import Problem, Unavailable
from .targets import OPTION_RATIO_LIMIT, PROBABILITY_RATIO_LIMIT


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
        The target on the row's time over the plain fused loss+grad
        (:data:`~xentfast.bench.targets.OPTION_RATIO_LIMIT`, ...).
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
                detail = "" if exc.name == module else f" ({exc})"  # a broken install
                raise Unavailable(f"{module} not installed{detail}") from None

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


def _bound(p: Problem, op, threads) -> Prepared:
    from .. import _core

    flat = p.x.reshape(-1)
    if op == _core.BOUND_STREAM:
        y = np.empty_like(flat)
        return Prepared(lambda: _core.bound(op, flat, y, threads))
    if op == _core.BOUND_IN_PLACE:
        work = flat.copy()  # negated in place, run after run: the logits stay intact
        return Prepared(lambda: _core.bound(op, work, None, threads))
    return Prepared(lambda: _core.bound(op, flat, None, threads))


@_register("bound-stream", "bound: read + streaming write", kind="bound",
           note="the bounds are xentfast's own C passes over the same array, threaded as the "
                "kernels are: one read (the loss alone), one read and one write with "
                "streaming stores (loss+grad into a buffer), one read and one write in place "
                "(loss+grad over the logits)")
def _bound_stream(p: Problem) -> Prepared:
    from .. import _core
    return _bound(p, _core.BOUND_STREAM, p.threads)


@_register("bound-stream-1t", "bound: read + streaming write, 1 thread", kind="bound")
def _bound_stream_1t(p: Problem) -> Prepared:
    from .. import _core
    return _bound(p, _core.BOUND_STREAM, 1)


@_register("bound-inplace", "bound: read + write in place", kind="bound")
def _bound_inplace(p: Problem) -> Prepared:
    from .. import _core
    return _bound(p, _core.BOUND_IN_PLACE, p.threads)


@_register("bound-inplace-1t", "bound: read + write in place, 1 thread", kind="bound")
def _bound_inplace_1t(p: Problem) -> Prepared:
    from .. import _core
    return _bound(p, _core.BOUND_IN_PLACE, 1)


@_register("bound-read", "bound: read", kind="bound")
def _bound_read(p: Problem) -> Prepared:
    from .. import _core
    return _bound(p, _core.BOUND_READ, p.threads)


@_register("bound-read-1t", "bound: read, 1 thread", kind="bound")
def _bound_read_1t(p: Problem) -> Prepared:
    from .. import _core
    return _bound(p, _core.BOUND_READ, 1)


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


def _into_buffer(p: Problem, threads) -> Prepared:
    buf = np.empty_like(p.x)
    return Prepared(
        lambda: xentfast.cross_entropy_and_grad(p.x, p.target, out=buf, num_threads=threads),
        result=_loss_grad)


@_register("xentfast-out", "xentfast loss+grad (out= reused buffer)", kind="xentfast")
def _xentfast_out(p: Problem) -> Prepared:
    return _into_buffer(p, p.threads)


@_register("xentfast-out-1t", "xentfast loss+grad (out=), 1 thread", kind="xentfast",
           note="the fused rows (1 thread, fresh, in place) must give the bitwise same "
                "gradient as out=, and the 1-thread row the same loss")
def _xentfast_out_1t(p: Problem) -> Prepared:
    return _into_buffer(p, 1)


@_register("xentfast-fresh", "xentfast loss+grad (fresh gradient)", kind="xentfast")
def _xentfast_fresh(p: Problem) -> Prepared:
    return Prepared(
        lambda: xentfast.cross_entropy_and_grad(p.x, p.target, num_threads=p.threads),
        result=_loss_grad)


def _in_place(p: Problem, threads) -> Prepared:
    if p.may_overwrite:  # measure_rss: no copy of the logits to restore from
        return Prepared(
            lambda: xentfast.cross_entropy_and_grad(p.x, p.target, out=p.x, num_threads=threads),
            result=_loss_grad)
    work = np.empty_like(p.x)
    return Prepared(
        lambda: xentfast.cross_entropy_and_grad(work, p.target, out=work, num_threads=threads),
        before=lambda: np.copyto(work, p.x),
        result=_loss_grad)


@_register("xentfast-inplace", "xentfast loss+grad (out=logits, in place)", kind="xentfast")
def _xentfast_inplace(p: Problem) -> Prepared:
    return _in_place(p, p.threads)


@_register("xentfast-inplace-1t", "xentfast loss+grad (out=logits), 1 thread", kind="xentfast")
def _xentfast_inplace_1t(p: Problem) -> Prepared:
    return _in_place(p, 1)


def _loss_only(p: Problem, threads) -> Prepared:
    return Prepared(lambda: xentfast.cross_entropy(p.x, p.target, num_threads=threads),
                    result=lambda loss: (loss, None))


@_register("xentfast-loss", "xentfast loss only", kind="xentfast")
def _xentfast_loss(p: Problem) -> Prepared:
    return _loss_only(p, p.threads)


@_register("xentfast-loss-1t", "xentfast loss only, 1 thread", kind="xentfast")
def _xentfast_loss_1t(p: Problem) -> Prepared:
    return _loss_only(p, 1)


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
        limit = PROBABILITY_RATIO_LIMIT if probabilities else OPTION_RATIO_LIMIT
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

