/* safetensors files: validated, memory-mapped, zero-copy reading, and an atomic writer.
 *
 * Format: 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON (the header), then the data
 * buffer. The header is an object: "__metadata__" (optional) maps strings to strings; every
 * other key is a tensor name mapping to {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
 * with offsets relative to the start of the data buffer.
 *
 * unclip__st_open() validates everything before it returns a file: header length (0, > 100 MiB,
 * past the end), UTF-8, JSON object, duplicate keys at any level, metadata values, dtype names,
 * shapes (non-negative integers, at most UNCLIP_ST_MAX_DIMS, product fits), data_offsets
 * (2 integers, begin <= end, inside the buffer), byte size == dtype size x product(shape), and
 * that the tensors tile the data buffer exactly (no overlap, no gap, no trailing bytes). So a
 * returned tensor's data pointer always points at nbytes readable bytes. Errors are
 * UNCLIP_E_FORMAT (malformed file; the message names the file, the tensor and the offset when
 * one is involved), UNCLIP_E_IO (cannot open/map), UNCLIP_E_NOMEM, UNCLIP_E_ARG.
 *
 * PyTorch checkpoints (.bin/.pt/.pth/.ckpt, or files starting with the zip or pickle magic) are
 * refused without being parsed, with a message saying to convert them to safetensors.
 *
 * Lifetime: the file owns the mapping, the names and the tensor records; every pointer returned
 * by the getters stays valid until unclip__st_close(). Data pointers point into the read-only
 * mapping (zero copy) and are NOT necessarily aligned to the element size: read them with
 * memcpy or unclip__st_to_f32()/unclip__st_to_i64(). The mapping is private and read-only.
 * A file may be read from several threads once opened.
 */
#ifndef UNCLIP_IO_SAFETENSORS_H
#define UNCLIP_IO_SAFETENSORS_H

#include "core/dtype.h"
#include "core/error.h"

#include <stdbool.h>
#include <stdint.h>

#define UNCLIP_ST_MAX_DIMS 8
/* Largest header accepted (the safetensors reference uses the same limit). */
#define UNCLIP_ST_MAX_HEADER (100u * 1024u * 1024u)

struct unclip_st_file;

struct unclip_st_tensor {
    const char *name;          /* owned by the file                                        */
    enum unclip_dtype dtype;
    int32_t ndim;              /* 0..UNCLIP_ST_MAX_DIMS; 0 is a scalar (numel 1)           */
    int64_t shape[UNCLIP_ST_MAX_DIMS]; /* entries >= 0; unused entries are 0              */
    int64_t numel;             /* product of shape (1 for ndim 0; may be 0)               */
    const void *data;          /* into the mapping; nbytes readable; maybe unaligned      */
    uint64_t nbytes;           /* numel * dtype size                                       */
    uint64_t file_offset;      /* byte offset of data in the file (for messages)           */
};

/* Opens and validates `path`. On success *out is a file to close with unclip__st_close(). */
unclip_status unclip__st_open(const char *path, struct unclip_st_file **out,
                              struct unclip_err *err);
/* Validates an in-memory image of a file (bytes are borrowed and must outlive the file).
 * `name` is used in messages. Same checks as unclip__st_open except the checkpoint refusal
 * by file name. */
unclip_status unclip__st_open_memory(const void *bytes, uint64_t size, const char *name,
                                     struct unclip_st_file **out, struct unclip_err *err);
/* Unmaps and frees. NULL is a no-op. */
void unclip__st_close(struct unclip_st_file *f);

/* The path (or name) given at open; owned by the file. */
const char *unclip__st_path(const struct unclip_st_file *f);

/* Tensors in order of their data offsets (i.e. file order). */
int32_t unclip__st_count(const struct unclip_st_file *f);
/* i in 0..count-1; NULL when out of range. */
const struct unclip_st_tensor *unclip__st_at(const struct unclip_st_file *f, int32_t i);
/* NULL when there is no tensor of that name. */
const struct unclip_st_tensor *unclip__st_find(const struct unclip_st_file *f, const char *name);

/* "__metadata__" value for key, NULL when absent. Owned by the file. */
const char *unclip__st_metadata(const struct unclip_st_file *f, const char *key);
int32_t unclip__st_metadata_count(const struct unclip_st_file *f);
/* i-th metadata key/value (header order); returns false when out of range. */
bool unclip__st_metadata_at(const struct unclip_st_file *f, int32_t i, const char **key,
                            const char **value);

/* Element data as floats: dst holds t->numel floats. F32/F16/BF16 are converted exactly;
 * I64/I32/U8/BOOL are converted by value (I64/I32 beyond 2^24 lose precision). Never fails
 * for a tensor of an opened file; returns UNCLIP_E_ARG for a NULL argument. */
unclip_status unclip__st_to_f32(const struct unclip_st_tensor *t, float *dst,
                                struct unclip_err *err);
/* Integer data: dst holds t->numel int64 values. Only I64/I32/U8/BOOL (UNCLIP_E_FORMAT for
 * float tensors, naming the tensor). */
unclip_status unclip__st_to_i64(const struct unclip_st_tensor *t, int64_t *dst,
                                struct unclip_err *err);

/* Shape text "[2, 77, 32]" into buf; returns buf. */
const char *unclip__st_shape_str(int32_t ndim, const int64_t *shape, char *buf, size_t size);

/* True when the name says PyTorch checkpoint (.bin .pt .pth .ckpt .pkl) or the first bytes are
 * the zip ("PK\3\4") or pickle (0x80, protocol 2..5) magic. head may be NULL (name only). */
bool unclip__st_looks_like_checkpoint(const char *path, const void *head, uint64_t head_size);

/* ---- writer -------------------------------------------------------------------------------
 *
 * Collects tensors in memory (data is copied at add time), then writes a valid file: the
 * header is produced by json-glib and padded with spaces to a multiple of 8 bytes, tensors are
 * laid out by decreasing element size (then insertion order) so every tensor is aligned to its
 * element size in the file. Writing goes to "<path>.tmp-XXXXXX" in the same folder, fsync,
 * then rename over `path`, so readers never see a partial file. Names must be unique, non-empty
 * and not "__metadata__". */
struct unclip_st_writer;

unclip_status unclip__st_writer_new(struct unclip_st_writer **out, struct unclip_err *err);
void unclip__st_writer_free(struct unclip_st_writer *w); /* NULL is a no-op */

/* Adds raw data already in `dtype` (any dtype; ndim 0..UNCLIP_ST_MAX_DIMS, shape >= 0):
 * numel * dtype size bytes are copied from data (data may be NULL when numel is 0). */
unclip_status unclip__st_writer_add(struct unclip_st_writer *w, const char *name,
                                    enum unclip_dtype dtype, int32_t ndim, const int64_t *shape,
                                    const void *data, struct unclip_err *err);
/* Adds float data stored as `dtype` (F32, F16 or BF16; converted with round to nearest even). */
unclip_status unclip__st_writer_add_f32(struct unclip_st_writer *w, const char *name,
                                        enum unclip_dtype dtype, int32_t ndim,
                                        const int64_t *shape, const float *src,
                                        struct unclip_err *err);
/* Sets a "__metadata__" entry (replaces an earlier value of the same key). Copies both. */
unclip_status unclip__st_writer_set_metadata(struct unclip_st_writer *w, const char *key,
                                             const char *value, struct unclip_err *err);
/* Writes the file atomically (see above). The writer stays usable (may be written again). */
unclip_status unclip__st_writer_write(struct unclip_st_writer *w, const char *path,
                                      struct unclip_err *err);

#endif
