# Declarations of the C kernels' interface (include/xentfast/kernels.h),
# shared by the Cython glue: the one place the argument structs are
# declared on the Python side.
from libc.stdint cimport int64_t

cdef extern from "xentfast/kernels.h" nogil:
    ctypedef struct xf_rows_args:
        int64_t n_rows
        int64_t n_classes
        const void *x
        int64_t x_stride
        void *out
        int64_t out_stride
        const int64_t *target
        const void *class_weight
        int64_t ignore_index
        double scale
        const double *row_scale
        double *row_loss
        double *row_lse
        int mode
        int streaming
        double label_smoothing
        double z_loss
        double softcap
        double inv_temperature
        double weight_total
        const double *row_weight
        const void *target_prob
        int64_t target_prob_stride
        double *row_z_loss
        double *row_entropy
        int64_t *row_argmax
        double *row_shard
        int64_t smoothing_classes
    ctypedef enum xf_plan_kind:
        XF_PLAN_PLAIN
        XF_PLAN_NARROW
        XF_PLAN_SPLIT
        XF_PLAN_GENERAL
        XF_PLAN_SOFTCAP
        XF_PLAN_SOFTCAP_ONE_LOOP
        XF_PLAN_SHARED
    ctypedef struct xf_caps:
        int64_t narrow_max
        double one_loop_cap
        int64_t shared_min
    xf_plan_kind xf_plan(const xf_rows_args *args, const xf_caps *caps, int n_threads)
    ctypedef struct xf_elem_args:
        int64_t n_rows
        int64_t n_cols
        const void *x
        int64_t x_stride
        const void *y
        int64_t y_stride
        const void *w
        int64_t w_row_stride
        int64_t w_col_stride
        const void *pw
        int64_t pw_col_stride
        const void *g
        int64_t g_row_stride
        int64_t g_col_stride
        double scale
        double label_smoothing
        void *out
        int64_t out_stride
        double *row_loss
        void *elem_loss
        int64_t elem_stride
        int op
    ctypedef void (*xf_elem_fn)(const xf_elem_args *, int64_t, int64_t)
    ctypedef void (*xf_rows_fn)(const xf_rows_args *, xf_plan_kind, int64_t, int64_t, void *)
    ctypedef void (*xf_map_f32_fn)(const float *, float *, int64_t)
    ctypedef double (*xf_bound_f32_fn)(int, const float *, float *, int64_t, int64_t)
    int XF_BOUND_READ, XF_BOUND_STREAM, XF_BOUND_IN_PLACE
    ctypedef struct xf_split_fns:
        void (*stats)(const xf_rows_args *, int64_t, int64_t, int64_t, void *,
                      double *) noexcept nogil
        void (*fold)(const xf_rows_args *, int64_t, const void *, const double *,
                     double *) noexcept nogil
        void (*write)(const xf_rows_args *, int64_t, int64_t, int64_t, const void *,
                      const double *) noexcept nogil
        void (*fix)(const xf_rows_args *, int64_t, const double *) noexcept nogil
    ctypedef struct xf_team:  # opaque here: set up by xf_team_init, used by the kernels
        pass
    size_t xf_team_bytes(int64_t n_classes)
    void xf_team_init(xf_team *team, void *arrays, int64_t n_classes)
    ctypedef void (*xf_rows_shared_fn)(const xf_rows_args *, xf_team *, int, int)
    int XF_SEGMENT, XF_BLOCK_ELEMENTS, XF_SPLIT_ROW_DOUBLES, XF_SPLIT_ZY
    int64_t XF_SHARED_MIN_CLASSES
    int64_t xf_block_rows(int64_t n_classes)
    ctypedef struct xf_kernel_table:
        const char *name
        xf_caps caps_f32
        xf_caps caps_f64
        xf_rows_fn rows_f32
        xf_rows_fn rows_f64
        xf_rows_shared_fn rows_shared_f32
        const xf_split_fns *split_f32
        const xf_split_fns *split_f64
        xf_elem_fn elem_f32
        xf_elem_fn elem_f64
        xf_map_f32_fn exp_f32
        xf_map_f32_fn exp_nonpos_f32
        xf_map_f32_fn log1p_f32
        xf_bound_f32_fn bound_f32
    size_t xf_scratch_bytes(int64_t n_classes)
    int xf_cpu_features()
    int xf_backend_supported(const char *name)
    int xf_select_backend(const char *name)
    const xf_kernel_table *xf_table()
    int XF_MODE_LOSS, XF_MODE_GRAD, XF_MODE_SOFTMAX, XF_MODE_LOG_SOFTMAX, XF_MODE_LSE, XF_MODE_EVAL
    int XF_MODE_SHARD_STATS, XF_MODE_SHARD_GRAD
    int XF_SHARD_M, XF_SHARD_LOG_S, XF_SHARD_ZY, XF_SHARD_WZ, XF_SHARD_WTZ, XF_SHARD_WT
    int XF_SHARD_WY, XF_SHARD_DOUBLES, XF_TARGET_ELSEWHERE

cdef extern from "xentfast/row_finish.h" nogil:
    ctypedef struct xf_row_stats:
        double M, log_S, z_y, wz, wtz, wt
    ctypedef struct xf_row_end:
        double loss, z_loss, A, alpha, beta, hit
    xf_row_end xf_row_finish(const xf_rows_args *a, int64_t r, int64_t y, double w_y,
                             const xf_row_stats *st)
    double xf_row_lse(double M, double log_S)
    int XF_OP_BCE, XF_OP_MSE
    int XF_CPU_SSE2, XF_CPU_AVX, XF_CPU_AVX2, XF_CPU_FMA, XF_CPU_AVX512F
    int XF_CPU_AVX512DQ, XF_CPU_AVX512BW, XF_CPU_AVX512VL, XF_CPU_OS_AVX, XF_CPU_OS_AVX512
