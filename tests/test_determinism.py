"""Determinism: every option gives bitwise the same loss and gradient for any
thread count (1, 2, 3, 8) and across repeated runs, on every backend.

Shapes are chosen to split differently over threads: many short rows (the
narrow-row kernel's 16-row blocks), rows across the 2048-element segment,
few very long rows, a 3-d class axis in the middle, and a float16 input long
enough to be widened in several chunks.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import xentfast

THREADS = (1, 2, 3, 8)
REPEATS = 2


def _bits(value):
    if isinstance(value, tuple):
        return tuple(_bits(v) for v in value)
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (float, np.floating)):
        return np.float64(value).tobytes()
    if hasattr(value, "__dataclass_fields__"):
        return tuple((k, _bits(getattr(value, k))) for k in sorted(value.__dataclass_fields__))
    return repr(value)


def _ce_options():
    params = inspect.signature(xentfast.cross_entropy).parameters
    opts = [("plain", {}), ("sum", {"reduction": "sum"}), ("none", {"reduction": "none"}),
            ("weight", {"weight": "W"}), ("ignore_index", {"ignore_index": 3})]
    for key, value in (("label_smoothing", 0.1), ("z_loss", 1e-3), ("softcap", 8.0),
                       ("temperature", 0.7)):
        if key in params:
            opts.append((key, {key: value}))
    if "sample_weight" in params:
        opts.append(("sample_weight", {"sample_weight": "S"}))
    if all(k in params for k in ("label_smoothing", "z_loss", "softcap", "temperature")):
        opts.append(("all", {"label_smoothing": 0.05, "z_loss": 1e-4, "softcap": 15.0,
                             "temperature": 1.3, "weight": "W", "reduction": "sum"}))
    opts.append(("probabilities", {"_target": "P"}))
    return opts


SHAPES = {
    "narrow": ((4099, 10), -1),        # > 32768 elements: threads split the rows
    "C33": ((2048, 33), -1),
    "segments": ((40, 5000), -1),      # rows of 3 segments of 2048
    "long": ((3, 70000), -1),          # fewer rows than threads
    "axis1": ((16, 300, 12), 1),       # class axis in the middle: a copy
}


def _problem(shape, axis, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    c = shape[axis]
    lead = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    t = rng.integers(0, c, lead)
    t.reshape(-1)[rng.random(t.size) < 0.1] = -100
    p = rng.random(shape)
    p /= p.sum(axis=axis, keepdims=True)
    return {"X": x, "T": t, "P": p.astype(dtype), "W": rng.uniform(0.2, 2.0, c),
            "S": rng.uniform(0.0, 2.0, lead)}


def _resolve(opts, data):
    kw = {}
    for k, v in opts.items():
        if k.startswith("_"):
            continue
        kw[k] = data[v] if isinstance(v, str) and v in data else v
    return kw


def _check_deterministic(call):
    reference = _bits(call(1))
    for _ in range(REPEATS):
        for threads in THREADS:
            got = _bits(call(threads))
            assert got == reference, f"differs with num_threads={threads}"


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("option", [name for name, _ in _ce_options()])
def test_cross_entropy_and_grad_deterministic(backend, shape_name, option):
    shape, axis = SHAPES[shape_name]
    opts = dict(_ce_options())[option]
    data = _problem(shape, axis, np.float32)
    target = data[opts.get("_target", "T")]
    if option == "ignore_index":
        target = np.where(target == -100, 3, target)
    kw = _resolve(opts, data)

    def call(threads):
        return xentfast.cross_entropy_and_grad(data["X"], target, axis=axis,
                                               num_threads=threads, **kw)

    _check_deterministic(call)
    _check_deterministic(lambda threads: xentfast.cross_entropy(
        data["X"], target, axis=axis, num_threads=threads, **kw))


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_dtypes_deterministic(backend, dtype):
    # float16: 1.2 M elements are widened to float32 in more than one chunk
    shape = (120_000, 10) if dtype == np.float16 else (600, 700)
    data = _problem(shape, -1, dtype)
    kw = {"weight": data["W"]}
    if "label_smoothing" in inspect.signature(xentfast.cross_entropy).parameters:
        kw["label_smoothing"] = 0.1
    _check_deterministic(lambda threads: xentfast.cross_entropy_and_grad(
        data["X"], data["T"], num_threads=threads, **kw))


@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_building_blocks_deterministic(backend, shape_name):
    shape, axis = SHAPES[shape_name]
    x = _problem(shape, axis, np.float32)["X"]
    for name in ("softmax", "log_softmax"):
        fn = getattr(xentfast, name)
        _check_deterministic(lambda threads, fn=fn: fn(x, axis=axis, num_threads=threads))
    _check_deterministic(lambda threads: xentfast.logsumexp(x, axis=axis, num_threads=threads))
    _check_deterministic(lambda threads: xentfast.logsumexp(x, num_threads=threads))


@pytest.mark.parametrize("shape_name", ["narrow", "segments", "axis1"])
def test_evaluate_and_perplexity_deterministic(backend, shape_name):
    shape, axis = SHAPES[shape_name]
    data = _problem(shape, axis, np.float32)
    _check_deterministic(lambda threads: xentfast.evaluate(
        data["X"], data["T"], axis=axis, num_threads=threads))
    _check_deterministic(lambda threads: xentfast.perplexity(
        data["X"], data["T"], axis=axis, num_threads=threads))


@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits_and_grad",
                                  "mean_squared_error_and_grad"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_elementwise_deterministic(backend, name, reduction):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 37)).astype(np.float32)
    y = rng.random((3000, 37)).astype(np.float32)
    kw = {}
    if name.startswith("binary"):
        kw = {"weight": rng.random(37).astype(np.float32), "pos_weight": rng.random(37) + 0.5}
    fn = getattr(xentfast, name)
    _check_deterministic(lambda threads: fn(x, y, reduction=reduction, num_threads=threads,
                                            **kw))


def test_default_thread_count_matches_one_thread(backend):
    data = _problem((4099, 10), -1, np.float32)
    assert _bits(xentfast.cross_entropy_and_grad(data["X"], data["T"])) == _bits(
        xentfast.cross_entropy_and_grad(data["X"], data["T"], num_threads=1))
