"""One rank of the distributed tests (tests/test_distributed.py starts them).

    mpiexec -n P python tests/distributed_worker.py mpi SCENARIO
    RANK=r WORLD_SIZE=P MASTER_ADDR=127.0.0.1 MASTER_PORT=port \
        python tests/distributed_worker.py torch SCENARIO

Every rank builds the same whole batch from a fixed seed, takes its piece
(its rows under data sharding, its classes under vocabulary sharding), calls
xentfast.distributed, and compares the result with the single-process call on
the whole batch (bitwise where the arithmetic is the same) and with the
float64 oracle.  The ranks gather their failures; each exits 1 if any rank
failed, and rank 0 prints them, or "OK <checks>".

Scenarios: vocab (uneven shard widths), data (uneven row counts, a rank
whose rows are all ignored, a rank without rows), grid (2 x 2: both),
errors (bad input raises on every rank), agreement (a bad argument or a
disagreement on one rank raises the same error on every rank), count (the
collectives of a call, counted and bounded), evaluate (xd.evaluate and
xd.perplexity against xentfast.evaluate), torch_autograd (the PyTorch
autograd function and module; torch backend only); and timings, which
print: timing (a vocabulary-sharded 4096 x 128256 call and its traffic),
single_timing (the same batch in one process; one rank), shard_timing (a
shard's two passes against one pass; one rank).
"""
from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import xentfast  # noqa: E402
import xentfast.distributed as xd  # noqa: E402
from xentfast import reference  # noqa: E402


class World:
    """The ranks, and sub-communicators, over MPI or torch.distributed."""

    def __init__(self, backend):
        self.backend = backend
        if backend == "mpi":
            from mpi4py import MPI
            self.comm = MPI.COMM_WORLD
            self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        else:
            import torch.distributed as dist
            dist.init_process_group("gloo", rank=int(os.environ["RANK"]),
                                    world_size=int(os.environ["WORLD_SIZE"]))
            self.comm = dist.group.WORLD
            self.rank, self.size = dist.get_rank(), dist.get_world_size()

    def split(self, groups):
        """The communicator of this rank's group; `groups` lists every group's
        ranks (torch makes every group on every rank)."""
        if self.backend == "mpi":
            color = next(i for i, g in enumerate(groups) if self.rank in g)
            return self.comm.Split(color, self.rank)
        import torch.distributed as dist
        mine = None
        for g in groups:
            pg = dist.new_group(ranks=list(g))
            if self.rank in g:
                mine = pg
        return mine

    def allgather(self, obj):
        if self.backend == "mpi":
            return self.comm.allgather(obj)
        import torch.distributed as dist
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.backend == "mpi":
            self.comm.Barrier()
        else:
            import torch.distributed as dist
            dist.barrier()


def spans(widths):
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)
    return [slice(int(s), int(s + w)) for s, w in zip(starts, widths)]


OPTIONS = [
    {},
    {"weight": True},
    {"sample_weight": True},
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.2, "weight": True},
    {"z_loss": 1e-3},
    {"softcap": 30.0},
    {"softcap": 3.0, "temperature": 0.7},
    {"softcap": 30.0, "label_smoothing": 0.1, "weight": True},
    {"temperature": 2.0},
    {"ignore_index": 3},
    {"weight": True, "sample_weight": True, "label_smoothing": 0.05, "z_loss": 1e-4},
    {"prob": True},
    {"prob": True, "weight": True, "label_smoothing": 0.1, "sample_weight": True},
    {"num_threads": 2, "z_loss": 1e-3},
]


class Batch:
    """The whole batch, the same on every rank."""

    def __init__(self, n, c, seed, dtype=np.float32, ignored_rows=()):
        rng = np.random.default_rng(seed)
        self.x = (rng.standard_normal((n, c)) * 3).astype(dtype)
        self.y = rng.integers(0, c, n)
        self.y[rng.random(n) < 0.15] = -100
        self.y[list(ignored_rows)] = -100
        self.w = rng.uniform(0.5, 2.0, c)
        self.s = rng.uniform(0.5, 2.0, n)
        p = rng.random((n, c)) ** 4
        self.p = (p / p.sum(1, keepdims=True)).astype(dtype)
        self.g = rng.uniform(0.5, 1.5, n)


class Checker:
    def __init__(self, world):
        self.world, self.failures, self.checks = world, [], 0

    def check(self, name, fn):
        self.checks += 1
        try:
            fn()
        except Exception:  # every failure is reported, the run goes on
            self.failures.append(f"rank {self.world.rank}: {name}\n{traceback.format_exc()}")

    def finish(self):
        everything = self.world.allgather((self.failures, self.checks))
        failures = [f for fs, _ in everything for f in fs]
        if self.world.rank == 0:
            if failures:
                print(f"{len(failures)} FAILED of {sum(c for _, c in everything)}")
                print("\n".join(failures[:20]))
            else:
                print(f"OK {sum(c for _, c in everything)} checks ({xentfast._core.backend()})")
            sys.stdout.flush()
        return 1 if failures else 0


def tolerances(dtype, opts):
    if dtype == np.float64:
        return 1e-12, 1e-12
    if dtype == np.float16:
        return 2e-5, 2e-5
    return 2e-6, 2e-6


def run_case(ck, b, rows, cols, opts, reduction, grad, *, vocab=None, data=None,
             vocab_start=None, return_z=False, tag=""):
    """One call on this rank's piece against the single-process call on the
    whole batch and against the oracle."""
    name = f"{tag} {opts} {reduction} grad={grad} dtype={b.x.dtype} start={vocab_start}"
    ck.check(name, lambda: _run_case(b, rows, cols, opts, reduction, grad, vocab, data,
                                     vocab_start, return_z))


def _run_case(b, rows, cols, opts, reduction, grad, vocab, data, vocab_start, return_z):
    kw_full, kw_mine = {"reduction": reduction, "num_threads": 1}, {"reduction": reduction,
                                                                   "num_threads": 1}
    for k, v in opts.items():
        if k == "weight":
            kw_full["weight"], kw_mine["weight"] = b.w, b.w[cols]
        elif k == "sample_weight":
            kw_full["sample_weight"], kw_mine["sample_weight"] = b.s, b.s[rows]
        elif k == "prob":
            pass
        elif k == "ignore_index":
            kw_full[k] = kw_mine[k] = v
        else:
            kw_full[k] = kw_mine[k] = v
    y = b.y.copy()
    if "ignore_index" in opts:
        y[y == -100] = opts["ignore_index"]
        y[y == opts["ignore_index"]] = opts["ignore_index"]
    t_full, t_mine = (b.p, b.p[rows, cols]) if opts.get("prob") else (y, y[rows])
    x_mine = b.x[rows, cols]  # a strided view of the whole batch, read in place
    if return_z:
        kw_full["return_z_loss"] = kw_mine["return_z_loss"] = True
    comms = dict(vocab_comm=vocab, data_comm=data, vocab_start=vocab_start)
    exact = vocab is None and (reduction != "mean" or ("weight" not in opts
                                                        and "sample_weight" not in opts))
    if grad:
        g_full = b.g if reduction == "none" else 0.75
        g_mine = b.g[rows] if reduction == "none" else 0.75
        got = xd.cross_entropy_and_grad(x_mine, t_mine, grad_output=g_mine, **comms, **kw_mine)
        want = xentfast.cross_entropy_and_grad(b.x, t_full, grad_output=g_full, **kw_full)
        ora = reference.cross_entropy_and_grad(b.x.astype(np.float64), t_full.astype(np.float64)
                                               if opts.get("prob") else t_full,
                                               grad_output=g_full,
                                               **{k: v for k, v in kw_full.items()
                                                  if k not in ("num_threads", "return_z_loss")})
    else:
        got = xd.cross_entropy(x_mine, t_mine, **comms, **kw_mine)
        want = xentfast.cross_entropy(b.x, t_full, **kw_full)
        ora = reference.cross_entropy(b.x.astype(np.float64), t_full.astype(np.float64)
                                      if opts.get("prob") else t_full,
                                      **{k: v for k, v in kw_full.items()
                                         if k not in ("num_threads", "return_z_loss")})
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    ora = ora if isinstance(ora, tuple) else (ora,)
    rtol, atol = tolerances(b.x.dtype, opts)

    def compare():
        assert len(got) == len(want), (len(got), len(want))
        loss, wloss = np.asarray(got[0], dtype=np.float64), np.asarray(want[0], dtype=np.float64)
        if reduction == "none":
            wloss, oloss = wloss[rows], np.asarray(ora[0])[rows]
        else:
            oloss = np.asarray(ora[0])
            assert isinstance(got[0], float), type(got[0])
        if exact and reduction == "none":
            np.testing.assert_array_equal(loss, wloss)
        else:
            np.testing.assert_allclose(loss, wloss, rtol=rtol * 5, atol=atol * 5)
        lt = 1e-5 if "softcap" in opts else 1e-6
        # the oracle itself fails on a row of huge logits (lse - z in float64
        # loses log S against 3e38): such rows are held to the
        # single-process call alone
        sane = np.abs(np.nan_to_num(b.x.astype(np.float64), posinf=0)).max(1) < 1e30
        if b.x.dtype != np.float16 and reduction == "none":
            np.testing.assert_allclose(loss[sane[rows]], oloss[sane[rows]], rtol=lt, atol=lt)
        elif b.x.dtype != np.float16 and sane.all():
            np.testing.assert_allclose(loss, oloss, rtol=lt, atol=lt)
        if return_z:
            np.testing.assert_allclose(np.asarray(got[1], dtype=np.float64),
                                       np.asarray(want[1], dtype=np.float64)[rows]
                                       if reduction == "none" else want[1], rtol=1e-5, atol=1e-9)
        if grad:
            gg, wg = got[-1], want[-1][rows, cols]
            og = ora[-1][rows, cols]
            assert gg.shape == x_mine.shape and gg.dtype == x_mine.dtype
            if exact:
                np.testing.assert_array_equal(gg, wg)
            else:
                np.testing.assert_allclose(gg.astype(np.float64), wg.astype(np.float64),
                                           rtol=rtol * 5, atol=atol)
            if b.x.dtype != np.float16 and (reduction == "none" or sane.all()):
                gt = 1e-5 if "softcap" in opts else 1e-6
                keep = sane[rows]
                np.testing.assert_allclose(gg[keep].astype(np.float64), og[keep], rtol=gt,
                                           atol=gt)

    compare()


# shard widths of a 37-class vocabulary by rank count: uneven, a one-class shard
VOCAB_WIDTHS_37 = {2: [30, 7], 3: [1, 20, 16], 4: [16, 1, 12, 8]}


def scenario_vocab(world, ck):
    comm = world.comm
    P = world.size
    cases = [(37, VOCAB_WIDTHS_37),
             (5000, {2: [4100, 900], 3: [1, 2500, 2499], 4: [2049, 1, 2500, 450]})]
    for c, widths_by_p in cases:
        widths = widths_by_p[P]
        cols = spans(widths)[world.rank]
        n = 29 if c < 100 else 9
        for dtype in (np.float32, np.float64):
            b = Batch(n, c, seed=c + P, dtype=dtype)
            b.x[1, 0] = -np.inf  # a masked class
            rows = slice(0, n)
            for opts in OPTIONS if dtype == np.float32 else OPTIONS[:4] + OPTIONS[-1:]:
                for reduction in ("mean", "sum", "none"):
                    for grad in (False, True):
                        run_case(ck, b, rows, cols, opts, reduction, grad, vocab=comm,
                                 tag=f"vocab C={c}")
                        # vocab_start given: the rows' sums against one
                        # reference (no MAX), the agreement after pass 1
                        if dtype == np.float32 and c < 100:
                            run_case(ck, b, rows, cols, opts, reduction, grad, vocab=comm,
                                     vocab_start=cols.start, tag=f"vocab C={c}")
        # vocab_start given (shards not in rank order), return_z_loss, float16
        b = Batch(n, c, seed=7)
        order = list(range(P))[::-1]
        w_perm = [widths[r] for r in order]  # rank order[k] holds the k-th span
        sp = spans(w_perm)
        mine = sp[order.index(world.rank)]
        run_case(ck, b, slice(0, n), mine, {"z_loss": 1e-3, "label_smoothing": 0.1}, "mean",
                 True, vocab=comm, vocab_start=mine.start, return_z=True, tag="vocab start")
        b16 = Batch(n, c, seed=8, dtype=np.float16)
        for reduction in ("mean", "none"):
            for start in (None, cols.start):
                run_case(ck, b16, slice(0, n), cols, {"weight": True}, reduction, True,
                         vocab=comm, vocab_start=start, tag="vocab f16")
        b64 = Batch(n, c, seed=9, dtype=np.float64)
        for opts in ({}, {"label_smoothing": 0.1, "weight": True}, {"prob": True}):
            run_case(ck, b64, slice(0, n), cols, opts, "mean", True, vocab=comm,
                     vocab_start=cols.start, tag="vocab f64 start")
    # PyTorch's (N, C, d) layout: the class axis 1 is the sharded one
    def layout():
        rng = np.random.default_rng(4)
        c = 37
        x = rng.standard_normal((5, c, 3)).astype(np.float32)
        y = rng.integers(0, c, (5, 3))
        y[0, 1] = -100
        mine = spans(VOCAB_WIDTHS_37[P])[world.rank]
        loss, grad = xd.cross_entropy_and_grad(x[:, mine], y, axis=1, vocab_comm=comm,
                                               reduction="sum", label_smoothing=0.1)
        want, want_grad = xentfast.cross_entropy_and_grad(x, y, axis=1, reduction="sum",
                                                          label_smoothing=0.1)
        np.testing.assert_allclose(loss, want, rtol=2e-6)
        np.testing.assert_allclose(grad, want_grad[:, mine], rtol=1e-5, atol=1e-6)
        out = np.empty_like(x[:, mine])
        _, g2 = xd.cross_entropy_and_grad(x[:, mine], y, axis=1, vocab_comm=comm, out=out)
        assert g2 is out
        # out=logits: the gradient overwrites this rank's logits
        xc = np.ascontiguousarray(x[:, mine])
        _, g3 = xd.cross_entropy_and_grad(xc, y, axis=1, vocab_comm=comm, out=xc,
                                          reduction="sum", label_smoothing=0.1)
        assert g3 is xc
        np.testing.assert_allclose(xc, want_grad[:, mine], rtol=1e-5, atol=1e-6)
    ck.check("vocab axis=1", layout)

    def streamed():
        # a gradient over 8 MiB per rank: written with streaming stores
        rng = np.random.default_rng(6)
        c = 9000 * P
        x = rng.standard_normal((300, c)).astype(np.float32)
        y = rng.integers(0, c, 300)
        mine = spans([9000] * P)[world.rank]
        assert x[:, mine].nbytes >= xentfast._core.STREAMING_BYTES
        for kw in ({}, {"softcap": 30.0, "label_smoothing": 0.1}):
            loss, grad = xd.cross_entropy_and_grad(x[:, mine], y, vocab_comm=comm, **kw)
            want, want_grad = xentfast.cross_entropy_and_grad(x, y, **kw)
            np.testing.assert_allclose(loss, want, rtol=2e-6)
            np.testing.assert_allclose(grad, want_grad[:, mine], rtol=1e-5, atol=1e-7)
    ck.check("vocab streamed", streamed)
    # adversarial rows: a row masked on every shard but one, a row of huge
    # logits, a +inf logit, a NaN logit, a one-class shard
    b = Batch(6, 37, seed=3)
    widths = VOCAB_WIDTHS_37[P]
    b.x[0, :30] = -np.inf
    b.x[1] = 3e38
    b.x[2, 5] = np.inf
    b.x[3, 33] = np.nan
    b.y[:4] = [31, 2, 5, 0]
    for opts in ({}, {"label_smoothing": 0.1}, {"softcap": 20.0}):
        # (the single-process sum w z of a row of 3e38 overflows float32
        # lanes under smoothing: that row is left out there)
        b.x[1] = 3e38 if "label_smoothing" not in opts else 1.0
        mine = spans(widths)[world.rank]
        for grad in (False, True):
            # vocab_start given too: these rows' maxima spread too far for one
            # reference (3e38) or are not finite: the exact MAX is taken
            for start in (None, mine.start):
                run_case(ck, b, slice(0, 6), mine, opts, "none", grad, vocab=comm,
                         vocab_start=start, tag="vocab adversarial")
    # a spread just over and just under the one-reference bound, vocab_start given
    for spread in (500.0, 700.0):
        b = Batch(7, 37, seed=12)
        b.x[3] -= spread
        b.x[5, :3] += 30.0
        for grad in (False, True):
            run_case(ck, b, slice(0, 7), spans(widths)[world.rank], {"label_smoothing": 0.1},
                     "none", grad, vocab=comm, vocab_start=spans(widths)[world.rank].start,
                     tag=f"vocab spread {spread}")


def row_spans(P):
    return {2: [13, 0], 4: [9, 0, 3, 17]}[P], {2: [1], 4: [2]}[P]


def scenario_data(world, ck):
    P = world.size
    counts = {2: [21, 8], 3: [0, 20, 9], 4: [9, 0, 3, 17]}[P]
    all_ignored = {2: 1, 3: 2, 4: 2}[P]  # this rank's rows are all ignored
    rows_of = spans(counts)
    ignored = list(range(rows_of[all_ignored].start, rows_of[all_ignored].stop))
    for c in (37, 3000):
        for dtype in (np.float32, np.float64):
            b = Batch(sum(counts), c, seed=c, dtype=dtype, ignored_rows=ignored)
            for opts in OPTIONS if dtype == np.float32 else OPTIONS[:3]:
                if opts.get("ignore_index"):
                    continue  # the ignored rows are -100
                for reduction in ("mean", "sum", "none"):
                    for grad in (False, True):
                        run_case(ck, b, rows_of[world.rank], slice(0, c), opts, reduction, grad,
                                 data=world.comm, tag=f"data C={c}")
    b = Batch(sum(counts), 37, seed=5, ignored_rows=ignored)
    run_case(ck, b, rows_of[world.rank], slice(0, 37), {"z_loss": 1e-3}, "sum", True,
             data=world.comm, return_z=True, tag="data z")


def scenario_grid(world, ck):
    assert world.size == 4
    # rank = 2 d + v: vocabulary groups {0, 1}, {2, 3}; data groups {0, 2}, {1, 3}
    d, v = divmod(world.rank, 2)
    vocab = world.split([[0, 1], [2, 3]])
    data = world.split([[0, 2], [1, 3]])
    counts, widths = [11, 6], [25, 12]
    for c_widths in (widths, [2100, 1]):
        c = sum(c_widths)
        b = Batch(sum(counts), c, seed=c, ignored_rows=range(11, 17) if c < 100 else ())
        rows, cols = spans(counts)[d], spans(c_widths)[v]
        for opts in OPTIONS:
            for reduction in ("mean", "sum", "none"):
                for grad in (False, True):
                    run_case(ck, b, rows, cols, opts, reduction, grad, vocab=vocab, data=data,
                             tag=f"grid C={c}")
                    if c < 100 and ("weight" in opts or not opts):
                        # vocab_start given: the agreement after the first pass
                        run_case(ck, b, rows, cols, opts, reduction, grad, vocab=vocab,
                                 data=data, vocab_start=cols.start, tag=f"grid C={c}")


def _evaluate_case(ck, b, rows, cols, opts, *, vocab=None, data=None, tag=""):
    """xd.evaluate and xd.perplexity on this rank's piece against
    xentfast.evaluate on the whole batch."""
    def check():
        kw_full, kw_mine = {"num_threads": 1}, {"num_threads": 1}
        for k, v in opts.items():
            if k == "weight":
                kw_full[k], kw_mine[k] = b.w, b.w[cols]
            elif k == "sample_weight":
                kw_full[k], kw_mine[k] = b.s, b.s[rows]
            elif k not in ("prob", "start"):
                kw_full[k] = kw_mine[k] = v
        t_full, t_mine = (b.p, b.p[rows, cols]) if opts.get("prob") else (b.y, b.y[rows])
        comms = dict(vocab_comm=vocab, data_comm=data)
        if vocab is not None and opts.get("start"):
            comms["vocab_start"] = cols.start
        got = xd.evaluate(b.x[rows, cols], t_mine, **comms, **kw_mine)
        want = xentfast.evaluate(b.x, t_full, **kw_full)
        rtol = 1e-6 if b.x.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got.mean_loss, want.mean_loss, rtol=rtol)
        np.testing.assert_allclose(got.perplexity, want.perplexity, rtol=rtol)
        np.testing.assert_allclose(got.bits_per_token, want.bits_per_token, rtol=rtol)
        assert got.accuracy == want.accuracy, (got.accuracy, want.accuracy)
        assert got.n_counted == want.n_counted, (got.n_counted, want.n_counted)
        np.testing.assert_array_equal(got.argmax, want.argmax[rows])
        np.testing.assert_array_equal(got.correct, want.correct[rows])
        np.testing.assert_allclose(got.loss, want.loss[rows], rtol=rtol, atol=1e-12)
        ppl = xd.perplexity(b.x[rows, cols], t_mine, **comms, **kw_mine)
        np.testing.assert_allclose(ppl, xentfast.perplexity(b.x, t_full, **kw_full), rtol=rtol)
    ck.check(f"{tag} evaluate {opts} dtype={b.x.dtype}", check)


EVALUATE_OPTIONS = [{}, {"weight": True, "label_smoothing": 0.1}, {"sample_weight": True},
                    {"softcap": 3.0, "temperature": 0.7}, {"z_loss": 1e-3},
                    {"prob": True}, {"prob": True, "weight": True},
                    # vocab_start given (under vocab_comm)
                    {"start": True}, {"start": True, "prob": True}]


def scenario_evaluate(world, ck):
    """xd.evaluate / xd.perplexity: vocabulary, rows, and (on 4 ranks) both."""
    P, r = world.size, world.rank
    counts = {2: [21, 8], 3: [0, 20, 9], 4: [9, 0, 3, 17]}[P]
    for c, widths in ((37, VOCAB_WIDTHS_37[P]),
                      (5000, {2: [4100, 900], 3: [1, 2500, 2499], 4: [2049, 1, 2500, 450]}[P])):
        for dtype in (np.float32, np.float64):
            b = Batch(sum(counts), c, seed=c + P, dtype=dtype, ignored_rows=[2, 3])
            b.x[0] = 1.0  # a tie over every shard: the first class wins
            b.x[1, -1] = 1e3  # the prediction on the last shard
            b.x[4, 0] = -np.inf  # a masked class
            b.x[5, [0, c - 1]] = 1e3  # a tie between the first and the last shard
            b.p[6] = 0.0
            b.p[6, [1, c - 1]] = 0.5  # a probability target's tie
            for opts in EVALUATE_OPTIONS:
                _evaluate_case(ck, b, slice(0, sum(counts)), spans(widths)[r], opts,
                               vocab=world.comm, tag=f"vocab C={c}")
                _evaluate_case(ck, b, spans(counts)[r], slice(0, c), opts, data=world.comm,
                               tag=f"data C={c}")
    # a NaN logit: that row predicts it (the mean loss is NaN)
    b = Batch(sum(counts), 37, seed=9)
    b.x[7, 30] = np.nan
    _evaluate_case(ck, b, slice(0, sum(counts)), spans(VOCAB_WIDTHS_37[P])[r], {},
                   vocab=world.comm, tag="vocab NaN")
    if P == 4:
        d, v = divmod(r, 2)
        vocab = world.split([[0, 1], [2, 3]])
        data = world.split([[0, 2], [1, 3]])
        b = Batch(17, 37, seed=11, ignored_rows=range(11, 17))
        for opts in EVALUATE_OPTIONS:
            _evaluate_case(ck, b, spans([11, 6])[d], spans([25, 12])[v], opts, vocab=vocab,
                           data=data, tag="grid")


def expect_error(ck, name, fn, kind, words):
    def check():
        try:
            fn()
        except kind as e:
            for w in words:
                assert w in str(e), (w, str(e))
            return
        raise AssertionError(f"no {kind.__name__} raised")
    ck.check(name, check)


def scenario_errors(world, ck):
    comm, r, P = world.comm, world.rank, world.size
    b = Batch(5, 20, seed=1)
    widths = [10, 10] if P == 2 else [5, 5, 5, 5]
    cols = spans(widths)[r]
    x = np.ascontiguousarray(b.x[:, cols])
    y = b.y.copy()
    # vocab_start inconsistent with the widths: overlapping shards
    expect_error(ck, "overlap", lambda: xd.cross_entropy(x, y, vocab_comm=comm, vocab_start=0),
                 ValueError, ["inconsistent with vocab_start", "rank 1"])
    # a gap
    expect_error(ck, "gap", lambda: xd.cross_entropy(x, y, vocab_comm=comm,
                                                     vocab_start=cols.start + (r == P - 1)),
                 ValueError, ["inconsistent"])
    # a target outside the whole vocabulary, on one rank only... and the same
    # targets everywhere but outside the vocabulary
    bad = y.copy()
    bad[2] = 20
    expect_error(ck, "target range", lambda: xd.cross_entropy(x, bad, vocab_comm=comm),
                 ValueError, ["target holds 20", "[0, 20)"])
    mine = y.copy()
    if r == 1:
        mine[0] = (mine[0] + 1) % 20 if mine[0] >= 0 else 1
    expect_error(ck, "targets differ", lambda: xd.cross_entropy(x, mine, vocab_comm=comm),
                 ValueError, ["targets differ"])
    # a bad argument on one rank: named with the rank, raised everywhere
    expect_error(ck, "one rank's bad option",
                 lambda: xd.cross_entropy(x, y, vocab_comm=comm,
                                          label_smoothing=2.0 if r == 1 else 0.0),
                 ValueError, ["rank 1 of vocab_comm", "label_smoothing"])
    expect_error(ck, "one rank's bad dtype",
                 lambda: xd.cross_entropy(x.astype(np.int32) if r == 0 else x, y, vocab_comm=comm),
                 TypeError, ["rank 0 of vocab_comm", "logits must be"])
    expect_error(ck, "different rows",
                 lambda: xd.cross_entropy(x[: 5 - (r == 1)], y[: 5 - (r == 1)], vocab_comm=comm),
                 ValueError, ["rows"])
    # mismatched communicators: the data ranks hold different classes
    expect_error(ck, "data ranks with different classes",
                 lambda: xd.cross_entropy(x[:, : 5 - (r == 1)], y % 4, data_comm=comm),
                 ValueError, ["data_comm", "vocabulary shards"])
    expect_error(ck, "one communicator in two roles",
                 lambda: xd.cross_entropy(x, y, vocab_comm=comm) if r == 0 else
                 xd.cross_entropy(x, y % 5, data_comm=comm), ValueError,
                 ["every rank must pass the same communicators"])
    expect_error(ck, "same communicator twice",
                 lambda: xd.cross_entropy(x, y, vocab_comm=comm, data_comm=comm), ValueError,
                 ["same communicator"])
    expect_error(ck, "data target range", lambda: xd.cross_entropy(
        x, np.where(np.arange(5) == r, 50, 0), data_comm=comm), ValueError,
        ["rank 0 of data_comm", "target"])
    expect_error(ck, "not a communicator", lambda: xd.cross_entropy(x, y, vocab_comm=object()),
                 TypeError, ["vocab_comm must be"])
    expect_error(ck, "no communicator", lambda: xd.cross_entropy(x, y), ValueError,
                 ["vocab_comm"])
    expect_error(ck, "bad grad_output on one rank", lambda: xd.cross_entropy_and_grad(
        x, y, vocab_comm=comm, grad_output=np.ones(3) if r == 0 else None), ValueError,
        ["rank 0", "grad_output"])
    # after all these, a good call still works (no rank is left behind)
    run_case(ck, b, slice(0, 5), cols, {}, "mean", True, vocab=comm, tag="after errors")


def expect_same_error(ck, world, name, fn, kind, words):
    """`fn` raises `kind` naming `words` on this rank, and every rank of the
    world raises the same error, word for word."""
    def check():
        try:
            fn()
        except Exception as e:  # compared across the ranks below
            got = (type(e).__name__, str(e))
        else:
            got = ("no error", "")
        everyone = world.allgather(got)
        assert got[0] == kind.__name__, got
        for w in words:
            assert w in got[1], (w, got[1])
        assert all(g == got for g in everyone), everyone
    ck.check(name, check)


def scenario_agreement(world, ck):
    """A bad argument or a disagreement on one rank: every rank raises the
    same error, with vocab_start given (the agreement rides on the rows'
    first collective) and not, and under data_comm."""
    comm, r, P = world.comm, world.rank, world.size
    b = Batch(6, 20, seed=2)
    widths = [10, 10] if P == 2 else [5, 5, 5, 5]
    cols = spans(widths)[r]
    x = np.ascontiguousarray(b.x[:, cols])
    y = np.where(b.y < 0, 3, b.y)
    last = r == P - 1
    for start in (cols.start, None):
        kw = dict(vocab_comm=comm, vocab_start=start)
        tag = f"start={start is not None}"
        for fn in (xd.cross_entropy, xd.cross_entropy_and_grad):
            name = f"{fn.__name__} {tag}"
            # a target outside the vocabulary on the last rank only
            bad = y.copy()
            if last:
                bad[1] = 20
            expect_same_error(ck, world, f"{name} one rank's bad target",
                              lambda: fn(x, bad, **kw), ValueError, ["targets differ"])
            # a target of the wrong dtype on one rank: its own error, named with its rank
            expect_same_error(ck, world, f"{name} one rank's target dtype",
                              lambda: fn(x, y.astype(np.float32) if last else y, **kw),
                              TypeError, [f"rank {P - 1} of vocab_comm"])
            # a shape that disagrees: one rank holds a row fewer
            expect_same_error(ck, world, f"{name} one rank's rows",
                              lambda: fn(x[:5] if last else x, y[:5] if last else y, **kw),
                              ValueError, ["rows (the logits' shape"])
            # different options
            expect_same_error(ck, world, f"{name} options differ",
                              lambda: fn(x, y, label_smoothing=0.1 if last else 0.0, **kw),
                              ValueError, ["options differ"])
            expect_same_error(ck, world, f"{name} reductions differ",
                              lambda: fn(x, y, reduction="sum" if last else "mean", **kw),
                              ValueError, ["options differ"])
            expect_same_error(ck, world, f"{name} weight on one rank",
                              lambda: fn(x, y, weight=b.w[cols] if last else None, **kw),
                              ValueError, ["weight (given or not) differ"])
            expect_same_error(ck, world, f"{name} dtype differs",
                              lambda: fn(x.astype(np.float64) if last else x, y, **kw),
                              ValueError, ["logits dtype differ"])
        # the loss on one rank, loss+grad on another: different collectives after
        # the agreement, caught by it
        expect_same_error(ck, world, f"loss here, gradient there {tag}",
                          lambda: (xd.cross_entropy_and_grad if last else xd.cross_entropy)(
                              x, y, **kw), ValueError, ["options differ"])
    expect_same_error(ck, world, "vocab_start on one rank only",
                      lambda: xd.cross_entropy(x, y, vocab_comm=comm,
                                               vocab_start=cols.start if last else None),
                      ValueError, ["vocab_start must be given on every rank"])
    expect_same_error(ck, world, "overlapping shards, vocab_start given",
                      lambda: xd.cross_entropy(x, y, vocab_comm=comm, vocab_start=0),
                      ValueError, ["inconsistent with vocab_start"])
    # rows split over data_comm: each rank's own rows, the same classes
    rows = spans([3] * P)[r] if P * 3 <= 6 else slice(r, r + 1)
    xr, yr = np.ascontiguousarray(b.x[rows]), y[rows]
    for fn in (xd.cross_entropy, xd.cross_entropy_and_grad):
        for reduction in ("mean", "sum", "none"):
            name = f"data {fn.__name__} {reduction}"
            kw = dict(data_comm=comm, reduction=reduction)
            bad = yr.copy()
            if last:
                bad[0] = 20
            expect_same_error(ck, world, f"{name} one rank's bad target",
                              lambda: fn(xr, bad, **kw), ValueError,
                              [f"rank {P - 1} of data_comm", "target"])
            expect_same_error(ck, world, f"{name} one rank's classes",
                              lambda: fn(xr[:, :19] if last else xr, yr % 19, **kw),
                              ValueError, ["vocabulary shards"])
            expect_same_error(ck, world, f"{name} options differ",
                              lambda: fn(xr, yr, z_loss=1e-3 if last else 0.0, **kw),
                              ValueError, ["options differ"])
        expect_same_error(ck, world, f"data {fn.__name__} reductions differ",
                          lambda: fn(xr, yr, data_comm=comm,
                                     reduction="none" if last else "mean"),
                          ValueError, ["options differ"])
    # after all these, good calls still work (no rank is left behind)
    run_case(ck, b, slice(0, 6), cols, {}, "mean", True, vocab=comm, vocab_start=cols.start,
             tag="after agreement errors")
    b2 = Batch(3 * P, 20, seed=3)
    run_case(ck, b2, spans([3] * P)[r], slice(0, 20), {}, "mean", True, data=comm,
             tag="after agreement errors")
    if P == 4:  # a grid: a bad argument in one vocabulary group reaches the other
        d, v = divmod(r, 2)
        vocab = world.split([[0, 1], [2, 3]])
        data = world.split([[0, 2], [1, 3]])
        bg = Batch(8, 20, seed=4)
        gx = np.ascontiguousarray(bg.x[spans([4, 4])[d], spans([12, 8])[v]])
        gy = np.where(bg.y < 0, 1, bg.y)[spans([4, 4])[d]]
        for start in (spans([12, 8])[v].start, None):
            expect_same_error(
                ck, world, f"grid one rank's option start={start is not None}",
                lambda: xd.cross_entropy_and_grad(gx, gy, vocab_comm=vocab, data_comm=data,
                                                  vocab_start=start,
                                                  label_smoothing=2.0 if r == 3 else 0.0),
                ValueError, ["rank 1 of vocab_comm", "label_smoothing"])


class Counter:
    """Every collective xentfast.distributed makes, with its op and size."""

    def __init__(self):
        self.calls = []
        self.reduce, self.gather = xd._Comm.allreduce, xd._Comm.allgather
        counter = self

        def reduce(comm, buf, op):
            counter.calls.append((comm.name, op, buf.size))
            return counter.reduce(comm, buf, op)

        def gather(comm, obj):
            import pickle
            counter.calls.append((comm.name, "gather", len(pickle.dumps(obj))))
            return counter.gather(comm, obj)

        xd._Comm.allreduce, xd._Comm.allgather = reduce, gather

    def take(self):
        calls, self.calls = self.calls, []
        return calls

    def restore(self):
        xd._Comm.allreduce, xd._Comm.allgather = self.reduce, self.gather


def header_size(P):
    """The agreement vector's doubles (distributed.py's layout)."""
    return xd._FIELDS * P + xd._SHARED


def scenario_count(world, ck):
    """Counts the collectives of one call: vocab_comm with vocab_start
    given makes at most 2 in the forward pass, of at most 3 floats per row
    (beyond the agreement's fixed vector), none in the backward pass;
    data_comm one collective of a few scalars (two for a "mean"
    loss+grad, whose gradient needs the denominator first)."""
    comm, r, P = world.comm, world.rank, world.size
    n, c = 64, 1000
    widths = [c // P] * P
    widths[-1] += c - sum(widths)
    cols = spans(widths)[r]
    b = Batch(n, c, seed=21)
    x = np.ascontiguousarray(b.x[:, cols])
    counter = Counter()
    fixed = header_size(P)
    try:
        def vocab_case(fn, opts, per_row, start=cols.start):
            def check():
                fn(x, b.y, vocab_comm=comm, vocab_start=start, **opts)
                calls = counter.take()
                assert all(op != "gather" for _, op, _ in calls), calls
                assert len(calls) <= 2 if start is not None else len(calls) <= 3, calls
                assert calls[0] == ("vocab_comm", "sum", fixed), calls  # the agreement
                floats = sum(size for _, _, size in calls) - fixed
                assert floats <= per_row * n + 1, (floats, per_row, n, calls)
                if r == 0:
                    print(f"count vocab {fn.__name__} {sorted(opts)} start={start is not None}: "
                          f"{len(calls)} collectives {calls}, {floats / n:.2f} floats per row "
                          f"+ {fixed} (the agreement)")
            ck.check(f"count vocab {fn.__name__} {sorted(opts)} start={start}", check)

        for fn in (xd.cross_entropy, xd.cross_entropy_and_grad):
            # the plain loss: each row's rescaled sum and its target's logit
            for reduction in ("mean", "sum", "none"):
                vocab_case(fn, {"reduction": reduction}, 2)
            vocab_case(fn, {"weight": b.w[cols]}, 2 + 1)  # the target's class weight
            vocab_case(fn, {"label_smoothing": 0.1}, 2 + 1)  # the sum of the logits
            vocab_case(fn, {"label_smoothing": 0.1, "weight": b.w[cols]}, 2 + 2)
            # the widths first, then each row's max: one more collective
            vocab_case(fn, {}, 3, start=None)

        counts = [n // P] * P
        rows = spans(counts)[r]
        xr, yr = np.ascontiguousarray(b.x[rows]), b.y[rows]
        for fn in (xd.cross_entropy, xd.cross_entropy_and_grad):
            for reduction in ("mean", "sum", "none"):
                for z in (False, True):
                    def check(fn=fn, reduction=reduction, z=z):
                        fn(xr, yr, data_comm=comm, reduction=reduction, return_z_loss=z)
                        calls = counter.take()
                        two = fn is xd.cross_entropy_and_grad and reduction == "mean"
                        assert len(calls) == (2 if two else 1), calls
                        assert calls[0] == ("data_comm", "sum", fixed), calls
                        if two:  # then the loss sum (and the z-loss's)
                            assert calls[1] == ("data_comm", "sum", 1 + z), calls
                        if r == 0:
                            print(f"count data {fn.__name__} {reduction} z={z}: {calls}")
                    ck.check(f"count data {fn.__name__} {reduction} z={z}", check)

        if world.backend == "torch":
            import torch
            from xentfast._torch_distributed import cross_entropy as torch_ce

            def check_torch():
                mine = torch.tensor(x, requires_grad=True)
                loss = torch_ce(mine, torch.tensor(b.y), vocab_group=comm,
                                vocab_start=cols.start)
                forward = counter.take()
                loss.backward()
                backward = counter.take()
                assert len(forward) <= 2 and not backward, (forward, backward)
                if r == 0:
                    print(f"count torch autograd: forward {forward}, backward {backward}")
            ck.check("count torch autograd", check_torch)
    finally:
        counter.restore()


def scenario_torch_autograd(world, ck):
    import torch
    # the public adapter: xentfast.torch delegates a sharded call to _torch_distributed
    from xentfast.torch import CrossEntropyLoss, cross_entropy
    P, r = world.size, world.rank
    b = Batch(13, 41, seed=11)
    widths = {2: [30, 11], 4: [16, 1, 12, 12]}[P]
    cols = spans(widths)[r]
    for opts in ({}, {"label_smoothing": 0.1, "weight": True}, {"z_loss": 1e-3, "softcap": 20.0}):
        for reduction in ("mean", "sum", "none"):
            def check():
                import torch.nn.functional as F
                kw = {k: v for k, v in opts.items() if k != "weight"}
                w_full = b.w.astype(np.float32) if "weight" in opts else None
                up = b.g.astype(np.float32) if reduction == "none" else 0.5
                ref, ref_grad = xentfast.cross_entropy_and_grad(
                    b.x, b.y, weight=w_full, reduction=reduction, grad_output=up, **kw)
                ref = torch.as_tensor(ref, dtype=torch.float32)
                if "z_loss" not in opts:  # PyTorch's own, where it has the options
                    torch.testing.assert_close(
                        F.cross_entropy(torch.tensor(b.x), torch.tensor(b.y),
                                        weight=None if w_full is None else torch.tensor(w_full),
                                        reduction=reduction, **kw), ref, rtol=1e-5, atol=1e-6)
                mine = torch.tensor(np.ascontiguousarray(b.x[:, cols]), requires_grad=True)
                w_mine = torch.tensor(w_full[cols]) if w_full is not None else None
                loss = cross_entropy(mine, torch.tensor(b.y), weight=w_mine, reduction=reduction,
                                     vocab_group=world.comm, **kw)
                (loss * torch.as_tensor(up)).sum().backward()
                torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(mine.grad, torch.tensor(ref_grad[:, cols]), rtol=1e-5,
                                           atol=1e-6)
                module = CrossEntropyLoss(weight=w_mine, reduction=reduction,
                                          vocab_group=world.comm, **kw)
                with torch.no_grad():
                    torch.testing.assert_close(module(mine, torch.tensor(b.y)), ref, rtol=1e-5,
                                               atol=1e-6)
            ck.check(f"torch autograd {opts} {reduction}", check)
    # rows split over a data group: the mean over the whole batch
    counts = {2: [8, 5], 4: [4, 0, 6, 3]}[P]
    rows = spans(counts)[r]

    def check_data():
        ref, ref_grad = xentfast.cross_entropy_and_grad(b.x, b.y)
        mine = torch.tensor(np.ascontiguousarray(b.x[rows]), requires_grad=True)
        loss = cross_entropy(mine, torch.tensor(b.y[rows]), data_group=world.comm)
        loss.backward()
        torch.testing.assert_close(loss, torch.tensor(ref, dtype=torch.float32), rtol=1e-6,
                                   atol=1e-7)
        # the same kernel on the same rows, the same mean denominator: bit for bit
        np.testing.assert_array_equal(mine.grad.numpy(), ref_grad[rows])
    ck.check("torch autograd data", check_data)


def scenario_timing(world, ck):
    n, c = int(os.environ.get("XF_TIMING_ROWS", 4096)), int(os.environ.get("XF_TIMING_CLASSES",
                                                                            128256))
    P, r = world.size, world.rank
    cols = spans([c // P + (k < c % P) for k in range(P)])[r]
    rng = np.random.default_rng(r)
    x = rng.standard_normal((n, cols.stop - cols.start), dtype=np.float32)
    y = np.random.default_rng(0).integers(0, c, n)
    out = np.empty_like(x)
    threads = int(os.environ.get("XF_TIMING_THREADS", 1))
    counter = Counter()  # every collective the calls make
    start = cols.start if os.environ.get("XF_TIMING_START", "1") == "1" else None
    for label, fn in (("loss", lambda: xd.cross_entropy(x, y, vocab_comm=world.comm,
                                                         vocab_start=start,
                                                         num_threads=threads)),
                      ("loss+grad", lambda: xd.cross_entropy_and_grad(
                          x, y, vocab_comm=world.comm, vocab_start=start, out=out,
                          num_threads=threads))):
        fn()  # warm: pages of out
        counter.take()
        world.barrier()
        t0 = time.perf_counter()
        fn()
        world.barrier()
        dt = time.perf_counter() - t0
        # the traffic: every float a call hands to a reduction (the agreement
        # vector's apart), and the pickled bytes of any gather (an error's only)
        calls = counter.take()
        reduced = [size for _, op, size in calls if op != "gather"]
        traffic = {"collectives": len(calls),
                   "agreement": sum(k for k in reduced if k == header_size(P)),
                   "floats": sum(k for k in reduced if k != header_size(P)),
                   "gather_bytes": sum(size for _, op, size in calls if op == "gather")}
        if r == 0:
            print(f"{label}: {n}x{c} float32 over {P} ranks ({threads} thread(s) each, "
                  f"vocab_start {'given' if start is not None else 'not given'}): "
                  f"{dt * 1e3:.0f} ms; per rank {traffic['collectives']} collectives: "
                  f"{traffic['agreement']} floats of agreement, {traffic['floats']} floats "
                  f"reduced ({traffic['floats'] / n:.2f} per row), a gather of "
                  f"{traffic['gather_bytes']} bytes")
    counter.restore()


def scenario_single_timing(world, ck):
    """The single-process call on the whole batch that the timing scenario
    shards (run it with one rank)."""
    n, c = int(os.environ.get("XF_TIMING_ROWS", 4096)), int(os.environ.get("XF_TIMING_CLASSES",
                                                                            128256))
    x = np.random.default_rng(0).standard_normal((n, c), dtype=np.float32)
    y = np.random.default_rng(0).integers(0, c, n)
    out = np.empty_like(x)
    threads = int(os.environ.get("XF_TIMING_THREADS", 1))
    for label, fn in (("loss", lambda: xentfast.cross_entropy(x, y, num_threads=threads)),
                      ("loss+grad", lambda: xentfast.cross_entropy_and_grad(
                          x, y, out=out, num_threads=threads))):
        fn()
        t0 = time.perf_counter()
        fn()
        print(f"{label}: {n}x{c} float32, one process ({threads} thread(s)): "
              f"{(time.perf_counter() - t0) * 1e3:.0f} ms")


def scenario_shard_timing(world, ck):
    """One shard's two passes against the one-pass single-process call on
    the same logits (a one-rank communicator: no traffic)."""
    n, c = int(os.environ.get("XF_TIMING_ROWS", 4096)), int(os.environ.get("XF_TIMING_CLASSES",
                                                                            64128))
    x = np.random.default_rng(0).standard_normal((n, c), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, c, n)
    out = np.empty_like(x)

    def ms(fn):
        fn()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    for th in (1, 2):
        one = ms(lambda: xentfast.cross_entropy_and_grad(x, y, out=out, num_threads=th))
        two = ms(lambda: xd.cross_entropy_and_grad(x, y, vocab_comm=world.comm, out=out,
                                                   num_threads=th))
        loss = ms(lambda: xentfast.cross_entropy(x, y, num_threads=th))
        stats = ms(lambda: xd.cross_entropy(x, y, vocab_comm=world.comm, num_threads=th))
        print(f"{n}x{c} float32, {th} thread(s): loss+grad, one pass {one:.0f} ms, a shard's "
              f"two passes {two:.0f} ms; loss {loss:.0f} ms, a shard's statistics pass "
              f"{stats:.0f} ms")


def main():
    backend, scenario = sys.argv[1], sys.argv[2]
    world = World(backend)
    ck = Checker(world)
    globals()[f"scenario_{scenario}"](world, ck)
    code = ck.finish()
    if backend == "torch":
        import torch.distributed as dist
        dist.destroy_process_group()
    sys.exit(code)


if __name__ == "__main__":
    main()
