"""PyTorch adapter of the fused linear + cross-entropy (a language-model head).

:func:`linear_cross_entropy` and :class:`LinearCrossEntropyLoss` mirror
``torch.nn.functional.linear_cross_entropy`` and ``torch.nn.LinearCrossEntropyLoss``
(PyTorch 2.13) on CPU float32/float64 tensors, plus xentfast's options
(``sample_weight``, ``z_loss``, ``softcap``, ``temperature``, ``chunk_size``,
``num_threads``), and take hidden states of any leading shape, ``(B, T, D)``
included (the classes are the rows of ``linear_weight``; the target has the
input's shape without D).

How it runs.  The forward pass hands the tensors' memory to
:func:`xentfast.linear_cross_entropy_and_grad` as NumPy views (no copy; a
transposed or sliced weight is read as it is) and, when a gradient is needed,
computes the loss and all three gradients in the same chunked pass — never the
N×V logits — keeping the gradients for the backward pass, which only scales
them by the upstream scalar (or does nothing for ``loss.backward()``).  Under
``torch.no_grad()``, or when nothing requires a gradient, only the loss is
computed (one GEMM).  With ``reduction="none"`` the weight's gradient depends on
every row's upstream value, so the forward pass computes the loss alone and the
backward pass the gradients, for that upstream gradient (one more GEMM in all).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from numpy.typing import NDArray
from torch.autograd.function import once_differentiable

import xentfast

from . import _torch_ops as _ops

__all__ = ["LinearCrossEntropyLoss", "linear_cross_entropy"]



def _numpy(t: torch.Tensor, name: str) -> NDArray[Any]:
    """A NumPy view of a CPU tensor's memory (no copy, strides kept)."""
    return _ops.cpu_numpy(t, name, "torch.nn.functional.linear_cross_entropy")


_tensor = _ops.tensor_from


class _LinearCrossEntropyFunction(torch.autograd.Function):
    """Loss and all gradients in the forward call; the backward only scales."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, linear_weight: torch.Tensor,
                linear_bias: torch.Tensor | None, target: NDArray[Any],
                reduction: str, options: dict[str, Any]) -> torch.Tensor:
        h = _numpy(input, "input")
        w = _numpy(linear_weight, "linear_weight")
        b = None if linear_bias is None else _numpy(linear_bias, "linear_bias")
        ctx.args = (target, reduction, options)
        ctx.has_bias = linear_bias is not None
        ctx.save_for_backward(input, linear_weight, linear_bias)
        if reduction == "none":
            ctx.grads = None  # computed in backward, for the upstream values
            loss = xentfast.linear_cross_entropy(h, w, target, linear_bias=b,
                                                 reduction=reduction, **options)
            return _tensor(loss, input.dtype)
        loss, gh, gw, gb = xentfast.linear_cross_entropy_and_grad(
            h, w, target, linear_bias=b, reduction=reduction, **options)
        ctx.grads = (torch.from_numpy(gh), torch.from_numpy(gw),
                     None if gb is None else torch.from_numpy(gb))
        return _tensor(loss, input.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor) -> Any:
        grads = ctx.grads
        target, reduction, options = ctx.args
        if grads is None:
            # reduction="none", or a second backward through a retained graph
            input, linear_weight, linear_bias = ctx.saved_tensors
            upstream = _numpy(grad_loss, "grad_output")
            _, gh, gw, gb = xentfast.linear_cross_entropy_and_grad(
                _numpy(input, "input"), _numpy(linear_weight, "linear_weight"), target,
                linear_bias=None if linear_bias is None else _numpy(linear_bias, "linear_bias"),
                reduction=reduction,
                grad_output=upstream if reduction == "none" else float(upstream), **options)
            return (torch.from_numpy(gh), torch.from_numpy(gw),
                    None if gb is None else torch.from_numpy(gb), None, None, None)
        ctx.grads = None  # hand the buffers over: no reference stays in the graph
        scale = float(grad_loss)
        if scale != 1.0:
            for g in grads:
                if g is not None:
                    g.mul_(scale)
        return grads + (None, None, None)


_apply: Callable[..., Any] = _LinearCrossEntropyFunction.apply


def linear_cross_entropy(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                         *, linear_bias: torch.Tensor | None = None,
                         weight: torch.Tensor | None = None, reduction: str = "mean",
                         ignore_index: int | None = None, label_smoothing: float = 0.0,
                         sample_weight: torch.Tensor | None = None, z_loss: float = 0.0,
                         softcap: float | None = None, temperature: float = 1.0,
                         chunk_size: int | None = None,
                         num_threads: int | None = None) -> torch.Tensor:
    """``torch.nn.functional.linear_cross_entropy`` by xentfast, differentiable.

    ``cross_entropy(linear(input, linear_weight, linear_bias), target)`` without
    the N×V logits, on CPU float32/float64 tensors.

    Parameters
    ----------
    input : Tensor, (..., D)
        Hidden states; any leading shape (``(B, T, D)`` included).
    linear_weight : Tensor, (V, D)
        The output layer's weight (any strides, e.g. a tied embedding's).
    target : Tensor of int64, input's shape without D
        Class indices in ``[0, V)`` or `ignore_index`.
    linear_bias : Tensor (V,), optional
    weight, reduction, label_smoothing
        As in PyTorch.
    ignore_index : int, optional
        None means -100, as in PyTorch.
    sample_weight, z_loss, softcap, temperature, chunk_size, num_threads
        xentfast's options; see :func:`xentfast.linear_cross_entropy`.

    Returns
    -------
    Tensor
        0-d for ``"mean"``/``"sum"``, the target's shape for ``"none"``.

    Examples
    --------
    >>> import torch
    >>> from xentfast._torch_linear import linear_cross_entropy
    >>> h = torch.randn(2, 5, 8, requires_grad=True)
    >>> w = torch.randn(100, 8, requires_grad=True)
    >>> loss = linear_cross_entropy(h, w, torch.randint(0, 100, (2, 5)))
    >>> loss.backward()
    >>> h.grad.shape, w.grad.shape
    (torch.Size([2, 5, 8]), torch.Size([100, 8]))
    """
    for name, t in (("input", input), ("linear_weight", linear_weight), ("target", target)):
        _ops.check_tensor(t, name)
    if input.dtype not in _ops.KERNEL_DTYPES:
        raise TypeError(f"input must be a float32 or float64 tensor, got {input.dtype}")
    _ops.check_reduction(reduction)
    for name, extra in (("target", target), ("weight", weight),
                        ("sample_weight", sample_weight)):
        if isinstance(extra, torch.Tensor) and extra.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"{name} requires grad, but xentfast differentiates only with "
                             f"respect to input, linear_weight and linear_bias: pass "
                             f"{name}.detach()")
    options: dict[str, Any] = dict(
        weight=None if weight is None else _numpy(weight, "weight"),
        sample_weight=None if sample_weight is None else _numpy(sample_weight, "sample_weight"),
        ignore_index=-100 if ignore_index is None else ignore_index,
        label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
        temperature=temperature, chunk_size=chunk_size, num_threads=num_threads)
    target_np = _numpy(target, "target")
    needs_grad = torch.is_grad_enabled() and (
        input.requires_grad or linear_weight.requires_grad
        or (linear_bias is not None and linear_bias.requires_grad))
    if needs_grad:
        result: torch.Tensor = _apply(input, linear_weight, linear_bias, target_np, reduction,
                                      options)
        return result
    loss = xentfast.linear_cross_entropy(
        _numpy(input, "input"), _numpy(linear_weight, "linear_weight"), target_np,
        linear_bias=None if linear_bias is None else _numpy(linear_bias, "linear_bias"),
        reduction=reduction, **options)
    return _tensor(loss, input.dtype)


class LinearCrossEntropyLoss(torch.nn.Module):
    """``torch.nn.LinearCrossEntropyLoss`` by xentfast: an output layer
    (``self.linear``, a ``torch.nn.Linear(in_features, num_classes)``) and its
    cross-entropy, computed without the N×V logits.

    PyTorch's arguments (``out_features`` for K-dimensional losses excepted) plus
    xentfast's options; ``forward(input, target, sample_weight=None)``.

    Examples
    --------
    >>> import torch
    >>> from xentfast._torch_linear import LinearCrossEntropyLoss
    >>> head = LinearCrossEntropyLoss(16, 1000, bias=True)
    >>> loss = head(torch.randn(4, 7, 16), torch.randint(0, 1000, (4, 7)))
    >>> loss.backward()
    >>> head.linear.weight.grad.shape
    torch.Size([1000, 16])
    """

    weight: torch.Tensor | None

    def __init__(self, in_features: int, num_classes: int, *, bias: bool = False,
                 device: Any = None, dtype: torch.dtype | None = None, reduction: str = "mean",
                 weight: torch.Tensor | None = None, ignore_index: int | None = None,
                 label_smoothing: float = 0.0, z_loss: float = 0.0,
                 softcap: float | None = None, temperature: float = 1.0,
                 chunk_size: int | None = None, num_threads: int | None = None) -> None:
        super().__init__()
        _ops.check_reduction(reduction)
        if weight is not None and tuple(weight.shape) != (num_classes,):
            raise ValueError(f"weight must have shape ({num_classes},), got {tuple(weight.shape)}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.num_classes = num_classes
        self.linear = torch.nn.Linear(in_features, num_classes, bias=bias, device=device,
                                      dtype=dtype)
        self.register_buffer("weight", weight)
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.temperature = temperature
        self.chunk_size = chunk_size
        self.num_threads = num_threads

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        return linear_cross_entropy(
            input, self.linear.weight, target, linear_bias=self.linear.bias, weight=self.weight,
            reduction=self.reduction, ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing, sample_weight=sample_weight,
            z_loss=self.z_loss, softcap=self.softcap, temperature=self.temperature,
            chunk_size=self.chunk_size, num_threads=self.num_threads)

    def extra_repr(self) -> str:
        parts = [f"in_features={self.linear.in_features}", f"num_classes={self.num_classes}",
                 f"bias={self.linear.bias is not None}", f"reduction={self.reduction!r}"]
        for name, default in (("ignore_index", None), ("label_smoothing", 0.0), ("z_loss", 0.0),
                              ("softcap", None), ("temperature", 1.0), ("chunk_size", None),
                              ("num_threads", None)):
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)
