"""The peers: NumPy, PyTorch eager, torch.compile, JAX and scikit-learn, and
xentfast inside PyTorch (registered after xentfast's own rows)."""
from __future__ import annotations

import inspect

import numpy as np

from .problem import Problem, Unavailable
from .registry import Prepared, _loss_grad, _register


def numpy_cross_entropy_and_grad(x, target):
    """Mean softmax cross-entropy and its gradient, as NumPy users write it.

    The straightforward, stable version: subtract the row max, exponentiate,
    sum, take the log, gather the target's log-probability; the gradient is
    ``(softmax - onehot) / N``.  Computes in `x`'s dtype; several N×C
    temporaries.
    """
    n = x.shape[0]
    rows = np.arange(n)
    shifted = x - x.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    log_prob_target = shifted[rows, target] - np.log(sum_exp[:, 0])
    loss = -log_prob_target.mean()
    grad = exp / sum_exp
    grad[rows, target] -= 1
    grad /= n
    return float(loss), grad


@_register("numpy", "NumPy (straightforward)",
           note="NumPy (and so the plain copy bound) runs on one thread")
def _numpy(p: Problem) -> Prepared:
    return Prepared(lambda: numpy_cross_entropy_and_grad(p.x, p.target), result=_loss_grad)


def _torch_backward(p: Problem, loss_fn, target=None, overwrites=False) -> Prepared:
    """Time ``loss_fn(leaf, target).backward()`` on a leaf sharing x's memory
    (`target`: p.target by default).

    With `overwrites` (a loss that may write over its input), the leaf shares
    a copy of x instead, restored outside the timed region before every run.
    """
    import torch

    torch.set_num_threads(p.threads)
    work = np.empty_like(p.x) if overwrites and not p.may_overwrite else None
    leaf = torch.from_numpy(p.x if work is None else work).requires_grad_()
    target = torch.from_numpy(p.target if target is None else target)

    def run():
        loss = loss_fn(leaf, target)
        loss.backward()
        return loss

    def clear():
        leaf.grad = None  # each run allocates its gradient, as in training
        if work is not None:
            np.copyto(work, p.x)

    return Prepared(run, before=clear,
                    result=lambda loss: (loss.item(), leaf.grad.numpy()))


@_register("torch-eager", "PyTorch eager (cross_entropy + backward)", requires=["torch"])
def _torch_eager(p: Problem) -> Prepared:
    import torch.nn.functional as F

    return _torch_backward(p, F.cross_entropy)


@_register("torch-xentfast", "PyTorch + xentfast (xentfast.torch.cross_entropy + backward)",
           kind="adapter", requires=["torch"])
def _torch_xentfast(p: Problem) -> Prepared:
    """The gain inside PyTorch code: the adapter in place of F.cross_entropy."""
    import xentfast.torch

    return _torch_backward(p, xentfast.torch.cross_entropy)


@_register("torch-xentfast-inplace",
           "PyTorch + xentfast (xentfast.torch.cross_entropy, inplace_backward=True)",
           kind="adapter", requires=["torch"],
           note="inplace_backward=True lets the adapter keep its gradient in the logits' "
                "memory; that row's logits are a copy, restored before each run, handed over "
                "as the output of a layer that costs nothing (the adapter refuses leaves)")
def _torch_xentfast_inplace(p: Problem) -> Prepared:
    """The adapter keeping the gradient in the logits' memory (where it has the keyword)."""
    import xentfast.torch

    if "inplace_backward" not in inspect.signature(xentfast.torch.cross_entropy).parameters:
        raise Unavailable("this xentfast.torch has no inplace_backward")
    return _torch_inplace_backward(
        p, lambda x, t: xentfast.torch.cross_entropy(x, t, inplace_backward=True))


def _torch_inplace_backward(p: Problem, loss_fn) -> Prepared:
    """Time ``loss_fn(logits, target).backward()`` where the logits are the output
    of a stand-in last layer (in-place backward takes no leaf): its forward hands
    over a copy of x, its backward keeps the gradient it receives and passes
    nothing on, so the row times the loss and its gradient alone."""
    import torch

    torch.set_num_threads(p.threads)
    work = np.empty_like(p.x) if not p.may_overwrite else None
    buf = torch.from_numpy(p.x if work is None else work)
    anchor = torch.zeros((), requires_grad=True)
    received = {}

    class Layer(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return buf.detach()  # shares the buffer's memory

        @staticmethod
        def backward(ctx, grad):
            received["grad"] = grad
            return None

    target = torch.from_numpy(p.target)

    def run():
        loss = loss_fn(Layer.apply(anchor), target)
        loss.backward()
        return loss

    def restore():
        received.clear()
        if work is not None:
            np.copyto(work, p.x)

    return Prepared(run, before=restore,
                    result=lambda loss: (loss.item(), received["grad"].detach().numpy()))


@_register("torch-compile", "torch.compile (cross_entropy + backward)", requires=["torch"])
def _torch_compile(p: Problem) -> Prepared:
    import torch
    import torch.nn.functional as F

    # A fresh start per problem: dynamo caches compiled graphs per code
    # object and falls back to eager after a few shapes (--all runs many).
    torch.compiler.reset()
    compiled = torch.compile(lambda x, t: F.cross_entropy(x, t), dynamic=False)
    prepared = _torch_backward(p, compiled)  # compiled during the first warm-up run
    prepared.warmup = 5  # its next few calls can be 100 times slower than the rest
    return prepared


@_register("jax-jit", "JAX jit(value_and_grad)", requires=["jax"],
           note="JAX (XLA) picks its own thread count")
def _jax_jit(p: Problem) -> Prepared:
    import jax

    if p.x.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def mean_cross_entropy(x, t):
        picked = jnp.take_along_axis(x, t[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(x, axis=1) - picked)

    step = jax.jit(jax.value_and_grad(mean_cross_entropy))
    x = jax.device_put(p.x)
    t = jax.device_put(p.target.astype(np.int32))
    return Prepared(lambda: jax.block_until_ready(step(x, t)),
                    result=lambda v: (float(v[0]), np.asarray(v[1])))


@_register("sklearn", "scikit-learn HalfMultinomialLoss", requires=["sklearn"])
def _sklearn(p: Problem) -> Prepared:
    try:  # a private API: it may move or change
        from sklearn._loss.loss import HalfMultinomialLoss
    except ImportError as exc:
        raise Unavailable(f"sklearn._loss.loss.HalfMultinomialLoss: {exc}") from None
    loss = HalfMultinomialLoss(n_classes=p.c)
    y_true = p.target.astype(p.x.dtype)  # it wants the raw predictions' dtype

    # Its per-row loss is the cross-entropy, log-sum-exp minus the target's
    # logit, and its gradient softmax - onehot per row: mean and / N.
    def result(value):
        row_loss, grad = value
        return float(np.mean(row_loss, dtype=np.float64)), grad / p.n

    return Prepared(
        lambda: loss.loss_gradient(y_true=y_true, raw_prediction=p.x, n_threads=p.threads),
        result=result)


# PyTorch's own options, for the --options table.


@_register("torch-ls", "PyTorch eager, label_smoothing=0.1", requires=["torch"],
           group="options", compare="opt-ls")
def _torch_label_smoothing(p: Problem) -> Prepared:
    import torch.nn.functional as F

    return _torch_backward(p, lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1))


@_register("torch-weight", "PyTorch eager, weight= (class weights)", requires=["torch"],
           group="options", compare="opt-weight", inputs=["class_weight"])
def _torch_class_weight(p: Problem) -> Prepared:
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(p.extra("class_weight"))
    return _torch_backward(p, lambda x, t: F.cross_entropy(x, t, weight=weight))


@_register("torch-prob", "PyTorch eager, probability targets", requires=["torch"],
           group="options", compare="opt-prob", inputs=["prob_target"])
def _torch_probabilities(p: Problem) -> Prepared:
    import torch.nn.functional as F

    return _torch_backward(p, F.cross_entropy, target=p.extra("prob_target"))

