/* Accuracy and speed of the AVX-512 softcap exp and expm1 (simd_avx512.h):
 * max relative error against libm in double over 4e6 points of [-87.3, 88]
 * (exp) and [-20, 20] plus 1e5 tiny arguments (expm1), and cycles per
 * 16-lane vector at a nominal 2.6 GHz, data in L1.
 *
 *   gcc -O2 -mavx512f -mavx512dq -mavx2 -mfma -Iinclude tools/exp_mid_check.c -lm \
 *       -o /tmp/exp_mid_check && /tmp/exp_mid_check
 */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include "xentfast/simd_avx512.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float in[4096], out[4096];

/* a macro, so that f is inlined into the timed loop */
#define CYCLES_PER_VECTOR(f, result)                                                        \
    do {                                                                                    \
        double best = 1e30;                                                                 \
        for (int rep = 0; rep < 300; rep++) {                                               \
            const double t0 = now();                                                        \
            for (int i = 0; i < 4096; i += 16)                                              \
                _mm512_storeu_ps(out + i, f(_mm512_loadu_ps(in + i)));                      \
            const double dt = now() - t0;                                                   \
            if (dt < best) best = dt;                                                       \
        }                                                                                   \
        (result) = best * 2.6e9 / 256;                                                      \
    } while (0)

static double rel_err(__m512 (*f)(__m512), double (*ref)(double), float x) {
    float o[16];
    _mm512_storeu_ps(o, f(_mm512_set1_ps(x)));
    const double r = ref((double)x);
    return r == 0 ? fabs((double)o[0]) : fabs((double)o[0] - r) / fabs(r);
}

int main(void) {
    for (int i = 0; i < 4096; i++) in[i] = -20.0f + 40.0f * (float)i / 4096.0f;
    double e_exp = 0, e_expm1 = 0;
    for (long i = 0; i <= 4000000; i++) {
        const float x = -87.3f + 175.3f * (float)i / 4e6f;
        e_exp = fmax(e_exp, rel_err(xf_exp_mid_ps512, exp, x));
        if (fabsf(x) <= 20) e_expm1 = fmax(e_expm1, rel_err(xf_expm1_mid_ps512, expm1, x));
    }
    for (int i = 1; i < 100000; i++)
        e_expm1 = fmax(e_expm1, rel_err(xf_expm1_mid_ps512, expm1, (float)(i % 2 ? i : -i) * 1e-7f));
    double c_exp, c_expm1;
    CYCLES_PER_VECTOR(xf_exp_mid_ps512, c_exp);
    CYCLES_PER_VECTOR(xf_expm1_mid_ps512, c_expm1);
    printf("exp_mid:   max rel error %.3g, %.2f cycles/vector\n", e_exp, c_exp);
    printf("expm1_mid: max rel error %.3g, %.2f cycles/vector\n", e_expm1, c_expm1);
    return 0;
}
