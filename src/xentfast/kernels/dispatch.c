/* Run-time choice of the kernel table.
 *
 * The CPU is asked once (cpuid for the instruction sets, xgetbv for whether
 * the OS saves the wider registers on a context switch: without the latter
 * an AVX instruction faults even on a CPU that has it).  The result is
 * cached; the table is chosen at import and on request.  On AArch64 the
 * NEON table needs no question: Advanced SIMD is part of the baseline. */
#include <string.h>
#include "xentfast/kernels.h"

#if defined(XF_HAVE_X86_KERNELS)
#if defined(_MSC_VER)
#include <intrin.h>
static void xf_cpuid(int leaf, int sub, unsigned r[4]) {
    int v[4];
    __cpuidex(v, leaf, sub);
    for (int i = 0; i < 4; i++) r[i] = (unsigned)v[i];
}
static unsigned long long xf_xgetbv0(void) { return _xgetbv(0); }
#else
#include <cpuid.h>
static void xf_cpuid(int leaf, int sub, unsigned r[4]) {
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}
static unsigned long long xf_xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static int xf_detect(void) {
    unsigned r[4];
    int f = 0;
    xf_cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    if (max_leaf < 1) return 0;
    xf_cpuid(1, 0, r);
    if (r[3] & (1u << 26)) f |= XF_CPU_SSE2;
    const int osxsave = (r[2] >> 27) & 1;
    if (r[2] & (1u << 28)) f |= XF_CPU_AVX;
    if (r[2] & (1u << 12)) f |= XF_CPU_FMA;
    if (osxsave) {
        const unsigned long long xcr0 = xf_xgetbv0();
        if ((xcr0 & 0x6) == 0x6) f |= XF_CPU_OS_AVX;      /* XMM | YMM */
        if ((xcr0 & 0xe6) == 0xe6) f |= XF_CPU_OS_AVX512; /* + opmask, ZMM hi */
    }
    if (max_leaf >= 7) {
        xf_cpuid(7, 0, r);
        if (r[1] & (1u << 5)) f |= XF_CPU_AVX2;
        if (r[1] & (1u << 16)) f |= XF_CPU_AVX512F;
        if (r[1] & (1u << 17)) f |= XF_CPU_AVX512DQ;
        if (r[1] & (1u << 30)) f |= XF_CPU_AVX512BW;
        if (r[1] & (1u << 31)) f |= XF_CPU_AVX512VL;
    }
    return f;
}
#else
static int xf_detect(void) { return 0; }
#endif

static int xf_features = -1;

int xf_cpu_features(void) {
    /* a benign race: every thread computes the same value */
    if (xf_features < 0) xf_features = xf_detect();
    return xf_features;
}

static const xf_kernel_table *xf_lookup(const char *name) {
#if defined(XF_HAVE_X86_KERNELS)
    const int f = xf_cpu_features();
    const int avx2 = XF_CPU_AVX | XF_CPU_AVX2 | XF_CPU_FMA | XF_CPU_OS_AVX;
    const int avx512 = avx2 | XF_CPU_AVX512F | XF_CPU_AVX512DQ | XF_CPU_OS_AVX512;
    if (strcmp(name, "avx512") == 0) return (f & avx512) == avx512 ? &xf_table_avx512 : NULL;
    if (strcmp(name, "avx2") == 0) return (f & avx2) == avx2 ? &xf_table_avx2 : NULL;
#endif
#if defined(XF_HAVE_NEON_KERNELS) && defined(__aarch64__)
    /* NEON (Advanced SIMD) is part of the AArch64 baseline: no detection */
    if (strcmp(name, "neon") == 0) return &xf_table_neon;
#endif
    if (strcmp(name, "scalar") == 0) return &xf_table_scalar;
    return NULL;
}

static int xf_known(const char *name) {
    return strcmp(name, "avx512") == 0 || strcmp(name, "avx2") == 0 || strcmp(name, "neon") == 0 ||
           strcmp(name, "scalar") == 0;
}

int xf_backend_supported(const char *name) { return xf_lookup(name) != NULL; }

static const xf_kernel_table *xf_current = &xf_table_scalar;

int xf_select_backend(const char *name) {
    if (name == NULL || name[0] == '\0') {
        static const char *best[] = {"avx512", "avx2", "neon", "scalar"};
        for (int i = 0; i < 4; i++) {
            const xf_kernel_table *t = xf_lookup(best[i]);
            if (t) {
                xf_current = t;
                return 0;
            }
        }
        return -2;
    }
    if (!xf_known(name)) return -1;
    const xf_kernel_table *t = xf_lookup(name);
    if (!t) return -2;
    xf_current = t;
    return 0;
}

const xf_kernel_table *xf_table(void) { return xf_current; }
