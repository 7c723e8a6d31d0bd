/* Accuracy and speed of the softcap's arithmetic in one ISA's kernels: the
 * cheaper exp (V_EXP_MID) and tanh as the kernel computes it (vtransform,
 * the rational form, with c = 1, and c = 30 with and without the scale
 * folded into its coefficients).  Max relative error against libm in
 * double over 4e6 points (exp: [-87.3, 88]; tanh: [-10, 10]; 30 tanh(x/30):
 * [-300, 300]) plus 1e5 tiny arguments, and
 * cycles per vector at a nominal 2.6 GHz, data in L1.  On AVX-512 also the
 * one loop's (softcap.h, caps up to 64): 2^x on [-92.5, 92.5], 2^(x k)
 * for |x k| <= 40 (k = 2 log2(e)/30), and its
 * z = c tanh(x/c) by c - 2c/(1 + e^{2x/c}) for c = 30 and 64, as the
 * absolute error of z over c (what the unshifted exps of z see).  Built by
 *
 *   TOOL=exp_mid_check tools/kernel_bench.sh [avx512|avx2]
 */
#include <math.h>
#include <stdio.h>
#include "kernel_tool.h"

#define FN_TANH XF_FN(tanh_check)
/* c = 1, T = 1; and z = c tanh(x/c) for c = 30 with 1/c folded into the
 * coefficients (cap30) and without (cap30u): set in main */
static XF_FN(general_opts) tanh_opts, cap30, cap30u;
static inline XF_V FN_TANH(XF_V v) { return XF_FN(vtransform)(v, &tanh_opts); }
static inline XF_V cap30_fn(XF_V v) { return XF_FN(vtransform)(v, &cap30); }
static inline XF_V cap30u_fn(XF_V v) { return XF_FN(vtransform)(v, &cap30u); }
static inline double cap30_ref(double x) { return 30.0 * tanh(x / 30.0); }

static float in[4096], out[4096];

/* a macro, so that f is inlined into the timed loop */
#define CYCLES_PER_VECTOR(f, result)                                            \
    do {                                                                        \
        double best = 1e30;                                                     \
        for (int rep = 0; rep < 300; rep++) {                                   \
            const double t0 = now();                                            \
            for (int i = 0; i < 4096; i += XF_W)                                \
                V_STOREU(out + i, f(V_LOADU(in + i)));                          \
            const double dt = now() - t0;                                       \
            if (dt < best) best = dt;                                           \
        }                                                                       \
        (result) = best * 2.6e9 / (4096 / XF_W);                                \
    } while (0)

#define REL_ERR(f, ref, x)                                                      \
    ({                                                                          \
        float o_[XF_W];                                                         \
        V_STOREU(o_, f(V_SET1(x)));                                             \
        const double r_ = ref((double)(x));                                     \
        r_ == 0 ? fabs((double)o_[0]) : fabs((double)o_[0] - r_) / fabs(r_);    \
    })

/* the options of a softcap c at temperature 1, by the plan's loops */
static void opts_for(XF_FN(general_opts) *o, double c, xf_plan_kind plan) {
    xf_rows_args a;
    memset(&a, 0, sizeof a);
    a.softcap = c;
    a.inv_temperature = 1.0;
    XF_FN(general_opts_set)(o, &a, plan);
}

int main(void) {
    opts_for(&tanh_opts, 1.0, XF_PLAN_SOFTCAP);
    opts_for(&cap30, 30.0, XF_PLAN_SOFTCAP);
    opts_for(&cap30u, 30.0, XF_PLAN_SOFTCAP);
    XF_FN(tanh_set)(&cap30u, 30.0, 1.0, 0);
    for (int i = 0; i < 4096; i++) in[i] = -20.0f + 40.0f * (float)i / 4096.0f;
    double e_exp = 0, e_tanh = 0, e_c30 = 0, e_c30u = 0;
    for (long i = 0; i <= 4000000; i++) {
        const float x = -87.3f + 175.3f * (float)i / 4e6f, y = -20.0f + 40.0f * (float)i / 4e6f;
        e_exp = fmax(e_exp, REL_ERR(V_EXP_MID, exp, x));
        e_tanh = fmax(e_tanh, REL_ERR(FN_TANH, tanh, 0.5f * y));
        e_c30 = fmax(e_c30, REL_ERR(cap30_fn, cap30_ref, 15.0f * y));
        e_c30u = fmax(e_c30u, REL_ERR(cap30u_fn, cap30_ref, 15.0f * y));
    }
    for (int i = 1; i < 100000; i++) {
        const float x = (float)(i % 2 ? i : -i) * 1e-7f;
        e_tanh = fmax(e_tanh, REL_ERR(FN_TANH, tanh, x));
        e_c30 = fmax(e_c30, REL_ERR(cap30_fn, cap30_ref, x));
        e_c30u = fmax(e_c30u, REL_ERR(cap30u_fn, cap30_ref, x));
    }
    double c_exp, c_tanh;
    CYCLES_PER_VECTOR(V_EXP_MID, c_exp);
    CYCLES_PER_VECTOR(FN_TANH, c_tanh);
    printf("exp_mid:   max rel error %.3g, %.2f cycles/vector of %d\n", e_exp, c_exp, XF_W);
    printf("tanh:      max rel error %.3g, %.2f cycles/vector\n", e_tanh, c_tanh);
    printf("30 tanh(x/30): max rel error %.3g folded, %.3g not (x in [-300, 300])\n", e_c30,
           e_c30u);
#ifdef V_EXP2_SCALED
    /* z2 = z log2(e) from vtransform_one, in nats: |z - c tanh(x/c)| / c */
    double e_exp2 = 0, e_one[2] = {0, 0};
    const double caps[2] = {30.0, 64.0};
    for (int k = 0; k < 2; k++) {
        XF_FN(general_opts) o;
        opts_for(&o, caps[k], XF_PLAN_SOFTCAP_ONE_LOOP);
        for (long i = 0; i <= 4000000; i++) {
            const float x = (float)caps[k] * (-12.0f + 24.0f * (float)i / 4e6f);
            float z2[XF_W];
            V_STOREU(z2, XF_FN(vtransform_one)(V_SET1(x), &o));
            const double z = XF_LN2 * (double)z2[0];
            e_one[k] = fmax(e_one[k], fabs(z - caps[k] * tanh((double)x / caps[k])) / caps[k]);
        }
    }
    /* 2^(x k), k of c = 30, against 2^(x k) in double with that float k */
    const float k30 = (float)(2.0 * XF_LOG2E / 30.0);
    double e_scaled = 0;
    for (long i = 0; i <= 4000000; i++) {
        const float x = -92.5f + 185.0f * (float)i / 4e6f, xs = (40.0f / k30) * (x / 92.5f);
        e_exp2 = fmax(e_exp2, REL_ERR(V_EXP2_MID, exp2, x));
        float v[XF_W];
        V_STOREU(v, V_EXP2_SCALED(V_SET1(xs), k30));
        const double r = exp2((double)xs * (double)k30);
        e_scaled = fmax(e_scaled, fabs((double)v[0] - r) / r);
    }
    printf("one loop: 2^x max rel error %.3g, 2^(x k) %.3g (|x k| <= 40); c tanh(x/c) max abs "
           "error / c %.3g (c = 30), %.3g (c = 64)\n", e_exp2, e_scaled, e_one[0], e_one[1]);
#endif
    return 0;
}
