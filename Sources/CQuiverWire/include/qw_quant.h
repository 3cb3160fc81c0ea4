#ifndef QW_QUANT_H
#define QW_QUANT_H
/* The quantized codec (docs/protocol.md, "Quantized"): values rounded to integers of `precision`,
 * predicted per block of QW_QUANT_BLOCK values from the value `p` places before (p = 0..7, chosen
 * per block), the zigzagged residuals Rice-coded with a per-block parameter k in one LSB-first bit
 * stream. Each plane (x, y, z) is coded on its own; a stream is self-contained. */
#include <stddef.h>
#include <stdint.h>

#define QW_QUANT_BLOCK 128
/* Residuals whose Rice quotient reaches this many zero bits are stored as 32 raw bits after them. */
#define QW_QUANT_ESCAPE 24
/* Largest |quantized value|: 2^30 - 1, so every residual fits in 32 bits after zigzag. */
#define QW_QUANT_MAX_INDEX 1073741823
/* Precision must lie in [QW_QUANT_MIN_PRECISION, QW_QUANT_MAX_PRECISION]. */
#define QW_QUANT_MIN_PRECISION 1e-12
#define QW_QUANT_MAX_PRECISION 1e6

enum {
    QW_OK = 0,
    QW_ERR_RANGE = 1,     /* encode: a value is NaN, infinite, or |v / precision| > QW_QUANT_MAX_INDEX */
    QW_ERR_ARGUMENT = 2,  /* precision out of range, or an output buffer of the wrong size */
    QW_ERR_TRUNCATED = 3, /* decode: the stream ends before the last value */
    QW_ERR_TRAILING = 4,  /* decode: bytes (or non-zero padding bits) left after the last value */
    QW_ERR_CORRUPT = 5    /* decode: a value decodes outside the quantized range */
};

/* Blocks per plane of n values. */
size_t qw_quant_blocks(size_t n);

/* The smallest possible stream for nplanes planes of n values (1 bit per value, 8 per block header).
 * A decoder rejects shorter input before allocating anything. */
size_t qw_quant_min_bytes(size_t nplanes, size_t n);

/* The most bytes qw_quant_encode may need for nplanes planes of n values (56 bits per value, 8 per
 * block header, 8 bytes of slack). */
size_t qw_quant_bound(size_t nplanes, size_t n);

/* Encodes the `nplanes` arrays of `n` floats into `out` (capacity at least qw_quant_bound) and
 * stores the stream's size in *size. Returns QW_OK, QW_ERR_RANGE (a value is NaN, infinite or too
 * large for the precision) or QW_ERR_ARGUMENT (precision out of range, capacity too small).
 * No allocation. */
int qw_quant_encode(const float *const *planes, size_t nplanes, size_t n, double precision,
                    uint8_t *out, size_t capacity, size_t *size);

/* The encoder this CPU runs: "avx512", "avx2" (both x86-64, picked at run time) or "portable".
 * Every variant writes the same bytes. */
const char *qw_quant_encoder_variant(void);

/* 1 when this CPU can run the named encoder variant, else 0. */
int qw_quant_encoder_supported(const char *variant);

/* qw_quant_encode with a chosen encoder ("portable", "avx2", "avx512"; NULL: the one this CPU
 * runs). Returns QW_ERR_ARGUMENT for a variant this CPU cannot run. For tests and benchmarks. */
int qw_quant_encode_variant(const char *variant, const float *const *planes, size_t nplanes, size_t n, double precision,
                            uint8_t *out, size_t capacity, size_t *size);

/* Decodes `in_size` bytes into `nplanes` arrays of `n` floats (value = quantized integer * precision,
 * rounded to float). Reads only inside [in, in + in_size); every malformed stream returns an error
 * (QW_ERR_TRUNCATED, QW_ERR_TRAILING, QW_ERR_CORRUPT, QW_ERR_ARGUMENT). The arrays' contents are
 * unspecified after an error. */
int qw_quant_read(const uint8_t *in, size_t in_size, size_t nplanes, size_t n, double precision,
                  float *const *planes);
#endif
