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
 *   V_ZERO_TAIL(v,n)                           lanes [n, XF_W) set to 0
 *   V_ADD V_SUB V_MUL V_DIV V_MAX V_MIN V_FMA(a,b,c)=a*b+c  V_FNMA(a,b,c)=c-a*b
 *   V_EXP   and either V_LDEXP(p, n) = p * 2^n (AVX2: the cheaper exp
 *           below is built on it) or V_EXP_MID itself (AVX-512: by a table;
 *           the scalar build: libm)
 *   XF_TANH_RATIONAL (float32 SIMD) or V_EXPM1_MID: the softcap's tanh
 *   V_HMAX(v) -> XF_T   V_HSUM(v) -> double   V_FIRST(v) -> lane 0   XF_SFENCE()
 *   XF_T_MAX        largest finite XF_T
 *   V_ZERO_WHERE_ZERO(v, c)   v, with lanes where c == 0 set to 0
 *   V_ROUND_T(v)    lanes rounded to XF_T (identity unless lanes are wider)
 * and, for the narrow-row path (XF_NARROW): XF_VI VI_LOAD V_GATHER V_PERMUTE
 *   V_LOG V_TARGET_OFFSETS V_STORE_F64 VI_TO_V V_SELECT_EQ V_FMS V_ANY_ZERO,
 *   optionally XF_COLUMNS V_COLUMNS_SETUP V_COLUMN (columns by permutes).
 *
 * Per row: one online (max, sum-exp) pass over fixed segments of
 * XF_SEGMENT elements (max of the segment from memory (under softcap: of z,
 * in the loop that computes z; on AVX-512 for caps up to 64 none, |z| <= c
 * bounding the exps: one_loop_segment), then exp(x - m) of
 * the same segment from L1, kept in per-thread scratch when an output row
 * is wanted), combined across segments in double (Milakov & Gimelshein
 * 2018, "Online normalizer calculation for softmax"); then, for an output
 * row, one pass over the scratch that writes exp(x - lse) * scale - shift.
 * Each logit is read from memory once and each output written once.
 */

/* c * v, where a zero coefficient adds 0 even against a masked class
 * (0 * inf := 0, as the reference); a NaN row still ends NaN through lse. */
static inline double XF_FN(times_nz)(double c, double v) { return c == 0 ? 0.0 : c * v; }

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
 * ahead (for the scalar build, once per 64 bytes of x).  Prefetches never
 * fault, so running past the end of the array is harmless. */
static XF_ALWAYS_INLINE void XF_FN(prefetch_ahead)(const XF_T *p, int vectors) {
    const char *a = (const char *)p + XF_PREFETCH_BYTES;
    const int bytes = vectors * XF_W * (int)sizeof(XF_T);
    if (bytes < 64) {
        if (((uintptr_t)a & 63) < (uintptr_t)bytes) XF_PREFETCH(a);
        return;
    }
    for (int b = 0; b < bytes; b += 64) XF_PREFETCH(a + b);
}

/* Sum of exp(x - m) over n elements, in a fixed lane order; the exps are
 * stored to e when e is not NULL. */
static inline double XF_FN(seg_sumexp)(const XF_T *x, int64_t n, XF_T m, XF_T *e) {
    const XF_V mv = V_SET1(m);
    XF_V s0 = V_SET1(0), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    if (e) {
        for (; i + 2 * XF_W <= n; i += 2 * XF_W) {
            XF_FN(prefetch_ahead)(x + i, 2);
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
            XF_FN(prefetch_ahead)(x + i, 2);
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

/* (m, s) of segment j of a row (s = 0 for a fully masked segment). */
static inline double XF_FN(seg_stats)(const XF_T *x, int64_t C, int64_t j, XF_T *e, XF_T *m) {
    const int64_t j0 = j * XF_SEGMENT;
    const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
    *m = XF_FN(nan_aware_max)(x + j0, n, XF_FN(seg_max)(x + j0, n));
    if (*m == -INFINITY) return 0.0;
    if (isnan(*m)) return NAN;
    return XF_FN(seg_sumexp)(x + j0, n, *m, e ? e + j0 : NULL);
}

static inline void XF_FN(row_stats)(const XF_T *x, int64_t C, XF_T *e, XF_T *seg_max,
                                   double *M_out, double *S_out) {
    double M = -INFINITY, S = 0.0;
    for (int64_t j = 0; j * XF_SEGMENT < C; j++) {
        XF_T m;
        const double s = XF_FN(seg_stats)(x, C, j, e, &m);
        if (seg_max) seg_max[j] = m;
        XF_FN(combine)(&M, &S, m, s);
    }
    *M_out = M;
    *S_out = S;
}

/* out[i] = e[i]*f - w[i]*(alpha*tp[i] + beta)*d[i]
 * for i in [0, n), every factor optional: e == NULL means 0, w == NULL 1,
 * tp == NULL 0, d == NULL 1 (d: the softcap's chain factor dz/du =
 * 1 - (z/c)^2, by which e is then multiplied already: see rows()).  Always
 * inlined, so each call site gets only the arithmetic its constant
 * arguments leave (the plain gradient is e*f).  Streaming (non-temporal)
 * stores when asked: the aligned body
 * bypasses the cache, so a gradient buffer that is not re-read soon costs
 * no read-for-ownership.  Every element gets the same arithmetic either
 * way, whatever the alignment. */
static XF_ALWAYS_INLINE XF_V XF_FN(load)(const XF_T *p, int64_t lanes) {
    return lanes == XF_W ? V_LOADU(p) : V_LOAD_TAIL(p, lanes, 0);
}

/* one vector of write_segment's formula from `lanes` elements at offset i */
static XF_ALWAYS_INLINE XF_V XF_FN(segment_value)(const XF_T *e, const XF_T *w, const XF_T *tp,
                                                  const XF_T *d, int64_t i, int64_t lanes,
                                                  XF_V fv, XF_V av, XF_V bv, int shift) {
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

static XF_ALWAYS_INLINE void XF_FN(write_segment)(XF_T *out, const XF_T *e, const XF_T *w,
                                                  const XF_T *tp, const XF_T *d, int64_t n,
                                                  XF_T f, XF_T alpha, XF_T beta, int stream) {
    const XF_V fv = V_SET1(f), av = V_SET1(alpha), bv = V_SET1(beta);
    const int shift = (w != NULL || tp != NULL || beta != 0);
    int64_t i = XF_FN(stream_head)(out, n, stream);
    if (i)
        V_STORE_TAIL(out, XF_FN(segment_value)(e, w, tp, d, 0, i, fv, av, bv, shift), i);
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

/* The factor exp(m_j - lse) that turns segment j's scratch exps into
 * probabilities, as (m_j - M) - log S (both parts accurate in double);
 * 0 for a fully masked segment, NaN when the row has no distribution. */
static inline double XF_FN(seg_factor)(XF_T m_j, double M, double log_S) {
    if (m_j == -INFINITY) return (isnan(M) || isnan(log_S)) ? NAN : 0.0;
    return exp(((double)m_j - M) - log_S);
}

/* out = exp(z - lse) * a - w*(alpha*tp + beta) (the shift times the
 * softcap's chain factors d when d is not NULL; the exps carry theirs),
 * segment by segment from the scratch exps. */
static inline void XF_FN(write_row)(XF_T *out, const XF_T *e, const XF_T *seg_max, const XF_T *w,
                                    const XF_T *tp, const XF_T *d, int64_t C, double M,
                                    double log_S, double a, XF_T alpha, XF_T beta,
                                    int stream) {
    for (int64_t j0 = 0, j = 0; j0 < C; j0 += XF_SEGMENT, j++) {
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
                XF_FN(write_segment)(out + j0, NULL, NULL, NULL, NULL, n, 0, 0, (XF_T)-f, stream);
        } else {
            /* the general path stored every exp (0 in a masked segment) */
            XF_FN(write_segment)(out + j0, e + j0, w_j, tp_j, d_j, n, (XF_T)f, alpha, beta,
                                 stream);
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

/* ---- the general row: temperature, softcap, smoothing, probabilities, entropy ---- */

typedef struct {
    XF_T inv_t, cap, inv_cap; /* 1/T; softcap c (0: none), 1/c */
    XF_T u_scale;             /* 1/(T c) (rational tanh) or 2/(T c) (by expm1) */
    int fold;                 /* rational tanh: 1/(T c) folded into tanh_p/q */
    XF_T bound;               /* its clamp on u (on x when folded) */
    XF_T tanh_p[6], tanh_q[4]; /* its coefficients in u^2 (x^2 folded); q0 = 1 */
    int exp_clamp;            /* the exps of z - m need their clamp (c > 43) */
    int one_loop;             /* one_loop_segment (c <= XF_ONE_LOOP_CAP, AVX-512) */
    XF_T exp_k, exp_x_bound;  /* its tanh by e^{2u} = 2^{x k}: k, clamp on x */
    XF_T cap2, inv_cap2;      /* its z in base 2: c log2(e) and 1/that */
    const XF_T *w;            /* class weights, or NULL                 */
    int want_wz, want_ez;     /* sums w*z (smoothing) and e*z (entropy) */
    int chain;                /* keep e (1 - (z/c)^2), not e (see rows()) */
    int keep_d;               /* and, for the shift terms, 1 - (z/c)^2 in a row */
} XF_FN(opts_t);

typedef struct {
    double s, ez; /* sum exp(z - m) and sum exp(z - m) (z - m), m the segment max */
    double wz, wtz, wt; /* sum w z, sum w p z, sum w p (p: probability targets) */
} XF_FN(sums_t);

/* A softcapped row's gradient whose write is deferred into the next row's
 * z and exp loops (see rows()): what write_row needs, from the row's own scratch
 * buffers (ds: the chain factors, or NULL), and its target's entry, stored
 * last.  out == NULL: none. */
typedef struct {
    XF_T *out;
    const XF_T *e, *ds, *seg_max, *w, *tp;
    double M, log_S, a;
    XF_T alpha, beta;
    int64_t y; /* < 0: no target entry */
    XF_T out_y;
} XF_FN(pending_t);

/* Writes a gradient row whole, its target's entry last. */
static inline void XF_FN(write_pending)(const XF_FN(pending_t) *p, int64_t C, int stream) {
    XF_FN(write_row)(p->out, p->e, p->seg_max, p->w, p->tp, p->ds, C, p->M, p->log_S, p->a,
                     p->alpha, p->beta, stream);
    if (p->y >= 0) p->out[p->y] = p->out_y;
}

/* A deferred gradient segment on its way out (see tanh_loop): elements
 * [k, n) of out still to write, by write_segment's formula from the scratch
 * of the row they belong to. */
typedef struct {
    XF_T *out;
    const XF_T *e, *w, *tp, *d;
    XF_T f, alpha, beta;
    int64_t k, n;
} XF_FN(drain_t);

/* How a capped segment's loops work: flags, constant per loop */
#define XF_SHIFT 1        /* shift terms (targets, smoothing): chain factors kept */
#define XF_DRAIN_STREAM 2 /* streaming stores */
#define XF_CHAIN 4        /* the exps stored chained (opts_t.chain) */
#define XF_LEAN 8         /* no class weights, probability targets or entropy */
#define XF_BASE2 16       /* z in units of ln 2 (one_loop_segment) */

/* The softcap's chain factor dz/du = 1 - (z/c)^2 (tanh' = 1 - tanh^2);
 * base2: z in units of ln 2 (one_loop_segment). */
static XF_ALWAYS_INLINE XF_V XF_FN(chain_factor)(XF_V z, const XF_FN(opts_t) *o,
                                                 const int base2) {
    const XF_V th = V_MUL(z, V_SET1(base2 ? o->inv_cap2 : o->inv_cap));
    return V_FNMA(th, th, V_SET1(1));
}

/* Segment j (at j0, n elements) of the deferred row p, its unaligned head
 * written (as write_segment does). */
static XF_ALWAYS_INLINE void XF_FN(drain_open)(XF_FN(drain_t) *d, const XF_FN(pending_t) *p,
                                               int64_t j0, int64_t j, int64_t n, int stream) {
    /* the arithmetic of write_row, bit for bit */
    d->out = p->out + j0;
    d->e = p->e + j0;
    d->d = p->ds ? p->ds + j0 : NULL;
    d->w = p->w ? p->w + j0 : NULL;
    d->tp = p->tp ? p->tp + j0 : NULL;
    d->f = (XF_T)(XF_FN(seg_factor)(p->seg_max[j], p->M, p->log_S) * p->a);
    d->alpha = p->alpha;
    d->beta = p->beta;
    d->n = n;
    d->k = XF_FN(stream_head)(d->out, n, stream);
    if (d->k)
        XF_FN(write_segment)(d->out, d->e, d->w, d->tp, d->d, d->k, d->f, d->alpha, d->beta, 0);
}

/* One whole vector of d, if one is left (how: XF_SHIFT, XF_DRAIN_STREAM). */
static XF_ALWAYS_INLINE void XF_FN(drain_step)(XF_FN(drain_t) *d, const int how) {
    if (d->k + XF_W > d->n) return;
    const XF_V g = XF_FN(segment_value)(d->e, d->w, d->tp, d->d, d->k, XF_W, V_SET1(d->f),
                                        V_SET1(d->alpha), V_SET1(d->beta), how & XF_SHIFT);
    if (how & XF_DRAIN_STREAM) V_STREAM(d->out + d->k, g);
    else V_STOREU(d->out + d->k, g);
    d->k += XF_W;
}

/* The rest of d. */
static XF_ALWAYS_INLINE void XF_FN(drain_close)(XF_FN(drain_t) *d, const int how) {
    const int64_t k = d->k;
    if (k < d->n)
        XF_FN(write_segment)(d->out + k, d->e + k, d->w ? d->w + k : NULL,
                             d->tp ? d->tp + k : NULL, d->d ? d->d + k : NULL, d->n - k, d->f,
                             d->alpha, d->beta, how & XF_DRAIN_STREAM);
}

/* ---- the softcap's cheaper exp (float32 lanes) ----
 * z = c tanh(x/c) carries an absolute error of about c * 1e-7 in float32,
 * so the exps of the softmax over z need no more than about that, not the
 * 0.9 ulp of V_EXP.  x = n ln2 + r: n = rint(x log2 e) by adding and
 * subtracting 1.5*2^23 (one FMA), r = x - n ln2 by one FMA with ln 2 rounded
 * to float (error |n| * 1.9e-9; r = x exactly when n = 0).  No range
 * clamp: the callers keep x in [-87.3, 88].  AVX-512 brings its own,
 * table-driven and two FMAs shorter (simd_avx512.h). */
#if defined(V_LDEXP) && !defined(V_EXP_MID)
/* e^x to 3.9e-7 relative on [-87.3, 88] (AVX2, measured by TOOL=exp_mid_check
 * tools/kernel_bench.sh avx2; most of it the reduction's error at |x| near
 * 88): e^r by a degree-5 polynomial fitted for minimax relative error on
 * [-ln2/2, ln2/2] (Lawson's iteration; 9.1e-8 before float rounding). */
static XF_ALWAYS_INLINE XF_V XF_FN(exp_mid)(XF_V x) {
    const XF_V shifter = V_SET1(12582912.0f);
    const XF_V n = V_SUB(V_FMA(x, V_SET1(1.44269504f), shifter), shifter);
    const XF_V r = V_FNMA(n, V_SET1(0.693147182f), x);
    XF_V p = V_SET1(8.290315e-3f);
    p = V_FMA(p, r, V_SET1(4.1897930e-2f));
    p = V_FMA(p, r, V_SET1(1.6667636e-1f));
    p = V_FMA(p, r, V_SET1(4.9999151e-1f));
    p = V_FMA(p, r, V_SET1(9.9999970e-1f));
    p = V_FMA(p, r, V_SET1(1.0f));
    return V_LDEXP(p, n);
}
#define XF_EXP_MID XF_FN(exp_mid)
#else
#define XF_EXP_MID V_EXP_MID
#endif

#ifdef XF_TANH_RATIONAL
/* z = softcap(x / T) = c tanh u, u = x / (T c), for a vector of float32
 * (dz/du = 1 - tanh^2 is recomputed from z where the gradient needs it).
 * tanh u = u P(u^2) / Q(u^2) on |u| <= XF_TANH_U, beyond which tanh rounds
 * to +-1 in float (1 - tanh u < 2^-25 for u > 9.01); P of degree 5 with
 * P(0) = 1 (z tends to x / T for a cap much larger than the logits), Q of
 * degree 3 with Q(0) = 1, fitted for minimax relative error on [0, 9.02]
 * (Loeb's linearisation, a linear program per step; 1.5e-7 before float
 * rounding), c folded into P.  Nothing cancels (for |u| << 1 it is
 * u (1 + O(u^2)), unlike 1 - 2/(e^{2u} + 1)) and there is no range
 * reduction: 11 multiply-class operations (10 folded, below) and a
 * division per vector, against 17 for tanh by expm1 with a reciprocal; the
 * softcap pass is bound by those.  Accuracy 3.8e-7 relative for tanh,
 * 4.1e-7 for 30 tanh(x/30) (measured by TOOL=exp_mid_check
 * tools/kernel_bench.sh avx512|avx2).  NaN passes the clamp. */
#define XF_TANH_U 9.02f
static const double xf_tanh_p[6] = {1.0, 0.1296948, 0.0029735093, 9.719833e-06,
                                    -1.401629e-08, 2.1090726e-11};
static const double xf_tanh_q[4] = {1.0, 0.4630285, 0.023982681, 0.00023520176};
/* folded: z = x P~(x^2) / Q~(x^2) with P~_k = p_k s^2k / T, Q~_k = q_k s^2k
 * (s = 1/(T c), so c s = 1/T) and |x| clamped to U/s: one multiply fewer
 * (u = s x) where the coefficients are comfortably inside float's range
 * (opts_set decides and fills tanh_p, tanh_q and bound either way). */
static XF_ALWAYS_INLINE XF_V XF_FN(vtransform_impl)(XF_V x, const XF_FN(opts_t) *o,
                                                    const int folded) {
    if (!o->cap) return V_ROUND_T(V_MUL(x, V_SET1(o->inv_t)));
    const XF_V u = V_MAX(V_SET1(-o->bound),
                         V_MIN(V_SET1(o->bound), folded ? x : V_MUL(x, V_SET1(o->u_scale))));
    const XF_V t = V_MUL(u, u);
    XF_V p = V_FMA(V_SET1(o->tanh_p[5]), t, V_SET1(o->tanh_p[4]));
    p = V_FMA(p, t, V_SET1(o->tanh_p[3]));
    p = V_FMA(p, t, V_SET1(o->tanh_p[2]));
    p = V_FMA(p, t, V_SET1(o->tanh_p[1]));
    p = V_FMA(p, t, V_SET1(o->tanh_p[0]));
    XF_V q = V_FMA(V_SET1(o->tanh_q[3]), t, V_SET1(o->tanh_q[2]));
    q = V_FMA(q, t, V_SET1(o->tanh_q[1]));
    q = V_FMA(q, t, V_SET1(1.0f)); /* Q(0) = 1, folded or not */
    /* a true division: exact, and on Zen 4 cheaper than VRCP14PS plus a
     * Newton step plus the product (the tanh alone, `TOOL=exp_mid_check
     * tools/kernel_bench.sh avx512`: 11.2 -> 9.9 cycles/vector) */
    return V_DIV(V_MUL(u, p), q);
}
#else
/* z = softcap(x / T) = c tanh v, v = x / (T c), for a vector (dz/du =
 * 1 - tanh^2 is recomputed from z where the gradient needs it).
 * tanh v = q / (q + 2) with q = expm1(2v): relative accuracy of expm1's
 * (1 - 2/(e^{2v} + 1) would lose it for |v| << 1, and with it any cap much
 * larger than the logits).  2v is clamped to +-XF_TANH_2V, beyond which
 * tanh rounds to +-1 in XF_T (NaN passes). */
#define XF_TANH_2V (sizeof(XF_T) == 4 ? 20.0 : 40.0)
static XF_ALWAYS_INLINE XF_V XF_FN(vtransform_impl)(XF_V x, const XF_FN(opts_t) *o,
                                                    const int folded) {
    (void)folded; /* never set: opts_set folds only the rational form */
    if (!o->cap) return V_ROUND_T(V_MUL(x, V_SET1(o->inv_t)));
    XF_V v2 = V_MUL(x, V_SET1(o->u_scale));
    v2 = V_MAX(V_SET1(-XF_TANH_2V), V_MIN(V_SET1(XF_TANH_2V), v2));
    const XF_V q = V_EXPM1_MID(v2);
    const XF_V th = V_DIV(q, V_ADD(q, V_SET1(2)));
    return V_ROUND_T(V_MUL(V_SET1(o->cap), th));
}
#endif

#ifdef XF_TANH_RATIONAL
/* The rational tanh's clamp and coefficients for softcap c and 1/T, with
 * s = 1/(T c) folded in (fold) or not. */
static inline void XF_FN(tanh_set)(XF_FN(opts_t) *o, double softcap, double inv_temperature,
                                   int fold) {
    const double s = inv_temperature / softcap, s2 = s * s;
    o->fold = fold;
    o->bound = fold ? (XF_T)(XF_TANH_U / s) : XF_TANH_U;
    double sk = 1.0; /* s^2k */
    for (int k = 0; k < 6; k++, sk *= s2) {
        o->tanh_p[k] = (XF_T)(fold ? xf_tanh_p[k] * sk * inv_temperature
                                   : softcap * xf_tanh_p[k]);
        if (k < 4) o->tanh_q[k] = (XF_T)(fold ? xf_tanh_q[k] * sk : xf_tanh_q[k]);
    }
}
#endif

/* the one-loop softcap (one_loop_segment) for caps up to this */
#define XF_ONE_LOOP_CAP 64.0
#define XF_LOG2E 1.4426950408889634
#define XF_LN2 0.6931471805599453
#undef XF_EXP2_MID
#ifdef V_EXP2_MID
#define XF_EXP2_MID V_EXP2_MID
#else
#define XF_EXP2_MID(z) (z) /* never taken: only the one loop asks for it */
#endif

/* The transform's constants for softcap c (0: none) and 1/T.  Scales are
 * kept at most the largest XF_T: a finite factor keeps 0 * it = 0. */
static inline void XF_FN(opts_set)(XF_FN(opts_t) *o, double softcap, double inv_temperature) {
    o->inv_t = (XF_T)inv_temperature;
    o->cap = (XF_T)softcap;
    o->inv_cap = softcap ? (XF_T)(1.0 / softcap) : 0;
    o->fold = 0;
    o->bound = 0;
    for (int k = 0; k < 6; k++) o->tanh_p[k] = 0;
    for (int k = 0; k < 4; k++) o->tanh_q[k] = 0;
    /* z - m >= -2c (1 + 5e-7): no exp below -87.3 for c <= 43 */
    o->exp_clamp = !(softcap <= 43.0);
    o->one_loop = 0;
    o->exp_k = o->exp_x_bound = o->cap2 = o->inv_cap2 = 0;
#ifdef V_EXP2_SCALED
    if (softcap != 0 && softcap <= XF_ONE_LOOP_CAP) {
        const double k = 2.0 * XF_LOG2E * inv_temperature / softcap;
        o->exp_k = (XF_T)k;
        o->exp_x_bound = (XF_T)(40.0 / k);
        o->cap2 = (XF_T)(softcap * XF_LOG2E);
        o->inv_cap2 = (XF_T)(1.0 / (softcap * XF_LOG2E));
        /* k far from float's limits: x k and the clamp 40 / k stay finite */
        o->one_loop = k >= 1e-30 && k <= 1e30;
    }
#endif
#ifdef XF_TANH_RATIONAL
    const double s = inv_temperature / softcap;
    o->u_scale = softcap ? (XF_T)fmin(s, XF_T_MAX) : 0;
    if (!softcap) return;
    /* fold when every coefficient and the clamp's square stay within
     * [2^-100, 2^100]: far from overflow and from subnormal precision */
    const double lo = 0x1p-100, hi = 0x1p100, s2 = s * s, x_bound = XF_TANH_U / s;
    int fold = x_bound * x_bound < hi;
    double sk = 1.0;
    for (int k = 0; k < 6; k++, sk *= s2) {
        const double pk = fabs(xf_tanh_p[k] * sk * inv_temperature);
        const double qk = k < 4 ? xf_tanh_q[k] * sk : 1.0;
        fold = fold && pk >= lo && pk <= hi && qk >= lo && qk <= hi;
    }
    XF_FN(tanh_set)(o, softcap, inv_temperature, fold);
#else
    o->u_scale = softcap ? (XF_T)fmin(2.0 * inv_temperature / softcap, XF_T_MAX) : 0;
#endif
}

#ifdef V_EXP2_SCALED
/* The one loop's z (one_loop_segment), in units of ln 2: z2 = z log2(e) =
 * c2 - 2 c2 / (1 + e^{2u}) (c2 = c log2(e)), e^{2u} = 2^{x k} by the
 * table exp: five multiply-class operations and a division per vector,
 * where the rational form takes ten and a division (the loop is bound by
 * those), and the exps of z2 then take three, not five.  For |u| << 1 it
 * has no relative accuracy (the subtraction cancels), but an absolute
 * error of about c 2.5e-7, as the rational form's near |z| = c: all that
 * the exps of z can use.  |x k| is clamped to 40, where 2/(1 + 2^40) is
 * far below half an ulp of 1 (NaN passes); z2 is exactly +-c2 at the ends
 * and 0 at x = 0. */
static XF_ALWAYS_INLINE XF_V XF_FN(vtransform_one)(XF_V x, const XF_FN(opts_t) *o) {
    const XF_V b = V_SET1(o->exp_x_bound);
    const XF_V e2u = V_EXP2_SCALED(V_MAX(V_SUB(V_SET1(0), b), V_MIN(b, x)), o->exp_k);
    return V_SUB(V_SET1(o->cap2), V_DIV(V_SET1(2 * o->cap2), V_ADD(V_SET1(1), e2u)));
}
#endif

/* vtransform with the folding chosen at run time (per call, not per vector) */
static inline XF_V XF_FN(vtransform)(XF_V x, const XF_FN(opts_t) *o) {
    return o->fold ? XF_FN(vtransform_impl)(x, o, 1) : XF_FN(vtransform_impl)(x, o, 0);
}

/* z of one logit by the very vector code of the row pass (lane 0), so
 * that z_y and the segment maxima agree bit for bit with the z the exps
 * were taken of: a one-class row then has loss exactly 0. */
static inline double XF_FN(transform1)(XF_T x, const XF_FN(opts_t) *o) {
#ifdef V_EXP2_SCALED
    if (o->one_loop) return XF_LN2 * (double)V_FIRST(XF_FN(vtransform_one)(V_SET1(x), o));
#endif
    return (double)V_FIRST(XF_FN(vtransform)(V_SET1(x), o));
}

/* One vector of a segment, z the transformed logits: `valid` lanes are
 * real (the rest are zeroed).  capped: 0 exact exps, 1 the softcap's
 * cheaper ones, 2 base 2 and unshifted (one_loop_segment); lean: no sums
 * of e z or w z, whatever opts_t says (known at compile time). */
static XF_ALWAYS_INLINE void XF_FN(gen_vec)(const XF_FN(opts_t) *o, XF_V z, XF_V w, const XF_T *tp,
                                            XF_V tpv, XF_V mv, int64_t valid, XF_V *s, XF_V *ez,
                                            XF_V *wz, XF_V *wtz, XF_V *wt, XF_V *e_out,
                                            const int capped, const int clamp, const int lean) {
    /* capped == 2: z in base 2, exps against 0 (one_loop_segment) */
    const XF_V zm = capped == 2 ? z : V_SUB(z, mv);
    /* under softcap z itself carries an absolute error of about c * 1e-7,
     * so e^{z-m} needs no more than XF_EXP_MID's accuracy (z - m >= -2c is
     * finite; for c > 43 it is clamped at -87.3, where the exp is about
     * FLT_MIN: an absolute error under 1.2e-38) */
    XF_V e = capped == 2                      ? XF_EXP2_MID(z)
             : (capped && sizeof(XF_T) == 4) ? XF_EXP_MID(clamp ? V_MAX(V_SET1(-87.3), zm) : zm)
                                             : V_EXP(zm);
    if (valid < XF_W) e = V_ZERO_TAIL(e, valid);
    *s = V_ADD(*s, e);
    /* entropy from sum e (z - m) <= 0: no cancellation against lse */
    if (!lean && o->want_ez) *ez = V_FMA(e, V_MAX(V_SET1(-XF_T_MAX), zm), *ez);
    /* a masked class (z = -inf) with a coefficient > 0 makes the loss inf
     * (as PyTorch); with a coefficient of 0 it adds 0, not 0 * -inf */
    if (!lean && o->want_wz) {
        XF_V t = V_ZERO_WHERE_ZERO(V_MUL(w, z), w);
        *wz = V_ADD(*wz, valid < XF_W ? V_ZERO_TAIL(t, valid) : t);
    }
    if (tp) {
        const XF_V wp = V_MUL(w, tpv);
        *wt = V_ADD(*wt, wp);
        *wtz = V_ADD(*wtz, V_ZERO_WHERE_ZERO(V_MUL(wp, z), wp));
    }
    *e_out = e;
}

/* Stores `lanes` exps ev of z at e + i: under XF_CHAIN times the chain
 * factors, which XF_SHIFT keeps at ds + i too. */
static XF_ALWAYS_INLINE void XF_FN(store_exps)(XF_T *e, XF_T *ds, int64_t i, int64_t lanes,
                                               XF_V ev, XF_V z, const XF_FN(opts_t) *o,
                                               const int how) {
    if (how & XF_CHAIN) {
        const XF_V dv = XF_FN(chain_factor)(z, o, how & XF_BASE2);
        if (how & XF_SHIFT) {
            if (lanes == XF_W) V_STOREU(ds + i, dv);
            else V_STORE_TAIL(ds + i, dv, lanes);
        }
        ev = V_MUL(ev, dv);
    }
    if (lanes == XF_W) V_STOREU(e + i, ev);
    else V_STORE_TAIL(e + i, ev, lanes);
}

/* The exps and sums of a segment.  pre: x already holds z (softcap);
 * otherwise z = x / T here.  Under XF_CHAIN the exps are stored times the
 * chain factors, and under XF_SHIFT those go to ds too (which may be x). */
static XF_ALWAYS_INLINE XF_FN(sums_t) XF_FN(gen_loop)(const XF_T *x, const XF_T *w,
                                                      const XF_T *tp, int64_t n, XF_T m,
                                                      const XF_FN(opts_t) *o, XF_T *e,
                                                      XF_T *ds, const int pre, const int clamp,
                                                      XF_FN(drain_t) *d, const int how) {
    const XF_V zero = V_SET1(0), one = V_SET1(1), mv = V_SET1(m), inv_t = V_SET1(o->inv_t);
    XF_V s = zero, ez = zero, wz = zero, wtz = zero, wt = zero, ev;
    int64_t i = 0;
    for (; i + XF_W <= n; i += XF_W) {
        if (!pre) XF_FN(prefetch_ahead)(x + i, 1);
        if (tp) XF_FN(prefetch_ahead)(tp + i, 1);
        const XF_V z = pre ? V_LOADU(x + i) : V_ROUND_T(V_MUL(V_LOADU(x + i), inv_t));
        XF_FN(gen_vec)(o, z, w ? V_LOADU(w + i) : one, tp, tp ? V_LOADU(tp + i) : zero, mv,
                       XF_W, &s, &ez, &wz, &wtz, &wt, &ev, pre, clamp, 0);
        if (e) XF_FN(store_exps)(e, ds, i, XF_W, ev, z, o, how);
        if (d && ((i / XF_W) & 1)) XF_FN(drain_step)(d, how);
    }
    if (i < n) {
        const int64_t r = n - i;
        const XF_V xv = V_LOAD_TAIL(x + i, r, 0);
        const XF_V z = pre ? xv : V_ROUND_T(V_MUL(xv, inv_t));
        XF_FN(gen_vec)(o, z, w ? V_LOAD_TAIL(w + i, r, 0) : one, tp,
                       tp ? V_LOAD_TAIL(tp + i, r, 0) : zero, mv, r, &s, &ez, &wz, &wtz, &wt,
                       &ev, pre, clamp, 0);
        if (e) XF_FN(store_exps)(e, ds, i, r, ev, z, o, how);
    }
    XF_FN(sums_t) out = {V_HSUM(s), V_HSUM(ez), V_HSUM(wz), V_HSUM(wtz), V_HSUM(wt)};
    return out;
}

/* The softcap's z loop over a segment (z = vtransform(x)); returns the max
 * of z (a max per vector on the adder pipes, which the tanh leaves idle,
 * instead of a pass of its own over x; a NaN may or may not win, and
 * reaches the sums through its exp either way).  With a drain d,
 * one vector of a deferred gradient segment is written per two vectors of z
 * here and per two exps in gen_loop: the stores then drain to memory while
 * the tanh and the exps keep the cores busy, instead of stalling a write
 * pass of their own, and evenly, so the memory is never idle for a whole
 * loop.  The write's cursor runs at half the loop's pace, so its loads of
 * the other row's scratch do not trail this row's stores at the same
 * offset (a multiple of 4 KiB away when C is a multiple of 1024: 4K
 * aliasing); the lag of 4 vectors that a write of one vector per z needed
 * measures no different now (`tools/kernel_bench.sh avx512 1024 32768 1 30
 * 8 1`, five runs: 16.7-17.1 ms without, 17.0-17.5 with).  Always inlined,
 * so each (drain, how, folded) gets a loop without branches on them. */
static XF_ALWAYS_INLINE XF_T XF_FN(tanh_loop)(const XF_T *x, XF_T *z, int64_t n,
                                              const XF_FN(opts_t) *o, XF_FN(drain_t) *d,
                                              const int how, const int folded,
                                              double *sum_z) {
    XF_V mv = V_SET1(-INFINITY), sv = V_SET1(0);
    int64_t i = 0;
    for (; i + XF_W <= n; i += XF_W) {
        XF_FN(prefetch_ahead)(x + i, 1);
        const XF_V zv = XF_FN(vtransform_impl)(V_LOADU(x + i), o, folded);
        V_STOREU(z + i, zv);
        mv = V_MAX(mv, zv);
        sv = V_ADD(sv, zv);
        if (d && ((i / XF_W) & 1)) XF_FN(drain_step)(d, how);
    }
    XF_T m = V_HMAX(mv);
    if (i < n) {
        /* the tail's lanes past n hold z(0) = 0: they add nothing */
        const XF_V zv = XF_FN(vtransform_impl)(V_LOAD_TAIL(x + i, n - i, 0), o, folded);
        V_STORE_TAIL(z + i, zv, n - i);
        sv = V_ADD(sv, zv);
        for (; i < n; i++) m = z[i] > m || isnan(z[i]) ? z[i] : m;
    }
    *sum_z = V_HSUM(sv);
    return m;
}

/* A softcapped segment: z and its max m in a loop of their own, then the
 * exps from z (each vector's tanh-then-exp is one long dependent chain; two
 * short loops keep more vectors in flight), a deferred segment d (or NULL)
 * written across both. */
static XF_ALWAYS_INLINE XF_FN(sums_t)
    XF_FN(capped_segment)(const XF_T *x, const XF_T *w, const XF_T *tp, int64_t n, XF_T *m,
                          const XF_FN(opts_t) *o, XF_T *e, XF_T *z, XF_FN(drain_t) *d,
                          const int how, const int folded, const int clamp) {
    double sum_z;
    *m = XF_FN(tanh_loop)(x, z, n, o, d, how, folded, &sum_z);
    XF_FN(sums_t) sums = XF_FN(gen_loop)(z, w, tp, n, *m, o, e, z, 1, clamp, d, how);
    if (d) XF_FN(drain_close)(d, how);
    if (!w) sums.wz = sum_z; /* gen_segment left sum w z to this loop */
    return sums;
}

#ifdef V_EXP2_SCALED
/* A softcapped segment in one loop (opts_t.one_loop: c <= XF_ONE_LOOP_CAP
 * and AVX-512), z and its exps together: no max of z first, since
 * |z| <= c bounds the exps of z itself, unshifted, to [e^-c, e^c], times a
 * chain factor of at least 2^-23, all normal floats (so the segment's
 * "max" is 0).  z is taken in base 2 (vtransform_one), its exps as 2^z2;
 * the sums of z come out in nats.  No z is stored and read back and no max
 * taken; the tanh of the next vector is issued before this one's exp (the
 * loop's chain is long, and this keeps independent work ahead of it).
 * XF_LEAN: no class weights or probability targets (w and tp NULL here)
 * and no entropy or sum w z (gen_vec's lean), so the loop holds no tests
 * for them.  Against the two loops (capped_segment; one thread,
 * `tools/kernel_bench.sh avx512 ...`, interleaved runs, best of each;
 * smoothing and z-loss by LS=0.1 ZL=1e-4):
 * in L1 (4 2000 1 30 200000) softcap 1.15 -> 1.07 cycles/element, with
 * smoothing and z-loss 1.20 -> 1.14; from DRAM (1024 32000 1 30 8 1)
 * 15.8 -> 13.6 ms and 17.1 -> 15.0 ms.  Keeping the chain factor as
 * c2^2 - z^2 = (c2 - z)(c2 + z) (one multiply fewer, two additions more)
 * measured slower (1.14 -> 1.18): the loop's adds are as busy as its
 * multiplies.  On AVX2 (no table exp) one loop with the rational tanh
 * measured no faster than two (1.79 -> 1.82): AVX2 keeps the two loops. */
static XF_ALWAYS_INLINE XF_FN(sums_t)
    XF_FN(one_loop_segment)(const XF_T *x, const XF_T *w, const XF_T *tp, int64_t n,
                            const XF_FN(opts_t) *o, XF_T *e, XF_T *ds, XF_FN(drain_t) *d,
                            const int how) {
    if (how & XF_LEAN) w = tp = NULL; /* and rows() keeps the entropy off this loop */
    const XF_V zero = V_SET1(0), one = V_SET1(1);
    XF_V s = zero, ez = zero, wz = zero, wtz = zero, wt = zero, sz = zero, ev;
    int64_t i = 0;
    XF_V z_next = n >= XF_W ? XF_FN(vtransform_one)(V_LOADU(x), o) : zero;
    for (; i + XF_W <= n; i += XF_W) {
        XF_FN(prefetch_ahead)(x + i, 1);
        if (tp) XF_FN(prefetch_ahead)(tp + i, 1);
        const XF_V z = z_next;
        if (i + 2 * XF_W <= n) z_next = XF_FN(vtransform_one)(V_LOADU(x + i + XF_W), o);
        sz = V_ADD(sz, z);
        XF_FN(gen_vec)(o, z, w ? V_LOADU(w + i) : one, tp, tp ? V_LOADU(tp + i) : zero, zero,
                       XF_W, &s, &ez, &wz, &wtz, &wt, &ev, 2, 0, how & XF_LEAN);
        XF_FN(store_exps)(e, ds, i, XF_W, ev, z, o, how | XF_BASE2);
        if (d) XF_FN(drain_step)(d, how);
    }
    if (i < n) {
        const int64_t r = n - i;
        /* the tail's lanes past n hold z(0) = 0: they add nothing to sum z */
        const XF_V z = XF_FN(vtransform_one)(V_LOAD_TAIL(x + i, r, 0), o);
        sz = V_ADD(sz, z);
        XF_FN(gen_vec)(o, z, w ? V_LOAD_TAIL(w + i, r, 0) : one, tp,
                       tp ? V_LOAD_TAIL(tp + i, r, 0) : zero, zero, r, &s, &ez, &wz, &wtz,
                       &wt, &ev, 2, 0, how & XF_LEAN);
        XF_FN(store_exps)(e, ds, i, r, ev, z, o, how | XF_BASE2);
    }
    if (d) XF_FN(drain_close)(d, how);
    /* the sums of z (times e, w or w p) back from units of ln 2 */
    XF_FN(sums_t) out = {V_HSUM(s), XF_LN2 * V_HSUM(ez),
                         XF_LN2 * (w ? V_HSUM(wz) : V_HSUM(sz)), XF_LN2 * V_HSUM(wtz),
                         V_HSUM(wt)};
    return out;
}
#endif

/* capped_segment with its (folded, clamp) chosen at run time */
#define XF_TWO_LOOP_SEGMENT(d, how)                                                           \
    (o->fold ? (o->exp_clamp                                                                  \
                    ? XF_FN(capped_segment)(x, w, tp, n, m, o, e, z, d, how, 1, 1)  \
                    : XF_FN(capped_segment)(x, w, tp, n, m, o, e, z, d, how, 1, 0)) \
             : (o->exp_clamp                                                                  \
                    ? XF_FN(capped_segment)(x, w, tp, n, m, o, e, z, d, how, 0, 1)  \
                    : XF_FN(capped_segment)(x, w, tp, n, m, o, e, z, d, how, 0, 0)))
/* or one_loop_segment (its segment "max" 0), XF_LEAN when it can be */
#ifdef V_EXP2_SCALED
#define XF_CAPPED_SEGMENT(d, how)                                                             \
    (!o->one_loop ? XF_TWO_LOOP_SEGMENT(d, how)                                               \
                  : (*m = 0, (!w && !tp)                                                      \
                                 ? XF_FN(one_loop_segment)(x, w, tp, n, o, e, z, d,           \
                                                           (how) | XF_LEAN)                   \
                                 : XF_FN(one_loop_segment)(x, w, tp, n, o, e, z, d, how)))
#else
#define XF_CAPPED_SEGMENT(d, how) XF_TWO_LOOP_SEGMENT(d, how)
#endif

/* Sums of one segment (n elements) relative to its max of z, *m: given
 * (-inf for a fully masked segment), or under softcap found here; stores
 * the exps to e (when not NULL) and, under softcap, z to zs (then the
 * chain factors over it, opts_t.keep_d) or else to e (which must then not
 * be NULL).  Under softcap, segment j (at j0) of the deferred gradient row
 * pend (when not NULL; a chained row, as every softcapped gradient row) is
 * written too: one specialised pair of loops per (how, folded, clamp), or
 * one loop (opts_t.one_loop) per (how, lean). */
static inline XF_FN(sums_t) XF_FN(gen_segment)(const XF_T *x, const XF_T *w, const XF_T *tp,
                                               int64_t n, XF_T *m, const XF_FN(opts_t) *opts,
                                               XF_T *e, XF_T *zs, const XF_FN(pending_t) *pend,
                                               int64_t j0, int64_t j, int stream) {
    /* a private copy: the stores to e and zs cannot alias it, so the
     * options stay in registers instead of being reloaded every vector */
    XF_FN(opts_t) local = *opts;
    const XF_FN(opts_t) *o = &local;
    if (!o->cap) /* a fully masked segment's exps are taken against 0: all 0 */
        return XF_FN(gen_loop)(x, w, tp, n, *m == -INFINITY ? 0 : *m, o, e, NULL, 0, 0, NULL,
                               0);
    /* without class weights, sum z comes from the z loop (an addition per
     * vector on the adder pipes, which the tanh leaves idle), not from the
     * exp loop (a product, a compare and a masked move more per vector:
     * there z is never -inf, so the w = 0 guard has nothing to do).  The z
     * loop sums z whether or not smoothing wants it: a flag to skip it
     * measured no different from DRAM (softcap alone, `tools/kernel_bench.sh
     * avx512 1024 32000 1 30 8 1`: 16.0 ms either way, best of six runs) */
    local.want_wz = local.want_wz && w;
    XF_T *z = zs ? zs : e;
    /* the pending row has the options of this one: shift terms alike */
    const int how = o->chain ? XF_CHAIN | (o->keep_d ? XF_SHIFT : 0) : 0;
    if (!pend) return XF_CAPPED_SEGMENT(NULL, how);
    XF_FN(drain_t) d;
    XF_FN(drain_open)(&d, pend, j0, j, n, stream);
    if (how == (XF_CHAIN | XF_SHIFT))
        return stream ? XF_CAPPED_SEGMENT(&d, XF_CHAIN | XF_SHIFT | XF_DRAIN_STREAM)
                      : XF_CAPPED_SEGMENT(&d, XF_CHAIN | XF_SHIFT);
    return stream ? XF_CAPPED_SEGMENT(&d, XF_CHAIN | XF_DRAIN_STREAM)
                  : XF_CAPPED_SEGMENT(&d, XF_CHAIN);
}
#undef XF_CAPPED_SEGMENT
#undef XF_TWO_LOOP_SEGMENT

/* The general row's statistics: M, S (as row_stats), EZ = sum exp(z - M) (z - M),
 * and the plain sums; seg_max[j] holds each segment's max of z.  A deferred
 * softcap gradient row pend (or NULL) is written meanwhile, but for its
 * target's entry. */
static inline void XF_FN(row_stats_general)(const XF_T *x, const XF_T *tp, int64_t C,
                                           const XF_FN(opts_t) *o, XF_T *e, XF_T *zs,
                                           XF_T *seg_max, double *M_out, double *S_out,
                                           XF_FN(sums_t) *tot, const XF_FN(pending_t) *pend,
                                           int stream) {
    double M = -INFINITY, S = 0.0, EZ = 0.0;
    XF_FN(sums_t) t = {0, 0, 0, 0, 0};
    for (int64_t j0 = 0, j = 0; j0 < C; j0 += XF_SEGMENT, j++) {
        const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
        /* the segment's max of z: under softcap the z loop finds it (no
         * pass of its own over x), else from the max of x */
        XF_T m = o->cap ? 0
                        : (XF_T)XF_FN(transform1)(
                              XF_FN(nan_aware_max)(x + j0, n, XF_FN(seg_max)(x + j0, n)), o);
        /* a fully masked segment still adds to the plain sums (its exps are 0) */
        const XF_FN(sums_t) g = XF_FN(gen_segment)(x + j0, o->w ? o->w + j0 : NULL,
                                                   tp ? tp + j0 : NULL, n, &m, o,
                                                   e ? e + j0 : NULL,
                                                   /* chained without shift terms: z is
                                                    * needed only by the segment's own exps */
                                                   zs ? (o->chain && !o->keep_d ? zs : zs + j0)
                                                      : NULL,
                                                   pend, j0, j, stream);
        seg_max[j] = m;
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

#ifdef XF_NARROW
/* ---- narrow rows (C <= XF_NARROW_MAX): XF_W rows at a time ----
 *
 * A row of a few classes would leave most lanes idle and pay a log and
 * two exps per row.  Here the lanes are rows: the classes of XF_W rows are
 * transposed into one vector per class (by two-source permutes of the
 * block's flat vectors when the ISA offers them and C <= XF_COLUMNS_MAX,
 * else by gathers, which are slow on some CPUs) for the max, sum-exp and
 * log, then the gradient is written in flat row-major order, each element
 * fetching its row's max, log-sum and coefficients by a permute.  Needs x
 * (and out) rows exactly C apart.  Processes whole groups of XF_W rows from `begin`
 * (callers start blocks at multiples of 16, so the grouping, and every
 * bit of the result, is the same for any thread count); returns where it
 * stopped. */
#define XF_NARROW_MAX 32

/* A narrow row's lse: +inf for a +inf logit, unless the row also holds a
 * NaN (which the vector max may have skipped): then NaN. */
static inline double XF_FN(narrow_lse)(const XF_T *x, int64_t C, XF_T m, double lse) {
    if (m != INFINITY) return lse;
    return isnan(XF_FN(nan_aware_max)(x, C, m)) ? NAN : INFINITY;
}

static int64_t XF_FN(rows_narrow)(const xf_rows_args *a, int64_t begin, int64_t end,
                                  int32_t *row_index) {
    const int64_t C = a->n_classes;
    const int grad = a->mode == XF_MODE_GRAD;
    const XF_T *w = (const XF_T *)a->class_weight;
    const double lam = a->z_loss;
    int32_t lane_offset[XF_W];
    XF_T lane_f[XF_W];
    for (int l = 0; l < XF_W; l++) {
        lane_offset[l] = (int32_t)(l * C);
        lane_f[l] = (XF_T)l;
    }
    const XF_VI offsets = VI_LOAD(lane_offset);
    const XF_V iota = V_LOADU(lane_f);
    if (grad) /* element j of a block of XF_W rows belongs to row j / C */
        for (int64_t j = 0; j < C * XF_W; j++) row_index[j] = (int32_t)(j / C);
    XF_T m_a[XF_W], ls_a[XF_W], zy_a[XF_W], py_a[XF_W], coef_a[XF_W], tsub_a[XF_W];
    const int plain = !w && !a->row_weight && lam == 0 && !a->row_scale && !a->row_z_loss;
#ifdef XF_COLUMNS
    XF_COLUMNS columns;
    const int permuted = C <= XF_COLUMNS_MAX;
    if (permuted) V_COLUMNS_SETUP(&columns, C);
#endif
    int64_t r0 = begin;
    for (; r0 + XF_W <= end; r0 += XF_W) {
        const XF_T *xb = (const XF_T *)a->x + r0 * C;
        XF_FN(prefetch_ahead)(xb, (int)C); /* the block's C vectors of logits */
        XF_V xv[XF_NARROW_MAX];
        XF_V m = V_SET1(-INFINITY), s = V_SET1(0);
#ifdef XF_COLUMNS
        if (permuted) {
            XF_V flat[XF_COLUMNS_MAX];
            for (int64_t k = 0; k < C; k++) flat[k] = V_LOADU(xb + k * XF_W);
            for (int64_t k = 0; k < C; k++) {
                xv[k] = V_COLUMN(&columns, flat, C, k);
                m = V_MAX(m, xv[k]);
            }
        } else
#endif
        for (int64_t k = 0; k < C; k++) {
            xv[k] = V_GATHER(xb + k, offsets);
            m = V_MAX(m, xv[k]);
        }
        /* a fully masked row: exps against -max (all 0), so log S = -inf and
         * lse = -inf; its loss and gradient come out NaN as in rows() */
        m = V_MAX(V_SET1(-XF_T_MAX), m);
        for (int64_t k = 0; k < C; k++) s = V_ADD(s, V_EXP(V_SUB(xv[k], m)));
        const XF_V ls = V_LOG(s);
        /* the targets, vectorised: flat offsets of z_y, keep = 0 for ignored rows */
        XF_V keep;
        const XF_VI y_off = V_TARGET_OFFSETS(a->target ? a->target + r0 : NULL, a->ignore_index,
                                             offsets, &keep);
        const int any_ignored = V_ANY_ZERO(keep);
        XF_V zy;
#ifdef XF_COLUMNS
        if (permuted) { /* z_y picked from the columns: no gather */
            const XF_V y = V_SUB(VI_TO_V(y_off), VI_TO_V(offsets));
            zy = V_SET1(0);
            for (int64_t k = 0; k < C; k++)
                zy = V_ADD(zy, V_SELECT_EQ(y, V_SET1((XF_T)k), xv[k]));
        } else
#endif
        zy = V_GATHER(xb, y_off);
        /* per row: the gradient's scale coef and what its target entry
         * subtracts, tsub: out_y = e_y coef - tsub (zero for ignored rows) */
        XF_V coef, tsub;
        if (plain) {
            /* no weights, z-loss or per-row scales: the loss (m - z_y) + log S,
             * and the gradient's scale is the same for every counted row */
            if (a->row_loss)
                V_STORE_F64(a->row_loss + r0, V_ZERO_WHERE_ZERO(V_ADD(V_SUB(m, zy), ls), keep));
            coef = tsub = V_MUL(keep, V_SET1((XF_T)a->scale));
            if (a->row_lse) {
                V_STOREU(m_a, m);
                V_STOREU(ls_a, V_ADD(m, ls));
                for (int l = 0; l < XF_W; l++)
                    a->row_lse[r0 + l] = a->target && a->target[r0 + l] == a->ignore_index
                                             ? NAN
                                             : XF_FN(narrow_lse)(xb + l * C, C, m_a[l],
                                                                 (double)ls_a[l]);
            }
        } else {
        V_STOREU(m_a, m);
        V_STOREU(ls_a, ls);
        V_STOREU(zy_a, zy);
        if (grad) V_STOREU(py_a, V_EXP(V_SUB(V_SUB(zy, m), ls)));
        /* per row, in double: the loss and the gradient's scale (as rows()) */
        for (int l = 0; l < XF_W; l++) {
            const int64_t r = r0 + l;
            const int64_t y = a->target ? a->target[r] : -1;
            coef_a[l] = tsub_a[l] = 0;
            if (a->target && y == a->ignore_index) {
                if (a->row_loss) a->row_loss[r] = 0.0;
                if (a->row_z_loss) a->row_z_loss[r] = 0.0;
                if (a->row_lse) a->row_lse[r] = NAN;
                continue;
            }
            const double M = (double)m_a[l], log_S = (double)ls_a[l], lse = M + log_S;
            if (a->row_lse) a->row_lse[r] = XF_FN(narrow_lse)(xb + l * C, C, m_a[l], lse);
            const double w_y = (w && y >= 0) ? (double)w[y] : 1.0;
            const double s_r = a->row_weight ? a->row_weight[r] : 1.0;
            const double zl = lam * lse * lse;
            if (a->row_loss)
                a->row_loss[r] = s_r * (XF_FN(times_nz)(w_y, (M - (double)zy_a[l]) + log_S) + zl);
            if (a->row_z_loss) a->row_z_loss[r] = s_r * zl;
            if (grad) {
                const double R = a->scale * (a->row_scale ? a->row_scale[r] : 1.0) * s_r;
                coef_a[l] = (XF_T)(R * (w_y + (lam != 0 ? 2 * lam * lse : 0.0)));
                tsub_a[l] = (XF_T)(R * w_y);
            }
        }
        coef = V_LOADU(coef_a);
        tsub = V_LOADU(tsub_a);
        }
        if (!grad) continue;
        /* the gradient in flat row-major order: each element fetches its
         * row's max, log-sum and coefficients by a permute, and the target
         * entry (flat index l*C + y) subtracts tsub within the same FMA */
        XF_T *ob = (XF_T *)a->out + r0 * C;
        const XF_V y_flat = VI_TO_V(y_off);
        for (int64_t j = 0; j < C; j++) {
            const XF_VI idx = VI_LOAD(row_index + j * XF_W);
            const XF_V z = V_SUB(V_SUB(V_LOADU(xb + j * XF_W), V_PERMUTE(m, idx)), V_PERMUTE(ls, idx));
            const XF_V at_target = V_SELECT_EQ(V_ADD(iota, V_SET1((XF_T)(j * XF_W))),
                                               V_PERMUTE(y_flat, idx), V_PERMUTE(tsub, idx));
            XF_V g = V_FMS(V_EXP(z), V_PERMUTE(coef, idx), at_target);
            /* an ignored row is exactly 0, even for NaN logits */
            if (any_ignored) g = V_ZERO_WHERE_ZERO(g, V_PERMUTE(keep, idx));
            V_STOREU(ob + j * XF_W, g);
        }
    }
    return r0;
}
#endif

static void XF_FN(rows)(const xf_rows_args *a, int64_t begin, int64_t end, void *scratch) {
    const int64_t C = a->n_classes;
    const int mode = a->mode;
    const int want_out = (mode == XF_MODE_GRAD || mode == XF_MODE_SOFTMAX);
    const double eps = a->label_smoothing, lam = a->z_loss;
    const XF_T *w = (const XF_T *)a->class_weight;
    const int prob = a->target_prob != NULL;
    const int general = eps != 0 || prob || a->inv_temperature != 1 || a->softcap != 0 ||
                        mode == XF_MODE_EVAL;
    XF_FN(opts_t) o;
    XF_FN(opts_set)(&o, a->softcap, a->inv_temperature);
    /* the one loop's exps are not relative to the max of z: not for one
     * class (z against itself gives a loss of exactly 0), nor for the
     * entropy (sum p (lse - z) is accurate from z - max, where z - max <= 0) */
    o.one_loop = o.one_loop && C >= 2 && mode != XF_MODE_EVAL;
    o.w = w;
    o.want_wz = eps != 0;
    o.want_ez = mode == XF_MODE_EVAL;
    /* scratch: C exps, C softcapped logits z (vector-aligned), one max per segment */
    const int64_t c_pad = (C + 15) & ~(int64_t)15;
    XF_T *e = (XF_T *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    XF_T *zs = e + c_pad;
    XF_T *seg_max = zs + c_pad;
    int stream = a->streaming;
    /* A softcapped gradient, (e f - w (alpha tp + beta)) d with d =
     * 1 - (z/c)^2 (its target entry written apart), keeps its exps chained,
     * E = e d.  With no shift terms (index targets, no smoothing) the write
     * is then the plain one, E f: it reads one scratch row instead of two
     * (e and z), and z needs no more than a segment's room, so the scratch
     * traffic between L1 and L2 drops from 20 to 12 bytes per element (by
     * count; one thread, 1024x32000, softcap 30, from DRAM,
     * `tools/kernel_bench.sh avx512 1024 32000 1 30 8 1`, five runs each:
     * 16.7-17.9 ms unchained, 15.8-16.4 chained; in L1 both 1.14
     * cycles/element).  With shift terms d is kept too, in z's place (keep_d),
     * and the write is E f - w (alpha tp + beta) d: a multiply and an FNMA
     * where (e f - b) (1 - (z/c)^2) took four multiply-class operations and
     * a subtraction.  With smoothing and z-loss (`LS=0.1 ZL=1e-4
     * tools/kernel_bench.sh avx512 ...`, and sum z from the z loop, see
     * gen_segment): in L1 (4 2000 1 30 200000) 1.23 -> 1.20 cycles/element,
     * from DRAM (1024 32000 1 30 8 1, seven runs each) 17.6 -> 16.9 ms best.
     * Writing (e f - b) d from bare exps instead (an FMA and a multiply,
     * one multiply fewer in the exp loop) measured 1.22 in L1: not kept. */
    o.chain = mode == XF_MODE_GRAD && a->softcap != 0; /* z is kept (zs) for these only */
    o.keep_d = o.chain && (prob || eps != 0);
    /* A softcapped float32 gradient is compute-bound while the row's stats
     * are taken and store-bound while it is written; one after the other,
     * the cores idle on the stores.  So each row's write is deferred into
     * the next row's z and exp loops (gen_segment), which then takes a second
     * set of scratch buffers (for float32 they fit in xf_scratch_bytes). */
    const int defer = o.chain && sizeof(XF_T) == 4;
    const int64_t n_seg_pad = ((C + XF_SEGMENT - 1) / XF_SEGMENT + 15) & ~(int64_t)15;
    XF_T *e_alt = seg_max + n_seg_pad, *zs_alt = e_alt + c_pad, *seg_max_alt = zs_alt + c_pad;
    XF_FN(pending_t) pend;
    pend.out = NULL;
#ifdef XF_NARROW
    if (!general && C <= XF_NARROW_MAX && a->x_stride == C && a->row_entropy == NULL &&
        (mode == XF_MODE_LOSS || mode == XF_MODE_LSE ||
         (mode == XF_MODE_GRAD && a->out_stride == C)))
        begin = XF_FN(rows_narrow)(a, begin, end, (int32_t *)e);
#endif

    for (int64_t r = begin; r < end; r++) {
        const XF_T *x = (const XF_T *)a->x + r * a->x_stride;
        const XF_T *tp = prob ? (const XF_T *)a->target_prob + r * a->target_prob_stride : NULL;
        XF_T *out = a->out ? (XF_T *)a->out + r * a->out_stride : NULL;
        int64_t y = -1;
        double w_y = 1.0;
        if (a->target) {
            y = a->target[r];
            if (y == a->ignore_index) { /* an ignored row: zero loss, zero gradient */
                if (a->row_loss) a->row_loss[r] = 0.0;
                if (a->row_z_loss) a->row_z_loss[r] = 0.0;
                if (a->row_lse) a->row_lse[r] = NAN;
                if (a->row_entropy) a->row_entropy[r] = NAN;
                if (a->row_argmax) a->row_argmax[r] = XF_FN(row_argmax)(x, C);
                if (mode == XF_MODE_GRAD)
                    XF_FN(write_segment)(out, NULL, NULL, NULL, NULL, C, 0, 0, 0, stream);
                continue;
            }
            if (w) w_y = (double)w[y];
        }
        double M, S;
        XF_FN(sums_t) sums = {0, 0, 0, 0, 0};
        if (general) {
            XF_FN(row_stats_general)(x, tp, C, &o, (want_out || o.cap) ? e : NULL,
                                     o.chain ? zs : NULL, seg_max, &M, &S, &sums,
                                     pend.out ? &pend : NULL, stream);
            if (pend.out) { /* the deferred row is written: its target's entry last */
                if (pend.y >= 0) pend.out[pend.y] = pend.out_y;
                pend.out = NULL;
            }
        } else {
            XF_FN(row_stats)(x, C, want_out ? e : NULL, want_out ? seg_max : NULL, &M, &S);
        }
        const double log_S = log(S);
        const double lse = M + log_S;
        /* a +inf logit: lse +inf (the loss and gradient are NaN, as PyTorch) */
        if (a->row_lse) a->row_lse[r] = M == INFINITY ? INFINITY : lse;
        /* H = sum p (lse - z) = log S - sum e^{z-M} (z-M) / S */
        if (a->row_entropy) a->row_entropy[r] = log_S - sums.ez / S;
        if (a->row_argmax) a->row_argmax[r] = XF_FN(row_argmax)(x, C);

        /* the loss and the coefficients of its gradient w.r.t. z:
         *   dl/dz_k = p_k * A - w_k * (alpha * tp_k + beta) - [k = y] * hit */
        const double s_r = a->row_weight ? a->row_weight[r] : 1.0;
        const double zl = lam * lse * lse; /* also for lam = 0: NaN stays NaN */
        double loss = 0.0, A = 0.0, alpha = 0.0, beta = 0.0, hit = 0.0, z_y = 0.0;
        /* a zero coefficient (eps = 1) adds 0, even against a masked class */
        if (prob) {
            const double Q = (1 - eps) * sums.wt + eps / C * a->weight_total;
            const double wqz = (eps != 1 ? (1 - eps) * sums.wtz : 0.0) + eps / C * sums.wz;
            /* Q lse - wqz with lse = M + log S: the large parts cancel first */
            loss = (Q * M - wqz) + Q * log_S + zl;
            A = Q;
            alpha = 1 - eps;
            beta = eps / C;
        } else if (y >= 0) {
            /* transform1 is the z loop's code: z_y is the z the exps saw */
            z_y = general ? XF_FN(transform1)(x[y], &o) : (double)x[y];
            /* lse - z_y as (M - z_y) + log S: lse = M + log S would lose
             * log S against a huge M (3e38 + log 3 rounds to 3e38).  It is
             * >= 0; the one loop's exps (not shifted by the max) could round
             * it below by ~1e-7 for a certain row */
            const double gap = (M - z_y) + log_S;
            const double margin = gap < 0 ? 0.0 : gap; /* NaN stays */
            loss = XF_FN(times_nz)((1 - eps) * w_y, margin) + zl;
            if (eps != 0)
                loss += eps / C * ((a->weight_total * M - sums.wz) + a->weight_total * log_S);
            A = (1 - eps) * w_y + eps / C * a->weight_total;
            beta = eps / C;
            hit = (1 - eps) * w_y;
        }
        if (lam != 0) A += 2 * lam * lse;
        if (M == -INFINITY) loss = NAN; /* every class masked: no distribution */
        if (a->row_loss) a->row_loss[r] = s_r * loss;
        if (a->row_z_loss) a->row_z_loss[r] = s_r * zl;

        /* a row with every class masked has no distribution: NaN out, as PyTorch */
        if (M == -INFINITY) M = NAN;
        if (mode == XF_MODE_GRAD) {
            const double R = a->scale * (a->row_scale ? a->row_scale[r] : 1.0) * s_r;
            /* dz/dx = (1/T) dz/du: 1/T folded into the row's coefficients */
            const double it = general ? (double)o.inv_t : 1.0;
            /* chained: the exps carry the chain factor, the shift terms
             * take it from ds, and without shift terms (beta = 0, no tp)
             * w goes with them */
            XF_FN(pending_t) row = {out, e, o.keep_d ? zs : NULL, seg_max,
                                    (general && (!o.chain || o.keep_d)) ? w : NULL, tp, M,
                                    log_S, R * A * it, (XF_T)(R * alpha * it),
                                    (XF_T)(R * beta * it), y, 0};
            if (y >= 0) {
                /* the target's entry, recomputed in double from the scratch exp
                 * rather than read back from a (possibly streamed) store */
                const int64_t jy = y / XF_SEGMENT;
                const double p_y = seg_max[jy] == -INFINITY
                                       ? XF_FN(seg_factor)(seg_max[jy], M, log_S)
                                       : (double)e[y] * XF_FN(seg_factor)(seg_max[jy], M, log_S);
                const double b_y = general ? w_y * beta : 0.0;
                const double th_y = z_y * (double)o.inv_cap, chain_y = 1.0 - th_y * th_y;
                /* chained, p_y holds the chain factor already */
                row.out_y = o.chain
                                ? (XF_T)(R * (p_y * A - (b_y + hit) * chain_y) * o.inv_t)
                                : (XF_T)(R * (p_y * A - b_y - hit) * (general ? o.inv_t : 1.0));
            }
            if (defer) {
                /* written during the next row's stats (or after the last
                 * row); the next row takes the other scratch buffers */
                pend = row;
                XF_T *t = e;
                e = e_alt, e_alt = t;
                t = zs, zs = zs_alt, zs_alt = t;
                t = seg_max, seg_max = seg_max_alt, seg_max_alt = t;
            } else {
                XF_FN(write_pending)(&row, C, stream);
            }
        } else if (mode == XF_MODE_SOFTMAX) {
            XF_FN(write_row)(out, e, seg_max, NULL, NULL, NULL, C, M, log_S, 1.0, 0, 0, stream);
        } else if (mode == XF_MODE_LOG_SOFTMAX) {
            XF_FN(write_log_softmax_row)(out, x, C, M, log_S);
        }
    }
    if (pend.out) XF_FN(write_pending)(&pend, C, stream);
    if (stream) XF_SFENCE();
}

/* ---- one row split over threads (few rows, many classes) ----
 * The same fixed segments as rows(), computed in parallel units and folded
 * in segment order: every bit equals the one-thread result.  Plain loss
 * only (class weights, z-loss, row scales; no temperature, softcap,
 * smoothing or probability targets). */

/* Row r's output row when the mode writes one (else NULL). */
static XF_T *XF_FN(split_out_row)(const xf_rows_args *a, int64_t r) {
    const int writes = a->out && (a->mode == XF_MODE_GRAD || a->mode == XF_MODE_SOFTMAX);
    return writes ? (XF_T *)a->out + r * a->out_stride : NULL;
}

/* Phase 1: (m_j, s_j) of segments [j_begin, j_end) of row r; when the row
 * has an output, the exps exp(x - m_j) go there (as rows() keeps them in
 * scratch), for phase 2 to scale in place: one exp per element. */
static void XF_FN(split_stats)(const xf_rows_args *a, int64_t r, int64_t j_begin, int64_t j_end,
                               XF_T *seg_max, double *seg_sum) {
    const XF_T *x = (const XF_T *)a->x + r * a->x_stride;
    XF_T *e = XF_FN(split_out_row)(a, r);
    for (int64_t j = j_begin; j < j_end; j++)
        seg_sum[j] = XF_FN(seg_stats)(x, a->n_classes, j, e, &seg_max[j]);
}

/* Between the phases, on one thread: fold the segments of row r, write its
 * loss and lse.  Leaves in row[] what phase 2 and split_fix need: M, log S,
 * the gradient's scale R*A (0 for an ignored row) and the target's output
 * entry, computed here from the target's exp before phase 2 scales it. */
static void XF_FN(split_fold)(const xf_rows_args *a, int64_t r, const XF_T *seg_max,
                              const double *seg_sum, double *row) {
    const int64_t C = a->n_classes, n_seg = (C + XF_SEGMENT - 1) / XF_SEGMENT;
    const XF_T *e = XF_FN(split_out_row)(a, r);
    const XF_T *w = (const XF_T *)a->class_weight;
    double M = -INFINITY, S = 0.0;
    for (int64_t j = 0; j < n_seg; j++) XF_FN(combine)(&M, &S, seg_max[j], seg_sum[j]);
    const double log_S = log(S), lse = M + log_S;
    int64_t y = -1;
    if (a->target) {
        y = a->target[r];
        if (y == a->ignore_index) {
            if (a->row_loss) a->row_loss[r] = 0.0;
            if (a->row_z_loss) a->row_z_loss[r] = 0.0;
            if (a->row_lse) a->row_lse[r] = NAN;
            row[XF_SPLIT_M] = M;
            row[XF_SPLIT_LOG_S] = log_S;
            row[XF_SPLIT_G] = row[XF_SPLIT_TARGET_OUT] = 0.0;
            return;
        }
    }
    if (a->row_lse) a->row_lse[r] = M == INFINITY ? INFINITY : lse;
    const double w_y = (w && y >= 0) ? (double)w[y] : 1.0;
    const double s_r = a->row_weight ? a->row_weight[r] : 1.0;
    const double zl = a->z_loss * lse * lse;
    if (y >= 0 && a->row_loss)
        a->row_loss[r] = s_r * (XF_FN(times_nz)(w_y, (M - row[XF_SPLIT_ZY]) + log_S) + zl);
    if (a->row_z_loss) a->row_z_loss[r] = s_r * zl;
    /* a row with every class masked has no distribution: NaN, as rows() */
    row[XF_SPLIT_M] = M == -INFINITY ? NAN : M;
    row[XF_SPLIT_LOG_S] = log_S;
    const double R = a->scale * (a->row_scale ? a->row_scale[r] : 1.0) * s_r;
    const double A = w_y + (a->z_loss != 0 ? 2 * a->z_loss * lse : 0.0);
    row[XF_SPLIT_G] = a->mode == XF_MODE_SOFTMAX ? 1.0 : R * A;
    row[XF_SPLIT_TARGET_OUT] = 0.0;
    if (y >= 0 && a->mode == XF_MODE_GRAD && e) {
        /* the arithmetic of rows()'s target entry, operand for operand */
        const int64_t jy = y / XF_SEGMENT;
        double p_y = XF_FN(seg_factor)(seg_max[jy], row[XF_SPLIT_M], log_S);
        if (seg_max[jy] != -INFINITY) p_y = (double)e[y] * p_y;
        row[XF_SPLIT_TARGET_OUT] = R * (p_y * A - 0.0 - w_y) * 1.0;
    }
}

/* Phase 2: segments [j_begin, j_end) of row r's output: the exps phase 1
 * left there, times the segment's factor (the arithmetic of rows()). */
static void XF_FN(split_write)(const xf_rows_args *a, int64_t r, int64_t j_begin, int64_t j_end,
                               const XF_T *seg_max, const double *row) {
    const double M = row[XF_SPLIT_M], log_S = row[XF_SPLIT_LOG_S], g = row[XF_SPLIT_G];
    const int64_t C = a->n_classes;
    XF_T *out = (XF_T *)a->out + r * a->out_stride;
    const int ignored = a->target && a->target[r] == a->ignore_index;
    for (int64_t j = j_begin; j < j_end; j++) {
        const int64_t j0 = j * XF_SEGMENT;
        const int64_t n = (C - j0 < XF_SEGMENT) ? C - j0 : XF_SEGMENT;
        const double f = ignored ? 0.0 : XF_FN(seg_factor)(seg_max[j], M, log_S) * g;
        if (ignored || seg_max[j] == -INFINITY) {
            XF_FN(write_segment)(out + j0, NULL, NULL, NULL, NULL, n, 0, 0, (XF_T)-f,
                                 a->streaming);
            continue;
        }
        XF_FN(write_segment)(out + j0, out + j0, NULL, NULL, NULL, n, (XF_T)f, 0, 0,
                             a->streaming);
    }
}

/* After phase 2, on one thread: the target's entry of row r. */
static void XF_FN(split_fix)(const xf_rows_args *a, int64_t r, const XF_T *seg_max,
                             const double *row) {
    (void)seg_max;
    if (a->mode != XF_MODE_GRAD || !a->target) return;
    const int64_t y = a->target[r];
    if (y == a->ignore_index) return;
    ((XF_T *)a->out + r * a->out_stride)[y] = (XF_T)row[XF_SPLIT_TARGET_OUT];
}

/* y = exp(x) elementwise, with the kernels' own exp (for the accuracy tests) */
static inline void XF_FN(exp)(const XF_T *x, XF_T *y, int64_t n) {
    int64_t i = 0;
    for (; i + XF_W <= n; i += XF_W) V_STOREU(y + i, V_EXP(V_LOADU(x + i)));
    if (i < n) V_STORE_TAIL(y + i, V_EXP(V_LOAD_TAIL(x + i, n - i, 0)), n - i);
}
