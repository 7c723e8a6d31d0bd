/* xentfast kernel interface: what the Cython glue sees of the C kernels.
 *
 * One entry point per (operation, dtype) processes a range of rows of a
 * row-major block (uniform row stride, unit column stride).  Each ISA file
 * (scalar.c, avx2.c, avx512.c) instantiates the same generic body
 * (kernel_body.h) with its own vector layer; dispatch.c picks one table of
 * function pointers once per process.
 */
#ifndef XENTFAST_KERNELS_H
#define XENTFAST_KERNELS_H

#include <stdint.h>
#include <stddef.h>

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
    XF_MODE_EVAL = 5         /* per-row loss, lse, entropy, argmax            */
};

/* Segment length (elements) of the per-row online (max, sum-exp) pass.  A
 * row is cut into segments of this fixed size whatever the thread count, so
 * the combination order, and hence every bit of the result, never depends
 * on how rows or segments are spread over threads. */
#define XF_SEGMENT 2048

#if defined(_MSC_VER)
#define XF_ALWAYS_INLINE __forceinline
#else
#define XF_ALWAYS_INLINE inline __attribute__((always_inline))
#endif

/* Software prefetch of the logits XF_PREFETCH_BYTES ahead of the exp loop.
 * A row pass alternates between reading a segment (the max) and computing
 * its exps from L1; without it, memory sits idle during the exps and the
 * next segment's max waits on DRAM (AVX-512 path, one thread, 1024x32000,
 * `tools/kernel_bench.sh avx512 1024 32000 MODE 0 5 1`: loss only (MODE 0)
 * 2.05 -> 3.7 G elements/s, loss+grad (MODE 1) 1.50 -> 2.4).  16 KiB ahead
 * into L2 (locality 2) measured best among 4-32 KiB. */
#define XF_PREFETCH_BYTES 16384
#if defined(__GNUC__) || defined(__clang__)
#define XF_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 2)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define XF_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#else
#define XF_PREFETCH(p) ((void)0)
#endif

typedef struct xf_rows_args {
    int64_t n_rows;            /* rows in the whole call                       */
    int64_t n_classes;         /* C, elements per row                          */
    const void *x;             /* logits, row r at x + r * x_stride            */
    int64_t x_stride;          /* in elements                                  */
    void *out;                 /* gradient / softmax / log-softmax, or NULL    */
    int64_t out_stride;        /* in elements                                  */
    const int64_t *target;     /* n_rows class indices, or NULL                */
    const void *class_weight;  /* n_classes weights (logits' dtype), or NULL  */
    int64_t ignore_index;
    double scale;              /* gradient scale shared by all rows           */
    const double *row_scale;   /* per-row upstream gradient, or NULL           */
    double *row_loss;          /* per-row loss (weighted), or NULL             */
    double *row_lse;           /* per-row log-sum-exp, or NULL                 */
    int mode;                  /* enum xf_mode                                 */
    int streaming;             /* non-temporal stores into out                 */

    /* Loss options (all neutral when zeroed, except inv_temperature = 1).
     * Per row, z = softcap(x / T) and
     *   index target y:  l = (1-eps) w_y (lse - z_y) + eps/C sum_k w_k (lse - z_k) + lam lse^2
     *   probabilities p: l = sum_k w_k q_k (lse - z_k) + lam lse^2,  q = p (1-eps) + eps/C
     * times the row weight s (DESIGN.md, "Semantics"). */
    double label_smoothing;    /* eps                                          */
    double z_loss;             /* lam                                          */
    double softcap;            /* c > 0, or 0 for none                         */
    double inv_temperature;    /* 1 / T                                        */
    double weight_total;       /* sum_k w_k (C without class weights)          */
    const double *row_weight;  /* per-row sample weights s, or NULL            */
    const void *target_prob;   /* probability targets (rows like x), or NULL   */
    int64_t target_prob_stride;/* in elements                                  */
    double *row_z_loss;        /* per-row s * lam * lse^2, or NULL             */
    double *row_entropy;       /* per-row entropy of softmax(z), or NULL       */
    int64_t *row_argmax;       /* per-row argmax of the logits, or NULL        */
} xf_rows_args;

/* Element-wise losses over rows of a (rows, cols) block: binary
 * cross-entropy with logits and squared error.  Broadcast operands
 * (weight, pos_weight, upstream gradient) have a column stride of 0 or 1. */
enum xf_elem_op { XF_OP_BCE = 0, XF_OP_MSE = 1 };

typedef struct xf_elem_args {
    int64_t n_rows, n_cols;
    const void *x;             /* logits / predictions, unit column stride     */
    int64_t x_stride;
    const void *y;             /* targets, unit column stride                  */
    int64_t y_stride;
    const void *w;             /* element weights, or NULL                     */
    int64_t w_row_stride, w_col_stride;
    const void *pw;            /* BCE pos_weight along the columns, or NULL    */
    int64_t pw_col_stride;
    const void *g;             /* per-element upstream gradient, or NULL       */
    int64_t g_row_stride, g_col_stride;
    double scale;              /* gradient scale shared by all elements        */
    double label_smoothing;    /* BCE: y' = y (1 - eps) + eps / 2              */
    void *out;                 /* gradient, or NULL                            */
    int64_t out_stride;
    double *row_loss;          /* per-row sum of the losses, or NULL           */
    void *elem_loss;           /* per-element losses (x's dtype), or NULL      */
    int64_t elem_stride;
    int op;                    /* enum xf_elem_op                              */
} xf_elem_args;

typedef void (*xf_elem_fn)(const xf_elem_args *args, int64_t begin, int64_t end);

/* Process rows [begin, end).  `scratch` holds at least
 * xf_scratch_bytes(n_classes) bytes, private to the calling thread. */
typedef void (*xf_rows_fn)(const xf_rows_args *args, int64_t begin,
                           int64_t end, void *scratch);

/* One row split over threads (few rows, many classes): see kernel_body.h.
 * seg_max points to n_segments values of the row's dtype. */
/* per-row state between the phases (doubles): */
/* per-row state of the split path; XF_SPLIT_ZY (the target's logit) is
 * filled by the caller before phase 1, which may overwrite the logits when
 * out == x */
enum { XF_SPLIT_M, XF_SPLIT_LOG_S, XF_SPLIT_G, XF_SPLIT_TARGET_OUT, XF_SPLIT_ZY,
       XF_SPLIT_ROW_DOUBLES };
typedef struct xf_split_fns {
    void (*stats)(const xf_rows_args *, int64_t row, int64_t j_begin, int64_t j_end,
                  void *seg_max, double *seg_sum);
    void (*fold)(const xf_rows_args *, int64_t row, const void *seg_max, const double *seg_sum,
                 double *row_state);
    void (*write)(const xf_rows_args *, int64_t row, int64_t j_begin, int64_t j_end,
                  const void *seg_max, const double *row_state);
    void (*fix)(const xf_rows_args *, int64_t row, const void *seg_max, const double *row_state);
} xf_split_fns;

#define XF_SPLIT_TABLE(sfx)                                                               \
    {(void (*)(const xf_rows_args *, int64_t, int64_t, int64_t, void *, double *))xf_split_stats_##sfx, \
     (void (*)(const xf_rows_args *, int64_t, const void *, const double *, double *))xf_split_fold_##sfx, \
     (void (*)(const xf_rows_args *, int64_t, int64_t, int64_t, const void *, const double *))xf_split_write_##sfx, \
     (void (*)(const xf_rows_args *, int64_t, const void *, const double *))xf_split_fix_##sfx}

/* Vector exp over n elements (exposed for the accuracy tests). */
typedef void (*xf_exp_f32_fn)(const float *x, float *y, int64_t n);

typedef struct xf_kernel_table {
    const char *name;
    xf_rows_fn rows_f32;
    xf_rows_fn rows_f64;
    xf_exp_f32_fn exp_f32;
    xf_elem_fn elem_f32;
    xf_elem_fn elem_f64;
    xf_exp_f32_fn log1p_f32;   /* log1p on [0, 1] (for the accuracy tests) */
    const struct xf_split_fns *split_f32;
    const struct xf_split_fns *split_f64;
} xf_kernel_table;

/* Bytes of per-thread scratch a row of n_classes needs (any dtype). */
static inline size_t xf_scratch_bytes(int64_t n_classes) {
    /* exps and softcapped logits (2 x C) plus one max per segment, in the widest
     * dtype: for float32, two such sets (kernel_body.h's deferred softcap write) */
    int64_t n_seg = (n_classes + XF_SEGMENT - 1) / XF_SEGMENT;
    /* (also the narrow-row kernel's row index table: 16 x C int32, C <= 32) */
    return (size_t)(2 * n_classes + 256) * sizeof(double) + (size_t)(n_seg + 1) * sizeof(double) + 64;
}

/* Per-ISA tables (defined in their own files; NULL-free). */
extern const xf_kernel_table xf_table_scalar;
#if defined(XF_HAVE_X86_KERNELS)
extern const xf_kernel_table xf_table_avx2;
extern const xf_kernel_table xf_table_avx512;
#endif

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
    XF_CPU_OS_AVX = 1 << 8,     /* xgetbv: OS saves YMM state          */
    XF_CPU_OS_AVX512 = 1 << 9   /* xgetbv: OS saves opmask + ZMM state */
};
int xf_cpu_features(void);               /* detected once, cached        */
int xf_backend_supported(const char *name);
/* Select a backend by name ("scalar", "avx2", "avx512") or the best one
 * (name NULL or ""); returns 0 on success, -1 if unknown, -2 if the CPU or
 * the build lacks it. */
int xf_select_backend(const char *name);
const xf_kernel_table *xf_table(void);

#ifdef __cplusplus
}
#endif
#endif
