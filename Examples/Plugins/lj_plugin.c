/* lj_plugin.c - an example Quiver force-field plugin: Lennard-Jones with a cutoff.
 *
 *     E = sum over pairs with r < cutoff of 4 eps ((sigma/r)^12 - (sigma/r)^6)   [- its value at the cutoff]
 *
 * the same potential as Quiver's built-in LennardJones with one atom type (every pair uses the same
 * epsilon and sigma; the system's types are ignored). Written plainly: all pairs, O(N^2), with the
 * minimum image, in double precision, so it is a reference rather than a fast implementation.
 *
 * Build (see docs/plugins.md):
 *     cc -shared -fPIC -O2 -I<quiver>/Sources/CQuiverPlugin/include -o lj_plugin.so Examples/Plugins/lj_plugin.c
 *
 * Options (whitespace- or comma-separated key=value; defaults are LAMMPS's in.lj in Quiver units):
 *     epsilon=1        kJ/mol
 *     sigma=1          nm
 *     cutoff=2.5       nm; at most half the smallest box edge (minimum image)
 *     shift=0          1: shift energies to zero at the cutoff (forces are unchanged)
 *     fail_at_step=N   return an error at step N (for testing error handling)
 *     crash_at_step=N  dereference a null pointer at step N (for testing crash handling: this
 *                      kills the process that loaded the plugin)
 * e.g. "epsilon=0.996 sigma=0.3405 cutoff=0.85 shift=1" (argon).
 */
#define _POSIX_C_SOURCE 200809L /* strdup, strtok_r under -std=c11 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quiver_plugin.h"

typedef struct lj_state {
    double epsilon, sigma, cutoff;
    int shift;
    long long fail_at_step, crash_at_step; /* -1: never */
    int64_t n;
    double *fx, *fy, *fz; /* per-atom sums in double, added to the host's arrays at the end */
} lj_state;

static void set_error(char *error, size_t capacity, const char *format, ...) {
    if (!error || capacity == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, capacity, format, args);
    va_end(args);
}

static int parse_double(const char *text, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_integer(const char *text, long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') return -1;
    *out = v;
    return 0;
}

/* Parses `options` into `s`; 0, or -1 with a message. */
static int parse_options(const char *options, lj_state *s, char *error, size_t capacity) {
    char *copy = strdup(options ? options : "");
    if (!copy) {
        set_error(error, capacity, "out of memory");
        return -1;
    }
    int status = 0;
    char *saveptr = NULL;
    for (char *token = strtok_r(copy, " \t\n,", &saveptr); token; token = strtok_r(NULL, " \t\n,", &saveptr)) {
        char *eq = strchr(token, '=');
        if (!eq) {
            set_error(error, capacity, "option '%s' is not key=value", token);
            status = -1;
            break;
        }
        *eq = '\0';
        const char *key = token, *value = eq + 1;
        int bad = 0;
        if (strcmp(key, "epsilon") == 0) bad = parse_double(value, &s->epsilon);
        else if (strcmp(key, "sigma") == 0) bad = parse_double(value, &s->sigma);
        else if (strcmp(key, "cutoff") == 0) bad = parse_double(value, &s->cutoff);
        else if (strcmp(key, "shift") == 0) {
            long long v = 0;
            bad = parse_integer(value, &v) || (v != 0 && v != 1);
            s->shift = (int)v;
        } else if (strcmp(key, "fail_at_step") == 0) bad = parse_integer(value, &s->fail_at_step);
        else if (strcmp(key, "crash_at_step") == 0) bad = parse_integer(value, &s->crash_at_step);
        else {
            set_error(error, capacity,
                      "unknown option '%s' (known: epsilon, sigma, cutoff, shift, fail_at_step, crash_at_step)", key);
            status = -1;
            break;
        }
        if (bad) {
            set_error(error, capacity, "option %s: '%s' is not a valid value", key, value);
            status = -1;
            break;
        }
    }
    free(copy);
    return status;
}

static int check_box(const lj_state *s, const double box[3], char *error, size_t capacity) {
    double smallest = fmin(box[0], fmin(box[1], box[2]));
    if (!(2.0 * s->cutoff <= smallest)) {
        set_error(error, capacity, "cutoff %g nm is more than half the smallest box edge %g nm (the minimum image needs 2 cutoff <= edge)",
                  s->cutoff, smallest);
        return -1;
    }
    return 0;
}

QUIVER_PLUGIN_EXPORT uint32_t quiver_plugin_abi_version(void) { return QUIVER_PLUGIN_ABI_VERSION; }

QUIVER_PLUGIN_EXPORT const char *quiver_plugin_name(void) { return "lj-plugin"; }

QUIVER_PLUGIN_EXPORT int32_t quiver_plugin_create(const quiver_plugin_system *system, const char *options, void **state,
                                                  char *error, size_t error_capacity) {
    lj_state *s = calloc(1, sizeof(lj_state));
    if (!s) {
        set_error(error, error_capacity, "out of memory");
        return 1;
    }
    s->epsilon = 1.0;
    s->sigma = 1.0;
    s->cutoff = 2.5;
    s->shift = 0;
    s->fail_at_step = -1;
    s->crash_at_step = -1;
    if (parse_options(options, s, error, error_capacity) != 0) {
        free(s);
        return 1;
    }
    if (!(s->sigma > 0) || !(s->cutoff > 0) || !(s->epsilon >= 0)) {
        set_error(error, error_capacity, "need sigma > 0, cutoff > 0 and epsilon >= 0 (got sigma %g, cutoff %g, epsilon %g)",
                  s->sigma, s->cutoff, s->epsilon);
        free(s);
        return 1;
    }
    if (check_box(s, system->box, error, error_capacity) != 0) {
        free(s);
        return 1;
    }
    s->n = system->atom_count;
    s->fx = malloc((size_t)s->n * sizeof(double));
    s->fy = malloc((size_t)s->n * sizeof(double));
    s->fz = malloc((size_t)s->n * sizeof(double));
    if (!s->fx || !s->fy || !s->fz) {
        free(s->fx); free(s->fy); free(s->fz); free(s);
        set_error(error, error_capacity, "out of memory for %lld atoms", (long long)system->atom_count);
        return 1;
    }
    *state = s;
    return 0;
}

QUIVER_PLUGIN_EXPORT int32_t quiver_plugin_forces(void *state, quiver_plugin_eval *io, char *error, size_t error_capacity) {
    lj_state *s = state;
    if (io->step == s->crash_at_step) {
        volatile int *nothing = NULL;
        *nothing = 1; /* as asked: crash here */
    }
    if (io->step == s->fail_at_step) {
        set_error(error, error_capacity, "failing at step %lld as asked (fail_at_step)", (long long)io->step);
        return 1;
    }
    if (io->atom_count != s->n) {
        set_error(error, error_capacity, "%lld atoms, created for %lld", (long long)io->atom_count, (long long)s->n);
        return 1;
    }
    if (check_box(s, io->box, error, error_capacity) != 0) return 1;

    const int64_t n = s->n;
    const double L[3] = { io->box[0], io->box[1], io->box[2] };
    const double rc2 = s->cutoff * s->cutoff, sig2 = s->sigma * s->sigma, eps = s->epsilon;
    double shift = 0.0;
    if (s->shift) {
        double sc6 = pow(s->sigma / s->cutoff, 6.0);
        shift = 4.0 * eps * (sc6 * sc6 - sc6);
    }
    for (int64_t i = 0; i < n; i++) s->fx[i] = s->fy[i] = s->fz[i] = 0.0;
    double energy = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double xi = io->x[i], yi = io->y[i], zi = io->z[i];
        for (int64_t j = i + 1; j < n; j++) {
            double dx = xi - io->x[j], dy = yi - io->y[j], dz = zi - io->z[j];
            dx -= L[0] * nearbyint(dx / L[0]);
            dy -= L[1] * nearbyint(dy / L[1]);
            dz -= L[2] * nearbyint(dz / L[2]);
            const double r2 = dx * dx + dy * dy + dz * dz;
            if (r2 >= rc2) continue;
            const double sr2 = sig2 / r2, sr6 = sr2 * sr2 * sr2;
            energy += 4.0 * eps * (sr6 * sr6 - sr6) - shift;
            const double f_over_r = 24.0 * eps * (2.0 * sr6 * sr6 - sr6) / r2;
            s->fx[i] += f_over_r * dx; s->fy[i] += f_over_r * dy; s->fz[i] += f_over_r * dz;
            s->fx[j] -= f_over_r * dx; s->fy[j] -= f_over_r * dy; s->fz[j] -= f_over_r * dz;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        io->fx[i] += (float)s->fx[i];
        io->fy[i] += (float)s->fy[i];
        io->fz[i] += (float)s->fz[i];
    }
    if (io->compute_energy) io->energy = energy;
    return 0;
}

QUIVER_PLUGIN_EXPORT void quiver_plugin_destroy(void *state) {
    lj_state *s = state;
    if (!s) return;
    free(s->fx);
    free(s->fy);
    free(s->fz);
    free(s);
}
