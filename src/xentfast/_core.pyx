# cython: language_level=3
"""Cython glue between the Python API and the C kernels.

The layers of xentfast, from the user down:

1. ``xentfast/_api.py`` validates every argument, moves the class axis last,
   turns targets into int64 rows, allocates outputs and applies the
   reduction's denominator.  It never loops over elements.
2. This module: typed buffers in, ``nogil`` + ``prange`` over blocks of rows
   with ``schedule="static"``, one scratch buffer per thread, one call of a C
   kernel per block.  It trusts its caller's shapes (checked cheaply here
   only where a mistake would corrupt memory).
3. ``kernels/plan.c``: ``xf_plan()`` picks the algorithm of a call (asked
   here once per call; nothing else decides).
4. ``include/xentfast/kernel_template.h``: per-row math on raw pointers,
   instantiated per ISA in ``kernels/{scalar,avx2,avx512}.c``, each file
   compiled with only its own instruction-set flags; ``kernels/dispatch.c``:
   cpuid + xgetbv once, picks the table of kernels.

Every row's result is computed by one thread with a fixed order of
operations, so results are bitwise identical for any thread count.
"""
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from cython.parallel cimport prange, parallel

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "xentfast/omp_shim.h" nogil:
    int xf_omp_max_threads()
    int xf_omp_team_size()
    int xf_omp_thread()
    const int xf_omp_enabled
    int xf_forked_child
    int xf_next_fork_clean
    int64_t xf_regions_opened
    int xf_last_team
    int xf_register_fork_handler()
    void xf_note_region()

from xentfast._kernels cimport *

MODE_LOSS = XF_MODE_LOSS
MODE_GRAD = XF_MODE_GRAD
MODE_SOFTMAX = XF_MODE_SOFTMAX
MODE_LOG_SOFTMAX = XF_MODE_LOG_SOFTMAX
MODE_LSE = XF_MODE_LSE
MODE_EVAL = XF_MODE_EVAL
MODE_SHARD_STATS = XF_MODE_SHARD_STATS
MODE_SHARD_GRAD = XF_MODE_SHARD_GRAD
SHARD_DOUBLES = XF_SHARD_DOUBLES
TARGET_ELSEWHERE = XF_TARGET_ELSEWHERE
OP_BCE = XF_OP_BCE
OP_MSE = XF_OP_MSE
OPENMP = bool(xf_omp_enabled)
BACKENDS = ("avx512", "avx2", "neon", "scalar")

# Thread decisions.  A call of n elements runs on min(requested, n // minimum)
# threads, where `minimum` is the work one extra thread must get to pay for
# itself; when that is 1 the call runs on the calling thread and opens no
# parallel region at all (no OpenMP worker wakes up, spins after it, or takes
# a core from BLAS threads between two matrix products).
cdef enum:
    # Measured crossovers, 1 thread against 2 on a 2-core x86-64 with AVX-512
    # (`PYTHONPATH=src python tools/threads_bench.py crossover`: best of
    # many interleaved calls; "cold" = 20 ms idle before each call, so the
    # workers sleep and the caches are cold, as between other work).  Rows of 10
    # or 1000 classes: 2 threads win from ~30k elements back to back, from
    # ~60-100k cold (x1.2 at 100k, x1.3-1.4 at 200k-300k).  Binary
    # cross-entropy / squared error: from ~30k / ~100k back to back, ~300k-500k
    # cold (x1.4 / x1.1 at 500k).  Target scan: ~150k back to back, ~200k cold
    # (x1.2; x1.5 at 1M).  Each minimum is about twice the cold crossover's
    # share per thread: below it the second thread gains little and costs a
    # wake-up, and a worker left spinning next to BLAS threads.
    ROW_ELEMENTS_PER_THREAD = 131072
    ELEM_ELEMENTS_PER_THREAD = 262144
    SCAN_TARGETS_PER_THREAD = 262144

cdef enum:
    WORK_ROWS = 0  # the row kernels (cross-entropy, softmax, logsumexp, ...)
    WORK_ELEM = 1  # the element-wise kernels (binary cross-entropy, squared error)
    WORK_SCAN = 2  # the target check

# the minima in use (the tools lower them to measure the crossovers)
cdef int64_t _min_work[3]
_min_work[WORK_ROWS] = ROW_ELEMENTS_PER_THREAD
_min_work[WORK_ELEM] = ELEM_ELEMENTS_PER_THREAD
_min_work[WORK_SCAN] = SCAN_TARGETS_PER_THREAD

# a forked child runs serially: see omp_shim.h
xf_register_fork_handler()


cdef int _team_size(int64_t n_elements, int work, int requested) noexcept nogil:
    """Threads for a call of `n_elements` of kind `work` (WORK_*) when
    `requested` are allowed: 1 means run on the calling thread."""
    cdef int64_t fit
    if requested <= 1 or xf_forked_child:
        return 1
    fit = n_elements // _min_work[work]
    if fit <= 1:
        return 1
    return requested if fit >= requested else <int>fit


_WORK_KINDS = {"rows": WORK_ROWS, "elementwise": WORK_ELEM, "scan": WORK_SCAN}


def team_size(int64_t n_elements, int requested, kind="rows"):
    """Threads a call of `n_elements` would run on with `requested` allowed
    (kind: "rows", "elementwise" or "scan"); 1 = no parallel region."""
    return _team_size(n_elements, _WORK_KINDS[kind], requested)


def min_work_per_thread():
    """Elements each thread must get before a call uses it, per kind."""
    return {name: _min_work[k] for name, k in _WORK_KINDS.items()}


def _set_min_work_per_thread(int64_t rows, int64_t elementwise, int64_t scan):
    """Override the minima (for measuring the crossovers); returns the old ones."""
    old = (_min_work[WORK_ROWS], _min_work[WORK_ELEM], _min_work[WORK_SCAN])
    if rows < 1 or elementwise < 1 or scan < 1:
        raise ValueError("minima must be >= 1")
    _min_work[WORK_ROWS], _min_work[WORK_ELEM], _min_work[WORK_SCAN] = rows, elementwise, scan
    return old


def parallel_regions():
    """(parallel regions opened so far in this process, team size of the last)."""
    return xf_regions_opened, xf_last_team


def forked_child():
    """True in the child of a fork(): every call then runs on one thread."""
    return bool(xf_forked_child)


def _set_next_fork_clean(bint clean):
    """Say the coming fork() starts its child with an unused OpenMP runtime
    (a forkserver's; see omp_shim.h): the child keeps its threads unless
    xentfast opened a parallel region in this process."""
    global xf_next_fork_clean
    xf_next_fork_clean = clean

# Gradients of at least this many bytes are written with non-temporal
# stores (they would not stay in the caches anyway); smaller ones stay cached.
STREAMING_BYTES = 8 << 20
# float32 rows of at least this many classes written in place on a team are
# shared by its threads (kernels.h; 0: never, for a build without atomics)
SHARED_MIN_CLASSES = XF_SHARED_MIN_CLASSES


def max_threads():
    """Threads a call may use by default: ``omp_get_max_threads()`` (1 in a
    forked child)."""
    return 1 if xf_forked_child else xf_omp_max_threads()


def cpu_features():
    """Instruction sets the CPU has and the OS has enabled, by name."""
    cdef int f = xf_cpu_features()
    names = {
        "sse2": XF_CPU_SSE2, "avx": XF_CPU_AVX, "avx2": XF_CPU_AVX2, "fma": XF_CPU_FMA,
        "avx512f": XF_CPU_AVX512F, "avx512dq": XF_CPU_AVX512DQ,
        "avx512bw": XF_CPU_AVX512BW, "avx512vl": XF_CPU_AVX512VL,
        "os_avx": XF_CPU_OS_AVX, "os_avx512": XF_CPU_OS_AVX512,
    }
    return [name for name, bit in names.items() if f & bit]


def supported_backends():
    """Backends this build can run on this CPU, best first."""
    return [b for b in BACKENDS if xf_backend_supported(b.encode())]


def backend():
    """Name of the backend in use."""
    return xf_table().name.decode()


def select_backend(name):
    """Use backend `name` ("avx512", "avx2", "neon", "scalar", or "" for the best)."""
    cdef int rc = xf_select_backend(name.encode())
    if rc == -1:
        raise ValueError(
            f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    if rc == -2:
        raise RuntimeError(
            f"backend {name!r} is not available on this machine; it supports "
            f"{', '.join(supported_backends())} (CPU features: {', '.join(cpu_features())})")


def check_targets(const int64_t[::1] target, int64_t n_classes, int64_t ignore_index,
                  weight, sample_weight, int num_threads=1):
    """Check every target is in [0, n_classes) or ignore_index.

    Returns ``(first_bad_position, n_counted, weight_sum)``; the position is
    -1 when all are valid.  ``weight_sum`` = sum over counted rows of
    sample_weight[n] * weight[target[n]] (each factor 1 when None): the
    ``mean`` reduction's denominator.
    """
    cdef int64_t n = target.shape[0], counted = 0, bad
    cdef double wsum = 0.0
    cdef const double[::1] w
    cdef const double[::1] s
    cdef bint weighted = weight is not None, row_weighted = sample_weight is not None
    if weighted:
        w = weight
        if w.shape[0] != n_classes:
            raise ValueError("internal: weight length")
    if row_weighted:
        s = sample_weight
        if s.shape[0] != n:
            raise ValueError("internal: sample_weight length")
    cdef const double *wp = &w[0] if weighted and n_classes else NULL
    cdef const double *sp = &s[0] if row_weighted and n else NULL
    with nogil:
        bad = _scan_targets(&target[0] if n else NULL, n, n_classes, ignore_index, wp, sp,
                            &counted, &wsum, num_threads)
    return bad, counted, wsum


cdef enum:
    SCAN_CHUNK = 65536  # targets per chunk of the target scan (fixed: see _scan_targets)


cdef int64_t _scan_chunk(const int64_t *target, int64_t n, uint64_t n_classes,
                         int64_t ignore_index, const double *weight,
                         const double *sample_weight, int64_t *counted,
                         double *weight_sum) noexcept nogil:
    """_scan_targets on one chunk: first bad position in it (-1 if none),
    its count and its weight sum (in order).  The check runs in blocks with
    no early exit, no branch per target and no stores through the output
    pointers; only a block holding a bad target is searched again.  1e6
    targets: 1.0 ms on one thread (the branchy loop it replaced: 1.5 ms),
    0.57 ms on two: ``python -m timeit -s "import numpy as np; from xentfast
    import _core; t = np.random.default_rng(0).integers(0, 32000, 10**6)"
    "_core.check_targets(t, 32000, -100, None, None, 1)"`` (or ``..., 2)``)."""
    cdef int64_t i, y, b0 = 0, b1, cnt = 0, bad
    cdef double wsum = 0.0, term
    while b0 < n:
        b1 = min(b0 + 4096, n)
        bad = 0
        for i in range(b0, b1):
            y = target[i]
            bad |= (y != ignore_index) & (<uint64_t>y >= n_classes)
            cnt += (y != ignore_index)
        if bad:
            for i in range(b0, b1):
                y = target[i]
                if y != ignore_index and <uint64_t>y >= n_classes:
                    return i
        b0 = b1
    if weight == NULL and sample_weight == NULL:
        wsum = <double>cnt
    else:
        for i in range(n):
            y = target[i]
            if y == ignore_index:
                continue
            term = weight[y] if weight != NULL else 1.0
            if sample_weight != NULL:
                term = term * sample_weight[i]
            wsum += term
    counted[0] = cnt
    weight_sum[0] = wsum
    return -1


cdef int64_t _scan_targets(const int64_t *target, int64_t n, int64_t n_classes,
                           int64_t ignore_index, const double *weight,
                           const double *sample_weight, int64_t *counted,
                           double *weight_sum, int num_threads=1) noexcept nogil:
    """Position of the first target outside [0, n_classes) that is not
    ignore_index (-1 if none); counts the other rows and sums
    sample_weight[n] * weight[target[n]] over them (factors 1 when NULL).

    Fixed chunks of SCAN_CHUNK targets, their sums added in chunk order: the
    same result for any number of threads (chunks run in parallel for
    num_threads > 1)."""
    cdef int64_t n_chunks = (n + SCAN_CHUNK - 1) // SCAN_CHUNK, k, c0, first = -1
    cdef int64_t cnt = 0
    cdef double wsum = 0.0
    cdef int64_t *bad_at = NULL
    cdef int64_t *cnt_at = NULL
    cdef double *sum_at = NULL
    counted[0] = 0
    weight_sum[0] = 0.0
    num_threads = _team_size(n, WORK_SCAN, num_threads)
    if n_chunks > 1 and num_threads > 1:
        bad_at = <int64_t *>malloc(n_chunks * sizeof(int64_t))
        cnt_at = <int64_t *>malloc(n_chunks * sizeof(int64_t))
        sum_at = <double *>malloc(n_chunks * sizeof(double))
    if bad_at != NULL and cnt_at != NULL and sum_at != NULL:
        for k in prange(n_chunks, schedule="static", num_threads=num_threads):
            if k == 0:
                xf_note_region()
            c0 = k * SCAN_CHUNK
            bad_at[k] = _scan_chunk(target + c0, min(SCAN_CHUNK, n - c0), <uint64_t>n_classes,
                                    ignore_index, weight,
                                    sample_weight + c0 if sample_weight != NULL else NULL,
                                    &cnt_at[k], &sum_at[k])
        for k in range(n_chunks):
            if bad_at[k] >= 0:
                first = k * SCAN_CHUNK + bad_at[k]
                break
            cnt += cnt_at[k]
            wsum += sum_at[k]
    else:  # serially (or when the small arrays could not be allocated)
        for k in range(n_chunks):
            c0 = k * SCAN_CHUNK
            first = _scan_chunk(target + c0, min(SCAN_CHUNK, n - c0), <uint64_t>n_classes,
                                ignore_index, weight,
                                sample_weight + c0 if sample_weight != NULL else NULL,
                                counted, weight_sum)
            if first >= 0:
                first += c0
                break
            cnt += counted[0]
            wsum += weight_sum[0]
    free(bad_at)
    free(cnt_at)
    free(sum_at)
    if first >= 0:
        counted[0] = 0
        weight_sum[0] = 0.0
        return first
    counted[0] = cnt
    weight_sum[0] = wsum
    return -1


cdef inline const xf_kernel_table *_table() noexcept nogil:
    return xf_table()


cdef inline double *_row_ptr(double[::1] a, int64_t n_rows, str name) except? NULL:
    """Pointer to a per-row array (None or empty: NULL)."""
    if a is None or a.shape[0] == 0:
        return NULL
    if a.shape[0] != n_rows:
        raise ValueError(f"internal: {name} length")
    return &a[0]


cdef inline const double *_const_row_ptr(const double[::1] a, int64_t n_rows,
                                         str name) except? NULL:
    """Pointer to a read-only per-row array (None or empty: NULL)."""
    if a is None or a.shape[0] == 0:
        return NULL
    if a.shape[0] != n_rows:
        raise ValueError(f"internal: {name} length")
    return &a[0]


cdef void *_like_rows(arr, cnp.ndarray xa, str name, int64_t *stride) except? NULL:
    """Data of `arr` (None: NULL), checked to be 2-D rows like `xa` (same
    shape and dtype, unit column stride); its row stride in elements."""
    if arr is None:
        stride[0] = 0
        return NULL
    cdef cnp.ndarray ra = arr
    cdef int64_t itemsize = cnp.PyArray_ITEMSIZE(xa)
    if (cnp.PyArray_NDIM(ra) != 2 or cnp.PyArray_DIM(ra, 0) != cnp.PyArray_DIM(xa, 0)
            or cnp.PyArray_DIM(ra, 1) != cnp.PyArray_DIM(xa, 1) or ra.dtype != xa.dtype
            or (cnp.PyArray_DIM(xa, 1) > 1 and cnp.PyArray_STRIDE(ra, 1) != itemsize)):
        raise ValueError(f"internal: {name} must match x")
    stride[0] = cnp.PyArray_STRIDE(ra, 0) // itemsize
    return cnp.PyArray_DATA(ra)


def rows(x, out, const int64_t[::1] target, class_weight, int64_t ignore_index,
         double scale, const double[::1] row_scale, double[::1] row_loss,
         double[::1] row_lse, int mode, bint streaming, int num_threads, *,
         double label_smoothing=0.0, double z_loss=0.0, double softcap=0.0,
         double inv_temperature=1.0, double weight_total=0.0,
         const double[::1] row_weight=None, target_prob=None,
         double[::1] row_z_loss=None, double[::1] row_entropy=None,
         int64_t[::1] row_argmax=None, double[:, ::1] row_shard=None,
         int64_t smoothing_classes=0):
    """Run one kernel over all rows of the 2-D array `x` (unit column stride).

    `out` and `target_prob` (or None) are 2-D arrays of x's shape and dtype
    with unit column stride; `target` (length n_rows or empty),
    `class_weight` (None or n_classes values of x's dtype) and the per-row
    arrays (length n_rows, or empty/None) follow ``xf_rows_args`` in
    kernels.h.
    """
    cdef cnp.ndarray xa = x
    cdef cnp.ndarray wa
    cdef xf_rows_args a
    cdef int64_t n_rows = cnp.PyArray_DIM(xa, 0), n_classes = cnp.PyArray_DIM(xa, 1)
    cdef int64_t itemsize = cnp.PyArray_ITEMSIZE(xa)
    cdef bint is_f32 = xa.dtype == np.float32
    if cnp.PyArray_NDIM(xa) != 2 or not (is_f32 or xa.dtype == np.float64):
        raise ValueError("internal: x must be a 2-D float32/float64 array")
    if n_rows == 0:
        return
    if n_classes > 1 and cnp.PyArray_STRIDE(xa, 1) != itemsize:
        raise ValueError("internal: x needs a unit column stride")
    memset(&a, 0, sizeof(a))
    a.n_rows = n_rows
    a.n_classes = n_classes
    a.x = cnp.PyArray_DATA(xa)
    a.x_stride = cnp.PyArray_STRIDE(xa, 0) // itemsize
    a.out = _like_rows(out, xa, "out", &a.out_stride)
    if a.out == NULL and (mode == XF_MODE_GRAD or mode == XF_MODE_SOFTMAX
                          or mode == XF_MODE_LOG_SOFTMAX):
        raise ValueError("internal: this mode writes rows into out")
    a.target_prob = _like_rows(target_prob, xa, "target_prob", &a.target_prob_stride)
    if target.shape[0]:
        if target.shape[0] != n_rows:
            raise ValueError("internal: target length")
        a.target = &target[0]
    if row_argmax is not None and row_argmax.shape[0]:
        if row_argmax.shape[0] != n_rows:
            raise ValueError("internal: row_argmax length")
        a.row_argmax = &row_argmax[0]
    if class_weight is not None:
        wa = class_weight
        if cnp.PyArray_DIM(wa, 0) != n_classes or wa.dtype != xa.dtype or not cnp.PyArray_IS_C_CONTIGUOUS(wa):
            raise ValueError("internal: class_weight must match x")
        a.class_weight = cnp.PyArray_DATA(wa)
    a.row_scale = _const_row_ptr(row_scale, n_rows, "row_scale")
    a.row_weight = _const_row_ptr(row_weight, n_rows, "row_weight")
    a.row_loss = _row_ptr(row_loss, n_rows, "row_loss")
    a.row_lse = _row_ptr(row_lse, n_rows, "row_lse")
    a.row_z_loss = _row_ptr(row_z_loss, n_rows, "row_z_loss")
    a.row_entropy = _row_ptr(row_entropy, n_rows, "row_entropy")
    a.ignore_index = ignore_index
    a.scale = scale
    a.mode = mode
    a.streaming = streaming
    a.label_smoothing = label_smoothing
    a.z_loss = z_loss
    a.softcap = softcap
    a.inv_temperature = inv_temperature
    a.weight_total = weight_total
    if mode == XF_MODE_SHARD_STATS or mode == XF_MODE_SHARD_GRAD:
        _shard_rows(&a, row_shard, smoothing_classes)
    if n_rows == 0:
        return
    _run(&a, is_f32, num_threads)


cdef int _run(const xf_rows_args *a, bint is_f32, int num_threads) except -1:
    """All rows of the call `a` by the algorithm xf_plan() picks: the split
    rows here, every other plan by the table's rows function over blocks."""
    cdef const xf_kernel_table *table = _table()
    cdef xf_rows_fn fn = table.rows_f32 if is_f32 else table.rows_f64
    cdef int64_t n_rows = a.n_rows
    cdef int64_t block = xf_block_rows(a.n_classes)
    cdef int64_t n_blocks = (n_rows + block - 1) // block, begin, end
    cdef int t
    cdef size_t scratch_bytes = xf_scratch_bytes(a.n_classes)
    cdef void *scratch
    cdef int failed = 0
    cdef int *failed_ptr = &failed
    num_threads = _team_size(n_rows * a.n_classes, WORK_ROWS, num_threads)
    cdef xf_plan_kind plan = xf_plan(a, &table.caps_f32 if is_f32 else &table.caps_f64,
                                     num_threads)
    if plan == XF_PLAN_SPLIT:
        return _run_split(a, is_f32, num_threads)
    if plan == XF_PLAN_SHARED:
        return _run_shared(a, table, num_threads)
    if num_threads > n_blocks:
        num_threads = <int>n_blocks
    if num_threads <= 1:
        scratch = malloc(scratch_bytes)
        if scratch == NULL:
            raise MemoryError()
        with nogil:
            fn(a, plan, 0, n_rows, scratch)
        free(scratch)
        return 0
    with nogil, parallel(num_threads=num_threads):
        scratch = malloc(scratch_bytes)
        # every thread must reach the work-sharing loop, even one whose
        # malloc failed: it only flags the failure for its blocks.  Each
        # thread takes one contiguous run of whole blocks in one call, so
        # that a softcapped row's deferred write (softcap.h) overlaps
        # the next row's arithmetic across block boundaries too.
        for t in prange(num_threads, schedule="static"):
            if t == 0:
                xf_note_region()
            begin = (t * n_blocks // num_threads) * block
            end = ((t + 1) * n_blocks // num_threads) * block
            if end > n_rows:
                end = n_rows
            if scratch != NULL:
                fn(a, plan, begin, end, scratch)  # never empty: num_threads <= n_blocks
            else:
                failed_ptr[0] = 1
        free(scratch)
    if failed:
        raise MemoryError("xentfast: no memory for per-thread scratch")
    return 0


def plan_of(x, int mode=XF_MODE_LOSS, int num_threads=1, bint targets=True, *,
            double label_smoothing=0.0, double z_loss=0.0, double softcap=0.0,
            double inv_temperature=1.0, bint class_weight=False, bint row_weight=False,
            bint target_prob=False, bint row_scale=False, bint in_place=False):
    """The algorithm xf_plan() picks for a call on the 2-D rows `x` with these
    options (for the tests and docs/design.md): "plain", "narrow", "split",
    "general", "softcap", "softcap_one_loop" or "shared" (in_place: the
    output is x itself)."""
    cdef cnp.ndarray xa = x
    cdef xf_rows_args a
    cdef double dummy = 0.0
    cdef int64_t itemsize = cnp.PyArray_ITEMSIZE(xa)
    cdef const xf_kernel_table *table = _table()
    memset(&a, 0, sizeof(a))
    a.n_rows = cnp.PyArray_DIM(xa, 0)
    a.n_classes = cnp.PyArray_DIM(xa, 1)
    a.x = cnp.PyArray_DATA(xa)
    a.x_stride = cnp.PyArray_STRIDE(xa, 0) // itemsize
    a.out_stride = a.x_stride
    a.out = <void *>a.x if in_place else NULL
    a.mode = mode
    a.label_smoothing = label_smoothing
    a.z_loss = z_loss
    a.softcap = softcap
    a.inv_temperature = inv_temperature
    a.target = <const int64_t *>&dummy if targets else NULL
    a.class_weight = &dummy if class_weight else NULL
    a.row_weight = &dummy if row_weight else NULL
    a.target_prob = &dummy if target_prob else NULL
    a.row_scale = &dummy if row_scale else NULL
    if mode == XF_MODE_EVAL:
        a.row_entropy = &dummy
    num_threads = _team_size(a.n_rows * a.n_classes, WORK_ROWS, num_threads)
    plan = xf_plan(&a, &table.caps_f32 if itemsize == 4 else &table.caps_f64, num_threads)
    return ("plain", "narrow", "split", "general", "softcap", "softcap_one_loop",
            "shared")[<int>plan]


cdef int _run_shared(const xf_rows_args *a, const xf_kernel_table *table,
                     int num_threads) except -1:
    """The gradient in place over long rows: every row's segments over a
    team in step (rows_shared.h), whose size is the one OpenMP gives the
    region; each member's exps go over the logits, so the team's segment
    maxima and sums are all it allocates."""
    cdef void *arrays = malloc(xf_team_bytes(a.n_classes))
    cdef xf_team team
    if arrays == NULL:
        raise MemoryError()
    xf_team_init(&team, arrays, a.n_classes)
    with nogil, parallel(num_threads=num_threads):
        if xf_omp_thread() == 0:
            xf_note_region()
        table.rows_shared_f32(a, &team, xf_omp_thread(), xf_omp_team_size())
    free(arrays)
    return 0


cdef int _run_split(const xf_rows_args *a, bint is_f32, int num_threads) except -1:
    """Few long rows: each row's fixed segments spread over the threads.

    Phase 1 computes every segment's (max, sum-exp) in parallel; one thread
    folds them per row in segment order (the very arithmetic of the row
    kernel, so the result is the same bit for bit); phase 2 writes the
    output segments in parallel; one thread writes the target entries.
    """
    cdef xf_split_fns fns = _table().split_f32[0] if is_f32 else _table().split_f64[0]
    cdef int64_t n_rows = a.n_rows, itemsize = 4 if is_f32 else 8
    cdef int64_t n_seg = (a.n_classes + XF_SEGMENT - 1) // XF_SEGMENT
    cdef int64_t chunks = min(n_seg, 2 * ((num_threads + n_rows - 1) // n_rows))
    cdef int64_t per_chunk = (n_seg + chunks - 1) // chunks
    cdef int64_t n_units = n_rows * chunks, u, r, j0, j1
    cdef char *seg_max = <char *>malloc(n_rows * n_seg * itemsize)
    cdef double *seg_sum = <double *>malloc(n_rows * n_seg * sizeof(double))
    cdef double *state = <double *>malloc(n_rows * XF_SPLIT_ROW_DOUBLES * sizeof(double))
    cdef bint writes = a.out != NULL and (a.mode == XF_MODE_GRAD or a.mode == XF_MODE_SOFTMAX)
    if seg_max == NULL or seg_sum == NULL or state == NULL:
        free(seg_max)
        free(seg_sum)
        free(state)
        raise MemoryError()
    cdef int64_t y
    with nogil:
        # the target logits, read before phase 1 may overwrite them (out=x)
        for r in range(n_rows):
            y = a.target[r] if a.target != NULL else -1
            if y < 0 or y >= a.n_classes:  # ignored (or no target)
                state[r * XF_SPLIT_ROW_DOUBLES + XF_SPLIT_ZY] = 0.0
            elif is_f32:
                state[r * XF_SPLIT_ROW_DOUBLES + XF_SPLIT_ZY] = (<const float *>a.x)[
                    r * a.x_stride + y]
            else:
                state[r * XF_SPLIT_ROW_DOUBLES + XF_SPLIT_ZY] = (<const double *>a.x)[
                    r * a.x_stride + y]
        for u in prange(n_units, schedule="static", num_threads=num_threads):
            if u == 0:
                xf_note_region()
            r = u // chunks
            j0 = (u % chunks) * per_chunk
            j1 = min(j0 + per_chunk, n_seg)
            if j0 < j1:
                fns.stats(a, r, j0, j1, seg_max + r * n_seg * itemsize, seg_sum + r * n_seg)
        for r in range(n_rows):
            fns.fold(a, r, seg_max + r * n_seg * itemsize, seg_sum + r * n_seg,
                     state + r * XF_SPLIT_ROW_DOUBLES)
        if writes:
            for u in prange(n_units, schedule="static", num_threads=num_threads):
                if u == 0:
                    xf_note_region()
                r = u // chunks
                j0 = (u % chunks) * per_chunk
                j1 = min(j0 + per_chunk, n_seg)
                if j0 < j1:
                    fns.write(a, r, j0, j1, seg_max + r * n_seg * itemsize,
                              state + r * XF_SPLIT_ROW_DOUBLES)
            for r in range(n_rows):
                fns.fix(a, r, state + r * XF_SPLIT_ROW_DOUBLES)
    free(seg_max)
    free(seg_sum)
    free(state)
    return 0


cdef _map_f32(xf_map_f32_fn fn, const float[::1] x, float[::1] y):
    if y.shape[0] != x.shape[0]:
        raise ValueError("x and y must have the same length")
    if x.shape[0]:
        with nogil:
            fn(&x[0], &y[0], x.shape[0])


def exp_f32(const float[::1] x, float[::1] y):
    """y = exp(x) with the current backend's vector exp (for the tests)."""
    _map_f32(_table().exp_f32, x, y)


def exp_nonpos_f32(const float[::1] x, float[::1] y):
    """y = exp(x) for x <= 0 or NaN with the exp of the row sums (for the
    tests; elsewhere it is exp without the clamp that only positive x needs)."""
    _map_f32(_table().exp_nonpos_f32, x, y)


cdef inline void _strides2(cnp.ndarray a, int64_t itemsize, int64_t *row, int64_t *col):
    row[0] = cnp.PyArray_STRIDE(a, 0) // itemsize
    col[0] = cnp.PyArray_STRIDE(a, 1) // itemsize


def elementwise(int op, x, y, w, pw, g, out, double[::1] row_loss, elem_loss, double scale,
                double label_smoothing, int num_threads):
    """Run an element-wise loss kernel over the rows of the 2-D array `x`.

    `y`, `out` and `elem_loss` (or None) are 2-D arrays of x's shape and
    dtype with unit column stride; `w` and `g` (or None) 2-D of x's shape
    with column stride 0 or 1; `pw` (or None) 1-D of length n_cols or a
    broadcast (stride 0) view; `row_loss` of length n_rows or empty.
    """
    cdef cnp.ndarray xa = x, ya = y, ta
    cdef xf_elem_args a
    cdef int64_t n_rows = cnp.PyArray_DIM(xa, 0), n_cols = cnp.PyArray_DIM(xa, 1)
    cdef int64_t itemsize = cnp.PyArray_ITEMSIZE(xa), unused
    cdef bint is_f32 = xa.dtype == np.float32
    if not (is_f32 or xa.dtype == np.float64):
        raise ValueError("internal: x must be float32/float64")
    if n_rows == 0 or n_cols == 0:  # nothing to read; a row of no elements sums to 0
        if row_loss is not None and row_loss.shape[0]:
            row_loss[:] = 0.0
        return
    for name, arr, col_strides in (("x", x, (1,)), ("y", y, (1,)), ("out", out, (1,)),
                                   ("elem_loss", elem_loss, (1,)), ("w", w, (0, 1)),
                                   ("g", g, (0, 1))):
        if arr is None:
            continue
        ta = arr
        if (cnp.PyArray_NDIM(ta) != 2 or cnp.PyArray_DIM(ta, 0) != n_rows
                or cnp.PyArray_DIM(ta, 1) != n_cols or ta.dtype != xa.dtype
                or (n_cols > 1 and cnp.PyArray_STRIDE(ta, 1) // itemsize not in col_strides)
                or cnp.PyArray_STRIDE(ta, 1) % itemsize or cnp.PyArray_STRIDE(ta, 0) % itemsize):
            raise ValueError(f"internal: {name} must match x")
    a.n_rows = n_rows
    a.n_cols = n_cols
    a.x = cnp.PyArray_DATA(xa)
    _strides2(xa, itemsize, &a.x_stride, &unused)
    a.y = cnp.PyArray_DATA(ya)
    _strides2(ya, itemsize, &a.y_stride, &unused)
    a.w = NULL
    a.w_row_stride = a.w_col_stride = 0
    if w is not None:
        ta = w
        a.w = cnp.PyArray_DATA(ta)
        _strides2(ta, itemsize, &a.w_row_stride, &a.w_col_stride)
    a.pw = NULL
    a.pw_col_stride = 0
    if pw is not None:
        ta = pw
        if (cnp.PyArray_NDIM(ta) != 1 or cnp.PyArray_DIM(ta, 0) != n_cols or ta.dtype != xa.dtype
                or cnp.PyArray_STRIDE(ta, 0) not in (0, itemsize)):
            raise ValueError("internal: pw must be n_cols values with stride 0 or 1")
        a.pw = cnp.PyArray_DATA(ta)
        a.pw_col_stride = cnp.PyArray_STRIDE(ta, 0) // itemsize
    a.g = NULL
    a.g_row_stride = a.g_col_stride = 0
    if g is not None:
        ta = g
        a.g = cnp.PyArray_DATA(ta)
        _strides2(ta, itemsize, &a.g_row_stride, &a.g_col_stride)
    a.scale = scale
    a.label_smoothing = label_smoothing
    a.out = NULL
    a.out_stride = 0
    if out is not None:
        ta = out
        a.out = cnp.PyArray_DATA(ta)
        _strides2(ta, itemsize, &a.out_stride, &unused)
    a.elem_loss = NULL
    a.elem_stride = 0
    if elem_loss is not None:
        ta = elem_loss
        a.elem_loss = cnp.PyArray_DATA(ta)
        _strides2(ta, itemsize, &a.elem_stride, &unused)
    a.row_loss = _row_ptr(row_loss, n_rows, "row_loss")
    a.op = op
    if n_rows == 0 or n_cols == 0:
        return
    _run_elem(&a, is_f32, num_threads)


cdef int _run_elem(const xf_elem_args *a, bint is_f32, int num_threads) except -1:
    cdef xf_elem_fn fn = _table().elem_f32 if is_f32 else _table().elem_f64
    cdef int64_t n_rows = a.n_rows
    cdef int64_t block = XF_BLOCK_ELEMENTS // a.n_cols
    cdef int64_t n_blocks, b, begin, end
    if block < 1:
        block = 1
    n_blocks = (n_rows + block - 1) // block
    num_threads = _team_size(n_rows * a.n_cols, WORK_ELEM, num_threads)
    if num_threads > n_blocks:
        num_threads = <int>n_blocks
    if num_threads <= 1:
        with nogil:
            fn(a, 0, n_rows)
        return 0
    with nogil:
        for b in prange(n_blocks, schedule="static", num_threads=num_threads):
            if b == 0:
                xf_note_region()
            begin = b * block
            end = begin + block
            if end > n_rows:
                end = n_rows
            fn(a, begin, end)
    return 0


def log1p_f32(const float[::1] x, float[::1] y):
    """y = log1p(x) for x in [0, 1] with the current backend's vector code."""
    _map_f32(_table().log1p_f32, x, y)


cdef double _fixed_sum(const double *v, int64_t n) noexcept nogil:
    """Sum in a fixed order whatever the threads: 8 interleaved partial sums
    (vectorisable, and pairwise-like in accuracy), then those in order."""
    cdef double acc[8]
    cdef int64_t i
    cdef int k
    for k in range(8):
        acc[k] = 0.0
    i = 0
    while i + 8 <= n:
        for k in range(8):
            acc[k] += v[i + k]
        i += 8
    while i < n:
        acc[i % 8] += v[i]
        i += 1
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


def fixed_sum(const double[::1] v):
    """Sum of `v` in a fixed order (see _fixed_sum)."""
    if v.shape[0] == 0:
        return 0.0
    return _fixed_sum(&v[0], v.shape[0])


cdef inline bint _of_type(cnp.ndarray a, int type_num):
    """Is `a`'s dtype the native-byte-order `type_num`?  What ``a.dtype ==
    np.float32`` asks, without the Python attribute look-ups and comparisons
    that a small call would pay three times."""
    return cnp.PyArray_TYPE(a) == type_num and cnp.PyArray_ISNOTSWAPPED(a)


cdef inline bint _rows_ok(cnp.ndarray a, int64_t itemsize):
    return (cnp.PyArray_NDIM(a) == 2
            and (cnp.PyArray_DIM(a, 1) <= 1 or cnp.PyArray_STRIDE(a, 1) == itemsize)
            and cnp.PyArray_ISALIGNED(a)
            and cnp.PyArray_STRIDE(a, 0) % itemsize == 0)


cdef inline void _extent(cnp.ndarray a, char **lo, char **hi):
    """Byte range [lo, hi) an array touches (strides may be negative)."""
    cdef char *p = <char *>cnp.PyArray_DATA(a)
    cdef Py_ssize_t k, span
    lo[0] = p
    hi[0] = p + cnp.PyArray_ITEMSIZE(a)
    for k in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, k) == 0:
            hi[0] = lo[0]
            return
        span = (cnp.PyArray_DIM(a, k) - 1) * cnp.PyArray_STRIDE(a, k)
        if span < 0:
            lo[0] += span
        else:
            hi[0] += span


def ce_fast(x, target, out, int mode, bint mean, int64_t ignore_index, double grad_output,
            int num_threads):
    """The common cross-entropy call in one step: 2-D float rows (unit
    column stride), 1-D int64 targets, no options, a mean or sum reduction.

    Returns the loss, or NotImplemented when the inputs are not of that
    simple form (the caller then takes the general path, which also gives
    the proper error for bad input).  A target out of range raises here.
    """
    if type(x) is not np.ndarray or type(target) is not np.ndarray:
        return NotImplemented
    cdef cnp.ndarray xa = x, ta = target, oa
    cdef int x_type = cnp.PyArray_TYPE(xa)
    if not (_of_type(xa, cnp.NPY_FLOAT32) or _of_type(xa, cnp.NPY_FLOAT64)):
        return NotImplemented
    cdef int64_t itemsize = cnp.PyArray_ITEMSIZE(xa)
    if not _rows_ok(xa, itemsize):
        return NotImplemented
    cdef int64_t n_rows = cnp.PyArray_DIM(xa, 0), n_classes = cnp.PyArray_DIM(xa, 1)
    if (n_classes == 0 or cnp.PyArray_NDIM(ta) != 1 or cnp.PyArray_DIM(ta, 0) != n_rows
            or not _of_type(ta, cnp.NPY_INT64) or not cnp.PyArray_IS_C_CONTIGUOUS(ta)
            or not cnp.PyArray_ISALIGNED(ta)):
        return NotImplemented
    cdef char *lo1
    cdef char *hi1
    cdef char *lo2
    cdef char *hi2
    cdef bint in_place = False
    if mode == XF_MODE_GRAD:
        if type(out) is not np.ndarray:
            return NotImplemented
        oa = out
        if (not _of_type(oa, x_type) or not _rows_ok(oa, itemsize) or cnp.PyArray_DIM(oa, 0) != n_rows
                or cnp.PyArray_DIM(oa, 1) != n_classes or not cnp.PyArray_ISWRITEABLE(oa)):
            return NotImplemented
        _extent(xa, &lo1, &hi1)
        _extent(oa, &lo2, &hi2)
        in_place = (cnp.PyArray_DATA(oa) == cnp.PyArray_DATA(xa)
                    and cnp.PyArray_STRIDE(oa, 0) == cnp.PyArray_STRIDE(xa, 0))
        if not in_place and lo1 < hi2 and lo2 < hi1:
            return NotImplemented
        _extent(ta, &lo1, &hi1)
        if lo1 < hi2 and lo2 < hi1:
            return NotImplemented
    cdef const int64_t *t = <const int64_t *>cnp.PyArray_DATA(ta)
    cdef int64_t counted = 0, bad
    cdef double unused_sum
    with nogil:
        bad = _scan_targets(t, n_rows, n_classes, ignore_index, NULL, NULL, &counted,
                            &unused_sum, num_threads)
    if bad >= 0:
        raise ValueError(f"target[{bad}] = {t[bad]} is not a class index in [0, {n_classes}) "
                         f"nor ignore_index ({ignore_index})")
    cdef double *row_loss = <double *>malloc(max(n_rows, 1) * sizeof(double))
    if row_loss == NULL:
        raise MemoryError()
    cdef xf_rows_args a
    memset(&a, 0, sizeof(a))
    a.n_rows = n_rows
    a.n_classes = n_classes
    a.x = cnp.PyArray_DATA(xa)
    a.x_stride = cnp.PyArray_STRIDE(xa, 0) // itemsize
    if mode == XF_MODE_GRAD:
        a.out = cnp.PyArray_DATA(oa)
        a.out_stride = cnp.PyArray_STRIDE(oa, 0) // itemsize
        a.streaming = (not in_place) and n_rows * n_classes * itemsize >= STREAMING_BYTES
    a.target = t
    a.ignore_index = ignore_index
    a.scale = grad_output / counted if mean else grad_output
    a.row_loss = row_loss
    a.mode = mode
    a.inv_temperature = 1.0
    a.weight_total = <double>n_classes
    cdef double total
    try:
        if n_rows:
            _run(&a, itemsize == 4, num_threads)
        total = _fixed_sum(row_loss, n_rows)
    finally:
        free(row_loss)
    if mean:
        return total / counted if counted else float("nan")
    return total


BOUND_READ = XF_BOUND_READ
BOUND_STREAM = XF_BOUND_STREAM
BOUND_IN_PLACE = XF_BOUND_IN_PLACE


def bound(int op, float[::1] x, float[::1] y, int num_threads):
    """One memory-bound pass over the float32 array `x` (bounds.h): read it
    (BOUND_READ; returns the sum), copy it to `y` with streaming stores
    (BOUND_STREAM) or negate it in place (BOUND_IN_PLACE; `y` unused), on
    `num_threads` threads, each a contiguous share, as the kernels run."""
    cdef int64_t n = x.shape[0], k, begin, end
    cdef xf_bound_f32_fn fn = _table().bound_f32
    cdef double total = 0.0
    cdef double *part
    if op == XF_BOUND_STREAM and (y is None or y.shape[0] != n):
        raise ValueError("y must have x's length")
    if n == 0:
        return 0.0
    cdef float *yp = &y[0] if op == XF_BOUND_STREAM else NULL
    cdef float *xp = &x[0]
    if num_threads < 1:
        num_threads = 1
    part = <double *>malloc(num_threads * sizeof(double))
    if part == NULL:
        raise MemoryError()
    with nogil:
        if num_threads == 1:
            part[0] = fn(op, xp, yp, 0, n)
        else:
            for k in prange(num_threads, schedule="static", num_threads=num_threads):
                # shares start at multiples of 16 elements (64 bytes)
                begin = (k * (n // 16) // num_threads) * 16
                end = n if k == num_threads - 1 else ((k + 1) * (n // 16) // num_threads) * 16
                part[k] = fn(op, xp, yp, begin, end)
    for k in range(num_threads):
        total += part[k]
    free(part)
    return total

# --------------------------------------------------------------------------
# a vocabulary shard (xentfast.distributed, include/xentfast/rows_shard.h)

from libc.math cimport NAN

cdef int _shard_rows(xf_rows_args *a, double[:, ::1] row_shard,
                     int64_t smoothing_classes) except -1:
    """The shard modes' fields of `a`: the per-row statistics and the whole
    vocabulary's size."""
    if row_shard is None or row_shard.shape[0] != a.n_rows or row_shard.shape[1] != XF_SHARD_DOUBLES:
        raise ValueError("internal: row_shard must be (n_rows, SHARD_DOUBLES) float64")
    if a.n_rows:
        a.row_shard = &row_shard[0, 0]
    a.smoothing_classes = smoothing_classes
    return 0


def shard_finish(const double[:, ::1] row_shard, const int64_t[::1] target,
                 int64_t ignore_index, double[::1] row_loss, double[::1] row_z_loss,
                 double[::1] row_lse, *, bint target_prob, int64_t smoothing_classes,
                 double label_smoothing=0.0, double z_loss=0.0, double weight_total=0.0,
                 const double[::1] row_weight=None):
    """Rows' loss, z-loss and lse from their combined shard statistics
    (`row_shard`, as XF_MODE_SHARD_GRAD reads them) by the kernels' own row
    end (row_finish.h): the loss of a vocabulary-sharded call without a
    second pass over the logits.  `target` holds the rows' targets
    (ignore_index for ignored rows; any other value counts) or is empty for
    probability targets; `row_z_loss` and `row_lse` may be empty."""
    cdef xf_rows_args a
    cdef xf_row_stats st
    cdef xf_row_end end
    cdef int64_t n_rows = row_shard.shape[0], r, y
    cdef const double *s
    cdef char dummy = 0
    if row_shard.shape[1] != XF_SHARD_DOUBLES or row_loss.shape[0] != n_rows:
        raise ValueError("internal: shard_finish's shapes")
    if not target_prob and target.shape[0] != n_rows:
        raise ValueError("internal: shard_finish's targets")
    memset(&a, 0, sizeof(a))
    a.n_rows = n_rows
    a.n_classes = smoothing_classes
    a.smoothing_classes = smoothing_classes
    a.label_smoothing = label_smoothing
    a.z_loss = z_loss
    a.weight_total = weight_total
    a.inv_temperature = 1.0
    a.target_prob = <const void *>&dummy if target_prob else NULL  # only tested for NULL
    a.row_weight = _const_row_ptr(row_weight, n_rows, "row_weight")
    cdef bint want_z = row_z_loss.shape[0] != 0, want_lse = row_lse.shape[0] != 0
    if (want_z and row_z_loss.shape[0] != n_rows) or (want_lse and row_lse.shape[0] != n_rows):
        raise ValueError("internal: shard_finish's per-row outputs")
    with nogil:
        for r in range(n_rows):
            y = -1 if target_prob else target[r]
            if not target_prob and y == ignore_index:
                row_loss[r] = 0.0
                if want_z:
                    row_z_loss[r] = 0.0
                if want_lse:
                    row_lse[r] = NAN
                continue
            s = &row_shard[r, 0]
            st.M = s[XF_SHARD_M]
            st.log_S = s[XF_SHARD_LOG_S]
            st.z_y = s[XF_SHARD_ZY]
            st.wz = s[XF_SHARD_WZ]
            st.wtz = s[XF_SHARD_WTZ]
            st.wt = s[XF_SHARD_WT]
            end = xf_row_finish(&a, r, -1 if target_prob else 0, s[XF_SHARD_WY], &st)
            row_loss[r] = end.loss
            if want_z:
                row_z_loss[r] = end.z_loss
            if want_lse:
                row_lse[r] = xf_row_lse(st.M, st.log_S)
