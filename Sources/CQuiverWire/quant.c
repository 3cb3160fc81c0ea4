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

/* Quantizes block `b` of a plane into q[HISTORY + j] (j < len), with the HISTORY values before the
 * block in q[0 ..< HISTORY] (0 before the start of the plane). Returns 0 on a value out of range. */
static int quantize_block(const float *v, size_t n, size_t b, double inv, int32_t *q, size_t *len_out) {
    size_t start = b * BLOCK;
    size_t len = n - start < BLOCK ? n - start : BLOCK;
    const double limit = (double)QW_QUANT_MAX_INDEX;
    int ok = 1;
    for (size_t m = 0; m < HISTORY; m++) {
        size_t back = HISTORY - m;
        if (start >= back) {
            double s = (double)v[start - back] * inv;
            ok &= fabs(s) <= limit;
            q[m] = ok ? (int32_t)lrint(s) : 0;
        } else {
            q[m] = 0;
        }
    }
    for (size_t j = 0; j < len; j++) {
        double s = (double)v[start + j] * inv;
        int in_range = fabs(s) <= limit; /* false for NaN */
        ok &= in_range;
        q[HISTORY + j] = in_range ? (int32_t)lrint(s) : 0;
    }
    *len_out = len;
    return ok;
}

/* Residuals of predictor p (0: none; else the value p places before). */
static inline void residuals(const int32_t *q, size_t len, int p, uint32_t *z) {
    if (p == 0) {
        for (size_t j = 0; j < len; j++) z[j] = zigzag(q[HISTORY + j]);
    } else {
        for (size_t j = 0; j < len; j++) z[j] = zigzag(q[HISTORY + j] - q[HISTORY + j - p]);
    }
}

/* Bits of the Rice code of z[0 ..< len] with parameter k. */
static uint64_t rice_bits(const uint32_t *z, size_t len, int k) {
    uint64_t bits = 0;
    for (size_t j = 0; j < len; j++) {
        uint32_t u = z[j] >> k;
        bits += u < ESCAPE ? u + 1 + (uint32_t)k : ESCAPE + 32;
    }
    return bits;
}

/* Chooses the predictor (smallest sum of zigzagged residuals) and the Rice parameter (exact cost,
 * searched from the estimate log2(mean)). Returns the header byte and adds the block's bits. */
static uint8_t plan_block(const int32_t *q, size_t len, uint64_t *bits) {
    uint32_t z[BLOCK];
    int best_p = 0;
    uint64_t best_sum = UINT64_MAX;
    for (int p = 0; p < CANDIDATES; p++) {
        residuals(q, len, p, z);
        uint64_t sum = 0;
        for (size_t j = 0; j < len; j++) sum += z[j];
        if (sum < best_sum) { best_sum = sum; best_p = p; }
    }
    residuals(q, len, best_p, z);
    uint64_t mean = best_sum / len;
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
    *bits += 8 + cost;
    return (uint8_t)(best_p | k << 3);
}

int qw_quant_plan(const float *const *planes, size_t nplanes, size_t n, double precision,
                  uint8_t *headers, size_t *size) {
    if (!precision_ok(precision)) return QW_ERR_ARGUMENT;
    double inv = 1.0 / precision;
    size_t blocks = qw_quant_blocks(n);
    uint64_t bits = 0;
    int32_t q[HISTORY + BLOCK];
    for (size_t pl = 0; pl < nplanes; pl++) {
        for (size_t b = 0; b < blocks; b++) {
            size_t len;
            if (!quantize_block(planes[pl], n, b, inv, q, &len)) return QW_ERR_RANGE;
            headers[pl * blocks + b] = plan_block(q, len, &bits);
        }
    }
    *size = (size_t)((bits + 7) / 8);
    return QW_OK;
}

/* LSB-first bit writer: bit i of the stream is bit i % 8 of byte i / 8. */
typedef struct {
    uint8_t *p, *end;
    uint64_t acc;
    int n;
    int overflow;
} bit_writer;

static inline void put(bit_writer *w, uint64_t value, int len) { /* len <= 32, value < 2^len */
    w->acc |= value << w->n;
    w->n += len;
    if (w->n >= 32) {
        if (w->end - w->p >= 4) {
            uint32_t word = (uint32_t)w->acc;
            memcpy(w->p, &word, 4);
            w->p += 4;
        } else {
            w->overflow = 1;
        }
        w->acc >>= 32;
        w->n -= 32;
    }
}

int qw_quant_write(const float *const *planes, size_t nplanes, size_t n, double precision,
                   const uint8_t *headers, uint8_t *out, size_t out_size) {
    if (!precision_ok(precision)) return QW_ERR_ARGUMENT;
    if (n == 0 || nplanes == 0) return out_size == 0 ? QW_OK : QW_ERR_ARGUMENT;
    double inv = 1.0 / precision;
    size_t blocks = qw_quant_blocks(n);
    bit_writer w = {out, out + out_size, 0, 0, 0};
    int32_t q[HISTORY + BLOCK];
    uint32_t z[BLOCK];
    for (size_t pl = 0; pl < nplanes; pl++) {
        for (size_t b = 0; b < blocks; b++) {
            size_t len;
            if (!quantize_block(planes[pl], n, b, inv, q, &len)) return QW_ERR_RANGE;
            uint8_t header = headers[pl * blocks + b];
            int p = header & 7, k = header >> 3;
            put(&w, header, 8);
            residuals(q, len, p, z);
            uint32_t mask = k ? (1u << k) - 1 : 0;
            for (size_t j = 0; j < len; j++) {
                uint32_t u = z[j] >> k;
                if (u < ESCAPE) {
                    put(&w, 1ull << u, (int)u + 1);
                    if (k) put(&w, z[j] & mask, k);
                } else {
                    put(&w, 0, ESCAPE);
                    put(&w, z[j], 32);
                }
            }
        }
    }
    while (w.n > 0) {
        if (w.p == w.end) return QW_ERR_ARGUMENT;
        *w.p++ = (uint8_t)w.acc;
        w.acc >>= 8;
        w.n -= 8;
    }
    if (w.overflow || w.p != w.end) return QW_ERR_ARGUMENT;
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
    for (size_t pl = 0; pl < nplanes; pl++) {
        float *out = planes[pl];
        int32_t history[HISTORY] = {0};
        int p = 0, k = 0;
        for (size_t i = 0; i < n; i++) {
            refill(&r);
            if (i % BLOCK == 0) {
                if (r.n < 8) return QW_ERR_TRUNCATED;
                uint8_t header = (uint8_t)r.acc;
                consume(&r, 8);
                p = header & 7;
                k = header >> 3;
                refill(&r);
            }
            int u = r.acc ? __builtin_ctzll(r.acc) : 64;
            uint64_t z;
            if (u >= ESCAPE) {
                if (r.n < ESCAPE + 32) return QW_ERR_TRUNCATED;
                z = (r.acc >> ESCAPE) & 0xffffffffu;
                consume(&r, ESCAPE + 32);
            } else {
                int bits = u + 1 + k;
                if (bits > r.n) return QW_ERR_TRUNCATED;
                uint64_t low = k ? (r.acc >> (u + 1)) & ((1ull << k) - 1) : 0;
                z = (uint64_t)u << k | low;
                if (z > 0xffffffffu) return QW_ERR_CORRUPT;
                consume(&r, bits);
            }
            int64_t d = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
            int64_t prediction = (p != 0 && i >= (size_t)p) ? history[(i - (size_t)p) % HISTORY] : 0;
            int64_t value = prediction + d;
            if (value > limit || value < -limit) return QW_ERR_CORRUPT;
            history[i % HISTORY] = (int32_t)value;
            out[i] = (float)((double)value * precision);
        }
    }
    if (r.p != r.end) return QW_ERR_TRAILING;
    if (r.n >= 8) return QW_ERR_TRAILING;
    if (r.n > 0 && (r.acc & ((1ull << r.n) - 1)) != 0) return QW_ERR_TRAILING;
    return QW_OK;
}
