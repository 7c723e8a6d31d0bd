"""Internals of :mod:`xentfast.torch`: tensor <-> NumPy bridging, the fused call, the
differentiable gradient formula (for second derivatives) and the ``xentfast::``
custom operator (for torch.compile, torch.export and torch.func).

Importing this module imports torch; ``import xentfast`` never does.
"""
import math
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

import xentfast
from xentfast import _api, _core

try:  # bfloat16 NumPy views of torch's bfloat16 memory
    import ml_dtypes
    _NP_BFLOAT16: Optional[np.dtype] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    _NP_BFLOAT16 = None

LOW_PRECISION = (torch.float16, torch.bfloat16)
KERNEL_DTYPES = (torch.float32, torch.float64)  # computed as they are
FLOAT_DTYPES = KERNEL_DTYPES + LOW_PRECISION

# Without ml_dtypes, bfloat16 logits are widened to float32 this many elements at a
# time: it bounds the float32 copy (16 MiB) whatever the size of the logits.
WIDEN_CHUNK_ELEMENTS = 1 << 22


class Options(NamedTuple):
    """Everything but the tensors: fixed for one call."""

    axis: int
    reduction: str
    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: Optional[float]
    temperature: float
    num_threads: Optional[int]


def check_reduction(reduction: str) -> None:
    """The NumPy API's check of `reduction` (one message everywhere)."""
    _api._reduction(reduction)


def check_tensor(t: Any, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def check_cpu(t: Tensor, name: str, peer: str = "torch.nn.functional.cross_entropy") -> None:
    if type(t) is torch.Tensor and t.is_cpu:  # the common case, without a device object
        return
    if t.device.type != "cpu":
        raise TypeError(
            f"{name} is on device {t.device}, but xentfast runs on the CPU: move it with "
            f".cpu(), or use {peer} for {t.device.type} tensors")


def numpy_view(t: Tensor, name: str) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (no copy, strides kept); bfloat16 through
    ml_dtypes.  The caller has checked the device."""
    if t.requires_grad:
        t = t.detach()
    if t.dtype == torch.bfloat16:
        if _NP_BFLOAT16 is None:
            raise TypeError(f"{name} is bfloat16: install ml_dtypes (pip install ml_dtypes) "
                            f"to use bfloat16 tensors other than the logits")
        return t.view(torch.int16).numpy().view(_NP_BFLOAT16)
    return t.numpy()


def cpu_numpy(t: Tensor, name: str, peer: str = "torch.nn.functional.cross_entropy"
              ) -> np.ndarray:
    """check_cpu, then numpy_view."""
    check_cpu(t, name, peer)
    return numpy_view(t, name)


_NUMPY_DTYPES: dict[torch.dtype, np.dtype[Any]] = {
    torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64),
    torch.float16: np.dtype(np.float16)}


def tensor_from(value: Any, dtype: torch.dtype) -> Tensor:
    """A loss from xentfast (a Python float or an ndarray) as a tensor of `dtype`."""
    if isinstance(value, np.ndarray):
        if value.dtype == _NP_BFLOAT16:
            return torch.from_numpy(value.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(value)  # xentfast returns arrays in the logits' dtype
    np_dtype = _NUMPY_DTYPES.get(dtype)
    if np_dtype is not None:  # a few microseconds less than torch.tensor
        return torch.from_numpy(np.array(value, dtype=np_dtype))
    return torch.tensor(value, dtype=dtype)


# Is a call free of options (the NumPy API's test for its shortcut, ``_core.ce_fast``)?
plain_call: Callable[..., bool] = _api._plain_call


def plain_loss_and_grad(input: Tensor, target: Tensor, opts: Options) -> tuple[Tensor, Tensor]:
    """(loss, d loss / d input into a new tensor) of a call without options, in as few
    steps as possible (at 64 x 10 the call is all overhead): the NumPy API's shortcut
    when the tensors are 2-D rows of classes and int64 targets, else its general path."""
    x = input.numpy(force=True)  # a view: force only detaches (a CPU tensor, no conj)
    grad = np.empty(x.shape, x.dtype)
    loss: Any = NotImplemented
    if opts.reduction != "none" and target.dtype is torch.int64:
        loss = _core.ce_fast(x, target.numpy(), grad, _core.MODE_GRAD,
                             opts.reduction == "mean", opts.ignore_index, 1.0,
                             opts.num_threads or _core.max_threads())
    if loss is NotImplemented:
        loss = xentfast.cross_entropy_and_grad(
            x, numpy_view(target, "target"), axis=opts.axis, reduction=opts.reduction,
            ignore_index=opts.ignore_index, num_threads=opts.num_threads, out=grad)[0]
    return torch.from_numpy(np.array(loss, dtype=x.dtype)), torch.from_numpy(grad)


def _kwargs(opts: Options, weight: Optional[Tensor], sample_weight: Optional[Tensor],
            return_z_loss: bool) -> dict[str, Any]:
    return dict(
        axis=opts.axis, reduction=opts.reduction, ignore_index=opts.ignore_index,
        label_smoothing=opts.label_smoothing, z_loss=opts.z_loss, softcap=opts.softcap,
        temperature=opts.temperature, num_threads=opts.num_threads,
        weight=None if weight is None else numpy_view(weight, "weight"),
        sample_weight=None if sample_weight is None else numpy_view(sample_weight,
                                                                   "sample_weight"),
        return_z_loss=return_z_loss)


def loss_only(input: Tensor, target: Tensor, weight: Optional[Tensor],
              sample_weight: Optional[Tensor], opts: Options,
              return_z_loss: bool) -> tuple[Tensor, Optional[Tensor]]:
    """(loss, z-loss part or None), without the gradient: one read of the logits."""
    if input.dtype == torch.bfloat16 and _NP_BFLOAT16 is None:
        loss, zpart, _ = _widened_bfloat16(input, target, weight, sample_weight, opts,
                                           return_z_loss, compute_grad=False)
        return loss, zpart
    kw = _kwargs(opts, weight, sample_weight, return_z_loss)
    result: Any = xentfast.cross_entropy(numpy_view(input, "input"),
                                         numpy_view(target, "target"), **kw)
    if return_z_loss:
        return tensor_from(result[0], input.dtype), tensor_from(result[1], input.dtype)
    return tensor_from(result, input.dtype), None


def empty_grad(input: Tensor, axis: int) -> Tensor:
    """An uninitialised gradient for `input`, classes contiguous (the layout xentfast
    writes without a copy); the fake implementation allocates the same layout."""
    moved_shape = list(input.shape)
    moved_shape.append(moved_shape.pop(axis))
    return torch.empty(moved_shape, dtype=input.dtype,
                       device=input.device).movedim(-1, axis)


def loss_and_grad(input: Tensor, target: Tensor, weight: Optional[Tensor],
                  sample_weight: Optional[Tensor], opts: Options, return_z_loss: bool,
                  out: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor], Tensor]:
    """(loss, z-loss part or None, d loss / d input) in one fused pass.

    The gradient goes to `out` (``out is input`` overwrites the logits), else to a new
    tensor."""
    if input.dtype == torch.bfloat16 and _NP_BFLOAT16 is None:
        loss, zpart, grad = _widened_bfloat16(input, target, weight, sample_weight, opts,
                                              return_z_loss, compute_grad=True, out=out)
        assert grad is not None
        return loss, zpart, grad
    kw = _kwargs(opts, weight, sample_weight, return_z_loss)
    x = numpy_view(input, "input")
    g = None if out is None else x if out is input else numpy_view(out, "out")
    result: Any = xentfast.cross_entropy_and_grad(x, numpy_view(target, "target"), out=g,
                                                  **kw)
    loss = tensor_from(result[0], input.dtype)
    zpart = tensor_from(result[1], input.dtype) if return_z_loss else None
    if out is None:  # xentfast's new array: classes contiguous, as empty_grad()
        out = tensor_from(result[-1], input.dtype)
    return loss, zpart, out


def _widened_bfloat16(input: Tensor, target: Tensor, weight: Optional[Tensor],
                      sample_weight: Optional[Tensor], opts: Options, return_z_loss: bool,
                      compute_grad: bool, out: Optional[Tensor] = None
                      ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """bfloat16 logits without ml_dtypes: blocks of rows widened to float32 (exact),
    computed with the ``"none"`` reduction and the row scales of the requested one, so
    the gradient is rounded to bfloat16 once, from float32, as with ml_dtypes."""
    axis = opts.axis
    xm = input.detach().movedim(axis, -1)
    n_classes = xm.shape[-1]
    lead = xm.shape[:-1]
    rows = xm.reshape(-1, n_classes)  # a view when the layout allows, else one copy
    n_rows = rows.shape[0]
    prob = target.is_floating_point()
    tm = target.detach().movedim(axis, -1).reshape(-1, n_classes) if prob else None
    # every argument checked once, before any block is computed: in place, a bad
    # target in a late block must not find the early ones already overwritten
    w32 = _api._class_weight(None if weight is None else weight.detach().float().numpy(),
                             n_classes, np.float32)
    s = _api._sample_weight(None if sample_weight is None else sample_weight.detach().numpy(),
                            tuple(lead))
    # the mean's denominator, from the targets and weights alone
    if prob:
        denom = float(n_rows if s is None else _core.fixed_sum(s))
    else:
        t64, _, denom = _api._index_targets(target.detach().numpy(), tuple(lead), n_classes,
                                            opts.ignore_index, w32, s, 1)
    inv_denom = math.inf if denom == 0 else 1.0 / denom  # IEEE, as the reductions
    grad_rows = None
    if compute_grad:
        grad_out = out if out is not None else empty_grad(input, axis)
        dst = grad_out.movedim(axis, -1)
        # written directly when its rows are a view, else through one bfloat16 buffer
        grad_rows = (dst.view(-1, n_classes) if dst.is_contiguous()
                     else torch.empty(rows.shape, dtype=torch.bfloat16))
    row_loss = torch.empty(n_rows, dtype=torch.float64)
    row_z = torch.empty(n_rows, dtype=torch.float64)
    kw = _kwargs(opts._replace(axis=-1, reduction="none"), None, None, True)
    kw["weight"] = w32
    step = max(1, WIDEN_CHUNK_ELEMENTS // max(n_classes, 1))
    for start in range(0, n_rows, step):
        sl = slice(start, start + step)
        x32 = rows[sl].float()
        t_c = tm[sl].float().numpy() if prob else t64[sl]
        if s is not None:
            kw["sample_weight"] = s[sl]
        if compute_grad:
            # "none" with these row scales is the gradient of the requested reduction
            upstream = np.full(x32.shape[0], inv_denom if opts.reduction == "mean" else 1.0)
            loss_c, z_c, _ = xentfast.cross_entropy_and_grad(
                x32.numpy(), t_c, out=x32.numpy(), grad_output=upstream, **kw)
            grad_rows[sl] = x32  # type: ignore[index]
        else:
            loss_c, z_c = xentfast.cross_entropy(x32.numpy(), t_c, **kw)
        row_loss[sl] = torch.from_numpy(loss_c)
        row_z[sl] = torch.from_numpy(z_c)

    def reduce(v: Tensor) -> Tensor:
        if opts.reduction == "none":
            return v.reshape(lead).to(torch.bfloat16)
        total = _core.fixed_sum(v.numpy())  # the order of the NumPy path's sum
        if opts.reduction == "mean":
            total = _api._divide(total, denom)
        return torch.tensor(total, dtype=torch.bfloat16)

    grad = None
    if compute_grad:
        assert grad_rows is not None
        if not dst.is_contiguous():
            dst.copy_(grad_rows.reshape(xm.shape))
        grad = grad_out
    return reduce(row_loss), reduce(row_z) if return_z_loss else None, grad


# --------------------------------------------------------------------------------------
# the gradient as torch operations: differentiable, for second derivatives


def grad_formula(input: Tensor, target: Tensor, weight: Optional[Tensor],
                 sample_weight: Optional[Tensor], opts: Options, grad_output: Tensor) -> Tensor:
    """d loss / d input times `grad_output`, written with differentiable torch operations.

    The same formula as xentfast's kernels (see the README's "Exact semantics"): with
    z = c·tanh((x/T)/c), p = softmax(z), a the weighted (smoothed) target of each row and
    A = Σₖ aₖ, the row loss is A·lse − a·z + λ·lse², so d l / d z = (A + 2λ·lse)·p − a,
    times dz/dx = (1 − (z/c)²)/T and the reduction's row scale.  Autograd differentiates
    this again: second derivatives (``create_graph=True``, Hessians) come from here.
    """
    compute = torch.float32 if input.dtype in LOW_PRECISION else input.dtype
    axis = opts.axis
    x = input.movedim(axis, -1).to(compute)
    n_classes = x.shape[-1]
    u = x / opts.temperature
    if opts.softcap is not None:
        th = torch.tanh(u / opts.softcap)
        z = opts.softcap * th
        chain = (1 - th * th) / opts.temperature
    else:
        z = u
        chain = None
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    p = torch.exp(z - lse)
    w = None if weight is None else weight.to(compute)
    eps = opts.label_smoothing
    s = None if sample_weight is None else sample_weight.to(compute)
    if target.is_floating_point():
        smoothed = target.movedim(axis, -1).to(compute) * (1 - eps) + eps / n_classes
        a = smoothed if w is None else smoothed * w
        counted = None
        if opts.reduction == "mean":
            denom = (torch.tensor(float(p.shape[:-1].numel()), dtype=compute)
                     if s is None else s.sum())
    else:
        counted = target != opts.ignore_index
        y = torch.where(counted, target, 0).long()
        # one-hot by comparison: no data-dependent indexing, so vmap can batch it
        hot = (torch.arange(n_classes, device=x.device) == y[..., None]).to(compute)
        w_full = torch.ones(n_classes, dtype=compute, device=x.device) if w is None else w
        wy = torch.where(counted, (hot * w_full).sum(-1), 0)
        a = hot * ((1 - eps) * wy)[..., None]
        if eps:
            a = a + (eps / n_classes) * w_full * counted[..., None].to(compute)
        if opts.reduction == "mean":
            denom = (wy if s is None else wy * s).sum()
    total = a.sum(-1, keepdim=True)
    if opts.z_loss:
        total = total + 2 * opts.z_loss * lse
    dz = total * p - a
    if counted is not None:
        dz = torch.where(counted[..., None], dz, 0)
    if chain is not None:
        dz = dz * chain
    elif opts.temperature != 1.0:
        dz = dz / opts.temperature
    scale = grad_output.to(compute)
    if s is not None:
        scale = scale * s
    if opts.reduction == "mean":
        scale = scale / denom
    if scale.ndim:
        scale = scale[..., None]
    return (dz * scale).movedim(-1, axis).to(input.dtype)


# --------------------------------------------------------------------------------------
# the custom operator: what compilers, export and torch.func see


@torch.library.custom_op("xentfast::cross_entropy", mutates_args=())
def cross_entropy_op(input: Tensor, target: Tensor, weight: Optional[Tensor],
                     sample_weight: Optional[Tensor], axis: int, reduction: str,
                     ignore_index: int, label_smoothing: float, z_loss: float,
                     softcap: Optional[float], temperature: float,
                     num_threads: Optional[int], compute_grad: bool
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, z-loss part, gradient or an empty tensor) of xentfast's fused pass."""
    opts = Options(axis, reduction, ignore_index, label_smoothing, z_loss, softcap,
                   temperature, num_threads)
    if compute_grad:
        loss, zpart, grad = loss_and_grad(input, target, weight, sample_weight, opts, True)
    else:
        loss, zpart = loss_only(input, target, weight, sample_weight, opts, True)
        grad = input.new_empty(0)
    assert zpart is not None
    return loss, zpart, grad


def loss_shape(input: Tensor, target: Tensor, axis: int, reduction: str) -> list[int]:
    if reduction != "none":
        return []
    shape = list(input.shape)
    del shape[axis]
    return shape


@cross_entropy_op.register_fake
def _cross_entropy_fake(input: Tensor, target: Tensor, weight: Optional[Tensor],
                        sample_weight: Optional[Tensor], axis: int, reduction: str,
                        ignore_index: int, label_smoothing: float, z_loss: float,
                        softcap: Optional[float], temperature: float,
                        num_threads: Optional[int], compute_grad: bool
                        ) -> tuple[Tensor, Tensor, Tensor]:
    shape = loss_shape(input, target, axis, reduction)
    loss = input.new_empty(shape)
    grad = empty_grad(input, axis) if compute_grad else input.new_empty(0)
    return loss, input.new_empty(shape), grad


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    (input, target, weight, sample_weight, axis, reduction, ignore_index, label_smoothing,
     z_loss, softcap, temperature, num_threads, compute_grad) = inputs
    ctx.opts = Options(axis, reduction, ignore_index, label_smoothing, z_loss, softcap,
                       temperature, num_threads)
    ctx.compute_grad = compute_grad
    ctx.save_for_backward(input, target, weight, sample_weight,
                          output[2] if compute_grad else None)
    ctx.mark_non_differentiable(output[1], output[2])


def _backward(ctx: Any, grad_loss: Tensor, grad_zpart: Any, grad_grad: Any) -> tuple[Any, ...]:
    input, target, weight, sample_weight, grad = ctx.saved_tensors
    none = (None,) * 12
    if not ctx.needs_input_grad[0]:
        return (None,) + none
    if torch.is_grad_enabled() or grad is None:
        # a graph of the backward pass is being built (create_graph=True, torch.func):
        # the gradient as a differentiable function of the input
        return (grad_formula(input, target, weight, sample_weight, ctx.opts, grad_loss),) + none
    scale = grad_loss.unsqueeze(ctx.opts.axis) if grad_loss.ndim else grad_loss
    return (grad * scale,) + none


cross_entropy_op.register_autograd(_backward, setup_context=_setup_context)


@cross_entropy_op.register_vmap
def _cross_entropy_vmap(info: Any, in_dims: tuple[Any, ...], input: Tensor, target: Tensor,
                        weight: Optional[Tensor], sample_weight: Optional[Tensor], axis: int,
                        *rest: Any) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[int, ...]]:
    """One call per batch entry (the options may differ per entry only through tensors,
    so each entry is an independent cross-entropy)."""
    batch = info.batch_size
    tensors = (input, target, weight, sample_weight)

    def entry(t: Optional[Tensor], dim: Optional[int], i: int) -> Optional[Tensor]:
        if t is None or dim is None:
            return t
        return t.select(dim, i)

    results = [cross_entropy_op(*(entry(t, d, i) for t, d in zip(tensors, in_dims[:4])),
                                axis, *rest) for i in range(batch)]
    stacked = tuple(torch.stack([r[k] for r in results]) for k in range(3))
    return stacked, (0, 0, 0)  # type: ignore[return-value]
