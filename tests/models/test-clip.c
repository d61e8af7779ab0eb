/* CLIP towers against the goldens (README sections 3 and 8):
 *   text_encoder.safetensors   p{k}_input_ids  -> p{k}_last_hidden_state, p{k}_text_embeds
 *   vision_encoder.safetensors i{k}_pixel_values -> i{k}_last_hidden_state, i{k}_image_embeds
 * with fp32 device weights (relative L2 <= 1e-4, the README's module rule) and fp16 device
 * weights (<= 5e-3), one prompt/image at a time and all of them in one batch. */
#include "core/alloc.h"
#include "io/model-dir.h"
#include "io/safetensors.h"
#include "models/clip-text.h"
#include "models/clip-vision.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FP32_TOL 1e-4
#define FP16_TOL 5e-3

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Golden tensor as floats (new array) with its element count; NULL when absent. */
static float *
golden_f32(const struct unclip_st_file *f, const char *name, int64_t *n)
{
    const struct unclip_st_tensor *t = unclip__st_find(f, name);
    if (!t)
        return NULL;
    float *x = malloc((size_t)t->numel * sizeof(float) + 1);
    unclip__st_to_f32(t, x, NULL);
    *n = t->numel;
    return x;
}

static int64_t *
golden_i64(const struct unclip_st_file *f, const char *name, int64_t *n)
{
    const struct unclip_st_tensor *t = unclip__st_find(f, name);
    if (!t)
        return NULL;
    int64_t *x = malloc((size_t)t->numel * sizeof(int64_t) + 1);
    unclip__st_to_i64(t, x, NULL);
    *n = t->numel;
    return x;
}

/* ---- text ---- */

static void
test_text(struct unclip_vk *vk, const struct unclip_model_dir *dir, bool fp32)
{
    const char *label = fp32 ? "fp32" : "fp16";
    double tol = fp32 ? FP32_TOL : FP16_TOL;
    struct unclip_err err = {0};
    struct unclip_clip_text *m = NULL;
    struct unclip_clip_text_opts opts = {.fp32 = fp32};
    unclip_status st = unclip__clip_text_load(vk, dir, "text_encoder", &opts, &m, &err);
    TU_CHECK(st == UNCLIP_OK, "text %s: load: %s", label, err.msg);
    if (st != UNCLIP_OK)
        return;
    const struct unclip_clip_text_config *c = unclip__clip_text_config(m);
    printf("text encoder %s: H %d, %d layers, %d heads, P %d, %.2f MiB on the device\n", label,
           (int)c->hidden, (int)c->layers, (int)c->heads, (int)c->proj_dim,
           unclip__clip_text_weight_bytes(m) / 1048576.0);

    struct unclip_st_file *g = NULL;
    st = unclip__st_open(tu_golden_path("goldens/text_encoder.safetensors"), &g, &err);
    TU_CHECK(st == UNCLIP_OK, "open text goldens: %s", err.msg);
    if (st != UNCLIP_OK) {
        unclip__clip_text_free(m);
        return;
    }

    enum { MAXP = 16 };
    int32_t n_prompts = 0, len = 0;
    int64_t *all_ids = NULL;
    float *all_te = NULL, *all_lh = NULL;
    const int64_t H = c->hidden, P = c->proj_dim;
    for (int k = 0; k < MAXP; k++) {
        char name[64];
        int64_t n_ids = 0, n_te = 0, n_lh = 0;
        snprintf(name, sizeof name, "p%d_input_ids", k);
        int64_t *ids = golden_i64(g, name, &n_ids);
        if (!ids)
            break;
        snprintf(name, sizeof name, "p%d_text_embeds", k);
        float *gte = golden_f32(g, name, &n_te);
        snprintf(name, sizeof name, "p%d_last_hidden_state", k);
        float *glh = golden_f32(g, name, &n_lh);
        TU_CHECK(gte && glh, "p%d: golden outputs missing", k);
        len = (int32_t)n_ids;
        TU_CHECK(n_te == P && n_lh == (int64_t)len * H, "p%d: golden sizes %lld/%lld vs config",
                 k, (long long)n_te, (long long)n_lh);
        float *te = calloc((size_t)P, sizeof(float));
        float *lh = calloc((size_t)(len * H), sizeof(float));
        double t0 = now_ms();
        st = unclip__clip_text_encode(m, ids, 1, len, te, lh);
        double t1 = now_ms();
        TU_CHECK(st == UNCLIP_OK, "p%d %s: encode: %s", k, label, unclip__vk_err(vk)->msg);
        double e1 = tu_rel_l2(te, gte, P), e2 = tu_rel_l2(lh, glh, (int64_t)len * H);
        printf("  p%d %s: pool %2d  text_embeds rel L2 %.2e  last_hidden_state %.2e  (%.1f ms)\n",
               k, label, (int)unclip__clip_text_pool_index(c, ids, len), e1, e2, t1 - t0);
        TU_CHECK(e1 <= tol, "p%d %s: text_embeds rel L2 %.3e > %.0e", k, label, e1, tol);
        TU_CHECK(e2 <= tol, "p%d %s: last_hidden_state rel L2 %.3e > %.0e", k, label, e2, tol);
        TU_CHECK(tu_first_nonfinite(lh, (int64_t)len * H) < 0, "p%d: non-finite output", k);

        all_ids = realloc(all_ids, (size_t)(n_prompts + 1) * (size_t)len * sizeof(int64_t));
        all_te = realloc(all_te, (size_t)(n_prompts + 1) * (size_t)P * sizeof(float));
        all_lh = realloc(all_lh, (size_t)(n_prompts + 1) * (size_t)(len * H) * sizeof(float));
        memcpy(all_ids + (int64_t)n_prompts * len, ids, (size_t)len * sizeof(int64_t));
        memcpy(all_te + n_prompts * P, gte, (size_t)P * sizeof(float));
        memcpy(all_lh + (int64_t)n_prompts * len * H, glh, (size_t)(len * H) * sizeof(float));
        n_prompts++;
        free(ids);
        free(gte);
        free(glh);
        free(te);
        free(lh);
    }
    TU_CHECK(n_prompts == 6, "expected 6 golden prompts, found %d", (int)n_prompts);

    /* All prompts in one batch: rows must not see each other. */
    if (n_prompts > 0) {
        float *te = calloc((size_t)(n_prompts * P), sizeof(float));
        float *lh = calloc((size_t)n_prompts * (size_t)(len * H), sizeof(float));
        double t0 = now_ms();
        st = unclip__clip_text_encode(m, all_ids, n_prompts, len, te, lh);
        double t1 = now_ms();
        TU_CHECK(st == UNCLIP_OK, "batch %s: %s", label, unclip__vk_err(vk)->msg);
        double e1 = tu_rel_l2(te, all_te, n_prompts * P);
        double e2 = tu_rel_l2(lh, all_lh, (int64_t)n_prompts * len * H);
        printf("  batch of %d %s: text_embeds %.2e  last_hidden_state %.2e  (%.1f ms)\n",
               (int)n_prompts, label, e1, e2, t1 - t0);
        TU_CHECK(e1 <= tol && e2 <= tol, "batch %s: rel L2 %.3e / %.3e", label, e1, e2);

        /* The same prompt twice gives bit-identical results (pipelines cache "" on that). */
        float *te2 = calloc((size_t)P, sizeof(float));
        st = unclip__clip_text_encode(m, all_ids, 1, len, te2, NULL);
        TU_CHECK(st == UNCLIP_OK && memcmp(te2, te, (size_t)P * sizeof(float)) == 0,
                 "%s: p0 alone and in a batch differ", label);
        free(te2);

        /* Argument checks: an id outside the vocabulary names its position. */
        int64_t bad[77];
        memcpy(bad, all_ids, sizeof bad);
        bad[5] = c->vocab_size;
        st = unclip__clip_text_encode(m, bad, 1, len, te, NULL);
        TU_CHECK(st == UNCLIP_E_ARG && strstr(unclip__vk_err(vk)->msg, "input_ids[0][5]"),
                 "bad id: %d %s", st, unclip__vk_err(vk)->msg);
        free(te);
        free(lh);
    }
    free(all_ids);
    free(all_te);
    free(all_lh);
    unclip__st_close(g);
    unclip__clip_text_free(m);
}

/* ---- pooling rule ---- */

static void
test_pooling(void)
{
    struct unclip_clip_text_config c = {.eos_token_id = 2};
    int64_t ids[8] = {49406, 320, 49407, 0, 49407, 0, 0, 0};
    TU_CHECK(unclip__clip_text_pool_index(&c, ids, 8) == 2, "argmax pooling: first eos");
    int64_t lit[8] = {49406, 49407, 320, 49407, 0, 0, 0, 0}; /* literal <|endoftext|> first */
    TU_CHECK(unclip__clip_text_pool_index(&c, lit, 8) == 1, "argmax pooling: literal eos");
    c.eos_token_id = 706; /* a config naming its real eos id pools at its first occurrence */
    int64_t small[6] = {705, 40, 706, 0, 0, 0};
    TU_CHECK(unclip__clip_text_pool_index(&c, small, 6) == 2, "eos-id pooling");
    int64_t none[4] = {705, 40, 41, 0};
    TU_CHECK(unclip__clip_text_pool_index(&c, none, 4) == 0, "eos-id pooling without eos");
}

/* ---- vision ---- */

static void
test_vision(struct unclip_vk *vk, const struct unclip_model_dir *dir, bool fp32)
{
    const char *label = fp32 ? "fp32" : "fp16";
    double tol = fp32 ? FP32_TOL : FP16_TOL;
    struct unclip_err err = {0};
    struct unclip_clip_vision *m = NULL;
    struct unclip_clip_vision_opts opts = {.fp32 = fp32};
    unclip_status st = unclip__clip_vision_load(vk, dir, "image_encoder", &opts, &m, &err);
    TU_CHECK(st == UNCLIP_OK, "vision %s: load: %s", label, err.msg);
    if (st != UNCLIP_OK)
        return;
    const struct unclip_clip_vision_config *c = unclip__clip_vision_config(m);
    printf("image encoder %s: %dx%d patch %d, %d tokens, H %d, %d layers, P %d, %.2f MiB\n",
           label, (int)c->image_size, (int)c->image_size, (int)c->patch_size, (int)c->tokens,
           (int)c->hidden, (int)c->layers, (int)c->proj_dim,
           unclip__clip_vision_weight_bytes(m) / 1048576.0);

    struct unclip_st_file *g = NULL;
    st = unclip__st_open(tu_golden_path("goldens/vision_encoder.safetensors"), &g, &err);
    TU_CHECK(st == UNCLIP_OK, "open vision goldens: %s", err.msg);
    if (st != UNCLIP_OK) {
        unclip__clip_vision_free(m);
        return;
    }
    const int64_t H = c->hidden, P = c->proj_dim, T = c->tokens;
    const int64_t NPIX = (int64_t)c->channels * c->image_size * c->image_size;
    enum { MAXI = 16 };
    int32_t n_img = 0;
    float *all_px = NULL, *all_ie = NULL, *all_lh = NULL;
    for (int k = 0; k < MAXI; k++) {
        char name[64];
        int64_t n_px = 0, n_ie = 0, n_lh = 0;
        snprintf(name, sizeof name, "i%d_pixel_values", k);
        float *px = golden_f32(g, name, &n_px);
        if (!px)
            break;
        snprintf(name, sizeof name, "i%d_image_embeds", k);
        float *gie = golden_f32(g, name, &n_ie);
        snprintf(name, sizeof name, "i%d_last_hidden_state", k);
        float *glh = golden_f32(g, name, &n_lh);
        TU_CHECK(gie && glh && n_px == NPIX && n_ie == P && n_lh == T * H,
                 "i%d: golden sizes disagree with the config", k);
        float *ie = calloc((size_t)P, sizeof(float));
        float *lh = calloc((size_t)(T * H), sizeof(float));
        double t0 = now_ms();
        st = unclip__clip_vision_encode(m, px, 1, ie, lh);
        double t1 = now_ms();
        TU_CHECK(st == UNCLIP_OK, "i%d %s: encode: %s", k, label, unclip__vk_err(vk)->msg);
        double e1 = tu_rel_l2(ie, gie, P), e2 = tu_rel_l2(lh, glh, T * H);
        printf("  i%d %s: image_embeds rel L2 %.2e  last_hidden_state %.2e  (%.1f ms)\n", k,
               label, e1, e2, t1 - t0);
        TU_CHECK(e1 <= tol, "i%d %s: image_embeds rel L2 %.3e > %.0e", k, label, e1, tol);
        TU_CHECK(e2 <= tol, "i%d %s: last_hidden_state rel L2 %.3e > %.0e", k, label, e2, tol);
        all_px = realloc(all_px, (size_t)(n_img + 1) * (size_t)NPIX * sizeof(float));
        all_ie = realloc(all_ie, (size_t)(n_img + 1) * (size_t)P * sizeof(float));
        all_lh = realloc(all_lh, (size_t)(n_img + 1) * (size_t)(T * H) * sizeof(float));
        memcpy(all_px + n_img * NPIX, px, (size_t)NPIX * sizeof(float));
        memcpy(all_ie + n_img * P, gie, (size_t)P * sizeof(float));
        memcpy(all_lh + n_img * T * H, glh, (size_t)(T * H) * sizeof(float));
        n_img++;
        free(px);
        free(gie);
        free(glh);
        free(ie);
        free(lh);
    }
    TU_CHECK(n_img == 4, "expected 4 golden images, found %d", (int)n_img);
    if (n_img > 0) {
        float *ie = calloc((size_t)(n_img * P), sizeof(float));
        float *lh = calloc((size_t)(n_img * T * H), sizeof(float));
        double t0 = now_ms();
        st = unclip__clip_vision_encode(m, all_px, n_img, ie, lh);
        double t1 = now_ms();
        TU_CHECK(st == UNCLIP_OK, "vision batch %s: %s", label, unclip__vk_err(vk)->msg);
        double e1 = tu_rel_l2(ie, all_ie, n_img * P);
        double e2 = tu_rel_l2(lh, all_lh, n_img * T * H);
        printf("  batch of %d %s: image_embeds %.2e  last_hidden_state %.2e  (%.1f ms)\n",
               (int)n_img, label, e1, e2, t1 - t0);
        TU_CHECK(e1 <= tol && e2 <= tol, "vision batch %s: rel L2 %.3e / %.3e", label, e1, e2);
        all_px[3] = 0.0f / 0.0f;
        st = unclip__clip_vision_encode(m, all_px, 1, ie, NULL);
        TU_CHECK(st == UNCLIP_E_ARG, "NaN pixel accepted (%d)", st);
        free(ie);
        free(lh);
    }
    free(all_px);
    free(all_ie);
    free(all_lh);
    unclip__st_close(g);
    unclip__clip_vision_free(m);
}

int
main(void)
{
    struct unclip_err err = {0};
    struct unclip_vk *vk = NULL;
    struct unclip_vk_params vp = unclip__vk_params_default();
    unclip_status st = unclip__vk_new(&vp, &vk, &err);
    if (st != UNCLIP_OK) {
        printf("no Vulkan device: %s\n", err.msg);
        return 77; /* skipped */
    }
    struct unclip_model_dir *t2i = NULL, *var = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s", tu_golden_path("models/tiny-karlo"));
    st = unclip__model_dir_open(path, &t2i, &err);
    TU_CHECK(st == UNCLIP_OK, "open %s: %s", path, err.msg);
    snprintf(path, sizeof path, "%s", tu_golden_path("models/tiny-karlo-variations"));
    st = unclip__model_dir_open(path, &var, &err);
    TU_CHECK(st == UNCLIP_OK, "open %s: %s", path, err.msg);

    test_pooling();
    if (t2i) {
        test_text(vk, t2i, true);
        test_text(vk, t2i, false);
    }
    if (var) {
        /* The variations folder reaches its text encoder through link stubs. */
        test_text(vk, var, true);
        test_vision(vk, var, true);
        test_vision(vk, var, false);
    }
    unclip__model_dir_free(t2i);
    unclip__model_dir_free(var);
    unclip__vk_free(vk);
    return tu_summary("clip");
}
