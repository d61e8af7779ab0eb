/* Weights of one model component: a validated safetensors file and device uploads.
 *
 * A model loader opens its component's weight file once, asks for each tensor it expects with
 * the exact shape it expects, and gets a device tensor it owns:
 *
 *     struct unclip_weights *w;
 *     st = unclip__weights_open(vk, path, "decoder", &opts, &w, err);
 *     int64_t shape[2] = {cfg.hidden, cfg.in};
 *     st = unclip__weights_get(w, "conv_in.weight", 4, shape4, &m->conv_in_w, err);
 *     ...
 *     st = unclip__weights_check_all_used(w, err);   (optional: catches unread tensors)
 *     unclip__weights_free(w);                        (tensors already handed out stay valid)
 *
 * Checks (UNCLIP_E_MODEL, message starting with the display name or file):
 *     "<name>: missing tensor 'x'"
 *     "<name>: tensor 'x': shape [a, b], expected [c, d]"
 *     "<name>: tensor 'x': dtype I64, expected F32, F16 or BF16"
 * On-disk dtypes F32, F16, BF16 are accepted; the device copy is F16 (default) or F32
 * (opts.fp32), or what unclip__weights_get_as() asks for. Conversions round to nearest even.
 * Uploads go through bounded host staging (no full-size host copy of large tensors).
 *
 * Threading: one unclip_weights is used from one thread at a time (it uses vk).
 */
#ifndef UNCLIP_MODELS_WEIGHTS_H
#define UNCLIP_MODELS_WEIGHTS_H

#include "core/error.h"
#include "io/safetensors.h"
#include "ops/tensor.h"

#include <stdbool.h>
#include <stdint.h>

struct unclip_weights;

struct unclip_weights_opts {
    bool fp32; /* device weights as F32 instead of F16 */
};

/* Opens and validates the file. display_name (may be NULL: the path) prefixes messages,
 * e.g. "decoder/diffusion_pytorch_model.safetensors". vk is borrowed and must outlive w;
 * vk may be NULL when only host getters are used. opts may be NULL (defaults). */
unclip_status unclip__weights_open(struct unclip_vk *vk, const char *path,
                                   const char *display_name,
                                   const struct unclip_weights_opts *opts,
                                   struct unclip_weights **out, struct unclip_err *err);
void unclip__weights_free(struct unclip_weights *w); /* NULL is a no-op */

const struct unclip_st_file *unclip__weights_file(const struct unclip_weights *w);
const char *unclip__weights_name(const struct unclip_weights *w);
/* Device dtype that unclip__weights_get() uses (F16 or F32). */
enum unclip_dtype unclip__weights_dtype(const struct unclip_weights *w);

bool unclip__weights_has(const struct unclip_weights *w, const char *name);

/* Checks presence, float dtype and the exact shape (ndim 1..4 entries), then allocates *out
 * (owned by the caller; free with unclip__tensor_free) in the default device dtype and
 * uploads. */
unclip_status unclip__weights_get(struct unclip_weights *w, const char *name, int32_t ndim,
                                  const int64_t *shape, struct unclip_tensor *out,
                                  struct unclip_err *err);
/* Same with an explicit device dtype (F32 or F16), e.g. F32 for tensors an op reads as F32. */
unclip_status unclip__weights_get_as(struct unclip_weights *w, const char *name, int32_t ndim,
                                     const int64_t *shape, enum unclip_dtype dtype,
                                     struct unclip_tensor *out, struct unclip_err *err);
/* Checks the file shape (file_ndim may be up to UNCLIP_ST_MAX_DIMS) and uploads under another
 * shape of the same element count (dev_ndim 0..4), e.g. a [O, I, 1, 1] conv as [O, I].
 * dtype: F32, F16, or UNCLIP_DT_N for the default. */
unclip_status unclip__weights_get_reshaped(struct unclip_weights *w, const char *name,
                                           int32_t file_ndim, const int64_t *file_shape,
                                           int32_t dev_ndim, const int64_t *dev_shape,
                                           enum unclip_dtype dtype, struct unclip_tensor *out,
                                           struct unclip_err *err);
/* Host copy as floats (checks as above; shape may have up to UNCLIP_ST_MAX_DIMS entries,
 * ndim 0 for scalars). dst holds product(shape) floats. For small tensors (norm params,
 * clip_mean/clip_std, positional tables read on the host). Marks the tensor used. */
unclip_status unclip__weights_get_host(struct unclip_weights *w, const char *name, int32_t ndim,
                                       const int64_t *shape, float *dst,
                                       struct unclip_err *err);

/* Bytes uploaded to the device so far (sum of unclip__tensor_bytes of the tensors made). */
uint64_t unclip__weights_bytes_uploaded(const struct unclip_weights *w);
/* Number of tensors of the file not read yet by any getter. */
int32_t unclip__weights_unused_count(const struct unclip_weights *w);
/* UNCLIP_E_MODEL naming the first unread tensor(s) and the count when any tensor of the file
 * was never read (a loader that forgets a weight, or a file for another configuration). */
unclip_status unclip__weights_check_all_used(const struct unclip_weights *w,
                                             struct unclip_err *err);

#endif
