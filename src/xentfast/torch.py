"""PyTorch adapter: xentfast's fused cross-entropy as a differentiable PyTorch op.

``import xentfast`` never imports torch; ``import xentfast.torch`` does.

:func:`cross_entropy` and :class:`CrossEntropyLoss` are drop-in replacements for
``torch.nn.functional.cross_entropy`` and ``torch.nn.CrossEntropyLoss`` on CPU
float32/float64 tensors: the same layout (classes along dim 1 of ``(N, C, d1, ...)``,
or dim 0 of a single ``(C,)`` row), the same semantics (class weights,
``ignore_index``, reductions, label smoothing, index or probability targets), the same
results to float tolerance, plus xentfast's options (``sample_weight``, ``z_loss``,
``softcap``, ``temperature``, ``num_threads``).

How it runs.  The forward pass hands the tensors' memory to xentfast as NumPy views
(no copy, strided views included: xentfast makes at most one internal copy, and only
when the class axis is not contiguous) and, when the input requires a gradient,
computes the loss *and* d loss / d input in the same fused pass, keeping the gradient
for the backward pass, whose output is that buffer wrapped with ``torch.from_numpy``
(no copy either):

* ``reduction="mean"``/``"sum"``: the backward pass multiplies by the scalar upstream
  gradient, in place, or does nothing at all when it is 1 (``loss.backward()``), so a
  training step reads the logits once and writes the gradient once.
* ``reduction="none"``: the forward pass computes the gradient for an upstream gradient
  of ones and the backward pass scales each row in place by its upstream gradient
  (skipped when they are all 1).  The alternative, a loss-only forward and a full
  recomputation in the backward pass, reads the logits twice and evaluates every
  exponential twice; on 2048 x 32000 float32 logits it measured 116 ms against 96 ms
  for the scaling, which costs one streaming pass over the gradient.

Like PyTorch's own cross-entropy, which keeps the N x C log-softmax for its backward
pass, this holds one N x C buffer between forward and backward.  A second backward
pass through the same graph (``retain_graph=True``) recomputes the gradient from the
saved input.
"""
from __future__ import annotations

from typing import Any, Callable, Literal, overload

import numpy as np
import torch
from numpy.typing import NDArray
from torch.autograd.function import once_differentiable

import xentfast

__all__ = ["CrossEntropyLoss", "cross_entropy"]

_FLOAT_DTYPES = (torch.float32, torch.float64)
_REDUCTIONS = ("mean", "sum", "none")


def _check_cpu(t: torch.Tensor, name: str) -> None:
    if t.device.type != "cpu":
        raise TypeError(
            f"{name} is on device {t.device}, but xentfast runs on the CPU: move it with "
            f".cpu(), or use torch.nn.functional.cross_entropy for {t.device.type} tensors")


def _numpy(t: torch.Tensor, name: str) -> NDArray[Any]:
    """A NumPy view of a CPU tensor's memory (no copy, strides kept)."""
    _check_cpu(t, name)
    return t.detach().numpy()


class _CrossEntropyFunction(torch.autograd.Function):
    """Fused forward (+ gradient) in xentfast; the backward pass only rescales."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: NDArray[Any],
                axis: int, reduction: str, return_z_loss: bool,
                options: dict[str, Any]) -> Any:
        x = _numpy(input, "input")
        if not ctx.needs_input_grad[0]:
            return _loss_only(x, target, axis, reduction, return_z_loss, options, input.dtype)
        result: tuple[Any, ...] = xentfast.cross_entropy_and_grad(
            x, target, axis=axis, reduction=reduction, **options)
        # the gradient buffer is ours: backward may scale it in place and return it
        ctx.grad = torch.from_numpy(result[-1])
        ctx.save_for_backward(input)
        ctx.recompute = (target, axis, reduction, options)
        ctx.reduction = reduction
        ctx.axis = axis
        outputs = tuple(_to_tensor(p, input.dtype) for p in result[:-1])
        if return_z_loss:
            ctx.mark_non_differentiable(outputs[1])
            return outputs
        return outputs[0]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor, *unused: Any) -> Any:
        grad: torch.Tensor | None = ctx.grad
        if grad is None:
            # A second backward pass through a retained graph: the first one consumed
            # the buffer, so compute the gradient again, for this upstream gradient.
            (input,) = ctx.saved_tensors
            target, axis, reduction, options = ctx.recompute
            upstream = _numpy(grad_loss, "grad_output")
            result: tuple[Any, ...] = xentfast.cross_entropy_and_grad(
                _numpy(input, "input"), target, axis=axis, reduction=reduction,
                grad_output=upstream if reduction == "none" else float(upstream), **options)
            return (torch.from_numpy(result[-1]),) + (None,) * 5
        ctx.grad = None  # hand the buffer over: no reference to it stays in the graph
        if ctx.reduction == "none":
            if not bool(torch.all(grad_loss == 1)):
                # one upstream value per row, broadcast along the class dim
                grad.mul_(grad_loss.unsqueeze(ctx.axis) if grad_loss.ndim else grad_loss)
        else:
            scale = float(grad_loss)
            if scale != 1.0:
                grad.mul_(scale)
        return (grad,) + (None,) * 5


# torch's Function.apply carries no annotations; this is its signature here
_apply_cross_entropy: Callable[..., Any] = _CrossEntropyFunction.apply


def _loss_only(x: NDArray[Any], target: NDArray[Any], axis: int, reduction: str,
               return_z_loss: bool, options: dict[str, Any], dtype: torch.dtype) -> Any:
    """The loss alone (no gradient is needed): one read of the logits."""
    loss: Any = xentfast.cross_entropy(x, target, axis=axis, reduction=reduction, **options)
    if return_z_loss:
        return _to_tensor(loss[0], dtype), _to_tensor(loss[1], dtype)
    return _to_tensor(loss, dtype)


def _to_tensor(value: float | NDArray[Any], dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return torch.tensor(value, dtype=dtype)


@overload
def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0,
                  sample_weight: torch.Tensor | None = None, z_loss: float = 0.0,
                  softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None,
                  return_z_loss: Literal[False] = False) -> torch.Tensor: ...


@overload
def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0,
                  sample_weight: torch.Tensor | None = None, z_loss: float = 0.0,
                  softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None,
                  return_z_loss: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0,
                  sample_weight: torch.Tensor | None = None, z_loss: float = 0.0,
                  softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None, return_z_loss: bool = False
                  ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0,
                  sample_weight: torch.Tensor | None = None, z_loss: float = 0.0,
                  softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None, return_z_loss: bool = False
                  ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``torch.nn.functional.cross_entropy`` computed by xentfast, differentiable.

    Parameters
    ----------
    input : Tensor
        Logits on the CPU, float32 or float64: ``(N, C)``, ``(N, C, d1, ...)`` (classes
        along dim 1) or a single row ``(C,)``.
    target : Tensor
        Class indices (an integer tensor of the input's shape without the class dim)
        or class probabilities (a floating tensor of the input's shape).
    weight : Tensor of shape (C,), optional
        Class weights, as PyTorch's.
    ignore_index, reduction, label_smoothing
        As in PyTorch.
    sample_weight : Tensor, optional
        One weight per row (the target's shape for index targets): xentfast only.
    z_loss, softcap, temperature, num_threads, return_z_loss
        xentfast's options; see :func:`xentfast.cross_entropy`.

    Returns
    -------
    Tensor
        The loss (0-d for ``"mean"``/``"sum"``, the target's shape for ``"none"``),
        in the input's dtype; with ``return_z_loss=True``, ``(loss, z_loss_part)``.

    Raises
    ------
    TypeError
        A tensor that is not on the CPU, an input that is not float32/float64.
    ValueError
        Bad options or shapes (from xentfast, naming the argument).

    Examples
    --------
    >>> import torch, xentfast.torch as xt
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    >>> loss = xt.cross_entropy(logits, torch.tensor([0, 2]))
    >>> loss.backward()
    >>> round(loss.item(), 6), logits.grad.shape
    (0.669962, torch.Size([2, 3]))
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    _check_cpu(input, "input")
    if input.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"input must be a float32 or float64 tensor, got {input.dtype} "
                        f"(convert it with .float())")
    if input.ndim == 0:
        raise ValueError("input must have at least one dimension (the classes), got a 0-d "
                         "tensor")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    if torch.is_grad_enabled():
        for name, t in (("target", target), ("weight", weight),
                        ("sample_weight", sample_weight)):
            if isinstance(t, torch.Tensor) and t.requires_grad:
                raise ValueError(f"{name} requires grad, but xentfast.torch differentiates "
                                 f"only with respect to input: pass {name}.detach()")
    axis = 0 if input.ndim == 1 else 1
    options: dict[str, Any] = dict(
        weight=None if weight is None else _numpy(weight, "weight"),
        sample_weight=None if sample_weight is None else _numpy(sample_weight, "sample_weight"),
        ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss,
        softcap=softcap, temperature=temperature, num_threads=num_threads,
        return_z_loss=return_z_loss)
    target_np = _numpy(target, "target")
    result: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    if input.requires_grad and torch.is_grad_enabled():
        result = _apply_cross_entropy(input, target_np, axis, reduction, return_z_loss,
                                      options)
    else:  # no graph to record (inference, torch.no_grad()): skip the gradient
        result = _loss_only(_numpy(input, "input"), target_np, axis, reduction,
                            return_z_loss, options, input.dtype)
    return result


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` computed by xentfast (CPU float32/float64).

    The constructor takes PyTorch's arguments (``weight``, ``ignore_index``,
    ``reduction``, ``label_smoothing``; only ``weight`` positionally, and not the
    long-deprecated ``size_average``/``reduce``) plus xentfast's options; ``forward``
    takes ``(input, target)`` and optionally a per-batch ``sample_weight``.

    Examples
    --------
    >>> import torch, xentfast.torch as xt
    >>> criterion = xt.CrossEntropyLoss(label_smoothing=0.0)
    >>> round(criterion(torch.zeros(4, 10), torch.tensor([1, 2, 3, 4])).item(), 4)
    2.3026
    """

    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None = None, *, ignore_index: int = -100,
                 reduction: str = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
                 softcap: float | None = None, temperature: float = 1.0,
                 num_threads: int | None = None, return_z_loss: bool = False) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.temperature = temperature
        self.num_threads = num_threads
        self.return_z_loss = return_z_loss

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                sample_weight: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             sample_weight=sample_weight, z_loss=self.z_loss,
                             softcap=self.softcap, temperature=self.temperature,
                             num_threads=self.num_threads, return_z_loss=self.return_z_loss)

    def extra_repr(self) -> str:
        parts = [f"reduction={self.reduction!r}"]
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        for name, default in (("label_smoothing", 0.0), ("z_loss", 0.0), ("softcap", None),
                              ("temperature", 1.0), ("num_threads", None),
                              ("return_z_loss", False)):
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)
