/* Accuracy and speed of the softcap's arithmetic in one ISA's kernels: the
 * cheaper exp and expm1 (XF_EXP_MID, XF_EXPM1_MID) and tanh as the kernel
 * computes it (vtransform with c = 1: z = q/(q + 2), q = expm1(2v)).  Max
 * relative error against libm in double over 4e6 points (exp: [-87.3, 88];
 * expm1 and tanh: [-20, 20] and [-10, 10]) plus 1e5 tiny arguments, and
 * cycles per vector at a nominal 2.6 GHz, data in L1.  Built by
 *
 *   TOOL=exp_mid_check tools/kernel_bench.sh [avx512|avx2]
 */
#include <math.h>
#include <stdio.h>
#include "kernel_tool.h"

#define FN_TANH XF_FN(tanh_check)
static XF_FN(opts_t) tanh_opts; /* c = 1, T = 1: set in main */
static inline XF_V FN_TANH(XF_V v) { return XF_FN(vtransform)(v, &tanh_opts); }

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

int main(void) {
    XF_FN(opts_set)(&tanh_opts, 1.0, 1.0);
    for (int i = 0; i < 4096; i++) in[i] = -20.0f + 40.0f * (float)i / 4096.0f;
    double e_exp = 0, e_expm1 = 0, e_tanh = 0;
    for (long i = 0; i <= 4000000; i++) {
        const float x = -87.3f + 175.3f * (float)i / 4e6f, y = -20.0f + 40.0f * (float)i / 4e6f;
        e_exp = fmax(e_exp, REL_ERR(XF_EXP_MID, exp, x));
        e_expm1 = fmax(e_expm1, REL_ERR(XF_EXPM1_MID, expm1, y));
        e_tanh = fmax(e_tanh, REL_ERR(FN_TANH, tanh, 0.5f * y));
    }
    for (int i = 1; i < 100000; i++) {
        const float x = (float)(i % 2 ? i : -i) * 1e-7f;
        e_expm1 = fmax(e_expm1, REL_ERR(XF_EXPM1_MID, expm1, x));
        e_tanh = fmax(e_tanh, REL_ERR(FN_TANH, tanh, x));
    }
    double c_exp, c_expm1, c_tanh;
    CYCLES_PER_VECTOR(XF_EXP_MID, c_exp);
    CYCLES_PER_VECTOR(XF_EXPM1_MID, c_expm1);
    CYCLES_PER_VECTOR(FN_TANH, c_tanh);
    printf("exp_mid:   max rel error %.3g, %.2f cycles/vector of %d\n", e_exp, c_exp, XF_W);
    printf("expm1_mid: max rel error %.3g, %.2f cycles/vector\n", e_expm1, c_expm1);
    printf("tanh:      max rel error %.3g, %.2f cycles/vector\n", e_tanh, c_tanh);
    return 0;
}
