/* Helpers shared by the pipeline tests (header only): the tiny golden models, test pictures
 * from the vision_encoder golden, short run parameters, and a trace that keeps chosen
 * tensors. */
#ifndef UNCLIP_TEST_PIPELINE_COMMON_H
#define UNCLIP_TEST_PIPELINE_COMMON_H

#include "core/alloc.h"
#include "io/safetensors.h"
#include "pipeline/pipeline.h"
#include "testutil.h"

#include <glib.h>
#include <stdlib.h>
#include <string.h>

static inline char *
tp_model_dir(const char *name)
{
    return g_strdup(tu_golden_path(name)); /* "models/tiny-karlo", ... */
}

static inline struct unclip_ctx *
tp_ctx(void)
{
    struct unclip_ctx_params cp = unclip_ctx_params_default();
    cp.fp32_weights = true;
    struct unclip_ctx *ctx = NULL;
    char err[1024];
    if (unclip_ctx_new(&cp, &ctx, err, sizeof err) != UNCLIP_OK) {
        printf("no Vulkan context: %s\n", err);
        return NULL;
    }
    return ctx;
}

static inline struct unclip_model *
tp_model(struct unclip_ctx *ctx, const char *name)
{
    char *dir = tp_model_dir(name);
    struct unclip_model *m = NULL;
    unclip_status st = unclip_model_open(ctx, dir, &m);
    TU_CHECK(st == UNCLIP_OK, "opening %s: %s", dir, unclip_ctx_last_error(ctx));
    g_free(dir);
    return m;
}

/* Short runs: the smallest step counts the schedulers allow. */
static inline struct unclip_run_params
tp_params(uint64_t seed)
{
    struct unclip_run_params p = unclip_run_params_default();
    p.seed = seed;
    p.prior_steps = 2;
    p.decoder_steps = 2;
    p.sr_steps = 2;
    return p;
}

/* Golden tensor (F32 or U8) of goldens/<file>; g_free the data. */
static inline void *
tp_golden_tensor(const char *file, const char *name, int64_t *numel, int64_t *shape3)
{
    char rel[256];
    snprintf(rel, sizeof rel, "goldens/%s", file);
    struct unclip_err e = {0};
    struct unclip_st_file *f = NULL;
    if (unclip__st_open(tu_golden_path(rel), &f, &e) != UNCLIP_OK) {
        TU_CHECK(false, "%s", e.msg);
        return NULL;
    }
    const struct unclip_st_tensor *t = unclip__st_find(f, name);
    void *v = NULL;
    if (t) {
        *numel = t->numel;
        for (int32_t i = 0; shape3 && i < 3 && i < t->ndim; i++)
            shape3[i] = t->shape[i];
        if (t->dtype == UNCLIP_DT_U8) {
            v = g_malloc(t->numel);
            memcpy(v, t->data, t->numel);
        } else {
            v = g_new0(float, t->numel);
            unclip__st_to_f32(t, v, NULL);
        }
    }
    TU_CHECK(t != NULL, "%s lacks %s", file, name);
    unclip__st_close(f);
    return v;
}

/* Test picture k of vision_encoder.safetensors (i<k>_source_rgb_u8, [H, W, C]). */
static inline struct unclip_image
tp_image(int k)
{
    char name[64];
    snprintf(name, sizeof name, "i%d_source_rgb_u8", k);
    int64_t n = 0, s[3] = {0, 0, 0};
    uint8_t *px = tp_golden_tensor("vision_encoder.safetensors", name, &n, s);
    struct unclip_image img = {
        .width = (int32_t)s[1], .height = (int32_t)s[0], .channels = (int32_t)s[2],
        .stride = (int32_t)(s[1] * s[2]), .pixels = px,
    };
    return img;
}

/* Golden image embedding of picture k ([E] floats, g_free). */
static inline float *
tp_embedding(int k, int32_t *dim)
{
    char name[64];
    snprintf(name, sizeof name, "i%d_image_embeds", k);
    int64_t n = 0;
    float *v = tp_golden_tensor("vision_encoder.safetensors", name, &n, NULL);
    *dim = (int32_t)n;
    return v;
}

static inline bool
tp_same_image(const struct unclip_image *a, const struct unclip_image *b)
{
    return a->width == b->width && a->height == b->height && a->channels == b->channels &&
           !memcmp(a->pixels, b->pixels, (size_t)a->height * a->stride);
}

static inline double
tp_mean_abs_diff(const struct unclip_image *a, const struct unclip_image *b)
{
    size_t n = (size_t)a->height * a->stride;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a->pixels[i] - (int)b->pixels[i]);
    return s / (double)n;
}

/* A trace keeping float tensors "<group>/<name>" whose name is in `want` (NULL-terminated). */
struct tp_trace {
    const char *const *want;
    GHashTable *t; /* "group/name" -> GArray of float */
};

static inline unclip_status
tp_trace_put(void *user, const char *group, const char *name, enum unclip_dtype dt,
             int32_t ndim, const int64_t *shape, const void *data, struct unclip_err *err)
{
    (void)err;
    struct tp_trace *tr = user;
    if (dt != UNCLIP_DT_F32)
        return UNCLIP_OK;
    bool wanted = false;
    for (int i = 0; tr->want[i] && !wanted; i++)
        wanted = !strcmp(tr->want[i], name);
    if (!wanted)
        return UNCLIP_OK;
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++)
        n *= shape[i];
    GArray *a = g_array_sized_new(FALSE, FALSE, sizeof(float), (guint)n);
    g_array_append_vals(a, data, (guint)n);
    g_hash_table_replace(tr->t, g_strdup_printf("%s/%s", group, name), a);
    return UNCLIP_OK;
}

static inline void
tp_trace_init(struct tp_trace *tr, const char *const *want)
{
    tr->want = want;
    tr->t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                  (GDestroyNotify)g_array_unref);
}

static inline const GArray *
tp_trace_get(const struct tp_trace *tr, const char *group, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "%s/%s", group, name);
    const GArray *a = g_hash_table_lookup(tr->t, key);
    TU_CHECK(a != NULL, "the trace has no %s", key);
    return a;
}

static inline void
tp_trace_clear(struct tp_trace *tr)
{
    g_hash_table_destroy(tr->t);
}

#endif
