/* AVX-512F vector layer for kernel_body.h: 16 float32 lanes.
 * Include only from a file compiled with -mavx512f -mavx512dq -mavx2 -mfma. */
#ifndef XENTFAST_SIMD_AVX512_H
#define XENTFAST_SIMD_AVX512_H
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

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
 * x < -103.98 and -inf give +0 exactly, x > 88.72 and +inf give +inf.
 * Accuracy: max error 0.88 ulp against float64 exp over 2^22 points on
 * [-104, 0] and all of [-88, 88] (tests/test_exp.py asserts <= 2 ulp).
 */
static inline __m512 xf_exp_ps512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-110.0f), hi = _mm512_set1_ps(88.8f);
    /* min/max return their second operand when either is NaN: keep x there. */
    x = _mm512_max_ps(lo, _mm512_min_ps(hi, x));
    /* n = rint(x log2 e): adding 1.5*2^23 rounds to an integer (one FMA) */
    const __m512 shifter = _mm512_set1_ps(12582912.0f);
    const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), shifter), shifter);
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

static inline __mmask16 xf_mask16(int64_t n) { return (__mmask16)((1u << n) - 1u); }

static inline double xf_hsum_ps512(__m512 v) {
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}
#endif
