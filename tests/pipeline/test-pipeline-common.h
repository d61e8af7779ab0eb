/* Helpers shared by the pipeline tests (header only): the tiny golden models, test pictures
 * from the vision_encoder golden, short run parameters, and a trace that keeps chosen
 * tensors. */
#ifndef UNCLIP_TEST_PIPELINE_COMMON_H
#define UNCLIP_TEST_PIPELINE_COMMON_H

#include "core/alloc.h"
#include "io/model-dir.h"
#include "io/safetensors.h"
#include "pipeline/pipeline.h"
#include "testutil.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline char *
tp_model_dir(const char *name)
{
    return g_strdup(tu_golden_path(name)); /* "models/tiny-karlo", ... */
}

/* A context with parameters `cp`; NULL (and a message) without one. */
static inline struct unclip_ctx *
tp_ctx_with(const struct unclip_ctx_params *cp)
{
    struct unclip_ctx *ctx = NULL;
    char err[1024];
    if (unclip_ctx_new(cp, &ctx, err, sizeof err) != UNCLIP_OK) {
        printf("no Vulkan context: %s\n", err);
        return NULL;
    }
    return ctx;
}

/* The pipeline tests' context: fp32 weights (golden comparisons). */
static inline struct unclip_ctx *
tp_ctx(void)
{
    struct unclip_ctx_params cp = unclip_ctx_params_default();
    cp.fp32_weights = true;
    return tp_ctx_with(&cp);
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

/* Picture sizes of the small copies (tp_small_model): the decoder and super-res UNets halve
 * 3 times, so 8 is the smallest decoder size, and 32 keeps the golden 4x upscale. */
#define TP_SMALL_DECODER 8
#define TP_SMALL_SR 32

/* Copies `text` with the number after "sample_size": replaced by `size` (NULL: no such key). */
static inline char *
tp_config_resized(const char *text, int size)
{
    const char *key = strstr(text, "\"sample_size\"");
    if (!key)
        return NULL;
    const char *v = strchr(key, ':');
    if (!v)
        return NULL;
    v++;
    while (*v == ' ')
        v++;
    const char *end = v;
    while (*end >= '0' && *end <= '9')
        end++;
    if (end == v)
        return NULL;
    return g_strdup_printf("%.*s%d%s", (int)(v - text), text, size, end);
}

/* A temporary copy of golden model `name` ("models/tiny-karlo", ...) for tests of pipeline
 * logic that compare runs with each other, not with goldens (frames, cancel): every file is a
 * symlink to the golden file it resolves to (git link stubs followed), except the decoder's
 * and both super-res nets' config.json, whose sample_size becomes TP_SMALL_DECODER /
 * TP_SMALL_SR. Same weights, stages, draws, schedulers and bookkeeping as the golden model,
 * for 1/16 of the UNet work (which is nearly all of a tiny run). Returns the folder (remove it
 * with tp_rmtree and g_free it), NULL after a failed check. */
static inline char *
tp_small_model(const char *name)
{
    char *src = g_canonicalize_filename(tu_golden_path(name), NULL);
    char *dst = g_build_filename(g_get_tmp_dir(), "unclip-small-XXXXXX", NULL);
    bool ok = g_mkdtemp(dst) != NULL;
    TU_CHECK(ok, "mkdtemp %s", dst);
    GDir *top = ok ? g_dir_open(src, 0, NULL) : NULL;
    TU_CHECK(top != NULL, "cannot list %s", src);
    const char *comp;
    while (ok && top && (comp = g_dir_read_name(top))) {
        char *sp = g_build_filename(src, comp, NULL), *dp = g_build_filename(dst, comp, NULL);
        GDir *sub = NULL;
        if (!g_file_test(sp, G_FILE_TEST_IS_DIR)) {
            ok = symlink(sp, dp) == 0; /* model_index.json */
        } else if ((ok = g_mkdir(dp, 0700) == 0 && (sub = g_dir_open(sp, 0, NULL)))) {
            const char *file;
            bool resize = !strcmp(comp, "decoder") || !strcmp(comp, "super_res_first") ||
                          !strcmp(comp, "super_res_last");
            while (ok && (file = g_dir_read_name(sub))) {
                char *f = g_build_filename(sp, file, NULL), *d = g_build_filename(dp, file, NULL);
                char *real = NULL;
                struct unclip_err e = {0};
                ok = unclip__model_file_resolve(f, &real, &e) == UNCLIP_OK;
                TU_CHECK(ok, "%s", e.msg);
                char *abs = ok ? g_canonicalize_filename(real, NULL) : NULL;
                if (ok && resize && !strcmp(file, "config.json")) {
                    gchar *text = NULL, *small = NULL;
                    ok = g_file_get_contents(abs, &text, NULL, NULL) &&
                         (small = tp_config_resized(text, !strcmp(comp, "decoder")
                                                              ? TP_SMALL_DECODER : TP_SMALL_SR));
                    ok = ok && g_file_set_contents(d, small, -1, NULL);
                    g_free(text);
                    g_free(small);
                } else if (ok) {
                    ok = symlink(abs, d) == 0;
                }
                TU_CHECK(ok, "small copy of %s: %s", f, d);
                g_free(abs);
                unclip__free(real);
                g_free(f);
                g_free(d);
            }
        }
        TU_CHECK(ok, "small copy of %s", sp);
        if (sub)
            g_dir_close(sub);
        g_free(sp);
        g_free(dp);
    }
    if (top)
        g_dir_close(top);
    g_free(src);
    if (!ok) {
        g_free(dst);
        return NULL;
    }
    return dst;
}

static inline void
tp_rmtree(const char *dir)
{
    gchar *rm[] = {"rm", "-rf", (gchar *)dir, NULL};
    g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
}

/* Opens a model folder given by path. */
static inline struct unclip_model *
tp_model_at(struct unclip_ctx *ctx, const char *dir)
{
    struct unclip_model *m = NULL;
    unclip_status st = dir ? unclip_model_open(ctx, dir, &m) : UNCLIP_E_ARG;
    TU_CHECK(st == UNCLIP_OK, "opening %s: %s", dir ? dir : "(no folder)",
             unclip_ctx_last_error(ctx));
    return st == UNCLIP_OK ? m : NULL;
}

/* Opens a small copy (tp_small_model) of golden model `name`; *dir receives its folder, for
 * tp_small_close. NULL after a failed check, with nothing left behind (*dir NULL too). */
static inline struct unclip_model *
tp_small_open(struct unclip_ctx *ctx, const char *name, char **dir)
{
    *dir = tp_small_model(name);
    struct unclip_model *m = *dir ? tp_model_at(ctx, *dir) : NULL;
    if (!m && *dir) {
        tp_rmtree(*dir);
        g_free(*dir);
        *dir = NULL;
    }
    return m;
}

/* Frees a model of tp_small_open and removes (and frees) its folder; either may be NULL. */
static inline void
tp_small_close(struct unclip_model *m, char *dir)
{
    unclip_model_free(m);
    if (dir)
        tp_rmtree(dir);
    g_free(dir);
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

/* Every picture of two results equal: count, sizes, layout and pixels. */
static inline bool
tp_same_result(const struct unclip_result *a, const struct unclip_result *b)
{
    if (a->n_images != b->n_images)
        return false;
    for (int32_t i = 0; i < a->n_images; i++)
        if (a->images[i].stride != b->images[i].stride ||
            !tp_same_image(&a->images[i], &b->images[i]))
            return false;
    return true;
}

/* Checks that two pictures are equal; prints one line when they are, else the sizes and
 * (same size) the mean difference. */
static inline void
tp_check_same(const char *what, const struct unclip_image *a, const struct unclip_image *b)
{
    bool same = tp_same_image(a, b);
    bool comparable = a->width == b->width && a->height == b->height &&
                      a->channels == b->channels && a->stride == b->stride;
    TU_CHECK(same, "%s: pictures differ (%dx%d vs %dx%d, mean |diff| %.3f levels)", what,
             (int)a->width, (int)a->height, (int)b->width, (int)b->height,
             same || !comparable ? 0.0 : tp_mean_abs_diff(a, b));
    if (same)
        printf("  %s: identical (%dx%d)\n", what, (int)a->width, (int)a->height);
}

/* Euclidean norm of n floats, summed in double. */
static inline double
tp_norm(const float *v, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return sqrt(s);
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
