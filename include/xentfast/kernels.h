/* The C kernels as the Cython glue sees them: argument structs, the plan,
 * the per-ISA tables, and the run-time choice of a table.
 *
 * Private to the extension (see README.md beside this file): no stable C
 * API.  The glue fills an xf_rows_args, asks xf_plan() which algorithm the
 * call runs, and calls the current table's entry for that algorithm over
 * ranges of rows (several threads, each its own range and scratch).
 */
#ifndef XENTFAST_KERNELS_H
#define XENTFAST_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sched.h> /* sched_yield: xf_team_await */
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* What a pass over a row produces. */
enum xf_mode {
    XF_MODE_LOSS = 0,        /* per-row loss only (cross_entropy)            */
    XF_MODE_GRAD = 1,        /* per-row loss + gradient row into out          */
    XF_MODE_SOFTMAX = 2,     /* softmax row into out                          */
    XF_MODE_LOG_SOFTMAX = 3, /* log-softmax row into out                      */
    XF_MODE_LSE = 4,         /* per-row log-sum-exp only                      */
    XF_MODE_EVAL = 5,        /* per-row loss, lse, entropy, argmax            */
    XF_MODE_SHARD_STATS = 6, /* a vocabulary shard's per-row statistics into
                              * row_shard (rows_shard.h)                       */
    XF_MODE_SHARD_GRAD = 7   /* loss + gradient row of a vocabulary shard from
                              * the row's global statistics in row_shard      */
};

/* A vocabulary shard's row statistics (XF_MODE_SHARD_STATS writes them per
 * row, XF_MODE_SHARD_GRAD reads the global ones back): M and log S of the
 * shard's z (lse = M + log S), the target's z (0 when the target is on
 * another shard), sum w z, sum w p z, sum w p, and (read only) the target's
 * class weight w_y.  rows_shard.h says how the shards' combine. */
enum {
    XF_SHARD_M,
    XF_SHARD_LOG_S,
    XF_SHARD_ZY,
    XF_SHARD_WZ,
    XF_SHARD_WTZ,
    XF_SHARD_WT,
    XF_SHARD_WY,
    XF_SHARD_DOUBLES
};

/* The target of a counted row whose class lies on another shard. */
#define XF_TARGET_ELSEWHERE (-2)

/* Segment length (elements) of the per-row online (max, sum-exp) pass.  A
 * row is cut into segments of this fixed size whatever the thread count, so
 * the combination order, and hence every bit of the result, never depends
 * on how rows or segments are spread over threads. */
#define XF_SEGMENT 2048

/* XF_PLAN_SHARED from this many classes (rows_shared.h): in place on two
 * threads, shared rows' time over the row loop's 0.87-0.89 at 262144
 * classes, 0.88 at 229376, 0.91-0.94 at 196608; at 163840 0.98-1.05 of it
 * (docs/design.md, "Against the memory bounds";
 * `NEWFLAGS=-DXF_SHARED_MIN_CLASSES=N tools/kernel_ab.sh`, which is what
 * the #ifndef is for).  Its team's counter needs GCC or Clang atomics:
 * never without them. */
#if !defined(__GNUC__) && !defined(__clang__)
#undef XF_SHARED_MIN_CLASSES
#define XF_SHARED_MIN_CLASSES 0
#elif !defined(XF_SHARED_MIN_CLASSES)
#define XF_SHARED_MIN_CLASSES 196608
#endif

/* A float32 gradient row is written during the next row's pass (rows.h)
 * when what waits meanwhile takes at most this many bytes of a 2 MiB L2:
 * one scratch row of exps (the next row's exps take it over as the drain
 * empties it; a softcapped row: both rows' scratch), in place the deferred
 * row's logits too, with probability targets its targets; a plain row in
 * place only that row (its exps over its logits).  Measured before rows
 * shared their scratch, one thread, from DRAM, 131072000 elements,
 * deferred or not (tools/kernel_bench.sh avx512 N C 1 0 4 1, built with
 * this limit and with 0; in place INPLACE=1 ... 1 0 4 0; probability
 * targets PROB=1 ... 1 0 3 1): into a buffer 16% faster at C = 32000, 15%
 * at 131072, even at 180000, 14% slower at 262144 (two scratch rows then;
 * with one, 262144 gains most: docs/design.md); in place 13-16% faster
 * at 32000, 100000 and 128256, 9% at 180000, 3% at 262144; probability
 * targets at 128256 (1.5 MiB waiting) 10% slower.  With one scratch row
 * (python tools/ab_bench.py OLD_SRC src N C 1 3): 2048 x 128256 plain 9%
 * faster, probability targets (1 MiB waiting, deferred now) 4%; 1024 x
 * 262144 plain 16%, smoothing 14%, class weights 15%, temperature 8%. */
#define XF_DEFER_MAX_BYTES (1024 * 1024)

/* Rows per block aim at this many elements (a block amortises its call);
 * blocks start at multiples of 16 rows, so the narrow kernels group rows
 * identically for any thread count. */
#define XF_BLOCK_ELEMENTS 16384
static inline int64_t xf_block_rows(int64_t n_classes) {
    const int64_t rows = XF_BLOCK_ELEMENTS / (n_classes > 0 ? n_classes : 1);
    return ((rows > 1 ? rows : 1) + 15) / 16 * 16;
}

#if defined(_MSC_VER)
#define XF_ALWAYS_INLINE __forceinline
#define XF_MAYBE_UNUSED
#else
#define XF_ALWAYS_INLINE inline __attribute__((always_inline))
#define XF_MAYBE_UNUSED __attribute__((unused))
#endif

/* Software prefetch of the logits XF_PREFETCH_BYTES ahead of the exp loop:
 * memory keeps streaming while the exps of the current segment are
 * computed from L1.  16 KiB ahead into L2 (locality 2) measured best among
 * 4-32 KiB (`tools/kernel_bench.sh avx512 1024 32000 1 0 5 1`); for in place
 * and the loss alone 8 KiB was worse and 16-64 KiB alike within the noise
 * (`python tools/bound_fractions.py 8192 32000` on builds made with
 * CFLAGS=-DXF_PREFETCH_BYTES=N, which is what the #ifndef is for). */
#ifndef XF_PREFETCH_BYTES
#define XF_PREFETCH_BYTES 16384
#endif
/* And, nearer, into L1 (locality 3): the lines of the segment after the
 * current one, so that its max pass reads from L1 rather than waiting on L2
 * while the drain's and the exps' stores contend for it.  In place, from
 * DRAM, 8192 x 32000, 1 thread / 2, the builds without and with it in turn:
 * 0.72-0.80 / 0.74-0.75 -> 0.85-0.91 / 0.83-0.85 of the in-place bound
 * (`python tools/bound_fractions.py 8192 32000`, docs/design.md has the other
 * shapes); builds with CFLAGS=-DXF_PREFETCH_L1_BYTES=N, two rounds each:
 * 4096 and 6144 gave 0.80-0.86, 8192 and 10240 0.85-0.90. */
#ifndef XF_PREFETCH_L1_BYTES
#define XF_PREFETCH_L1_BYTES 8192
#endif
#if defined(__GNUC__) || defined(__clang__)
#define XF_PREFETCH(p)    __builtin_prefetch((const void *)(p), 0, 2)
#define XF_PREFETCH_L1(p) __builtin_prefetch((const void *)(p), 0, 3)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define XF_PREFETCH(p)    _mm_prefetch((const char *)(p), _MM_HINT_T1)
#define XF_PREFETCH_L1(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define XF_PREFETCH(p)    ((void)0)
#define XF_PREFETCH_L1(p) ((void)0)
#endif

/* One call of the row kernels: rows of a (n_rows, n_classes) block with a
 * uniform row stride and unit column stride.  The loss options are neutral
 * when zeroed, except inv_temperature = 1.  Per row, z = softcap(x / T) and
 *   index target y:  l = (1-eps) w_y (lse - z_y) + eps/C sum_k w_k (lse - z_k) + lam lse^2
 *   probabilities p: l = sum_k w_k q_k (lse - z_k) + lam lse^2,  q = p (1-eps) + eps/C
 * times the row weight s (docs/design.md, "Semantics").  A new field must
 * be told to xf_plan() (plan.c checks the struct's size for that reason). */
typedef struct xf_rows_args {
    int64_t n_rows;           /* rows in the whole call                       */
    int64_t n_classes;        /* C, elements per row                          */
    const void *x;            /* logits, row r at x + r * x_stride            */
    int64_t x_stride;         /* in elements                                  */
    void *out;                /* gradient / softmax / log-softmax, or NULL    */
    int64_t out_stride;       /* in elements                                  */
    const int64_t *target;    /* n_rows class indices, or NULL                */
    const void *class_weight; /* n_classes weights (logits' dtype), or NULL   */
    int64_t ignore_index;
    double scale;               /* gradient scale shared by all rows            */
    const double *row_scale;    /* per-row upstream gradient, or NULL           */
    double *row_loss;           /* per-row loss (weighted), or NULL             */
    double *row_lse;            /* per-row log-sum-exp, or NULL                 */
    int mode;                   /* enum xf_mode                                 */
    int streaming;              /* non-temporal stores into out                 */
    double label_smoothing;     /* eps                                          */
    double z_loss;              /* lam                                          */
    double softcap;             /* c > 0, or 0 for none                         */
    double inv_temperature;     /* 1 / T                                        */
    double weight_total;        /* sum_k w_k (C without class weights)          */
    const double *row_weight;   /* per-row sample weights s, or NULL            */
    const void *target_prob;    /* probability targets (rows like x), or NULL   */
    int64_t target_prob_stride; /* in elements                                  */
    double *row_z_loss;         /* per-row s * lam * lse^2, or NULL             */
    double *row_entropy;        /* per-row entropy of softmax(z), or NULL       */
    int64_t *row_argmax;        /* per-row argmax of the logits, or NULL        */
    double *row_shard;          /* XF_SHARD_DOUBLES per row (the shard modes)   */
    int64_t smoothing_classes;  /* the C of eps/C: the whole vocabulary under
                                 * vocabulary sharding, 0 for n_classes         */
} xf_rows_args;

/* The algorithms of the row kernels; xf_plan() picks one per call (the
 * table in docs/design.md says which, for each option, ISA and shape). */
typedef enum xf_plan_kind {
    XF_PLAN_PLAIN = 0,           /* index targets, class and row weights, z-loss:
                           * one online (max, sum-exp) pass, then the write   */
    XF_PLAN_NARROW = 1,          /* the plain loss, rows of at most
                           * xf_caps.narrow_max classes, one row per lane     */
    XF_PLAN_SPLIT = 2,           /* the plain loss of a few long rows, each row's
                           * segments spread over the threads (rows_split.h)  */
    XF_PLAN_GENERAL = 3,         /* temperature, smoothing, probability targets,
                           * entropy: the general row (general_row.h)        */
    XF_PLAN_SOFTCAP = 4,         /* the general row under a softcap: a z loop and
                           * an exp loop per segment (softcap.h)              */
    XF_PLAN_SOFTCAP_ONE_LOOP = 5, /* caps up to xf_caps.one_loop_cap: z and its
                                  * exps in one loop, no max (softcap.h)     */
    XF_PLAN_SHARED = 6           /* the plain gradient of long rows, each row's
                                  * segments over a team in step (rows_shared.h) */
} xf_plan_kind;

/* What an ISA's kernels can do, for one dtype: the capability block at the
 * top of its vector layer, read by xf_plan(). */
typedef struct xf_caps {
    int64_t narrow_max;  /* XF_PLAN_NARROW for C up to this (0: never)      */
    double one_loop_cap; /* XF_PLAN_SOFTCAP_ONE_LOOP for caps up to this    */
    int64_t shared_min;  /* XF_PLAN_SHARED from this many classes (0: never) */
} xf_caps;

/* The algorithm a call runs, from its arguments, the kernels' capabilities
 * and the number of threads the call will use (plan.c). */
xf_plan_kind xf_plan(const xf_rows_args *args, const xf_caps *caps, int n_threads);

/* Element-wise losses over rows of a (rows, cols) block: binary
 * cross-entropy with logits and squared error.  Broadcast operands
 * (weight, pos_weight, upstream gradient) have a column stride of 0 or 1. */
enum xf_elem_op { XF_OP_BCE = 0, XF_OP_MSE = 1 };

typedef struct xf_elem_args {
    int64_t n_rows, n_cols;
    const void *x; /* logits / predictions, unit column stride     */
    int64_t x_stride;
    const void *y; /* targets, unit column stride                  */
    int64_t y_stride;
    const void *w; /* element weights, or NULL                     */
    int64_t w_row_stride, w_col_stride;
    const void *pw; /* BCE pos_weight along the columns, or NULL    */
    int64_t pw_col_stride;
    const void *g; /* per-element upstream gradient, or NULL       */
    int64_t g_row_stride, g_col_stride;
    double scale;           /* gradient scale shared by all elements        */
    double label_smoothing; /* BCE: y' = y (1 - eps) + eps / 2              */
    void *out;              /* gradient, or NULL                            */
    int64_t out_stride;
    double *row_loss; /* per-row sum of the losses, or NULL           */
    void *elem_loss;  /* per-element losses (x's dtype), or NULL      */
    int64_t elem_stride;
    int op; /* enum xf_elem_op                              */
} xf_elem_args;

typedef void (*xf_elem_fn)(const xf_elem_args *args, int64_t begin, int64_t end);

/* Rows [begin, end) by the algorithm `plan` (any but XF_PLAN_SPLIT).
 * `scratch` holds at least xf_scratch_bytes(n_classes) bytes, private to
 * the calling thread. */
typedef void (*xf_rows_fn)(const xf_rows_args *args, xf_plan_kind plan, int64_t begin, int64_t end,
                           void *scratch);

/* XF_PLAN_SPLIT (rows_split.h): one row's fixed segments computed in
 * parallel units and folded in segment order.  seg_max points to one value
 * of the row's dtype per segment, seg_sum to one double per segment, and
 * row_state to XF_SPLIT_ROW_DOUBLES doubles, whose XF_SPLIT_ZY (the
 * target's logit) the caller fills before `stats`, which may overwrite the
 * logits when out == x. */
enum {
    XF_SPLIT_M,
    XF_SPLIT_LOG_S,
    XF_SPLIT_G,
    XF_SPLIT_TARGET_OUT,
    XF_SPLIT_ZY,
    XF_SPLIT_ROW_DOUBLES
};
typedef struct xf_split_fns {
    void (*stats)(const xf_rows_args *, int64_t row, int64_t j_begin, int64_t j_end, void *seg_max,
                  double *seg_sum);
    void (*fold)(const xf_rows_args *, int64_t row, const void *seg_max, const double *seg_sum,
                 double *row_state);
    void (*write)(const xf_rows_args *, int64_t row, int64_t j_begin, int64_t j_end,
                  const void *seg_max, const double *row_state);
    void (*fix)(const xf_rows_args *, int64_t row, const double *row_state);
} xf_split_fns;

/* XF_PLAN_SHARED (rows_shared.h): a team of threads in step row by row,
 * each over its own segments of every row.  Every member of the team
 * calls, with the team's actual size (one missing, the others wait
 * forever), on a team set up by xf_team_init.  A row's statistics are in
 * use until every member has passed on its fold of the row after, while a
 * member may already write those of the row after that: three sets,
 * taken in turn. */
#define XF_TEAM_SETS 3
typedef struct xf_team {
    int64_t passed; /* folds passed on so far, over all rows (atomic) */
    void *seg_max[XF_TEAM_SETS];
    double *seg_sum[XF_TEAM_SETS];
    double z_y[XF_TEAM_SETS];    /* the target's logit, from the member that owns it */
    double fold_M[XF_TEAM_SETS]; /* the row's (M, S) over the segments folded so far */
    double fold_S[XF_TEAM_SETS];
} xf_team;

/* Bytes of a team's segment arrays for float32 rows of n_classes: per set,
 * one double sum and one float max per segment. */
static inline size_t xf_team_bytes(int64_t n_classes) {
    const int64_t n_seg = (n_classes + XF_SEGMENT - 1) / XF_SEGMENT;
    return XF_TEAM_SETS * (size_t)n_seg * (sizeof(double) + sizeof(float));
}

/* A team's state for float32 rows of n_classes, its arrays in `arrays`
 * (xf_team_bytes(n_classes), as malloc aligns it). */
static inline void xf_team_init(xf_team *team, void *arrays, int64_t n_classes) {
    const int64_t n_seg = (n_classes + XF_SEGMENT - 1) / XF_SEGMENT;
    double *sums = (double *)arrays;
    float *maxima = (float *)(sums + XF_TEAM_SETS * n_seg);
    team->passed = 0;
    for (int k = 0; k < XF_TEAM_SETS; k++) {
        team->seg_sum[k] = sums + k * n_seg;
        team->seg_max[k] = maxima + k * n_seg;
        team->z_y[k] = team->fold_M[k] = team->fold_S[k] = 0.0;
    }
}

/* The team's count of folds passed on: a member sets it to `count` once
 * its fold is in the team's arrays (what it wrote before becomes visible
 * to a member that sees the count). */
static inline void xf_team_pass(xf_team *team, int64_t count) {
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(&team->passed, count, __ATOMIC_RELEASE);
#else
    team->passed = count; /* never planned (XF_SHARED_MIN_CLASSES is 0) */
#endif
}

/* Whether `count` folds have been passed on. */
static inline int xf_team_reached(xf_team *team, int64_t count) {
#if defined(__GNUC__) || defined(__clang__)
    return __atomic_load_n(&team->passed, __ATOMIC_ACQUIRE) >= count;
#else
    return team->passed >= count;
#endif
}

/* Waits until `count` folds have been passed on.  Spins (the wait is a
 * row's imbalance, microseconds), yielding the core once it has spun
 * long: a member may be off its core when threads outnumber cores. */
static inline void xf_team_await(xf_team *team, int64_t count) {
    for (unsigned spins = 0; !xf_team_reached(team, count); spins++) {
#if defined(__unix__) || defined(__APPLE__)
        if (spins >= 4096) {
            sched_yield();
            continue;
        }
#endif
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
    }
}

typedef void (*xf_rows_shared_fn)(const xf_rows_args *args, xf_team *team, int thread,
                                  int n_threads);

/* The memory bounds of the fused pass (bounds.h): a read, a read with a
 * streaming write, an in-place read and write. */
enum xf_bound_op { XF_BOUND_READ = 0, XF_BOUND_STREAM = 1, XF_BOUND_IN_PLACE = 2 };
typedef double (*xf_bound_f32_fn)(int op, const float *x, float *y, int64_t begin, int64_t end);

/* An element-wise map over n float32 values (the vector exp and log1p,
 * exposed for the accuracy tests). */
typedef void (*xf_map_f32_fn)(const float *x, float *y, int64_t n);

typedef struct xf_kernel_table {
    const char *name;
    xf_caps caps_f32, caps_f64;
    xf_rows_fn rows_f32, rows_f64;
    xf_rows_shared_fn rows_shared_f32; /* float32 only (caps_f32.shared_min) */
    const xf_split_fns *split_f32, *split_f64;
    xf_elem_fn elem_f32, elem_f64;
    xf_map_f32_fn exp_f32;
    xf_map_f32_fn exp_nonpos_f32; /* the row sums' exp, for x <= 0 */
    xf_map_f32_fn log1p_f32; /* log1p on [0, 1] */
    xf_bound_f32_fn bound_f32;
} xf_kernel_table;

/* Bytes of per-thread scratch a row of n_classes needs (any dtype): the
 * exps and the softcapped logits of a row (2 x C) and one max per
 * segment, twice for float32 (a softcapped or plain gradient row is
 * written while the next row is computed: rows.h), in the widest dtype; also the
 * narrow kernel's row index table (16 x C int32, C <= 32). */
static inline size_t xf_scratch_bytes(int64_t n_classes) {
    const int64_t n_seg = (n_classes + XF_SEGMENT - 1) / XF_SEGMENT;
    return (size_t)(2 * n_classes + 256) * sizeof(double) + (size_t)(n_seg + 1) * sizeof(double) +
           64;
}

/* Per-ISA tables (each in its own file, compiled with only its ISA's flags). */
extern const xf_kernel_table xf_table_scalar;
#if defined(XF_HAVE_X86_KERNELS)
extern const xf_kernel_table xf_table_avx2;
extern const xf_kernel_table xf_table_avx512;
#endif
#if defined(XF_HAVE_NEON_KERNELS) && defined(__aarch64__)
extern const xf_kernel_table xf_table_neon; /* baseline on AArch64 (neon.c) */
#endif
/* The float64 kernels, which every table shares (scalar.c). */
void xf_rows_f64(const xf_rows_args *, xf_plan_kind, int64_t, int64_t, void *);
void xf_elem_f64(const xf_elem_args *, int64_t, int64_t);
extern const xf_split_fns xf_split_f64;

/* dispatch.c */
enum xf_cpu_feature {
    XF_CPU_SSE2 = 1 << 0,
    XF_CPU_AVX = 1 << 1,
    XF_CPU_AVX2 = 1 << 2,
    XF_CPU_FMA = 1 << 3,
    XF_CPU_AVX512F = 1 << 4,
    XF_CPU_AVX512DQ = 1 << 5,
    XF_CPU_AVX512BW = 1 << 6,
    XF_CPU_AVX512VL = 1 << 7,
    XF_CPU_OS_AVX = 1 << 8,   /* xgetbv: OS saves YMM state          */
    XF_CPU_OS_AVX512 = 1 << 9 /* xgetbv: OS saves opmask + ZMM state */
};
int xf_cpu_features(void); /* detected once, cached */
int xf_backend_supported(const char *name);
/* Select a backend by name ("scalar", "avx2", "avx512", "neon") or the best one
 * (name NULL or ""); returns 0 on success, -1 if unknown, -2 if the CPU or
 * the build lacks it. */
int xf_select_backend(const char *name);
const xf_kernel_table *xf_table(void);

#ifdef __cplusplus
}
#endif
#endif
