/* OpenMP queries that also compile without OpenMP (then: one thread), and the
   process-wide facts xentfast's thread decisions read.  Included by _core only
   (its statics are that module's). */
#ifndef XENTFAST_OMP_SHIM_H
#define XENTFAST_OMP_SHIM_H
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
static inline int xf_omp_max_threads(void) { return omp_get_max_threads(); }
static inline int xf_omp_team_size(void) { return omp_get_num_threads(); }
static inline int xf_omp_thread(void) { return omp_get_thread_num(); }
static const int xf_omp_enabled = 1;
#else
static inline int xf_omp_max_threads(void) { return 1; }
static inline int xf_omp_team_size(void) { return 1; }
static inline int xf_omp_thread(void) { return 0; }
static const int xf_omp_enabled = 0;
#endif

/* 1 in the child of a fork() of a process that had loaded xentfast.  The
   OpenMP runtime does not survive fork (the parent's worker threads are gone
   but its thread pool still counts them, so the child's first parallel region
   waits for them forever), and other libraries may share xentfast's runtime
   (PyTorch's, when torch is imported first): there every call runs on the
   calling thread.  One exception, set just before the fork by _threads.py: a
   multiprocessing forkserver only imports modules, so its children start with
   an unused runtime, unless xentfast itself opened a region in it. */
static int xf_forked_child = 0;
static int xf_next_fork_clean = 0;

/* Parallel regions xentfast has opened in this process, and the team size of
   the last one (for the tests: which calls open a region, with how many). */
static int64_t xf_regions_opened = 0;
static int xf_last_team = 0;

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
static void xf_after_fork_in_child(void) {
    if (!xf_next_fork_clean || xf_regions_opened > 0) xf_forked_child = 1;
    xf_next_fork_clean = 0;
}
/* pthread_atfork, not os.register_at_fork: any fork() counts, not only Python's. */
static inline int xf_register_fork_handler(void) {
    return pthread_atfork(NULL, NULL, xf_after_fork_in_child);
}
#else
static inline int xf_register_fork_handler(void) { return 0; } /* no fork() */
#endif

/* Called once per parallel region, by the thread that runs its first iteration. */
static inline void xf_note_region(void) {
#ifdef _OPENMP
#pragma omp atomic
    xf_regions_opened += 1;
#pragma omp atomic write
    xf_last_team = omp_get_num_threads();
#endif
}
#endif
