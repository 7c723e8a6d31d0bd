"""A tiny PyTorch training call: xentfast.torch.cross_entropy against F.cross_entropy.

    python tools/torch_small_call.py

64 rows of 10 classes, loss + backward, one torch thread, process time, best of 100
rounds of 200 calls, the two functions interleaved: once on a leaf tensor and once
on the output of an ``nn.Linear`` (where autograd carries the gradient on).  At this
size the call is all overhead, so this measures the adapter's per-call cost.
"""
import time

import torch
import torch.nn.functional as F

import xentfast.torch as xt


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 10)
    x, t = torch.randn(64, 32), torch.randint(0, 10, (64,))
    leaf = torch.randn(64, 10, requires_grad=True)
    fns = (("F.cross_entropy", F.cross_entropy), ("xentfast.torch", xt.cross_entropy))
    for after_linear in (False, True):
        def step(fn):
            fn(lin(x) if after_linear else leaf, t).backward()
        for _, fn in fns:
            for _ in range(200):
                step(fn)
        best = {name: float("inf") for name, _ in fns}
        for _ in range(100):
            for name, fn in fns:
                t0 = time.process_time()
                for _ in range(200):
                    step(fn)
                best[name] = min(best[name], (time.process_time() - t0) / 200)
        f, x_ = best["F.cross_entropy"], best["xentfast.torch"]
        print(f"{'after nn.Linear' if after_linear else 'on a leaf':16s} F {f * 1e6:6.1f} us   "
              f"xentfast {x_ * 1e6:6.1f} us   ratio {x_ / f:.2f}")


if __name__ == "__main__":
    main()
