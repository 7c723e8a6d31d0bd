/* AVX2+FMA vector layer for kernel_body.h: 8 float32 lanes.
 * Include only from a file compiled with -mavx2 -mfma. */
#ifndef XENTFAST_SIMD_AVX2_H
#define XENTFAST_SIMD_AVX2_H
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

/* exp(x), 8 float32 lanes.
 *
 * Same reduction and polynomial as xf_exp_ps512 (see simd_avx512.h):
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
static inline __m256 xf_exp_ps256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-110.0f), hi = _mm256_set1_ps(88.8f);
    x = _mm256_max_ps(lo, _mm256_min_ps(hi, x));
    /* n = rint(x log2 e): adding 1.5*2^23 rounds to an integer (one FMA) */
    const __m256 shifter = _mm256_set1_ps(12582912.0f);
    const __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), shifter), shifter);
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

/* log(s) for s > 0, 8 float32 lanes: the method of xf_log_ps512 (see
 * simd_avx512.h), with k and f taken from the bits (s = 2^k f, f in
 * [sqrt(1/2), sqrt(2))).  Positive normal s only; NaN and +inf pass through.
 * Accuracy: max error 1.1 ulp on [1, 2^20] (tests/test_exp.py). */
static inline __m256 xf_log_ps256(__m256 s) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i bits = _mm256_castps_si256(s);
    __m256 k = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
    __m256 f = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                                                   _mm256_set1_epi32(0x3f800000)));
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
    const __m256 special = _mm256_blendv_ps(r, s, _mm256_cmp_ps(s, _mm256_set1_ps(3.40282347e38f), _CMP_NLE_UQ));
    return _mm256_blendv_ps(special, _mm256_set1_ps(-INFINITY), _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_EQ_OQ));
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
#endif
