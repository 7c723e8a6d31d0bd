"""Before/after timings of two builds of xentfast, interleaved.

    python tools/ab_bench.py OLD_SRC NEW_SRC N C [THREADS [ROUNDS]]

OLD_SRC and NEW_SRC are directories that hold a built ``xentfast`` package (a
source tree built in place, e.g. a ``git worktree`` of the old commit after
``python setup.py build_ext --inplace``, and ``src`` of this one).  Each round
runs one subprocess per build, alternately, and each subprocess times the
fused loss+grad on N x C float32 logits under each option (best of 5 calls);
the best over the rounds is printed with new/old and each option's time over
the plain pass of its own build.  Alternating whole processes keeps a noisy
machine's drift out of the comparison.
"""
import json
import os
import subprocess
import sys

CHILD = r'''
import json, sys, time
import numpy as np
import xentfast as xf
n, c, th = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
x = rng.standard_normal((n, c), dtype=np.float32)
t = rng.integers(0, c, n)
g, xc = np.empty_like(x), x.copy()
p = np.full((n, c), 1.0 / c, np.float32)
w = np.linspace(0.5, 2, c, dtype=np.float32)
def best(f, k=5):
    b = float("inf")
    for _ in range(k):
        t0 = time.perf_counter()
        f()
        b = min(b, time.perf_counter() - t0)
    return b * 1e3
runs = {
    "plain": lambda: xf.cross_entropy_and_grad(x, t, out=g, num_threads=th),
    "in place": lambda: xf.cross_entropy_and_grad(xc, t, out=xc, num_threads=th),
    "smoothing": lambda: xf.cross_entropy_and_grad(x, t, out=g, num_threads=th,
                                                   label_smoothing=0.1),
    "class weights": lambda: xf.cross_entropy_and_grad(x, t, out=g, num_threads=th, weight=w),
    "temperature": lambda: xf.cross_entropy_and_grad(x, t, out=g, num_threads=th,
                                                     temperature=2.0),
    "probabilities": lambda: xf.cross_entropy_and_grad(x, p, out=g, num_threads=th),
    "softcap": lambda: xf.cross_entropy_and_grad(x, t, out=g, num_threads=th, softcap=30.0),
    "loss only": lambda: xf.cross_entropy(x, t, num_threads=th),
}
print(json.dumps({k: best(f) for k, f in runs.items()}))
'''


def main(old, new, n, c, threads="1", rounds="4"):
    builds = {"old": old, "new": new}
    best = {b: {} for b in builds}
    for _ in range(int(rounds)):
        for b, path in builds.items():
            env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
            out = subprocess.run([sys.executable, "-c", CHILD, n, c, threads], env=env,
                                 capture_output=True, text=True, check=True).stdout
            for k, v in json.loads(out).items():
                best[b][k] = min(best[b].get(k, float("inf")), v)
    print(f"{n}x{c} float32, {threads} thread(s), best of {rounds} rounds x 5 calls (ms)")
    for k in best["old"]:
        o, m = best["old"][k], best["new"][k]
        print(f"  {k:14s} old {o:8.2f}  new {m:8.2f}  new/old {m / o:5.3f}   over plain: "
              f"old {o / best['old']['plain']:.2f}, new {m / best['new']['plain']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
