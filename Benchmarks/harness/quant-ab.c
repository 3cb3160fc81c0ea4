/* The quantized encoder of this tree against another revision's (compiled into the same program
 * with its public names prefixed base_), on one frame dumped by frame-dump, interleaved call by
 * call so both see the same minutes of a noisy machine. Prints, per encoder build, the best and
 * median wall time and the message size, and whether both gave the same bytes.
 * Usage: quant-ab FRAME [rounds] [variant ...]   (variants: avx512 avx2 portable; default: all
 * this CPU runs). Built and run by scripts/bench-encoder. */
#include "qw_quant.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int base_qw_quant_encode_variant(const char *variant, const float *const *planes, size_t nplanes, size_t n, double precision,
                                 uint8_t *out, size_t capacity, size_t *size);
size_t base_qw_quant_bound(size_t nplanes, size_t n);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: quant-ab FRAME [rounds] [variant ...]\n"); return 2; }
    FILE *f = fopen(argv[1], "rb");
    uint32_t n = 0;
    if (!f || fread(&n, 4, 1, f) != 1 || n == 0) { fprintf(stderr, "cannot read %s\n", argv[1]); return 1; }
    float *planes[3];
    for (int i = 0; i < 3; i++) {
        planes[i] = malloc((size_t)n * 4u);
        if (fread(planes[i], 4, n, f) != n) { fprintf(stderr, "%s is short\n", argv[1]); return 1; }
    }
    fclose(f);
    int rounds = argc > 2 ? atoi(argv[2]) : 300;
    if (rounds < 1) rounds = 1;
    const char *all[] = {"avx512", "avx2", "portable"};
    const char **variants = argc > 3 ? (const char **)argv + 3 : all;
    int nvariants = argc > 3 ? argc - 3 : 3;
    size_t cap = qw_quant_bound(3, n), base_cap = base_qw_quant_bound(3, n);
    uint8_t *out = malloc(cap), *base_out = malloc(base_cap);
    double *t = malloc(sizeof(double) * (size_t)rounds), *bt = malloc(sizeof(double) * (size_t)rounds);
    printf("%u atoms, 3 planes, precision 0.001, %d interleaved calls per build\n", n, rounds);
    printf("| build | this tree: best | median | baseline: best | median | median ratio | message bytes | same bytes |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (int v = 0; v < nvariants; v++) {
        if (!qw_quant_encoder_supported(variants[v])) { printf("| %s | not supported by this CPU |||||||\n", variants[v]); continue; }
        size_t size = 0, base_size = 0;
        for (int r = 0; r < rounds; r++) {
            /* alternate which goes first, so neither always runs on a cache the other warmed */
            for (int k = 0; k < 2; k++) {
                int mine = (r + k) & 1;
                double t0 = now();
                int rc = mine ? qw_quant_encode_variant(variants[v], (const float *const *)planes, 3, n, 0.001, out, cap, &size)
                              : base_qw_quant_encode_variant(variants[v], (const float *const *)planes, 3, n, 0.001, base_out, base_cap, &base_size);
                double dt = now() - t0;
                if (rc != QW_OK) { fprintf(stderr, "%s encoder failed: %d\n", mine ? "this tree's" : "baseline", rc); return 1; }
                (mine ? t : bt)[r] = dt;
            }
        }
        qsort(t, (size_t)rounds, sizeof(double), by_value);
        qsort(bt, (size_t)rounds, sizeof(double), by_value);
        int same = size == base_size && memcmp(out, base_out, size) == 0;
        printf("| %s | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %.2fx | %zu | %s |\n", variants[v], t[0] * 1e3, t[rounds / 2] * 1e3,
               bt[0] * 1e3, bt[rounds / 2] * 1e3, t[rounds / 2] / bt[rounds / 2], size, same ? "yes" : "NO");
    }
    return 0;
}
