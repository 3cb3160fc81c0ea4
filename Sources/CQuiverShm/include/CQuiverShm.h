/* Shared-memory layout of a Quiver run and the seqlock protocol over it. Every struct that several
 * processes read is fixed-size and its layout asserted; all integers are little-endian (x86-64,
 * arm64). See docs/shared-memory.md for the byte layout. Prefix: qv_shm_. */
#ifndef CQUIVERSHM_H
#define CQUIVERSHM_H
#include <stddef.h>
#include <stdint.h>

#define QV_SHM_MAGIC 0x314D485356495551ULL /* "QUIVSHM1" */
#define QV_SHM_LAYOUT_VERSION 1u
#define QV_SHM_ALIGN 64u

/* Optional per-frame arrays (positions are always present). */
enum {
    QV_SHM_FIELD_VELOCITIES = 1u << 0,
    QV_SHM_FIELD_FORCES = 1u << 1
};

/* Result of reading a seqlocked block. */
enum {
    QV_SHM_READ_OK = 0,
    QV_SHM_READ_EMPTY = 1,      /* never written */
    QV_SHM_READ_BUSY = 2,       /* a live writer is writing it now: retry */
    QV_SHM_READ_TORN = 3,       /* it changed while being copied: retry */
    QV_SHM_READ_LAPPED = 4,     /* it holds another frame than the one asked for */
    QV_SHM_READ_ABANDONED = 5,  /* its writer died mid-write: the block is unusable */
    QV_SHM_READ_CORRUPT = 6     /* its header is inconsistent (size or checksum) */
};

/* Errors of the layout and validation functions. */
enum {
    QV_SHM_OK = 0,
    QV_SHM_ERR_MAGIC = 1,
    QV_SHM_ERR_VERSION = 2,
    QV_SHM_ERR_SIZE = 3,
    QV_SHM_ERR_LAYOUT = 4,
    QV_SHM_ERR_ARGUMENT = 5
};

/* Plain copies of a frame slot's metadata (what the writer supplies and a reader gets). */
typedef struct qv_shm_frame_info {
    uint64_t frame_index;
    uint64_t step;
    double time_ps;
    uint32_t atom_count;
    uint32_t fields;            /* QV_SHM_FIELD_* present */
    int32_t writer_pid;
    uint32_t reserved0;
    uint64_t checksum;          /* filled in by publish */
    uint64_t publish_unix_ns;   /* filled in by publish */
    double box[3];
    double potential_energy, kinetic_energy, temperature, user_energy, user_work;
} qv_shm_frame_info;

/* Plain copy of an engine snapshot's metadata. */
typedef struct qv_shm_snapshot_info {
    uint64_t snapshot_index;    /* filled in by write */
    uint64_t step;
    double time_ps;
    uint32_t atom_count;
    int32_t writer_pid;
    uint64_t checksum;          /* filled in by write */
    double box[3];
    uint64_t frames_published;
} qv_shm_snapshot_info;

/* Plain copy of the segment header. */
typedef struct qv_shm_header_info {
    uint32_t layout_version, atom_capacity, slot_count, worker_capacity, fields;
    int32_t creator_pid;
    uint64_t total_size, created_unix_ns, frames_published, snapshots_written;
} qv_shm_header_info;

/* What a segment needs, computed from its parameters. */
typedef struct qv_shm_layout {
    uint32_t atom_capacity, slot_count, worker_capacity, fields;
    uint64_t array_stride;   /* bytes of one float32 array of atom_capacity (padded) */
    uint64_t slot_size, ring_offset, state_offset, state_size, status_offset, total_size;
} qv_shm_layout;

int qv_shm_compute_layout(uint32_t atom_capacity, uint32_t slot_count, uint32_t worker_capacity, uint32_t fields,
                          qv_shm_layout *out);
/* Writes the header of a zeroed segment; the magic goes last (release), so an opener never sees a
 * half-initialised header as valid. */
void qv_shm_initialize(void *base, const qv_shm_layout *layout, int32_t creator_pid, uint64_t created_unix_ns);
/* Checks a mapped segment of `mapped_size` bytes: magic, version, sizes, offsets. */
int qv_shm_validate(const void *base, uint64_t mapped_size);

/* A 64-bit checksum (multiply-xorshift over 8-byte words plus the tail); not cryptographic. */
uint64_t qv_shm_checksum(const void *data, size_t bytes, uint64_t seed);

/* Frame ring. `arrays` are n float32 arrays of atom_count each: x, y, z then the optional ones in
 * field order. The writer fills the slot for frame_index % slot_count and bumps frames_published. */
void qv_shm_publish_frame(void *base, const qv_shm_frame_info *meta, const float *const *arrays);
/* Copies frame `frame_index` into *meta and the arrays (capacity atoms each); returns QV_SHM_READ_*.
 * `writer_alive(pid)` decides whether an odd slot is busy or abandoned (NULL: always alive). */
int qv_shm_read_frame(const void *base, uint64_t frame_index, qv_shm_frame_info *meta, float *const *arrays,
                      uint32_t capacity, int (*writer_alive)(int32_t pid));

/* Copies only the metadata of frame `frame_index` (seqlock-validated; arrays untouched): for
 * readers that need the step or energies, not positions. Returns QV_SHM_READ_*. */
int qv_shm_read_frame_info(const void *base, uint64_t frame_index, qv_shm_frame_info *meta, int (*writer_alive)(int32_t pid));

/* Engine snapshots, double-buffered. */
void qv_shm_write_snapshot(void *base, const qv_shm_snapshot_info *meta, const float *const *arrays6, const int32_t *const *images3);
/* Reads the newest consistent snapshot (falling back to the older buffer if the newest is torn or
 * abandoned). Returns QV_SHM_READ_OK or QV_SHM_READ_EMPTY. */
int qv_shm_read_snapshot(const void *base, qv_shm_snapshot_info *meta, float *const *arrays6, int32_t *const *images3,
                         uint32_t capacity, int (*writer_alive)(int32_t pid));

/* Header values of a validated segment. */
void qv_shm_read_header(const void *base, qv_shm_header_info *out);

/* Worker status table (index < worker_capacity), all atomic. */
int32_t qv_shm_worker_pid(const void *base, uint32_t index);
void qv_shm_worker_set_pid(void *base, uint32_t index, int32_t pid);
uint32_t qv_shm_worker_state(const void *base, uint32_t index);
void qv_shm_worker_set_state(void *base, uint32_t index, uint32_t state);
uint64_t qv_shm_worker_progress(const void *base, uint32_t index);
uint64_t qv_shm_worker_heartbeat_ns(const void *base, uint32_t index);
/* progress += 1, heartbeat = now_ns */
void qv_shm_worker_advance(void *base, uint32_t index, uint64_t now_ns);
uint32_t qv_shm_worker_restarts(const void *base, uint32_t index);
void qv_shm_worker_set_restarts(void *base, uint32_t index, uint32_t restarts);
void qv_shm_worker_set_identity(void *base, uint32_t index, uint32_t role, const char *name);
uint32_t qv_shm_worker_role(const void *base, uint32_t index);
/* Copies the NUL-terminated name (at most 31 bytes) into out[32]. */
void qv_shm_worker_name(const void *base, uint32_t index, char *out);

/* 1 if a process with this pid exists (kill(pid, 0) succeeds or fails with EPERM). */
int qv_shm_pid_alive(int32_t pid);
#endif
