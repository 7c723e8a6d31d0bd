/* AVX2+FMA instantiation of the kernels: float32 by the AVX2 layer, float64
 * by the shared scalar kernels.  Compiled with only its own ISA flags
 * (-mavx2 -mfma); called only after dispatch.c has seen
 * those features in cpuid and their state enabled in xgetbv. */
#include "xentfast/vec_avx2.h"

#define XF_T        float
#define XF_FN(name) xf_##name##_f32_avx2
#include "xentfast/kernel_template.h"

static const xf_split_fns xf_split_f32_avx2 = {xf_split_stats_f32_avx2, xf_split_fold_f32_avx2,
                                               xf_split_write_f32_avx2, xf_split_fix_f32_avx2};

const xf_kernel_table xf_table_avx2 = {
    .name = "avx2",
    .caps_f32 = {XF_CAP_NARROW_MAX, XF_CAP_ONE_LOOP_CAP, XF_SHARED_MIN_CLASSES},
    .caps_f64 = {0, 0.0, 0},
    .rows_f32 = xf_rows_f32_avx2,
    .rows_shared_f32 = xf_rows_shared_f32_avx2,
    .rows_f64 = xf_rows_f64,
    .split_f32 = &xf_split_f32_avx2,
    .split_f64 = &xf_split_f64,
    .elem_f32 = xf_elem_f32_avx2,
    .elem_f64 = xf_elem_f64,
    .exp_f32 = xf_exp_f32_avx2,
    .exp_nonpos_f32 = xf_exp_nonpos_f32_avx2,
    .log1p_f32 = xf_log1p_f32_avx2,
    .bound_f32 = xf_bound_f32_avx2,
};
