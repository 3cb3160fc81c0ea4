/* The quantized codec: quantize, predict, zigzag, Rice-code (qw_quant.h, docs/protocol.md).
 *
 * Why Rice codes and not byte shuffle + LZ4: after prediction the residuals of a liquid are close to
 * Gaussian with a spread of a few hundred quanta. LZ4 finds no repeats in their low bytes, so a
 * byte-oriented layout pays whole bytes for them (2.7-2.9x vs float32 at 0.001 nm); a Rice code
 * with a per-block parameter stays within about half a bit of the residuals' entropy (3.2x). */
#include "qw_quant.h"
#include <math.h>
#include <string.h>

#define BLOCK QW_QUANT_BLOCK
#define ESCAPE QW_QUANT_ESCAPE
#define HISTORY 8          /* predictors look back at most 7 values */
#define CANDIDATES 5       /* predictors the encoder tries: 0 (none) and 1..4 */

size_t qw_quant_blocks(size_t n) { return (n + BLOCK - 1) / BLOCK; }

size_t qw_quant_min_bytes(size_t nplanes, size_t n) {
    return (nplanes * (n + 8 * qw_quant_blocks(n)) + 7) / 8;
}

static int precision_ok(double precision) {
    return precision >= QW_QUANT_MIN_PRECISION && precision <= QW_QUANT_MAX_PRECISION;
}

static inline uint32_t zigzag(int32_t d) { return ((uint32_t)d << 1) ^ (uint32_t)(d >> 31); }

/* Quantizes values [start, start + len) of a plane into q[HISTORY + j]. Returns 0 when a value is
 * NaN, infinite or out of range. */
static int quantize(const float *restrict v, size_t len, double inv, int32_t *restrict q) {
    const double limit = (double)QW_QUANT_MAX_INDEX;
    /* Adding and subtracting 1.5 * 2^52 rounds to the nearest integer, ties to even (as lrint in the
     * default rounding mode), exactly for |s| < 2^51, and vectorises where lrint does not. */
    const double magic = 6755399441055744.0;
    int ok = 1;
    for (size_t j = 0; j < len; j++) {
        double s = (double)v[j] * inv;
        int in_range = fabs(s) <= limit; /* false for NaN */
        ok &= in_range;
        double r = (s + magic) - magic;
        q[HISTORY + j] = in_range ? (int32_t)r : 0;
    }
    return ok;
}

/* Bits of the Rice code of z[0 ..< len] with parameter k. */
static uint64_t rice_bits(const uint32_t *restrict z, size_t len, int k) {
    uint64_t bits = 0;
    for (size_t j = 0; j < len; j++) {
        uint32_t u = z[j] >> k;
        bits += u < ESCAPE ? u + 1 + (uint32_t)k : ESCAPE + 32;
    }
    return bits;
}

/* Chooses the predictor with the smallest sum of zigzagged residuals among 0..CANDIDATES-1, leaves
 * its residuals in z, and picks the Rice parameter by exact cost, searched from log2(mean).
 * Returns the block's header byte. */
static uint8_t plan_block(const int32_t *restrict q, size_t len, uint32_t *restrict z) {
    uint64_t sum[CANDIDATES] = {0};
    for (size_t j = 0; j < len; j++) {
        int32_t v = q[HISTORY + j];
        sum[0] += zigzag(v);
        sum[1] += zigzag(v - q[HISTORY + j - 1]);
        sum[2] += zigzag(v - q[HISTORY + j - 2]);
        sum[3] += zigzag(v - q[HISTORY + j - 3]);
        sum[4] += zigzag(v - q[HISTORY + j - 4]);
    }
    int p = 0;
    for (int c = 1; c < CANDIDATES; c++) {
        if (sum[c] < sum[p]) p = c;
    }
    if (p == 0) {
        for (size_t j = 0; j < len; j++) z[j] = zigzag(q[HISTORY + j]);
    } else {
        for (size_t j = 0; j < len; j++) z[j] = zigzag(q[HISTORY + j] - q[HISTORY + j - (size_t)p]);
    }
    uint64_t mean = sum[p] / len;
    int k = mean > 0 ? 63 - __builtin_clzll(mean) : 0;
    if (k > 31) k = 31;
    uint64_t cost = rice_bits(z, len, k);
    for (int step = -1; step <= 1; step += 2) {
        for (;;) {
            int next = k + step;
            if (next < 0 || next > 31) break;
            uint64_t c = rice_bits(z, len, next);
            if (c >= cost) break;
            cost = c;
            k = next;
        }
    }
    return (uint8_t)(p | k << 3);
}

size_t qw_quant_bound(size_t nplanes, size_t n) {
    /* At most ESCAPE + 32 = 56 bits per value and 8 per block header, plus the writer's 8-byte slack. */
    return nplanes * (7 * n + qw_quant_blocks(n)) + 8;
}

/* LSB-first bit writer: bit i of the stream is bit i % 8 of byte i / 8. Each put stores 8 bytes and
 * advances by the whole bytes filled, so the buffer needs 8 bytes of slack past the stream. */
typedef struct {
    uint8_t *p;
    uint64_t acc; /* pending bits, fewer than 8 between puts */
    int n;
} bit_writer;

static inline void put(bit_writer *w, uint64_t value, int len) { /* len <= 56, value < 2^len */
    w->acc |= value << w->n;
    w->n += len;
    memcpy(w->p, &w->acc, 8);
    w->p += w->n >> 3;
    w->acc >>= w->n & ~7; /* n <= 63, so the shift is at most 56 */
    w->n &= 7;
}

int qw_quant_encode(const float *const *planes, size_t nplanes, size_t n, double precision,
                    uint8_t *out, size_t capacity, size_t *size) {
    if (!precision_ok(precision)) return QW_ERR_ARGUMENT;
    *size = 0;
    if (n == 0 || nplanes == 0) return QW_OK;
    if (capacity < qw_quant_bound(nplanes, n)) return QW_ERR_ARGUMENT;
    double inv = 1.0 / precision;
    bit_writer w = {out, 0, 0};
    int32_t q[HISTORY + BLOCK];
    uint32_t z[BLOCK];
    for (size_t pl = 0; pl < nplanes; pl++) {
        memset(q, 0, sizeof(int32_t) * HISTORY); /* the values before a plane predict as 0 */
        for (size_t start = 0; start < n; start += BLOCK) {
            size_t len = n - start < BLOCK ? n - start : BLOCK;
            if (start > 0) memcpy(q, q + BLOCK, sizeof(int32_t) * HISTORY); /* the previous block's tail */
            if (!quantize(planes[pl] + start, len, inv, q)) return QW_ERR_RANGE;
            uint8_t header = plan_block(q, len, z);
            int k = header >> 3;
            put(&w, header, 8);
            uint32_t mask = k ? (1u << k) - 1 : 0;
            for (size_t j = 0; j < len; j++) {
                uint32_t u = z[j] >> k;
                if (u < ESCAPE) {
                    /* u zero bits, a one, then the k low bits of z */
                    put(&w, ((uint64_t)(z[j] & mask) << 1 | 1) << u, (int)u + 1 + k);
                } else {
                    put(&w, (uint64_t)z[j] << ESCAPE, ESCAPE + 32);
                }
            }
        }
    }
    if (w.n > 0) w.p++; /* the last partial byte, already stored with zero padding */
    *size = (size_t)(w.p - out);
    return QW_OK;
}

/* LSB-first bit reader. Invariant: bits [0, n) of acc are the next n bits of the stream; bits above
 * n are either later stream bits or zero, and are zero once every byte has been loaded. */
typedef struct {
    const uint8_t *p, *end;
    uint64_t acc;
    int n;
} bit_reader;

static inline void refill(bit_reader *r) {
    if (r->end - r->p >= 8) {
        uint64_t v;
        memcpy(&v, r->p, 8);
        r->acc |= v << r->n;
        int bytes = (63 - r->n) >> 3;
        r->p += bytes;
        r->n += bytes * 8;
    } else {
        while (r->n <= 56 && r->p < r->end) {
            r->acc |= (uint64_t)*r->p++ << r->n;
            r->n += 8;
        }
    }
}

static inline void consume(bit_reader *r, int bits) {
    r->acc >>= bits;
    r->n -= bits;
}

int qw_quant_read(const uint8_t *in, size_t in_size, size_t nplanes, size_t n, double precision,
                  float *const *planes) {
    if (!precision_ok(precision)) return QW_ERR_ARGUMENT;
    if (n == 0 || nplanes == 0) return in_size == 0 ? QW_OK : QW_ERR_TRAILING;
    bit_reader r = {in, in + in_size, 0, 0};
    const int64_t limit = QW_QUANT_MAX_INDEX;
    int32_t q[HISTORY + BLOCK];
    for (size_t pl = 0; pl < nplanes; pl++) {
        float *out = planes[pl];
        memset(q, 0, sizeof(int32_t) * HISTORY); /* the values before a plane predict as 0 */
        for (size_t start = 0; start < n; start += BLOCK) {
            size_t len = n - start < BLOCK ? n - start : BLOCK;
            if (start > 0) memcpy(q, q + BLOCK, sizeof(int32_t) * HISTORY);
            refill(&r);
            if (r.n < 8) return QW_ERR_TRUNCATED;
            int p = (int)(r.acc & 7), k = (int)(r.acc >> 3 & 31);
            consume(&r, 8);
            uint64_t low_mask = (1ull << k) - 1;
            int out_of_range = 0;
            for (size_t j = 0; j < len; j++) {
                refill(&r);
                int u = r.acc ? __builtin_ctzll(r.acc) : 64;
                uint64_t z;
                if (u < ESCAPE) {
                    int bits = u + 1 + k;
                    if (bits > r.n) return QW_ERR_TRUNCATED;
                    z = (uint64_t)u << k | ((r.acc >> (u + 1)) & low_mask);
                    consume(&r, bits);
                } else {
                    if (r.n < ESCAPE + 32) return QW_ERR_TRUNCATED;
                    z = (r.acc >> ESCAPE) & 0xffffffffu;
                    consume(&r, ESCAPE + 32);
                }
                /* z above 32 bits (a long code with a large k) decodes out of range below */
                int64_t d = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
                int64_t value = (p ? (int64_t)q[HISTORY + j - (size_t)p] : 0) + d;
                out_of_range |= value > limit || value < -limit;
                q[HISTORY + j] = (int32_t)value;
            }
            if (out_of_range) return QW_ERR_CORRUPT;
            for (size_t j = 0; j < len; j++) out[start + j] = (float)((double)q[HISTORY + j] * precision);
        }
    }
    if (r.p != r.end) return QW_ERR_TRAILING;
    if (r.n >= 8) return QW_ERR_TRAILING;
    if (r.n > 0 && (r.acc & ((1ull << r.n) - 1)) != 0) return QW_ERR_TRAILING;
    return QW_OK;
}
