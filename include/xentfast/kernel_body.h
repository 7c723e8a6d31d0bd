/* Generic per-row kernels, instantiated once per (dtype, ISA).
 *
 * Deliberately no include guard: an ISA file defines the vector layer below,
 * includes this file, undefines the layer and may include it again for
 * another dtype.  Required macros:
 *   XF_T            element type (float or double)
 *   XF_V, XF_W      vector type and its number of lanes
 *   XF_VBYTES       vector size in bytes (alignment of streaming stores)
 *   XF_FN(name)     function name for this instantiation
 *   V_SET1(a) V_LOADU(p) V_STOREU(p,v) V_STREAM(p,v) (aligned, non-temporal)
 *   V_LOAD_TAIL(p,n,fill) V_STORE_TAIL(p,v,n)   lanes [0,n), n < XF_W
 *   V_ADD V_SUB V_MUL V_MAX V_FMA(a,b,c)=a*b+c  V_EXP
 *   V_HMAX(v) -> XF_T   V_HSUM(v) -> double   XF_SFENCE()
 *
 * Per row: one online (max, sum-exp) pass over fixed segments of
 * XF_SEGMENT elements (max of the segment from memory, then exp(x - m) of
 * the same segment from L1, kept in per-thread scratch when an output row
 * is wanted), combined across segments in double (Milakov & Gimelshein
 * 2018, "Online normalizer calculation for softmax"); then, for an output
 * row, one pass over the scratch that writes exp(x - lse) * scale - shift.
 * Each logit is read from memory once and each output written once.
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

/* Sum of exp(x - m) over n elements, in a fixed lane order; the exps are
 * stored to e when e is not NULL. */
static inline double XF_FN(seg_sumexp)(const XF_T *x, int64_t n, XF_T m, XF_T *e) {
    const XF_V mv = V_SET1(m);
    XF_V s0 = V_SET1(0), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    if (e) {
        for (; i + 2 * XF_W <= n; i += 2 * XF_W) {
            XF_V e0 = V_EXP(V_SUB(V_LOADU(x + i), mv));
            XF_V e1 = V_EXP(V_SUB(V_LOADU(x + i + XF_W), mv));
            V_STOREU(e + i, e0);
            V_STOREU(e + i + XF_W, e1);
            s0 = V_ADD(s0, e0);
            s1 = V_ADD(s1, e1);
        }
        for (; i + XF_W <= n; i += XF_W) {
            XF_V e0 = V_EXP(V_SUB(V_LOADU(x + i), mv));
            V_STOREU(e + i, e0);
            s2 = V_ADD(s2, e0);
        }
        if (i < n) {
            XF_V e0 = V_EXP(V_SUB(V_LOAD_TAIL(x + i, n - i, -INFINITY), mv));
            V_STORE_TAIL(e + i, e0, n - i);
            s3 = V_ADD(s3, e0);
        }
    } else {
        for (; i + 2 * XF_W <= n; i += 2 * XF_W) {
            s0 = V_ADD(s0, V_EXP(V_SUB(V_LOADU(x + i), mv)));
            s1 = V_ADD(s1, V_EXP(V_SUB(V_LOADU(x + i + XF_W), mv)));
        }
        for (; i + XF_W <= n; i += XF_W) s2 = V_ADD(s2, V_EXP(V_SUB(V_LOADU(x + i), mv)));
        if (i < n) s3 = V_ADD(s3, V_EXP(V_SUB(V_LOAD_TAIL(x + i, n - i, -INFINITY), mv)));
    }
    return V_HSUM(V_ADD(V_ADD(s0, s1), V_ADD(s2, s3)));
}

/* (M, S) of a row: M its max, S = sum exp(x - M), so lse = M + log S.
 * With e != NULL the exps of segment j, relative to its own max
 * seg_max[j], are left in e (segments whose max is -inf are not written). */
static inline void XF_FN(row_stats)(const XF_T *x, int64_t C, XF_T *e, XF_T *seg_max,
                                   double *M_out, double *S_out) {
    double M = -INFINITY, S = 0.0;
    for (int64_t j0 = 0, j = 0; j0 < C; j0 += XF_SEGMENT, j++) {
        const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
        const XF_T m = XF_FN(seg_max)(x + j0, n);
        if (seg_max) seg_max[j] = m;
        if (m == -INFINITY) continue; /* a fully masked segment adds nothing */
        const double s = XF_FN(seg_sumexp)(x + j0, n, m, e ? e + j0 : NULL);
        if (M == -INFINITY) {
            M = m;
            S = s;
        } else if ((double)m > M) {
            S = S * exp(M - (double)m) + s;
            M = m;
        } else {
            /* also taken for NaN m, whose s is NaN and poisons S */
            S += s * exp((double)m - M);
        }
    }
    *M_out = M;
    *S_out = S;
}

/* out[i] = e[i]*f - shift for i in [0, n); e == NULL means e[i] = 0.
 * Streaming (non-temporal) stores when asked: the aligned body bypasses the
 * cache, so a gradient buffer that is not re-read soon costs no
 * read-for-ownership.  Every element gets the same arithmetic either way. */
static inline void XF_FN(write_scaled)(XF_T *out, const XF_T *e, int64_t n, XF_T f,
                                       XF_T shift, int stream) {
    const XF_V fv = V_SET1(f), sv = V_SET1(shift);
    int64_t i = 0;
    if (stream && XF_VBYTES > (int)sizeof(XF_T)) {
        const int64_t mis = (int64_t)(((uintptr_t)out % XF_VBYTES) / sizeof(XF_T));
        if (mis) {
            const int64_t head = (XF_W - mis < n) ? XF_W - mis : n;
            XF_V v = e ? V_LOAD_TAIL(e, head, 0) : V_SET1(0);
            V_STORE_TAIL(out, V_SUB(V_MUL(v, fv), sv), head);
            i = head;
        }
        if (e) {
            for (; i + XF_W <= n; i += XF_W) V_STREAM(out + i, V_SUB(V_MUL(V_LOADU(e + i), fv), sv));
        } else {
            for (; i + XF_W <= n; i += XF_W) V_STREAM(out + i, V_SUB(V_SET1(0), sv));
        }
    } else if (e) {
        for (; i + XF_W <= n; i += XF_W) V_STOREU(out + i, V_SUB(V_MUL(V_LOADU(e + i), fv), sv));
    } else {
        for (; i + XF_W <= n; i += XF_W) V_STOREU(out + i, V_SUB(V_SET1(0), sv));
    }
    if (i < n) {
        XF_V v = e ? V_LOAD_TAIL(e + i, n - i, 0) : V_SET1(0);
        V_STORE_TAIL(out + i, V_SUB(V_MUL(v, fv), sv), n - i);
    }
}

/* out = exp(x - lse) * a, segment by segment from the scratch exps. */
static inline void XF_FN(write_softmax_row)(XF_T *out, const XF_T *e, const XF_T *seg_max,
                                            int64_t C, double M, double log_S, double a,
                                            int stream) {
    for (int64_t j0 = 0, j = 0; j0 < C; j0 += XF_SEGMENT, j++) {
        const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
        if (seg_max[j] == -INFINITY) {
            /* masked classes: probability 0 (NaN when the whole row is masked) */
            XF_FN(write_scaled)(out + j0, NULL, n, 0, isnan(M) ? (XF_T)NAN : 0, stream);
        } else {
            /* exp(m_j - lse) = exp((m_j - M) - log S): both parts exact-ish in double */
            const XF_T f = (XF_T)(exp(((double)seg_max[j] - M) - log_S) * a);
            XF_FN(write_scaled)(out + j0, e + j0, n, f, 0, stream);
        }
    }
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

static void XF_FN(rows)(const xf_rows_args *a, int64_t begin, int64_t end, void *scratch) {
    const int64_t C = a->n_classes;
    const int mode = a->mode;
    const int want_out = (mode == XF_MODE_GRAD || mode == XF_MODE_SOFTMAX);
    /* scratch: C exps (vector-aligned), then one max per segment */
    XF_T *e = (XF_T *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    XF_T *seg_max = e + ((C + 15) & ~(int64_t)15);
    const XF_T *w = (const XF_T *)a->class_weight;
    int stream = a->streaming;

    for (int64_t r = begin; r < end; r++) {
        const XF_T *x = (const XF_T *)a->x + r * a->x_stride;
        XF_T *out = a->out ? (XF_T *)a->out + r * a->out_stride : NULL;
        int64_t y = -1;
        double w_y = 1.0;
        if (a->target) {
            y = a->target[r];
            if (y == a->ignore_index) { /* an ignored row: zero loss, zero gradient */
                if (a->row_loss) a->row_loss[r] = 0.0;
                if (a->row_lse) a->row_lse[r] = NAN;
                if (mode == XF_MODE_GRAD) XF_FN(write_scaled)(out, NULL, C, 0, 0, stream);
                continue;
            }
            if (w) w_y = (double)w[y];
        }
        double M, S;
        XF_FN(row_stats)(x, C, want_out ? e : NULL, want_out ? seg_max : NULL, &M, &S);
        const double log_S = log(S);
        const double lse = M + log_S;
        if (a->row_lse) a->row_lse[r] = lse;
        if (y >= 0 && a->row_loss) a->row_loss[r] = w_y * (lse - (double)x[y]);

        /* a row with every class masked has no distribution: NaN out, as PyTorch */
        if (M == -INFINITY) M = NAN;
        if (mode == XF_MODE_GRAD) {
            /* d/dz_k of w_y (lse - z_y) = w_y (p_k - [k = y]), times the upstream scale */
            const double g = a->scale * (a->row_scale ? a->row_scale[r] : 1.0) * w_y;
            XF_FN(write_softmax_row)(out, e, seg_max, C, M, log_S, g, stream);
            /* the target's entry, recomputed from the scratch exp rather than
             * read back from a (possibly streamed) store */
            const int64_t jy = y / XF_SEGMENT;
            const double p_y = seg_max[jy] == -INFINITY
                                   ? (isnan(M) ? NAN : 0.0)
                                   : (double)e[y] * exp(((double)seg_max[jy] - M) - log_S);
            out[y] = (XF_T)(p_y * g - g);
        } else if (mode == XF_MODE_SOFTMAX) {
            XF_FN(write_softmax_row)(out, e, seg_max, C, M, log_S, 1.0, stream);
        } else if (mode == XF_MODE_LOG_SOFTMAX) {
            XF_FN(write_log_softmax_row)(out, x, C, M, log_S);
        }
    }
    if (stream) XF_SFENCE();
}

/* y = exp(x) elementwise, with the kernels' own exp (for the accuracy tests) */
static inline void XF_FN(exp)(const XF_T *x, XF_T *y, int64_t n) {
    int64_t i = 0;
    for (; i + XF_W <= n; i += XF_W) V_STOREU(y + i, V_EXP(V_LOADU(x + i)));
    if (i < n) V_STORE_TAIL(y + i, V_EXP(V_LOAD_TAIL(x + i, n - i, 0)), n - i);
}
