"""What the examples share: the digits data, a NumPy MLP, Adam, a training loop.

Nothing here is specific to xentfast except one line in :func:`train_step`: the loss
and its gradient with respect to the logits come from a single fused call,
``xentfast.cross_entropy_and_grad``, which writes the gradient into a buffer that is
allocated once and reused every step.  Everything else is plain NumPy, written to be
read (and copied).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

import xentfast

Floats = NDArray[np.float32]
Ints = NDArray[np.int64]


# --------------------------------------------------------------------------------------
# data


@dataclass
class Split:
    """Inputs (one row per example) and integer class labels."""

    x: Floats
    y: Ints


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    n_classes: int


def load_digits(seed: int = 0, val_fraction: float = 0.2,
                test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes; no
    download), shuffled, split into train/validation/test, and standardised with the
    training split's mean and standard deviation."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(test_fraction * len(y))
    n_val = round(val_fraction * len(y))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std < 1e-3] = 1.0  # border pixels that are always 0
    x = (x - mean) / std

    def split(index: NDArray[np.intp]) -> Split:
        return Split(np.ascontiguousarray(x[index]), y[index])

    return Dataset(split(train), split(val), split(test), n_classes=10)


# --------------------------------------------------------------------------------------
# model and optimiser


class MLP:
    """Dense layers with ReLU between them, mapping inputs to logits.

    ``forward`` keeps each layer's input for ``backward``, which turns the gradient of
    the loss with respect to the logits into gradients for every parameter (and for
    the input, which a model with an embedding in front needs).
    """

    def __init__(self, sizes: Sequence[int], rng: np.random.Generator) -> None:
        self.weights: list[Floats] = []
        self.biases: list[Floats] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            scale = math.sqrt(2.0 / fan_in)  # He initialisation, for ReLU
            self.weights.append((rng.standard_normal((fan_in, fan_out)) * scale)
                                .astype(np.float32))
            self.biases.append(np.zeros(fan_out, dtype=np.float32))
        self._inputs: list[Floats] = []

    @property
    def params(self) -> list[Floats]:
        return self.weights + self.biases

    def forward(self, x: Floats) -> Floats:
        self._inputs = []
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            self._inputs.append(h)
            h = h @ w
            h += b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h

    def backward(self, dlogits: Floats) -> tuple[list[Floats], Floats]:
        """Gradients of the parameters (in the order of :attr:`params`) and of the
        input, from the gradient of the loss with respect to the logits."""
        dweights: list[Floats] = []
        dbiases: list[Floats] = []
        dh = dlogits
        for i in reversed(range(len(self.weights))):
            a = self._inputs[i]
            dweights.append(a.T @ dh)
            dbiases.append(dh.sum(axis=0))
            dh = dh @ self.weights[i].T
            if i > 0:
                dh *= a > 0  # a is the ReLU's output: its derivative is a > 0
        return dweights[::-1] + dbiases[::-1], dh

    def snapshot(self) -> list[Floats]:
        return [p.copy() for p in self.params]

    def restore(self, saved: Sequence[Floats]) -> None:
        for p, s in zip(self.params, saved):
            p[...] = s


class Adam:
    """Adam (Kingma & Ba 2015), updating the parameters in place."""

    def __init__(self, params: Sequence[Floats], lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, grads: Sequence[Floats]) -> None:
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        step = self.lr * math.sqrt(c2) / c1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * (g * g)
            p -= step * m / (np.sqrt(v) + self.eps)


# --------------------------------------------------------------------------------------
# loss, metrics, training


def loss_and_grad(logits: Floats, y: Ints, out: Floats,
                  label_smoothing: float = 0.0) -> tuple[float, Floats]:
    """Mean cross-entropy of a batch and its gradient with respect to the logits,
    written into `out` (one fused pass: no softmax or one-hot array is built)."""
    return xentfast.cross_entropy_and_grad(logits, y, label_smoothing=label_smoothing,
                                           out=out)


@dataclass
class Metrics:
    """Cross-entropy (nats per example, never smoothed), accuracy, perplexity."""

    loss: float
    accuracy: float
    perplexity: float  # e^loss: how many equally likely classes the model hesitates between


def evaluate(model: MLP, data: Split) -> Metrics:
    # One pass over the logits gives loss, accuracy and perplexity together.
    result = xentfast.evaluate(model.forward(data.x), data.y)
    return Metrics(result.mean_loss, result.accuracy, result.perplexity)


@dataclass
class History:
    train: list[Metrics] = field(default_factory=list)
    val: list[Metrics] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; its weights are the ones kept
    stopped_early: bool = False


def fit(model: MLP, data: Dataset, *, epochs: int = 200, batch_size: int = 32,
        lr: float = 1e-3, patience: int = 10, label_smoothing: float = 0.0,
        seed: int = 0, log: Callable[[str], None] | None = print) -> History:
    """Minibatch Adam on ``data.train``; after every epoch, evaluate train and
    validation splits and keep the weights of the epoch with the lowest validation
    loss.  Stop once it has not improved for `patience` epochs: validation loss can
    rise while training loss still falls, and that is overfitting, not progress."""
    rng = np.random.default_rng(seed)
    optimiser = Adam(model.params, lr=lr)
    n = len(data.train.y)
    # The gradient buffer is allocated once: every step writes into (a prefix of) it.
    grad_buf = np.empty((batch_size, data.n_classes), dtype=np.float32)
    history = History()
    best_loss, best_params, waited = math.inf, model.snapshot(), 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            logits = model.forward(data.train.x[batch])
            _, dlogits = loss_and_grad(logits, data.train.y[batch], grad_buf[:len(batch)],
                                       label_smoothing)
            grads, _ = model.backward(dlogits)
            optimiser.step(grads)
        train, val = evaluate(model, data.train), evaluate(model, data.val)
        history.train.append(train)
        history.val.append(val)
        improved = val.loss < best_loss
        if log is not None:
            log(f"epoch {epoch:3d}  train loss {train.loss:.4f} acc {train.accuracy:.3f} "
                f"perplexity {train.perplexity:.3f} | val loss {val.loss:.4f} "
                f"acc {val.accuracy:.3f} perplexity {val.perplexity:.3f}"
                + ("  *" if improved else ""))
        if improved:
            best_loss, best_params, waited = val.loss, model.snapshot(), 0
            history.best_epoch = epoch
        else:
            waited += 1
            if waited >= patience:
                history.stopped_early = True
                break
    model.restore(best_params)
    if log is not None:
        why = (f"early stop: validation loss has not improved for {patience} epochs"
               if history.stopped_early else f"finished {len(history.val)} epochs")
        best = history.val[history.best_epoch - 1] if history.best_epoch else None
        if best is not None:
            log(f"{why}; keeping epoch {history.best_epoch} (val loss {best.loss:.4f}, "
                f"accuracy {best.accuracy:.3f})")
    return history
