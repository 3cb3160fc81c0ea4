#include "CQuiverShm.h"
#include "layout.h"
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static uint32_t optional_arrays(uint32_t fields) {
    return 3u * (((fields & QV_SHM_FIELD_VELOCITIES) ? 1u : 0u) + ((fields & QV_SHM_FIELD_FORCES) ? 1u : 0u));
}

int qv_shm_compute_layout(uint32_t atom_capacity, uint32_t slot_count, uint32_t worker_capacity, uint32_t fields,
                          uint32_t command_slots, uint64_t command_slot_size, const uint64_t blob_capacity[2],
                          qv_shm_layout *out) {
    memset(out, 0, sizeof(*out));
    if (atom_capacity == 0 || atom_capacity > (1u << 28) || slot_count < 2 || slot_count > 1024 ||
        worker_capacity == 0 || worker_capacity > 256 ||
        (fields & ~(uint32_t)(QV_SHM_FIELD_VELOCITIES | QV_SHM_FIELD_FORCES)) ||
        command_slots < 2 || command_slots > 1024 || command_slot_size % 64u != 0 ||
        command_slot_size < 8192u || command_slot_size > (16u << 20))
        return QV_SHM_ERR_ARGUMENT;
    for (int b = 0; b < QV_SHM_BLOBS; b++)
        if (blob_capacity[b] % 64u != 0 || blob_capacity[b] < 4096u || blob_capacity[b] > (1ull << 30)) return QV_SHM_ERR_ARGUMENT;
    out->atom_capacity = atom_capacity;
    out->slot_count = slot_count;
    out->worker_capacity = worker_capacity;
    out->fields = fields;
    out->user_force_capacity = atom_capacity < 65536u ? atom_capacity : 65536u;
    out->command_slots = command_slots;
    out->array_stride = round_up((uint64_t)atom_capacity * 4u, QV_SHM_ALIGN);
    out->user_stride = round_up((uint64_t)out->user_force_capacity * 4u, QV_SHM_ALIGN);
    out->slot_size = sizeof(qv_shm_frame) + (3u + optional_arrays(fields)) * out->array_stride + 4u * out->user_stride;
    out->ring_offset = round_up(sizeof(qv_shm_header), QV_SHM_ALIGN);
    out->state_offset = out->ring_offset + (uint64_t)slot_count * out->slot_size;
    out->state_size = sizeof(qv_shm_snapshot) + 9u * out->array_stride;
    out->status_offset = out->state_offset + 2u * out->state_size;
    out->command_offset = round_up(out->status_offset + (uint64_t)worker_capacity * sizeof(qv_shm_worker), QV_SHM_ALIGN);
    out->command_slot_size = command_slot_size;
    out->blob_offset = out->command_offset + (uint64_t)command_slots * command_slot_size;
    uint64_t end = out->blob_offset;
    for (int b = 0; b < QV_SHM_BLOBS; b++) {
        out->blob_capacity[b] = blob_capacity[b];
        end += sizeof(qv_shm_blob_entry) + 2u * (sizeof(qv_shm_blob_buffer) + blob_capacity[b]);
    }
    out->total_size = round_up(end, 4096);
    return QV_SHM_OK;
}

void qv_shm_initialize(void *base, const qv_shm_layout *l, int32_t creator_pid, uint64_t created_unix_ns) {
    qv_shm_header *h = base;
    h->layout_version = QV_SHM_LAYOUT_VERSION;
    h->header_size = sizeof(qv_shm_header);
    h->total_size = l->total_size;
    h->atom_capacity = l->atom_capacity;
    h->slot_count = l->slot_count;
    h->slot_size = l->slot_size;
    h->ring_offset = l->ring_offset;
    h->state_offset = l->state_offset;
    h->state_size = l->state_size;
    h->status_offset = l->status_offset;
    h->worker_capacity = l->worker_capacity;
    h->fields = l->fields;
    h->creator_pid = creator_pid;
    h->created_unix_ns = created_unix_ns;
    h->user_force_capacity = l->user_force_capacity;
    h->command_slots = l->command_slots;
    h->command_offset = l->command_offset;
    h->command_slot_size = l->command_slot_size;
    h->blob_offset = l->blob_offset;
    h->blob_capacity[0] = l->blob_capacity[0];
    h->blob_capacity[1] = l->blob_capacity[1];
    atomic_store_explicit(&h->commands_posted, 0, memory_order_relaxed);
    atomic_store_explicit(&h->commands_applied, 0, memory_order_relaxed);
    atomic_store_explicit(&h->frames_published, 0, memory_order_relaxed);
    atomic_store_explicit(&h->snapshots_written, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    *(volatile uint64_t *)&h->magic = QV_SHM_MAGIC;
}

int qv_shm_attach(void *base, uint64_t mapped_size, qv_shm_segment *out) {
    memset(out, 0, sizeof(*out));
    if (mapped_size < sizeof(qv_shm_header)) return QV_SHM_ERR_SIZE;
    const qv_shm_header *h = base;
    uint64_t magic = *(const volatile uint64_t *)&h->magic;
    atomic_thread_fence(memory_order_acquire);
    if (magic != QV_SHM_MAGIC) return QV_SHM_ERR_MAGIC;
    if (h->layout_version != QV_SHM_LAYOUT_VERSION) return QV_SHM_ERR_VERSION;
    if (h->header_size != sizeof(qv_shm_header)) return QV_SHM_ERR_LAYOUT;
    /* The layout is recomputed from the parameters and every derived value compared: from here on
     * this process finds blocks through its own copy, never through the header's offsets. */
    const uint64_t blobs[QV_SHM_BLOBS] = {h->blob_capacity[0], h->blob_capacity[1]};
    qv_shm_layout l;
    if (qv_shm_compute_layout(h->atom_capacity, h->slot_count, h->worker_capacity, h->fields, h->command_slots,
                              h->command_slot_size, blobs, &l) != QV_SHM_OK)
        return QV_SHM_ERR_LAYOUT;
    if (l.total_size != h->total_size || l.slot_size != h->slot_size || l.ring_offset != h->ring_offset ||
        l.state_offset != h->state_offset || l.state_size != h->state_size || l.status_offset != h->status_offset ||
        l.user_force_capacity != h->user_force_capacity || l.command_offset != h->command_offset || l.blob_offset != h->blob_offset)
        return QV_SHM_ERR_LAYOUT;
    if (l.total_size > mapped_size) return QV_SHM_ERR_SIZE;
    out->base = base;
    out->mapped_size = mapped_size;
    out->layout = l;
    return QV_SHM_OK;
}

/* Four independent multiply-xorshift chains over interleaved 8-byte words (word i feeds chain
 * i % 4), folded together at the end: each chain is a serial multiply, so four of them run about
 * four times as fast as one (layout version 3; version 2 had a single chain). */
uint64_t qv_shm_checksum(const void *data, size_t bytes, uint64_t seed) {
    const unsigned char *p = data;
    const uint64_t m = 0xff51afd7ed558ccdULL;
    uint64_t h[4];
    for (int l = 0; l < 4; l++) h[l] = seed ^ (0x9e3779b97f4a7c15ULL * (bytes + 1 + (uint64_t)l));
    size_t words = bytes / 8, i = 0;
    for (; i + 4 <= words; i += 4) {
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, p + 8 * (i + (size_t)l), 8);
            h[l] = (h[l] ^ w) * m;
            h[l] ^= h[l] >> 32;
        }
    }
    for (int l = 0; i < words; i++, l++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        h[l] = (h[l] ^ w) * m;
        h[l] ^= h[l] >> 32;
    }
    uint64_t tail = 0;
    memcpy(&tail, p + 8 * words, bytes - 8 * words);
    uint64_t c = h[0];
    for (int l = 1; l < 4; l++) {
        c = (c ^ h[l]) * m;
        c ^= c >> 32;
    }
    c = (c ^ tail) * 0xc4ceb9fe1a85ec53ULL;
    return c ^ (c >> 29);
}

uint64_t qv_shm_write_begin(_Atomic uint64_t *seq) {
    uint64_t s = atomic_load_explicit(seq, memory_order_relaxed);
    if (s & 1u) s += 1u; /* a writer died here: take the slot over */
    atomic_store_explicit(seq, s + 1u, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    return s;
}

void qv_shm_write_end(_Atomic uint64_t *seq, uint64_t base) {
    atomic_store_explicit(seq, base + 2u, memory_order_release);
}

/* ---- where blocks are: always from this process's own layout, never the header's offsets ---- */

static qv_shm_header *header_of(const qv_shm_segment *seg) { return (qv_shm_header *)seg->base; }

static char *at(const qv_shm_segment *seg, uint64_t offset) { return (char *)seg->base + offset; }

static qv_shm_frame *frame_slot(const qv_shm_segment *seg, uint64_t frame_index) {
    const qv_shm_layout *l = &seg->layout;
    return (qv_shm_frame *)at(seg, l->ring_offset + (frame_index % l->slot_count) * l->slot_size);
}

static qv_shm_snapshot *snapshot_buffer(const qv_shm_segment *seg, uint64_t index) {
    const qv_shm_layout *l = &seg->layout;
    return (qv_shm_snapshot *)at(seg, l->state_offset + (index % 2u) * l->state_size);
}

/* NULL for an index beyond this process's worker capacity. */
static qv_shm_worker *worker_at(const qv_shm_segment *seg, uint32_t index) {
    if (index >= seg->layout.worker_capacity) return NULL;
    return (qv_shm_worker *)at(seg, seg->layout.status_offset) + index;
}

static uint64_t now_unix_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/* ---- the seqlock read, shared by frames, snapshots and blobs ---- */

/* The start of a seqlock read of a block: its even sequence number in *s1; or EMPTY (never
 * written), BUSY (a live writer is in it) or ABANDONED (its writer died in it). */
static int seq_read_begin(_Atomic uint64_t *seq, const int32_t *writer_pid, int (*writer_alive)(int32_t), uint64_t *s1) {
    const uint64_t s = atomic_load_explicit(seq, memory_order_acquire);
    if (s == 0) return QV_SHM_READ_EMPTY;
    if (s & 1u) {
        const int32_t pid = *(const volatile int32_t *)writer_pid;
        return (writer_alive == NULL || writer_alive(pid)) ? QV_SHM_READ_BUSY : QV_SHM_READ_ABANDONED;
    }
    *s1 = s;
    return QV_SHM_READ_OK;
}

/* The end of a seqlock read: OK when the sequence is still s1 (what was read in between is one
 * writer's whole work), TORN otherwise. */
static int seq_read_end(_Atomic uint64_t *seq, uint64_t s1) {
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(seq, memory_order_relaxed) == s1 ? QV_SHM_READ_OK : QV_SHM_READ_TORN;
}

/* ---- frames ---- */

static uint32_t frame_array_count(uint32_t fields) { return 3u + optional_arrays(fields); }

static uint64_t user_checksum(uint64_t c, uint32_t n, const uint32_t *index, const float *fx, const float *fy, const float *fz) {
    c = qv_shm_checksum(index, (size_t)n * 4u, c);
    c = qv_shm_checksum(fx, (size_t)n * 4u, c);
    c = qv_shm_checksum(fy, (size_t)n * 4u, c);
    return qv_shm_checksum(fz, (size_t)n * 4u, c);
}

uint64_t qv_shm_frames_published(const qv_shm_segment *seg) {
    return atomic_load_explicit(&header_of(seg)->frames_published, memory_order_acquire);
}

int qv_shm_publish_frame(const qv_shm_segment *seg, qv_shm_frame_info *meta, const float *const *arrays, const qv_shm_user_forces *user) {
    const qv_shm_layout *l = &seg->layout;
    if (meta->atom_count > l->atom_capacity) return QV_SHM_ERR_SIZE;
    qv_shm_header *h = header_of(seg);
    qv_shm_frame *slot = frame_slot(seg, meta->frame_index);
    const uint64_t stride = l->array_stride;
    const uint32_t fields = meta->fields & l->fields;
    const uint32_t narrays = frame_array_count(fields);
    const size_t bytes = (size_t)meta->atom_count * sizeof(float);
    uint32_t nuser = user ? user->count : 0u;
    if (nuser > l->user_force_capacity) nuser = l->user_force_capacity;
    uint64_t checksum = 0x51ed270b27a3b41dULL;
    for (uint32_t a = 0; a < narrays; a++) checksum = qv_shm_checksum(arrays[a], bytes, checksum);
    if (nuser > 0) checksum = user_checksum(checksum, nuser, user->index, user->fx, user->fy, user->fz);
    meta->fields = fields;
    meta->user_force_count = nuser;
    meta->checksum = checksum;
    meta->publish_unix_ns = now_unix_ns();

    uint64_t s = qv_shm_write_begin(&slot->seq);
    slot->info = *meta;
    char *data = (char *)slot + sizeof(qv_shm_frame);
    for (uint32_t a = 0; a < narrays; a++) memcpy(data + a * stride, arrays[a], bytes);
    if (nuser > 0) {
        char *u = data + frame_array_count(l->fields) * stride;
        const uint64_t us = l->user_stride;
        memcpy(u, user->index, (size_t)nuser * 4u);
        memcpy(u + us, user->fx, (size_t)nuser * 4u);
        memcpy(u + 2u * us, user->fy, (size_t)nuser * 4u);
        memcpy(u + 3u * us, user->fz, (size_t)nuser * 4u);
    }
    qv_shm_write_end(&slot->seq, s);
    atomic_store_explicit(&h->frames_published, meta->frame_index + 1u, memory_order_release);
    return QV_SHM_OK;
}

/* The start of a seqlock read of frame `frame_index`: its slot and even sequence number, and the
 * frame's scalars copied once into `meta` and checked there (the frame index, then the counts
 * against this process's layout: LAPPED or CORRUPT; the slot may change meanwhile, so only the
 * copy is checked and used). */
static int begin_frame_read(const qv_shm_segment *seg, uint64_t frame_index, qv_shm_frame_info *meta, int (*writer_alive)(int32_t pid),
                            qv_shm_frame **slot_out, uint64_t *seq_out) {
    if (frame_index >= qv_shm_frames_published(seg)) return QV_SHM_READ_EMPTY;
    qv_shm_frame *slot = frame_slot(seg, frame_index);
    const int begun = seq_read_begin(&slot->seq, &slot->info.writer_pid, writer_alive, seq_out);
    if (begun != QV_SHM_READ_OK) return begun;
    *meta = slot->info;
    *slot_out = slot;
    const qv_shm_layout *l = &seg->layout;
    if (meta->frame_index != frame_index) return QV_SHM_READ_LAPPED;
    if (meta->atom_count > l->atom_capacity || (meta->fields & ~l->fields) != 0 || meta->user_force_count > l->user_force_capacity)
        return QV_SHM_READ_CORRUPT;
    return QV_SHM_READ_OK;
}

/* Where a slot keeps the arrays of `fields` (x, y, z, vx, vy, vz, fx, fy, fz; absent ones NULL)
 * and its user forces. */
static void slot_pointers(const qv_shm_layout *l, const qv_shm_frame *slot, uint32_t fields, qv_shm_frame_view *view) {
    memset(view, 0, sizeof *view);
    const uint64_t stride = l->array_stride;
    const char *data = (const char *)slot + sizeof(qv_shm_frame);
    for (uint32_t a = 0, k = 0; a < 9; a++) {
        const int present = a < 3 || (a < 6 ? (fields & QV_SHM_FIELD_VELOCITIES) != 0 : (fields & QV_SHM_FIELD_FORCES) != 0);
        if (present) view->arrays[a] = (const float *)(data + (k++) * stride);
    }
    const char *u = data + frame_array_count(l->fields) * stride;
    const uint64_t us = l->user_stride;
    view->user_index = (const uint32_t *)u;
    view->user_fx = (const float *)(u + us);
    view->user_fy = (const float *)(u + 2u * us);
    view->user_fz = (const float *)(u + 3u * us);
}

/* A copying read is an in-place view (seqlock, capacity and checksum checks over the slot), the
 * copy, then the view's validity: the copies match the checked slot when its sequence held. */
int qv_shm_read_frame(const qv_shm_segment *seg, uint64_t frame_index, qv_shm_frame_info *meta, float *const *arrays,
                      uint32_t capacity, qv_shm_user_forces_out *user, int (*writer_alive)(int32_t pid)) {
    qv_shm_frame_view view;
    const int status = qv_shm_view_frame(seg, frame_index, meta, &view, writer_alive);
    if (status != QV_SHM_READ_OK) return status;
    if (meta->atom_count > capacity || (user && meta->user_force_count > user->capacity)) return QV_SHM_READ_CORRUPT;
    const size_t bytes = (size_t)meta->atom_count * sizeof(float);
    for (uint32_t a = 0, k = 0; a < 9; a++) {
        if (view.arrays[a]) memcpy(arrays[k++], view.arrays[a], bytes);
    }
    if (user) {
        const size_t ub = (size_t)meta->user_force_count * 4u;
        memcpy(user->index, view.user_index, ub);
        memcpy(user->fx, view.user_fx, ub);
        memcpy(user->fy, view.user_fy, ub);
        memcpy(user->fz, view.user_fz, ub);
        user->count = meta->user_force_count;
    }
    return qv_shm_view_valid(seg, frame_index, &view);
}

int qv_shm_view_frame(const qv_shm_segment *seg, uint64_t frame_index, qv_shm_frame_info *meta, qv_shm_frame_view *view,
                      int (*writer_alive)(int32_t pid)) {
    qv_shm_frame *slot;
    uint64_t s1;
    int status = begin_frame_read(seg, frame_index, meta, writer_alive, &slot, &s1);
    if (status == QV_SHM_READ_EMPTY || status == QV_SHM_READ_BUSY || status == QV_SHM_READ_ABANDONED) return status;
    uint64_t checksum = 0x51ed270b27a3b41dULL;
    if (status == QV_SHM_READ_OK) {
        /* The checksum runs over the slot in place; the seqlock check below covers it. */
        slot_pointers(&seg->layout, slot, meta->fields, view);
        const size_t bytes = (size_t)meta->atom_count * sizeof(float);
        for (uint32_t a = 0; a < 9; a++) {
            if (view->arrays[a]) checksum = qv_shm_checksum(view->arrays[a], bytes, checksum);
        }
        if (meta->user_force_count > 0)
            checksum = user_checksum(checksum, meta->user_force_count, view->user_index, view->user_fx, view->user_fy, view->user_fz);
    }
    const int ended = seq_read_end(&slot->seq, s1);
    if (ended != QV_SHM_READ_OK) return ended;
    if (status != QV_SHM_READ_OK) return status;
    if (checksum != meta->checksum) return QV_SHM_READ_CORRUPT;
    view->seq = s1;
    return QV_SHM_READ_OK;
}

int qv_shm_view_valid(const qv_shm_segment *seg, uint64_t frame_index, const qv_shm_frame_view *view) {
    return seq_read_end(&frame_slot(seg, frame_index)->seq, view->seq);
}

int qv_shm_read_frame_info(const qv_shm_segment *seg, uint64_t frame_index, qv_shm_frame_info *meta, int (*writer_alive)(int32_t pid)) {
    qv_shm_frame *slot;
    uint64_t s1;
    const int status = begin_frame_read(seg, frame_index, meta, writer_alive, &slot, &s1);
    if (status == QV_SHM_READ_EMPTY || status == QV_SHM_READ_BUSY || status == QV_SHM_READ_ABANDONED) return status;
    const int ended = seq_read_end(&slot->seq, s1);
    return ended != QV_SHM_READ_OK ? ended : status;
}

/* ---- engine snapshots ---- */

static uint64_t snapshot_checksum(uint32_t n, const float *const *arrays6, const int32_t *const *images3) {
    uint64_t c = 0x2545f4914f6cdd1dULL;
    for (int a = 0; a < 6; a++) c = qv_shm_checksum(arrays6[a], (size_t)n * 4u, c);
    for (int a = 0; a < 3; a++) c = qv_shm_checksum(images3[a], (size_t)n * 4u, c);
    return c;
}

uint64_t qv_shm_snapshots_written(const qv_shm_segment *seg) {
    return atomic_load_explicit(&header_of(seg)->snapshots_written, memory_order_acquire);
}

int qv_shm_write_snapshot(const qv_shm_segment *seg, qv_shm_snapshot_info *meta, const float *const *arrays6, const int32_t *const *images3) {
    const qv_shm_layout *l = &seg->layout;
    if (meta->atom_count > l->atom_capacity) return QV_SHM_ERR_SIZE;
    qv_shm_header *h = header_of(seg);
    const uint64_t index = atomic_load_explicit(&h->snapshots_written, memory_order_relaxed);
    qv_shm_snapshot *buf = snapshot_buffer(seg, index);
    const uint64_t stride = l->array_stride;
    const size_t bytes = (size_t)meta->atom_count * 4u;
    meta->snapshot_index = index;
    meta->checksum = snapshot_checksum(meta->atom_count, arrays6, images3);
    uint64_t s = qv_shm_write_begin(&buf->seq);
    buf->info = *meta;
    char *data = (char *)buf + sizeof(qv_shm_snapshot);
    for (int a = 0; a < 6; a++) memcpy(data + a * stride, arrays6[a], bytes);
    for (int a = 0; a < 3; a++) memcpy(data + (6 + a) * stride, images3[a], bytes);
    qv_shm_write_end(&buf->seq, s);
    atomic_store_explicit(&h->snapshots_written, index + 1u, memory_order_release);
    return QV_SHM_OK;
}

static int read_snapshot_buffer(const qv_shm_segment *seg, uint64_t index, qv_shm_snapshot_info *meta, float *const *arrays6,
                                int32_t *const *images3, uint32_t capacity, int (*writer_alive)(int32_t)) {
    qv_shm_snapshot *buf = snapshot_buffer(seg, index);
    uint64_t s1;
    const int begun = seq_read_begin(&buf->seq, &buf->info.writer_pid, writer_alive, &s1);
    if (begun != QV_SHM_READ_OK) return begun;
    *meta = buf->info;
    int status = QV_SHM_READ_OK;
    if (meta->snapshot_index != index) status = QV_SHM_READ_LAPPED;
    else if (meta->atom_count > capacity || meta->atom_count > seg->layout.atom_capacity) status = QV_SHM_READ_CORRUPT;
    else {
        const uint64_t stride = seg->layout.array_stride;
        const char *data = (const char *)buf + sizeof(qv_shm_snapshot);
        const size_t bytes = (size_t)meta->atom_count * 4u;
        for (int a = 0; a < 6; a++) memcpy(arrays6[a], data + a * stride, bytes);
        for (int a = 0; a < 3; a++) memcpy(images3[a], data + (6 + a) * stride, bytes);
    }
    const int ended = seq_read_end(&buf->seq, s1);
    if (ended != QV_SHM_READ_OK) return ended;
    if (status != QV_SHM_READ_OK) return status;
    return snapshot_checksum(meta->atom_count, (const float *const *)arrays6, (const int32_t *const *)images3) == meta->checksum
               ? QV_SHM_READ_OK : QV_SHM_READ_CORRUPT;
}

/* Double-buffered blocks (snapshots, blobs): reads the newest of `written` writes with
 * `read_one(ctx, index)`, retrying while a live writer is busy or the copy tore, and falling back
 * to the older buffer when the newest was abandoned mid-write or is corrupt; when that fails too,
 * the newest's failure. */
static int read_newest_of_two(_Atomic uint64_t *written_counter, int (*read_one)(void *ctx, uint64_t index), void *ctx) {
    for (int attempt = 0; attempt < 1000; attempt++) {
        const uint64_t written = atomic_load_explicit(written_counter, memory_order_acquire);
        if (written == 0) return QV_SHM_READ_EMPTY;
        int r = read_one(ctx, written - 1u);
        if (r == QV_SHM_READ_OK) return r;
        if (r == QV_SHM_READ_BUSY || r == QV_SHM_READ_TORN || r == QV_SHM_READ_LAPPED) continue;
        if (written >= 2u && read_one(ctx, written - 2u) == QV_SHM_READ_OK) return QV_SHM_READ_OK;
        return r == QV_SHM_READ_EMPTY ? QV_SHM_READ_CORRUPT : r; /* counted as written, yet never written: corrupt */
    }
    return QV_SHM_READ_BUSY;
}

typedef struct snapshot_read {
    const qv_shm_segment *seg;
    qv_shm_snapshot_info *meta;
    float *const *arrays6;
    int32_t *const *images3;
    uint32_t capacity;
    int (*writer_alive)(int32_t);
} snapshot_read;

static int read_snapshot_one(void *ctx, uint64_t index) {
    snapshot_read *r = ctx;
    return read_snapshot_buffer(r->seg, index, r->meta, r->arrays6, r->images3, r->capacity, r->writer_alive);
}

int qv_shm_read_snapshot(const qv_shm_segment *seg, qv_shm_snapshot_info *meta, float *const *arrays6, int32_t *const *images3,
                         uint32_t capacity, int (*writer_alive)(int32_t pid)) {
    snapshot_read r = {seg, meta, arrays6, images3, capacity, writer_alive};
    return read_newest_of_two(&header_of(seg)->snapshots_written, read_snapshot_one, &r);
}

int qv_shm_pid_alive(int32_t pid) {
    if (pid <= 0) return 0;
    if (kill(pid, 0) == 0) return 1;
    return errno == EPERM;
}

void qv_shm_read_header(const qv_shm_segment *seg, qv_shm_header_info *out) {
    const qv_shm_header *h = header_of(seg);
    out->layout = seg->layout;
    out->creator_pid = h->creator_pid;
    out->created_unix_ns = h->created_unix_ns;
    out->frames_published = qv_shm_frames_published(seg);
    out->snapshots_written = qv_shm_snapshots_written(seg);
}

/* ---- command ring ---- */

static qv_shm_command *command_slot(const qv_shm_segment *seg, uint64_t seq) {
    const qv_shm_layout *l = &seg->layout;
    return (qv_shm_command *)at(seg, l->command_offset + (seq % l->command_slots) * l->command_slot_size);
}

static char *command_reply(qv_shm_command *c) { return (char *)c + sizeof(qv_shm_command); }
static char *command_payload(qv_shm_command *c) { return (char *)c + sizeof(qv_shm_command) + QV_SHM_COMMAND_REPLY; }

uint32_t qv_shm_command_capacity(const qv_shm_segment *seg) {
    return (uint32_t)(seg->layout.command_slot_size - sizeof(qv_shm_command) - QV_SHM_COMMAND_REPLY);
}

/* Bytes of a slot after its header. */
static uint32_t command_body(const qv_shm_segment *seg) { return (uint32_t)(seg->layout.command_slot_size - sizeof(qv_shm_command)); }

/* Where a reply of `reply_length` bytes goes in command `c`'s slot body, and how long one may be there. */
static uint32_t command_reply_offset(const qv_shm_segment *seg, const qv_shm_command *c, uint32_t reply_length) {
    if (reply_length <= QV_SHM_COMMAND_REPLY) return 0;
    /* One read: another process may write the length at any moment. */
    uint32_t length = *(const volatile uint32_t *)&c->length;
    if (length > qv_shm_command_capacity(seg)) length = qv_shm_command_capacity(seg); /* scribbled: as if full */
    const uint64_t offset = round_up((uint64_t)QV_SHM_COMMAND_REPLY + length, 64);
    return offset >= command_body(seg) ? command_body(seg) : (uint32_t)offset;
}

uint32_t qv_shm_command_reply_capacity(const qv_shm_segment *seg, uint64_t seq) {
    qv_shm_command *c = command_slot(seg, seq);
    if (atomic_load_explicit(&c->posted, memory_order_acquire) != seq) return QV_SHM_COMMAND_REPLY;
    const uint32_t after = command_body(seg) - command_reply_offset(seg, c, QV_SHM_COMMAND_REPLY + 1u);
    return after > QV_SHM_COMMAND_REPLY ? after : QV_SHM_COMMAND_REPLY;
}

uint64_t qv_shm_commands_posted(const qv_shm_segment *seg) {
    return atomic_load_explicit(&header_of(seg)->commands_posted, memory_order_acquire);
}

uint64_t qv_shm_commands_applied(const qv_shm_segment *seg) {
    return atomic_load_explicit(&header_of(seg)->commands_applied, memory_order_acquire);
}

int qv_shm_command_post(const qv_shm_segment *seg, const void *payload, uint32_t length, uint64_t *seq_out) {
    qv_shm_header *h = header_of(seg);
    if (length > qv_shm_command_capacity(seg)) return QV_SHM_ERR_SIZE;
    const uint64_t seq = atomic_load_explicit(&h->commands_posted, memory_order_relaxed) + 1u;
    if (seq == 0) return QV_SHM_ERR_FULL; /* the counter was written over: no sequence number left */
    qv_shm_command *c = command_slot(seg, seq);
    const uint64_t previous = atomic_load_explicit(&c->posted, memory_order_acquire);
    if (previous != 0 && atomic_load_explicit(&c->done, memory_order_acquire) != previous) return QV_SHM_ERR_FULL;
    c->length = length;
    c->status = 0;
    c->applied_step = 0;
    c->reply_length = 0;
    c->reply_offset = 0;
    c->engine_pid = 0;
    c->posted_unix_ns = now_unix_ns();
    c->done_unix_ns = 0;
    memcpy(command_payload(c), payload, length);
    atomic_store_explicit(&c->posted, seq, memory_order_release);
    atomic_store_explicit(&h->commands_posted, seq, memory_order_release);
    *seq_out = seq;
    return QV_SHM_OK;
}

int qv_shm_command_take(const qv_shm_segment *seg, uint64_t seq, void *payload, uint32_t capacity, uint32_t *length) {
    qv_shm_command *c = command_slot(seg, seq);
    if (atomic_load_explicit(&c->posted, memory_order_acquire) != seq) return QV_SHM_READ_LAPPED;
    const uint32_t n = c->length;
    if (n > capacity || n > qv_shm_command_capacity(seg)) return QV_SHM_READ_CORRUPT;
    memcpy(payload, command_payload(c), n);
    *length = n;
    return QV_SHM_READ_OK;
}

void qv_shm_command_finish(const qv_shm_segment *seg, uint64_t seq, int32_t status, uint64_t applied_step, const char *reply,
                           uint32_t reply_length, int32_t engine_pid) {
    qv_shm_header *h = header_of(seg);
    qv_shm_command *c = command_slot(seg, seq);
    if (atomic_load_explicit(&c->posted, memory_order_acquire) == seq) {
        /* The offset is worked out once, and the reply cut to the room from there to the end of the
         * slot: a payload length scribbled between two reads can never move the copy past it. */
        uint32_t offset = command_reply_offset(seg, c, reply_length);
        const uint32_t room = offset == 0 ? QV_SHM_COMMAND_REPLY : command_body(seg) - offset;
        if (room < QV_SHM_COMMAND_REPLY) offset = 0;
        const uint32_t fits = offset == 0 ? QV_SHM_COMMAND_REPLY : room;
        if (reply_length > fits) reply_length = fits;
        c->status = status;
        c->applied_step = applied_step;
        c->engine_pid = engine_pid;
        if (reply_length > 0) memcpy(command_reply(c) + offset, reply, reply_length);
        c->reply_offset = offset;
        c->reply_length = reply_length;
        c->done_unix_ns = now_unix_ns();
        atomic_store_explicit(&c->done, seq, memory_order_release);
    }
    uint64_t applied = atomic_load_explicit(&h->commands_applied, memory_order_relaxed);
    if (seq > applied) atomic_store_explicit(&h->commands_applied, seq, memory_order_release);
}

int qv_shm_command_result(const qv_shm_segment *seg, uint64_t seq, int32_t *status, uint64_t *applied_step, char *reply,
                          uint32_t reply_capacity, uint32_t *reply_length) {
    qv_shm_command *c = command_slot(seg, seq);
    if (atomic_load_explicit(&c->posted, memory_order_acquire) != seq) return QV_SHM_READ_LAPPED;
    if (atomic_load_explicit(&c->done, memory_order_acquire) != seq) return QV_SHM_READ_BUSY;
    const uint32_t n = c->reply_length, offset = c->reply_offset;
    if (n > reply_capacity || offset > command_body(seg) || n > command_body(seg) - offset) return QV_SHM_READ_CORRUPT;
    if (offset == 0 ? n > QV_SHM_COMMAND_REPLY : offset < QV_SHM_COMMAND_REPLY) return QV_SHM_READ_CORRUPT;
    *status = c->status;
    *applied_step = c->applied_step;
    memcpy(reply, command_reply(c) + offset, n);
    *reply_length = n;
    /* the poster is the only one who reuses the slot, so it cannot change under us */
    return QV_SHM_READ_OK;
}

/* ---- blobs ---- */

static qv_shm_blob_entry *blob_entry(const qv_shm_segment *seg, uint32_t blob) {
    const qv_shm_layout *l = &seg->layout;
    uint64_t offset = l->blob_offset;
    for (uint32_t b = 0; b < blob; b++) offset += sizeof(qv_shm_blob_entry) + 2u * (sizeof(qv_shm_blob_buffer) + l->blob_capacity[b]);
    return (qv_shm_blob_entry *)at(seg, offset);
}

static qv_shm_blob_buffer *blob_buffer(const qv_shm_segment *seg, uint32_t blob, uint64_t index) {
    char *p = (char *)blob_entry(seg, blob) + sizeof(qv_shm_blob_entry);
    return (qv_shm_blob_buffer *)(p + (index % 2u) * (sizeof(qv_shm_blob_buffer) + seg->layout.blob_capacity[blob]));
}

uint64_t qv_shm_blob_capacity(const qv_shm_segment *seg, uint32_t blob) {
    return blob < QV_SHM_BLOBS ? seg->layout.blob_capacity[blob] : 0;
}

int qv_shm_blob_write(const qv_shm_segment *seg, uint32_t blob, const void *data, uint64_t length, int32_t writer_pid) {
    if (blob >= QV_SHM_BLOBS) return QV_SHM_ERR_ARGUMENT;
    if (length > qv_shm_blob_capacity(seg, blob)) return QV_SHM_ERR_SIZE;
    qv_shm_blob_entry *e = blob_entry(seg, blob);
    const uint64_t index = atomic_load_explicit(&e->written, memory_order_relaxed);
    qv_shm_blob_buffer *b = blob_buffer(seg, blob, index);
    const uint64_t s = qv_shm_write_begin(&b->seq);
    b->index = index;
    b->length = length;
    b->writer_pid = writer_pid;
    b->checksum = qv_shm_checksum(data, length, 0x6a09e667f3bcc908ULL);
    if (length > 0) memcpy((char *)b + sizeof(qv_shm_blob_buffer), data, length);
    qv_shm_write_end(&b->seq, s);
    atomic_store_explicit(&e->written, index + 1u, memory_order_release);
    return QV_SHM_OK;
}

static int read_blob_buffer(const qv_shm_segment *seg, uint32_t blob, uint64_t index, void *out, uint64_t capacity, uint64_t *length,
                            int (*writer_alive)(int32_t)) {
    qv_shm_blob_buffer *b = blob_buffer(seg, blob, index);
    uint64_t s1;
    const int begun = seq_read_begin(&b->seq, &b->writer_pid, writer_alive, &s1);
    if (begun != QV_SHM_READ_OK) return begun;
    const uint64_t n = b->length, checksum = b->checksum, got = b->index;
    int status = QV_SHM_READ_OK;
    if (got != index) status = QV_SHM_READ_LAPPED;
    else if (n > capacity || n > qv_shm_blob_capacity(seg, blob)) status = QV_SHM_READ_CORRUPT;
    else if (n > 0) memcpy(out, (const char *)b + sizeof(qv_shm_blob_buffer), n);
    const int ended = seq_read_end(&b->seq, s1);
    if (ended != QV_SHM_READ_OK) return ended;
    if (status != QV_SHM_READ_OK) return status;
    if (qv_shm_checksum(out, n, 0x6a09e667f3bcc908ULL) != checksum) return QV_SHM_READ_CORRUPT;
    *length = n;
    return QV_SHM_READ_OK;
}

typedef struct blob_read {
    const qv_shm_segment *seg;
    uint32_t blob;
    void *out;
    uint64_t capacity;
    uint64_t *length;
    int (*writer_alive)(int32_t);
} blob_read;

static int read_blob_one(void *ctx, uint64_t index) {
    blob_read *r = ctx;
    return read_blob_buffer(r->seg, r->blob, index, r->out, r->capacity, r->length, r->writer_alive);
}

int qv_shm_blob_read(const qv_shm_segment *seg, uint32_t blob, void *out, uint64_t capacity, uint64_t *length,
                     int (*writer_alive)(int32_t pid)) {
    if (blob >= QV_SHM_BLOBS) return QV_SHM_READ_EMPTY;
    blob_read r = {seg, blob, out, capacity, length, writer_alive};
    return read_newest_of_two(&blob_entry(seg, blob)->written, read_blob_one, &r);
}

/* ---- worker status table: an index beyond this process's capacity reads 0, writes nothing ---- */

#define WORKER_READ(seg, i, expr) do { const qv_shm_worker *w = worker_at((seg), (i)); return w ? (expr) : 0; } while (0)
#define WORKER_WRITE(seg, i, stmt) do { qv_shm_worker *w = worker_at((seg), (i)); if (w) { stmt; } } while (0)

int32_t qv_shm_worker_pid(const qv_shm_segment *seg, uint32_t i) { WORKER_READ(seg, i, atomic_load(&w->pid)); }
void qv_shm_worker_set_pid(const qv_shm_segment *seg, uint32_t i, int32_t pid) { WORKER_WRITE(seg, i, atomic_store(&w->pid, pid)); }
uint32_t qv_shm_worker_state(const qv_shm_segment *seg, uint32_t i) { WORKER_READ(seg, i, atomic_load(&w->state)); }
void qv_shm_worker_set_state(const qv_shm_segment *seg, uint32_t i, uint32_t state) { WORKER_WRITE(seg, i, atomic_store(&w->state, state)); }
uint64_t qv_shm_worker_progress(const qv_shm_segment *seg, uint32_t i) { WORKER_READ(seg, i, atomic_load(&w->progress)); }
uint64_t qv_shm_worker_heartbeat_ns(const qv_shm_segment *seg, uint32_t i) { WORKER_READ(seg, i, atomic_load(&w->heartbeat_ns)); }
void qv_shm_worker_advance(const qv_shm_segment *seg, uint32_t i, uint64_t now_ns) {
    WORKER_WRITE(seg, i, atomic_fetch_add(&w->progress, 1u); atomic_store(&w->heartbeat_ns, now_ns));
}
uint32_t qv_shm_worker_restarts(const qv_shm_segment *seg, uint32_t i) { WORKER_READ(seg, i, atomic_load(&w->restarts)); }
void qv_shm_worker_set_restarts(const qv_shm_segment *seg, uint32_t i, uint32_t r) { WORKER_WRITE(seg, i, atomic_store(&w->restarts, r)); }
void qv_shm_worker_set_identity(const qv_shm_segment *seg, uint32_t i, uint32_t role, const char *name) {
    WORKER_WRITE(seg, i, w->role = role; memset(w->name, 0, sizeof(w->name)); if (name) strncpy(w->name, name, sizeof(w->name) - 1));
}
uint32_t qv_shm_worker_role(const qv_shm_segment *seg, uint32_t i) { WORKER_READ(seg, i, w->role); }
void qv_shm_worker_name(const qv_shm_segment *seg, uint32_t i, char *out) {
    memset(out, 0, 32);
    WORKER_WRITE(seg, i, memcpy(out, w->name, 31)); /* the 32nd byte stays 0 whatever the entry holds */
}
