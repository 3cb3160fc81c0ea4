#ifndef CQUIVERWIRE_H
#define CQUIVERWIRE_H
/* C helpers of the QuiverWire module, prefix qw_: the wire layouts, CRC-32C, byte shuffle and the
 * quantized codec. No allocation, no I/O. */
#include "qw_layout.h"
#include "qw_crc32c.h"
#include "qw_shuffle.h"
#include "qw_quant.h"
#endif
