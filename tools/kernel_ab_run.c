/* One build's side of tools/kernel_ab.c: a call of the AVX-512 row kernels
 * run as the extension runs it, by that build's own plan for the thread
 * count (the rows split in blocks over the threads, or, where the build
 * has them, shared rows on a team in step).  kernel_ab.sh compiles this
 * file once against each tree's headers, so each build is called through
 * its own table layout; the other build's copy has its names prefixed
 * old_. */
#include <omp.h>
#include <stdlib.h>
#include "xentfast/kernels.h"

extern const xf_kernel_table xf_table_avx512;

/* Scratch bytes per thread for rows of n_classes, by this build's rule. */
size_t kernel_ab_scratch_bytes(int64_t n_classes) { return xf_scratch_bytes(n_classes); }

/* All rows of a on `threads` threads; scratch[k]: thread k's.  0 on success. */
int kernel_ab_run(const xf_rows_args *a, int threads, void **scratch) {
    const xf_kernel_table *t = &xf_table_avx512;
    xf_plan_kind plan = xf_plan(a, &t->caps_f32, threads);
    if (plan == XF_PLAN_SPLIT) plan = xf_plan(a, &t->caps_f32, 1); /* the glue's phases */
    const int64_t n = a->n_rows;
#ifdef XF_SHARED_MIN_CLASSES
    if (plan == XF_PLAN_SHARED) {
        const int64_t n_seg = (a->n_classes + XF_SEGMENT - 1) / XF_SEGMENT;
        float *seg_max = malloc(2 * (size_t)n_seg * sizeof(float));
        double *seg_sum = malloc(2 * (size_t)n_seg * sizeof(double));
        if (!seg_max || !seg_sum) {
            free(seg_max);
            free(seg_sum);
            return 1;
        }
        xf_team team;
        xf_team_init(&team, seg_max, seg_sum, n_seg, sizeof(float));
#pragma omp parallel num_threads(threads)
        t->rows_shared_f32(a, &team, omp_get_thread_num(), omp_get_num_threads());
        free(seg_max);
        free(seg_sum);
        return 0;
    }
#endif
#pragma omp parallel num_threads(threads)
    {
        const int k = omp_get_thread_num(), team = omp_get_num_threads();
        t->rows_f32(a, plan, n * k / team, n * (k + 1) / team, scratch[k]);
    }
    return 0;
}
