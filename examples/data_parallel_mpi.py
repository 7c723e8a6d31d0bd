"""Data-parallel training of a linear softmax classifier over MPI, with uneven padding.

Each rank holds its own rows (a different number per rank) and its own share of
padding rows, whose target is ``ignore_index`` (-100): the ranks count
different numbers of tokens, as batches of sequences of different lengths do.
Every step each rank calls

    loss, dlogits = xentfast.distributed.cross_entropy_and_grad(
        logits, target, data_comm=comm)

which returns the mean loss over the counted rows of *all* ranks and this
rank's slice of its gradient; the weight gradient ``X.T @ dlogits`` is then
summed over the ranks (one ``Allreduce``) and every rank takes the same step.

Rank 0 prints three loss curves on the same data:

* ``distributed``: the run above;
* ``single-process``: the same training on rank 0 with
  ``xentfast.cross_entropy_and_grad`` on the ranks' rows concatenated;
* ``naive``: each rank's own mean loss and gradient, averaged over the ranks,
  which weights a rank's tokens by 1 / (its count) instead of 1 / (the total):
  wrong as soon as the ranks count different numbers of tokens.

and the largest difference of each from the single-process curve: the
distributed one matches it to float32 rounding, the naive one does not.

    mpiexec -n 2 python examples/data_parallel_mpi.py              # about 1 s
    mpiexec -n 4 python examples/data_parallel_mpi.py --steps 50
    mpiexec -n 2 python -m mpi4py examples/data_parallel_mpi.py    # an exception aborts all ranks

Needs mpi4py and an MPI (``pip install ".[mpi]"`` brings mpi4py and mpich's
``mpiexec``).
"""
from __future__ import annotations

import argparse
import os
from typing import Callable

# small products: BLAS threads only add synchronisation (set before NumPy loads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import xentfast  # noqa: E402
import xentfast.distributed as xd  # noqa: E402

FEATURES, CLASSES, IGNORE = 64, 10, -100


def rank_data(rank: int, size: int, rows_per_rank: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's rows: a shared hidden linear model labels them; rank r has
    (1 + r / 2) * rows_per_rank rows, of which a fraction from 10 % to 70 %
    (rising with the rank) are padding."""
    true_w = np.random.default_rng(seed).standard_normal((FEATURES, CLASSES))
    rng = np.random.default_rng([seed, rank])
    n = int(rows_per_rank * (1 + rank / 2))
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    y = (x @ true_w + rng.standard_normal((n, CLASSES))).argmax(axis=1)
    padding = 0.1 + 0.6 * rank / max(1, size - 1)
    y[rng.random(n) < padding] = IGNORE
    return x, y


LossAndGrad = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


def train(x: np.ndarray, y: np.ndarray, steps: int, lr: float, loss_and_grad: LossAndGrad,
          sum_over_ranks: Callable[[np.ndarray], None]) -> np.ndarray:
    """Gradient descent on W (FEATURES x CLASSES) from zero; the loss before
    each step.  `loss_and_grad(logits, y)` gives (loss, d loss / d logits),
    `sum_over_ranks` sums the weight gradient in place."""
    w = np.zeros((FEATURES, CLASSES), np.float32)
    curve = []
    for _ in range(steps):
        loss, dlogits = loss_and_grad(x @ w, y)
        grad_w = x.T @ dlogits
        sum_over_ranks(grad_w)
        w -= lr * grad_w
        curve.append(loss)
    return np.array(curve)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rows-per-rank", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--print-every", type=int, default=10)
    args = parser.parse_args(argv)

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    x, y = rank_data(rank, size, args.rows_per_rank, args.seed)

    def allreduce(a: np.ndarray) -> None:
        comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM)

    # the global mean: the loss and dlogits are those of the whole batch
    distributed = train(x, y, args.steps, args.lr,
                        lambda z, t: xd.cross_entropy_and_grad(z, t, data_comm=comm), allreduce)

    # the naive average: each rank's own mean, then the mean over the ranks
    def naive_loss_and_grad(z: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        loss, dlogits = xentfast.cross_entropy_and_grad(z, t)
        total = np.array([loss])
        allreduce(total)
        return float(total[0]) / size, dlogits / size

    naive = train(x, y, args.steps, args.lr, naive_loss_and_grad, allreduce)

    gathered = comm.gather((x, y), root=0)
    if rank != 0 or gathered is None:
        return
    pieces: list[tuple[np.ndarray, np.ndarray]] = gathered
    counted = [int(np.sum(t != IGNORE)) for _, t in pieces]
    x_all = np.concatenate([p[0] for p in pieces])
    y_all = np.concatenate([p[1] for p in pieces])
    single = train(x_all, y_all, args.steps, args.lr, xentfast.cross_entropy_and_grad,
                   lambda a: None)

    print(f"{size} ranks; rows per rank {[len(t) for _, t in pieces]}, counted (not padding) "
          f"{counted}; {args.steps} steps of lr {args.lr}")
    print(f"{'step':>5} {'single-process':>15} {'distributed':>12} {'naive average':>14}")
    for step in range(0, args.steps, max(1, args.print_every)):
        print(f"{step:5d} {single[step]:15.6f} {distributed[step]:12.6f} {naive[step]:14.6f}")
    last = args.steps - 1
    print(f"{last:5d} {single[last]:15.6f} {distributed[last]:12.6f} {naive[last]:14.6f}")
    print(f"max |distributed - single-process| = {np.max(np.abs(distributed - single)):.3e}")
    print(f"max |naive - single-process| = {np.max(np.abs(naive - single)):.3e}")


if __name__ == "__main__":
    main()
