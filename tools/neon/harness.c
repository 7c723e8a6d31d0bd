/* Runs xentfast's kernels, as the Cython glue drives them, over a file of
 * cases, and writes every output: a test bed for a backend that cannot run
 * on the build machine (the AArch64 NEON kernels under qemu-aarch64).
 *
 *   harness BACKEND THREADS IN OUT      e.g.  harness neon 1,2,3 cases.bin out.bin
 *
 * BACKEND is a table name for xf_select_backend ("neon", "scalar", ...),
 * or "best" for the one the extension picks at import;
 * THREADS a comma-separated list of OpenMP team sizes, each case being run
 * once per size.  tests/test_neon.py writes the cases and checks the
 * outputs against the float64 oracle (the format is described there, in
 * write_rows_case / write_elem_case / write_map_case).
 *
 * The drivers below repeat _core.pyx's _run, _run_split, _run_shared and
 * _run_elem: rows in blocks of xf_block_rows(C) rows, one contiguous run of
 * blocks per thread; the split plan's phases over (row, chunk) units; the
 * shared rows' team; element-wise
 * blocks of XF_BLOCK_ELEMENTS / cols rows.  Unlike the glue they do not
 * fall back to one thread for small calls, so every case exercises the
 * team it is given.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xentfast/kernels.h"
#if defined(__aarch64__) && defined(XF_HAVE_NEON_KERNELS)
/* the layers' functions, for the accuracy tests: float32 exp, cheaper exps
 * and log; float64 exp, expm1 and log1p (each layer's names forgotten:
 * only its functions are called here) */
#include "xentfast/vec_neon.h"
#include "xentfast/vec_undef.h"
#include "xentfast/vec_neon_f64.h"
#endif

enum { CASE_ROWS = 1, CASE_ELEM = 2, CASE_MAP = 3, CASE_END = 0 };
enum {
    MAP_EXP = 0,
    MAP_LOG1P = 1,
    MAP_LOG = 2,
    MAP_EXP_MID = 3,
    MAP_EXP2_MID = 4,    /* float32 2^x (the one-loop softcap)           */
    MAP_EXP2_SCALED = 5, /* float32 2^(x k), k the case's first element   */
    MAP_EXP_F64 = 6,     /* float64 maps from here on                     */
    MAP_EXPM1_F64 = 7,
    MAP_LOG1P_F64 = 8,
    MAP_STREAM_COPY = 9 /* float32 y = x by the streaming bound pass (STNP) */
};
enum { WANT_LOSS = 1, WANT_LSE = 2, WANT_ZLOSS = 4, WANT_ENTROPY = 8, WANT_ARGMAX = 16 };

static FILE *in, *out;

static void die(const char *what) {
    fprintf(stderr, "harness: %s\n", what);
    exit(2);
}

static void *xmalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) die("out of memory");
    return p;
}

static void read_n(void *p, size_t n) {
    if (n && fread(p, 1, n, in) != n) die("truncated case file");
}

static void *read_array(size_t n) {
    void *p = xmalloc(n);
    read_n(p, n);
    return p;
}

static void write_n(const void *p, size_t n) {
    if (n && fwrite(p, 1, n, out) != n) die("cannot write the output");
}

/* _core.pyx's _run_split */
static void run_split(const xf_rows_args *a, int is_f32, int num_threads) {
    const xf_split_fns *fns = is_f32 ? xf_table()->split_f32 : xf_table()->split_f64;
    const int64_t n_rows = a->n_rows, itemsize = is_f32 ? 4 : 8;
    const int64_t n_seg = (a->n_classes + XF_SEGMENT - 1) / XF_SEGMENT;
    int64_t chunks = 2 * ((num_threads + n_rows - 1) / n_rows);
    if (chunks > n_seg) chunks = n_seg;
    const int64_t per_chunk = (n_seg + chunks - 1) / chunks;
    const int64_t n_units = n_rows * chunks;
    char *seg_max = xmalloc((size_t)(n_rows * n_seg * itemsize));
    double *seg_sum = xmalloc((size_t)(n_rows * n_seg) * sizeof(double));
    double *state = xmalloc((size_t)(n_rows * XF_SPLIT_ROW_DOUBLES) * sizeof(double));
    const int writes = a->out != NULL && (a->mode == XF_MODE_GRAD || a->mode == XF_MODE_SOFTMAX);
    for (int64_t r = 0; r < n_rows; r++) {
        const int64_t y = a->target ? a->target[r] : -1;
        double *zy = &state[r * XF_SPLIT_ROW_DOUBLES + XF_SPLIT_ZY];
        if (y < 0 || y >= a->n_classes)
            *zy = 0.0;
        else if (is_f32)
            *zy = ((const float *)a->x)[r * a->x_stride + y];
        else
            *zy = ((const double *)a->x)[r * a->x_stride + y];
    }
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t u = 0; u < n_units; u++) {
        const int64_t r = u / chunks, j0 = (u % chunks) * per_chunk;
        const int64_t j1 = j0 + per_chunk < n_seg ? j0 + per_chunk : n_seg;
        if (j0 < j1) fns->stats(a, r, j0, j1, seg_max + r * n_seg * itemsize, seg_sum + r * n_seg);
    }
    for (int64_t r = 0; r < n_rows; r++)
        fns->fold(a, r, seg_max + r * n_seg * itemsize, seg_sum + r * n_seg,
                  state + r * XF_SPLIT_ROW_DOUBLES);
    if (writes) {
#pragma omp parallel for schedule(static) num_threads(num_threads)
        for (int64_t u = 0; u < n_units; u++) {
            const int64_t r = u / chunks, j0 = (u % chunks) * per_chunk;
            const int64_t j1 = j0 + per_chunk < n_seg ? j0 + per_chunk : n_seg;
            if (j0 < j1)
                fns->write(a, r, j0, j1, seg_max + r * n_seg * itemsize,
                           state + r * XF_SPLIT_ROW_DOUBLES);
        }
        for (int64_t r = 0; r < n_rows; r++) fns->fix(a, r, state + r * XF_SPLIT_ROW_DOUBLES);
    }
    free(seg_max);
    free(seg_sum);
    free(state);
}

/* _core.pyx's _run_shared */
static void run_shared(const xf_rows_args *a, int num_threads) {
    void *arrays = xmalloc(xf_team_bytes(a->n_classes));
    xf_team team;
    xf_team_init(&team, arrays, a->n_classes);
#pragma omp parallel num_threads(num_threads)
    xf_table()->rows_shared_f32(a, &team, omp_get_thread_num(), omp_get_num_threads());
    free(arrays);
}

/* _core.pyx's _run (without its one-thread rule for small calls);
 * shared: the float32 gradient in place on shared rows, whatever the plan
 * (parts of few segments or none, a team of one) */
static int run_rows(const xf_rows_args *a, int is_f32, int num_threads, int shared) {
    const xf_kernel_table *table = xf_table();
    const xf_rows_fn fn = is_f32 ? table->rows_f32 : table->rows_f64;
    const int64_t n_rows = a->n_rows, block = xf_block_rows(a->n_classes);
    const int64_t n_blocks = (n_rows + block - 1) / block;
    const xf_plan_kind plan =
        shared && is_f32 ? XF_PLAN_SHARED
                         : xf_plan(a, is_f32 ? &table->caps_f32 : &table->caps_f64, num_threads);
    if (plan == XF_PLAN_SPLIT) {
        run_split(a, is_f32, num_threads);
        return (int)plan;
    }
    if (plan == XF_PLAN_SHARED) {
        run_shared(a, num_threads);
        return (int)plan;
    }
    if (num_threads > n_blocks) num_threads = (int)n_blocks;
    const size_t scratch_bytes = xf_scratch_bytes(a->n_classes);
    if (num_threads <= 1) {
        void *scratch = xmalloc(scratch_bytes);
        if (n_rows) fn(a, plan, 0, n_rows, scratch);
        free(scratch);
        return (int)plan;
    }
#pragma omp parallel num_threads(num_threads)
    {
        void *scratch = xmalloc(scratch_bytes);
#pragma omp for schedule(static)
        for (int t = 0; t < num_threads; t++) {
            const int64_t begin = (t * n_blocks / num_threads) * block;
            int64_t end = ((t + 1) * n_blocks / num_threads) * block;
            if (end > n_rows) end = n_rows;
            fn(a, plan, begin, end, scratch);
        }
        free(scratch);
    }
    return (int)plan;
}

/* _core.pyx's _run_elem (without its one-thread rule for small calls) */
static void run_elem(const xf_elem_args *a, int is_f32, int num_threads) {
    const xf_elem_fn fn = is_f32 ? xf_table()->elem_f32 : xf_table()->elem_f64;
    const int64_t n_rows = a->n_rows;
    int64_t block = a->n_cols ? XF_BLOCK_ELEMENTS / a->n_cols : n_rows;
    if (block < 1) block = 1;
    const int64_t n_blocks = (n_rows + block - 1) / block;
    if (num_threads > n_blocks) num_threads = (int)n_blocks;
    if (num_threads <= 1) {
        fn(a, 0, n_rows);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t b = 0; b < n_blocks; b++) {
        const int64_t begin = b * block;
        fn(a, begin, begin + block < n_rows ? begin + block : n_rows);
    }
}

static void rows_case(const int *threads, int n_threads) {
    int64_t h[16];
    double d[8];
    read_n(h, sizeof h);
    read_n(d, sizeof d);
    const int64_t ds = h[0], N = h[1], C = h[2], x_stride = h[3], out_stride = h[4];
    const int64_t want = h[13];
    const int in_place = (int)h[14];
    if (in_place && out_stride != x_stride) die("in place needs equal strides");
    const size_t x_bytes = (size_t)(N * x_stride * ds), out_bytes = (size_t)(N * out_stride * ds);
    void *x = read_array(x_bytes);
    int64_t *target = h[7] ? read_array((size_t)N * 8) : NULL;
    void *class_weight = h[9] ? read_array((size_t)(C * ds)) : NULL;
    double *row_scale = h[10] ? read_array((size_t)N * 8) : NULL;
    double *row_weight = h[11] ? read_array((size_t)N * 8) : NULL;
    void *target_prob = h[12] ? read_array((size_t)(N * C * ds)) : NULL;
    double *loss = xmalloc((size_t)N * 8), *lse = xmalloc((size_t)N * 8);
    double *zl = xmalloc((size_t)N * 8), *ent = xmalloc((size_t)N * 8);
    int64_t *amax = xmalloc((size_t)N * 8);
    void *o = out_stride ? xmalloc(out_bytes) : NULL;
    for (int ti = 0; ti < n_threads; ti++) {
        /* fresh outputs each run: a sentinel that no kernel writes */
        for (int64_t i = 0; i < N; i++) {
            loss[i] = lse[i] = zl[i] = ent[i] = -12345.0;
            amax[i] = -12345;
        }
        if (o) {
            if (in_place)
                memcpy(o, x, out_bytes);
            else
                for (int64_t i = 0; i < N * out_stride; i++) {
                    if (ds == 4)
                        ((float *)o)[i] = -7.0f;
                    else
                        ((double *)o)[i] = -7.0;
                }
        }
        xf_rows_args a;
        memset(&a, 0, sizeof a);
        a.n_rows = N;
        a.n_classes = C;
        a.x = in_place ? o : x;
        a.x_stride = x_stride;
        a.out = o;
        a.out_stride = out_stride;
        a.target = target;
        a.class_weight = class_weight;
        a.ignore_index = h[8];
        a.scale = d[0];
        a.row_scale = row_scale;
        a.row_loss = want & WANT_LOSS ? loss : NULL;
        a.row_lse = want & WANT_LSE ? lse : NULL;
        a.mode = (int)h[5];
        a.streaming = (int)h[6];
        a.label_smoothing = d[1];
        a.z_loss = d[2];
        a.softcap = d[3];
        a.inv_temperature = d[4];
        a.weight_total = d[5];
        a.row_weight = row_weight;
        a.target_prob = target_prob;
        a.target_prob_stride = C;
        a.row_z_loss = want & WANT_ZLOSS ? zl : NULL;
        a.row_entropy = want & WANT_ENTROPY ? ent : NULL;
        a.row_argmax = want & WANT_ARGMAX ? amax : NULL;
        const int64_t plan = run_rows(&a, ds == 4, threads[ti], in_place == 2);
        write_n(&plan, 8);
        write_n(loss, (size_t)N * 8);
        write_n(lse, (size_t)N * 8);
        write_n(zl, (size_t)N * 8);
        write_n(ent, (size_t)N * 8);
        write_n(amax, (size_t)N * 8);
        if (o) write_n(o, out_bytes);
    }
    free(x);
    free(target);
    free(class_weight);
    free(row_scale);
    free(row_weight);
    free(target_prob);
    free(loss);
    free(lse);
    free(zl);
    free(ent);
    free(amax);
    free(o);
}

static size_t strided_count(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
    return (size_t)((rows - 1) * rs + (cols - 1) * cs + 1);
}

static void elem_case(const int *threads, int n_threads) {
    int64_t h[16];
    double d[8];
    read_n(h, sizeof h);
    read_n(d, sizeof d);
    const int64_t ds = h[0], R = h[1], C = h[2];
    const size_t n = (size_t)(R * C);
    void *x = read_array(n * ds), *y = read_array(n * ds);
    void *w = h[4] ? read_array(strided_count(R, C, h[5], h[6]) * ds) : NULL;
    void *pw = h[7] ? read_array(strided_count(1, C, 0, h[8]) * ds) : NULL;
    void *g = h[9] ? read_array(strided_count(R, C, h[10], h[11]) * ds) : NULL;
    void *o = h[12] ? xmalloc(n * ds) : NULL;
    double *row_loss = h[13] ? xmalloc((size_t)R * 8) : NULL;
    void *el = h[14] ? xmalloc(n * ds) : NULL;
    for (int ti = 0; ti < n_threads; ti++) {
        if (o) memset(o, 0xff, n * ds); /* NaN: a missed element shows */
        if (el) memset(el, 0xff, n * ds);
        if (row_loss) memset(row_loss, 0xff, (size_t)R * 8);
        xf_elem_args a;
        memset(&a, 0, sizeof a);
        a.n_rows = R;
        a.n_cols = C;
        a.x = x;
        a.x_stride = C;
        a.y = y;
        a.y_stride = C;
        a.w = w;
        a.w_row_stride = h[5];
        a.w_col_stride = h[6];
        a.pw = pw;
        a.pw_col_stride = h[8];
        a.g = g;
        a.g_row_stride = h[10];
        a.g_col_stride = h[11];
        a.scale = d[0];
        a.label_smoothing = d[1];
        a.out = o;
        a.out_stride = C;
        a.row_loss = row_loss;
        a.elem_loss = el;
        a.elem_stride = C;
        a.op = (int)h[3];
        run_elem(&a, ds == 4, threads[ti]);
        if (o) write_n(o, n * ds);
        if (row_loss) write_n(row_loss, (size_t)R * 8);
        if (el) write_n(el, n * ds);
    }
    free(x);
    free(y);
    free(w);
    free(pw);
    free(g);
    free(o);
    free(row_loss);
    free(el);
}

#if defined(__aarch64__) && defined(XF_HAVE_NEON_KERNELS)
/* y = f(x) over n float32 elements by a 4-lane function, the tail through
 * a padded vector (pad: a value where f is finite) */
static void map_f32x4(float32x4_t (*f)(float32x4_t), const float *x, float *y, int64_t n,
                      float pad) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, f(vld1q_f32(x + i)));
    for (; i < n; i++) {
        float b[4] = {x[i], pad, pad, pad};
        vst1q_f32(b, f(vld1q_f32(b)));
        y[i] = b[0];
    }
}
static float xf_map_k; /* MAP_EXP2_SCALED's k */
static float32x4_t exp2_scaled_k(float32x4_t x) { return xf_exp2_scaled_f32x4(x, xf_map_k); }
/* the same over float64 by a 2-lane function */
static void map_f64x2(float64x2_t (*f)(float64x2_t), const double *x, double *y, int64_t n) {
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) vst1q_f64(y + i, f(vld1q_f64(x + i)));
    if (i < n) {
        double b[2] = {x[i], 0.5};
        vst1q_f64(b, f(vld1q_f64(b)));
        y[i] = b[0];
    }
}
#endif

/* A map case: int64 which, int64 n, n elements (float64 from MAP_EXP_F64
 * on, else float32); the output is the n results. */
static void map_case(void) {
    int64_t h[2];
    read_n(h, sizeof h);
    const int64_t which = h[0], n = h[1];
    const size_t es = which >= MAP_EXP_F64 && which <= MAP_LOG1P_F64 ? 8 : 4;
    void *xv = read_array((size_t)n * es), *yv = xmalloc((size_t)n * es);
    float *x = xv, *y = yv;
    if (which == MAP_EXP) {
        xf_table()->exp_f32(x, y, n);
    } else if (which == MAP_LOG1P) {
        xf_table()->log1p_f32(x, y, n);
    } else if (which == MAP_STREAM_COPY) {
        /* in two parts, so that the second starts unaligned (a head of
         * ordinary stores before the streamed vectors) */
        const int64_t cut = n < 5 ? n : 5;
        xf_table()->bound_f32(XF_BOUND_STREAM, x, y, 0, cut);
        xf_table()->bound_f32(XF_BOUND_STREAM, x, y, cut, n);
    } else {
#if defined(__aarch64__) && defined(XF_HAVE_NEON_KERNELS)
        switch (which) {
        case MAP_LOG:
            map_f32x4(xf_log_f32x4, x, y, n, 1.0f);
            break;
        case MAP_EXP_MID:
            map_f32x4(xf_exp_mid_f32x4, x, y, n, 1.0f);
            break;
        case MAP_EXP2_MID:
            map_f32x4(xf_exp2_mid_f32x4, x, y, n, 1.0f);
            break;
        case MAP_EXP2_SCALED:
            /* x[0] is k; the rest the arguments (y[0] = k back) */
            xf_map_k = x[0];
            y[0] = x[0];
            if (n > 1) map_f32x4(exp2_scaled_k, x + 1, y + 1, n - 1, 1.0f);
            break;
        case MAP_EXP_F64:
            map_f64x2(xf_exp_f64x2, xv, yv, n);
            break;
        case MAP_EXPM1_F64:
            map_f64x2(xf_expm1_f64x2, xv, yv, n);
            break;
        case MAP_LOG1P_F64:
            map_f64x2(xf_log1p01_f64x2, xv, yv, n);
            break;
        default:
            die("unknown map");
        }
#else
        die("the layers' own maps are NEON-only");
#endif
    }
    write_n(yv, (size_t)n * es);
    free(xv);
    free(yv);
}

int main(int argc, char **argv) {
    if (argc != 5) die("usage: harness BACKEND THREADS IN OUT");
    if (xf_select_backend(strcmp(argv[1], "best") == 0 ? "" : argv[1]) != 0)
        die("backend not available in this build");
    int threads[16], n_threads = 0;
    for (char *s = strtok(argv[2], ","); s && n_threads < 16; s = strtok(NULL, ","))
        threads[n_threads++] = atoi(s);
    if (!n_threads) die("no thread counts");
    in = fopen(argv[3], "rb");
    out = fopen(argv[4], "wb");
    if (!in || !out) die("cannot open the case or output file");
    const char *name = xf_table()->name;
    write_n(name, strlen(name) + 1);
    for (;;) {
        int64_t kind;
        read_n(&kind, 8);
        if (kind == CASE_END) break;
        if (kind == CASE_ROWS)
            rows_case(threads, n_threads);
        else if (kind == CASE_ELEM)
            elem_case(threads, n_threads);
        else if (kind == CASE_MAP)
            map_case();
        else
            die("unknown case kind");
    }
    fclose(in);
    if (fclose(out) != 0) die("cannot write the output");
    return 0;
}
