"""One training step of an embedding + linear language model in NumPy, with
the loss computed by NumPy's own softmax or by xentfast: what a user's step
gains end to end (the two matmuls of the head dominate it).

    python tools/lm_step_bench.py [--tokens 2048] [--dim 256] [--vocab 8000 32000]

Prints, per vocabulary, the best step time of each (interleaved) and the ratio.
"""
import argparse
import time

import numpy as np

import xentfast


def numpy_loss_and_grad(logits, target):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(len(target)), target]))
    g = e / s
    g[np.arange(len(target)), target] -= 1
    g /= len(target)
    return loss, g


def step(emb, w, tokens, target, loss_fn, buf):
    h = emb[tokens]                       # (N, D)
    logits = np.matmul(h, w.T, out=buf)   # (N, V)
    loss, g = loss_fn(logits, target)
    dw = g.T @ h                          # (V, D)
    dh = g @ w                            # (N, D)
    np.add.at(emb, tokens, -0.1 * dh)
    w -= 0.1 * dw
    return loss


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--vocab", type=int, nargs="+", default=[8000, 32000])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    for v in args.vocab:
        emb = rng.standard_normal((v, args.dim), dtype=np.float32) * 0.1
        w = rng.standard_normal((v, args.dim), dtype=np.float32) * 0.1
        tokens = rng.integers(0, v, args.tokens)
        target = rng.integers(0, v, args.tokens)
        buf = np.empty((args.tokens, v), np.float32)
        fns = {"numpy": numpy_loss_and_grad,
               "xentfast": lambda x, t: xentfast.cross_entropy_and_grad(x, t, out=x)}
        best = {k: 1e9 for k in fns}
        for _ in range(args.rounds):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                step(emb, w, tokens, target, fn, buf)
                best[k] = min(best[k], time.perf_counter() - t0)
        print(f"V={v} N={args.tokens} D={args.dim}: numpy {best['numpy'] * 1e3:.1f} ms, "
              f"xentfast {best['xentfast'] * 1e3:.1f} ms, step {best['numpy'] / best['xentfast']:.2f}x "
              f"faster")


if __name__ == "__main__":
    main()
