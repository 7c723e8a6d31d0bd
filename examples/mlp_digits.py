"""Train a NumPy MLP on scikit-learn's handwritten digits with xentfast as the loss.

The data ship with scikit-learn (no download).  Every step computes the mean
cross-entropy of a minibatch *and* its gradient with respect to the logits in one
fused call, ``xentfast.cross_entropy_and_grad(logits, y, out=grad_buf)``, into a
gradient buffer allocated once (see ``_mlp.py``).  After each epoch it prints the
training and validation loss, accuracy and perplexity, stops early once the
validation loss has stopped improving, keeps the best epoch's weights, and (when
matplotlib is installed) saves a plot of both loss curves.

    python examples/mlp_digits.py                  # about 2 s
    python examples/mlp_digits.py --epochs 5 --plot /tmp/curves.png
"""
from __future__ import annotations

import argparse
import os
import time

# Small matrices (minibatches of 32): BLAS threads only add synchronisation, and on a
# busy machine their spin-waiting makes each product many times slower (20 epochs on
# 2 cores: 0.6-1.1 s with one OpenBLAS thread, 3.0-4.0 s with two; `python
# examples/mlp_digits.py --epochs 20 --patience 1000 --no-plot`, OPENBLAS_NUM_THREADS=1
# or 2).  xentfast's own calls here are far too small to open a parallel region.
# Set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import xentfast  # noqa: E402
from _mlp import MLP, History, evaluate, fit, load_digits  # noqa: E402


def save_plot(history: History, path: str) -> bool:
    """Plot training and validation loss per epoch; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history.val) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [m.loss for m in history.train], label="train")
    ax.plot(epochs, [m.loss for m in history.val], label="validation")
    ax.axvline(history.best_epoch, color="grey", linestyle=":", label="best epoch (kept)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_yscale("log")
    ax.set_title("NumPy MLP on digits, loss from xentfast")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200, help="at most this many")
    parser.add_argument("--patience", type=int, default=10,
                        help="stop after this many epochs without a better validation loss")
    parser.add_argument("--hidden", type=int, default=128,
                        help="width of the hidden layer (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="examples per training step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam's learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and the data split "
                             "(default: %(default)s)")
    parser.add_argument("--plot", default="mlp_digits_loss.png",
                        help="where to save the loss curves (default: %(default)s in the "
                             "current directory; needs matplotlib)")
    parser.add_argument("--no-plot", action="store_true", help="save no plot")
    args = parser.parse_args(argv)

    data = load_digits(seed=args.seed)
    print(f"digits: {len(data.train.y)} train / {len(data.val.y)} validation / "
          f"{len(data.test.y)} test images, {data.train.x.shape[1]} pixels, "
          f"{data.n_classes} classes; xentfast {xentfast.__version__} "
          f"({xentfast.backend()})")
    model = MLP([data.train.x.shape[1], args.hidden, data.n_classes],
                np.random.default_rng(args.seed))
    start = time.perf_counter()
    history = fit(model, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  patience=args.patience, seed=args.seed)
    elapsed = time.perf_counter() - start
    test = evaluate(model, data.test)
    print(f"test: loss {test.loss:.4f}  accuracy {test.accuracy:.3f}  "
          f"perplexity {test.perplexity:.3f}  ({elapsed:.1f} s of training)")
    if not args.no_plot:
        if save_plot(history, args.plot):
            print(f"saved the loss curves to {args.plot}")
        else:
            print("matplotlib is not installed: no plot")


if __name__ == "__main__":
    main()
