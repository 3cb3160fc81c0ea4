#ifndef QV_COMMON_H
#define QV_COMMON_H
#include <stdint.h>
#include <stddef.h>

/* Status codes returned by every fallible qv_ function. */
enum {
    QV_OK = 0,
    QV_ERR_NOMEM = 1,          /* an allocation failed */
    QV_ERR_ARGUMENT = 2,       /* an argument is out of range */
    QV_ERR_BOX_TOO_SMALL = 3,  /* a box edge is shorter than cutoff + skin */
    QV_ERR_UNSUPPORTED = 4,    /* the requested kernel variant is not supported by this CPU */
    QV_ERR_NONFINITE = 5,      /* a position is NaN or infinite */
    QV_ERR_THREADS = 6         /* a worker thread could not be started */
};

/* Kernel variants. The scalar one is always built; AVX2/FMA is chosen at run time. */
enum {
    QV_KERNEL_SCALAR = 0,
    QV_KERNEL_AVX2 = 1
};

/* Structure-of-arrays view of the dynamic state of n atoms. Arrays are float32, aligned to
 * QV_ALIGN bytes and padded to a multiple of QV_PAD elements by their owner (Swift). */
#define QV_ALIGN 64
#define QV_PAD 16

typedef struct qv_state {
    int32_t n;
    float *x, *y, *z;
    float *vx, *vy, *vz;
    float *fx, *fy, *fz;
    const float *mass;
    const float *inv_mass;
    int32_t *image_x, *image_y, *image_z; /* periodic image counts, updated when positions are wrapped */
} qv_state;

#endif
