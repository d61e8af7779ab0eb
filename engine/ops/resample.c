/* Resampling ops: nearest 2x upsample, 2x2 average pool and the PIL-style antialiased
 * bicubic resize (two separable passes whose taps come from engine/core/bicubic.h). */
#include "ops/ops.h"

#include "core/alloc.h"
#include "core/bicubic.h"
#include "ops/op-util.h"

#include <stdint.h>
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

/* Nearest 2x upsample and 2x2 average pool: y's flat index i = (nc, oy, ox) reads x from
 * (nc, oy / 2, ox / 2), resp. the 2x2 block at (nc, 2 oy, 2 ox). The pool's source is
 * non-decreasing in i, so a chunk reads x between the sources of its first and last output;
 * the upsample reads each x row twice (output rows 2r and 2r + 1), so its bounds are the
 * whole x rows of the chunk's first and last outputs. */
struct resample_ctx {
    int64_t h, w, ho, wo;
    bool pool;
    struct unclip_ew_job ej;
};

static int64_t
resample_src(const struct resample_ctx *rc, int64_t i)
{
    int64_t ox = i % rc->wo, r = i / rc->wo, oy = r % rc->ho, nc = r / rc->ho;
    return rc->pool ? (nc * rc->h + 2 * oy) * rc->w + 2 * ox
                    : (nc * rc->h + oy / 2) * rc->w + ox / 2;
}

static void
resample_range(const void *user, int k, int64_t i0, int64_t i1, int64_t *lo, int64_t *hi)
{
    const struct resample_ctx *rc = user;
    if (k == 1) {
        *lo = i0;
        *hi = i1 - 1;
        return;
    }
    if (rc->pool) {
        *lo = resample_src(rc, i0);
        *hi = resample_src(rc, i1 - 1) + rc->w + 1;
    } else {
        *lo = resample_src(rc, i0) / rc->w * rc->w;
        *hi = resample_src(rc, i1 - 1) / rc->w * rc->w + rc->w - 1;
    }
}

static unclip_status
resample_chunk(void *user, int64_t i0, int64_t i1, const struct unclip_vk_bind *b,
               const int64_t *base)
{
    struct resample_ctx *rc = user;
    return unclip__ew_chunk(&rc->ej, i0, i1, b, base);
}

static unclip_status
resample_run(struct unclip_vk *vk, const char *op, const struct unclip_tensor *x,
             struct unclip_tensor *y, bool pool)
{
    struct {
        struct unclip_ew_head h; /* bases: x, y */
        uint32_t h_in, w_in;
    } pc = {.h_in = (uint32_t)x->shape[2], .w_in = (uint32_t)x->shape[3]};
    struct resample_ctx rc = {
        .h = x->shape[2], .w = x->shape[3], .ho = y->shape[2], .wo = y->shape[3], .pool = pool,
        .ej = {vk, pool ? UNCLIP_SHADER_avgpool2x : UNCLIP_SHADER_upsample2x, 2, pool ? 4 : 1,
               &pc, sizeof pc},
    };
    struct unclip_split sp = {2, {x, y}, resample_range, resample_chunk, &rc};
    return unclip__split_run(vk, op, unclip__tensor_numel(y), &sp);
}

unclip_status
unclip__op_upsample2x(struct unclip_vk *vk, const struct unclip_tensor *x,
                      struct unclip_tensor *y)
{
    int64_t h = x && x->ndim == 4 ? x->shape[2] : 0, w = x && x->ndim == 4 ? x->shape[3] : 0;
    unclip_status st = check_nchw(vk, "upsample2x", x, y, 2 * h, 2 * w);
    if (st != UNCLIP_OK)
        return st;
    return resample_run(vk, "upsample2x", x, y, false);
}

unclip_status
unclip__op_avgpool2x(struct unclip_vk *vk, const struct unclip_tensor *x, struct unclip_tensor *y)
{
    int64_t h = x && x->ndim == 4 ? x->shape[2] : 0, w = x && x->ndim == 4 ? x->shape[3] : 0;
    unclip_status st = check_nchw(vk, "avgpool2x", x, y, h / 2, w / 2);
    if (st != UNCLIP_OK)
        return st;
    return resample_run(vk, "avgpool2x", x, y, true);
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

/* Source range of a chunk of one bicubic pass. Output i = (o, l, ii) of [outer, lout, inner]
 * reads src rows first[l] .. first[l] + count[l] - 1 of slice o; first and the end
 * first + count need not be monotone in l, so the bounds use the minimum of first from l0 on
 * and the maximum end up to l1 (conservative, never short). */
struct bicubic_ctx {
    int64_t lin, lout, inner;
    const int64_t *min_first; /* [lout]: min of first[l'] over l' >= l */
    const int64_t *max_end;   /* [lout]: max of first[l'] + count[l'] over l' <= l */
    int64_t words;
    struct unclip_ew_job ej;
};

static void
bicubic_range(const void *user, int k, int64_t i0, int64_t i1, int64_t *lo, int64_t *hi)
{
    const struct bicubic_ctx *bc = user;
    if (k == 1) { /* the tap table: always whole */
        *lo = 0;
        *hi = bc->words - 1;
    } else if (k == 2) {
        *lo = i0;
        *hi = i1 - 1;
    } else {
        int64_t r0 = i0 / bc->inner, r1 = (i1 - 1) / bc->inner;
        int64_t o0 = r0 / bc->lout, l0 = r0 % bc->lout, o1 = r1 / bc->lout, l1 = r1 % bc->lout;
        *lo = (o0 * bc->lin + bc->min_first[l0]) * bc->inner;
        *hi = (o1 * bc->lin + bc->max_end[l1]) * bc->inner - 1;
    }
}

static unclip_status
bicubic_chunk(void *user, int64_t i0, int64_t i1, const struct unclip_vk_bind *b,
              const int64_t *base)
{
    struct bicubic_ctx *bc = user;
    return unclip__ew_chunk(&bc->ej, i0, i1, b, base);
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
    int64_t *bounds = unclip__malloc(2 * (size_t)lout * sizeof *bounds);
    if (!bounds) {
        unclip__free(table);
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_NOMEM,
                            "resize_bicubic_aa: no memory for %lld tap bounds", (long long)lout);
    }
    int64_t *min_first = bounds, *max_end = bounds + lout;
    for (int64_t l = lout - 1, m = INT64_MAX; l >= 0; l--) {
        m = (int64_t)table[l] < m ? (int64_t)table[l] : m;
        min_first[l] = m;
    }
    for (int64_t l = 0, m = 0; l < lout; l++) {
        int64_t e = (int64_t)table[l] + (int64_t)table[lout + l];
        m = e > m ? e : m;
        max_end[l] = m;
    }
    /* The tap table as a 1-D F32 tensor (the window helper only needs buf, dtype, shape). */
    struct unclip_tensor tt = {.dtype = UNCLIP_DT_F32, .ndim = 1, .shape = {(int64_t)words}};
    st = unclip__vk_buf_new(vk, words * 4, &tt.buf);
    if (st == UNCLIP_OK)
        st = unclip__vk_upload(vk, tt.buf, 0, table, words * 4);
    unclip__free(table);
    if (st == UNCLIP_OK) {
        struct {
            struct unclip_ew_head h; /* bases: src, taps, dst */
            uint32_t lin, lout, inner, k;
        } pc = {.lin = (uint32_t)lin, .lout = (uint32_t)lout, .inner = (uint32_t)inner, .k = k};
        struct bicubic_ctx bc = {lin, lout, inner, min_first, max_end, (int64_t)words,
                                 {vk, UNCLIP_SHADER_bicubic_pass, 3, k, &pc, sizeof pc}};
        struct unclip_split sp = {3, {src, &tt, dst}, bicubic_range, bicubic_chunk, &bc};
        st = unclip__split_run(vk, "resize_bicubic_aa", outer * lout * inner, &sp);
    }
    if (st == UNCLIP_OK)
        st = unclip__vk_finish(vk); /* the tap buffer is released right after */
    unclip__vk_buf_free(tt.buf);
    unclip__free(bounds);
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
