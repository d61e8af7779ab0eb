/* `unclip parity` for the goldens' whole pipeline runs (e2e_<run>.safetensors): reads each
 * run's call from manifest.json (e2e.<run>.spec: pipeline and kwargs), runs the engine's
 * pipeline with the same arguments, and writes OUT_DIR/e2e_<run>.safetensors holding every
 * tensor the run traced under the golden names (metadata "parity.outputs" lists them,
 * "parity.inputs" is empty: nothing is copied from the golden file). The comparison with
 * the README's end-to-end rules is tests/pipeline/test-pipeline-e2e.c.
 *
 * kwargs understood: prompt, seed, num_images_per_prompt, prior/decoder/super_res
 * _num_inference_steps, prior/decoder_guidance_scale, output_type ("np"), image (a name of
 * goldens/images/<name>.png) and image_embeddings given as "slerp(imgA, imgB, w)" (the
 * vision_encoder golden's iA/iB image_embeds slerped with the raw-vector slerp the goldens
 * used). Anything else is an error naming the key. */
#include "cli.h"
#include "parity-e2e.h"
#include "png-io.h"

#include "core/alloc.h"
#include "io/safetensors.h"
#include "ops/ops.h"
#include "pipeline/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct collect {
    struct unclip_st_writer *w;
    GString *names;
};

static unclip_status
collect_put(void *user, const char *group, const char *name, enum unclip_dtype dt,
            int32_t ndim, const int64_t *shape, const void *data, struct unclip_err *err)
{
    struct collect *c = user;
    /* Single runs trace everything into the group "run". */
    if (strcmp(group, "run") != 0)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "parity: unexpected trace group '%s'",
                            group);
    if (c->names->len)
        g_string_append_c(c->names, ',');
    g_string_append(c->names, name);
    return unclip__st_writer_add(c->w, name, dt, ndim, shape, data, err);
}

/* image_embeddings = slerp(iA_image_embeds, iB_image_embeds, w) on the device. */
static bool
slerp_embedding(struct unclip_ctx *ctx, const char *root, const char *spec, float **out,
                int32_t *dim, char *err, size_t err_size)
{
    int a, b;
    double w;
    if (sscanf(spec, "slerp(img%d, img%d, %lf)", &a, &b, &w) != 3) {
        snprintf(err, err_size, "image_embeddings '%s' is not 'slerp(imgA, imgB, w)'", spec);
        return false;
    }
    char *path = g_build_filename(root, "goldens", "vision_encoder.safetensors", NULL);
    struct unclip_err e = {0};
    struct unclip_st_file *f = NULL;
    bool ok = unclip__st_open(path, &f, &e) == UNCLIP_OK;
    g_free(path);
    if (!ok) {
        snprintf(err, err_size, "%s", e.msg);
        return false;
    }
    char na[64], nb[64];
    snprintf(na, sizeof na, "i%d_image_embeds", a);
    snprintf(nb, sizeof nb, "i%d_image_embeds", b);
    const struct unclip_st_tensor *ta = unclip__st_find(f, na), *tb = unclip__st_find(f, nb);
    if (!ta || !tb || ta->numel != tb->numel || ta->numel < 1) {
        snprintf(err, err_size, "vision_encoder.safetensors lacks %s or %s", na, nb);
        unclip__st_close(f);
        return false;
    }
    int64_t E = ta->numel, shape[2] = {1, E};
    float *va = g_new0(float, E), *vb = g_new0(float, E), *vy = g_new0(float, E);
    unclip__st_to_f32(ta, va, NULL);
    unclip__st_to_f32(tb, vb, NULL);
    unclip__st_close(f);
    struct unclip_vk *vk = ctx->vk;
    struct unclip_tensor x = {0}, y = {0}, z = {0};
    ok = !unclip__tensor_new(vk, UNCLIP_DT_F32, 2, shape, &x) &&
         !unclip__tensor_new(vk, UNCLIP_DT_F32, 2, shape, &y) &&
         !unclip__tensor_new(vk, UNCLIP_DT_F32, 2, shape, &z) &&
         !unclip__tensor_upload_f32(vk, &x, va) && !unclip__tensor_upload_f32(vk, &y, vb) &&
         !unclip__op_slerp(vk, &x, &y, (float)w, &z) && !unclip__tensor_download_f32(vk, &z, vy);
    if (!ok)
        snprintf(err, err_size, "slerp: %s", unclip_ctx_last_error(ctx));
    unclip__tensor_free(&x);
    unclip__tensor_free(&y);
    unclip__tensor_free(&z);
    g_free(va);
    g_free(vb);
    if (!ok) {
        g_free(vy);
        return false;
    }
    *out = vy;
    *dim = (int32_t)E;
    return true;
}

static bool
get_int(JsonObject *kw, const char *key, int32_t *v)
{
    if (!json_object_has_member(kw, key))
        return true;
    *v = (int32_t)json_object_get_int_member(kw, key);
    return true;
}

/* Runs one e2e entry; writes outdir/<golden>. */
static bool
run_one(struct unclip_ctx *ctx, const char *root, const char *outdir, const char *name,
        JsonObject *run, JsonObject *dirs, char *err, size_t err_size)
{
    JsonObject *spec = json_object_has_member(run, "spec")
                           ? json_object_get_object_member(run, "spec") : NULL;
    JsonObject *kw = spec && json_object_has_member(spec, "kwargs")
                         ? json_object_get_object_member(spec, "kwargs") : NULL;
    const char *pipe = spec ? json_object_get_string_member_with_default(spec, "pipeline", "")
                            : "";
    const char *golden = json_object_get_string_member_with_default(run, "golden", NULL);
    if (!kw || !golden) {
        snprintf(err, err_size, "manifest.json: e2e.%s lacks spec.kwargs or golden", name);
        return false;
    }
    bool t2i = !strcmp(pipe, "UnCLIPPipeline");
    if (!t2i && strcmp(pipe, "UnCLIPImageVariationPipeline") != 0) {
        snprintf(err, err_size, "e2e.%s: unknown pipeline '%s'", name, pipe);
        return false;
    }
    struct unclip_run_params p = unclip_run_params_default();
    const char *prompt = NULL, *image = NULL, *embeds = NULL;
    GList *keys = json_object_get_members(kw);
    bool ok = true;
    for (GList *l = keys; l && ok; l = l->next) {
        const char *k = l->data;
        if (!strcmp(k, "prompt"))
            prompt = json_object_get_string_member(kw, k);
        else if (!strcmp(k, "image"))
            image = json_object_get_string_member(kw, k);
        else if (!strcmp(k, "image_embeddings"))
            embeds = json_object_get_string_member(kw, k);
        else if (!strcmp(k, "seed"))
            p.seed = (uint64_t)json_object_get_int_member(kw, k);
        else if (!strcmp(k, "num_images_per_prompt"))
            get_int(kw, k, &p.num_images);
        else if (!strcmp(k, "prior_num_inference_steps"))
            get_int(kw, k, &p.prior_steps);
        else if (!strcmp(k, "decoder_num_inference_steps"))
            get_int(kw, k, &p.decoder_steps);
        else if (!strcmp(k, "super_res_num_inference_steps"))
            get_int(kw, k, &p.sr_steps);
        else if (!strcmp(k, "prior_guidance_scale"))
            p.prior_guidance = (float)json_object_get_double_member(kw, k);
        else if (!strcmp(k, "decoder_guidance_scale"))
            p.decoder_guidance = (float)json_object_get_double_member(kw, k);
        else if (!strcmp(k, "output_type"))
            ok = !strcmp(json_object_get_string_member(kw, k), "np");
        else
            ok = false;
        if (!ok)
            snprintf(err, err_size, "e2e.%s: kwarg '%s' is not supported here", name, k);
    }
    g_list_free(keys);
    if (!ok)
        return false;

    const char *mkey = t2i ? "tiny_karlo" : "tiny_karlo_variations";
    JsonObject *md = json_object_has_member(dirs, mkey)
                         ? json_object_get_object_member(dirs, mkey) : NULL;
    const char *mrel = md ? json_object_get_string_member_with_default(md, "path", NULL) : NULL;
    if (!mrel) {
        snprintf(err, err_size, "manifest.json: model_dirs has no path for %s", mkey);
        return false;
    }
    struct unclip_source src = {0};
    struct unclip_image img = {0};
    float *emb = NULL;
    if (t2i) {
        src.kind = UNCLIP_SOURCE_PROMPT;
        src.prompt = prompt;
        ok = prompt != NULL;
        if (!ok)
            snprintf(err, err_size, "e2e.%s: no prompt", name);
    } else if (image) {
        char *file = g_strdup_printf("%s.png", image);
        char *path = g_build_filename(root, "goldens", "images", file, NULL);
        ok = cli_png_read(path, &img, err, err_size);
        g_free(file);
        g_free(path);
        src.kind = UNCLIP_SOURCE_IMAGE;
        src.image = &img;
    } else if (embeds) {
        ok = slerp_embedding(ctx, root, embeds, &emb, &src.embed_dim, err, err_size);
        src.kind = UNCLIP_SOURCE_EMBEDDING;
        src.embedding = emb;
    } else {
        ok = false;
        snprintf(err, err_size, "e2e.%s: neither image nor image_embeddings", name);
    }

    char *mdir = g_build_filename(root, mrel, NULL);
    struct unclip_model *model = NULL;
    struct collect c = {.names = g_string_new("")};
    struct unclip_err e = {0};
    if (ok && unclip_model_open(ctx, mdir, &model)) {
        snprintf(err, err_size, "%s", unclip_ctx_last_error(ctx));
        ok = false;
    }
    if (ok && unclip__st_writer_new(&c.w, &e)) {
        snprintf(err, err_size, "%s", e.msg);
        ok = false;
    }
    struct unclip__request rq = {
        .kind = t2i ? UNCLIP__REQ_TEXT_TO_IMAGE : UNCLIP__REQ_VARIATIONS,
        .sources = {&src}, .n_sources = 1,
    };
    struct unclip__trace tr = {.put = collect_put, .user = &c};
    struct unclip_result res = {0};
    gint64 t0 = g_get_monotonic_time();
    if (ok && unclip__pipeline_run(model, &rq, &p, &tr, &res)) {
        snprintf(err, err_size, "%s", unclip_ctx_last_error(ctx));
        ok = false;
    }
    gint64 t1 = g_get_monotonic_time();
    char *opath = g_build_filename(outdir, golden, NULL);
    if (ok && (unclip__st_writer_set_metadata(c.w, "parity.inputs", "", &e) ||
               unclip__st_writer_set_metadata(c.w, "parity.outputs", c.names->str, &e) ||
               unclip__st_writer_set_metadata(c.w, "parity.weights",
                                              ctx->params.fp32_weights ? "fp32" : "fp16", &e) ||
               unclip__st_writer_write(c.w, opath, &e))) {
        snprintf(err, err_size, "%s", e.msg);
        ok = false;
    }
    if (ok) {
        printf("%-28s %d images, %.0f ms -> %s\n", golden, (int)res.n_images,
               (t1 - t0) / 1000.0, opath);
        for (int32_t i = 0; i < res.stats.n_stages; i++) {
            const struct unclip_stage_stats *s = &res.stats.stages[i];
            printf("    %-16s %3d steps %9.1f ms (load %.1f ms)  weights %.2f MiB  device "
                   "peak %.2f MiB  host peak %.1f MiB\n", s->name, (int)s->steps, s->total_ms,
                   s->load_ms, s->weight_bytes / 1048576.0, s->device_peak_bytes / 1048576.0,
                   s->host_peak_bytes / 1048576.0);
        }
    }
    unclip_result_clear(&res);
    unclip__st_writer_free(c.w);
    g_string_free(c.names, TRUE);
    unclip_model_free(model);
    g_free(opath);
    g_free(mdir);
    g_free(emb);
    free(img.pixels);
    return ok;
}

int
cli_parity_e2e(struct unclip_ctx *ctx, const char *root, const char *outdir,
               JsonObject *manifest, GPtrArray *only)
{
    JsonObject *e2e = json_object_has_member(manifest, "e2e")
                          ? json_object_get_object_member(manifest, "e2e") : NULL;
    JsonObject *dirs = json_object_has_member(manifest, "model_dirs")
                           ? json_object_get_object_member(manifest, "model_dirs") : NULL;
    if (!e2e || !dirs)
        return 0; /* nothing to do: the caller already reported a manifest without them */
    int rc = 0;
    GList *names = json_object_get_members(e2e);
    for (GList *l = names; l; l = l->next) {
        const char *name = l->data;
        JsonObject *run = json_object_get_object_member(e2e, name);
        const char *golden = json_object_get_string_member_with_default(run, "golden", "");
        bool wanted = only->len == 0;
        for (guint i = 0; i < only->len; i++) {
            const char *o = g_ptr_array_index(only, i);
            wanted = wanted || !strcmp(o, golden) || !strcmp(o, name) || !strcmp(o, "e2e");
        }
        if (!wanted)
            continue;
        char err[2048] = "";
        if (!run_one(ctx, root, outdir, name, run, dirs, err, sizeof err)) {
            fprintf(stderr, "unclip parity: %s: %s\n", golden[0] ? golden : name, err);
            rc = 1;
        }
    }
    g_list_free(names);
    return rc;
}
