/* Resampling ops: nearest 2x upsample, 2x2 average pool and the PIL-style antialiased
 * bicubic resize (two separable passes whose taps come from engine/core/bicubic.h). */
#include "ops/ops.h"

#include "core/alloc.h"
#include "core/bicubic.h"
#include "ops/op-util.h"

#include <string.h>

/* x must be a 4-D F32 tensor; y must be 4-D F32 [N, C, ho, wo] with x's N and C. */
static unclip_status
check_nchw(struct unclip_vk *vk, const char *op, const struct unclip_tensor *x,
           const struct unclip_tensor *y, int64_t ho, int64_t wo)
{
    unclip_status st = unclip__check_tensor(vk, op, "x", x, -1, false);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, op, "y", y, -1, false);
    if (st != UNCLIP_OK)
        return st;
    if (x->ndim != 4) {
        char sx[64];
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "%s: x has shape %s, expected [N, C, H, W]", op,
                            unclip__shape_str(x, sx, sizeof sx));
    }
    if (ho < 1 || wo < 1) {
        char sx[64];
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "%s: x of shape %s gives an empty output", op,
                            unclip__shape_str(x, sx, sizeof sx));
    }
    const int64_t want[4] = {x->shape[0], x->shape[1], ho, wo};
    return unclip__check_shape(vk, op, "y", y, 4, want);
}

unclip_status
unclip__op_upsample2x(struct unclip_vk *vk, const struct unclip_tensor *x,
                      struct unclip_tensor *y)
{
    int64_t h = x && x->ndim == 4 ? x->shape[2] : 0, w = x && x->ndim == 4 ? x->shape[3] : 0;
    unclip_status st = check_nchw(vk, "upsample2x", x, y, 2 * h, 2 * w);
    if (st != UNCLIP_OK)
        return st;
    uint64_t n = (uint64_t)unclip__tensor_numel(y);
    struct {
        uint32_t n, h, w;
    } pc = {(uint32_t)n, (uint32_t)h, (uint32_t)w};
    struct unclip_vk_bind b[2] = {unclip__tensor_bind(x), unclip__tensor_bind(y)};
    uint32_t gx, gy;
    unclip__grid_1d(n, 256, &gx, &gy);
    return unclip__vk_dispatch(vk, UNCLIP_SHADER_upsample2x, b, 2, &pc, sizeof pc, gx, gy, 1, n);
}

unclip_status
unclip__op_avgpool2x(struct unclip_vk *vk, const struct unclip_tensor *x, struct unclip_tensor *y)
{
    int64_t h = x && x->ndim == 4 ? x->shape[2] : 0, w = x && x->ndim == 4 ? x->shape[3] : 0;
    unclip_status st = check_nchw(vk, "avgpool2x", x, y, h / 2, w / 2);
    if (st != UNCLIP_OK)
        return st;
    uint64_t n = (uint64_t)unclip__tensor_numel(y);
    struct {
        uint32_t n, h, w;
    } pc = {(uint32_t)n, (uint32_t)h, (uint32_t)w};
    struct unclip_vk_bind b[2] = {unclip__tensor_bind(x), unclip__tensor_bind(y)};
    uint32_t gx, gy;
    unclip__grid_1d(n, 256, &gx, &gy);
    return unclip__vk_dispatch(vk, UNCLIP_SHADER_avgpool2x, b, 2, &pc, sizeof pc, gx, gy, 1,
                               4 * n);
}

/* The tap table of one axis in the layout bicubic.comp reads: first[lout], count[lout], then
 * lout rows of k fp32 weights (as uint bits). *k_out receives k. */
static unclip_status
build_taps(struct unclip_vk *vk, int64_t lin, int64_t lout, uint32_t **table_out,
           uint64_t *words_out, uint32_t *k_out)
{
    int32_t k = unclip__bicubic_max_taps(lin, lout);
    uint64_t words = 2 * (uint64_t)lout + (uint64_t)lout * (uint64_t)k;
    uint32_t *table = unclip__calloc(words, sizeof *table);
    double *w = unclip__malloc((size_t)k * sizeof *w);
    if (!table || !w) {
        unclip__free(table);
        unclip__free(w);
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_NOMEM,
                            "resize_bicubic_aa: no memory for the taps of %lld -> %lld",
                            (long long)lin, (long long)lout);
    }
    for (int64_t o = 0; o < lout; o++) {
        int64_t first;
        int32_t count = unclip__bicubic_taps(lin, lout, o, &first, w);
        table[o] = (uint32_t)first;
        table[lout + o] = (uint32_t)count;
        for (int32_t t = 0; t < count; t++) {
            float f = (float)w[t];
            memcpy(&table[2 * lout + o * k + t], &f, 4);
        }
    }
    unclip__free(w);
    *table_out = table;
    *words_out = words;
    *k_out = (uint32_t)k;
    return UNCLIP_OK;
}

/* One pass along an axis: src viewed as [outer, lin, inner] -> dst [outer, lout, inner]. */
static unclip_status
bicubic_pass(struct unclip_vk *vk, const struct unclip_tensor *src, struct unclip_tensor *dst,
             int64_t outer, int64_t lin, int64_t lout, int64_t inner)
{
    if (outer * lin * inner > UNCLIP_MAX_INDEX || outer * lout * inner > UNCLIP_MAX_INDEX)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "resize_bicubic_aa: a pass of %lld x %lld -> %lld x %lld elements "
                            "exceeds a 32-bit index", (long long)outer, (long long)(lin * inner),
                            (long long)outer, (long long)(lout * inner));
    uint32_t *table = NULL;
    uint64_t words = 0;
    uint32_t k = 0;
    unclip_status st = build_taps(vk, lin, lout, &table, &words, &k);
    if (st != UNCLIP_OK)
        return st;
    struct unclip_vk_buf *tbuf = NULL;
    st = unclip__vk_buf_new(vk, words * 4, &tbuf);
    if (st == UNCLIP_OK)
        st = unclip__vk_upload(vk, tbuf, 0, table, words * 4);
    unclip__free(table);
    if (st == UNCLIP_OK) {
        uint64_t n = (uint64_t)(outer * lout * inner);
        struct {
            uint32_t n, lin, lout, inner, k;
        } pc = {(uint32_t)n, (uint32_t)lin, (uint32_t)lout, (uint32_t)inner, k};
        struct unclip_vk_bind b[3] = {
            unclip__tensor_bind(src),
            {.buf = tbuf, .offset = 0, .bytes = words * 4},
            unclip__tensor_bind(dst),
        };
        uint32_t gx, gy;
        unclip__grid_1d(n, 256, &gx, &gy);
        st = unclip__vk_dispatch(vk, UNCLIP_SHADER_bicubic_pass, b, 3, &pc, sizeof pc, gx, gy, 1,
                                 n * k);
    }
    if (st == UNCLIP_OK)
        st = unclip__vk_finish(vk); /* the tap buffer is released right after */
    unclip__vk_buf_free(tbuf);
    return st;
}

unclip_status
unclip__op_resize_bicubic_aa(struct unclip_vk *vk, const struct unclip_tensor *x,
                             struct unclip_tensor *y)
{
    unclip_status st = unclip__check_tensor(vk, "resize_bicubic_aa", "y", y, -1, false);
    if (st != UNCLIP_OK)
        return st;
    if (y->ndim != 4) {
        char sy[64];
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "resize_bicubic_aa: y has shape %s, expected [N, C, Ho, Wo]",
                            unclip__shape_str(y, sy, sizeof sy));
    }
    int64_t ho = y->shape[2], wo = y->shape[3];
    if ((st = check_nchw(vk, "resize_bicubic_aa", x, y, ho, wo)) != UNCLIP_OK)
        return st;
    int64_t nc = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    bool do_h = w != wo, do_v = h != ho;
    if (!do_h && !do_v) {
        /* Same size: the filter is the identity (one tap of weight 1), so copy. */
        struct unclip_copy_desc d = {
            .shape = {1, 1, 1, unclip__tensor_numel(x)},
            .src_stride = {0, 0, 0, 1},
            .dst_stride = {0, 0, 0, 1},
        };
        return unclip__op_copy(vk, x, y, &d);
    }
    if (!do_v)
        return bicubic_pass(vk, x, y, nc * h, w, wo, 1);
    if (!do_h)
        return bicubic_pass(vk, x, y, nc, h, ho, w);
    /* Horizontal first (as torch does), through a temporary [N, C, H, Wo]. */
    struct unclip_tensor tmp = {0};
    const int64_t tshape[4] = {x->shape[0], x->shape[1], h, wo};
    st = unclip__tensor_new(vk, UNCLIP_DT_F32, 4, tshape, &tmp);
    if (st == UNCLIP_OK)
        st = bicubic_pass(vk, x, &tmp, nc * h, w, wo, 1);
    if (st == UNCLIP_OK)
        st = bicubic_pass(vk, &tmp, y, nc, h, ho, wo);
    unclip__tensor_free(&tmp);
    return st;
}
