"""PyTorch side of :mod:`xentfast.distributed`: a differentiable cross-entropy
whose rows, classes, or both are spread over ``torch.distributed`` process groups.

``cross_entropy(input, target, ..., vocab_group=None, vocab_start=None,
data_group=None)`` and :class:`CrossEntropyLoss` take the arguments of
``xentfast.torch.cross_entropy`` (PyTorch's layout: classes along dim 1 of
``(N, C, d1, ...)``, CPU float32/float64 tensors) plus the groups: each rank
passes its piece, and gets the whole batch's loss (``"mean"``/``"sum"``) or its
rows' losses (``"none"``), and, through autograd, its slice of the whole
batch's gradient.

How it runs.  The forward pass is collective (every rank of the groups calls
it): it computes the loss and, when the input requires a gradient, the
gradient too (xentfast.distributed.cross_entropy_and_grad), keeping it for
the backward pass, which only scales it by the upstream gradient, locally, with
no collective.  Every rank of a group must agree on whether it wants the
gradient (the ranks check it and raise together otherwise).  A second backward
pass through a retained graph recomputes the gradient, which is collective
again: every rank must run it.

Communication: the forward pass makes xentfast.distributed's collectives (with
``vocab_start`` given, two under ``vocab_group``: the agreement vector, 8
float64 per rank + 4, then a SUM of 2 float64 per row + 1 for the plain loss;
under ``data_group`` the agreement vector, carrying the ``"mean"`` denominator
and then followed by a SUM of the loss, or carrying the ``"sum"`` loss itself:
1 float64, 2 with ``return_z_loss``); the backward pass none.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from numpy.typing import NDArray
from torch.autograd.function import once_differentiable

from . import _torch_ops as _ops
from . import distributed as _xd

__all__ = ["CrossEntropyLoss", "cross_entropy"]



def _numpy(t: torch.Tensor, name: str) -> NDArray[Any]:
    return _ops.cpu_numpy(t, name)


_to_tensor = _ops.tensor_from


class _DistributedCrossEntropy(torch.autograd.Function):
    """Collective forward (loss + gradient); the backward pass only rescales."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: NDArray[Any], axis: int,
                reduction: str, return_z_loss: bool, options: dict[str, Any]) -> Any:
        result: tuple[Any, ...] = _xd.cross_entropy_and_grad(
            _numpy(input, "input"), target, axis=axis, reduction=reduction,
            return_z_loss=return_z_loss, **options)
        ctx.grad = torch.from_numpy(result[-1])
        ctx.save_for_backward(input)
        ctx.recompute = (target, axis, reduction, options)
        ctx.reduction, ctx.axis = reduction, axis
        outputs = tuple(_to_tensor(v, input.dtype) for v in result[:-1])
        if return_z_loss:
            ctx.mark_non_differentiable(outputs[1])
            return outputs
        return outputs[0]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor, *unused: Any) -> Any:
        grad: torch.Tensor | None = ctx.grad
        if grad is None:  # a second backward pass: collective, on every rank
            (input,) = ctx.saved_tensors
            target, axis, reduction, options = ctx.recompute
            upstream = _numpy(grad_loss, "grad_output")
            result: tuple[Any, ...] = _xd.cross_entropy_and_grad(
                _numpy(input, "input"), target, axis=axis, reduction=reduction,
                grad_output=upstream if reduction == "none" else float(upstream), **options)
            return (torch.from_numpy(result[-1]),) + (None,) * 5
        ctx.grad = None
        if ctx.reduction == "none":
            if not bool(torch.all(grad_loss == 1)):
                grad.mul_(grad_loss.unsqueeze(ctx.axis) if grad_loss.ndim else grad_loss)
        elif float(grad_loss) != 1.0:
            grad.mul_(float(grad_loss))
        return (grad,) + (None,) * 5


_apply: Callable[..., Any] = _DistributedCrossEntropy.apply


def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None, *, vocab_group: Any = None,
                  vocab_start: int | None = None, data_group: Any = None,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0, sample_weight: torch.Tensor | None = None,
                  z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None, return_z_loss: bool = False
                  ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Differentiable cross-entropy of a batch spread over ``torch.distributed`` groups.

    A collective call.  Arguments are those of ``xentfast.torch.cross_entropy``
    for this rank's piece, plus:

    Parameters
    ----------
    vocab_group : torch.distributed.ProcessGroup, optional
        The ranks over which the classes (dim 1) are split: this rank holds
        global classes ``[vocab_start, vocab_start + C_local)``; `target` holds
        global class indices (the same on every rank of the group), `weight`
        this rank's slice.
    vocab_start : int, optional
        This rank's first class; by default the shards follow each other in
        rank order.
    data_group : torch.distributed.ProcessGroup, optional
        The ranks over which the rows are split (``"mean"`` over all of them).

    Returns
    -------
    Tensor
        The whole batch's loss (``"mean"``/``"sum"``, the same on every rank) or
        this rank's rows' losses (``"none"``); its gradient is this rank's slice
        of the whole batch's.

    Examples
    --------
    Two gloo ranks, each with half of the classes; saved as ``vocab_torch.py``
    and run with ``torchrun --nproc-per-node 2 vocab_torch.py``::

        import torch, torch.distributed as dist
        import torch.nn.functional as F
        from xentfast._torch_distributed import cross_entropy

        dist.init_process_group("gloo")
        rank = dist.get_rank()
        logits = torch.randn(8, 1000, generator=torch.Generator().manual_seed(0))
        target = torch.randint(0, 1000, (8,), generator=torch.Generator().manual_seed(1))
        mine = logits[:, 500 * rank:500 * rank + 500].clone().requires_grad_()
        loss = cross_entropy(mine, target, vocab_group=dist.group.WORLD)
        loss.backward()  # mine.grad: this rank's slice of the whole gradient
        whole = logits.clone().requires_grad_()
        F.cross_entropy(whole, target).backward()
        torch.testing.assert_close(loss, F.cross_entropy(logits, target))
        torch.testing.assert_close(mine.grad, whole.grad[:, 500 * rank:500 * rank + 500])
        dist.destroy_process_group()
    """
    _ops.check_tensor(input, "input")
    _ops.check_tensor(target, "target")
    if input.dtype not in _ops.KERNEL_DTYPES:
        raise TypeError(f"input must be a float32 or float64 tensor, got {input.dtype}")
    if input.ndim == 0:
        raise ValueError("input must have at least one dimension (the classes), got a 0-d "
                         "tensor")
    _ops.check_reduction(reduction)
    axis = 0 if input.ndim == 1 else 1
    options: dict[str, Any] = dict(
        vocab_comm=vocab_group, vocab_start=vocab_start, data_comm=data_group,
        weight=None if weight is None else _numpy(weight, "weight"),
        sample_weight=None if sample_weight is None else _numpy(sample_weight, "sample_weight"),
        ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss,
        softcap=softcap, temperature=temperature, num_threads=num_threads)
    target_np = _numpy(target, "target")
    if input.requires_grad and torch.is_grad_enabled():
        result: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = _apply(
            input, target_np, axis, reduction, return_z_loss, options)
        return result
    loss: Any = _xd.cross_entropy(_numpy(input, "input"), target_np, axis=axis,
                                  reduction=reduction, return_z_loss=return_z_loss, **options)
    if return_z_loss:
        return _to_tensor(loss[0], input.dtype), _to_tensor(loss[1], input.dtype)
    return _to_tensor(loss, input.dtype)


class CrossEntropyLoss(torch.nn.Module):
    """:func:`cross_entropy` as a module: the groups and options fixed at construction.

    Examples
    --------
    In a script run on every rank (see :func:`cross_entropy`)::

        criterion = CrossEntropyLoss(vocab_group=dist.group.WORLD, label_smoothing=0.1)
        loss = criterion(my_logits, targets)  # my_logits: this rank's classes
    """

    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None = None, *, vocab_group: Any = None,
                 vocab_start: int | None = None, data_group: Any = None,
                 ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0, z_loss: float = 0.0,
                 softcap: float | None = None, temperature: float = 1.0,
                 num_threads: int | None = None, return_z_loss: bool = False) -> None:
        super().__init__()
        _ops.check_reduction(reduction)
        self.register_buffer("weight", weight)
        self.vocab_group, self.vocab_start, self.data_group = vocab_group, vocab_start, data_group
        self.ignore_index, self.reduction = ignore_index, reduction
        self.label_smoothing, self.z_loss = label_smoothing, z_loss
        self.softcap, self.temperature = softcap, temperature
        self.num_threads, self.return_z_loss = num_threads, return_z_loss

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                sample_weight: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return cross_entropy(input, target, self.weight, vocab_group=self.vocab_group,
                             vocab_start=self.vocab_start, data_group=self.data_group,
                             ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing, sample_weight=sample_weight,
                             z_loss=self.z_loss, softcap=self.softcap,
                             temperature=self.temperature, num_threads=self.num_threads,
                             return_z_loss=self.return_z_loss)
