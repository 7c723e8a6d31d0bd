/* Split rows: the plain loss of a few long rows, each row over the threads.
 *
 * A call of fewer blocks of rows than threads would leave threads idle; the
 * plan (XF_PLAN_SPLIT: the plain loss, C >= 4 XF_SEGMENT) then spreads each
 * row's fixed segments over them.  Phase 1 (`stats`, in parallel) computes
 * each segment's (max, sum-exp) and leaves its exps in the output row; one
 * thread folds each row in segment order (`fold`: the very arithmetic of
 * row_stats, so every bit equals the one-thread result) and ends it by the
 * shared finish; phase 2 (`write`, in parallel) scales the exps in place;
 * one thread writes the target entries (`fix`).  The glue (_core.pyx) runs
 * the phases.  1x262144 loss+grad: 1.7x faster on two threads than on one
 * (`python -m xentfast.bench --shape 1 262144`).
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* Row r's output row when the mode writes one (else NULL). */
static XF_T *XF_FN(split_out_row)(const xf_rows_args *a, int64_t r) {
    const int writes = a->out && (a->mode == XF_MODE_GRAD || a->mode == XF_MODE_SOFTMAX);
    return writes ? (XF_T *)a->out + r * a->out_stride : NULL;
}

/* Phase 1: (m_j, s_j) of segments [j_begin, j_end) of row r; when the row
 * has an output, the exps exp(x - m_j) go there (as rows() keeps them in
 * scratch), for phase 2 to scale in place: one exp per element. */
static void XF_FN(split_stats)(const xf_rows_args *a, int64_t r, int64_t j_begin, int64_t j_end,
                               void *seg_max, double *seg_sum) {
    const XF_T *x = (const XF_T *)a->x + r * a->x_stride;
    XF_T *e = XF_FN(split_out_row)(a, r);
    for (int64_t j = j_begin; j < j_end; j++)
        seg_sum[j] = XF_FN(seg_stats)(x, a->n_classes, j, e, (XF_T *)seg_max + j);
}

/* Between the phases, on one thread: fold the segments of row r and end it.
 * Leaves in row[] what phase 2 and split_fix need: M, log S, the write's
 * factor (R A, or 1 for the softmax; 0 for an ignored row) and the
 * target's output entry, computed here from the target's exp before phase
 * 2 scales it. */
static void XF_FN(split_fold)(const xf_rows_args *a, int64_t r, const void *seg_max_,
                              const double *seg_sum, double *row) {
    const int64_t C = a->n_classes, n_seg = (C + XF_SEGMENT - 1) / XF_SEGMENT;
    const XF_T *seg_max = (const XF_T *)seg_max_;
    const XF_T *e = XF_FN(split_out_row)(a, r);
    const XF_T *w = (const XF_T *)a->class_weight;
    double M = -INFINITY, S = 0.0;
    for (int64_t j = 0; j < n_seg; j++) XF_FN(combine)(&M, &S, seg_max[j], seg_sum[j]);
    const double log_S = log(S);
    const int64_t y = a->target ? a->target[r] : -1;
    row[XF_SPLIT_LOG_S] = log_S;
    row[XF_SPLIT_G] = row[XF_SPLIT_TARGET_OUT] = 0.0;
    if (a->target && y == a->ignore_index) {
        xf_row_ignored(a, r);
        row[XF_SPLIT_M] = M;
        return;
    }
    if (a->row_lse) a->row_lse[r] = xf_row_lse(M, log_S);
    const double w_y = (w && y >= 0) ? (double)w[y] : 1.0;
    const xf_row_stats st = {M, log_S, row[XF_SPLIT_ZY], 0, 0, 0};
    const xf_row_end end = xf_row_finish(a, r, y, w_y, &st);
    if (y >= 0)
        xf_row_store(a, r, &end);
    else if (a->row_z_loss)
        a->row_z_loss[r] = end.z_loss;
    /* a row with every class masked has no distribution: NaN, as rows() */
    row[XF_SPLIT_M] = M == -INFINITY ? NAN : M;
    const double R = xf_row_scale(a, r);
    row[XF_SPLIT_G] = a->mode == XF_MODE_SOFTMAX ? 1.0 : R * end.A;
    if (y >= 0 && a->mode == XF_MODE_GRAD && e) {
        const int64_t jy = y / XF_SEGMENT;
        const double f = XF_FN(seg_factor)(seg_max[jy], row[XF_SPLIT_M], log_S);
        const double p_y = seg_max[jy] == -INFINITY ? f : (double)e[y] * f;
        row[XF_SPLIT_TARGET_OUT] = xf_target_entry(&end, R, p_y, 0.0, 1.0, 0, 1.0);
    }
}

/* Phase 2: segments [j_begin, j_end) of row r's output: the exps phase 1
 * left there, times the segment's factor (the arithmetic of rows()). */
static void XF_FN(split_write)(const xf_rows_args *a, int64_t r, int64_t j_begin, int64_t j_end,
                               const void *seg_max_, const double *row) {
    const XF_T *seg_max = (const XF_T *)seg_max_;
    const double M = row[XF_SPLIT_M], log_S = row[XF_SPLIT_LOG_S], g = row[XF_SPLIT_G];
    const int64_t C = a->n_classes;
    XF_T *out = (XF_T *)a->out + r * a->out_stride;
    const int ignored = a->target && a->target[r] == a->ignore_index;
    for (int64_t j = j_begin; j < j_end; j++) {
        const int64_t j0 = j * XF_SEGMENT;
        const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
        const double f = ignored ? 0.0 : XF_FN(seg_factor)(seg_max[j], M, log_S) * g;
        if (ignored || seg_max[j] == -INFINITY) {
            XF_FN(write_constant)(out + j0, n, f, a->streaming);
            continue;
        }
        XF_FN(write_segment)(out + j0, out + j0, NULL, NULL, NULL, n, (XF_T)f, 0, 0, a->streaming);
    }
}

/* After phase 2, on one thread: the target's entry of row r. */
static void XF_FN(split_fix)(const xf_rows_args *a, int64_t r, const double *row) {
    if (a->mode != XF_MODE_GRAD || !a->target) return;
    const int64_t y = a->target[r];
    if (y == a->ignore_index) return;
    ((XF_T *)a->out + r * a->out_stride)[y] = (XF_T)row[XF_SPLIT_TARGET_OUT];
}
