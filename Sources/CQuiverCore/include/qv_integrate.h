#ifndef QV_INTEGRATE_H
#define QV_INTEGRATE_H
#include "qv_common.h"
#include "qv_pool.h"

/* Integrator pieces over a qv_state, split across the pool's threads. Units: nm, ps, amu, kJ/mol
 * (so force / mass is in nm/ps^2). Velocity Verlet = kick(dt/2), drift(dt), forces, kick(dt/2).
 * Langevin BAOAB = kick(dt/2), drift(dt/2), langevin_o(dt), drift(dt/2), forces, kick(dt/2). */

/* v += dt_kick * f / m */
void qv_kick(qv_pool *pool, const qv_state *s, float dt_kick);
/* x += dt_drift * v */
void qv_drift(qv_pool *pool, const qv_state *s, float dt_drift);
/* Ornstein-Uhlenbeck part of Langevin: v = c1 v + sigma_v[i] * xi, xi ~ N(0, 1) drawn from a
 * counter-based generator keyed by (seed, step, atom), so the result does not depend on threads.
 * sigma_v[i] = sqrt((1 - c1^2) kT / m_i). */
void qv_langevin_o(qv_pool *pool, const qv_state *s, float c1, const float *sigma_v, uint64_t seed, uint64_t step);
/* Kinetic energy 0.5 sum m v^2, accumulated in double. */
double qv_kinetic_energy(const qv_state *s);
/* The per-step blow-up check: one pass, split across the pool, over positions and velocities
 * (after a step's last half-kick a non-finite force shows in the velocities). Returns the kinetic
 * energy 0.5 sum m v^2 (m v^2 in float, summed in double in any order: for the check only, not the
 * kinetic energy the engine reports), or NaN when any position or velocity component is NaN or
 * infinite. */
double qv_check_state(qv_pool *pool, const qv_state *s);
/* 1 when all n values of each of the three arrays are finite, else 0 (vectorised, no branch per value). */
int qv_all_finite3(const float *x, const float *y, const float *z, int64_t n);
/* Total momentum sum m v, accumulated in double. */
void qv_momentum(const qv_state *s, double out[3]);
/* Three standard normal deviates for (seed, stream, index): the generator the engine uses. */
void qv_gaussian3(uint64_t seed, uint64_t stream, uint64_t index, float out[3]);
/* Zeroes the n elements of the three arrays. */
void qv_zero3(qv_pool *pool, int32_t n, float *a, float *b, float *c);
#endif
