/* Normalisation ops: group norm (with optional scale-shift conditioning and SiLU), layer norm
 * and softmax. One workgroup reduces one (sample, group) or one row; statistics are two-pass
 * in fp32.
 *
 * Bindings see at most max_storage_buffer_range bytes, so a tensor larger than that (a
 * super-resolution activation at 256x256 with a batch of several images) is processed in
 * chunks of whole samples or rows, each bound at its own byte offset. */
#include "ops/ops.h"

#include "ops/op-util.h"

#include <stdio.h>

/* Units (samples or rows) of unit_bytes each per dispatch, so that one chunk fits a binding
 * and every chunk starts at a 256-byte aligned offset. Fails when no such chunking exists. */
static unclip_status
plan_chunks(struct unclip_vk *vk, const char *op, int64_t units, uint64_t unit_bytes,
            int64_t *per_chunk)
{
    uint64_t range = unclip__vk_info(vk)->max_storage_buffer_range;
    if ((uint64_t)units * unit_bytes <= range) {
        *per_chunk = units;
        return UNCLIP_OK;
    }
    int64_t k = (int64_t)(range / unit_bytes);
    while (k > 0 && ((uint64_t)k * unit_bytes) % 256 != 0)
        k--;
    if (k <= 0)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "%s: %lld units of %llu bytes cannot be split into bindings of at "
                            "most %llu bytes on 256-byte boundaries",
                            op, (long long)units, (unsigned long long)unit_bytes,
                            (unsigned long long)range);
    *per_chunk = k;
    return UNCLIP_OK;
}

static struct unclip_vk_bind
bind_window(const struct unclip_tensor *t, int64_t unit0, int64_t units, uint64_t unit_bytes)
{
    struct unclip_vk_bind b = {.buf = t->buf,
                               .offset = (uint64_t)unit0 * unit_bytes,
                               .bytes = (uint64_t)units * unit_bytes};
    return b;
}

/* A small optional parameter: its own binding, or (when absent) `filler`, any valid binding
 * that keeps the slot filled; the shader does not read it then. */
static struct unclip_vk_bind
bind_opt(const struct unclip_tensor *t, struct unclip_vk_bind filler)
{
    return t ? unclip__tensor_bind(t) : filler;
}

/* gamma and beta (each optional) are weights: F32 or F16, the same dtype when both are given.
 * *f16 tells which shader variant reads them. */
static unclip_status
check_affine(struct unclip_vk *vk, const char *op, const struct unclip_tensor *gamma,
             const struct unclip_tensor *beta, int64_t c, bool *f16)
{
    unclip_status st;
    if (gamma && (st = unclip__check_tensor(vk, op, "gamma", gamma, c, true)))
        return st;
    if (beta && (st = unclip__check_tensor(vk, op, "beta", beta, c, true)))
        return st;
    if (gamma && beta && gamma->dtype != beta->dtype)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "%s: gamma is %s but beta is %s", op,
                            unclip__dtype_name(gamma->dtype), unclip__dtype_name(beta->dtype));
    *f16 = (gamma && gamma->dtype == UNCLIP_DT_F16) || (beta && beta->dtype == UNCLIP_DT_F16);
    return UNCLIP_OK;
}

unclip_status
unclip__op_group_norm(struct unclip_vk *vk, const struct unclip_tensor *x,
                      const struct unclip_tensor *gamma, const struct unclip_tensor *beta,
                      int32_t n_groups, float eps, const struct unclip_tensor *scale_shift,
                      bool silu, struct unclip_tensor *y)
{
    unclip_status st = unclip__check_tensor(vk, "group_norm", "x", x, -1, false);
    if (st != UNCLIP_OK)
        return st;
    if (x->ndim < 2)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "group_norm: x needs at least 2 dimensions [N, C, ...]");
    int64_t n = x->shape[0], c = x->shape[1], s = unclip__tensor_numel(x) / (n * c);
    if (n_groups <= 0 || c % n_groups != 0)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "group_norm: C=%lld not divisible into %d groups", (long long)c,
                            (int)n_groups);
    if ((st = unclip__check_tensor(vk, "group_norm", "y", y, n * c * s, false)))
        return st;
    bool f16;
    if ((st = check_affine(vk, "group_norm", gamma, beta, c, &f16)))
        return st;
    if (scale_shift) {
        int64_t want[2] = {n, 2 * c};
        if ((st = unclip__check_tensor(vk, "group_norm", "scale_shift", scale_shift, -1, false)) ||
            (st = unclip__check_shape(vk, "group_norm", "scale_shift", scale_shift, 2, want)))
            return st;
    }
    int64_t per;
    uint64_t sample_bytes = (uint64_t)(c * s) * 4;
    if ((st = plan_chunks(vk, "group_norm", n, sample_bytes, &per)))
        return st;
    if (per > 65535)
        per = 65535; /* samples go in the grid's y dimension */
    /* vec4 variants when every channel's plane is a multiple of 4 floats (so vec4s never
     * straddle channels and each sample starts 16-byte aligned). */
    bool vec4 = s % 4 == 0;
    static const int variants[2][2] = {
        {UNCLIP_SHADER_group_norm_f32, UNCLIP_SHADER_group_norm_f16},
        {UNCLIP_SHADER_group_norm_v4_f32, UNCLIP_SHADER_group_norm_v4_f16},
    };
    struct {
        uint32_t c, s, cpg, n0, flags, count;
        float eps;
    } pc = {(uint32_t)c, (uint32_t)(vec4 ? s / 4 : s), (uint32_t)(c / n_groups), 0,
            (gamma ? 1u : 0u) | (beta ? 2u : 0u) | (scale_shift ? 4u : 0u) | (silu ? 8u : 0u),
            (uint32_t)(c / n_groups * s), eps};
    for (int64_t n0 = 0; n0 < n && st == UNCLIP_OK; n0 += per) {
        int64_t cnt = n - n0 < per ? n - n0 : per;
        pc.n0 = (uint32_t)n0;
        struct unclip_vk_bind xw = bind_window(x, n0, cnt, sample_bytes);
        struct unclip_vk_bind b[5] = {
            xw, bind_opt(gamma, xw), bind_opt(beta, xw), bind_opt(scale_shift, xw),
            bind_window(y, n0, cnt, sample_bytes),
        };
        st = unclip__vk_dispatch(vk, variants[vec4][f16], b, 5, &pc, sizeof pc,
                                 (uint32_t)n_groups, (uint32_t)cnt, 1,
                                 (uint64_t)(cnt * c * s) * 3);
    }
    return st;
}

unclip_status
unclip__op_layer_norm(struct unclip_vk *vk, const struct unclip_tensor *x,
                      const struct unclip_tensor *gamma, const struct unclip_tensor *beta,
                      float eps, struct unclip_tensor *y)
{
    unclip_status st = unclip__check_tensor(vk, "layer_norm", "x", x, -1, false);
    if (st != UNCLIP_OK)
        return st;
    if (x->ndim < 1)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "layer_norm: x needs at least 1 dimension");
    int64_t c = x->shape[x->ndim - 1], rows = unclip__tensor_numel(x) / c;
    if ((st = unclip__check_tensor(vk, "layer_norm", "y", y, rows * c, false)))
        return st;
    bool f16;
    if ((st = check_affine(vk, "layer_norm", gamma, beta, c, &f16)))
        return st;
    int64_t per;
    uint64_t row_bytes = (uint64_t)c * 4;
    if ((st = plan_chunks(vk, "layer_norm", rows, row_bytes, &per)))
        return st;
    /* vec4 variants when C is a multiple of 4 (rows then start 16-byte aligned). */
    bool vec4 = c % 4 == 0;
    static const int variants[2][2] = {
        {UNCLIP_SHADER_layer_norm_f32, UNCLIP_SHADER_layer_norm_f16},
        {UNCLIP_SHADER_layer_norm_v4_f32, UNCLIP_SHADER_layer_norm_v4_f16},
    };
    struct {
        uint32_t rows, c, flags, count;
        float eps;
    } pc = {0, (uint32_t)(vec4 ? c / 4 : c), (gamma ? 1u : 0u) | (beta ? 2u : 0u), (uint32_t)c,
            eps};
    for (int64_t r0 = 0; r0 < rows && st == UNCLIP_OK; r0 += per) {
        int64_t cnt = rows - r0 < per ? rows - r0 : per;
        pc.rows = (uint32_t)cnt;
        struct unclip_vk_bind xw = bind_window(x, r0, cnt, row_bytes);
        struct unclip_vk_bind b[4] = {xw, bind_opt(gamma, xw), bind_opt(beta, xw),
                                      bind_window(y, r0, cnt, row_bytes)};
        uint32_t gx, gy;
        unclip__grid_1d((uint64_t)cnt, 1, &gx, &gy);
        st = unclip__vk_dispatch(vk, variants[vec4][f16], b, 4, &pc, sizeof pc, gx, gy, 1,
                                 (uint64_t)(cnt * c) * 3);
    }
    return st;
}

unclip_status
unclip__op_softmax(struct unclip_vk *vk, const struct unclip_tensor *x, struct unclip_tensor *y)
{
    unclip_status st = unclip__check_tensor(vk, "softmax", "x", x, -1, false);
    if (st != UNCLIP_OK)
        return st;
    if (x->ndim < 1)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "softmax: x needs at least 1 dimension");
    int64_t len = x->shape[x->ndim - 1], rows = unclip__tensor_numel(x) / len;
    if ((st = unclip__check_tensor(vk, "softmax", "y", y, rows * len, false)))
        return st;
    int64_t per;
    uint64_t row_bytes = (uint64_t)len * 4;
    if ((st = plan_chunks(vk, "softmax", rows, row_bytes, &per)))
        return st;
    struct {
        uint32_t rows, len;
    } pc = {0, (uint32_t)len};
    for (int64_t r0 = 0; r0 < rows && st == UNCLIP_OK; r0 += per) {
        int64_t cnt = rows - r0 < per ? rows - r0 : per;
        pc.rows = (uint32_t)cnt;
        struct unclip_vk_bind b[2] = {bind_window(x, r0, cnt, row_bytes),
                                      bind_window(y, r0, cnt, row_bytes)};
        uint32_t gx, gy;
        unclip__grid_1d((uint64_t)cnt, 1, &gx, &gy);
        st = unclip__vk_dispatch(vk, UNCLIP_SHADER_softmax, b, 2, &pc, sizeof pc, gx, gy, 1,
                                 (uint64_t)(cnt * len) * 8);
    }
    return st;
}
