"""The fused kernels as fractions of the machine's memory bounds, one shape.

    python tools/bound_fractions.py N C

For 1 and 2 threads, interleaved (best of 7 per round, two rounds): the bound
passes of the extension (``_core.bound``: a read; a read + streaming write; a
read + write in place) and xentfast's loss+grad into a reused buffer, in
place, and loss only; then each fused pass as a fraction of its bound (1 = at
the bound).  ``python -m xentfast.bench`` reports the same fractions beside
its peers; this is the quick look.
"""
import sys
import time

import numpy as np

import xentfast as xf
from xentfast import _core


def best(f, k=7):
    b = float("inf")
    for _ in range(k):
        t0 = time.perf_counter()
        f()
        b = min(b, time.perf_counter() - t0)
    return b


def main(n, c):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c), dtype=np.float32)
    y, g = np.empty_like(x), np.empty_like(x)
    t = rng.integers(0, c, n)
    flat, yflat = x.reshape(-1), y.reshape(-1)
    for th in (1, 2):
        xc = x.copy()
        runs = {
            "read": lambda: _core.bound(_core.BOUND_READ, flat, None, th),
            "stream": lambda: _core.bound(_core.BOUND_STREAM, flat, yflat, th),
            "in-place bound": lambda: _core.bound(_core.BOUND_IN_PLACE, xc.reshape(-1), None, th),
            "fused": lambda: xf.cross_entropy_and_grad(x, t, out=g, num_threads=th),
            "in place": lambda: xf.cross_entropy_and_grad(xc, t, out=xc, num_threads=th),
            "loss": lambda: xf.cross_entropy(x, t, num_threads=th),
        }
        m = {k: float("inf") for k in runs}
        for _ in range(2):
            for k, f in runs.items():
                m[k] = min(m[k], best(f))
        el = n * c
        print(f"{n}x{c}, {th} thread(s): " + "  ".join(
            f"{k} {v * 1e3:.1f} ms ({el / v / 1e9:.2f} G/s)" for k, v in m.items()))
        print(f"  of bound: fused {m['stream'] / m['fused']:.2f}, in place "
              f"{m['in-place bound'] / m['in place']:.2f}, loss {m['read'] / m['loss']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
