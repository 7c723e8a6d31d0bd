/* Two builds of the row kernels (AVX-512 or AVX2) in one process, called in turn:
 * the before/after of a kernel change with the machine's drift shared by
 * both.  Built by tools/kernel_ab.sh: each build runs a call by its own
 * plan (kernel_ab_run.c, compiled against that build's headers; the other
 * build's symbols renamed old_*):
 *
 *   kernel_ab N C REPS MODE [THREADS]
 *
 * MODE: loss (the loss alone), buf (loss+grad into a buffer, streaming
 * stores, as the extension does for large arrays), inplace (the gradient
 * over the logits, restored before each call, untimed), ls (buf with label
 * smoothing 0.1), prob (buf with uniform probability targets).  THREADS
 * (default 1) run as the extension runs them (kernel_ab_run.c).
 * Prints the best of REPS calls of each build (and G elements/s), new/old,
 * and whether both gave the same sum of row losses. */
#include <stdio.h>
#include "kernel_tool.h"

int kernel_ab_run(const xf_rows_args *a, int threads, void **scratch);
int old_kernel_ab_run(const xf_rows_args *a, int threads, void **scratch);
size_t kernel_ab_scratch_bytes(int64_t n_classes);
size_t old_kernel_ab_scratch_bytes(int64_t n_classes);

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
    size_t scratch_bytes = kernel_ab_scratch_bytes(C);
    if (old_kernel_ab_scratch_bytes(C) > scratch_bytes)
        scratch_bytes = old_kernel_ab_scratch_bytes(C);
    for (int k = 0; k < threads; k++)
        if (!(scratch[k] = malloc(scratch_bytes))) return 1;
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
    int (*const run[2])(const xf_rows_args *, int, void **) = {old_kernel_ab_run, kernel_ab_run};
    double best[2] = {1e30, 1e30}, loss_sum[2] = {0, 0};
    for (int r = 0; r < reps; r++) {
        /* each build first in every other round: the second call of a round
         * can find the machine in another state (threads awake, caches),
         * worth several percent on two threads */
        for (int k = 0; k < 2; k++) {
            const int b = (r & 1) ? 1 - k : k;
            if (logits) memcpy(pr.x, logits, bytes);
            const double t0 = now();
            if (run[b](&a, threads, scratch)) return 1;
            const double dt = now() - t0;
            if (dt < best[b]) best[b] = dt;
            loss_sum[b] = 0;
            for (int64_t i = 0; i < n; i++) loss_sum[b] += pr.loss[i];
        }
    }
    const double elements = (double)n * (double)C;
    printf("%s %lldx%lld, %d thread(s), best of %d: old %.3f ms (%.2f G el/s), new %.3f ms "
           "(%.2f G el/s), new/old %.3f (%s)\n",
           mode, (long long)n, (long long)C, threads, reps, best[0] * 1e3,
           elements / best[0] * 1e-9, best[1] * 1e3, elements / best[1] * 1e-9, best[1] / best[0],
           loss_sum[0] == loss_sum[1] ? "same losses" : "LOSSES DIFFER");
    return loss_sum[0] == loss_sum[1] ? 0 : 1;
}
