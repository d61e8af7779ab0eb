/* CLIPTextModelWithProjection (see clip-text.h). */
#include "models/clip-text.h"

#include "core/alloc.h"
#include "models/blocks.h"
#include "models/weights.h"

#include <stdio.h>
#include <string.h>

#define P_TOKEN "text_model.embeddings.token_embedding.weight"
#define P_POS "text_model.embeddings.position_embedding.weight"
#define P_POS_IDS "text_model.embeddings.position_ids"
#define P_ENC "text_model.encoder"
#define P_FINAL "text_model.final_layer_norm"
#define P_PROJ "text_projection.weight"

struct unclip_clip_text {
    struct unclip_vk *vk; /* borrowed */
    struct unclip_clip_text_config cfg;
    char config_name[256];
    struct unclip_weights *w;             /* kept open: the token table is read from the mmap */
    const struct unclip_st_tensor *token; /* [vocab, H] in the mapping                        */
    float *pos;                           /* [max_positions, H] host                          */
    struct unclip_clip_encoder enc;
    struct unclip_ln final_ln;
    struct unclip_lin proj; /* [P, H], no bias */
};

unclip_status
unclip__clip_text_config_read(const struct unclip_json *j, struct unclip_clip_text_config *out,
                              struct unclip_err *err)
{
    struct unclip_clip_text_config c;
    double eps;
    const char *act;
    unclip_status st;
    /* Defaults: transformers' CLIPTextConfig(). */
    if ((st = unclip__json_i32_opt(j, "vocab_size", 49408, 1, 1 << 24, &c.vocab_size, err)) ||
        (st = unclip__json_i32_opt(j, "hidden_size", 512, 1, 1 << 16, &c.hidden, err)) ||
        (st = unclip__json_i32_opt(j, "intermediate_size", 2048, 1, 1 << 18, &c.inner, err)) ||
        (st = unclip__json_i32_opt(j, "num_hidden_layers", 12, 0, 1024, &c.layers, err)) ||
        (st = unclip__json_i32_opt(j, "num_attention_heads", 8, 1, 4096, &c.heads, err)) ||
        (st = unclip__json_i32_opt(j, "max_position_embeddings", 77, 1, 1 << 16,
                                   &c.max_positions, err)) ||
        (st = unclip__json_i32_opt(j, "projection_dim", 512, 1, 1 << 16, &c.proj_dim, err)) ||
        (st = unclip__json_float_opt(j, "layer_norm_eps", 1e-5, 0.0, 1.0, &eps, err)) ||
        (st = unclip__json_string_opt(j, "hidden_act", "quick_gelu", &act, err)) ||
        (st = unclip__json_int_opt(j, "eos_token_id", 49407, INT64_MIN, INT64_MAX,
                                   &c.eos_token_id, err)))
        return st;
    if ((st = unclip__act_from_name(act, unclip__json_name(j), &c.act, err)))
        return st;
    if (c.hidden % c.heads != 0)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                            unclip__json_name(j), (int)c.hidden, (int)c.heads);
    if (c.hidden / c.heads > 128)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: attention head size %d (hidden_size %d / num_attention_heads "
                            "%d) is above the supported 128",
                            unclip__json_name(j), (int)(c.hidden / c.heads), (int)c.hidden,
                            (int)c.heads);
    c.eps = (float)eps;
    *out = c;
    return UNCLIP_OK;
}

static bool
text_tensor_known(const struct unclip_clip_text_config *c, const char *name)
{
    return !strcmp(name, P_TOKEN) || !strcmp(name, P_POS) || !strcmp(name, P_POS_IDS) ||
           !strcmp(name, P_FINAL ".weight") || !strcmp(name, P_FINAL ".bias") ||
           !strcmp(name, P_PROJ) || unclip__clip_layer_tensor(name, P_ENC, c->layers);
}

static void
config_hint(struct unclip_err *err, const struct unclip_clip_text *m)
{
    const struct unclip_clip_text_config *c = &m->cfg;
    unclip__err_append(err,
                       "%s says vocab_size %d, hidden_size %d, intermediate_size %d, "
                       "num_hidden_layers %d, max_position_embeddings %d, projection_dim %d",
                       m->config_name, (int)c->vocab_size, (int)c->hidden, (int)c->inner,
                       (int)c->layers, (int)c->max_positions, (int)c->proj_dim);
}

static unclip_status
load_tensors(struct unclip_clip_text *m, struct unclip_err *err)
{
    const struct unclip_clip_text_config *c = &m->cfg;
    const char *wname = unclip__weights_name(m->w);
    const struct unclip_st_file *f = unclip__weights_file(m->w);
    char a[128], b[128];

    /* The token table stays in the mapping: check it like the uploader would. */
    m->token = unclip__st_find(f, P_TOKEN);
    if (!m->token)
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: missing tensor '%s'", wname, P_TOKEN);
    int64_t tshape[2] = {c->vocab_size, c->hidden};
    if (m->token->dtype != UNCLIP_DT_F32 && m->token->dtype != UNCLIP_DT_F16 &&
        m->token->dtype != UNCLIP_DT_BF16)
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: tensor '%s': dtype %s, expected F32, F16 "
                            "or BF16", wname, P_TOKEN, unclip__dtype_name(m->token->dtype));
    if (m->token->ndim != 2 || m->token->shape[0] != tshape[0] ||
        m->token->shape[1] != tshape[1])
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: tensor '%s': shape %s, expected %s", wname,
                            P_TOKEN,
                            unclip__st_shape_str(m->token->ndim, m->token->shape, a, sizeof a),
                            unclip__st_shape_str(2, tshape, b, sizeof b));

    int64_t pshape[2] = {c->max_positions, c->hidden};
    m->pos = unclip__calloc((size_t)c->max_positions * (size_t)c->hidden, sizeof(float));
    if (!m->pos)
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", wname);
    unclip_status st = unclip__weights_get_host(m->w, P_POS, 2, pshape, m->pos, err);
    if (st != UNCLIP_OK)
        return st;

    struct unclip_clip_enc_config ec = {
        .dim = c->hidden, .heads = c->heads, .inner = c->inner, .layers = c->layers,
        .eps = c->eps, .act = c->act,
    };
    if ((st = unclip__clip_encoder_load(m->vk, m->w, P_ENC, &ec, &m->enc, err)) ||
        (st = unclip__ln_load(m->w, P_FINAL, c->hidden, c->eps, &m->final_ln, err)))
        return st;
    /* text_projection: nn.Linear(hidden_size, projection_dim, bias=False) */
    if ((st = unclip__lin_load(m->w, "text_projection", c->hidden, c->proj_dim, false, &m->proj,
                               err)))
        return st;

    /* Every tensor of the file must be one this config reads (position_ids is an optional
     * buffer transformers saves and we ignore). */
    for (int32_t i = 0; i < unclip__st_count(f); i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        if (!text_tensor_known(c, t->name))
            return unclip__fail(err, UNCLIP_E_MODEL,
                                "%s: tensor '%s' is not part of a text encoder with "
                                "num_hidden_layers %d: the config and the weights disagree",
                                wname, t->name, (int)c->layers);
    }
    return UNCLIP_OK;
}

unclip_status
unclip__clip_text_load_files(struct unclip_vk *vk, const char *config_path,
                             const char *config_name, const char *weights_path,
                             const char *weights_name, const struct unclip_clip_text_opts *opts,
                             struct unclip_clip_text **out, struct unclip_err *err)
{
    struct unclip_clip_text *m = unclip__calloc(1, sizeof *m);
    if (!m)
        return unclip__fail(err, UNCLIP_E_NOMEM, "text encoder: out of host memory");
    m->vk = vk;
    snprintf(m->config_name, sizeof m->config_name, "%s", config_name ? config_name : config_path);

    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_load(config_path, config_name, &j, err);
    if (st == UNCLIP_OK)
        st = unclip__clip_text_config_read(j, &m->cfg, err);
    unclip__json_free(j);
    if (st != UNCLIP_OK)
        goto fail;

    struct unclip_weights_opts wo = {.fp32 = opts && opts->fp32};
    if ((st = unclip__weights_open(vk, weights_path, weights_name, &wo, &m->w, err)))
        goto fail;
    if ((st = load_tensors(m, err))) {
        if (st == UNCLIP_E_MODEL && strstr(err->msg, "shape"))
            config_hint(err, m);
        goto fail;
    }
    *out = m;
    return UNCLIP_OK;

fail:
    unclip__clip_text_free(m);
    return st;
}

unclip_status
unclip__clip_text_load(struct unclip_vk *vk, const struct unclip_model_dir *dir,
                       const char *name, const struct unclip_clip_text_opts *opts,
                       struct unclip_clip_text **out, struct unclip_err *err)
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
        st = unclip__clip_text_load_files(vk, cpath, cname, wpath, wname, opts, out, err);
    }
    unclip__free(cpath);
    unclip__free(wpath);
    return st;
}

void
unclip__clip_text_free(struct unclip_clip_text *m)
{
    if (!m)
        return;
    unclip__clip_encoder_free(&m->enc);
    unclip__ln_free(&m->final_ln);
    unclip__lin_free(&m->proj);
    unclip__free(m->pos);
    unclip__weights_free(m->w);
    unclip__free(m);
}

const struct unclip_clip_text_config *
unclip__clip_text_config(const struct unclip_clip_text *m)
{
    return &m->cfg;
}

uint64_t
unclip__clip_text_weight_bytes(const struct unclip_clip_text *m)
{
    /* The uploader counts what it uploaded; the packed q/k/v projections are made here. */
    uint64_t n = unclip__clip_encoder_bytes(&m->enc);
    n += unclip__tensor_bytes(&m->final_ln.g) + unclip__tensor_bytes(&m->final_ln.b);
    n += unclip__tensor_bytes(&m->proj.w);
    return n;
}

int32_t
unclip__clip_text_pool_index(const struct unclip_clip_text_config *cfg, const int64_t *ids,
                             int32_t len)
{
    int32_t at = 0;
    if (cfg->eos_token_id == 2) {
        /* transformers' legacy pooling: argmax(input_ids), the first maximal id. */
        for (int32_t t = 1; t < len; t++)
            if (ids[t] > ids[at])
                at = t;
        return at;
    }
    for (int32_t t = 0; t < len; t++)
        if (ids[t] == cfg->eos_token_id)
            return t;
    return 0; /* argmax of an all-false row */
}

/* Row `row` of the token table as floats. */
static void
token_row(const struct unclip_st_tensor *t, int64_t row, int32_t dim, float *dst)
{
    size_t es = unclip__dtype_size(t->dtype);
    const unsigned char *p = (const unsigned char *)t->data + (size_t)row * (size_t)dim * es;
    for (int32_t i = 0; i < dim; i++, p += es) {
        if (t->dtype == UNCLIP_DT_F32) {
            memcpy(&dst[i], p, 4);
        } else {
            uint16_t h;
            memcpy(&h, p, 2);
            dst[i] = t->dtype == UNCLIP_DT_F16 ? unclip__f16_to_f32(h) : unclip__bf16_to_f32(h);
        }
    }
}

unclip_status
unclip__clip_text_forward(struct unclip_clip_text *m, const int64_t *ids, int32_t batch,
                          int32_t len, struct unclip_tensor *text_embeds,
                          struct unclip_tensor *last_hidden)
{
    struct unclip_vk *vk = m->vk;
    struct unclip_err *err = unclip__vk_err(vk);
    const struct unclip_clip_text_config *c = &m->cfg;
    if (!ids || batch < 1 || len < 1 || len > c->max_positions)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "text encoder: %d x %d ids, expected at least one row of 1..%d",
                            (int)batch, (int)len, (int)c->max_positions);
    for (int64_t i = 0; i < (int64_t)batch * len; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return unclip__fail(err, UNCLIP_E_ARG,
                                "text encoder: input_ids[%lld][%lld] = %lld is outside the "
                                "vocabulary of %d tokens",
                                (long long)(i / len), (long long)(i % len), (long long)ids[i],
                                (int)c->vocab_size);

    const int64_t H = c->hidden, rows = (int64_t)batch * len;
    struct unclip_tensor h = {0}, pooled = {0}, te = {0};
    struct unclip_enc_scratch s = {0};
    unclip_status st;

    /* Embeddings on the host, added in float like torch: token row + position row. */
    float *hh = unclip__malloc((size_t)rows * (size_t)H * sizeof(float));
    if (!hh)
        return unclip__fail(err, UNCLIP_E_NOMEM, "text encoder: out of host memory");
    for (int64_t r = 0; r < rows; r++) {
        float *dst = hh + r * H;
        const float *pos = m->pos + (r % len) * H;
        token_row(m->token, ids[r], (int32_t)H, dst);
        for (int64_t i = 0; i < H; i++)
            dst[i] += pos[i];
    }
    int64_t hshape[3] = {batch, len, H};
    st = unclip__tensor_new(vk, UNCLIP_DT_F32, 3, hshape, &h);
    if (st == UNCLIP_OK)
        st = unclip__tensor_upload_f32(vk, &h, hh);
    unclip__free(hh);
    if (st == UNCLIP_OK)
        st = unclip__enc_scratch_new(vk, rows, c->hidden, c->inner, &s);
    if (st == UNCLIP_OK)
        st = unclip__clip_encoder_run(vk, &m->enc, &h, batch, len, true, &s);
    if (st == UNCLIP_OK)
        st = unclip__ln_run(vk, &m->final_ln, &h, &h);

    if (st == UNCLIP_OK && text_embeds) {
        int64_t pshape[2] = {batch, H}, eshape[2] = {batch, c->proj_dim};
        st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, pshape, &pooled);
        for (int32_t b = 0; b < batch && st == UNCLIP_OK; b++) {
            int32_t at = unclip__clip_text_pool_index(c, ids + (int64_t)b * len, len);
            struct unclip_copy_desc d = {
                .shape = {1, 1, 1, H},
                .src_off = ((int64_t)b * len + at) * H,
                .src_stride = {0, 0, 0, 1},
                .dst_off = (int64_t)b * H,
                .dst_stride = {0, 0, 0, 1},
            };
            st = unclip__op_copy(vk, &h, &pooled, &d);
        }
        if (st == UNCLIP_OK)
            st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, eshape, &te);
        if (st == UNCLIP_OK)
            st = unclip__lin_run(vk, &m->proj, &pooled, NULL, &te);
    }

    unclip__enc_scratch_free(&s);
    unclip__tensor_free(&pooled);
    if (st != UNCLIP_OK) {
        unclip__tensor_free(&h);
        unclip__tensor_free(&te);
        return st;
    }
    if (text_embeds)
        *text_embeds = te;
    if (last_hidden)
        *last_hidden = h;
    else
        unclip__tensor_free(&h);
    return UNCLIP_OK;
}

unclip_status
unclip__clip_text_encode(struct unclip_clip_text *m, const int64_t *ids, int32_t batch,
                         int32_t len, float *text_embeds, float *last_hidden)
{
    struct unclip_tensor te = {0}, lh = {0};
    unclip_status st = unclip__clip_text_forward(m, ids, batch, len, text_embeds ? &te : NULL,
                                                 last_hidden ? &lh : NULL);
    if (st == UNCLIP_OK && text_embeds)
        st = unclip__tensor_download_f32(m->vk, &te, text_embeds);
    if (st == UNCLIP_OK && last_hidden)
        st = unclip__tensor_download_f32(m->vk, &lh, last_hidden);
    unclip__tensor_free(&te);
    unclip__tensor_free(&lh);
    return st;
}
