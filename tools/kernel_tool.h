/* Shared by the tools built against one ISA's kernel file (XF_KERNEL_FILE,
 * see tools/kernel_bench.sh): the file itself (or, without XF_KERNEL_FILE,
 * only its interface: tools/kernel_ab.sh links two builds of it), stubs for
 * the float64 scalar kernels its table refers to (never called by the
 * tools), a clock, and a plain problem and its call's arguments. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef XF_KERNEL_FILE
#include XF_KERNEL_FILE
#else
#include "xentfast/kernels.h"
#endif

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

/* A plain problem the tools share: n rows of C float32 logits in [-3, 3]
 * (x), a buffer as large (out, zeroed), index targets t, row losses, one
 * thread's scratch; the same data in every tool (srand(1)).  0 on success. */
typedef struct {
    float *x, *out;
    int64_t *t;
    double *loss;
    void *scratch;
} plain_problem;

static inline int plain_problem_make(plain_problem *p, int64_t n, int64_t C) {
    const size_t bytes = (size_t)(n * C) * sizeof(float) + 64;
    p->x = aligned_alloc(64, bytes);
    p->out = aligned_alloc(64, bytes);
    p->t = malloc((size_t)n * sizeof(int64_t));
    p->loss = malloc((size_t)n * sizeof(double));
    p->scratch = aligned_alloc(64, xf_scratch_bytes(C) + 64);
    if (!p->x || !p->out || !p->t || !p->loss || !p->scratch) return 1;
    srand(1);
    for (int64_t i = 0; i < n * C; i++) p->x[i] = (float)((rand() % 20000) - 10000) * 3e-4f;
    for (int64_t i = 0; i < n; i++) p->t[i] = rand() % C;
    memset(p->out, 0, (size_t)(n * C) * sizeof(float));
    return 0;
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

/* Uniform probability targets (1/C each) in place of a's index targets, for
 * its n x C logits.  0 on success. */
static inline int plain_args_prob_targets(xf_rows_args *a, int64_t n, int64_t C) {
    float *tp = aligned_alloc(64, (size_t)(n * C) * sizeof(float) + 64);
    if (!tp) return 1;
    for (int64_t i = 0; i < n * C; i++) tp[i] = 1.0f / (float)C;
    a->target_prob = tp;
    a->target_prob_stride = C;
    a->target = NULL;
    return 0;
}
