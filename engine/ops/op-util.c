#include "ops/op-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

uint64_t unclip__ops_bind_limit_override;

int
unclip__llvm_major(const struct unclip_vk *vk)
{
    const char *p = strstr(unclip__vk_info(vk)->name, "LLVM ");
    return p ? atoi(p + 5) : 0;
}

bool
unclip__tiles_from_env(const char *name, uint32_t t[4])
{
    const char *ev = getenv(name);
    uint32_t v[4];
    if (!ev || sscanf(ev, "%u,%u,%u,%u", &v[0], &v[1], &v[2], &v[3]) != 4 || !v[0] ||
        v[0] > 64 || !v[1] || v[1] > 64 || !v[2] || !v[3] || v[2] > 1024 || v[3] > 1024 ||
        v[2] * v[3] > 1024)
        return false;
    memcpy(t, v, sizeof v);
    return true;
}

uint64_t
unclip__ops_bind_limit(const struct unclip_vk *vk)
{
    uint64_t r = unclip__vk_info(vk)->max_storage_buffer_range;
    uint64_t o = unclip__ops_bind_limit_override;
    if (o) {
        if (o < 1024)
            o = 1024;
        if (o < r)
            r = o;
    }
    return r;
}

void
unclip__strided_range(const int64_t shape[4], int64_t off, const int64_t stride[4], int64_t i0,
                      int64_t i1, int64_t *lo, int64_t *hi)
{
    int64_t a[4], z[4], r0 = i0, r1 = i1 - 1;
    for (int k = 3; k >= 0; k--) {
        a[k] = r0 % shape[k];
        r0 /= shape[k];
        z[k] = r1 % shape[k];
        r1 /= shape[k];
    }
    /* Dimensions before the first that differs are the same for every index of the range;
     * that one spans [a[d], z[d]]; the ones after it may take any value. */
    int64_t l = off, h = off;
    int d = 0;
    while (d < 4 && a[d] == z[d]) {
        l += a[d] * stride[d];
        h += a[d] * stride[d];
        d++;
    }
    if (d < 4) {
        l += a[d] * stride[d];
        h += z[d] * stride[d];
        for (int k = d + 1; k < 4; k++)
            h += (shape[k] - 1) * stride[k];
    }
    *lo = l;
    *hi = h;
}

int64_t
unclip__units_per_window(const struct unclip_vk *vk, int64_t unit_elems)
{
    /* A window starts up to 63 floats before its first unit (256-byte alignment). */
    int64_t fit = (int64_t)(unclip__ops_bind_limit(vk) / 4) - 63;
    return fit > 0 ? fit / unit_elems : 0;
}

/* Window bindings of every tensor of `s` for outputs [i0, i1); false when one does not fit. */
static bool
split_windows(const struct unclip_split *s, uint64_t limit, int64_t i0, int64_t i1,
              struct unclip_vk_bind *b, int64_t *base, int *bad)
{
    for (int k = 0; k < s->n_t; k++) {
        int64_t lo, hi;
        s->range(s->user, k, i0, i1, &lo, &hi);
        if (!unclip__tensor_window(s->t[k], lo, hi, limit, &b[k], &base[k])) {
            *bad = k;
            return false;
        }
    }
    return true;
}

unclip_status
unclip__split_run(struct unclip_vk *vk, const char *op, int64_t n, const struct unclip_split *s)
{
    struct unclip_vk_bind b[UNCLIP_SPLIT_MAX];
    int64_t base[UNCLIP_SPLIT_MAX] = {0};
    uint64_t limit = unclip__ops_bind_limit(vk);
    bool whole = true;
    for (int k = 0; k < s->n_t; k++) {
        b[k] = unclip__tensor_bind(s->t[k]);
        whole = whole && unclip__tensor_bytes(s->t[k]) <= limit;
    }
    if (whole)
        return n > 0 ? s->run(s->user, 0, n, b, base) : UNCLIP_OK;
    /* Greedy: each chunk starts as large as the last one that fitted and halves until its
     * windows fit (ranges are conservative, so a chunk straddling a row may need to be
     * smaller than one that does not). */
    int64_t chunk = n;
    for (int64_t i0 = 0; i0 < n;) {
        int64_t c = n - i0 < chunk ? n - i0 : chunk;
        int bad = 0;
        while (!split_windows(s, limit, i0, i0 + c, b, base, &bad)) {
            if (c == 1) {
                char sh[96];
                return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                                    "%s: element %lld of the output needs more than %llu bytes "
                                    "of tensor %d (%s) in one binding", op, (long long)i0,
                                    (unsigned long long)limit, bad,
                                    unclip__shape_str(s->t[bad], sh, sizeof sh));
            }
            c /= 2;
        }
        unclip_status st = s->run(s->user, i0, i0 + c, b, base);
        if (st != UNCLIP_OK)
            return st;
        i0 += c;
        chunk = c * 2; /* grow again after a chunk that had to shrink at a row boundary */
    }
    return UNCLIP_OK;
}

unclip_status
unclip__ew_chunk(void *user, int64_t i0, int64_t i1, const struct unclip_vk_bind *b,
                 const int64_t *base)
{
    struct unclip_ew_job *j = user;
    struct unclip_ew_head *h = j->pc;
    uint64_t n = (uint64_t)(i1 - i0);
    h->n = (uint32_t)n;
    h->i0 = (uint32_t)i0;
    for (int k = 0; k < j->n_t; k++)
        h->base[k] = (uint32_t)base[k]; /* a negative base wraps, as the shader's uints do */
    uint32_t gx, gy;
    unclip__grid_1d(n, 256, &gx, &gy);
    return unclip__vk_dispatch(j->vk, j->shader, b, (uint32_t)j->n_t, j->pc, j->pc_bytes, gx, gy,
                               1, n * j->work_per_elem);
}
