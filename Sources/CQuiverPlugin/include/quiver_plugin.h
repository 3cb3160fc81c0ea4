/* quiver_plugin.h - the C ABI of Quiver force-field plugins.
 *
 * A plugin is a shared library that adds forces (and an energy) to a Quiver simulation every step,
 * like a built-in force field. Quiver loads it with dlopen(path, RTLD_NOW | RTLD_LOCAL), looks up
 * the five functions below by name, checks the ABI version, creates one plugin state per
 * simulation, calls quiver_plugin_forces once per force evaluation, and destroys the state when
 * the simulation is gone. docs/plugins.md has a walk-through and the build command:
 *
 *     cc -shared -fPIC -O2 -I<quiver>/Sources/CQuiverPlugin/include -o my_plugin.so my_plugin.c
 *
 * Units (Quiver's, OpenMM's): length nm, energy kJ/mol, force kJ/mol/nm, mass amu (g/mol),
 * time ps. The box is periodic and orthorhombic, [0, box[0]) x [0, box[1]) x [0, box[2]), but
 * positions may lie somewhat outside it between the engine's neighbour-list rebuilds: apply the
 * minimum image to every distance.
 *
 * Calling conventions:
 * - Quiver calls a plugin from one thread at a time (the thread that steps the simulation); a
 *   plugin may start threads of its own inside a call, and must have joined or parked them before
 *   it returns.
 * - Every pointer Quiver passes is valid only during the call that receives it (copy what you
 *   keep), except `state`, which is the plugin's own.
 * - Errors: a function that can fail returns 0 on success and any other value on failure, after
 *   writing a NUL-terminated, human-readable message of at most error_capacity bytes (terminator
 *   included) into `error`. Quiver shows the message to the user. error_capacity is at least 256.
 * - A plugin must not call exit(), abort() on bad input, or write to stdout (the engine's progress
 *   channel); report problems through the error message instead.
 *
 * Versioning and forward compatibility:
 * - QUIVER_PLUGIN_ABI_VERSION changes only when the ABI changes incompatibly. Quiver refuses a
 *   plugin whose quiver_plugin_abi_version() differs from its own, naming both numbers.
 * - Compatible additions append fields to the END of a struct without changing the version. Every
 *   struct starts with `struct_size`, the sizeof the struct as the HOST compiled it: before reading
 *   a field that a later header added, a plugin checks
 *       s->struct_size >= offsetof(type, field) + sizeof(s->field)
 *   A plugin built against an older header simply never reads the newer fields.
 *
 * Symbols are looked up by these exact names (C linkage; in C++, this header declares them
 * extern "C"). Build with -fvisibility=hidden if you like: QUIVER_PLUGIN_EXPORT marks the five
 * functions visible.
 */
#ifndef QUIVER_PLUGIN_H
#define QUIVER_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. */
#define QUIVER_PLUGIN_ABI_VERSION 1

#if defined(_WIN32)
#define QUIVER_PLUGIN_EXPORT __declspec(dllexport)
#else
#define QUIVER_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* What the plugin learns about the simulation once, in quiver_plugin_create. 72 bytes on LP64. */
typedef struct quiver_plugin_system {
    uint32_t struct_size;           /* sizeof(quiver_plugin_system) as the host compiled it */
    uint32_t abi_version;           /* the host's QUIVER_PLUGIN_ABI_VERSION */
    int64_t atom_count;             /* N >= 1; atoms are indexed 0 ..< N in every array */
    const double *masses;           /* N masses, amu, > 0 */
    const int32_t *types;           /* N type indices in [0, type_count) */
    int32_t type_count;             /* >= 1 */
    int32_t threads;                /* threads the host runs the simulation on (a hint) */
    const char *const *type_names;  /* type_count NUL-terminated UTF-8 names (elements or LJ types) */
    double box[3];                  /* box edges x, y, z, nm, > 0 */
} quiver_plugin_system;

/* One force evaluation: inputs, the force arrays to add into, and the energy out. 104 bytes on LP64. */
typedef struct quiver_plugin_eval {
    uint32_t struct_size;           /* sizeof(quiver_plugin_eval) as the host compiled it */
    int32_t compute_energy;         /* non-zero: write the potential energy to `energy`; zero: the
                                       host ignores `energy` (skip the work if that is cheaper) */
    int64_t atom_count;             /* N, the same as at create */
    int64_t step;                   /* the step whose forces these are (0 for the initial forces);
                                       the same step may be evaluated more than once */
    const float *x, *y, *z;         /* N positions each, nm (structure of arrays, float32) */
    float *fx, *fy, *fz;            /* N forces each, kJ/mol/nm: ADD your forces, never overwrite
                                       (other force fields' forces are already there) */
    double box[3];                  /* the box edges at this evaluation, nm */
    double energy;                  /* out: this plugin's potential energy, kJ/mol (host sets 0 first) */
} quiver_plugin_eval;

/* The functions every plugin exports, in the order Quiver uses them. */

/* Returns QUIVER_PLUGIN_ABI_VERSION as the plugin was compiled. Called first, before anything else. */
QUIVER_PLUGIN_EXPORT uint32_t quiver_plugin_abi_version(void);

/* A short static name for the plugin (NUL-terminated UTF-8, e.g. "lj-plugin"), used in energy
 * reports and error messages. Must stay valid while the library is loaded. */
QUIVER_PLUGIN_EXPORT const char *quiver_plugin_name(void);

/* Creates the plugin's state for one simulation. `options` is the user's option string (never NULL,
 * possibly empty; its syntax is the plugin's to define). On success stores a pointer (or NULL if
 * the plugin needs none) in *state and returns 0; on failure writes a message into `error` and
 * returns non-zero, and *state is ignored. */
QUIVER_PLUGIN_EXPORT int32_t quiver_plugin_create(const quiver_plugin_system *system, const char *options, void **state,
                                                  char *error, size_t error_capacity);

/* Adds forces for the positions in `io` into io->fx/fy/fz and, when io->compute_energy is
 * non-zero, stores the energy in io->energy. Returns 0, or non-zero with a message in `error`
 * (the simulation stops with that message). */
QUIVER_PLUGIN_EXPORT int32_t quiver_plugin_forces(void *state, quiver_plugin_eval *io, char *error, size_t error_capacity);

/* Frees everything quiver_plugin_create allocated for `state` (which may be NULL). Called exactly
 * once per successful create. */
QUIVER_PLUGIN_EXPORT void quiver_plugin_destroy(void *state);

/* The same functions as pointer types, for hosts that look them up with dlsym. */
typedef uint32_t (*quiver_plugin_abi_version_fn)(void);
typedef const char *(*quiver_plugin_name_fn)(void);
typedef int32_t (*quiver_plugin_create_fn)(const quiver_plugin_system *system, const char *options, void **state,
                                           char *error, size_t error_capacity);
typedef int32_t (*quiver_plugin_forces_fn)(void *state, quiver_plugin_eval *io, char *error, size_t error_capacity);
typedef void (*quiver_plugin_destroy_fn)(void *state);

#ifdef __cplusplus
}
#endif
#endif /* QUIVER_PLUGIN_H */
