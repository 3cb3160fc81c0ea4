#include "qv_integrate.h"
#include <math.h>
#include <string.h>
#include "qv_cpu.h"

typedef struct {
    const qv_state *s;
    float a;
    float c1;
    const float *sigma_v;
    uint64_t seed, step;
    float *p0, *p1, *p2;
    int32_t n;
    int vector;
} task_args;

static void kick_task(void *ctx, int t, int nt) {
    const task_args *a = ctx;
    const qv_state *s = a->s;
    int64_t b, e;
    qv_pool_split(s->n, t, nt, &b, &e);
    const float h = a->a;
    float *restrict vx = s->vx, *restrict vy = s->vy, *restrict vz = s->vz;
    const float *restrict fx = s->fx, *restrict fy = s->fy, *restrict fz = s->fz, *restrict im = s->inv_mass;
    for (int64_t i = b; i < e; i++) {
        const float k = h * im[i];
        vx[i] += k * fx[i];
        vy[i] += k * fy[i];
        vz[i] += k * fz[i];
    }
}

static void drift_task(void *ctx, int t, int nt) {
    const task_args *a = ctx;
    const qv_state *s = a->s;
    int64_t b, e;
    qv_pool_split(s->n, t, nt, &b, &e);
    const float h = a->a;
    float *restrict x = s->x, *restrict y = s->y, *restrict z = s->z;
    const float *restrict vx = s->vx, *restrict vy = s->vy, *restrict vz = s->vz;
    for (int64_t i = b; i < e; i++) {
        x[i] += h * vx[i];
        y[i] += h * vy[i];
        z[i] += h * vz[i];
    }
}

void qv_kick(qv_pool *pool, const qv_state *s, float dt_kick) {
    task_args a = { .s = s, .a = dt_kick };
    qv_pool_run(pool, kick_task, &a);
}

void qv_drift(qv_pool *pool, const qv_state *s, float dt_drift) {
    task_args a = { .s = s, .a = dt_drift };
    qv_pool_run(pool, drift_task, &a);
}

/* splitmix64 finaliser: a strong 64-bit mixer, used once per call to derive a 32-bit key. */
static inline uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A 32-bit integer hash with low bias (xorshift-multiply); vectorises with AVX2 (vpmulld). */
static inline __attribute__((always_inline)) uint32_t hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* The key of (seed, stream): one 32-bit word; every normal of that stream derives from it. */
static inline uint32_t stream_key(uint64_t seed, uint64_t stream) {
    return (uint32_t)mix64(seed ^ mix64(stream + 0x632be59bd9b4e019ULL));
}

/* (0, 1): never zero, so the logarithm is finite. */
static inline __attribute__((always_inline)) float unit_open(uint32_t bits) { return ((float)(bits >> 8) + 0.5f) * (1.0f / 16777216.0f); }

/* ln(x) for x in (0, 1]: exponent plus a minimax polynomial of ln(1 + f) on [sqrt(1/2) - 1,
 * sqrt(2) - 1]; about 1 ulp. Branch-free, so a loop of it vectorises. */
static inline __attribute__((always_inline)) float log_unit(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    float e = (float)((int32_t)((bits >> 23) & 0xffu) - 127);
    bits = (bits & 0x007fffffu) | 0x3f800000u;
    float m;
    memcpy(&m, &bits, 4); /* [1, 2) */
    const int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    e = big ? e + 1.0f : e;
    const float f = m - 1.0f, z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z - 0.5f * z;
    return f + y + e * 0.69314718056f;
}

/* cos and sin of p in [-pi, pi]: Taylor series to p^16 / p^15 (error below 1e-6). */
static inline __attribute__((always_inline)) void sincos_pi(float p, float *c, float *s) {
    const float q = p * p;
    float cc = 1.0f / 20922789888000.0f;
    cc = cc * q - 1.0f / 87178291200.0f;
    cc = cc * q + 1.0f / 479001600.0f;
    cc = cc * q - 1.0f / 3628800.0f;
    cc = cc * q + 1.0f / 40320.0f;
    cc = cc * q - 1.0f / 720.0f;
    cc = cc * q + 1.0f / 24.0f;
    cc = cc * q - 0.5f;
    *c = cc * q + 1.0f;
    float ss = -1.0f / 1307674368000.0f;
    ss = ss * q + 1.0f / 6227020800.0f;
    ss = ss * q - 1.0f / 39916800.0f;
    ss = ss * q + 1.0f / 362880.0f;
    ss = ss * q - 1.0f / 5040.0f;
    ss = ss * q + 1.0f / 120.0f;
    ss = ss * q - 1.0f / 6.0f;
    *s = (ss * q + 1.0f) * p;
}

/* Three standard normals for atom `index` of the stream with key `key` (Box-Muller, two pairs). */
static inline __attribute__((always_inline)) void normals3(uint32_t key, uint32_t index, float out[3]) {
    const uint32_t h = hash32(key ^ hash32(index));
    const float r1 = __builtin_elementwise_sqrt(-2.0f * log_unit(unit_open(hash32(h ^ 0x68e31da4u))));
    const float r2 = __builtin_elementwise_sqrt(-2.0f * log_unit(unit_open(hash32(h ^ 0xb5297a4du))));
    const float a1 = 3.14159265f * (2.0f * unit_open(hash32(h ^ 0x1b56c4e9u)) - 1.0f);
    const float a2 = 3.14159265f * (2.0f * unit_open(hash32(h ^ 0x3c6ef372u)) - 1.0f);
    float c1, s1, c2, s2;
    sincos_pi(a1, &c1, &s1);
    sincos_pi(a2, &c2, &s2);
    out[0] = r1 * c1;
    out[1] = r1 * s1;
    out[2] = r2 * c2;
}

void qv_gaussian3(uint64_t seed, uint64_t stream, uint64_t index, float out[3]) {
    normals3(stream_key(seed, stream), (uint32_t)index, out);
}

static inline __attribute__((always_inline)) void langevin_range(const task_args *a, int64_t b, int64_t e) {
    const qv_state *s = a->s;
    const float c1 = a->c1;
    const uint32_t key = stream_key(a->seed, a->step);
    float *restrict vx = s->vx, *restrict vy = s->vy, *restrict vz = s->vz;
    const float *restrict sv = a->sigma_v;
    for (int64_t i = b; i < e; i++) {
        float g[3];
        normals3(key, (uint32_t)i, g);
        vx[i] = c1 * vx[i] + sv[i] * g[0];
        vy[i] = c1 * vy[i] + sv[i] * g[1];
        vz[i] = c1 * vz[i] + sv[i] * g[2];
    }
}

#if defined(__x86_64__)
/* The same loop compiled for AVX2/FMA, so the compiler vectorises it 8 atoms wide. */
__attribute__((target("avx2,fma"))) static void langevin_range_avx2(const task_args *a, int64_t b, int64_t e) {
    langevin_range(a, b, e);
}
#endif

static void langevin_task(void *ctx, int t, int nt) {
    const task_args *a = ctx;
    int64_t b, e;
    qv_pool_split(a->s->n, t, nt, &b, &e);
#if defined(__x86_64__)
    if (a->vector) { langevin_range_avx2(a, b, e); return; }
#endif
    langevin_range(a, b, e);
}

void qv_langevin_o(qv_pool *pool, const qv_state *s, float c1, const float *sigma_v, uint64_t seed, uint64_t step) {
    task_args a = { .s = s, .c1 = c1, .sigma_v = sigma_v, .seed = seed, .step = step, .vector = qv_cpu_has_avx2_fma() };
    qv_pool_run(pool, langevin_task, &a);
}

double qv_kinetic_energy(const qv_state *s) {
    double ke = 0.0;
    for (int32_t i = 0; i < s->n; i++) {
        double v2 = (double)s->vx[i] * s->vx[i] + (double)s->vy[i] * s->vy[i] + (double)s->vz[i] * s->vz[i];
        ke += (double)s->mass[i] * v2;
    }
    return 0.5 * ke;
}

typedef struct {
    const qv_state *s;
    double *partial; /* one per thread */
    int vector;
} check_args;

/* Kinetic energy of atoms [b, e) plus the sum of v - v over their positions and velocities: 0 for
 * finite values, NaN as soon as one is NaN or infinite (no branch). Forces need no look of their
 * own: the step's last half-kick added them to the velocities. The order of the sums does not
 * matter here (the value only feeds the check), so the compiler may vectorise them. */
static inline __attribute__((always_inline)) double check_range(const qv_state *s, int64_t b, int64_t e) {
#pragma clang fp reassociate(on)
    const float *restrict x = s->x, *restrict y = s->y, *restrict z = s->z;
    const float *restrict vx = s->vx, *restrict vy = s->vy, *restrict vz = s->vz, *restrict m = s->mass;
    double ke = 0.0;
    float bad = 0.0f;
    for (int64_t i = b; i < e; i++) {
        bad += (x[i] - x[i]) + (y[i] - y[i]) + (z[i] - z[i]);
        const float v2 = vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i];
        ke += (double)(m[i] * v2);
    }
    return 0.5 * ke + (double)bad;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static double check_range_avx2(const qv_state *s, int64_t b, int64_t e) {
    return check_range(s, b, e);
}
#endif

static void check_task(void *ctx, int t, int nt) {
    const check_args *a = ctx;
    int64_t b, e;
    qv_pool_split(a->s->n, t, nt, &b, &e);
#if defined(__x86_64__)
    if (a->vector) { a->partial[t] = check_range_avx2(a->s, b, e); return; }
#endif
    a->partial[t] = check_range(a->s, b, e);
}

double qv_check_state(qv_pool *pool, const qv_state *s) {
    double partial[1024];
    const int nt = qv_pool_size(pool);
    if (nt > 1024) return check_range(s, 0, s->n); /* never: Simulation's limit is 1024 threads */
    check_args a = { .s = s, .partial = partial, .vector = qv_cpu_has_avx2_fma() };
    qv_pool_run(pool, check_task, &a);
    double total = 0.0;
    for (int t = 0; t < nt; t++) total += partial[t];
    return total;
}

static inline __attribute__((always_inline)) int finite3(const float *restrict x, const float *restrict y, const float *restrict z, int64_t n) {
#pragma clang fp reassociate(on)
    float bad = 0.0f;
    for (int64_t i = 0; i < n; i++) bad += (x[i] - x[i]) + (y[i] - y[i]) + (z[i] - z[i]);
    return bad == 0.0f;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static int finite3_avx2(const float *x, const float *y, const float *z, int64_t n) { return finite3(x, y, z, n); }
#endif

int qv_all_finite3(const float *x, const float *y, const float *z, int64_t n) {
#if defined(__x86_64__)
    if (qv_cpu_has_avx2_fma()) return finite3_avx2(x, y, z, n);
#endif
    return finite3(x, y, z, n);
}

void qv_momentum(const qv_state *s, double out[3]) {
    double px = 0, py = 0, pz = 0;
    for (int32_t i = 0; i < s->n; i++) {
        px += (double)s->mass[i] * s->vx[i];
        py += (double)s->mass[i] * s->vy[i];
        pz += (double)s->mass[i] * s->vz[i];
    }
    out[0] = px; out[1] = py; out[2] = pz;
}

static void zero_task(void *ctx, int t, int nt) {
    const task_args *a = ctx;
    int64_t b, e;
    qv_pool_split(a->n, t, nt, &b, &e);
    size_t bytes = (size_t)(e - b) * sizeof(float);
    memset(a->p0 + b, 0, bytes);
    memset(a->p1 + b, 0, bytes);
    memset(a->p2 + b, 0, bytes);
}

void qv_zero3(qv_pool *pool, int32_t n, float *a, float *b, float *c) {
    task_args args = { .n = n, .p0 = a, .p1 = b, .p2 = c };
    qv_pool_run(pool, zero_task, &args);
}
