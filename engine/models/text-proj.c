/* UnCLIPTextProjModel (see text-proj.h). */
#include "models/text-proj.h"

#include "core/alloc.h"
#include "models/blocks.h"
#include "models/weights.h"

#include <stdio.h>
#include <string.h>

#define LN_EPS 1e-5f

struct unclip_text_proj {
    struct unclip_vk *vk; /* borrowed */
    struct unclip_text_proj_config cfg;
    char config_name[256];
    struct unclip_tensor null_emb; /* [E] F32: learned_classifier_free_guidance_embeddings */
    struct unclip_lin emb_proj;    /* embedding_proj [D, E]                                 */
    struct unclip_lin img_time;    /* clip_image_embeddings_project_to_time_embeddings [D, E] */
    struct unclip_lin extra;       /* clip_extra_context_tokens_proj [K X, E]               */
    struct unclip_lin enc_proj;    /* encoder_hidden_states_proj [X, E]                     */
    struct unclip_ln norm;         /* text_encoder_hidden_states_norm [X]                   */
};

unclip_status
unclip__text_proj_config_read(const struct unclip_json *j, struct unclip_text_proj_config *out,
                              struct unclip_err *err)
{
    struct unclip_text_proj_config c;
    unclip_status st;
    if ((st = unclip__json_i32_opt(j, "clip_embeddings_dim", 768, 1, 1 << 16, &c.clip_dim,
                                   err)) ||
        (st = unclip__json_i32_opt(j, "time_embed_dim", 1280, 1, 1 << 16, &c.time_dim, err)) ||
        (st = unclip__json_i32_opt(j, "cross_attention_dim", 1536, 1, 1 << 16, &c.cross_dim,
                                   err)) ||
        (st = unclip__json_i32_opt(j, "clip_extra_context_tokens", 4, 1, 256, &c.extra_tokens,
                                   err)))
        return st;
    *out = c;
    return UNCLIP_OK;
}

static unclip_status
load_tensors(struct unclip_text_proj *m, struct unclip_weights *w, struct unclip_err *err)
{
    const struct unclip_text_proj_config *c = &m->cfg;
    const int32_t E = c->clip_dim, D = c->time_dim, X = c->cross_dim, K = c->extra_tokens;
    int64_t eshape[1] = {E};
    unclip_status st;
    if ((st = unclip__weights_get_as(w, "learned_classifier_free_guidance_embeddings", 1, eshape,
                                     UNCLIP_DT_F32, &m->null_emb, err)) ||
        (st = unclip__lin_load(w, "embedding_proj", E, D, true, &m->emb_proj, err)) ||
        (st = unclip__lin_load(w, "clip_image_embeddings_project_to_time_embeddings", E, D, true,
                               &m->img_time, err)) ||
        (st = unclip__lin_load(w, "clip_extra_context_tokens_proj", E, K * X, true, &m->extra,
                               err)) ||
        (st = unclip__lin_load(w, "encoder_hidden_states_proj", E, X, true, &m->enc_proj, err)) ||
        (st = unclip__ln_load(w, "text_encoder_hidden_states_norm", X, LN_EPS, &m->norm, err)) ||
        (st = unclip__weights_check_all_used(w, err)))
        return st;
    return UNCLIP_OK;
}

unclip_status
unclip__text_proj_load_files(struct unclip_vk *vk, const char *config_path,
                             const char *config_name, const char *weights_path,
                             const char *weights_name, const struct unclip_text_proj_opts *opts,
                             struct unclip_text_proj **out, struct unclip_err *err)
{
    *out = NULL;
    struct unclip_text_proj *m = unclip__calloc(1, sizeof *m);
    if (!m)
        return unclip__fail(err, UNCLIP_E_NOMEM, "text_proj: out of host memory");
    m->vk = vk;
    snprintf(m->config_name, sizeof m->config_name, "%s", config_name ? config_name : config_path);

    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_load(config_path, config_name, &j, err);
    if (st == UNCLIP_OK)
        st = unclip__text_proj_config_read(j, &m->cfg, err);
    unclip__json_free(j);
    if (st != UNCLIP_OK)
        goto fail;

    struct unclip_weights *w = NULL;
    struct unclip_weights_opts wo = {.fp32 = opts && opts->fp32};
    if ((st = unclip__weights_open(vk, weights_path, weights_name, &wo, &w, err)))
        goto fail;
    st = load_tensors(m, w, err);
    unclip__weights_free(w);
    if (st != UNCLIP_OK) {
        if (st == UNCLIP_E_MODEL && strstr(err->msg, "shape")) {
            const struct unclip_text_proj_config *c = &m->cfg;
            unclip__err_append(err,
                               "%s says clip_embeddings_dim %d, time_embed_dim %d, "
                               "cross_attention_dim %d, clip_extra_context_tokens %d",
                               m->config_name, (int)c->clip_dim, (int)c->time_dim,
                               (int)c->cross_dim, (int)c->extra_tokens);
        }
        goto fail;
    }
    *out = m;
    return UNCLIP_OK;

fail:
    unclip__text_proj_free(m);
    return st;
}

unclip_status
unclip__text_proj_load(struct unclip_vk *vk, const struct unclip_model_dir *dir,
                       const char *name, const struct unclip_text_proj_opts *opts,
                       struct unclip_text_proj **out, struct unclip_err *err)
{
    char *cpath = NULL, *wpath = NULL;
    unclip_status st = unclip__model_dir_config_path(dir, name, &cpath, err);
    if (st == UNCLIP_OK)
        st = unclip__model_dir_weights_path(dir, name, &wpath, err);
    if (st == UNCLIP_OK) {
        char cname[256], wname[256];
        const char *cbase = strrchr(cpath, '/'), *wbase = strrchr(wpath, '/');
        snprintf(cname, sizeof cname, "%s/%s", name, cbase ? cbase + 1 : cpath);
        snprintf(wname, sizeof wname, "%s/%s", name, wbase ? wbase + 1 : wpath);
        st = unclip__text_proj_load_files(vk, cpath, cname, wpath, wname, opts, out, err);
    }
    unclip__free(cpath);
    unclip__free(wpath);
    return st;
}

void
unclip__text_proj_free(struct unclip_text_proj *m)
{
    if (!m)
        return;
    unclip__tensor_free(&m->null_emb);
    unclip__lin_free(&m->emb_proj);
    unclip__lin_free(&m->img_time);
    unclip__lin_free(&m->extra);
    unclip__lin_free(&m->enc_proj);
    unclip__ln_free(&m->norm);
    unclip__free(m);
}

const struct unclip_text_proj_config *
unclip__text_proj_config(const struct unclip_text_proj *m)
{
    return &m->cfg;
}

static uint64_t
lbytes(const struct unclip_lin *l)
{
    return (l->w.buf ? unclip__tensor_bytes(&l->w) : 0) +
           (l->b.buf ? unclip__tensor_bytes(&l->b) : 0);
}

uint64_t
unclip__text_proj_weight_bytes(const struct unclip_text_proj *m)
{
    return unclip__tensor_bytes(&m->null_emb) + lbytes(&m->emb_proj) + lbytes(&m->img_time) +
           lbytes(&m->extra) + lbytes(&m->enc_proj) + unclip__tensor_bytes(&m->norm.g) +
           unclip__tensor_bytes(&m->norm.b);
}

static bool
is_f32(const struct unclip_tensor *t)
{
    return t && t->buf && t->dtype == UNCLIP_DT_F32 && t->ndim >= 1;
}

unclip_status
unclip__text_proj_forward(struct unclip_text_proj *m,
                          const struct unclip_tensor *image_embeddings,
                          const struct unclip_tensor *prompt_embeds,
                          const struct unclip_tensor *text_hidden, bool guidance,
                          struct unclip_tensor *encoder_hidden_states,
                          struct unclip_tensor *additive)
{
    struct unclip_vk *vk = m->vk;
    struct unclip_err *err = unclip__vk_err(vk);
    const struct unclip_text_proj_config *c = &m->cfg;
    const int64_t E = c->clip_dim, D = c->time_dim, X = c->cross_dim, K = c->extra_tokens;
    memset(encoder_hidden_states, 0, sizeof *encoder_hidden_states);
    memset(additive, 0, sizeof *additive);

    char a[96], b[96], h[96];
    if (!is_f32(image_embeddings) || !is_f32(prompt_embeds) || !is_f32(text_hidden) ||
        image_embeddings->ndim != 2 || prompt_embeds->ndim != 2 || text_hidden->ndim != 3)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "text_proj: inputs must be F32 image_embeddings [B, %d], "
                            "prompt_embeds [B', %d] and text_encoder_hidden_states [B', T, %d]",
                            (int)E, (int)E, (int)E);
    const int64_t B = image_embeddings->shape[0];
    const int64_t B2 = guidance ? 2 * B : B, T = text_hidden->shape[1];
    if (image_embeddings->shape[1] != E || prompt_embeds->shape[0] != B2 ||
        prompt_embeds->shape[1] != E || text_hidden->shape[0] != B2 ||
        text_hidden->shape[2] != E)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "text_proj: image_embeddings %s, prompt_embeds %s, "
                            "text_encoder_hidden_states %s; expected [B, %d], [%s, %d], "
                            "[%s, T, %d]",
                            unclip__shape_str(image_embeddings, a, sizeof a),
                            unclip__shape_str(prompt_embeds, b, sizeof b),
                            unclip__shape_str(text_hidden, h, sizeof h), (int)E,
                            guidance ? "2B" : "B", (int)E, guidance ? "2B" : "B", (int)E);

    struct unclip_tensor z = {0}, u = {0}, txt = {0}, enc = {0}, add = {0};
    const struct unclip_tensor *zp = image_embeddings;
    int64_t zshape[2] = {B2, E}, ushape[2] = {B2, K * X}, tshape[3] = {B2, T, X};
    int64_t eshape[3] = {B2, K + T, X}, ashape[2] = {B2, D};
    unclip_status st = UNCLIP_OK;
    if (guidance) {
        /* z = [null embedding repeated B times; image embeddings] */
        struct unclip_copy_desc dn = {
            .shape = {1, 1, B, E},
            .src_stride = {0, 0, 0, 1},
            .dst_stride = {0, 0, E, 1},
        };
        struct unclip_copy_desc dz = {
            .shape = {1, 1, B, E},
            .src_stride = {0, 0, E, 1},
            .dst_off = B * E,
            .dst_stride = {0, 0, E, 1},
        };
        if (!(st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, zshape, &z)) &&
            !(st = unclip__op_copy(vk, &m->null_emb, &z, &dn)))
            st = unclip__op_copy(vk, image_embeddings, &z, &dz);
        zp = &z;
    }
    /* additive = img_time(z) + embedding_proj(p) */
    if (!st && !(st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, ashape, &add)) &&
        !(st = unclip__lin_run(vk, &m->img_time, zp, NULL, &add)))
        st = unclip__lin_run(vk, &m->emb_proj, prompt_embeds, &add, &add);
    /* extra tokens: token k, channel d = u[d K + k] */
    if (!st && !(st = unclip__tensor_new(vk, UNCLIP_DT_F32, 3, eshape, &enc)) &&
        !(st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, ushape, &u)) &&
        !(st = unclip__lin_run(vk, &m->extra, zp, NULL, &u))) {
        struct unclip_copy_desc d = {
            .shape = {1, B2, K, X},
            .src_stride = {0, K * X, 1, K},
            .dst_stride = {0, (K + T) * X, X, 1},
        };
        st = unclip__op_copy(vk, &u, &enc, &d);
    }
    /* text tokens: LayerNorm(encoder_hidden_states_proj(H)) after the K extra tokens */
    if (!st && !(st = unclip__tensor_new(vk, UNCLIP_DT_F32, 3, tshape, &txt)) &&
        !(st = unclip__lin_run(vk, &m->enc_proj, text_hidden, NULL, &txt)) &&
        !(st = unclip__ln_run(vk, &m->norm, &txt, &txt))) {
        struct unclip_copy_desc d = {
            .shape = {1, B2, T, X},
            .src_stride = {0, T * X, X, 1},
            .dst_off = K * X,
            .dst_stride = {0, (K + T) * X, X, 1},
        };
        st = unclip__op_copy(vk, &txt, &enc, &d);
    }
    /* Freeing the temporaries finishes the recorded work that reads them (vk.h), so the
     * outputs are complete when this returns. */
    unclip__tensor_free(&z);
    unclip__tensor_free(&u);
    unclip__tensor_free(&txt);
    if (st != UNCLIP_OK) {
        unclip__tensor_free(&enc);
        unclip__tensor_free(&add);
        return st;
    }
    *encoder_hidden_states = enc;
    *additive = add;
    return UNCLIP_OK;
}

unclip_status
unclip__text_proj_run(struct unclip_text_proj *m, int32_t batch, int32_t tokens,
                      const float *image_embeddings, const float *prompt_embeds,
                      const float *text_hidden, bool guidance, float *encoder_hidden_states,
                      float *additive)
{
    struct unclip_vk *vk = m->vk;
    const struct unclip_text_proj_config *c = &m->cfg;
    if (batch < 1 || batch > 4096 || tokens < 1 || tokens > 4096 || !image_embeddings ||
        !prompt_embeds || !text_hidden)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG,
                            "text_proj: batch %d, %d tokens or a missing input", (int)batch,
                            (int)tokens);
    const int64_t B2 = guidance ? 2 * (int64_t)batch : batch;
    int64_t zs[2] = {batch, c->clip_dim}, ps[2] = {B2, c->clip_dim};
    int64_t hs[3] = {B2, tokens, c->clip_dim};
    struct unclip_tensor z = {0}, p = {0}, h = {0}, enc = {0}, add = {0};
    unclip_status st;
    if (!(st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, zs, &z)) &&
        !(st = unclip__tensor_upload_f32(vk, &z, image_embeddings)) &&
        !(st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, ps, &p)) &&
        !(st = unclip__tensor_upload_f32(vk, &p, prompt_embeds)) &&
        !(st = unclip__tensor_new(vk, UNCLIP_DT_F32, 3, hs, &h)) &&
        !(st = unclip__tensor_upload_f32(vk, &h, text_hidden)) &&
        !(st = unclip__text_proj_forward(m, &z, &p, &h, guidance, &enc, &add))) {
        if (encoder_hidden_states)
            st = unclip__tensor_download_f32(vk, &enc, encoder_hidden_states);
        if (!st && additive)
            st = unclip__tensor_download_f32(vk, &add, additive);
    }
    unclip__tensor_free(&z);
    unclip__tensor_free(&p);
    unclip__tensor_free(&h);
    unclip__tensor_free(&enc);
    unclip__tensor_free(&add);
    return st;
}
