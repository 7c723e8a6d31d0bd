/* The memory bounds of the fused pass: the same traffic with no arithmetic.
 *
 * Computes, over elements [begin, end) of an array, one of the three
 * passes the benchmark divides the fused kernels' times by:
 *   XF_BOUND_READ      read every element once (sum them): the bound of
 *                      the loss alone, which reads the logits once;
 *   XF_BOUND_STREAM    read x, write y with streaming (non-temporal)
 *                      stores: the bound of loss + gradient into a buffer;
 *   XF_BOUND_IN_PLACE  read x and write it back (negated): the bound of
 *                      loss + gradient written over the logits.
 * Threaded by the glue (_core.pyx) exactly as the kernels are.  Not a plan:
 * no loss is computed here.
 *
 * Template: included once per (dtype, ISA) by kernel_template.h.
 */

/* One thread's share of a bound pass; returns the sum of what it read
 * (XF_BOUND_READ), so that the reads cannot be optimised away. */
static inline double XF_FN(bound)(int op, const XF_T *x, XF_T *y, int64_t begin, int64_t end) {
    const XF_T *p = x + begin;
    const int64_t n = end - begin;
    int64_t i = 0;
    if (op == XF_BOUND_READ) {
        XF_V s0 = V_SET1(0), s1 = s0, s2 = s0, s3 = s0;
        for (; i + 4 * XF_W <= n; i += 4 * XF_W) {
            s0 = V_ADD(s0, V_LOADU(p + i));
            s1 = V_ADD(s1, V_LOADU(p + i + XF_W));
            s2 = V_ADD(s2, V_LOADU(p + i + 2 * XF_W));
            s3 = V_ADD(s3, V_LOADU(p + i + 3 * XF_W));
        }
        double tail = 0;
        for (; i < n; i++) tail += (double)p[i];
        return V_HSUM(V_ADD(V_ADD(s0, s1), V_ADD(s2, s3))) + tail;
    }
    XF_T *q = (op == XF_BOUND_IN_PLACE ? (XF_T *)x : y) + begin;
    const XF_V sign = V_SET1(-1);
    if (op == XF_BOUND_IN_PLACE) {
        for (; i + XF_W <= n; i += XF_W) V_STOREU(q + i, V_MUL(V_LOADU(p + i), sign));
        for (; i < n; i++) q[i] = -p[i];
        return 0;
    }
    /* streaming stores need an aligned destination: an unaligned head first */
    const int64_t head = XF_FN(stream_head)(q, n, 1);
    for (; i < head; i++) q[i] = p[i];
    for (; i + XF_W <= n; i += XF_W) V_STREAM(q + i, V_LOADU(p + i));
    for (; i < n; i++) q[i] = p[i];
    XF_SFENCE();
    return 0;
}
