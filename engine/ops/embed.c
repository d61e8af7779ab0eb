/* Embedding and vector ops: the sinusoidal timestep embedding and row-wise slerp. */
#include "ops/ops.h"

#include "core/alloc.h"
#include "ops/op-util.h"

#include <math.h>

unclip_status
unclip__op_timestep_embedding(struct unclip_vk *vk, const float *t, int32_t batch, int32_t dim,
                              bool flip_sin_to_cos, float freq_shift, float max_period,
                              struct unclip_tensor *y)
{
    struct unclip_err *err = unclip__vk_err(vk);
    if (!t || batch < 1 || dim < 2 || !(max_period > 0.0f))
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "timestep_embedding: bad arguments (batch %d, dim %d, max_period %g)",
                            (int)batch, (int)dim, (double)max_period);
    int32_t half = dim / 2;
    /* Every step in float, in torch's order (see ops.h): the frequencies then match torch's
     * bit for bit, and so do the arguments the shader forms. */
    float denom = (float)half - freq_shift;
    if (!(denom > 0.0f))
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "timestep_embedding: half dim %d minus freq_shift %g is not positive",
                            (int)half, (double)freq_shift);
    const int64_t shape[2] = {batch, dim};
    unclip_status st = unclip__check_tensor(vk, "timestep_embedding", "y", y, -1, false);
    if (st == UNCLIP_OK)
        st = unclip__check_shape(vk, "timestep_embedding", "y", y, 2, shape);
    if (st != UNCLIP_OK)
        return st;
    uint64_t words = (uint64_t)batch + (uint64_t)half;
    float *tf = unclip__malloc(words * sizeof *tf);
    if (!tf)
        return unclip__fail(err, UNCLIP_E_NOMEM, "timestep_embedding: no memory for %llu floats",
                            (unsigned long long)words);
    float neg_log = (float)-log((double)max_period);
    float fmax = 0.0f;
    for (int32_t k = 0; k < half; k++) {
        float e = neg_log * (float)k;
        e = e / denom;
        float f = expf(e);
        tf[batch + k] = f;
        fmax = f > fmax ? f : fmax;
    }
    for (int32_t b = 0; b < batch; b++) {
        tf[b] = t[b];
        /* timestep.comp's range reduction is accurate below 8192 rad. */
        if (!(fabsf(t[b]) * fmax < 8192.0f)) {
            unclip__free(tf);
            return unclip__fail(err, UNCLIP_E_ARG,
                                "timestep_embedding: timestep %g (batch row %d) is outside the "
                                "supported range (|t * freq| < 8192)", (double)t[b], (int)b);
        }
    }
    struct unclip_vk_buf *buf = NULL;
    st = unclip__vk_buf_new(vk, words * 4, &buf);
    if (st == UNCLIP_OK)
        st = unclip__vk_upload(vk, buf, 0, tf, words * 4);
    unclip__free(tf);
    if (st == UNCLIP_OK) {
        uint64_t n = (uint64_t)batch * (uint64_t)dim;
        struct {
            uint32_t n, batch, dim, half, flip;
        } pc = {(uint32_t)n, (uint32_t)batch, (uint32_t)dim, (uint32_t)half,
                flip_sin_to_cos ? 1u : 0u};
        struct unclip_vk_bind bind[2] = {
            {.buf = buf, .offset = 0, .bytes = words * 4},
            unclip__tensor_bind(y),
        };
        uint32_t gx, gy;
        unclip__grid_1d(n, 256, &gx, &gy);
        st = unclip__vk_dispatch(vk, UNCLIP_SHADER_timestep, bind, 2, &pc, sizeof pc, gx, gy, 1,
                                 n * 16);
    }
    if (st == UNCLIP_OK)
        st = unclip__vk_finish(vk); /* the upload buffer is released right after */
    unclip__vk_buf_free(buf);
    return st;
}

static unclip_status
slerp_rows(struct unclip_vk *vk, const char *op, const struct unclip_tensor *a,
           const struct unclip_tensor *b, float w, uint32_t mode, struct unclip_tensor *y)
{
    unclip_status st = unclip__check_tensor(vk, op, "a", a, -1, false);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, op, "b", b, -1, false);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, op, "y", y, -1, false);
    if (st != UNCLIP_OK)
        return st;
    if (a->ndim != 2) {
        char sa[64];
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "%s: a has shape %s, expected [B, D]", op,
                            unclip__shape_str(a, sa, sizeof sa));
    }
    if ((st = unclip__check_shape(vk, op, "b", b, 2, a->shape)) != UNCLIP_OK ||
        (st = unclip__check_shape(vk, op, "y", y, 2, a->shape)) != UNCLIP_OK)
        return st;
    if (y->buf == a->buf || y->buf == b->buf)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "%s: y must not alias a or b", op);
    if (!isfinite(w))
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG, "%s: weight %g is not finite", op,
                            (double)w);
    uint64_t rows = (uint64_t)a->shape[0], dim = (uint64_t)a->shape[1];
    struct {
        uint32_t rows, dim;
        float w;
        uint32_t mode;
    } pc = {(uint32_t)rows, (uint32_t)dim, w, mode};
    struct unclip_vk_bind bind[3] = {unclip__tensor_bind(a), unclip__tensor_bind(b),
                                     unclip__tensor_bind(y)};
    /* One workgroup per row: x up to 65535, the rest in y (the shader skips extra groups). */
    uint32_t gx = rows <= 65535 ? (uint32_t)rows : 65535;
    uint32_t gy = (uint32_t)((rows + 65534) / 65535);
    return unclip__vk_dispatch(vk, UNCLIP_SHADER_slerp, bind, 3, &pc, sizeof pc, gx, gy, 1,
                               rows * dim * 5);
}

unclip_status
unclip__op_slerp(struct unclip_vk *vk, const struct unclip_tensor *a,
                 const struct unclip_tensor *b, float w, struct unclip_tensor *y)
{
    return slerp_rows(vk, "slerp", a, b, w, 0, y);
}

unclip_status
unclip__op_slerp_unit(struct unclip_vk *vk, const struct unclip_tensor *a,
                      const struct unclip_tensor *b, float w, struct unclip_tensor *y)
{
    return slerp_rows(vk, "slerp_unit", a, b, w, 1, y);
}
