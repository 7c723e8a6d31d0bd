/* Element-wise losses: binary cross-entropy with logits and squared error.
 *
 * Computes, per element, the loss and its gradient in one pass over rows of
 * a (rows, cols) block, with broadcast weights (column stride 0 or 1).  No
 * plan: one loop per operation.  Also the vector exp and log1p as maps
 * over arrays, for the accuracy tests.
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* log1p(t) for t in [0, 1] (t = e^{-|x|} in softplus).
 * Method: log1p(t) = 2 atanh(s) with s = t / (2 + t) in [0, 1/3], so no
 * 1 + t is ever rounded; s is corrected by the exact residuals of 2 + t
 * (Fast2Sum: 2 >= t) and of the division (an FMA), c = (r - s e) / u; then
 * 2 atanh(s + c) = 2s + 2c + 2s q with q = s^2/3 + s^4/5 + ... + s^14/15 in
 * Horner form (the first omitted term, 2 s^17/17 <= 1e-9, is below half
 * an ulp).
 * Accuracy: max error 1.0 ulp against float64 log1p over 2^20 points on
 * [0, 1] (tests/test_binary.py asserts <= 2 ulp). */
static XF_ALWAYS_INLINE XF_V XF_FN(log1p01)(XF_V t) {
#ifdef XF_LOG1P01
    return XF_LOG1P01(t);
#else
    const XF_V two = V_SET1(2);
    const XF_V u = V_ADD(two, t);
    const XF_V e = V_SUB(t, V_SUB(u, two)); /* (2 + t) - u, exactly */
    const XF_V s = V_DIV(t, u);
    const XF_V r = V_FMA(V_SUB(V_SET1(0), s), u, t); /* t - s u, exactly     */
    const XF_V c = V_DIV(V_SUB(r, V_MUL(s, e)), u);
    const XF_V s2 = V_MUL(s, s);
    XF_V p = V_SET1((XF_T)(1.0 / 15));
    p = V_FMA(p, s2, V_SET1((XF_T)(1.0 / 13)));
    p = V_FMA(p, s2, V_SET1((XF_T)(1.0 / 11)));
    p = V_FMA(p, s2, V_SET1((XF_T)(1.0 / 9)));
    p = V_FMA(p, s2, V_SET1((XF_T)(1.0 / 7)));
    p = V_FMA(p, s2, V_SET1((XF_T)(1.0 / 5)));
    p = V_FMA(p, s2, V_SET1((XF_T)(1.0 / 3)));
    const XF_V q = V_MUL(p, s2);
    const XF_V s_2 = V_ADD(s, s);
    return V_ADD(V_FMA(s_2, q, V_ADD(c, c)), s_2);
#endif
}

static XF_ALWAYS_INLINE XF_V XF_FN(bload)(const XF_T *p, int64_t col_stride, int64_t lanes) {
    if (col_stride == 0) return V_SET1(*p);
    return lanes == XF_W ? V_LOADU(p) : V_LOAD_TAIL(p, lanes, 0);
}

/* One vector of one row: the loss (returned) and the gradient (*grad).
 * BCE (PyTorch's BCEWithLogits, label smoothing as y(1-eps) + eps/2):
 *   l = w (pw y' softplus(-x) + (1 - y') softplus(x)),
 *   dl/dx = w ((1 - y') sigmoid(x) - pw y' sigmoid(-x)),
 * with softplus(+-x) = max(+-x, 0) + log1p(e^{-|x|}) and the sigmoids from
 * the same e^{-|x|}: stable for any |x| (never log 0, never inf/inf). */
static XF_ALWAYS_INLINE XF_V XF_FN(elem_vec)(const xf_elem_args *a, XF_V x, XF_V y, XF_V w, XF_V pw,
                                             int has_w, int has_pw, XF_V *grad) {
    if (a->op == XF_OP_MSE) {
        const XF_V d = V_SUB(x, y);
        *grad = V_ADD(d, d);
        const XF_V l = V_MUL(d, d);
        return has_w ? V_MUL(l, w) : l;
    }
    const XF_V zero = V_SET1(0), one = V_SET1(1);
    const XF_T eps = (XF_T)a->label_smoothing;
    if (eps != 0) y = V_FMA(y, V_SET1(1 - eps), V_SET1(eps / 2));
    const XF_V ax = V_MAX(x, V_SUB(zero, x)); /* |x|; NaN passes via exp */
    const XF_V t = V_EXP(V_SUB(zero, ax));    /* e^{-|x|} in (0, 1]      */
    const XF_V l1p = XF_FN(log1p01)(t);
    const XF_V sp_pos = V_ADD(V_MAX(zero, x), l1p);              /* softplus(x)  */
    const XF_V sp_neg = V_ADD(V_MAX(zero, V_SUB(zero, x)), l1p); /* softplus(-x) */
    const XF_V inv = V_DIV(one, V_ADD(one, t));
    /* sigmoid(|x|) = 1/(1+t), sigmoid(-|x|) = t/(1+t); pick by the sign of x */
    const XF_V big = inv, small = V_MUL(t, inv);
    const XF_V sig_pos = V_SELECT_GE0(x, big, small); /* sigmoid(x)  */
    const XF_V sig_neg = V_SELECT_GE0(x, small, big); /* sigmoid(-x) */
    const XF_V one_y = V_SUB(one, y);
    XF_V py = has_pw ? V_MUL(pw, y) : y;
    XF_V l = V_FMA(py, sp_neg, V_MUL(one_y, sp_pos));
    XF_V gr = V_SUB(V_MUL(one_y, sig_pos), V_MUL(py, sig_neg));
    if (has_w) {
        l = V_MUL(l, w);
        gr = V_MUL(gr, w);
    }
    *grad = gr;
    return l;
}

static XF_ALWAYS_INLINE void XF_FN(elem_part)(const xf_elem_args *a, const XF_T *x, const XF_T *y,
                                              const XF_T *w, const XF_T *pw, const XF_T *g,
                                              XF_T *out, XF_T *el, int64_t i, int64_t lanes,
                                              XF_V *acc) {
    const XF_V xv = XF_FN(bload)(x + i, 1, lanes), yv = XF_FN(bload)(y + i, 1, lanes);
    const XF_V wv = w ? XF_FN(bload)(w + i * a->w_col_stride, a->w_col_stride, lanes) : V_SET1(1);
    const XF_V pv =
        pw ? XF_FN(bload)(pw + i * a->pw_col_stride, a->pw_col_stride, lanes) : V_SET1(1);
    XF_V gr;
    XF_V l = XF_FN(elem_vec)(a, xv, yv, wv, pv, w != NULL, pw != NULL, &gr);
    if (lanes < XF_W) l = V_ZERO_TAIL(l, lanes);
    *acc = V_ADD(*acc, l);
    if (el) {
        if (lanes == XF_W)
            V_STOREU(el + i, l);
        else
            V_STORE_TAIL(el + i, l, lanes);
    }
    if (out) {
        gr = V_MUL(gr, V_SET1((XF_T)a->scale));
        if (g) gr = V_MUL(gr, XF_FN(bload)(g + i * a->g_col_stride, a->g_col_stride, lanes));
        if (lanes == XF_W)
            V_STOREU(out + i, gr);
        else
            V_STORE_TAIL(out + i, gr, lanes);
    }
}

static void XF_FN(elem)(const xf_elem_args *a, int64_t begin, int64_t end) {
    const int64_t C = a->n_cols;
    for (int64_t r = begin; r < end; r++) {
        const XF_T *x = (const XF_T *)a->x + r * a->x_stride;
        const XF_T *y = (const XF_T *)a->y + r * a->y_stride;
        const XF_T *w = a->w ? (const XF_T *)a->w + r * a->w_row_stride : NULL;
        const XF_T *pw = (const XF_T *)a->pw;
        const XF_T *g = a->g ? (const XF_T *)a->g + r * a->g_row_stride : NULL;
        XF_T *out = a->out ? (XF_T *)a->out + r * a->out_stride : NULL;
        XF_T *el = a->elem_loss ? (XF_T *)a->elem_loss + r * a->elem_stride : NULL;
        XF_V acc = V_SET1(0);
        double row = 0.0;
        int64_t i = 0;
        for (; i + XF_W <= C; i += XF_W) {
            XF_FN(elem_part)(a, x, y, w, pw, g, out, el, i, XF_W, &acc);
            /* flush the lanes into double every 512 vectors: long rows keep precision */
            if (((i / XF_W) & 511) == 511) {
                row += V_HSUM(acc);
                acc = V_SET1(0);
            }
        }
        if (i < C) XF_FN(elem_part)(a, x, y, w, pw, g, out, el, i, C - i, &acc);
        if (a->row_loss) a->row_loss[r] = row + V_HSUM(acc);
    }
}

/* The kernels' own functions over an array, for the accuracy tests: y = F(x)
 * vector by vector, the tail loaded with zeros. */
#ifndef XF_MAP_BODY
#define XF_MAP_BODY(F)                                                                         \
    int64_t i = 0;                                                                             \
    for (; i + XF_W <= n; i += XF_W) V_STOREU(y + i, F(V_LOADU(x + i)));                       \
    if (i < n) V_STORE_TAIL(y + i, F(V_LOAD_TAIL(x + i, n - i, 0)), n - i)
#endif

/* y = log1p(x) for x in [0, 1] */
static inline void XF_FN(log1p)(const XF_T *x, XF_T *y, int64_t n) {
    XF_MAP_BODY(XF_FN(log1p01));
}

/* y = exp(x) */
static inline void XF_FN(exp)(const XF_T *x, XF_T *y, int64_t n) { XF_MAP_BODY(V_EXP); }

/* y = exp(x) for x <= 0 or NaN, with the row sums' exp */
static inline void XF_FN(exp_nonpos)(const XF_T *x, XF_T *y, int64_t n) {
    XF_MAP_BODY(V_EXP_NONPOS);
}
