/* Transformer building blocks (see blocks.h). */
#include "models/blocks.h"

#include "core/alloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define NAME_MAX_LEN 512

const struct unclip_attn_names unclip__clip_attn_names = {"q_proj", "k_proj", "v_proj",
                                                          "out_proj"};

void
unclip__err_append(struct unclip_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    size_t len = strlen(err->msg);
    if (len + 4 >= sizeof err->msg)
        return;
    char *at = err->msg + len;
    size_t room = sizeof err->msg - len;
    at[0] = ' ';
    at[1] = '(';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(at + 2, room - 2, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : ((size_t)n < room - 3 ? (size_t)n : room - 4);
    at[2 + used] = ')';
    at[3 + used] = '\0';
}

void
unclip__err_take_vk(struct unclip_err *err, struct unclip_vk *vk)
{
    struct unclip_err *src = vk ? unclip__vk_err(vk) : NULL;
    if (err && src && err != src)
        *err = *src;
}

unclip_status
unclip__act_from_name(const char *name, const char *what, enum unclip_act *out,
                      struct unclip_err *err)
{
    if (name && !strcmp(name, "quick_gelu"))
        *out = UNCLIP_ACT_QUICK_GELU;
    else if (name && !strcmp(name, "gelu"))
        *out = UNCLIP_ACT_GELU;
    else if (name && (!strcmp(name, "silu") || !strcmp(name, "swish")))
        *out = UNCLIP_ACT_SILU;
    else
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: hidden_act '%s' is not supported (quick_gelu, gelu, silu)",
                            what ? what : "config", name ? name : "(null)");
    return UNCLIP_OK;
}

/* ---- Linear ---- */

static unclip_status
join_name(char *buf, size_t size, struct unclip_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static unclip_status
join_name(char *buf, size_t size, struct unclip_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "tensor name too long: %.64s...", buf);
    return UNCLIP_OK;
}

unclip_status
unclip__lin_load(struct unclip_weights *w, const char *name, int32_t in, int32_t out, bool bias,
                 struct unclip_lin *l, struct unclip_err *err)
{
    memset(l, 0, sizeof *l);
    char key[NAME_MAX_LEN];
    int64_t wshape[2] = {out, in}, bshape[1] = {out};
    unclip_status st = join_name(key, sizeof key, err, "%s.weight", name);
    if (st == UNCLIP_OK)
        st = unclip__weights_get(w, key, 2, wshape, &l->w, err);
    if (st == UNCLIP_OK && bias) {
        st = join_name(key, sizeof key, err, "%s.bias", name);
        if (st == UNCLIP_OK)
            st = unclip__weights_get_as(w, key, 1, bshape, UNCLIP_DT_F32, &l->b, err);
    }
    if (st != UNCLIP_OK) {
        unclip__lin_free(l);
        return st;
    }
    l->in = in;
    l->out = out;
    return UNCLIP_OK;
}

unclip_status
unclip__lin_load_packed(struct unclip_vk *vk, struct unclip_weights *w,
                        const char *const *names, int32_t n, int32_t in, int32_t out, bool bias,
                        struct unclip_lin *l, struct unclip_err *err)
{
    memset(l, 0, sizeof *l);
    size_t per = (size_t)out * (size_t)in;
    float *hw = unclip__calloc((size_t)n * per, sizeof(float));
    float *hb = bias ? unclip__calloc((size_t)n * (size_t)out, sizeof(float)) : NULL;
    if (!hw || (bias && !hb)) {
        unclip__free(hw);
        unclip__free(hb);
        return unclip__fail(err, UNCLIP_E_NOMEM, "packing %d projections of [%d, %d]: out of "
                            "host memory", (int)n, (int)out, (int)in);
    }
    char key[NAME_MAX_LEN];
    int64_t wshape[2] = {out, in}, bshape[1] = {out};
    unclip_status st = UNCLIP_OK;
    for (int32_t i = 0; i < n && st == UNCLIP_OK; i++) {
        st = join_name(key, sizeof key, err, "%s.weight", names[i]);
        if (st == UNCLIP_OK)
            st = unclip__weights_get_host(w, key, 2, wshape, hw + (size_t)i * per, err);
        if (st == UNCLIP_OK && bias) {
            st = join_name(key, sizeof key, err, "%s.bias", names[i]);
            if (st == UNCLIP_OK)
                st = unclip__weights_get_host(w, key, 1, bshape, hb + (size_t)i * (size_t)out,
                                              err);
        }
    }
    if (st == UNCLIP_OK) {
        /* The packed tensors are made here rather than by the uploader, in the dtype the
         * uploader would use. */
        struct unclip_vk *dev = vk;
        int64_t pshape[2] = {(int64_t)n * out, in}, pbshape[1] = {(int64_t)n * out};
        st = unclip__tensor_new(dev, unclip__weights_dtype(w), 2, pshape, &l->w);
        if (st == UNCLIP_OK)
            st = unclip__tensor_upload_f32(dev, &l->w, hw);
        if (st == UNCLIP_OK && bias) {
            st = unclip__tensor_new(dev, UNCLIP_DT_F32, 1, pbshape, &l->b);
            if (st == UNCLIP_OK)
                st = unclip__tensor_upload_f32(dev, &l->b, hb);
        }
        if (st != UNCLIP_OK)
            unclip__err_take_vk(err, dev);
    }
    unclip__free(hw);
    unclip__free(hb);
    if (st != UNCLIP_OK) {
        unclip__lin_free(l);
        return st;
    }
    l->in = in;
    l->out = n * out;
    return UNCLIP_OK;
}

void
unclip__lin_free(struct unclip_lin *l)
{
    if (!l)
        return;
    unclip__tensor_free(&l->w);
    unclip__tensor_free(&l->b);
    memset(l, 0, sizeof *l);
}

unclip_status
unclip__lin_run(struct unclip_vk *vk, const struct unclip_lin *l, const struct unclip_tensor *x,
                const struct unclip_tensor *residual, struct unclip_tensor *y)
{
    return unclip__op_linear(vk, x, &l->w, l->b.buf ? &l->b : NULL, residual, y);
}

/* ---- LayerNorm ---- */

unclip_status
unclip__ln_load(struct unclip_weights *w, const char *name, int32_t dim, float eps,
                struct unclip_ln *ln, struct unclip_err *err)
{
    memset(ln, 0, sizeof *ln);
    char key[NAME_MAX_LEN];
    int64_t shape[1] = {dim};
    unclip_status st = join_name(key, sizeof key, err, "%s.weight", name);
    if (st == UNCLIP_OK)
        st = unclip__weights_get_as(w, key, 1, shape, UNCLIP_DT_F32, &ln->g, err);
    if (st == UNCLIP_OK)
        st = join_name(key, sizeof key, err, "%s.bias", name);
    if (st == UNCLIP_OK)
        st = unclip__weights_get_as(w, key, 1, shape, UNCLIP_DT_F32, &ln->b, err);
    if (st != UNCLIP_OK) {
        unclip__ln_free(ln);
        return st;
    }
    ln->dim = dim;
    ln->eps = eps;
    return UNCLIP_OK;
}

void
unclip__ln_free(struct unclip_ln *ln)
{
    if (!ln)
        return;
    unclip__tensor_free(&ln->g);
    unclip__tensor_free(&ln->b);
    memset(ln, 0, sizeof *ln);
}

unclip_status
unclip__ln_run(struct unclip_vk *vk, const struct unclip_ln *ln, const struct unclip_tensor *x,
               struct unclip_tensor *y)
{
    return unclip__op_layer_norm(vk, x, &ln->g, &ln->b, ln->eps, y);
}

/* ---- self-attention ---- */

unclip_status
unclip__self_attn_load(struct unclip_vk *vk, struct unclip_weights *w, const char *prefix,
                       const struct unclip_attn_names *names, int32_t dim, int32_t heads,
                       bool bias, struct unclip_self_attn *a, struct unclip_err *err)
{
    memset(a, 0, sizeof *a);
    if (heads <= 0 || dim <= 0 || dim % heads != 0)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: width %d is not a multiple of the %d attention heads", prefix,
                            (int)dim, (int)heads);
    char q[NAME_MAX_LEN], k[NAME_MAX_LEN], v[NAME_MAX_LEN], o[NAME_MAX_LEN];
    unclip_status st;
    if ((st = join_name(q, sizeof q, err, "%s.%s", prefix, names->q)) ||
        (st = join_name(k, sizeof k, err, "%s.%s", prefix, names->k)) ||
        (st = join_name(v, sizeof v, err, "%s.%s", prefix, names->v)) ||
        (st = join_name(o, sizeof o, err, "%s.%s", prefix, names->out)))
        return st;
    const char *qkv[3] = {q, k, v};
    st = unclip__lin_load_packed(vk, w, qkv, 3, dim, dim, bias, &a->qkv, err);
    if (st == UNCLIP_OK)
        st = unclip__lin_load(w, o, dim, dim, bias, &a->out, err);
    if (st != UNCLIP_OK) {
        unclip__self_attn_free(a);
        return st;
    }
    a->dim = dim;
    a->heads = heads;
    a->head_dim = dim / heads;
    /* torch computes head_dim ** -0.5 in double and rounds it once. */
    a->scale = (float)(1.0 / sqrt((double)a->head_dim));
    return UNCLIP_OK;
}

void
unclip__self_attn_free(struct unclip_self_attn *a)
{
    if (!a)
        return;
    unclip__lin_free(&a->qkv);
    unclip__lin_free(&a->out);
    memset(a, 0, sizeof *a);
}

unclip_status
unclip__self_attn_run(struct unclip_vk *vk, const struct unclip_self_attn *a,
                      const struct unclip_tensor *x, int32_t batch, int32_t len, bool causal,
                      const struct unclip_tensor *key_bias, struct unclip_tensor *qkv,
                      struct unclip_tensor *o, struct unclip_tensor *h)
{
    unclip_status st = unclip__lin_run(vk, &a->qkv, x, NULL, qkv);
    if (st != UNCLIP_OK)
        return st;
    int64_t d = a->dim, row = 3 * d, bstride = (int64_t)len * row;
    struct unclip_attn_desc desc = {
        .batch = batch,
        .n_heads = a->heads,
        .head_dim = a->head_dim,
        .scale = a->scale,
        .causal = causal,
        .q = {.t = qkv, .off = 0, .row_stride = row, .batch_stride = bstride, .len = len},
        .k1 = {.t = qkv, .off = d, .row_stride = row, .batch_stride = bstride, .len = len},
        .v1 = {.t = qkv, .off = 2 * d, .row_stride = row, .batch_stride = bstride, .len = len},
        .key_bias = key_bias,
    };
    st = unclip__op_attention(vk, &desc, o);
    if (st != UNCLIP_OK)
        return st;
    return unclip__lin_run(vk, &a->out, o, h, h);
}

/* ---- MLP ---- */

unclip_status
unclip__mlp_load(struct unclip_weights *w, const char *prefix, const char *fc1, const char *fc2,
                 int32_t dim, int32_t inner, enum unclip_act act, struct unclip_mlp *m,
                 struct unclip_err *err)
{
    memset(m, 0, sizeof *m);
    char n1[NAME_MAX_LEN], n2[NAME_MAX_LEN];
    unclip_status st;
    if ((st = join_name(n1, sizeof n1, err, "%s.%s", prefix, fc1)) ||
        (st = join_name(n2, sizeof n2, err, "%s.%s", prefix, fc2)))
        return st;
    st = unclip__lin_load(w, n1, dim, inner, true, &m->fc1, err);
    if (st == UNCLIP_OK)
        st = unclip__lin_load(w, n2, inner, dim, true, &m->fc2, err);
    if (st != UNCLIP_OK) {
        unclip__mlp_free(m);
        return st;
    }
    m->act = act;
    return UNCLIP_OK;
}

void
unclip__mlp_free(struct unclip_mlp *m)
{
    if (!m)
        return;
    unclip__lin_free(&m->fc1);
    unclip__lin_free(&m->fc2);
    memset(m, 0, sizeof *m);
}

unclip_status
unclip__mlp_run(struct unclip_vk *vk, const struct unclip_mlp *m, const struct unclip_tensor *x,
                struct unclip_tensor *mid, struct unclip_tensor *h)
{
    unclip_status st = unclip__lin_run(vk, &m->fc1, x, NULL, mid);
    if (st == UNCLIP_OK && m->act != UNCLIP_ACT_NONE)
        st = unclip__op_unary(vk, mid, m->act, 1.0f, 0.0f, 0.0f, 0.0f, mid);
    if (st == UNCLIP_OK)
        st = unclip__lin_run(vk, &m->fc2, mid, h, h);
    return st;
}

/* ---- CLIP encoder ---- */

static const char *const layer_suffixes[] = {
    "layer_norm1.weight",      "layer_norm1.bias",      "self_attn.q_proj.weight",
    "self_attn.q_proj.bias",   "self_attn.k_proj.weight", "self_attn.k_proj.bias",
    "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.out_proj.weight",
    "self_attn.out_proj.bias", "layer_norm2.weight",    "layer_norm2.bias",
    "mlp.fc1.weight",          "mlp.fc1.bias",          "mlp.fc2.weight",
    "mlp.fc2.bias",            NULL,
};

bool
unclip__clip_layer_tensor(const char *name, const char *prefix, int32_t layers)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0 || strncmp(name + pl, ".layers.", 8) != 0)
        return false;
    const char *p = name + pl + 8;
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
        return false;
    long i = 0;
    while (*p >= '0' && *p <= '9') {
        i = i * 10 + (*p - '0');
        if (i > 1000000)
            return false;
        p++;
    }
    if (*p != '.' || i >= layers)
        return false;
    for (int k = 0; layer_suffixes[k]; k++)
        if (!strcmp(p + 1, layer_suffixes[k]))
            return true;
    return false;
}

unclip_status
unclip__clip_encoder_load(struct unclip_vk *vk, struct unclip_weights *w, const char *prefix,
                          const struct unclip_clip_enc_config *cfg, struct unclip_clip_encoder *e,
                          struct unclip_err *err)
{
    memset(e, 0, sizeof *e);
    if (cfg->layers < 0)
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: %d layers", prefix, (int)cfg->layers);
    e->layers = unclip__calloc(cfg->layers > 0 ? (size_t)cfg->layers : 1, sizeof *e->layers);
    if (!e->layers)
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", prefix);
    e->cfg = *cfg;
    int32_t loaded = 0;
    unclip_status st = UNCLIP_OK;
    char p[NAME_MAX_LEN], n[NAME_MAX_LEN];
    for (int32_t i = 0; i < cfg->layers && st == UNCLIP_OK; i++) {
        struct unclip_clip_layer *L = &e->layers[i];
        if ((st = join_name(p, sizeof p, err, "%s.layers.%d", prefix, (int)i)))
            break;
        if (!(st = join_name(n, sizeof n, err, "%s.layer_norm1", p)))
            st = unclip__ln_load(w, n, cfg->dim, cfg->eps, &L->ln1, err);
        if (st == UNCLIP_OK && !(st = join_name(n, sizeof n, err, "%s.self_attn", p)))
            st = unclip__self_attn_load(vk, w, n, &unclip__clip_attn_names, cfg->dim, cfg->heads,
                                        true, &L->attn, err);
        if (st == UNCLIP_OK && !(st = join_name(n, sizeof n, err, "%s.layer_norm2", p)))
            st = unclip__ln_load(w, n, cfg->dim, cfg->eps, &L->ln2, err);
        if (st == UNCLIP_OK && !(st = join_name(n, sizeof n, err, "%s.mlp", p)))
            st = unclip__mlp_load(w, n, "fc1", "fc2", cfg->dim, cfg->inner, cfg->act, &L->mlp,
                                  err);
        loaded = i + 1; /* free what this layer got even when it failed half-way */
    }
    if (st != UNCLIP_OK) {
        e->cfg.layers = loaded;
        unclip__clip_encoder_free(e);
        return st;
    }
    return UNCLIP_OK;
}

void
unclip__clip_encoder_free(struct unclip_clip_encoder *e)
{
    if (!e)
        return;
    if (e->layers) {
        for (int32_t i = 0; i < e->cfg.layers; i++) {
            unclip__ln_free(&e->layers[i].ln1);
            unclip__self_attn_free(&e->layers[i].attn);
            unclip__ln_free(&e->layers[i].ln2);
            unclip__mlp_free(&e->layers[i].mlp);
        }
        unclip__free(e->layers);
    }
    memset(e, 0, sizeof *e);
}

static uint64_t
lin_bytes(const struct unclip_lin *l)
{
    return (l->w.buf ? unclip__tensor_bytes(&l->w) : 0) + (l->b.buf ? unclip__tensor_bytes(&l->b) : 0);
}

uint64_t
unclip__clip_encoder_bytes(const struct unclip_clip_encoder *e)
{
    uint64_t n = 0;
    for (int32_t i = 0; e->layers && i < e->cfg.layers; i++) {
        const struct unclip_clip_layer *L = &e->layers[i];
        n += unclip__tensor_bytes(&L->ln1.g) + unclip__tensor_bytes(&L->ln1.b);
        n += unclip__tensor_bytes(&L->ln2.g) + unclip__tensor_bytes(&L->ln2.b);
        n += lin_bytes(&L->attn.qkv) + lin_bytes(&L->attn.out);
        n += lin_bytes(&L->mlp.fc1) + lin_bytes(&L->mlp.fc2);
    }
    return n;
}

unclip_status
unclip__enc_scratch_new(struct unclip_vk *vk, int64_t rows, int32_t dim, int32_t inner,
                        struct unclip_enc_scratch *s)
{
    memset(s, 0, sizeof *s);
    const struct unclip_tensor_spec specs[4] = {
        {&s->x, UNCLIP_DT_F32, 2, {rows, dim}},
        {&s->qkv, UNCLIP_DT_F32, 2, {rows, 3 * (int64_t)dim}},
        {&s->o, UNCLIP_DT_F32, 2, {rows, dim}},
        {&s->mid, UNCLIP_DT_F32, 2, {rows, inner}},
    };
    return unclip__tensor_arena(vk, specs, 4, &s->arena);
}

void
unclip__enc_scratch_free(struct unclip_enc_scratch *s)
{
    if (!s)
        return;
    unclip__tensor_free(&s->x);
    unclip__tensor_free(&s->qkv);
    unclip__tensor_free(&s->o);
    unclip__tensor_free(&s->mid);
    unclip__vk_buf_free(s->arena); /* after its views */
    s->arena = NULL;
}

unclip_status
unclip__clip_encoder_run(struct unclip_vk *vk, const struct unclip_clip_encoder *e,
                         struct unclip_tensor *h, int32_t batch, int32_t len, bool causal,
                         struct unclip_enc_scratch *s)
{
    unclip_status st = UNCLIP_OK;
    for (int32_t i = 0; i < e->cfg.layers && st == UNCLIP_OK; i++) {
        const struct unclip_clip_layer *L = &e->layers[i];
        st = unclip__ln_run(vk, &L->ln1, h, &s->x);
        if (st == UNCLIP_OK)
            st = unclip__self_attn_run(vk, &L->attn, &s->x, batch, len, causal, NULL, &s->qkv,
                                       &s->o, h);
        if (st == UNCLIP_OK)
            st = unclip__ln_run(vk, &L->ln2, h, &s->x);
        if (st == UNCLIP_OK)
            st = unclip__mlp_run(vk, &L->mlp, &s->x, &s->mid, h);
    }
    return st;
}
