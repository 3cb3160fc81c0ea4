/* Lennard-Jones driver: ghosts, cell lists, full Verlet lists, threaded kernels. See qv_lj.h. */
#include "qv_lj.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define MAX_ROWS 81 /* (2R+1)^2 with R <= 4 */

struct qv_lj {
    int32_t n, ntypes, kernel, nthreads;
    int32_t *types;
    float *coef; /* lj1 | lj2 | lj3 | lj4 | offset, each ntypes^2 */
    qv_lj_coeffs coeffs;
    double cutoff, skin, cutlist;
    int valid;
    int64_t rebuilds;
    float box[3];

    /* positions at the last build (for the displacement check) */
    float *x0, *y0, *z0;

    /* ghosts: periodic images within cutlist of the box */
    int32_t nghost, ghost_cap;
    int32_t *ghost_owner;
    float *ghost_shift; /* 3 per ghost */

    /* packed x,y,z,type of atoms, ghosts and the sentinel */
    float *packed;
    int64_t packed_cap; /* in atoms */

    /* cells over [-w, L + w) in each dimension, x fastest */
    int32_t nc[3];
    float cs[3];
    int32_t *cell_start;
    int64_t cell_cap;
    int32_t *cell_of;
    float *bx, *by, *bz;
    int32_t *bidx;
    int64_t bin_cap;
    int32_t nrows;
    int32_t row_dy[MAX_ROWS], row_dz[MAX_ROWS], row_dxmax[MAX_ROWS];

    /* neighbour lists, one buffer per thread */
    int32_t *first, *count;
    int32_t **list;
    int64_t *list_cap, *list_used, *list_need;
    float *thread_disp; /* per-thread max displacement^2 (NaN-aware) */
    int32_t *thread_bad;
    double *thread_energy;
};

static void ensure_compress_lut(void);

static void *aligned_alloc64(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, QV_ALIGN, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

void qv_lj_destroy(qv_lj *lj) {
    if (!lj) return;
    free(lj->types); free(lj->coef);
    free(lj->x0); free(lj->y0); free(lj->z0);
    free(lj->ghost_owner); free(lj->ghost_shift);
    free(lj->packed);
    free(lj->cell_start); free(lj->cell_of);
    free(lj->bx); free(lj->by); free(lj->bz); free(lj->bidx);
    free(lj->first); free(lj->count);
    if (lj->list) for (int t = 0; t < lj->nthreads; t++) free(lj->list[t]);
    free(lj->list); free(lj->list_cap); free(lj->list_used); free(lj->list_need);
    free(lj->thread_disp); free(lj->thread_bad); free(lj->thread_energy);
    free(lj);
}

static void pair_coefficients(double eps, double sig, double cutoff, int shift, float out[5]) {
    double s6 = pow(sig, 6.0), s12 = s6 * s6;
    out[0] = (float)(48.0 * eps * s12);
    out[1] = (float)(24.0 * eps * s6);
    out[2] = (float)(4.0 * eps * s12);
    out[3] = (float)(4.0 * eps * s6);
    double r6 = pow(sig / cutoff, 6.0);
    out[4] = shift ? (float)(4.0 * eps * (r6 * r6 - r6)) : 0.0f;
}

int qv_lj_create(const qv_lj_config *c, qv_lj **out) {
    *out = NULL;
    if (c->natoms < 1 || c->ntypes < 1 || c->nthreads < 1 || !(c->cutoff > 0) || !(c->skin >= 0) ||
        !isfinite(c->cutoff) || !isfinite(c->skin) || !c->types || !c->epsilon || !c->sigma)
        return QV_ERR_ARGUMENT;
    if (c->kernel != QV_KERNEL_SCALAR && c->kernel != QV_KERNEL_AVX2) return QV_ERR_ARGUMENT;
    for (int32_t i = 0; i < c->natoms; i++)
        if (c->types[i] < 0 || c->types[i] >= c->ntypes) return QV_ERR_ARGUMENT;
    int32_t nt = c->ntypes;
    for (int32_t a = 0; a < nt * nt; a++)
        if (!isfinite(c->epsilon[a]) || !isfinite(c->sigma[a]) || c->sigma[a] < 0) return QV_ERR_ARGUMENT;

    ensure_compress_lut();
    qv_lj *lj = calloc(1, sizeof(*lj));
    if (!lj) return QV_ERR_NOMEM;
    lj->n = c->natoms;
    lj->ntypes = nt;
    lj->kernel = c->kernel;
    lj->nthreads = c->nthreads;
    lj->cutoff = c->cutoff;
    lj->skin = c->skin;
    lj->cutlist = c->cutoff + c->skin;
    size_t n = (size_t)c->natoms;
    lj->types = malloc(n * sizeof(int32_t));
    lj->coef = malloc((size_t)(5 * nt * nt) * sizeof(float));
    lj->x0 = aligned_alloc64(n * sizeof(float));
    lj->y0 = aligned_alloc64(n * sizeof(float));
    lj->z0 = aligned_alloc64(n * sizeof(float));
    lj->first = malloc(n * sizeof(int32_t));
    lj->count = malloc(n * sizeof(int32_t));
    lj->list = calloc((size_t)lj->nthreads, sizeof(int32_t *));
    lj->list_cap = calloc((size_t)lj->nthreads, sizeof(int64_t));
    lj->list_used = calloc((size_t)lj->nthreads, sizeof(int64_t));
    lj->list_need = calloc((size_t)lj->nthreads, sizeof(int64_t));
    lj->thread_disp = calloc((size_t)lj->nthreads * 16, sizeof(float));
    lj->thread_bad = calloc((size_t)lj->nthreads * 16, sizeof(int32_t));
    lj->thread_energy = calloc((size_t)lj->nthreads * 8, sizeof(double));
    if (!lj->types || !lj->coef || !lj->x0 || !lj->y0 || !lj->z0 || !lj->first || !lj->count || !lj->list ||
        !lj->list_cap || !lj->list_used || !lj->list_need || !lj->thread_disp || !lj->thread_bad || !lj->thread_energy) {
        qv_lj_destroy(lj);
        return QV_ERR_NOMEM;
    }
    memcpy(lj->types, c->types, n * sizeof(int32_t));
    int32_t np = nt * nt;
    for (int32_t a = 0; a < nt; a++)
        for (int32_t b = 0; b < nt; b++) {
            float pc[5];
            /* symmetrise: the coefficient of (a, b) is the mean of the two given entries */
            double eps = 0.5 * (c->epsilon[a * nt + b] + c->epsilon[b * nt + a]);
            double sig = 0.5 * (c->sigma[a * nt + b] + c->sigma[b * nt + a]);
            pair_coefficients(eps, sig, c->cutoff, c->shift, pc);
            for (int q = 0; q < 5; q++) lj->coef[q * np + a * nt + b] = pc[q];
        }
    lj->coeffs.ntypes = nt;
    lj->coeffs.cutsq = (float)(c->cutoff * c->cutoff);
    lj->coeffs.lj1 = lj->coef;
    lj->coeffs.lj2 = lj->coef + np;
    lj->coeffs.lj3 = lj->coef + 2 * np;
    lj->coeffs.lj4 = lj->coef + 3 * np;
    lj->coeffs.offset = lj->coef + 4 * np;
    *out = lj;
    return QV_OK;
}

void qv_lj_invalidate(qv_lj *lj) { lj->valid = 0; }

void qv_lj_get_stats(const qv_lj *lj, qv_lj_stats *out) {
    out->rebuilds = lj->rebuilds;
    out->ghosts = lj->nghost;
    int64_t pairs = 0, bytes = 0;
    if (lj->valid || lj->rebuilds > 0) {
        for (int32_t i = 0; i < lj->n; i++) pairs += lj->count[i];
    }
    for (int t = 0; t < lj->nthreads; t++) bytes += lj->list_cap[t] * (int64_t)sizeof(int32_t);
    bytes += (int64_t)lj->n * (2 * sizeof(int32_t) + 3 * sizeof(float) + sizeof(int32_t));
    bytes += (int64_t)lj->ghost_cap * (int64_t)(sizeof(int32_t) + 3 * sizeof(float));
    bytes += lj->packed_cap * 4 * (int64_t)sizeof(float);
    bytes += lj->bin_cap * (int64_t)(3 * sizeof(float) + 2 * sizeof(int32_t));
    bytes += lj->cell_cap * (int64_t)sizeof(int32_t);
    out->pairs = pairs; /* stored entries, padding to multiples of 8 included */
    out->bytes = bytes;
}

/* ---- rebuild ------------------------------------------------------------------------------- */

static int grow_int(int32_t **p, int64_t *cap, int64_t need) {
    if (need <= *cap) return QV_OK;
    int64_t nc = need + need / 2 + 64;
    int32_t *q = aligned_alloc64((size_t)nc * sizeof(int32_t));
    if (!q) return QV_ERR_NOMEM;
    free(*p);
    *p = q;
    *cap = nc;
    return QV_OK;
}

static inline float wrap_coordinate(float v, float L, int32_t *image) {
    if (v >= 0.0f && v < L) return v;
    double k = floor((double)v / (double)L);
    float w = (float)((double)v - k * (double)L);
    if (w >= L) { w = 0.0f; k += 1.0; }
    if (w < 0.0f) w = 0.0f;
    *image += (int32_t)k;
    return w;
}

static int make_ghosts(qv_lj *lj, const qv_state *s) {
    const float w = (float)lj->cutlist;
    int32_t n = lj->n;
    /* count first, then fill */
    int64_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        int64_t g = 0;
        for (int32_t i = 0; i < n; i++) {
            const float p[3] = { s->x[i], s->y[i], s->z[i] };
            int8_t sh[3][3];
            int ns[3];
            for (int d = 0; d < 3; d++) {
                ns[d] = 0;
                sh[d][ns[d]++] = 0;
                if (p[d] < w) sh[d][ns[d]++] = 1;
                if (p[d] >= lj->box[d] - w) sh[d][ns[d]++] = -1;
            }
            for (int a = 0; a < ns[0]; a++)
                for (int b = 0; b < ns[1]; b++)
                    for (int c = 0; c < ns[2]; c++) {
                        if (sh[0][a] == 0 && sh[1][b] == 0 && sh[2][c] == 0) continue;
                        if (pass == 1) {
                            lj->ghost_owner[g] = i;
                            lj->ghost_shift[3 * g] = sh[0][a] * lj->box[0];
                            lj->ghost_shift[3 * g + 1] = sh[1][b] * lj->box[1];
                            lj->ghost_shift[3 * g + 2] = sh[2][c] * lj->box[2];
                        }
                        g++;
                    }
        }
        if (pass == 0) {
            total = g;
            if (total > INT32_MAX - (int64_t)n - 1) return QV_ERR_NOMEM;
            if (total > lj->ghost_cap) {
                int64_t cap = total + total / 4 + 64;
                free(lj->ghost_owner); free(lj->ghost_shift);
                lj->ghost_owner = malloc((size_t)cap * sizeof(int32_t));
                lj->ghost_shift = malloc((size_t)cap * 3 * sizeof(float));
                lj->ghost_cap = 0;
                if (!lj->ghost_owner || !lj->ghost_shift) return QV_ERR_NOMEM;
                lj->ghost_cap = (int32_t)cap;
            }
        }
    }
    lj->nghost = (int32_t)total;
    int64_t need = (int64_t)n + total + 1;
    if (need > lj->packed_cap) {
        int64_t cap = need + need / 4 + 64;
        free(lj->packed);
        lj->packed = aligned_alloc64((size_t)cap * 4 * sizeof(float));
        lj->packed_cap = 0;
        if (!lj->packed) return QV_ERR_NOMEM;
        lj->packed_cap = cap;
    }
    return QV_OK;
}

static void fill_sentinel(qv_lj *lj) {
    float far = -(2.0f * fmaxf(lj->box[0], fmaxf(lj->box[1], lj->box[2])) + 1000.0f);
    float *p = lj->packed + 4 * ((int64_t)lj->n + lj->nghost);
    p[0] = p[1] = p[2] = far;
    p[3] = 0.0f;
}

static int bin_atoms(qv_lj *lj) {
    const float w = (float)lj->cutlist;
    int64_t ncell = 1;
    for (int d = 0; d < 3; d++) {
        float extent = lj->box[d] + 2.0f * w;
        int32_t nc = (int32_t)floorf(extent / (0.5f * w));
        if (nc < 1) nc = 1;
        if (nc > 1024) nc = 1024; /* huge dilute boxes: bigger cells, same correctness */
        lj->nc[d] = nc;
        lj->cs[d] = extent / (float)nc;
        ncell *= nc;
    }
    /* rows of the stencil: (dy, dz) pairs with the widest dx whose cells can hold a neighbour */
    int32_t R[3];
    for (int d = 0; d < 3; d++) {
        R[d] = (int32_t)ceilf(w / lj->cs[d]);
        if (R[d] > 4) R[d] = 4;
    }
    lj->nrows = 0;
    const float w2 = w * w * 1.0001f;
    for (int32_t dz = -R[2]; dz <= R[2]; dz++)
        for (int32_t dy = -R[1]; dy <= R[1]; dy++) {
            float my = fmaxf(0.0f, (float)(abs(dy) - 1)) * lj->cs[1];
            float mz = fmaxf(0.0f, (float)(abs(dz) - 1)) * lj->cs[2];
            if (my * my + mz * mz > w2) continue;
            int32_t dxmax = 0;
            for (int32_t dx = 1; dx <= R[0]; dx++) {
                float mx = (float)(dx - 1) * lj->cs[0];
                if (mx * mx + my * my + mz * mz <= w2) dxmax = dx;
            }
            lj->row_dy[lj->nrows] = dy;
            lj->row_dz[lj->nrows] = dz;
            lj->row_dxmax[lj->nrows] = dxmax;
            lj->nrows++;
        }

    int64_t natoms = (int64_t)lj->n + lj->nghost;
    if (grow_int(&lj->cell_start, &lj->cell_cap, ncell + 1) != QV_OK) return QV_ERR_NOMEM;
    if (natoms > lj->bin_cap) {
        int64_t cap = natoms + natoms / 4 + 64;
        free(lj->cell_of); free(lj->bx); free(lj->by); free(lj->bz); free(lj->bidx);
        lj->cell_of = aligned_alloc64((size_t)cap * sizeof(int32_t));
        lj->bx = aligned_alloc64((size_t)cap * sizeof(float));
        lj->by = aligned_alloc64((size_t)cap * sizeof(float));
        lj->bz = aligned_alloc64((size_t)cap * sizeof(float));
        lj->bidx = aligned_alloc64((size_t)cap * sizeof(int32_t));
        lj->bin_cap = 0;
        if (!lj->cell_of || !lj->bx || !lj->by || !lj->bz || !lj->bidx) return QV_ERR_NOMEM;
        lj->bin_cap = cap;
    }
    int32_t *start = lj->cell_start;
    memset(start, 0, (size_t)(ncell + 1) * sizeof(int32_t));
    const float *pk = lj->packed;
    const float inv[3] = { 1.0f / lj->cs[0], 1.0f / lj->cs[1], 1.0f / lj->cs[2] };
    for (int64_t a = 0; a < natoms; a++) {
        int32_t c[3];
        for (int d = 0; d < 3; d++) {
            /* the same expression as build_task's, so an atom's cell agrees in both */
            int32_t k = (int32_t)((pk[4 * a + d] + w) * inv[d]);
            c[d] = k < 0 ? 0 : (k >= lj->nc[d] ? lj->nc[d] - 1 : k);
        }
        int32_t cell = c[0] + lj->nc[0] * (c[1] + lj->nc[1] * c[2]);
        lj->cell_of[a] = cell;
        start[cell + 1]++;
    }
    for (int64_t k = 0; k < ncell; k++) start[k + 1] += start[k];
    /* stable counting sort; cell_start is shifted back afterwards */
    for (int64_t a = 0; a < natoms; a++) {
        int32_t slot = start[lj->cell_of[a]]++;
        lj->bx[slot] = pk[4 * a];
        lj->by[slot] = pk[4 * a + 1];
        lj->bz[slot] = pk[4 * a + 2];
        lj->bidx[slot] = (int32_t)a;
    }
    for (int64_t k = ncell; k > 0; k--) start[k] = start[k - 1];
    start[0] = 0;
    return QV_OK;
}

typedef struct {
    qv_lj *lj;
    const qv_state *s;
    int energy;
} task_ctx;

/* Appends to out[] the indices of binned atoms k in [begin, end) within sqrt(wsq) of (xi, yi, zi),
 * except `self`; returns how many. May write up to 8 entries past the returned count. */
static int32_t gather_row_scalar(const float *restrict bx, const float *restrict by, const float *restrict bz,
                                 const int32_t *restrict bidx, int32_t begin, int32_t end,
                                 float xi, float yi, float zi, float wsq, int32_t self, int32_t *restrict out) {
    int32_t m = 0;
    for (int32_t k = begin; k < end; k++) {
        const float dx = xi - bx[k], dy = yi - by[k], dz = zi - bz[k];
        const float r2 = dx * dx + dy * dy + dz * dz;
        out[m] = bidx[k];
        m += (r2 < wsq) & (bidx[k] != self);
    }
    return m;
}

#if defined(__x86_64__)
/* compress_lut[mask] lists the set lanes of mask first: a left-packing permutation. */
static int32_t compress_lut[256][8] __attribute__((aligned(32)));
static pthread_once_t compress_once = PTHREAD_ONCE_INIT;

static void init_compress_lut(void) {
    for (int mask = 0; mask < 256; mask++) {
        int k = 0;
        for (int b = 0; b < 8; b++)
            if (mask & (1 << b)) compress_lut[mask][k++] = b;
        while (k < 8) compress_lut[mask][k++] = 0;
    }
}

static void ensure_compress_lut(void) { pthread_once(&compress_once, init_compress_lut); }

/* AVX2 version: 8 candidates at a time, selected lanes left-packed with one permutation. Reads up
 * to 7 elements past `end` (the binned arrays are allocated with slack) and masks them out. */
__attribute__((target("avx2,fma")))
static int32_t gather_row_avx2(const float *restrict bx, const float *restrict by, const float *restrict bz,
                               const int32_t *restrict bidx, int32_t begin, int32_t end,
                               float xi, float yi, float zi, float wsq, int32_t self, int32_t *restrict out) {
    const __m256 vx = _mm256_set1_ps(xi), vy = _mm256_set1_ps(yi), vz = _mm256_set1_ps(zi);
    const __m256 vw = _mm256_set1_ps(wsq);
    const __m256i vself = _mm256_set1_epi32(self);
    const __m256i vend = _mm256_set1_epi32(end);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int32_t m = 0;
    for (int32_t k = begin; k < end; k += 8) {
        const __m256 dx = _mm256_sub_ps(vx, _mm256_loadu_ps(bx + k));
        const __m256 dy = _mm256_sub_ps(vy, _mm256_loadu_ps(by + k));
        const __m256 dz = _mm256_sub_ps(vz, _mm256_loadu_ps(bz + k));
        const __m256 r2 = _mm256_fmadd_ps(dz, dz, _mm256_fmadd_ps(dy, dy, _mm256_mul_ps(dx, dx)));
        const __m256i inside = _mm256_castps_si256(_mm256_cmp_ps(r2, vw, _CMP_LT_OQ));
        const __m256i idx = _mm256_loadu_si256((const __m256i *)(bidx + k));
        const __m256i in_row = _mm256_cmpgt_epi32(vend, _mm256_add_epi32(lanes, _mm256_set1_epi32(k)));
        const __m256i keep = _mm256_andnot_si256(_mm256_cmpeq_epi32(idx, vself), _mm256_and_si256(inside, in_row));
        const int mask = _mm256_movemask_ps(_mm256_castsi256_ps(keep));
        const __m256i perm = _mm256_load_si256((const __m256i *)compress_lut[mask]);
        _mm256_storeu_si256((__m256i *)(out + m), _mm256_permutevar8x32_epi32(idx, perm));
        m += __builtin_popcount((unsigned)mask);
    }
    return m;
}
#else
static void ensure_compress_lut(void) {}
#endif

static void build_task(void *ctx, int t, int nt) {
    task_ctx *tc = ctx;
    qv_lj *lj = tc->lj;
    int64_t b, e;
    qv_pool_split(lj->n, t, nt, &b, &e);
    const float w = (float)lj->cutlist;
    const float wsq = w * w;
    const int32_t sentinel = lj->n + lj->nghost;
    const int32_t ncx = lj->nc[0], ncy = lj->nc[1], ncz = lj->nc[2];
    const float *restrict pk = lj->packed;
    const float *restrict bx = lj->bx, *restrict by = lj->by, *restrict bz = lj->bz;
    const int32_t *restrict bidx = lj->bidx;
    int32_t *buf = lj->list[t];
    const int64_t cap = lj->list_cap[t];
    const int vector = lj->kernel == QV_KERNEL_AVX2;
    int64_t used = 0;
    lj->list_need[t] = 0;
    const float inv0 = 1.0f / lj->cs[0], inv1 = 1.0f / lj->cs[1], inv2 = 1.0f / lj->cs[2];
    int32_t rs[MAX_ROWS], re[MAX_ROWS], nr = 0;
    int64_t bound = 0;
    int32_t last_cell = -1;
    for (int64_t i = b; i < e; i++) {
        const float xi = pk[4 * i], yi = pk[4 * i + 1], zi = pk[4 * i + 2];
        /* coordinates + w are >= 0 here, so truncation is floor */
        int32_t cx = (int32_t)((xi + w) * inv0);
        int32_t cy = (int32_t)((yi + w) * inv1);
        int32_t cz = (int32_t)((zi + w) * inv2);
        cx = cx < 0 ? 0 : (cx >= ncx ? ncx - 1 : cx);
        cy = cy < 0 ? 0 : (cy >= ncy ? ncy - 1 : cy);
        cz = cz < 0 ? 0 : (cz >= ncz ? ncz - 1 : cz);
        const int32_t cell = cx + ncx * (cy + ncy * cz);
        if (cell != last_cell) {
            /* the stencil's rows of candidate cells, as ranges of the binned arrays */
            last_cell = cell;
            nr = 0;
            bound = 0;
            for (int32_t r = 0; r < lj->nrows; r++) {
                int32_t y = cy + lj->row_dy[r], z = cz + lj->row_dz[r];
                if (y < 0 || y >= ncy || z < 0 || z >= ncz) continue;
                int32_t xlo = cx - lj->row_dxmax[r], xhi = cx + lj->row_dxmax[r];
                if (xlo < 0) xlo = 0;
                if (xhi >= ncx) xhi = ncx - 1;
                int32_t base = ncx * (y + ncy * z);
                rs[nr] = lj->cell_start[base + xlo];
                re[nr] = lj->cell_start[base + xhi + 1];
                bound += re[nr] - rs[nr];
                nr++;
            }
        }
        if (used + bound + 16 > cap) {
            /* not enough room: report an estimate of what this thread needs and stop */
            int64_t done = i - b;
            int64_t per = done > 0 ? used / done + 1 : bound + 8;
            lj->list_need[t] = per * (e - b) + (e - b) * 8 + bound + 64;
            return;
        }
        int32_t *restrict out = buf + used;
        int32_t m = 0;
        const int32_t self = (int32_t)i;
#if defined(__x86_64__)
        if (vector) {
            for (int32_t r = 0; r < nr; r++)
                m += gather_row_avx2(bx, by, bz, bidx, rs[r], re[r], xi, yi, zi, wsq, self, out + m);
        } else
#endif
        {
            for (int32_t r = 0; r < nr; r++)
                m += gather_row_scalar(bx, by, bz, bidx, rs[r], re[r], xi, yi, zi, wsq, self, out + m);
        }
        while (m & 7) out[m++] = sentinel;
        lj->first[i] = (int32_t)used;
        lj->count[i] = m;
        used += m;
    }
    lj->list_used[t] = used;
}

static int rebuild(qv_lj *lj, qv_pool *pool, const qv_state *s) {
    const int32_t n = lj->n;
    for (int32_t i = 0; i < n; i++) {
        s->x[i] = wrap_coordinate(s->x[i], lj->box[0], &s->image_x[i]);
        s->y[i] = wrap_coordinate(s->y[i], lj->box[1], &s->image_y[i]);
        s->z[i] = wrap_coordinate(s->z[i], lj->box[2], &s->image_z[i]);
    }
    memcpy(lj->x0, s->x, (size_t)n * sizeof(float));
    memcpy(lj->y0, s->y, (size_t)n * sizeof(float));
    memcpy(lj->z0, s->z, (size_t)n * sizeof(float));
    int rc = make_ghosts(lj, s);
    if (rc != QV_OK) return rc;
    float *pk = lj->packed;
    for (int32_t i = 0; i < n; i++) {
        pk[4 * i] = s->x[i];
        pk[4 * i + 1] = s->y[i];
        pk[4 * i + 2] = s->z[i];
        pk[4 * i + 3] = (float)lj->types[i];
    }
    for (int32_t g = 0; g < lj->nghost; g++) {
        int32_t o = lj->ghost_owner[g];
        float *p = pk + 4 * ((int64_t)n + g);
        p[0] = s->x[o] + lj->ghost_shift[3 * g];
        p[1] = s->y[o] + lj->ghost_shift[3 * g + 1];
        p[2] = s->z[o] + lj->ghost_shift[3 * g + 2];
        p[3] = (float)lj->types[o];
    }
    fill_sentinel(lj);
    rc = bin_atoms(lj);
    if (rc != QV_OK) return rc;

    if (lj->list[0] == NULL) {
        /* first build: size each thread's buffer from the mean density */
        double volume = (double)lj->box[0] * lj->box[1] * lj->box[2];
        double expected = 4.18879020478639 * lj->cutlist * lj->cutlist * lj->cutlist * n / volume;
        for (int t = 0; t < lj->nthreads; t++) {
            int64_t b, e;
            qv_pool_split(n, t, lj->nthreads, &b, &e);
            int64_t need = (int64_t)((e - b) * (expected * 1.2 + 16.0)) + 256;
            if (grow_int(&lj->list[t], &lj->list_cap[t], need) != QV_OK) return QV_ERR_NOMEM;
        }
    }
    task_ctx tc = { .lj = lj, .s = s };
    for (;;) {
        qv_pool_run(pool, build_task, &tc);
        int again = 0;
        for (int t = 0; t < lj->nthreads; t++) {
            if (lj->list_need[t] > 0) {
                again = 1;
                if (grow_int(&lj->list[t], &lj->list_cap[t], lj->list_need[t]) != QV_OK) return QV_ERR_NOMEM;
            }
        }
        if (!again) break;
    }
    lj->valid = 1;
    lj->rebuilds++;
    return QV_OK;
}

/* ---- per step ------------------------------------------------------------------------------ */

static void update_task(void *ctx, int t, int nt) {
    task_ctx *tc = ctx;
    qv_lj *lj = tc->lj;
    const qv_state *s = tc->s;
    float *restrict pk = lj->packed;
    int64_t b, e;
    qv_pool_split(lj->n, t, nt, &b, &e);
    float maxd = 0.0f;
    int32_t bad = 0;
    for (int64_t i = b; i < e; i++) {
        const float x = s->x[i], y = s->y[i], z = s->z[i];
        const float dx = x - lj->x0[i], dy = y - lj->y0[i], dz = z - lj->z0[i];
        const float d2 = dx * dx + dy * dy + dz * dz;
        bad |= !(d2 < 1e30f);
        maxd = d2 > maxd ? d2 : maxd;
        pk[4 * i] = x;
        pk[4 * i + 1] = y;
        pk[4 * i + 2] = z;
    }
    lj->thread_disp[16 * t] = maxd;
    lj->thread_bad[16 * t] = bad;
    qv_pool_split(lj->nghost, t, nt, &b, &e);
    const int32_t n = lj->n;
    for (int64_t g = b; g < e; g++) {
        const int32_t o = lj->ghost_owner[g];
        float *p = pk + 4 * (n + g);
        p[0] = s->x[o] + lj->ghost_shift[3 * g];
        p[1] = s->y[o] + lj->ghost_shift[3 * g + 1];
        p[2] = s->z[o] + lj->ghost_shift[3 * g + 2];
    }
}

static void force_task(void *ctx, int t, int nt) {
    task_ctx *tc = ctx;
    qv_lj *lj = tc->lj;
    const qv_state *s = tc->s;
    int64_t b, e;
    qv_pool_split(lj->n, t, nt, &b, &e);
    qv_lj_neighbors nl = {
        .packed = lj->packed, .list = lj->list[t], .first = lj->first, .count = lj->count,
        .begin = (int32_t)b, .end = (int32_t)e,
    };
    double energy;
    const int multi = lj->ntypes > 1;
    if (lj->kernel == QV_KERNEL_AVX2)
        energy = multi ? qv_lj_kernel_avx2_nt(&lj->coeffs, &nl, s->fx, s->fy, s->fz, tc->energy)
                       : qv_lj_kernel_avx2_1t(&lj->coeffs, &nl, s->fx, s->fy, s->fz, tc->energy);
    else
        energy = multi ? qv_lj_kernel_scalar_nt(&lj->coeffs, &nl, s->fx, s->fy, s->fz, tc->energy)
                       : qv_lj_kernel_scalar_1t(&lj->coeffs, &nl, s->fx, s->fy, s->fz, tc->energy);
    lj->thread_energy[8 * t] = energy;
}

int qv_lj_compute(qv_lj *lj, qv_pool *pool, const qv_state *s, const double box[3], double *energy) {
    if (s->n != lj->n || qv_pool_size(pool) != lj->nthreads) return QV_ERR_ARGUMENT;
    for (int d = 0; d < 3; d++) {
        if (!(box[d] > 0) || !isfinite(box[d])) return QV_ERR_ARGUMENT;
        if (box[d] < lj->cutlist) return QV_ERR_BOX_TOO_SMALL;
        if ((float)box[d] != lj->box[d]) { lj->box[d] = (float)box[d]; lj->valid = 0; }
    }
    task_ctx tc = { .lj = lj, .s = s, .energy = energy != NULL };
    int need_rebuild = !lj->valid;
    if (!need_rebuild) {
        qv_pool_run(pool, update_task, &tc);
        const float half = (float)(0.5 * lj->skin);
        for (int t = 0; t < lj->nthreads; t++) {
            if (lj->thread_bad[16 * t]) return QV_ERR_NONFINITE;
            if (lj->thread_disp[16 * t] > half * half) need_rebuild = 1;
        }
    }
    if (need_rebuild) {
        /* NaN, infinite, or so far out (10^6 box lengths) that the dynamics has clearly blown up
         * and wrapping would overflow the image counts */
        const float far = 1e6f * fmaxf(lj->box[0], fmaxf(lj->box[1], lj->box[2]));
        for (int32_t i = 0; i < lj->n; i++)
            if (!(fabsf(s->x[i]) < far) || !(fabsf(s->y[i]) < far) || !(fabsf(s->z[i]) < far)) return QV_ERR_NONFINITE;
        int rc = rebuild(lj, pool, s);
        if (rc != QV_OK) { lj->valid = 0; return rc; }
    }
    qv_pool_run(pool, force_task, &tc);
    if (energy) {
        double sum = 0.0;
        for (int t = 0; t < lj->nthreads; t++) sum += lj->thread_energy[8 * t];
        *energy = sum;
    }
    return QV_OK;
}

/* ---- double-precision reference ------------------------------------------------------------ */

double qv_lj_reference(const qv_lj_config *c, int32_t n, const float *x, const float *y, const float *z,
                       const double box[3], double *fx, double *fy, double *fz) {
    const int32_t nt = c->ntypes;
    const double rc2 = c->cutoff * c->cutoff;
    double energy = 0.0;
    for (int32_t i = 0; i < n; i++) fx[i] = fy[i] = fz[i] = 0.0;
    for (int32_t i = 0; i < n; i++) {
        for (int32_t j = i + 1; j < n; j++) {
            double d[3] = { (double)x[i] - x[j], (double)y[i] - y[j], (double)z[i] - z[j] };
            for (int k = 0; k < 3; k++) d[k] -= box[k] * nearbyint(d[k] / box[k]);
            double r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            if (r2 >= rc2) continue;
            int32_t a = c->types[i], b = c->types[j];
            double eps = 0.5 * (c->epsilon[a * nt + b] + c->epsilon[b * nt + a]);
            double sig = 0.5 * (c->sigma[a * nt + b] + c->sigma[b * nt + a]);
            double sr2 = sig * sig / r2, sr6 = sr2 * sr2 * sr2;
            double e = 4.0 * eps * (sr6 * sr6 - sr6);
            if (c->shift) {
                double sc6 = pow(sig / c->cutoff, 6.0);
                e -= 4.0 * eps * (sc6 * sc6 - sc6);
            }
            energy += e;
            double fr = 24.0 * eps * (2.0 * sr6 * sr6 - sr6) / r2;
            fx[i] += fr * d[0]; fy[i] += fr * d[1]; fz[i] += fr * d[2];
            fx[j] -= fr * d[0]; fy[j] -= fr * d[1]; fz[j] -= fr * d[2];
        }
    }
    return energy;
}
