/* Helpers shared by the op wrappers (internal to engine/ops/). */
#ifndef UNCLIP_OPS_OP_UTIL_H
#define UNCLIP_OPS_OP_UTIL_H

#include "ops/tensor.h"
#include "shaders.h"

#include <stdbool.h>
#include <stdint.h>

/* Grid for n invocations in groups of `local`: x up to 65535 groups, the rest in y
 * (shaders rebuild the flat index with flat_index()). */
void unclip__grid_1d(uint64_t n, uint32_t local, uint32_t *gx, uint32_t *gy);

/* Fails with UNCLIP_E_INTERNAL naming `op` unless t is non-NULL, allocated, F32 (or F16 when
 * allow_f16) and holds `numel` elements (numel < 0: any). */
unclip_status unclip__check_tensor(struct unclip_vk *vk, const char *op, const char *what,
                                   const struct unclip_tensor *t, int64_t numel, bool allow_f16);

/* Fails unless t has exactly the given ndim and shape. */
unclip_status unclip__check_shape(struct unclip_vk *vk, const char *op, const char *what,
                                  const struct unclip_tensor *t, int32_t ndim,
                                  const int64_t *shape);

/* The largest element index an op may address in a 32-bit shader index. */
#define UNCLIP_MAX_INDEX ((int64_t)UINT32_MAX)

#endif
