/* A vocabulary shard's two passes: the row loop (rows.h) in the modes
 * XF_MODE_SHARD_STATS and XF_MODE_SHARD_GRAD.
 *
 * When the class axis is split over processes (xentfast.distributed), each
 * holds logits of classes [start, start + C_local) of every row.  The loss
 * and the gradient need the whole row's lse before any gradient entry can
 * be written, so a shard takes two passes over its logits, each a single
 * read (the second also one write):
 *   1. SHARD_STATS: per row, the shard's M and log S (lse = M + log S of
 *      its z), the target's z when the target is local (targets are local
 *      indices, XF_TARGET_ELSEWHERE for a counted row whose class is on
 *      another shard), and the smoothing and probability-target sums
 *      sum w z, sum w p z, sum w p; written to row_shard.
 *   2. the caller combines the shards' statistics: M = max M_r,
 *      S = sum S_r e^{M_r - M}, and sums the rest (the target's z and w_y
 *      come from its one shard, 0 from every other);
 *   3. SHARD_GRAD: row_shard holds the combined statistics; the row's end
 *      (row_finish.h, eps/C over the whole vocabulary: smoothing_classes)
 *      gives the row's loss and gradient coefficients, and the gradient is
 *      written from this shard's exps against the global M and log S.
 * The loss alone (no gradient) needs no second pass: the glue ends the
 * rows from the combined statistics through row_finish.h (_core.pyx).
 * The plan runs both passes by the plain row, or the general and softcap
 * rows for their options (plan.c): never the narrow rows or the split fold.
 * A shard of 4096 x 64128 float32 (half of a 128256 vocabulary), one
 * thread: the two passes 693 ms against 410 ms for the one-pass loss and
 * gradient of the same logits; the statistics pass alone 259 ms against
 * 249 ms for the loss (`mpiexec -n 1 python tests/distributed_worker.py mpi
 * shard_timing`, a loaded machine: ratios vary by +-20%).
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* Pass 1: the shard's statistics of row r. */
static inline void XF_FN(shard_store)(const xf_rows_args *a, int64_t r, const xf_row_stats *st) {
    double *s = a->row_shard + r * XF_SHARD_DOUBLES;
    s[XF_SHARD_M] = st->M;
    s[XF_SHARD_LOG_S] = st->log_S;
    s[XF_SHARD_ZY] = st->z_y;
    s[XF_SHARD_WZ] = st->wz;
    s[XF_SHARD_WTZ] = st->wtz;
    s[XF_SHARD_WT] = st->wt;
    s[XF_SHARD_WY] = 0.0;
}

/* Pass 1, an ignored row: zeros (the caller leaves it out). */
static inline void XF_FN(shard_ignored)(const xf_rows_args *a, int64_t r) {
    double *s = a->row_shard + r * XF_SHARD_DOUBLES;
    for (int k = 0; k < XF_SHARD_DOUBLES; k++) s[k] = 0.0;
}

/* Pass 2: row r's global statistics into st and its target's class weight
 * into w_y; returns the target the row's end is told: the local one, or a
 * stand-in 0 for a counted row whose target is elsewhere (row_finish.h
 * only asks whether a counted row has one: its z and weight are in st). */
static inline int64_t XF_FN(shard_global)(const xf_rows_args *a, int64_t r, int64_t y,
                                          xf_row_stats *st, double *w_y) {
    const double *s = a->row_shard + r * XF_SHARD_DOUBLES;
    st->M = s[XF_SHARD_M];
    st->log_S = s[XF_SHARD_LOG_S];
    st->z_y = s[XF_SHARD_ZY];
    st->wz = s[XF_SHARD_WZ];
    st->wtz = s[XF_SHARD_WTZ];
    st->wt = s[XF_SHARD_WT];
    *w_y = s[XF_SHARD_WY];
    return y == XF_TARGET_ELSEWHERE ? 0 : y;
}
