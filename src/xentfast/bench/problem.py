"""Benchmark problems: the shapes, the inputs (logits, targets, extras)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

import xentfast
from xentfast import _core

DEFAULT_SHAPE = (8192, 32000)
# The shapes of --all: three language-model vocabularies, a classifier,
# a binary model as two classes, few huge rows, a tiny call.
ALL_SHAPES = [(8192, 32000), (4096, 128256), (1024, 262144), (65536, 10), (1_000_000, 2),
              (1, 262144), (2, 262144), (64, 10)]
SWEEP_ELEMENTS = 2**27
SWEEP_CLASSES = (2, 10, 100, 1000, 32000, 262144)


def sweep_shapes(elements: Optional[int] = None, classes=None) -> list:
    """Shapes of about `elements` (:data:`SWEEP_ELEMENTS`) elements, one per
    class count in `classes` (:data:`SWEEP_CLASSES`)."""
    elements = SWEEP_ELEMENTS if elements is None else elements
    classes = SWEEP_CLASSES if classes is None else classes
    return [(max(1, round(elements / c)), c) for c in classes]



class Unavailable(Exception):
    """Raised by a setup when its method cannot run here (the message says why)."""


@dataclass(frozen=True, eq=False)
class Problem:
    """One benchmark problem: logits ``x`` (N, C), class indices ``target`` (N,).

    Further inputs some methods need (dense probability targets, sample and
    class weights) are built on first use by :meth:`extra` and kept, so they
    are prepared outside any timed region.  ``may_overwrite`` lets a method
    overwrite ``x`` (the in-place row in :func:`measure_rss`'s process).
    """

    x: np.ndarray
    target: np.ndarray
    threads: int
    seed: int = 0
    may_overwrite: bool = False
    extras: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def c(self) -> int:
        return self.x.shape[1]

    @property
    def elements(self) -> int:
        return self.x.size

    def extra(self, name: str) -> np.ndarray:
        """The input called `name` (see :data:`EXTRAS`), built once."""
        if name not in self.extras:
            builder = EXTRAS[name]
            rng = np.random.default_rng([self.seed, sorted(EXTRAS).index(name) + 1])
            self.extras[name] = builder(self, rng)
        return self.extras[name]

    def head(self, rows: int) -> "Problem":
        """The problem of the first `rows` rows (its extras built afresh)."""
        return Problem(self.x[:rows], self.target[:rows], self.threads, self.seed)

    def input_bytes(self) -> int:
        return self.x.nbytes + self.target.nbytes + sum(a.nbytes for a in self.extras.values())


def _probability_target(p: Problem, rng) -> np.ndarray:
    """Dense class probabilities (N, C): the softmax of standard-normal scores."""
    probs = np.empty_like(p.x)
    _fill_standard_normal(probs, rng)
    return xentfast.softmax(probs, axis=1, out=probs, num_threads=p.threads)


EXTRAS: dict = {
    "prob_target": _probability_target,
    "sample_weight": lambda p, rng: rng.uniform(0.5, 1.5, p.n).astype(p.x.dtype),
    "class_weight": lambda p, rng: rng.uniform(0.5, 1.5, p.c).astype(p.x.dtype),
}
"""Builders of :meth:`Problem.extra`'s inputs: ``builder(problem, rng) -> array``."""


_POOL = 1 << 22   # normal deviates drawn; larger arrays are tiled from them
_CHUNK = 1 << 16  # ... in chunks taken at random offsets of the pool


def _fill_standard_normal(out: np.ndarray, rng) -> None:
    """Standard-normal values into `out`.

    Arrays of up to 4 Mi elements are drawn directly; larger ones are filled
    with 64 Ki-element chunks of a 4 Mi-element pool of deviates taken at
    random offsets: the same distribution for a benchmark, about 30 times
    faster than drawing them all (which takes ~20 s for 2 GiB on a 2-core Xeon, once per
    shape and once per ``--rss`` process).
    """
    flat = out.reshape(-1)
    dtype = out.dtype.type
    if flat.size <= _POOL:
        rng.standard_normal(dtype=dtype, out=flat)
        return
    pool = rng.standard_normal(_POOL + _CHUNK, dtype=dtype)
    starts = rng.integers(0, _POOL, size=-(-flat.size // _CHUNK))
    for i, s in enumerate(starts):
        chunk = flat[i * _CHUNK:(i + 1) * _CHUNK]
        chunk[:] = pool[s:s + chunk.size]


def make_problem(n: int, c: int, dtype="float32", threads: Optional[int] = None,
                 seed: int = 0, may_overwrite: bool = False) -> Problem:
    """Standard-normal logits (N, C) of `dtype` and uniform int64 targets."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, c), dtype=np.dtype(dtype))
    _fill_standard_normal(x, rng)
    target = rng.integers(0, c, size=n, dtype=np.int64)
    return Problem(x, target, threads or _core.max_threads(), seed, may_overwrite)
