/* PriorTransformer (see prior.h). */
#include "models/prior.h"

#include "core/alloc.h"
#include "models/blocks.h"
#include "models/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LN_EPS 1e-5f
/* diffusers' additive mask value (the text mask; the causal part is skipped instead). */
#define MASK_BIAS (-10000.0f)

static const struct unclip_attn_names diffusers_attn_names = {"to_q", "to_k", "to_v",
                                                              "to_out.0"};

/* Activations of one forward pass at batch `batch` (kept between calls). */
struct prior_scratch {
    int32_t batch;                 /* 0: nothing allocated                     */
    struct unclip_enc_scratch enc; /* ln output, qkv, attention output, MLP mid */
    struct unclip_tensor seq;      /* [B, S, W] the token sequence               */
    struct unclip_tensor txt;      /* [B, T, W] projected text tokens            */
    struct unclip_tensor tsin;     /* [B, W] sinusoid                            */
    struct unclip_tensor t1;       /* [B, time_embed_dim]                        */
    struct unclip_tensor temb;     /* [B, W]                                     */
    struct unclip_tensor pnorm;    /* [B, P] normed proj_embedding (optional)    */
    struct unclip_tensor pe;       /* [B, W]                                     */
    struct unclip_tensor hx;       /* [B, W]                                     */
    struct unclip_tensor last;     /* [B, W] the prd token                       */
    struct unclip_tensor bias;     /* [B, S] additive key bias                   */
    struct unclip_vk_buf *arena;   /* seq .. bias are views of it                */
    uint8_t *mask;                 /* [B, T] mask the bias was built from        */
    bool bias_valid;
    float *tvals; /* [B] */
    /* The body (time MLP .. to_clip) recorded once and replayed while the caller passes the
     * same buffers (serials of x, proj_embedding, enc, out): a prior loop does, step after
     * step; only the sinusoid and the key bias change, and they live in scratch buffers. */
    struct unclip_vk_graph *graph;
    uint64_t graph_key[4];
    bool graph_off; /* a capture failed at this batch: record every forward */
};

struct unclip_prior {
    struct unclip_vk *vk; /* borrowed */
    struct unclip_prior_config cfg;
    char config_name[256];
    char weights_name[256];
    struct unclip_lin time1, time2, proj_in, emb_proj, enc_proj, to_clip;
    struct unclip_ln emb_norm, norm_in, norm_out;
    struct unclip_tensor pos;  /* [1, S, W] F32 */
    struct unclip_tensor prd;  /* [1, 1, W] F32 */
    struct unclip_tensor mean; /* [1, C] F32    */
    struct unclip_tensor std;  /* [1, C] F32    */
    float *mean_h, *std_h;     /* [C] host      */
    struct unclip_clip_layer *blocks;
    int32_t n_blocks; /* loaded (for freeing after a partial load) */
    struct prior_scratch s;
};

/* ---- config ---- */

/* An enum that may also be null: *out = -1 for null (or for absent when def_index < 0),
 * else the index of the string in choices (absent: def_index). */
static unclip_status
nullable_enum(const struct unclip_json *j, const char *key, const char *const *choices,
              int32_t def_index, int32_t *out, struct unclip_err *err)
{
    enum unclip_json_type ty = unclip__json_type(j, key);
    if (ty == UNCLIP_JSON_NULL || (ty == UNCLIP_JSON_ABSENT && def_index < 0)) {
        *out = -1;
        return UNCLIP_OK;
    }
    return unclip__json_enum(j, key, choices, def_index, out, err);
}

unclip_status
unclip__prior_config_read(const struct unclip_json *j, struct unclip_prior_config *out,
                          struct unclip_err *err)
{
    static const char *const layer_only[] = {"layer", NULL};
    static const char *const linear_only[] = {"linear", NULL};
    static const char *const prd_only[] = {"prd", NULL};
    static const char *const acts[] = {"silu", "swish", "gelu", NULL};
    const char *name = unclip__json_name(j);
    struct unclip_prior_config c;
    memset(&c, 0, sizeof c);
    int32_t tdim, pdim, cdim, norm_in, proj_norm, enc_proj, added, act;
    unclip_status st;
    /* Defaults: diffusers PriorTransformer(), i.e. Karlo's prior. */
    if ((st = unclip__json_i32_opt(j, "num_attention_heads", 32, 1, 4096, &c.heads, err)) ||
        (st = unclip__json_i32_opt(j, "attention_head_dim", 64, 1, 4096, &c.head_dim, err)) ||
        (st = unclip__json_i32_opt(j, "num_layers", 20, 0, 1024, &c.layers, err)) ||
        (st = unclip__json_i32_opt(j, "embedding_dim", 768, 1, 1 << 16, &c.embedding_dim,
                                   err)) ||
        (st = unclip__json_i32_opt(j, "num_embeddings", 77, 1, 4096, &c.num_embeddings, err)) ||
        (st = unclip__json_i32_opt(j, "additional_embeddings", 4, 0, 4096,
                                   &c.additional_embeddings, err)) ||
        (st = unclip__json_i32_opt(j, "time_embed_dim", 0, 1, 1 << 16, &tdim, err)) ||
        (st = unclip__json_i32_opt(j, "embedding_proj_dim", 0, 1, 1 << 16, &pdim, err)) ||
        (st = unclip__json_i32_opt(j, "clip_embed_dim", 0, 1, 1 << 16, &cdim, err)) ||
        (st = unclip__json_enum(j, "time_embed_act_fn", acts, 0, &act, err)))
        return st;
    /* Nullable enums: absent takes diffusers' default, null means "none". */
    if ((st = nullable_enum(j, "norm_in_type", layer_only, -1, &norm_in, err)) ||
        (st = nullable_enum(j, "embedding_proj_norm_type", layer_only, -1, &proj_norm,
                            err)) ||
        (st = nullable_enum(j, "encoder_hid_proj_type", linear_only, 0, &enc_proj, err)) ||
        (st = nullable_enum(j, "added_emb_type", prd_only, 0, &added, err)))
        return st;
    if (enc_proj < 0)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: 'encoder_hid_proj_type' null is not supported (the engine "
                            "needs the \"linear\" text projection)", name);
    if (added < 0)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: 'added_emb_type' null is not supported (the engine reads the "
                            "prediction from the \"prd\" token)", name);
    double dropout;
    if ((st = unclip__json_float_opt(j, "dropout", 0.0, 0.0, 1.0, &dropout, err)))
        return st; /* inference ignores dropout; only its type is checked */

    int64_t width = (int64_t)c.heads * c.head_dim;
    if (width > (1 << 16))
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: num_attention_heads %d x attention_head_dim %d is too wide",
                            name, (int)c.heads, (int)c.head_dim);
    if (c.head_dim > 128)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: 'attention_head_dim' %d is above the supported 128", name,
                            (int)c.head_dim);
    if (c.additional_embeddings != 4)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: 'additional_embeddings' is %d; the engine supports 4 (text "
                            "embedding, time, latent and prd tokens after the text)",
                            name, (int)c.additional_embeddings);
    c.width = (int32_t)width;
    c.seq_len = c.num_embeddings + c.additional_embeddings;
    c.time_embed_dim = tdim ? tdim : c.width;
    c.proj_dim = pdim ? pdim : c.embedding_dim;
    c.clip_dim = cdim ? cdim : c.embedding_dim;
    c.time_act = act == 2 ? UNCLIP_ACT_GELU : UNCLIP_ACT_SILU;
    c.norm_in = norm_in == 0;
    c.embedding_proj_norm = proj_norm == 0;
    *out = c;
    return UNCLIP_OK;
}

/* ---- loading ---- */

static unclip_status
fmt_name(char *buf, size_t size, struct unclip_err *err, const char *fmt, int i)
{
    int n = snprintf(buf, size, fmt, i);
    if (n < 0 || (size_t)n >= size)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "tensor name too long");
    return UNCLIP_OK;
}

static unclip_status
load_block(struct unclip_prior *m, struct unclip_weights *w, int32_t i,
           struct unclip_clip_layer *L, struct unclip_err *err)
{
    const struct unclip_prior_config *c = &m->cfg;
    char n[128];
    unclip_status st;
    if ((st = fmt_name(n, sizeof n, err, "transformer_blocks.%d.norm1", i)) ||
        (st = unclip__ln_load(w, n, c->width, LN_EPS, &L->ln1, err)) ||
        (st = fmt_name(n, sizeof n, err, "transformer_blocks.%d.attn1", i)) ||
        (st = unclip__self_attn_load(m->vk, w, n, &diffusers_attn_names, c->width, c->heads,
                                     true, &L->attn, err)) ||
        (st = fmt_name(n, sizeof n, err, "transformer_blocks.%d.norm3", i)) ||
        (st = unclip__ln_load(w, n, c->width, LN_EPS, &L->ln2, err)) ||
        (st = fmt_name(n, sizeof n, err, "transformer_blocks.%d.ff", i)) ||
        (st = unclip__mlp_load(w, n, "net.0.proj", "net.2", c->width, 4 * c->width,
                               UNCLIP_ACT_GELU, &L->mlp, err)))
        return st;
    return UNCLIP_OK;
}

static void
free_block(struct unclip_clip_layer *L)
{
    unclip__ln_free(&L->ln1);
    unclip__self_attn_free(&L->attn);
    unclip__ln_free(&L->ln2);
    unclip__mlp_free(&L->mlp);
}

static unclip_status
load_tensors(struct unclip_prior *m, struct unclip_weights *w, struct unclip_err *err)
{
    const struct unclip_prior_config *c = &m->cfg;
    const int32_t W = c->width, E = c->embedding_dim, C = c->clip_dim;
    unclip_status st;
    if ((st = unclip__lin_load(w, "time_embedding.linear_1", W, c->time_embed_dim, true,
                               &m->time1, err)) ||
        (st = unclip__lin_load(w, "time_embedding.linear_2", c->time_embed_dim, W, true,
                               &m->time2, err)) ||
        (st = unclip__lin_load(w, "proj_in", E, W, true, &m->proj_in, err)) ||
        (st = unclip__lin_load(w, "embedding_proj", c->proj_dim, W, true, &m->emb_proj, err)) ||
        (st = unclip__lin_load(w, "encoder_hidden_states_proj", E, W, true, &m->enc_proj,
                               err)))
        return st;
    if (c->embedding_proj_norm &&
        (st = unclip__ln_load(w, "embedding_proj_norm", c->proj_dim, LN_EPS, &m->emb_norm, err)))
        return st;
    if (c->norm_in && (st = unclip__ln_load(w, "norm_in", W, LN_EPS, &m->norm_in, err)))
        return st;

    int64_t pshape[3] = {1, c->seq_len, W}, dshape[3] = {1, 1, W}, cshape[2] = {1, C};
    if ((st = unclip__weights_get_as(w, "positional_embedding", 3, pshape, UNCLIP_DT_F32,
                                     &m->pos, err)) ||
        (st = unclip__weights_get_as(w, "prd_embedding", 3, dshape, UNCLIP_DT_F32, &m->prd,
                                     err)))
        return st;

    m->blocks = unclip__calloc(c->layers > 0 ? (size_t)c->layers : 1, sizeof *m->blocks);
    if (!m->blocks)
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", m->weights_name);
    for (int32_t i = 0; i < c->layers; i++) {
        m->n_blocks = i + 1; /* free what this block got even when it fails half-way */
        if ((st = load_block(m, w, i, &m->blocks[i], err)))
            return st;
    }

    if ((st = unclip__ln_load(w, "norm_out", W, LN_EPS, &m->norm_out, err)) ||
        (st = unclip__lin_load(w, "proj_to_clip_embeddings", W, C, true, &m->to_clip, err)))
        return st;

    m->mean_h = unclip__calloc((size_t)C, sizeof(float));
    m->std_h = unclip__calloc((size_t)C, sizeof(float));
    if (!m->mean_h || !m->std_h)
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", m->weights_name);
    if ((st = unclip__weights_get_host(w, "clip_mean", 2, cshape, m->mean_h, err)) ||
        (st = unclip__weights_get_host(w, "clip_std", 2, cshape, m->std_h, err)))
        return st;
    if ((st = unclip__tensor_new(m->vk, UNCLIP_DT_F32, 2, cshape, &m->mean)) ||
        (st = unclip__tensor_upload_f32(m->vk, &m->mean, m->mean_h)) ||
        (st = unclip__tensor_new(m->vk, UNCLIP_DT_F32, 2, cshape, &m->std)) ||
        (st = unclip__tensor_upload_f32(m->vk, &m->std, m->std_h))) {
        unclip__err_take_vk(err, m->vk);
        return st;
    }

    /* A file for another configuration (e.g. more layers) leaves tensors unread. */
    if ((st = unclip__weights_check_all_used(w, err))) {
        unclip__err_append(err, "%s says num_layers %d", m->config_name, (int)c->layers);
        return st;
    }
    return UNCLIP_OK;
}

static void
config_hint(struct unclip_err *err, const struct unclip_prior *m)
{
    const struct unclip_prior_config *c = &m->cfg;
    unclip__err_append(err,
                       "%s says num_attention_heads %d x attention_head_dim %d = width %d, "
                       "num_layers %d, embedding_dim %d, num_embeddings %d + "
                       "additional_embeddings %d, time_embed_dim %d, embedding_proj_dim %d, "
                       "clip_embed_dim %d",
                       m->config_name, (int)c->heads, (int)c->head_dim, (int)c->width,
                       (int)c->layers, (int)c->embedding_dim, (int)c->num_embeddings,
                       (int)c->additional_embeddings, (int)c->time_embed_dim,
                       (int)c->proj_dim, (int)c->clip_dim);
}

unclip_status
unclip__prior_load_files(struct unclip_vk *vk, const char *config_path, const char *config_name,
                         const char *weights_path, const char *weights_name,
                         const struct unclip_prior_opts *opts, struct unclip_prior **out,
                         struct unclip_err *err)
{
    *out = NULL;
    struct unclip_prior *m = unclip__calloc(1, sizeof *m);
    if (!m)
        return unclip__fail(err, UNCLIP_E_NOMEM, "prior: out of host memory");
    m->vk = vk;
    snprintf(m->config_name, sizeof m->config_name, "%s", config_name ? config_name : config_path);
    snprintf(m->weights_name, sizeof m->weights_name, "%s",
             weights_name ? weights_name : weights_path);

    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_load(config_path, config_name, &j, err);
    if (st == UNCLIP_OK)
        st = unclip__prior_config_read(j, &m->cfg, err);
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
        if (st == UNCLIP_E_MODEL && strstr(err->msg, "shape"))
            config_hint(err, m);
        goto fail;
    }
    *out = m;
    return UNCLIP_OK;

fail:
    unclip__prior_free(m);
    return st;
}

unclip_status
unclip__prior_load(struct unclip_vk *vk, const struct unclip_model_dir *dir, const char *name,
                   const struct unclip_prior_opts *opts, struct unclip_prior **out,
                   struct unclip_err *err)
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
        st = unclip__prior_load_files(vk, cpath, cname, wpath, wname, opts, out, err);
    }
    unclip__free(cpath);
    unclip__free(wpath);
    return st;
}

void
unclip__prior_release_scratch(struct unclip_prior *m)
{
    struct prior_scratch *s = &m->s;
    unclip__vk_graph_free(s->graph); /* before the buffers it binds */
    unclip__enc_scratch_free(&s->enc);
    struct unclip_tensor *ts[] = {&s->seq, &s->txt, &s->tsin, &s->t1,   &s->temb,
                                  &s->pnorm, &s->pe, &s->hx, &s->last, &s->bias};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        unclip__tensor_free(ts[i]);
    unclip__vk_buf_free(s->arena); /* after its views */
    unclip__free(s->mask);
    unclip__free(s->tvals);
    memset(s, 0, sizeof *s);
}

bool
unclip__prior_has_graph(const struct unclip_prior *m)
{
    return m->s.graph != NULL;
}

void
unclip__prior_free(struct unclip_prior *m)
{
    if (!m)
        return;
    unclip__prior_release_scratch(m);
    struct unclip_lin *lins[] = {&m->time1, &m->time2, &m->proj_in,
                                 &m->emb_proj, &m->enc_proj, &m->to_clip};
    for (size_t i = 0; i < sizeof lins / sizeof lins[0]; i++)
        unclip__lin_free(lins[i]);
    unclip__ln_free(&m->emb_norm);
    unclip__ln_free(&m->norm_in);
    unclip__ln_free(&m->norm_out);
    unclip__tensor_free(&m->pos);
    unclip__tensor_free(&m->prd);
    unclip__tensor_free(&m->mean);
    unclip__tensor_free(&m->std);
    unclip__free(m->mean_h);
    unclip__free(m->std_h);
    for (int32_t i = 0; m->blocks && i < m->n_blocks; i++)
        free_block(&m->blocks[i]);
    unclip__free(m->blocks);
    unclip__free(m);
}

const struct unclip_prior_config *
unclip__prior_config(const struct unclip_prior *m)
{
    return &m->cfg;
}

static uint64_t
tbytes(const struct unclip_tensor *t)
{
    return t->buf ? unclip__tensor_bytes(t) : 0;
}

static uint64_t
lbytes(const struct unclip_lin *l)
{
    return tbytes(&l->w) + tbytes(&l->b);
}

static uint64_t
nbytes(const struct unclip_ln *l)
{
    return tbytes(&l->g) + tbytes(&l->b);
}

uint64_t
unclip__prior_weight_bytes(const struct unclip_prior *m)
{
    uint64_t n = lbytes(&m->time1) + lbytes(&m->time2) + lbytes(&m->proj_in) +
                 lbytes(&m->emb_proj) + lbytes(&m->enc_proj) + lbytes(&m->to_clip) +
                 nbytes(&m->emb_norm) + nbytes(&m->norm_in) + nbytes(&m->norm_out) +
                 tbytes(&m->pos) + tbytes(&m->prd) + tbytes(&m->mean) + tbytes(&m->std);
    for (int32_t i = 0; m->blocks && i < m->n_blocks; i++) {
        const struct unclip_clip_layer *L = &m->blocks[i];
        n += nbytes(&L->ln1) + nbytes(&L->ln2) + lbytes(&L->attn.qkv) + lbytes(&L->attn.out) +
             lbytes(&L->mlp.fc1) + lbytes(&L->mlp.fc2);
    }
    return n;
}

/* ---- forward ---- */

static unclip_status
new2(struct unclip_vk *vk, int64_t a, int64_t b, struct unclip_tensor *t)
{
    int64_t shape[2] = {a, b};
    return unclip__tensor_new(vk, UNCLIP_DT_F32, 2, shape, t);
}

static unclip_status
new3(struct unclip_vk *vk, int64_t a, int64_t b, int64_t c, struct unclip_tensor *t)
{
    int64_t shape[3] = {a, b, c};
    return unclip__tensor_new(vk, UNCLIP_DT_F32, 3, shape, t);
}

static unclip_status
ensure_scratch(struct unclip_prior *m, int32_t batch)
{
    struct prior_scratch *s = &m->s;
    if (s->batch == batch)
        return UNCLIP_OK;
    unclip__prior_release_scratch(m);
    const struct unclip_prior_config *c = &m->cfg;
    struct unclip_vk *vk = m->vk;
    const int64_t B = batch, W = c->width, S = c->seq_len, T = c->num_embeddings;
    unclip_status st;
    const enum unclip_dtype F = UNCLIP_DT_F32;
    const struct unclip_tensor_spec specs[] = {
        {&s->seq, F, 3, {B, S, W}},
        {&s->txt, F, 3, {B, T, W}},
        {&s->tsin, F, 2, {B, W}},
        {&s->t1, F, 2, {B, c->time_embed_dim}},
        {&s->temb, F, 2, {B, W}},
        {&s->pe, F, 2, {B, W}},
        {&s->hx, F, 2, {B, W}},
        {&s->last, F, 2, {B, W}},
        {&s->bias, F, 2, {B, S}},
        {&s->pnorm, F, c->embedding_proj_norm ? 2 : -1, {B, c->proj_dim}},
    };
    if ((st = unclip__enc_scratch_new(vk, B * S, c->width, 4 * c->width, &s->enc)) ||
        (st = unclip__tensor_arena(vk, specs, (int32_t)(sizeof specs / sizeof specs[0]),
                                   &s->arena)))
        goto fail;
    s->mask = unclip__calloc((size_t)(B * T), 1);
    s->tvals = unclip__calloc((size_t)B, sizeof(float));
    if (!s->mask || !s->tvals) {
        st = unclip__fail(unclip__vk_err(vk), UNCLIP_E_NOMEM, "prior: out of host memory");
        goto fail;
    }
    s->batch = batch;
    s->bias_valid = false;
    return UNCLIP_OK;
fail:
    unclip__prior_release_scratch(m);
    return st;
}

/* Uploads the key bias unless the mask is the one it was built from. */
static unclip_status
update_bias(struct unclip_prior *m, const uint8_t *mask)
{
    struct prior_scratch *s = &m->s;
    const struct unclip_prior_config *c = &m->cfg;
    const int64_t B = s->batch, T = c->num_embeddings, S = c->seq_len;
    /* Normalise to 0/1 so that equal masks compare equal. */
    bool same = s->bias_valid;
    for (int64_t i = 0; i < B * T && same; i++)
        same = s->mask[i] == (uint8_t)(mask ? mask[i] != 0 : 1);
    if (same)
        return UNCLIP_OK;
    float *bias = unclip__calloc((size_t)(B * S), sizeof(float));
    if (!bias)
        return unclip__fail(unclip__vk_err(m->vk), UNCLIP_E_NOMEM, "prior: out of host memory");
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < T; j++) {
            uint8_t keep = (uint8_t)(mask ? mask[b * T + j] != 0 : 1);
            s->mask[b * T + j] = keep;
            bias[b * S + j] = keep ? 0.0f : MASK_BIAS;
        }
    unclip_status st = unclip__tensor_upload_f32(m->vk, &s->bias, bias);
    unclip__free(bias);
    s->bias_valid = st == UNCLIP_OK;
    return st;
}

/* Copies rows [B, rows, W] of src (contiguous) into seq at token `at`. */
static unclip_status
put_tokens(struct unclip_prior *m, const struct unclip_tensor *src, int64_t rows, int64_t at,
           int64_t src_batch_stride)
{
    const int64_t W = m->cfg.width, S = m->cfg.seq_len;
    struct unclip_copy_desc d = {
        .shape = {1, m->s.batch, rows, W},
        .src_off = 0,
        .src_stride = {0, src_batch_stride, W, 1},
        .dst_off = at * W,
        .dst_stride = {0, S * W, W, 1},
    };
    return unclip__op_copy(m->vk, src, &m->s.seq, &d);
}

static unclip_status
check_input(struct unclip_vk *vk, const char *what, const struct unclip_tensor *t, int64_t batch,
            int64_t numel, const char *want)
{
    if (!t || !t->buf || t->dtype != UNCLIP_DT_F32 || t->ndim < 1 || t->shape[0] != batch ||
        unclip__tensor_numel(t) != numel) {
        char buf[96];
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG,
                            "prior: %s has shape %s, expected %s F32 with batch %lld", what,
                            t && t->buf ? unclip__shape_str(t, buf, sizeof buf) : "(none)", want,
                            (long long)batch);
    }
    return UNCLIP_OK;
}

/* The forward after the sinusoid: time MLP, projections, the token sequence, the blocks,
 * norm_out and to_clip. Only dispatches (no uploads or waits), so it can be captured. */
static unclip_status
prior_body(struct unclip_prior *m, const struct unclip_tensor *x,
           const struct unclip_tensor *proj_embedding, const struct unclip_tensor *enc,
           struct unclip_tensor *out)
{
    struct unclip_vk *vk = m->vk;
    const struct unclip_prior_config *c = &m->cfg;
    struct prior_scratch *s = &m->s;
    const int64_t B = s->batch, T = c->num_embeddings, W = c->width, S = c->seq_len;
    unclip_status st;
    if ((st = unclip__lin_run(vk, &m->time1, &s->tsin, NULL, &s->t1)) ||
        (st = unclip__op_unary(vk, &s->t1, c->time_act, 1.0f, 0.0f, 0.0f, 0.0f, &s->t1)) ||
        (st = unclip__lin_run(vk, &m->time2, &s->t1, NULL, &s->temb)))
        return st;

    /* The other inputs' projections. */
    const struct unclip_tensor *p = proj_embedding;
    if (c->embedding_proj_norm) {
        if ((st = unclip__ln_run(vk, &m->emb_norm, proj_embedding, &s->pnorm)))
            return st;
        p = &s->pnorm;
    }
    if ((st = unclip__lin_run(vk, &m->emb_proj, p, NULL, &s->pe)) ||
        (st = unclip__lin_run(vk, &m->enc_proj, enc, NULL, &s->txt)) ||
        (st = unclip__lin_run(vk, &m->proj_in, x, NULL, &s->hx)))
        return st;

    /* [text tokens, proj embedding, time embedding, latent, prd] + positional embedding. */
    if ((st = put_tokens(m, &s->txt, T, 0, T * W)) || (st = put_tokens(m, &s->pe, 1, T, W)) ||
        (st = put_tokens(m, &s->temb, 1, T + 1, W)) || (st = put_tokens(m, &s->hx, 1, T + 2, W)) ||
        (st = put_tokens(m, &m->prd, 1, T + 3, 0)) ||
        (st = unclip__op_binary(vk, UNCLIP_BIN_ADD, &s->seq, &m->pos, &s->seq)))
        return st;
    if (c->norm_in && (st = unclip__ln_run(vk, &m->norm_in, &s->seq, &s->seq)))
        return st;

    /* Pre-norm blocks: h += attn1(norm1(h)) (causal + text key bias); h += ff(norm3(h)). */
    for (int32_t i = 0; i < c->layers; i++) {
        const struct unclip_clip_layer *L = &m->blocks[i];
        if ((st = unclip__ln_run(vk, &L->ln1, &s->seq, &s->enc.x)) ||
            (st = unclip__self_attn_run(vk, &L->attn, &s->enc.x, (int32_t)B, (int32_t)S, true,
                                        &s->bias, &s->enc.qkv, &s->enc.o, &s->seq)) ||
            (st = unclip__ln_run(vk, &L->ln2, &s->seq, &s->enc.x)) ||
            (st = unclip__mlp_run(vk, &L->mlp, &s->enc.x, &s->enc.mid, &s->seq)))
            return st;
    }

    /* norm_out is per token, so only the prd token (the last) needs it. */
    struct unclip_copy_desc d = {
        .shape = {1, 1, B, W},
        .src_off = (S - 1) * W,
        .src_stride = {0, 0, S * W, 1},
        .dst_off = 0,
        .dst_stride = {0, 0, W, 1},
    };
    if ((st = unclip__op_copy(vk, &s->seq, &s->last, &d)) ||
        (st = unclip__ln_run(vk, &m->norm_out, &s->last, &s->last)) ||
        (st = unclip__lin_run(vk, &m->to_clip, &s->last, NULL, out)))
        return st;
    return UNCLIP_OK;
}

unclip_status
unclip__prior_forward(struct unclip_prior *m, const struct unclip_tensor *x, float t,
                      const struct unclip_tensor *proj_embedding,
                      const struct unclip_tensor *enc, const uint8_t *mask,
                      struct unclip_tensor *out)
{
    struct unclip_vk *vk = m->vk;
    struct unclip_err *err = unclip__vk_err(vk);
    const struct unclip_prior_config *c = &m->cfg;
    if (!x || !x->buf || x->ndim < 1 || x->shape[0] < 1 || x->shape[0] > 4096)
        return unclip__fail(err, UNCLIP_E_ARG, "prior: hidden_states must be [B, %d], B >= 1",
                            (int)c->embedding_dim);
    const int64_t B = x->shape[0], E = c->embedding_dim, T = c->num_embeddings;
    const int64_t W = c->width;
    char want[64];
    unclip_status st;
    snprintf(want, sizeof want, "[B, %d]", (int)E);
    if ((st = check_input(vk, "hidden_states", x, B, B * E, want)))
        return st;
    snprintf(want, sizeof want, "[B, %d]", (int)c->proj_dim);
    if ((st = check_input(vk, "proj_embedding", proj_embedding, B, B * c->proj_dim, want)))
        return st;
    snprintf(want, sizeof want, "[B, %d, %d]", (int)T, (int)E);
    if ((st = check_input(vk, "encoder_hidden_states", enc, B, B * T * E, want)))
        return st;
    snprintf(want, sizeof want, "[B, %d]", (int)c->clip_dim);
    if ((st = check_input(vk, "output", out, B, B * c->clip_dim, want)))
        return st;
    if (out->buf == x->buf || out->buf == proj_embedding->buf || out->buf == enc->buf)
        return unclip__fail(err, UNCLIP_E_ARG, "prior: the output aliases an input");
    if (!(t > -8192.0f && t < 8192.0f))
        return unclip__fail(err, UNCLIP_E_ARG, "prior: timestep %g is out of range", (double)t);

    if ((st = ensure_scratch(m, (int32_t)B)) || (st = update_bias(m, mask)))
        return st;
    struct prior_scratch *s = &m->s;

    /* Time embedding: Timesteps(W, flip_sin_to_cos=True, shift 0) -> linear_1, act, linear_2. */
    for (int64_t b = 0; b < B; b++)
        s->tvals[b] = t;
    if ((st = unclip__op_timestep_embedding(vk, s->tvals, (int32_t)B, (int32_t)W, true, 0.0f,
                                            10000.0f, &s->tsin)))
        return st;
    /* The sinusoid upload above has finished, so has the bias upload: the rest reads only
     * device buffers and is replayed when the caller's buffers are the ones it was recorded
     * with. UNCLIP_NO_REPLAY=1 records every forward (for comparisons). */
    const char *nr = getenv("UNCLIP_NO_REPLAY");
    if (s->graph_off || (nr && nr[0] && strcmp(nr, "0") != 0))
        return prior_body(m, x, proj_embedding, enc, out);
    uint64_t gk[4] = {unclip__vk_buf_serial(x->buf), unclip__vk_buf_serial(proj_embedding->buf),
                      unclip__vk_buf_serial(enc->buf), unclip__vk_buf_serial(out->buf)};
    if (s->graph && memcmp(gk, s->graph_key, sizeof gk) == 0)
        return unclip__vk_replay(vk, s->graph);
    unclip__vk_graph_free(s->graph);
    s->graph = NULL;
    struct unclip_vk_graph *g = NULL;
    unclip_status st_end = UNCLIP_E_INTERNAL;
    if (unclip__vk_capture_begin(vk) == UNCLIP_OK) {
        st = prior_body(m, x, proj_embedding, enc, out);
        st_end = unclip__vk_capture_end(vk, &g);
        if (st == UNCLIP_OK && st_end == UNCLIP_OK) {
            s->graph = g;
            memcpy(s->graph_key, gk, sizeof gk);
            return unclip__vk_replay(vk, g);
        }
        unclip__vk_graph_free(st_end == UNCLIP_OK ? g : NULL);
    }
    /* Nothing captured has run: record this forward normally, and every later one. */
    unclip__err_clear(unclip__vk_err(vk));
    s->graph_off = true;
    return prior_body(m, x, proj_embedding, enc, out);
}

unclip_status
unclip__prior_predict(struct unclip_prior *m, int32_t batch, const float *x, float t,
                      const float *proj_embedding, const float *enc, const uint8_t *mask,
                      float *out)
{
    struct unclip_vk *vk = m->vk;
    const struct unclip_prior_config *c = &m->cfg;
    if (batch < 1 || batch > 4096 || !x || !proj_embedding || !enc || !out)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG,
                            "prior: batch %d or a missing input", (int)batch);
    struct unclip_tensor tx = {0}, tp = {0}, te = {0}, to = {0};
    unclip_status st;
    if (!(st = new2(vk, batch, c->embedding_dim, &tx)) &&
        !(st = unclip__tensor_upload_f32(vk, &tx, x)) &&
        !(st = new2(vk, batch, c->proj_dim, &tp)) &&
        !(st = unclip__tensor_upload_f32(vk, &tp, proj_embedding)) &&
        !(st = new3(vk, batch, c->num_embeddings, c->embedding_dim, &te)) &&
        !(st = unclip__tensor_upload_f32(vk, &te, enc)) &&
        !(st = new2(vk, batch, c->clip_dim, &to)) &&
        !(st = unclip__prior_forward(m, &tx, t, &tp, &te, mask, &to)))
        st = unclip__tensor_download_f32(vk, &to, out);
    unclip__tensor_free(&tx);
    unclip__tensor_free(&tp);
    unclip__tensor_free(&te);
    unclip__tensor_free(&to);
    return st;
}

unclip_status
unclip__prior_post_process(struct unclip_prior *m, const struct unclip_tensor *x,
                           struct unclip_tensor *y)
{
    unclip_status st = unclip__op_binary(m->vk, UNCLIP_BIN_MUL, x, &m->std, y);
    if (st == UNCLIP_OK)
        st = unclip__op_binary(m->vk, UNCLIP_BIN_ADD, y, &m->mean, y);
    return st;
}

void
unclip__prior_post_process_host(const struct unclip_prior *m, float *x, int64_t rows)
{
    const int64_t C = m->cfg.clip_dim;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < C; i++) {
            float v = x[r * C + i] * m->std_h[i]; /* two roundings, like torch */
            x[r * C + i] = v + m->mean_h[i];
        }
}
