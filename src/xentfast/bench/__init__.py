"""Benchmark xentfast against the machine's memory bounds and against its peers.

Run as ``python -m xentfast.bench`` (or the ``xentfast-bench`` console script).
By default it prints one table for a single problem, ``N = 8192`` rows of
``C = 32000`` float32 logits (a language model's batch), with one row per
method, each timed in this one process after one untimed warm-up run, as the
best of its timed runs: at least ``--repeat`` (3; 2 for a method slower than
1 s, 1 for slower than 5 s), then more until ``--budget`` seconds (1) of timed
runs -- on a shared machine, many short runs find the undisturbed ones:

- the bounds: xentfast's own C passes over the same array, threaded as the
  kernels (``_core.bound``): a read, a read + streaming write, a read + write
  in place -- the traffic of the loss alone, of loss+gradient into a buffer and
  in place, with no arithmetic -- each on ``--threads`` threads and on one;
- ``copy bound``: NumPy's ``np.multiply(x, 2, out=y)``, one read and one write
  of every element on one thread (a row split over ``--threads`` threads is
  shown as well): the yardstick of earlier versions;
- ``np.max(x)``: one read of every element, the bound of a forward-only pass;
- xentfast's fused loss+gradient into a reused buffer, into a fresh array and
  in place (``out=logits``, the logits copied back outside the timed region),
  and its loss alone; each but the fresh array on ``--threads`` threads and on
  one thread, against the bound of the same traffic on as many threads;
- xentfast inside PyTorch: ``xentfast.torch.cross_entropy`` + backward, and
  with ``inplace_backward=True`` where the adapter has that keyword;
- the peers: a straightforward NumPy implementation, PyTorch eager and
  ``torch.compile``, JAX ``jit(value_and_grad)`` and scikit-learn's
  ``HalfMultinomialLoss``.  A peer that is not installed, or fails, is shown as
  ``unavailable: <reason>``.  Every peer is optional (PyTorch is optional; any
  CPU build works).

Columns: time, throughput in G elements/s (``N*C / time``), ``of bound`` (the
matching bound's time over the row's: 1.0 is the floor), time over NumPy's
copy (``x copy``), the xentfast speed-up (that
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
    each row's time over the plain fused loss+grad, next to its target
    (:data:`~xentfast.bench.targets.OPTION_RATIO_LIMIT`, 1.3, and 1.6 for
    probability targets; ``above`` when missed); a row with a target is timed
    run for run against plain runs interleaved with its own, and ``x plain``
    is the ratio of the two bests (see :func:`measure`).  Each xentfast row is
    checked against the float64 oracle on its first 256 rows (``oracle rel``);
    each PyTorch row against the xentfast row with the same option.
``--loop``
    Training loops (:mod:`xentfast.bench.loop`) of 100 SGD steps of a linear
    classifier: the README's NumPy loop with
    :func:`xentfast.cross_entropy_and_grad` next to BLAS, the same loop with a
    plain NumPy softmax gradient (the yardstick), and with PyTorch installed
    (optional; any CPU build works) a PyTorch loop with
    ``xentfast.torch.cross_entropy`` and with ``F.cross_entropy`` (its
    yardstick).  Each loop runs in a fresh process under each thread setting
    (the default environment, ``OMP_WAIT_POLICY=passive``,
    ``OPENBLAS_NUM_THREADS=1``, ``OMP_NUM_THREADS=1``); the table shows its
    best time under each and the ratio to its best under any, against
    :data:`~xentfast.bench.targets.LOOP_SETTING_RATIO_LIMIT`.
``--all``
    Every shape of :data:`ALL_SHAPES` (three language-model vocabularies, a
    classifier, a binary model, few huge rows, a tiny call) with every
    installed peer: each shape's table, then one summary table (one line per
    shape, targets of :mod:`xentfast.bench.targets` that are missed marked
    ``!``).  Implies ``--rss``.
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
                             [--dtype {float32,float64}] [--options] [--loop]
                             [--all] [--sweep] [--rss] [--plot FILE.png] [--json FILE]

The methods live in one registry, :data:`METHODS`: each is a
:class:`Method` whose ``setup(problem)`` returns a :class:`Prepared` (the
callable to time, an optional untimed step before each run and how to read
``(loss, grad)`` from its result).  The pytest-benchmark suite in
``benchmarks/`` times the same registry, so every peer is written once, here.
A table beside the default one is a :class:`~xentfast.bench.cli.Mode` in
:data:`~xentfast.bench.cli.MODES` (its flag, its run, its text):
:func:`~xentfast.bench.cli.register_mode` adds one.

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

from __future__ import annotations

# The order of these imports is the table's row order: the registry's own rows
# (bounds, xentfast, its options), then the peers.
from .registry import (METHODS, Method, OptionCase, Prepared, core_methods, method,
                       option_methods)
from . import peers  # noqa: F401  (registers the peers' rows)
from .peers import numpy_cross_entropy_and_grad
from .problem import (ALL_SHAPES, DEFAULT_SHAPE, EXTRAS, SWEEP_CLASSES, SWEEP_ELEMENTS,
                      Problem, Unavailable, make_problem, sweep_shapes)
from .targets import OPTION_RATIO_LIMIT, PROBABILITY_RATIO_LIMIT, shape_targets
from .timing import (MAX_RUNS, ORACLE_ROWS, TIME_BUDGET, expected_result, measure,
                     option_oracle_check, oracle_check)
from .memory import RSS_CALLS, measure_rss
from .run import machine_info, run_benchmark, summarize
from .report import format_report, format_summary
from .plot import plot_throughput
from .loop import LOOPS, format_loop_report, measure_loop, run_loops
from .cli import MODES, Mode, main, register_mode
from . import linear as _linear_mode

_linear_mode._register()

__all__ = [
    "ALL_SHAPES",
    "LOOPS",
    "METHODS",
    "MODES",
    "Method",
    "Mode",
    "OptionCase",
    "Prepared",
    "Problem",
    "Unavailable",
    "core_methods",
    "expected_result",
    "main",
    "make_problem",
    "measure",
    "measure_loop",
    "measure_rss",
    "method",
    "numpy_cross_entropy_and_grad",
    "option_methods",
    "option_oracle_check",
    "plot_throughput",
    "register_mode",
    "run_benchmark",
    "run_loops",
    "summarize",
    "sweep_shapes",
]
