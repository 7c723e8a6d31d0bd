/* One build's side of tools/kernel_ab.c: a call of one ISA's row kernels
 * (KERNEL_AB_TABLE, set by kernel_ab.sh) run as the extension runs it, by
 * that build's own plan for the thread count (the rows split in blocks over the threads, or, where the build
 * has them, shared rows on a team in step).  kernel_ab.sh compiles this
 * file once against each tree's headers, so each build is called through
 * its own table layout; the other build's copy has its names prefixed
 * old_. */
#include <omp.h>
#include <stdlib.h>
#include "xentfast/kernels.h"

extern const xf_kernel_table KERNEL_AB_TABLE;

/* Scratch bytes per thread for rows of n_classes, by this build's rule. */
size_t kernel_ab_scratch_bytes(int64_t n_classes) { return xf_scratch_bytes(n_classes); }

/* All rows of a on `threads` threads; scratch[k]: thread k's.  0 on success. */
int kernel_ab_run(const xf_rows_args *a, int threads, void **scratch) {
    const xf_kernel_table *t = &KERNEL_AB_TABLE;
    xf_plan_kind plan = xf_plan(a, &t->caps_f32, threads);
    if (plan == XF_PLAN_SPLIT) plan = xf_plan(a, &t->caps_f32, 1); /* the glue's phases */
    const int64_t n = a->n_rows;
#ifdef XF_SHARED_MIN_CLASSES
    if (plan == XF_PLAN_SHARED) {
        void *arrays = malloc(xf_team_bytes(a->n_classes));
        if (!arrays) return 1;
        xf_team team;
        xf_team_init(&team, arrays, a->n_classes);
#pragma omp parallel num_threads(threads)
        t->rows_shared_f32(a, &team, omp_get_thread_num(), omp_get_num_threads());
        free(arrays);
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
