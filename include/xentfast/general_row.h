/* The general row: temperature, label smoothing, probability targets,
 * entropy (and, through softcap.h, the softcap).
 *
 * Computes, per segment of z = x / T (or z given by the softcap's z loop),
 * the sums a row's finish needs beyond (max, sum-exp): sum e (z - m) for
 * the entropy, sum w z for smoothing, sum w p z and sum w p for
 * probability targets, with the exps kept in scratch for the write.
 * The plan picks it (XF_PLAN_GENERAL) for any of those options; the plain
 * loss never comes here.  Probability targets cost 1.39-1.50x the plain
 * pass (8192x32000, 2 threads, `python -m xentfast.bench --options`).
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* The options of a general row, fixed per call (general_opts_set in
 * softcap.h fills them). */
typedef struct {
    XF_T inv_t;        /* 1/T                                       */
    XF_T cap, inv_cap; /* softcap c (0: none), 1/c                  */
    /* the two-loop softcap's tanh (softcap.h) */
    XF_T u_scale;              /* u = x u_scale: 1/(T c), 1 when folded into
                               * the rational tanh's coefficients, or 2/(T c)
                               * for the tanh by expm1                     */
    XF_T bound;                /* its clamp on u                            */
    XF_T tanh_p[6], tanh_q[4]; /* the rational tanh's coefficients in u^2  */
    /* the one-loop softcap (softcap.h) */
    int one_loop;            /* the plan chose it                         */
    XF_T exp_k, exp_x_bound; /* e^{2u} = 2^{x k}: k, and the clamp on x   */
    XF_T cap2, inv_cap2;     /* z in base 2: c log2(e) and 1/that         */
    const XF_T *w;           /* class weights, or NULL                    */
    int want_wz, want_ez;    /* sums w z (smoothing) and e z (entropy)    */
    int chain;               /* exps stored times the softcap's chain
                               * factor (a softcapped gradient: softcap.h)  */
    int keep_chain;          /* and the chain factors kept in a row, for
                               * the shift terms (smoothing, probabilities) */
} XF_FN(general_opts);

/* A segment's sums: s = sum e, ez = sum e (z - m) (e = exp(z - m), m the
 * segment's max of z), wz = sum w z, wtz = sum w p z, wt = sum w p. */
typedef struct {
    double s, ez;
    double wz, wtz, wt;
} XF_FN(sums_t);

#ifndef XENTFAST_GENERAL_ROW_CONSTANTS
#define XENTFAST_GENERAL_ROW_CONSTANTS
/* Which exps a loop takes of z - m. */
enum {
    XF_EXPS_EXACT = 0, /* V_EXP: within 0.9 ulp                                 */
    XF_EXPS_CHEAP = 1, /* V_EXP_MID: enough for a softcapped z (softcap.h)      */
    XF_EXPS_BASE2 = 2  /* 2^z, z in base 2 and unshifted (the one-loop softcap) */
};

/* How a softcapped segment's loops store and write (flags, constant per
 * inlined loop; softcap.h) */
/* XF_SHIFT 1 and XF_DRAIN_STREAM 2: row_write.h (the drain) */
#define XF_CHAIN 4  /* the exps stored chained (general_opts.chain) */
#define XF_LEAN  8  /* no class weights, probability targets or entropy */
#define XF_BASE2 16 /* z in units of ln 2 (the one loop) */
#endif

/* The softcap's chain factor dz/du = 1 - (z/c)^2 (tanh' = 1 - tanh^2);
 * base2: z in units of ln 2 (the one loop). */
static XF_ALWAYS_INLINE XF_V XF_FN(chain_factor)(XF_V z, const XF_FN(general_opts) * o,
                                                 const int base2) {
    const XF_V th = V_MUL(z, V_SET1(base2 ? o->inv_cap2 : o->inv_cap));
    return V_FNMA(th, th, V_SET1(1));
}

#ifdef V_EXP2_MID
#define XF_EXP2_MID V_EXP2_MID
#else
#define XF_EXP2_MID(z) (z) /* never taken: only the one loop asks for it */
#endif

/* One vector of a segment, z the transformed logits: `valid` lanes are
 * real (the rest are zeroed).  exps: XF_EXPS_*; lean: no sums of e z or
 * w z, whatever the options say (known at compile time). */
static XF_ALWAYS_INLINE void XF_FN(gen_vec)(const XF_FN(general_opts) * o, XF_V z, XF_V w,
                                            const XF_T *tp, XF_V tpv, XF_V mv, int64_t valid,
                                            XF_V *s, XF_V *ez, XF_V *wz, XF_V *wtz, XF_V *wt,
                                            XF_V *e_out, const int exps, const int lean) {
    const XF_V zm = exps == XF_EXPS_BASE2 ? z : V_SUB(z, mv);
    /* a softcapped z carries an absolute error of about c * 1e-7, so
     * e^{z-m} needs no more than V_EXP_MID's accuracy; z - m >= -2c is
     * finite, and clamped at -87.3 (a no-op for c <= 43), where the exp is
     * about FLT_MIN: an absolute error under 1.2e-38 */
    XF_V e = exps == XF_EXPS_BASE2                          ? XF_EXP2_MID(z)
             : (exps == XF_EXPS_CHEAP && sizeof(XF_T) == 4) ? V_EXP_MID(V_MAX(V_SET1(-87.3), zm))
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
 * factors, which XF_SHIFT keeps at chain_factors + i too. */
static XF_ALWAYS_INLINE void XF_FN(store_exps)(XF_T *e, XF_T *chain_factors, int64_t i,
                                               int64_t lanes, XF_V ev, XF_V z,
                                               const XF_FN(general_opts) * o, const int how) {
    if (how & XF_CHAIN) {
        const XF_V dv = XF_FN(chain_factor)(z, o, how & XF_BASE2);
        if (how & XF_SHIFT) {
            if (lanes == XF_W)
                V_STOREU(chain_factors + i, dv);
            else
                V_STORE_TAIL(chain_factors + i, dv, lanes);
        }
        ev = V_MUL(ev, dv);
    }
    if (lanes == XF_W)
        V_STOREU(e + i, ev);
    else
        V_STORE_TAIL(e + i, ev, lanes);
}

/* The exps and sums of a segment.  z_given: x already holds z (the
 * softcap's z loop), whose exps may be cheap; otherwise z = x / T here.
 * Under XF_CHAIN the exps are stored times the chain factors, and under
 * XF_SHIFT those go to chain_factors too (which may be x).  A drain (or
 * NULL) advances a vector per vector; after the softcap's z loop
 * (z_given), which drained its first half, one per two. */
static XF_ALWAYS_INLINE XF_FN(sums_t)
    XF_FN(gen_loop)(const XF_T *x, const XF_T *w, const XF_T *tp, int64_t n, XF_T m,
                    const XF_FN(general_opts) * o, XF_T *e, XF_T *chain_factors, const int z_given,
                    XF_FN(drain_t) * drain, const int how) {
    const XF_V zero = V_SET1(0), one = V_SET1(1), mv = V_SET1(m), inv_t = V_SET1(o->inv_t);
    const int exps = z_given ? XF_EXPS_CHEAP : XF_EXPS_EXACT;
    XF_V s = zero, ez = zero, wz = zero, wtz = zero, wt = zero, ev;
    int64_t i = 0;
    for (; i + XF_W <= n; i += XF_W) {
        if (!z_given) XF_FN(prefetch_ahead)(x + i, 1, 0, 0);
        if (tp) XF_FN(prefetch_ahead)(tp + i, 1, 0, 0);
        const XF_V z = z_given ? V_LOADU(x + i) : V_ROUND_T(V_MUL(V_LOADU(x + i), inv_t));
        XF_FN(gen_vec)
        (o, z, w ? V_LOADU(w + i) : one, tp, tp ? V_LOADU(tp + i) : zero, mv, XF_W, &s, &ez, &wz,
         &wtz, &wt, &ev, exps, 0);
        /* the drain: without a softcap a vector per vector, before the store
         * (it may read this very scratch); after the softcap's z loop
         * (z_given), which drained half of the segment, a vector per two */
        if (drain && !z_given) XF_FN(drain_before_store)(drain, how, 1, i + XF_W);
        if (e) XF_FN(store_exps)(e, chain_factors, i, XF_W, ev, z, o, how);
        if (drain && z_given && ((i / XF_W) & 1)) XF_FN(drain_step)(drain, how);
    }
    if (drain && !z_given) XF_FN(drain_close)(drain, how);
    if (i < n) {
        const int64_t r = n - i;
        const XF_V xv = V_LOAD_TAIL(x + i, r, 0);
        const XF_V z = z_given ? xv : V_ROUND_T(V_MUL(xv, inv_t));
        XF_FN(gen_vec)
        (o, z, w ? V_LOAD_TAIL(w + i, r, 0) : one, tp, tp ? V_LOAD_TAIL(tp + i, r, 0) : zero, mv, r,
         &s, &ez, &wz, &wtz, &wt, &ev, exps, 0);
        if (e) XF_FN(store_exps)(e, chain_factors, i, r, ev, z, o, how);
    }
    XF_FN(sums_t) out = {V_HSUM(s), V_HSUM(ez), V_HSUM(wz), V_HSUM(wtz), V_HSUM(wt)};
    return out;
}
