/* config.json of the Karlo UNets (see unet.h). Defaults are those of diffusers v0.27's
 * UNet2DConditionModel / UNet2DModel constructors; options that change the math in ways this
 * engine does not implement are refused by name rather than ignored. Options that only
 * concern block types we refuse anyway (transformer depth, linear projections, dual
 * cross-attention, upcast_attention, attention_type) or that do nothing at inference
 * (dropout, downsample_padding of resnet-downsampling blocks) are not read. */
#include "models/unet.h"

#include <stdio.h>
#include <string.h>

#define MAXC (1 << 16)

static const char *
doc(const struct unclip_json *j)
{
    return unclip__json_name(j);
}

static unclip_status
unsupported(const struct unclip_json *j, struct unclip_err *err, const char *key,
            const char *value, const char *supported)
{
    return unclip__fail(err, UNCLIP_E_MODEL, "%s: '%s' = %s is not supported (supported: %s)",
                        doc(j), key, value, supported);
}

/* A key that must be absent or null (an option the engine does not implement). */
static unclip_status
require_null(const struct unclip_json *j, const char *key, struct unclip_err *err)
{
    if (!unclip__json_has(j, key))
        return UNCLIP_OK;
    return unclip__fail(err, UNCLIP_E_MODEL, "%s: '%s' is set; this option is not supported "
                        "(it must be null or absent)", doc(j), key);
}

/* A key that must be absent, null or false. */
static unclip_status
require_false(const struct unclip_json *j, const char *key, struct unclip_err *err)
{
    bool v;
    unclip_status st = unclip__json_bool_opt(j, key, false, &v, err);
    if (st == UNCLIP_OK && v)
        st = unclip__fail(err, UNCLIP_E_MODEL, "%s: '%s' is true; this option is not supported",
                          doc(j), key);
    return st;
}

/* An integer or a list of n integers (diffusers' per-block arguments). Absent/null gives
 * def. */
static unclip_status
per_block_int(const struct unclip_json *j, const char *key, int32_t n, int64_t def,
              int64_t lo, int64_t hi, int32_t *out, struct unclip_err *err)
{
    enum unclip_json_type t = unclip__json_type(j, key);
    if (t == UNCLIP_JSON_ARRAY) {
        int64_t v[UNCLIP_UNET_MAX_BLOCKS];
        int32_t m;
        unclip_status st = unclip__json_int_array(j, key, n, n, lo, hi, v, &m, err);
        if (st != UNCLIP_OK)
            return st;
        for (int32_t i = 0; i < n; i++)
            out[i] = (int32_t)v[i];
        return UNCLIP_OK;
    }
    int64_t v;
    unclip_status st = unclip__json_int_opt(j, key, def, lo, hi, &v, err);
    if (st != UNCLIP_OK)
        return st;
    for (int32_t i = 0; i < n; i++)
        out[i] = (int32_t)v;
    return UNCLIP_OK;
}

static unclip_status
per_block_bool(const struct unclip_json *j, const char *key, int32_t n, bool def, bool *out,
               bool *was_list, struct unclip_err *err)
{
    *was_list = false;
    if (unclip__json_type(j, key) == UNCLIP_JSON_ARRAY) {
        /* json.h has no bool array getter; walk the (top-level) array here. */
        JsonObject *root = unclip__json_root(j);
        JsonArray *a = json_object_get_array_member(root, key);
        if (!a || (int32_t)json_array_get_length(a) != n)
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' must have %d entries", doc(j),
                                key, (int)n);
        for (int32_t i = 0; i < n; i++) {
            JsonNode *e = json_array_get_element(a, (guint)i);
            if (!e || JSON_NODE_TYPE(e) != JSON_NODE_VALUE ||
                json_node_get_value_type(e) != G_TYPE_BOOLEAN)
                return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s'[%d] is not true/false",
                                    doc(j), key, (int)i);
            out[i] = json_node_get_boolean(e);
        }
        *was_list = true;
        return UNCLIP_OK;
    }
    bool v;
    unclip_status st = unclip__json_bool_opt(j, key, def, &v, err);
    if (st != UNCLIP_OK)
        return st;
    for (int32_t i = 0; i < n; i++)
        out[i] = v;
    return UNCLIP_OK;
}

/* "silu"/"swish" -> true (SiLU), null/absent -> false when nullable; anything else refused. */
static unclip_status
read_act(const struct unclip_json *j, const char *key, bool nullable, bool *silu,
         struct unclip_err *err)
{
    const char *s;
    unclip_status st = unclip__json_string_opt(j, key, nullable ? NULL : "silu", &s, err);
    if (st != UNCLIP_OK)
        return st;
    if (!s) {
        *silu = false;
        return UNCLIP_OK;
    }
    if (strcmp(s, "silu") && strcmp(s, "swish")) {
        char v[96];
        snprintf(v, sizeof v, "'%.80s'", s);
        return unsupported(j, err, key, v, nullable ? "silu, swish or null" : "silu, swish");
    }
    *silu = true;
    return UNCLIP_OK;
}

unclip_status
unclip__unet_config_read(const struct unclip_json *j, struct unclip_unet_config *out,
                         struct unclip_err *err)
{
    struct unclip_unet_config c;
    memset(&c, 0, sizeof c);
    unclip_status st;
    const char *cls;
    if ((st = unclip__json_string_opt(j, "_class_name", NULL, &cls, err)))
        return st;
    if (!cls)
        c.kind = unclip__json_has(j, "cross_attention_dim") ? UNCLIP_UNET_CONDITION
                                                            : UNCLIP_UNET_PLAIN;
    else if (!strcmp(cls, "UNet2DConditionModel"))
        c.kind = UNCLIP_UNET_CONDITION;
    else if (!strcmp(cls, "UNet2DModel"))
        c.kind = UNCLIP_UNET_PLAIN;
    else {
        char v[96];
        snprintf(v, sizeof v, "'%.80s'", cls);
        return unsupported(j, err, "_class_name", v, "UNet2DConditionModel, UNet2DModel");
    }
    bool cond = c.kind == UNCLIP_UNET_CONDITION;

    /* Sizes. */
    if ((st = unclip__json_i32_opt(j, "in_channels", cond ? 4 : 3, 1, MAXC, &c.in_channels,
                                   err)) ||
        (st = unclip__json_i32_opt(j, "out_channels", cond ? 4 : 3, 1, MAXC, &c.out_channels,
                                   err)))
        return st;
    if (unclip__json_type(j, "sample_size") == UNCLIP_JSON_INT &&
        (st = unclip__json_i32(j, "sample_size", 1, MAXC, &c.sample_size, err)))
        return st;
    {
        int64_t boc[UNCLIP_UNET_MAX_BLOCKS];
        int32_t n = 0;
        if (unclip__json_has(j, "block_out_channels")) {
            if ((st = unclip__json_int_array(j, "block_out_channels", 1, UNCLIP_UNET_MAX_BLOCKS,
                                             1, MAXC, boc, &n, err)))
                return st;
        } else {
            static const int64_t dc[4] = {320, 640, 1280, 1280}, dp[4] = {224, 448, 672, 896};
            memcpy(boc, cond ? dc : dp, sizeof dc);
            n = 4;
        }
        c.n_blocks = n;
        for (int32_t i = 0; i < n; i++)
            c.block_out[i] = (int32_t)boc[i];
    }
    int32_t nb = c.n_blocks;
    c.n_downsamplers = nb - 1;

    /* Block types. */
    const char *down[UNCLIP_UNET_MAX_BLOCKS], *up[UNCLIP_UNET_MAX_BLOCKS];
    int32_t nd = 0, nu = 0;
    if ((st = unclip__json_string_array(j, "down_block_types", 1, UNCLIP_UNET_MAX_BLOCKS, down,
                                        &nd, err)) ||
        (st = unclip__json_string_array(j, "up_block_types", 1, UNCLIP_UNET_MAX_BLOCKS, up, &nu,
                                        err)))
        return st;
    if (nd != nb || nu != nb)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: %d down_block_types and %d up_block_types for %d "
                            "block_out_channels (they must all agree)",
                            doc(j), (int)nd, (int)nu, (int)nb);
    const char *ok_down = cond ? "ResnetDownsampleBlock2D, SimpleCrossAttnDownBlock2D"
                               : "ResnetDownsampleBlock2D";
    const char *ok_up = cond ? "ResnetUpsampleBlock2D, SimpleCrossAttnUpBlock2D"
                             : "ResnetUpsampleBlock2D";
    bool any_attn = false;
    for (int32_t i = 0; i < nb; i++) {
        char key[64], v[96];
        if (!strcmp(down[i], "ResnetDownsampleBlock2D"))
            c.down_attn[i] = false;
        else if (cond && !strcmp(down[i], "SimpleCrossAttnDownBlock2D"))
            c.down_attn[i] = any_attn = true;
        else {
            snprintf(key, sizeof key, "down_block_types[%d]", (int)i);
            snprintf(v, sizeof v, "'%.80s'", down[i]);
            return unsupported(j, err, key, v, ok_down);
        }
        if (!strcmp(up[i], "ResnetUpsampleBlock2D"))
            c.up_attn[i] = false;
        else if (cond && !strcmp(up[i], "SimpleCrossAttnUpBlock2D"))
            c.up_attn[i] = any_attn = true;
        else {
            snprintf(key, sizeof key, "up_block_types[%d]", (int)i);
            snprintf(v, sizeof v, "'%.80s'", up[i]);
            return unsupported(j, err, key, v, ok_up);
        }
    }
    if (cond) {
        enum unclip_json_type t = unclip__json_type(j, "mid_block_type");
        const char *mid = "UNetMidBlock2DCrossAttn"; /* the class default */
        if (t == UNCLIP_JSON_NULL)
            mid = NULL; /* no mid block */
        else if ((st = unclip__json_string_opt(j, "mid_block_type", mid, &mid, err)))
            return st;
        if (mid && strcmp(mid, "UNetMidBlock2DSimpleCrossAttn")) {
            char v[96];
            snprintf(v, sizeof v, "'%.80s'", mid);
            return unsupported(j, err, "mid_block_type", v,
                               "UNetMidBlock2DSimpleCrossAttn or null");
        }
        c.has_mid = c.mid_attn = mid != NULL;
        if (c.mid_attn)
            any_attn = true;
    } else {
        bool add_attention;
        if ((st = unclip__json_bool_opt(j, "add_attention", true, &add_attention, err)))
            return st;
        if (add_attention)
            return unsupported(j, err, "add_attention", "true",
                               "false (a UNet2DModel mid block without attention)");
        c.has_mid = true;
    }

    /* Per-block layer counts, attention sizes. */
    if (cond) {
        if ((st = per_block_int(j, "layers_per_block", nb, 2, 1, 64, c.layers, err)))
            return st;
    } else {
        int32_t l;
        if ((st = unclip__json_i32_opt(j, "layers_per_block", 2, 1, 64, &l, err)))
            return st;
        for (int32_t i = 0; i < nb; i++)
            c.layers[i] = l;
    }
    if (any_attn) {
        if ((st = require_null(j, "num_attention_heads", err)))
            return st;
        /* diffusers cannot build SimpleCrossAttn blocks from a null attention_head_dim. */
        if (unclip__json_type(j, "attention_head_dim") == UNCLIP_JSON_NULL)
            return unsupported(j, err, "attention_head_dim", "null", "an integer or a list");
        if ((st = per_block_int(j, "attention_head_dim", nb, 8, 1, MAXC, c.head_dim, err)))
            return st;
        if ((st = per_block_int(j, "cross_attention_dim", nb, 1280, 1, MAXC, c.cross_dim, err)))
            return st;
        bool list;
        if ((st = per_block_bool(j, "only_cross_attention", nb, false, c.only_cross, &list,
                                 err)))
            return st;
        /* diffusers: a single bool also sets the mid block's default; a list leaves it
         * False. */
        bool mdef = list ? false : c.only_cross[0];
        if ((st = unclip__json_bool_opt(j, "mid_block_only_cross_attention", mdef,
                                        &c.mid_only_cross, err)))
            return st;
        if ((st = require_null(j, "cross_attention_norm", err)))
            return st;
    }

    /* Normalisation, activation. */
    double eps;
    if (unclip__json_type(j, "norm_num_groups") == UNCLIP_JSON_NULL)
        return unsupported(j, err, "norm_num_groups", "null", "an integer");
    if ((st = unclip__json_i32_opt(j, "norm_num_groups", 32, 1, MAXC, &c.groups, err)) ||
        (st = unclip__json_float_opt(j, "norm_eps", 1e-5, 0.0, 1.0, &eps, err)))
        return st;
    c.eps = (float)eps;
    c.groups_out = c.groups;
    bool act_silu;
    if ((st = read_act(j, "act_fn", false, &act_silu, err)))
        return st;

    /* Time embedding. */
    {
        static const char *const tet[] = {"positional", NULL};
        int32_t idx;
        if ((st = unclip__json_enum(j, "time_embedding_type", tet, 0, &idx, err)))
            return st;
    }
    double shift;
    if ((st = unclip__json_bool_opt(j, "flip_sin_to_cos", true, &c.flip_sin_to_cos, err)) ||
        (st = unclip__json_float_opt(j, "freq_shift", 0.0, -1e6, 1e6, &shift, err)))
        return st;
    c.freq_shift = (float)shift;
    c.time_in = c.block_out[0];
    if ((st = unclip__json_i32_opt(j, "time_embedding_dim", 4 * c.block_out[0], 1, 1 << 20,
                                   &c.time_dim, err)))
        return st;
    if (c.time_in < 2)
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: block_out_channels[0] = %d is too small "
                            "for a timestep embedding", doc(j), (int)c.time_in);
    if (cond) {
        if ((st = read_act(j, "timestep_post_act", true, &c.timestep_post_act, err)) ||
            (st = read_act(j, "time_embedding_act_fn", true, &c.time_embed_act, err)) ||
            (st = require_null(j, "time_cond_proj_dim", err)) ||
            (st = require_null(j, "addition_embed_type", err)) ||
            (st = require_false(j, "class_embeddings_concat", err)))
            return st;
    }
    {
        const char *cet;
        if ((st = unclip__json_string_opt(j, "class_embed_type", NULL, &cet, err)))
            return st;
        if (!cet) {
            if ((st = require_null(j, "num_class_embeds", err)))
                return st;
            c.class_embed = UNCLIP_UNET_CLASS_NONE;
        } else if (!strcmp(cet, "identity")) {
            c.class_embed = UNCLIP_UNET_CLASS_IDENTITY;
        } else {
            char v[96];
            snprintf(v, sizeof v, "'%.80s'", cet);
            return unsupported(j, err, "class_embed_type", v, "identity or null");
        }
    }

    /* Resnets. */
    {
        static const char *const rts[] = {"default", "scale_shift", NULL};
        int32_t idx;
        if ((st = unclip__json_enum(j, "resnet_time_scale_shift", rts, 0, &idx, err)))
            return st;
        c.scale_shift = idx == 1;
    }
    double ros = 1.0, mscale;
    if (cond) {
        if ((st = unclip__json_bool_opt(j, "resnet_skip_time_act", false, &c.skip_time_act,
                                        err)) ||
            (st = unclip__json_float_opt(j, "resnet_out_scale_factor", 1.0, 1e-6, 1e6, &ros,
                                         err)))
            return st;
    }
    c.resnet_out_scale = (float)ros;
    if ((st = unclip__json_float_opt(j, "mid_block_scale_factor", 1.0, 1e-6, 1e6, &mscale,
                                     err)))
        return st;
    c.mid_scale = (float)mscale;

    /* Context. */
    if (cond) {
        int32_t hid = 0;
        const char *hid_type;
        if ((st = unclip__json_i32_opt(j, "encoder_hid_dim", 0, 1, MAXC, &hid, err)) ||
            (st = unclip__json_string_opt(j, "encoder_hid_dim_type", NULL, &hid_type, err)))
            return st;
        if (hid_type && strcmp(hid_type, "text_proj")) {
            char v[96];
            snprintf(v, sizeof v, "'%.80s'", hid_type);
            return unsupported(j, err, "encoder_hid_dim_type", v, "text_proj or null");
        }
        if (hid_type && hid == 0)
            return unclip__fail(err, UNCLIP_E_MODEL, "%s: 'encoder_hid_dim_type' is set but "
                                "'encoder_hid_dim' is not", doc(j));
        if (hid > 0 && unclip__json_type(j, "cross_attention_dim") == UNCLIP_JSON_ARRAY)
            return unclip__fail(err, UNCLIP_E_MODEL, "%s: encoder_hid_proj needs a single "
                                "'cross_attention_dim', not a list", doc(j));
        c.encoder_hid_dim = hid;
        if (any_attn) {
            for (int32_t i = 1; i < nb; i++)
                if (c.cross_dim[i] != c.cross_dim[0])
                    return unclip__fail(err, UNCLIP_E_MODEL,
                                        "%s: per-block 'cross_attention_dim' values differ; "
                                        "one encoder_hidden_states width cannot feed them all",
                                        doc(j));
            c.context_dim = hid > 0 ? hid : c.cross_dim[0];
        } else {
            c.context_dim = hid > 0 ? hid : 0;
        }
        if ((st = unclip__json_i32_opt(j, "conv_in_kernel", 3, 1, 3, &c.conv_in_k, err)) ||
            (st = unclip__json_i32_opt(j, "conv_out_kernel", 3, 1, 3, &c.conv_out_k, err)))
            return st;
        if (c.conv_in_k == 2 || c.conv_out_k == 2)
            return unsupported(j, err, c.conv_in_k == 2 ? "conv_in_kernel" : "conv_out_kernel",
                               "2", "1 or 3");
    } else {
        c.conv_in_k = c.conv_out_k = 3;
    }
    if ((st = unclip__json_bool_opt(j, "center_input_sample", false, &c.center_input, err)))
        return st;

    /* Consistency of the sizes the blocks derive. */
    for (int32_t i = 0; i < nb; i++) {
        if (c.block_out[i] % c.groups != 0)
            return unclip__fail(err, UNCLIP_E_MODEL,
                                "%s: block_out_channels[%d] = %d is not a multiple of "
                                "norm_num_groups %d",
                                doc(j), (int)i, (int)c.block_out[i], (int)c.groups);
        bool attn_here = c.down_attn[i] || c.up_attn[i] || (i == nb - 1 && c.mid_attn);
        if (attn_here) {
            /* The head size of the blocks using head_dim[i]: the down block i and the up block
             * i (diffusers indexes attention_head_dim unreversed for up blocks). */
            if (c.head_dim[i] > 128)
                return unclip__fail(err, UNCLIP_E_MODEL,
                                    "%s: attention_head_dim %d (block %d) is above the "
                                    "supported 128",
                                    doc(j), (int)c.head_dim[i], (int)i);
        }
    }
    (void)act_silu;
    *out = c;
    return UNCLIP_OK;
}
