"""The performance targets the benchmark checks its measurements against.

Each is a named constant with what it protects; the tables mark a
measurement that does not meet its target.
"""
from __future__ import annotations

# Time of a loss-option row over the plain fused loss+grad (the --options table).
OPTION_LIMIT = 1.3
PROBABILITY_LIMIT = 1.6


def shape_targets(n: int, c: int, threads: int) -> dict:
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
