/* Times one row kernel alone, on one thread, without Python or OpenMP: the
 * tool behind the cycles-per-element and callgrind figures in
 * docs/design.md.  Built by tools/kernel_bench.sh against one ISA file:
 *
 *   kernel_bench N C MODE [SOFTCAP [REPS [STREAM]]]
 *
 * MODE 0 = loss only, 1 = loss+grad.  Prints the best of REPS calls, in ms,
 * G elements/s and cycles per element at a nominal 2.6 GHz (the measuring
 * host's TSC rate; only ratios between runs matter).  Options from the environment:
 * LS=eps (label smoothing), ZL=lambda (z-loss), PROB=1 (uniform probability
 * targets instead of indices), INPLACE=1 (the gradient over the logits; with
 * STREAM 0, as the extension does in place). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernel_tool.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s N C MODE [SOFTCAP [REPS [STREAM]]]\n", argv[0]);
        return 2;
    }
    const int64_t n = atoll(argv[1]), C = atoll(argv[2]);
    const int mode = atoi(argv[3]);
    const double cap = argc > 4 ? atof(argv[4]) : 0.0;
    const int reps = argc > 5 ? atoi(argv[5]) : 10;
    const int stream = argc > 6 ? atoi(argv[6]) : 0;
    plain_problem pr;
    if (plain_problem_make(&pr, n, C)) return 1;
    float *x = pr.x, *out = pr.out;
    double *loss = pr.loss;
    void *scratch = pr.scratch;
    xf_rows_args a =
        plain_args(n, C, x, mode == XF_MODE_GRAD ? out : NULL, pr.t, loss, mode, stream);
    a.softcap = cap;
    /* in place, `out` keeps the logits, copied back before each call (untimed):
     * otherwise every call after the first would run on a gradient */
    const int in_place = getenv("INPLACE") && atoi(getenv("INPLACE")) && mode == XF_MODE_GRAD;
    if (in_place) {
        memcpy(out, x, (size_t)(n * C * 4));
        a.out = x;
    }
    if (getenv("LS")) a.label_smoothing = atof(getenv("LS"));
    if (getenv("ZL")) a.z_loss = atof(getenv("ZL"));
    if (getenv("PROB") && atoi(getenv("PROB")) && plain_args_prob_targets(&a, n, C)) return 1;
    /* the plan the extension would run on one thread */
    const xf_plan_kind plan = xf_plan(&a, &XF_TABLE.caps_f32, 1);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        if (in_place) memcpy(x, out, (size_t)(n * C * 4));
        const double t0 = now();
        XF_ROWS(&a, plan, 0, n, scratch);
        const double dt = now() - t0;
        if (dt < best) best = dt;
    }
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += loss[i];
    printf(
        "N=%lld C=%lld mode=%d softcap=%g plan=%d: %.3f ms  %.2f G el/s  %.2f cycles/el at 2.6 GHz"
        "  (mean loss %.6f)\n",
        (long long)n, (long long)C, mode, cap, (int)plan, best * 1e3, (double)(n * C) / best / 1e9,
        best * 2.6e9 / (double)(n * C), s / (double)n);
    return 0;
}
