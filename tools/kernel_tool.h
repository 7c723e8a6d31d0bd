/* Shared by the tools built against one ISA's kernel file (XF_KERNEL_FILE,
 * see tools/kernel_bench.sh): the file itself, stubs for the float64 scalar
 * kernels its table refers to (never called by the tools), and a clock. */
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
