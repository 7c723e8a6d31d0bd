/* AArch64 NEON (Advanced SIMD) vector layer: 4 float32 lanes.
 *
 * Primitives only (kernel_template.h lists them).  NEON is part of the
 * AArch64 baseline: neon.c needs no extra compiler flag and dispatch.c no
 * detection.  Include only from a file built for __aarch64__.
 *
 * Capabilities (read by xf_plan through the table):
 *   narrow rows       C <= 32, one row per lane; the columns of 4 rows by
 *                     one table lookup (TBL over the block's C <= 4 flat
 *                     vectors) for C <= 4, else by 4 lane loads per column
 *                     (NEON has no gather instruction)
 *   one-loop softcap  none (cap 0): the two loops only, with the rational tanh
 *   cheap exp         a degree-5 polynomial (xf_exp_mid_f32x4)
 *
 * Expected speed (reasoning, not a measurement: correctness is verified
 * under emulation, where timings mean nothing).  The plain pass is one read
 * of the logits and one write of the gradient; per 4 elements the exp costs
 * about 15 vector operations (clamp, round, 2 reduction FMAs, 6 polynomial
 * FMAs, 2 integer scalings, 2 multiplies).  Cores with two to four 128-bit
 * FMA pipes (Neoverse N1: 2, V1/V2 and Apple M-series: 4) retire ~8-16 float
 * lanes of FMA per cycle, so the exp loop should run near 1-2 cycles per
 * element and a large row stays memory-bound, as on AVX2; for rows in cache
 * expect about half the AVX2 rate per clock (half the lanes, more pipes).
 * Narrow rows with C > 4 pay 4 lane loads per column instead of a gather,
 * which costs about what a hardware gather costs on x86.
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

#define XF_CAP_NARROW_MAX 32
#define XF_CAP_ONE_LOOP_CAP 0.0

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
 * Accuracy: max error 0.88 ulp against float64 exp over 1.2e6 points on
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

/* log(s) for s > 0, 4 float32 lanes: the method of xf_log_ps256
 * (vec_avx2.h): s = 2^k f with f in [sqrt(1/2), sqrt(2)) from the bits,
 * log f = 2 atanh u, u = (f - 1)/(f + 1), by its odd series to u^9, k ln 2
 * in two parts.  Positive normal s only; NaN and +inf pass through, log 0
 * is -inf.  Accuracy: max error 1.1 ulp on [1, 2^20] (`pytest
 * tests/test_neon.py -k log`, asserts <= 2 ulp on 2e5 points). */
static inline float32x4_t xf_log_f32x4(float32x4_t s) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    const uint32x4_t bits = vreinterpretq_u32_f32(s);
    float32x4_t k = vcvtq_f32_s32(
        vsubq_s32(vreinterpretq_s32_u32(vshrq_n_u32(bits, 23)), vdupq_n_s32(127)));
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

/* Lanes [0, n) set */
static inline uint32x4_t xf_mask4(int64_t n) {
    static const uint32_t iota[4] = {0, 1, 2, 3};
    return vcltq_u32(vld1q_u32(iota), vdupq_n_u32((uint32_t)n));
}

/* Lanes [0, n) from p, the rest `fill`: a copy through a small buffer (a
 * row's last partial vector only; no read past the row's end) */
static inline float32x4_t xf_load_tail4(const float *p, int64_t n, float fill) {
    float buf[4] = {fill, fill, fill, fill};
    memcpy(buf, p, (size_t)n * sizeof(float));
    return vld1q_f32(buf);
}

static inline void xf_store_tail4(float *p, float32x4_t v, int64_t n) {
    float buf[4];
    vst1q_f32(buf, v);
    memcpy(p, buf, (size_t)n * sizeof(float));
}

/* Sum of the lanes in double: (l0 + l2) + (l1 + l3) */
static inline double xf_hsum_f32x4(float32x4_t v) {
    return vaddvq_f64(vaddq_f64(vcvt_f64_f32(vget_low_f32(v)), vcvt_high_f64_f32(v)));
}

/* 4 float lanes stored as 4 doubles */
static inline void xf_store_f64_4(double *p, float32x4_t v) {
    vst1q_f64(p, vcvt_f64_f32(vget_low_f32(v)));
    vst1q_f64(p + 2, vcvt_high_f64_f32(v));
}

/* lanes of v where c == 0 (ordered) set to 0; NaN c keeps v */
static inline float32x4_t xf_zero_where_zero4(float32x4_t v, float32x4_t c) {
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), vceqzq_f32(c)));
}

/* The targets of 4 rows as int32 lanes (0 where a row's target is
 * ignore_index, or for no targets), and keep = 1.0 for a counted row, 0.0
 * for an ignored one. */
static inline int32x4_t xf_targets4(const int64_t *t, int64_t ignore, float32x4_t *keep) {
    if (!t) {
        *keep = vdupq_n_f32(1.0f);
        return vdupq_n_s32(0);
    }
    const int64x2_t ig = vdupq_n_s64(ignore);
    const int64x2_t t0 = vld1q_s64(t), t1 = vld1q_s64(t + 2);
    const uint64x2_t i0 = vceqq_s64(t0, ig), i1 = vceqq_s64(t1, ig);
    /* the low 32 bits of the 4 int64 lanes, in order (targets are < C) */
    const int32x4_t y = vcombine_s32(vmovn_s64(vbicq_s64(t0, vreinterpretq_s64_u64(i0))),
                                     vmovn_s64(vbicq_s64(t1, vreinterpretq_s64_u64(i1))));
    const uint32x4_t ignored = vcombine_u32(vmovn_u64(i0), vmovn_u64(i1));
    *keep = vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(vdupq_n_f32(1.0f)), ignored));
    return y;
}

/* Byte indices of TBL selecting float lanes idx (int32 lanes in [0, 4)):
 * lane l takes bytes 4 idx_l .. 4 idx_l + 3 */
static inline uint8x16_t xf_lane_bytes4(int32x4_t idx) {
    return vreinterpretq_u8_u32(
        vmlaq_n_u32(vdupq_n_u32(0x03020100u), vreinterpretq_u32_s32(idx), 0x04040404u));
}

static inline float32x4_t xf_permute4(float32x4_t v, int32x4_t idx) {
    return vreinterpretq_f32_u8(vqtbl1q_u8(vreinterpretq_u8_f32(v), xf_lane_bytes4(idx)));
}

/* base[idx_l] in lane l: NEON has no gather, so 4 lane loads */
static inline float32x4_t xf_gather4(const float *base, int32x4_t idx) {
    float32x4_t v = vld1q_dup_f32(base + vgetq_lane_s32(idx, 0));
    v = vld1q_lane_f32(base + vgetq_lane_s32(idx, 1), v, 1);
    v = vld1q_lane_f32(base + vgetq_lane_s32(idx, 2), v, 2);
    return vld1q_lane_f32(base + vgetq_lane_s32(idx, 3), v, 3);
}

/* Narrow rows with C <= 4: the 4 rows' 4C logits are the block's C flat
 * vectors (at most 64 bytes), and column k (lane l = flat element l C + k)
 * is one TBL over all of them. */
typedef struct {
    uint8x16_t idx[4];
} xf_columns4;
static inline void xf_columns_setup4(xf_columns4 *t, int64_t C) {
    for (int64_t k = 0; k < C; k++) {
        uint8_t b[16];
        for (int l = 0; l < 4; l++)
            for (int i = 0; i < 4; i++) b[4 * l + i] = (uint8_t)(4 * (l * C + k) + i);
        t->idx[k] = vld1q_u8(b);
    }
}
static inline float32x4_t xf_column4(const xf_columns4 *t, const float32x4_t *flat, int64_t C,
                                     int64_t k) {
    uint8x16x4_t tab;
    tab.val[0] = vreinterpretq_u8_f32(flat[0]);
    tab.val[1] = vreinterpretq_u8_f32(flat[C > 1 ? 1 : 0]);
    tab.val[2] = vreinterpretq_u8_f32(flat[C > 2 ? 2 : 0]);
    tab.val[3] = vreinterpretq_u8_f32(flat[C > 3 ? 3 : 0]);
    return vreinterpretq_f32_u8(vqtbl4q_u8(tab, t->idx[k]));
}

/* ---- the layer's names (kernel_template.h) ---- */
#define XF_V float32x4_t
#define XF_W 4
#define XF_VBYTES 16
#define XF_T_MAX FLT_MAX
#define V_SET1(a) vdupq_n_f32(a)
#define V_LOADU(p) vld1q_f32(p)
#define V_STOREU(p, v) vst1q_f32((p), (v))
/* no non-temporal store: STNP is only a hint on most cores, unmeasured here */
#define V_STREAM(p, v) vst1q_f32((p), (v))
#define V_LOAD_TAIL(p, n, fill) xf_load_tail4((p), (n), (fill))
#define V_STORE_TAIL(p, v, n) xf_store_tail4((p), (v), (n))
#define V_ZERO_TAIL(v, n) \
    vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), xf_mask4(n)))
#define V_ADD vaddq_f32
#define V_SUB vsubq_f32
#define V_MUL vmulq_f32
#define V_DIV vdivq_f32
#define V_MAX vmaxq_f32
#define V_MIN vminq_f32
#define V_FMA(a, b, c) vfmaq_f32((c), (a), (b))            /* a b + c */
#define V_FNMA(a, b, c) vfmsq_f32((c), (a), (b))           /* c - a b */
#define V_FMS(a, b, c) vfmaq_f32(vnegq_f32(c), (a), (b))   /* a b - c */
#define V_FIRST(v) vgetq_lane_f32((v), 0)
#define V_ROUND_T(v) (v)
#define V_HMAX vmaxvq_f32
#define V_HSUM xf_hsum_f32x4
#define V_SELECT_GE0(x, a, b) vbslq_f32(vcgezq_f32(x), (a), (b))
#define V_SELECT_EQ(a, b, v) \
    vreinterpretq_f32_u32(vandq_u32(vceqq_f32((a), (b)), vreinterpretq_u32_f32(v)))
#define V_ZERO_WHERE_ZERO xf_zero_where_zero4
#define V_ANY_ZERO(v) (vmaxvq_u32(vceqzq_f32(v)) != 0)
#define V_EXP xf_exp_f32x4
#define V_EXP_MID xf_exp_mid_f32x4
#define V_LOG xf_log_f32x4
/* ordinary stores only: nothing to fence */
#define XF_SFENCE() ((void)0)
#define XF_TANH_RATIONAL 1
/* integer lanes and the narrow rows' primitives */
#define XF_VI int32x4_t
#define VI_LOAD(p) vld1q_s32((const int32_t *)(p))
#define VI_ADD vaddq_s32
#define VI_TO_V vcvtq_f32_s32
#define V_GATHER(base, idx) xf_gather4((base), (idx))
#define V_PERMUTE(v, idx) xf_permute4((v), (idx))
#define V_STORE_F64 xf_store_f64_4
#define VI_TARGETS xf_targets4
#define XF_COLUMNS xf_columns4
#define XF_COLUMNS_MAX 4
#define V_COLUMNS_SETUP xf_columns_setup4
#define V_COLUMN xf_column4

#endif
