/* Elementwise ops: unary activations, broadcast binary ops, lerp, strided copy, concat and
 * embedding gather. */
#include "ops/ops.h"

#include "core/alloc.h"
#include "ops/op-util.h"

#include <string.h>

/* Element ranges of an elementwise op: every tensor is touched at the output's indices. */
static void
same_range(const void *user, int k, int64_t i0, int64_t i1, int64_t *lo, int64_t *hi)
{
    (void)user;
    (void)k;
    *lo = i0;
    *hi = i1 - 1;
}

unclip_status
unclip__op_unary(struct unclip_vk *vk, const struct unclip_tensor *x, enum unclip_act act,
                 float alpha, float beta, float lo, float hi, struct unclip_tensor *y)
{
    unclip_status st = unclip__check_tensor(vk, "unary", "x", x, -1, false);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, "unary", "y", y, unclip__tensor_numel(x), false);
    if (st != UNCLIP_OK)
        return st;
    struct {
        struct unclip_ew_head h; /* bases: x, y */
        uint32_t act;
        float alpha, beta, lo, hi;
    } pc = {.act = (uint32_t)act, .alpha = alpha, .beta = beta, .lo = lo, .hi = hi};
    struct unclip_ew_job j = {vk, UNCLIP_SHADER_unary, 2, 1, &pc, sizeof pc};
    struct unclip_split sp = {2, {x, y}, same_range, unclip__ew_chunk, &j};
    return unclip__split_run(vk, "unary", unclip__tensor_numel(x), &sp);
}

/* Right-aligns t's shape against y's 4-D shape and writes element strides, 0 where t
 * broadcasts. false when t does not broadcast to y. */
static bool
broadcast_strides(const struct unclip_tensor *t, const int64_t y4[4], uint32_t s[4])
{
    int64_t stride = 1;
    for (int k = 3; k >= 0; k--) {
        int ti = t->ndim - (4 - k);
        int64_t d = ti >= 0 ? t->shape[ti] : 1;
        if (d != y4[k] && d != 1)
            return false;
        s[k] = d == 1 ? 0 : (uint32_t)stride;
        stride *= d;
    }
    return true;
}

struct binary_job {
    int64_t y4[4], sa[4], sb[4];
};

struct binary_ctx {
    struct binary_job bj;
    struct unclip_ew_job ej;
};

static void
binary_range(const void *user, int k, int64_t i0, int64_t i1, int64_t *lo, int64_t *hi)
{
    const struct binary_job *bj = &((const struct binary_ctx *)user)->bj;
    if (k == 2) {
        *lo = i0;
        *hi = i1 - 1;
    } else {
        unclip__strided_range(bj->y4, 0, k == 0 ? bj->sa : bj->sb, i0, i1, lo, hi);
    }
}

static unclip_status
binary_chunk(void *user, int64_t i0, int64_t i1, const struct unclip_vk_bind *b,
             const int64_t *base)
{
    struct binary_ctx *bc = user;
    return unclip__ew_chunk(&bc->ej, i0, i1, b, base);
}

unclip_status
unclip__op_binary(struct unclip_vk *vk, enum unclip_binop op, const struct unclip_tensor *a,
                  const struct unclip_tensor *b, struct unclip_tensor *y)
{
    unclip_status st = unclip__check_tensor(vk, "binary", "a", a, -1, false);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, "binary", "b", b, -1, false);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, "binary", "y", y, -1, false);
    if (st != UNCLIP_OK)
        return st;
    if (a->ndim > y->ndim || b->ndim > y->ndim)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "binary: inputs have more dimensions than the output");
    struct binary_ctx bc = {0};
    for (int k = 0; k < 4; k++) {
        int yi = y->ndim - (4 - k);
        bc.bj.y4[k] = yi >= 0 ? y->shape[yi] : 1;
    }
    struct {
        struct unclip_ew_head h; /* bases: a, b, y */
        uint32_t shape[4], sa[4], sb[4], op;
    } pc = {.op = (uint32_t)op};
    if (!broadcast_strides(a, bc.bj.y4, pc.sa) || !broadcast_strides(b, bc.bj.y4, pc.sb)) {
        char sa[64], sb[64], sy[64];
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "binary: shapes %s and %s do not broadcast to %s",
                            unclip__shape_str(a, sa, sizeof sa), unclip__shape_str(b, sb, sizeof sb),
                            unclip__shape_str(y, sy, sizeof sy));
    }
    for (int k = 0; k < 4; k++) {
        pc.shape[k] = (uint32_t)bc.bj.y4[k];
        bc.bj.sa[k] = pc.sa[k];
        bc.bj.sb[k] = pc.sb[k];
    }
    bc.ej = (struct unclip_ew_job){vk, UNCLIP_SHADER_binary, 3, 1, &pc, sizeof pc};
    struct unclip_split sp = {3, {a, b, y}, binary_range, binary_chunk, &bc};
    return unclip__split_run(vk, "binary", unclip__tensor_numel(y), &sp);
}

unclip_status
unclip__op_lerp(struct unclip_vk *vk, const struct unclip_tensor *a, const struct unclip_tensor *b,
                float scale, struct unclip_tensor *y)
{
    unclip_status st = unclip__check_tensor(vk, "lerp", "a", a, -1, false);
    int64_t n = st == UNCLIP_OK ? unclip__tensor_numel(a) : 0;
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, "lerp", "b", b, n, false);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, "lerp", "y", y, n, false);
    if (st != UNCLIP_OK)
        return st;
    struct {
        struct unclip_ew_head h; /* bases: a, b, y */
        float scale;
    } pc = {.scale = scale};
    struct unclip_ew_job j = {vk, UNCLIP_SHADER_lerp, 3, 1, &pc, sizeof pc};
    struct unclip_split sp = {3, {a, b, y}, same_range, unclip__ew_chunk, &j};
    return unclip__split_run(vk, "lerp", n, &sp);
}

/* Largest element index the descriptor reaches in a tensor with the given offset/strides. */
static int64_t
max_index(const int64_t shape[4], int64_t off, const int64_t stride[4])
{
    int64_t m = off;
    for (int k = 0; k < 4; k++)
        m += (shape[k] - 1) * stride[k];
    return m;
}

struct copy_ctx {
    const struct unclip_copy_desc *d;
    struct unclip_ew_job ej;
};

static void
copy_range(const void *user, int k, int64_t i0, int64_t i1, int64_t *lo, int64_t *hi)
{
    const struct copy_ctx *cc = user;
    const struct unclip_copy_desc *d = cc->d;
    if (k == 0)
        unclip__strided_range(d->shape, d->src_off, d->src_stride, i0, i1, lo, hi);
    else
        unclip__strided_range(d->shape, d->dst_off, d->dst_stride, i0, i1, lo, hi);
}

static unclip_status
copy_chunk(void *user, int64_t i0, int64_t i1, const struct unclip_vk_bind *b,
           const int64_t *base)
{
    struct copy_ctx *cc = user;
    int64_t adj[2] = {base[0] - cc->d->src_off, base[1] - cc->d->dst_off};
    return unclip__ew_chunk(&cc->ej, i0, i1, b, adj);
}

unclip_status
unclip__op_copy(struct unclip_vk *vk, const struct unclip_tensor *src, struct unclip_tensor *dst,
                const struct unclip_copy_desc *d)
{
    unclip_status st = unclip__check_tensor(vk, "copy", "src", src, -1, false);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, "copy", "dst", dst, -1, false);
    if (st != UNCLIP_OK)
        return st;
    int64_t n = 1;
    for (int k = 0; k < 4; k++) {
        if (d->shape[k] <= 0 || d->src_stride[k] < 0 || d->dst_stride[k] < 0)
            return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                                "copy: bad shape or stride in dimension %d", k);
        n *= d->shape[k];
    }
    if (d->src_off < 0 || d->dst_off < 0 ||
        max_index(d->shape, d->src_off, d->src_stride) >= unclip__tensor_numel(src) ||
        max_index(d->shape, d->dst_off, d->dst_stride) >= unclip__tensor_numel(dst))
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "copy: the region reaches outside a tensor");
    /* The element offsets go into the bases: the shader reads src[idx.ss - base[0]] and
     * writes dst[idx.ds - base[1]] (uint arithmetic wraps, so a base above the offset
     * works). */
    struct {
        struct unclip_ew_head h; /* bases: src, dst (minus the descriptor offsets) */
        uint32_t shape[4], ss[4], ds[4];
    } pc;
    memset(&pc, 0, sizeof pc);
    for (int k = 0; k < 4; k++) {
        pc.shape[k] = (uint32_t)d->shape[k];
        pc.ss[k] = (uint32_t)d->src_stride[k];
        pc.ds[k] = (uint32_t)d->dst_stride[k];
    }
    struct copy_ctx cc = {d, {vk, UNCLIP_SHADER_copy, 2, 1, &pc, sizeof pc}};
    struct unclip_split sp = {2, {src, dst}, copy_range, copy_chunk, &cc};
    return unclip__split_run(vk, "copy", n, &sp);
}

unclip_status
unclip__op_concat(struct unclip_vk *vk, const struct unclip_tensor *a,
                  const struct unclip_tensor *b, int32_t dim, struct unclip_tensor *y)
{
    if (!a || !b || !y || a->ndim != b->ndim || a->ndim != y->ndim || dim < 0 || dim >= a->ndim)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL, "concat: bad arguments");
    for (int32_t k = 0; k < a->ndim; k++) {
        int64_t want = k == dim ? a->shape[k] + b->shape[k] : a->shape[k];
        if ((k != dim && b->shape[k] != a->shape[k]) || y->shape[k] != want)
            return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                                "concat: shapes disagree in dimension %d", (int)k);
    }
    /* View each tensor as [outer, len_along_dim, inner] and copy both halves. */
    int64_t outer = 1, inner = 1;
    for (int32_t k = 0; k < dim; k++)
        outer *= a->shape[k];
    for (int32_t k = dim + 1; k < a->ndim; k++)
        inner *= a->shape[k];
    const struct unclip_tensor *parts[2] = {a, b};
    int64_t at = 0;
    for (int i = 0; i < 2; i++) {
        int64_t len = parts[i]->shape[dim];
        struct unclip_copy_desc d = {
            .shape = {1, outer, len, inner},
            .src_off = 0,
            .src_stride = {0, len * inner, inner, 1},
            .dst_off = at * inner,
            .dst_stride = {0, y->shape[dim] * inner, inner, 1},
        };
        unclip_status st = unclip__op_copy(vk, parts[i], y, &d);
        if (st != UNCLIP_OK)
            return st;
        at += len;
    }
    return UNCLIP_OK;
}

unclip_status
unclip__op_embedding(struct unclip_vk *vk, const struct unclip_tensor *table, const int32_t *ids,
                     int32_t n_ids, struct unclip_tensor *y)
{
    unclip_status st = unclip__check_tensor(vk, "embedding", "table", table, -1, true);
    if (st != UNCLIP_OK)
        return st;
    if (table->ndim != 2 || n_ids <= 0)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "embedding: table must be 2-D and ids non-empty");
    int64_t dim = table->shape[1];
    if ((st = unclip__check_tensor(vk, "embedding", "y", y, (int64_t)n_ids * dim, false)))
        return st;
    for (int32_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= table->shape[0])
            return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG,
                                "embedding: id %d at position %d outside the table of %lld rows",
                                (int)ids[i], (int)i, (long long)table->shape[0]);
    struct unclip_vk_buf *idbuf;
    if ((st = unclip__vk_buf_new(vk, (uint64_t)n_ids * 4, &idbuf)) != UNCLIP_OK)
        return st;
    st = unclip__vk_upload(vk, idbuf, 0, ids, (uint64_t)n_ids * 4);
    if (st == UNCLIP_OK) {
        struct {
            uint32_t n_ids, dim;
        } pc = {(uint32_t)n_ids, (uint32_t)dim};
        struct unclip_vk_bind bind[3] = {
            unclip__tensor_bind(table),
            {.buf = idbuf, .offset = 0, .bytes = (uint64_t)n_ids * 4},
            unclip__tensor_bind(y),
        };
        uint32_t gx, gy;
        unclip__grid_1d((uint64_t)n_ids * (uint64_t)dim, 256, &gx, &gy);
        st = unclip__vk_dispatch(vk,
                                 table->dtype == UNCLIP_DT_F16 ? UNCLIP_SHADER_embedding_f16
                                                               : UNCLIP_SHADER_embedding_f32,
                                 bind, 3, &pc, sizeof pc, gx, gy, 1, (uint64_t)n_ids * dim);
    }
    if (st == UNCLIP_OK)
        st = unclip__vk_finish(vk); /* the id buffer is released right after */
    unclip__vk_buf_free(idbuf);
    return st;
}
