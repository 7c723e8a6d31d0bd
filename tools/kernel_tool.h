/* Shared by the tools built against one ISA's kernel file (XF_KERNEL_FILE,
 * see tools/kernel_bench.sh): the file itself, stubs for the float64 scalar
 * kernels its table refers to (never called by the tools), a clock and the
 * arguments of a plain call. */
#include <string.h>
#include <time.h>
#include XF_KERNEL_FILE

void xf_rows_f64(const xf_rows_args *a, xf_plan_kind p, int64_t b, int64_t e, void *s) {
    (void)a; (void)p; (void)b; (void)e; (void)s;
}
void xf_elem_f64(const xf_elem_args *a, int64_t b, int64_t e) { (void)a; (void)b; (void)e; }
const xf_split_fns xf_split_f64;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The arguments of a plain float32 call over n rows of C logits at x (the
 * gradient to out, or none when out is NULL), index targets t, row losses to
 * loss, mean reduction. */
static inline xf_rows_args plain_args(int64_t n, int64_t C, const float *x, float *out,
                                      const int64_t *t, double *loss, int mode, int stream) {
    xf_rows_args a;
    memset(&a, 0, sizeof a);
    a.n_rows = n;
    a.n_classes = C;
    a.x = x;
    a.x_stride = C;
    a.out = out;
    a.out_stride = C;
    a.target = t;
    a.ignore_index = -100;
    a.scale = 1.0 / (double)n;
    a.row_loss = loss;
    a.mode = mode;
    a.streaming = stream;
    a.inv_temperature = 1.0;
    a.weight_total = (double)C;
    return a;
}
