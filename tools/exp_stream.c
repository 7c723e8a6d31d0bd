/* The fused kernel's loss alone and in place beside a bare loop of the same
 * exps, one thread, each as a fraction of its memory bound: how much of the
 * bound the kernel's arithmetic allows on this core, whatever the rows,
 * segments and max pass around it cost.
 *
 * Over N rows of C float32 logits (from DRAM when N x C is large), in one
 * process, best of REPS calls each, rounds interleaved:
 *   read bound        the extension's read pass (bounds.h);
 *   bare exps, sum    exp(x - 3) summed (V_EXP_NONPOS, the row sums' exp),
 *                     the kernels' prefetch, nothing else: the loss alone's
 *                     arithmetic on one stream;
 *   kernel, loss      the plain plan, loss alone;
 *   in-place bound    the extension's read and write in place;
 *   bare exps, stored exp(x - 3) stored over x: one touch of each line;
 *   bare, two touches each row's exps stored over it while the row before
 *                     is scaled (the kernel's in-place order, nothing else);
 *   the same + max    and each segment's max found first, as the kernel does;
 *   kernel, in place  the plain plan, gradient over the logits (its row is
 *                     touched twice in cache: exps, then the gradient);
 *   streaming bound   the extension's read and write with streaming stores;
 *   kernel, buffer    the plain plan, gradient into another buffer (streaming).
 * The logits are kernel_tool.h's, in [-3, 3], so the bare loops shift by 3
 * (each in-place pass is given them again, untimed).  Built and run by
 *
 *   TOOL=exp_stream tools/kernel_bench.sh avx512 [N C [REPS]]   (8192 32000 5)
 *   TOOL=exp_stream tools/kernel_bench.sh avx512 4 2048 20000     (in L1)
 */
#include <stdio.h>
#include <stdlib.h>
#include "kernel_tool.h"

/* exp(x - 3) over n elements, summed or stored over x */
static __attribute__((noipa)) double bare_exps(float *x, int64_t n, int store) {
    const XF_V shift = V_SET1(3.0f);
    XF_V s0 = V_SET1(0), s1 = s0;
    int64_t i = 0;
    for (; i + 2 * XF_W <= n; i += 2 * XF_W) {
        XF_FN(prefetch_ahead)(x + i, 2);
        const XF_V e0 = V_EXP_NONPOS(V_SUB(V_LOADU(x + i), shift));
        const XF_V e1 = V_EXP_NONPOS(V_SUB(V_LOADU(x + i + XF_W), shift));
        if (store) {
            V_STOREU(x + i, e0);
            V_STOREU(x + i + XF_W, e1);
        } else {
            s0 = V_ADD(s0, e0);
            s1 = V_ADD(s1, e1);
        }
    }
    return V_HSUM(V_ADD(s0, s1));
}

/* Rows of C at x: each row's exps stored over it while the row before it is
 * scaled in place, a vector per vector, segment by segment (the kernel's
 * in-place order without its sums and row ends: two touches of each line,
 * the second from cache), then the last row scaled.  With `max_pass`, each
 * segment's exps are taken against its max, found first as the kernel does
 * (row_stats.h: seg_max). */
static __attribute__((noipa)) void bare_two_touches(float *x, int64_t n, int64_t C,
                                                    int max_pass) {
    const XF_V factor = V_SET1(0.5f);
    for (int64_t r = 0; r < n; r++) {
        float *row = x + r * C, *before = r ? row - C : NULL;
        for (int64_t j0 = 0; j0 < C; j0 += XF_SEGMENT) {
            const int64_t end = C - j0 < XF_SEGMENT ? C : j0 + XF_SEGMENT;
            const XF_V shift = V_SET1(max_pass ? XF_FN(seg_max)(row + j0, end - j0) : 3.0f);
            for (int64_t i = j0; i + XF_W <= end; i += XF_W) {
                XF_FN(prefetch_ahead)(row + i, 1);
                const XF_V e = V_EXP_NONPOS(V_SUB(V_LOADU(row + i), shift));
                if (before) V_STOREU(before + i, V_MUL(V_LOADU(before + i), factor));
                V_STOREU(row + i, e);
            }
        }
    }
    float *last = x + (n - 1) * C;
    for (int64_t i = 0; i + XF_W <= C; i += XF_W)
        V_STOREU(last + i, V_MUL(V_LOADU(last + i), factor));
}

int main(int argc, char **argv) {
    const int64_t n = argc > 1 ? atoll(argv[1]) : 8192, C = argc > 2 ? atoll(argv[2]) : 32000;
    const int reps = argc > 3 ? atoi(argv[3]) : 5;
    const int64_t size = n * C;
    plain_problem pr;
    float *keep = aligned_alloc(64, (size_t)(size * 4 + 64));
    if (plain_problem_make(&pr, n, C) || !keep) return 1;
    float *x = pr.x, *out = pr.out;
    const int64_t *t = pr.t;
    double *loss = pr.loss;
    void *scratch = pr.scratch;
    memcpy(keep, x, (size_t)(size * 4));
    xf_rows_args loss_args = plain_args(n, C, x, NULL, t, loss, XF_MODE_LOSS, 0);
    xf_rows_args in_place_args = plain_args(n, C, x, x, t, loss, XF_MODE_GRAD, 0);
    xf_rows_args buffer_args = plain_args(n, C, x, out, t, loss, XF_MODE_GRAD, 1);
    const xf_plan_kind buffer_plan = xf_plan(&buffer_args, &XF_TABLE.caps_f32, 1);
    const xf_plan_kind loss_plan = xf_plan(&loss_args, &XF_TABLE.caps_f32, 1);
    const xf_plan_kind in_place_plan = xf_plan(&in_place_args, &XF_TABLE.caps_f32, 1);
    enum { READ, BARE_SUM, LOSS, IN_PLACE_BOUND, BARE_STORED, BARE_TWO, BARE_TWO_MAX, IN_PLACE,
           STREAM_BOUND, INTO_BUFFER, N_PASSES };
    const char *names[N_PASSES] = {
        "read bound",        "bare exps, sum",    "kernel, loss",     "in-place bound",
        "bare exps, stored", "bare, two touches", "the same + max",   "kernel, in place",
        "streaming bound",   "kernel, buffer"};
    double best[N_PASSES];
    for (int p = 0; p < N_PASSES; p++) best[p] = 1e30;
    double sink = 0;
    for (int r = 0; r < reps; r++)
        for (int p = 0; p < N_PASSES; p++) {
            if (p >= IN_PLACE_BOUND) memcpy(x, keep, (size_t)(size * 4)); /* untimed */
            const double t0 = now();
            switch (p) {
            case READ: sink += XF_FN(bound)(XF_BOUND_READ, x, NULL, 0, size); break;
            case BARE_SUM: sink += bare_exps(x, size, 0); break;
            case LOSS: XF_ROWS(&loss_args, loss_plan, 0, n, scratch); break;
            case IN_PLACE_BOUND: XF_FN(bound)(XF_BOUND_IN_PLACE, x, NULL, 0, size); break;
            case BARE_STORED: bare_exps(x, size, 1); break;
            case BARE_TWO: bare_two_touches(x, n, C, 0); break;
            case BARE_TWO_MAX: bare_two_touches(x, n, C, 1); break;
            case IN_PLACE: XF_ROWS(&in_place_args, in_place_plan, 0, n, scratch); break;
            case STREAM_BOUND: XF_FN(bound)(XF_BOUND_STREAM, x, out, 0, size); break;
            case INTO_BUFFER: XF_ROWS(&buffer_args, buffer_plan, 0, n, scratch); break;
            }
            const double dt = now() - t0;
            if (dt < best[p]) best[p] = dt;
        }
    printf("N=%lld C=%lld, one thread, best of %d:\n", (long long)n, (long long)C, reps);
    for (int p = 0; p < N_PASSES; p++) {
        const double bound =
            best[p < IN_PLACE_BOUND ? READ : p < STREAM_BOUND ? IN_PLACE_BOUND : STREAM_BOUND];
        printf("  %-18s %8.3f ms  %5.2f G el/s  %.2f of its bound\n", names[p], best[p] * 1e3,
               (double)size / best[p] / 1e9, bound / best[p]);
    }
    return sink == 12345.0;
}
