/* Device memory of the Vulkan runtime (engine/vk), no model needed:
 *   - big buffers (4 MiB and more) get allocations of their own, of their size: three
 *     33.5 MB matrices (Karlo's prior 2048x8192 F16) cost exactly their bytes, where 64 MiB
 *     blocks used to leave holes;
 *   - small buffers share pool blocks, best fit: a freed range is reused by a buffer that
 *     fits it, not by a new block;
 *   - views (unclip__vk_buf_view): upload/download and a dispatch through views of one arena
 *     address the right bytes; bad ranges fail cleanly; views own no memory;
 *   - tensor arenas (unclip__tensor_arena, a model's scratch): one allocation, disjoint views
 *     at 256-byte boundaries, optional entries skipped, and a fault at any of its allocation
 *     events leaves nothing allocated;
 *   - faults: a failed dedicated allocation or view leaves nothing allocated. */
#include "core/alloc.h"
#include "ops/ops.h"
#include "ops/tensor.h"
#include "testutil.h"
#include "vk/vk.h"

#include <stdlib.h>
#include <string.h>

#define MiB (1ull << 20)

static struct unclip_vk *
new_vk(void)
{
    struct unclip_err err = {0};
    struct unclip_vk *vk = NULL;
    struct unclip_vk_params p = unclip__vk_params_default();
    unclip_status st = unclip__vk_new(&p, &vk, &err);
    TU_CHECK(st == UNCLIP_OK, "unclip__vk_new: %s", err.msg);
    return st == UNCLIP_OK ? vk : NULL;
}

static void
test_dedicated(struct unclip_vk *vk)
{
    uint64_t base = unclip__vk_mem_in_use(vk);
    const uint64_t big = 2048ull * 8192ull * 2ull; /* a 2048x8192 F16 matrix */
    struct unclip_vk_buf *b[3] = {0};
    unclip_status st = UNCLIP_OK;
    for (int i = 0; i < 3 && st == UNCLIP_OK; i++)
        st = unclip__vk_buf_new(vk, big, &b[i]);
    TU_CHECK(st == UNCLIP_OK, "three 32 MiB buffers: %s", unclip__vk_err(vk)->msg);
    uint64_t used = unclip__vk_mem_in_use(vk) - base;
    printf("  3 x %.1f MiB buffers: %.1f MiB of device memory\n", (double)big / MiB,
           (double)used / MiB);
    TU_CHECK(used == 3 * big, "3 buffers of %llu bytes took %llu bytes", (unsigned long long)big,
             (unsigned long long)used);
    /* an odd big size is rounded to 256 bytes, no more */
    struct unclip_vk_buf *odd = NULL;
    TU_CHECK(unclip__vk_buf_new(vk, 5 * MiB + 1, &odd) == UNCLIP_OK, "odd buffer");
    TU_CHECK(unclip__vk_mem_in_use(vk) - base == 3 * big + 5 * MiB + 256,
             "5 MiB + 1 byte took %llu bytes",
             (unsigned long long)(unclip__vk_mem_in_use(vk) - base - 3 * big));
    unclip__vk_buf_free(odd);
    for (int i = 0; i < 3; i++)
        unclip__vk_buf_free(b[i]);
    TU_CHECK(unclip__vk_mem_in_use(vk) == base, "after the frees: %llu bytes, was %llu",
             (unsigned long long)unclip__vk_mem_in_use(vk), (unsigned long long)base);

    /* an injected failure of the dedicated allocation (second event: the buffer is the
     * first) leaves nothing behind and says so */
    struct unclip_vk_buf *x = NULL;
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 2);
    st = unclip__vk_buf_new(vk, big, &x);
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 0);
    TU_CHECK(st == UNCLIP_E_DEVICE_NOMEM && x == NULL &&
                 strstr(unclip__vk_err(vk)->msg, "out of device memory") &&
                 unclip__vk_mem_in_use(vk) == base,
             "failed dedicated allocation: %d (%s), %llu bytes in use", (int)st,
             unclip__vk_err(vk)->msg, (unsigned long long)unclip__vk_mem_in_use(vk));
}

static void
test_pool(struct unclip_vk *vk)
{
    uint64_t base = unclip__vk_mem_in_use(vk);
    struct unclip_vk_mem_stats s0, s1;
    unclip__vk_mem_stats(vk, &s0);
    /* 64 buffers of 64 KiB share pool blocks (4 MiB in all: at most one new block) */
    struct unclip_vk_buf *b[64] = {0};
    for (int i = 0; i < 64; i++)
        TU_CHECK(unclip__vk_buf_new(vk, 64 * 1024, &b[i]) == UNCLIP_OK, "small buffer %d", i);
    unclip__vk_mem_stats(vk, &s1);
    printf("  64 x 64 KiB: %u -> %u blocks, %.1f MiB of blocks\n", s0.n_blocks, s1.n_blocks,
           (double)s1.blocks / MiB);
    TU_CHECK(s1.n_blocks <= s0.n_blocks + 1 && s1.buffers == s0.buffers + 64 * 64 * 1024,
             "64 small buffers: %u -> %u blocks, buffers %llu -> %llu", s0.n_blocks,
             s1.n_blocks, (unsigned long long)s0.buffers, (unsigned long long)s1.buffers);
    /* best fit: free a 64 KiB hole and a 128 KiB hole; a 64 KiB request takes the first,
     * a 128 KiB request the second, no new block */
    unclip__vk_buf_free(b[10]);
    unclip__vk_buf_free(b[20]);
    unclip__vk_buf_free(b[21]);
    b[10] = b[20] = b[21] = NULL;
    uint64_t before = unclip__vk_mem_in_use(vk);
    TU_CHECK(unclip__vk_buf_new(vk, 128 * 1024, &b[20]) == UNCLIP_OK, "128 KiB");
    TU_CHECK(unclip__vk_buf_new(vk, 64 * 1024, &b[10]) == UNCLIP_OK, "64 KiB");
    TU_CHECK(unclip__vk_mem_in_use(vk) == before, "holes not reused: %llu -> %llu bytes",
             (unsigned long long)before, (unsigned long long)unclip__vk_mem_in_use(vk));
    for (int i = 0; i < 64; i++)
        unclip__vk_buf_free(b[i]);
    TU_CHECK(unclip__vk_mem_in_use(vk) == base, "pool after the frees: %llu, was %llu",
             (unsigned long long)unclip__vk_mem_in_use(vk), (unsigned long long)base);
}

/* Three tensors as views of one arena: x at 0, y at 256 * k + (x's bytes rounded), and a
 * dispatch y = 3x - 1 through them; the bytes around y keep their sentinel. */
static void
test_views(struct unclip_vk *vk)
{
    uint64_t base = unclip__vk_mem_in_use(vk);
    const int64_t n = 1000; /* 4000 bytes: views rounded up to 4096 */
    struct unclip_vk_buf *arena = NULL;
    TU_CHECK(unclip__vk_buf_new(vk, 3 * 4096, &arena) == UNCLIP_OK, "arena");
    if (!arena)
        return;
    struct unclip_vk_mem_stats m0, m1;
    unclip__vk_mem_stats(vk, &m0);
    float *fill = malloc(3 * 4096);
    for (int i = 0; i < 3 * 1024; i++)
        fill[i] = -7.0f;
    TU_CHECK(unclip__vk_upload(vk, arena, 0, fill, 3 * 4096) == UNCLIP_OK, "arena fill");
    struct unclip_tensor x = {.dtype = UNCLIP_DT_F32, .ndim = 1, .shape = {n}};
    struct unclip_tensor y = x;
    TU_CHECK(unclip__vk_buf_view(arena, 0, 4000, &x.buf) == UNCLIP_OK, "view x");
    TU_CHECK(unclip__vk_buf_view(arena, 8192, 4000, &y.buf) == UNCLIP_OK, "view y");
    TU_CHECK(unclip__vk_buf_size(x.buf) == 4096, "view size %llu",
             (unsigned long long)unclip__vk_buf_size(x.buf));
    TU_CHECK(unclip__vk_buf_serial(x.buf) != unclip__vk_buf_serial(arena) &&
                 unclip__vk_buf_serial(x.buf) != unclip__vk_buf_serial(y.buf),
             "views need serials of their own");
    unclip__vk_mem_stats(vk, &m1);
    TU_CHECK(m1.blocks == m0.blocks && m1.buffers == m0.buffers,
             "views allocated memory: blocks %llu -> %llu, buffers %llu -> %llu",
             (unsigned long long)m0.blocks, (unsigned long long)m1.blocks,
             (unsigned long long)m0.buffers, (unsigned long long)m1.buffers);
    float h[1000];
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)i * 0.5f;
    if (x.buf && y.buf) {
        TU_CHECK(unclip__tensor_upload_f32(vk, &x, h) == UNCLIP_OK, "upload through a view");
        TU_CHECK(unclip__op_unary(vk, &x, UNCLIP_ACT_NONE, 3.0f, -1.0f, 0, 0, &y) == UNCLIP_OK,
                 "dispatch on views: %s", unclip__vk_err(vk)->msg);
        float *all = malloc(3 * 4096);
        TU_CHECK(unclip__vk_download(vk, arena, 0, all, 3 * 4096) == UNCLIP_OK, "download");
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            bad += all[i] != (float)i * 0.5f;                          /* x through the arena */
            bad += all[2048 + i] != 3.0f * ((float)i * 0.5f) - 1.0f;   /* y at byte 8192      */
        }
        for (int i = 1000; i < 2048; i++) /* x's tail and the whole middle view untouched */
            bad += all[i] != -7.0f;
        printf("  views: %d wrong values\n", bad);
        TU_CHECK(bad == 0, "views: %d values wrong", bad);
        free(all);
        /* download through a view */
        float back[1000];
        TU_CHECK(unclip__tensor_download_f32(vk, &y, back) == UNCLIP_OK && back[10] == 14.0f,
                 "download through a view: %g", back[10]);
        /* a view of a view addresses the root buffer */
        struct unclip_vk_buf *vv = NULL;
        TU_CHECK(unclip__vk_buf_view(y.buf, 256, 256, &vv) == UNCLIP_OK, "view of a view");
        float q[2];
        TU_CHECK(vv && unclip__vk_download(vk, vv, 0, q, sizeof q) == UNCLIP_OK &&
                     q[0] == 3.0f * 32.0f - 1.0f,
                 "view of a view reads %g", vv ? q[0] : 0.0f);
        unclip__vk_buf_free(vv);
    }
    /* bad ranges */
    struct unclip_vk_buf *v = NULL;
    TU_CHECK(unclip__vk_buf_view(arena, 100, 256, &v) == UNCLIP_E_INTERNAL && v == NULL,
             "unaligned view offset accepted");
    TU_CHECK(unclip__vk_buf_view(arena, 8192, 4097, &v) == UNCLIP_E_INTERNAL && v == NULL,
             "view past the end accepted");
    TU_CHECK(unclip__vk_buf_view(arena, 0, 0, &v) == UNCLIP_E_INTERNAL && v == NULL,
             "empty view accepted");
    /* an injected host failure: clean error, nothing allocated */
    unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 1);
    unclip_status st = unclip__vk_buf_view(arena, 0, 256, &v);
    unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
    TU_CHECK(st == UNCLIP_E_NOMEM && v == NULL, "view under a host fault: %d", (int)st);
    /* views are no device allocation events */
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 0);
    TU_CHECK(unclip__vk_buf_view(arena, 4096, 256, &v) == UNCLIP_OK &&
                 unclip__fault_count(UNCLIP_FAULT_DEVICE_ALLOC) == 0,
             "a view counted as a device allocation");
    unclip__vk_buf_free(v);
    unclip__vk_buf_free(x.buf);
    unclip__vk_buf_free(y.buf);
    uint64_t with_arena = unclip__vk_mem_in_use(vk);
    unclip__vk_buf_free(arena);
    TU_CHECK(unclip__vk_mem_in_use(vk) <= with_arena && unclip__vk_mem_in_use(vk) == base,
             "memory after the arena: %llu, was %llu",
             (unsigned long long)unclip__vk_mem_in_use(vk), (unsigned long long)base);
    free(fill);
}

static void
test_tensor_arena(struct unclip_vk *vk)
{
    uint64_t base = unclip__vk_mem_in_use(vk);
    struct unclip_vk_mem_stats m0, m1;
    unclip__vk_mem_stats(vk, &m0);
    struct unclip_tensor t[4];
    const struct unclip_tensor_spec specs[4] = {
        {&t[0], UNCLIP_DT_F32, 2, {3, 7}},      /* 84 bytes          */
        {&t[1], UNCLIP_DT_F32, -1, {5, 5}},     /* skipped           */
        {&t[2], UNCLIP_DT_F16, 1, {11}},        /* 22 -> 24 bytes    */
        {&t[3], UNCLIP_DT_F32, 3, {2, 9, 33}},  /* 2376 bytes        */
    };
    struct unclip_vk_buf *arena = NULL;
    unclip_status st = unclip__tensor_arena(vk, specs, 4, &arena);
    TU_CHECK(st == UNCLIP_OK && arena, "arena: %s", unclip__vk_err(vk)->msg);
    if (st != UNCLIP_OK)
        return;
    unclip__vk_mem_stats(vk, &m1);
    TU_CHECK(unclip__vk_buf_size(arena) == 256 + 256 + 2560,
             "arena of %llu bytes, expected 3072 (three entries at 256-byte boundaries)",
             (unsigned long long)unclip__vk_buf_size(arena));
    TU_CHECK(m1.buffers - m0.buffers == 3072, "the views took memory: %llu bytes",
             (unsigned long long)(m1.buffers - m0.buffers));
    TU_CHECK(t[1].buf == NULL && t[1].ndim == 0, "the skipped entry was filled in");
    TU_CHECK(t[3].ndim == 3 && t[3].shape[2] == 33 && t[2].dtype == UNCLIP_DT_F16,
             "shapes or dtypes not kept");
    /* Each tensor written with its own value, read back whole: no overlap. */
    float a[21], c[11], d[594], back[594];
    for (int i = 0; i < 594; i++)
        d[i] = 3.0f + (float)i;
    for (int i = 0; i < 21; i++)
        a[i] = -1.0f - (float)i;
    for (int i = 0; i < 11; i++)
        c[i] = 0.5f * (float)i;
    st = unclip__tensor_upload_f32(vk, &t[3], d);
    if (st == UNCLIP_OK)
        st = unclip__tensor_upload_f32(vk, &t[0], a);
    if (st == UNCLIP_OK)
        st = unclip__tensor_upload_f32(vk, &t[2], c);
    int bad = 0;
    if (st == UNCLIP_OK && (st = unclip__tensor_download_f32(vk, &t[0], back)) == UNCLIP_OK)
        bad += memcmp(back, a, sizeof a) != 0;
    if (st == UNCLIP_OK && (st = unclip__tensor_download_f32(vk, &t[2], back)) == UNCLIP_OK)
        bad += memcmp(back, c, sizeof c) != 0;
    if (st == UNCLIP_OK && (st = unclip__tensor_download_f32(vk, &t[3], back)) == UNCLIP_OK)
        bad += memcmp(back, d, sizeof d) != 0;
    TU_CHECK(st == UNCLIP_OK && bad == 0, "arena tensors overlap or lost data (%d): %s", bad,
             unclip__vk_err(vk)->msg);
    for (int i = 0; i < 4; i++)
        unclip__tensor_free(&t[i]);
    unclip__vk_buf_free(arena);
    TU_CHECK(unclip__vk_mem_in_use(vk) == base, "after the arena: %llu bytes, was %llu",
             (unsigned long long)unclip__vk_mem_in_use(vk), (unsigned long long)base);

    /* A bad shape is refused before anything is allocated. */
    struct unclip_tensor_spec badspec = {&t[0], UNCLIP_DT_F32, 2, {4, 0}};
    st = unclip__tensor_arena(vk, &badspec, 1, &arena);
    TU_CHECK(st == UNCLIP_E_INTERNAL && arena == NULL && t[0].buf == NULL,
             "bad shape: %d", (int)st);

    /* Faults at every host and device allocation event: clean failure, nothing left. */
    int events = 0;
    for (int site = 0; site < 2; site++) {
        enum unclip_fault_site fs = site ? UNCLIP_FAULT_DEVICE_ALLOC : UNCLIP_FAULT_HOST_ALLOC;
        for (uint64_t k = 1; k < 64; k++) {
            unclip__fault_arm(fs, k);
            st = unclip__tensor_arena(vk, specs, 4, &arena);
            unclip__fault_arm(fs, 0);
            if (st == UNCLIP_OK) {
                for (int i = 0; i < 4; i++)
                    unclip__tensor_free(&t[i]);
                unclip__vk_buf_free(arena);
                break;
            }
            events++;
            TU_CHECK((st == UNCLIP_E_NOMEM || st == UNCLIP_E_DEVICE_NOMEM) && arena == NULL &&
                         t[0].buf == NULL && t[3].buf == NULL &&
                         unclip__vk_mem_in_use(vk) == base,
                     "arena, fault %d at event %llu: status %d, %llu bytes in use", site,
                     (unsigned long long)k, (int)st,
                     (unsigned long long)unclip__vk_mem_in_use(vk));
        }
    }
    TU_CHECK(events >= 4, "only %d allocation events in an arena of three views", events);
}

int
main(void)
{
    struct unclip_vk *vk = new_vk();
    if (!vk)
        return tu_summary("vk-memory");
    test_dedicated(vk);
    test_pool(vk);
    test_views(vk);
    test_tensor_arena(vk);
    unclip__vk_free(vk);
    return tu_summary("vk-memory");
}
