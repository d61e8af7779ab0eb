#include "ophelp.h"

#include "core/dtype.h"
#include "ops/op-util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_WORDS 64
static const uint32_t GUARD = 0x7fc0deadu; /* a NaN payload no shader produces */

static int
track(struct ot_ctx *c)
{
    if (c->n >= OT_MAX_TENSORS) {
        fprintf(stderr, "ophelp: too many tensors in case %s\n", c->case_name);
        exit(2);
    }
    return c->n++;
}

bool
ot_ok(struct ot_ctx *c, unclip_status st)
{
    TU_CHECK(st == UNCLIP_OK, "%s: op failed: %s: %s", c->case_name, unclip_status_str(st),
             unclip__vk_err(c->vk)->msg);
    return st == UNCLIP_OK;
}

static struct unclip_tensor *
make(struct ot_ctx *c, enum unclip_dtype dt, int32_t ndim, const int64_t *shape, const float *vals,
     float **host_out)
{
    int i = track(c);
    struct unclip_tensor *t = &c->t[i];
    if (!ot_ok(c, unclip__tensor_new(c->vk, dt, ndim, shape, t)))
        exit(2);
    int64_t n = unclip__tensor_numel(t);
    float *h = calloc((size_t)n, sizeof *h);
    for (int64_t k = 0; k < n; k++) {
        float v = vals ? vals[k] : tu_rng_normal(&c->rng);
        h[k] = dt == UNCLIP_DT_F16 ? unclip__f16_to_f32(unclip__f32_to_f16(v)) : v;
    }
    if (!ot_ok(c, unclip__tensor_upload_f32(c->vk, t, h)))
        exit(2);
    c->host[i] = h;
    if (host_out)
        *host_out = h;
    return t;
}

struct unclip_tensor *
ot_input(struct ot_ctx *c, enum unclip_dtype dt, int32_t ndim, const int64_t *shape, float scale,
         float **host)
{
    int64_t n = 1;
    for (int32_t k = 0; k < ndim; k++)
        n *= shape[k];
    float *v = malloc((size_t)n * sizeof *v);
    tu_fill_normal(&c->rng, v, n, scale);
    struct unclip_tensor *t = make(c, dt, ndim, shape, v, host);
    free(v);
    return t;
}

struct unclip_tensor *
ot_input_from(struct ot_ctx *c, int32_t ndim, const int64_t *shape, const float *values)
{
    return make(c, UNCLIP_DT_F32, ndim, shape, values, NULL);
}

struct unclip_tensor *
ot_output(struct ot_ctx *c, int32_t ndim, const int64_t *shape)
{
    int i = track(c);
    struct unclip_tensor *t = &c->t[i];
    int64_t n = 1;
    for (int32_t k = 0; k < ndim; k++)
        n *= shape[k];
    int64_t padded = n + GUARD_WORDS;
    if (!ot_ok(c, unclip__tensor_new(c->vk, UNCLIP_DT_F32, 1, &padded, t)))
        exit(2);
    uint32_t *fill = malloc((size_t)padded * 4);
    for (int64_t k = 0; k < padded; k++)
        fill[k] = GUARD;
    if (!ot_ok(c, unclip__vk_upload(c->vk, t->buf, 0, fill, (uint64_t)padded * 4)))
        exit(2);
    free(fill);
    /* The tensor now describes the real shape; the buffer keeps the guard words behind it. */
    t->ndim = ndim;
    for (int32_t k = 0; k < ndim; k++)
        t->shape[k] = shape[k];
    return t;
}

float *
ot_scratch(struct ot_ctx *c, int64_t n)
{
    int i = track(c);
    c->host[i] = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    return c->host[i];
}

void
ot_compare(struct ot_ctx *c, const char *label, const struct unclip_tensor *out, const float *ref,
           double tol)
{
    int64_t n = unclip__tensor_numel(out);
    uint32_t *raw = malloc((size_t)(n + GUARD_WORDS) * 4);
    unclip_status st =
        unclip__vk_download(c->vk, out->buf, 0, raw, (uint64_t)(n + GUARD_WORDS) * 4);
    if (!ot_ok(c, st)) {
        free(raw);
        return;
    }
    int64_t bad_guard = -1;
    for (int64_t k = 0; k < GUARD_WORDS; k++)
        if (raw[n + k] != GUARD && bad_guard < 0)
            bad_guard = k;
    float *got = (float *)raw;
    int64_t nf = tu_first_nonfinite(got, n);
    int64_t nr = tu_first_nonfinite(ref, n);
    double nmse = tu_nmse(got, ref, n);
    TU_CHECK(bad_guard < 0, "%s %s: guard word %lld after the output was overwritten",
             c->case_name, label, (long long)bad_guard);
    TU_CHECK(nr >= 0 || nf < 0, "%s %s: element %lld is %g (not finite)", c->case_name, label,
             (long long)nf, nf >= 0 ? got[nf] : 0.0);
    TU_CHECK(nmse <= tol, "%s %s: nmse %.3e > %.1e (max abs %.3e)", c->case_name, label, nmse,
             tol, tu_max_abs(got, ref, n));
    printf("  %-14s %-34s n=%-9lld nmse %.2e\n", c->case_name, label, (long long)n, nmse);
    free(raw);
}

void
ot_with_bind_limit(struct ot_ctx *c, const int64_t *d, uint64_t limit,
                   void (*fn)(struct ot_ctx *, const int64_t *), uint64_t min_dispatches)
{
    struct unclip_vk_stats before, after;
    unclip__vk_stats(c->vk, &before);
    unclip__ops_bind_limit_override = limit;
    fn(c, d);
    unclip__ops_bind_limit_override = 0;
    unclip__vk_stats(c->vk, &after);
    uint64_t ran = after.dispatches - before.dispatches;
    TU_CHECK(ran >= min_dispatches, "%s: %llu dispatches with a %llu-byte binding limit, expected "
             ">= %llu (did the op split?)", c->case_name, (unsigned long long)ran,
             (unsigned long long)limit, (unsigned long long)min_dispatches);
    printf("  %-14s %-34s %llu dispatches (limit %llu bytes)\n", c->case_name, "split",
           (unsigned long long)ran, (unsigned long long)limit);
}
