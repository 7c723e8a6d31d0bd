/* AArch64 NEON instantiation of the kernels, twice: float32 by the float32
 * layer (vec_neon.h: 8 lanes in pairs of q registers), float64 by the
 * float64 layer (vec_neon_f64.h: 4 lanes in pairs of q registers), the
 * first layer's names forgotten in between (vec_undef.h).
 * NEON is part of the AArch64 baseline: compiled with no extra flag, and
 * dispatch.c selects it without detection.  Built only where __aarch64__
 * (setup.py defines XF_HAVE_NEON_KERNELS there). */
#if defined(__aarch64__)
#include "xentfast/vec_neon.h"

#define XF_T        float
#define XF_FN(name) xf_##name##_f32_neon
#include "xentfast/kernel_template.h"
/* the layer's capabilities kept past vec_undef.h as constants (whole
 * numbers, so enumerators hold them) */
enum {
    xf_neon_f32_narrow_max = XF_CAP_NARROW_MAX,
    xf_neon_f32_one_loop_cap = (int)XF_CAP_ONE_LOOP_CAP
};
_Static_assert(XF_CAP_ONE_LOOP_CAP == (int)XF_CAP_ONE_LOOP_CAP, "an enumerator holds the cap");

#include "xentfast/vec_undef.h"
#include "xentfast/vec_neon_f64.h"

#define XF_T        double
#define XF_FN(name) xf_##name##_f64_neon
#include "xentfast/kernel_template.h"

static const xf_split_fns xf_split_f32_neon = {xf_split_stats_f32_neon, xf_split_fold_f32_neon,
                                               xf_split_write_f32_neon, xf_split_fix_f32_neon};
static const xf_split_fns xf_split_f64_neon = {xf_split_stats_f64_neon, xf_split_fold_f64_neon,
                                               xf_split_write_f64_neon, xf_split_fix_f64_neon};

const xf_kernel_table xf_table_neon = {
    .name = "neon",
    .caps_f32 = {xf_neon_f32_narrow_max, (double)xf_neon_f32_one_loop_cap, XF_SHARED_MIN_CLASSES},
    .caps_f64 = {XF_CAP_NARROW_MAX, XF_CAP_ONE_LOOP_CAP, 0},
    .rows_f32 = xf_rows_f32_neon,
    .rows_shared_f32 = xf_rows_shared_f32_neon,
    .rows_f64 = xf_rows_f64_neon,
    .split_f32 = &xf_split_f32_neon,
    .split_f64 = &xf_split_f64_neon,
    .elem_f32 = xf_elem_f32_neon,
    .elem_f64 = xf_elem_f64_neon,
    .exp_f32 = xf_exp_f32_neon,
    .exp_nonpos_f32 = xf_exp_nonpos_f32_neon,
    .log1p_f32 = xf_log1p_f32_neon,
    .bound_f32 = xf_bound_f32_neon,
};
#else
typedef int xf_neon_needs_aarch64; /* an empty unit elsewhere */
#endif
