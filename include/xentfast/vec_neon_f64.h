/* AArch64 NEON (Advanced SIMD) vector layer for float64: 4 double lanes,
 * each vector a pair of 128-bit registers (float64x2_t), as vec_neon.h
 * pairs them for float32 (two independent chains per operation).
 *
 * Primitives only (kernel_template.h lists them), for XF_T = double.
 * neon.c includes it after the float32 layer and vec_undef.h, and
 * instantiates the kernels a second time.  Include only from a file built
 * for __aarch64__.
 *
 * Capabilities (read by xf_plan through the table):
 *   narrow rows       none (narrow max 0): one row per lane would give 4
 *                     rows per block, and the float64 rows of a few
 *                     classes go by the plain row, whose segment loops
 *                     are already vector code
 *   one-loop softcap  none (cap 0): the two loops, the tanh by expm1
 *                     (float64 needs the tanh to 1e-16, which the rational
 *                     tanh of the float32 layers does not give)
 *   exp, expm1, log1p float64 vector functions below, each within 2 ulp
 *
 * NaN: FMAX/FMIN return NaN when either lane is NaN (vec_neon.h); every
 * clamp here lets NaN through.
 */
#ifndef XENTFAST_VEC_NEON_F64_H
#define XENTFAST_VEC_NEON_F64_H
#include <arm_neon.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define XF_CAP_NARROW_MAX   0
#define XF_CAP_ONE_LOOP_CAP 0.0

/* ln 2 in two parts: the head with 32 significant bits (its low 21 bits
 * zero), so x - n ln2_hi is exact for |n| <= 2^11 and |x| < 1024, and the
 * tail (fdlibm's split, |ln2 - hi - lo| < 1e-26) */
#define XF_LN2_HI_F64 6.93147180369123816490e-01
#define XF_LN2_LO_F64 1.90821492927058770002e-10

/* 2^n for integral n in [-1022, 1023], from the bits */
static inline float64x2_t xf_pow2i_f64x2(int64x2_t n) {
    return vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(n, vdupq_n_s64(1023)), 52));
}

/* x = n ln2 + r + c, n = rint(x log2 e) (FRINTN), |r| <= 0.347: x - n
 * ln2_hi is exact (see above), r is it minus n ln2_lo, rounded once, and
 * c that rounding's error (|c| <= 2^-55, to first order) */
static inline float64x2_t xf_reduce_ln2_f64x2(float64x2_t x, float64x2_t *n, float64x2_t *c) {
    *n = vrndnq_f64(vmulq_f64(x, vdupq_n_f64(1.4426950408889634)));
    const float64x2_t r_hi = vfmsq_f64(x, *n, vdupq_n_f64(XF_LN2_HI_F64));
    const float64x2_t r = vfmsq_f64(r_hi, *n, vdupq_n_f64(XF_LN2_LO_F64));
    *c = vfmsq_f64(vsubq_f64(r_hi, r), *n, vdupq_n_f64(XF_LN2_LO_F64));
    return r;
}

/* (e^r - 1 - r) / r^2 for |r| <= 0.347: the Taylor series to r^13 / 13!
 * (the first omitted term, r^14 / 14!, is below 4.5e-18 of e^r), Horner
 * form with FMA */
static inline float64x2_t xf_exp_tail_f64x2(float64x2_t r) {
    float64x2_t p =
        vfmaq_f64(vdupq_n_f64(2.08767569878681e-09), vdupq_n_f64(1.6059043836821613e-10), r);
    p = vfmaq_f64(vdupq_n_f64(2.505210838544172e-08), p, r);
    p = vfmaq_f64(vdupq_n_f64(2.755731922398589e-07), p, r);
    p = vfmaq_f64(vdupq_n_f64(2.7557319223985893e-06), p, r);
    p = vfmaq_f64(vdupq_n_f64(2.48015873015873e-05), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.984126984126984e-04), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.388888888888889e-03), p, r);
    p = vfmaq_f64(vdupq_n_f64(8.333333333333333e-03), p, r);
    p = vfmaq_f64(vdupq_n_f64(4.1666666666666664e-02), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.6666666666666666e-01), p, r);
    return vfmaq_f64(vdupq_n_f64(0.5), p, r);
}

/* exp(x), 2 float64 lanes.
 *
 * Method: x = n ln2 + r (xf_reduce_ln2_f64x2: Cody–Waite, a 32-bit ln2
 * head, so n ln2_hi is exact for every n reached), e^r = 1 + r + r^2 q(r)
 * with q the Taylor series above, evaluated as 1 + r (1 + r q) by FMAs.
 * 2^n is applied in two exact halves, 2^(n>>1) then 2^(n - (n>>1)), each
 * a normal double for n in [-1076, 1024]: the first product is exact and
 * only the second rounds, so subnormal results (x in [-745.13, -708.40))
 * are correctly scaled, not flushed (the float32 layer's method).
 * Range: x clamped to [-746, 709.8] (NaN passes the clamp and the
 * polynomial): x < -745.14 and -inf give +0, x > 709.79 and +inf give
 * +inf.  Accuracy: max error 0.85 ulp (0.83 on subnormal results) against
 * x86 long double expl over 1.2e6 points on [-746, 710] with the
 * underflow edge [-746, -707] and the overflow edge [700, 710] densely,
 * and special values exactly (`pytest tests/test_neon.py -k exp_f64`, run
 * under qemu-aarch64; asserts <= 2 ulp). */
static inline float64x2_t xf_exp_f64x2(float64x2_t x) {
    x = vmaxq_f64(vdupq_n_f64(-746.0), vminq_f64(vdupq_n_f64(709.8), x));
    float64x2_t n, c;
    const float64x2_t r = xf_reduce_ln2_f64x2(x, &n, &c); /* c: below this method's error */
    const float64x2_t one = vdupq_n_f64(1.0);
    const float64x2_t p = vfmaq_f64(one, vfmaq_f64(one, xf_exp_tail_f64x2(r), r), r);
    /* FCVTZS of a NaN lane is 0: a harmless scale for a NaN p */
    const int64x2_t ni = vcvtq_s64_f64(n);
    const int64x2_t n1 = vshrq_n_s64(ni, 1);
    const int64x2_t n2 = vsubq_s64(ni, n1);
    return vmulq_f64(vmulq_f64(p, xf_pow2i_f64x2(n1)), xf_pow2i_f64x2(n2));
}

/* expm1(x) for x in [-40, 40] (the softcap's tanh clamps 2v there), 2
 * float64 lanes: x = n ln2 + r + c as in exp, with t = 2^n
 *   e^x - 1 = (t - 1 + t r) + t (r^2 q(r) + c)
 * the first part by one FMA (t - 1 exact for |n| <= 53, t r exact), the
 * second, at most 0.07, added by another: no cancellation, and for n = 0
 * it is r + (r^2 q + c), of relative accuracy for any small x.  NaN
 * passes.  Accuracy: max error 1.28 ulp over 1e6 points on [-40, 40],
 * [-1, 1] and tiny |x| (1.13 ulp for |x| < 36.7; above, 2^n - 1 rounds),
 * against x86 long double expm1 (`pytest tests/test_neon.py -k expm1`;
 * asserts <= 2 ulp; 1.76 ulp with e^r - 1 rounded before the scaling). */
static inline float64x2_t xf_expm1_f64x2(float64x2_t x) {
    float64x2_t n, c;
    const float64x2_t r = xf_reduce_ln2_f64x2(x, &n, &c);
    const float64x2_t lo = vfmaq_f64(c, vmulq_f64(r, r), xf_exp_tail_f64x2(r));
    const float64x2_t t = xf_pow2i_f64x2(vcvtq_s64_f64(n));
    const float64x2_t hi = vfmaq_f64(vsubq_f64(t, vdupq_n_f64(1.0)), t, r);
    return vfmaq_f64(hi, t, lo);
}

/* log1p(t) for t in [0, 1] (t = e^{-|x|} in softplus), 2 float64 lanes:
 * the method of elementwise.h's log1p01 (log1p t = 2 atanh s, s = t/(2 +
 * t) in [0, 1/3], corrected by the exact residuals of 2 + t and of the
 * division), with the odd series taken to s^33 for float64: q = s^2/3 +
 * ... + s^32/33, the first omitted term s^34/35 <= 1.7e-18.  Accuracy: max
 * error 0.67 ulp over 1e6 points on [0, 1] (log-uniform down to 1e-20
 * too), against x86 long double log1p; 1 ulp for the least subnormal t,
 * which gives 0 (`pytest tests/test_neon.py -k log1p_f64`; asserts <= 2
 * ulp). */
static inline float64x2_t xf_log1p01_f64x2(float64x2_t t) {
    const float64x2_t two = vdupq_n_f64(2.0);
    const float64x2_t u = vaddq_f64(two, t);
    const float64x2_t e = vsubq_f64(t, vsubq_f64(u, two)); /* (2 + t) - u, exactly */
    const float64x2_t s = vdivq_f64(t, u);
    const float64x2_t r = vfmsq_f64(t, s, u); /* t - s u, exactly */
    const float64x2_t c = vdivq_f64(vfmsq_f64(r, s, e), u);
    const float64x2_t s2 = vmulq_f64(s, s);
    float64x2_t p = vdupq_n_f64(1.0 / 33);
    for (int k = 15; k >= 1; k--) p = vfmaq_f64(vdupq_n_f64(1.0 / (2 * k + 1)), p, s2);
    const float64x2_t q = vmulq_f64(p, s2);
    const float64x2_t s_2 = vaddq_f64(s, s);
    return vaddq_f64(vfmaq_f64(vaddq_f64(c, c), s_2, q), s_2);
}

/* ---- 4 lanes: a pair of q registers ---- */
typedef float64x2x2_t xf_v4d;

#define XF_PAIRD1(name, op)                                                                        \
    static inline xf_v4d name(xf_v4d a) {                                                          \
        xf_v4d r;                                                                                  \
        r.val[0] = op(a.val[0]);                                                                   \
        r.val[1] = op(a.val[1]);                                                                   \
        return r;                                                                                  \
    }
#define XF_PAIRD2(name, op)                                                                        \
    static inline xf_v4d name(xf_v4d a, xf_v4d b) {                                                \
        xf_v4d r;                                                                                  \
        r.val[0] = op(a.val[0], b.val[0]);                                                         \
        r.val[1] = op(a.val[1], b.val[1]);                                                         \
        return r;                                                                                  \
    }
XF_PAIRD2(xf_add4d, vaddq_f64)
XF_PAIRD2(xf_sub4d, vsubq_f64)
XF_PAIRD2(xf_mul4d, vmulq_f64)
XF_PAIRD2(xf_div4d, vdivq_f64)
XF_PAIRD2(xf_max4d, vmaxq_f64)
XF_PAIRD2(xf_min4d, vminq_f64)
XF_PAIRD1(xf_exp4d, xf_exp_f64x2)
XF_PAIRD1(xf_expm1_4d, xf_expm1_f64x2)
XF_PAIRD1(xf_log1p01_4d, xf_log1p01_f64x2)

static inline xf_v4d xf_set1_4d(double a) {
    xf_v4d r;
    r.val[0] = r.val[1] = vdupq_n_f64(a);
    return r;
}
static inline xf_v4d xf_loadu4d(const double *p) {
    xf_v4d r;
    r.val[0] = vld1q_f64(p);
    r.val[1] = vld1q_f64(p + 2);
    return r;
}
static inline void xf_storeu4d(double *p, xf_v4d v) {
    vst1q_f64(p, v.val[0]);
    vst1q_f64(p + 2, v.val[1]);
}
/* a non-temporal pair store (STNP) of the 32 bytes at p: vec_neon.h */
static inline void xf_stream4d(double *p, xf_v4d v) {
    __asm__("stnp %q1, %q2, %0" : "=Q"(*(double(*)[4])p) : "w"(v.val[0]), "w"(v.val[1]));
}
/* a b + c, c - a b */
static inline xf_v4d xf_fma4d(xf_v4d a, xf_v4d b, xf_v4d c) {
    xf_v4d r;
    r.val[0] = vfmaq_f64(c.val[0], a.val[0], b.val[0]);
    r.val[1] = vfmaq_f64(c.val[1], a.val[1], b.val[1]);
    return r;
}
static inline xf_v4d xf_fnma4d(xf_v4d a, xf_v4d b, xf_v4d c) {
    xf_v4d r;
    r.val[0] = vfmsq_f64(c.val[0], a.val[0], b.val[0]);
    r.val[1] = vfmsq_f64(c.val[1], a.val[1], b.val[1]);
    return r;
}

/* Lanes [0, n) set, for lane 2h + i of half h */
static inline uint64x2_t xf_mask_half_d(int64_t n, int h) {
    static const uint64_t iota[4] = {0, 1, 2, 3};
    return vcltq_u64(vld1q_u64(iota + 2 * h), vdupq_n_u64((uint64_t)n));
}
static inline xf_v4d xf_zero_tail4d(xf_v4d v, int64_t n) {
    xf_v4d r;
    for (int h = 0; h < 2; h++)
        r.val[h] =
            vreinterpretq_f64_u64(vandq_u64(vreinterpretq_u64_f64(v.val[h]), xf_mask_half_d(n, h)));
    return r;
}
/* Lanes [0, n) from p, the rest `fill`, through a small buffer (no read
 * past the row's end) */
static inline xf_v4d xf_load_tail4d(const double *p, int64_t n, double fill) {
    double buf[4] = {fill, fill, fill, fill};
    memcpy(buf, p, (size_t)n * sizeof(double));
    return xf_loadu4d(buf);
}
static inline void xf_store_tail4d(double *p, xf_v4d v, int64_t n) {
    double buf[4];
    xf_storeu4d(buf, v);
    memcpy(p, buf, (size_t)n * sizeof(double));
}

/* Sum of the lanes: (l0 + l2) + (l1 + l3) */
static inline double xf_hsum4d(xf_v4d v) { return vaddvq_f64(vaddq_f64(v.val[0], v.val[1])); }
static inline double xf_hmax4d(xf_v4d v) { return vmaxvq_f64(vmaxq_f64(v.val[0], v.val[1])); }

/* x >= 0 ? a : b (false for NaN x) */
static inline xf_v4d xf_select_ge0_4d(xf_v4d x, xf_v4d a, xf_v4d b) {
    xf_v4d r;
    for (int h = 0; h < 2; h++) r.val[h] = vbslq_f64(vcgezq_f64(x.val[h]), a.val[h], b.val[h]);
    return r;
}
/* lanes of v where c == 0 (ordered) set to 0; NaN c keeps v */
static inline xf_v4d xf_zero_where_zero4d(xf_v4d v, xf_v4d c) {
    xf_v4d r;
    for (int h = 0; h < 2; h++)
        r.val[h] =
            vreinterpretq_f64_u64(vbicq_u64(vreinterpretq_u64_f64(v.val[h]), vceqzq_f64(c.val[h])));
    return r;
}

/* ---- the layer's names (kernel_template.h) ---- */
#define XF_V                    xf_v4d
#define XF_W                    4
#define XF_VBYTES               32
#define XF_T_MAX                DBL_MAX
#define V_SET1(a)               xf_set1_4d(a)
#define V_LOADU(p)              xf_loadu4d(p)
#define V_STOREU(p, v)          xf_storeu4d((p), (v))
#define V_STREAM(p, v)          xf_stream4d((p), (v))
#define V_LOAD_TAIL(p, n, fill) xf_load_tail4d((p), (n), (fill))
#define V_STORE_TAIL(p, v, n)   xf_store_tail4d((p), (v), (n))
#define V_ZERO_TAIL(v, n)       xf_zero_tail4d((v), (n))
#define V_ADD                   xf_add4d
#define V_SUB                   xf_sub4d
#define V_MUL                   xf_mul4d
#define V_DIV                   xf_div4d
#define V_MAX                   xf_max4d
#define V_MIN                   xf_min4d
#define V_FMA                   xf_fma4d  /* a b + c */
#define V_FNMA                  xf_fnma4d /* c - a b */
#define V_FIRST(v)              vgetq_lane_f64((v).val[0], 0)
#define V_ROUND_T(v)            (v)
#define V_HMAX                  xf_hmax4d
#define V_HSUM                  xf_hsum4d
#define V_SELECT_GE0            xf_select_ge0_4d
#define V_ZERO_WHERE_ZERO       xf_zero_where_zero4d
#define V_EXP                   xf_exp4d
/* float64 takes no cheaper exp (general_row.h asks for it in float32 only) */
#define V_EXP_MID               xf_exp4d
/* the softcap's tanh by expm1 (softcap.h, without XF_TANH_RATIONAL) */
#define V_EXPM1_MID             xf_expm1_4d
/* BCE's log1p on [0, 1] (elementwise.h) */
#define XF_LOG1P01              xf_log1p01_4d
/* STNP orders as an ordinary store (only LDNP loosens the ordering of
 * loads), but a barrier for stores after a streamed row costs nothing
 * against the row and needs no argument */
#define XF_SFENCE()             __asm__ volatile("dmb ishst" ::: "memory")

#endif
