/* The end of a row, shared by every plan: its loss, z-loss and lse, and
 * the coefficients of its gradient, from the statistics of its pass.
 *
 * Every path that ends a row (the plain and general rows in rows.h, the
 * narrow rows' per-row options, the split rows' fold) calls these, so a
 * loss formula is written once.  Per counted row, with lse = M + log S:
 *   index target y:  l = (1-eps) w_y (lse - z_y) + eps/C sum_k w_k (lse - z_k) + lam lse^2
 *   probabilities p: l = sum_k w_k q_k (lse - z_k) + lam lse^2,  q = p (1-eps) + eps/C
 *   dl/dz_k = p_k A - w_k (alpha tp_k + beta) - [k = y] hit
 * Each difference lse - z is formed as (M - z) + log S: a huge M would
 * otherwise swallow log S (3e38 + log 3 rounds to 3e38, a loss of 0).
 *
 * Not a template: all in double, the same for every dtype and ISA.
 */
#ifndef XENTFAST_ROW_FINISH_H
#define XENTFAST_ROW_FINISH_H
#include <math.h>
#include "xentfast/kernels.h"

/* c * v, where a zero coefficient adds 0 even against a masked class
 * (0 * inf := 0, as the reference); a NaN row still ends NaN through lse. */
static inline double xf_times_nz(double c, double v) { return c == 0 ? 0.0 : c * v; }

/* What a pass knows of a row when it ends it. */
typedef struct xf_row_stats {
    double M, log_S;    /* lse = M + log S; M the max of z (the one-loop softcap: 0) */
    double z_y;         /* the target's z (index targets)                          */
    double wz, wtz, wt; /* sum_k w_k z_k, sum_k w_k p_k z_k, sum_k w_k p_k         */
} xf_row_stats;

/* A row's loss and z-loss (times its row weight) and the coefficients of
 * dl/dz above (before the gradient's scale). */
typedef struct xf_row_end {
    double loss, z_loss;
    double A, alpha, beta, hit;
} xf_row_end;

static inline xf_row_end xf_row_finish(const xf_rows_args *a, int64_t r, int64_t y, double w_y,
                                       const xf_row_stats *st) {
    const double eps = a->label_smoothing, lam = a->z_loss, W = a->weight_total;
    /* eps/C spreads over the whole vocabulary, also from one shard of it */
    const int64_t C = a->smoothing_classes > 0 ? a->smoothing_classes : a->n_classes;
    const double M = st->M, log_S = st->log_S, lse = M + log_S;
    const double s_r = a->row_weight ? a->row_weight[r] : 1.0;
    const double zl = lam * lse * lse; /* also for lam = 0: NaN stays NaN */
    xf_row_end end = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    double loss = 0.0;
    /* a zero coefficient (eps = 1) adds 0, even against a masked class */
    if (a->target_prob) {
        const double Q = (1 - eps) * st->wt + eps / C * W;
        const double wqz = (eps != 1 ? (1 - eps) * st->wtz : 0.0) + eps / C * st->wz;
        loss = (Q * M - wqz) + Q * log_S + zl;
        end.A = Q;
        end.alpha = 1 - eps;
        end.beta = eps / C;
    } else if (y >= 0) {
        /* >= 0; the one-loop softcap's exps (not shifted by the max) could
         * round it below by ~1e-7 for a certain row */
        const double gap = (M - st->z_y) + log_S;
        loss = xf_times_nz((1 - eps) * w_y, gap < 0 ? 0.0 : gap) + zl; /* NaN stays */
        if (eps != 0) loss += eps / C * ((W * M - st->wz) + W * log_S);
        end.A = (1 - eps) * w_y + eps / C * W;
        end.beta = eps / C;
        end.hit = (1 - eps) * w_y;
    }
    if (lam != 0) end.A += 2 * lam * lse;
    if (M == -INFINITY) loss = NAN; /* every class masked: no distribution */
    end.loss = s_r * loss;
    end.z_loss = s_r * zl;
    return end;
}

/* The row's lse as reported: +inf for a +inf logit (M = +inf, S = NaN). */
static inline double xf_row_lse(double M, double log_S) {
    return M == INFINITY ? INFINITY : M + log_S;
}

/* The row's scale R: the call's gradient scale times the row's upstream
 * gradient and row weight. */
static inline double xf_row_scale(const xf_rows_args *a, int64_t r) {
    return a->scale * (a->row_scale ? a->row_scale[r] : 1.0) *
           (a->row_weight ? a->row_weight[r] : 1.0);
}

/* The gradient's target entry, R (p_y A - b_y - hit) it from the target's
 * probability p_y and its shift b_y = w_y beta, it = dz/dx's 1/T; under a
 * softcap, whose exps carry the chain factor already, the shift terms are
 * multiplied by the target's chain factor chain_y instead. */
static inline double xf_target_entry(const xf_row_end *end, double R, double p_y, double b_y,
                                     double it, int chained, double chain_y) {
    if (chained) return R * (p_y * end->A - (b_y + end->hit) * chain_y) * it;
    return R * (p_y * end->A - b_y - end->hit) * it;
}

/* Stores what every plan stores of a counted row. */
static inline void xf_row_store(const xf_rows_args *a, int64_t r, const xf_row_end *end) {
    if (a->row_loss) a->row_loss[r] = end->loss;
    if (a->row_z_loss) a->row_z_loss[r] = end->z_loss;
}

/* A row whose target is ignore_index: zero loss, NaN statistics (its
 * gradient row, when there is one, is written 0 by the caller). */
static inline void xf_row_ignored(const xf_rows_args *a, int64_t r) {
    if (a->row_loss) a->row_loss[r] = 0.0;
    if (a->row_z_loss) a->row_z_loss[r] = 0.0;
    if (a->row_lse) a->row_lse[r] = NAN;
    if (a->row_entropy) a->row_entropy[r] = NAN;
}
#endif
