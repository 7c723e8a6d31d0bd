/* Portable instantiation of the kernels (one lane, libm exp), built for the
 * baseline of any target; also the float64 kernels of every backend. */
#include <float.h>
#include <math.h>
#include "xentfast/kernels.h"

#define XF_W 1
#define XF_VBYTES 1 /* no streaming stores */
#define V_SET1(a) (a)
#define V_LOADU(p) (*(p))
#define V_STOREU(p, v) (*(p) = (v))
#define V_STREAM(p, v) (*(p) = (v))
#define V_LOAD_TAIL(p, n, fill) (*(p)) /* never reached with one lane */
#define V_STORE_TAIL(p, v, n) (*(p) = (v))
#define V_ADD(a, b) ((a) + (b))
#define V_SUB(a, b) ((a) - (b))
#define V_MUL(a, b) ((a) * (b))
/* max/min with the x86 rule: the second operand when either is NaN */
#define V_MAX(a, b) ((a) > (b) ? (a) : (b))
#define V_ZERO_WHERE_ZERO(v, c) ((c) != 0 ? (v) : 0)
#define V_FMA(a, b, c) ((a) * (b) + (c))
#define V_FNMA(a, b, c) ((c) - (a) * (b))
#define V_DIV(a, b) ((a) / (b))
#define V_MIN(a, b) ((a) < (b) ? (a) : (b))
#define V_ZERO_TAIL(v, n) (v) /* never reached with one lane */
#define V_HMAX(v) (v)
#define V_FIRST(v) (v)
#define V_SELECT_GE0(x, a, b) ((x) >= 0 ? (a) : (b))
#define V_HSUM(v) ((double)(v))
#define XF_SFENCE() ((void)0)

/* float32 rows: one "lane" of double, so that the sums of a segment's
 * exps (up to XF_SEGMENT terms in one accumulator) keep their precision;
 * loads widen exactly, each exp is libm's expf, stores narrow. */
#define XF_T float
#define XF_V double
#define XF_T_MAX FLT_MAX
#define V_ROUND_T(v) ((double)(float)(v))
#define XF_FN(name) xf_##name##_f32_scalar
#define V_EXP(v) ((double)expf((float)(v)))
#define V_EXP_MID V_EXP
#define V_EXPM1_MID expm1
#include "xentfast/kernel_body.h"
#include "xentfast/elementwise_body.h"
#undef XF_T
#undef XF_V
#undef XF_T_MAX
#undef V_ROUND_T
#undef XF_FN
#undef V_EXP
#undef V_EXP_MID
#undef V_EXPM1_MID

#define XF_T double
#define XF_V double
#define XF_LOG1P01 log1p /* float64: libm's, not the float32-sized series */
#define XF_T_MAX DBL_MAX
#define V_ROUND_T(v) (v)
#define XF_FN(name) xf_##name##_f64
#define V_EXP exp
#define V_EXP_MID exp
#define V_EXPM1_MID expm1
#include "xentfast/kernel_body.h"
#include "xentfast/elementwise_body.h"

/* the float64 kernels serve every backend */
void xf_rows_f64_scalar(const xf_rows_args *a, int64_t begin, int64_t end, void *scratch) {
    xf_rows_f64(a, begin, end, scratch);
}

void xf_elem_f64_scalar(const xf_elem_args *a, int64_t begin, int64_t end) {
    xf_elem_f64(a, begin, end);
}

const xf_split_fns xf_split_f64_scalar = XF_SPLIT_TABLE(f64);
static const xf_split_fns xf_split_f32_scalar = XF_SPLIT_TABLE(f32_scalar);

const xf_kernel_table xf_table_scalar = {
    "scalar", xf_rows_f32_scalar, xf_rows_f64_scalar, xf_exp_f32_scalar,
    xf_elem_f32_scalar, xf_elem_f64_scalar, xf_log1p_f32_scalar,
    &xf_split_f32_scalar, &xf_split_f64_scalar,
};
