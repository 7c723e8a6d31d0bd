"""PyTorch adapter: xentfast's fused cross-entropy as a differentiable PyTorch op.

``import xentfast`` never imports torch; ``import xentfast.torch`` does.

:func:`cross_entropy` and :class:`CrossEntropyLoss` are drop-in replacements for
``torch.nn.functional.cross_entropy`` and ``torch.nn.CrossEntropyLoss`` on CPU tensors
(float32, float64, float16, bfloat16): the same layout (classes along dim 1 of
``(N, C, d1, ...)``, or dim 0 of a single ``(C,)`` row), the same semantics (class
weights, ``ignore_index``, reductions, label smoothing, index or probability targets),
the same results to float tolerance, plus xentfast's options (``sample_weight``,
``z_loss``, ``softcap``, ``temperature``, ``num_threads``) and an opt-in in-place
backward (``inplace_backward=True``).

How it runs.

* Eager autograd (the training loop): a ``torch.autograd.Function`` whose forward pass
  hands the tensors' memory to xentfast as NumPy views (no copy) and, when the input
  requires a gradient, computes the loss *and* d loss / d input in the same fused pass,
  keeping the gradient for the backward pass.  The backward pass multiplies it by the
  upstream gradient in place (nothing at all for ``loss.backward()`` on a ``"mean"``
  or ``"sum"`` loss) and returns it, so a training step reads the logits once and
  writes the gradient once.  Like PyTorch's own cross-entropy, which keeps the N x C
  log-softmax, this holds one N x C buffer between forward and backward, unless
  ``inplace_backward=True`` puts the gradient over the logits.
* Second derivatives: when a graph of the backward pass is being built
  (``create_graph=True``, ``torch.autograd.functional.hessian``, ``gradgradcheck``),
  the backward pass computes the gradient again with differentiable torch operations
  (the same formula), so that autograd can differentiate it once more.  The logits
  are kept for that (and for a second backward pass): as a saved tensor, which the
  backward pass frees, or, up to 65536 elements, by reference with their version
  checked as autograd checks saved tensors (cheaper for a small call; kept as long
  as the graph).
* ``torch.compile`` (also with ``fullgraph=True``) and ``torch.export`` see the custom
  operator ``torch.ops.xentfast.cross_entropy`` (loss, z-loss part and fused gradient
  in one call), with a fake (meta) implementation, an autograd formula (the compiled
  backward multiplies the saved gradient) and a vmap rule (one call per batch entry).
  Under ``torch.func`` (``grad``, ``vmap``, ``jacrev``, ``jvp``, ``hessian``) the loss
  comes from that operator and the derivatives from the differentiable formula.  The
  adapter takes these routes by itself whenever it is traced or transformed.
* Under ``torch.autocast("cpu", ...)`` float16/bfloat16 tensors are widened to float32
  first, as autocast does for ``F.cross_entropy`` (an op of its float32 list): the
  loss is float32, the gradient reaches the logits in their own dtype.  Outside
  autocast, float16/bfloat16 logits are read as they are, computed in float32 a
  bounded block at a time, and loss and gradient come back in the logits' dtype, as
  with ``F.cross_entropy``.

TorchScript (``torch.jit.script``) is not supported: the adapter is Python code with
keyword-only arguments and optional tensors; TorchScript is deprecated in favour of
``torch.compile`` and ``torch.export``, which are.
"""
from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple, Optional, overload

import torch

import xentfast

from . import _torch_ops as _ops
from ._torch_ops import FLOAT_DTYPES, LOW_PRECISION, Options, check_cpu

from ._torch_linear import LinearCrossEntropyLoss, linear_cross_entropy

__all__ = ["CrossEntropyLoss", "LinearCrossEntropyLoss", "cross_entropy", "linear_cross_entropy"]

# Tensors whose memory the eager path may read directly; anything else (fake tensors
# of compilers and export, functorch wrappers, other subclasses) goes through the
# custom operator.
_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
# a tensor that escaped a torch.func transform (Function.apply unwraps it)
_is_functorch_wrapped: Callable[[torch.Tensor], bool] = \
    torch._C._functorch.is_functorch_wrapped_tensor
# the innermost active torch.func transform (grad, vmap, ...), None outside them
_functorch_interpreter: Callable[[], Any] = torch._C._functorch.peek_interpreter_stack
_dispatch_modes: Callable[[], int] = torch._C._len_torch_dispatch_stack
_is_compiling: Callable[[], bool] = torch.compiler.is_compiling
_autocast_enabled: Callable[[str], bool] = torch.is_autocast_enabled
_grad_enabled: Callable[[], bool] = torch.is_grad_enabled


def _traced(t: torch.Tensor) -> bool:
    """True when `t` is being traced or transformed (torch.compile, torch.export,
    make_fx, torch.func): its memory cannot, or must not, be read here."""
    return (_is_compiling() or type(t) not in _PLAIN_TENSOR_TYPES
            or _functorch_interpreter() is not None or _dispatch_modes() > 0)


def _plain_tensors(input: torch.Tensor, target: torch.Tensor) -> bool:
    """Do the tensors allow the shortest eager route: plain CPU tensors, float32 or
    float64 logits with a class dim that need a gradient, a target that does not,
    and no compiler, transform, dispatch mode or autocast active?"""
    return (type(input) is torch.Tensor and type(target) is torch.Tensor
            and input.requires_grad and not target.requires_grad and _grad_enabled()
            and (input.dtype is torch.float32 or input.dtype is torch.float64)
            and input.ndim >= 1 and input.is_cpu and target.is_cpu
            and not _traced(input) and not _autocast_enabled("cpu"))


class _Call(NamedTuple):
    """The arguments of one eager call besides the input and target tensors."""

    weight: Optional[torch.Tensor]
    sample_weight: Optional[torch.Tensor]
    opts: Options
    return_z_loss: bool
    inplace: bool
    plain: bool  # no weights or options: the shortest way through


# the _Call of the shortest route, per (class dim 1, reduction, ignore_index, num_threads)
_PLAIN_CALLS: dict[tuple[Any, ...], _Call] = {}


# Logits up to this size (256 KiB of float32) are kept by reference for the backward
# pass, larger ones as saved tensors (see _FusedCrossEntropy.forward).
_HELD_ELEMENTS = 1 << 16


def _saved_input(ctx: Any) -> torch.Tensor:
    """The input _FusedCrossEntropy.forward kept, checked as autograd checks saved
    tensors: modified in place since, it must not be used."""
    held: Optional[torch.Tensor] = ctx.held
    if held is None:
        (input,) = ctx.saved_tensors
        return input  # type: ignore[no-any-return]
    if held._version != ctx.held_version:
        raise RuntimeError(
            f"one of the variables needed for gradient computation has been modified by "
            f"an inplace operation: the input of xentfast.torch.cross_entropy, "
            f"{tuple(held.shape)}, is at version {held._version}; expected version "
            f"{ctx.held_version} instead")
    return held


class _FusedCrossEntropy(torch.autograd.Function):
    """Eager path: fused loss + gradient forward, a scaling backward."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor, call: _Call) -> Any:
        # the other arguments travel in one object: Function.apply walks its arguments
        weight, sample_weight, opts, return_z_loss, inplace, plain = call
        if plain and not inplace:  # the common call, in as few steps as possible
            loss, grad = _ops.plain_loss_and_grad(input, target, opts)
            zpart = None
        else:
            loss, zpart, grad = _ops.loss_and_grad(input, target, weight, sample_weight, opts,
                                                   return_z_loss,
                                                   out=input if inplace else None)
        ctx.grad = grad
        ctx.opts = opts
        ctx.inplace = inplace
        ctx.others = (target, weight, sample_weight)
        if inplace:
            # input's memory now holds the gradient: any saved use of it must fail
            torch.autograd.graph.increment_version(input)
        elif input.numel() <= _HELD_ELEMENTS:
            # kept for second derivatives and a second backward pass: small logits by
            # reference (cheaper than a saved tensor: part of what took a 64 x 10 step
            # from 1.05 to 0.96 x F's, tools/torch_small_call.py), with the version
            # autograd would check; large ones saved, freed by backward
            ctx.held = input
            ctx.held_version = input._version
        else:
            ctx.held = None
            ctx.save_for_backward(input)
        if return_z_loss:
            ctx.mark_non_differentiable(zpart)
            return loss, zpart
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, *unused: Any) -> Any:
        opts: Options = ctx.opts
        grad: Optional[torch.Tensor] = ctx.grad
        ctx.grad = None  # hand the buffer over: no reference to it stays in the graph
        if _grad_enabled():
            # create_graph=True: the gradient must itself be differentiable
            if ctx.inplace:
                raise RuntimeError(
                    "xentfast.torch.cross_entropy(..., inplace_backward=True) overwrote its "
                    "input with the gradient, so it has no second derivative: call it "
                    "without inplace_backward to differentiate twice (create_graph=True)")
            input = _saved_input(ctx)
            target, weight, sample_weight = ctx.others
            return _ops.grad_formula(input, target, weight, sample_weight, opts,
                                     grad_loss), None, None
        if grad is None:
            if ctx.inplace:
                raise RuntimeError(
                    "xentfast.torch.cross_entropy(..., inplace_backward=True) overwrote its "
                    "input with the gradient, which the first backward pass handed on: it "
                    "cannot go backward a second time (retain_graph=True); call it without "
                    "inplace_backward for that")
            # a second backward pass through a retained graph: the first one consumed
            # the buffer, so compute the gradient again
            input = _saved_input(ctx)
            target, weight, sample_weight = ctx.others
            grad = _ops.loss_and_grad(input.detach(), target, weight, sample_weight, opts,
                                      False)[2]
        if opts.reduction != "none":
            scale = float(grad_loss)
            if scale != 1.0:
                grad.mul_(scale)
        elif not bool(torch.all(grad_loss == 1)):
            # one upstream value per row, broadcast along the class dim
            grad.mul_(grad_loss.unsqueeze(opts.axis) if grad_loss.ndim else grad_loss)
        return grad, None, None


class _FunctorchCrossEntropy(torch.autograd.Function):
    """torch.func path (grad, vmap, jacrev, ...): the loss from the custom operator, the
    gradient from the differentiable formula (functorch builds a graph of every
    backward pass, so a fused gradient would be computed for nothing)."""

    generate_vmap_rule = True  # forward: the operator's vmap rule; backward: torch ops

    @staticmethod
    def forward(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
                sample_weight: Optional[torch.Tensor], opts: Options,
                return_z_loss: bool) -> Any:
        loss, zpart, _ = _ops.cross_entropy_op(
            input, target, weight, sample_weight, opts.axis, opts.reduction,
            opts.ignore_index, float(opts.label_smoothing), float(opts.z_loss),
            None if opts.softcap is None else float(opts.softcap), float(opts.temperature),
            opts.num_threads, False)
        return (loss, zpart) if return_z_loss else loss

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        input, target, weight, sample_weight, opts, return_z_loss = inputs
        ctx.opts = opts
        ctx.return_z_loss = return_z_loss
        ctx.save_for_backward(input, target, weight, sample_weight)
        ctx.save_for_forward(input, target, weight, sample_weight)
        if return_z_loss:
            ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, *unused: Any) -> Any:
        input, target, weight, sample_weight = ctx.saved_tensors
        grad = _ops.grad_formula(input, target, weight, sample_weight, ctx.opts, grad_loss)
        return (grad,) + (None,) * 5

    @staticmethod
    def jvp(ctx: Any, input_tangent: torch.Tensor, *unused: Any) -> Any:
        """Forward mode (jvp, jacfwd, hessian): each row's loss changes by its
        gradient . the row's tangent."""
        input, target, weight, sample_weight = ctx.saved_tensors
        opts: Options = ctx.opts
        ones = torch.ones((), dtype=input.dtype, device=input.device)
        if opts.reduction == "none":
            ones = ones.expand(_ops.loss_shape(input, target, opts.axis, "none"))
        grad = _ops.grad_formula(input, target, weight, sample_weight, opts, ones)
        product = grad * input_tangent
        tangent = (product.sum(opts.axis) if opts.reduction == "none" else product.sum())
        return (tangent, None) if ctx.return_z_loss else tangent


# torch's Function.apply carries no annotations; these are their signatures here
_apply_fused: Callable[..., Any] = _FusedCrossEntropy.apply
try:
    # Function.apply without its Python prologue (setup_context binding, torch.func
    # checks), which costs a few microseconds per call: what Function.apply itself
    # calls when no torch.func transform is active, as on the eager path
    _apply_fused_direct: Callable[..., Any] = super(
        torch.autograd.Function, _FusedCrossEntropy).apply
except AttributeError:  # pragma: no cover - a torch without that layout
    _apply_fused_direct = _apply_fused
_apply_functorch: Callable[..., Any] = _FunctorchCrossEntropy.apply


@overload
def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0,
                  sample_weight: torch.Tensor | None = None, z_loss: float = 0.0,
                  softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None,
                  return_z_loss: Literal[False] = False,
                  inplace_backward: bool = False, vocab_group: Any = None,
                  vocab_start: int | None = None, data_group: Any = None) -> torch.Tensor: ...


@overload
def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0,
                  sample_weight: torch.Tensor | None = None, z_loss: float = 0.0,
                  softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None,
                  return_z_loss: Literal[True],
                  inplace_backward: bool = False, vocab_group: Any = None,
                  vocab_start: int | None = None,
                  data_group: Any = None) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0,
                  sample_weight: torch.Tensor | None = None, z_loss: float = 0.0,
                  softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None, return_z_loss: bool = False,
                  inplace_backward: bool = False, vocab_group: Any = None,
                  vocab_start: int | None = None, data_group: Any = None
                  ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def cross_entropy(input: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0,
                  sample_weight: torch.Tensor | None = None, z_loss: float = 0.0,
                  softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None, return_z_loss: bool = False,
                  inplace_backward: bool = False, vocab_group: Any = None,
                  vocab_start: int | None = None, data_group: Any = None
                  ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``torch.nn.functional.cross_entropy`` computed by xentfast, differentiable.

    Parameters
    ----------
    input : Tensor
        Logits on the CPU, float32, float64, float16 or bfloat16: ``(N, C)``,
        ``(N, C, d1, ...)`` (classes along dim 1) or a single row ``(C,)``.
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
        xentfast's options; see :func:`xentfast.cross_entropy`.  ``num_threads`` is
        handed to xentfast as is (default: ``omp_get_max_threads()``).
    vocab_group, vocab_start, data_group : optional
        A batch spread over ``torch.distributed`` process groups: the classes over
        ``vocab_group`` (this rank's logits hold ``[vocab_start, vocab_start + C)``;
        targets are global class indices), the rows over ``data_group``.  A collective
        call; see :mod:`xentfast.distributed` for the semantics (the loss of the whole
        batch, this rank's slice of its gradient).  Not with ``inplace_backward``.
    inplace_backward : bool, default False
        Write the gradient over ``input`` instead of a new N x C tensor (no allocation,
        no page faults: the fastest training step).  The contract: ``input`` must be
        an intermediate result (the output of the model's last layer), not a leaf
        tensor or a view of one, and once this returns, its contents are the gradient,
        not the logits.  PyTorch's version counter of ``input`` is bumped, so any
        other part of the graph that saved ``input`` for its backward pass raises
        PyTorch's "modified by an inplace operation" error instead of using the
        gradient as logits; reading ``input`` yourself after the call is your
        responsibility.  The graph has no second derivative and cannot be
        backpropagated twice (both raise).  Only applies when a gradient is
        computed (otherwise ``input`` is left alone), and in eager mode: under
        ``torch.compile``, ``torch.export`` and ``torch.func`` the gradient goes to
        a buffer of the compiler's.

    Returns
    -------
    Tensor
        The loss (0-d for ``"mean"``/``"sum"``, the target's shape for ``"none"``),
        in the input's dtype (float32 under ``torch.autocast`` for float16/bfloat16
        input, as ``F.cross_entropy``); with ``return_z_loss=True``,
        ``(loss, z_loss_part)``, the second not differentiable.

    Raises
    ------
    TypeError
        A tensor that is not on the CPU, an input that is not a floating tensor.
    ValueError
        Bad options or shapes (from xentfast, naming the argument); a weight that
        requires grad; ``inplace_backward=True`` on a leaf tensor.
    RuntimeError
        A second derivative, or a second backward pass, after ``inplace_backward=True``.

    Notes
    -----
    Second derivatives are exact: with ``create_graph=True`` the backward pass
    recomputes the gradient with differentiable torch operations (the same formula as
    the fused pass), so Hessians, gradient penalties and ``gradgradcheck`` work for
    every option.  ``torch.compile(fullgraph=True)``, ``torch.export.export``,
    ``torch.func.grad`` and ``torch.func.vmap`` go through the custom operator
    ``torch.ops.xentfast.cross_entropy`` (vmap calls it once per batch entry).
    ``torch.jit.script`` is not supported.

    Examples
    --------
    >>> import torch, xentfast.torch as xt
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    >>> loss = xt.cross_entropy(logits, torch.tensor([0, 2]))
    >>> loss.backward()
    >>> round(loss.item(), 6), logits.grad.shape
    (0.669962, torch.Size([2, 3]))

    The in-place backward, on the output of a layer:

    >>> layer = torch.nn.Linear(4, 3)
    >>> hidden = torch.randn(5, 4)
    >>> loss = xt.cross_entropy(layer(hidden), torch.tensor([0, 1, 2, 0, 1]),
    ...                         inplace_backward=True)
    >>> loss.backward()
    >>> layer.weight.grad.shape
    torch.Size([3, 4])

    Second derivatives, e.g. a gradient penalty:

    >>> w = torch.zeros(4, 3, requires_grad=True)
    >>> loss = xt.cross_entropy(hidden @ w, torch.tensor([0, 1, 2, 0, 1]))
    >>> (g,) = torch.autograd.grad(loss, w, create_graph=True)
    >>> (g.square().sum()).backward()
    >>> bool(w.grad.abs().sum() > 0)
    True
    """
    if (not inplace_backward and vocab_group is None and data_group is None
            and vocab_start is None and _ops.plain_call(
                reduction, 1, weight, sample_weight, label_smoothing, z_loss, softcap,
                temperature, return_z_loss, num_threads, ignore_index)
            and _plain_tensors(input, target)):
        # the training loop's call (a gradient, no options): the checks below hold,
        # and it needs fewer steps than them (at 64 x 10 the call is all overhead)
        key = (input.ndim > 1, reduction, ignore_index, num_threads)
        call = _PLAIN_CALLS.get(key)
        if call is None:
            if len(_PLAIN_CALLS) >= 64:  # a bound, for callers that vary ignore_index
                _PLAIN_CALLS.clear()
            call = _PLAIN_CALLS[key] = _Call(
                None, None, Options(int(input.ndim > 1), reduction, ignore_index, 0.0, 0.0,
                                    None, 1.0, num_threads), False, False, True)
        apply = _apply_fused if _is_functorch_wrapped(input) else _apply_fused_direct
        return apply(input, target, call)  # type: ignore[no-any-return]
    if vocab_group is not None or data_group is not None or vocab_start is not None:
        if inplace_backward:
            raise ValueError("inplace_backward is not available with vocab_group or data_group")
        from ._torch_distributed import cross_entropy as _sharded_cross_entropy

        return _sharded_cross_entropy(
            input, target, weight, vocab_group=vocab_group, vocab_start=vocab_start,
            data_group=data_group, ignore_index=ignore_index, reduction=reduction,
            label_smoothing=label_smoothing, sample_weight=sample_weight, z_loss=z_loss,
            softcap=softcap, temperature=temperature, num_threads=num_threads,
            return_z_loss=return_z_loss)
    _ops.check_tensor(input, "input")
    _ops.check_tensor(target, "target")
    check_cpu(input, "input")
    check_cpu(target, "target")
    if weight is not None:
        check_cpu(weight, "weight")
    if sample_weight is not None:
        check_cpu(sample_weight, "sample_weight")
    dtype = input.dtype
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"input must be a float16, bfloat16, float32 or float64 tensor, got "
                        f"{dtype} (convert it with .float())")
    if input.ndim == 0:
        raise ValueError("input must have at least one dimension (the classes), got a 0-d "
                         "tensor")
    _ops.check_reduction(reduction)
    grad_enabled = torch.is_grad_enabled()
    if grad_enabled and (target.requires_grad or (weight is not None and weight.requires_grad)
                         or (sample_weight is not None and sample_weight.requires_grad)):
        name = ("target" if target.requires_grad else "weight"
                if weight is not None and weight.requires_grad else "sample_weight")
        raise ValueError(f"{name} requires grad, but xentfast.torch differentiates "
                         f"only with respect to input: pass {name}.detach()")
    if _autocast_enabled("cpu"):
        # cross_entropy is on autocast's float32 list: half tensors are widened first
        # (differentiably: the gradient reaches the logits in their own dtype)
        if dtype in LOW_PRECISION:
            input = input.float()
            dtype = torch.float32
        if target.dtype in LOW_PRECISION:
            target = target.float()
        if weight is not None and weight.dtype in LOW_PRECISION:
            weight = weight.float()
    opts = Options(0 if input.ndim == 1 else 1, reduction, ignore_index, label_smoothing,
                   z_loss, softcap, temperature, num_threads)
    needs_grad = grad_enabled and input.requires_grad
    result: Any
    if _traced(input):
        if not _is_compiling() and _functorch_interpreter() is not None:
            result = _apply_functorch(input, target, weight, sample_weight, opts, return_z_loss)
            return result  # type: ignore[no-any-return]
        loss, zpart, _ = _ops.cross_entropy_op(
            input, target, weight, sample_weight, opts.axis, reduction, ignore_index,
            float(label_smoothing), float(z_loss),
            None if softcap is None else float(softcap), float(temperature), num_threads,
            needs_grad)
        return (loss, zpart) if return_z_loss else loss
    if needs_grad:
        if inplace_backward:
            _check_inplace(input)
        plain = (weight is None and sample_weight is None and not return_z_loss
                 and (dtype is torch.float32 or dtype is torch.float64)
                 and label_smoothing == 0.0 and z_loss == 0.0 and softcap is None
                 and temperature == 1.0)
        apply = _apply_fused if _is_functorch_wrapped(input) else _apply_fused_direct
        result = apply(input, target, _Call(weight, sample_weight, opts, return_z_loss,
                                                 inplace_backward, plain))
        return result  # type: ignore[no-any-return]
    # no graph to record (inference, torch.no_grad()): the loss alone
    loss, zpart = _ops.loss_only(input, target, weight, sample_weight, opts, return_z_loss)
    return (loss, zpart) if return_z_loss else loss  # type: ignore[return-value]


def _check_inplace(input: torch.Tensor) -> None:
    base = input._base if input._base is not None else input
    if base.is_leaf:
        what = "a leaf tensor" if base is input else "a view of a leaf tensor"
        raise ValueError(
            f"inplace_backward=True writes the gradient over input, but input is {what} "
            f"that requires grad (its .grad would alias it): use it on the output of a "
            f"layer, or call without inplace_backward")


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` computed by xentfast (CPU tensors).

    The constructor takes PyTorch's arguments (``weight``, ``ignore_index``,
    ``reduction``, ``label_smoothing``; only ``weight`` positionally, and not the
    long-deprecated ``size_average``/``reduce``) plus xentfast's options and
    ``inplace_backward`` (see :func:`cross_entropy` for its contract); ``forward``
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
                 num_threads: int | None = None, return_z_loss: bool = False,
                 inplace_backward: bool = False, vocab_group: Any = None,
                 vocab_start: int | None = None, data_group: Any = None) -> None:
        super().__init__()
        self.vocab_group, self.vocab_start, self.data_group = vocab_group, vocab_start, data_group
        _ops.check_reduction(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.temperature = temperature
        self.num_threads = num_threads
        self.return_z_loss = return_z_loss
        self.inplace_backward = inplace_backward

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                sample_weight: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             sample_weight=sample_weight, z_loss=self.z_loss,
                             softcap=self.softcap, temperature=self.temperature,
                             num_threads=self.num_threads, return_z_loss=self.return_z_loss,
                             inplace_backward=self.inplace_backward,
                             vocab_group=self.vocab_group, vocab_start=self.vocab_start,
                             data_group=self.data_group)

    def extra_repr(self) -> str:
        parts = [f"reduction={self.reduction!r}"]
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        for name, default in (("label_smoothing", 0.0), ("z_loss", 0.0), ("softcap", None),
                              ("temperature", 1.0), ("num_threads", None),
                              ("return_z_loss", False), ("inplace_backward", False)):
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)
