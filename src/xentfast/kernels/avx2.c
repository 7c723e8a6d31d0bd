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
/* Narrow rows: the flat offsets l*C + y of the targets of 8 rows (l*C for
 * a row whose target is ignore_index, or for no targets), and keep = 1.0 for
 * a counted row, 0.0 for an ignored one. */
static inline __m256i xf_target_offsets8(const int64_t *t, int64_t ignore, __m256i lane_c,
                                         __m256 *keep) {
    if (!t) {
        *keep = _mm256_set1_ps(1.0f);
        return lane_c;
    }
    const __m256i ig = _mm256_set1_epi64x(ignore);
    const __m256i t0 = _mm256_loadu_si256((const __m256i *)t);
    const __m256i t1 = _mm256_loadu_si256((const __m256i *)(t + 4));
    const __m256i i0 = _mm256_cmpeq_epi64(t0, ig), i1 = _mm256_cmpeq_epi64(t1, ig);
    /* the low 32 bits of the 8 int64 lanes, in order (targets are < C) */
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i lo0 = _mm256_permutevar8x32_epi32(_mm256_andnot_si256(i0, t0), order);
    const __m256i lo1 = _mm256_permutevar8x32_epi32(_mm256_andnot_si256(i1, t1), order);
    const __m256i y = _mm256_permute2x128_si256(lo0, lo1, 0x20);
    const __m256i ign = _mm256_permute2x128_si256(_mm256_permutevar8x32_epi32(i0, order),
                                                  _mm256_permutevar8x32_epi32(i1, order), 0x20);
    *keep = _mm256_andnot_ps(_mm256_castsi256_ps(ign), _mm256_set1_ps(1.0f));
    return _mm256_add_epi32(lane_c, y);
}
#define V_TARGET_OFFSETS xf_target_offsets8
/* 8 float lanes stored as 8 doubles */
static inline void xf_store_f64_8(double *p, __m256 v) {
    _mm256_storeu_pd(p, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    _mm256_storeu_pd(p + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}
#define V_STORE_F64 xf_store_f64_8
#define VI_TO_V _mm256_cvtepi32_ps
#define V_SELECT_EQ(a, b, v) _mm256_and_ps(_mm256_cmp_ps((a), (b), _CMP_EQ_OQ), (v))
#define V_FMS _mm256_fmsub_ps
#define V_ANY_ZERO(v) (_mm256_movemask_ps(_mm256_cmp_ps((v), _mm256_setzero_ps(), _CMP_EQ_OQ)) != 0)
#define V_MIN _mm256_min_ps
#define V_ZERO_WHERE_ZERO(v, c) _mm256_and_ps((v), _mm256_cmp_ps((c), _mm256_setzero_ps(), _CMP_NEQ_UQ))
#define V_EXP xf_exp_ps256
/* p * 2^n for integral n in [-126, 127], 2^n built from the bits (a NaN n
 * gives a garbage scale, but a NaN p stays NaN) */
static inline __m256 xf_ldexp_ps256(__m256 p, __m256 n) {
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
                                                         _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#define V_LDEXP xf_ldexp_ps256
#define V_HMAX xf_hmax_ps256
#define V_HSUM xf_hsum_ps256
#define XF_SFENCE() _mm_sfence()
/* the softcap's tanh by a rational function (kernel_body.h) */
#define XF_TANH_RATIONAL 1
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
