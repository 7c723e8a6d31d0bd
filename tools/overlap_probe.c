/* How much of the memory bound a streaming loop keeps as its arithmetic
 * grows, on this core: the ceiling for the fused kernels' loss alone and in
 * place, which read each logit once and compute about a dozen vector
 * operations on it.
 *
 * Each pass reads a 1 GiB float32 array (AVX-512, 16 lanes) with the
 * kernels' software prefetch (XF_PREFETCH_BYTES ahead, into L2) and puts
 * every vector through a chain of K fused multiply-adds: summed (read) or
 * stored back over itself (in place).  For each K it prints the rate with
 * the data in L1 (the arithmetic alone), from DRAM, and the DRAM rate as a
 * fraction of K = 0's (the plain read, or read and write in place: the
 * bounds `python -m xentfast.bench` divides by).  A loop whose arithmetic
 * alone runs at twice the memory's rate would keep, with perfect overlap, all
 * of the bound; what it keeps here is the most a kernel with that much
 * arithmetic per element can expect.  Best of 3 passes, each K in turn, two
 * rounds.  Built and run by
 *
 *   gcc -O2 -fopenmp -mavx512f -mfma -Iinclude tools/overlap_probe.c -o /tmp/probe
 *   OMP_NUM_THREADS=1 /tmp/probe; OMP_NUM_THREADS=2 /tmp/probe
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "xentfast/kernels.h" /* XF_PREFETCH_BYTES, XF_PREFETCH */

enum { READ = 0, IN_PLACE = 1 };

/* K dependent FMAs on each of two independent vectors per step (they cannot
 * be folded away: the compiler keeps every rounding) */
static __attribute__((noipa)) float pass(float *x, int64_t n, int k, int op) {
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    for (int64_t i = 0; i + 32 <= n; i += 32) {
        XF_PREFETCH((const char *)(x + i) + XF_PREFETCH_BYTES);
        XF_PREFETCH((const char *)(x + i) + XF_PREFETCH_BYTES + 64);
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        for (int j = 0; j < k; j++) {
            v0 = _mm512_fmadd_ps(v0, a, b);
            v1 = _mm512_fmadd_ps(v1, a, b);
        }
        if (op == IN_PLACE) {
            _mm512_storeu_ps(x + i, v0);
            _mm512_storeu_ps(x + i + 16, v1);
        } else {
            s0 = _mm512_add_ps(s0, v0);
            s1 = _mm512_add_ps(s1, v1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* G elements/s of `op` with K over n elements per thread-share, best of 3;
 * `repeat` passes over each thread's first `n` elements (the L1 case) */
static double rate(float *x, int64_t n, int repeat, int k, int op, float *sink) {
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        const double t0 = omp_get_wtime();
        float s = 0;
#pragma omp parallel reduction(+ : s)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t share = repeat > 1 ? n : n / nt;
            float *mine = x + (int64_t)t * (repeat > 1 ? (int64_t)1 << 20 : share);
            for (int j = 0; j < repeat; j++) s += pass(mine, share, k, op);
        }
        const double dt = omp_get_wtime() - t0;
        *sink += s;
        if (dt < best) best = dt;
    }
    const double elements = repeat > 1 ? (double)n * repeat * omp_get_max_threads() : (double)n;
    return elements / best / 1e9;
}

int main(void) {
    const int64_t n = (int64_t)1 << 28; /* 1 GiB of float32 */
    float *x = aligned_alloc(64, (size_t)n * sizeof(float));
    if (!x) return 1;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = (float)(i & 1023) * 1e-3f;
    const int ks[] = {0, 4, 8, 12, 16};
    float sink = 0;
    printf("%d thread(s), prefetch %d bytes ahead\n", omp_get_max_threads(), XF_PREFETCH_BYTES);
    for (int round = 0; round < 2; round++)
        for (int op = READ; op <= IN_PLACE; op++) {
            double bound = 0;
            for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
                const double cached = rate(x, 2048, 20000, ks[i], op, &sink);
                const double dram = rate(x, n, 1, ks[i], op, &sink);
                if (ks[i] == 0) bound = dram;
                printf("%-8s K=%2d: in L1 %6.2f G/s, from DRAM %5.2f G/s = %.2f of K=0\n",
                       op == READ ? "read" : "in place", ks[i], cached, dram, dram / bound);
            }
        }
    free(x);
    return sink == 12345.0f;
}
