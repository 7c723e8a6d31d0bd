/* AVX2+FMA vector layer: 8 float32 lanes.
 *
 * Primitives only (kernel_template.h lists them).  Include only from a
 * file compiled with -mavx2 -mfma (avx2.c), which dispatch.c calls only
 * after cpuid and xgetbv have shown the CPU and the OS support them.
 *
 * Capabilities (read by xf_plan through the table):
 *   narrow rows       C <= 32, one row per lane, columns by gathers
 *   one-loop softcap  none (no faster than two loops with the rational
 *                     tanh: docs/design.md, "Specialisations")
 *   cheap exp         a degree-5 polynomial (xf_exp_mid_ps256)
 */
#ifndef XENTFAST_VEC_AVX2_H
#define XENTFAST_VEC_AVX2_H
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define XF_CAP_NARROW_MAX   32
#define XF_CAP_ONE_LOOP_CAP 0.0

/* exp(x), 8 float32 lanes.
 *
 * Same reduction and polynomial as xf_exp_ps512 (see vec_avx512.h):
 * x = n*ln2 + r, Cody–Waite with a 15-bit ln2 head, e^r = 1 + r + r^2 q(r)
 * with the degree-4 minimax q, Horner form with FMA.  AVX2 has no VSCALEFPS, so
 * 2^n is applied in two exact halves, 2^(n>>1) then 2^(n - (n>>1)): each
 * factor is a normal float for n in [-160, 128], the first product is exact
 * and only the second rounds, which keeps subnormal results (x in
 * [-103.97, -87.34)) correctly scaled instead of flushing them.
 * Range: x clamped to [-110, 88.8] (NaN passes through): x < -103.98 and
 * -inf give +0, x > 88.72 and +inf give +inf.
 * Accuracy: max error 0.88 ulp against float64 exp over 2^22 points on
 * [-104, 0] and all of [-88, 88] (tests/test_exp.py asserts <= 2 ulp).
 */
static inline __m256 xf_exp_clamped_ps256(__m256 x) {
    /* n = rint(x log2 e): adding 1.5*2^23 rounds to an integer (one FMA) */
    const __m256 shifter = _mm256_set1_ps(12582912.0f);
    const __m256 n =
        _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), shifter), shifter);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-6f), r);
    __m256 p = _mm256_set1_ps(1.3814613e-3f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3687101e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1668389e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666521e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.9999994e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* NaN lanes: the int conversion gives garbage exponents, but p is NaN and
     * NaN times anything stays NaN. */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
/* min/max return their second operand when either is NaN: keep x there. */
static inline __m256 xf_exp_ps256(__m256 x) {
    return xf_exp_clamped_ps256(
        _mm256_max_ps(_mm256_set1_ps(-110.0f), _mm256_min_ps(_mm256_set1_ps(88.8f), x)));
}
/* The same for x <= 0 or NaN (x minus its row's max): one clamp fewer. */
static inline __m256 xf_exp_nonpos_ps256(__m256 x) {
    return xf_exp_clamped_ps256(_mm256_max_ps(_mm256_set1_ps(-110.0f), x));
}

/* log(s) for s > 0, 8 float32 lanes: the method of xf_log_ps512 (see
 * vec_avx512.h), with k and f taken from the bits (s = 2^k f, f in
 * [sqrt(1/2), sqrt(2))).  Positive normal s only; NaN and +inf pass through.
 * Accuracy: max error 1.1 ulp on [1, 2^20] (tests/test_exp.py). */
static inline __m256 xf_log_ps256(__m256 s) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i bits = _mm256_castps_si256(s);
    __m256 k =
        _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
    __m256 f = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f800000)));
    const __m256 big = _mm256_cmp_ps(f, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
    f = _mm256_blendv_ps(f, _mm256_mul_ps(f, _mm256_set1_ps(0.5f)), big);
    k = _mm256_add_ps(k, _mm256_and_ps(big, one));
    const __m256 u = _mm256_div_ps(_mm256_sub_ps(f, one), _mm256_add_ps(f, one));
    const __m256 u2 = _mm256_mul_ps(u, u);
    __m256 p = _mm256_set1_ps(1.0f / 9.0f);
    p = _mm256_fmadd_ps(p, u2, _mm256_set1_ps(1.0f / 7.0f));
    p = _mm256_fmadd_ps(p, u2, _mm256_set1_ps(1.0f / 5.0f));
    p = _mm256_fmadd_ps(p, u2, _mm256_set1_ps(1.0f / 3.0f));
    const __m256 u_2 = _mm256_add_ps(u, u);
    const __m256 log_f = _mm256_fmadd_ps(u_2, _mm256_mul_ps(u2, p), u_2);
    const __m256 hi = _mm256_fmadd_ps(k, _mm256_set1_ps(0.693145751953125f), log_f);
    const __m256 r = _mm256_fmadd_ps(k, _mm256_set1_ps(1.428606765330187e-6f), hi);
    /* NaN and +inf (s > FLT_MAX or unordered) are their own log; log 0 = -inf */
    const __m256 special =
        _mm256_blendv_ps(r, s, _mm256_cmp_ps(s, _mm256_set1_ps(3.40282347e38f), _CMP_NLE_UQ));
    return _mm256_blendv_ps(special, _mm256_set1_ps(-INFINITY),
                            _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_EQ_OQ));
}

/* Lanes [0, n) set, for masked loads/stores of a row's tail. */
static inline __m256i xf_mask8(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline double xf_hsum_ps256(__m256 v) {
    __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                              _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(d), _mm256_extractf128_pd(d, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

static inline float xf_hmax_ps256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* p * 2^n for integral n in [-126, 127], 2^n built from the bits (a NaN n
 * gives a garbage scale, but a NaN p stays NaN) */
static inline __m256 xf_ldexp_ps256(__m256 p, __m256 n) {
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
/* The softcap's cheaper exp: z = c tanh(x/c) carries an absolute error of
 * about c * 1e-7 in float32, so the exps of the softmax over z need no
 * more than about that, not the 0.9 ulp of xf_exp_ps256.  x = n ln2 + r:
 * n = rint(x log2 e) by adding and subtracting 1.5*2^23 (one FMA),
 * r = x - n ln2 by one FMA with ln 2 rounded to float (error
 * |n| * 1.9e-9; r = x exactly when n = 0).  No range clamp: the callers
 * keep x in [-87.3, 88]. */
/* e^x to 3.9e-7 relative on [-87.3, 88] (AVX2, measured by TOOL=exp_mid_check
 * tools/kernel_bench.sh avx2; most of it the reduction's error at |x| near
 * 88): e^r by a degree-5 polynomial fitted for minimax relative error on
 * [-ln2/2, ln2/2] (Lawson's iteration; 9.1e-8 before float rounding). */
static inline __m256 xf_exp_mid_ps256(__m256 x) {
    const __m256 shifter = _mm256_set1_ps(12582912.0f);
    const __m256 n =
        _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504f), shifter), shifter);
    const __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693147182f), x);
    __m256 p = _mm256_set1_ps(8.290315e-3f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1897930e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6667636e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.9999151e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(9.9999970e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    return xf_ldexp_ps256(p, n);
}
/* The targets of 8 rows as int32 lanes (0 where a row's target is
 * ignore_index, or for no targets), and keep = 1.0 for a counted row, 0.0
 * for an ignored one. */
static inline __m256i xf_targets8(const int64_t *t, int64_t ignore, __m256 *keep) {
    if (!t) {
        *keep = _mm256_set1_ps(1.0f);
        return _mm256_setzero_si256();
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
    return y;
}

/* 8 float lanes stored as 8 doubles */
static inline void xf_store_f64_8(double *p, __m256 v) {
    _mm256_storeu_pd(p, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    _mm256_storeu_pd(p + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

/* ---- the layer's names (kernel_template.h) ---- */
#define XF_V           __m256
#define XF_W           8
#define XF_VBYTES      32
#define XF_T_MAX       FLT_MAX
#define V_SET1(a)      _mm256_set1_ps(a)
#define V_LOADU(p)     _mm256_loadu_ps(p)
#define V_STOREU(p, v) _mm256_storeu_ps((p), (v))
#define V_STREAM(p, v) _mm256_stream_ps((p), (v))
#define V_LOAD_TAIL(p, n, fill)                                                                    \
    _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps((p), xf_mask8(n)),                   \
                     _mm256_castsi256_ps(xf_mask8(n)))
#define V_STORE_TAIL(p, v, n) _mm256_maskstore_ps((p), xf_mask8(n), (v))
#define V_ZERO_TAIL(v, n)     _mm256_and_ps((v), _mm256_castsi256_ps(xf_mask8(n)))
#define V_ADD                 _mm256_add_ps
#define V_SUB                 _mm256_sub_ps
#define V_MUL                 _mm256_mul_ps
#define V_DIV                 _mm256_div_ps
#define V_MAX                 _mm256_max_ps
#define V_MIN                 _mm256_min_ps
#define V_FMA                 _mm256_fmadd_ps
#define V_FNMA                _mm256_fnmadd_ps
#define V_FMS                 _mm256_fmsub_ps
#define V_FIRST               _mm256_cvtss_f32
#define V_ROUND_T(v)          (v)
#define V_HMAX                xf_hmax_ps256
#define V_HSUM                xf_hsum_ps256
#define V_SELECT_GE0(x, a, b)                                                                      \
    _mm256_blendv_ps((b), (a), _mm256_cmp_ps((x), _mm256_setzero_ps(), _CMP_GE_OQ))
#define V_SELECT_EQ(a, b, v) _mm256_and_ps(_mm256_cmp_ps((a), (b), _CMP_EQ_OQ), (v))
#define V_ZERO_WHERE_ZERO(v, c)                                                                    \
    _mm256_and_ps((v), _mm256_cmp_ps((c), _mm256_setzero_ps(), _CMP_NEQ_UQ))
#define V_ANY_ZERO(v)       (_mm256_movemask_ps(_mm256_cmp_ps((v), _mm256_setzero_ps(), _CMP_EQ_OQ)) != 0)
#define V_EXP               xf_exp_ps256
#define V_EXP_NONPOS        xf_exp_nonpos_ps256
#define V_EXP_MID           xf_exp_mid_ps256
#define V_LOG               xf_log_ps256
#define XF_SFENCE()         _mm_sfence()
#define XF_TANH_RATIONAL    1
/* integer lanes and the narrow rows' primitives */
#define XF_VI               __m256i
#define VI_LOAD(p)          _mm256_loadu_si256((const __m256i *)(p))
#define VI_ADD              _mm256_add_epi32
#define VI_TO_V             _mm256_cvtepi32_ps
#define V_GATHER(base, idx) _mm256_i32gather_ps((base), (idx), 4)
#define V_PERMUTE(v, idx)   _mm256_permutevar8x32_ps((v), (idx))
#define V_STORE_F64         xf_store_f64_8
#define VI_TARGETS          xf_targets8

#endif
