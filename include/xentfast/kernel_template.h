/* The row kernels, written once against a vector layer and instantiated
 * per (dtype, ISA) by kernels/{scalar,avx2,avx512,neon}.c.
 *
 * Deliberately no include guard: an ISA file includes its vector layer,
 * defines XF_T (float or double) and XF_FN(name) (the instantiation's
 * function names), includes this file, and may redefine both and include
 * it again for another dtype.
 *
 * A vector layer (vec_scalar.h, vec_avx2.h, vec_avx512.h, vec_neon.h,
 * vec_neon_f64.h) defines:
 *   XF_V, XF_W, XF_VBYTES   vector type, lanes, bytes (alignment of streaming stores)
 *   XF_CAP_NARROW_MAX, XF_CAP_ONE_LOOP_CAP   its capabilities (kernels.h: xf_caps)
 *   V_SET1(a) V_LOADU(p) V_STOREU(p,v) V_STREAM(p,v) (aligned, non-temporal)
 *   V_LOAD_TAIL(p,n,fill) V_STORE_TAIL(p,v,n)   lanes [0,n), n < XF_W
 *   V_ZERO_TAIL(v,n)                           lanes [n, XF_W) set to 0
 *   V_ADD V_SUB V_MUL V_DIV V_MAX V_MIN  V_FMA(a,b,c)=a*b+c  V_FNMA(a,b,c)=c-a*b
 *   V_EXP (within 0.9 ulp), V_EXP_MID (the softcap's cheaper exp),
 *   optionally V_EXP_NONPOS (V_EXP for lanes <= 0 or NaN; default V_EXP),
 *   XF_TANH_RATIONAL or V_EXPM1_MID (the softcap's tanh)
 *   V_HMAX(v) -> XF_T   V_HSUM(v) -> double   V_FIRST(v) -> lane 0   XF_SFENCE()
 *   XF_T_MAX   V_ROUND_T(v) (lanes rounded to XF_T)   V_SELECT_GE0(x, a, b)
 *   V_ZERO_WHERE_ZERO(v, c)   v, with lanes where c == 0 set to 0
 * optionally, for the one-loop softcap: V_EXP2_MID V_EXP2_SCALED;
 * and, for narrow rows (XF_VI: integer lanes): VI_LOAD VI_ADD VI_TO_V
 *   V_GATHER V_PERMUTE V_LOG V_STORE_F64 V_SELECT_EQ V_FMS V_ANY_ZERO
 *   VI_TARGETS(t, ignore, &keep), optionally XF_COLUMNS V_COLUMNS_SETUP
 *   V_COLUMN XF_COLUMNS_MAX (columns of a block of rows without gathers).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "xentfast/kernels.h"
#include "xentfast/row_finish.h" /* the end of a row (not a template) */

#ifndef V_EXP_NONPOS /* a layer without a cheaper exp of x <= 0 */
#define V_EXP_NONPOS V_EXP
#endif

#include "xentfast/row_write.h"   /* output rows from the scratch exps, drains */
#include "xentfast/row_stats.h"   /* online (max, sum-exp) of a row's segments */
#include "xentfast/general_row.h" /* temperature, smoothing, probabilities, entropy */
#include "xentfast/softcap.h"     /* the softcap's transform and loops */
#include "xentfast/rows_narrow.h" /* rows of a few classes, one row per lane */
#include "xentfast/rows_shard.h"  /* a vocabulary shard's two passes */
#include "xentfast/rows.h"        /* the row loop: every plan but the split */
#include "xentfast/rows_split.h"  /* a few long rows over the threads */
#include "xentfast/rows_shared.h" /* long rows, each over a team in step */
#include "xentfast/elementwise.h" /* BCE, MSE, and the maps for the accuracy tests */
#include "xentfast/bounds.h"      /* the memory bounds the benchmark divides by */
