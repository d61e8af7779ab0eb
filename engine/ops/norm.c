/* Normalisation ops: group norm (with optional scale-shift conditioning and SiLU), layer norm
 * and softmax. One workgroup reduces one (sample, group) or one row; statistics are two-pass
 * in fp32.
 *
 * Bindings see at most max_storage_buffer_range bytes, so a tensor larger than that (a
 * super-resolution activation at 256x256: [1, 960, 256, 256] is 240 MiB) is processed in
 * chunks of whole groups or rows, each bound from a 256-byte aligned offset at or below its
 * first element (the shaders subtract that base). */
#include "ops/ops.h"

#include "ops/op-util.h"

#include <stdio.h>

/* Chunks of contiguous units (rows, or (sample, group) pairs) of unit_elems floats each:
 * all of them in one dispatch with whole-tensor bindings when the tensor fits one binding,
 * else as many per dispatch as one binding window holds. Fails when a single unit is larger
 * than a binding (a reduction over it would need several passes). */
static unclip_status
plan_units(struct unclip_vk *vk, const char *op, const struct unclip_tensor *x, int64_t units,
           int64_t unit_elems, int64_t *per_chunk)
{
    uint64_t limit = unclip__ops_bind_limit(vk);
    if (unclip__tensor_bytes(x) <= limit) {
        *per_chunk = units;
        return UNCLIP_OK;
    }
    int64_t k = unclip__units_per_window(vk, unit_elems);
    if (k <= 0) {
        char sh[96];
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "%s: x %s: one unit of %lld floats does not fit one binding of %llu "
                            "bytes", op, unclip__shape_str(x, sh, sizeof sh),
                            (long long)unit_elems, (unsigned long long)limit);
    }
    *per_chunk = k < units ? k : units;
    return UNCLIP_OK;
}

/* Bindings of x and y for the units [u0, u0 + cnt) (whole tensors when they fit), with the
 * element each starts at in units of `vec` floats. plan_units sized cnt so that they fit. */
static void
bind_units(struct unclip_vk *vk, const struct unclip_tensor *x, const struct unclip_tensor *y,
           int64_t u0, int64_t cnt, int64_t unit_elems, int vec, struct unclip_vk_bind *bx,
           struct unclip_vk_bind *by, uint32_t *basex, uint32_t *basey)
{
    uint64_t limit = unclip__ops_bind_limit(vk);
    int64_t lo = u0 * unit_elems, hi = (u0 + cnt) * unit_elems - 1, b0 = 0, b1 = 0;
    (void)unclip__tensor_window(x, lo, hi, limit, bx, &b0);
    (void)unclip__tensor_window(y, lo, hi, limit, by, &b1);
    *basex = (uint32_t)(b0 / vec);
    *basey = (uint32_t)(b1 / vec);
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
    /* One workgroup per (sample, group); groups are contiguous runs of cpg * s floats, so a
     * tensor larger than one binding (a 960-channel map at 256x256 is 240 MiB for one
     * sample) is processed in chunks of whole groups. */
    int64_t pairs = n * n_groups, gel = c / n_groups * s, per;
    if ((st = plan_units(vk, "group_norm", x, pairs, gel, &per)))
        return st;
    /* vec4 variants when every channel's plane is a multiple of 4 floats (so vec4s never
     * straddle channels and each group starts 16-byte aligned). */
    bool vec4 = s % 4 == 0;
    static const int variants[2][2] = {
        {UNCLIP_SHADER_group_norm_f32, UNCLIP_SHADER_group_norm_f16},
        {UNCLIP_SHADER_group_norm_v4_f32, UNCLIP_SHADER_group_norm_v4_f16},
    };
    struct {
        uint32_t c, s, cpg, groups, q0, nq, flags, count, bx, by;
        float eps;
    } pc = {(uint32_t)c, (uint32_t)(vec4 ? s / 4 : s), (uint32_t)(c / n_groups),
            (uint32_t)n_groups, 0, 0,
            (gamma ? 1u : 0u) | (beta ? 2u : 0u) | (scale_shift ? 4u : 0u) | (silu ? 8u : 0u),
            (uint32_t)gel, 0, 0, eps};
    for (int64_t q0 = 0; q0 < pairs && st == UNCLIP_OK; q0 += per) {
        int64_t cnt = pairs - q0 < per ? pairs - q0 : per;
        pc.q0 = (uint32_t)q0;
        pc.nq = (uint32_t)cnt;
        struct unclip_vk_bind xw, yw;
        bind_units(vk, x, y, q0, cnt, gel, vec4 ? 4 : 1, &xw, &yw, &pc.bx, &pc.by);
        struct unclip_vk_bind b[5] = {
            xw, bind_opt(gamma, xw), bind_opt(beta, xw), bind_opt(scale_shift, xw), yw,
        };
        uint32_t gx, gy;
        unclip__grid_1d((uint64_t)cnt, 1, &gx, &gy);
        st = unclip__vk_dispatch(vk, variants[vec4][f16], b, 5, &pc, sizeof pc, gx, gy, 1,
                                 (uint64_t)(cnt * gel) * 3);
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
    if ((st = plan_units(vk, "layer_norm", x, rows, c, &per)))
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
        uint32_t r0, bx, by;
    } pc = {0, (uint32_t)(vec4 ? c / 4 : c), (gamma ? 1u : 0u) | (beta ? 2u : 0u), (uint32_t)c,
            eps, 0, 0, 0};
    for (int64_t r0 = 0; r0 < rows && st == UNCLIP_OK; r0 += per) {
        int64_t cnt = rows - r0 < per ? rows - r0 : per;
        pc.rows = (uint32_t)cnt;
        pc.r0 = (uint32_t)r0;
        struct unclip_vk_bind xw, yw;
        bind_units(vk, x, y, r0, cnt, c, vec4 ? 4 : 1, &xw, &yw, &pc.bx, &pc.by);
        struct unclip_vk_bind b[4] = {xw, bind_opt(gamma, xw), bind_opt(beta, xw), yw};
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
    if ((st = plan_units(vk, "softmax", x, rows, len, &per)))
        return st;
    struct {
        uint32_t rows, len, r0, bx, by;
    } pc = {0, (uint32_t)len, 0, 0, 0};
    for (int64_t r0 = 0; r0 < rows && st == UNCLIP_OK; r0 += per) {
        int64_t cnt = rows - r0 < per ? rows - r0 : per;
        pc.rows = (uint32_t)cnt;
        pc.r0 = (uint32_t)r0;
        struct unclip_vk_bind b[2];
        bind_units(vk, x, y, r0, cnt, len, 1, &b[0], &b[1], &pc.bx, &pc.by);
        uint32_t gx, gy;
        unclip__grid_1d((uint64_t)cnt, 1, &gx, &gy);
        st = unclip__vk_dispatch(vk, UNCLIP_SHADER_softmax, b, 2, &pc, sizeof pc, gx, gy, 1,
                                 (uint64_t)(cnt * len) * 8);
    }
    return st;
}
