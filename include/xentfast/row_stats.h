/* Online segment statistics of a row: its max and sum of exps.
 *
 * Computes, for a row of C logits cut into fixed segments of XF_SEGMENT,
 * each segment's max m_j and s_j = sum exp(x - m_j) (the exps kept in
 * scratch when an output row is wanted), folded in segment order into the
 * row's (M, S), lse = M + log S, in double (Milakov & Gimelshein 2018,
 * "Online normalizer calculation for softmax").  Each logit is read from
 * memory once; the exps are taken from L1 while the next segment streams
 * in (prefetch), and the previous row's gradient (a drain) leaves
 * meanwhile; with no exps to keep (the loss alone), each segment's max is
 * taken in the previous segment's exp loop instead.  Used by the plain,
 * split and shared plans, and for the general row's max; the general
 * row's own sums are in general_row.h.
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* Max over n elements.  NaN lanes may or may not win here; a NaN in the row
 * still reaches the result through exp(x - m) in the sum. */
static inline XF_T XF_FN(seg_max)(const XF_T *x, int64_t n) {
    XF_V m0 = V_SET1(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 4 * XF_W <= n; i += 4 * XF_W) {
        m0 = V_MAX(m0, V_LOADU(x + i));
        m1 = V_MAX(m1, V_LOADU(x + i + XF_W));
        m2 = V_MAX(m2, V_LOADU(x + i + 2 * XF_W));
        m3 = V_MAX(m3, V_LOADU(x + i + 3 * XF_W));
    }
    for (; i + XF_W <= n; i += XF_W) m0 = V_MAX(m0, V_LOADU(x + i));
    if (i < n) m1 = V_MAX(m1, V_LOAD_TAIL(x + i, n - i, -INFINITY));
    return V_HMAX(V_MAX(V_MAX(m0, m1), V_MAX(m2, m3)));
}

/* Prefetch the cache lines of `vectors` vectors at p, XF_PREFETCH_BYTES
 * ahead into L2 and XF_PREFETCH_L1_BYTES ahead into L1 (for the scalar
 * build, once per 64 bytes of x), each moved on by skip_l2 and skip_l1
 * bytes (0 but in shared rows, whose threads look ahead into their own
 * part of the next row: rows_shared.h).  Prefetches never fault, so
 * running past the end of the array is harmless. */
static XF_ALWAYS_INLINE void XF_FN(prefetch_ahead)(const XF_T *p, int vectors, ptrdiff_t skip_l2,
                                                   ptrdiff_t skip_l1) {
    const char *a = (const char *)p + XF_PREFETCH_BYTES + skip_l2;
    const char *a1 = (const char *)p + XF_PREFETCH_L1_BYTES + skip_l1;
    const int bytes = vectors * XF_W * (int)sizeof(XF_T);
    if (bytes < 64) {
        if (((uintptr_t)a & 63) < (uintptr_t)bytes) {
            XF_PREFETCH(a);
            XF_PREFETCH_L1(a1);
        }
        return;
    }
    for (int b = 0; b < bytes; b += 64) {
        XF_PREFETCH(a + b);
        XF_PREFETCH_L1(a1 + b);
    }
}

/* Sum of exp(x - m) over n elements (m their max: arguments <= 0 or NaN),
 * in seg_sumexp's lane order, without stores (the loss alone), with the
 * max of the next segment (nn <= n elements at xn; nn = 0: none) taken in
 * the same loop: each step loads two of its vectors while it takes two
 * exps of this segment, and *m_next gets seg_max's value (up to which NaN
 * lane wins, which nan_aware_max and the NaN sum settle alike). */
static XF_ALWAYS_INLINE double XF_FN(seg_sumexp_next_max)(const XF_T *x, int64_t n, XF_T m,
                                                          const XF_T *xn, int64_t nn,
                                                          XF_T *m_next) {
    const XF_V mv = V_SET1(m);
    XF_V s0 = V_SET1(0), s1 = s0, s2 = s0, s3 = s0;
    XF_V a0 = V_SET1(-INFINITY), a1 = a0;
    int64_t i = 0;
    for (; i + 2 * XF_W <= nn; i += 2 * XF_W) {
        XF_FN(prefetch_ahead)(xn + i, 2, 0, 0);
        a0 = V_MAX(a0, V_LOADU(xn + i));
        a1 = V_MAX(a1, V_LOADU(xn + i + XF_W));
        s0 = V_ADD(s0, V_EXP_NONPOS(V_SUB(V_LOADU(x + i), mv)));
        s1 = V_ADD(s1, V_EXP_NONPOS(V_SUB(V_LOADU(x + i + XF_W), mv)));
    }
    const XF_T head = V_HMAX(V_MAX(a0, a1));
    const XF_T rest = i < nn ? XF_FN(seg_max)(xn + i, nn - i) : head;
    *m_next = head > rest ? head : rest;
    for (; i + 2 * XF_W <= n; i += 2 * XF_W) {
        XF_FN(prefetch_ahead)(x + i, 2, 0, 0);
        s0 = V_ADD(s0, V_EXP_NONPOS(V_SUB(V_LOADU(x + i), mv)));
        s1 = V_ADD(s1, V_EXP_NONPOS(V_SUB(V_LOADU(x + i + XF_W), mv)));
    }
    for (; i + XF_W <= n; i += XF_W) s2 = V_ADD(s2, V_EXP_NONPOS(V_SUB(V_LOADU(x + i), mv)));
    if (i < n) s3 = V_ADD(s3, V_EXP_NONPOS(V_SUB(V_LOAD_TAIL(x + i, n - i, -INFINITY), mv)));
    return V_HSUM(V_ADD(V_ADD(s0, s1), V_ADD(s2, s3)));
}

/* Sum of exp(x - m) over n elements (m their max: arguments <= 0 or NaN), in
 * a fixed lane order; the exps are stored to e (without e: the sum of
 * seg_sumexp_next_max), and a drain (or NULL) advances a vector per vector
 * of them.  The drain runs
 * here, not in seg_max's loop: that loop reads from memory, this one from
 * L1, so the deferred row's stores leave while the next segment's lines
 * stream in (prefetch).  The drain may read the very scratch the exps go to
 * (rows.h: a plain row shares one scratch row with the row it defers), so
 * each drained vector is read before the exps overwrite its place, and the
 * drain is closed before the last vectors and the tail are stored. */
static XF_ALWAYS_INLINE double XF_FN(seg_sumexp)(const XF_T *x, int64_t n, XF_T m, XF_T *e,
                                                 XF_FN(drain_t) * drain, const int how,
                                                 ptrdiff_t skip_l2, ptrdiff_t skip_l1) {
    if (!e) { /* skips are 0 here: only the shared rows pass others, and they keep exps */
        XF_T unused;
        return XF_FN(seg_sumexp_next_max)(x, n, m, NULL, 0, &unused);
    }
    const XF_V mv = V_SET1(m);
    XF_V s0 = V_SET1(0), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 2 * XF_W <= n; i += 2 * XF_W) {
        XF_FN(prefetch_ahead)(x + i, 2, skip_l2, skip_l1);
        XF_V e0 = V_EXP_NONPOS(V_SUB(V_LOADU(x + i), mv));
        XF_V e1 = V_EXP_NONPOS(V_SUB(V_LOADU(x + i + XF_W), mv));
        /* the deferred row's stores, a vector per vector of exps */
        if (drain) XF_FN(drain_before_store)(drain, how, 2, i + 2 * XF_W);
        V_STOREU(e + i, e0);
        V_STOREU(e + i + XF_W, e1);
        s0 = V_ADD(s0, e0);
        s1 = V_ADD(s1, e1);
    }
    if (drain) XF_FN(drain_close)(drain, how);
    for (; i + XF_W <= n; i += XF_W) {
        XF_V e0 = V_EXP_NONPOS(V_SUB(V_LOADU(x + i), mv));
        V_STOREU(e + i, e0);
        s2 = V_ADD(s2, e0);
    }
    if (i < n) {
        XF_V e0 = V_EXP_NONPOS(V_SUB(V_LOAD_TAIL(x + i, n - i, -INFINITY), mv));
        V_STORE_TAIL(e + i, e0, n - i);
        s3 = V_ADD(s3, e0);
    }
    return V_HSUM(V_ADD(V_ADD(s0, s1), V_ADD(s2, s3)));
}

/* Folds segment (m, s) into the row's (M, S), in segment order. */
static inline void XF_FN(combine)(double *M, double *S, XF_T m, double s) {
    if (m == -INFINITY) return; /* a fully masked segment adds nothing */
    if (isnan(m) || isnan(*M)) {
        *M = NAN; /* a NaN logit: the row is NaN */
        *S = NAN;
    } else if (m == INFINITY || *M == INFINITY) {
        *M = INFINITY; /* a +inf logit: lse +inf, loss and gradient NaN */
        *S = NAN;
    } else if (isnan(s)) {
        *M = NAN;
        *S = NAN;
    } else if (*M == -INFINITY) {
        *M = m;
        *S = s;
    } else if ((double)m > *M) {
        *S = *S * exp(*M - (double)m) + s;
        *M = m;
    } else {
        /* also taken for NaN m, whose s is NaN and poisons S */
        *S += s * exp((double)m - *M);
    }
}

/* A segment's max m made exact about NaN: the vector max may skip NaN, so
 * when m is infinite (a fully masked segment, or a +inf logit: both rare)
 * the segment is scanned and NaN returned if it holds one. */
static inline XF_T XF_FN(nan_aware_max)(const XF_T *x, int64_t n, XF_T m) {
    if (!isinf(m)) return m;
    for (int64_t i = 0; i < n; i++)
        if (isnan(x[i])) return (XF_T)NAN;
    return m;
}

/* (m, s) of segment j of a row (s = 0 for a fully masked segment), a drain
 * (or NULL) advanced meanwhile; skip_l2, skip_l1: prefetch_ahead's. */
static XF_ALWAYS_INLINE double XF_FN(seg_stats_drain)(const XF_T *x, int64_t C, int64_t j, XF_T *e,
                                                      XF_T *m, XF_FN(drain_t) * drain,
                                                      const int how, ptrdiff_t skip_l2,
                                                      ptrdiff_t skip_l1) {
    const int64_t j0 = j * XF_SEGMENT;
    const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
    *m = XF_FN(nan_aware_max)(x + j0, n, XF_FN(seg_max)(x + j0, n));
    if (*m == -INFINITY) return 0.0;
    if (isnan(*m)) return NAN;
    return XF_FN(seg_sumexp)(x + j0, n, *m, e ? e + j0 : NULL, drain, how, skip_l2, skip_l1);
}

static inline double XF_FN(seg_stats)(const XF_T *x, int64_t C, int64_t j, XF_T *e, XF_T *m) {
    return XF_FN(seg_stats_drain)(x, C, j, e, m, NULL, 0, 0, 0);
}

/* seg_stats, with segment jp of the deferred plain gradient row p (no
 * shift terms: e f) written meanwhile, the arithmetic of write_row. */
static inline double XF_FN(seg_stats_pending)(const XF_T *x, int64_t C, int64_t j, XF_T *e, XF_T *m,
                                              const XF_FN(pending_t) * p, int64_t jp, int stream,
                                              ptrdiff_t skip_l2, ptrdiff_t skip_l1) {
    const int64_t jp0 = jp * XF_SEGMENT;
    const int64_t np = (C - jp0 < XF_SEGMENT) ? C - jp0 : XF_SEGMENT;
    if (p->seg_max[jp] == -INFINITY) { /* a masked segment: no exps */
        XF_FN(write_constant)(p->out + jp0, np, XF_FN(pending_factor)(p, jp), stream);
        return XF_FN(seg_stats_drain)(x, C, j, e, m, NULL, 0, skip_l2, skip_l1);
    }
    XF_FN(drain_t) d;
    XF_FN(drain_open)(&d, p, jp0, jp, np, stream);
    const double s =
        stream ? XF_FN(seg_stats_drain)(x, C, j, e, m, &d, XF_DRAIN_STREAM, skip_l2, skip_l1)
               : XF_FN(seg_stats_drain)(x, C, j, e, m, &d, 0, skip_l2, skip_l1);
    XF_FN(drain_close)(&d, stream ? XF_DRAIN_STREAM : 0);
    return s;
}

/* The loss alone's (M, S) of a row, as row_stats computes them without
 * exps to keep: each segment's max taken during the previous segment's
 * exps (seg_sumexp_next_max), bit for bit the same, 1-5% faster from DRAM
 * on one thread and on two (docs/design.md, "Against the memory bounds"). */
static inline void XF_FN(row_stats_sums)(const XF_T *x, int64_t C, double *M_out, double *S_out) {
    double M = -INFINITY, S = 0.0;
    int64_t n = C < XF_SEGMENT ? C : XF_SEGMENT;
    XF_T m = XF_FN(seg_max)(x, n);
    for (int64_t j0 = 0; j0 < C; j0 += XF_SEGMENT) {
        n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
        const XF_T *xn = x + j0 + n;
        const int64_t nn = (C - j0 - n < XF_SEGMENT) ? C - j0 - n : XF_SEGMENT;
        m = XF_FN(nan_aware_max)(x + j0, n, m);
        XF_T m_next = -INFINITY;
        double s;
        if (m == -INFINITY || isnan(m)) { /* as seg_stats_drain */
            s = m == -INFINITY ? 0.0 : NAN;
            if (nn > 0) m_next = XF_FN(seg_max)(xn, nn);
        } else {
            s = XF_FN(seg_sumexp_next_max)(x + j0, n, m, xn, nn, &m_next);
        }
        XF_FN(combine)(&M, &S, m, s);
        m = m_next;
    }
    *M_out = M;
    *S_out = S;
}

/* (M, S) of a row: M its max, S = sum exp(x - M), so lse = M + log S.
 * With e != NULL the exps of segment j, relative to its own max
 * seg_max[j], are left in e (segments whose max is -inf are not written).
 * The deferred plain gradient row `pending` (or NULL), of the same width,
 * is written meanwhile, but for its target's entry. */
static inline void XF_FN(row_stats)(const XF_T *x, int64_t C, XF_T *e, XF_T *seg_max, double *M_out,
                                    double *S_out, const XF_FN(pending_t) * pending, int stream) {
    if (!e && !pending) {
        XF_FN(row_stats_sums)(x, C, M_out, S_out);
        return;
    }
    double M = -INFINITY, S = 0.0;
    for (int64_t j = 0; j * XF_SEGMENT < C; j++) {
        XF_T m;
        const double s = pending
                             ? XF_FN(seg_stats_pending)(x, C, j, e, &m, pending, j, stream, 0, 0)
                             : XF_FN(seg_stats)(x, C, j, e, &m);
        if (seg_max) seg_max[j] = m;
        XF_FN(combine)(&M, &S, m, s);
    }
    *M_out = M;
    *S_out = S;
}

/* Index of the first maximum of the raw logits (first NaN if any). */
static inline int64_t XF_FN(row_argmax)(const XF_T *x, int64_t C) {
    XF_T best = -INFINITY;
    int64_t arg = 0;
    for (int64_t j0 = 0; j0 < C; j0 += XF_SEGMENT) {
        const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
        const XF_T m = XF_FN(seg_max)(x + j0, n);
        if (m > best) {
            best = m;
            arg = j0;
        }
    }
    for (int64_t i = 0; i < C; i++)
        if (isnan(x[i])) return i;
    for (int64_t i = arg; i < C; i++)
        if (x[i] == best) return i;
    return 0;
}
