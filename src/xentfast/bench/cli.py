"""The command line: ``python -m xentfast.bench``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from xentfast import _core

from .distributed import format_distributed_report, run_distributed
from .loop import LOOP_STEPS, format_loop_report, run_loops
from .plot import _matplotlib, plot_throughput
from .problem import ALL_SHAPES, DEFAULT_SHAPE, SWEEP_CLASSES, sweep_shapes
from .registry import option_methods
from .report import format_report, format_summary
from .run import machine_info, run_benchmark, summarize
from .timing import MAX_RUNS, TIME_BUDGET


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


@dataclass(frozen=True)
class Context:
    """What a mode's run gets: the parsed arguments and the shared settings."""

    args: argparse.Namespace
    threads: int
    repeat: int
    budget: Optional[float]
    progress: Callable[[str], None]


@dataclass(frozen=True)
class Mode:
    """A table a flag adds, in place of the default table.

    Attributes
    ----------
    key : str
        The flag is ``--key`` and the report is the JSON's ``key``.
    help : str
        The flag's help.
    run : callable
        ``run(context) -> report``: a JSON-ready dict with ``correctness``
        (``{"ok": bool, ...}``), which decides the exit status.
    format : callable
        ``format(report) -> str``: the text printed.
    """

    key: str
    help: str
    run: Callable[[Context], dict]
    format: Callable[[dict], str]


def _run_options(ctx: Context) -> dict:
    n, c = ctx.args.shape
    return run_benchmark(n, c, threads=ctx.threads, repeat=ctx.repeat, dtype=ctx.args.dtype,
                         methods=option_methods(), progress=ctx.progress, budget=ctx.budget,
                         rss=ctx.args.rss)


def _run_loop(ctx: Context) -> dict:
    return run_loops(repeat=ctx.repeat, budget=ctx.budget or 0.0, progress=ctx.progress)


MODES: dict = {}
"""The modes by key, in the order they run (after the default or ``--all``
tables); :func:`register_mode` adds one."""


def register_mode(mode: Mode) -> Mode:
    """Add `mode` to the command line (its flag is ``--<key>``)."""
    if mode.key in MODES:
        raise ValueError(f"a mode called {mode.key!r} is registered already")
    MODES[mode.key] = mode
    return mode


register_mode(Mode(
    "options",
    "the options table on --shape (instead of the default table): each loss option's time "
    "over the plain fused loss+grad",
    _run_options, format_report))
register_mode(Mode(
    "loop",
    f"training loops of {LOOP_STEPS} steps under several thread settings, each loop in a "
    "fresh process (instead of the default table): the README's NumPy loop with xentfast and "
    "with a NumPy softmax gradient, and with PyTorch installed (optional; any CPU build works) "
    "xentfast.torch.cross_entropy and F.cross_entropy; --repeat and --budget apply per loop",
    _run_loop, format_loop_report))

register_mode(Mode(
    "distributed",
    "xentfast.distributed on 2 MPI ranks of 1 thread (started with mpiexec; needs mpi4py): "
    "the --shape batch split by classes and by rows, against the single-process call on "
    "one rank's piece, with the bytes each call communicates (instead of the default table)",
    run_distributed, format_distributed_report))


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m xentfast.bench",
        description="Time xentfast's fused softmax cross-entropy loss+gradient against "
                    "the machine's memory bounds (xentfast's own read and write passes) and its "
                    "peers, in one process.")
    parser.add_argument("--shape", nargs=2, type=_positive_int, metavar=("N", "C"),
                        default=list(DEFAULT_SHAPE),
                        help="rows and classes of the logits, for the default table and "
                             "--options (default: %d %d)" % DEFAULT_SHAPE)
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                        help=f"threads for xentfast, PyTorch and scikit-learn (default: "
                             f"xentfast's default, {_core.max_threads()}; not --loop's)")
    parser.add_argument("--repeat", type=_positive_int, default=3, metavar="R",
                        help="timed runs per method at least (2 for methods slower than 1 s, "
                             "1 for slower than 5 s); the best is shown (default: %(default)s)")
    parser.add_argument("--budget", type=_seconds, default=TIME_BUDGET, metavar="S",
                        help="then more runs until S seconds of timed runs per method, at most "
                             f"{MAX_RUNS}; 0: exactly R runs (default: %(default)s)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    for mode in MODES.values():
        parser.add_argument(f"--{mode.key}", dest=mode.key, action="store_true", help=mode.help)
    parser.add_argument("--all", action="store_true",
                        help="every shape of xentfast.bench.ALL_SHAPES (language-model "
                             "vocabularies, a classifier, a binary model, few huge rows, a tiny "
                             "call) with every installed peer, then a summary table against the "
                             "targets; implies --rss")
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
    modes = [m for m in MODES.values() if getattr(args, m.key)]
    shapes = (ALL_SHAPES if args.all else []) + (sweep_shapes() if args.sweep else [])
    if not many and not modes:
        shapes = [tuple(args.shape)]
    repeat, budget = args.repeat, args.budget or None

    def progress(name):
        if sys.stderr.isatty():
            print(f"  {name} ...", file=sys.stderr, flush=True)

    out = {"info": machine_info(threads), "argv": sys.argv[1:] if argv is None else list(argv),
           "core": [], "summary": None}
    out.update((key, None) for key in MODES)
    out["plot"] = None
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
    context = Context(args, threads, repeat, budget, progress)
    for mode in modes:
        report = mode.run(context)
        print(mode.format(report), end="\n\n", flush=True)
        out[mode.key] = report
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
