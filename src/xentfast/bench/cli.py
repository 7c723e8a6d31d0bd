"""The command line: ``python -m xentfast.bench``."""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from xentfast import _core

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
