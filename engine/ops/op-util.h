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

/* lavapipe's LLVM major version from the device name ("llvmpipe (LLVM 19.1.7, 256 bits)" ->
 * 19); 0 when the name carries none. The same shader compiles differently per LLVM, so the
 * tile tables of linear.c and conv.c have rows keyed by it. */
int unclip__llvm_major(const struct unclip_vk *vk);

/* Tile sizes for tuning without a rebuild: parses "TM,TN,LX,LY" from the environment variable
 * `name` into t[4]; false when unset or out of range (TM, TN 1..64; LX * LY 1..1024). */
bool unclip__tiles_from_env(const char *name, uint32_t t[4]);

/* The largest element index an op may address in a 32-bit shader index. */
#define UNCLIP_MAX_INDEX ((int64_t)UINT32_MAX)

/* ---- Work larger than one binding ----
 * One storage binding sees at most max_storage_buffer_range bytes (128 MiB on lavapipe), and
 * Karlo's super-resolution maps are larger ([1, 960, 256, 256] is 240 MiB). An op whose
 * tensors do not all fit splits the flat range of its outputs into chunks such that the
 * elements each chunk reads or writes fit one binding per tensor; every tensor is then bound
 * from a 256-byte aligned offset (its base element) and the shader subtracts that base. */

/* Test hook (not API): when non-zero and below the device's range, ops split as if one
 * binding saw only this many bytes, so tests reach the split paths with small tensors.
 * Values below 1024 are raised to 1024. */
extern uint64_t unclip__ops_bind_limit_override;
/* The byte limit ops split by: the device's max_storage_buffer_range or the override. */
uint64_t unclip__ops_bind_limit(const struct unclip_vk *vk);

/* Element range [*lo, *hi] that a strided 4-D access (element offset `off`, strides >= 0)
 * can touch for the row-major flat indices [i0, i1) (i0 < i1) of `shape`. Exact in the
 * dimensions that stay fixed over the range, conservative (full extent) below the first one
 * that changes. */
void unclip__strided_range(const int64_t shape[4], int64_t off, const int64_t stride[4],
                           int64_t i0, int64_t i1, int64_t *lo, int64_t *hi);

/* Splitting driver: tensors t[0..n_t), each touched over the element range range(k, i0, i1)
 * by the outputs [i0, i1) of a flat index space of n. When every tensor fits the limit,
 * run() is called once for [0, n) with whole-tensor bindings (bases 0); otherwise for
 * consecutive chunks, each as large as the bindings allow, with window bindings. */
#define UNCLIP_SPLIT_MAX 6
struct unclip_split {
    int n_t;
    const struct unclip_tensor *t[UNCLIP_SPLIT_MAX];
    void (*range)(const void *user, int k, int64_t i0, int64_t i1, int64_t *lo, int64_t *hi);
    unclip_status (*run)(void *user, int64_t i0, int64_t i1, const struct unclip_vk_bind *b,
                         const int64_t *base);
    void *user;
};
unclip_status unclip__split_run(struct unclip_vk *vk, const char *op, int64_t n,
                                const struct unclip_split *s);

/* A 1-D shader over the outputs [i0, i1) of a flat index space whose push constants start
 * with struct unclip_ew_head: the count, the first index, one base element per tensor (the
 * shader indexes tensor k with global index - base[k]; uint arithmetic wraps), padding to
 * 32 bytes so that a following uvec4 is 16-aligned as std430 wants; then the op's fields. */
struct unclip_ew_head {
    uint32_t n, i0, base[3], pad[3];
};
struct unclip_ew_job {
    struct unclip_vk *vk;
    int shader;
    int n_t;                /* bindings (tensors), <= 3 */
    uint64_t work_per_elem; /* work units per output    */
    void *pc;               /* begins with struct unclip_ew_head */
    uint32_t pc_bytes;
};
/* An unclip_split run() for such shaders (user = the job): fills the head, dispatches
 * 256-invocation groups over the chunk. */
unclip_status unclip__ew_chunk(void *user, int64_t i0, int64_t i1, const struct unclip_vk_bind *b,
                               const int64_t *base);

/* Units (samples, rows, groups) of `unit_elems` F32 elements each, contiguous: how many fit
 * one binding window wherever a chunk starts (its base is aligned down to 256 bytes). 0 when
 * not even one unit fits. */
int64_t unclip__units_per_window(const struct unclip_vk *vk, int64_t unit_elems);

#endif
