#include "ops/op-util.h"

#include <stdio.h>

void
unclip__grid_1d(uint64_t n, uint32_t local, uint32_t *gx, uint32_t *gy)
{
    uint64_t groups = (n + local - 1) / local;
    if (groups <= 65535) {
        *gx = (uint32_t)(groups ? groups : 1);
        *gy = groups ? 1 : 0;
        return;
    }
    *gx = 65535;
    *gy = (uint32_t)((groups + 65534) / 65535);
}

unclip_status
unclip__check_tensor(struct unclip_vk *vk, const char *op, const char *what,
                     const struct unclip_tensor *t, int64_t numel, bool allow_f16)
{
    if (!t || !t->buf)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL, "%s: %s is missing", op, what);
    if (t->dtype != UNCLIP_DT_F32 && !(allow_f16 && t->dtype == UNCLIP_DT_F16))
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL, "%s: %s has dtype %s", op,
                            what, unclip__dtype_name(t->dtype));
    int64_t n = unclip__tensor_numel(t);
    if (numel >= 0 && n != numel)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "%s: %s has %lld elements, expected %lld", op, what, (long long)n,
                            (long long)numel);
    if (n > UNCLIP_MAX_INDEX)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "%s: %s has %lld elements, more than a 32-bit index", op, what,
                            (long long)n);
    return UNCLIP_OK;
}

unclip_status
unclip__check_shape(struct unclip_vk *vk, const char *op, const char *what,
                    const struct unclip_tensor *t, int32_t ndim, const int64_t *shape)
{
    bool ok = t && t->ndim == ndim;
    for (int32_t i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (ok)
        return UNCLIP_OK;
    char got[96] = "(none)", want[96];
    struct unclip_tensor w = {.ndim = ndim};
    for (int32_t i = 0; i < ndim; i++)
        w.shape[i] = shape[i];
    if (t)
        unclip__shape_str(t, got, sizeof got);
    unclip__shape_str(&w, want, sizeof want);
    return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL, "%s: %s has shape %s, expected %s",
                        op, what, got, want);
}
