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
 * them: 1024 x 262144 in place on two threads in 0.87-0.89 of the row
 * loop's time (`NEWFLAGS=-DXF_SHARED_MIN_CLASSES=300000 tools/kernel_ab.sh
 * . 1024 262144 8 inplace 2`, the row loop as the new build; docs/design.md
 * has the other shapes).
 *
 * Per row: each member's segments' (max, sum-exp) into the team's arrays;
 * then the row's fold in segment order (the arithmetic of row_stats, so
 * every bit equals the row loop's result), each member folding its own
 * segments onto the (M, S) the member before passed on (shared_fold), so
 * that no member folds the whole row and none waits at a barrier for the
 * others: a member goes on with the next row's segments until the last
 * member has passed the row's (M, S) on (at most XF_SHARED_LEAD_SEGMENTS
 * of them), then drains the row's gradient behind the next row's exps.
 * Member 0 stores the loss; the member that owns the target's segment
 * reads the target's logit first and writes its gradient entry last.  The
 * exps go over the logits, as the row loop's in place; the segment maxima
 * and sums are the team's, in three sets taken in turn (kernels.h,
 * xf_team).  No scratch of its own.
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* At most this many segments of a row a member computes before it waits
 * for the team's statistics of the row before (it takes them as soon as
 * they are there): the wait then overlaps work instead of the members'
 * imbalance adding to every row. */
#ifndef XF_SHARED_LEAD_SEGMENTS
#define XF_SHARED_LEAD_SEGMENTS 4
#endif

/* Whether class y (< 0: none) is in segments [j_begin, j_end): the member
 * that owns them reads the target's logit and writes its gradient entry. */
static inline int XF_FN(owns_class)(int64_t y, int64_t j_begin, int64_t j_end) {
    return y >= 0 && y / XF_SEGMENT >= j_begin && y / XF_SEGMENT < j_end;
}

/* This member's segments [j_begin, j_end) of a row (set b) folded in order
 * into the row's (M, S) over the segments before them, which the member
 * before has passed on (counts from `base`, the row's first), and passed
 * on in turn: the whole row in segment order, the arithmetic of row_stats,
 * so every bit equals the row loop's result, with each member folding
 * only its own segments. */
static inline void XF_FN(shared_fold)(xf_team *team, int b, int64_t j_begin, int64_t j_end,
                                      int thread, int64_t base) {
    const XF_T *seg_max = (const XF_T *)team->seg_max[b];
    const double *seg_sum = team->seg_sum[b];
    double M = -INFINITY, S = 0.0;
    if (thread > 0) {
        xf_team_await(team, base + thread);
        M = team->fold_M[b];
        S = team->fold_S[b];
    }
    for (int64_t j = j_begin; j < j_end; j++) XF_FN(combine)(&M, &S, seg_max[j], seg_sum[j]);
    team->fold_M[b] = M;
    team->fold_S[b] = S;
    xf_team_pass(team, base + thread + 1);
}

/* Row r's gradient over its logits, as a deferred row for this member's
 * segments [j_begin, j_end), once every member has passed on its fold of
 * the row (set b); member 0 stores the row's loss. */
static inline XF_FN(pending_t)
    XF_FN(shared_gradient)(const xf_rows_args *a, const XF_FN(general_opts) * o, xf_team *team,
                           int64_t r, int b, int64_t j_begin, int64_t j_end, int thread) {
    const int64_t y = a->target ? a->target[r] : -1;
    double M = team->fold_M[b];
    const double log_S = log(team->fold_S[b]);
    const double w_y = (a->target && o->w && y >= 0) ? (double)o->w[y] : 1.0;
    const double z_y = y >= 0 ? team->z_y[b] : 0.0;
    const xf_row_stats st = {M, log_S, z_y, 0, 0, 0};
    const xf_row_end fin = xf_row_finish(a, r, y, w_y, &st);
    if (thread == 0) {
        if (a->row_lse) a->row_lse[r] = xf_row_lse(M, log_S);
        xf_row_store(a, r, &fin);
    }
    if (M == -INFINITY) M = NAN; /* every class masked: no distribution */
    XF_T *out = (XF_T *)a->out + r * a->out_stride;
    const XF_FN(scratch_set) rs = {out, NULL, (XF_T *)team->seg_max[b]};
    return XF_FN(gradient_row)(a, o, 0, out, NULL, &rs,
                               XF_FN(owns_class)(y, j_begin, j_end) ? y : -1, w_y, z_y, M, log_S,
                               xf_row_scale(a, r), &fin);
}

/* Member `thread` of a team of n_threads: its segments of every row of the
 * call (XF_PLAN_SHARED: the plain gradient over the logits, float32).
 * Instantiated for float64 too, where nothing calls it (the deferred write
 * is float32's).
 *
 * Per counted row: this row's segments, and, from the first segment where
 * the team has folded the row before (at most XF_SHARED_LEAD_SEGMENTS in),
 * that row's gradient drained `lag` segments behind them, its last `lag`
 * segments after them; then this row's fold, now if the member before has
 * passed on its own, else as soon as it has, during the next row's first
 * segments. */
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
    int64_t prev = -1;     /* the last counted row, its gradient not yet begun */
    int prev_set = 0;      /* its statistics' set */
    int64_t prev_base = 0; /* its first count of folds passed on */
    int prev_unfolded = 0; /* this member's fold of it still to do */
    int64_t counted = 0;   /* rows with statistics so far */
    for (int64_t r = 0; r <= a->n_rows; r++) {
        const int last = r == a->n_rows;  /* past the rows: the last one's gradient */
        const int64_t row = last ? 0 : r; /* (no row past the array to point at) */
        const XF_T *x = (const XF_T *)a->x + row * a->x_stride;
        XF_T *out = (XF_T *)a->out + row * a->out_stride; /* x itself */
        const int64_t y = !last && a->target ? a->target[r] : -1;
        if (!last && a->target && y == a->ignore_index) { /* zero loss, zero gradient */
            if (thread == 0) xf_row_ignored(a, r);
            const int64_t j0 = j_begin * XF_SEGMENT;
            if (part_end > j0) XF_FN(write_segment)
            (out + j0, NULL, NULL, NULL, NULL, part_end - j0, 0, 0, 0, stream);
            continue;
        }
        const int b = (int)(counted % XF_TEAM_SETS);
        XF_T *seg_max = (XF_T *)team->seg_max[b];
        double *seg_sum = team->seg_sum[b];
        /* read before this member's exps overwrite it */
        if (XF_FN(owns_class)(y, j_begin, j_end)) team->z_y[b] = (double)x[y];
        XF_FN(pending_t) pending;
        pending.out = NULL;
        int64_t lag = 0; /* the segments the drain of the row before runs behind */
        const int64_t j_stop = last ? j_begin : j_end;
        for (int64_t j = j_begin; j <= j_stop; j++) {
            if (prev >= 0 && !pending.out) { /* the row before's gradient, once it can begin */
                const int must = j == j_stop || j - j_begin >= XF_SHARED_LEAD_SEGMENTS;
                if (prev_unfolded && (must || xf_team_reached(team, prev_base + thread))) {
                    XF_FN(shared_fold)(team, prev_set, j_begin, j_end, thread, prev_base);
                    prev_unfolded = 0;
                }
                if (!prev_unfolded && (must || xf_team_reached(team, prev_base + n_threads))) {
                    xf_team_await(team, prev_base + n_threads);
                    pending =
                        XF_FN(shared_gradient)(a, &o, team, prev, prev_set, j_begin, j_end, thread);
                    lag = j - j_begin;
                }
            }
            if (j == j_stop) break;
            /* a look-ahead past this member's part would pull in lines that
             * another member writes: it goes to this member's part of the
             * next row instead */
            const int64_t ahead = (j + 1) * XF_SEGMENT;
            const ptrdiff_t skip_l2 =
                ahead + XF_PREFETCH_BYTES / (int64_t)sizeof(XF_T) > part_end ? next_part : 0;
            const ptrdiff_t skip_l1 =
                ahead + XF_PREFETCH_L1_BYTES / (int64_t)sizeof(XF_T) > part_end ? next_part : 0;
            seg_sum[j] = pending.out ? XF_FN(seg_stats_pending)(x, C, j, out, seg_max + j, &pending,
                                                                j - lag, stream, skip_l2, skip_l1)
                                     : XF_FN(seg_stats_drain)(x, C, j, out, seg_max + j, NULL, 0,
                                                              skip_l2, skip_l1);
        }
        /* what the loop did not drain: the row before's segments from
         * `lag` before the last computed (all of them past the last row),
         * its target's entry */
        if (pending.out) XF_FN(write_pending_range)(&pending, C, stream, j_stop - lag, j_end);
        if (last) break;
        prev = r;
        prev_set = b;
        prev_base = counted * n_threads;
        prev_unfolded = thread > 0 && !xf_team_reached(team, prev_base + thread);
        if (!prev_unfolded) XF_FN(shared_fold)(team, b, j_begin, j_end, thread, prev_base);
        counted++;
    }
    if (stream) XF_SFENCE();
}
