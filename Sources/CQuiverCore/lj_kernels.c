/* Lennard-Jones pair kernels over a full neighbour list. One body per variant family, specialised
 * at compile time (energy or not, one type or many) into separate loops: no flag is tested inside
 * the pair loop. The scalar kernel is the reference; the AVX2/FMA kernel processes 8 neighbours at
 * a time, loading their packed x,y,z,type with 128-bit loads and transposing (cheaper than gathers). */
#include "qv_lj.h"
#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE double scalar_body(const qv_lj_coeffs *restrict c, const qv_lj_neighbors *restrict nl,
                                        float *restrict fx, float *restrict fy, float *restrict fz,
                                        const int energy, const int multitype) {
    const float *restrict pk = nl->packed;
    const float cutsq = c->cutsq;
    double etotal = 0.0;
    for (int32_t i = nl->begin; i < nl->end; i++) {
        const float xi = pk[4 * i], yi = pk[4 * i + 1], zi = pk[4 * i + 2];
        const int32_t ti = multitype ? (int32_t)pk[4 * i + 3] : 0;
        const int32_t *restrict jl = nl->list + nl->first[i];
        const int32_t nj = nl->count[i];
        float ax = 0.f, ay = 0.f, az = 0.f, ae = 0.f;
        for (int32_t k = 0; k < nj; k++) {
            const int32_t j = jl[k];
            const float dx = xi - pk[4 * j], dy = yi - pk[4 * j + 1], dz = zi - pk[4 * j + 2];
            const float r2 = dx * dx + dy * dy + dz * dz;
            if (r2 < cutsq) {
                const int32_t p = multitype ? ti * c->ntypes + (int32_t)pk[4 * j + 3] : 0;
                const float r2inv = 1.0f / r2;
                const float r6inv = r2inv * r2inv * r2inv;
                const float fpair = r6inv * (c->lj1[p] * r6inv - c->lj2[p]) * r2inv;
                ax += dx * fpair;
                ay += dy * fpair;
                az += dz * fpair;
                if (energy) ae += r6inv * (c->lj3[p] * r6inv - c->lj4[p]) - c->offset[p];
            }
        }
        fx[i] += ax;
        fy[i] += ay;
        fz[i] += az;
        if (energy) etotal += 0.5 * (double)ae;
    }
    return etotal;
}

double qv_lj_kernel_scalar_1t(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy) {
    return energy ? scalar_body(c, nl, fx, fy, fz, 1, 0) : scalar_body(c, nl, fx, fy, fz, 0, 0);
}

double qv_lj_kernel_scalar_nt(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy) {
    return energy ? scalar_body(c, nl, fx, fy, fz, 1, 1) : scalar_body(c, nl, fx, fy, fz, 0, 1);
}

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma")))

static AVX2 ALWAYS_INLINE float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    lo = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, lo);
    lo = _mm_add_ss(lo, sh);
    return _mm_cvtss_f32(lo);
}

static AVX2 ALWAYS_INLINE double avx2_body(const qv_lj_coeffs *restrict c, const qv_lj_neighbors *restrict nl,
                                           float *restrict fx, float *restrict fy, float *restrict fz,
                                           const int energy, const int multitype) {
    const float *restrict pk = nl->packed;
    const __m256 cutsq = _mm256_set1_ps(c->cutsq);
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 lj1 = _mm256_set1_ps(c->lj1[0]), lj2 = _mm256_set1_ps(c->lj2[0]);
    __m256 lj3 = _mm256_set1_ps(c->lj3[0]), lj4 = _mm256_set1_ps(c->lj4[0]);
    __m256 off = _mm256_set1_ps(c->offset[0]);
    double etotal = 0.0;
    for (int32_t i = nl->begin; i < nl->end; i++) {
        const __m256 xi = _mm256_set1_ps(pk[4 * i]);
        const __m256 yi = _mm256_set1_ps(pk[4 * i + 1]);
        const __m256 zi = _mm256_set1_ps(pk[4 * i + 2]);
        const __m256i rowbase = _mm256_set1_epi32(multitype ? (int32_t)pk[4 * i + 3] * c->ntypes : 0);
        const int32_t *restrict jl = nl->list + nl->first[i];
        const int32_t nj = nl->count[i];
        __m256 ax = _mm256_setzero_ps(), ay = _mm256_setzero_ps(), az = _mm256_setzero_ps();
        __m256 ae = _mm256_setzero_ps();
        for (int32_t k = 0; k < nj; k += 8) {
            const __m128 a0 = _mm_load_ps(pk + 4 * jl[k + 0]);
            const __m128 a1 = _mm_load_ps(pk + 4 * jl[k + 1]);
            const __m128 a2 = _mm_load_ps(pk + 4 * jl[k + 2]);
            const __m128 a3 = _mm_load_ps(pk + 4 * jl[k + 3]);
            const __m128 a4 = _mm_load_ps(pk + 4 * jl[k + 4]);
            const __m128 a5 = _mm_load_ps(pk + 4 * jl[k + 5]);
            const __m128 a6 = _mm_load_ps(pk + 4 * jl[k + 6]);
            const __m128 a7 = _mm_load_ps(pk + 4 * jl[k + 7]);
            const __m256 r0 = _mm256_insertf128_ps(_mm256_castps128_ps256(a0), a4, 1);
            const __m256 r1 = _mm256_insertf128_ps(_mm256_castps128_ps256(a1), a5, 1);
            const __m256 r2 = _mm256_insertf128_ps(_mm256_castps128_ps256(a2), a6, 1);
            const __m256 r3 = _mm256_insertf128_ps(_mm256_castps128_ps256(a3), a7, 1);
            const __m256 t0 = _mm256_unpacklo_ps(r0, r1); /* x0 x1 y0 y1 | x4 x5 y4 y5 */
            const __m256 t1 = _mm256_unpackhi_ps(r0, r1); /* z0 z1 w0 w1 | ... */
            const __m256 t2 = _mm256_unpacklo_ps(r2, r3);
            const __m256 t3 = _mm256_unpackhi_ps(r2, r3);
            const __m256 xj = _mm256_shuffle_ps(t0, t2, 0x44);
            const __m256 yj = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 zj = _mm256_shuffle_ps(t1, t3, 0x44);
            const __m256 dx = _mm256_sub_ps(xi, xj);
            const __m256 dy = _mm256_sub_ps(yi, yj);
            const __m256 dz = _mm256_sub_ps(zi, zj);
            const __m256 rsq = _mm256_fmadd_ps(dz, dz, _mm256_fmadd_ps(dy, dy, _mm256_mul_ps(dx, dx)));
            const __m256 mask = _mm256_cmp_ps(rsq, cutsq, _CMP_LT_OQ);
            if (multitype) {
                const __m256 wj = _mm256_shuffle_ps(t1, t3, 0xEE);
                const __m256i p = _mm256_add_epi32(rowbase, _mm256_cvttps_epi32(wj));
                lj1 = _mm256_i32gather_ps(c->lj1, p, 4);
                lj2 = _mm256_i32gather_ps(c->lj2, p, 4);
                if (energy) {
                    lj3 = _mm256_i32gather_ps(c->lj3, p, 4);
                    lj4 = _mm256_i32gather_ps(c->lj4, p, 4);
                    off = _mm256_i32gather_ps(c->offset, p, 4);
                }
            }
            const __m256 r2inv = _mm256_div_ps(one, rsq);
            const __m256 r6inv = _mm256_mul_ps(_mm256_mul_ps(r2inv, r2inv), r2inv);
            const __m256 flj = _mm256_mul_ps(r6inv, _mm256_fmsub_ps(lj1, r6inv, lj2));
            const __m256 fpair = _mm256_and_ps(mask, _mm256_mul_ps(flj, r2inv));
            ax = _mm256_fmadd_ps(dx, fpair, ax);
            ay = _mm256_fmadd_ps(dy, fpair, ay);
            az = _mm256_fmadd_ps(dz, fpair, az);
            if (energy) {
                const __m256 e = _mm256_sub_ps(_mm256_mul_ps(r6inv, _mm256_fmsub_ps(lj3, r6inv, lj4)), off);
                ae = _mm256_add_ps(ae, _mm256_and_ps(mask, e));
            }
        }
        fx[i] += hsum256(ax);
        fy[i] += hsum256(ay);
        fz[i] += hsum256(az);
        if (energy) etotal += 0.5 * (double)hsum256(ae);
    }
    return etotal;
}

AVX2 double qv_lj_kernel_avx2_1t(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy) {
    return energy ? avx2_body(c, nl, fx, fy, fz, 1, 0) : avx2_body(c, nl, fx, fy, fz, 0, 0);
}

AVX2 double qv_lj_kernel_avx2_nt(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy) {
    return energy ? avx2_body(c, nl, fx, fy, fz, 1, 1) : avx2_body(c, nl, fx, fy, fz, 0, 1);
}
#else
/* Not x86-64: the vector kernels fall back to the scalar reference (never selected at run time). */
double qv_lj_kernel_avx2_1t(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy) {
    return qv_lj_kernel_scalar_1t(c, nl, fx, fy, fz, energy);
}
double qv_lj_kernel_avx2_nt(const qv_lj_coeffs *c, const qv_lj_neighbors *nl, float *fx, float *fy, float *fz, int energy) {
    return qv_lj_kernel_scalar_nt(c, nl, fx, fy, fz, energy);
}
#endif
