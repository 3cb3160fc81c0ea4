/* Shared-memory layout of a Quiver run and the seqlock protocol over it. Every struct that several
 * processes read is fixed-size and its layout asserted; all integers are little-endian (x86-64,
 * arm64). See docs/shared-memory.md for the byte layout. Prefix: qv_shm_. */
#ifndef CQUIVERSHM_H
#define CQUIVERSHM_H
#include <stddef.h>
#include <stdint.h>

#define QV_SHM_MAGIC 0x314D485356495551ULL /* "QUIVSHM1" */
#define QV_SHM_LAYOUT_VERSION 3u
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

/* Errors of the layout, validation and writing functions. */
enum {
    QV_SHM_OK = 0,
    QV_SHM_ERR_MAGIC = 1,
    QV_SHM_ERR_VERSION = 2,
    QV_SHM_ERR_SIZE = 3,        /* larger than the segment holds (a frame's atoms, a blob's bytes, a payload) */
    QV_SHM_ERR_LAYOUT = 4,
    QV_SHM_ERR_ARGUMENT = 5,    /* an index out of the opener's range (a worker, a blob) */
    QV_SHM_ERR_FULL = 6         /* the command ring has no free slot */
};

/* Plain copies of a frame slot's metadata (what the writer supplies and a reader gets). */
typedef struct qv_shm_frame_info {
    uint64_t frame_index;
    uint64_t step;
    double time_ps;
    uint32_t atom_count;
    uint32_t fields;            /* QV_SHM_FIELD_* present */
    int32_t writer_pid;
    uint32_t user_force_count;  /* sparse user forces that come with the frame */
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



/* Sparse interactive (user) forces of a frame: `count` atoms with their indices and forces. */
typedef struct qv_shm_user_forces {
    uint32_t count;
    const uint32_t *index;
    const float *fx, *fy, *fz;
} qv_shm_user_forces;

/* Where a reader wants them: arrays of `capacity` entries; `count` is set by the read. */
typedef struct qv_shm_user_forces_out {
    uint32_t capacity, count;
    uint32_t *index;
    float *fx, *fy, *fz;
} qv_shm_user_forces_out;

/* Blobs: variable-length byte strings kept in the segment by one writer each. */
enum {
    QV_SHM_BLOB_ENGINE = 0,     /* the engine's control state (run parameters, interactions), JSON */
    QV_SHM_BLOB_STATE = 1,      /* the control worker's shared-state store, JSON */
    QV_SHM_BLOBS = 2
};

/* Bytes of a command slot's reply area (a longer reply goes after the payload, see
 * qv_shm_command_reply_capacity). */
#define QV_SHM_COMMAND_REPLY 4096u

/* What a segment needs, computed from its parameters. */
typedef struct qv_shm_layout {
    uint32_t atom_capacity, slot_count, worker_capacity, fields;
    uint32_t user_force_capacity, command_slots;
    uint64_t array_stride;   /* bytes of one float32 array of atom_capacity (padded) */
    uint64_t user_stride;    /* bytes of one array of user_force_capacity (padded) */
    uint64_t slot_size, ring_offset, state_offset, state_size, status_offset;
    uint64_t command_offset, command_slot_size, blob_offset, blob_capacity[2], total_size;
} qv_shm_layout;

/* A mapped segment as one process sees it: the mapping and the layout this process computed
 * itself (at creation, or from the header's parameters when it opened and validated the segment).
 * Every function below finds blocks through this copy, never through the offsets and sizes in the
 * mapping, and checks every count, length, index and sequence number it reads from the mapping
 * against it at each use: another process can write anything into the segment, and a reader gets
 * QV_SHM_READ_CORRUPT (or an error code), never an access outside the mapping. The caller owns
 * the mapping and keeps it mapped while the handle is in use. */
typedef struct qv_shm_segment {
    void *base;
    uint64_t mapped_size;
    qv_shm_layout layout;
} qv_shm_segment;

/* The segment header as this process sees it: the layout (its own copy), and the values only the
 * mapping holds. */
typedef struct qv_shm_header_info {
    qv_shm_layout layout;
    int32_t creator_pid;
    uint64_t created_unix_ns, frames_published, snapshots_written;
} qv_shm_header_info;

/* command_slots 2...1024 and command_slot_size (a multiple of 64, 8 KiB...16 MiB) make the command
 * ring; blob_capacity[k] (bytes, a multiple of 64, 4 KiB...1 GiB) the blobs. */
int qv_shm_compute_layout(uint32_t atom_capacity, uint32_t slot_count, uint32_t worker_capacity, uint32_t fields,
                          uint32_t command_slots, uint64_t command_slot_size, const uint64_t blob_capacity[2],
                          qv_shm_layout *out);
/* Writes the header of a zeroed segment; the magic goes last (release), so an opener never sees a
 * half-initialised header as valid. */
void qv_shm_initialize(void *base, const qv_shm_layout *layout, int32_t creator_pid, uint64_t created_unix_ns);
/* Checks a mapped segment of `mapped_size` bytes (magic, version, sizes, every offset recomputed
 * from the parameters and compared) and fills *out with the mapping and the recomputed layout. */
int qv_shm_attach(void *base, uint64_t mapped_size, qv_shm_segment *out);

/* A 64-bit checksum (multiply-xorshift over 8-byte words plus the tail); not cryptographic. */
uint64_t qv_shm_checksum(const void *data, size_t bytes, uint64_t seed);

/* Frame ring. `arrays` are n float32 arrays of atom_count each: x, y, z then the optional ones in
 * field order. The writer fills the slot for frame_index % slot_count and bumps frames_published.
 * `user` (may be NULL) carries the sparse user forces; more than the segment's
 * user_force_capacity are cut to it (meta->user_force_count says how many were kept). Returns
 * QV_SHM_OK, or QV_SHM_ERR_SIZE (nothing written) when atom_count exceeds the atom capacity. */
int qv_shm_publish_frame(const qv_shm_segment *seg, qv_shm_frame_info *meta, const float *const *arrays,
                         const qv_shm_user_forces *user);
/* Copies frame `frame_index` into *meta and the arrays (capacity atoms each), and the user forces
 * into *user when it is not NULL (a frame with more than user->capacity is CORRUPT for this
 * reader); returns QV_SHM_READ_*. `writer_alive(pid)` decides whether an odd slot is busy or
 * abandoned (NULL: always alive). */
int qv_shm_read_frame(const qv_shm_segment *seg, uint64_t frame_index, qv_shm_frame_info *meta, float *const *arrays,
                      uint32_t capacity, qv_shm_user_forces_out *user, int (*writer_alive)(int32_t pid));

/* Frame `frame_index` in place, without copying: the slot's arrays (x, y, z, vx, vy, vz, fx, fy,
 * fz; NULL where the frame has none) and its user forces (meta->user_force_count of them). */
typedef struct qv_shm_frame_view {
    const float *arrays[9];
    const uint32_t *user_index;
    const float *user_fx, *user_fy, *user_fz;
    uint64_t seq;               /* the slot's sequence when the view was taken */
} qv_shm_frame_view;

/* Takes a view of frame `frame_index` under the seqlock and checks its checksum in place; returns
 * QV_SHM_READ_* as qv_shm_read_frame. The writer may overwrite the slot at any time after: a
 * reader consumes the view, then calls qv_shm_view_valid, and uses what it made of the view only
 * when that returns QV_SHM_READ_OK (otherwise QV_SHM_READ_TORN: the slot changed meanwhile, and
 * anything computed from it may be torn). */
int qv_shm_view_frame(const qv_shm_segment *seg, uint64_t frame_index, qv_shm_frame_info *meta, qv_shm_frame_view *view,
                      int (*writer_alive)(int32_t pid));
int qv_shm_view_valid(const qv_shm_segment *seg, uint64_t frame_index, const qv_shm_frame_view *view);

/* Copies only the metadata of frame `frame_index` (seqlock-validated, counts checked; arrays
 * untouched): for readers that need the step or energies, not positions. Returns QV_SHM_READ_*. */
int qv_shm_read_frame_info(const qv_shm_segment *seg, uint64_t frame_index, qv_shm_frame_info *meta,
                           int (*writer_alive)(int32_t pid));
uint64_t qv_shm_frames_published(const qv_shm_segment *seg);

/* Engine snapshots, double-buffered. Write returns QV_SHM_OK or QV_SHM_ERR_SIZE (more atoms than
 * the capacity: nothing written). */
int qv_shm_write_snapshot(const qv_shm_segment *seg, qv_shm_snapshot_info *meta, const float *const *arrays6,
                          const int32_t *const *images3);
/* Reads the newest consistent snapshot (falling back to the older buffer if the newest is torn,
 * abandoned or corrupt). Returns QV_SHM_READ_OK, QV_SHM_READ_EMPTY (none written), or the newest
 * buffer's failure when the older one does not hold a consistent snapshot either
 * (QV_SHM_READ_ABANDONED, QV_SHM_READ_CORRUPT, or QV_SHM_READ_BUSY when every attempt failed). */
int qv_shm_read_snapshot(const qv_shm_segment *seg, qv_shm_snapshot_info *meta, float *const *arrays6, int32_t *const *images3,
                         uint32_t capacity, int (*writer_alive)(int32_t pid));
uint64_t qv_shm_snapshots_written(const qv_shm_segment *seg);

/* Command ring: one poster (the control worker), one consumer (the engine), in order.
 * Posts a command: QV_SHM_OK with its sequence number (>= 1) in *seq, QV_SHM_ERR_FULL when the
 * slot's previous command is not finished, QV_SHM_ERR_SIZE when the payload is larger than a slot
 * holds. */
int qv_shm_command_post(const qv_shm_segment *seg, const void *payload, uint32_t length, uint64_t *seq);
/* Payload bytes one command may carry. */
uint32_t qv_shm_command_capacity(const qv_shm_segment *seg);
uint64_t qv_shm_commands_posted(const qv_shm_segment *seg);
uint64_t qv_shm_commands_applied(const qv_shm_segment *seg);
/* Engine side: copies command `seq`'s payload (capacity bytes at most) and its length. Returns
 * QV_SHM_READ_OK, QV_SHM_READ_LAPPED when the slot does not hold that command (not posted yet, or
 * overwritten), QV_SHM_READ_CORRUPT when its length is beyond the slot or `capacity`. */
int qv_shm_command_take(const qv_shm_segment *seg, uint64_t seq, void *payload, uint32_t capacity, uint32_t *length);
/* Engine side: the longest reply command `seq`'s slot holds: the reply area, or what follows the
 * payload (64-aligned) to the end of the slot when that is more. QV_SHM_COMMAND_REPLY when the slot
 * does not hold `seq`. */
uint32_t qv_shm_command_reply_capacity(const qv_shm_segment *seg, uint64_t seq);
/* Engine side: records the verdict and reply (cut to qv_shm_command_reply_capacity bytes) of command
 * `seq` and marks it done (and applied). A reply longer than QV_SHM_COMMAND_REPLY is written after
 * the payload, which stays as it was. */
void qv_shm_command_finish(const qv_shm_segment *seg, uint64_t seq, int32_t status, uint64_t applied_step, const char *reply,
                           uint32_t reply_length, int32_t engine_pid);
/* Poster side: QV_SHM_READ_OK when command `seq` is done (status, step and reply copied out),
 * QV_SHM_READ_BUSY while it is pending, QV_SHM_READ_LAPPED when the slot no longer holds it,
 * QV_SHM_READ_CORRUPT when its reply offset and length are beyond the slot or `reply_capacity`.
 * A `reply_capacity` of command_slot_size - 64 holds any reply. */
int qv_shm_command_result(const qv_shm_segment *seg, uint64_t seq, int32_t *status, uint64_t *applied_step, char *reply,
                          uint32_t reply_capacity, uint32_t *reply_length);

/* Blobs. Write returns QV_SHM_OK, QV_SHM_ERR_SIZE (longer than the capacity) or
 * QV_SHM_ERR_ARGUMENT (no such blob). */
int qv_shm_blob_write(const qv_shm_segment *seg, uint32_t blob, const void *data, uint64_t length, int32_t writer_pid);
/* Data bytes of a blob (0 for no such blob). */
uint64_t qv_shm_blob_capacity(const qv_shm_segment *seg, uint32_t blob);
/* Copies the newest consistent write (falling back to the older buffer when the newest was
 * abandoned or is corrupt) into out (capacity bytes). Returns QV_SHM_READ_OK, QV_SHM_READ_EMPTY
 * (never written, or no such blob), or as qv_shm_read_snapshot the newest buffer's failure. */
int qv_shm_blob_read(const qv_shm_segment *seg, uint32_t blob, void *out, uint64_t capacity, uint64_t *length,
                     int (*writer_alive)(int32_t pid));

/* Header values: the layout's from the opener's copy, the rest from the mapping. */
void qv_shm_read_header(const qv_shm_segment *seg, qv_shm_header_info *out);

/* Worker status table, all atomic. An index beyond the opener's worker capacity reads 0 (and an
 * empty name) and writes nothing. */
int32_t qv_shm_worker_pid(const qv_shm_segment *seg, uint32_t index);
void qv_shm_worker_set_pid(const qv_shm_segment *seg, uint32_t index, int32_t pid);
uint32_t qv_shm_worker_state(const qv_shm_segment *seg, uint32_t index);
void qv_shm_worker_set_state(const qv_shm_segment *seg, uint32_t index, uint32_t state);
uint64_t qv_shm_worker_progress(const qv_shm_segment *seg, uint32_t index);
uint64_t qv_shm_worker_heartbeat_ns(const qv_shm_segment *seg, uint32_t index);
/* progress += 1, heartbeat = now_ns */
void qv_shm_worker_advance(const qv_shm_segment *seg, uint32_t index, uint64_t now_ns);
uint32_t qv_shm_worker_restarts(const qv_shm_segment *seg, uint32_t index);
void qv_shm_worker_set_restarts(const qv_shm_segment *seg, uint32_t index, uint32_t restarts);
void qv_shm_worker_set_identity(const qv_shm_segment *seg, uint32_t index, uint32_t role, const char *name);
uint32_t qv_shm_worker_role(const qv_shm_segment *seg, uint32_t index);
/* Copies the name (at most 31 bytes, always NUL-terminated here) into out[32]. */
void qv_shm_worker_name(const qv_shm_segment *seg, uint32_t index, char *out);

/* 1 if a process with this pid exists (kill(pid, 0) succeeds or fails with EPERM). */
int qv_shm_pid_alive(int32_t pid);
#endif
