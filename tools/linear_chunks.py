"""The fused linear + cross-entropy's time against the chunk size.

    python tools/linear_chunks.py N D V CHUNKS      e.g.  4096 1024 32000 1024,2048,4096
    python tools/linear_chunks.py N D V THREADS --kernel-threads   e.g. 4096 1024 32000 2,1
    python tools/linear_chunks.py N D V BLOCKS --gemm-blocks   e.g. 2048 1024 32000 256,512,2048

The second form compares the kernel's ``num_threads`` at the automatic chunk
size; the third times the forward GEMM alone, hidden @ W.T, in calls of BLOCKS rows
(``_linear.BLOCK_ROWS``) into one N x V buffer.

Best of 3 interleaved rounds after a warm-up call each of the three GEMMs alone (full size, NumPy's BLAS) and of
``linear_cross_entropy_and_grad`` with each ``chunk_size``; prints each as a multiple
of the GEMMs' time.  Each chunk reads W twice and updates the V x D gradient once, so
small chunks cost more when memory bandwidth is scarce.
"""
import sys

import numpy as np

import xentfast as xf
from xentfast.bench.linear import time_interleaved


def main(n, d, v, chunks, option="chunk_size"):
    rng = np.random.default_rng(0)
    h = rng.standard_normal((n, d), dtype=np.float32) * 0.1
    w = rng.standard_normal((v, d), dtype=np.float32) * 0.03
    t = rng.integers(0, v, n)

    z, gh, gw = np.empty((n, v), np.float32), np.empty_like(h), np.empty_like(w)

    def gemms():  # into reused buffers, as the benchmark's
        np.matmul(h, w.T, out=z)
        np.matmul(z, w, out=gh)
        np.matmul(z.T, h, out=gw)

    fns = {"gemms": gemms}
    for c in chunks:
        fns[f"{option} {c}"] = lambda c=c: xf.linear_cross_entropy_and_grad(h, w, t, **{option: c})
    best, _ = time_interleaved(fns, 0, min_rounds=3)
    print(f"{n}x{d}->{v}: " + "  ".join(
        f"{k} {best[k] * 1e3:.0f} ms ({best[k] / best['gemms']:.3f})" for k in fns))


def gemm_blocks(n, d, v, blocks):
    rng = np.random.default_rng(0)
    h = rng.standard_normal((n, d), dtype=np.float32)
    wt = rng.standard_normal((v, d), dtype=np.float32).T
    z = np.empty((n, v), dtype=np.float32)

    def blocked(b):
        for b0 in range(0, n, b):
            np.matmul(h[b0:b0 + b], wt, out=z[b0:b0 + b])

    best, _ = time_interleaved({b: lambda b=b: blocked(b) for b in blocks}, 0, min_rounds=3)
    print(f"{n}x{d} @ {d}x{v}: " + "  ".join(
        f"blocks of {b} rows {best[b] * 1e3:.0f} ms" for b in blocks))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a not in ("--gemm-blocks", "--kernel-threads")]
    if len(args) != 4:
        sys.exit(__doc__)
    sizes = [int(c) for c in args[3].split(",")]
    if "--gemm-blocks" in sys.argv:
        gemm_blocks(*map(int, args[:3]), sizes)
    else:
        main(*map(int, args[:3]), sizes,
             "num_threads" if "--kernel-threads" in sys.argv else "chunk_size")
