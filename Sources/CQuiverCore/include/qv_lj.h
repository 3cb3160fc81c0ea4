#ifndef QV_LJ_H
#define QV_LJ_H
#include "qv_common.h"
#include "qv_pool.h"

/* Lennard-Jones with per-type-pair coefficients, a global cutoff and an optional energy shift,
 * in a periodic orthorhombic box [0, Lx) x [0, Ly) x [0, Lz).
 *
 * Method: ghost atoms (periodic images within cutoff + skin of the box) and a full Verlet list
 * (each pair stored for both atoms) built from cell lists. A thread computes the force on its own
 * atoms only, so there are no write conflicts and the forces on an atom do not depend on the
 * number of threads. The list is rebuilt when any atom moved more than skin/2 since the last
 * build, when the box changes, or on request; at a rebuild positions are wrapped into the box and
 * the image counts in qv_state updated. Storage grows as needed. */

typedef struct qv_lj qv_lj;

typedef struct qv_lj_config {
    int32_t natoms;
    int32_t ntypes;
    const int32_t *types;    /* natoms type indices in [0, ntypes); copied */
    const double *epsilon;   /* ntypes x ntypes, kJ/mol; copied */
    const double *sigma;     /* ntypes x ntypes, nm; copied */
    double cutoff;           /* nm */
    double skin;             /* nm, >= 0 */
    int32_t shift;           /* 1: energies shifted to zero at the cutoff */
    int32_t kernel;          /* QV_KERNEL_* */
    int32_t nthreads;        /* the pool's size; neighbour storage is per thread */
} qv_lj_config;

typedef struct qv_lj_stats {
    int64_t rebuilds;
    int64_t pairs;          /* stored neighbour entries (full list, without padding) */
    int64_t ghosts;
    int64_t bytes;          /* memory held by the neighbour machinery */
} qv_lj_stats;

int qv_lj_create(const qv_lj_config *config, qv_lj **out);
void qv_lj_destroy(qv_lj *lj);

/* Adds LJ forces into s->fx/fy/fz. `box` holds Lx, Ly, Lz (nm). When energy is not NULL the
 * potential energy (kJ/mol, accumulated in double) is written to it. May wrap positions into the
 * box (only at a rebuild). Errors: QV_ERR_BOX_TOO_SMALL, QV_ERR_NONFINITE, QV_ERR_NOMEM. */
int qv_lj_compute(qv_lj *lj, qv_pool *pool, const qv_state *s, const double box[3], double *energy);
/* Forces a rebuild at the next qv_lj_compute (positions were set from outside). */
void qv_lj_invalidate(qv_lj *lj);
void qv_lj_get_stats(const qv_lj *lj, qv_lj_stats *out);

/* Brute-force O(N^2) reference in double precision with minimum image (for tests and checks):
 * forces written (not added) to fx/fy/fz, energy returned. Needs every box edge >= 2 * cutoff. */
double qv_lj_reference(const qv_lj_config *config, int32_t n, const float *x, const float *y, const float *z,
                       const double box[3], double *fx, double *fy, double *fz);

/* --- kernels (internal, exported for the benchmarks) ---------------------------------------- */

/* Coefficients per type pair: force/r = r^-8 (lj1 r^-6 - lj2); energy = r^-6 (lj3 r^-6 - lj4) - offset. */
typedef struct qv_lj_coeffs {
    int32_t ntypes;
    float cutsq;
    const float *lj1, *lj2, *lj3, *lj4, *offset;
} qv_lj_coeffs;

/* A neighbour list for atoms [begin, end): atom i's neighbours are list[first[i] .. first[i] + count[i]),
 * count a multiple of 8, padded with the index of a far-away sentinel. `packed` holds x, y, z, type
 * (as a float) for every atom, ghost and the sentinel, 16-byte aligned. */
typedef struct qv_lj_neighbors {
    const float *packed;
    const int32_t *list;
    const int32_t *first;
    const int32_t *count;
    int32_t begin, end;
} qv_lj_neighbors;

/* Adds forces on atoms [begin, end) and returns their pair energy (each pair counted half). */
double qv_lj_kernel_scalar_1t(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy);
double qv_lj_kernel_scalar_nt(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy);
double qv_lj_kernel_avx2_1t(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy);
double qv_lj_kernel_avx2_nt(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy);
#endif
