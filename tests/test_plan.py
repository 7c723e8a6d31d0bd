"""The plan (kernels/plan.c): which algorithm runs, and that every option
reaches every algorithm it can run on.

A new loss option must be told to ``xf_plan``: the narrow, split and shared
kernels run only the plain loss, so an option the plan does not know about
would be silently ignored there.  ``test_every_option_is_listed`` fails
until the option is listed in OPTION_VALUES below, and then
``test_option_on_every_layout`` checks it against the oracle on the layouts
that reach the narrow, split, shared and plain kernels, on every backend.
"""
import inspect
import os
import shutil
import sys

import numpy as np
import pytest

import xentfast
from xentfast import _core

from helpers import assert_grad_close, assert_loss_close, oracle

# A non-default value of every option of cross_entropy_and_grad, as keyword
# arguments (the class weights and probability targets are built per shape).
OPTION_VALUES = {
    "weight": "class weights",
    "sample_weight": "row weights",
    "ignore_index": 3,
    "reduction": "sum",
    "label_smoothing": 0.1,
    "z_loss": 1e-3,
    "softcap": 20.0,
    "temperature": 1.7,
    "grad_output": 0.5,
}
# Arguments that are not loss options (layout, output, threads, extra outputs).
NOT_OPTIONS = {"logits", "target", "axis", "num_threads", "out", "return_z_loss"}

# (rows, classes, threads): what the plan picks for the plain loss on them
# (shared: the gradient written over the logits)
LAYOUTS = {"narrow": (80, 10, 1), "split": (2, 200000, 2), "plain": (24, 3000, 1),
           "shared": (40, _core.SHARED_MIN_CLASSES + 77, 2)}


def test_every_option_is_listed():
    params = set(inspect.signature(xentfast.cross_entropy_and_grad).parameters)
    unlisted = params - set(OPTION_VALUES) - NOT_OPTIONS
    assert not unlisted, (
        f"new options {sorted(unlisted)}: tell xf_plan (kernels/plan.c) whether they need the "
        "general row, then list them in OPTION_VALUES")


def _kwargs(option, rng, n, c):
    value = OPTION_VALUES[option]
    if option == "weight":
        value = rng.uniform(0.5, 2.0, c)
    elif option == "sample_weight":
        value = rng.uniform(0.0, 2.0, n)
    return {option: value}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("option", sorted(OPTION_VALUES))
def test_option_on_every_layout(backend, option, layout):
    rng = np.random.default_rng(7)
    n, c, threads = LAYOUTS[layout]
    x = (rng.standard_normal((n, c)) * 2).astype(np.float32)
    t = rng.integers(0, c, n)
    t[::5] = 3  # rows for ignore_index = 3
    kw = _kwargs(option, rng, n, c)
    want_loss, want_grad = oracle(x, t, **kw)
    if layout == "shared":
        kw["out"] = x  # in place: the oracle has read x already
    loss, grad = xentfast.cross_entropy_and_grad(x, t, num_threads=threads, **kw)
    tol = 1e-5 if option == "softcap" else 1e-6
    assert_loss_close(loss, want_loss, rtol=tol)
    assert_grad_close(grad, want_grad, atol=tol)


def test_layouts_reach_their_plans(backend):
    """The layouts above reach the plans their names say (where the backend
    has them), so the option test runs every plain-loss kernel."""
    narrow = _core.plan_of(np.zeros((80, 10), np.float32))
    assert narrow == ("plain" if backend == "scalar" else "narrow")
    assert _core.plan_of(np.zeros((2, 200000), np.float32), num_threads=2) == "split"
    assert _core.plan_of(np.zeros((24, 3000), np.float32)) == "plain"
    assert _core.plan_of(np.zeros((40, _core.SHARED_MIN_CLASSES + 77), np.float32),
                         mode=_core.MODE_GRAD, num_threads=2, in_place=True) == "shared"


@pytest.mark.parametrize("options, expected", [
    ({"label_smoothing": 0.1}, "general"),
    ({"inv_temperature": 0.5}, "general"),
    ({"target_prob": True, "targets": False}, "general"),
    ({"mode": _core.MODE_EVAL}, "general"),
    ({"class_weight": True}, "plain"),
    ({"row_weight": True, "z_loss": 0.1, "row_scale": True}, "plain"),
    ({"softcap": 30.0}, "softcap_one_loop"),
    ({"softcap": 64.0}, "softcap_one_loop"),
    ({"softcap": 64.5}, "softcap"),
    ({"softcap": 30.0, "mode": _core.MODE_EVAL}, "softcap"),
])
def test_plan_of_options(backend, options, expected):
    """Options the narrow and split kernels cannot run send a call to the
    general row; the one-loop softcap exists only where the layer has it."""
    x = np.zeros((64, 3000), np.float32)
    if expected == "softcap_one_loop" and backend not in ("avx512", "neon"):
        expected = "softcap"
    assert _core.plan_of(x, **options) == expected
    # the same options on a narrow and on a split layout
    narrow = _core.plan_of(np.zeros((64, 10), np.float32), **options)
    split = _core.plan_of(np.zeros((2, 200000), np.float32), num_threads=2, **options)
    if expected != "plain":
        assert narrow == split == expected
    else:
        assert narrow == ("plain" if backend == "scalar" else "narrow")
        assert split == "split"


def test_plan_of_shapes():
    """float64 rows have no narrow kernel; one class never takes the one
    loop (its loss must be exactly 0); a serial call never splits."""
    assert _core.plan_of(np.zeros((64, 10), np.float64)) == "plain"
    assert _core.plan_of(np.zeros((64, 1), np.float32), softcap=30.0) == "softcap"
    assert _core.plan_of(np.zeros((2, 200000), np.float32), num_threads=1) == "plain"
    assert _core.plan_of(np.zeros((64, 40000), np.float32), num_threads=2) == "plain"
    assert _core.plan_of(np.zeros((2, 200000), np.float32), mode=_core.MODE_LOG_SOFTMAX,
                         num_threads=2, targets=False) == "plain"
    # shared rows: only the gradient in place, float32, from SHARED_MIN_CLASSES, on a team
    wide = np.zeros((40, _core.SHARED_MIN_CLASSES), np.float32)
    assert _core.plan_of(wide, mode=_core.MODE_GRAD, num_threads=2, in_place=True) == "shared"
    narrower = np.zeros((40, _core.SHARED_MIN_CLASSES - 1), np.float32)
    assert _core.plan_of(narrower, mode=_core.MODE_GRAD, num_threads=2, in_place=True) == "plain"
    assert _core.plan_of(wide, mode=_core.MODE_GRAD, num_threads=2) == "plain"
    assert _core.plan_of(wide, mode=_core.MODE_GRAD, num_threads=1, in_place=True) == "plain"
    assert _core.plan_of(wide, mode=_core.MODE_SOFTMAX, num_threads=2, in_place=True) == "plain"
    assert _core.plan_of(wide[:, :-1], mode=_core.MODE_GRAD, num_threads=2,
                         in_place=True) == "plain"
    assert _core.plan_of(wide.astype(np.float64), mode=_core.MODE_GRAD, num_threads=2,
                         in_place=True) == "plain"


@pytest.mark.parametrize("threads", [2, 3])
def test_shared_rows_equal_the_row_loop(backend, threads):
    """In place over long rows, a team shares each row (rows_shared.h): its
    losses and gradient are bit for bit the row loop's, with ignored rows,
    fully masked segments, a NaN and a +inf logit, class and row weights,
    z-loss and an upstream gradient, and whether the team splits the
    segments evenly or not (test_shared_rows_on_any_team: small parts)."""
    rng = np.random.default_rng(11)
    n, c = 37, _core.SHARED_MIN_CLASSES + 77  # a short last segment
    x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    t = rng.integers(0, c, n)
    t[[2, 9, 10]] = -100  # ignored, two in a row
    x[4, 2048:6144] = -np.inf  # two fully masked segments
    x[5, :] = -np.inf  # every class masked
    t[5] = 7
    x[6, 1000] = np.nan
    x[7, 150000] = np.inf
    t[8] = c - 1  # the target in the short last segment
    kw = dict(weight=rng.uniform(0.5, 2.0, c).astype(np.float32),
              sample_weight=rng.uniform(0.0, 2.0, n), z_loss=1e-3, grad_output=0.5,
              reduction="none")
    assert _core.plan_of(x, mode=_core.MODE_GRAD, num_threads=threads, in_place=True) == "shared"
    want_loss, want_grad = xentfast.cross_entropy_and_grad(x, t, num_threads=1, **kw)
    before = _core.parallel_regions()[0]
    loss, grad = xentfast.cross_entropy_and_grad(x, t, num_threads=threads, out=x, **kw)
    regions, team = _core.parallel_regions()
    assert regions == before + 1 and team == threads
    assert np.shares_memory(grad, x)
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(grad, want_grad)


def test_shared_rows_on_any_team():
    """The shared rows' team on parts of a few segments (as teams of 24
    threads or more have them at 196608 classes), where a member takes the
    row before's statistics at its last segment or past it, on members with
    no segment, and as a team of one: small rows, which the plan never
    gives the team, on teams of 1, 2 and 3.  tools/neon/harness.c, built
    for this machine with its scalar kernels, calls the team directly; its
    outputs against the float64 oracle and bit for bit between the teams
    (the NEON build runs the same cases under qemu)."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build the harness")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "tools", "neon"))
    import neon_cases as nc
    cases = [c for c in nc.corpus() if c["kind"] == "rows" and c["in_place"] == "shared"]
    assert len(cases) == 3
    name, results, _ = nc.run(cases, host=True)
    assert name == "scalar"
    assert all(r["plan"] == "shared" for runs in results for r in runs)
    _, fails = nc.check_all(cases, results)
    assert fails == []
