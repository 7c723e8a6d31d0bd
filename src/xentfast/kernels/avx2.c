/* AVX2+FMA instantiation of the kernels.  Compiled with only -mavx2 -mfma;
 * called only after dispatch.c has seen AVX2 and FMA in cpuid and the YMM
 * state enabled in xgetbv. */
#include <float.h>
#include <math.h>
#include "xentfast/kernels.h"
#include "xentfast/simd_avx2.h"

#define XF_T float
#define XF_V __m256
#define XF_W 8
#define XF_VBYTES 32
#define XF_FN(name) xf_##name##_f32_avx2
#define V_SET1(a) _mm256_set1_ps(a)
#define V_LOADU(p) _mm256_loadu_ps(p)
#define V_STOREU(p, v) _mm256_storeu_ps((p), (v))
#define V_STREAM(p, v) _mm256_stream_ps((p), (v))
#define V_LOAD_TAIL(p, n, fill) \
    _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps((p), xf_mask8(n)), \
                     _mm256_castsi256_ps(xf_mask8(n)))
#define V_STORE_TAIL(p, v, n) _mm256_maskstore_ps((p), xf_mask8(n), (v))
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
#define V_MAX _mm256_max_ps
#define V_FMA _mm256_fmadd_ps
#define V_FNMA _mm256_fnmadd_ps
#define V_DIV _mm256_div_ps
#define V_ZERO_TAIL(v, n) _mm256_and_ps((v), _mm256_castsi256_ps(xf_mask8(n)))
#define XF_T_MAX FLT_MAX
#define V_FIRST _mm256_cvtss_f32
#define V_ROUND_T(v) (v)
#define V_SELECT_GE0(x, a, b) _mm256_blendv_ps((b), (a), _mm256_cmp_ps((x), _mm256_setzero_ps(), _CMP_GE_OQ))
#define XF_NARROW 1
#define XF_VI __m256i
#define VI_LOAD(p) _mm256_loadu_si256((const __m256i *)(p))
#define V_GATHER(base, idx) _mm256_i32gather_ps((base), (idx), 4)
#define V_PERMUTE(v, idx) _mm256_permutevar8x32_ps((v), (idx))
#define V_LOG xf_log_ps256
#define V_MIN _mm256_min_ps
/* 1/d: 12-bit estimate and one Newton step, r (2 - d r): ~1-2 ulp, no divide */
static inline __m256 xf_recip_ps256(__m256 d) {
    const __m256 r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}
#define V_RECIP xf_recip_ps256
#define V_ZERO_WHERE_ZERO(v, c) _mm256_and_ps((v), _mm256_cmp_ps((c), _mm256_setzero_ps(), _CMP_NEQ_UQ))
#define V_EXP xf_exp_ps256
#define V_EXP_MID xf_exp_mid_ps256
#define V_EXPM1_MID xf_expm1_mid_ps256
#define V_HMAX xf_hmax_ps256
#define V_HSUM xf_hsum_ps256
#define XF_SFENCE() _mm_sfence()
#include "xentfast/kernel_body.h"
#include "xentfast/elementwise_body.h"

extern void xf_rows_f64_scalar(const xf_rows_args *, int64_t, int64_t, void *);
extern void xf_elem_f64_scalar(const xf_elem_args *, int64_t, int64_t);
extern const xf_split_fns xf_split_f64_scalar;

static const xf_split_fns xf_split_f32_avx2 = XF_SPLIT_TABLE(f32_avx2);

const xf_kernel_table xf_table_avx2 = {
    "avx2", xf_rows_f32_avx2, xf_rows_f64_scalar, xf_exp_f32_avx2,
    xf_elem_f32_avx2, xf_elem_f64_scalar, xf_log1p_f32_avx2,
    &xf_split_f32_avx2, &xf_split_f64_scalar,
};
