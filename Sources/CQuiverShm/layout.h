/* Private: the byte layout of a segment, with atomics. Swift never sees these types; it goes
 * through the plain info structs and accessor functions of CQuiverShm.h. */
#ifndef QV_SHM_LAYOUT_H
#define QV_SHM_LAYOUT_H
#include "CQuiverShm.h"
#include <stdatomic.h>

/* The segment header, at offset 0. 256 bytes. */
typedef struct qv_shm_header {
    uint64_t magic;                  /*   0: QV_SHM_MAGIC, written last at creation */
    uint32_t layout_version;         /*   8 */
    uint32_t header_size;            /*  12: sizeof(qv_shm_header) */
    uint64_t total_size;             /*  16: bytes of the whole segment */
    uint32_t atom_capacity;          /*  24: atoms every array has room for */
    uint32_t slot_count;             /*  28: frame ring slots */
    uint64_t slot_size;              /*  32: bytes per slot, header included */
    uint64_t ring_offset;            /*  40 */
    uint64_t state_offset;           /*  48: two engine snapshots */
    uint64_t state_size;             /*  56: bytes per snapshot, header included */
    uint64_t status_offset;          /*  64: worker status table */
    uint32_t worker_capacity;        /*  72 */
    uint32_t fields;                 /*  76: QV_SHM_FIELD_* the frame slots carry */
    int32_t creator_pid;             /*  80 */
    uint32_t reserved0;              /*  84 */
    uint64_t created_unix_ns;        /*  88 */
    _Atomic uint64_t frames_published; /* 96: frames published so far; newest index = this - 1 */
    _Atomic uint64_t snapshots_written; /* 104: engine snapshots so far; newest in buffer (this - 1) % 2 */
    uint32_t user_force_capacity;    /* 112: sparse user forces a frame slot holds */
    uint32_t command_slots;          /* 116: command ring slots */
    uint64_t command_offset;         /* 120: command ring */
    uint64_t command_slot_size;      /* 128: bytes per command slot, header included */
    uint64_t blob_offset;            /* 136: blob areas (QV_SHM_BLOBS of them) */
    uint64_t blob_capacity[2];       /* 144: data bytes of each blob's buffers */
    _Atomic uint64_t commands_posted;  /* 160: commands posted so far (the newest has sequence number this) */
    _Atomic uint64_t commands_applied; /* 168: commands the engine has finished (in order) */
    uint8_t reserved[80];            /* 176 .. 256 */
} qv_shm_header;

/* One frame slot of the ring: this header, then float32 arrays x, y, z [, vx, vy, vz] [, fx, fy, fz],
 * each atom_capacity long (padded to 16 floats), then the sparse user forces: uint32 indices and
 * float32 ux, uy, uz, user_force_capacity long each (padded). 128 bytes. */
typedef struct qv_shm_frame {
    _Atomic uint64_t seq;            /*   0: even = stable, odd = being written */
    qv_shm_frame_info info;          /*   8: frame index, step, time, atom count, fields present, writer pid, user
                                      *      force count, checksum, publish time, box, energies, temperature, user
                                      *      energy and work: byte for byte the table in docs/shared-memory.md */
} qv_shm_frame;

/* One engine snapshot (there are two, written alternately): this header, then float32 x, y, z,
 * vx, vy, vz and int32 image_x, image_y, image_z arrays, atom_capacity long (padded). 128 bytes. */
typedef struct qv_shm_snapshot {
    _Atomic uint64_t seq;            /*   0 */
    qv_shm_snapshot_info info;       /*   8: snapshot index, step, time, atom count, writer pid, checksum, box,
                                      *      frames published when taken */
    uint8_t reserved[48];            /*  80 .. 128 */
} qv_shm_snapshot;

/* One slot of the command ring: this header, then the reply area (QV_SHM_COMMAND_REPLY bytes), then
 * the payload (command_slot_size - 64 - QV_SHM_COMMAND_REPLY bytes). The poster writes the payload and
 * length, then `posted` (release); the engine writes status, step, reply, then `done` (release). A
 * reply longer than the reply area is written after the payload (64-aligned), at `reply_offset`
 * bytes from the end of this header; the payload stays intact. */
typedef struct qv_shm_command {
    _Atomic uint64_t posted;         /*   0: sequence number of the command in this slot (0: never used) */
    _Atomic uint64_t done;           /*   8: == posted once the engine finished it */
    uint32_t length;                 /*  16: payload bytes */
    int32_t status;                  /*  20: the engine's verdict: 0 applied, else refused */
    uint64_t applied_step;           /*  24: the step at which it took effect */
    uint64_t posted_unix_ns;         /*  32 */
    uint64_t done_unix_ns;           /*  40 */
    uint32_t reply_length;           /*  48 */
    int32_t engine_pid;              /*  52 */
    uint32_t reply_offset;           /*  56: where the reply starts, from the end of this header (0: the reply area) */
    uint8_t reserved[4];             /*  60 .. 64 */
} qv_shm_command;

/* A blob (a variable-length byte string one process keeps in the segment, such as the engine's
 * control state): this 64-byte directory entry, then two buffers of (64-byte header + capacity
 * bytes), written alternately with a seqlock like the snapshots. */
typedef struct qv_shm_blob_entry {
    _Atomic uint64_t written;        /*   0: writes so far; the newest is in buffer (written - 1) % 2 */
    uint8_t reserved[56];
} qv_shm_blob_entry;

typedef struct qv_shm_blob_buffer {
    _Atomic uint64_t seq;            /*   0 */
    uint64_t index;                  /*   8: which write this is */
    uint64_t length;                 /*  16: bytes */
    uint64_t checksum;               /*  24 */
    int32_t writer_pid;              /*  32 */
    uint8_t reserved[28];            /*  36 .. 64 */
} qv_shm_blob_buffer;

/* One worker's entry in the status table. 64 bytes. */
typedef struct qv_shm_worker {
    _Atomic int32_t pid;             /*   0: 0 = none */
    _Atomic uint32_t state;          /*   4: see QuiverSharedMemory.WorkerState */
    _Atomic uint64_t progress;       /*   8: a counter the worker advances while it makes progress */
    _Atomic uint64_t heartbeat_ns;   /*  16: CLOCK_MONOTONIC of its last progress */
    _Atomic uint32_t restarts;       /*  24 */
    uint32_t role;                   /*  28 */
    char name[32];                   /*  32: NUL-terminated */
} qv_shm_worker;

_Static_assert(sizeof(qv_shm_header) == 256, "qv_shm_header is 256 bytes");
_Static_assert(offsetof(qv_shm_header, frames_published) == 96, "header layout");
_Static_assert(sizeof(qv_shm_frame) == 128, "qv_shm_frame is 128 bytes");
_Static_assert(offsetof(qv_shm_frame, info.frame_index) == 8 && offsetof(qv_shm_frame, info.atom_count) == 32 &&
               offsetof(qv_shm_frame, info.user_force_count) == 44 && offsetof(qv_shm_frame, info.checksum) == 48 &&
               offsetof(qv_shm_frame, info.box) == 64 && offsetof(qv_shm_frame, info.user_work) == 120, "frame layout");
_Static_assert(offsetof(qv_shm_snapshot, info.atom_count) == 32 && offsetof(qv_shm_snapshot, info.checksum) == 40 &&
               offsetof(qv_shm_snapshot, info.frames_published) == 72, "snapshot layout");
_Static_assert(sizeof(qv_shm_snapshot) == 128, "qv_shm_snapshot is 128 bytes");
_Static_assert(sizeof(qv_shm_worker) == 64, "qv_shm_worker is 64 bytes");
_Static_assert(offsetof(qv_shm_header, commands_posted) == 160, "header layout");
_Static_assert(sizeof(qv_shm_command) == 64, "qv_shm_command is 64 bytes");
_Static_assert(sizeof(qv_shm_blob_entry) == 64, "qv_shm_blob_entry is 64 bytes");
_Static_assert(sizeof(qv_shm_blob_buffer) == 64, "qv_shm_blob_buffer is 64 bytes");
_Static_assert(sizeof(_Atomic uint64_t) == 8, "lock-free 64-bit atomics");

/* Seqlock writer side: begin returns the even base to pass to end. A slot left odd by a dead
 * writer is taken over. */
uint64_t qv_shm_write_begin(_Atomic uint64_t *seq);
void qv_shm_write_end(_Atomic uint64_t *seq, uint64_t base);

#endif
