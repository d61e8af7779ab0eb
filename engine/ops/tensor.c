#include "tensor.h"

#include "core/alloc.h"

#include <stdio.h>
#include <string.h>

int64_t
unclip__tensor_numel(const struct unclip_tensor *t)
{
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

uint64_t
unclip__tensor_bytes(const struct unclip_tensor *t)
{
    uint64_t b = (uint64_t)unclip__tensor_numel(t) * unclip__dtype_size(t->dtype);
    return (b + 3) & ~(uint64_t)3;
}

unclip_status
unclip__tensor_new(struct unclip_vk *vk, enum unclip_dtype dtype, int32_t ndim,
                   const int64_t *shape, struct unclip_tensor *out)
{
    struct unclip_tensor t = {0};
    if (ndim < 0 || ndim > UNCLIP_MAX_DIMS || (dtype != UNCLIP_DT_F32 && dtype != UNCLIP_DT_F16))
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "tensor: ndim %d or dtype %d not supported", (int)ndim, (int)dtype);
    t.dtype = dtype;
    t.ndim = ndim;
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || shape[i] > (1ll << 40) || n > (1ll << 40) / shape[i])
            return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG,
                                "tensor: dimension %d of size %lld out of range", (int)i,
                                (long long)shape[i]);
        t.shape[i] = shape[i];
        n *= shape[i];
    }
    unclip_status st = unclip__vk_buf_new(vk, unclip__tensor_bytes(&t), &t.buf);
    if (st != UNCLIP_OK)
        return st;
    *out = t;
    return UNCLIP_OK;
}

void
unclip__tensor_free(struct unclip_tensor *t)
{
    if (!t)
        return;
    unclip__vk_buf_free(t->buf);
    memset(t, 0, sizeof *t);
}

unclip_status
unclip__tensor_arena(struct unclip_vk *vk, const struct unclip_tensor_spec *specs, int32_t n,
                     struct unclip_vk_buf **arena)
{
    *arena = NULL;
    uint64_t total = 0;
    unclip_status st = UNCLIP_OK;
    /* First the shapes (tensor_new's checks) with no memory behind them, then the offsets. */
    for (int32_t i = 0; i < n; i++) {
        *specs[i].t = (struct unclip_tensor){0};
        if (specs[i].ndim < 0)
            continue;
        struct unclip_tensor t = {.dtype = specs[i].dtype, .ndim = specs[i].ndim};
        int64_t numel = 1;
        for (int32_t d = 0; d < t.ndim && d < UNCLIP_MAX_DIMS; d++) {
            t.shape[d] = specs[i].shape[d];
            numel *= t.shape[d] > 0 ? t.shape[d] : 0;
        }
        if (t.ndim > UNCLIP_MAX_DIMS || numel <= 0 || numel > (1ll << 40))
            return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                                "tensor arena: entry %d has a bad shape", (int)i);
        total += (unclip__tensor_bytes(&t) + 255u) & ~(uint64_t)255u;
    }
    if (total == 0)
        return UNCLIP_OK;
    if ((st = unclip__vk_buf_new(vk, total, arena)) != UNCLIP_OK)
        return st;
    uint64_t off = 0;
    for (int32_t i = 0; i < n && st == UNCLIP_OK; i++) {
        if (specs[i].ndim < 0)
            continue;
        struct unclip_tensor t = {.dtype = specs[i].dtype, .ndim = specs[i].ndim};
        memcpy(t.shape, specs[i].shape, sizeof t.shape);
        uint64_t bytes = unclip__tensor_bytes(&t);
        st = unclip__vk_buf_view(*arena, off, bytes, &t.buf);
        if (st == UNCLIP_OK)
            *specs[i].t = t;
        off += (bytes + 255u) & ~(uint64_t)255u;
    }
    if (st != UNCLIP_OK) {
        for (int32_t i = 0; i < n; i++)
            unclip__tensor_free(specs[i].t);
        unclip__vk_buf_free(*arena);
        *arena = NULL;
    }
    return st;
}

unclip_status
unclip__tensor_upload_f32(struct unclip_vk *vk, struct unclip_tensor *t, const float *src)
{
    int64_t n = unclip__tensor_numel(t);
    if (t->dtype == UNCLIP_DT_F32)
        return unclip__vk_upload(vk, t->buf, 0, src, (uint64_t)n * 4);
    uint64_t bytes = unclip__tensor_bytes(t);
    uint16_t *h = unclip__calloc(bytes / 2, 2);
    if (!h)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_NOMEM, "out of host memory");
    for (int64_t i = 0; i < n; i++)
        h[i] = unclip__f32_to_f16(src[i]);
    unclip_status st = unclip__vk_upload(vk, t->buf, 0, h, bytes);
    unclip__free(h);
    return st;
}

unclip_status
unclip__tensor_download_f32(struct unclip_vk *vk, const struct unclip_tensor *t, float *dst)
{
    int64_t n = unclip__tensor_numel(t);
    if (t->dtype == UNCLIP_DT_F32)
        return unclip__vk_download(vk, t->buf, 0, dst, (uint64_t)n * 4);
    uint64_t bytes = unclip__tensor_bytes(t);
    uint16_t *h = unclip__malloc(bytes);
    if (!h)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_NOMEM, "out of host memory");
    unclip_status st = unclip__vk_download(vk, t->buf, 0, h, bytes);
    if (st == UNCLIP_OK)
        for (int64_t i = 0; i < n; i++)
            dst[i] = unclip__f16_to_f32(h[i]);
    unclip__free(h);
    return st;
}

struct unclip_vk_bind
unclip__tensor_bind(const struct unclip_tensor *t)
{
    /* The whole allocation (as far as one binding reaches), not just the tensor's bytes: a
     * shader that overruns its output then writes into the allocation's tail, where the op
     * tests' guard words catch it, instead of being silently dropped by a robust driver. */
    uint64_t bytes = unclip__tensor_bytes(t);
    uint64_t whole = unclip__vk_buf_bindable(t->buf);
    struct unclip_vk_bind b = {.buf = t->buf, .offset = 0, .bytes = whole > bytes ? whole : bytes};
    return b;
}

bool
unclip__tensor_window(const struct unclip_tensor *t, int64_t lo, int64_t hi, uint64_t limit,
                      struct unclip_vk_bind *b, int64_t *base)
{
    if (unclip__tensor_bytes(t) <= limit) {
        *b = unclip__tensor_bind(t);
        *base = 0;
        return true;
    }
    uint64_t esz = unclip__dtype_size(t->dtype);
    uint64_t off = ((uint64_t)lo * esz) & ~(uint64_t)255;
    uint64_t end = ((uint64_t)hi + 1) * esz;
    end = (end + 3) & ~(uint64_t)3; /* F16: whole 32-bit words */
    if (end > unclip__vk_buf_size(t->buf))
        end = unclip__vk_buf_size(t->buf);
    if (end - off > limit)
        return false;
    b->buf = t->buf;
    b->offset = off;
    b->bytes = end - off;
    *base = (int64_t)(off / esz);
    return true;
}

const char *
unclip__shape_str(const struct unclip_tensor *t, char *buf, size_t size)
{
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int32_t i = 0; i < t->ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < size)
        snprintf(buf + k, size - k, "]");
    return buf;
}
