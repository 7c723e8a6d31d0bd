/* The softcap: z = c tanh((x / T) / c) (Gemma 2), its transform and loops.
 *
 * Computes the general row's segment (general_row.h) when the logits are
 * capped: z by a tanh (a rational function on the SIMD layers, expm1 on
 * the scalar one), then its exps, the gradient's chain factor
 * dz/du = 1 - (z/c)^2 kept with them.  The plan picks the two-loop form
 * (XF_PLAN_SOFTCAP: a z loop, then an exp loop over z from L1) or, for
 * caps up to the layer's one_loop_cap, the one loop (XF_PLAN_SOFTCAP_ONE_LOOP:
 * the exps of z itself, unshifted, since |z| <= c bounds them).
 * A softcap is the one option that makes the pass compute-bound; so each
 * softcapped gradient row is written while the next row's z and exps are
 * computed (the drain), and its stores overlap that arithmetic.
 * One thread, 1024x32000, cap 30, from DRAM: 13.6 ms against 12.6 ms for
 * the plain pass (`tools/kernel_bench.sh avx512 1024 32000 1 30 8 1`, and
 * `... 1 0 8 1`).
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

#define XF_LOG2E 1.4426950408889634
#define XF_LN2   0.6931471805599453

#ifdef XF_TANH_RATIONAL
/* z = softcap(x / T) = c tanh u, u = x / (T c), for a vector of float32.
 * tanh u = u P(u^2) / Q(u^2) on |u| <= XF_TANH_U, beyond which tanh rounds
 * to +-1 in float (1 - tanh u < 2^-25 for u > 9.01); P of degree 5 with
 * P(0) = 1 (z tends to x / T for a cap much larger than the logits), Q of
 * degree 3 with Q(0) = 1, fitted for minimax relative error on [0, 9.02]
 * (Loeb's linearisation, a linear program per step; 1.5e-7 before float
 * rounding), c folded into P.  Nothing cancels (for |u| << 1 it is
 * u (1 + O(u^2)), unlike 1 - 2/(e^{2u} + 1)) and there is no range
 * reduction.  Where 1/(T c) folds into the coefficients (u_scale = 1),
 * the multiply by it is exact and costs one operation.  Accuracy 3.8e-7
 * relative for tanh, 4.1e-7 for 30 tanh(x/30) (`TOOL=exp_mid_check
 * tools/kernel_bench.sh avx512`).  NaN passes the clamp. */
#define XF_TANH_U 9.02f
static const double xf_tanh_p[6] = {1.0,          0.1296948,     0.0029735093,
                                    9.719833e-06, -1.401629e-08, 2.1090726e-11};
static const double xf_tanh_q[4] = {1.0, 0.4630285, 0.023982681, 0.00023520176};
static XF_ALWAYS_INLINE XF_V XF_FN(vtransform)(XF_V x, const XF_FN(general_opts) * o) {
    if (!o->cap) return V_ROUND_T(V_MUL(x, V_SET1(o->inv_t)));
    const XF_V u = V_MAX(V_SET1(-o->bound), V_MIN(V_SET1(o->bound), V_MUL(x, V_SET1(o->u_scale))));
    const XF_V t = V_MUL(u, u);
    XF_V p = V_FMA(V_SET1(o->tanh_p[5]), t, V_SET1(o->tanh_p[4]));
    p = V_FMA(p, t, V_SET1(o->tanh_p[3]));
    p = V_FMA(p, t, V_SET1(o->tanh_p[2]));
    p = V_FMA(p, t, V_SET1(o->tanh_p[1]));
    p = V_FMA(p, t, V_SET1(o->tanh_p[0]));
    XF_V q = V_FMA(V_SET1(o->tanh_q[3]), t, V_SET1(o->tanh_q[2]));
    q = V_FMA(q, t, V_SET1(o->tanh_q[1]));
    q = V_FMA(q, t, V_SET1(1.0f)); /* Q(0) = 1, folded or not */
    /* a true division: exact, and cheaper on Zen 4 than VRCP14PS plus a
     * Newton step plus the product */
    return V_DIV(V_MUL(u, p), q);
}

/* Whether s = 1/(T c) can be folded into the rational tanh's coefficients:
 * z = x P~(x^2) / Q~(x^2), P~_k = p_k s^2k / T, Q~_k = q_k s^2k, |x|
 * clamped to U/s, where every coefficient and the clamp's square stay
 * within [2^-100, 2^100] (far from overflow and from subnormal precision). */
static inline int XF_FN(tanh_can_fold)(double softcap, double inv_temperature) {
    const double s = inv_temperature / softcap, s2 = s * s, x_bound = XF_TANH_U / s;
    int fold = x_bound * x_bound < 0x1p100;
    double sk = 1.0; /* s^2k */
    for (int k = 0; k < 6; k++, sk *= s2) {
        const double pk = fabs(xf_tanh_p[k] * sk * inv_temperature);
        const double qk = k < 4 ? xf_tanh_q[k] * sk : 1.0;
        fold = fold && pk >= 0x1p-100 && pk <= 0x1p100 && qk >= 0x1p-100 && qk <= 0x1p100;
    }
    return fold;
}

/* The rational tanh's scale, clamp and coefficients for softcap c and 1/T,
 * s folded in or not (then u = s x and the coefficients times c). */
static inline void XF_FN(tanh_set)(XF_FN(general_opts) * o, double softcap, double inv_temperature,
                                   int fold) {
    const double s = inv_temperature / softcap, s2 = s * s;
    o->u_scale = fold ? 1 : (XF_T)fmin(s, XF_T_MAX);
    o->bound = fold ? (XF_T)(XF_TANH_U / s) : XF_TANH_U;
    double sk = 1.0; /* s^2k */
    for (int k = 0; k < 6; k++, sk *= s2) {
        o->tanh_p[k] = (XF_T)(fold ? xf_tanh_p[k] * sk * inv_temperature : softcap * xf_tanh_p[k]);
        if (k < 4) o->tanh_q[k] = (XF_T)(fold ? xf_tanh_q[k] * sk : xf_tanh_q[k]);
    }
}
#else
/* z = softcap(x / T) = c tanh v, v = x / (T c): tanh v = q / (q + 2) with
 * q = expm1(2v), of expm1's relative accuracy (1 - 2/(e^{2v} + 1) would
 * lose it for |v| << 1, and with it any cap much larger than the logits).
 * 2v is clamped to +-XF_TANH_2V, beyond which tanh rounds to +-1 in XF_T
 * (NaN passes). */
#define XF_TANH_2V (sizeof(XF_T) == 4 ? 20.0 : 40.0)
static XF_ALWAYS_INLINE XF_V XF_FN(vtransform)(XF_V x, const XF_FN(general_opts) * o) {
    if (!o->cap) return V_ROUND_T(V_MUL(x, V_SET1(o->inv_t)));
    XF_V v2 = V_MUL(x, V_SET1(o->u_scale));
    v2 = V_MAX(V_SET1(-XF_TANH_2V), V_MIN(V_SET1(XF_TANH_2V), v2));
    const XF_V q = V_EXPM1_MID(v2);
    const XF_V th = V_DIV(q, V_ADD(q, V_SET1(2)));
    return V_ROUND_T(V_MUL(V_SET1(o->cap), th));
}

static inline int XF_FN(tanh_can_fold)(double softcap, double inv_temperature) {
    (void)softcap;
    (void)inv_temperature;
    return 0;
}

static inline void XF_FN(tanh_set)(XF_FN(general_opts) * o, double softcap, double inv_temperature,
                                   int fold) {
    (void)fold;
    o->u_scale = (XF_T)fmin(2.0 * inv_temperature / softcap, XF_T_MAX);
}
#endif

#ifdef V_EXP2_SCALED
/* The one loop's z in units of ln 2: z2 = z log2(e) = c2 - 2 c2 / (1 + e^{2u})
 * (c2 = c log2(e)), e^{2u} = 2^{x k} by the table exp: five
 * multiply-class operations and a division per vector, where the rational
 * form takes ten and a division, and the exps of z2 then take three, not
 * five.  For |u| << 1 it has no relative accuracy (the subtraction
 * cancels), but an absolute error of about c 2.5e-7, as the rational
 * form's near |z| = c: all that the exps of z can use.  |x k| is clamped
 * to 40, where 2/(1 + 2^40) is far below half an ulp of 1 (NaN passes);
 * z2 is exactly +-c2 at the ends and 0 at x = 0. */
static XF_ALWAYS_INLINE XF_V XF_FN(vtransform_one)(XF_V x, const XF_FN(general_opts) * o) {
    const XF_V b = V_SET1(o->exp_x_bound);
    const XF_V e2u = V_EXP2_SCALED(V_MAX(V_SUB(V_SET1(0), b), V_MIN(b, x)), o->exp_k);
    return V_SUB(V_SET1(o->cap2), V_DIV(V_SET1(2 * o->cap2), V_ADD(V_SET1(1), e2u)));
}
#endif

/* The general row's options for one call (temperature and softcap
 * constants; the caller sets the rest).  Scales are kept at most the
 * largest XF_T: a finite factor keeps 0 * it = 0. */
static inline void XF_FN(general_opts_set)(XF_FN(general_opts) * o, const xf_rows_args *a,
                                           xf_plan_kind plan) {
    const double softcap = a->softcap, inv_temperature = a->inv_temperature;
    memset(o, 0, sizeof *o);
    o->inv_t = (XF_T)inv_temperature;
    o->cap = (XF_T)softcap;
    o->inv_cap = softcap ? (XF_T)(1.0 / softcap) : 0;
    o->one_loop = plan == XF_PLAN_SOFTCAP_ONE_LOOP;
    if (!softcap) return;
    XF_FN(tanh_set)(o, softcap, inv_temperature, XF_FN(tanh_can_fold)(softcap, inv_temperature));
    if (o->one_loop) {
        const double k = 2.0 * XF_LOG2E * inv_temperature / softcap;
        o->exp_k = (XF_T)k;
        o->exp_x_bound = (XF_T)(40.0 / k);
        o->cap2 = (XF_T)(softcap * XF_LOG2E);
        o->inv_cap2 = (XF_T)(1.0 / (softcap * XF_LOG2E));
    }
}

/* z of one logit by the very vector code of the row pass (lane 0), so
 * that z_y and the segment maxima agree bit for bit with the z the exps
 * were taken of: a one-class row then has loss exactly 0. */
static inline double XF_FN(transform1)(XF_T x, const XF_FN(general_opts) * o) {
#ifdef V_EXP2_SCALED
    if (o->one_loop) return XF_LN2 * (double)V_FIRST(XF_FN(vtransform_one)(V_SET1(x), o));
#endif
    return (double)V_FIRST(XF_FN(vtransform)(V_SET1(x), o));
}

/* The z loop over a segment (z = vtransform(x)); returns the max of z (a
 * max per vector on the adder pipes, which the tanh leaves idle, instead
 * of a pass of its own over x; a NaN may or may not win, and reaches the
 * sums through its exp either way).  A drain advances one vector per two
 * vectors of z, so the deferred row's stores drain evenly while the tanh
 * keeps the core busy, and its loads of the other row's scratch never
 * trail this row's stores at the same offset (4K aliasing when C is a
 * multiple of 1024). */
static XF_ALWAYS_INLINE XF_T XF_FN(tanh_loop)(const XF_T *x, XF_T *z, int64_t n,
                                              const XF_FN(general_opts) * o, XF_FN(drain_t) * drain,
                                              const int how, double *sum_z) {
    XF_V mv = V_SET1(-INFINITY), sv = V_SET1(0);
    int64_t i = 0;
    for (; i + XF_W <= n; i += XF_W) {
        XF_FN(prefetch_ahead)(x + i, 1, 0, 0);
        const XF_V zv = XF_FN(vtransform)(V_LOADU(x + i), o);
        V_STOREU(z + i, zv);
        mv = V_MAX(mv, zv);
        sv = V_ADD(sv, zv);
        if (drain && ((i / XF_W) & 1)) XF_FN(drain_step)(drain, how);
    }
    XF_T m = V_HMAX(mv);
    if (i < n) {
        /* the tail's lanes past n hold z(0) = 0: they add nothing */
        const XF_V zv = XF_FN(vtransform)(V_LOAD_TAIL(x + i, n - i, 0), o);
        V_STORE_TAIL(z + i, zv, n - i);
        sv = V_ADD(sv, zv);
        for (; i < n; i++) m = z[i] > m || isnan(z[i]) ? z[i] : m;
    }
    *sum_z = V_HSUM(sv);
    return m;
}

/* XF_PLAN_SOFTCAP's segment: z and its max m in a loop of their own, then
 * the exps from z (each vector's tanh-then-exp is one long dependent
 * chain; two short loops keep more vectors in flight), a drain (or NULL)
 * written across both. */
static XF_ALWAYS_INLINE XF_FN(sums_t)
    XF_FN(two_loop_segment)(const XF_T *x, const XF_T *w, const XF_T *tp, int64_t n, XF_T *m,
                            const XF_FN(general_opts) * o, XF_T *e, XF_T *z, XF_FN(drain_t) * drain,
                            const int how) {
    double sum_z;
    *m = XF_FN(tanh_loop)(x, z, n, o, drain, how, &sum_z);
    XF_FN(sums_t) sums = XF_FN(gen_loop)(z, w, tp, n, *m, o, e, z, 1, drain, how);
    if (drain) XF_FN(drain_close)(drain, how);
    if (!w) sums.wz = sum_z; /* softcap_segment left sum w z to this loop */
    return sums;
}

#ifdef V_EXP2_SCALED
/* XF_PLAN_SOFTCAP_ONE_LOOP's segment: z and its exps together, no max of z
 * first, since |z| <= c bounds the exps of z itself, unshifted, to
 * [e^-c, e^c], times a chain factor of at least 2^-23: all normal floats
 * (so the segment's "max" is 0).  z is taken in base 2 (vtransform_one),
 * its exps as 2^z2; the sums of z come out in nats.  The tanh of the next
 * vector is issued before this one's exp (the chain is long; this keeps
 * independent work ahead of it).  XF_LEAN: no class weights or
 * probability targets (w and tp NULL) and no entropy or sum w z, so the
 * loop holds no tests for them.  What it gains over the two loops:
 * docs/design.md, "Specialisations". */
static XF_ALWAYS_INLINE XF_FN(sums_t)
    XF_FN(one_loop_segment)(const XF_T *x, const XF_T *w, const XF_T *tp, int64_t n,
                            const XF_FN(general_opts) * o, XF_T *e, XF_T *chain_factors,
                            XF_FN(drain_t) * drain, const int how) {
    if (how & XF_LEAN) w = tp = NULL;
    const XF_V zero = V_SET1(0), one = V_SET1(1);
    const int lean = how & XF_LEAN;
    XF_V s = zero, ez = zero, wz = zero, wtz = zero, wt = zero, sz = zero, ev;
    int64_t i = 0;
    XF_V z_next = n >= XF_W ? XF_FN(vtransform_one)(V_LOADU(x), o) : zero;
    for (; i + XF_W <= n; i += XF_W) {
        XF_FN(prefetch_ahead)(x + i, 1, 0, 0);
        if (tp) XF_FN(prefetch_ahead)(tp + i, 1, 0, 0);
        const XF_V z = z_next;
        if (i + 2 * XF_W <= n) z_next = XF_FN(vtransform_one)(V_LOADU(x + i + XF_W), o);
        sz = V_ADD(sz, z);
        XF_FN(gen_vec)
        (o, z, w ? V_LOADU(w + i) : one, tp, tp ? V_LOADU(tp + i) : zero, zero, XF_W, &s, &ez, &wz,
         &wtz, &wt, &ev, XF_EXPS_BASE2, lean);
        XF_FN(store_exps)(e, chain_factors, i, XF_W, ev, z, o, how | XF_BASE2);
        if (drain) XF_FN(drain_step)(drain, how);
    }
    if (i < n) {
        const int64_t r = n - i;
        /* the tail's lanes past n hold z(0) = 0: they add nothing to sum z */
        const XF_V z = XF_FN(vtransform_one)(V_LOAD_TAIL(x + i, r, 0), o);
        sz = V_ADD(sz, z);
        XF_FN(gen_vec)
        (o, z, w ? V_LOAD_TAIL(w + i, r, 0) : one, tp, tp ? V_LOAD_TAIL(tp + i, r, 0) : zero, zero,
         r, &s, &ez, &wz, &wtz, &wt, &ev, XF_EXPS_BASE2, lean);
        XF_FN(store_exps)(e, chain_factors, i, r, ev, z, o, how | XF_BASE2);
    }
    if (drain) XF_FN(drain_close)(drain, how);
    /* the sums of z (times e, w or w p) back from units of ln 2 */
    XF_FN(sums_t)
    out = {V_HSUM(s), XF_LN2 * V_HSUM(ez), XF_LN2 * (w ? V_HSUM(wz) : V_HSUM(sz)),
           XF_LN2 * V_HSUM(wtz), V_HSUM(wt)};
    return out;
}
#endif

/* A softcapped segment by the plan's loops, its max of z to *m (the one
 * loop: 0); XF_LEAN where there are no class weights or probability
 * targets. */
static XF_ALWAYS_INLINE XF_FN(sums_t)
    XF_FN(capped_loops)(const XF_T *x, const XF_T *w, const XF_T *tp, int64_t n, XF_T *m,
                        const XF_FN(general_opts) * o, XF_T *e, XF_T *z, XF_FN(drain_t) * drain,
                        const int how) {
#ifdef V_EXP2_SCALED
    if (o->one_loop) {
        *m = 0;
        return (!w && !tp) ? XF_FN(one_loop_segment)(x, w, tp, n, o, e, z, drain, how | XF_LEAN)
                           : XF_FN(one_loop_segment)(x, w, tp, n, o, e, z, drain, how);
    }
#endif
    return XF_FN(two_loop_segment)(x, w, tp, n, m, o, e, z, drain, how);
}

/* A softcapped segment (n elements at x; class weights w, probability
 * targets tp or NULL): its sums relative to its max of z, *m; the exps to
 * e (chained for a gradient), z to zs (then the chain factors over it,
 * general_opts.keep_chain).  Segment j (at j0) of the deferred gradient
 * row `pending` (or NULL) is written meanwhile.  One inlined copy of the
 * loops per drain kind: none, or chained with or without shift terms,
 * streamed or not. */
static inline XF_FN(sums_t)
    XF_FN(softcap_segment)(const XF_T *x, const XF_T *w, const XF_T *tp, int64_t n, XF_T *m,
                           const XF_FN(general_opts) * opts, XF_T *e, XF_T *zs,
                           const XF_FN(pending_t) * pending, int64_t j0, int64_t j, int stream) {
    /* a private copy: the stores to e and zs cannot alias it, so the
     * options stay in registers instead of being reloaded every vector */
    XF_FN(general_opts) local = *opts;
    const XF_FN(general_opts) *o = &local;
    /* without class weights, sum z comes from the z loop (an addition per
     * vector on the adder pipes, which the tanh leaves idle), not from the
     * exp loop (a product, a compare and a masked move more per vector) */
    local.want_wz = local.want_wz && w;
    XF_T *z = zs ? zs : e;
    if (!pending) {
        const int how = o->chain ? XF_CHAIN | (o->keep_chain ? XF_SHIFT : 0) : 0;
        return XF_FN(capped_loops)(x, w, tp, n, m, o, e, z, NULL, how);
    }
    /* the pending row has this row's options: shift terms alike */
    XF_FN(drain_t) d;
    XF_FN(drain_open)(&d, pending, j0, j, n, stream);
    if (o->keep_chain)
        return stream ? XF_FN(capped_loops)(x, w, tp, n, m, o, e, z, &d,
                                            XF_CHAIN | XF_SHIFT | XF_DRAIN_STREAM)
                      : XF_FN(capped_loops)(x, w, tp, n, m, o, e, z, &d, XF_CHAIN | XF_SHIFT);
    return stream ? XF_FN(capped_loops)(x, w, tp, n, m, o, e, z, &d, XF_CHAIN | XF_DRAIN_STREAM)
                  : XF_FN(capped_loops)(x, w, tp, n, m, o, e, z, &d, XF_CHAIN);
}
