/* AArch64 NEON (Advanced SIMD) vector layer: 8 float32 lanes, each vector a
 * pair of 128-bit registers (see "8 lanes" below for why).  Its float64
 * twin is vec_neon_f64.h (neon.c instantiates the kernels with both).
 *
 * Primitives only (kernel_template.h lists them).  NEON is part of the
 * AArch64 baseline: neon.c needs no extra compiler flag and dispatch.c no
 * detection.  Include only from a file built for __aarch64__.
 *
 * Capabilities (read by xf_plan through the table):
 *   narrow rows       C <= 32, one row per lane (8 rows); the columns of the
 *                     8 rows by two TBL lookups (one per half) over the
 *                     block's flat vectors for C <= 4, else by 8 lane loads
 *                     per column (NEON has no gather instruction); the
 *                     gradient's per-row values by TBL over the pair
 *   one-loop softcap  caps <= 64, as AVX-512: 2^x and 2^(x k) by a
 *                     degree-5 polynomial (xf_exp2_mid_f32x4, no table);
 *                     per 4 lanes about as many vector operations as the
 *                     two loops (about 35 and a division either way) but
 *                     one pass over the row instead of a z loop, a store
 *                     and a reload of z; chosen by that count, unmeasured
 *                     on AArch64 hardware
 *   cheap exp         a degree-5 polynomial (xf_exp_mid_f32x4)
 *   streaming stores  STNP (xf_stream8), a hint; results bit for bit those
 *                     of ordinary stores (tests/test_neon.py)
 *   float64           vec_neon_f64.h: 4 lanes, no narrow rows, two-loop
 *                     softcap with the tanh by a float64 expm1
 *
 * Expected speed (reasoning, not a measurement: correctness is verified
 * under emulation, where timings mean nothing).  The plain pass is one read
 * of the logits and one write of the gradient; per 4 lanes the exp costs
 * about 15 vector operations (clamp, round, 2 reduction FMAs, 6 polynomial
 * FMAs, 2 integer scalings, 2 multiplies).  Cores with two to four 128-bit
 * FP pipes (Neoverse N1: 2; V1, V2 and Apple M-series: 4) retire 8-16
 * float lanes of FMA per cycle, so the exp loop should run near 1-2 cycles
 * per element, and a large row stays memory-bound as on AVX2; for rows in
 * cache expect about half the AVX2 rate per clock (half the lanes per
 * instruction, often more pipes).  Every vector being two registers gives
 * each instruction a twin with no dependency on it, which those pipes need
 * to overlap the exp's Horner chain.  Narrow rows with C > 4 pay 8 lane
 * loads per column instead of a gather, about what a hardware gather
 * costs on x86.
 *
 * NaN: vmaxq/vminq (FMAX/FMIN) return NaN when either lane is NaN, where
 * x86 returns the second operand.  The kernels rely on neither: a NaN
 * logit reaches every result through the exps (row_stats.h), and every
 * clamp here lets NaN through as the x86 clamps do.
 */
#ifndef XENTFAST_VEC_NEON_H
#define XENTFAST_VEC_NEON_H
#include <arm_neon.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define XF_CAP_NARROW_MAX   32
/* the one loop's exps of z itself, unshifted, times a chain factor of at
 * least 2^-23, stay normal floats for caps up to 64 (softcap.h) */
#define XF_CAP_ONE_LOOP_CAP 64.0

/* 2^n for integral float n in [-126, 127], from the bits (a NaN n gives
 * 2^-127's bits, harmless against a NaN polynomial) */
static inline float32x4_t xf_pow2i_f32x4(int32x4_t n) {
    return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n, vdupq_n_s32(127)), 23));
}

/* exp(x), 4 float32 lanes.
 *
 * The method of xf_exp_ps256 (vec_avx2.h): x = n ln2 + r with n = rint(x
 * log2 e) (FRINTN), Cody–Waite with a 15-bit ln2 head (n ln2_hi exact for
 * |n| <= 160) and its tail; e^r = 1 + r + r^2 q(r), q the degree-4 minimax
 * polynomial of the x86 layers (a degree-6 polynomial in all), Horner form
 * with FMA.  2^n is applied in two exact halves, 2^(n>>1) then 2^(n -
 * (n>>1)), each a normal float for n in [-160, 128]: the first product is
 * exact and only the second rounds, so subnormal results (x in [-103.97,
 * -87.34)) are correctly scaled, not flushed.
 * Range: x clamped to [-110, 88.8] (NaN passes the clamp and the
 * polynomial): x < -103.98 and -inf give +0, x > 88.72 and +inf give +inf.
 * Accuracy: max error 0.85 ulp against float64 exp over 1.2e6 points on
 * [-104, 89] with the underflow edge ([-104, -86] densely) and special
 * values (`pytest tests/test_neon.py -k exp`, run under qemu-aarch64;
 * asserts <= 2 ulp). */
static inline float32x4_t xf_exp_f32x4(float32x4_t x) {
    x = vmaxq_f32(vdupq_n_f32(-110.0f), vminq_f32(vdupq_n_f32(88.8f), x));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606765330187e-6f));
    float32x4_t p = vfmaq_f32(vdupq_n_f32(8.3687101e-3f), vdupq_n_f32(1.3814613e-3f), r);
    p = vfmaq_f32(vdupq_n_f32(4.1668389e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666521e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.9999994e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    /* FCVTZS of a NaN lane is 0: a harmless scale for a NaN p */
    const int32x4_t ni = vcvtq_s32_f32(n);
    const int32x4_t n1 = vshrq_n_s32(ni, 1);
    const int32x4_t n2 = vsubq_s32(ni, n1);
    return vmulq_f32(vmulq_f32(p, xf_pow2i_f32x4(n1)), xf_pow2i_f32x4(n2));
}

/* The softcap's cheaper exp: z = c tanh(x/c) carries an absolute error of
 * about c * 1e-7 in float32, so its exps need no more than about that.
 * The method of xf_exp_mid_ps256 (vec_avx2.h): one-constant reduction
 * r = x - n ln2 (error |n| * 1.9e-9), e^r by the degree-5 minimax
 * polynomial of that layer (9.1e-8 relative before float rounding), one
 * scaling by 2^n.  No range clamp: the callers keep x in [-87.3, 88].
 * Accuracy: max relative error 3.9e-7 on [-87.3, 88] over 2e5 points
 * (`pytest tests/test_neon.py -k exp_mid`, asserts <= 5e-7). */
static inline float32x4_t xf_exp_mid_f32x4(float32x4_t x) {
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504f)));
    const float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693147182f));
    float32x4_t p = vfmaq_f32(vdupq_n_f32(4.1897930e-2f), vdupq_n_f32(8.290315e-3f), r);
    p = vfmaq_f32(vdupq_n_f32(1.6667636e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.9999151e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(9.9999970e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    return vmulq_f32(p, xf_pow2i_f32x4(vcvtq_s32_f32(n)));
}

/* ---- the one-loop softcap's exps in base 2 (softcap.h) ----
 * 2^x = 2^n 2^f, n = rint(x) (FRINTN), f = x - n in [-1/2, 1/2]; 2^f by
 * xf_exp_mid_f32x4's polynomial with r = f ln2 substituted (coefficient k
 * times ln2^k, rounded to float: the same 9.1e-8 relative before
 * rounding), one scaling by 2^n.  No table: a 32-entry table (AVX-512's
 * VPERMT2PS) would take two 64-byte TBL lookups, a select and the byte
 * indices, more than the two FMAs it saves. */
static inline float32x4_t xf_exp2_poly_f32x4(float32x4_t f, float32x4_t n) {
    float32x4_t p = vfmaq_f32(vdupq_n_f32(9.671513e-3f), vdupq_n_f32(1.3264727e-3f), f);
    p = vfmaq_f32(vdupq_n_f32(5.5507336e-2f), p, f);
    p = vfmaq_f32(vdupq_n_f32(2.4022242e-1f), p, f);
    p = vfmaq_f32(vdupq_n_f32(6.9314694e-1f), p, f);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, f);
    return vmulq_f32(p, xf_pow2i_f32x4(vcvtq_s32_f32(n)));
}
/* 2^x for x in [-126, 127] (the callers keep it there: |x| <= c log2 e);
 * f = x - n is exact.  Accuracy: max relative error 1.7e-7 on
 * [-92.5, 92.5] over 2e5 points (`pytest tests/test_neon.py -k exp2`,
 * asserts <= 5e-7). */
static inline float32x4_t xf_exp2_mid_f32x4(float32x4_t x) {
    const float32x4_t n = vrndnq_f32(x);
    return xf_exp2_poly_f32x4(vsubq_f32(x, n), n);
}
/* 2^(x k) for |x k| <= 40 (the one loop's e^{2u}): n = rint(x k rounded),
 * f = x k - n by one FMA, so x k is rounded once, inside it.  Accuracy:
 * max relative error 1.8e-7 against 2^(x k) with k as given, k = 2 log2 e
 * / 30, over 2e5 points (`pytest tests/test_neon.py -k exp2`, asserts
 * <= 5e-7). */
static inline float32x4_t xf_exp2_scaled_f32x4(float32x4_t x, float k) {
    const float32x4_t kv = vdupq_n_f32(k);
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, kv));
    return xf_exp2_poly_f32x4(vfmaq_f32(vnegq_f32(n), x, kv), n);
}

/* log(s) for s > 0, 4 float32 lanes: the method of xf_log_ps256
 * (vec_avx2.h): s = 2^k f with f in [sqrt(1/2), sqrt(2)) from the bits,
 * log f = 2 atanh u, u = (f - 1)/(f + 1), by its odd series to u^9, k ln 2
 * in two parts.  Positive normal s only; NaN and +inf pass through, log 0
 * is -inf.  Accuracy: max error 1.85 ulp on [1, 2^20] (2e5 log-uniform points; `pytest
 * tests/test_neon.py -k log`, asserts <= 2 ulp on 2e5 points). */
static inline float32x4_t xf_log_f32x4(float32x4_t s) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    const uint32x4_t bits = vreinterpretq_u32_f32(s);
    float32x4_t k =
        vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(vshrq_n_u32(bits, 23)), vdupq_n_s32(127)));
    float32x4_t f = vreinterpretq_f32_u32(
        vorrq_u32(vandq_u32(bits, vdupq_n_u32(0x007fffff)), vdupq_n_u32(0x3f800000)));
    const uint32x4_t big = vcgtq_f32(f, vdupq_n_f32(1.41421356f));
    f = vbslq_f32(big, vmulq_f32(f, vdupq_n_f32(0.5f)), f);
    k = vaddq_f32(k, vreinterpretq_f32_u32(vandq_u32(big, vreinterpretq_u32_f32(one))));
    const float32x4_t u = vdivq_f32(vsubq_f32(f, one), vaddq_f32(f, one));
    const float32x4_t u2 = vmulq_f32(u, u);
    float32x4_t p = vfmaq_f32(vdupq_n_f32(1.0f / 7.0f), vdupq_n_f32(1.0f / 9.0f), u2);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 5.0f), p, u2);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 3.0f), p, u2);
    const float32x4_t u_2 = vaddq_f32(u, u);
    const float32x4_t log_f = vfmaq_f32(u_2, u_2, vmulq_f32(u2, p));
    const float32x4_t hi = vfmaq_f32(log_f, k, vdupq_n_f32(0.693145751953125f));
    const float32x4_t r = vfmaq_f32(hi, k, vdupq_n_f32(1.428606765330187e-6f));
    /* NaN and +inf (s > FLT_MAX or unordered) are their own log; log 0 = -inf */
    const uint32x4_t finite = vcleq_f32(s, vdupq_n_f32(FLT_MAX)); /* false for NaN */
    const float32x4_t special = vbslq_f32(finite, r, s);
    return vbslq_f32(vceqzq_f32(s), vdupq_n_f32(-INFINITY), special);
}

/* ---- 8 lanes: a pair of q registers ----
 *
 * The layer's vector is two float32x4_t: every primitive is two independent
 * instructions.  Why not one register: (1) the segment sums (row_stats.h,
 * general_row.h) accumulate in float lanes, 2048 / XF_W terms per lane; with
 * 8 lanes that is 256, as on AVX2, where 4 lanes would put twice as many
 * terms in each float accumulator, and so about twice the rounding error
 * in a long row's sum; (2) two independent chains per
 * operation keep two to four FMA pipes busy through the exp's Horner chain
 * and the single accumulator of the general row's sums. */
typedef float32x4x2_t xf_v8;
typedef int32x4x2_t xf_vi8;

#define XF_PAIR1(name, op)                                                                         \
    static inline xf_v8 name(xf_v8 a) {                                                            \
        xf_v8 r;                                                                                   \
        r.val[0] = op(a.val[0]);                                                                   \
        r.val[1] = op(a.val[1]);                                                                   \
        return r;                                                                                  \
    }
#define XF_PAIR2(name, op)                                                                         \
    static inline xf_v8 name(xf_v8 a, xf_v8 b) {                                                   \
        xf_v8 r;                                                                                   \
        r.val[0] = op(a.val[0], b.val[0]);                                                         \
        r.val[1] = op(a.val[1], b.val[1]);                                                         \
        return r;                                                                                  \
    }
XF_PAIR2(xf_add8, vaddq_f32)
XF_PAIR2(xf_sub8, vsubq_f32)
XF_PAIR2(xf_mul8, vmulq_f32)
XF_PAIR2(xf_div8, vdivq_f32)
XF_PAIR2(xf_max8, vmaxq_f32)
XF_PAIR2(xf_min8, vminq_f32)
XF_PAIR1(xf_exp8, xf_exp_f32x4)
XF_PAIR1(xf_exp_mid8, xf_exp_mid_f32x4)
XF_PAIR1(xf_log8, xf_log_f32x4)
XF_PAIR1(xf_exp2_mid8, xf_exp2_mid_f32x4)
static inline xf_v8 xf_exp2_scaled8(xf_v8 x, float k) {
    xf_v8 r;
    r.val[0] = xf_exp2_scaled_f32x4(x.val[0], k);
    r.val[1] = xf_exp2_scaled_f32x4(x.val[1], k);
    return r;
}

static inline xf_v8 xf_set1_8(float a) {
    xf_v8 r;
    r.val[0] = r.val[1] = vdupq_n_f32(a);
    return r;
}
static inline xf_v8 xf_loadu8(const float *p) {
    xf_v8 r;
    r.val[0] = vld1q_f32(p);
    r.val[1] = vld1q_f32(p + 4);
    return r;
}
static inline void xf_storeu8(float *p, xf_v8 v) {
    vst1q_f32(p, v.val[0]);
    vst1q_f32(p + 4, v.val[1]);
}
/* Streaming stores: STNP (store pair, non-temporal) of the vector's two
 * q registers, 32 bytes at p.  The hint lets a core write a line it will
 * not read again without allocating it (where the core honours it; some
 * detect such write streams by themselves).  GCC has no intrinsic for it:
 * inline assembly, its memory operand the 32 bytes written.  A hint only:
 * the values stored are those of xf_storeu8 (tests/test_neon.py runs the
 * streaming cases under qemu-aarch64, bit for bit against twins with
 * ordinary stores and against the oracle); its speed is unmeasured here. */
static inline void xf_stream8(float *p, xf_v8 v) {
    __asm__("stnp %q1, %q2, %0" : "=Q"(*(float(*)[8])p) : "w"(v.val[0]), "w"(v.val[1]));
}
/* a b + c, c - a b, a b - c */
static inline xf_v8 xf_fma8(xf_v8 a, xf_v8 b, xf_v8 c) {
    xf_v8 r;
    r.val[0] = vfmaq_f32(c.val[0], a.val[0], b.val[0]);
    r.val[1] = vfmaq_f32(c.val[1], a.val[1], b.val[1]);
    return r;
}
static inline xf_v8 xf_fnma8(xf_v8 a, xf_v8 b, xf_v8 c) {
    xf_v8 r;
    r.val[0] = vfmsq_f32(c.val[0], a.val[0], b.val[0]);
    r.val[1] = vfmsq_f32(c.val[1], a.val[1], b.val[1]);
    return r;
}
static inline xf_v8 xf_fms8(xf_v8 a, xf_v8 b, xf_v8 c) {
    xf_v8 r;
    r.val[0] = vfmaq_f32(vnegq_f32(c.val[0]), a.val[0], b.val[0]);
    r.val[1] = vfmaq_f32(vnegq_f32(c.val[1]), a.val[1], b.val[1]);
    return r;
}

/* Lanes [0, n) set, for lane 4h + i of half h */
static inline uint32x4_t xf_mask_half(int64_t n, int h) {
    static const uint32_t iota[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    return vcltq_u32(vld1q_u32(iota + 4 * h), vdupq_n_u32((uint32_t)n));
}
static inline xf_v8 xf_zero_tail8(xf_v8 v, int64_t n) {
    xf_v8 r;
    for (int h = 0; h < 2; h++)
        r.val[h] =
            vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v.val[h]), xf_mask_half(n, h)));
    return r;
}

/* Lanes [0, n) from p, the rest `fill`: a copy through a small buffer (a
 * row's last partial vector only; no read past the row's end) */
static inline xf_v8 xf_load_tail8(const float *p, int64_t n, float fill) {
    float buf[8] = {fill, fill, fill, fill, fill, fill, fill, fill};
    memcpy(buf, p, (size_t)n * sizeof(float));
    return xf_loadu8(buf);
}
static inline void xf_store_tail8(float *p, xf_v8 v, int64_t n) {
    float buf[8];
    xf_storeu8(buf, v);
    memcpy(p, buf, (size_t)n * sizeof(float));
}

/* Sum of the lanes in double: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) */
static inline double xf_hsum8(xf_v8 v) {
    const float64x2_t a =
        vaddq_f64(vcvt_f64_f32(vget_low_f32(v.val[0])), vcvt_f64_f32(vget_low_f32(v.val[1])));
    const float64x2_t b = vaddq_f64(vcvt_high_f64_f32(v.val[0]), vcvt_high_f64_f32(v.val[1]));
    return vaddvq_f64(vaddq_f64(a, b));
}
static inline float xf_hmax8(xf_v8 v) { return vmaxvq_f32(vmaxq_f32(v.val[0], v.val[1])); }

/* 8 float lanes stored as 8 doubles */
static inline void xf_store_f64_8(double *p, xf_v8 v) {
    for (int h = 0; h < 2; h++) {
        vst1q_f64(p + 4 * h, vcvt_f64_f32(vget_low_f32(v.val[h])));
        vst1q_f64(p + 4 * h + 2, vcvt_high_f64_f32(v.val[h]));
    }
}

/* x >= 0 ? a : b (false for NaN x) */
static inline xf_v8 xf_select_ge0_8(xf_v8 x, xf_v8 a, xf_v8 b) {
    xf_v8 r;
    for (int h = 0; h < 2; h++) r.val[h] = vbslq_f32(vcgezq_f32(x.val[h]), a.val[h], b.val[h]);
    return r;
}
/* a == b ? v : 0 */
static inline xf_v8 xf_select_eq8(xf_v8 a, xf_v8 b, xf_v8 v) {
    xf_v8 r;
    for (int h = 0; h < 2; h++)
        r.val[h] = vreinterpretq_f32_u32(
            vandq_u32(vceqq_f32(a.val[h], b.val[h]), vreinterpretq_u32_f32(v.val[h])));
    return r;
}
/* lanes of v where c == 0 (ordered) set to 0; NaN c keeps v */
static inline xf_v8 xf_zero_where_zero8(xf_v8 v, xf_v8 c) {
    xf_v8 r;
    for (int h = 0; h < 2; h++)
        r.val[h] =
            vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v.val[h]), vceqzq_f32(c.val[h])));
    return r;
}
static inline int xf_any_zero8(xf_v8 v) {
    return vmaxvq_u32(vorrq_u32(vceqzq_f32(v.val[0]), vceqzq_f32(v.val[1]))) != 0;
}

/* integer lanes (narrow rows) */
static inline xf_vi8 xf_vi_load8(const void *p) {
    xf_vi8 r;
    r.val[0] = vld1q_s32((const int32_t *)p);
    r.val[1] = vld1q_s32((const int32_t *)p + 4);
    return r;
}
static inline xf_vi8 xf_vi_add8(xf_vi8 a, xf_vi8 b) {
    xf_vi8 r;
    r.val[0] = vaddq_s32(a.val[0], b.val[0]);
    r.val[1] = vaddq_s32(a.val[1], b.val[1]);
    return r;
}
static inline xf_v8 xf_vi_to_v8(xf_vi8 a) {
    xf_v8 r;
    r.val[0] = vcvtq_f32_s32(a.val[0]);
    r.val[1] = vcvtq_f32_s32(a.val[1]);
    return r;
}

/* The targets of 8 rows as int32 lanes (0 where a row's target is
 * ignore_index, or for no targets), and keep = 1.0 for a counted row, 0.0
 * for an ignored one. */
static inline xf_vi8 xf_targets8(const int64_t *t, int64_t ignore, xf_v8 *keep) {
    xf_vi8 y;
    if (!t) {
        *keep = xf_set1_8(1.0f);
        y.val[0] = y.val[1] = vdupq_n_s32(0);
        return y;
    }
    const int64x2_t ig = vdupq_n_s64(ignore);
    const uint32x4_t one = vreinterpretq_u32_f32(vdupq_n_f32(1.0f));
    for (int h = 0; h < 2; h++) {
        const int64x2_t t0 = vld1q_s64(t + 4 * h), t1 = vld1q_s64(t + 4 * h + 2);
        const uint64x2_t i0 = vceqq_s64(t0, ig), i1 = vceqq_s64(t1, ig);
        /* the low 32 bits of the int64 lanes, in order (targets are < C) */
        y.val[h] = vcombine_s32(vmovn_s64(vbicq_s64(t0, vreinterpretq_s64_u64(i0))),
                                vmovn_s64(vbicq_s64(t1, vreinterpretq_s64_u64(i1))));
        const uint32x4_t ignored = vcombine_u32(vmovn_u64(i0), vmovn_u64(i1));
        keep->val[h] = vreinterpretq_f32_u32(vbicq_u32(one, ignored));
    }
    return y;
}

/* v's lanes idx (int32 in [0, 8)) by one TBL over both registers: lane l
 * takes bytes 4 idx_l .. 4 idx_l + 3 of the 32-byte pair */
static inline xf_v8 xf_permute8(xf_v8 v, xf_vi8 idx) {
    uint8x16x2_t tab;
    tab.val[0] = vreinterpretq_u8_f32(v.val[0]);
    tab.val[1] = vreinterpretq_u8_f32(v.val[1]);
    xf_v8 r;
    for (int h = 0; h < 2; h++) {
        const uint8x16_t bytes = vreinterpretq_u8_u32(
            vmlaq_n_u32(vdupq_n_u32(0x03020100u), vreinterpretq_u32_s32(idx.val[h]), 0x04040404u));
        r.val[h] = vreinterpretq_f32_u8(vqtbl2q_u8(tab, bytes));
    }
    return r;
}

/* base[idx_l] in lane l: NEON has no gather, so 8 lane loads */
static inline xf_v8 xf_gather8(const float *base, xf_vi8 idx) {
    xf_v8 r;
    for (int h = 0; h < 2; h++) {
        float32x4_t v = vld1q_dup_f32(base + vgetq_lane_s32(idx.val[h], 0));
        v = vld1q_lane_f32(base + vgetq_lane_s32(idx.val[h], 1), v, 1);
        v = vld1q_lane_f32(base + vgetq_lane_s32(idx.val[h], 2), v, 2);
        r.val[h] = vld1q_lane_f32(base + vgetq_lane_s32(idx.val[h], 3), v, 3);
    }
    return r;
}

/* Narrow rows with C <= 4: the 8 rows' 8C logits are the block's C flat
 * vectors (2C q registers).  Rows 4h..4h+3 (half h of a column) lie in
 * the 4C floats from q register hC on, at most 64 bytes: column k's half h
 * is one TBL over q registers hC..hC+3, with the same byte indices for both
 * halves (lane i takes float i C + k of that run). */
typedef struct {
    uint8x16_t idx[4];
} xf_columns8;
static inline void xf_columns_setup8(xf_columns8 *t, int64_t C) {
    for (int64_t k = 0; k < C; k++) {
        uint8_t b[16];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) b[4 * i + j] = (uint8_t)(4 * (i * C + k) + j);
        t->idx[k] = vld1q_u8(b);
    }
}
/* q register j of the flat vectors (j < 2C; clamped where TBL never looks) */
static inline uint8x16_t xf_flat_q(const xf_v8 *flat, int64_t C, int64_t j) {
    if (j > 2 * C - 1) j = 2 * C - 1;
    return vreinterpretq_u8_f32(flat[j >> 1].val[j & 1]);
}
static inline xf_v8 xf_column8(const xf_columns8 *t, const xf_v8 *flat, int64_t C, int64_t k) {
    xf_v8 r;
    for (int h = 0; h < 2; h++) {
        uint8x16x4_t tab;
        for (int q = 0; q < 4; q++) tab.val[q] = xf_flat_q(flat, C, h * C + q);
        r.val[h] = vreinterpretq_f32_u8(vqtbl4q_u8(tab, t->idx[k]));
    }
    return r;
}

/* ---- the layer's names (kernel_template.h) ---- */
#define XF_V                    xf_v8
#define XF_W                    8
#define XF_VBYTES               32
#define XF_T_MAX                FLT_MAX
#define V_SET1(a)               xf_set1_8(a)
#define V_LOADU(p)              xf_loadu8(p)
#define V_STOREU(p, v)          xf_storeu8((p), (v))
#define V_STREAM(p, v)          xf_stream8((p), (v))
#define V_LOAD_TAIL(p, n, fill) xf_load_tail8((p), (n), (fill))
#define V_STORE_TAIL(p, v, n)   xf_store_tail8((p), (v), (n))
#define V_ZERO_TAIL(v, n)       xf_zero_tail8((v), (n))
#define V_ADD                   xf_add8
#define V_SUB                   xf_sub8
#define V_MUL                   xf_mul8
#define V_DIV                   xf_div8
#define V_MAX                   xf_max8
#define V_MIN                   xf_min8
#define V_FMA                   xf_fma8  /* a b + c */
#define V_FNMA                  xf_fnma8 /* c - a b */
#define V_FMS                   xf_fms8  /* a b - c */
#define V_FIRST(v)              vgetq_lane_f32((v).val[0], 0)
#define V_ROUND_T(v)            (v)
#define V_HMAX                  xf_hmax8
#define V_HSUM                  xf_hsum8
#define V_SELECT_GE0            xf_select_ge0_8
#define V_SELECT_EQ             xf_select_eq8
#define V_ZERO_WHERE_ZERO       xf_zero_where_zero8
#define V_ANY_ZERO              xf_any_zero8
#define V_EXP                   xf_exp8
#define V_EXP_MID               xf_exp_mid8
#define V_LOG                   xf_log8
#define V_EXP2_MID              xf_exp2_mid8
#define V_EXP2_SCALED           xf_exp2_scaled8
/* STNP orders as an ordinary store (only LDNP loosens the ordering of
 * loads); a store barrier after a streamed call costs nothing against it */
#define XF_SFENCE()             __asm__ volatile("dmb ishst" ::: "memory")
#define XF_TANH_RATIONAL        1
/* integer lanes and the narrow rows' primitives */
#define XF_VI                   xf_vi8
#define VI_LOAD                 xf_vi_load8
#define VI_ADD                  xf_vi_add8
#define VI_TO_V                 xf_vi_to_v8
#define V_GATHER                xf_gather8
#define V_PERMUTE               xf_permute8
#define V_STORE_F64             xf_store_f64_8
#define VI_TARGETS              xf_targets8
#define XF_COLUMNS              xf_columns8
#define XF_COLUMNS_MAX          4
#define V_COLUMNS_SETUP         xf_columns_setup8
#define V_COLUMN                xf_column8

#endif
