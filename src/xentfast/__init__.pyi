# Type stubs of xentfast's public API (the implementation is in _api.py and _config.py).
#
# Return types follow the arguments where that is certain:
# * reduction="mean"/"sum" gives a Python float, reduction="none" an array;
# * an array of a floating dtype in gives that dtype back (per-row losses, gradients,
#   softmax); anything else array-like gives some floating dtype;
# * return_z_loss=True adds the z-loss part to the tuple.
# A `reduction` or `return_z_loss` that is not a literal falls through to the last
# overload, whose return type is the union of the others.
from dataclasses import dataclass
from typing import Any, Literal, SupportsIndex, TypeVar, overload

import numpy as np
from _typeshed import SupportsWrite
from numpy.typing import ArrayLike, NDArray

__version__: str

__all__ = [
    "Evaluation",
    "__version__",
    "backend",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_and_grad",
    "cross_entropy",
    "cross_entropy_and_grad",
    "evaluate",
    "linear_cross_entropy",
    "linear_cross_entropy_and_grad",
    "log_softmax",
    "logsumexp",
    "mean_squared_error",
    "mean_squared_error_and_grad",
    "perplexity",
    "show_config",
    "softmax",
]

_F = TypeVar("_F", bound=np.floating[Any])
_Floats = NDArray[np.floating[Any]]
_Reduced = Literal["mean", "sum"]
_Axes = SupportsIndex | tuple[SupportsIndex, ...] | None

# --------------------------------------------------------------------------------------
# cross_entropy

@overload
def cross_entropy(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: _Reduced = "mean", label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[False] = False,
) -> float: ...
@overload
def cross_entropy(
    logits: NDArray[_F], target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: Literal["none"], label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[False] = False,
) -> NDArray[_F]: ...
@overload
def cross_entropy(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: Literal["none"], label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[False] = False,
) -> _Floats: ...
@overload
def cross_entropy(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: _Reduced = "mean", label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[True],
) -> tuple[float, float]: ...
@overload
def cross_entropy(
    logits: NDArray[_F], target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: Literal["none"], label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[True],
) -> tuple[NDArray[_F], NDArray[_F]]: ...
@overload
def cross_entropy(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: Literal["none"], label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[True],
) -> tuple[_Floats, _Floats]: ...
@overload
def cross_entropy(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: bool = False,
) -> float | _Floats | tuple[float, float] | tuple[_Floats, _Floats]: ...

# --------------------------------------------------------------------------------------
# cross_entropy_and_grad

@overload
def cross_entropy_and_grad(
    logits: NDArray[_F], target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: _Reduced = "mean", label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[False] = False,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[float, NDArray[_F]]: ...
@overload
def cross_entropy_and_grad(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: _Reduced = "mean", label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[False] = False,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[float, _Floats]: ...
@overload
def cross_entropy_and_grad(
    logits: NDArray[_F], target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: Literal["none"], label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[False] = False,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[NDArray[_F], NDArray[_F]]: ...
@overload
def cross_entropy_and_grad(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: Literal["none"], label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[False] = False,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[_Floats, _Floats]: ...
@overload
def cross_entropy_and_grad(
    logits: NDArray[_F], target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: _Reduced = "mean", label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[True],
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[float, float, NDArray[_F]]: ...
@overload
def cross_entropy_and_grad(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: _Reduced = "mean", label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[True],
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[float, float, _Floats]: ...
@overload
def cross_entropy_and_grad(
    logits: NDArray[_F], target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: Literal["none"], label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[True],
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F]]: ...
@overload
def cross_entropy_and_grad(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: Literal["none"], label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: Literal[True],
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[_Floats, _Floats, _Floats]: ...
@overload
def cross_entropy_and_grad(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
    z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
    num_threads: int | None = None, return_z_loss: bool = False,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> (tuple[float | _Floats, _Floats]
      | tuple[float | _Floats, float | _Floats, _Floats]): ...

# --------------------------------------------------------------------------------------
# evaluation

@dataclass(frozen=True)
class Evaluation:
    """Everything :func:`evaluate` measures in one read of the logits."""

    loss: NDArray[np.float64]
    lse: NDArray[np.float64]
    argmax: NDArray[np.int64]
    correct: NDArray[np.bool_]
    entropy: NDArray[np.float64]
    mean_loss: float
    accuracy: float
    n_counted: int
    @property
    def perplexity(self) -> float: ...
    @property
    def bits_per_token(self) -> float: ...

def evaluate(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, temperature: float = 1.0, num_threads: int | None = None,
) -> Evaluation: ...
def perplexity(
    logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
    weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
    ignore_index: int = -100, label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, temperature: float = 1.0, num_threads: int | None = None,
) -> float: ...

# --------------------------------------------------------------------------------------
# linear + cross-entropy

@overload
def linear_cross_entropy(
    hidden: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, *,
    linear_bias: ArrayLike | None = None, weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None, ignore_index: int = -100,
    reduction: _Reduced = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, temperature: float = 1.0, chunk_size: int | None = None,
    num_threads: int | None = None,
) -> float: ...
@overload
def linear_cross_entropy(
    hidden: NDArray[_F], linear_weight: ArrayLike, target: ArrayLike, *,
    linear_bias: ArrayLike | None = None, weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None, ignore_index: int = -100,
    reduction: Literal["none"], label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, temperature: float = 1.0, chunk_size: int | None = None,
    num_threads: int | None = None,
) -> NDArray[_F]: ...
@overload
def linear_cross_entropy(
    hidden: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, *,
    linear_bias: ArrayLike | None = None, weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None, ignore_index: int = -100,
    reduction: str = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, temperature: float = 1.0, chunk_size: int | None = None,
    num_threads: int | None = None,
) -> float | _Floats: ...
@overload
def linear_cross_entropy_and_grad(
    hidden: NDArray[_F], linear_weight: ArrayLike, target: ArrayLike, *,
    linear_bias: ArrayLike | None = None, weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None, ignore_index: int = -100,
    reduction: _Reduced = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, temperature: float = 1.0, chunk_size: int | None = None,
    num_threads: int | None = None, grad_output: ArrayLike | None = None,
    out: tuple[NDArray[Any] | None, NDArray[Any] | None, NDArray[Any] | None] | None = None,
    accumulate: bool = False,
) -> tuple[float, NDArray[_F], NDArray[_F], NDArray[_F] | None]: ...
@overload
def linear_cross_entropy_and_grad(
    hidden: NDArray[_F], linear_weight: ArrayLike, target: ArrayLike, *,
    linear_bias: ArrayLike | None = None, weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None, ignore_index: int = -100,
    reduction: Literal["none"], label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, temperature: float = 1.0, chunk_size: int | None = None,
    num_threads: int | None = None, grad_output: ArrayLike | None = None,
    out: tuple[NDArray[Any] | None, NDArray[Any] | None, NDArray[Any] | None] | None = None,
    accumulate: bool = False,
) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F] | None]: ...
@overload
def linear_cross_entropy_and_grad(
    hidden: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, *,
    linear_bias: ArrayLike | None = None, weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None, ignore_index: int = -100,
    reduction: str = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, temperature: float = 1.0, chunk_size: int | None = None,
    num_threads: int | None = None, grad_output: ArrayLike | None = None,
    out: tuple[NDArray[Any] | None, NDArray[Any] | None, NDArray[Any] | None] | None = None,
    accumulate: bool = False,
) -> tuple[float | _Floats, _Floats, _Floats, _Floats | None]: ...

# --------------------------------------------------------------------------------------
# element-wise losses

@overload
def binary_cross_entropy_with_logits(
    logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None, reduction: _Reduced = "mean",
    label_smoothing: float = 0.0, num_threads: int | None = None,
) -> float: ...
@overload
def binary_cross_entropy_with_logits(
    logits: NDArray[_F], target: ArrayLike, *, weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None, reduction: Literal["none"],
    label_smoothing: float = 0.0, num_threads: int | None = None,
) -> NDArray[_F]: ...
@overload
def binary_cross_entropy_with_logits(
    logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None, reduction: Literal["none"],
    label_smoothing: float = 0.0, num_threads: int | None = None,
) -> _Floats: ...
@overload
def binary_cross_entropy_with_logits(
    logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None, reduction: str = "mean",
    label_smoothing: float = 0.0, num_threads: int | None = None,
) -> float | _Floats: ...
@overload
def binary_cross_entropy_with_logits_and_grad(
    logits: NDArray[_F], target: ArrayLike, *, weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None, reduction: _Reduced = "mean",
    label_smoothing: float = 0.0, num_threads: int | None = None,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[float, NDArray[_F]]: ...
@overload
def binary_cross_entropy_with_logits_and_grad(
    logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None, reduction: _Reduced = "mean",
    label_smoothing: float = 0.0, num_threads: int | None = None,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[float, _Floats]: ...
@overload
def binary_cross_entropy_with_logits_and_grad(
    logits: NDArray[_F], target: ArrayLike, *, weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None, reduction: Literal["none"],
    label_smoothing: float = 0.0, num_threads: int | None = None,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[NDArray[_F], NDArray[_F]]: ...
@overload
def binary_cross_entropy_with_logits_and_grad(
    logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None, reduction: Literal["none"],
    label_smoothing: float = 0.0, num_threads: int | None = None,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[_Floats, _Floats]: ...
@overload
def binary_cross_entropy_with_logits_and_grad(
    logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None, reduction: str = "mean",
    label_smoothing: float = 0.0, num_threads: int | None = None,
    grad_output: ArrayLike | None = None, out: NDArray[Any] | None = None,
) -> tuple[float | _Floats, _Floats]: ...
@overload
def mean_squared_error(
    pred: ArrayLike, target: ArrayLike, *, reduction: _Reduced = "mean",
    num_threads: int | None = None,
) -> float: ...
@overload
def mean_squared_error(
    pred: NDArray[_F], target: ArrayLike, *, reduction: Literal["none"],
    num_threads: int | None = None,
) -> NDArray[_F]: ...
@overload
def mean_squared_error(
    pred: ArrayLike, target: ArrayLike, *, reduction: Literal["none"],
    num_threads: int | None = None,
) -> _Floats: ...
@overload
def mean_squared_error(
    pred: ArrayLike, target: ArrayLike, *, reduction: str = "mean",
    num_threads: int | None = None,
) -> float | _Floats: ...
@overload
def mean_squared_error_and_grad(
    pred: NDArray[_F], target: ArrayLike, *, reduction: _Reduced = "mean",
    num_threads: int | None = None, grad_output: ArrayLike | None = None,
    out: NDArray[Any] | None = None,
) -> tuple[float, NDArray[_F]]: ...
@overload
def mean_squared_error_and_grad(
    pred: ArrayLike, target: ArrayLike, *, reduction: _Reduced = "mean",
    num_threads: int | None = None, grad_output: ArrayLike | None = None,
    out: NDArray[Any] | None = None,
) -> tuple[float, _Floats]: ...
@overload
def mean_squared_error_and_grad(
    pred: NDArray[_F], target: ArrayLike, *, reduction: Literal["none"],
    num_threads: int | None = None, grad_output: ArrayLike | None = None,
    out: NDArray[Any] | None = None,
) -> tuple[NDArray[_F], NDArray[_F]]: ...
@overload
def mean_squared_error_and_grad(
    pred: ArrayLike, target: ArrayLike, *, reduction: Literal["none"],
    num_threads: int | None = None, grad_output: ArrayLike | None = None,
    out: NDArray[Any] | None = None,
) -> tuple[_Floats, _Floats]: ...
@overload
def mean_squared_error_and_grad(
    pred: ArrayLike, target: ArrayLike, *, reduction: str = "mean",
    num_threads: int | None = None, grad_output: ArrayLike | None = None,
    out: NDArray[Any] | None = None,
) -> tuple[float | _Floats, _Floats]: ...

# --------------------------------------------------------------------------------------
# building blocks

@overload
def logsumexp(
    x: NDArray[_F], axis: None = None, keepdims: Literal[False] = False, *,
    out: None = None, num_threads: int | None = None,
) -> _F: ...
@overload
def logsumexp(
    x: NDArray[_F], axis: _Axes = None, keepdims: bool = False, *,
    out: NDArray[Any] | None = None, num_threads: int | None = None,
) -> NDArray[_F] | _F: ...
@overload
def logsumexp(
    x: ArrayLike, axis: None = None, keepdims: Literal[False] = False, *,
    out: None = None, num_threads: int | None = None,
) -> np.floating[Any]: ...
@overload
def logsumexp(
    x: ArrayLike, axis: _Axes = None, keepdims: bool = False, *,
    out: NDArray[Any] | None = None, num_threads: int | None = None,
) -> _Floats | np.floating[Any]: ...
@overload
def softmax(
    x: NDArray[_F], axis: _Axes = -1, *, out: NDArray[Any] | None = None,
    num_threads: int | None = None,
) -> NDArray[_F]: ...
@overload
def softmax(
    x: ArrayLike, axis: _Axes = -1, *, out: NDArray[Any] | None = None,
    num_threads: int | None = None,
) -> _Floats: ...
@overload
def log_softmax(
    x: NDArray[_F], axis: _Axes = -1, *, out: NDArray[Any] | None = None,
    num_threads: int | None = None,
) -> NDArray[_F]: ...
@overload
def log_softmax(
    x: ArrayLike, axis: _Axes = -1, *, out: NDArray[Any] | None = None,
    num_threads: int | None = None,
) -> _Floats: ...

# --------------------------------------------------------------------------------------
# configuration

def backend() -> str: ...
def show_config(file: SupportsWrite[str] | None = None) -> None: ...
