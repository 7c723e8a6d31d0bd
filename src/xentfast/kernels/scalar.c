/* Portable instantiation of the kernels (one lane, libm), built for the
 * baseline of any target: the float32 kernels of the scalar backend and the
 * float64 kernels of every backend. */
#include "xentfast/vec_scalar.h"

#define XF_T        float
#define XF_FN(name) xf_##name##_f32_scalar
#include "xentfast/kernel_template.h"
#undef XF_T
#undef XF_FN

#define XF_T        double
#define XF_FN(name) xf_##name##_f64_scalar
#define XF_LOG1P01  log1p /* float64: libm's, not the float32-sized series */
#include "xentfast/kernel_template.h"

/* the float64 kernels serve every backend */
void xf_rows_f64(const xf_rows_args *a, xf_plan_kind plan, int64_t begin, int64_t end,
                 void *scratch) {
    xf_rows_f64_scalar(a, plan, begin, end, scratch);
}

void xf_elem_f64(const xf_elem_args *a, int64_t begin, int64_t end) {
    xf_elem_f64_scalar(a, begin, end);
}

const xf_split_fns xf_split_f64 = {xf_split_stats_f64_scalar, xf_split_fold_f64_scalar,
                                   xf_split_write_f64_scalar, xf_split_fix_f64_scalar};

static const xf_split_fns xf_split_f32_scalar = {
    xf_split_stats_f32_scalar, xf_split_fold_f32_scalar, xf_split_write_f32_scalar,
    xf_split_fix_f32_scalar};

const xf_kernel_table xf_table_scalar = {
    .name = "scalar",
    .caps_f32 = {XF_CAP_NARROW_MAX, XF_CAP_ONE_LOOP_CAP, XF_SHARED_MIN_CLASSES},
    .caps_f64 = {0, 0.0, 0},
    .rows_f32 = xf_rows_f32_scalar,
    .rows_shared_f32 = xf_rows_shared_f32_scalar,
    .rows_f64 = xf_rows_f64,
    .split_f32 = &xf_split_f32_scalar,
    .split_f64 = &xf_split_f64,
    .elem_f32 = xf_elem_f32_scalar,
    .elem_f64 = xf_elem_f64,
    .exp_f32 = xf_exp_f32_scalar,
    .exp_nonpos_f32 = xf_exp_nonpos_f32_scalar,
    .log1p_f32 = xf_log1p_f32_scalar,
    .bound_f32 = xf_bound_f32_scalar,
};
