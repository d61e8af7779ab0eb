/* UnCLIPTextProjModel against goldens/text_proj.safetensors (README sections 3 and 8), with
 * guidance (learned null image embedding in front: batch 1 -> 2) and without, fp32 device
 * weights (relative L2 <= 1e-4) and fp16 (<= 5e-3). Also checks the interleaved layout of the
 * extra context tokens on its own, the batch arguments, and that the loader names the file,
 * the tensor and the config values of broken models. */
#include "core/alloc.h"
#include "io/model-dir.h"
#include "io/safetensors.h"
#include "models/text-proj.h"
#include "testutil.h"

#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FP32_TOL 1e-4
#define FP16_TOL 5e-3

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static float *
golden_f32(const struct unclip_st_file *f, const char *name, int64_t want)
{
    const struct unclip_st_tensor *t = unclip__st_find(f, name);
    TU_CHECK(t != NULL && t->numel == want, "golden %s missing or not %lld elements", name,
             (long long)want);
    if (!t || t->numel != want)
        return NULL;
    float *x = malloc((size_t)t->numel * sizeof(float) + 1);
    unclip__st_to_f32(t, x, NULL);
    return x;
}

static void
run_case(struct unclip_vk *vk, struct unclip_text_proj *m, const struct unclip_st_file *g,
         const char *prefix, bool guidance, const char *label, double tol)
{
    const struct unclip_text_proj_config *c = unclip__text_proj_config(m);
    const int64_t E = c->clip_dim, D = c->time_dim, X = c->cross_dim, K = c->extra_tokens;
    const int64_t T = 77, B2 = 2, B = guidance ? 1 : 2;
    char n[128];
    snprintf(n, sizeof n, "%s_image_embeddings", prefix);
    float *z = golden_f32(g, n, B * E);
    snprintf(n, sizeof n, "%s_prompt_embeds", prefix);
    float *p = golden_f32(g, n, B2 * E);
    snprintf(n, sizeof n, "%s_text_encoder_hidden_states", prefix);
    float *h = golden_f32(g, n, B2 * T * E);
    snprintf(n, sizeof n, "%s_out_encoder_hidden_states", prefix);
    float *want_enc = golden_f32(g, n, B2 * (K + T) * X);
    snprintf(n, sizeof n, "%s_out_additive_clip_time_embeddings", prefix);
    float *want_add = golden_f32(g, n, B2 * D);
    if (z && p && h && want_enc && want_add) {
        float *enc = calloc((size_t)(B2 * (K + T) * X), sizeof(float));
        float *add = calloc((size_t)(B2 * D), sizeof(float));
        double t0 = now_ms();
        unclip_status st = unclip__text_proj_run(m, (int32_t)B, (int32_t)T, z, p, h, guidance,
                                                 enc, add);
        double t1 = now_ms();
        TU_CHECK(st == UNCLIP_OK, "%s %s: %s", prefix, label, unclip__vk_err(vk)->msg);
        double e_enc = tu_rel_l2(enc, want_enc, B2 * (K + T) * X);
        double e_add = tu_rel_l2(add, want_add, B2 * D);
        /* The two parts of the context separately: extra tokens and text tokens. */
        double s_x = 0, s_xd = 0, s_t = 0, s_td = 0;
        for (int64_t b = 0; b < B2; b++)
            for (int64_t r = 0; r < K + T; r++)
                for (int64_t d = 0; d < X; d++) {
                    int64_t i = (b * (K + T) + r) * X + d;
                    double w = want_enc[i], e = enc[i] - want_enc[i];
                    if (r < K) {
                        s_x += w * w;
                        s_xd += e * e;
                    } else {
                        s_t += w * w;
                        s_td += e * e;
                    }
                }
        printf("  %s %s: encoder_hidden_states rel L2 %.2e (extra tokens %.2e, text %.2e), "
               "additive %.2e  (%.2f ms)\n",
               prefix, label, e_enc, sqrt(s_xd / s_x), sqrt(s_td / s_t), e_add, t1 - t0);
        TU_CHECK(e_enc <= tol, "%s %s: encoder_hidden_states %.3e > %.0e", prefix, label, e_enc,
                 tol);
        TU_CHECK(e_add <= tol, "%s %s: additive %.3e > %.0e", prefix, label, e_add, tol);
        TU_CHECK(tu_first_nonfinite(enc, B2 * (K + T) * X) < 0, "non-finite output");

        /* Guidance puts the null embedding first: the unconditional rows equal a no-guidance
         * call on that embedding, and the conditional rows one on z. */
        if (guidance) {
            float *zz = malloc((size_t)(2 * E) * sizeof(float));
            float *enc2 = calloc((size_t)(B2 * (K + T) * X), sizeof(float));
            float *add2 = calloc((size_t)(B2 * D), sizeof(float));
            /* Without guidance on [z; z]: row 1 must equal the guided call's conditional row
             * bit for bit, row 0 must differ from its unconditional (null embedding) row. */
            memcpy(zz, z, (size_t)E * sizeof(float));
            memcpy(zz + E, z, (size_t)E * sizeof(float));
            st = unclip__text_proj_run(m, 2, (int32_t)T, zz, p, h, false, enc2, add2);
            double ec = tu_rel_l2(enc2 + (K + T) * X, enc + (K + T) * X, (K + T) * X);
            double ea = tu_rel_l2(add2 + D, add + D, D);
            double eu = tu_rel_l2(add2, add, D);
            printf("  %s %s: conditional half vs a no-guidance call: %.1e / %.1e; "
                   "unconditional half differs by %.2e\n",
                   prefix, label, ec, ea, eu);
            TU_CHECK(st == UNCLIP_OK && ec == 0.0 && ea == 0.0,
                     "conditional half differs: %.3e %.3e", ec, ea);
            TU_CHECK(eu > 1e-2, "the null embedding is not used (%.3e)", eu);
            free(zz);
            free(enc2);
            free(add2);
        }
        free(enc);
        free(add);
    }
    free(z);
    free(p);
    free(h);
    free(want_enc);
    free(want_add);
}

static void
test_goldens(struct unclip_vk *vk, const struct unclip_model_dir *dir, bool fp32)
{
    const char *label = fp32 ? "fp32" : "fp16";
    struct unclip_err err = {0};
    struct unclip_text_proj *m = NULL;
    struct unclip_text_proj_opts opts = {.fp32 = fp32};
    unclip_status st = unclip__text_proj_load(vk, dir, "text_proj", &opts, &m, &err);
    TU_CHECK(st == UNCLIP_OK, "text_proj %s: load: %s", label, err.msg);
    if (st != UNCLIP_OK)
        return;
    const struct unclip_text_proj_config *c = unclip__text_proj_config(m);
    printf("text_proj %s: E %d, time %d, cross %d, %d extra tokens, %.1f KiB on the device\n",
           label, (int)c->clip_dim, (int)c->time_dim, (int)c->cross_dim, (int)c->extra_tokens,
           unclip__text_proj_weight_bytes(m) / 1024.0);
    struct unclip_st_file *g = NULL;
    st = unclip__st_open(tu_golden_path("goldens/text_proj.safetensors"), &g, &err);
    TU_CHECK(st == UNCLIP_OK, "open goldens: %s", err.msg);
    if (st == UNCLIP_OK) {
        double tol = fp32 ? FP32_TOL : FP16_TOL;
        run_case(vk, m, g, "cfg", true, label, tol);
        run_case(vk, m, g, "nocfg", false, label, tol);
    }

    /* Batch checks: with guidance the prompt batch must be twice the image batch. */
    if (fp32) {
        const int64_t E = c->clip_dim;
        struct unclip_tensor z = {0}, p = {0}, h = {0}, enc = {0}, add = {0};
        int64_t zs[2] = {2, E}, ps[2] = {2, E}, hs[3] = {2, 77, E};
        unclip__tensor_new(vk, UNCLIP_DT_F32, 2, zs, &z);
        unclip__tensor_new(vk, UNCLIP_DT_F32, 2, ps, &p);
        unclip__tensor_new(vk, UNCLIP_DT_F32, 3, hs, &h);
        st = unclip__text_proj_forward(m, &z, &p, &h, true, &enc, &add);
        TU_CHECK(st == UNCLIP_E_ARG && strstr(unclip__vk_err(vk)->msg, "2B") &&
                     enc.buf == NULL && add.buf == NULL,
                 "guidance batch: %d %s", st, unclip__vk_err(vk)->msg);
        st = unclip__text_proj_forward(m, &z, &p, &z, false, &enc, &add);
        TU_CHECK(st == UNCLIP_E_ARG, "2-D hidden states: %d %s", st, unclip__vk_err(vk)->msg);
        unclip__tensor_free(&z);
        unclip__tensor_free(&p);
        unclip__tensor_free(&h);
    }
    unclip__st_close(g);
    unclip__text_proj_free(m);
}

/* The extra-token layout on its own: with an identity-like check on the model's own
 * projection. clip_extra_context_tokens_proj(z) viewed as (X, K) and transposed means token k
 * channel d is u[d K + k]; reading it as (K, X) would give u[k X + d]. Computed on the host
 * from the weights and compared with the device output for one row. */
static void
test_layout(struct unclip_vk *vk, const struct unclip_model_dir *dir)
{
    struct unclip_err err = {0};
    struct unclip_text_proj *m = NULL;
    struct unclip_text_proj_opts opts = {.fp32 = true};
    if (unclip__text_proj_load(vk, dir, "text_proj", &opts, &m, &err) != UNCLIP_OK)
        return;
    const struct unclip_text_proj_config *c = unclip__text_proj_config(m);
    const int64_t E = c->clip_dim, X = c->cross_dim, K = c->extra_tokens, T = 3;
    char *wpath = NULL;
    struct unclip_st_file *f = NULL;
    unclip__model_dir_weights_path(dir, "text_proj", &wpath, &err);
    if (wpath && unclip__st_open(wpath, &f, &err) == UNCLIP_OK) {
        const struct unclip_st_tensor *tw = unclip__st_find(f, "clip_extra_context_tokens_proj.weight");
        const struct unclip_st_tensor *tb = unclip__st_find(f, "clip_extra_context_tokens_proj.bias");
        float *W = malloc((size_t)(K * X * E) * sizeof(float));
        float *bb = malloc((size_t)(K * X) * sizeof(float));
        unclip__st_to_f32(tw, W, NULL);
        unclip__st_to_f32(tb, bb, NULL);
        struct tu_rng r;
        tu_rng_seed(&r, 7);
        float *z = malloc((size_t)E * sizeof(float)), *p = malloc((size_t)E * sizeof(float));
        float *h = malloc((size_t)(T * E) * sizeof(float));
        tu_fill_normal(&r, z, E, 1.0f);
        tu_fill_normal(&r, p, E, 1.0f);
        tu_fill_normal(&r, h, T * E, 1.0f);
        float *enc = malloc((size_t)((K + T) * X) * sizeof(float));
        unclip_status st = unclip__text_proj_run(m, 1, (int32_t)T, z, p, h, false, enc, NULL);
        TU_CHECK(st == UNCLIP_OK, "layout run: %s", unclip__vk_err(vk)->msg);
        double se = 0, sw = 0, sx = 0;
        for (int64_t k = 0; k < K; k++)
            for (int64_t d = 0; d < X; d++) {
                double u = bb[d * K + k], v = bb[k * X + d];
                for (int64_t e = 0; e < E; e++) {
                    u += (double)W[(d * K + k) * E + e] * z[e];
                    v += (double)W[(k * X + d) * E + e] * z[e];
                }
                double got = enc[k * X + d];
                se += (got - u) * (got - u);
                sx += (got - v) * (got - v);
                sw += u * u;
            }
        printf("  extra-token layout: rel L2 %.2e vs u[d K + k], %.2e vs u[k X + d]\n",
               sqrt(se / sw), sqrt(sx / sw));
        TU_CHECK(sqrt(se / sw) < 1e-5 && sqrt(sx / sw) > 0.1, "extra-token layout wrong");
        free(W);
        free(bb);
        free(z);
        free(p);
        free(h);
        free(enc);
    }
    unclip__st_close(f);
    unclip__free(wpath);
    unclip__text_proj_free(m);
}

/* ---- loader errors ---- */

static char tmpdir[4096];

struct edit {
    const char *cfg_from, *cfg_to;
    const char *drop, *halve, *extra;
};

static const char *
make_copy(const struct unclip_model_dir *dir, const char *tag, const struct edit *e)
{
    static char out[4200];
    snprintf(out, sizeof out, "%s/%s", tmpdir, tag);
    g_mkdir_with_parents(out, 0700);
    struct unclip_err err = {0};
    char *cpath = NULL, *wpath = NULL, path[4400];
    unclip__model_dir_config_path(dir, "text_proj", &cpath, &err);
    unclip__model_dir_weights_path(dir, "text_proj", &wpath, &err);
    TU_CHECK(cpath && wpath, "text_proj paths: %s", err.msg);
    if (!cpath || !wpath)
        return out;
    gchar *text = NULL;
    gsize len = 0;
    TU_CHECK(g_file_get_contents(cpath, &text, &len, NULL), "read %s", cpath);
    if (text && e->cfg_from) {
        char *at = strstr(text, e->cfg_from);
        TU_CHECK(at != NULL, "%s: '%s' not in the config", tag, e->cfg_from);
        if (at) {
            GString *s = g_string_new_len(text, at - text);
            g_string_append(s, e->cfg_to);
            g_string_append(s, at + strlen(e->cfg_from));
            g_free(text);
            text = g_string_free(s, FALSE);
        }
    }
    snprintf(path, sizeof path, "%s/config.json", out);
    g_file_set_contents(path, text ? text : "", -1, NULL);
    g_free(text);

    struct unclip_st_file *f = NULL;
    unclip_status st = unclip__st_open(wpath, &f, &err);
    TU_CHECK(st == UNCLIP_OK, "open %s: %s", wpath, err.msg);
    struct unclip_st_writer *w = NULL;
    unclip__st_writer_new(&w, &err);
    for (int32_t i = 0; f && i < unclip__st_count(f); i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        int64_t shape[UNCLIP_ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (e->drop && !strcmp(t->name, e->drop))
            continue;
        if (e->halve && !strcmp(t->name, e->halve))
            shape[0] /= 2;
        st = unclip__st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data, &err);
        TU_CHECK(st == UNCLIP_OK, "copy %s: %s", t->name, err.msg);
    }
    if (e->extra) {
        float v[4] = {1, 2, 3, 4};
        int64_t shape[1] = {4};
        unclip__st_writer_add_f32(w, e->extra, UNCLIP_DT_F32, 1, shape, v, &err);
    }
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", out);
    st = unclip__st_writer_write(w, path, &err);
    TU_CHECK(st == UNCLIP_OK, "write %s: %s", path, err.msg);
    unclip__st_writer_free(w);
    unclip__st_close(f);
    unclip__free(cpath);
    unclip__free(wpath);
    return out;
}

static void
test_load_errors(struct unclip_vk *vk, const struct unclip_model_dir *dir)
{
    static const struct {
        const char *tag;
        struct edit e;
        unclip_status want;
        const char *needles[3];
    } cases[] = {
        {"ok", {0}, UNCLIP_OK, {NULL}},
        {"missing-null", {.drop = "learned_classifier_free_guidance_embeddings"}, UNCLIP_E_MODEL,
         {"text_proj/diffusion_pytorch_model.safetensors",
          "missing tensor 'learned_classifier_free_guidance_embeddings'", NULL}},
        {"missing-norm", {.drop = "text_encoder_hidden_states_norm.bias"}, UNCLIP_E_MODEL,
         {"missing tensor 'text_encoder_hidden_states_norm.bias'", NULL, NULL}},
        {"shape-extra", {.halve = "clip_extra_context_tokens_proj.weight"}, UNCLIP_E_MODEL,
         {"'clip_extra_context_tokens_proj.weight'", "shape [96, 32], expected [192, 32]",
          "clip_extra_context_tokens 4"}},
        {"shape-time", {.halve = "embedding_proj.bias"}, UNCLIP_E_MODEL,
         {"'embedding_proj.bias'", "shape [64], expected [128]", "time_embed_dim 128"}},
        {"config-cross", {.cfg_from = "\"cross_attention_dim\": 48",
                          .cfg_to = "\"cross_attention_dim\": 64"},
         UNCLIP_E_MODEL, {"text_proj/config.json says", "cross_attention_dim 64", "expected"}},
        {"config-type", {.cfg_from = "\"time_embed_dim\": 128", .cfg_to = "\"time_embed_dim\": -1"},
         UNCLIP_E_FORMAT, {"text_proj/config.json", "time_embed_dim", NULL}},
        {"unused", {.extra = "some_other.weight"}, UNCLIP_E_MODEL, {"some_other.weight", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *folder = make_copy(dir, cases[i].tag, &cases[i].e);
        char c[4400], w[4400];
        snprintf(c, sizeof c, "%s/config.json", folder);
        snprintf(w, sizeof w, "%s/diffusion_pytorch_model.safetensors", folder);
        struct unclip_text_proj *m = NULL;
        struct unclip_err err = {0};
        unclip_status st = unclip__text_proj_load_files(
            vk, c, "text_proj/config.json", w, "text_proj/diffusion_pytorch_model.safetensors",
            NULL, &m, &err);
        bool ok = st == cases[i].want && (st == UNCLIP_OK) == (m != NULL);
        for (int n = 0; n < 3 && cases[i].needles[n]; n++)
            ok = ok && strstr(err.msg, cases[i].needles[n]) != NULL;
        printf("  load %-12s -> %s%s%s\n", cases[i].tag, unclip_status_str(st),
               err.msg[0] ? ": " : "", err.msg);
        TU_CHECK(ok, "%s: status %d (want %d), message '%s'", cases[i].tag, st, cases[i].want,
                 err.msg);
        unclip__text_proj_free(m);
    }
}

static void
test_alloc_failures(struct unclip_vk *vk, const struct unclip_model_dir *dir)
{
    float z[32] = {1}, p[64] = {2}, h[2 * 77 * 32] = {3}, enc[2 * 81 * 48], add[2 * 128];
    int failures = 0, k;
    for (k = 1; k < 5000; k++) {
        struct unclip_err err = {0};
        struct unclip_text_proj *m = NULL;
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, (uint64_t)k);
        unclip_status st = unclip__text_proj_load(vk, dir, "text_proj", NULL, &m, &err);
        if (st == UNCLIP_OK)
            st = unclip__text_proj_run(m, 1, 77, z, p, h, true, enc, add);
        uint64_t seen = unclip__fault_count(UNCLIP_FAULT_HOST_ALLOC);
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
        unclip__text_proj_free(m);
        if (st != UNCLIP_OK) {
            failures++;
            TU_CHECK(st == UNCLIP_E_NOMEM || st == UNCLIP_E_DEVICE_NOMEM,
                     "fault %d: status %d (%s)", k, st,
                     err.msg[0] ? err.msg : unclip__vk_err(vk)->msg);
        }
        if (seen < (uint64_t)k)
            break;
    }
    printf("  host allocation faults: %d runs, %d failed cleanly\n", k, failures);
    TU_CHECK(failures > 5 && k < 5000, "fault loop did not converge (%d)", k);
}

int
main(void)
{
    struct unclip_err err = {0};
    struct unclip_vk *vk = NULL;
    struct unclip_vk_params vp = unclip__vk_params_default();
    if (unclip__vk_new(&vp, &vk, &err) != UNCLIP_OK) {
        printf("no Vulkan device: %s\n", err.msg);
        return 77;
    }
    struct unclip_model_dir *t2i = NULL, *var = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s", tu_golden_path("models/tiny-karlo"));
    unclip_status st = unclip__model_dir_open(path, &t2i, &err);
    TU_CHECK(st == UNCLIP_OK, "open %s: %s", path, err.msg);
    snprintf(path, sizeof path, "%s", tu_golden_path("models/tiny-karlo-variations"));
    st = unclip__model_dir_open(path, &var, &err);
    TU_CHECK(st == UNCLIP_OK, "open %s: %s", path, err.msg);
    if (t2i) {
        test_goldens(vk, t2i, true);
        test_goldens(vk, t2i, false);
        test_layout(vk, t2i);
        snprintf(tmpdir, sizeof tmpdir, "%s/unclip-test-text-proj-XXXXXX", g_get_tmp_dir());
        if (g_mkdtemp(tmpdir)) {
            test_load_errors(vk, t2i);
            char cmd[4200];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
            if (system(cmd) != 0)
                printf("could not remove %s\n", tmpdir);
        }
        test_alloc_failures(vk, t2i);
    }
    if (var) /* the variations folder reaches text_proj through link stubs */
        test_goldens(vk, var, true);
    unclip__model_dir_free(t2i);
    unclip__model_dir_free(var);
    unclip__vk_free(vk);
    return tu_summary("text-proj");
}
