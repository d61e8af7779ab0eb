#include "models/weights.h"

#include "core/alloc.h"

#include <stdio.h>
#include <string.h>

/* Host staging for conversions: bounded so that loading a big model never needs a second
 * full-size host copy of a tensor. */
#define STAGE_ELEMS (1u << 20)

struct unclip_weights {
    struct unclip_vk *vk;             /* borrowed */
    struct unclip_st_file *st;
    char *name;
    enum unclip_dtype dev_dtype;
    uint8_t *used;                    /* one flag per tensor of st */
    uint64_t uploaded;
};

unclip_status
unclip__weights_open(struct unclip_vk *vk, const char *path, const char *display_name,
                     const struct unclip_weights_opts *opts, struct unclip_weights **out,
                     struct unclip_err *err)
{
    if (!path || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "weights: NULL argument");
    struct unclip_weights *w = unclip__calloc(1, sizeof *w);
    if (!w)
        return unclip__fail(err, UNCLIP_E_NOMEM, "weights: out of host memory");
    w->vk = vk;
    w->dev_dtype = opts && opts->fp32 ? UNCLIP_DT_F32 : UNCLIP_DT_F16;
    w->name = unclip__strdup(display_name ? display_name : path);
    if (!w->name) {
        unclip__free(w);
        return unclip__fail(err, UNCLIP_E_NOMEM, "weights: out of host memory");
    }
    unclip_status st = unclip__st_open(path, &w->st, err);
    if (st != UNCLIP_OK) {
        if (display_name)
            unclip__err_prefix(err, "%s", display_name);
        unclip__weights_free(w);
        return st;
    }
    int32_t n = unclip__st_count(w->st);
    w->used = unclip__calloc(n ? (size_t)n : 1, 1);
    if (!w->used) {
        unclip__weights_free(w);
        return unclip__fail(err, UNCLIP_E_NOMEM, "weights: out of host memory");
    }
    *out = w;
    return UNCLIP_OK;
}

void
unclip__weights_free(struct unclip_weights *w)
{
    if (!w)
        return;
    unclip__st_close(w->st);
    unclip__free(w->used);
    unclip__free(w->name);
    unclip__free(w);
}

const struct unclip_st_file *
unclip__weights_file(const struct unclip_weights *w)
{
    return w ? w->st : NULL;
}

const char *
unclip__weights_name(const struct unclip_weights *w)
{
    return w ? w->name : NULL;
}

enum unclip_dtype
unclip__weights_dtype(const struct unclip_weights *w)
{
    return w ? w->dev_dtype : UNCLIP_DT_F16;
}

bool
unclip__weights_has(const struct unclip_weights *w, const char *name)
{
    return w && unclip__st_find(w->st, name) != NULL;
}

/* Presence, float dtype and exact shape. */
static unclip_status
check(struct unclip_weights *w, const char *name, int32_t ndim, const int64_t *shape,
      const struct unclip_st_tensor **out, struct unclip_err *err)
{
    if (!w || !name || (ndim > 0 && !shape))
        return unclip__fail(err, UNCLIP_E_ARG, "weights: NULL argument");
    if (ndim < 0 || ndim > UNCLIP_ST_MAX_DIMS)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: tensor '%s': ndim %d asked", w->name, name,
                            (int)ndim);
    const struct unclip_st_tensor *t = unclip__st_find(w->st, name);
    if (!t)
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: missing tensor '%s'", w->name, name);
    if (t->dtype != UNCLIP_DT_F32 && t->dtype != UNCLIP_DT_F16 && t->dtype != UNCLIP_DT_BF16)
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: tensor '%s': dtype %s, expected F32, F16 "
                            "or BF16", w->name, name, unclip__dtype_name(t->dtype));
    bool same = t->ndim == ndim;
    for (int32_t i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char a[200], b[200];
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: tensor '%s': shape %s, expected %s",
                            w->name, name, unclip__st_shape_str(t->ndim, t->shape, a, sizeof a),
                            unclip__st_shape_str(ndim, shape, b, sizeof b));
    }
    *out = t;
    return UNCLIP_OK;
}

/* Converts elements [i0, i0 + n) of t into dst stored as dtype (F32 or F16). */
static void
convert(const struct unclip_st_tensor *t, int64_t i0, int64_t n, enum unclip_dtype dtype,
        void *dst)
{
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < n; i++) {
        float f;
        uint16_t h;
        switch (t->dtype) {
        case UNCLIP_DT_F32:
            memcpy(&f, p + 4 * (i0 + i), 4);
            break;
        case UNCLIP_DT_F16:
            memcpy(&h, p + 2 * (i0 + i), 2);
            if (dtype == UNCLIP_DT_F16) {
                ((uint16_t *)dst)[i] = h; /* exact: no round trip through float */
                continue;
            }
            f = unclip__f16_to_f32(h);
            break;
        default: /* BF16 */
            memcpy(&h, p + 2 * (i0 + i), 2);
            f = unclip__bf16_to_f32(h);
            break;
        }
        if (dtype == UNCLIP_DT_F32)
            ((float *)dst)[i] = f;
        else
            ((uint16_t *)dst)[i] = unclip__f32_to_f16(f);
    }
}

static unclip_status
vk_error(struct unclip_weights *w, const char *name, unclip_status st, struct unclip_err *err)
{
    /* err is often the context's record, i.e. ve itself: copy the detail out first (a
     * formatted write from a buffer into itself garbles the message). */
    const struct unclip_err *ve = unclip__vk_err(w->vk);
    char detail[UNCLIP_ERR_MAX];
    snprintf(detail, sizeof detail, "%s", ve && ve->msg[0] ? ve->msg : unclip_status_str(st));
    return unclip__fail(err, st, "%s: tensor '%s': %s", w->name, name, detail);
}

static unclip_status
upload(struct unclip_weights *w, const struct unclip_st_tensor *t, int32_t dev_ndim,
       const int64_t *dev_shape, enum unclip_dtype dtype, struct unclip_tensor *out,
       struct unclip_err *err)
{
    if (!w->vk)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: tensor '%s': no device to upload to",
                            w->name, t->name);
    if (dtype != UNCLIP_DT_F32 && dtype != UNCLIP_DT_F16)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: tensor '%s': device dtype must be F32 or "
                            "F16", w->name, t->name);
    if (dev_ndim < 0 || dev_ndim > UNCLIP_MAX_DIMS)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: tensor '%s': %d device dimensions (at most "
                            "%d)", w->name, t->name, (int)dev_ndim, UNCLIP_MAX_DIMS);
    int64_t n = 1;
    for (int32_t i = 0; i < dev_ndim; i++) {
        if (dev_shape[i] <= 0 || n > INT64_MAX / dev_shape[i])
            return unclip__fail(err, UNCLIP_E_ARG, "%s: tensor '%s': bad device shape",
                                w->name, t->name);
        n *= dev_shape[i];
    }
    if (n != t->numel)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: tensor '%s': %lld elements cannot be viewed "
                            "as %lld", w->name, t->name, (long long)t->numel, (long long)n);
    struct unclip_tensor d = {0};
    unclip_status st = unclip__tensor_new(w->vk, dtype, dev_ndim, dev_shape, &d);
    if (st != UNCLIP_OK)
        return vk_error(w, t->name, st, err);
    uint64_t esize = unclip__dtype_size(dtype);
    uint64_t total = unclip__tensor_bytes(&d);
    if (t->dtype == dtype && t->nbytes == total) {
        /* Same encoding and no padding word: straight from the mapping. */
        st = unclip__vk_upload(w->vk, d.buf, 0, t->data, t->nbytes);
    } else {
        size_t chunk = n < (int64_t)STAGE_ELEMS ? (size_t)n : STAGE_ELEMS;
        /* +2 elements of room for the F16 padding half-word. */
        uint8_t *stage = unclip__malloc((chunk + 2) * esize);
        if (!stage) {
            unclip__tensor_free(&d);
            return unclip__fail(err, UNCLIP_E_NOMEM, "%s: tensor '%s': out of host memory",
                                w->name, t->name);
        }
        for (int64_t i0 = 0; i0 < n && st == UNCLIP_OK; i0 += (int64_t)chunk) {
            int64_t m = n - i0 < (int64_t)chunk ? n - i0 : (int64_t)chunk;
            convert(t, i0, m, dtype, stage);
            uint64_t bytes = (uint64_t)m * esize;
            uint64_t off = (uint64_t)i0 * esize;
            if (off + bytes < total) {
                /* Last chunk of an odd F16 count: zero the padding half-word too. */
                if (i0 + m == n) {
                    memset(stage + bytes, 0, (size_t)(total - off - bytes));
                    bytes = total - off;
                }
            }
            st = unclip__vk_upload(w->vk, d.buf, off, stage, bytes);
        }
        unclip__free(stage);
    }
    if (st != UNCLIP_OK) {
        unclip__tensor_free(&d);
        return vk_error(w, t->name, st, err);
    }
    w->used[t - unclip__st_at(w->st, 0)] = 1;
    w->uploaded += total;
    *out = d;
    return UNCLIP_OK;
}

unclip_status
unclip__weights_get_as(struct unclip_weights *w, const char *name, int32_t ndim,
                       const int64_t *shape, enum unclip_dtype dtype, struct unclip_tensor *out,
                       struct unclip_err *err)
{
    if (!out)
        return unclip__fail(err, UNCLIP_E_ARG, "weights: NULL argument");
    const struct unclip_st_tensor *t = NULL;
    unclip_status st = check(w, name, ndim, shape, &t, err);
    if (st != UNCLIP_OK)
        return st;
    return upload(w, t, ndim, shape, dtype, out, err);
}

unclip_status
unclip__weights_get(struct unclip_weights *w, const char *name, int32_t ndim,
                    const int64_t *shape, struct unclip_tensor *out, struct unclip_err *err)
{
    return unclip__weights_get_as(w, name, ndim, shape, w ? w->dev_dtype : UNCLIP_DT_F16, out,
                                  err);
}

unclip_status
unclip__weights_get_reshaped(struct unclip_weights *w, const char *name, int32_t file_ndim,
                             const int64_t *file_shape, int32_t dev_ndim,
                             const int64_t *dev_shape, enum unclip_dtype dtype,
                             struct unclip_tensor *out, struct unclip_err *err)
{
    if (!out || (dev_ndim > 0 && !dev_shape))
        return unclip__fail(err, UNCLIP_E_ARG, "weights: NULL argument");
    const struct unclip_st_tensor *t = NULL;
    unclip_status st = check(w, name, file_ndim, file_shape, &t, err);
    if (st != UNCLIP_OK)
        return st;
    if (dtype == UNCLIP_DT_N)
        dtype = w->dev_dtype;
    return upload(w, t, dev_ndim, dev_shape, dtype, out, err);
}

unclip_status
unclip__weights_get_host(struct unclip_weights *w, const char *name, int32_t ndim,
                         const int64_t *shape, float *dst, struct unclip_err *err)
{
    const struct unclip_st_tensor *t = NULL;
    unclip_status st = check(w, name, ndim, shape, &t, err);
    if (st != UNCLIP_OK)
        return st;
    if (!dst && t->numel)
        return unclip__fail(err, UNCLIP_E_ARG, "weights: NULL argument");
    st = unclip__st_to_f32(t, dst, err);
    if (st == UNCLIP_OK)
        w->used[t - unclip__st_at(w->st, 0)] = 1;
    return st;
}

uint64_t
unclip__weights_bytes_uploaded(const struct unclip_weights *w)
{
    return w ? w->uploaded : 0;
}

int32_t
unclip__weights_unused_count(const struct unclip_weights *w)
{
    if (!w)
        return 0;
    int32_t k = 0;
    for (int32_t i = 0; i < unclip__st_count(w->st); i++)
        k += !w->used[i];
    return k;
}

unclip_status
unclip__weights_check_all_used(const struct unclip_weights *w, struct unclip_err *err)
{
    int32_t k = unclip__weights_unused_count(w);
    if (k == 0)
        return UNCLIP_OK;
    char names[600];
    size_t len = 0;
    int shown = 0;
    names[0] = '\0';
    for (int32_t i = 0; i < unclip__st_count(w->st) && shown < 5; i++) {
        if (w->used[i])
            continue;
        const char *nm = unclip__st_at(w->st, i)->name;
        if (len < sizeof names)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s'%.100s'",
                                    shown ? ", " : "", nm);
        shown++;
    }
    return unclip__fail(err, UNCLIP_E_MODEL, "%s: %d tensor%s of the file not used by the model "
                        "(%s%s): is it for another configuration?", w->name, (int)k,
                        k == 1 ? "" : "s", names, k > shown ? ", ..." : "");
}
