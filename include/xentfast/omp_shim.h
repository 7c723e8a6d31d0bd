/* OpenMP queries that also compile without OpenMP (then: one thread). */
#ifndef XENTFAST_OMP_SHIM_H
#define XENTFAST_OMP_SHIM_H
#ifdef _OPENMP
#include <omp.h>
static inline int xf_omp_max_threads(void) { return omp_get_max_threads(); }
static const int xf_omp_enabled = 1;
#else
static inline int xf_omp_max_threads(void) { return 1; }
static const int xf_omp_enabled = 0;
#endif
#endif
