/* Writing a row's output from the scratch exps of its pass.
 *
 * Computes out = exp(z - lse) a - w (alpha tp + beta) segment by segment,
 * from exps kept relative to each segment's max (so exp(m_j - lse) turns
 * them into probabilities), with the target's entry written apart (the
 * callers, from row_finish.h's coefficients); and out = x - lse for the
 * log-softmax.  Streaming (non-temporal) stores when asked: a gradient
 * buffer too large to stay cached costs no read-for-ownership.
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* `lanes` elements at p as a vector (the rest 0). */
static XF_ALWAYS_INLINE XF_V XF_FN(load)(const XF_T *p, int64_t lanes) {
    return lanes == XF_W ? V_LOADU(p) : V_LOAD_TAIL(p, lanes, 0);
}

/* one vector of write_segment's formula from `lanes` elements at offset i */
static XF_ALWAYS_INLINE XF_V XF_FN(segment_value)(const XF_T *e, const XF_T *w, const XF_T *tp,
                                                  const XF_T *d, int64_t i, int64_t lanes, XF_V fv,
                                                  XF_V av, XF_V bv, int shift) {
    XF_V v = e ? V_MUL(XF_FN(load)(e + i, lanes), fv) : V_SET1(0);
    if (shift) {
        XF_V b = tp ? V_FMA(XF_FN(load)(tp + i, lanes), av, bv) : bv;
        if (w) b = V_MUL(b, XF_FN(load)(w + i, lanes));
        v = d ? V_FNMA(b, XF_FN(load)(d + i, lanes), v) : V_SUB(v, b);
    }
    return v;
}

/* Elements before out's first vector-aligned one (at most n), which
 * streaming stores cannot write: 0 unless streaming. */
static XF_ALWAYS_INLINE int64_t XF_FN(stream_head)(const XF_T *out, int64_t n, int stream) {
    if (!stream || XF_VBYTES <= (int)sizeof(XF_T)) return 0;
    const int64_t mis = (int64_t)(((uintptr_t)out % XF_VBYTES) / sizeof(XF_T));
    return mis == 0 ? 0 : (XF_W - mis < n) ? XF_W - mis : n;
}

/* out[i] = e[i] f - w[i] (alpha tp[i] + beta) d[i] for i in [0, n), every
 * factor optional: e == NULL means 0, w == NULL 1, tp == NULL 0, d == NULL
 * 1 (d: the softcap's chain factors dz/du = 1 - (z/c)^2, by which e is
 * then multiplied already: softcap.h).  Always inlined, so each call site
 * gets only the arithmetic its constant arguments leave (the plain
 * gradient is e f).  Every element gets the same arithmetic whatever the
 * alignment and the kind of store. */
static XF_ALWAYS_INLINE void XF_FN(write_segment)(XF_T *out, const XF_T *e, const XF_T *w,
                                                  const XF_T *tp, const XF_T *d, int64_t n, XF_T f,
                                                  XF_T alpha, XF_T beta, int stream) {
    const XF_V fv = V_SET1(f), av = V_SET1(alpha), bv = V_SET1(beta);
    const int shift = (w != NULL || tp != NULL || beta != 0);
    int64_t i = XF_FN(stream_head)(out, n, stream);
    if (i) V_STORE_TAIL(out, XF_FN(segment_value)(e, w, tp, d, 0, i, fv, av, bv, shift), i);
    if (stream && XF_VBYTES > (int)sizeof(XF_T)) {
        for (; i + XF_W <= n; i += XF_W)
            V_STREAM(out + i, XF_FN(segment_value)(e, w, tp, d, i, XF_W, fv, av, bv, shift));
    } else {
        for (; i + XF_W <= n; i += XF_W)
            V_STOREU(out + i, XF_FN(segment_value)(e, w, tp, d, i, XF_W, fv, av, bv, shift));
    }
    if (i < n)
        V_STORE_TAIL(out + i, XF_FN(segment_value)(e, w, tp, d, i, n - i, fv, av, bv, shift),
                     n - i);
}

/* A plain segment that has no exps (fully masked, or an ignored row's): f
 * itself, 0 or NaN (a row with no distribution), as write_segment's shift
 * term, so that it rounds as the exps' path would. */
static XF_ALWAYS_INLINE void XF_FN(write_constant)(XF_T *out, int64_t n, double f, int stream) {
    XF_FN(write_segment)(out, NULL, NULL, NULL, NULL, n, 0, 0, (XF_T)-f, stream);
}

/* The factor exp(m_j - lse) that turns segment j's scratch exps into
 * probabilities, as (m_j - M) - log S (both parts accurate in double);
 * 0 for a fully masked segment, NaN when the row has no distribution. */
static inline double XF_FN(seg_factor)(XF_T m_j, double M, double log_S) {
    if (m_j == -INFINITY) return (isnan(M) || isnan(log_S)) ? NAN : 0.0;
    return exp(((double)m_j - M) - log_S);
}

/* out = exp(z - lse) * a - w*(alpha*tp + beta) (the shift times the
 * softcap's chain factors d when d is not NULL; the exps carry theirs),
 * segment by segment from the scratch exps: segments [j_begin, j_end). */
static inline void XF_FN(write_row_range)(XF_T *out, const XF_T *e, const XF_T *seg_max,
                                          const XF_T *w, const XF_T *tp, const XF_T *d, int64_t C,
                                          double M, double log_S, double a, XF_T alpha, XF_T beta,
                                          int stream, int64_t j_begin, int64_t j_end) {
    for (int64_t j = j_begin, j0 = j_begin * XF_SEGMENT; j < j_end && j0 < C;
         j0 += XF_SEGMENT, j++) {
        const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
        const double f = XF_FN(seg_factor)(seg_max[j], M, log_S) * a;
        const XF_T *tp_j = tp ? tp + j0 : NULL, *w_j = w ? w + j0 : NULL;
        const XF_T *d_j = d ? d + j0 : NULL;
        if (!w_j && !tp_j && beta == 0) {
            /* the plain path never computes a masked segment's exps: write f
             * itself there (0, or NaN when the row has no distribution) */
            if (seg_max[j] != -INFINITY)
                XF_FN(write_segment)(out + j0, e + j0, NULL, NULL, NULL, n, (XF_T)f, 0, 0, stream);
            else
                XF_FN(write_constant)(out + j0, n, f, stream);
        } else {
            /* the general path stored every exp (0 in a masked segment) */
            XF_FN(write_segment)(out + j0, e + j0, w_j, tp_j, d_j, n, (XF_T)f, alpha, beta, stream);
        }
    }
}

/* write_row_range over the whole row. */
static inline void XF_FN(write_row)(XF_T *out, const XF_T *e, const XF_T *seg_max, const XF_T *w,
                                    const XF_T *tp, const XF_T *d, int64_t C, double M,
                                    double log_S, double a, XF_T alpha, XF_T beta, int stream) {
    XF_FN(write_row_range)
    (out, e, seg_max, w, tp, d, C, M, log_S, a, alpha, beta, stream, 0,
     (C + XF_SEGMENT - 1) / XF_SEGMENT);
}

/* out = x - lse, computed as (x - M) - log S so that a large M costs no
 * precision (x - M is exact when x is near M). */
static inline void XF_FN(write_log_softmax_row)(XF_T *out, const XF_T *x, int64_t C, double M,
                                                double log_S) {
    const XF_V mv = V_SET1((XF_T)M), lv = V_SET1((XF_T)log_S);
    int64_t i = 0;
    for (; i + XF_W <= C; i += XF_W) V_STOREU(out + i, V_SUB(V_SUB(V_LOADU(x + i), mv), lv));
    if (i < C) V_STORE_TAIL(out + i, V_SUB(V_SUB(V_LOAD_TAIL(x + i, C - i, 0), mv), lv), C - i);
}

/* An output row ready to be written: what write_row needs, from the row's
 * own scratch (chain_factors: the softcap's, or NULL), and its target's
 * entry, stored last.  A deferred gradient row waits in one while the
 * next row is computed (rows.h, XF_DEFER_MAX_BYTES).  out == NULL: none. */
typedef struct {
    XF_T *out;
    const XF_T *e, *chain_factors, *seg_max, *w, *tp;
    double M, log_S, a;
    XF_T alpha, beta;
    int64_t y; /* < 0: no target entry */
    XF_T out_y;
} XF_FN(pending_t);

/* Segment j's factor of the pending row p (write_row's f). */
static inline double XF_FN(pending_factor)(const XF_FN(pending_t) * p, int64_t j) {
    return XF_FN(seg_factor)(p->seg_max[j], p->M, p->log_S) * p->a;
}

/* Writes segments [j_begin, j_end) of a gradient row, then its target's
 * entry (when p->y >= 0). */
static inline void XF_FN(write_pending_range)(const XF_FN(pending_t) * p, int64_t C, int stream,
                                              int64_t j_begin, int64_t j_end) {
    XF_FN(write_row_range)
    (p->out, p->e, p->seg_max, p->w, p->tp, p->chain_factors, C, p->M, p->log_S, p->a, p->alpha,
     p->beta, stream, j_begin, j_end);
    if (p->y >= 0) p->out[p->y] = p->out_y;
}

/* Writes a gradient row whole, its target's entry last. */
static inline void XF_FN(write_pending)(const XF_FN(pending_t) * p, int64_t C, int stream) {
    XF_FN(write_pending_range)(p, C, stream, 0, (C + XF_SEGMENT - 1) / XF_SEGMENT);
}

#ifndef XENTFAST_DRAIN_FLAGS
#define XENTFAST_DRAIN_FLAGS
/* How a drain writes (flags, constant per inlined loop; general_row.h adds
 * the softcap's) */
#define XF_SHIFT        1 /* shift terms (targets, smoothing): chain factors kept */
#define XF_DRAIN_STREAM 2 /* the deferred row's streaming stores */
#endif

/* A deferred gradient segment on its way out, written a vector at a time
 * inside another row's loops (row_stats.h, softcap.h): elements [k, n) of out still to
 * write, by write_segment's formula from the scratch of their own row. */
typedef struct {
    XF_T *out;
    const XF_T *e, *w, *tp, *chain_factors;
    XF_T f, alpha, beta;
    int64_t k, n;
} XF_FN(drain_t);

/* One whole vector of the drain, if one is left (how: XF_SHIFT,
 * XF_DRAIN_STREAM). */
static XF_ALWAYS_INLINE void XF_FN(drain_step)(XF_FN(drain_t) * d, const int how) {
    if (d->k + XF_W > d->n) return;
    const XF_V g =
        XF_FN(segment_value)(d->e, d->w, d->tp, d->chain_factors, d->k, XF_W, V_SET1(d->f),
                             V_SET1(d->alpha), V_SET1(d->beta), how & XF_SHIFT);
    if (how & XF_DRAIN_STREAM)
        V_STREAM(d->out + d->k, g);
    else
        V_STOREU(d->out + d->k, g);
    d->k += XF_W;
}

/* Segment j (at j0, n elements) of the deferred row p as a drain, its
 * unaligned head written (as write_segment does): the arithmetic of
 * write_row, bit for bit. */
static XF_ALWAYS_INLINE void XF_FN(drain_open)(XF_FN(drain_t) * d, const XF_FN(pending_t) * p,
                                               int64_t j0, int64_t j, int64_t n, int stream) {
    d->out = p->out + j0;
    d->e = p->e + j0;
    d->chain_factors = p->chain_factors ? p->chain_factors + j0 : NULL;
    d->w = p->w ? p->w + j0 : NULL;
    d->tp = p->tp ? p->tp + j0 : NULL;
    d->f = (XF_T)XF_FN(pending_factor)(p, j);
    d->alpha = p->alpha;
    d->beta = p->beta;
    d->n = n;
    d->k = XF_FN(stream_head)(d->out, n, stream);
    if (d->k) XF_FN(write_segment)
    (d->out, d->e, d->w, d->tp, d->chain_factors, d->k, d->f, d->alpha, d->beta, 0);
}

/* The rest of the drain (once: a second close writes nothing). */
static XF_ALWAYS_INLINE void XF_FN(drain_close)(XF_FN(drain_t) * d, const int how) {
    const int64_t k = d->k;
    if (k < d->n) XF_FN(write_segment)
    (d->out + k, d->e + k, d->w ? d->w + k : NULL, d->tp ? d->tp + k : NULL,
     d->chain_factors ? d->chain_factors + k : NULL, d->n - k, d->f, d->alpha, d->beta,
     how & XF_DRAIN_STREAM);
    d->k = d->n;
}

/* `steps` (1 or 2) vectors of the drain before exps are stored up to `stored_end` of
 * a scratch row the drain may still read (rows.h: a row without a softcap
 * shares its scratch row with the row it defers): the drain's head keeps it
 * ahead, and near the end, where a step cannot be taken, it is closed
 * before the store overwrites what it has yet to read. */
static XF_ALWAYS_INLINE void XF_FN(drain_before_store)(XF_FN(drain_t) * d, const int how,
                                                       const int steps, int64_t stored_end) {
    XF_FN(drain_step)(d, how);
    if (steps == 2) XF_FN(drain_step)(d, how);
    if (d->k < stored_end) XF_FN(drain_close)(d, how);
}
