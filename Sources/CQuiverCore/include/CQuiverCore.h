/* Umbrella header of the Quiver C core. Every exported symbol is prefixed `qv_`. */
#ifndef CQUIVERCORE_H
#define CQUIVERCORE_H
#include "qv_common.h"
#include "qv_cpu.h"
#include "qv_pool.h"
#include "qv_integrate.h"
#include "qv_lj.h"
#endif
