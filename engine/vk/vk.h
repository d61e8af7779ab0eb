/* Vulkan runtime: device choice, memory, pipelines, recording and bounded submissions.
 *
 * This header deliberately exposes no Vulkan types: ops and models see opaque handles, and
 * engine/vk/ is the only place that includes vulkan.h.
 *
 * Execution model. unclip__vk_dispatch() records a compute dispatch into the current command
 * buffer, followed by a full compute->compute memory barrier, so dispatches observe each
 * other's writes in recording order. Work is submitted when the recorded work passes a bound
 * (UNCLIP_VK_WORK_BOUND by default) or the dispatch count fills the batch; the submission is
 * waited on with a fence timeout, then the cancel callback is asked whether to go on. So no
 * submission runs longer than the bound, and a cancel takes effect within one submission.
 * Uploads and downloads finish pending work first, so host and device never race.
 *
 * Memory. A buffer of 4 MiB or more gets a device allocation of its own, of its size; smaller
 * buffers are sub-allocated (best fit) from shared blocks of 4-64 MiB (device-local first,
 * then any host-visible type). A block is released when its last buffer is freed. Every
 * buffer offset is aligned to 256 bytes. A view (unclip__vk_buf_view) is a buffer handle for
 * a range of another buffer: an arena allocated once can be handed out by offset. One binding
 * may see at most max_storage_buffer_range bytes (128 MiB on lavapipe); ops that need more
 * must split their work.
 *
 * Threading: one unclip_vk is used from one thread at a time.
 */
#ifndef UNCLIP_VK_VK_H
#define UNCLIP_VK_VK_H

#include "core/error.h"

#include <stdbool.h>
#include <stdint.h>

struct unclip_vk;
struct unclip_vk_buf;

#define UNCLIP_VK_MAX_BINDS 8
#define UNCLIP_VK_MAX_PUSH 128
#define UNCLIP_VK_MAX_SPEC 8
/* Default work per submission, in "work units" (about one multiply-add each). */
#define UNCLIP_VK_WORK_BOUND (1ull << 31)

struct unclip_vk_params {
    int32_t device_index;      /* -1: pick the best usable device                         */
    const char *device_name;   /* when non-NULL: the first usable device whose name
                                  contains this text (case-insensitive); borrowed        */
    bool validation;           /* enable VK_LAYER_KHRONOS_validation when installed; the
                                  environment variable UNCLIP_VALIDATION=1 forces it on     */
    uint64_t work_bound;       /* work units per submission; 0: UNCLIP_VK_WORK_BOUND      */
    uint32_t fence_timeout_ms; /* per submission; 0: 60000                                */
    bool (*cancel_cb)(void *user_data); /* optional; true: stop at the next boundary      */
    void *user_data;
};

struct unclip_vk_params unclip__vk_params_default(void);

/* Creates instance, device and queue. Messages go to err.
 *
 * Environment (tests, CI, debugging):
 *   UNCLIP_WORK_BOUND=N      work units per submission when params.work_bound is 0 (smaller
 *                            submissions: more cancel points, tighter watchdog checks).
 *   UNCLIP_VALIDATION=1      the Khronos validation layer for every context (as
 *                            params.validation). With the layer on, its errors and warnings
 *                            are printed to stderr and counted, and the next
 *                            unclip__vk_finish() or download fails with UNCLIP_E_VULKAN
 *                            quoting the first one: validation messages are bugs.
 *   UNCLIP_DEVICE_BUDGET=N   N bytes (suffix K, M or G allowed) as the device memory budget
 *                            of unclip__vk_budget(), to test out-of-memory paths on a big
 *                            machine; a malformed value fails with UNCLIP_E_ARG. */
unclip_status unclip__vk_new(const struct unclip_vk_params *params, struct unclip_vk **out,
                             struct unclip_err *err);
/* Waits for pending work and destroys everything; buffers still alive are released too.
 * NULL is a no-op. */
void unclip__vk_free(struct unclip_vk *vk);

/* The context's error record: functions below that take only `vk` write into it. */
struct unclip_err *unclip__vk_err(struct unclip_vk *vk);
const struct unclip_device_info *unclip__vk_info(const struct unclip_vk *vk);
/* Whether shaderInt64 is enabled on this device (the shaders' 64-bit loads may be used).
 * UNCLIP_NO_INT64=1 in the environment leaves it off (tests of the 32-bit load paths). */
bool unclip__vk_shader_int64(const struct unclip_vk *vk);

/* Replaces the cancel callback (e.g. per pipeline run). Also starts a new job: a failure of
 * work that unclip__vk_buf_free() had to submit (reported by the next dispatch, finish,
 * upload or download) is dropped if nothing reported it yet, since nothing read its results. */
void unclip__vk_set_cancel(struct unclip_vk *vk, bool (*cb)(void *), void *user_data);

/* Device memory in use now and the peak since the last reset, in bytes of device memory
 * blocks (what the driver was asked for). UNCLIP_VK_MEM_TRACE=1 in the environment prints a
 * line per new block (its kind and size, the blocks' total, the live buffers' total) and
 * per peak reset to stderr. */
uint64_t unclip__vk_mem_in_use(const struct unclip_vk *vk);
uint64_t unclip__vk_mem_peak(const struct unclip_vk *vk);
void     unclip__vk_mem_reset_peak(struct unclip_vk *vk);

/* Where the device memory goes (bytes): blocks = what the driver was asked for (as
 * unclip__vk_mem_in_use), buffers = live buffers (views not counted: they own nothing);
 * the difference is free space inside shared blocks. Peaks since the last reset. */
struct unclip_vk_mem_stats {
    uint64_t blocks, blocks_peak;
    uint64_t buffers, buffers_peak;
    uint64_t pool;      /* shared blocks (buffers under 4 MiB) */
    uint32_t n_blocks;  /* shared + dedicated */
};
void unclip__vk_mem_stats(const struct unclip_vk *vk, struct unclip_vk_mem_stats *out);

/* Device memory this context may use. Returns the budget in bytes and sets *available (bytes a
 * new stage may still allocate: the budget minus live buffers) and *source (static text
 * saying where the budget comes from); either pointer may be NULL. The budget is, first
 * match: UNCLIP_DEVICE_BUDGET; VK_EXT_memory_budget (sum over device-local heaps); for a CPU
 * device (lavapipe) 80% of the free system memory (MemAvailable); else 80% of the
 * device-local heaps. */
uint64_t unclip__vk_budget(const struct unclip_vk *vk, uint64_t *available, const char **source);
/* Checks, before a stage allocates anything, that its weights and planned activations fit in
 * what is available. Fails with UNCLIP_E_DEVICE_NOMEM and a message naming `what`, the need
 * (weights + activations), what is available and the budget:
 *   "decoder needs 812.0 MiB of device memory (weights 700.0 MiB + activations 112.0 MiB) but
 *    only 400.0 MiB is available on <device>: budget 512.0 MiB from <source>, 12.0 MiB in use
 *    by this context". */
unclip_status unclip__vk_budget_check(struct unclip_vk *vk, const char *what,
                                      uint64_t weight_bytes, uint64_t activation_bytes);

/* Whether the validation layer and its messenger are active, and how many errors/warnings it
 * sent since the context was created. */
bool     unclip__vk_validation_on(const struct unclip_vk *vk);
uint64_t unclip__vk_validation_messages(const struct unclip_vk *vk);
/* Test hook: sends `text` as a validation error through the debug-utils messenger (the path a
 * real layer message takes). false when validation is off. */
bool     unclip__vk_validation_inject(struct unclip_vk *vk, const char *text);

/* Statistics for tests and benchmarks. */
struct unclip_vk_stats {
    uint64_t submissions;
    uint64_t dispatches;
    uint64_t max_work_per_submission;
    uint64_t max_work_per_dispatch;  /* a dispatch above the bound makes a submission above it */
    double   max_submission_ms;      /* longest fence wait (what a GPU watchdog would see)     */
    const char *max_dispatch_shader; /* shader of that largest dispatch (static), or NULL      */
};
void unclip__vk_stats(const struct unclip_vk *vk, struct unclip_vk_stats *out);

/* ---- buffers ---- */

/* A buffer of `bytes` (> 0) bytes; contents undefined. Each call is one device-allocation
 * event for fault injection (core/alloc.h), and so is each new memory block behind it. */
unclip_status unclip__vk_buf_new(struct unclip_vk *vk, uint64_t bytes, struct unclip_vk_buf **out);
/* Frees the buffer; pending work that uses it is finished first. NULL is a no-op. When that
 * submission fails (or the cancel callback says stop), the next dispatch, finish, upload or
 * download returns the failure. */
void unclip__vk_buf_free(struct unclip_vk_buf *buf);
/* A view: a buffer handle for `bytes` bytes of parent from byte `offset` (a multiple of 256),
 * sharing parent's memory (no allocation, no fault event; its size, rounded up to 256 bytes,
 * must lie inside parent). Binds, uploads and downloads through it address that range.
 * Freeing it releases nothing and waits for nothing; free every view before its parent.
 * Views of views address the root buffer. Fails with UNCLIP_E_INTERNAL on a bad range,
 * UNCLIP_E_NOMEM when the host handle cannot be allocated. */
unclip_status unclip__vk_buf_view(struct unclip_vk_buf *parent, uint64_t offset, uint64_t bytes,
                                  struct unclip_vk_buf **out);
uint64_t unclip__vk_buf_size(const struct unclip_vk_buf *buf);
/* Bytes of buf one binding can cover: min(size, max_storage_buffer_range). */
uint64_t unclip__vk_buf_bindable(const struct unclip_vk_buf *buf);

/* Copies host bytes into buf at byte offset `offset`. Range-checked. */
unclip_status unclip__vk_upload(struct unclip_vk *vk, struct unclip_vk_buf *buf, uint64_t offset,
                                const void *src, uint64_t bytes);
/* Finishes pending work, then copies bytes out. Range-checked. */
unclip_status unclip__vk_download(struct unclip_vk *vk, const struct unclip_vk_buf *buf,
                                  uint64_t offset, void *dst, uint64_t bytes);

/* ---- dispatch ---- */

/* One storage-buffer binding: `bytes` bytes of `buf` starting at byte `offset` (offset must
 * be a multiple of 256 unless it is 0; bytes <= max_storage_buffer_range). */
struct unclip_vk_bind {
    const struct unclip_vk_buf *buf;
    uint64_t offset;
    uint64_t bytes;
};

/* Records shader `shader_id` (an UNCLIP_SHADER_* value from the generated shaders.h) with
 * bindings 0..n_binds-1, push constants (<= UNCLIP_VK_MAX_PUSH bytes) and a grid of workgroups.
 * `work` estimates the cost (multiply-adds) for bounding submissions. May submit. */
unclip_status unclip__vk_dispatch(struct unclip_vk *vk, int shader_id,
                                  const struct unclip_vk_bind *binds, uint32_t n_binds,
                                  const void *push, uint32_t push_bytes, uint32_t gx,
                                  uint32_t gy, uint32_t gz, uint64_t work);

/* As unclip__vk_dispatch, with specialization constants: spec[i] (32 bits) is the value of
 * constant_id i, for i < n_spec (<= UNCLIP_VK_MAX_SPEC). One pipeline is created per shader
 * and distinct value list, on first use (tile sizes chosen per device: see ops/linear.c,
 * ops/conv.c). */
unclip_status unclip__vk_dispatch_spec(struct unclip_vk *vk, int shader_id, const uint32_t *spec,
                                       uint32_t n_spec, const struct unclip_vk_bind *binds,
                                       uint32_t n_binds, const void *push, uint32_t push_bytes,
                                       uint32_t gx, uint32_t gy, uint32_t gz, uint64_t work);

/* Submits what is recorded and waits for it. Returns UNCLIP_E_CANCELLED when the cancel
 * callback asked to stop (the work already submitted has completed). */
unclip_status unclip__vk_finish(struct unclip_vk *vk);

/* ---- recorded graphs (record once, replay many times) ---- */

/* A sequence of dispatches recorded once into command buffers of bounded work (the same
 * bounds as live submissions) and submitted again by unclip__vk_replay: no descriptor
 * writes or command recording per run. The graph binds the buffers it was captured with:
 * it is valid while they live and their contents are produced the same way (callers key a
 * graph on unclip__vk_buf_serial of its inputs and outputs). */
struct unclip_vk_graph;

/* Finishes pending work, then routes every dispatch into a new graph instead of running it.
 * While capturing, finish/upload/download/replay fail and freeing a buffer is allowed but
 * spoils the capture: unclip__vk_capture_end then fails (UNCLIP_E_INTERNAL, "... while
 * capturing a graph") and nothing captured has run, so the caller records the work again
 * normally. */
unclip_status unclip__vk_capture_begin(struct unclip_vk *vk);
/* Ends the capture; on success *out is the graph (caller frees it with
 * unclip__vk_graph_free before the buffers it uses are freed or the context is). Nothing
 * captured has run yet: call unclip__vk_replay. */
unclip_status unclip__vk_capture_end(struct unclip_vk *vk, struct unclip_vk_graph **out);
/* Finishes pending work, then submits each segment of g and waits for it, asking the cancel
 * callback between segments (UNCLIP_E_CANCELLED) and applying the fence timeout to each, as
 * live submissions do. */
unclip_status unclip__vk_replay(struct unclip_vk *vk, const struct unclip_vk_graph *g);
/* NULL is a no-op. The graph must not be executing (replay waits, so it never is after). */
void unclip__vk_graph_free(struct unclip_vk_graph *g);
/* A number unique to this buffer within its context (never reused), for graph keys. */
uint64_t unclip__vk_buf_serial(const struct unclip_vk_buf *buf);

/* Work units one submission may carry (params.work_bound / UNCLIP_WORK_BOUND / the default).
 * A single dispatch above it makes a submission above it: ops whose one dispatch can exceed
 * it (big convolutions, matmuls) should split their grid into several dispatches. */
uint64_t unclip__vk_work_bound(const struct unclip_vk *vk);

/* Maximum workgroup count per dimension (for ops that tile big grids). */
uint32_t unclip__vk_max_groups(const struct unclip_vk *vk, int dim);

#endif
