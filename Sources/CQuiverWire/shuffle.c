/* Byte shuffle: the bytes of similar floats (sign, exponent, high mantissa) line up in long runs
 * that LZ4 can match. Plain loops; the compiler vectorises them. */
#include "qw_shuffle.h"

void qw_shuffle4(const uint32_t *const *planes, size_t nplanes, size_t n, uint8_t *restrict dst) {
    size_t total = nplanes * n;
    for (size_t p = 0; p < nplanes; p++) {
        const uint32_t *restrict src = planes[p];
        uint8_t *restrict b0 = dst + p * n;
        uint8_t *restrict b1 = b0 + total;
        uint8_t *restrict b2 = b1 + total;
        uint8_t *restrict b3 = b2 + total;
        for (size_t i = 0; i < n; i++) {
            uint32_t w = src[i];
            b0[i] = (uint8_t)w;
            b1[i] = (uint8_t)(w >> 8);
            b2[i] = (uint8_t)(w >> 16);
            b3[i] = (uint8_t)(w >> 24);
        }
    }
}

void qw_unshuffle4(const uint8_t *restrict src, size_t nplanes, size_t n, uint32_t *const *planes) {
    size_t total = nplanes * n;
    for (size_t p = 0; p < nplanes; p++) {
        uint32_t *restrict out = planes[p];
        const uint8_t *restrict b0 = src + p * n;
        const uint8_t *restrict b1 = b0 + total;
        const uint8_t *restrict b2 = b1 + total;
        const uint8_t *restrict b3 = b2 + total;
        for (size_t i = 0; i < n; i++) {
            out[i] = (uint32_t)b0[i] | (uint32_t)b1[i] << 8 | (uint32_t)b2[i] << 16 | (uint32_t)b3[i] << 24;
        }
    }
}
