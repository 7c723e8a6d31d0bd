"""Cross-entropy of a batch spread over processes: rows, vocabulary, or both.

When a model outgrows one process its loss is computed from pieces: each
process holds different rows (data parallelism), or a slice of the class axis
of the same rows (vocabulary parallelism, as Megatron-LM shards the output
layer), or both (a 2-D grid).  :func:`cross_entropy` and
:func:`cross_entropy_and_grad` return exactly the loss and gradient of the
whole batch, as the single-process functions would on the gathered logits,
while every process exchanges O(rows) numbers, never logits:

* **vocabulary sharded** (``vocab_comm``): each shard takes its rows'
  statistics in one read of its logits (max M, sum of exponentials S, the
  target's logit when the target is on it, the smoothing and
  probability-target sums); the shards then add up, in one SUM, each row's S
  rescaled to a common reference and the target's logit (2 floats per row
  for the plain loss, +1 with class weights, +1 with label smoothing, 3 for
  probability targets).  The reference is the largest row max of the batch,
  which the agreement (below) already carries, when every row's max lies
  within 600 nats of it; otherwise (and without `vocab_start`) the shards
  first agree on each row's max (a MAX of one float per row), as
  Megatron-LM's ``VocabParallelCrossEntropy``
  (``megatron/core/tensor_parallel/cross_entropy.py``) always does
  (flash-attn's cross-entropy with a ``process_group`` gathers each shard's
  lse instead: one float per row per rank).  The gradient is then written
  in a second read of the logits against the global statistics
  (``include/xentfast/rows_shard.h``).  Two passes are unavoidable: no
  gradient entry can be written before every shard's statistics are in.
  The loss alone takes one pass.
* **data sharded** (``data_comm``): each process runs the single-process
  kernel on its rows; the reduced loss and the ``"mean"`` denominator (the
  summed weights of the counted rows) are summed over the processes in one
  collective (a ``"mean"`` loss+grad sums the denominator before its
  kernel, whose gradient needs it, and the loss after: two).

Communication per call, independent of the vocabulary: with `vocab_start`
given, two collectives in the forward pass (the agreement vector, then the
rows' SUM: 16 N + 8 bytes per rank for the plain loss), three without it
or when the rows' maxima spread over more than 600 nats (+8 N bytes);
under `data_comm` one collective of a few scalars (two for a ``"mean"``
loss+grad); none in a backward pass (``xentfast._torch_distributed``).
The agreement vector holds 8 float64 per rank of the communicator and 4
shared ones (``docs/distributed.md`` counts it all).

:func:`evaluate` and :func:`perplexity` give the whole batch's mean loss,
accuracy and perplexity, as :func:`xentfast.evaluate` on the gathered logits.

Label smoothing spreads ε over the *global* vocabulary, ε/C with C the whole
vocabulary (PyTorch's semantics, so a sharded call equals the unsharded one),
not over each shard's classes as Megatron-LM's sharded smoothing does.

A communicator is an mpi4py ``MPI.Comm`` or a ``torch.distributed``
``ProcessGroup`` (CPU tensors, e.g. gloo), recognised by duck typing: this
module imports neither.  Every collective of a call is made by every rank of
its communicator, in the same order, whatever its arguments: each rank
checks its own arguments first (no kernel runs on bad input), and the first
collective on each communicator, whose size depends only on the
communicator's size, carries every rank's verdict and a fingerprint of what
the ranks must hold alike.  A bad argument on one rank, or ranks that
disagree (other rows, options, targets or shards), make every rank gather
the ranks' headers and raise the same error, instead of leaving the others
waiting.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

from . import _api, _core
from ._api import _EMPTY_F64, _EMPTY_I64

__all__ = ["cross_entropy", "cross_entropy_and_grad", "evaluate", "perplexity",
           "ShardedEvaluation"]

_SHARD = _core.SHARD_DOUBLES
_M, _LOG_S, _ZY, _WZ, _WTZ, _WT, _WY = range(7)
# targets as the shard kernels read them (rows_shard.h)
_IGNORED = -1
_ELSEWHERE = _core.TARGET_ELSEWHERE


# --------------------------------------------------------------------------
# communicators


class _Comm:
    """The collectives a call needs, over an mpi4py communicator or a
    torch.distributed process group."""

    def __init__(self, comm, name):
        self.comm, self.name = comm, name
        if all(hasattr(comm, a) for a in ("Allreduce", "Get_rank", "Get_size", "allgather")):
            self.kind = "mpi"
            self.rank, self.size = comm.Get_rank(), comm.Get_size()
        elif (type(comm).__module__.split(".")[0] == "torch"
              and callable(getattr(comm, "rank", None)) and callable(getattr(comm, "size", None))):
            self.kind = "torch"
            self.rank, self.size = comm.rank(), comm.size()
        else:
            raise TypeError(f"{name} must be an mpi4py MPI.Comm or a torch.distributed "
                            f"ProcessGroup, got {type(comm).__name__}")

    def same_as(self, other):
        if self.kind != other.kind:
            return False
        if self.kind == "mpi":
            from mpi4py import MPI
            return MPI.Comm.Compare(self.comm, other.comm) in (MPI.IDENT, MPI.CONGRUENT)
        return self.comm is other.comm

    def allgather(self, obj):
        """Every rank's `obj` (a small picklable value), in rank order."""
        if self.kind == "mpi":
            return self.comm.allgather(obj)
        import torch.distributed as dist
        out = [None] * self.size
        dist.all_gather_object(out, obj, group=self.comm)
        return out

    def allreduce(self, buf, op):
        """`buf` (C-contiguous float64) summed ("sum") or maximised ("max")
        over the ranks, in place."""
        if self.size == 1 or buf.size == 0:
            return buf
        if self.kind == "mpi":
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM if op == "sum" else MPI.MAX)
            return buf
        import torch
        import torch.distributed as dist
        dist.all_reduce(torch.from_numpy(buf), op=dist.ReduceOp.SUM if op == "sum"
                        else dist.ReduceOp.MAX, group=self.comm)
        return buf


# --------------------------------------------------------------------------
# validation: locally, then agreed on by every rank


class _ShardProblem(_api._Problem):
    """A validated call on one vocabulary shard: targets are global class
    indices, checked against the whole vocabulary once the shards' widths
    are known (_layout_of)."""

    def _targets(self, target):
        t = np.asarray(target)
        if t.dtype.kind == "f" or _api._is_low_precision(t.dtype):
            return super()._targets(target)  # probabilities: the shard's columns
        if t.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer class indices (or float class "
                            f"probabilities), got dtype {t.dtype}")
        if t.shape != tuple(self.lead_shape):
            raise ValueError(
                f"target must have the logits' shape without the class axis, "
                f"{tuple(self.lead_shape)}, got {t.shape}")
        if t.dtype == np.uint64 and t.size and t.max() > np.iinfo(np.int64).max:
            raise ValueError(f"target holds {t.max()}, outside the int64 range")
        self.target_prob = None
        self.target = _api._aligned(t, np.int64).reshape(-1)
        counted = self.target[self.target != self.ignore_index]
        self.weight_sum = float("nan")  # known once the shards combine (_vocab_rows)
        self.target_range = (int(counted.min()), int(counted.max())) if counted.size else None


def _raise(err):
    kind, message = err
    raise {"TypeError": TypeError, "ValueError": ValueError}.get(kind, RuntimeError)(message)


def _first_error(headers, comm):
    for rank, h in enumerate(headers):
        if h["role"] != comm.name:  # one communicator, two roles: no layout to agree on
            return ("ValueError", f"rank {rank} passed this communicator as {h['role']}, rank "
                    f"{comm.rank} as {comm.name}: every rank must pass the same communicators "
                    f"in the same roles")
    for rank, h in enumerate(headers):
        if h["error"] is not None:
            kind, message = h["error"]
            return kind, message if h.get("relayed") else f"rank {rank} of {comm.name}: {message}"
    return None


def _agree_vocab(headers, comm):
    """The shards' layout from every rank's header (the same on every rank),
    or the error every rank raises."""
    err = _first_error(headers, comm)
    if err:
        return None, err
    first = headers[0]
    for key, what in _VOCAB_ALIKE:
        for rank, h in enumerate(headers):
            if h[key] != first[key]:
                return None, ("ValueError", f"{comm.name}'s ranks must hold the same rows with the "
                              f"same arguments, but their {what} differ (rank 0 and rank {rank}): "
                              f"is vocab_comm the communicator over which the classes are split?")
    widths = [h["width"] for h in headers]
    starts = [h["vocab_start"] for h in headers]
    if any(s is None for s in starts) and any(s is not None for s in starts):
        return None, ("ValueError", "vocab_start must be given on every rank of vocab_comm or on "
                      "none (then the shards follow each other in rank order)")
    if starts[0] is None:
        starts = list(np.cumsum([0] + widths[:-1]).tolist())
    n_classes = int(sum(widths))
    end = 0
    for rank in sorted(range(len(widths)), key=lambda r: starts[r]):
        if starts[rank] != end:
            spans = ", ".join(f"rank {r}: [{starts[r]}, {starts[r] + widths[r]})"
                              for r in range(len(widths)))
            return None, ("ValueError", f"the shard widths are inconsistent with vocab_start: the "
                          f"shards must tile [0, {n_classes}) without gap or overlap, got {spans}")
        end += widths[rank]
    for rank, h in enumerate(headers):
        lo_hi = h["target_range"]
        if lo_hi is not None and (lo_hi[0] < 0 or lo_hi[1] >= n_classes):
            bad = lo_hi[0] if lo_hi[0] < 0 else lo_hi[1]
            return None, ("ValueError", f"target holds {bad}, which is not a class index in "
                          f"[0, {n_classes}) (the whole vocabulary) nor ignore_index")
    return (starts[comm.rank], n_classes), None


def _agree_data(headers, comm):
    err = _first_error(headers, comm)
    if err:
        return err
    first = headers[0]
    for key, what in _DATA_ALIKE:
        for rank, h in enumerate(headers):
            if h[key] != first[key]:
                return ("ValueError", f"{comm.name}'s ranks must hold the same classes with the "
                        f"same arguments, but their {what} differ (rank 0 and rank {rank}): is "
                        f"data_comm the communicator over which the rows are split?")
    return None


def _hash(a):
    return None if a is None else zlib.crc32(np.ascontiguousarray(a).view(np.uint8))


# --------------------------------------------------------------------------
# the agreement: riding on the first collective of each communicator
#
# Every rank validates its own arguments first (no kernel runs on bad input).
# Then the first collective of a call on each communicator, a SUM of one
# float64 vector, carries the agreement: each rank writes a few fields at its
# own place in the vector (the others add zeros there, so every rank receives
# every rank's fields exactly) and the shared slots after them carry
# data_comm's totals.  The fields: a flag for an argument error, the
# communicator's role, a 48-bit fingerprint of what the ranks must hold alike
# (exact in a float64), the shard's start and width, and the shard's
# statistics that let the rows' sums skip the MAX (_vocab_rows).  Only when a
# flag is up or the fingerprints differ do the ranks, all knowing it from the
# same vector, gather their headers (an object all-gather) to name the
# error, and raise it together.  The vector's size depends only on the
# communicator's size, never on a rank's arguments, so a rank whose arguments
# differ (other rows, another role) still makes the same collective.

_ERROR, _ROLE, _FINGERPRINT, _START, _WIDTH, _TOP, _FLOOR, _NONFINITE = range(8)
_FIELDS = 8
_SHARED = 4  # summed slots: data_comm's totals (evaluate's are 4)
_ROLES = {"vocab_comm": 1.0, "data_comm": 2.0}
# A vocabulary-sharded call rescales every shard's sums to one reference,
# the largest row max of the batch, instead of agreeing on each row's max
# (a MAX of a float per row), when every row's max lies within this many
# nats of that reference: e^-600 is a normal float64 (exp underflows below
# -708), so no row's sum loses precision.  Wider spreads (a row of huge
# logits beside ordinary ones, NaN or +inf logits) take the exact MAX.
_SPREAD = 600.0
# what vocab_comm's ranks must hold alike, and data_comm's, each with the words
# that name a difference (the fingerprints cover the same keys)
_VOCAB_ALIKE = (("lead_shape", "rows (the logits' shape without the class axis)"),
                ("target_hash", "targets"), ("options", "options"),
                ("sample_weight_hash", "sample_weight"), ("has_weight", "weight (given or not)"),
                ("dtype", "logits dtype"))
_DATA_ALIKE = (("vocab", "vocabulary shards (class range and vocabulary size)"),
               ("options", "options"), ("has_weight", "weight (given or not)"),
               ("weight_hash", "class weights"), ("prob", "kind of target"))
_VOCAB_KEYS = tuple(key for key, _ in _VOCAB_ALIKE)
_DATA_KEYS = tuple(key for key, _ in _DATA_ALIKE)


def _fingerprint(header, keys):
    """A 48-bit digest of the header's `keys`, exact in a float64."""
    digest = hashlib.blake2b(repr(tuple(header.get(k) for k in keys)).encode(),
                             digest_size=6).digest()
    return float(int.from_bytes(digest, "little"))


class _Call:
    """One call's validated problem and its agreement state on each communicator."""

    def __init__(self, p, error, vocab, data, vocab_start, opts):
        self.p, self.error, self.relayed = p, error, False
        self.vocab, self.data, self.vocab_start, self.opts = vocab, data, vocab_start, opts
        self.layout = self.table = None
        self.data_agreed = False
        self.vocab_header = None
        if vocab is not None:
            self.vocab_header = {"role": "vocab_comm", "error": error}
            if p is not None:
                self.vocab_header.update(
                    width=p.n_classes, vocab_start=vocab_start,
                    lead_shape=tuple(p.lead_shape), options=opts, dtype=str(p.logits.dtype),
                    target_hash=_hash(p.target), sample_weight_hash=_hash(p.sample_weight),
                    has_weight=p.weight is not None,
                    target_range=getattr(p, "target_range", None))

    def exchange(self, comm, header, keys, fields=(), shared=()):
        """The agreement collective on `comm`: (every rank's fields, the
        shared slots summed)."""
        buf = np.zeros(comm.size * _FIELDS + _SHARED)
        mine = buf[comm.rank * _FIELDS:(comm.rank + 1) * _FIELDS]
        mine[_ERROR] = header["error"] is not None
        mine[_ROLE] = _ROLES[comm.name]
        mine[_FINGERPRINT] = 0.0 if header["error"] is not None else _fingerprint(header, keys)
        for k, v in fields:
            mine[k] = v
        buf[comm.size * _FIELDS:][:len(shared)] = shared
        comm.allreduce(buf, "sum")
        table = buf[:comm.size * _FIELDS].reshape(comm.size, _FIELDS)
        trouble = (table[:, _ERROR].any() or (table[:, _ROLE] != _ROLES[comm.name]).any()
                   or (table[:, _FINGERPRINT] != table[0, _FINGERPRINT]).any())
        return table, buf[comm.size * _FIELDS:], trouble

    def agree_vocab(self, top=0.0, floor=0.0, nonfinite=1.0):
        """vocab_comm's agreement (with this shard's statistics, when pass 1
        has run): sets the layout, or raises on every rank."""
        p = self.p
        fields = [(_TOP, top), (_FLOOR, floor), (_NONFINITE, nonfinite)]
        if p is not None:
            fields += [(_START, 0.0 if self.vocab_start is None else self.vocab_start + 1.0),
                       (_WIDTH, float(p.n_classes))]
        table, _, trouble = self.exchange(self.vocab, self.vocab_header, _VOCAB_KEYS, fields)
        layout = None if trouble else _layout_of(table, self.vocab.rank,
                                                 self.vocab_header["target_range"])
        if layout is None:  # every rank knows it from the same vector: all gather
            _, error = _agree_vocab(self.vocab.allgather(self.vocab_header), self.vocab)
            self.fail(error or ("ValueError", "vocab_comm's ranks disagree on their arguments"))
        self.layout, self.table = layout, table

    def reduce_data(self, shared):
        """`shared` (a few floats) summed over data_comm; its first
        collective carries the agreement (raising on every rank on a
        disagreement).  Without data_comm, `shared` itself."""
        buf = np.array(shared, dtype=np.float64).reshape(-1)
        if self.data is None:
            return buf
        if self.data_agreed:
            return self.data.allreduce(buf, "sum")
        header = {"role": "data_comm", "error": self.error, "relayed": self.relayed}
        if self.error is None:
            p = self.p
            header.update(vocab=(self.layout, p.n_classes), options=self.opts,
                          has_weight=p.weight is not None, weight_hash=_hash(p.weight),
                          prob=p.target_prob is not None)
        _, sums, trouble = self.exchange(self.data, header, _DATA_KEYS, shared=buf)
        if trouble:
            _raise(_agree_data(self.data.allgather(header), self.data)
                   or ("ValueError", "data_comm's ranks disagree on their arguments"))
        self.data_agreed = True
        return sums[:len(buf)].copy()

    def fail(self, error):
        """Raise `error` on this rank, after handing it to data_comm's ranks
        (who would otherwise wait in their next collective)."""
        if self.data is not None:
            self.error, self.relayed = error, True
            self.reduce_data(())  # raises: the error rides on the agreement
        _raise(error)

    def fail_local(self):
        """This rank's arguments are bad: make the agreement collectives
        the others make, which raise the error on every rank."""
        if self.vocab is not None:
            self.agree_vocab()
        self.reduce_data(())
        _raise(self.error)  # not reached: the agreement raises


def _layout_of(table, rank, target_range):
    """(this rank's start, the vocabulary's size) from every rank's fields,
    or None when the shards do not tile the vocabulary or a target is
    outside it."""
    given = table[:, _START] > 0
    widths = table[:, _WIDTH].astype(np.int64)
    if given.any() and not given.all():
        return None
    starts = ((table[:, _START] - 1).astype(np.int64) if given.all()
              else np.concatenate([[0], np.cumsum(widths)[:-1]]))
    order = np.argsort(starts, kind="stable")
    ends = np.cumsum(widths[order])
    if (starts[order] != ends - widths[order]).any():
        return None
    n_classes = int(ends[-1])
    if target_range is not None and (target_range[0] < 0 or target_range[1] >= n_classes):
        return None
    return int(starts[rank]), n_classes


def _setup(logits, target, want_grad, vocab_comm, vocab_start, data_comm, options, grad_output,
           out):
    """Validates the call on this rank (no collective); returns its _Call."""
    vocab = None if vocab_comm is None else _Comm(vocab_comm, "vocab_comm")
    data = None if data_comm is None else _Comm(data_comm, "data_comm")
    if vocab is None and vocab_start is not None:
        raise ValueError("vocab_start needs vocab_comm")
    if vocab is None and data is None:
        raise ValueError("give vocab_comm, data_comm or both (for one process, call "
                         "xentfast.cross_entropy)")
    if vocab is not None and data is not None and vocab.same_as(data):
        raise ValueError("vocab_comm and data_comm are the same communicator: the classes and "
                         "the rows must be split over different ones")
    error, p = None, None
    try:
        if vocab_start is not None:
            if isinstance(vocab_start, bool) or not isinstance(vocab_start, (int, np.integer)):
                raise TypeError(f"vocab_start must be None or an int, got "
                                f"{type(vocab_start).__name__}")
            if vocab_start < 0:
                raise ValueError(f"vocab_start must be >= 0, got {vocab_start}")
        cls = _ShardProblem if vocab is not None else _api._Problem
        p = cls(logits, target, **options)
        if want_grad:
            p.grad_scales(grad_output)  # checks grad_output (its scale comes later)
            _api._grad_buffer(p.logits, p.axis, out)  # checks out
    except Exception as e:  # agreed on by every rank, then raised on each
        error, p = (type(e).__name__, str(e)), None
    opts = None if p is None else (
        p.reduction, p.ignore_index, tuple(sorted((k, v) for k, v in p.options.items()
                                                  if k not in ("row_weight", "weight_total"))),
        p.target_prob is not None, want_grad)
    start = None if vocab_start is None or error is not None else int(vocab_start)
    call = _Call(p, error, vocab, data, start, opts)
    if error is not None:
        call.fail_local()
    return call


# --------------------------------------------------------------------------
# the vocabulary shard's passes


_PER_ROW = ("target", "row_scale", "row_loss", "row_z_loss", "row_weight", "row_shard")


def _shard_run(x_rows, out_rows, mode, threads, *, target_prob=None, in_place=False, **args):
    """One shard-mode kernel call over all rows; float16/bfloat16 rows (and
    probability targets of another dtype) widened a bounded chunk of rows at
    a time, as _api._run does."""
    compute = _api._compute_dtype(x_rows.dtype)
    per_row = {k: v for k, v in args.items() if k in _PER_ROW}
    scalars = {k: v for k, v in args.items() if k not in _PER_ROW}

    def call(x, out, prob, rows, streaming):
        _core.rows(x, out, rows.get("target", _EMPTY_I64), scalars["weight"],
                   scalars["ignore_index"], scalars["scale"], rows.get("row_scale", _EMPTY_F64),
                   rows.get("row_loss", _EMPTY_F64), _EMPTY_F64, mode, streaming, threads,
                   target_prob=prob, row_shard=rows["row_shard"],
                   row_z_loss=rows.get("row_z_loss"), row_weight=rows.get("row_weight"),
                   **{k: v for k, v in scalars.items()
                      if k not in ("weight", "ignore_index", "scale")})

    if x_rows.dtype == compute and (target_prob is None or target_prob.dtype == compute):
        # streaming stores spare a large gradient its read-for-ownership,
        # unless it overwrites the logits (as _api._run)
        call(x_rows, out_rows, target_prob, per_row,
             out_rows is not None and not in_place and out_rows is not x_rows
             and out_rows.nbytes >= _api._STREAMING_BYTES)
        return
    n_rows, n_classes = x_rows.shape
    step = -(-max(1, _api._CHUNK_ELEMENTS // max(1, n_classes)) // 16) * 16
    for start in range(0, n_rows, step):
        sl = slice(start, start + step)
        x_c = np.ascontiguousarray(x_rows[sl], dtype=compute)
        prob = None if target_prob is None else target_prob[sl].astype(compute, copy=False)
        rows = {k: (v[sl] if v is not None and len(v) else v) for k, v in per_row.items()}
        call(x_c, None if out_rows is None else x_c, prob, rows, False)
        if out_rows is not None:
            out_rows[sl] = x_c


def _vocab_rows(call, want_grad, grad_output, out, want_z):
    """Per-row losses (and z-losses) of the local rows under vocabulary
    sharding, the gradient written when asked; returns (row_loss, row_z,
    weight_sum of this rank's rows, grad or None).  The ``"mean"``
    denominator is summed over data_comm here when the gradient needs it.

    The collectives on vocab_comm: with `vocab_start` given, the agreement
    (after pass 1, with this shard's largest and smallest row max), then one
    SUM of the rows' rescaled sums; without it, the agreement comes first
    (pass 1 needs this shard's start), then the rows' MAX and the SUM.  A
    batch whose row maxima spread over more than _SPREAD nats also takes
    the MAX."""
    p, vocab = call.p, call.vocab
    n = int(np.prod(p.lead_shape, dtype=np.int64))
    c_local = p.n_classes
    prob = p.target_prob is not None
    eps = p.options["label_smoothing"]
    weighted = p.weight is not None
    if call.vocab_start is None:
        call.agree_vocab()  # the widths, hence this shard's start
        start = call.layout[0]
    else:
        start = call.vocab_start
    stats = np.empty((n, _SHARD))
    common = dict(weight=p.weight, scale=1.0, label_smoothing=eps,
                  z_loss=p.options["z_loss"], softcap=p.options["softcap"],
                  inv_temperature=p.options["inv_temperature"], smoothing_classes=0,
                  row_weight=p.sample_weight)
    if prob:
        y_local = _EMPTY_I64
        prob_rows = _api._rows(p.target_prob)
        ignored = np.zeros(n, dtype=bool)
    else:
        y = p.target
        ignored = y == p.ignore_index
        here = ~ignored & (y >= start) & (y < start + c_local)
        y_local = np.where(ignored, _IGNORED, np.where(here, y - start, _ELSEWHERE))
        prob_rows = None
    x_rows = _api._rows(p.moved)
    # pass 1: this shard's statistics of every row (it writes nothing the
    # caller sees, so it may run before the agreement)
    _shard_run(x_rows, None, _core.MODE_SHARD_STATS, p.threads, target_prob=prob_rows,
               target=y_local, ignore_index=_IGNORED, row_shard=stats, weight_total=0.0,
               **common)
    m_local = stats[:, _M]
    reference = None
    if call.layout is None:
        # the agreement, with what decides whether one reference serves
        # every row: this shard's largest finite row max and smallest row max
        # (ignored rows, whose statistics pass 1 leaves 0, are left out)
        m_rows = m_local[~ignored]
        bad = bool(np.isnan(m_rows).any() or (m_rows == np.inf).any())
        finite = m_rows[m_rows > -np.inf] if not bad else m_rows[:0]
        call.agree_vocab(top=float(finite.max()) if finite.size else -np.inf,
                         floor=0.0 if bad else (float(m_rows.min()) if m_rows.size else np.inf),
                         nonfinite=float(bad))
        table = call.table
        top, floor = table[:, _TOP].max(), table[:, _FLOOR].max()
        # every row's max is at least floor (one shard's smallest), at most top
        if not table[:, _NONFINITE].any() and not top - floor > _SPREAD:
            # (no counted row with a finite max anywhere: any finite reference)
            reference = top if top > -np.inf else 0.0
    start, n_classes = call.layout
    with np.errstate(invalid="ignore", over="ignore"):
        if reference is None:
            # the global max of each row (NaN, which a MAX may drop, sent as
            # +inf: its NaN sum makes the row NaN below)
            m_global = np.where(np.isnan(m_local), np.inf, m_local)
            vocab.allreduce(m_global, "max")
            scaled = np.exp(stats[:, _LOG_S] + (m_local - m_global))
        else:
            scaled = np.exp(stats[:, _LOG_S] + (m_local - reference))
    scaled[m_local == -np.inf] = 0.0  # an all-masked shard adds nothing
    # then every sum at once: S rescaled to the reference (the global max of
    # the row, or of the batch), the target's z (and class weight) from its
    # one shard, the smoothing and probability sums, and the vocabulary's
    # total class weight
    cols = [_LOG_S] + ([_WTZ, _WT] if prob else [_ZY] + ([_WY] if weighted else []))
    if eps != 0:
        cols.append(_WZ)
    packed = np.empty(n * len(cols) + 1)
    sums = packed[:-1].reshape(n, len(cols))
    if not prob and weighted:
        w64 = p.weight.astype(np.float64)
        stats[:, _WY] = np.where(y_local >= 0, w64[np.clip(y_local, 0, c_local - 1)], 0.0)
    for j, c in enumerate(cols):
        sums[:, j] = scaled if c == _LOG_S else stats[:, c]
    packed[-1] = c_local if p.weight is None else float(np.sum(p.weight, dtype=np.float64))
    vocab.allreduce(packed, "sum")
    glob = np.zeros((n, _SHARD))
    with np.errstate(divide="ignore"):
        log_sum = np.log(sums[:, 0])
    if reference is None:
        glob[:, _M] = m_global
        glob[:, _LOG_S] = log_sum
    else:
        # the row's lse itself as its M (log S = 0): the kernels' row end
        # and gradient take lse = M + log S, and exp(z - M - log S)
        glob[:, _M] = reference + log_sum
    for j, c in enumerate(cols[1:], 1):
        glob[:, c] = sums[:, j]
    if not prob and not weighted:
        glob[:, _WY] = 1.0
    weight_total = float(packed[-1]) if p.weight is not None else float(n_classes)
    glob[ignored] = 0.0
    # this rank's share of the "mean" denominator: the counted rows' weights
    s = p.sample_weight
    if prob:
        weight_sum = float(n if s is None else np.sum(s))
    else:
        wy = glob[~ignored, _WY]
        weight_sum = float(np.sum(wy if s is None else wy * s[~ignored]))
    row_loss = np.empty(n)
    row_z = np.empty(n) if want_z else None
    common.update(weight_total=weight_total, smoothing_classes=n_classes)
    if not want_grad:
        _core.shard_finish(glob, y_local, _IGNORED, row_loss,
                           _EMPTY_F64 if row_z is None else row_z, _EMPTY_F64, target_prob=prob,
                           smoothing_classes=n_classes, label_smoothing=eps,
                           z_loss=p.options["z_loss"], weight_total=weight_total,
                           row_weight=p.sample_weight)
        return row_loss, row_z, weight_sum, None
    total_weight = (float(call.reduce_data([weight_sum])[0]) if p.reduction == "mean"
                    else weight_sum)
    scale, row_scale = _scales(p, grad_output, total_weight)
    grad, grad_moved, in_place = _api._grad_buffer(p.logits, p.axis, out)
    x_rows, out_rows, copy_back = _api._rows_and_out(p.moved, grad_moved)
    common["scale"] = scale
    # pass 2: the loss of every row and its gradient against the global statistics
    _shard_run(x_rows, out_rows, _core.MODE_SHARD_GRAD, p.threads, target_prob=prob_rows,
               in_place=in_place, target=y_local, ignore_index=_IGNORED, row_shard=glob,
               row_scale=row_scale, row_loss=row_loss, row_z_loss=row_z, **common)
    if copy_back:
        np.copyto(grad_moved, out_rows.reshape(grad_moved.shape))
    return row_loss, row_z, total_weight, grad


def _scales(p, grad_output, total_weight):
    """The gradient's (shared scale, per-row scales): the single-process
    ones, with the "mean" denominator of the whole batch."""
    p.weight_sum = total_weight
    return p.grad_scales(grad_output)


def _compute(logits, target, want_grad, vocab_comm, vocab_start, data_comm, grad_output, out,
             return_z_loss, options):
    call = _setup(logits, target, want_grad, vocab_comm, vocab_start, data_comm, options,
                  grad_output, out)
    p = call.p
    n = int(np.prod(p.lead_shape, dtype=np.int64))
    grad = None
    if call.vocab is not None:
        row_loss, row_z, weight_sum, grad = _vocab_rows(call, want_grad, grad_output, out,
                                                        return_z_loss)
        weight_summed = want_grad and p.reduction == "mean"
    else:
        row_z = np.empty(n) if return_z_loss else None
        weight_sum = p.weight_sum
        weight_summed = False
        if want_grad:
            if p.reduction == "mean":
                # the gradient's scale needs the whole batch's denominator:
                # data_comm's agreement carries it, before the kernel
                weight_sum = float(call.reduce_data([weight_sum])[0])
                weight_summed = True
            scale, row_scale = _scales(p, grad_output, weight_sum)
            grad, grad_moved, in_place = _api._grad_buffer(p.logits, p.axis, out)
            row_loss = p.run(_core.MODE_GRAD, grad_moved, in_place=in_place, scale=scale,
                             row_scale=row_scale, row_z_loss=row_z)
        else:
            row_loss = p.run(_core.MODE_LOSS, row_z_loss=row_z)
    if p.reduction == "none":
        if call.data is not None and not call.data_agreed:
            call.reduce_data(())  # the agreement alone: no totals to sum
        results = [row_loss.astype(p.logits.dtype).reshape(p.lead_shape)]
        if return_z_loss:
            results.append(row_z.astype(p.logits.dtype).reshape(p.lead_shape))
    else:
        # the local rows' sums in a fixed order, then summed over data_comm
        # (with the "mean" denominator when it is not summed yet): on the
        # first collective there, with the agreement
        totals = [_core.fixed_sum(row_loss)] + ([_core.fixed_sum(row_z)] if return_z_loss else [])
        if p.reduction == "mean" and not weight_summed:
            totals.append(weight_sum)
        buf = call.reduce_data(totals)
        if p.reduction == "mean":
            denominator = weight_sum if weight_summed else buf[-1]
            results = [_api._divide(v, denominator) for v in buf[:1 + return_z_loss]]
        else:
            results = [float(v) for v in buf[:1 + return_z_loss]]
    if want_grad:
        results.append(grad)
    return tuple(results) if len(results) > 1 else results[0]


def _options(axis, weight, sample_weight, ignore_index, reduction, label_smoothing, z_loss,
             softcap, temperature, num_threads):
    return dict(axis=axis, weight=weight, sample_weight=sample_weight, ignore_index=ignore_index,
                reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                softcap=softcap, temperature=temperature, num_threads=num_threads)


def cross_entropy(logits, target, *, vocab_comm=None, vocab_start=None, data_comm=None, axis=-1,
                  weight=None, sample_weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, z_loss=0.0, softcap=None, temperature=1.0,
                  num_threads=None, return_z_loss=False):
    """Cross-entropy of a batch whose rows, classes, or both are spread over processes.

    A collective call: every rank of `vocab_comm` and `data_comm` makes it,
    with its own piece of the batch.  The result is the single-process
    :func:`xentfast.cross_entropy` of the whole batch (for ``"none"``, the
    per-row losses of this rank's rows).

    Parameters
    ----------
    logits : array_like of float32, float64, float16 or bfloat16
        This rank's logits: its rows, and, under `vocab_comm`, its classes
        ``[vocab_start, vocab_start + C_local)`` of them.
    target : array_like
        Integer class indices into the *whole* vocabulary (the same on every
        rank of `vocab_comm`), or this rank's columns of the class
        probabilities (the logits' shape).
    vocab_comm : mpi4py.MPI.Comm or torch.distributed.ProcessGroup, optional
        The ranks over which the class axis is split.  Each holds the same
        rows; per-class arrays (`weight`) are this rank's slice.  Traffic:
        the agreement vector (8 float64 per rank of `vocab_comm`, 4 more),
        then one SUM of 2 float64 per row + 1 (+1 per row with class
        weights, +1 with label smoothing; probability targets 3, +1 with
        smoothing); a MAX of one float64 per row before it without
        `vocab_start`, or when the rows' maxima spread over more than 600
        nats.  Nothing grows with the vocabulary.
    vocab_start : int, optional
        This rank's first class.  Give it: then the agreement rides on the
        call's first collective.  By default the shards follow each other in
        rank order, and their widths are agreed on before the first pass (one
        more small collective).
    data_comm : mpi4py.MPI.Comm or torch.distributed.ProcessGroup, optional
        The ranks over which the rows are split: ``"mean"`` divides by the
        summed weights of the counted rows of all of them.  Traffic: one
        collective, the agreement vector carrying the loss sum and the
        denominator (8 float64 per rank of `data_comm`, 4 more).  With
        `vocab_comm`, a 2-D grid (each rank in one of each).
    axis, weight, sample_weight, ignore_index, reduction, label_smoothing
        As :func:`xentfast.cross_entropy`; label smoothing spreads over the
        whole vocabulary (ε/C, C the sum of the shards' widths).
    z_loss, softcap, temperature, num_threads, return_z_loss
        As :func:`xentfast.cross_entropy`; softcap and temperature act on
        each logit, on its own shard.

    Returns
    -------
    loss : float or ndarray
        The whole batch's loss for ``"mean"``/``"sum"`` (the same on every
        rank); this rank's rows' losses for ``"none"``.
    z_loss : float or ndarray
        Only with ``return_z_loss=True``.

    Raises
    ------
    TypeError, ValueError
        On every rank, when any rank's arguments are bad (named with the
        rank), or the ranks disagree: shards that do not tile the
        vocabulary, a target outside it, rows or options that differ across
        `vocab_comm`, classes that differ across `data_comm`.

    Examples
    --------
    Two ranks, each with half of the classes of the same rows; saved as
    ``vocab.py`` and run with ``mpiexec -n 2 python vocab.py``::

        import numpy as np, xentfast, xentfast.distributed as xd
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        logits = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
        target = np.array([0, 3, 7, 9])  # indices into all 10 classes
        mine = logits[:, 5 * comm.rank:5 * comm.rank + 5]  # this rank's 5 classes
        loss = xd.cross_entropy(mine, target, vocab_comm=comm)
        assert np.isclose(loss, xentfast.cross_entropy(logits, target))
    """
    return _compute(logits, target, False, vocab_comm, vocab_start, data_comm, None, None,
                    return_z_loss,
                    _options(axis, weight, sample_weight, ignore_index, reduction,
                             label_smoothing, z_loss, softcap, temperature, num_threads))


def cross_entropy_and_grad(logits, target, *, vocab_comm=None, vocab_start=None, data_comm=None,
                           axis=-1, weight=None, sample_weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None,
                           temperature=1.0, num_threads=None, return_z_loss=False,
                           grad_output=None, out=None):
    """Loss and gradient of a batch spread over processes (see :func:`cross_entropy`).

    The gradient is this rank's slice (its rows, its classes) of the whole
    batch's d loss / d logits.  Under `vocab_comm` each rank reads its
    logits twice: once for the rows' statistics, and, once the shards have
    combined them, once to write the gradient (no entry can be written
    before).  `grad_output` and `out` are those of
    :func:`xentfast.cross_entropy_and_grad` (``"none"``: this rank's rows).

    Traffic: that of :func:`cross_entropy`, except under `data_comm` with
    ``"mean"``, where the denominator is summed (with the agreement) before
    the kernel, whose gradient it scales, and the loss after: two
    collectives of a few float64.  When another rank's arguments are bad,
    this rank raises the same error, possibly after writing its gradient
    into `out` (under `data_comm` without ``"mean"`` the agreement comes
    after the kernel; under `vocab_comm` always before the gradient).

    Returns
    -------
    loss : float or ndarray
    z_loss : float or ndarray
        Only with ``return_z_loss=True``.
    grad : ndarray
        This rank's slice of the gradient, the logits' shape and dtype.

    Examples
    --------
    Two ranks, each with its own rows (the mean is over all of them); saved
    as ``rows.py`` and run with ``mpiexec -n 2 python rows.py``::

        import numpy as np, xentfast, xentfast.distributed as xd
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        logits = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
        target = np.array([1, 2, 3, 4, 5, 6])
        rows = slice(3 * comm.rank, 3 * comm.rank + 3)  # this rank's 3 rows
        loss, grad = xd.cross_entropy_and_grad(logits[rows], target[rows], data_comm=comm)
        want, want_grad = xentfast.cross_entropy_and_grad(logits, target)
        assert np.isclose(loss, want) and np.array_equal(grad, want_grad[rows])
    """
    return _compute(logits, target, True, vocab_comm, vocab_start, data_comm, grad_output, out,
                    return_z_loss,
                    _options(axis, weight, sample_weight, ignore_index, reduction,
                             label_smoothing, z_loss, softcap, temperature, num_threads))


# --------------------------------------------------------------------------
# evaluation: mean loss, accuracy and perplexity of the whole batch


@dataclass(frozen=True, repr=False)
class ShardedEvaluation(_api._MeanLossMeasures):
    """What :func:`evaluate` measures: this rank's rows, and the whole batch's totals."""

    loss: np.ndarray
    """this rank's per-row losses (float64; 0 on ignored rows)"""
    argmax: np.ndarray
    """this rank's rows' predicted classes, indices into the whole vocabulary"""
    correct: np.ndarray
    """per row: prediction == target (argmax of the target for probabilities)"""
    mean_loss: float
    """the whole batch's ``"mean"`` loss, in nats (the same on every rank)"""
    accuracy: float
    """share of the whole batch's counted rows predicted right"""
    n_counted: int
    """the whole batch's rows that count (target != ignore_index)"""

    def __repr__(self) -> str:
        return (f"ShardedEvaluation(rows={self.loss.shape}, n_counted={self.n_counted}, "
                f"mean_loss={self.mean_loss:.6g}, accuracy={self.accuracy:.6g}, "
                f"perplexity={self.perplexity:.6g})")


def _global_argmax(rows, vocab, start):
    """Each row's first maximising class over the whole vocabulary: the
    shards agree on the row's max (MAX), then on the smallest index holding
    it (a MAX of minus the indices)."""
    local = np.argmax(rows, axis=1) if rows.shape[1] else np.zeros(len(rows), np.int64)
    best = rows[np.arange(len(rows)), local].astype(np.float64)
    # a NaN is the row's prediction, as np.argmax and the single-process kernel
    # take it (a MAX may drop NaNs: compared as +inf)
    best[np.isnan(best)] = np.inf
    if vocab is None:
        return local.astype(np.int64)
    top = best.copy()
    vocab.allreduce(top, "max")
    key = np.where(best == top, -(local + start).astype(np.float64), -np.inf)
    vocab.allreduce(key, "max")
    return (-key).astype(np.int64)


def evaluate(logits, target, *, vocab_comm=None, vocab_start=None, data_comm=None, axis=-1,
             weight=None, sample_weight=None, ignore_index=-100, label_smoothing=0.0,
             z_loss=0.0, softcap=None, temperature=1.0, num_threads=None):
    """Mean loss, accuracy and perplexity of a batch spread over processes.

    A collective call, with the arguments of :func:`cross_entropy` (no
    `reduction`).  The totals are those :func:`xentfast.evaluate` gives on the
    gathered batch; the per-row fields are this rank's rows.  The prediction
    is the first class of largest logit (softcap and temperature keep the
    order).  Beyond :func:`cross_entropy`'s traffic, `vocab_comm` adds two
    MAX reductions of one float per row (two more for probability targets);
    under `data_comm` the call makes one collective, the agreement vector,
    whose shared slots carry the 4 totals.

    Returns
    -------
    ShardedEvaluation
        ``loss``, ``argmax``, ``correct`` of this rank's rows; ``mean_loss``,
        ``accuracy``, ``n_counted``, ``perplexity``, ``bits_per_token`` of the
        whole batch.

    Examples
    --------
    Saved as ``ev.py`` and run with ``mpiexec -n 2 python ev.py``::

        import numpy as np, xentfast, xentfast.distributed as xd
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        logits = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
        target = np.array([1, 2, 3, 4, 5, -100])
        mine = logits[:, 5 * comm.rank:5 * comm.rank + 5]  # this rank's 5 classes
        ev = xd.evaluate(mine, target, vocab_comm=comm)
        want = xentfast.evaluate(logits, target)
        assert np.isclose(ev.mean_loss, want.mean_loss) and ev.accuracy == want.accuracy
    """
    options = _options(axis, weight, sample_weight, ignore_index, "none", label_smoothing,
                       z_loss, softcap, temperature, num_threads)
    call = _setup(logits, target, False, vocab_comm, vocab_start, data_comm, options, None, None)
    p, vocab = call.p, call.vocab
    n = int(np.prod(p.lead_shape, dtype=np.int64))
    if vocab is not None:
        row_loss, _, weight_sum, _ = _vocab_rows(call, False, None, None, False)
        start = call.layout[0]
    else:
        row_loss, weight_sum, start = p.run(_core.MODE_LOSS), p.weight_sum, 0
    argmax = _global_argmax(_api._rows(p.moved), vocab, start)
    if p.target_prob is None:
        counted = p.target != p.ignore_index
        correct = (argmax == p.target) & counted
    else:
        counted = np.ones(n, dtype=bool)
        correct = argmax == _global_argmax(_api._rows(p.target_prob), vocab, start)
    totals = call.reduce_data([_core.fixed_sum(row_loss), weight_sum,
                               np.count_nonzero(correct), np.count_nonzero(counted)])
    n_counted = int(totals[3])
    shape = p.lead_shape
    return ShardedEvaluation(
        loss=row_loss.reshape(shape), argmax=argmax.reshape(shape),
        correct=correct.reshape(shape), mean_loss=_api._divide(totals[0], totals[1]),
        accuracy=float(totals[2]) / n_counted if n_counted else float("nan"),
        n_counted=n_counted)


def perplexity(logits, target, **options):
    """Perplexity, exp(mean cross-entropy in nats), of a batch spread over processes.

    A collective call with the arguments of :func:`cross_entropy` (no
    `reduction`): ``exp`` of its ``"mean"`` loss, the same on every rank.

    Examples
    --------
    Each of two ranks holds half of the classes of uniform logits; saved as
    ``ppl.py`` and run with ``mpiexec -n 2 python ppl.py``::

        import numpy as np, xentfast.distributed as xd
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        uniform = np.zeros((4, 5), dtype=np.float32)  # 5 of the 10 classes
        assert np.isclose(xd.perplexity(uniform, np.array([1, 2, 8, 9]), vocab_comm=comm), 10.0)
    """
    if "reduction" in options:
        raise TypeError("perplexity takes no reduction: it is exp of the mean loss")
    return _api._exp(cross_entropy(logits, target, **options))
