#ifndef QW_CRC32C_H
#define QW_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* CRC-32C of `length` bytes continuing from `crc` (start with 0): qw_crc32c_update(0, "123456789", 9)
 * is 0xE3069283. Uses the SSE4.2 instruction when the CPU has it. */
uint32_t qw_crc32c_update(uint32_t crc, const void *data, size_t length);

/* The same, always with the table-driven reference loop. */
uint32_t qw_crc32c_update_portable(uint32_t crc, const void *data, size_t length);

/* 1 when qw_crc32c_update uses a CPU instruction. */
int qw_crc32c_hardware(void);
#endif
