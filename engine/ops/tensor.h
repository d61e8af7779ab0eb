/* Device tensors.
 *
 * A tensor is a contiguous row-major array of up to 4 dimensions in one device buffer.
 * Activations are F32; weights are F32 or F16 (fp16 is read as packed pairs in uint32 words
 * and widened in the shader, so no 16-bit device feature is needed). Ops bind whole tensors
 * and address sub-blocks through element offsets and strides in push constants, so a
 * "view" is just (tensor, element offset, strides) at the op's interface.
 *
 * Ownership: unclip__tensor_new() allocates and the tensor owns its buffer;
 * unclip__tensor_free() releases it (NULL and a zeroed tensor are no-ops). Tensors are
 * plain structs passed by pointer; copying one copies the handle, not the data, and only one
 * copy may be freed.
 */
#ifndef UNCLIP_OPS_TENSOR_H
#define UNCLIP_OPS_TENSOR_H

#include "core/dtype.h"
#include "core/error.h"
#include "vk/vk.h"

#include <stdbool.h>
#include <stdint.h>

#define UNCLIP_MAX_DIMS 4

struct unclip_tensor {
    struct unclip_vk_buf *buf; /* owned */
    enum unclip_dtype dtype;   /* F32 or F16 */
    int32_t ndim;
    int64_t shape[UNCLIP_MAX_DIMS];
};

/* Number of elements (1 for ndim 0). */
int64_t unclip__tensor_numel(const struct unclip_tensor *t);
/* Bytes of the data (F16 rounded up to a multiple of 4 bytes). */
uint64_t unclip__tensor_bytes(const struct unclip_tensor *t);

/* Allocates an uninitialised tensor. shape has ndim (0..4) positive entries. */
unclip_status unclip__tensor_new(struct unclip_vk *vk, enum unclip_dtype dtype, int32_t ndim,
                                 const int64_t *shape, struct unclip_tensor *out);
void unclip__tensor_free(struct unclip_tensor *t);

/* Scratch tensors packed into one device allocation (an arena): each tensor is a view of it at
 * a 256-byte boundary (unclip__vk_buf_view), so a model's activations cost one allocation,
 * sized before it runs, instead of one pool block search per tensor. Specs with ndim < 0 are
 * skipped (optional tensors, left zeroed). On success *arena owns the memory: free every
 * tensor (unclip__tensor_free) before unclip__vk_buf_free(*arena). On failure nothing is
 * left allocated and the tensors are zeroed. */
struct unclip_tensor_spec {
    struct unclip_tensor *t;
    enum unclip_dtype dtype;
    int32_t ndim;
    int64_t shape[UNCLIP_MAX_DIMS];
};
unclip_status unclip__tensor_arena(struct unclip_vk *vk, const struct unclip_tensor_spec *specs,
                                   int32_t n, struct unclip_vk_buf **arena);

/* Host float data <-> tensor. numel floats; converted to/from F16 when the tensor is F16. */
unclip_status unclip__tensor_upload_f32(struct unclip_vk *vk, struct unclip_tensor *t,
                                        const float *src);
unclip_status unclip__tensor_download_f32(struct unclip_vk *vk, const struct unclip_tensor *t,
                                          float *dst);

/* Binding helper: the whole tensor, and the rest of its allocation up to the binding limit. */
struct unclip_vk_bind unclip__tensor_bind(const struct unclip_tensor *t);

/* A binding of part of a tensor: the elements [lo, hi] (0 <= lo <= hi < numel), starting
 * at the 256-byte boundary at or below element lo (binding offsets must be 256-aligned);
 * *base receives the element index the binding starts at (shaders index with i - base).
 * When the whole tensor is at most `limit` bytes it is bound whole (unclip__tensor_bind,
 * base 0). false when the window is larger than `limit` bytes (nothing written). */
bool unclip__tensor_window(const struct unclip_tensor *t, int64_t lo, int64_t hi,
                           uint64_t limit, struct unclip_vk_bind *b, int64_t *base);

/* Shape text like "[2, 77, 768]" into buf (for messages). Returns buf. */
const char *unclip__shape_str(const struct unclip_tensor *t, char *buf, size_t size);

#endif
