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
                          qv_shm_layout *out) {
    memset(out, 0, sizeof(*out));
    if (atom_capacity == 0 || atom_capacity > (1u << 28) || slot_count < 2 || slot_count > 1024 ||
        worker_capacity == 0 || worker_capacity > 256 ||
        (fields & ~(uint32_t)(QV_SHM_FIELD_VELOCITIES | QV_SHM_FIELD_FORCES)))
        return QV_SHM_ERR_ARGUMENT;
    out->atom_capacity = atom_capacity;
    out->slot_count = slot_count;
    out->worker_capacity = worker_capacity;
    out->fields = fields;
    out->array_stride = round_up((uint64_t)atom_capacity * 4u, QV_SHM_ALIGN);
    out->slot_size = sizeof(qv_shm_frame) + (3u + optional_arrays(fields)) * out->array_stride;
    out->ring_offset = round_up(sizeof(qv_shm_header), QV_SHM_ALIGN);
    out->state_offset = out->ring_offset + (uint64_t)slot_count * out->slot_size;
    out->state_size = sizeof(qv_shm_snapshot) + 9u * out->array_stride;
    out->status_offset = out->state_offset + 2u * out->state_size;
    out->total_size = round_up(out->status_offset + (uint64_t)worker_capacity * sizeof(qv_shm_worker), 4096);
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
    atomic_store_explicit(&h->frames_published, 0, memory_order_relaxed);
    atomic_store_explicit(&h->snapshots_written, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    *(volatile uint64_t *)&h->magic = QV_SHM_MAGIC;
}

int qv_shm_validate(const void *base, uint64_t mapped_size) {
    if (mapped_size < sizeof(qv_shm_header)) return QV_SHM_ERR_SIZE;
    const qv_shm_header *h = base;
    uint64_t magic = *(const volatile uint64_t *)&h->magic;
    atomic_thread_fence(memory_order_acquire);
    if (magic != QV_SHM_MAGIC) return QV_SHM_ERR_MAGIC;
    if (h->layout_version != QV_SHM_LAYOUT_VERSION) return QV_SHM_ERR_VERSION;
    if (h->header_size != sizeof(qv_shm_header)) return QV_SHM_ERR_LAYOUT;
    qv_shm_layout l;
    if (qv_shm_compute_layout(h->atom_capacity, h->slot_count, h->worker_capacity, h->fields, &l) != QV_SHM_OK)
        return QV_SHM_ERR_LAYOUT;
    if (l.total_size != h->total_size || l.slot_size != h->slot_size || l.ring_offset != h->ring_offset ||
        l.state_offset != h->state_offset || l.state_size != h->state_size || l.status_offset != h->status_offset)
        return QV_SHM_ERR_LAYOUT;
    if (h->total_size > mapped_size) return QV_SHM_ERR_SIZE;
    return QV_SHM_OK;
}

uint64_t qv_shm_checksum(const void *data, size_t bytes, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = seed ^ (0x9e3779b97f4a7c15ULL * (bytes + 1));
    size_t words = bytes / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    uint64_t tail = 0;
    memcpy(&tail, p + 8 * words, bytes - 8 * words);
    h = (h ^ tail) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 29);
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

static qv_shm_frame *qv_shm_frame_slot(void *base, uint32_t slot) {
    qv_shm_header *h = base;
    return (qv_shm_frame *)((char *)base + h->ring_offset + (uint64_t)slot * h->slot_size);
}

static qv_shm_worker *qv_shm_worker_at(void *base, uint32_t index) {
    qv_shm_header *h = base;
    return (qv_shm_worker *)((char *)base + h->status_offset) + index;
}

static qv_shm_snapshot *snapshot_buffer(void *base, uint32_t which) {
    qv_shm_header *h = base;
    return (qv_shm_snapshot *)((char *)base + h->state_offset + (uint64_t)which * h->state_size);
}

static uint32_t frame_array_count(uint32_t fields) { return 3u + optional_arrays(fields); }

void qv_shm_publish_frame(void *base, const qv_shm_frame_info *meta, const float *const *arrays) {
    qv_shm_header *h = base;
    qv_shm_frame *slot = qv_shm_frame_slot(base, (uint32_t)(meta->frame_index % h->slot_count));
    const uint64_t stride = (h->slot_size - sizeof(qv_shm_frame)) / frame_array_count(h->fields);
    const uint32_t fields = meta->fields & h->fields;
    const uint32_t narrays = frame_array_count(fields);
    const size_t bytes = (size_t)meta->atom_count * sizeof(float);
    uint64_t checksum = 0x51ed270b27a3b41dULL;
    for (uint32_t a = 0; a < narrays; a++) checksum = qv_shm_checksum(arrays[a], bytes, checksum);

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t s = qv_shm_write_begin(&slot->seq);
    slot->frame_index = meta->frame_index;
    slot->step = meta->step;
    slot->time_ps = meta->time_ps;
    slot->atom_count = meta->atom_count;
    slot->fields = fields;
    slot->writer_pid = meta->writer_pid;
    slot->checksum = checksum;
    slot->publish_unix_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    memcpy(slot->box, meta->box, sizeof(slot->box));
    slot->potential_energy = meta->potential_energy;
    slot->kinetic_energy = meta->kinetic_energy;
    slot->temperature = meta->temperature;
    slot->user_energy = meta->user_energy;
    slot->user_work = meta->user_work;
    char *data = (char *)slot + sizeof(qv_shm_frame);
    for (uint32_t a = 0; a < narrays; a++) memcpy(data + a * stride, arrays[a], bytes);
    qv_shm_write_end(&slot->seq, s);
    atomic_store_explicit(&h->frames_published, meta->frame_index + 1u, memory_order_release);
}

static void frame_to_info(const qv_shm_frame *slot, qv_shm_frame_info *meta) {
    meta->frame_index = slot->frame_index;
    meta->step = slot->step;
    meta->time_ps = slot->time_ps;
    meta->atom_count = slot->atom_count;
    meta->fields = slot->fields;
    meta->writer_pid = slot->writer_pid;
    meta->reserved0 = 0;
    meta->checksum = slot->checksum;
    meta->publish_unix_ns = slot->publish_unix_ns;
    memcpy(meta->box, slot->box, sizeof(meta->box));
    meta->potential_energy = slot->potential_energy;
    meta->kinetic_energy = slot->kinetic_energy;
    meta->temperature = slot->temperature;
    meta->user_energy = slot->user_energy;
    meta->user_work = slot->user_work;
}

int qv_shm_read_frame(const void *cbase, uint64_t frame_index, qv_shm_frame_info *meta, float *const *arrays,
                      uint32_t capacity, int (*writer_alive)(int32_t pid)) {
    void *base = (void *)cbase;
    qv_shm_header *h = base;
    if (frame_index >= atomic_load_explicit(&h->frames_published, memory_order_acquire)) return QV_SHM_READ_EMPTY;
    qv_shm_frame *slot = qv_shm_frame_slot(base, (uint32_t)(frame_index % h->slot_count));
    const uint64_t s1 = atomic_load_explicit(&slot->seq, memory_order_acquire);
    if (s1 == 0) return QV_SHM_READ_EMPTY;
    if (s1 & 1u) {
        int32_t pid = *(volatile int32_t *)&slot->writer_pid;
        return (writer_alive == NULL || writer_alive(pid)) ? QV_SHM_READ_BUSY : QV_SHM_READ_ABANDONED;
    }
    frame_to_info(slot, meta);
    int status = QV_SHM_READ_OK;
    const uint32_t fields = meta->fields & h->fields;
    if (meta->frame_index != frame_index) status = QV_SHM_READ_LAPPED;
    else if (meta->atom_count > capacity || meta->atom_count > h->atom_capacity || fields != meta->fields)
        status = QV_SHM_READ_CORRUPT;
    else {
        const uint64_t stride = (h->slot_size - sizeof(qv_shm_frame)) / frame_array_count(h->fields);
        const char *data = (const char *)slot + sizeof(qv_shm_frame);
        const size_t bytes = (size_t)meta->atom_count * sizeof(float);
        for (uint32_t a = 0; a < frame_array_count(fields); a++) memcpy(arrays[a], data + a * stride, bytes);
    }
    atomic_thread_fence(memory_order_acquire);
    const uint64_t s2 = atomic_load_explicit(&slot->seq, memory_order_relaxed);
    if (s1 != s2) return QV_SHM_READ_TORN;
    if (status != QV_SHM_READ_OK) return status;
    uint64_t checksum = 0x51ed270b27a3b41dULL;
    const size_t bytes = (size_t)meta->atom_count * sizeof(float);
    for (uint32_t a = 0; a < frame_array_count(fields); a++) checksum = qv_shm_checksum(arrays[a], bytes, checksum);
    return checksum == meta->checksum ? QV_SHM_READ_OK : QV_SHM_READ_CORRUPT;
}

int qv_shm_read_frame_info(const void *cbase, uint64_t frame_index, qv_shm_frame_info *meta, int (*writer_alive)(int32_t pid)) {
    void *base = (void *)cbase;
    qv_shm_header *h = base;
    if (frame_index >= atomic_load_explicit(&h->frames_published, memory_order_acquire)) return QV_SHM_READ_EMPTY;
    qv_shm_frame *slot = qv_shm_frame_slot(base, (uint32_t)(frame_index % h->slot_count));
    const uint64_t s1 = atomic_load_explicit(&slot->seq, memory_order_acquire);
    if (s1 == 0) return QV_SHM_READ_EMPTY;
    if (s1 & 1u) {
        int32_t pid = *(volatile int32_t *)&slot->writer_pid;
        return (writer_alive == NULL || writer_alive(pid)) ? QV_SHM_READ_BUSY : QV_SHM_READ_ABANDONED;
    }
    frame_to_info(slot, meta);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&slot->seq, memory_order_relaxed) != s1) return QV_SHM_READ_TORN;
    return meta->frame_index == frame_index ? QV_SHM_READ_OK : QV_SHM_READ_LAPPED;
}

static uint64_t snapshot_checksum(uint32_t n, const float *const *arrays6, const int32_t *const *images3) {
    uint64_t c = 0x2545f4914f6cdd1dULL;
    for (int a = 0; a < 6; a++) c = qv_shm_checksum(arrays6[a], (size_t)n * 4u, c);
    for (int a = 0; a < 3; a++) c = qv_shm_checksum(images3[a], (size_t)n * 4u, c);
    return c;
}

void qv_shm_write_snapshot(void *base, const qv_shm_snapshot_info *meta, const float *const *arrays6, const int32_t *const *images3) {
    qv_shm_header *h = base;
    const uint64_t index = atomic_load_explicit(&h->snapshots_written, memory_order_relaxed);
    qv_shm_snapshot *buf = snapshot_buffer(base, (uint32_t)(index % 2u));
    const uint64_t stride = (h->state_size - sizeof(qv_shm_snapshot)) / 9u;
    const size_t bytes = (size_t)meta->atom_count * 4u;
    const uint64_t checksum = snapshot_checksum(meta->atom_count, arrays6, images3);
    uint64_t s = qv_shm_write_begin(&buf->seq);
    buf->snapshot_index = index;
    buf->step = meta->step;
    buf->time_ps = meta->time_ps;
    buf->atom_count = meta->atom_count;
    buf->writer_pid = meta->writer_pid;
    buf->checksum = checksum;
    memcpy(buf->box, meta->box, sizeof(buf->box));
    buf->frames_published = meta->frames_published;
    char *data = (char *)buf + sizeof(qv_shm_snapshot);
    for (int a = 0; a < 6; a++) memcpy(data + a * stride, arrays6[a], bytes);
    for (int a = 0; a < 3; a++) memcpy(data + (6 + a) * stride, images3[a], bytes);
    qv_shm_write_end(&buf->seq, s);
    atomic_store_explicit(&h->snapshots_written, index + 1u, memory_order_release);
}

static int read_snapshot_buffer(void *base, uint64_t index, qv_shm_snapshot_info *meta, float *const *arrays6,
                                int32_t *const *images3, uint32_t capacity, int (*writer_alive)(int32_t)) {
    qv_shm_header *h = base;
    qv_shm_snapshot *buf = snapshot_buffer(base, (uint32_t)(index % 2u));
    const uint64_t s1 = atomic_load_explicit(&buf->seq, memory_order_acquire);
    if (s1 == 0) return QV_SHM_READ_EMPTY;
    if (s1 & 1u) {
        int32_t pid = *(volatile int32_t *)&buf->writer_pid;
        return (writer_alive == NULL || writer_alive(pid)) ? QV_SHM_READ_BUSY : QV_SHM_READ_ABANDONED;
    }
    meta->snapshot_index = buf->snapshot_index;
    meta->step = buf->step;
    meta->time_ps = buf->time_ps;
    meta->atom_count = buf->atom_count;
    meta->writer_pid = buf->writer_pid;
    meta->checksum = buf->checksum;
    memcpy(meta->box, buf->box, sizeof(meta->box));
    meta->frames_published = buf->frames_published;
    int status = QV_SHM_READ_OK;
    if (meta->snapshot_index != index) status = QV_SHM_READ_LAPPED;
    else if (meta->atom_count > capacity || meta->atom_count > h->atom_capacity) status = QV_SHM_READ_CORRUPT;
    else {
        const uint64_t stride = (h->state_size - sizeof(qv_shm_snapshot)) / 9u;
        const char *data = (const char *)buf + sizeof(qv_shm_snapshot);
        const size_t bytes = (size_t)meta->atom_count * 4u;
        for (int a = 0; a < 6; a++) memcpy(arrays6[a], data + a * stride, bytes);
        for (int a = 0; a < 3; a++) memcpy(images3[a], data + (6 + a) * stride, bytes);
    }
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&buf->seq, memory_order_relaxed) != s1) return QV_SHM_READ_TORN;
    if (status != QV_SHM_READ_OK) return status;
    return snapshot_checksum(meta->atom_count, (const float *const *)arrays6, (const int32_t *const *)images3) == meta->checksum
               ? QV_SHM_READ_OK : QV_SHM_READ_CORRUPT;
}

int qv_shm_read_snapshot(const void *cbase, qv_shm_snapshot_info *meta, float *const *arrays6, int32_t *const *images3,
                         uint32_t capacity, int (*writer_alive)(int32_t pid)) {
    void *base = (void *)cbase;
    qv_shm_header *h = base;
    for (int attempt = 0; attempt < 1000; attempt++) {
        const uint64_t written = atomic_load_explicit(&h->snapshots_written, memory_order_acquire);
        if (written == 0) return QV_SHM_READ_EMPTY;
        int r = read_snapshot_buffer(base, written - 1u, meta, arrays6, images3, capacity, writer_alive);
        if (r == QV_SHM_READ_OK) return r;
        if (r == QV_SHM_READ_BUSY || r == QV_SHM_READ_TORN || r == QV_SHM_READ_LAPPED) continue;
        /* the newest was abandoned mid-write or is corrupt: the older buffer holds the previous one */
        if (written >= 2u) {
            r = read_snapshot_buffer(base, written - 2u, meta, arrays6, images3, capacity, writer_alive);
            if (r == QV_SHM_READ_OK) return r;
        }
        return QV_SHM_READ_EMPTY;
    }
    return QV_SHM_READ_BUSY;
}

int qv_shm_pid_alive(int32_t pid) {
    if (pid <= 0) return 0;
    if (kill(pid, 0) == 0) return 1;
    return errno == EPERM;
}

void qv_shm_read_header(const void *cbase, qv_shm_header_info *out) {
    qv_shm_header *h = (qv_shm_header *)cbase;
    out->layout_version = h->layout_version;
    out->atom_capacity = h->atom_capacity;
    out->slot_count = h->slot_count;
    out->worker_capacity = h->worker_capacity;
    out->fields = h->fields;
    out->creator_pid = h->creator_pid;
    out->total_size = h->total_size;
    out->created_unix_ns = h->created_unix_ns;
    out->frames_published = atomic_load_explicit(&h->frames_published, memory_order_acquire);
    out->snapshots_written = atomic_load_explicit(&h->snapshots_written, memory_order_acquire);
}

#define WORKER(base, i) qv_shm_worker_at((void *)(base), (i))

int32_t qv_shm_worker_pid(const void *base, uint32_t i) { return atomic_load(&WORKER(base, i)->pid); }
void qv_shm_worker_set_pid(void *base, uint32_t i, int32_t pid) { atomic_store(&WORKER(base, i)->pid, pid); }
uint32_t qv_shm_worker_state(const void *base, uint32_t i) { return atomic_load(&WORKER(base, i)->state); }
void qv_shm_worker_set_state(void *base, uint32_t i, uint32_t state) { atomic_store(&WORKER(base, i)->state, state); }
uint64_t qv_shm_worker_progress(const void *base, uint32_t i) { return atomic_load(&WORKER(base, i)->progress); }
uint64_t qv_shm_worker_heartbeat_ns(const void *base, uint32_t i) { return atomic_load(&WORKER(base, i)->heartbeat_ns); }
void qv_shm_worker_advance(void *base, uint32_t i, uint64_t now_ns) {
    atomic_fetch_add(&WORKER(base, i)->progress, 1u);
    atomic_store(&WORKER(base, i)->heartbeat_ns, now_ns);
}
uint32_t qv_shm_worker_restarts(const void *base, uint32_t i) { return atomic_load(&WORKER(base, i)->restarts); }
void qv_shm_worker_set_restarts(void *base, uint32_t i, uint32_t r) { atomic_store(&WORKER(base, i)->restarts, r); }
void qv_shm_worker_set_identity(void *base, uint32_t i, uint32_t role, const char *name) {
    qv_shm_worker *w = WORKER(base, i);
    w->role = role;
    memset(w->name, 0, sizeof(w->name));
    if (name) strncpy(w->name, name, sizeof(w->name) - 1);
}
uint32_t qv_shm_worker_role(const void *base, uint32_t i) { return WORKER(base, i)->role; }
void qv_shm_worker_name(const void *base, uint32_t i, char *out) {
    memcpy(out, WORKER(base, i)->name, 32);
    out[31] = 0;
}
