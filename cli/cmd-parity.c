/* unclip parity GOLDEN_ROOT OUT_DIR: runs the engine on the inputs of the module goldens and
 * writes, for each golden file it knows, a file of the same name into OUT_DIR holding the
 * engine's tensors under the golden names. A comparison program (tests/models/
 * parity-compare.c) then applies the README's tolerances.
 *
 * Everything is derived from GOLDEN_ROOT/goldens/manifest.json (module_goldens: the tensor
 * names, shapes and dtypes of each file; model_dirs: where the models are) and from the model
 * configs; nothing here knows a golden shape.
 *
 * Table-driven: one entry per golden file kind (KINDS below). An entry names the model folder
 * it needs (a manifest model_dirs key) and a function that, given a job, reads inputs with
 * job_input_*() and writes results with job_output_*(). Tensors the function copies from the
 * golden file because they ARE the inputs go through job_copy_input(). The output file
 * records both lists in its metadata ("parity.inputs", "parity.outputs", comma-separated) so
 * the comparison knows what was computed; a manifest tensor in neither list counts as
 * missing. To add a kind: write its function and add one row to KINDS.
 */
#include "cli.h"
#include "parity-e2e.h"

#include "core/alloc.h"
#include "io/preprocess.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"
#include "models/clip-text.h"
#include "models/clip-vision.h"
#include "pipeline/api.h"

#include <errno.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One tensor of a golden file as the manifest lists it. */
struct spec {
    const char *name;       /* owned by the manifest parser */
    int32_t ndim;
    int64_t shape[8];
    enum unclip_dtype dtype;
};

struct job {
    const char *root;                   /* GOLDEN_ROOT                        */
    const char *file;                   /* e.g. "text_encoder.safetensors"    */
    struct spec *specs;                 /* manifest tensors of this file      */
    int32_t n_specs;
    struct unclip_st_file *golden;      /* the golden file (inputs)           */
    struct unclip_ctx *ctx;
    struct unclip_model *model;         /* the kind's model folder, opened    */
    struct unclip_st_writer *out;
    GString *inputs, *outputs;
    char err[1024];                     /* message of the failure             */
};

/* ---- job helpers ---- */

static bool
job_fail(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool
job_fail(struct job *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, sizeof j->err, fmt, ap);
    va_end(ap);
    return false;
}

static const struct spec *
job_spec(const struct job *j, const char *name)
{
    for (int32_t i = 0; i < j->n_specs; i++)
        if (!strcmp(j->specs[i].name, name))
            return &j->specs[i];
    return NULL;
}

static void
list_add(GString *s, const char *name)
{
    if (s->len)
        g_string_append_c(s, ',');
    g_string_append(s, name);
}

/* Copies a golden tensor unchanged (it is an input of the computation). */
static bool
job_copy_input(struct job *j, const char *name)
{
    const struct unclip_st_tensor *t = unclip__st_find(j->golden, name);
    if (!t)
        return job_fail(j, "%s: no tensor '%s' in the golden file", j->file, name);
    struct unclip_err e = {0};
    if (unclip__st_writer_add(j->out, name, t->dtype, t->ndim, t->shape, t->data, &e))
        return job_fail(j, "%s", e.msg);
    list_add(j->inputs, name);
    return true;
}

/* Golden integer tensor as a new int64 array (caller frees with g_free). */
static int64_t *
job_input_i64(struct job *j, const char *name, const struct unclip_st_tensor **info)
{
    const struct unclip_st_tensor *t = unclip__st_find(j->golden, name);
    if (!t) {
        job_fail(j, "%s: no tensor '%s' in the golden file", j->file, name);
        return NULL;
    }
    int64_t *v = g_new0(int64_t, t->numel ? t->numel : 1);
    struct unclip_err e = {0};
    if (unclip__st_to_i64(t, v, &e)) {
        job_fail(j, "%s", e.msg);
        g_free(v);
        return NULL;
    }
    *info = t;
    return v;
}

/* Writes a computed tensor of our own shape under `name`. The dtype is the manifest's
 * (floats converted; integer data given as int64 or uint8 as the manifest says). */
static bool
job_output(struct job *j, const char *name, int32_t ndim, const int64_t *shape,
           const float *f32, const int64_t *i64, const uint8_t *u8)
{
    const struct spec *s = job_spec(j, name);
    if (!s)
        return true; /* the manifest does not list it: nothing to compare, not written */
    struct unclip_err e = {0};
    unclip_status st;
    if (f32)
        st = unclip__st_writer_add_f32(j->out, name, s->dtype == UNCLIP_DT_F16 ? UNCLIP_DT_F16
                                                                                : UNCLIP_DT_F32,
                                       ndim, shape, f32, &e);
    else if (i64)
        st = unclip__st_writer_add(j->out, name, UNCLIP_DT_I64, ndim, shape, i64, &e);
    else
        st = unclip__st_writer_add(j->out, name, UNCLIP_DT_U8, ndim, shape, u8, &e);
    if (st)
        return job_fail(j, "%s", e.msg);
    list_add(j->outputs, name);
    return true;
}

/* Manifest names ending in `suffix`, as prefixes (g_strfreev). */
static char **
job_prefixes(const struct job *j, const char *suffix)
{
    GPtrArray *a = g_ptr_array_new();
    size_t ls = strlen(suffix);
    for (int32_t i = 0; i < j->n_specs; i++) {
        size_t ln = strlen(j->specs[i].name);
        if (ln > ls && !strcmp(j->specs[i].name + ln - ls, suffix))
            g_ptr_array_add(a, g_strndup(j->specs[i].name, ln - ls));
    }
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
}

/* ---- kinds ---- */

/* The raw JSON string literal starting at the quote raw[*at], decoded into bytes (json-glib
 * stops its strings at an escaped NUL, and one golden prompt holds one). *at moves past the
 * closing quote. Returns NULL on a malformed literal. */
static GByteArray *
json_literal(const char *raw, size_t n, size_t *at)
{
    size_t k = *at + 1;
    GByteArray *b = g_byte_array_new();
    while (k < n && raw[k] != '"') {
        if (raw[k] != '\\') {
            g_byte_array_append(b, (const guint8 *)&raw[k++], 1);
            continue;
        }
        if (k + 1 >= n)
            break;
        char c = raw[k + 1];
        k += 2;
        guint8 o = (guint8)c;
        if (c == 'u') {
            gunichar u = 0;
            for (int d = 0; d < 4 && k < n; d++, k++)
                u = u * 16 + (gunichar)g_ascii_xdigit_value(raw[k]);
            if (u >= 0xD800 && u < 0xDC00 && k + 5 < n && raw[k] == '\\' && raw[k + 1] == 'u') {
                gunichar lo = 0;
                for (int d = 0; d < 4; d++)
                    lo = lo * 16 + (gunichar)g_ascii_xdigit_value(raw[k + 2 + d]);
                k += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            gchar buf[8];
            gint len = g_unichar_to_utf8(u, buf);
            g_byte_array_append(b, (const guint8 *)buf, (guint)len);
            continue;
        }
        o = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'b' ? '\b'
            : c == 'f' ? '\f' : o;
        g_byte_array_append(b, &o, 1);
    }
    if (k >= n) {
        g_byte_array_free(b, TRUE);
        return NULL;
    }
    *at = k + 1;
    return b;
}

/* tokenizer.safetensors: the prompts of tokenizer_prompts.json -> input_ids, attention_mask
 * (one row per prompt, in file order). */
static bool
run_tokenizer(struct job *j)
{
    const struct spec *s = job_spec(j, "input_ids");
    if (!s || s->ndim != 2)
        return job_fail(j, "%s: the manifest lists no 2-D input_ids", j->file);
    struct unclip_tokenizer *tok;
    if (unclip__model_tokenizer(j->model, &tok))
        return job_fail(j, "%s", unclip_ctx_last_error(j->ctx));
    if (s->shape[1] != UNCLIP_TOKENIZER_MAX_IDS)
        return job_fail(j, "%s: input_ids rows of %lld, the tokenizer makes %d", j->file,
                        (long long)s->shape[1], UNCLIP_TOKENIZER_MAX_IDS);

    char *path = g_build_filename(j->root, "goldens", "tokenizer_prompts.json", NULL);
    JsonParser *p = json_parser_new();
    GError *ge = NULL;
    bool ok = json_parser_load_from_file(p, path, &ge);
    JsonNode *root = ok ? json_parser_get_root(p) : NULL;
    if (!ok || !JSON_NODE_HOLDS_ARRAY(root)) {
        job_fail(j, "%s: %s", path, ge ? ge->message : "not a JSON array");
        g_clear_error(&ge);
        g_object_unref(p);
        g_free(path);
        return false;
    }
    JsonArray *arr = json_node_get_array(root);
    int64_t n = json_array_get_length(arr), L = UNCLIP_TOKENIZER_MAX_IDS;
    int64_t *ids = g_new0(int64_t, n * L + 1), *mask = g_new0(int64_t, n * L + 1);
    gchar *raw = NULL;
    gsize raw_n = 0, at = 0;
    if (!g_file_get_contents(path, &raw, &raw_n, NULL))
        ok = job_fail(j, "%s: cannot read", path);
    for (int64_t i = 0; ok && i < n; i++) {
        JsonObject *o = json_array_get_object_element(arr, (guint)i);
        const char *text = o ? json_object_get_string_member_with_default(o, "text", NULL) : NULL;
        if (!text) {
            ok = job_fail(j, "%s: entry %lld has no text", path, (long long)i);
            break;
        }
        /* The same string from the raw file, with any escaped NUL kept: the next "text" key
         * in document order; it must agree with json-glib's value up to json-glib's end. */
        GByteArray *lit = NULL;
        for (;;) { /* a "text" string followed by ':' is a key (array items never are) */
            const char *key = g_strstr_len(raw + at, (gssize)(raw_n - at), "\"text\"");
            if (!key)
                break;
            at = (gsize)(key - raw) + 6;
            while (at < raw_n && g_ascii_isspace(raw[at]))
                at++;
            if (at >= raw_n || raw[at] != ':')
                continue;
            at++;
            while (at < raw_n && g_ascii_isspace(raw[at]))
                at++;
            lit = at < raw_n && raw[at] == '"' ? json_literal(raw, raw_n, &at) : NULL;
            break;
        }
        size_t tl = strlen(text);
        if (!lit || lit->len < tl || (tl > 0 && memcmp(lit->data, text, tl) != 0) ||
            (lit->len > tl && lit->data[tl] != 0)) {
            ok = job_fail(j, "%s: cannot read the text of entry %lld exactly", path,
                          (long long)i);
            if (lit)
                g_byte_array_free(lit, TRUE);
            break;
        }
        struct unclip_tokens t;
        struct unclip_err e = {0};
        unclip_status est = unclip__tokenizer_encode(tok, (const char *)lit->data, lit->len, &t,
                                                     &e);
        g_byte_array_free(lit, TRUE);
        if (est) {
            ok = job_fail(j, "prompt %lld: %s", (long long)i, e.msg);
            break;
        }
        for (int64_t k = 0; k < L; k++) {
            ids[i * L + k] = t.ids[k];
            mask[i * L + k] = t.mask[k];
        }
    }
    int64_t shape[2] = {n, L};
    if (ok)
        ok = job_output(j, "input_ids", 2, shape, NULL, ids, NULL) &&
             job_output(j, "attention_mask", 2, shape, NULL, mask, NULL);
    g_free(ids);
    g_free(mask);
    g_free(raw);
    g_object_unref(p);
    g_free(path);
    return ok;
}

/* text_encoder.safetensors: every "<p>_input_ids" [B, L] -> "<p>_text_embeds" [B, P] and
 * "<p>_last_hidden_state" [B, L, H]; "<p>_attention_mask" is reference data (copied). */
static bool
run_text_encoder(struct job *j)
{
    struct unclip_clip_text *text;
    if (unclip__model_text(j->model, &text))
        return job_fail(j, "%s", unclip_ctx_last_error(j->ctx));
    const struct unclip_clip_text_config *c = unclip__clip_text_config(text);
    char **prefixes = job_prefixes(j, "_input_ids");
    bool ok = prefixes[0] != NULL || job_fail(j, "%s: no *_input_ids tensors", j->file);
    for (int i = 0; ok && prefixes[i]; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s_input_ids", prefixes[i]);
        const struct unclip_st_tensor *t;
        int64_t *ids = job_input_i64(j, name, &t);
        if (!ids || !job_copy_input(j, name)) {
            g_free(ids);
            ok = false;
            break;
        }
        if (t->ndim != 2) {
            g_free(ids);
            ok = job_fail(j, "%s: %s is not [batch, length]", j->file, name);
            break;
        }
        snprintf(name, sizeof name, "%s_attention_mask", prefixes[i]);
        if (job_spec(j, name) && !job_copy_input(j, name)) {
            g_free(ids);
            ok = false;
            break;
        }
        int32_t B = (int32_t)t->shape[0], L = (int32_t)t->shape[1];
        float *te = g_new0(float, (size_t)B * c->proj_dim);
        float *lh = g_new0(float, (size_t)B * L * c->hidden);
        if (unclip__clip_text_encode(text, ids, B, L, te, lh)) {
            ok = job_fail(j, "%s: %s", prefixes[i], unclip_ctx_last_error(j->ctx));
        } else {
            int64_t s_te[2] = {B, c->proj_dim}, s_lh[3] = {B, L, c->hidden};
            snprintf(name, sizeof name, "%s_text_embeds", prefixes[i]);
            ok = job_output(j, name, 2, s_te, te, NULL, NULL);
            snprintf(name, sizeof name, "%s_last_hidden_state", prefixes[i]);
            ok = ok && job_output(j, name, 3, s_lh, lh, NULL, NULL);
        }
        g_free(ids);
        g_free(te);
        g_free(lh);
    }
    g_strfreev(prefixes);
    return ok;
}

/* vision_encoder.safetensors: every "<p>_source_rgb_u8" [H, W, 3] -> preprocessing stages
 * "<p>_resized_u8_chw", "<p>_cropped_u8_chw", "<p>_pixel_values" [1, 3, S, S], then the
 * encoder's "<p>_image_embeds" and "<p>_last_hidden_state". */
static bool
run_vision_encoder(struct job *j)
{
    struct unclip_clip_vision *vis;
    const struct unclip_preprocess_config *pre;
    if (unclip__model_vision(j->model, &vis, &pre))
        return job_fail(j, "%s", unclip_ctx_last_error(j->ctx));
    const struct unclip_clip_vision_config *c = unclip__clip_vision_config(vis);
    char **prefixes = job_prefixes(j, "_source_rgb_u8");
    bool ok = prefixes[0] != NULL || job_fail(j, "%s: no *_source_rgb_u8 tensors", j->file);
    for (int i = 0; ok && prefixes[i]; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s_source_rgb_u8", prefixes[i]);
        const struct unclip_st_tensor *t = unclip__st_find(j->golden, name);
        if (!t || t->dtype != UNCLIP_DT_U8 || t->ndim != 3 || t->shape[2] < 1 ||
            t->shape[2] > 4) {
            ok = job_fail(j, "%s: %s is not an 8-bit [H, W, C] image", j->file, name);
            break;
        }
        if (!job_copy_input(j, name)) {
            ok = false;
            break;
        }
        struct unclip_image img = {
            .width = (int32_t)t->shape[1], .height = (int32_t)t->shape[0],
            .channels = (int32_t)t->shape[2],
            .stride = (int32_t)(t->shape[1] * t->shape[2]),
            .pixels = g_memdup2(t->data, t->nbytes),
        };
        struct unclip_err e = {0};
        /* Stages, as separate calls so each intermediate can be compared. */
        int32_t rw, rh;
        unclip__preprocess_resized_size(pre->shortest_edge, img.width, img.height, &rw, &rh);
        uint8_t *rgb = g_malloc((size_t)img.width * img.height * 3);
        uint8_t *res = g_malloc((size_t)rw * rh * 3);
        uint8_t *chw = g_malloc((size_t)rw * rh * 3);
        float *px = g_new0(float, (size_t)c->channels * c->image_size * c->image_size);
        float *ie = g_new0(float, (size_t)c->proj_dim);
        float *lh = g_new0(float, (size_t)c->tokens * c->hidden);
        if (unclip__image_to_rgb8(&img, rgb, &e) ||
            unclip__resize_bicubic_u8(rgb, img.width, img.height, 3, res, rw, rh, &e)) {
            ok = job_fail(j, "%s: %s", prefixes[i], e.msg);
        }
        if (ok) {
            for (int32_t ch = 0; ch < 3; ch++)
                for (int64_t k = 0; k < (int64_t)rw * rh; k++)
                    chw[ch * (int64_t)rw * rh + k] = res[k * 3 + ch];
            int64_t s_res[3] = {3, rh, rw};
            snprintf(name, sizeof name, "%s_resized_u8_chw", prefixes[i]);
            ok = job_output(j, name, 3, s_res, NULL, NULL, chw);
        }
        if (ok) {
            int32_t ch_ = pre->crop_height, cw = pre->crop_width;
            int32_t top = (rh - ch_) / 2, left = (rw - cw) / 2;
            uint8_t *crop = g_malloc((size_t)ch_ * cw * 3);
            for (int32_t ch = 0; ch < 3; ch++)
                for (int32_t y = 0; y < ch_; y++)
                    for (int32_t x = 0; x < cw; x++)
                        crop[((size_t)ch * ch_ + y) * cw + x] =
                            res[(((size_t)(top + y)) * rw + left + x) * 3 + ch];
            int64_t s_crop[3] = {3, ch_, cw};
            snprintf(name, sizeof name, "%s_cropped_u8_chw", prefixes[i]);
            ok = rh >= ch_ && rw >= cw && top >= 0 && left >= 0
                     ? job_output(j, name, 3, s_crop, NULL, NULL, crop)
                     : job_fail(j, "%s: resized %dx%d is smaller than the crop", prefixes[i],
                                (int)rw, (int)rh);
            g_free(crop);
        }
        /* The model input: the whole preprocessing in one call (what the pipeline runs). */
        if (ok && unclip__preprocess_clip(pre, &img, px, &e))
            ok = job_fail(j, "%s: %s", prefixes[i], e.msg);
        if (ok) {
            int64_t s_px[4] = {1, 3, pre->crop_height, pre->crop_width};
            snprintf(name, sizeof name, "%s_pixel_values", prefixes[i]);
            ok = job_output(j, name, 4, s_px, px, NULL, NULL);
        }
        if (ok && (pre->crop_height != c->image_size || pre->crop_width != c->image_size ||
                   c->channels != 3))
            ok = job_fail(j, "the preprocessor crops %dx%d, the image encoder wants %d",
                          (int)pre->crop_width, (int)pre->crop_height, (int)c->image_size);
        if (ok && unclip__clip_vision_encode(vis, px, 1, ie, lh))
            ok = job_fail(j, "%s: %s", prefixes[i], unclip_ctx_last_error(j->ctx));
        if (ok) {
            int64_t s_ie[2] = {1, c->proj_dim}, s_lh[3] = {1, c->tokens, c->hidden};
            snprintf(name, sizeof name, "%s_image_embeds", prefixes[i]);
            ok = job_output(j, name, 2, s_ie, ie, NULL, NULL);
            snprintf(name, sizeof name, "%s_last_hidden_state", prefixes[i]);
            ok = ok && job_output(j, name, 3, s_lh, lh, NULL, NULL);
        }
        g_free(img.pixels);
        g_free(rgb);
        g_free(res);
        g_free(chw);
        g_free(px);
        g_free(ie);
        g_free(lh);
    }
    g_strfreev(prefixes);
    return ok;
}

/* One row per golden file kind. `model` is a key of manifest.json's model_dirs. */
static const struct kind {
    const char *file;
    const char *model;
    bool (*run)(struct job *j);
} KINDS[] = {
    {"tokenizer.safetensors", "tiny_karlo", run_tokenizer},
    {"text_encoder.safetensors", "tiny_karlo", run_text_encoder},
    {"vision_encoder.safetensors", "tiny_karlo_variations", run_vision_encoder},
};

/* ---- manifest ---- */

static enum unclip_dtype
dtype_of(const char *s)
{
    static const struct {
        const char *name;
        enum unclip_dtype dt;
    } map[] = {{"float32", UNCLIP_DT_F32}, {"float16", UNCLIP_DT_F16},
               {"bfloat16", UNCLIP_DT_BF16}, {"int64", UNCLIP_DT_I64},
               {"int32", UNCLIP_DT_I32},   {"uint8", UNCLIP_DT_U8},
               {"bool", UNCLIP_DT_BOOL}};
    for (size_t i = 0; s && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(s, map[i].name))
            return map[i].dt;
    return UNCLIP_DT_N;
}

/* Fills j->specs from module_goldens[file].tensors: {name: [[shape...], "dtype"]}. */
static bool
read_specs(JsonObject *mg, struct job *j)
{
    JsonObject *entry = json_object_get_object_member(mg, j->file);
    JsonObject *tensors = entry && json_object_has_member(entry, "tensors")
                              ? json_object_get_object_member(entry, "tensors")
                              : NULL;
    if (!tensors)
        return job_fail(j, "manifest.json: module_goldens has no tensors for %s", j->file);
    GList *names = json_object_get_members(tensors);
    j->n_specs = (int32_t)g_list_length(names);
    j->specs = g_new0(struct spec, j->n_specs ? j->n_specs : 1);
    int32_t i = 0;
    bool ok = true;
    for (GList *l = names; l && ok; l = l->next, i++) {
        struct spec *s = &j->specs[i];
        s->name = l->data;
        JsonArray *a = json_object_get_array_member(tensors, s->name);
        JsonArray *shape = a && json_array_get_length(a) == 2
                               ? json_array_get_array_element(a, 0)
                               : NULL;
        const char *dt = a && json_array_get_length(a) == 2
                             ? json_array_get_string_element(a, 1)
                             : NULL;
        s->dtype = dtype_of(dt);
        if (!shape || json_array_get_length(shape) > 8 || s->dtype == UNCLIP_DT_N) {
            ok = job_fail(j, "manifest.json: %s/%s is not [[shape], dtype]", j->file, s->name);
            break;
        }
        s->ndim = (int32_t)json_array_get_length(shape);
        for (int32_t k = 0; k < s->ndim; k++)
            s->shape[k] = json_array_get_int_element(shape, (guint)k);
    }
    g_list_free(names);
    return ok;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: unclip parity [--fp16] [--only FILE] GOLDEN_ROOT OUT_DIR\n"
               "  GOLDEN_ROOT holds goldens/manifest.json and models/ (e.g. $UNCLIP_GOLDENS).\n"
               "  Writes OUT_DIR/<golden file> for every kind the engine implements:\n");
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
        fprintf(f, "    %s\n", KINDS[i].file);
    fprintf(f, "    e2e_<run>.safetensors (every run of manifest.json's e2e; '--only e2e' "
               "selects them all)\n");
    fprintf(f, "  --fp16       fp16 weights on the device (default fp32, as the goldens)\n"
               "  --only FILE  only this golden file (may be repeated)\n");
}

int
cli_cmd_parity(int argc, char **argv)
{
    const char *root = NULL, *outdir = NULL;
    bool fp16 = false;
    GPtrArray *only = g_ptr_array_new();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            g_ptr_array_free(only, TRUE);
            return 0;
        } else if (!strcmp(argv[i], "--fp16")) {
            fp16 = true;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            g_ptr_array_add(only, argv[++i]);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "unclip parity: unknown option '%s'\n", argv[i]);
            usage(stderr);
            g_ptr_array_free(only, TRUE);
            return 2;
        } else if (!root) {
            root = argv[i];
        } else if (!outdir) {
            outdir = argv[i];
        } else {
            usage(stderr);
            g_ptr_array_free(only, TRUE);
            return 2;
        }
    }
    if (!root || !outdir) {
        usage(stderr);
        g_ptr_array_free(only, TRUE);
        return 2;
    }
    if (g_mkdir_with_parents(outdir, 0755) != 0) {
        fprintf(stderr, "unclip parity: cannot create %s: %s\n", outdir, strerror(errno));
        g_ptr_array_free(only, TRUE);
        return 1;
    }

    char *mpath = g_build_filename(root, "goldens", "manifest.json", NULL);
    JsonParser *parser = json_parser_new();
    GError *ge = NULL;
    if (!json_parser_load_from_file(parser, mpath, &ge) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        fprintf(stderr, "unclip parity: %s: %s\n", mpath, ge ? ge->message : "not an object");
        g_clear_error(&ge);
        g_object_unref(parser);
        g_free(mpath);
        g_ptr_array_free(only, TRUE);
        return 1;
    }
    JsonObject *manifest = json_node_get_object(json_parser_get_root(parser));
    JsonObject *mg = json_object_has_member(manifest, "module_goldens")
                         ? json_object_get_object_member(manifest, "module_goldens")
                         : NULL;
    JsonObject *dirs = json_object_has_member(manifest, "model_dirs")
                           ? json_object_get_object_member(manifest, "model_dirs")
                           : NULL;
    int rc = 0;
    if (!mg || !dirs) {
        fprintf(stderr, "unclip parity: %s lacks module_goldens or model_dirs\n", mpath);
        rc = 1;
    }

    struct unclip_ctx *ctx = NULL;
    char cerr[1024];
    struct unclip_ctx_params cp = unclip_ctx_params_default();
    cp.fp32_weights = !fp16;
    if (rc == 0 && unclip_ctx_new(&cp, &ctx, cerr, sizeof cerr) != UNCLIP_OK) {
        fprintf(stderr, "unclip parity: %s\n", cerr);
        rc = 1;
    }
    for (size_t k = 0; rc == 0 && k < sizeof KINDS / sizeof KINDS[0]; k++) {
        const struct kind *kd = &KINDS[k];
        bool wanted = only->len == 0;
        for (guint i = 0; i < only->len; i++)
            wanted = wanted || !strcmp(g_ptr_array_index(only, i), kd->file);
        if (!wanted)
            continue;
        if (!json_object_has_member(mg, kd->file)) {
            printf("%-28s not in the manifest: skipped\n", kd->file);
            continue;
        }
        struct job j = {.root = root, .file = kd->file, .ctx = ctx};
        j.inputs = g_string_new("");
        j.outputs = g_string_new("");
        struct unclip_err e = {0};
        char *gpath = g_build_filename(root, "goldens", kd->file, NULL);
        char *opath = g_build_filename(outdir, kd->file, NULL);
        JsonObject *md = json_object_has_member(dirs, kd->model)
                             ? json_object_get_object_member(dirs, kd->model)
                             : NULL;
        const char *mrel = md ? json_object_get_string_member_with_default(md, "path", NULL)
                              : NULL;
        char *mdir = mrel ? g_build_filename(root, mrel, NULL) : NULL;
        bool ok = read_specs(mg, &j);
        if (ok && !mdir)
            ok = job_fail(&j, "manifest.json: model_dirs has no path for %s", kd->model);
        if (ok && unclip__st_open(gpath, &j.golden, &e))
            ok = job_fail(&j, "%s", e.msg);
        if (ok && unclip_model_open(ctx, mdir, &j.model))
            ok = job_fail(&j, "%s", unclip_ctx_last_error(ctx));
        if (ok && unclip__st_writer_new(&j.out, &e))
            ok = job_fail(&j, "%s", e.msg);
        gint64 t0 = g_get_monotonic_time();
        if (ok)
            ok = kd->run(&j);
        gint64 t1 = g_get_monotonic_time();
        if (ok && (unclip__st_writer_set_metadata(j.out, "parity.inputs", j.inputs->str, &e) ||
                   unclip__st_writer_set_metadata(j.out, "parity.outputs", j.outputs->str,
                                                  &e) ||
                   unclip__st_writer_set_metadata(j.out, "parity.weights",
                                                  fp16 ? "fp16" : "fp32", &e) ||
                   unclip__st_writer_write(j.out, opath, &e)))
            ok = job_fail(&j, "%s", e.msg);
        if (ok) {
            int n_in = 0, n_out = 0;
            for (const char *p = j.inputs->str; *p; p++)
                n_in += *p == ',';
            for (const char *p = j.outputs->str; *p; p++)
                n_out += *p == ',';
            printf("%-28s %d computed, %d inputs copied, %.0f ms -> %s\n", kd->file,
                   j.outputs->len ? n_out + 1 : 0, j.inputs->len ? n_in + 1 : 0,
                   (t1 - t0) / 1000.0, opath);
        } else {
            fprintf(stderr, "unclip parity: %s: %s\n", kd->file, j.err);
            rc = 1;
        }
        unclip__st_writer_free(j.out);
        unclip_model_free(j.model);
        unclip__st_close(j.golden);
        g_free(j.specs);
        g_string_free(j.inputs, TRUE);
        g_string_free(j.outputs, TRUE);
        g_free(gpath);
        g_free(opath);
        g_free(mdir);
    }
    /* The whole pipeline runs e2e_<run>.safetensors (cli/cmd-parity-e2e.c). */
    if (ctx && cli_parity_e2e(ctx, root, outdir, manifest, only) != 0)
        rc = 1;
    unclip_ctx_free(ctx);
    g_object_unref(parser);
    g_free(mpath);
    g_ptr_array_free(only, TRUE);
    return rc;
}
