/* UNet2DConditionModel / UNet2DModel for the unCLIP decoder and super-resolution nets
 * (see unet.h; math in unclip.md 2.4-2.7). */
#include "models/unet.h"

#include "core/alloc.h"
#include "models/blocks.h"
#include "models/weights.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_LEN 256
/* diffusers' Attention builds its GroupNorm with its own default eps, not norm_eps. */
#define ATTN_GN_EPS 1e-5f
/* diffusers' Timesteps use max_period 10000. */
#define MAX_PERIOD 10000.0f

/* ---- model structure ---------------------------------------------------------------------- */

struct gnorm {
    struct unclip_tensor g, b; /* [C] F32 */
    int32_t groups;
    float eps;
};

struct conv {
    struct unclip_tensor w; /* [Cout, Cin, k, k], device weight dtype */
    struct unclip_tensor b; /* [Cout] F32                              */
    int32_t k;
};

/* diffusers ResnetBlock2D (unclip.md 2.4). */
struct resnet {
    int32_t cin, cout;
    int32_t resample; /* -1: avg-pool 2x (down), +1: nearest 2x (up), 0: none */
    float out_scale;  /* output_scale_factor: out = (x + h) / out_scale        */
    bool scale_shift;
    struct gnorm n1, n2;
    struct conv c1, c2;
    bool has_sc;    /* cin != cout: conv_shortcut (1x1) on the skip path */
    struct conv sc;
    struct unclip_lin temb; /* time_emb_proj: [cout or 2 cout, time_dim] */
};

/* diffusers Attention with AttnAddedKVProcessor (unclip.md 2.5). */
struct attn {
    int32_t c, heads, head_dim, inner, cross;
    bool only_cross;
    float scale;
    struct gnorm gn;
    struct unclip_lin qkv; /* to_q, to_k, to_v packed: [3 inner, c] (only to_q: [inner, c]) */
    struct unclip_lin kv;  /* add_k_proj, add_v_proj packed: [2 inner, cross]               */
    struct unclip_lin out; /* to_out.0: [c, inner]                                         */
};

struct block {
    int32_t n;            /* resnets (and attentions when att != NULL) */
    struct resnet *res;   /* n, owned                                   */
    struct attn *att;     /* n or NULL, owned                           */
    bool has_sampler;
    struct resnet sampler; /* downsamplers.0 / upsamplers.0              */
};

/* Activation workspace: see unet.h. */
struct ws_item {
    int64_t numel;
    int32_t t0, t1;  /* acquire and release times (clock ticks)          */
    uint64_t offset; /* bytes into the arena (a multiple of WS_ALIGN)     */
};

struct workspace {
    bool planned;
    int64_t key[5]; /* B, H, W, T, has mask */
    struct ws_item *items;
    int32_t n_items, cap;
    uint64_t bytes;                /* arena size planned by ws_pack          */
    struct unclip_vk_buf *arena;   /* one device buffer for every item       */
    struct unclip_vk_buf **views;  /* n_items views into it (NULL until made) */
    float *host_t;    /* [B] timesteps            */
    float *host_bias; /* [B * T] key bias         */
    /* The body of a forward (conv_in .. conv_out: everything after the time embedding and
     * the key bias) recorded once and replayed on later forwards with the same plan and
     * the same caller buffers (serials of sample, encoder_hidden_states, out): the body reads
     * nothing else that changes between denoising steps. */
    struct unclip_vk_graph *graph;
    uint64_t graph_key[3];
    bool graph_off; /* a capture failed under this plan: record normally */
};

/* A workspace tensor handle: the tensor (whose buffer is a view into the arena) and its
 * item index; id -1 means "not from the workspace" (borrowed from the caller). */
struct wt {
    struct unclip_tensor t;
    int32_t id;
};

struct unclip_unet {
    struct unclip_vk *vk; /* borrowed */
    struct unclip_unet_config cfg;
    char config_name[NAME_LEN];
    struct conv conv_in, conv_out;
    struct unclip_lin t1, t2; /* time_embedding.linear_1 / linear_2 */
    struct unclip_lin hid;    /* encoder_hid_proj (w.buf NULL when absent) */
    struct block down[UNCLIP_UNET_MAX_BLOCKS], up[UNCLIP_UNET_MAX_BLOCKS];
    struct resnet mid_res[2];
    struct attn mid_att;
    struct gnorm norm_out;
    int32_t max_skips;
    struct wt *skips; /* max_skips handles: the skip stack of a forward */
    struct workspace ws;
};

/* ---- loading ------------------------------------------------------------------------------ */

static void
gn_free(struct gnorm *g)
{
    unclip__tensor_free(&g->g);
    unclip__tensor_free(&g->b);
}

static void
conv_free(struct conv *c)
{
    unclip__tensor_free(&c->w);
    unclip__tensor_free(&c->b);
}

static void
resnet_free(struct resnet *r)
{
    gn_free(&r->n1);
    gn_free(&r->n2);
    conv_free(&r->c1);
    conv_free(&r->c2);
    conv_free(&r->sc);
    unclip__lin_free(&r->temb);
}

static void
attn_free(struct attn *a)
{
    gn_free(&a->gn);
    unclip__lin_free(&a->qkv);
    unclip__lin_free(&a->kv);
    unclip__lin_free(&a->out);
}

static void
block_free(struct block *b)
{
    for (int32_t i = 0; i < b->n; i++) {
        if (b->res)
            resnet_free(&b->res[i]);
        if (b->att)
            attn_free(&b->att[i]);
    }
    unclip__free(b->res);
    unclip__free(b->att);
    if (b->has_sampler)
        resnet_free(&b->sampler);
    memset(b, 0, sizeof *b);
}

static uint64_t
tb(const struct unclip_tensor *t)
{
    return t->buf ? unclip__tensor_bytes(t) : 0;
}

static uint64_t
lin_bytes(const struct unclip_lin *l)
{
    return tb(&l->w) + tb(&l->b);
}

static uint64_t
resnet_bytes(const struct resnet *r)
{
    return tb(&r->n1.g) + tb(&r->n1.b) + tb(&r->n2.g) + tb(&r->n2.b) + tb(&r->c1.w) +
           tb(&r->c1.b) + tb(&r->c2.w) + tb(&r->c2.b) + tb(&r->sc.w) + tb(&r->sc.b) +
           lin_bytes(&r->temb);
}

static uint64_t
attn_bytes(const struct attn *a)
{
    return tb(&a->gn.g) + tb(&a->gn.b) + lin_bytes(&a->qkv) + lin_bytes(&a->kv) +
           lin_bytes(&a->out);
}

static uint64_t
block_bytes(const struct block *b)
{
    uint64_t n = 0;
    for (int32_t i = 0; i < b->n; i++) {
        n += b->res ? resnet_bytes(&b->res[i]) : 0;
        n += b->att ? attn_bytes(&b->att[i]) : 0;
    }
    return n + (b->has_sampler ? resnet_bytes(&b->sampler) : 0);
}

static unclip_status
name_fmt(char *buf, const char *prefix, const char *suffix, struct unclip_err *err)
{
    int n = snprintf(buf, NAME_LEN, "%s%s", prefix, suffix);
    if (n < 0 || n >= NAME_LEN)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "tensor name '%s%s' too long", prefix,
                            suffix);
    return UNCLIP_OK;
}

static unclip_status
gn_load(struct unclip_weights *w, const char *prefix, int32_t c, int32_t groups, float eps,
        struct gnorm *g, struct unclip_err *err)
{
    char key[NAME_LEN];
    int64_t shape[1] = {c};
    g->groups = groups;
    g->eps = eps;
    if (!w)
        return UNCLIP_OK; /* skeleton (see unet_build) */
    unclip_status st = name_fmt(key, prefix, ".weight", err);
    if (st == UNCLIP_OK)
        st = unclip__weights_get_as(w, key, 1, shape, UNCLIP_DT_F32, &g->g, err);
    if (st == UNCLIP_OK)
        st = name_fmt(key, prefix, ".bias", err);
    if (st == UNCLIP_OK)
        st = unclip__weights_get_as(w, key, 1, shape, UNCLIP_DT_F32, &g->b, err);
    return st;
}

static unclip_status
conv_load(struct unclip_weights *w, const char *prefix, int32_t cout, int32_t cin, int32_t k,
          struct conv *c, struct unclip_err *err)
{
    char key[NAME_LEN];
    int64_t wshape[4] = {cout, cin, k, k}, bshape[1] = {cout};
    c->k = k;
    if (!w)
        return UNCLIP_OK;
    unclip_status st = name_fmt(key, prefix, ".weight", err);
    if (st == UNCLIP_OK)
        st = unclip__weights_get(w, key, 4, wshape, &c->w, err);
    if (st == UNCLIP_OK)
        st = name_fmt(key, prefix, ".bias", err);
    if (st == UNCLIP_OK)
        st = unclip__weights_get_as(w, key, 1, bshape, UNCLIP_DT_F32, &c->b, err);
    return st;
}

static unclip_status
lin_load(struct unclip_weights *w, const char *prefix, const char *sub, int32_t in,
         int32_t out, struct unclip_lin *l, struct unclip_err *err)
{
    char key[NAME_LEN];
    if (!w)
        return UNCLIP_OK;
    unclip_status st = name_fmt(key, prefix, sub, err);
    if (st == UNCLIP_OK)
        st = unclip__lin_load(w, key, in, out, true, l, err);
    return st;
}

static unclip_status
resnet_load(struct unclip_weights *w, const struct unclip_unet_config *c, const char *prefix,
            int32_t cin, int32_t cout, int32_t resample, float out_scale, struct resnet *r,
            struct unclip_err *err)
{
    char p[NAME_LEN];
    unclip_status st;
    r->cin = cin;
    r->cout = cout;
    r->resample = resample;
    r->out_scale = out_scale;
    r->scale_shift = c->scale_shift;
    r->has_sc = cin != cout;
    if (cin % c->groups != 0)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: %d input channels are not a multiple of norm_num_groups %d",
                            prefix, (int)cin, (int)c->groups);
    if ((st = name_fmt(p, prefix, ".norm1", err)) ||
        (st = gn_load(w, p, cin, c->groups, c->eps, &r->n1, err)) ||
        (st = name_fmt(p, prefix, ".conv1", err)) ||
        (st = conv_load(w, p, cout, cin, 3, &r->c1, err)) ||
        (st = lin_load(w, prefix, ".time_emb_proj", c->time_dim,
                       c->scale_shift ? 2 * cout : cout, &r->temb, err)) ||
        (st = name_fmt(p, prefix, ".norm2", err)) ||
        (st = gn_load(w, p, cout, c->groups, c->eps, &r->n2, err)) ||
        (st = name_fmt(p, prefix, ".conv2", err)) ||
        (st = conv_load(w, p, cout, cout, 3, &r->c2, err)))
        return st;
    if (cin != cout && ((st = name_fmt(p, prefix, ".conv_shortcut", err)) ||
                        (st = conv_load(w, p, cout, cin, 1, &r->sc, err))))
        return st;
    return UNCLIP_OK;
}

static unclip_status
attn_load(struct unclip_vk *vk, struct unclip_weights *w, const char *prefix, int32_t c,
          int32_t head_dim, int32_t cross, int32_t groups, bool only_cross, struct attn *a,
          struct unclip_err *err)
{
    char names[3][NAME_LEN], p[NAME_LEN];
    unclip_status st;
    a->c = c;
    a->head_dim = head_dim;
    a->heads = c / head_dim;
    a->inner = a->heads * head_dim;
    a->cross = cross;
    a->only_cross = only_cross;
    /* torch: dim_head ** -0.5 in double, used as a float. */
    a->scale = (float)(1.0 / sqrt((double)head_dim));
    if (a->heads < 1)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: attention_head_dim %d is larger than the block's %d channels",
                            prefix, (int)head_dim, (int)c);
    if ((st = name_fmt(p, prefix, ".group_norm", err)) ||
        (st = gn_load(w, p, c, groups, ATTN_GN_EPS, &a->gn, err)))
        return st;
    const char *pn[3] = {names[0], names[1], names[2]};
    if ((st = name_fmt(names[0], prefix, ".to_q", err)) ||
        (st = name_fmt(names[1], prefix, ".to_k", err)) ||
        (st = name_fmt(names[2], prefix, ".to_v", err)) ||
        (w && (st = unclip__lin_load_packed(vk, w, pn, only_cross ? 1 : 3, c, a->inner, true,
                                            &a->qkv, err))))
        return st;
    if ((st = name_fmt(names[0], prefix, ".add_k_proj", err)) ||
        (st = name_fmt(names[1], prefix, ".add_v_proj", err)) ||
        (w && (st = unclip__lin_load_packed(vk, w, pn, 2, cross, a->inner, true, &a->kv,
                                            err))) ||
        (st = lin_load(w, prefix, ".to_out.0", a->inner, c, &a->out, err)))
        return st;
    return UNCLIP_OK;
}

/* Number of skip tensors the down path pushes. */
static int32_t
count_skips(const struct unclip_unet_config *c)
{
    int32_t n = 1;
    for (int32_t i = 0; i < c->n_blocks; i++)
        n += c->layers[i] + (i < c->n_blocks - 1 ? 1 : 0);
    return n;
}

/* Reads every tensor the config implies. w NULL builds a skeleton: every size and flag the
 * forward needs, no tensors (for planning a workspace without the weights). */
static unclip_status
unet_build(struct unclip_unet *u, struct unclip_weights *w, struct unclip_err *err)
{
    const struct unclip_unet_config *c = &u->cfg;
    struct unclip_vk *vk = u->vk;
    int32_t nb = c->n_blocks;
    char p[NAME_LEN];
    unclip_status st;

    if ((st = conv_load(w, "conv_in", c->block_out[0], c->in_channels, c->conv_in_k,
                        &u->conv_in, err)) ||
        (st = lin_load(w, "time_embedding.linear_1", "", c->time_in, c->time_dim, &u->t1,
                       err)) ||
        (st = lin_load(w, "time_embedding.linear_2", "", c->time_dim, c->time_dim, &u->t2,
                       err)))
        return st;
    int32_t cross0 = c->cross_dim[0];
    if (c->encoder_hid_dim > 0 &&
        (st = lin_load(w, "encoder_hid_proj", "", c->encoder_hid_dim, cross0, &u->hid, err)))
        return st;

    /* Down path. */
    int32_t cout = c->block_out[0];
    for (int32_t i = 0; i < nb; i++) {
        struct block *b = &u->down[i];
        int32_t cin = cout;
        cout = c->block_out[i];
        b->res = unclip__calloc((size_t)c->layers[i], sizeof *b->res);
        b->att = c->down_attn[i] ? unclip__calloc((size_t)c->layers[i], sizeof *b->att) : NULL;
        if (!b->res || (c->down_attn[i] && !b->att))
            return unclip__fail(err, UNCLIP_E_NOMEM, "unet: out of host memory");
        b->n = c->layers[i];
        for (int32_t j = 0; j < b->n; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", (int)i, (int)j);
            if ((st = resnet_load(w, c, p, j == 0 ? cin : cout, cout, 0, c->resnet_out_scale,
                                  &b->res[j], err)))
                return st;
            if (b->att) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", (int)i, (int)j);
                if ((st = attn_load(vk, w, p, cout, c->head_dim[i], c->cross_dim[i], c->groups,
                                    c->only_cross[i], &b->att[j], err)))
                    return st;
            }
        }
        if (i < nb - 1) {
            b->has_sampler = true;
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0", (int)i);
            if ((st = resnet_load(w, c, p, cout, cout, -1, c->resnet_out_scale, &b->sampler,
                                  err)))
                return st;
        }
    }

    /* Mid block. */
    int32_t cm = c->block_out[nb - 1];
    if (c->has_mid) {
        for (int32_t j = 0; j < 2; j++) {
            snprintf(p, sizeof p, "mid_block.resnets.%d", (int)j);
            if ((st = resnet_load(w, c, p, cm, cm, 0, c->mid_scale, &u->mid_res[j], err)))
                return st;
        }
        if (c->mid_attn &&
            (st = attn_load(vk, w, "mid_block.attentions.0", cm, c->head_dim[nb - 1],
                            c->cross_dim[nb - 1], c->groups, c->mid_only_cross, &u->mid_att,
                            err)))
            return st;
    }

    /* Up path: block i runs at the resolution of down block nb-1-i. */
    cout = c->block_out[nb - 1];
    for (int32_t i = 0; i < nb; i++) {
        struct block *b = &u->up[i];
        int32_t ri = nb - 1 - i;
        int32_t prev = cout;
        cout = c->block_out[ri];
        int32_t cin_skip = c->block_out[ri > 0 ? ri - 1 : 0];
        int32_t n = c->layers[ri] + 1;
        b->res = unclip__calloc((size_t)n, sizeof *b->res);
        b->att = c->up_attn[i] ? unclip__calloc((size_t)n, sizeof *b->att) : NULL;
        if (!b->res || (c->up_attn[i] && !b->att))
            return unclip__fail(err, UNCLIP_E_NOMEM, "unet: out of host memory");
        b->n = n;
        for (int32_t j = 0; j < n; j++) {
            int32_t skip = j == n - 1 ? cin_skip : cout;
            int32_t rin = j == 0 ? prev : cout;
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", (int)i, (int)j);
            if ((st = resnet_load(w, c, p, rin + skip, cout, 0, c->resnet_out_scale, &b->res[j],
                                  err)))
                return st;
            if (b->att) {
                /* diffusers indexes attention_head_dim unreversed for up blocks, while the
                 * cross-attention width and only_cross_attention are reversed. */
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", (int)i, (int)j);
                if ((st = attn_load(vk, w, p, cout, c->head_dim[i], c->cross_dim[ri], c->groups,
                                    c->only_cross[ri], &b->att[j], err)))
                    return st;
            }
        }
        if (i < nb - 1) {
            b->has_sampler = true;
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0", (int)i);
            if ((st = resnet_load(w, c, p, cout, cout, +1, c->resnet_out_scale, &b->sampler,
                                  err)))
                return st;
        }
    }

    if ((st = gn_load(w, "conv_norm_out", c->block_out[0], c->groups_out, c->eps, &u->norm_out,
                      err)) ||
        (st = conv_load(w, "conv_out", c->out_channels, c->block_out[0], c->conv_out_k,
                        &u->conv_out, err)))
        return st;
    u->max_skips = count_skips(c);
    u->skips = unclip__calloc((size_t)u->max_skips, sizeof *u->skips);
    if (!u->skips)
        return unclip__fail(err, UNCLIP_E_NOMEM, "unet: out of host memory");
    return w ? unclip__weights_check_all_used(w, err) : UNCLIP_OK;
}

unclip_status
unclip__unet_load_files(struct unclip_vk *vk, const char *config_path, const char *config_name,
                        const char *weights_path, const char *weights_name,
                        const struct unclip_unet_opts *opts, struct unclip_unet **out,
                        struct unclip_err *err)
{
    if (!vk || !config_path || !weights_path || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "unet: NULL argument");
    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_load(config_path, config_name, &j, err);
    if (st != UNCLIP_OK)
        return st;
    struct unclip_unet *u = unclip__calloc(1, sizeof *u);
    if (!u) {
        unclip__json_free(j);
        return unclip__fail(err, UNCLIP_E_NOMEM, "unet: out of host memory");
    }
    u->vk = vk;
    snprintf(u->config_name, sizeof u->config_name, "%s", unclip__json_name(j));
    st = unclip__unet_config_read(j, &u->cfg, err);
    unclip__json_free(j);
    if (st != UNCLIP_OK) {
        unclip__free(u);
        return st;
    }
    struct unclip_weights *w = NULL;
    struct unclip_weights_opts wo = {.fp32 = opts && opts->fp32};
    st = unclip__weights_open(vk, weights_path, weights_name, &wo, &w, err);
    if (st == UNCLIP_OK) {
        st = unet_build(u, w, err);
        if (st == UNCLIP_E_MODEL)
            unclip__err_append(err, "sizes from %s", u->config_name);
    }
    unclip__weights_free(w);
    if (st != UNCLIP_OK) {
        unclip__unet_free(u);
        return st;
    }
    *out = u;
    return UNCLIP_OK;
}

unclip_status
unclip__unet_load(struct unclip_vk *vk, const struct unclip_model_dir *dir, const char *name,
                  const struct unclip_unet_opts *opts, struct unclip_unet **out,
                  struct unclip_err *err)
{
    char *cpath = NULL, *wpath = NULL;
    unclip_status st = unclip__model_dir_config_path(dir, name, &cpath, err);
    if (st == UNCLIP_OK)
        st = unclip__model_dir_weights_path(dir, name, &wpath, err);
    if (st == UNCLIP_OK) {
        char cname[NAME_LEN], wname[NAME_LEN];
        const char *cb = strrchr(cpath, '/'), *wb = strrchr(wpath, '/');
        snprintf(cname, sizeof cname, "%s/%s", name, cb ? cb + 1 : cpath);
        snprintf(wname, sizeof wname, "%s/%s", name, wb ? wb + 1 : wpath);
        st = unclip__unet_load_files(vk, cpath, cname, wpath, wname, opts, out, err);
    }
    unclip__free(cpath);
    unclip__free(wpath);
    return st;
}

static void ws_release(struct workspace *ws);

void
unclip__unet_free(struct unclip_unet *u)
{
    if (!u)
        return;
    ws_release(&u->ws);
    unclip__free(u->ws.items);
    unclip__free(u->skips);
    conv_free(&u->conv_in);
    conv_free(&u->conv_out);
    unclip__lin_free(&u->t1);
    unclip__lin_free(&u->t2);
    unclip__lin_free(&u->hid);
    for (int32_t i = 0; i < UNCLIP_UNET_MAX_BLOCKS; i++) {
        block_free(&u->down[i]);
        block_free(&u->up[i]);
    }
    resnet_free(&u->mid_res[0]);
    resnet_free(&u->mid_res[1]);
    attn_free(&u->mid_att);
    gn_free(&u->norm_out);
    unclip__free(u);
}

const struct unclip_unet_config *
unclip__unet_config(const struct unclip_unet *u)
{
    return &u->cfg;
}

uint64_t
unclip__unet_weight_bytes(const struct unclip_unet *u)
{
    uint64_t n = tb(&u->conv_in.w) + tb(&u->conv_in.b) + tb(&u->conv_out.w) +
                 tb(&u->conv_out.b) + lin_bytes(&u->t1) + lin_bytes(&u->t2) +
                 lin_bytes(&u->hid) + tb(&u->norm_out.g) + tb(&u->norm_out.b) +
                 resnet_bytes(&u->mid_res[0]) + resnet_bytes(&u->mid_res[1]) +
                 attn_bytes(&u->mid_att);
    for (int32_t i = 0; i < UNCLIP_UNET_MAX_BLOCKS; i++)
        n += block_bytes(&u->down[i]) + block_bytes(&u->up[i]);
    return n;
}

/* ---- workspace ---------------------------------------------------------------------------- */

/* One forward: in the planning pass (plan = true) nothing is recorded on the device; the
 * pass only records the acquire/release sequence. */
struct run {
    struct unclip_unet *u;
    struct unclip_vk *vk;
    struct unclip_err *err; /* unclip__vk_err(vk), or the caller's when planning without vk */
    bool plan;
    int32_t clock;
    int32_t next; /* run pass: next item */
    int32_t batch, ctx_len;
    const struct unclip_tensor *ctx; /* [B, T, cross] after encoder_hid_proj */
    const struct unclip_tensor *bias; /* [B, T] or NULL                       */
    const struct unclip_tensor *emb_act; /* [B, time_dim] what time_emb_proj reads */
    struct wt *skips;
    int32_t n_skips;
    bool graphs;          /* run pass: replay / capture the body (see struct workspace) */
    bool capture_failed;  /* the body's capture failed: run the pass again without */
};

#define RUN(r, call) ((r)->plan ? UNCLIP_OK : (call))

static void
ws_release(struct workspace *ws)
{
    unclip__vk_graph_free(ws->graph); /* before the buffers it binds */
    ws->graph = NULL;
    ws->graph_off = false;
    for (int32_t i = 0; ws->views && i < ws->n_items; i++)
        unclip__vk_buf_free(ws->views[i]); /* views first: they live in the arena */
    unclip__free(ws->views);
    unclip__vk_buf_free(ws->arena);
    unclip__free(ws->host_t);
    unclip__free(ws->host_bias);
    ws->views = NULL;
    ws->arena = NULL;
    ws->host_t = ws->host_bias = NULL;
    ws->n_items = 0;
    ws->bytes = 0;
    ws->planned = false;
}

void
unclip__unet_release_workspace(struct unclip_unet *u)
{
    if (u)
        ws_release(&u->ws);
}

uint64_t
unclip__unet_workspace_bytes(const struct unclip_unet *u)
{
    return u->ws.bytes;
}

static unclip_status
ws_get(struct run *r, struct wt *h, int32_t ndim, const int64_t *shape)
{
    struct workspace *ws = &r->u->ws;
    memset(h, 0, sizeof *h);
    h->id = -1;
    h->t.dtype = UNCLIP_DT_F32;
    h->t.ndim = ndim;
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) {
        h->t.shape[i] = shape[i];
        n *= shape[i];
    }
    if (r->plan) {
        if (ws->n_items == ws->cap) {
            int32_t cap = ws->cap ? 2 * ws->cap : 256;
            struct ws_item *it = unclip__realloc(ws->items, (size_t)cap * sizeof *it);
            if (!it)
                return unclip__fail(r->err, UNCLIP_E_NOMEM,
                                    "unet: out of host memory");
            ws->items = it;
            ws->cap = cap;
        }
        struct ws_item *it = &ws->items[ws->n_items];
        it->numel = n;
        it->t0 = r->clock++;
        it->t1 = INT32_MAX;
        it->offset = 0;
        h->id = ws->n_items++;
        return UNCLIP_OK;
    }
    if (r->next >= ws->n_items || ws->items[r->next].numel != n)
        return unclip__fail(r->err, UNCLIP_E_INTERNAL,
                            "unet: workspace plan mismatch at tensor %d", (int)r->next);
    h->id = r->next;
    h->t.buf = ws->views[r->next];
    r->next++;
    r->clock++;
    return UNCLIP_OK;
}

static void
ws_put(struct run *r, struct wt *h)
{
    if (h->id < 0)
        return;
    if (r->plan)
        r->u->ws.items[h->id].t1 = r->clock;
    r->clock++;
    h->id = -1;
    h->t.buf = NULL;
}

/* Items are placed at multiples of WS_ALIGN bytes (the binding offset alignment), each
 * rounded up to it, so every item is a view that starts on a bindable boundary. */
#define WS_ALIGN 256u

static uint64_t
item_bytes(const struct ws_item *it)
{
    return ((uint64_t)it->numel * 4 + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
}

/* Whether two items are alive at the same time (then their ranges must not overlap). Every
 * op of a forward is recorded between the acquisition of its output and the release of its
 * inputs, so an item released at tick c may share memory with one acquired after c. */
static bool
ws_clash(const struct ws_item *a, const struct ws_item *b)
{
    return !(a->t1 < b->t0 || b->t1 < a->t0);
}

/* One packing by offset: items in `order`, each at the lowest-offset gap among the items
 * already placed that are alive with it (best_fit: the tightest such gap instead), else
 * after the last of them. `placed` (n entries) is scratch kept sorted by offset; off[i]
 * receives item i's offset. Returns the arena size. */
static uint64_t
pack_offsets(const struct ws_item *items, int32_t n, const int32_t *order, bool best_fit,
             int32_t *placed, uint64_t *off)
{
    int32_t np = 0;
    uint64_t total = 0;
    for (int32_t oi = 0; oi < n; oi++) {
        int32_t i = order[oi];
        uint64_t size = item_bytes(&items[i]);
        uint64_t end = 0, pick = UINT64_MAX, pick_gap = UINT64_MAX;
        for (int32_t k = 0; k < np; k++) {
            int32_t j = placed[k];
            if (!ws_clash(&items[i], &items[j]))
                continue;
            if (off[j] > end && off[j] - end >= size && off[j] - end < pick_gap) {
                pick = end;
                pick_gap = off[j] - end;
                if (!best_fit)
                    break;
            }
            if (off[j] + item_bytes(&items[j]) > end)
                end = off[j] + item_bytes(&items[j]);
        }
        if (pick == UINT64_MAX)
            pick = end;
        off[i] = pick;
        int32_t at = np;
        while (at > 0 && off[placed[at - 1]] > pick) {
            placed[at] = placed[at - 1];
            at--;
        }
        placed[at] = i;
        np++;
        if (pick + size > total)
            total = pick + size;
    }
    return total;
}

/* Orders item indices by prim descending; equal values in the order `key` gives. */
static void
sort_desc(const int64_t *prim, int32_t n, const uint32_t *key, int32_t *order)
{
    for (int32_t i = 0; i < n; i++)
        order[i] = i;
    for (int32_t i = 1; i < n; i++) { /* insertion sort: n is a few hundred */
        int32_t v = order[i], k = i - 1;
        while (k >= 0 && (prim[order[k]] < prim[v] ||
                          (prim[order[k]] == prim[v] && key[order[k]] > key[v]))) {
            order[k + 1] = order[k];
            k--;
        }
        order[k + 1] = v;
    }
}

#define PACK_TRIALS 64

/* Packs the planned items into one arena by offset: two items overlap in memory only when
 * their lifetimes do not. Finding the smallest arena is a hard problem (dynamic storage
 * allocation), so several greedy packings are tried and the smallest kept: acquisition
 * order; longest-lived first and biggest area (bytes x lifetime) first; biggest first with
 * ties (many intermediates of a UNet have equal sizes) broken by acquisition order and by a
 * fixed pseudo-random sequence (reproducible plans); each with first-fit and best-fit gaps. The result is at least the live peak (the most bytes alive at
 * one tick) and usually within a few percent of it. Fills items[].offset and ws->bytes;
 * allocates nothing on the device. */
static unclip_status
ws_pack(struct workspace *ws, struct unclip_err *err)
{
    int32_t n = ws->n_items;
    size_t cnt = n ? (size_t)n : 1;
    int32_t *order = unclip__calloc(cnt, sizeof *order);
    int32_t *placed = unclip__calloc(cnt, sizeof *placed);
    uint32_t *key = unclip__calloc(cnt, sizeof *key);
    uint64_t *off = unclip__calloc(cnt, sizeof *off), *best = unclip__calloc(cnt, sizeof *best);
    int64_t *prim = unclip__calloc(cnt, sizeof *prim);
    unclip_status st = UNCLIP_OK;
    if (!order || !placed || !key || !off || !best || !prim) {
        st = unclip__fail(err, UNCLIP_E_NOMEM, "unet: out of host memory");
        goto done;
    }
    uint64_t best_total = UINT64_MAX;
    uint32_t rng = 0x9e3779b9u;
    for (int trial = 0; trial < PACK_TRIALS; trial++) {
        if (trial < 2) {
            for (int32_t i = 0; i < n; i++) /* items are stored in acquisition order */
                order[i] = i;
        } else {
            for (int32_t i = 0; i < n; i++) {
                const struct ws_item *it = &ws->items[i];
                /* the end of the forward for items never released */
                int64_t life = (int64_t)(it->t1 == INT32_MAX ? n * 2 : it->t1) - it->t0 + 1;
                prim[i] = trial < 4 ? life : trial < 6 ? life * it->numel : it->numel;
                if (trial < 8) {
                    key[i] = (uint32_t)i;
                } else {
                    rng = rng * 1664525u + 1013904223u; /* LCG: same plan on every run */
                    key[i] = rng;
                }
            }
            sort_desc(prim, n, key, order);
        }
        uint64_t total = pack_offsets(ws->items, n, order, trial % 2 == 1, placed, off);
        if (total < best_total) {
            best_total = total;
            uint64_t *t = best;
            best = off;
            off = t;
        }
    }
    for (int32_t i = 0; i < n; i++)
        ws->items[i].offset = best[i];
    ws->bytes = n ? best_total : 0;
done:
    unclip__free(order);
    unclip__free(placed);
    unclip__free(key);
    unclip__free(off);
    unclip__free(best);
    unclip__free(prim);
    return st;
}

/* Allocates the arena on the device (one buffer of ws->bytes) and one view per item. */
static unclip_status
ws_alloc(struct unclip_unet *u)
{
    struct workspace *ws = &u->ws;
    struct unclip_err *err = unclip__vk_err(u->vk);
    if (ws->n_items == 0)
        return UNCLIP_OK;
    ws->views = unclip__calloc((size_t)ws->n_items, sizeof *ws->views);
    if (!ws->views)
        return unclip__fail(err, UNCLIP_E_NOMEM, "unet: out of host memory");
    unclip_status st = unclip__vk_buf_new(u->vk, ws->bytes, &ws->arena);
    if (st != UNCLIP_OK) {
        ws->arena = NULL;
        unclip__err_append(err, "unet workspace of %.1f MiB", (double)ws->bytes / 1048576.0);
        return st;
    }
    for (int32_t i = 0; i < ws->n_items; i++) {
        const struct ws_item *it = &ws->items[i];
        st = unclip__vk_buf_view(ws->arena, it->offset, (uint64_t)it->numel * 4, &ws->views[i]);
        if (st != UNCLIP_OK)
            return st;
    }
    return UNCLIP_OK;
}

/* ---- forward pieces ----------------------------------------------------------------------- */

static unclip_status
run_conv(struct run *r, const struct conv *c, const struct unclip_tensor *x,
         const struct unclip_tensor *residual, struct unclip_tensor *y)
{
    return RUN(r, unclip__op_conv2d(r->vk, x, &c->w, &c->b, 1, (c->k - 1) / 2, residual, y));
}

static unclip_status
run_gn(struct run *r, const struct gnorm *g, const struct unclip_tensor *x,
       const struct unclip_tensor *scale_shift, bool silu, struct unclip_tensor *y)
{
    return RUN(r, unclip__op_group_norm(r->vk, x, &g->g, &g->b, g->groups, g->eps, scale_shift,
                                        silu, y));
}

/* [B, C, S] <-> [B, S, C] (src_c / src_s: the source's two inner sizes). */
static unclip_status
run_transpose(struct run *r, const struct unclip_tensor *src, int64_t batch, int64_t rows,
              int64_t cols, struct unclip_tensor *dst)
{
    /* src viewed as [B, rows, cols]; dst as [B, cols, rows]. */
    struct unclip_copy_desc d = {
        .shape = {batch, cols, rows, 1},
        .src_off = 0,
        .src_stride = {rows * cols, 1, cols, 0},
        .dst_off = 0,
        .dst_stride = {rows * cols, rows, 1, 0},
    };
    return RUN(r, unclip__op_copy(r->vk, src, dst, &d));
}

/* out = ResnetBlock2D(x) (unclip.md 2.4). consume: x dies here (the caller drops its handle);
 * its buffer may then hold intermediates or become `out`. The order of the steps keeps as
 * little alive at once as the math allows:
 *   - up (nearest 2x): GroupNorm + SiLU commute with nearest upsampling (every value is
 *     repeated 4 times, so the group statistics do not change), so the map is upsampled first
 *     and normalised in place, and the skip path upsample(x) is made only when conv2 needs it;
 *   - conv2 adds its result onto the skip path's tensor in place (residual = y) whenever that
 *     tensor is ours to overwrite;
 *   - with a 1x1 conv_shortcut and a consumed x, the shortcut runs first and x is then
 *     normalised in place. */
static unclip_status
resnet_run(struct run *r, const struct resnet *rs, struct wt *x, bool consume, struct wt *out)
{
    int64_t b = x->t.shape[0], h = x->t.shape[2], w = x->t.shape[3];
    unclip_status st;
    struct wt t, c1, e;
    bool have_out = false;

    if (rs->resample && rs->has_sc)
        return unclip__fail(r->err, UNCLIP_E_INTERNAL,
                            "unet: resampling resnet with a shortcut conv");
    /* t = the normalised, activated (and resampled) input of conv1. */
    if (rs->resample > 0) {
        h *= 2;
        w *= 2;
        int64_t shape[4] = {b, rs->cin, h, w};
        if ((st = ws_get(r, &t, 4, shape)) ||
            (st = RUN(r, unclip__op_upsample2x(r->vk, &x->t, &t.t))) ||
            (st = run_gn(r, &rs->n1, &t.t, NULL, true, &t.t)))
            return st;
    } else if (rs->resample < 0) {
        struct wt n1;
        int64_t shape[4] = {b, rs->cin, h / 2, w / 2};
        if ((st = ws_get(r, &n1, 4, x->t.shape)) ||
            (st = run_gn(r, &rs->n1, &x->t, NULL, true, &n1.t)) ||
            (st = ws_get(r, &t, 4, shape)) ||
            (st = RUN(r, unclip__op_avgpool2x(r->vk, &n1.t, &t.t))))
            return st;
        ws_put(r, &n1);
        h /= 2;
        w /= 2;
    } else if (rs->has_sc && consume) {
        int64_t oshape[4] = {b, rs->cout, h, w};
        if ((st = ws_get(r, out, 4, oshape)) || (st = run_conv(r, &rs->sc, &x->t, NULL, &out->t)) ||
            (st = run_gn(r, &rs->n1, &x->t, NULL, true, &x->t)))
            return st;
        have_out = true;
        t = *x; /* x's buffer now holds the normalised map */
        x->id = -1;
        x->t.buf = NULL;
    } else {
        if ((st = ws_get(r, &t, 4, x->t.shape)) ||
            (st = run_gn(r, &rs->n1, &x->t, NULL, true, &t.t)))
            return st;
    }

    /* c1 = norm2(conv1(t)) with the time conditioning, then SiLU. The time projection e is
     * either norm2's scale-shift or (default resnets) a per-image channel bias that conv1's
     * epilogue adds, so no separate pass over the map adds it. */
    int64_t oshape[4] = {b, rs->cout, h, w};
    int64_t eshape[2] = {b, rs->scale_shift ? 2 * rs->cout : rs->cout};
    if ((st = ws_get(r, &e, 2, eshape)) ||
        (st = RUN(r, unclip__lin_run(r->vk, &rs->temb, r->emb_act, NULL, &e.t))))
        return st;
    if ((st = ws_get(r, &c1, 4, oshape)) ||
        (st = RUN(r, unclip__op_conv2d_ex(r->vk, &t.t, &rs->c1.w, &rs->c1.b,
                                          rs->scale_shift ? NULL : &e.t, 1,
                                          (rs->c1.k - 1) / 2, NULL, &c1.t))))
        return st;
    ws_put(r, &t);
    st = run_gn(r, &rs->n2, &c1.t, rs->scale_shift ? &e.t : NULL, true, &c1.t);
    if (st != UNCLIP_OK)
        return st;
    ws_put(r, &e);

    /* out = skip path, then out += conv2(c1). */
    if (rs->resample) {
        if ((st = ws_get(r, out, 4, oshape)) ||
            (st = RUN(r, rs->resample > 0 ? unclip__op_upsample2x(r->vk, &x->t, &out->t)
                                          : unclip__op_avgpool2x(r->vk, &x->t, &out->t))))
            return st;
        if (consume)
            ws_put(r, x);
        st = run_conv(r, &rs->c2, &c1.t, &out->t, &out->t);
    } else if (rs->has_sc) {
        if (!have_out && ((st = ws_get(r, out, 4, oshape)) ||
                          (st = run_conv(r, &rs->sc, &x->t, NULL, &out->t))))
            return st;
        st = run_conv(r, &rs->c2, &c1.t, &out->t, &out->t);
    } else if (consume) {
        *out = *x;
        x->id = -1;
        x->t.buf = NULL;
        st = run_conv(r, &rs->c2, &c1.t, &out->t, &out->t);
    } else {
        if ((st = ws_get(r, out, 4, oshape)))
            return st;
        st = run_conv(r, &rs->c2, &c1.t, &x->t, &out->t);
    }
    if (st != UNCLIP_OK)
        return st;
    ws_put(r, &c1);
    if (rs->out_scale != 1.0f)
        st = RUN(r, unclip__op_unary(r->vk, &out->t, UNCLIP_ACT_NONE, 1.0f / rs->out_scale, 0.0f,
                                     0.0f, 0.0f, &out->t));
    return st;
}

/* out = x + to_out(attention(...)) (AttnAddedKVProcessor). x is not released. */
static unclip_status
attn_run(struct run *r, const struct attn *a, struct wt *x, struct wt *out)
{
    int64_t b = x->t.shape[0], c = a->c, hw = x->t.shape[2] * x->t.shape[3];
    int64_t inner = a->inner, np = a->only_cross ? 1 : 3, t = r->ctx_len;
    unclip_status st;
    struct wt n, nt, qkv, kv, o, p;
    int64_t s_bcs[3] = {b, c, hw}, s_bsc[3] = {b, hw, c};
    if ((st = ws_get(r, &n, 3, s_bcs)) ||
        (st = run_gn(r, &a->gn, &x->t, NULL, false, &n.t)) ||
        (st = ws_get(r, &nt, 3, s_bsc)) ||
        (st = run_transpose(r, &n.t, b, c, hw, &nt.t)))
        return st;
    ws_put(r, &n);
    int64_t s_qkv[3] = {b, hw, np * inner}, s_kv[3] = {b, t, 2 * inner};
    if ((st = ws_get(r, &qkv, 3, s_qkv)) ||
        (st = RUN(r, unclip__lin_run(r->vk, &a->qkv, &nt.t, NULL, &qkv.t))))
        return st;
    ws_put(r, &nt);
    if ((st = ws_get(r, &kv, 3, s_kv)) ||
        (st = RUN(r, unclip__lin_run(r->vk, &a->kv, r->ctx, NULL, &kv.t))))
        return st;
    int64_t s_o[3] = {b, hw, inner};
    if ((st = ws_get(r, &o, 3, s_o)))
        return st;
    /* The map's own keys and values, read head by head over thousands of rows: copied
     * head-major first when that pays (see unclip__attn_head_major). */
    struct unclip_seq k2 = {.t = &qkv.t, .off = inner, .row_stride = 3 * inner,
                            .batch_stride = hw * 3 * inner, .len = (int32_t)hw};
    struct unclip_seq v2 = k2;
    v2.off = 2 * inner;
    bool head_major = !a->only_cross && unclip__attn_wants_head_major(a->heads, a->head_dim, &k2);
    struct wt hm;
    int64_t s_hm[1] = {unclip__attn_head_major_numel((int32_t)b, a->heads, a->head_dim,
                                                     (int32_t)hw)};
    if (head_major && (st = ws_get(r, &hm, 1, s_hm)))
        return st;
    if (!r->plan) {
        /* Keys and values: the context's first (masked by the key bias), then the map's. */
        struct unclip_attn_desc d = {
            .batch = (int32_t)b,
            .n_heads = a->heads,
            .head_dim = a->head_dim,
            .scale = a->scale,
            .causal = false,
            .q = {.t = &qkv.t, .row_stride = np * inner, .batch_stride = hw * np * inner,
                  .len = (int32_t)hw},
            .k1 = {.t = &kv.t, .row_stride = 2 * inner, .batch_stride = t * 2 * inner,
                   .len = (int32_t)t},
            .v1 = {.t = &kv.t, .off = inner, .row_stride = 2 * inner,
                   .batch_stride = t * 2 * inner, .len = (int32_t)t},
            .key_bias = r->bias,
        };
        if (head_major && (st = unclip__attn_head_major(r->vk, (int32_t)b, a->heads,
                                                        a->head_dim, &k2, &v2, &hm.t)))
            return st;
        if (!a->only_cross) {
            d.k2 = k2;
            d.v2 = v2;
        }
        if ((st = unclip__op_attention(r->vk, &d, &o.t)))
            return st;
    }
    if (head_major)
        ws_put(r, &hm);
    ws_put(r, &qkv);
    ws_put(r, &kv);
    if ((st = ws_get(r, &p, 3, s_bsc)) ||
        (st = RUN(r, unclip__lin_run(r->vk, &a->out, &o.t, NULL, &p.t))))
        return st;
    ws_put(r, &o);
    if ((st = ws_get(r, out, 4, x->t.shape)) ||
        (st = run_transpose(r, &p.t, b, hw, c, &out->t)))
        return st;
    ws_put(r, &p);
    return RUN(r, unclip__op_binary(r->vk, UNCLIP_BIN_ADD, &out->t, &x->t, &out->t));
}

static unclip_status
push_skip(struct run *r, struct wt *h)
{
    if (r->n_skips >= r->u->max_skips)
        return unclip__fail(r->err, UNCLIP_E_INTERNAL, "unet: skip stack full");
    r->skips[r->n_skips++] = *h;
    return UNCLIP_OK;
}

/* The whole network on already checked inputs. */
static unclip_status unet_body(struct run *r, const struct unclip_unet_inputs *in,
                               struct unclip_tensor *out, struct wt *ea, struct wt *ctx,
                               struct wt *kb);

static unclip_status
unet_pass(struct run *r, const struct unclip_unet_inputs *in, struct unclip_tensor *out)
{
    struct unclip_unet *u = r->u;
    const struct unclip_unet_config *c = &u->cfg;
    struct workspace *ws = &u->ws;
    struct unclip_vk *vk = r->vk;
    int64_t b = r->batch;
    unclip_status st;
    bool class_add = c->class_embed == UNCLIP_UNET_CLASS_IDENTITY;

    /* Time embedding: emb = linear_2(SiLU(linear_1(Timesteps(t)))) (+ class labels). */
    struct wt tp, e1, emb, ea;
    int64_t s_tin[2] = {b, c->time_in}, s_tdim[2] = {b, c->time_dim};
    if ((st = ws_get(r, &tp, 2, s_tin)) ||
        (st = RUN(r, unclip__op_timestep_embedding(vk, ws->host_t, (int32_t)b, c->time_in,
                                                   c->flip_sin_to_cos, c->freq_shift,
                                                   MAX_PERIOD, &tp.t))) ||
        (st = ws_get(r, &e1, 2, s_tdim)) ||
        (st = RUN(r, unclip__lin_run(vk, &u->t1, &tp.t, NULL, &e1.t))))
        return st;
    ws_put(r, &tp);
    if ((st = RUN(r, unclip__op_unary(vk, &e1.t, UNCLIP_ACT_SILU, 1.0f, 0.0f, 0.0f, 0.0f,
                                      &e1.t))) ||
        (st = ws_get(r, &emb, 2, s_tdim)) ||
        (st = RUN(r, unclip__lin_run(vk, &u->t2, &e1.t,
                                     class_add && !c->timestep_post_act ? in->class_labels
                                                                        : NULL,
                                     &emb.t))))
        return st;
    ws_put(r, &e1);
    if (c->timestep_post_act &&
        (st = RUN(r, unclip__op_unary(vk, &emb.t, UNCLIP_ACT_SILU, 1.0f, 0.0f, 0.0f, 0.0f,
                                      &emb.t))))
        return st;
    if (class_add && c->timestep_post_act &&
        (st = RUN(r, unclip__op_binary(vk, UNCLIP_BIN_ADD, &emb.t, in->class_labels, &emb.t))))
        return st;
    if (c->time_embed_act &&
        (st = RUN(r, unclip__op_unary(vk, &emb.t, UNCLIP_ACT_SILU, 1.0f, 0.0f, 0.0f, 0.0f,
                                      &emb.t))))
        return st;
    /* Every resnet reads act(emb) (unless resnet_skip_time_act): compute it once. */
    if (c->skip_time_act) {
        ea = emb;
    } else {
        if ((st = ws_get(r, &ea, 2, s_tdim)) ||
            (st = RUN(r, unclip__op_unary(vk, &emb.t, UNCLIP_ACT_SILU, 1.0f, 0.0f, 0.0f, 0.0f,
                                          &ea.t))))
            return st;
        ws_put(r, &emb);
    }
    r->emb_act = &ea.t;

    /* Context and key bias (decoder). */
    struct wt ctx = {.id = -1}, kb = {.id = -1};
    r->ctx = in->encoder_hidden_states;
    r->bias = NULL;
    if (c->context_dim > 0) {
        if (c->encoder_hid_dim > 0) {
            int64_t s[3] = {b, r->ctx_len, c->cross_dim[0]};
            if ((st = ws_get(r, &ctx, 3, s)) ||
                (st = RUN(r, unclip__lin_run(vk, &u->hid, in->encoder_hidden_states, NULL,
                                             &ctx.t))))
                return st;
            r->ctx = &ctx.t;
        }
        if (in->attention_mask) {
            int64_t s[2] = {b, r->ctx_len};
            if ((st = ws_get(r, &kb, 2, s)) ||
                (st = RUN(r, unclip__tensor_upload_f32(vk, &kb.t, ws->host_bias))))
                return st;
            r->bias = &kb.t;
        }
    }

    if (r->plan || !r->graphs)
        return unet_body(r, in, out, &ea, &ctx, &kb);

    /* Replay the recorded body, or record it now (nothing captured runs until the replay).
     * The prologue above ran first: its uploads and dispatches are finished here. */
    uint64_t gk[3] = {
        unclip__vk_buf_serial(in->sample->buf),
        in->encoder_hidden_states ? unclip__vk_buf_serial(in->encoder_hidden_states->buf) : 0,
        unclip__vk_buf_serial(out->buf),
    };
    if (ws->graph && memcmp(gk, ws->graph_key, sizeof gk) == 0)
        return unclip__vk_replay(vk, ws->graph);
    unclip__vk_graph_free(ws->graph);
    ws->graph = NULL;
    if ((st = unclip__vk_finish(vk)) != UNCLIP_OK)
        return st;
    if (unclip__vk_capture_begin(vk) != UNCLIP_OK) {
        r->capture_failed = true;
        return UNCLIP_E_INTERNAL;
    }
    st = unet_body(r, in, out, &ea, &ctx, &kb);
    struct unclip_vk_graph *g = NULL;
    unclip_status st_end = unclip__vk_capture_end(vk, &g);
    if (st != UNCLIP_OK || st_end != UNCLIP_OK) {
        unclip__vk_graph_free(st_end == UNCLIP_OK ? g : NULL);
        r->capture_failed = true; /* the caller runs the pass again, recording normally */
        return st != UNCLIP_OK ? st : st_end;
    }
    ws->graph = g;
    memcpy(ws->graph_key, gk, sizeof gk);
    return unclip__vk_replay(vk, g);
}

/* The forward after the time embedding and context preparation: conv_in .. conv_out. */
static unclip_status
unet_body(struct run *r, const struct unclip_unet_inputs *in, struct unclip_tensor *out,
          struct wt *ea, struct wt *ctx, struct wt *kb)
{
    struct unclip_unet *u = r->u;
    const struct unclip_unet_config *c = &u->cfg;
    struct unclip_vk *vk = r->vk;
    int64_t b = r->batch, hh = in->sample->shape[2], ww = in->sample->shape[3];
    unclip_status st;

    /* conv_in. */
    struct wt h, x0 = {.id = -1};
    const struct unclip_tensor *sample = in->sample;
    if (c->center_input) {
        if ((st = ws_get(r, &x0, 4, in->sample->shape)) ||
            (st = RUN(r, unclip__op_unary(vk, in->sample, UNCLIP_ACT_NONE, 2.0f, -1.0f, 0.0f,
                                          0.0f, &x0.t))))
            return st;
        sample = &x0.t;
    }
    int64_t s0[4] = {b, c->block_out[0], hh, ww};
    if ((st = ws_get(r, &h, 4, s0)) || (st = run_conv(r, &u->conv_in, sample, NULL, &h.t)))
        return st;
    ws_put(r, &x0);
    r->n_skips = 0;
    if ((st = push_skip(r, &h)))
        return st;

    /* Down path: every layer output (after its attention) and every downsampler output is a
     * skip; the current h is always the newest skip, so it is never released here. */
    for (int32_t i = 0; i < c->n_blocks; i++) {
        const struct block *bl = &u->down[i];
        for (int32_t j = 0; j < bl->n; j++) {
            struct wt h2;
            if ((st = resnet_run(r, &bl->res[j], &h, false, &h2)))
                return st;
            if (bl->att) {
                struct wt h3;
                if ((st = attn_run(r, &bl->att[j], &h2, &h3)))
                    return st;
                ws_put(r, &h2);
                h2 = h3;
            }
            h = h2;
            if ((st = push_skip(r, &h)))
                return st;
        }
        if (bl->has_sampler) {
            struct wt h2;
            if ((st = resnet_run(r, &bl->sampler, &h, false, &h2)))
                return st;
            h = h2;
            if ((st = push_skip(r, &h)))
                return st;
        }
    }

    /* Mid block: resnet, (attention), resnet. h leaves it owned by this function. */
    if (c->has_mid) {
        struct wt h2, h3;
        if ((st = resnet_run(r, &u->mid_res[0], &h, false, &h2)))
            return st;
        if (c->mid_attn) {
            if ((st = attn_run(r, &u->mid_att, &h2, &h3)))
                return st;
            ws_put(r, &h2);
            h2 = h3;
        }
        if ((st = resnet_run(r, &u->mid_res[1], &h2, true, &h3)))
            return st;
        h = h3;
    } else {
        struct wt h2;
        struct unclip_copy_desc d = {.shape = {1, 1, 1, unclip__tensor_numel(&h.t)},
                                     .src_stride = {0, 0, 0, 1},
                                     .dst_stride = {0, 0, 0, 1}};
        if ((st = ws_get(r, &h2, 4, h.t.shape)) ||
            (st = RUN(r, unclip__op_copy(vk, &h.t, &h2.t, &d))))
            return st;
        h = h2;
    }

    /* Up path: each layer concatenates [h, newest skip] along the channels. */
    for (int32_t i = 0; i < c->n_blocks; i++) {
        const struct block *bl = &u->up[i];
        for (int32_t j = 0; j < bl->n; j++) {
            if (r->n_skips <= 0)
                return unclip__fail(r->err, UNCLIP_E_INTERNAL, "unet: skip stack empty");
            struct wt skip = r->skips[--r->n_skips], cat, h2;
            int64_t s[4] = {b, h.t.shape[1] + skip.t.shape[1], h.t.shape[2], h.t.shape[3]};
            if ((st = ws_get(r, &cat, 4, s)) ||
                (st = RUN(r, unclip__op_concat(vk, &h.t, &skip.t, 1, &cat.t))))
                return st;
            ws_put(r, &h);
            ws_put(r, &skip);
            if ((st = resnet_run(r, &bl->res[j], &cat, true, &h2)))
                return st;
            if (bl->att) {
                struct wt h3;
                if ((st = attn_run(r, &bl->att[j], &h2, &h3)))
                    return st;
                ws_put(r, &h2);
                h2 = h3;
            }
            h = h2;
        }
        if (bl->has_sampler) {
            struct wt h2;
            if ((st = resnet_run(r, &bl->sampler, &h, true, &h2)))
                return st;
            h = h2;
        }
    }
    if (r->n_skips != 0)
        return unclip__fail(r->err, UNCLIP_E_INTERNAL, "unet: %d skips left over",
                            (int)r->n_skips);

    /* out = conv_out(SiLU(GroupNorm(h))). */
    struct wt n;
    if ((st = ws_get(r, &n, 4, h.t.shape)) ||
        (st = run_gn(r, &u->norm_out, &h.t, NULL, true, &n.t)))
        return st;
    ws_put(r, &h);
    if ((st = run_conv(r, &u->conv_out, &n.t, NULL, out)))
        return st;
    ws_put(r, &n);
    ws_put(r, ea);
    ws_put(r, ctx);
    ws_put(r, kb);
    return UNCLIP_OK;
}

static unclip_status
arg_fail(struct unclip_vk *vk, const char *what, const struct unclip_tensor *t,
         const char *want)
{
    char s[64];
    return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG, "unet forward: %s is %s, expected %s",
                        what, t && t->buf ? unclip__shape_str(t, s, sizeof s) : "missing", want);
}

unclip_status
unclip__unet_forward(struct unclip_unet *u, const struct unclip_unet_inputs *in,
                     struct unclip_tensor *out)
{
    struct unclip_vk *vk = u->vk;
    const struct unclip_unet_config *c = &u->cfg;
    char want[96];
    if (!in || !out)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG, "unet forward: NULL argument");
    const struct unclip_tensor *x = in->sample;
    if (!x || !x->buf || x->dtype != UNCLIP_DT_F32 || x->ndim != 4 ||
        x->shape[1] != c->in_channels) {
        snprintf(want, sizeof want, "[B, %d, H, W] F32", (int)c->in_channels);
        return arg_fail(vk, "sample", x, want);
    }
    int64_t b = x->shape[0], h = x->shape[2], w = x->shape[3];
    int64_t m = (int64_t)1 << c->n_downsamplers;
    if (h % m != 0 || w % m != 0)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG,
                            "unet forward: sample size %lldx%lld is not a multiple of %lld "
                            "(the network halves it %d times)",
                            (long long)h, (long long)w, (long long)m, (int)c->n_downsamplers);
    if (!out->buf || out->dtype != UNCLIP_DT_F32 || out->ndim != 4 || out->shape[0] != b ||
        out->shape[1] != c->out_channels || out->shape[2] != h || out->shape[3] != w) {
        snprintf(want, sizeof want, "[%lld, %d, %lld, %lld] F32", (long long)b,
                 (int)c->out_channels, (long long)h, (long long)w);
        return arg_fail(vk, "out", out, want);
    }
    if (!(in->timestep >= 0.0f && in->timestep < 8192.0f))
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG,
                            "unet forward: timestep %g outside [0, 8192)", (double)in->timestep);
    int64_t t = 0;
    if (c->context_dim > 0) {
        const struct unclip_tensor *e = in->encoder_hidden_states;
        if (!e || !e->buf || e->dtype != UNCLIP_DT_F32 || e->ndim != 3 || e->shape[0] != b ||
            e->shape[2] != c->context_dim) {
            snprintf(want, sizeof want, "[%lld, T, %d] F32", (long long)b, (int)c->context_dim);
            return arg_fail(vk, "encoder_hidden_states", e, want);
        }
        t = e->shape[1];
    }
    if (c->class_embed == UNCLIP_UNET_CLASS_IDENTITY) {
        const struct unclip_tensor *cl = in->class_labels;
        if (!cl || !cl->buf || cl->dtype != UNCLIP_DT_F32 ||
            unclip__tensor_numel(cl) != b * c->time_dim || cl->shape[0] != b) {
            snprintf(want, sizeof want, "[%lld, %d] F32 (class_embed_type identity)",
                     (long long)b, (int)c->time_dim);
            return arg_fail(vk, "class_labels", cl, want);
        }
    }
    if (b > INT32_MAX || t > INT32_MAX)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_ARG, "unet forward: batch too large");

    struct workspace *ws = &u->ws;
    bool has_mask = c->context_dim > 0 && in->attention_mask != NULL;
    int64_t key[5] = {b, h, w, t, has_mask};
    unclip_status st;
    struct run r = {.u = u, .vk = vk, .err = unclip__vk_err(vk), .batch = (int32_t)b,
                    .ctx_len = (int32_t)t};
    r.skips = u->skips;
    if (!ws->planned || memcmp(key, ws->key, sizeof key) != 0) {
        ws_release(ws);
        ws->host_t = unclip__calloc((size_t)b, sizeof(float));
        ws->host_bias = unclip__calloc(t > 0 ? (size_t)(b * t) : 1, sizeof(float));
        if (!ws->host_t || !ws->host_bias) {
            ws_release(ws);
            return unclip__fail(unclip__vk_err(vk), UNCLIP_E_NOMEM, "unet: out of host memory");
        }
        r.plan = true;
        st = unet_pass(&r, in, out);
        if (st == UNCLIP_OK)
            st = ws_pack(ws, unclip__vk_err(vk));
        if (st == UNCLIP_OK)
            st = ws_alloc(u);
        if (st != UNCLIP_OK) {
            ws_release(ws);
            return st;
        }
        memcpy(ws->key, key, sizeof key);
        ws->planned = true;
        r.plan = false;
        r.clock = 0;
    }
    for (int64_t i = 0; i < b; i++)
        ws->host_t[i] = in->timestep;
    if (has_mask)
        for (int64_t i = 0; i < b * t; i++)
            ws->host_bias[i] = (1.0f - in->attention_mask[i]) * -10000.0f;
    /* Record the body once per plan and caller buffers, replay it afterwards (no descriptor
     * writes or command recording per denoising step). UNCLIP_NO_REPLAY=1 records every
     * forward (for comparisons). */
    const char *nr = getenv("UNCLIP_NO_REPLAY");
    struct run r0 = r;
    r.graphs = !ws->graph_off && !(nr && nr[0] && strcmp(nr, "0") != 0);
    st = unet_pass(&r, in, out);
    if (st != UNCLIP_OK && r.capture_failed) {
        ws->graph_off = true;
        r = r0;
        st = unet_pass(&r, in, out);
    }
    return st;
}

unclip_status
unclip__unet_plan(const struct unclip_unet_config *c, int32_t batch, int32_t height,
                  int32_t width, int32_t context_len, bool mask, struct unclip_unet_plan *out,
                  struct unclip_err *err)
{
    int64_t m = (int64_t)1 << c->n_downsamplers;
    if (batch < 1 || height < 1 || width < 1 || height % m || width % m ||
        (c->context_dim > 0 && context_len < 1))
        return unclip__fail(err, UNCLIP_E_ARG,
                            "unet plan: batch %d, %dx%d (multiples of %lld), context %d",
                            (int)batch, (int)height, (int)width, (long long)m, (int)context_len);
    struct unclip_unet *u = unclip__calloc(1, sizeof *u);
    if (!u)
        return unclip__fail(err, UNCLIP_E_NOMEM, "unet: out of host memory");
    u->cfg = *c;
    unclip_status st = unet_build(u, NULL, err);
    struct run r = {.u = u, .err = err, .plan = true, .batch = batch,
                    .ctx_len = c->context_dim > 0 ? context_len : 0};
    r.skips = u->skips;
    float one = 1.0f;
    /* Shapes only: the planning pass reads nothing but the sample's shape. */
    struct unclip_tensor sample = {.dtype = UNCLIP_DT_F32, .ndim = 4,
                                   .shape = {batch, c->in_channels, height, width}};
    struct unclip_tensor y = {.dtype = UNCLIP_DT_F32, .ndim = 4,
                              .shape = {batch, c->out_channels, height, width}};
    struct unclip_unet_inputs in = {.sample = &sample, .attention_mask = mask ? &one : NULL};
    if (st == UNCLIP_OK)
        st = unet_pass(&r, &in, &y);
    if (st == UNCLIP_OK)
        st = ws_pack(&u->ws, err);
    int64_t *delta = NULL;
    if (st == UNCLIP_OK) {
        struct workspace *ws = &u->ws;
        struct unclip_unet_plan p = {.n_tensors = ws->n_items, .n_buffers = ws->n_items > 0,
                                     .workspace_bytes = ws->bytes};
        delta = unclip__calloc((size_t)r.clock + 1, sizeof *delta);
        if (!delta)
            st = unclip__fail(err, UNCLIP_E_NOMEM, "unet: out of host memory");
        for (int32_t i = 0; delta && i < ws->n_items; i++) {
            const struct ws_item *it = &ws->items[i];
            delta[it->t0] += it->numel;
            if (it->t1 <= r.clock)
                delta[it->t1] -= it->numel;
            if ((uint64_t)it->numel * 4 > p.largest_bytes)
                p.largest_bytes = (uint64_t)it->numel * 4;
        }
        int64_t live = 0;
        for (int32_t t = 0; delta && t <= r.clock; t++) {
            live += delta[t];
            if ((uint64_t)live * 4 > p.live_peak_bytes)
                p.live_peak_bytes = (uint64_t)live * 4;
        }
        if (st == UNCLIP_OK)
            *out = p;
    }
    unclip__free(delta);
    unclip__unet_free(u);
    return st;
}
