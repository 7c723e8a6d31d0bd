/* The row loop: every plan but XF_PLAN_SPLIT, over a range of rows.
 *
 * Per row: its statistics (row_stats.h for the plain loss, the general row
 * otherwise), its end (row_finish.h), then its output row (row_write.h),
 * each logit read from memory once and each output entry written once.
 * XF_PLAN_NARROW first takes whole groups of XF_W rows (rows_narrow.h) and
 * leaves the rest of the range to the plain row.  Each float32 gradient
 * row (always under a softcap, otherwise while what waits fits
 * XF_DEFER_MAX_BYTES) is written while the next row's loops run (a drain:
 * row_write.h), from a second set of scratch buffers (a plain row's exps
 * sit over its own logits in place; any other row without a softcap shares
 * one scratch row with the row that waits).
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* A segment of the general row without a softcap (n elements at x; class
 * weights w, probability targets tp or NULL), its max of z m given; segment
 * j (at j0) of the deferred gradient row `pending` (or NULL) is written
 * meanwhile.  One inlined copy of the loop per drain kind. */
static inline XF_FN(sums_t)
    XF_FN(general_segment)(const XF_T *x, const XF_T *w, const XF_T *tp, int64_t n, XF_T m,
                           const XF_FN(general_opts) * opts, XF_T *e,
                           const XF_FN(pending_t) * pending, int64_t j0, int64_t j, int stream) {
    /* a private copy: the stores to e cannot alias it, so the options
     * stay in registers instead of being reloaded every vector */
    const XF_FN(general_opts) local = *opts;
    /* a fully masked segment's exps are taken against 0: all 0 */
    const XF_T shift = m == -INFINITY ? 0 : m;
    if (!pending) return XF_FN(gen_loop)(x, w, tp, n, shift, &local, e, NULL, 0, NULL, 0);
    /* the pending row has this row's options; every segment of it has its
     * exps in scratch (0 where masked), so the drain needs no special case */
    XF_FN(drain_t) d;
    XF_FN(drain_open)(&d, pending, j0, j, n, stream);
    const XF_FN(sums_t) g =
        stream ? XF_FN(gen_loop)(x, w, tp, n, shift, &local, e, NULL, 0, &d,
                                 XF_SHIFT | XF_DRAIN_STREAM)
               : XF_FN(gen_loop)(x, w, tp, n, shift, &local, e, NULL, 0, &d, XF_SHIFT);
    XF_FN(drain_close)(&d, stream ? XF_SHIFT | XF_DRAIN_STREAM : XF_SHIFT);
    return g;
}

/* The general row's statistics: M, S (as row_stats), EZ = sum exp(z - M) (z - M),
 * and the plain sums; seg_max[j] holds each segment's max of z.  A deferred
 * gradient row `pending` (or NULL) is written meanwhile, but for its
 * target's entry. */
static inline void XF_FN(row_stats_general)(const XF_T *x, const XF_T *tp, int64_t C,
                                            const XF_FN(general_opts) * o, XF_T *e, XF_T *zs,
                                            XF_T *seg_max, double *M_out, double *S_out,
                                            XF_FN(sums_t) * tot, const XF_FN(pending_t) * pending,
                                            int stream) {
    double M = -INFINITY, S = 0.0, EZ = 0.0;
    XF_FN(sums_t) t = {0, 0, 0, 0, 0};
    for (int64_t j0 = 0, j = 0; j0 < C; j0 += XF_SEGMENT, j++) {
        const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
        const XF_T *w = o->w ? o->w + j0 : NULL, *tp_j = tp ? tp + j0 : NULL;
        XF_FN(sums_t) g;
        XF_T m;
        if (o->cap) {
            /* the z loop finds the segment's max of z; chained without shift
             * terms, z is needed only by the segment's own exps */
            g = XF_FN(softcap_segment)(x + j0, w, tp_j, n, &m, o, e ? e + j0 : NULL,
                                       zs ? (o->chain && !o->keep_chain ? zs : zs + j0) : NULL,
                                       pending, j0, j, stream);
        } else {
            m = (XF_T)XF_FN(transform1)(XF_FN(nan_aware_max)(x + j0, n, XF_FN(seg_max)(x + j0, n)),
                                        o);
            g = XF_FN(general_segment)(x + j0, w, tp_j, n, m, o, e ? e + j0 : NULL, pending, j0, j,
                                       stream);
        }
        seg_max[j] = m;
        /* a fully masked segment still adds to the plain sums (its exps are 0) */
        t.wz += g.wz;
        t.wtz += g.wtz;
        t.wt += g.wt;
        if (m == -INFINITY) continue;
        /* S = sum e^{z-M} and EZ = sum e^{z-M} (z-M), moved to a new M:
         * e^{z-M'} (z-M') = e^{M-M'} e^{z-M} ((z-M) + (M-M')) */
        if (isnan(m) || isnan(M)) {
            M = S = EZ = NAN; /* a NaN logit: the row is NaN */
        } else if (m == INFINITY || M == INFINITY) {
            M = INFINITY; /* a +inf logit: lse +inf, loss and gradient NaN */
            S = EZ = NAN;
        } else if (isnan(g.s)) {
            M = S = EZ = NAN;
        } else if (M == -INFINITY) {
            M = m;
            S = g.s;
            EZ = g.ez;
        } else if ((double)m > M) {
            const double delta = M - (double)m, r = exp(delta);
            EZ = r * (EZ + delta * S) + g.ez;
            S = S * r + g.s;
            M = m;
        } else {
            const double delta = (double)m - M, r = exp(delta);
            EZ += r * (g.ez + delta * g.s);
            S += g.s * r;
        }
    }
    t.ez = EZ;
    *M_out = M;
    *S_out = S;
    *tot = t;
}

/* A thread's scratch: a row's exps e, its softcapped z (or chain factors)
 * zs, one max per segment; and a second such set for float32 (a deferred
 * gradient row written during the next row's loops keeps its own segment
 * maxima, and under a softcap its own e and zs; other rows share e). */
typedef struct {
    XF_T *e, *zs, *seg_max;
} XF_FN(scratch_set);

static inline void XF_FN(scratch_sets)(void *scratch, int64_t C, XF_FN(scratch_set) * cur,
                                       XF_FN(scratch_set) * alt) {
    const int64_t c_pad = (C + 15) & ~(int64_t)15;
    const int64_t n_seg_pad = ((C + XF_SEGMENT - 1) / XF_SEGMENT + 15) & ~(int64_t)15;
    cur->e = (XF_T *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    cur->zs = cur->e + c_pad;
    cur->seg_max = cur->zs + c_pad;
    alt->e = cur->seg_max + n_seg_pad;
    alt->zs = alt->e + c_pad;
    alt->seg_max = alt->zs + c_pad;
}

/* Row r's gradient row, ready to write (its target's entry in out_y): the
 * exps in sc times the finish's coefficients end, R its scale. */
static inline XF_FN(pending_t)
    XF_FN(gradient_row)(const xf_rows_args *a, const XF_FN(general_opts) * o, int general,
                        XF_T *out, const XF_T *tp, const XF_FN(scratch_set) * sc, int64_t y,
                        double w_y, double z_y, double M, double log_S, double R,
                        const xf_row_end *end) {
    /* dz/dx = (1/T) dz/du: 1/T folded into the row's coefficients */
    const double it = general ? (double)o->inv_t : 1.0;
    /* chained: the exps carry the chain factor, the shift terms take it
     * from the kept chain factors, and without shift terms (beta = 0, no
     * tp) w goes with them */
    XF_FN(pending_t)
    row = {out,
           sc->e,
           o->keep_chain ? sc->zs : NULL,
           sc->seg_max,
           (general && (!o->chain || o->keep_chain)) ? o->w : NULL,
           tp,
           M,
           log_S,
           R * end->A * it,
           (XF_T)(R * end->alpha * it),
           (XF_T)(R * end->beta * it),
           y,
           0};
    if (y >= 0) {
        /* the target's entry, recomputed in double from the scratch exp
         * rather than read back from a (possibly streamed) store */
        const int64_t jy = y / XF_SEGMENT;
        const double f = XF_FN(seg_factor)(sc->seg_max[jy], M, log_S);
        const double p_y = sc->seg_max[jy] == -INFINITY ? f : (double)sc->e[y] * f;
        const double th_y = z_y * (double)o->inv_cap;
        row.out_y =
            (XF_T)xf_target_entry(end, R, p_y, general ? w_y * end->beta : 0.0,
                                  o->chain ? (double)o->inv_t : it, o->chain, 1.0 - th_y * th_y);
    }
    return row;
}

/* The general row's options for the call (also read, as neutral values,
 * by the plain rows). */
static inline void XF_FN(row_opts)(XF_FN(general_opts) * o, const xf_rows_args *a,
                                   xf_plan_kind plan) {
    XF_FN(general_opts_set)(o, a, plan);
    o->w = (const XF_T *)a->class_weight;
    o->want_wz = a->label_smoothing != 0;
    o->want_ez = a->mode == XF_MODE_EVAL;
    o->chain = (a->mode == XF_MODE_GRAD || a->mode == XF_MODE_SHARD_GRAD) && a->softcap != 0;
    o->keep_chain = o->chain && (a->target_prob != NULL || a->label_smoothing != 0);
}

/* Rows [begin, end) of the call by the plan `plan` (not XF_PLAN_SPLIT). */
static void XF_FN(rows)(const xf_rows_args *a, xf_plan_kind plan, int64_t begin, int64_t end,
                        void *scratch) {
    const int64_t C = a->n_classes;
    const int mode = a->mode, stream = a->streaming;
    const int grad = (mode == XF_MODE_GRAD || mode == XF_MODE_SHARD_GRAD);
    const int want_out = (grad || mode == XF_MODE_SOFTMAX);
    const int general = plan >= XF_PLAN_GENERAL;
    const int prob = a->target_prob != NULL;
    XF_FN(general_opts) o;
    XF_FN(row_opts)(&o, a, plan);
    /* Each gradient row's write waits for the next row's loops, which take
     * the other scratch set, so that its stores leave while the next row's
     * logits stream in.  A softcapped float32 gradient: compute-bound while
     * the row's stats are taken, store-bound while it is written
     * (softcap_segment).  Any other gradient: reads and stores in flight
     * together, as in the streaming bound; only while what waits stays in
     * L2 (XF_DEFER_MAX_BYTES): one scratch row of exps (two under a
     * softcap; below), in place the deferred row's logits (which its
     * gradient overwrites), and its probability targets.  float32 only: the scratch holds a second set
     * for float32 rows (xf_scratch_bytes); float64 rows run on the scalar
     * lane's libm exp on x86, bound by arithmetic, not memory (NEON's
     * float64 layer has not been timed on hardware).
     * In place, a plain gradient row's exps go over its logits, which the
     * gradient overwrites anyway: no scratch row (the row's own lines stay
     * in cache), only its segment maxima in scratch. */
    const int exps_over_x =
        grad && !general && (const void *)a->out == a->x && a->out_stride == a->x_stride;
    /* A row without a softcap (plain into another buffer, or general)
     * shares one scratch row with the row it defers: its loops drain each
     * vector of the waiting row before the new exps take its place
     * (seg_sumexp, gen_loop), so one scratch row waits, not two. */
    const int shared_e = grad && !exps_over_x && o.cap == 0;
    const int64_t waiting_rows =
        exps_over_x ? 1 : (shared_e ? 1 : 2) + ((const void *)a->out == a->x) + prob;
    const int defer =
        sizeof(XF_T) == 4 && (o.chain || (grad && waiting_rows * C * 4 <= XF_DEFER_MAX_BYTES));
    XF_FN(scratch_set) sc, sc_alt;
    XF_FN(scratch_sets)(scratch, C, &sc, &sc_alt);
    if (shared_e) sc_alt.e = sc.e;
    XF_FN(pending_t) pending;
    pending.out = NULL;
#ifdef XF_VI
    if (plan == XF_PLAN_NARROW) begin = XF_FN(rows_narrow)(a, begin, end, (int32_t *)sc.e);
#endif
    for (int64_t r = begin; r < end; r++) {
        const XF_T *x = (const XF_T *)a->x + r * a->x_stride;
        const XF_T *tp = prob ? (const XF_T *)a->target_prob + r * a->target_prob_stride : NULL;
        XF_T *out = a->out ? (XF_T *)a->out + r * a->out_stride : NULL;
        const int64_t y = a->target ? a->target[r] : -1;
        if (a->target && y == a->ignore_index) { /* zero loss, zero gradient */
            xf_row_ignored(a, r);
            if (a->row_argmax) a->row_argmax[r] = XF_FN(row_argmax)(x, C);
            if (mode == XF_MODE_SHARD_STATS) XF_FN(shard_ignored)(a, r);
            if (grad) XF_FN(write_segment)(out, NULL, NULL, NULL, NULL, C, 0, 0, 0, stream);
            continue;
        }
        /* y < 0 from here: probability targets, no targets, or (a shard's
         * passes) a target on another shard */
        double w_y = (a->target && o.w && y >= 0) ? (double)o.w[y] : 1.0;
        /* transform1 is the z loop's code: z_y is the z the exps see (read
         * before the exps may overwrite the row) */
        const double z_y = (prob || y < 0) ? 0.0
                           : general       ? XF_FN(transform1)(x[y], &o)
                                           : (double)x[y];
        XF_FN(scratch_set) rs = sc; /* this row's exps: in scratch, or over the row */
        if (exps_over_x) rs.e = out;
        double M, S;
        XF_FN(sums_t) sums = {0, 0, 0, 0, 0};
        if (general) {
            XF_FN(row_stats_general)
            (x, tp, C, &o, (want_out || o.cap) ? sc.e : NULL, o.chain ? sc.zs : NULL, sc.seg_max,
             &M, &S, &sums, pending.out ? &pending : NULL, stream);
        } else {
            XF_FN(row_stats)
            (x, C, want_out ? rs.e : NULL, want_out ? rs.seg_max : NULL, &M, &S,
             pending.out ? &pending : NULL, stream);
        }
        if (pending.out) { /* the deferred row is written: its target's entry last */
            if (pending.y >= 0) pending.out[pending.y] = pending.out_y;
            pending.out = NULL;
        }
        double log_S = log(S);
        /* H = sum p (lse - z) = log S - sum e^{z-M} (z-M) / S */
        if (a->row_entropy) a->row_entropy[r] = log_S - sums.ez / S;
        if (a->row_argmax) a->row_argmax[r] = XF_FN(row_argmax)(x, C);
        xf_row_stats st = {M, log_S, z_y, sums.wz, sums.wtz, sums.wt};
        if (mode == XF_MODE_SHARD_STATS) {
            XF_FN(shard_store)(a, r, &st);
            continue;
        }
        /* a shard's row ends, and its gradient is written, against the
         * whole row's statistics: the exps in scratch are relative to this
         * shard's segment maxima, which seg_factor() turns into global
         * probabilities against the global M and log S */
        const int64_t y_end =
            mode == XF_MODE_SHARD_GRAD ? XF_FN(shard_global)(a, r, y, &st, &w_y) : y;
        M = st.M;
        log_S = st.log_S;
        if (a->row_lse) a->row_lse[r] = xf_row_lse(M, log_S);
        const xf_row_end fin = xf_row_finish(a, r, y_end, w_y, &st);
        xf_row_store(a, r, &fin);
        /* a row with every class masked has no distribution: NaN out, as PyTorch */
        if (M == -INFINITY) M = NAN;
        if (grad) {
            const XF_FN(pending_t) row = XF_FN(gradient_row)(
                a, &o, general, out, tp, &rs, y, w_y, z_y, M, log_S, xf_row_scale(a, r), &fin);
            if (defer) { /* written during the next row's loops (or after the last row) */
                const XF_FN(scratch_set) t = sc;
                pending = row;
                sc = sc_alt;
                sc_alt = t;
            } else {
                XF_FN(write_pending)(&row, C, stream);
            }
        } else if (mode == XF_MODE_SOFTMAX) {
            XF_FN(write_row)
            (out, sc.e, sc.seg_max, NULL, NULL, NULL, C, M, log_S, 1.0, 0, 0, stream);
        } else if (mode == XF_MODE_LOG_SOFTMAX) {
            XF_FN(write_log_softmax_row)(out, x, C, M, log_S);
        }
    }
    if (pending.out) XF_FN(write_pending)(&pending, C, stream);
    if (stream) XF_SFENCE();
}
