/* AVX-512 vector layer: 16 float32 lanes (AVX-512F and DQ).
 *
 * Primitives only: the kernels (kernel_template.h) are written once against
 * these names; kernel_template.h lists what a layer must define.  Include
 * only from a file compiled with -mavx512f -mavx512dq -mavx2 -mfma (avx512.c),
 * which dispatch.c calls only after cpuid and xgetbv have shown the CPU and
 * the OS support them.
 *
 * Capabilities (read by xf_plan through the table):
 *   narrow rows       C <= 32, one row per lane; columns by two-source
 *                     permutes for C <= 16 (gathers cost ~25 cycles each on
 *                     some AVX-512 CPUs, e.g. Zen 4), by gathers above
 *   one-loop softcap  caps <= 64: 2^x by a 32-entry table (xf_exp2_mid_ps512)
 *   cheap exp         table-driven (xf_exp_mid_ps512), for the softcap's exps
 */
#ifndef XENTFAST_VEC_AVX512_H
#define XENTFAST_VEC_AVX512_H
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define XF_CAP_NARROW_MAX   32
#define XF_CAP_ONE_LOOP_CAP 64.0

/* exp(x), 16 float32 lanes.
 *
 * Method: x = n*ln2 + r with n = rint(x*log2(e)) (one FMA that adds
 * 1.5*2^23, then a subtraction), so |r| <= ln2/2.  r is formed by Cody–Waite
 * reduction with ln2 split into a 15-bit head (so n*head is exact for
 * |n| < 2^9) and a tail, each subtracted by one FMA.  e^r = 1 + r + r^2 q(r),
 * q of degree 4 fitted for minimax relative error on [-ln2/2, ln2/2]
 * (Lawson's iteration; 3.1e-9 before rounding), in Horner form.  The result
 * p*2^n is formed by VSCALEFPS, which rounds once, so subnormal results
 * (x in [-103.97, -87.34)) are as accurate as normal ones.
 * Range: x is clamped to [-110, 88.8] first (NaN passes through), so
 * x < -103.98 and -inf give +0 exactly, x > 88.72 and +inf give +inf
 * (xf_exp_clamped_ps512 is the rest, for a caller that clamps).
 * Accuracy: max error 0.88 ulp against float64 exp over 2^22 points on
 * [-104, 0] and all of [-88, 88] (tests/test_exp.py asserts <= 2 ulp).
 */
static inline __m512 xf_exp_clamped_ps512(__m512 x) {
    /* n = rint(x log2 e): adding 1.5*2^23 rounds to an integer (one FMA) */
    const __m512 shifter = _mm512_set1_ps(12582912.0f);
    const __m512 n =
        _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), shifter), shifter);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-6f), r);
    __m512 p = _mm512_set1_ps(1.3814613e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3687101e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1668389e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666521e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.9999994e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
/* min/max return their second operand when either is NaN: keep x there. */
static inline __m512 xf_exp_ps512(__m512 x) {
    return xf_exp_clamped_ps512(
        _mm512_max_ps(_mm512_set1_ps(-110.0f), _mm512_min_ps(_mm512_set1_ps(88.8f), x)));
}
/* The same for x <= 0 or NaN (x minus its row's max): one clamp fewer, which
 * is one operation in twelve of the loss pass's loop. */
static inline __m512 xf_exp_nonpos_ps512(__m512 x) {
    return xf_exp_clamped_ps512(_mm512_max_ps(_mm512_set1_ps(-110.0f), x));
}

/* log(s) for s > 0, 16 float32 lanes (the narrow-row kernel's log-sum).
 * Method: s = 2^k f with f in [sqrt(1/2), sqrt(2)) (VGETEXPPS/VGETMANTPS),
 * log f = 2 atanh(u), u = (f - 1)/(f + 1) in [-0.172, 0.172] (f - 1 exact),
 * by the odd series 2(u + u^3/3 + ... + u^9/9) (next term < 1e-9 relative),
 * plus k ln 2 with ln 2 split so k*ln2_hi is exact.  NaN, +inf and 0 map
 * to NaN, +inf and -inf.  Accuracy: max error 1.1 ulp on [1, 2^20]
 * (tests/test_exp.py asserts <= 2 ulp). */
static inline __m512 xf_log_ps512(__m512 s) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 k = _mm512_getexp_ps(s);
    __m512 f = _mm512_getmant_ps(s, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
    const __mmask16 big = _mm512_cmp_ps_mask(f, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
    f = _mm512_mask_mul_ps(f, big, f, _mm512_set1_ps(0.5f));
    k = _mm512_mask_add_ps(k, big, k, one);
    const __m512 u = _mm512_div_ps(_mm512_sub_ps(f, one), _mm512_add_ps(f, one));
    const __m512 u2 = _mm512_mul_ps(u, u);
    __m512 p = _mm512_set1_ps(1.0f / 9.0f);
    p = _mm512_fmadd_ps(p, u2, _mm512_set1_ps(1.0f / 7.0f));
    p = _mm512_fmadd_ps(p, u2, _mm512_set1_ps(1.0f / 5.0f));
    p = _mm512_fmadd_ps(p, u2, _mm512_set1_ps(1.0f / 3.0f));
    const __m512 u_2 = _mm512_add_ps(u, u);
    const __m512 log_f = _mm512_fmadd_ps(u_2, _mm512_mul_ps(u2, p), u_2);
    const __m512 hi = _mm512_fmadd_ps(k, _mm512_set1_ps(0.693145751953125f), log_f);
    return _mm512_fmadd_ps(k, _mm512_set1_ps(1.428606765330187e-6f), hi);
}

/* ---- the softcap's cheaper exp (softcap.h), by a table ----
 * x = (k/32) ln2 + r with k = rint(32 x log2 e): adding 1.5*2^18 rounds
 * x log2 e to a multiple of 1/32 (one FMA), and the sum's low 5 mantissa
 * bits are k mod 32, the index VPERMT2PS takes straight from the bits.
 * |r| <= ln2/64, r = x - (k/32) ln2 by one FMA with ln 2 rounded to float
 * (error |k/32| * 1.9e-9, as xf_exp_mid_ps256's reduction).  The fraction
 * j = k mod 32 is taken in [-16, 15], so n = (k - j)/32 = floor(k/32 + 1/2),
 * which VSCALEFPS (it floors its exponent) gets as k/32 + 1/2, exactly.
 * Against the polynomial-only version this saves two FMA-class operations
 * for a permute: the softcap pass is bound by those. */
#define XF_TAB32_SHIFTER 393216.0f /* 1.5 * 2^18 */
/* 2^(j/32) rounded to float, at index j mod 32 */
static const float xf_exp2_frac32[32] = {
    1.0f,         1.0218972f,   1.04427373f,  1.06714046f,  1.09050775f,  1.1143868f,
    1.13878858f,  1.1637249f,   1.18920708f,  1.21524739f,  1.24185777f,  1.26905096f,
    1.29683959f,  1.32523668f,  1.35425556f,  1.38390994f,  0.707106769f, 0.722590387f,
    0.738413095f, 0.754582226f, 0.771105409f, 0.787990451f, 0.805245161f, 0.822877765f,
    0.840896428f, 0.859309673f, 0.878126085f, 0.897354543f, 0.917004049f, 0.93708384f,
    0.957603276f, 0.978572071f};
/* 2^(k/32) p(r) from sum (k in its low bits, see above) and the reduced
 * argument r: the table entry t = 2^(j/32) times p(r) = 1 + r (c1 + c2 r),
 * evaluated as t + (t r)(c1 + c2 r) so t costs no extra product, then
 * scaled by 2^n, n = (k - j)/32 (VSCALEFPS floors sum - S + 1/2). */
static inline __m512 xf_tab32_finish_ps512(__m512 sum, __m512 r, float c1, float c2) {
    const __m512 t =
        _mm512_permutex2var_ps(_mm512_loadu_ps(xf_exp2_frac32), _mm512_castps_si512(sum),
                               _mm512_loadu_ps(xf_exp2_frac32 + 16));
    const __m512 u = _mm512_fmadd_ps(_mm512_set1_ps(c2), r, _mm512_set1_ps(c1));
    const __m512 n = _mm512_sub_ps(sum, _mm512_set1_ps(XF_TAB32_SHIFTER - 0.5f));
    return _mm512_scalef_ps(_mm512_fmadd_ps(_mm512_mul_ps(t, r), u, t), n);
}

/* e^x to 4.0e-7 relative for x in [-87.3, 88] (the callers clamp; measured
 * by TOOL=exp_mid_check tools/kernel_bench.sh avx512, most of it the
 * reduction's error at |x| near 88):
 * 2^n 2^(j/32) e^r, e^r = 1 + r (c1 + c2 r) fitted for minimax relative
 * error on |r| <= ln2/64 (Lawson's iteration; 5.3e-8). */
static inline __m512 xf_exp_mid_ps512(__m512 x) {
    const __m512 sum =
        _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504f), _mm512_set1_ps(XF_TAB32_SHIFTER));
    const __m512 k32 = _mm512_sub_ps(sum, _mm512_set1_ps(XF_TAB32_SHIFTER));
    const __m512 r = _mm512_fnmadd_ps(k32, _mm512_set1_ps(0.693147182f), x);
    return xf_tab32_finish_ps512(sum, r, 1.00001466f, 0.500000179f);
}

/* In base 2 (the one-loop softcap, softcap.h): 2^r2 for |r2| <= 1/64
 * by the same fit with r = r2 ln2 substituted, c1 = 1.00001466 ln2,
 * c2 = 0.500000179 ln2^2 (5.3e-8 relative). */
#define XF_EXP2_C1 0.6931573f
#define XF_EXP2_C2 0.2402266f

/* 2^x for x in [-126, 127] (the callers keep it there): x rounded to a
 * multiple of 1/32 by adding 1.5*2^18, and r2 = x - k/32 exact (Sterbenz),
 * so three multiply-class operations, not five.  1.6e-7 relative on
 * [-92.5, 92.5] (TOOL=exp_mid_check tools/kernel_bench.sh avx512). */
static inline __m512 xf_exp2_mid_ps512(__m512 x) {
    const __m512 sum = _mm512_add_ps(x, _mm512_set1_ps(XF_TAB32_SHIFTER));
    const __m512 r2 = _mm512_sub_ps(x, _mm512_sub_ps(sum, _mm512_set1_ps(XF_TAB32_SHIFTER)));
    return xf_tab32_finish_ps512(sum, r2, XF_EXP2_C1, XF_EXP2_C2);
}

/* 2^(x k) for x k in [-126, 127]: x k is rounded once, inside the FMAs
 * that round it to 1/32 and form r2 = x k - k32 (the one-loop softcap's
 * e^{2u} = 2^(x k)): 1.6e-7 relative to 2^(x k) with k as given, for
 * |x k| <= 40 (the same tool). */
static inline __m512 xf_exp2_scaled_ps512(__m512 x, float k) {
    const __m512 kv = _mm512_set1_ps(k);
    const __m512 sum = _mm512_fmadd_ps(x, kv, _mm512_set1_ps(XF_TAB32_SHIFTER));
    const __m512 r2 = _mm512_fmsub_ps(x, kv, _mm512_sub_ps(sum, _mm512_set1_ps(XF_TAB32_SHIFTER)));
    return xf_tab32_finish_ps512(sum, r2, XF_EXP2_C1, XF_EXP2_C2);
}

static inline __mmask16 xf_mask16(int64_t n) { return (__mmask16)((1u << n) - 1u); }

static inline double xf_hsum_ps512(__m512 v) {
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

/* The targets of 16 rows as int32 lanes (0 where a row's target is
 * ignore_index, or for no targets), and keep = 1.0 for a counted row, 0.0
 * for an ignored one. */
static inline __m512i xf_targets16(const int64_t *t, int64_t ignore, __m512 *keep) {
    if (!t) {
        *keep = _mm512_set1_ps(1.0f);
        return _mm512_setzero_si512();
    }
    const __m512i ig = _mm512_set1_epi64(ignore);
    const __m512i t0 = _mm512_loadu_si512((const void *)t);
    const __m512i t1 = _mm512_loadu_si512((const void *)(t + 8));
    const __mmask8 i0 = _mm512_cmpeq_epi64_mask(t0, ig), i1 = _mm512_cmpeq_epi64_mask(t1, ig);
    const __m256i y0 = _mm512_maskz_cvtepi64_epi32((__mmask8)~i0, t0);
    const __m256i y1 = _mm512_maskz_cvtepi64_epi32((__mmask8)~i1, t1);
    const __mmask16 ignored = (__mmask16)(i0 | ((unsigned)i1 << 8));
    *keep = _mm512_maskz_mov_ps((__mmask16)~ignored, _mm512_set1_ps(1.0f));
    return _mm512_inserti64x4(_mm512_castsi256_si512(y0), y1, 1);
}

/* Narrow rows with C <= 16: the columns of a block (class k of 16 rows)
 * from its C flat vectors by two-source permutes of consecutive vector
 * pairs (gathers cost ~25 cycles each on some AVX-512 CPUs, e.g. Zen 4).
 * Lane l of column k is flat element l*C + k: pair p (vectors 2p, 2p+1)
 * holds the lanes with l*C + k in [32p, 32p + 32). */
typedef struct {
    __m512i idx[16][16 / 2];
    __mmask16 mask[16][16 / 2];
} xf_columns16;
static inline void xf_columns_setup16(xf_columns16 *t, int64_t C) {
    /* in vectors: built lane by lane through memory, it stalled on
     * store-to-load forwarding, the largest part of a 64x10 loss+grad
     * (_core.ce_fast) under `perf record` */
    const __m512i l_c =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int32_t)C));
    for (int64_t k = 0; k < C; k++)
        for (int64_t p = 0; 2 * p < C; p++) {
            const __m512i f = _mm512_add_epi32(l_c, _mm512_set1_epi32((int32_t)(k - 32 * p)));
            const __mmask16 in_pair = _mm512_cmpge_epi32_mask(f, _mm512_setzero_si512()) &
                                      _mm512_cmplt_epi32_mask(f, _mm512_set1_epi32(32));
            t->idx[k][p] = _mm512_maskz_mov_epi32(in_pair, f);
            t->mask[k][p] = in_pair;
        }
}
static inline __m512 xf_column16(const xf_columns16 *t, const __m512 *flat, int64_t C, int64_t k) {
    __m512 col =
        _mm512_maskz_permutex2var_ps(t->mask[k][0], flat[0], t->idx[k][0], flat[C > 1 ? 1 : 0]);
    for (int64_t p = 1; 2 * p < C; p++)
        col = _mm512_mask_mov_ps(col, t->mask[k][p],
                                 _mm512_permutex2var_ps(flat[2 * p], t->idx[k][p],
                                                        flat[2 * p + 1 < C ? 2 * p + 1 : 2 * p]));
    return col;
}
/* 16 float lanes stored as 16 doubles */
static inline void xf_store_f64_16(double *p, __m512 v) {
    _mm512_storeu_pd(p, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    _mm512_storeu_pd(
        p + 8, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

/* ---- the layer's names (kernel_template.h) ---- */
#define XF_V                    __m512
#define XF_W                    16
#define XF_VBYTES               64
#define XF_T_MAX                FLT_MAX
#define V_SET1(a)               _mm512_set1_ps(a)
#define V_LOADU(p)              _mm512_loadu_ps(p)
#define V_STOREU(p, v)          _mm512_storeu_ps((p), (v))
#define V_STREAM(p, v)          _mm512_stream_ps((p), (v))
#define V_LOAD_TAIL(p, n, fill) _mm512_mask_loadu_ps(_mm512_set1_ps(fill), xf_mask16(n), (p))
#define V_STORE_TAIL(p, v, n)   _mm512_mask_storeu_ps((p), xf_mask16(n), (v))
#define V_ZERO_TAIL(v, n)       _mm512_maskz_mov_ps(xf_mask16(n), (v))
#define V_ADD                   _mm512_add_ps
#define V_SUB                   _mm512_sub_ps
#define V_MUL                   _mm512_mul_ps
#define V_DIV                   _mm512_div_ps
#define V_MAX                   _mm512_max_ps
#define V_MIN                   _mm512_min_ps
#define V_FMA                   _mm512_fmadd_ps
#define V_FNMA                  _mm512_fnmadd_ps
#define V_FMS                   _mm512_fmsub_ps
#define V_FIRST                 _mm512_cvtss_f32
#define V_ROUND_T(v)            (v)
#define V_HMAX                  _mm512_reduce_max_ps
#define V_HSUM                  xf_hsum_ps512
#define V_SELECT_GE0(x, a, b)                                                                      \
    _mm512_mask_blend_ps(_mm512_cmp_ps_mask((x), _mm512_setzero_ps(), _CMP_GE_OQ), (b), (a))
#define V_SELECT_EQ(a, b, v) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask((a), (b), _CMP_EQ_OQ), (v))
#define V_ZERO_WHERE_ZERO(v, c)                                                                    \
    _mm512_maskz_mov_ps(_mm512_cmp_ps_mask((c), _mm512_setzero_ps(), _CMP_NEQ_UQ), (v))
#define V_ANY_ZERO(v)       (_mm512_cmp_ps_mask((v), _mm512_setzero_ps(), _CMP_EQ_OQ) != 0)
#define V_EXP               xf_exp_ps512
#define V_EXP_NONPOS        xf_exp_nonpos_ps512
#define V_EXP_MID           xf_exp_mid_ps512
#define V_EXP2_MID          xf_exp2_mid_ps512
#define V_EXP2_SCALED       xf_exp2_scaled_ps512
#define V_LOG               xf_log_ps512
#define XF_SFENCE()         _mm_sfence()
#define XF_TANH_RATIONAL    1
/* integer lanes and the narrow rows' primitives */
#define XF_VI               __m512i
#define VI_LOAD(p)          _mm512_loadu_si512((const void *)(p))
#define VI_ADD              _mm512_add_epi32
#define VI_TO_V             _mm512_cvtepi32_ps
#define V_GATHER(base, idx) _mm512_i32gather_ps((idx), (base), 4)
#define V_PERMUTE(v, idx)   _mm512_permutexvar_ps((idx), (v))
#define V_STORE_F64         xf_store_f64_16
#define VI_TARGETS          xf_targets16
#define XF_COLUMNS          xf_columns16
#define XF_COLUMNS_MAX      16
#define V_COLUMNS_SETUP     xf_columns_setup16
#define V_COLUMN            xf_column16

#endif
