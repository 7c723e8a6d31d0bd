/* Narrow rows: the plain loss of rows of a few classes, one row per lane.
 *
 * A row of a few classes would leave most lanes idle and pay a log and two
 * exps per row.  Here the lanes are rows: the classes of XF_W rows are
 * transposed into one vector per class (V_COLUMN: two-source permutes where
 * the layer has them, else gathers) for the max, sum-exp and log, then the
 * gradient is written in flat row-major order, each element fetching its
 * row's max, log-sum and coefficients by a permute.  The plan picks it
 * (XF_PLAN_NARROW) for C <= the layer's narrow_max when x (and out) rows
 * are exactly C apart.  65536x10 loss+grad: 1.5 G elements/s on 2 threads
 * (`python -m xentfast.bench --shape 65536 10`).
 *
 * Template: included once per (dtype, ISA) by kernel_template.h, for layers
 * that define XF_VI (integer lanes).
 */
#ifdef XF_VI

/* A narrow row's lse: +inf for a +inf logit, unless the row also holds a
 * NaN (which the vector max may have skipped): then NaN. */
static inline double XF_FN(narrow_lse)(const XF_T *x, int64_t C, XF_T m, double lse) {
    if (m != INFINITY) return lse;
    return isnan(XF_FN(nan_aware_max)(x, C, m)) ? NAN : INFINITY;
}

/* The loss and gradient coefficients of XF_W rows from r0 (max m_a, log-sum
 * ls_a and target logit zy_a per lane): per row by the shared finish, in
 * double.  The gradient's target entry is e_y coef - tsub. */
static inline void XF_FN(narrow_finish)(const xf_rows_args *a, int64_t r0, const XF_T *xb,
                                        const XF_T *m_a, const XF_T *ls_a, const XF_T *zy_a,
                                        XF_T *coef_a, XF_T *tsub_a) {
    const XF_T *w = (const XF_T *)a->class_weight;
    const int64_t C = a->n_classes;
    for (int l = 0; l < XF_W; l++) {
        const int64_t r = r0 + l;
        const int64_t y = a->target ? a->target[r] : -1;
        coef_a[l] = tsub_a[l] = 0;
        if (a->target && y == a->ignore_index) {
            xf_row_ignored(a, r);
            continue;
        }
        const xf_row_stats st = {(double)m_a[l], (double)ls_a[l], (double)zy_a[l], 0, 0, 0};
        const xf_row_end end = xf_row_finish(a, r, y, (w && y >= 0) ? (double)w[y] : 1.0, &st);
        if (a->row_lse) a->row_lse[r] = XF_FN(narrow_lse)(xb + l * C, C, m_a[l], st.M + st.log_S);
        xf_row_store(a, r, &end);
        if (a->mode == XF_MODE_GRAD) {
            const double R = xf_row_scale(a, r);
            coef_a[l] = (XF_T)(R * end.A);
            tsub_a[l] = (XF_T)(R * end.hit);
        }
    }
}

/* The C columns (one vector per class) of the XF_W rows at xb, and their
 * max m. */
static XF_ALWAYS_INLINE XF_V XF_FN(narrow_columns)(const XF_T *xb, int64_t C, XF_V *xv,
                                                   XF_VI offsets, const void *columns) {
    XF_V m = V_SET1(-INFINITY);
#ifdef XF_COLUMNS
    if (columns) {
        XF_V flat[XF_COLUMNS_MAX];
        for (int64_t k = 0; k < C; k++) flat[k] = V_LOADU(xb + k * XF_W);
        for (int64_t k = 0; k < C; k++) {
            xv[k] = V_COLUMN((const XF_COLUMNS *)columns, flat, C, k);
            m = V_MAX(m, xv[k]);
        }
        return m;
    }
#endif
    (void)columns;
    for (int64_t k = 0; k < C; k++) {
        xv[k] = V_GATHER(xb + k, offsets);
        m = V_MAX(m, xv[k]);
    }
    return m;
}

/* The gradient of the XF_W rows at xb in flat row-major order: each element
 * fetches its row's max, log-sum and coefficients by a permute, and the
 * target entry (flat index l*C + y) subtracts tsub within the same FMA. */
static XF_ALWAYS_INLINE void XF_FN(narrow_write)(XF_T *ob, const XF_T *xb, int64_t C,
                                                 const int32_t *row_index, XF_V m, XF_V ls,
                                                 XF_V coef, XF_V tsub, XF_V keep, XF_VI y_off,
                                                 int any_ignored, XF_V iota) {
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

/* Whole groups of XF_W rows from `begin` (blocks start at multiples of 16
 * rows, so the grouping, and every bit of the result, is the same for any
 * thread count); returns where it stopped (the rest: plain rows). */
static int64_t XF_FN(rows_narrow)(const xf_rows_args *a, int64_t begin, int64_t end,
                                  int32_t *row_index) {
    const int64_t C = a->n_classes;
    const int grad = a->mode == XF_MODE_GRAD;
    int32_t lane_offset[XF_W];
    XF_T lane_f[XF_W];
    for (int l = 0; l < XF_W; l++) {
        lane_offset[l] = (int32_t)(l * C);
        lane_f[l] = (XF_T)l;
    }
    const XF_VI offsets = VI_LOAD(lane_offset);
    const XF_V iota = V_LOADU(lane_f);
    if (grad) /* element j of a block of XF_W rows belongs to row j / C */
        for (int32_t l = 0; l < XF_W; l++)
            for (int64_t k = 0; k < C; k++) row_index[l * C + k] = l;
    XF_T m_a[XF_W], ls_a[XF_W], zy_a[XF_W], coef_a[XF_W], tsub_a[XF_W];
    /* no weights, z-loss or per-row scales: the finish in vectors */
    const int plain =
        !a->class_weight && !a->row_weight && a->z_loss == 0 && !a->row_scale && !a->row_z_loss;
    const void *columns = NULL;
#ifdef XF_COLUMNS
    XF_COLUMNS column_table;
    if (C <= XF_COLUMNS_MAX) {
        V_COLUMNS_SETUP(&column_table, C);
        columns = &column_table;
    }
#endif
    int64_t r0 = begin;
    for (; r0 + XF_W <= end; r0 += XF_W) {
        const XF_T *xb = (const XF_T *)a->x + r0 * C;
        XF_FN(prefetch_ahead)(xb, (int)C, 0, 0); /* the block's C vectors of logits */
        XF_V xv[XF_CAP_NARROW_MAX];
        /* a fully masked row: exps against -max (all 0), so log S = -inf and
         * lse = -inf; its loss and gradient come out NaN as in rows() */
        const XF_V m = V_MAX(V_SET1(-XF_T_MAX), XF_FN(narrow_columns)(xb, C, xv, offsets, columns));
        XF_V s = V_SET1(0);
        for (int64_t k = 0; k < C; k++) s = V_ADD(s, V_EXP(V_SUB(xv[k], m)));
        const XF_V ls = V_LOG(s);
        /* the targets, vectorised: flat offsets of z_y, keep = 0 for ignored rows */
        XF_V keep;
        const XF_VI y_off =
            VI_ADD(offsets, VI_TARGETS(a->target ? a->target + r0 : NULL, a->ignore_index, &keep));
        const int any_ignored = V_ANY_ZERO(keep);
        XF_V zy;
#ifdef XF_COLUMNS
        if (columns) { /* z_y picked from the columns: no gather */
            const XF_V y = V_SUB(VI_TO_V(y_off), VI_TO_V(offsets));
            zy = V_SET1(0);
            for (int64_t k = 0; k < C; k++) zy = V_ADD(zy, V_SELECT_EQ(y, V_SET1((XF_T)k), xv[k]));
        } else
#endif
            zy = V_GATHER(xb, y_off);
        XF_V coef, tsub;
        if (plain) {
            /* the finish's formula, (m - z_y) + log S, in float lanes; the
             * gradient's scale is the same for every counted row */
            if (a->row_loss)
                V_STORE_F64(a->row_loss + r0, V_ZERO_WHERE_ZERO(V_ADD(V_SUB(m, zy), ls), keep));
            coef = tsub = V_MUL(keep, V_SET1((XF_T)a->scale));
            if (a->row_lse) {
                V_STOREU(m_a, m);
                V_STOREU(ls_a, V_ADD(m, ls));
                for (int l = 0; l < XF_W; l++)
                    a->row_lse[r0 + l] =
                        a->target && a->target[r0 + l] == a->ignore_index
                            ? NAN
                            : XF_FN(narrow_lse)(xb + l * C, C, m_a[l], (double)ls_a[l]);
            }
        } else {
            V_STOREU(m_a, m);
            V_STOREU(ls_a, ls);
            V_STOREU(zy_a, zy);
            XF_FN(narrow_finish)(a, r0, xb, m_a, ls_a, zy_a, coef_a, tsub_a);
            coef = V_LOADU(coef_a);
            tsub = V_LOADU(tsub_a);
        }
        if (grad)
            XF_FN(narrow_write)
            ((XF_T *)a->out + r0 * C, xb, C, row_index, m, ls, coef, tsub, keep, y_off, any_ignored,
             iota);
    }
    return r0;
}
#endif
