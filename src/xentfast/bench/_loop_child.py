"""One training loop timed in a fresh process (``--loop``; run by :mod:`.loop`).

This file is run with ``runpy.run_path``, never imported as part of the
package: the thread settings under test are environment variables that
NumPy's BLAS, the OpenMP runtime and PyTorch read when they load, so the
process loads nothing but the loop's own libraries (the NumPy yardstick does
not even import xentfast).  Hence it repeats, on purpose, the softmax
gradient of :func:`xentfast.bench.numpy_cross_entropy_and_grad`.

Argument: a JSON spec (``loop``, ``rows``, ``features``, ``classes``,
``steps``, ``learning_rate``, ``repeat``, ``budget``, ``max_runs``).  Prints
one line, :data:`TAG` followed by JSON: ``times`` (seconds per whole loop of
``steps`` steps, after one untimed loop), ``final_loss`` (the last step's
loss) or ``error``.
"""
import json
import sys
import time

TAG = "xentfast-bench-loop: "
TORCH_HINT = "PyTorch is optional; any CPU build works"


def _data(spec):
    """The README's problem: Gaussian features, labels of a hidden linear model."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((spec["rows"], spec["features"])).astype(np.float32)
    y = (X @ rng.standard_normal((spec["features"], spec["classes"]))).argmax(axis=1)
    return X, y


def numpy_xentfast(spec):
    """The README's NumPy loop: xentfast's loss and gradient into a reused buffer."""
    import numpy as np

    import xentfast

    X, y = _data(spec)
    steps, lr = spec["steps"], spec["learning_rate"]
    grad_buf = np.empty((spec["rows"], spec["classes"]), np.float32)

    def run():
        W = np.zeros((spec["features"], spec["classes"]), np.float32)
        for _ in range(steps):
            logits = X @ W
            loss, dlogits = xentfast.cross_entropy_and_grad(logits, y, out=grad_buf)
            W -= lr * (X.T @ dlogits)
        return float(loss)
    return run


def numpy_softmax(spec):
    """The same loop with the loss and gradient in plain NumPy (the yardstick)."""
    import numpy as np

    X, y = _data(spec)
    steps, lr = spec["steps"], spec["learning_rate"]
    rows = np.arange(spec["rows"])

    def loss_and_grad(logits):
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(sum_exp[:, 0]) - shifted[rows, y])
        grad = exp / sum_exp
        grad[rows, y] -= 1
        grad /= len(rows)
        return loss, grad

    def run():
        W = np.zeros((spec["features"], spec["classes"]), np.float32)
        for _ in range(steps):
            logits = X @ W
            loss, dlogits = loss_and_grad(logits)
            W -= lr * (X.T @ dlogits)
        return float(loss)
    return run


def _torch_loop(spec, loss_fn):
    """`loss_fn(logits, y).backward()` on ``torch.mm(X, W)``, then a manual SGD step."""
    import torch

    X, y = _data(spec)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    steps, lr = spec["steps"], spec["learning_rate"]

    def run():
        W = torch.zeros(spec["features"], spec["classes"], requires_grad=True)
        for _ in range(steps):
            logits = torch.mm(Xt, W)
            loss = loss_fn(logits, yt)
            loss.backward()
            with torch.no_grad():
                W -= lr * W.grad
            W.grad = None
        return loss.item()
    return run


def torch_xentfast(spec):
    """The PyTorch loop with xentfast's adapter."""
    import xentfast.torch

    return _torch_loop(spec, xentfast.torch.cross_entropy)


def torch_eager(spec):
    """The PyTorch loop with PyTorch's own cross-entropy (the yardstick)."""
    import torch.nn.functional as F

    return _torch_loop(spec, F.cross_entropy)


LOOPS = {
    "numpy-xentfast": numpy_xentfast,
    "numpy-softmax": numpy_softmax,
    "torch-xentfast": torch_xentfast,
    "torch-eager": torch_eager,
}


def _time(run, spec):
    """Seconds per run: one untimed run, then at least `repeat` runs (2 for a
    loop slower than 1 s, 1 for slower than 5 s, as the bench's other tables)
    and more until `budget` seconds of timed runs (at most `max_runs`)."""
    final_loss = run()
    times = []
    while True:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        least = spec["repeat"] if times[0] < 1.0 else 2 if times[0] < 5.0 else 1
        if len(times) >= spec["max_runs"] or (len(times) >= least
                                              and sum(times) >= spec["budget"]):
            return times, final_loss


def child(spec_json):
    spec = json.loads(spec_json)

    def report(**fields):
        print(TAG + json.dumps(fields), flush=True)
        return 0

    try:
        run = LOOPS[spec["loop"]](spec)
    except ImportError as exc:
        hint = f". {TORCH_HINT}" if exc.name == "torch" else ""
        return report(error=f"{exc.name} not installed{hint}" if exc.name else str(exc))
    try:
        times, final_loss = _time(run, spec)
    except Exception as exc:
        return report(error=f"{type(exc).__name__}: {exc}")
    return report(times=times, final_loss=final_loss)


if __name__ == "__main__":
    sys.exit(child(sys.argv[1]))
