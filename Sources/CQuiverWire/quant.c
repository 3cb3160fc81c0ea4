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
static inline __attribute__((always_inline)) int quantize(const float *restrict v, size_t len, double inv, int32_t *restrict q) {
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

/* Bits of the Rice code of one residual z with parameter k (branch-free, so loops over it vectorise):
 * u = z >> k zero bits, a one and k low bits, or ESCAPE zero bits and 32 raw bits. */
static inline __attribute__((always_inline)) uint32_t code_bits(uint32_t z, int k) {
    uint32_t u = z >> k;
    return u < ESCAPE ? u + 1 + (uint32_t)k : ESCAPE + 32;
}

/* Bits of the Rice code of z[0 ..< len] with parameter k. */
static inline __attribute__((always_inline)) uint32_t rice_bits(const uint32_t *restrict z, size_t len, int k) {
    uint32_t bits = 0; /* at most 128 * 56 */
    for (size_t j = 0; j < len; j++) bits += code_bits(z[j], k);
    return bits;
}

/* rice_bits at k - 1 (when k > 0), k and k + 1 (when k < 31) in one pass. */
static inline __attribute__((always_inline)) void rice_bits3(const uint32_t *restrict z, size_t len, int k,
                                                             uint32_t *below, uint32_t *at, uint32_t *above) {
    const int lo = k > 0 ? k - 1 : 0, hi = k < 31 ? k + 1 : 31;
    uint32_t b0 = 0, b1 = 0, b2 = 0;
    for (size_t j = 0; j < len; j++) {
        b0 += code_bits(z[j], lo);
        b1 += code_bits(z[j], k);
        b2 += code_bits(z[j], hi);
    }
    *below = b0, *at = b1, *above = b2;
}

/* Sums of the zigzagged residuals of the CANDIDATES predictors over a block. While every residual
 * stays below 2^24 (always, for positions that move less than 2^24 quanta between neighbours) the
 * sums fit 32-bit lanes, which vectorise twice as wide; otherwise they are redone in 64 bits. */
static inline __attribute__((always_inline)) void predictor_sums(const int32_t *restrict q, size_t len, uint64_t *restrict sum) {
    uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, high = 0;
    for (size_t j = 0; j < len; j++) {
        int32_t v = q[HISTORY + j];
        uint32_t z0 = zigzag(v), z1 = zigzag(v - q[HISTORY + j - 1]), z2 = zigzag(v - q[HISTORY + j - 2]);
        uint32_t z3 = zigzag(v - q[HISTORY + j - 3]), z4 = zigzag(v - q[HISTORY + j - 4]);
        high |= z0 | z1 | z2 | z3 | z4;
        s0 += z0;
        s1 += z1;
        s2 += z2;
        s3 += z3;
        s4 += z4;
    }
    if (high < (1u << 24)) { /* len <= 128 = 2^7, so no sum wrapped */
        sum[0] = s0, sum[1] = s1, sum[2] = s2, sum[3] = s3, sum[4] = s4;
        return;
    }
    for (int c = 0; c < CANDIDATES; c++) sum[c] = 0;
    for (size_t j = 0; j < len; j++) {
        int32_t v = q[HISTORY + j];
        sum[0] += zigzag(v);
        for (int c = 1; c < CANDIDATES; c++) sum[c] += zigzag(v - q[HISTORY + j - (size_t)c]);
    }
}

/* Chooses the predictor with the smallest sum of zigzagged residuals among 0..CANDIDATES-1, leaves
 * its residuals in z, and picks the Rice parameter by exact cost, searched from log2(mean).
 * Returns the block's header byte. */
static inline __attribute__((always_inline)) uint8_t plan_block(const int32_t *restrict q, size_t len, uint32_t *restrict z) {
    uint64_t sum[CANDIDATES];
    predictor_sums(q, len, sum);
    int p = 0;
    for (int c = 1; c < CANDIDATES; c++) {
        if (sum[c] < sum[p]) p = c;
    }
    for (size_t j = 0; j < len; j++) z[j] = zigzag(q[HISTORY + j] - (p ? q[HISTORY + j - (size_t)p] : 0));
    uint64_t mean = sum[p] / len;
    int k = mean > 0 ? 63 - __builtin_clzll(mean) : 0;
    if (k > 31) k = 31;
    /* The exact cost is searched from k: downwards while it falls, else upwards while it falls.
     * One pass gives the costs at k - 1, k and k + 1, which settle most blocks. */
    uint32_t below, cost, above;
    rice_bits3(z, len, k, &below, &cost, &above);
    int step = k > 0 && below < cost ? -1 : (k < 31 && above < cost ? 1 : 0);
    if (step != 0) {
        k += step;
        cost = step < 0 ? below : above;
        for (;;) {
            int next = k + step;
            if (next < 0 || next > 31) break;
            uint32_t c = rice_bits(z, len, next);
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
    unsigned n;
} bit_writer;

static inline __attribute__((always_inline)) void put(bit_writer *w, uint64_t value, unsigned len) { /* len <= 56, value < 2^len */
    w->acc |= value << w->n;
    w->n += len;
    memcpy(w->p, &w->acc, 8);
    w->p += w->n >> 3;
    w->acc >>= w->n & ~7u; /* n <= 63, so the shift is at most 56 */
    w->n &= 7;
}

/* The Rice code of one residual: u = z >> k zero bits, a one, then the k low bits of z; or, when u
 * reaches ESCAPE, ESCAPE zero bits and z's 32 bits. Its bits (LSB first, as `put` writes them) in
 * *code, their number returned. */
static inline __attribute__((always_inline)) uint32_t rice_code(uint32_t z, int k, uint64_t *code) {
    uint32_t u = z >> k;
    *code = u < ESCAPE ? ((uint64_t)(z & ((1u << k) - 1u)) << 1 | 1) << u /* k <= 31 */ : (uint64_t)z << ESCAPE;
    return code_bits(z, k);
}

/* The Rice codes of a block, two residuals per 64-bit word, computed apart from the (serial) bit
 * writing so that this part vectorises: pair[i] holds pair_bits[i] bits, the code of z[2i] then
 * that of z[2i + 1]; pair_bits[i] is 0 where the pair holds an escape or exceeds 56 bits (those
 * two are written one code at a time). */
static inline __attribute__((always_inline)) void rice_pairs(const uint32_t *restrict z, size_t pairs, int k,
                                                             uint64_t *restrict pair, uint32_t *restrict pair_bits) {
    const uint32_t mask = (uint32_t)(((uint64_t)1 << k) - 1);
    for (size_t i = 0; i < pairs; i++) {
        uint32_t z0 = z[2 * i], z1 = z[2 * i + 1];
        uint32_t u0 = z0 >> k, u1 = z1 >> k;
        /* A pair with an escape (u >= ESCAPE) is marked below; the shifts are capped only to stay
         * defined. */
        uint32_t b0 = (u0 & 63) + 1 + (uint32_t)k, b1 = (u1 & 63) + 1 + (uint32_t)k;
        uint64_t c0 = ((uint64_t)(z0 & mask) << 1 | 1) << (u0 & 63);
        uint64_t c1 = ((uint64_t)(z1 & mask) << 1 | 1) << (u1 & 63);
        pair[i] = c0 | c1 << (b0 & 63);
        uint32_t b = b0 + b1;
        uint32_t u = u0 > u1 ? u0 : u1;
        pair_bits[i] = b <= 56 && u < ESCAPE ? b : 0;
    }
}

/* Pair i of a block: one put, or two codes when rice_pairs marked it. */
static inline __attribute__((always_inline)) void put_pair(bit_writer *w, const uint32_t *restrict z, size_t i, int k,
                                                           const uint64_t *restrict pair, const uint32_t *restrict pair_bits) {
    if (pair_bits[i]) {
        put(w, pair[i], pair_bits[i]);
    } else {
        uint64_t code;
        uint32_t bits = rice_code(z[2 * i], k, &code);
        put(w, code, bits);
        bits = rice_code(z[2 * i + 1], k, &code);
        put(w, code, bits);
    }
}

/* Writes a block's residuals z[0 ..< len] (len even or the last block) with parameter k: four
 * codes per put where two neighbouring pairs fit in 56 bits together (most of them at 0.001 nm,
 * about 40 bits), else pair by pair. A wide pair or an escape costs only its own puts. */
static inline __attribute__((always_inline)) void put_block(bit_writer *w, const uint32_t *restrict z, size_t len, int k,
                                                            uint64_t *restrict pair, uint32_t *restrict pair_bits) {
    size_t pairs = len / 2;
    rice_pairs(z, pairs, k, pair, pair_bits);
    size_t i = 0;
    for (; i + 1 < pairs; i += 2) {
        uint32_t b0 = pair_bits[i], b1 = pair_bits[i + 1], b = b0 + b1;
        if (b0 != 0 && b1 != 0 && b <= 56) {
            put(w, pair[i] | pair[i + 1] << b0, b);
        } else {
            put_pair(w, z, i, k, pair, pair_bits);
            put_pair(w, z, i + 1, k, pair, pair_bits);
        }
    }
    if (i < pairs) put_pair(w, z, i, k, pair, pair_bits);
    if (len & 1) {
        uint64_t code;
        uint32_t bits = rice_code(z[len - 1], k, &code);
        put(w, code, bits);
    }
}

/* The encoder, compiled once portable and once for AVX2 + BMI2 (picked at run time): the same
 * bit stream either way. */
static inline __attribute__((always_inline)) int encode_body(const float *const *planes, size_t nplanes, size_t n, double precision,
                                                             uint8_t *out, size_t *size) {
    double inv = 1.0 / precision;
    bit_writer w = {out, 0, 0};
    int32_t q[HISTORY + BLOCK];
    uint32_t z[BLOCK];
    uint64_t pair[BLOCK / 2];
    uint32_t pair_bits[BLOCK / 2];
    for (size_t pl = 0; pl < nplanes; pl++) {
        memset(q, 0, sizeof(int32_t) * HISTORY); /* the values before a plane predict as 0 */
        for (size_t start = 0; start < n; start += BLOCK) {
            size_t len = n - start < BLOCK ? n - start : BLOCK;
            if (start > 0) memcpy(q, q + BLOCK, sizeof(int32_t) * HISTORY); /* the previous block's tail */
            if (!quantize(planes[pl] + start, len, inv, q)) return QW_ERR_RANGE;
            uint8_t header = plan_block(q, len, z);
            put(&w, header, 8);
            put_block(&w, z, len, header >> 3, pair, pair_bits);
        }
    }
    if (w.n > 0) w.p++; /* the last partial byte, already stored with zero padding */
    *size = (size_t)(w.p - out);
    return QW_OK;
}

static int encode_portable(const float *const *planes, size_t nplanes, size_t n, double precision, uint8_t *out, size_t *size) {
    return encode_body(planes, nplanes, n, precision, out, size);
}

#if defined(__x86_64__)
__attribute__((target("avx2,bmi,bmi2,fma")))
static int encode_avx2(const float *const *planes, size_t nplanes, size_t n, double precision, uint8_t *out, size_t *size) {
    return encode_body(planes, nplanes, n, precision, out, size);
}

/* AVX-512 adds 64-bit variable shifts and unsigned compares on eight lanes: about 20 % faster than
 * AVX2 on a 100k-atom frame. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,bmi,bmi2,fma")))
static int encode_avx512(const float *const *planes, size_t nplanes, size_t n, double precision, uint8_t *out, size_t *size) {
    return encode_body(planes, nplanes, n, precision, out, size);
}

/* Decided once, at load time (single-threaded), so concurrent callers only read it. */
static int cpu_has_avx2, cpu_has_avx512;

__attribute__((constructor))
static void detect_simd(void) {
    __builtin_cpu_init();
    cpu_has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("fma");
    cpu_has_avx512 = cpu_has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#endif

const char *qw_quant_encoder_variant(void) {
#if defined(__x86_64__)
    if (cpu_has_avx512) return "avx512";
    if (cpu_has_avx2) return "avx2";
#endif
    return "portable";
}

int qw_quant_encoder_supported(const char *variant) {
    if (strcmp(variant, "portable") == 0) return 1;
#if defined(__x86_64__)
    if (strcmp(variant, "avx2") == 0) return cpu_has_avx2;
    if (strcmp(variant, "avx512") == 0) return cpu_has_avx512;
#endif
    return 0;
}

int qw_quant_encode_variant(const char *variant, const float *const *planes, size_t nplanes, size_t n, double precision,
                            uint8_t *out, size_t capacity, size_t *size) {
    if (!precision_ok(precision)) return QW_ERR_ARGUMENT;
    *size = 0;
    if (variant == NULL) variant = qw_quant_encoder_variant();
    if (!qw_quant_encoder_supported(variant)) return QW_ERR_ARGUMENT;
    if (n == 0 || nplanes == 0) return QW_OK;
    if (capacity < qw_quant_bound(nplanes, n)) return QW_ERR_ARGUMENT;
#if defined(__x86_64__)
    if (strcmp(variant, "avx512") == 0) return encode_avx512(planes, nplanes, n, precision, out, size);
    if (strcmp(variant, "avx2") == 0) return encode_avx2(planes, nplanes, n, precision, out, size);
#endif
    return encode_portable(planes, nplanes, n, precision, out, size);
}

int qw_quant_encode(const float *const *planes, size_t nplanes, size_t n, double precision,
                    uint8_t *out, size_t capacity, size_t *size) {
    return qw_quant_encode_variant(NULL, planes, nplanes, n, precision, out, capacity, size);
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
