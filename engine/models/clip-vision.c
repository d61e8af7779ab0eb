/* CLIPVisionModelWithProjection (see clip-vision.h). */
#include "models/clip-vision.h"

#include "core/alloc.h"
#include "models/blocks.h"
#include "models/weights.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define P_CLS "vision_model.embeddings.class_embedding"
#define P_PATCH "vision_model.embeddings.patch_embedding.weight"
#define P_POS "vision_model.embeddings.position_embedding.weight"
#define P_POS_IDS "vision_model.embeddings.position_ids"
#define P_PRE "vision_model.pre_layrnorm"
#define P_ENC "vision_model.encoder"
#define P_POST "vision_model.post_layernorm"
#define P_PROJ "visual_projection.weight"

struct unclip_clip_vision {
    struct unclip_vk *vk; /* borrowed */
    struct unclip_clip_vision_config cfg;
    char config_name[256];
    float *cls_pos;            /* [tokens, H] host: row 0 = class + pos[0], row t = pos[t] */
    struct unclip_lin patch;   /* [H, C * p * p], no bias */
    struct unclip_ln pre_ln, post_ln;
    struct unclip_clip_encoder enc;
    struct unclip_lin proj;    /* [P, H], no bias */
    uint64_t bytes;
};

unclip_status
unclip__clip_vision_config_read(const struct unclip_json *j,
                                struct unclip_clip_vision_config *out, struct unclip_err *err)
{
    struct unclip_clip_vision_config c;
    double eps;
    const char *act;
    unclip_status st;
    const char *name = unclip__json_name(j);
    /* Defaults: transformers' CLIPVisionConfig(). */
    if ((st = unclip__json_i32_opt(j, "hidden_size", 768, 1, 1 << 16, &c.hidden, err)) ||
        (st = unclip__json_i32_opt(j, "intermediate_size", 3072, 1, 1 << 18, &c.inner, err)) ||
        (st = unclip__json_i32_opt(j, "num_hidden_layers", 12, 0, 1024, &c.layers, err)) ||
        (st = unclip__json_i32_opt(j, "num_attention_heads", 12, 1, 4096, &c.heads, err)) ||
        (st = unclip__json_i32_opt(j, "image_size", 224, 1, 8192, &c.image_size, err)) ||
        (st = unclip__json_i32_opt(j, "patch_size", 32, 1, 8192, &c.patch_size, err)) ||
        (st = unclip__json_i32_opt(j, "num_channels", 3, 1, 4, &c.channels, err)) ||
        (st = unclip__json_i32_opt(j, "projection_dim", 512, 1, 1 << 16, &c.proj_dim, err)) ||
        (st = unclip__json_float_opt(j, "layer_norm_eps", 1e-5, 0.0, 1.0, &eps, err)) ||
        (st = unclip__json_string_opt(j, "hidden_act", "quick_gelu", &act, err)))
        return st;
    if ((st = unclip__act_from_name(act, name, &c.act, err)))
        return st;
    if (c.hidden % c.heads != 0)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                            name, (int)c.hidden, (int)c.heads);
    if (c.hidden / c.heads > 128)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: attention head size %d (hidden_size %d / num_attention_heads "
                            "%d) is above the supported 128",
                            name, (int)(c.hidden / c.heads), (int)c.hidden, (int)c.heads);
    if (c.patch_size > c.image_size)
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: patch_size %d is larger than image_size %d",
                            name, (int)c.patch_size, (int)c.image_size);
    c.grid = c.image_size / c.patch_size;
    c.tokens = 1 + c.grid * c.grid;
    c.eps = (float)eps;
    *out = c;
    return UNCLIP_OK;
}

static bool
vision_tensor_known(const struct unclip_clip_vision_config *c, const char *name)
{
    return !strcmp(name, P_CLS) || !strcmp(name, P_PATCH) || !strcmp(name, P_POS) ||
           !strcmp(name, P_POS_IDS) || !strcmp(name, P_PRE ".weight") ||
           !strcmp(name, P_PRE ".bias") || !strcmp(name, P_POST ".weight") ||
           !strcmp(name, P_POST ".bias") || !strcmp(name, P_PROJ) ||
           unclip__clip_layer_tensor(name, P_ENC, c->layers);
}

static void
config_hint(struct unclip_err *err, const struct unclip_clip_vision *m)
{
    const struct unclip_clip_vision_config *c = &m->cfg;
    unclip__err_append(err,
                       "%s says hidden_size %d, intermediate_size %d, num_hidden_layers %d, "
                       "image_size %d, patch_size %d (%d positions), num_channels %d, "
                       "projection_dim %d",
                       m->config_name, (int)c->hidden, (int)c->inner, (int)c->layers,
                       (int)c->image_size, (int)c->patch_size, (int)c->tokens,
                       (int)c->channels, (int)c->proj_dim);
}

static unclip_status
load_tensors(struct unclip_clip_vision *m, struct unclip_weights *w, struct unclip_err *err)
{
    const struct unclip_clip_vision_config *c = &m->cfg;
    const int64_t H = c->hidden, T = c->tokens, p = c->patch_size;
    const int64_t K = (int64_t)c->channels * p * p;
    unclip_status st;

    m->cls_pos = unclip__calloc((size_t)(T * H), sizeof(float));
    float *cls = unclip__calloc((size_t)H, sizeof(float));
    if (!m->cls_pos || !cls) {
        unclip__free(cls);
        return unclip__fail(err, UNCLIP_E_NOMEM, "image encoder: out of host memory");
    }
    int64_t cshape[1] = {H}, pshape[2] = {T, H};
    st = unclip__weights_get_host(w, P_CLS, 1, cshape, cls, err);
    if (st == UNCLIP_OK)
        st = unclip__weights_get_host(w, P_POS, 2, pshape, m->cls_pos, err);
    if (st == UNCLIP_OK)
        for (int64_t i = 0; i < H; i++)
            m->cls_pos[i] = cls[i] + m->cls_pos[i]; /* torch: cat([cls, patches]) + pos */
    unclip__free(cls);
    if (st != UNCLIP_OK)
        return st;

    int64_t fshape[4] = {H, c->channels, p, p}, dshape[2] = {H, K};
    st = unclip__weights_get_reshaped(w, P_PATCH, 4, fshape, 2, dshape, UNCLIP_DT_N,
                                      &m->patch.w, err);
    if (st != UNCLIP_OK)
        return st;
    m->patch.in = (int32_t)K;
    m->patch.out = (int32_t)H;

    struct unclip_clip_enc_config ec = {
        .dim = c->hidden, .heads = c->heads, .inner = c->inner, .layers = c->layers,
        .eps = c->eps, .act = c->act,
    };
    if ((st = unclip__ln_load(w, P_PRE, c->hidden, c->eps, &m->pre_ln, err)) ||
        (st = unclip__clip_encoder_load(m->vk, w, P_ENC, &ec, &m->enc, err)) ||
        (st = unclip__ln_load(w, P_POST, c->hidden, c->eps, &m->post_ln, err)) ||
        (st = unclip__lin_load(w, "visual_projection", c->hidden, c->proj_dim, false, &m->proj,
                               err)))
        return st;

    const struct unclip_st_file *f = unclip__weights_file(w);
    for (int32_t i = 0; i < unclip__st_count(f); i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        if (!vision_tensor_known(c, t->name))
            return unclip__fail(err, UNCLIP_E_MODEL,
                                "%s: tensor '%s' is not part of an image encoder with "
                                "num_hidden_layers %d: the config and the weights disagree",
                                unclip__weights_name(w), t->name, (int)c->layers);
    }
    m->bytes = unclip__tensor_bytes(&m->patch.w) + unclip__clip_encoder_bytes(&m->enc) +
               unclip__tensor_bytes(&m->pre_ln.g) + unclip__tensor_bytes(&m->pre_ln.b) +
               unclip__tensor_bytes(&m->post_ln.g) + unclip__tensor_bytes(&m->post_ln.b) +
               unclip__tensor_bytes(&m->proj.w);
    return UNCLIP_OK;
}

unclip_status
unclip__clip_vision_load_files(struct unclip_vk *vk, const char *config_path,
                               const char *config_name, const char *weights_path,
                               const char *weights_name,
                               const struct unclip_clip_vision_opts *opts,
                               struct unclip_clip_vision **out, struct unclip_err *err)
{
    struct unclip_clip_vision *m = unclip__calloc(1, sizeof *m);
    if (!m)
        return unclip__fail(err, UNCLIP_E_NOMEM, "image encoder: out of host memory");
    m->vk = vk;
    snprintf(m->config_name, sizeof m->config_name, "%s", config_name ? config_name : config_path);

    struct unclip_json *j = NULL;
    struct unclip_weights *w = NULL;
    unclip_status st = unclip__json_load(config_path, config_name, &j, err);
    if (st == UNCLIP_OK)
        st = unclip__clip_vision_config_read(j, &m->cfg, err);
    unclip__json_free(j);
    if (st != UNCLIP_OK)
        goto fail;

    struct unclip_weights_opts wo = {.fp32 = opts && opts->fp32};
    if ((st = unclip__weights_open(vk, weights_path, weights_name, &wo, &w, err)))
        goto fail;
    /* Unlike the text tower, nothing is read from the mapping later: close it now. */
    st = load_tensors(m, w, err);
    unclip__weights_free(w);
    if (st != UNCLIP_OK) {
        if (st == UNCLIP_E_MODEL && strstr(err->msg, "shape"))
            config_hint(err, m);
        goto fail;
    }
    *out = m;
    return UNCLIP_OK;

fail:
    unclip__clip_vision_free(m);
    return st;
}

unclip_status
unclip__clip_vision_load(struct unclip_vk *vk, const struct unclip_model_dir *dir,
                         const char *name, const struct unclip_clip_vision_opts *opts,
                         struct unclip_clip_vision **out, struct unclip_err *err)
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
        st = unclip__clip_vision_load_files(vk, cpath, cname, wpath, wname, opts, out, err);
    }
    unclip__free(cpath);
    unclip__free(wpath);
    return st;
}

void
unclip__clip_vision_free(struct unclip_clip_vision *m)
{
    if (!m)
        return;
    unclip__free(m->cls_pos);
    unclip__lin_free(&m->patch);
    unclip__ln_free(&m->pre_ln);
    unclip__clip_encoder_free(&m->enc);
    unclip__ln_free(&m->post_ln);
    unclip__lin_free(&m->proj);
    unclip__free(m);
}

const struct unclip_clip_vision_config *
unclip__clip_vision_config(const struct unclip_clip_vision *m)
{
    return &m->cfg;
}

uint64_t
unclip__clip_vision_weight_bytes(const struct unclip_clip_vision *m)
{
    return m->bytes;
}

unclip_status
unclip__clip_vision_forward(struct unclip_clip_vision *m, const float *pixels, int32_t batch,
                            struct unclip_tensor *image_embeds, struct unclip_tensor *last_hidden)
{
    struct unclip_vk *vk = m->vk;
    struct unclip_err *err = unclip__vk_err(vk);
    const struct unclip_clip_vision_config *c = &m->cfg;
    if (!pixels || batch < 1)
        return unclip__fail(err, UNCLIP_E_ARG, "image encoder: no pixels");
    const int64_t C = c->channels, S = c->image_size, p = c->patch_size, G = c->grid;
    const int64_t H = c->hidden, T = c->tokens, K = C * p * p;
    const int64_t n_pix = (int64_t)batch * C * S * S;
    for (int64_t i = 0; i < n_pix; i++)
        if (!isfinite(pixels[i]))
            return unclip__fail(err, UNCLIP_E_ARG, "image encoder: pixel value %lld is not finite",
                                (long long)i);

    /* Host im2col: rows [B, T, K]; row 0 of each image stays zero (class token). */
    float *patches = unclip__calloc((size_t)(batch * T * K), sizeof(float));
    float *resid = unclip__malloc((size_t)(batch * T * H) * sizeof(float));
    if (!patches || !resid) {
        unclip__free(patches);
        unclip__free(resid);
        return unclip__fail(err, UNCLIP_E_NOMEM, "image encoder: out of host memory");
    }
    for (int64_t b = 0; b < batch; b++) {
        const float *img = pixels + b * C * S * S;
        for (int64_t py = 0; py < G; py++)
            for (int64_t px = 0; px < G; px++) {
                float *row = patches + (b * T + 1 + py * G + px) * K;
                for (int64_t ch = 0; ch < C; ch++)
                    for (int64_t ky = 0; ky < p; ky++)
                        memcpy(row + (ch * p + ky) * p,
                               img + (ch * S + py * p + ky) * S + px * p,
                               (size_t)p * sizeof(float));
            }
        memcpy(resid + b * T * H, m->cls_pos, (size_t)(T * H) * sizeof(float));
    }

    struct unclip_tensor tp = {0}, tr = {0}, h = {0}, pooled = {0}, ie = {0};
    struct unclip_enc_scratch s = {0};
    int64_t pshape[3] = {batch, T, K}, hshape[3] = {batch, T, H};
    unclip_status st = unclip__tensor_new(vk, UNCLIP_DT_F32, 3, pshape, &tp);
    if (st == UNCLIP_OK)
        st = unclip__tensor_upload_f32(vk, &tp, patches);
    if (st == UNCLIP_OK)
        st = unclip__tensor_new(vk, UNCLIP_DT_F32, 3, hshape, &tr);
    if (st == UNCLIP_OK)
        st = unclip__tensor_upload_f32(vk, &tr, resid);
    unclip__free(patches);
    unclip__free(resid);
    if (st == UNCLIP_OK)
        st = unclip__tensor_new(vk, UNCLIP_DT_F32, 3, hshape, &h);
    /* h = patches . W^T + (class / position embeddings) */
    if (st == UNCLIP_OK)
        st = unclip__lin_run(vk, &m->patch, &tp, &tr, &h);
    if (st == UNCLIP_OK)
        st = unclip__ln_run(vk, &m->pre_ln, &h, &h);
    if (st == UNCLIP_OK)
        st = unclip__enc_scratch_new(vk, (int64_t)batch * T, c->hidden, c->inner, &s);
    if (st == UNCLIP_OK)
        st = unclip__clip_encoder_run(vk, &m->enc, &h, batch, (int32_t)T, false, &s);

    if (st == UNCLIP_OK && image_embeds) {
        int64_t qshape[2] = {batch, H}, eshape[2] = {batch, c->proj_dim};
        struct unclip_copy_desc d = {
            .shape = {1, 1, batch, H},
            .src_off = 0,
            .src_stride = {0, 0, T * H, 1},
            .dst_off = 0,
            .dst_stride = {0, 0, H, 1},
        };
        st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, qshape, &pooled);
        if (st == UNCLIP_OK)
            st = unclip__op_copy(vk, &h, &pooled, &d);
        if (st == UNCLIP_OK)
            st = unclip__ln_run(vk, &m->post_ln, &pooled, &pooled);
        if (st == UNCLIP_OK)
            st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, eshape, &ie);
        if (st == UNCLIP_OK)
            st = unclip__lin_run(vk, &m->proj, &pooled, NULL, &ie);
    }

    unclip__enc_scratch_free(&s);
    unclip__tensor_free(&tp);
    unclip__tensor_free(&tr);
    unclip__tensor_free(&pooled);
    if (st != UNCLIP_OK) {
        unclip__tensor_free(&h);
        unclip__tensor_free(&ie);
        return st;
    }
    if (image_embeds)
        *image_embeds = ie;
    if (last_hidden)
        *last_hidden = h;
    else
        unclip__tensor_free(&h);
    return UNCLIP_OK;
}

unclip_status
unclip__clip_vision_encode(struct unclip_clip_vision *m, const float *pixels, int32_t batch,
                           float *image_embeds, float *last_hidden)
{
    struct unclip_tensor ie = {0}, lh = {0};
    unclip_status st = unclip__clip_vision_forward(m, pixels, batch, image_embeds ? &ie : NULL,
                                                   last_hidden ? &lh : NULL);
    if (st == UNCLIP_OK && image_embeds)
        st = unclip__tensor_download_f32(m->vk, &ie, image_embeds);
    if (st == UNCLIP_OK && last_hidden)
        st = unclip__tensor_download_f32(m->vk, &lh, last_hidden);
    unclip__tensor_free(&ie);
    unclip__tensor_free(&lh);
    return st;
}
