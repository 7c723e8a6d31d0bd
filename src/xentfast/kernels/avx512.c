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
/* Narrow rows: the flat offsets l*C + y of the targets of 16 rows (l*C for
 * a row whose target is ignore_index, or for no targets), and keep = 1.0 for
 * a counted row, 0.0 for an ignored one. */
static inline __m512i xf_target_offsets16(const int64_t *t, int64_t ignore, __m512i lane_c,
                                          __m512 *keep) {
    if (!t) {
        *keep = _mm512_set1_ps(1.0f);
        return lane_c;
    }
    const __m512i ig = _mm512_set1_epi64(ignore);
    const __m512i t0 = _mm512_loadu_si512((const void *)t);
    const __m512i t1 = _mm512_loadu_si512((const void *)(t + 8));
    const __mmask8 i0 = _mm512_cmpeq_epi64_mask(t0, ig), i1 = _mm512_cmpeq_epi64_mask(t1, ig);
    const __m256i y0 = _mm512_maskz_cvtepi64_epi32((__mmask8)~i0, t0);
    const __m256i y1 = _mm512_maskz_cvtepi64_epi32((__mmask8)~i1, t1);
    const __mmask16 ignored = (__mmask16)(i0 | ((unsigned)i1 << 8));
    *keep = _mm512_maskz_mov_ps((__mmask16)~ignored, _mm512_set1_ps(1.0f));
    return _mm512_add_epi32(lane_c, _mm512_inserti64x4(_mm512_castsi256_si512(y0), y1, 1));
}
#define V_TARGET_OFFSETS xf_target_offsets16
/* Narrow rows with C <= 16: the columns of a block (class k of 16 rows)
 * from its C flat vectors by two-source permutes of consecutive vector
 * pairs (gathers cost ~25 cycles each on some AVX-512 CPUs, e.g. Zen 4).
 * Lane l of column k is flat element l*C + k: pair p (vectors 2p, 2p+1)
 * holds the lanes with l*C + k in [32p, 32p + 32). */
#define XF_COLUMNS_MAX 16
typedef struct {
    __m512i idx[XF_COLUMNS_MAX][XF_COLUMNS_MAX / 2];
    __mmask16 mask[XF_COLUMNS_MAX][XF_COLUMNS_MAX / 2];
} xf_columns16;
static inline void xf_columns_setup16(xf_columns16 *t, int64_t C) {
    for (int64_t k = 0; k < C; k++)
        for (int64_t p = 0; 2 * p < C; p++) {
            int32_t lane_idx[16];
            unsigned mask = 0;
            for (int l = 0; l < 16; l++) {
                const int64_t f = l * C + k - 32 * p;
                lane_idx[l] = (int32_t)(f >= 0 && f < 32 ? f : 0);
                if (f >= 0 && f < 32) mask |= 1u << l;
            }
            t->idx[k][p] = _mm512_loadu_si512((const void *)lane_idx);
            t->mask[k][p] = (__mmask16)mask;
        }
}
static inline __m512 xf_column16(const xf_columns16 *t, const __m512 *flat, int64_t C, int64_t k) {
    __m512 col = _mm512_maskz_permutex2var_ps(t->mask[k][0], flat[0], t->idx[k][0],
                                              flat[C > 1 ? 1 : 0]);
    for (int64_t p = 1; 2 * p < C; p++)
        col = _mm512_mask_mov_ps(col, t->mask[k][p],
                                 _mm512_permutex2var_ps(flat[2 * p], t->idx[k][p],
                                                        flat[2 * p + 1 < C ? 2 * p + 1 : 2 * p]));
    return col;
}
#define XF_COLUMNS xf_columns16
#define V_COLUMNS_SETUP xf_columns_setup16
#define V_COLUMN xf_column16
/* 16 float lanes stored as 16 doubles */
static inline void xf_store_f64_16(double *p, __m512 v) {
    _mm512_storeu_pd(p, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    _mm512_storeu_pd(p + 8, _mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
#define V_STORE_F64 xf_store_f64_16
#define VI_TO_V _mm512_cvtepi32_ps
#define V_SELECT_EQ(a, b, v) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask((a), (b), _CMP_EQ_OQ), (v))
#define V_FMS _mm512_fmsub_ps
#define V_ANY_ZERO(v) (_mm512_cmp_ps_mask((v), _mm512_setzero_ps(), _CMP_EQ_OQ) != 0)
#define V_MIN _mm512_min_ps
#define V_ZERO_WHERE_ZERO(v, c) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask((c), _mm512_setzero_ps(), _CMP_NEQ_UQ), (v))
#define V_EXP xf_exp_ps512
/* the softcap's cheaper exp, by a 32-entry table */
#define V_EXP_MID xf_exp_mid_ps512
/* 2^x and 2^(x k): the one-loop softcap (kernel_body.h) */
#define V_EXP2_MID xf_exp2_mid_ps512
#define V_EXP2_SCALED xf_exp2_scaled_ps512
#define V_HMAX _mm512_reduce_max_ps
#define V_HSUM xf_hsum_ps512
#define XF_SFENCE() _mm_sfence()
/* the softcap's tanh by a rational function (kernel_body.h) */
#define XF_TANH_RATIONAL 1
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
