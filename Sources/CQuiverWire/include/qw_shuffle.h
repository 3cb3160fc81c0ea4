#ifndef QW_SHUFFLE_H
#define QW_SHUFFLE_H
#include <stddef.h>
#include <stdint.h>

/* Byte shuffle of 4-byte words (float32 or uint32), the first stage of the lossless codec.
 * The words are `nplanes` arrays of `n` words each, taken in order (plane 0, then plane 1, ...);
 * with W = nplanes * n, output byte b * W + j is byte b (0 = least significant) of word j.
 * `dst` holds 4 W bytes. No allocation. */
void qw_shuffle4(const uint32_t *const *planes, size_t nplanes, size_t n, uint8_t *restrict dst);

/* The inverse: fills the `nplanes` arrays of `n` words from 4 W shuffled bytes. */
void qw_unshuffle4(const uint8_t *restrict src, size_t nplanes, size_t n, uint32_t *const *planes);
#endif
