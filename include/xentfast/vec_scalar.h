/* Portable vector layer: one lane, plain C and libm, for any target.
 *
 * Primitives only (kernel_template.h lists them).  The lane is a double
 * for both dtypes: for float32 rows the sums of a segment's exps (up to
 * XF_SEGMENT terms in one accumulator) keep their precision, loads widen
 * exactly, each exp is libm's expf of the float value, stores narrow.  The
 * includer defines XF_T (float or double) before each instantiation; the
 * names below read it where the dtype matters.
 *
 * Capabilities (read by xf_plan through the table): no narrow rows (one
 * lane has nothing to transpose), no one-loop softcap; the softcap's tanh
 * by expm1 and its exps by libm.
 */
#ifndef XENTFAST_VEC_SCALAR_H
#define XENTFAST_VEC_SCALAR_H
#include <float.h>
#include <math.h>

#define XF_CAP_NARROW_MAX   0
#define XF_CAP_ONE_LOOP_CAP 0.0

#define XF_V                    double
#define XF_W                    1
#define XF_VBYTES               1 /* no streaming stores */
#define XF_T_MAX                (sizeof(XF_T) == 4 ? (double)FLT_MAX : DBL_MAX)
#define V_SET1(a)               ((double)(a))
#define V_LOADU(p)              ((double)*(p))
#define V_STOREU(p, v)          (*(p) = (XF_T)(v))
#define V_STREAM(p, v)          (*(p) = (XF_T)(v))
#define V_LOAD_TAIL(p, n, fill) ((double)*(p)) /* never reached with one lane */
#define V_STORE_TAIL(p, v, n)   (*(p) = (XF_T)(v))
#define V_ZERO_TAIL(v, n)       (v) /* never reached with one lane */
#define V_ADD(a, b)             ((a) + (b))
#define V_SUB(a, b)             ((a) - (b))
#define V_MUL(a, b)             ((a) * (b))
#define V_DIV(a, b)             ((a) / (b))
/* max/min with the x86 rule: the second operand when either is NaN */
#define V_MAX(a, b)             ((a) > (b) ? (a) : (b))
#define V_MIN(a, b)             ((a) < (b) ? (a) : (b))
#define V_FMA(a, b, c)          ((a) * (b) + (c))
#define V_FNMA(a, b, c)         ((c) - (a) * (b))
#define V_FIRST(v)              (v)
/* a lane rounded to the row's dtype */
#define V_ROUND_T(v)            ((double)(XF_T)(v))
#define V_HMAX(v)               (v)
#define V_HSUM(v)               ((double)(v))
#define V_SELECT_GE0(x, a, b)   ((x) >= 0 ? (a) : (b))
#define V_ZERO_WHERE_ZERO(v, c) ((c) != 0 ? (v) : 0)
/* float32 rows: libm's expf of the float value; float64: exp */
#define V_EXP(v)                (sizeof(XF_T) == 4 ? (double)expf((float)(v)) : exp(v))
#define V_EXP_MID               V_EXP
#define V_EXPM1_MID             expm1
#define XF_SFENCE()             ((void)0)

#endif
