#include "qv_integrate.h"
#include <math.h>
#include <string.h>

typedef struct {
    const qv_state *s;
    float a;
    float c1;
    const float *sigma_v;
    uint64_t seed, step;
    float *p0, *p1, *p2;
    int32_t n;
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

/* splitmix64 finaliser: a strong 64-bit mixer; the counter-based generator hashes its key. */
static inline uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline float unit_open(uint32_t bits) {
    /* (0, 1]: never zero, so log() is finite. */
    return ((float)(bits >> 8) + 1.0f) * (1.0f / 16777216.0f);
}

void qv_gaussian3(uint64_t seed, uint64_t stream, uint64_t index, float out[3]) {
    uint64_t k = mix64(seed ^ mix64(stream ^ mix64(index)));
    uint64_t r0 = mix64(k), r1 = mix64(k + 0x632be59bd9b4e019ULL);
    float u1 = unit_open((uint32_t)r0), u2 = unit_open((uint32_t)(r0 >> 32));
    float u3 = unit_open((uint32_t)r1), u4 = unit_open((uint32_t)(r1 >> 32));
    const float two_pi = 6.28318530717958647692f;
    float m1 = sqrtf(-2.0f * logf(u1));
    float m2 = sqrtf(-2.0f * logf(u3));
    out[0] = m1 * cosf(two_pi * u2);
    out[1] = m1 * sinf(two_pi * u2);
    out[2] = m2 * cosf(two_pi * u4);
}

static void langevin_task(void *ctx, int t, int nt) {
    const task_args *a = ctx;
    const qv_state *s = a->s;
    int64_t b, e;
    qv_pool_split(s->n, t, nt, &b, &e);
    const float c1 = a->c1;
    for (int64_t i = b; i < e; i++) {
        float g[3];
        qv_gaussian3(a->seed, a->step, (uint64_t)i, g);
        const float sv = a->sigma_v[i];
        s->vx[i] = c1 * s->vx[i] + sv * g[0];
        s->vy[i] = c1 * s->vy[i] + sv * g[1];
        s->vz[i] = c1 * s->vz[i] + sv * g[2];
    }
}

void qv_langevin_o(qv_pool *pool, const qv_state *s, float c1, const float *sigma_v, uint64_t seed, uint64_t step) {
    task_args a = { .s = s, .c1 = c1, .sigma_v = sigma_v, .seed = seed, .step = step };
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
