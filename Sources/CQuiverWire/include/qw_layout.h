#ifndef QW_LAYOUT_H
#define QW_LAYOUT_H
/* The fixed byte layouts of the Quiver wire protocol, version 1 (docs/protocol.md). Swift reads and
 * writes these structs directly, so the layout is defined once, here, and checked at compile time.
 * Every multi-byte value on the wire is little-endian; the reference implementation supports
 * little-endian hosts only (x86-64 and arm64 Linux and macOS). */
#include <stddef.h>
#include <stdint.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire code assumes a little-endian host");

/* The bytes "QVWR" read as a little-endian uint32. */
#define QW_MAGIC 0x52575651u
#define QW_VERSION 1u

/* Message kinds (byte 6 of every message). */
enum {
    QW_KIND_FRAME = 1,
    QW_KIND_TOPOLOGY = 2
};

/* Field codecs (byte 2 of a field entry). */
enum {
    QW_CODEC_RAW = 0,
    QW_CODEC_LOSSLESS = 1,
    QW_CODEC_QUANTIZED = 2
};

/* The first 24 bytes of every message, whatever its kind. */
typedef struct qw_prefix {
    uint32_t magic;        /* QW_MAGIC */
    uint16_t version;      /* QW_VERSION */
    uint8_t kind;          /* QW_KIND_* */
    uint8_t flags;         /* reserved: writers write 0, readers ignore */
    uint16_t header_size;  /* bytes from the start of the message to the field table */
    uint16_t field_count;  /* entries in the field table */
    uint32_t atom_count;
    uint64_t payload_size; /* bytes after the header: field table plus field data */
} qw_prefix;

/* Frame header: 64 bytes. The checksum is the last 4 bytes of every header. */
typedef struct qw_frame_header {
    qw_prefix prefix;
    uint64_t frame_index;
    int64_t step;
    double time;           /* ps */
    uint8_t reserved[12];  /* writers write 0, readers ignore */
    uint32_t checksum;     /* CRC-32C of the message without these 4 bytes */
} qw_frame_header;

/* Topology header: 32 bytes. */
typedef struct qw_topology_header {
    qw_prefix prefix;
    uint32_t reserved;     /* writers write 0, readers ignore */
    uint32_t checksum;
} qw_topology_header;

/* One entry of the field table: 16 bytes. */
typedef struct qw_field_entry {
    uint16_t id;           /* what the field holds (docs/protocol.md); unknown ids are skipped */
    uint8_t codec;         /* QW_CODEC_* */
    uint8_t flags;         /* reserved: writers write 0, readers ignore */
    uint32_t count;        /* elements (atoms, names, bonds, scalars) */
    uint64_t size;         /* bytes of encoded data */
} qw_field_entry;

_Static_assert(sizeof(qw_prefix) == 24, "prefix layout");
_Static_assert(offsetof(qw_prefix, version) == 4, "prefix layout");
_Static_assert(offsetof(qw_prefix, kind) == 6, "prefix layout");
_Static_assert(offsetof(qw_prefix, flags) == 7, "prefix layout");
_Static_assert(offsetof(qw_prefix, header_size) == 8, "prefix layout");
_Static_assert(offsetof(qw_prefix, field_count) == 10, "prefix layout");
_Static_assert(offsetof(qw_prefix, atom_count) == 12, "prefix layout");
_Static_assert(offsetof(qw_prefix, payload_size) == 16, "prefix layout");
_Static_assert(sizeof(qw_frame_header) == 64, "frame header layout");
_Static_assert(offsetof(qw_frame_header, frame_index) == 24, "frame header layout");
_Static_assert(offsetof(qw_frame_header, step) == 32, "frame header layout");
_Static_assert(offsetof(qw_frame_header, time) == 40, "frame header layout");
_Static_assert(offsetof(qw_frame_header, reserved) == 48, "frame header layout");
_Static_assert(offsetof(qw_frame_header, checksum) == 60, "frame header layout");
_Static_assert(sizeof(qw_topology_header) == 32, "topology header layout");
_Static_assert(offsetof(qw_topology_header, reserved) == 24, "topology header layout");
_Static_assert(offsetof(qw_topology_header, checksum) == 28, "topology header layout");
_Static_assert(sizeof(qw_field_entry) == 16, "field entry layout");
_Static_assert(offsetof(qw_field_entry, codec) == 2, "field entry layout");
_Static_assert(offsetof(qw_field_entry, flags) == 3, "field entry layout");
_Static_assert(offsetof(qw_field_entry, count) == 4, "field entry layout");
_Static_assert(offsetof(qw_field_entry, size) == 8, "field entry layout");

#endif
