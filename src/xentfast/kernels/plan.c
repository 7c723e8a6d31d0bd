/* The plan: which algorithm a call of the row kernels runs.
 *
 * The one place that decides.  The Cython glue asks it once per call (it
 * runs XF_PLAN_SPLIT itself, every other plan through the table's rows
 * function), the kernels follow it, and no other layer repeats any of its
 * tests.  docs/design.md draws it as a table.
 */
#include <math.h>
#include "xentfast/kernels.h"

/* A field added to xf_rows_args must be told to xf_plan (does it need the
 * general row? can the narrow and split kernels honour it?) and then
 * counted here.  tests/test_plan.py checks every option against the oracle
 * on every plan. */
typedef char
    xf_rows_args_has_28_fields_known_to_the_plan[sizeof(xf_rows_args) ==
                                                         7 * sizeof(int64_t) + 13 * sizeof(void *) +
                                                             6 * sizeof(double) + 2 * sizeof(int)
                                                     ? 1
                                                     : -1];

/* The one-loop softcap takes e^{2u} = 2^{x k} with k = 2 log2(e) / (T c);
 * k far from float's limits keeps x k and its clamp 40 / k finite. */
static int xf_one_loop_scale_ok(const xf_rows_args *a) {
    const double k = 2.0 * 1.4426950408889634 * a->inv_temperature / a->softcap;
    return k >= 1e-30 && k <= 1e30;
}

xf_plan_kind xf_plan(const xf_rows_args *a, const xf_caps *caps, int n_threads) {
    const int64_t C = a->n_classes;
    if (a->softcap != 0) {
        /* the one loop's exps are not relative to the max of z: not for one
         * class (z against itself must give a loss of exactly 0), nor for
         * the entropy (accurate from z - max <= 0 only) */
        if (a->softcap <= caps->one_loop_cap && C >= 2 && a->mode != XF_MODE_EVAL &&
            a->row_entropy == NULL && xf_one_loop_scale_ok(a))
            return XF_PLAN_SOFTCAP_ONE_LOOP;
        return XF_PLAN_SOFTCAP;
    }
    if (a->label_smoothing != 0 || a->target_prob != NULL || a->inv_temperature != 1 ||
        a->mode == XF_MODE_EVAL || a->row_entropy != NULL || a->row_argmax != NULL)
        return XF_PLAN_GENERAL;
    /* a vocabulary shard's two passes (rows_shard.h) end every row through
     * the row loop: neither the narrow rows nor the split fold know them */
    if (a->mode == XF_MODE_SHARD_STATS || a->mode == XF_MODE_SHARD_GRAD) return XF_PLAN_PLAIN;
    /* what is left: index targets (or none), class and row weights, z-loss,
     * per-row scales, which every plain-loss kernel honours */
    if (C <= caps->narrow_max && a->x_stride == C &&
        (a->mode == XF_MODE_LOSS || a->mode == XF_MODE_LSE ||
         (a->mode == XF_MODE_GRAD && a->out_stride == C)))
        return XF_PLAN_NARROW;
    /* fewer blocks of rows than threads, and rows long enough to cut: the
     * segments of each row are spread over the threads instead */
    const int64_t blocks = (a->n_rows + xf_block_rows(C) - 1) / xf_block_rows(C);
    if (n_threads > 1 && blocks < n_threads && C >= 4 * XF_SEGMENT &&
        a->mode != XF_MODE_LOG_SOFTMAX)
        return XF_PLAN_SPLIT;
    /* the gradient in place over long rows: each row's segments over the
     * team in step, so that a thread's share of the row waiting for its
     * write and of the row it reads stay in its L2 (rows_shared.h) */
    if (n_threads > 1 && caps->shared_min > 0 && C >= caps->shared_min &&
        a->mode == XF_MODE_GRAD && a->out == a->x && a->out_stride == a->x_stride)
        return XF_PLAN_SHARED;
    return XF_PLAN_PLAIN;
}
