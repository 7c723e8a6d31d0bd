/* Two builds of the AVX-512 row kernels in one process, called in turn:
 * the before/after of a kernel change with the machine's drift shared by
 * both.  Built by tools/kernel_ab.sh (the other build's symbols renamed
 * old_*):
 *
 *   kernel_ab N C REPS MODE [THREADS]
 *
 * MODE: loss (the loss alone), buf (loss+grad into a buffer, streaming
 * stores, as the extension does for large arrays), inplace (the gradient
 * over the logits, restored before each call, untimed), ls (buf with label
 * smoothing 0.1), prob (buf with uniform probability targets).  THREADS
 * (default 1) split the rows in blocks, as the extension's plain plan does.
 * Prints the best of REPS calls of each build (and G elements/s), new/old,
 * and whether both gave the same sum of row losses. */
#include <omp.h>
#include <stdio.h>
#include "kernel_tool.h"

extern const xf_kernel_table xf_table_avx512, old_xf_table_avx512;

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s N C REPS MODE [THREADS]\n", argv[0]);
        return 2;
    }
    const int64_t n = atoll(argv[1]), C = atoll(argv[2]);
    const int reps = atoi(argv[3]), threads = argc > 5 ? atoi(argv[5]) : 1;
    const char *mode = argv[4];
    const size_t bytes = (size_t)(n * C) * sizeof(float);
    plain_problem pr;
    if (plain_problem_make(&pr, n, C) || threads < 1 || threads > 64) return 1;
    void *scratch[64];
    for (int k = 0; k < threads; k++)
        if (!(scratch[k] = aligned_alloc(64, xf_scratch_bytes(C) + 64))) return 1;
    xf_rows_args a = plain_args(n, C, pr.x, pr.out, pr.t, pr.loss, XF_MODE_GRAD, 1);
    float *logits = NULL; /* in place: the logits to restore */
    if (!strcmp(mode, "loss")) {
        a.mode = XF_MODE_LOSS;
        a.out = NULL;
        a.streaming = 0;
    } else if (!strcmp(mode, "inplace")) {
        if (!(logits = aligned_alloc(64, bytes + 64))) return 1;
        memcpy(logits, pr.x, bytes);
        a.out = pr.x;
        a.streaming = 0;
    } else if (!strcmp(mode, "ls")) {
        a.label_smoothing = 0.1;
    } else if (!strcmp(mode, "prob")) {
        if (plain_args_prob_targets(&a, n, C)) return 1;
    } else if (strcmp(mode, "buf")) {
        fprintf(stderr, "unknown MODE %s\n", mode);
        return 2;
    }
    const xf_kernel_table *table[2] = {&old_xf_table_avx512, &xf_table_avx512};
    double best[2] = {1e30, 1e30}, loss_sum[2] = {0, 0};
    for (int r = 0; r < reps; r++) {
        for (int b = 0; b < 2; b++) {
            if (logits) memcpy(pr.x, logits, bytes);
            const xf_plan_kind plan = xf_plan(&a, &table[b]->caps_f32, 1);
            const double t0 = now();
#pragma omp parallel num_threads(threads)
            {
                const int k = omp_get_thread_num();
                table[b]->rows_f32(&a, plan, n * k / threads, n * (k + 1) / threads, scratch[k]);
            }
            const double dt = now() - t0;
            if (dt < best[b]) best[b] = dt;
            loss_sum[b] = 0;
            for (int64_t i = 0; i < n; i++) loss_sum[b] += pr.loss[i];
        }
    }
    const double elements = (double)n * (double)C;
    printf("%s %lldx%lld, %d thread(s), best of %d: old %.3f ms (%.2f G el/s), new %.3f ms "
           "(%.2f G el/s), new/old %.3f (%s)\n",
           mode, (long long)n, (long long)C, threads, reps, best[0] * 1e3, elements / best[0] * 1e-9,
           best[1] * 1e3, elements / best[1] * 1e-9, best[1] / best[0],
           loss_sum[0] == loss_sum[1] ? "same losses" : "LOSSES DIFFER");
    return loss_sum[0] == loss_sum[1] ? 0 : 1;
}
