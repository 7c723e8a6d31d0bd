/* Shared rows: the plain gradient written over the logits of long rows,
 * each row's segments spread over a team of threads that keep in step row
 * by row (XF_PLAN_SHARED: a team, in place, XF_SHARED_MIN_CLASSES or more).
 *
 * The row loop (rows.h) writes a float32 gradient row while the next row's
 * loops run, so that one row waits in L2 while the next streams in.  By
 * least-recent use that takes up to two rows of L2 (the drained lines are
 * touched again), and past some row length (where, moves with the
 * machine's other load) the waiting lines leave L2 before their drain.
 * Here member t of T takes segments [t n_seg / T, (t+1) n_seg / T) of
 * every row, so that its part of the row and of the waiting row are 1/T of
 * them: 1024 x 262144 in place on two threads in 0.90-0.94 of the row
 * loop's time (`tools/kernel_ab.sh
 * OLD_TREE 1024 262144 8 inplace 2` against the tree before;
 * docs/design.md has the other shapes).
 *
 * Per row: each member's segments' (max, sum-exp) into the team's arrays,
 * a barrier, then every member folds all segments in order (the arithmetic
 * of row_stats, so every bit equals the row loop's result) and ends the
 * row; member 0 stores its loss, the member that owns the target's segment
 * reads the target's logit first and writes its gradient entry last.  The
 * exps go over the logits, as the row loop's in place; the segment maxima
 * and sums are the team's, in two sets that alternate between the counted
 * rows, so a row's maxima stay while its gradient is drained during the
 * next one.  No scratch of its own.
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* Member `thread` of a team of n_threads: its segments of every row of the
 * call (XF_PLAN_SHARED: the plain gradient over the logits, float32).
 * Instantiated for float64 too, where nothing calls it (the deferred write
 * is float32's). */
XF_MAYBE_UNUSED static void XF_FN(rows_shared)(const xf_rows_args *a, xf_team *team, int thread,
                                               int n_threads) {
    const int64_t C = a->n_classes, n_seg = (C + XF_SEGMENT - 1) / XF_SEGMENT;
    const int64_t j_begin = thread * n_seg / n_threads;
    const int64_t j_end = (thread + 1) * n_seg / n_threads;
    const int stream = a->streaming;
    /* where this member's part of a row ends, and the bytes from there to
     * its part of the next row */
    const int64_t part_end = j_end * XF_SEGMENT < C ? j_end * XF_SEGMENT : C;
    const ptrdiff_t next_part =
        (ptrdiff_t)(a->x_stride - (part_end - j_begin * XF_SEGMENT)) * (ptrdiff_t)sizeof(XF_T);
    XF_FN(general_opts) o;
    XF_FN(row_opts)(&o, a, XF_PLAN_PLAIN);
    XF_FN(pending_t) pending;
    pending.out = NULL;
    int64_t counted = 0; /* rows with statistics so far: the arrays' parity */
    for (int64_t r = 0; r < a->n_rows; r++) {
        const XF_T *x = (const XF_T *)a->x + r * a->x_stride;
        XF_T *out = (XF_T *)a->out + r * a->out_stride; /* x itself */
        const int64_t y = a->target ? a->target[r] : -1;
        if (a->target && y == a->ignore_index) { /* zero loss, zero gradient */
            if (thread == 0) xf_row_ignored(a, r);
            const int64_t j0 = j_begin * XF_SEGMENT;
            if (part_end > j0)
                XF_FN(write_segment)
                (out + j0, NULL, NULL, NULL, NULL, part_end - j0, 0, 0, 0, stream);
            continue;
        }
        const int b = (int)(counted++ & 1);
        XF_T *seg_max = (XF_T *)team->seg_max[b];
        double *seg_sum = team->seg_sum[b];
        const int own_y = y >= 0 && y / XF_SEGMENT >= j_begin && y / XF_SEGMENT < j_end;
        /* read before this member's exps overwrite it */
        if (own_y) team->z_y[b] = (double)x[y];
        for (int64_t j = j_begin; j < j_end; j++) {
            /* a look-ahead past this member's part would pull in lines that
             * another member writes: it goes to this member's part of the
             * next row instead */
            const int64_t ahead = (j + 1) * XF_SEGMENT;
            const ptrdiff_t skip_l2 =
                ahead + XF_PREFETCH_BYTES / (int64_t)sizeof(XF_T) > part_end ? next_part : 0;
            const ptrdiff_t skip_l1 =
                ahead + XF_PREFETCH_L1_BYTES / (int64_t)sizeof(XF_T) > part_end ? next_part : 0;
            seg_sum[j] = pending.out ? XF_FN(seg_stats_pending)(x, C, j, out, seg_max + j, &pending,
                                                                stream, skip_l2, skip_l1)
                                     : XF_FN(seg_stats_drain)(x, C, j, out, seg_max + j, NULL, 0,
                                                              skip_l2, skip_l1);
        }
        if (pending.out) {
            if (pending.y >= 0) pending.out[pending.y] = pending.out_y;
            pending.out = NULL;
        }
        xf_team_wait(team, n_threads);
        double M = -INFINITY, S = 0.0;
        for (int64_t j = 0; j < n_seg; j++) XF_FN(combine)(&M, &S, seg_max[j], seg_sum[j]);
        const double log_S = log(S);
        const double w_y = (a->target && o.w && y >= 0) ? (double)o.w[y] : 1.0;
        const double z_y = y >= 0 ? team->z_y[b] : 0.0;
        const xf_row_stats st = {M, log_S, z_y, 0, 0, 0};
        const xf_row_end fin = xf_row_finish(a, r, y, w_y, &st);
        if (thread == 0) {
            if (a->row_lse) a->row_lse[r] = xf_row_lse(M, log_S);
            xf_row_store(a, r, &fin);
        }
        if (M == -INFINITY) M = NAN; /* every class masked: no distribution */
        const XF_FN(scratch_set) rs = {out, NULL, seg_max};
        pending = XF_FN(gradient_row)(a, &o, 0, out, NULL, &rs, own_y ? y : -1, w_y, z_y, M, log_S,
                                      xf_row_scale(a, r), &fin);
    }
    if (pending.out) XF_FN(write_pending_range)(&pending, C, stream, j_begin, j_end);
    if (stream) XF_SFENCE();
}
