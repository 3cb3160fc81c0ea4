/* The plugin ABI is a header (include/quiver_plugin.h); this file pins its struct layouts, which are
 * part of the ABI, so that an accidental change fails the build. It defines no symbols (a plugin's
 * functions must come from the plugin, never from the host). */
#include <stddef.h>
#include "quiver_plugin.h"

#if UINTPTR_MAX == 0xffffffffffffffffu
_Static_assert(sizeof(quiver_plugin_system) == 72, "quiver_plugin_system layout changed");
_Static_assert(offsetof(quiver_plugin_system, atom_count) == 8, "quiver_plugin_system layout changed");
_Static_assert(offsetof(quiver_plugin_system, masses) == 16, "quiver_plugin_system layout changed");
_Static_assert(offsetof(quiver_plugin_system, types) == 24, "quiver_plugin_system layout changed");
_Static_assert(offsetof(quiver_plugin_system, type_count) == 32, "quiver_plugin_system layout changed");
_Static_assert(offsetof(quiver_plugin_system, threads) == 36, "quiver_plugin_system layout changed");
_Static_assert(offsetof(quiver_plugin_system, type_names) == 40, "quiver_plugin_system layout changed");
_Static_assert(offsetof(quiver_plugin_system, box) == 48, "quiver_plugin_system layout changed");

_Static_assert(sizeof(quiver_plugin_eval) == 104, "quiver_plugin_eval layout changed");
_Static_assert(offsetof(quiver_plugin_eval, compute_energy) == 4, "quiver_plugin_eval layout changed");
_Static_assert(offsetof(quiver_plugin_eval, atom_count) == 8, "quiver_plugin_eval layout changed");
_Static_assert(offsetof(quiver_plugin_eval, step) == 16, "quiver_plugin_eval layout changed");
_Static_assert(offsetof(quiver_plugin_eval, x) == 24, "quiver_plugin_eval layout changed");
_Static_assert(offsetof(quiver_plugin_eval, fx) == 48, "quiver_plugin_eval layout changed");
_Static_assert(offsetof(quiver_plugin_eval, box) == 72, "quiver_plugin_eval layout changed");
_Static_assert(offsetof(quiver_plugin_eval, energy) == 96, "quiver_plugin_eval layout changed");
#endif
