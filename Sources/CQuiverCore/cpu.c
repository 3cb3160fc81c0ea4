#include "qv_common.h"
#include "qv_cpu.h"
#include <sched.h>
#include <unistd.h>

int qv_cpu_has_avx2_fma(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int qv_cpu_best_kernel(void) {
    return qv_cpu_has_avx2_fma() ? QV_KERNEL_AVX2 : QV_KERNEL_SCALAR;
}

int qv_cpu_available_cores(void) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
