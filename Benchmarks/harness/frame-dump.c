/* Writes the newest frame of a run's shared-memory segment to a file, for the encoder A/B
 * (scripts/bench-encoder): u32 atom count, then x, y and z as float32 arrays (native byte order).
 * Usage: frame-dump /dev/shm/<segment> OUT */
#include "CQuiverShm.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: frame-dump SEGMENT_PATH OUT\n"); return 2; }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { perror(argv[1]); return 1; }
    void *base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    qv_shm_segment seg;
    int attached = qv_shm_attach(base, (uint64_t)st.st_size, &seg);
    if (attached != QV_SHM_OK) { fprintf(stderr, "%s is not a usable segment: %d\n", argv[1], attached); return 1; }
    qv_shm_header_info h;
    qv_shm_read_header(&seg, &h);
    if (h.frames_published == 0) { fprintf(stderr, "no frame published yet\n"); return 1; }
    uint32_t n = h.layout.atom_capacity;
    float *a[9]; /* room for every array a frame may hold (positions, velocities, forces) */
    for (int i = 0; i < 9; i++) a[i] = malloc((size_t)n * 4u);
    qv_shm_frame_info meta;
    int rc = qv_shm_read_frame(&seg, h.frames_published - 1, &meta, a, n, NULL, qv_shm_pid_alive);
    if (rc != QV_SHM_READ_OK) { fprintf(stderr, "frame read failed: %d\n", rc); return 1; }
    FILE *f = fopen(argv[2], "wb");
    if (!f) { perror(argv[2]); return 1; }
    fwrite(&meta.atom_count, 4, 1, f);
    for (int i = 0; i < 3; i++) fwrite(a[i], 4, meta.atom_count, f);
    if (fclose(f) != 0) { perror(argv[2]); return 1; }
    fprintf(stderr, "frame %llu, step %llu, %u atoms -> %s\n", (unsigned long long)meta.frame_index,
            (unsigned long long)meta.step, meta.atom_count, argv[2]);
    return 0;
}
