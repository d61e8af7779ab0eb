/* Public API: contexts, models, CLIP embeddings (see include/unclip/unclip.h and api.h). */
#include "pipeline/api.h"

#include "core/alloc.h"

#include <stdio.h>
#include <string.h>

/* ---- small public helpers ---- */

struct unclip_ctx_params
unclip_ctx_params_default(void)
{
    struct unclip_ctx_params p = {
        .device_index = -1,
        .device_name = NULL,
        .fp32_weights = false,
        .validation = false,
    };
    return p;
}

struct unclip_run_params
unclip_run_params_default(void)
{
    /* diffusers' UnCLIPPipeline defaults */
    struct unclip_run_params p = {
        .seed = 0,
        .num_images = 1,
        .prior_steps = 25,
        .decoder_steps = 25,
        .sr_steps = 7,
        .prior_guidance = 4.0f,
        .decoder_guidance = 8.0f,
    };
    return p;
}

void
unclip_image_clear(struct unclip_image *image)
{
    if (!image)
        return;
    unclip__free(image->pixels);
    memset(image, 0, sizeof *image);
}

/* ---- context ---- */

unclip_status
unclip_ctx_new(const struct unclip_ctx_params *params, struct unclip_ctx **out, char *err,
               size_t err_size)
{
    struct unclip_err e = {0};
    unclip_status st;
    if (!out) {
        st = unclip__fail(&e, UNCLIP_E_ARG, "unclip_ctx_new: out is NULL");
        unclip__err_copy(&e, err, err_size);
        return st;
    }
    struct unclip_ctx_params p = params ? *params : unclip_ctx_params_default();
    struct unclip_ctx *ctx = unclip__calloc(1, sizeof *ctx);
    if (!ctx) {
        st = unclip__fail(&e, UNCLIP_E_NOMEM, "unclip_ctx_new: out of host memory");
        unclip__err_copy(&e, err, err_size);
        return st;
    }
    struct unclip_vk_params vp = unclip__vk_params_default();
    vp.device_index = p.device_index;
    vp.device_name = p.device_name;
    vp.validation = p.validation;
    vp.fence_timeout_ms = p.submit_timeout_ms ? p.submit_timeout_ms : UNCLIP_SUBMIT_TIMEOUT_MS;
    st = unclip__vk_new(&vp, &ctx->vk, &e);
    if (st != UNCLIP_OK) {
        unclip__free(ctx);
        unclip__err_copy(&e, err, err_size);
        return st;
    }
    p.device_name = NULL; /* borrowed: not kept */
    ctx->params = p;
    ctx->device = *unclip__vk_info(ctx->vk);
    unclip__err_copy(&e, err, err_size);
    *out = ctx;
    return UNCLIP_OK;
}

void
unclip_ctx_free(struct unclip_ctx *ctx)
{
    if (!ctx)
        return;
    unclip__vk_free(ctx->vk);
    unclip__free(ctx);
}

const char *
unclip_ctx_last_error(const struct unclip_ctx *ctx)
{
    if (!ctx)
        return "";
    return unclip__vk_err(ctx->vk)->msg;
}

const struct unclip_device_info *
unclip_ctx_device(const struct unclip_ctx *ctx)
{
    return ctx ? &ctx->device : NULL;
}

struct unclip_err *
unclip__ctx_err(struct unclip_ctx *ctx)
{
    return unclip__vk_err(ctx->vk);
}

/* ---- model ---- */

static bool
has_all(const struct unclip_model_dir *d, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (!unclip__model_dir_has(d, names[i]))
            return false;
    return true;
}

/* Reads an integer of a component's config, 0 when absent or unreadable (informational). */
static int32_t
config_int(const struct unclip_model_dir *d, const char *comp, const char *key)
{
    struct unclip_err e = {0};
    struct unclip_json *j = NULL;
    int32_t v = 0;
    if (unclip__model_dir_has(d, comp) && unclip__model_dir_config(d, comp, &j, &e) == UNCLIP_OK)
        unclip__json_i32_opt(j, key, 0, 0, 1 << 20, &v, &e);
    unclip__json_free(j);
    return v;
}

unclip_status
unclip_model_open(struct unclip_ctx *ctx, const char *dir, struct unclip_model **out)
{
    if (!ctx)
        return UNCLIP_E_ARG;
    struct unclip_err *err = unclip__ctx_err(ctx);
    unclip__err_clear(err);
    if (!dir || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "unclip_model_open: NULL argument");
    struct unclip_model *m = unclip__calloc(1, sizeof *m);
    if (!m)
        return unclip__fail(err, UNCLIP_E_NOMEM, "unclip_model_open: out of host memory");
    m->ctx = ctx;
    unclip_status st = unclip__model_dir_open(dir, &m->dir, err);
    if (st != UNCLIP_OK)
        goto fail;

    static const char *const t2i[] = {"tokenizer", "text_encoder", "prior", "prior_scheduler",
                                      "text_proj", "decoder", "decoder_scheduler",
                                      "super_res_first", "super_res_last", "super_res_scheduler",
                                      NULL};
    static const char *const dec[] = {"text_proj", "decoder", "decoder_scheduler",
                                      "super_res_first", "super_res_last", "super_res_scheduler",
                                      NULL};
    static const char *const img[] = {"image_encoder", "feature_extractor", NULL};
    static const char *const txt[] = {"tokenizer", "text_encoder", NULL};
    if (has_all(m->dir, t2i))
        m->features |= UNCLIP_FEATURE_TEXT_TO_IMAGE;
    if (has_all(m->dir, dec))
        m->features |= UNCLIP_FEATURE_DECODE;
    if (has_all(m->dir, img))
        m->features |= UNCLIP_FEATURE_IMAGE_EMBED;
    if (has_all(m->dir, txt))
        m->features |= UNCLIP_FEATURE_TEXT_EMBED;
    if (!m->features) {
        st = unclip__fail(err, UNCLIP_E_MODEL,
                          "%s: no usable pipeline (it needs tokenizer/ + text_encoder/ for text, "
                          "image_encoder/ + feature_extractor/ for images)", dir);
        goto fail;
    }

    /* The CLIP width: validated from the text encoder's config when there is one, else the
     * image encoder's. Weights are read later, on first use. */
    const char *clip_comp = unclip__model_dir_has(m->dir, "text_encoder") ? "text_encoder"
                            : unclip__model_dir_has(m->dir, "image_encoder") ? "image_encoder"
                                                                              : NULL;
    if (clip_comp) {
        struct unclip_json *j = NULL;
        st = unclip__model_dir_config(m->dir, clip_comp, &j, err);
        if (st == UNCLIP_OK && !strcmp(clip_comp, "text_encoder")) {
            struct unclip_clip_text_config c;
            st = unclip__clip_text_config_read(j, &c, err);
            m->embed_dim = c.proj_dim;
        } else if (st == UNCLIP_OK) {
            struct unclip_clip_vision_config c;
            st = unclip__clip_vision_config_read(j, &c, err);
            m->embed_dim = c.proj_dim;
        }
        unclip__json_free(j);
        if (st != UNCLIP_OK)
            goto fail;
    }
    m->image_size = config_int(m->dir, "super_res_last", "sample_size");
    if (!m->image_size)
        m->image_size = config_int(m->dir, "decoder", "sample_size");
    *out = m;
    return UNCLIP_OK;

fail:
    unclip_model_free(m);
    return st;
}

void
unclip__model_release(struct unclip_model *m)
{
    if (!m)
        return;
    unclip__tokenizer_free(m->tokenizer);
    unclip__clip_text_free(m->text);
    unclip__clip_vision_free(m->vision);
    m->tokenizer = NULL;
    m->text = NULL;
    m->vision = NULL;
    m->have_preprocess = false;
}

void
unclip_model_free(struct unclip_model *m)
{
    if (!m)
        return;
    unclip__model_release(m);
    unclip__model_dir_free(m->dir);
    unclip__free(m);
}

uint32_t
unclip_model_features(const struct unclip_model *m)
{
    return m ? m->features : 0;
}

int32_t
unclip_model_embed_dim(const struct unclip_model *m)
{
    return m ? m->embed_dim : 0;
}

int32_t
unclip_model_image_size(const struct unclip_model *m)
{
    return m ? m->image_size : 0;
}

/* The tokenizer reads its files from one folder by name. When the model's tokenizer files are
 * link stubs (git's form of symlinks; the goldens' variations folder stores them so), they
 * point into another folder: load from there, provided every tokenizer file present leads to
 * that same folder. (Real symlinks need nothing: opening them follows them.) *folder is
 * replaced when needed. */
static unclip_status
tokenizer_folder(struct unclip_model *m, char **folder, struct unclip_err *err)
{
    static const char *const files[] = {"vocab.json", "merges.txt", "special_tokens_map.json",
                                        "tokenizer_config.json", NULL};
    char *target = NULL;
    unclip_status st = UNCLIP_OK;
    for (int i = 0; files[i] && st == UNCLIP_OK; i++) {
        struct unclip_err e = {0};
        char *path = NULL;
        if (unclip__model_dir_file(m->dir, "tokenizer", files[i], &path, &e) != UNCLIP_OK)
            continue; /* absent: the tokenizer loader reports what it needs */
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) : 0;
        if (!target) {
            target = unclip__malloc(dl + 1);
            if (!target) {
                st = unclip__fail(err, UNCLIP_E_NOMEM, "tokenizer: out of host memory");
            } else {
                memcpy(target, path, dl);
                target[dl] = '\0';
            }
        } else if (strlen(target) != dl || strncmp(target, path, dl) != 0) {
            st = unclip__fail(err, UNCLIP_E_MODEL,
                              "%s/tokenizer: its files lead to different folders (%s and %s); "
                              "keep vocab.json, merges.txt and the configs together",
                              unclip__model_dir_path(m->dir), target, path);
        }
        unclip__free(path);
    }
    if (st == UNCLIP_OK && target && target[0]) {
        unclip__free(*folder);
        *folder = target;
        target = NULL;
    }
    unclip__free(target);
    return st;
}

unclip_status
unclip__model_tokenizer(struct unclip_model *m, struct unclip_tokenizer **out)
{
    struct unclip_err *err = unclip__ctx_err(m->ctx);
    if (!m->tokenizer) {
        char *folder = NULL;
        unclip_status st = unclip__model_dir_folder(m->dir, "tokenizer", &folder, err);
        if (st == UNCLIP_OK)
            st = tokenizer_folder(m, &folder, err);
        if (st == UNCLIP_OK)
            st = unclip__tokenizer_load(folder, &m->tokenizer, err);
        unclip__free(folder);
        if (st != UNCLIP_OK)
            return st;
    }
    *out = m->tokenizer;
    return UNCLIP_OK;
}

unclip_status
unclip__model_text(struct unclip_model *m, struct unclip_clip_text **out)
{
    if (!m->text) {
        struct unclip_clip_text_opts o = {.fp32 = m->ctx->params.fp32_weights};
        unclip_status st = unclip__clip_text_load(m->ctx->vk, m->dir, "text_encoder", &o,
                                                  &m->text, unclip__ctx_err(m->ctx));
        if (st != UNCLIP_OK)
            return st;
    }
    *out = m->text;
    return UNCLIP_OK;
}

unclip_status
unclip__model_vision(struct unclip_model *m, struct unclip_clip_vision **out,
                     const struct unclip_preprocess_config **pre)
{
    struct unclip_err *err = unclip__ctx_err(m->ctx);
    if (!m->have_preprocess) {
        struct unclip_json *j = NULL;
        unclip_status st = unclip__model_dir_config(m->dir, "feature_extractor", &j, err);
        if (st == UNCLIP_OK)
            st = unclip__preprocess_config_read(j, &m->preprocess, err);
        unclip__json_free(j);
        if (st != UNCLIP_OK)
            return st;
        m->have_preprocess = true;
    }
    if (!m->vision) {
        struct unclip_clip_vision_opts o = {.fp32 = m->ctx->params.fp32_weights};
        unclip_status st = unclip__clip_vision_load(m->ctx->vk, m->dir, "image_encoder", &o,
                                                    &m->vision, err);
        if (st != UNCLIP_OK)
            return st;
    }
    *out = m->vision;
    *pre = &m->preprocess;
    return UNCLIP_OK;
}

/* ---- embeddings ---- */

void
unclip_text_embeddings_clear(struct unclip_text_embeddings *e)
{
    if (!e)
        return;
    unclip__free(e->input_ids);
    unclip__free(e->attention_mask);
    unclip__free(e->text_embeds);
    unclip__free(e->last_hidden_state);
    unclip__free(e->truncated);
    memset(e, 0, sizeof *e);
}

void
unclip_image_embeddings_clear(struct unclip_image_embeddings *e)
{
    if (!e)
        return;
    unclip__free(e->pixel_values);
    unclip__free(e->image_embeds);
    unclip__free(e->last_hidden_state);
    memset(e, 0, sizeof *e);
}

unclip_status
unclip_embed_text(struct unclip_model *model, const char *const *prompts, int32_t n,
                  struct unclip_text_embeddings *out)
{
    if (!model)
        return UNCLIP_E_ARG;
    struct unclip_err *err = unclip__ctx_err(model->ctx);
    unclip__err_clear(err);
    if (!prompts || n < 1 || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "unclip_embed_text: no prompts");
    for (int32_t i = 0; i < n; i++)
        if (!prompts[i])
            return unclip__fail(err, UNCLIP_E_ARG, "unclip_embed_text: prompt %d is NULL",
                                (int)i);
    if (!(model->features & UNCLIP_FEATURE_TEXT_EMBED))
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: no tokenizer/ and text_encoder/",
                            unclip__model_dir_path(model->dir));
    struct unclip_tokenizer *tok;
    struct unclip_clip_text *text;
    unclip_status st;
    if ((st = unclip__model_tokenizer(model, &tok)) || (st = unclip__model_text(model, &text)))
        return st;
    const struct unclip_clip_text_config *c = unclip__clip_text_config(text);
    const int32_t L = UNCLIP_TOKENIZER_MAX_IDS;
    if (c->max_positions < L)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "text_encoder/config.json: max_position_embeddings %d is shorter "
                            "than the tokenizer's %d tokens", (int)c->max_positions, (int)L);
    if (unclip__tokenizer_vocab_size(tok) > c->vocab_size)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "the tokenizer has %d tokens but text_encoder/config.json says "
                            "vocab_size %d", (int)unclip__tokenizer_vocab_size(tok),
                            (int)c->vocab_size);

    struct unclip_text_embeddings e = {
        .n = n, .seq_len = L, .hidden = c->hidden, .embed_dim = c->proj_dim,
    };
    size_t nl = (size_t)n * (size_t)L;
    e.input_ids = unclip__calloc(nl, sizeof(int64_t));
    e.attention_mask = unclip__calloc(nl, sizeof(int64_t));
    e.text_embeds = unclip__calloc((size_t)n * (size_t)c->proj_dim, sizeof(float));
    e.last_hidden_state = unclip__calloc(nl * (size_t)c->hidden, sizeof(float));
    e.truncated = unclip__calloc((size_t)n, 1);
    if (!e.input_ids || !e.attention_mask || !e.text_embeds || !e.last_hidden_state ||
        !e.truncated) {
        unclip_text_embeddings_clear(&e);
        return unclip__fail(err, UNCLIP_E_NOMEM, "unclip_embed_text: out of host memory");
    }
    for (int32_t i = 0; i < n && st == UNCLIP_OK; i++) {
        struct unclip_tokens t;
        st = unclip__tokenizer_encode(tok, prompts[i], strlen(prompts[i]), &t, err);
        if (st != UNCLIP_OK) {
            unclip__err_prefix(err, "prompt %d", (int)i);
            break;
        }
        for (int32_t k = 0; k < L; k++) {
            e.input_ids[(size_t)i * L + k] = t.ids[k];
            e.attention_mask[(size_t)i * L + k] = t.mask[k];
        }
        e.truncated[i] = t.truncated;
    }
    if (st == UNCLIP_OK)
        st = unclip__clip_text_encode(text, e.input_ids, n, L, e.text_embeds,
                                      e.last_hidden_state);
    if (st != UNCLIP_OK) {
        unclip_text_embeddings_clear(&e);
        return st;
    }
    *out = e;
    return UNCLIP_OK;
}

unclip_status
unclip_embed_image(struct unclip_model *model, const struct unclip_image *images, int32_t n,
                   struct unclip_image_embeddings *out)
{
    if (!model)
        return UNCLIP_E_ARG;
    struct unclip_err *err = unclip__ctx_err(model->ctx);
    unclip__err_clear(err);
    if (!images || n < 1 || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "unclip_embed_image: no images");
    if (!(model->features & UNCLIP_FEATURE_IMAGE_EMBED))
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: no image_encoder/ and feature_extractor/",
                            unclip__model_dir_path(model->dir));
    struct unclip_clip_vision *vis;
    const struct unclip_preprocess_config *pre;
    unclip_status st = unclip__model_vision(model, &vis, &pre);
    if (st != UNCLIP_OK)
        return st;
    const struct unclip_clip_vision_config *c = unclip__clip_vision_config(vis);
    if (c->channels != 3 || pre->crop_height != c->image_size ||
        pre->crop_width != c->image_size)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "feature_extractor/preprocessor_config.json crops %dx%d RGB but "
                            "image_encoder/config.json expects image_size %d with %d channels",
                            (int)pre->crop_width, (int)pre->crop_height, (int)c->image_size,
                            (int)c->channels);
    struct unclip_image_embeddings e = {
        .n = n, .channels = c->channels, .size = c->image_size, .tokens = c->tokens,
        .hidden = c->hidden, .embed_dim = c->proj_dim,
    };
    size_t npix = (size_t)c->channels * (size_t)c->image_size * (size_t)c->image_size;
    e.pixel_values = unclip__calloc((size_t)n * npix, sizeof(float));
    e.image_embeds = unclip__calloc((size_t)n * (size_t)c->proj_dim, sizeof(float));
    e.last_hidden_state =
        unclip__calloc((size_t)n * (size_t)c->tokens * (size_t)c->hidden, sizeof(float));
    if (!e.pixel_values || !e.image_embeds || !e.last_hidden_state) {
        unclip_image_embeddings_clear(&e);
        return unclip__fail(err, UNCLIP_E_NOMEM, "unclip_embed_image: out of host memory");
    }
    for (int32_t i = 0; i < n && st == UNCLIP_OK; i++) {
        st = unclip__preprocess_clip(pre, &images[i], e.pixel_values + (size_t)i * npix, err);
        if (st != UNCLIP_OK)
            unclip__err_prefix(err, "image %d", (int)i);
    }
    if (st == UNCLIP_OK)
        st = unclip__clip_vision_encode(vis, e.pixel_values, n, e.image_embeds,
                                        e.last_hidden_state);
    if (st != UNCLIP_OK) {
        unclip_image_embeddings_clear(&e);
        return st;
    }
    *out = e;
    return UNCLIP_OK;
}
