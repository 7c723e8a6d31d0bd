/* AVX-512 instantiation of the kernels.  Compiled with only its own ISA
 * flags (-mavx512f -mavx512dq -mavx2 -mfma); called only after dispatch.c
 * has seen those features in cpuid and their state enabled in xgetbv. */
#include <float.h>
#include <math.h>
#include "xentfast/kernels.h"
#include "xentfast/simd_avx512.h"

#define XF_T float
#define XF_V __m512
#define XF_W 16
#define XF_VBYTES 64
#define XF_FN(name) xf_##name##_f32_avx512
#define V_SET1(a) _mm512_set1_ps(a)
#define V_LOADU(p) _mm512_loadu_ps(p)
#define V_STOREU(p, v) _mm512_storeu_ps((p), (v))
#define V_STREAM(p, v) _mm512_stream_ps((p), (v))
#define V_LOAD_TAIL(p, n, fill) _mm512_mask_loadu_ps(_mm512_set1_ps(fill), xf_mask16(n), (p))
#define V_STORE_TAIL(p, v, n) _mm512_mask_storeu_ps((p), xf_mask16(n), (v))
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_MAX _mm512_max_ps
#define V_FMA _mm512_fmadd_ps
#define V_FNMA _mm512_fnmadd_ps
#define V_DIV _mm512_div_ps
#define V_ZERO_TAIL(v, n) _mm512_maskz_mov_ps(xf_mask16(n), (v))
#define XF_T_MAX FLT_MAX
#define V_FIRST _mm512_cvtss_f32
#define V_ROUND_T(v) (v)
#define V_SELECT_GE0(x, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((x), _mm512_setzero_ps(), _CMP_GE_OQ), (b), (a))
#define XF_NARROW 1
#define XF_VI __m512i
#define VI_LOAD(p) _mm512_loadu_si512((const void *)(p))
#define V_GATHER(base, idx) _mm512_i32gather_ps((idx), (base), 4)
#define V_PERMUTE(v, idx) _mm512_permutexvar_ps((idx), (v))
#define V_LOG xf_log_ps512
#define V_MIN _mm512_min_ps
/* 1/d: 14-bit estimate and one Newton step, r (2 - d r): ~1 ulp, no divide */
static inline __m512 xf_recip_ps512(__m512 d) {
    const __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}
#define V_RECIP xf_recip_ps512
#define V_ZERO_WHERE_ZERO(v, c) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask((c), _mm512_setzero_ps(), _CMP_NEQ_UQ), (v))
#define V_EXP xf_exp_ps512
#define V_EXP_MID xf_exp_mid_ps512
#define V_EXPM1_MID xf_expm1_mid_ps512
#define V_HMAX _mm512_reduce_max_ps
#define V_HSUM xf_hsum_ps512
#define XF_SFENCE() _mm_sfence()
#include "xentfast/kernel_body.h"
#include "xentfast/elementwise_body.h"

extern void xf_rows_f64_scalar(const xf_rows_args *, int64_t, int64_t, void *);
extern void xf_elem_f64_scalar(const xf_elem_args *, int64_t, int64_t);
extern const xf_split_fns xf_split_f64_scalar;

static const xf_split_fns xf_split_f32_avx512 = XF_SPLIT_TABLE(f32_avx512);

const xf_kernel_table xf_table_avx512 = {
    "avx512", xf_rows_f32_avx512, xf_rows_f64_scalar, xf_exp_f32_avx512,
    xf_elem_f32_avx512, xf_elem_f64_scalar, xf_log1p_f32_avx512,
    &xf_split_f32_avx512, &xf_split_f64_scalar,
};
