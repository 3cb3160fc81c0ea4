#ifndef QV_CPU_H
#define QV_CPU_H
/* 1 when this CPU supports AVX2 and FMA (the vector kernels), else 0. */
int qv_cpu_has_avx2_fma(void);
/* The best kernel variant this CPU can run (QV_KERNEL_*). */
int qv_cpu_best_kernel(void);
/* Number of CPUs this process may run on (its affinity mask), at least 1. */
int qv_cpu_available_cores(void);
#endif
