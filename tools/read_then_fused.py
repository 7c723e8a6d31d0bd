"""What a vocabulary shard's two passes cost in one process, without traffic.

    python tools/read_then_fused.py [N C [ROWS,ROWS,...]]     default 8192 16000 8192,4096,1024,256

A vocabulary shard reads its logits once for its row statistics and once more
to write the gradient against the global statistics.  This times, on one
thread, the fused loss+grad pass alone against a read pass (``logsumexp``)
followed by the fused pass, over the whole array and in blocks of ROWS rows,
which is what a second read from cache could save: best of 4 interleaved
rounds (after a warm-up call each), each as a multiple of the fused pass.
"""
import sys

import numpy as np

import xentfast as xf
from xentfast.bench.linear import time_interleaved


def main(n, c, blocks):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c), dtype=np.float32)
    t = rng.integers(0, c, n)
    g = np.empty_like(x)

    def fused():
        xf.cross_entropy_and_grad(x, t, out=g, num_threads=1)

    def read_then_fused(rows):
        def run():
            for s in range(0, n, rows):
                xf.logsumexp(x[s:s + rows], axis=1, num_threads=1)
                xf.cross_entropy_and_grad(x[s:s + rows], t[s:s + rows], out=g[s:s + rows],
                                          num_threads=1)
        return run

    fns = {"fused": fused}
    for rows in blocks:
        fns[f"read then fused, blocks of {rows} rows ({rows * c * 4 / 2**20:.1f} MiB)"] = (
            read_then_fused(rows))
    best, _ = time_interleaved(fns, 0, min_rounds=4)
    for k in fns:
        print(f"{k}: {best[k] * 1e3:.1f} ms ({best[k] / best['fused']:.2f})")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (0, 2, 3):
        sys.exit(__doc__)
    n, c = (int(args[0]), int(args[1])) if args else (8192, 16000)
    blocks = [int(r) for r in args[2].split(",")] if len(args) == 3 else [8192, 4096, 1024, 256]
    main(n, c, blocks)
