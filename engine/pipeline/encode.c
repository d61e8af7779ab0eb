/* The stages before decoding: CLIP text encoder, CLIP image encoder and the diffusion prior
 * (pipeline.h). Each loads its weights, runs, and releases them. */
#include "pipeline/pipeline.h"

#include "core/alloc.h"
#include "models/prior.h"
#include "pipeline/budget.h"
#include "pipeline/scheduler.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

/* ---- text encoder ---- */

/* The model's tokenizer. The tokenizer loader reads <folder>/vocab.json etc. directly, so a
 * folder whose files are links stored as text (git with core.symlinks off, as the goldens'
 * tiny-karlo-variations/tokenizer) is loaded from the folder the files resolve to, when all
 * of them resolve into one folder; otherwise from the folder itself. */
static unclip_status
load_tokenizer(struct unclip__run *r, struct unclip_tokenizer **out)
{
    struct unclip_model *m = r->model;
    if (m->tokenizer)
        return unclip__model_tokenizer(m, out);
    static const char *const files[] = {"vocab.json", "merges.txt", "special_tokens_map.json",
                                        "tokenizer_config.json"};
    char *folder = NULL, *real = NULL;
    bool redirect = false;
    struct unclip_err quiet = {0};
    if (unclip__model_dir_folder(m->dir, "tokenizer", &folder, &quiet) == UNCLIP_OK) {
        redirect = true;
        for (int i = 0; i < 4 && redirect; i++) {
            char *path = NULL;
            if (unclip__model_dir_file(m->dir, "tokenizer", files[i], &path, &quiet)) {
                /* vocab.json / merges.txt missing: the loader names it; the others are
                 * optional */
                redirect = i >= 2;
                continue;
            }
            char *dir = g_path_get_dirname(path);
            unclip__free(path);
            if (!real)
                real = unclip__strdup(dir);
            redirect = real && !strcmp(real, dir);
            g_free(dir);
        }
        redirect = redirect && strcmp(real, folder) != 0;
    }
    unclip_status st;
    if (redirect) {
        st = unclip__tokenizer_load(real, &m->tokenizer, r->err);
        *out = m->tokenizer;
    } else {
        st = unclip__model_tokenizer(m, out);
    }
    unclip__free(folder);
    unclip__free(real);
    return st;
}

/* Traces the tokens and encoder outputs of text `t` as <prefix>_{input_ids,text_embeds,
 * last_hidden_state} (one row). */
static unclip_status
put_text(struct unclip__run *r, const struct unclip__plan *pl, const char *group,
         const char *prefix, int32_t t)
{
    char name[96];
    int64_t s_ids[2] = {1, pl->T}, s_te[2] = {1, pl->E}, s_lh[3] = {1, pl->T, pl->H};
    unclip_status st;
    snprintf(name, sizeof name, "%s_input_ids", prefix);
    if ((st = unclip__put_i64(r, group, name, 2, s_ids, pl->ids + (size_t)t * pl->T)))
        return st;
    snprintf(name, sizeof name, "%s_text_embeds", prefix);
    if ((st = unclip__put_f32(r, group, name, 2, s_te, pl->text_embeds + (size_t)t * pl->E)))
        return st;
    snprintf(name, sizeof name, "%s_last_hidden_state", prefix);
    return unclip__put_f32(r, group, name, 3, s_lh,
                           pl->hidden + (size_t)t * pl->T * pl->H);
}

unclip_status
unclip__text_stage(struct unclip__run *r, struct unclip__plan *pl)
{
    unclip_status st = unclip__stage_begin(r, "text_encoder", pl->n_texts, 10.0);
    if (st)
        return st;
    struct unclip_model *m = r->model;
    struct unclip_tokenizer *tok;
    struct unclip_clip_text *text;
    static const char *const parts[] = {"text_encoder"};
    if (!m->text && (st = unclip__stage_budget(r, "text_encoder", parts, 1, 0)))
        goto done; /* its activations are a few MiB: weights only */
    double t0 = unclip__now_ms();
    if ((st = load_tokenizer(r, &tok)) || (st = unclip__model_text(m, &text)))
        goto done;
    unclip__stage_loaded(r, unclip__clip_text_weight_bytes(text), t0);
    const struct unclip_clip_text_config *c = unclip__clip_text_config(text);
    const int32_t T = UNCLIP_TOKENIZER_MAX_IDS;
    if (c->max_positions < T) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "text_encoder/config.json: max_position_embeddings %d is shorter than "
                          "the tokenizer's %d tokens", (int)c->max_positions, (int)T);
        goto done;
    }
    if (unclip__tokenizer_vocab_size(tok) > c->vocab_size) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "the tokenizer has %d tokens but text_encoder/config.json says "
                          "vocab_size %d", (int)unclip__tokenizer_vocab_size(tok),
                          (int)c->vocab_size);
        goto done;
    }
    pl->T = T;
    pl->H = c->hidden;
    pl->E = c->proj_dim;
    int32_t n = pl->n_texts;
    pl->ids = unclip__calloc((size_t)n * T, sizeof(int64_t));
    pl->mask = unclip__calloc((size_t)n * T, sizeof(int64_t));
    pl->text_embeds = unclip__calloc((size_t)n * pl->E, sizeof(float));
    pl->hidden = unclip__calloc((size_t)n * T * pl->H, sizeof(float));
    if (!pl->ids || !pl->mask || !pl->text_embeds || !pl->hidden) {
        st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        goto done;
    }
    /* One prompt per call, as the reference encodes them (and so that the numbers of a
     * prompt never depend on what else the run encodes). */
    for (int32_t i = 0; i < n; i++) {
        struct unclip_tokens t;
        st = unclip__tokenizer_encode(tok, pl->texts[i], strlen(pl->texts[i]), &t, r->err);
        if (st)
            goto done;
        for (int32_t k = 0; k < T; k++) {
            pl->ids[(size_t)i * T + k] = t.ids[k];
            pl->mask[(size_t)i * T + k] = t.mask[k];
        }
        st = unclip__clip_text_encode(text, pl->ids + (size_t)i * T, 1, T,
                                      pl->text_embeds + (size_t)i * pl->E,
                                      pl->hidden + (size_t)i * T * pl->H);
        if (st || (st = unclip__stage_step(r)))
            goto done;
    }

    /* Golden names: call0 is the conditional text of the group, call1 the unconditional "". */
    for (int32_t i = 0; i < pl->n_sources; i++) {
        const struct unclip__source_state *s = &pl->src[i];
        if ((st = put_text(r, pl, s->group, "text_encoder_call0", s->text)) ||
            (r->cfg && (st = put_text(r, pl, s->group, "text_encoder_call1", 0))))
            goto done;
    }
    if (pl->t_from >= 0 &&
        ((st = put_text(r, pl, pl->src[0].group, "text_diff_from", pl->t_from)) ||
         (st = put_text(r, pl, pl->src[0].group, "text_diff_to", pl->t_to))))
        goto done;

done:
    unclip__model_release(m);
    if (st)
        return unclip__stage_fail(r, st);
    unclip__stage_end(r);
    return UNCLIP_OK;
}

/* ---- image encoder ---- */

unclip_status
unclip__image_stage(struct unclip__run *r, struct unclip__plan *pl)
{
    int32_t n = 0;
    for (int32_t i = 0; i < pl->n_sources; i++)
        n += pl->src[i].src->kind == UNCLIP_SOURCE_IMAGE;
    unclip_status st = unclip__stage_begin(r, "image_encoder", n, 80.0);
    if (st)
        return st;
    struct unclip_model *m = r->model;
    struct unclip_clip_vision *vis;
    const struct unclip_preprocess_config *pre;
    float *px = NULL;
    static const char *const parts[] = {"image_encoder"};
    if (!m->vision && (st = unclip__stage_budget(r, "image_encoder", parts, 1, 0)))
        goto done;
    double t0 = unclip__now_ms();
    if ((st = unclip__model_vision(m, &vis, &pre)))
        goto done;
    unclip__stage_loaded(r, unclip__clip_vision_weight_bytes(vis), t0);
    const struct unclip_clip_vision_config *c = unclip__clip_vision_config(vis);
    if (c->channels != 3 || pre->crop_height != c->image_size ||
        pre->crop_width != c->image_size) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "feature_extractor/preprocessor_config.json crops %dx%d RGB but "
                          "image_encoder/config.json expects image_size %d with %d channels",
                          (int)pre->crop_width, (int)pre->crop_height, (int)c->image_size,
                          (int)c->channels);
        goto done;
    }
    if (c->proj_dim != pl->E) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "image_encoder/config.json: projection_dim %d differs from the text "
                          "encoder's %d", (int)c->proj_dim, (int)pl->E);
        goto done;
    }
    size_t npix = (size_t)3 * c->image_size * c->image_size;
    px = unclip__calloc(npix, sizeof(float));
    if (!px) {
        st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        goto done;
    }
    for (int32_t i = 0; i < pl->n_sources; i++) {
        struct unclip__source_state *s = &pl->src[i];
        if (s->src->kind != UNCLIP_SOURCE_IMAGE)
            continue;
        s->z = unclip__calloc((size_t)pl->E, sizeof(float));
        if (!s->z) {
            st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
            goto done;
        }
        if ((st = unclip__preprocess_clip(pre, s->src->image, px, r->err))) {
            unclip__err_prefix(r->err, "image of source %d", (int)i);
            goto done;
        }
        if ((st = unclip__clip_vision_encode(vis, px, 1, s->z, NULL)))
            goto done;
        int64_t s_px[4] = {1, 3, c->image_size, c->image_size}, s_z[2] = {1, pl->E};
        if ((st = unclip__put_f32(r, s->group, "image_encoder_pixel_values", 4, s_px, px)) ||
            (st = unclip__put_f32(r, s->group, "image_encoder_image_embeds", 2, s_z, s->z)) ||
            (st = unclip__stage_step(r)))
            goto done;
    }

done:
    unclip__free(px);
    unclip__model_release(m);
    if (st)
        return unclip__stage_fail(r, st);
    unclip__stage_end(r);
    return UNCLIP_OK;
}

/* ---- prior ---- */

/* The prior loop of one PROMPT source: s->rows image embeddings into s->z, drawing from s->gen
 * (diffusers' UnCLIPPipeline steps 1-2, unclip.md 4.1). */
static unclip_status
prior_source(struct unclip__run *r, struct unclip__plan *pl, struct unclip_prior *prior,
             const struct unclip_sched *sched, const int32_t *ts, int32_t n_steps,
             struct unclip__source_state *s)
{
    const struct unclip_prior_config *c = unclip__prior_config(prior);
    const int32_t B = s->rows, E = pl->E, T = pl->T, H = pl->H;
    const int32_t rows = r->cfg_prior ? 2 * B : B;
    const float g = r->p.prior_guidance;
    const char *grp = s->group;
    struct unclip_tensor tx = {0}, tp = {0}, te = {0}, to = {0};
    float *pe = unclip__calloc((size_t)rows * E, sizeof(float));
    float *enc = unclip__calloc((size_t)rows * T * H, sizeof(float));
    int64_t *mask64 = unclip__calloc((size_t)rows * T, sizeof(int64_t));
    uint8_t *mask = unclip__calloc((size_t)rows * T, 1);
    float *x = unclip__calloc((size_t)B * E, sizeof(float));
    float *xin = unclip__calloc((size_t)rows * E, sizeof(float));
    float *raw = unclip__calloc((size_t)rows * E, sizeof(float));
    float *mo = unclip__calloc((size_t)B * E, sizeof(float));
    float *noise = unclip__calloc((size_t)B * E, sizeof(float));
    unclip_status st = UNCLIP_OK;
    if (!pe || !enc || !mask64 || !mask || !x || !xin || !raw || !mo || !noise) {
        st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        goto done;
    }
    /* Inputs [uncond x B; cond x B] (without guidance: cond x B). */
    for (int32_t k = 0; k < rows; k++) {
        int32_t t = r->cfg_prior && k < B ? 0 : s->text;
        memcpy(pe + (size_t)k * E, pl->text_embeds + (size_t)t * E, sizeof(float) * E);
        memcpy(enc + (size_t)k * T * H, pl->hidden + (size_t)t * T * H, sizeof(float) * T * H);
        for (int32_t j = 0; j < T; j++) {
            mask64[(size_t)k * T + j] = pl->mask[(size_t)t * T + j];
            mask[(size_t)k * T + j] = (uint8_t)(pl->mask[(size_t)t * T + j] != 0);
        }
    }
    int64_t s_x[2] = {B, E}, s_pe[2] = {rows, E}, s_enc[3] = {rows, T, H}, s_m[2] = {rows, T};
    int64_t s_out[2] = {rows, c->clip_dim};
    if ((st = unclip__draw(r, &s->gen, grp, "prior_initial_latents", 2, s_x, x)) ||
        (st = unclip__put_f32(r, grp, "prior_latents_init", 2, s_x, x)) ||
        (st = unclip__put_f32(r, grp, "prior_proj_embedding", 2, s_pe, pe)) ||
        (st = unclip__put_f32(r, grp, "prior_encoder_hidden_states", 3, s_enc, enc)) ||
        (st = unclip__put_i64(r, grp, "prior_attention_mask", 2, s_m, mask64)))
        goto done;
    if ((st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 2, s_pe, &tx)) ||
        (st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 2, s_pe, &tp)) ||
        (st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 3, s_enc, &te)) ||
        (st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 2, s_out, &to)) ||
        (st = unclip__tensor_upload_f32(r->vk, &tp, pe)) ||
        (st = unclip__tensor_upload_f32(r->vk, &te, enc)))
        goto done;

    for (int32_t i = 0; i < n_steps; i++) {
        int32_t t = ts[i];
        int32_t prev = i + 1 < n_steps ? ts[i + 1] : UNCLIP_SCHED_PREV_NONE;
        for (int32_t k = 0; k < rows; k++)
            memcpy(xin + (size_t)k * E, x + (size_t)(k % B) * E, sizeof(float) * E);
        if ((st = unclip__tensor_upload_f32(r->vk, &tx, xin)) ||
            (st = unclip__prior_forward(prior, &tx, (float)t, &tp, &te, mask, &to)) ||
            (st = unclip__tensor_download_f32(r->vk, &to, raw)))
            goto done;
        if (r->cfg_prior) {
            for (size_t k = 0; k < (size_t)B * E; k++) {
                float u = raw[k], cc = raw[(size_t)B * E + k];
                mo[k] = u + g * (cc - u);
            }
        } else {
            memcpy(mo, raw, sizeof(float) * B * E);
        }
        char name[96];
        snprintf(name, sizeof name, "prior_step%d_model_raw_out", (int)i);
        if ((st = unclip__put_f32(r, grp, name, 2, s_out, raw)))
            goto done;
        if (t > 0) {
            snprintf(name, sizeof name, "prior_step%d_variance_noise", (int)i);
            if ((st = unclip__draw(r, &s->gen, grp, name, 2, s_x, noise)))
                goto done;
        }
        snprintf(name, sizeof name, "prior_step%d_t", (int)i);
        if ((st = unclip__put_scalar(r, grp, name, t)))
            goto done;
        snprintf(name, sizeof name, "prior_step%d_prev_t", (int)i);
        if ((st = unclip__put_scalar(r, grp, name, i + 1 < n_steps ? prev : -1)))
            goto done;
        snprintf(name, sizeof name, "prior_step%d_model_output", (int)i);
        if ((st = unclip__put_f32(r, grp, name, 2, s_x, mo)))
            goto done;
        struct unclip_sched_step a = {
            .model_output = mo, .sample = x, .batch = B, .channels = E, .model_channels = E,
            .spatial = 1, .t = t, .prev_t = prev, .noise = t > 0 ? noise : NULL,
            .prev_sample = x,
        };
        if ((st = unclip__sched_step(sched, &a, r->err)))
            goto done;
        snprintf(name, sizeof name, "prior_step%d_prev_sample", (int)i);
        if ((st = unclip__put_f32(r, grp, name, 2, s_x, x)) || (st = unclip__stage_step(r)))
            goto done;
    }
    unclip__prior_post_process_host(prior, x, B);
    s->z = x;
    x = NULL;
    /* In a single run the decode stage traces the embeddings it decodes under this name. */
    if (strcmp(grp, "run") != 0)
        st = unclip__put_f32(r, grp, "image_embeddings", 2, s_x, s->z);

done:
    unclip__tensor_free(&tx);
    unclip__tensor_free(&tp);
    unclip__tensor_free(&te);
    unclip__tensor_free(&to);
    unclip__free(pe);
    unclip__free(enc);
    unclip__free(mask64);
    unclip__free(mask);
    unclip__free(x);
    unclip__free(xin);
    unclip__free(raw);
    unclip__free(mo);
    unclip__free(noise);
    return st;
}

unclip_status
unclip__prior_stage(struct unclip__run *r, struct unclip__plan *pl)
{
    int32_t n_src = 0, rows = 0;
    for (int32_t i = 0; i < pl->n_sources; i++)
        if (pl->src[i].src->kind == UNCLIP_SOURCE_PROMPT) {
            n_src++;
            rows += pl->src[i].rows;
        }
    unclip_status st = unclip__stage_begin(r, "prior", n_src * r->p.prior_steps,
                                           82.0 * (r->cfg_prior ? 2 : 1) * rows / n_src);
    if (st)
        return st;
    struct unclip_prior *prior = NULL;
    struct unclip_sched *sched = NULL;
    int32_t *ts = NULL;
    static const char *const parts[] = {"prior"};
    if ((st = unclip__stage_budget(r, "prior", parts, 1, 0)))
        goto done;
    double t0 = unclip__now_ms();
    struct unclip_prior_opts po = {.fp32 = r->fp32};
    if ((st = unclip__prior_load(r->vk, r->model->dir, "prior", &po, &prior, r->err)) ||
        (st = unclip__load_sched(r, "prior_scheduler", &sched)))
        goto done;
    unclip__stage_loaded(r, unclip__prior_weight_bytes(prior), t0);
    const struct unclip_prior_config *c = unclip__prior_config(prior);
    if (c->embedding_dim != pl->E || c->clip_dim != pl->E || c->proj_dim != pl->E ||
        c->embedding_dim != pl->H || c->num_embeddings != pl->T) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "prior/config.json (embedding_dim %d, clip_embed_dim %d, "
                          "embedding_proj_dim %d, num_embeddings %d) does not fit the text "
                          "encoder (hidden_size %d, projection_dim %d, %d tokens)",
                          (int)c->embedding_dim, (int)c->clip_dim, (int)c->proj_dim,
                          (int)c->num_embeddings, (int)pl->H, (int)pl->E, (int)pl->T);
        goto done;
    }
    if (sched->cfg.variance_type == UNCLIP_VARIANCE_LEARNED_RANGE) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "prior_scheduler/scheduler_config.json: variance_type "
                          "\"learned_range\" needs a variance output the prior does not have");
        goto done;
    }
    ts = unclip__calloc((size_t)r->p.prior_steps, sizeof(int32_t));
    if (!ts) {
        st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        goto done;
    }
    if ((st = unclip__sched_timesteps(sched, r->p.prior_steps, ts, r->err)))
        goto done;
    for (int32_t i = 0; i < pl->n_sources && st == UNCLIP_OK; i++)
        if (pl->src[i].src->kind == UNCLIP_SOURCE_PROMPT)
            st = prior_source(r, pl, prior, sched, ts, r->p.prior_steps, &pl->src[i]);

done:
    unclip__free(ts);
    unclip__sched_free(sched);
    unclip__prior_free(prior);
    if (st)
        return unclip__stage_fail(r, st);
    unclip__stage_end(r);
    return UNCLIP_OK;
}
