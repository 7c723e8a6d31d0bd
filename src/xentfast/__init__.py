"""xentfast: fused, numerically stable softmax cross-entropy and its gradient.

One pass over float32 (or float64) logits computes the loss and, on
request, the gradient, with SIMD kernels (AVX-512, AVX2+FMA or scalar,
chosen at run time) and OpenMP threads over rows.

The whole public API:

- :func:`cross_entropy` and :func:`cross_entropy_and_grad`: PyTorch's
  ``F.cross_entropy`` semantics, fused forward (+ backward), with label
  smoothing, probability targets, sample weights, z-loss, softcap and
  temperature inside the same pass.
- :func:`evaluate` (per-row loss, lse, argmax, correctness, entropy; mean
  loss, accuracy, perplexity, bits per token, in one pass) and
  :func:`perplexity`.
- :func:`binary_cross_entropy_with_logits` and :func:`mean_squared_error`
  (each with an ``_and_grad`` twin): the element-wise losses.
- :func:`linear_cross_entropy` and :func:`linear_cross_entropy_and_grad`: a
  language-model head (``hidden @ W.T``) and its loss, with all gradients,
  without ever holding the N×V logits.
- :func:`logsumexp`, :func:`log_softmax`, :func:`softmax`: the building blocks.
- :func:`backend`, :func:`show_config`: which kernels run, and the build.
- :mod:`xentfast.reference`: the same functions in plain float64 NumPy (the
  test oracle).

The layers, from a call down (docs/design.md has the whole design)::

    xentfast.*  (_api.py)       validate, lay out rows, allocate, reduce
      -> _core (_core.pyx)      OpenMP teams over blocks of rows
        -> xf_plan (plan.c)     which algorithm the call runs, decided once
          -> kernels (C)        per-row math, one template per concern,
                                over a vector layer per ISA (scalar, AVX2,
                                AVX-512, NEON), chosen at run time

    apart: xentfast.reference (the oracle), xentfast.torch (PyTorch
    adapter), xentfast.bench (the benchmark)
"""
import os as _os

from . import _core
from ._api import (Evaluation, binary_cross_entropy_with_logits,
                   binary_cross_entropy_with_logits_and_grad, cross_entropy,
                   cross_entropy_and_grad, evaluate, log_softmax, logsumexp,
                   mean_squared_error, mean_squared_error_and_grad, perplexity, softmax)
from ._config import backend, show_config
from ._linear import linear_cross_entropy, linear_cross_entropy_and_grad
from . import _threads  # noqa: F401  (installs the fork hooks: threads in forked children)
from ._version import __version__

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

# Choose the kernels once per process; XENTFAST_BACKEND forces one.
_core.select_backend(_os.environ.get("XENTFAST_BACKEND", "").strip().lower())
