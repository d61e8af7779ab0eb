/* Helpers shared by the reliability tests that run pipelines (header only): the golden tiny
 * model, short run parameters and image comparison. */
#ifndef UNCLIP_TEST_RELIABILITY_COMMON_H
#define UNCLIP_TEST_RELIABILITY_COMMON_H

#include "core/alloc.h"
#include "pipeline/api.h"
#include "testutil.h"
#include "vk/vk.h"

#include <glib.h>
#include <string.h>

/* Longest wait for one submission in these tests: a CPU driver on a shared, loaded CI
 * machine can take minutes for a submission that needs a second on its own (a 60 s wait once
 * failed a budget run at load 15 on 2 cores); the tests check results, not speed. */
#define REL_SUBMIT_TIMEOUT_MS 600000u

/* A context with the default (fp16 weights) parameters; NULL (and a message) without one. */
static inline struct unclip_ctx *
rel_ctx(void)
{
    struct unclip_ctx_params cp = unclip_ctx_params_default();
    cp.submit_timeout_ms = REL_SUBMIT_TIMEOUT_MS;
    struct unclip_ctx *ctx = NULL;
    char err[1024];
    if (unclip_ctx_new(&cp, &ctx, err, sizeof err) != UNCLIP_OK) {
        printf("no Vulkan context: %s\n", err);
        return NULL;
    }
    return ctx;
}

static inline struct unclip_model *
rel_model(struct unclip_ctx *ctx, const char *name)
{
    char *dir = g_strdup(tu_golden_path(name));
    struct unclip_model *m = NULL;
    unclip_status st = unclip_model_open(ctx, dir, &m);
    TU_CHECK(st == UNCLIP_OK, "opening %s: %s", dir, unclip_ctx_last_error(ctx));
    g_free(dir);
    return m;
}

/* Text to image with the smallest step counts the schedulers allow. */
static inline struct unclip_run_params
rel_params(uint64_t seed)
{
    struct unclip_run_params p = unclip_run_params_default();
    p.seed = seed;
    p.prior_steps = 2;
    p.decoder_steps = 2;
    p.sr_steps = 2;
    return p;
}

static inline bool
rel_same_result(const struct unclip_result *a, const struct unclip_result *b)
{
    if (a->n_images != b->n_images)
        return false;
    for (int32_t i = 0; i < a->n_images; i++) {
        const struct unclip_image *x = &a->images[i], *y = &b->images[i];
        if (x->width != y->width || x->height != y->height || x->channels != y->channels ||
            x->stride != y->stride ||
            memcmp(x->pixels, y->pixels, (size_t)x->height * (size_t)x->stride))
            return false;
    }
    return true;
}

static inline double
rel_seconds(void)
{
    return (double)g_get_monotonic_time() / 1e6;
}

#endif
