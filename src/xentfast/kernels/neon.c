/* AArch64 NEON instantiation of the kernels: float32 by the NEON layer
 * (vec_neon.h, 8 lanes in pairs of q registers), float64 by the shared
 * scalar kernels (scalar.c).
 * NEON is part of the AArch64 baseline: compiled with no extra flag, and
 * dispatch.c selects it without detection.  Built only where __aarch64__
 * (setup.py defines XF_HAVE_NEON_KERNELS there). */
#if defined(__aarch64__)
#include "xentfast/vec_neon.h"

#define XF_T        float
#define XF_FN(name) xf_##name##_f32_neon
#include "xentfast/kernel_template.h"

static const xf_split_fns xf_split_f32_neon = {xf_split_stats_f32_neon, xf_split_fold_f32_neon,
                                               xf_split_write_f32_neon, xf_split_fix_f32_neon};

const xf_kernel_table xf_table_neon = {
    .name = "neon",
    .caps_f32 = {XF_CAP_NARROW_MAX, XF_CAP_ONE_LOOP_CAP},
    .caps_f64 = {0, 0.0},
    .rows_f32 = xf_rows_f32_neon,
    .rows_f64 = xf_rows_f64,
    .split_f32 = &xf_split_f32_neon,
    .split_f64 = &xf_split_f64,
    .elem_f32 = xf_elem_f32_neon,
    .elem_f64 = xf_elem_f64,
    .exp_f32 = xf_exp_f32_neon,
    .log1p_f32 = xf_log1p_f32_neon,
    .bound_f32 = xf_bound_f32_neon,
};
#else
typedef int xf_neon_needs_aarch64; /* an empty unit elsewhere */
#endif
