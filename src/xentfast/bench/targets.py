"""The performance targets the benchmark checks its measurements against.

Each target is a named constant saying what it protects.  The tables mark a
measurement that misses its target (``above`` in the options table, ``!`` in
the ``--all`` summary, ``above`` in the ``--loop`` table); missing one does
not change the exit status, which only correctness decides.
"""
from __future__ import annotations

# -- the options table (--options): time over the plain fused loss+grad, the
#    two measured run for run (see timing.measure's `paired`)
OPTION_RATIO_LIMIT = 1.3  # each loss option costs at most this much over the plain fused pass
PROBABILITY_RATIO_LIMIT = 1.6  # dense probability targets: a second N x C array to read

# -- the training-loop table (--loop)
LOOP_SETTING_RATIO_LIMIT = 1.2  # every loop within this of its best time under any thread setting

# -- the --all summary, per shape (see shape_targets)
STREAM_BOUND_FRACTION_MIN = 0.85  # large vocabularies: fused loss+grad (out=) at this
#   fraction of a read + streaming write of the logits, on all threads and on one
INPLACE_BOUND_FRACTION_MIN = 0.85  # ... in place: of a read + write in place
FORWARD_BOUND_FRACTION_MIN = 0.9  # ... the loss alone: of one read of the logits
FUSED_X_COPY_LIMIT = 1.1  # large vocabularies: fused loss+grad (out=) near one read + one write
INPLACE_X_COPY_LIMIT = 1.0  # ... and in place (out=logits) no slower than a scale-copy
FORWARD_X_MAX_LIMIT = 1.2  # the loss alone near one read of the logits (np.max)
VS_EAGER_MIN = 10.0  # speed-up over PyTorch eager cross_entropy + backward
VS_COMPILE_MIN = 8.0  # speed-up over torch.compile of the same
TEN_CLASSES_MIN_GELEM_PER_S = 1.5  # a classifier's many rows of 10 classes: G elements/s
TWO_CLASSES_MIN_GELEM_PER_S = 0.8  # a binary model's many rows of 2 classes: G elements/s
FEW_ROWS_THREAD_SPEEDUP_MIN = 1.7  # 1 or 2 huge rows still use the threads (row segments)
TINY_CALL_MAX_SECONDS = 5e-6  # a call on at most 1024 elements: the call's fixed cost


def shape_targets(n: int, c: int, threads: int) -> dict:
    """The targets of an N x C problem on `threads` threads: ``{column: (op, value)}``,
    the columns of the ``--all`` summary (see :func:`xentfast.bench.summarize`)."""
    t = {}
    if c >= 32000 and n >= 1024:
        t.update(of_bound=(">=", STREAM_BOUND_FRACTION_MIN),
                 of_bound_1t=(">=", STREAM_BOUND_FRACTION_MIN),
                 inplace_of_bound=(">=", INPLACE_BOUND_FRACTION_MIN),
                 fwd_of_bound=(">=", FORWARD_BOUND_FRACTION_MIN))
        t.update(x_copy=("<=", FUSED_X_COPY_LIMIT), inplace_x_copy=("<=", INPLACE_X_COPY_LIMIT),
                 fwd_x_max=("<=", FORWARD_X_MAX_LIMIT), vs_eager=(">=", VS_EAGER_MIN),
                 vs_compile=(">=", VS_COMPILE_MIN))
    if c == 10 and n >= 65536:
        t["gelem_per_s"] = (">=", TEN_CLASSES_MIN_GELEM_PER_S)
    if c == 2 and n >= 100_000:
        t["gelem_per_s"] = (">=", TWO_CLASSES_MIN_GELEM_PER_S)
    if n <= 2 and c >= 65536 and threads >= 2:
        t["thread_speedup"] = (">=", FEW_ROWS_THREAD_SPEEDUP_MIN)
    if n * c <= 1024:
        t["time"] = ("<=", TINY_CALL_MAX_SECONDS)
    return t
