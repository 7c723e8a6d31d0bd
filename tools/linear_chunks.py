"""The fused linear + cross-entropy's time against the chunk size.

    python tools/linear_chunks.py N D V CHUNKS      e.g.  4096 1024 32000 1024,2048,4096
    python tools/linear_chunks.py N D V THREADS --kernel-threads   e.g. 4096 1024 32000 2,1
    python tools/linear_chunks.py N D V BLOCKS --gemm-blocks   e.g. 2048 1024 32000 256,512,2048
    python tools/linear_chunks.py N D V CHUNKS --pieces   e.g. 2048 512 128256 512,1024/1024

The first form times ``linear_cross_entropy_and_grad`` with each ``chunk_size``
beside the three GEMMs alone (full size, NumPy's BLAS, into reused buffers as
the benchmark's), best of 3 interleaved rounds after a warm-up call each, and
prints each as a multiple of the GEMMs' time.  Each chunk reads W twice and
updates the V x D gradient once, so small chunks cost more when memory bandwidth
is scarce.  The second compares the kernel's ``num_threads`` at the automatic
chunk size; the third times the forward GEMM alone, hidden @ W.T, in calls of
BLOCKS rows (``_linear.block_rows``) into one N x V buffer.  The fourth splits the
time of each chunk size into its pieces, summed over the chunks (the forward
GEMM, the kernel, G @ W, the accumulation of Gᵀ @ hidden), beside each full-size
GEMM: it times the library's own calls, wrapped, best of 3 rounds per piece.  A
chunk size written C/B runs the forward GEMM in blocks of B rows instead of the
library's fixed block (which keeps the loss the same bits for any chunk size).
"""
import sys
import time

import numpy as np

import xentfast as xf
from xentfast import _linear
from xentfast.bench.linear import time_interleaved


def _problem(n, d, v):
    """hidden, W, targets, gradient buffers for ``out=``, and the three
    full-size GEMMs into reused buffers, as the benchmark's."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((n, d), dtype=np.float32) * 0.1
    w = rng.standard_normal((v, d), dtype=np.float32) * 0.03
    t = rng.integers(0, v, n)
    out = (np.empty_like(h), np.empty_like(w), None)
    z, gh, gw = np.empty((n, v), np.float32), np.empty_like(h), np.empty_like(w)
    gemms = {"forward": lambda: np.matmul(h, w.T, out=z),
             "G @ W": lambda: np.matmul(z, w, out=gh),
             "Gᵀ @ hidden": lambda: np.matmul(z.T, h, out=gw)}
    return h, w, t, out, gemms


def main(n, d, v, chunks, option="chunk_size"):
    h, w, t, out, gemms = _problem(n, d, v)

    def all_gemms():
        for gemm in gemms.values():
            gemm()

    fns = {"gemms": all_gemms}
    for c in chunks:
        fns[f"{option} {c}"] = lambda c=c: xf.linear_cross_entropy_and_grad(h, w, t, out=out,
                                                                           **{option: c})
    best, _ = time_interleaved(fns, 0, min_rounds=3)
    print(f"{n}x{d}->{v}: " + "  ".join(
        f"{k} {best[k] * 1e3:.0f} ms ({best[k] / best['gemms']:.3f})" for k in fns))


def gemm_blocks(n, d, v, blocks):
    h, w, _, _, _ = _problem(n, d, v)
    wt = w.T
    z = np.empty((n, v), dtype=np.float32)

    def blocked(b):
        for b0 in range(0, n, b):
            np.matmul(h[b0:b0 + b], wt, out=z[b0:b0 + b])

    best, _ = time_interleaved({b: lambda b=b: blocked(b) for b in blocks}, 0, min_rounds=3)
    print(f"{n}x{d} @ {d}x{v}: " + "  ".join(
        f"blocks of {b} rows {best[b] * 1e3:.0f} ms" for b in blocks))


class _TimedNumpy:
    """NumPy for _linear, its matmul timed: into "forward" when the product
    has V columns (the logits), else into "G @ W"."""

    def __init__(self, v, spent):
        self.v, self.spent = v, spent

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, a, b, out):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        self.spent["forward" if out.shape[1] == self.v else "G @ W"] += time.perf_counter() - t0


def _timed(fn, key, spent):
    def call(*args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        spent[key] += time.perf_counter() - t0
        return result
    return call


def pieces(n, d, v, chunks):
    h, w, t, out, full = _problem(n, d, v)
    best_full, _ = time_interleaved(full, 0, min_rounds=3)
    print(f"{n}x{d}->{v}, full size: " + "  ".join(
        f"{k} {best_full[k] * 1e3:.0f} ms" for k in full) +
        f"  (sum {sum(best_full.values()) * 1e3:.0f} ms)")
    keys = ("forward", "kernel", "G @ W", "Gᵀ @ hidden")
    best = {c: dict.fromkeys(keys, float("inf")) for c in chunks}
    saved = _linear.np, _linear._api._run, _linear._accumulate_product, _linear.block_rows

    def restore():
        _linear.np, _linear._api._run, _linear._accumulate_product, _linear.block_rows = saved

    try:
        for warm_up in (True, False, False, False):
            for c in chunks:
                chunk, _, block = c.partition("/")
                spent = dict.fromkeys(keys, 0.0)
                _linear.np = _TimedNumpy(v, spent)
                _linear._api._run = _timed(saved[1], "kernel", spent)
                _linear._accumulate_product = _timed(saved[2], "Gᵀ @ hidden", spent)
                if block:
                    _linear.block_rows = lambda *args, block=int(block): block
                xf.linear_cross_entropy_and_grad(h, w, t, chunk_size=int(chunk), out=out)
                restore()
                if not warm_up:
                    best[c] = {k: min(best[c][k], spent[k]) for k in keys}
    finally:
        restore()
    for c in chunks:
        total = sum(best[c].values())
        print(f"  chunks of {c} rows: " + "  ".join(
            f"{k} {best[c][k] * 1e3:.0f}" + (f" ({(best[c][k] - best_full[k]) * 1e3:+.0f})"
                                               if k in best_full else "") + " ms"
            for k in keys) + f"  sum {total * 1e3:.0f} ms ({total / sum(best_full.values()):.3f})")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a not in ("--gemm-blocks", "--kernel-threads", "--pieces")]
    if len(args) != 4:
        sys.exit(__doc__)
    shape, sizes = [int(a) for a in args[:3]], args[3].split(",")
    if "--pieces" in sys.argv:
        pieces(*shape, sizes)
    elif "--gemm-blocks" in sys.argv:
        gemm_blocks(*shape, [int(c) for c in sizes])
    else:
        main(*shape, [int(c) for c in sizes],
             "num_threads" if "--kernel-threads" in sys.argv else "chunk_size")
