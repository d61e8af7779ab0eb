/* PriorTransformer against goldens/prior.safetensors (README sections 3 and 8): three
 * timesteps (999, 500, 0) on a batch of two (2 and 14 valid text tokens) and
 * post_process_latents, with fp32 device weights (relative L2 <= 1e-4) and fp16 device weights
 * (<= 5e-3). Also: rows are independent of the batch, the text mask changes the result, bad
 * arguments are refused, and the loader names the file, the tensor and the config key of
 * every broken model (copies of the golden prior with one edit each). Prints the time of
 * one forward pass. */
#include "core/alloc.h"
#include "io/model-dir.h"
#include "io/safetensors.h"
#include "models/prior.h"
#include "testutil.h"

#include <glib.h>
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
    TU_CHECK(t != NULL, "golden tensor %s missing", name);
    if (!t)
        return NULL;
    TU_CHECK(t->numel == want, "golden %s: %lld elements, expected %lld", name,
             (long long)t->numel, (long long)want);
    if (t->numel != want)
        return NULL;
    float *x = malloc((size_t)t->numel * sizeof(float) + 1);
    unclip__st_to_f32(t, x, NULL);
    return x;
}

static int64_t *
golden_i64(const struct unclip_st_file *f, const char *name, int64_t want)
{
    const struct unclip_st_tensor *t = unclip__st_find(f, name);
    TU_CHECK(t != NULL && t->numel == want, "golden tensor %s missing or misshaped", name);
    if (!t || t->numel != want)
        return NULL;
    int64_t *x = malloc((size_t)t->numel * sizeof(int64_t) + 1);
    struct unclip_err err = {0};
    unclip_status st = unclip__st_to_i64(t, x, &err);
    TU_CHECK(st == UNCLIP_OK, "golden %s: %s", name, err.msg);
    return x;
}

static void
test_goldens(struct unclip_vk *vk, const struct unclip_model_dir *dir, bool fp32,
             double *ms_per_forward)
{
    const char *label = fp32 ? "fp32" : "fp16";
    double tol = fp32 ? FP32_TOL : FP16_TOL;
    struct unclip_err err = {0};
    struct unclip_prior *m = NULL;
    struct unclip_prior_opts opts = {.fp32 = fp32};
    double t0 = now_ms();
    unclip_status st = unclip__prior_load(vk, dir, "prior", &opts, &m, &err);
    double t1 = now_ms();
    TU_CHECK(st == UNCLIP_OK, "prior %s: load: %s", label, err.msg);
    if (st != UNCLIP_OK)
        return;
    const struct unclip_prior_config *c = unclip__prior_config(m);
    printf("prior %s: %d heads x %d = W %d, %d layers, E %d, T %d + %d, C %d, %.1f KiB on the "
           "device, loaded in %.1f ms\n",
           label, (int)c->heads, (int)c->head_dim, (int)c->width, (int)c->layers,
           (int)c->embedding_dim, (int)c->num_embeddings, (int)c->additional_embeddings,
           (int)c->clip_dim, unclip__prior_weight_bytes(m) / 1024.0, t1 - t0);

    struct unclip_st_file *g = NULL;
    st = unclip__st_open(tu_golden_path("goldens/prior.safetensors"), &g, &err);
    TU_CHECK(st == UNCLIP_OK, "open prior goldens: %s", err.msg);
    if (st != UNCLIP_OK) {
        unclip__prior_free(m);
        return;
    }
    const int32_t B = 2, E = c->embedding_dim, T = c->num_embeddings, C = c->clip_dim;
    float *x = golden_f32(g, "hidden_states", (int64_t)B * E);
    float *proj = golden_f32(g, "proj_embedding", (int64_t)B * c->proj_dim);
    float *enc = golden_f32(g, "encoder_hidden_states", (int64_t)B * T * E);
    int64_t *mask64 = golden_i64(g, "attention_mask", (int64_t)B * T);
    if (!x || !proj || !enc || !mask64)
        goto done;
    uint8_t mask[2 * 4096];
    int valid[2] = {0, 0};
    for (int64_t i = 0; i < (int64_t)B * T; i++) {
        mask[i] = (uint8_t)(mask64[i] != 0);
        valid[i / T] += mask[i];
    }
    TU_CHECK(valid[0] == 2 && valid[1] == 14, "golden mask rows have %d/%d tokens", valid[0],
             valid[1]);

    float out[2 * 4096], row[4096];
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "t%d_timestep", k);
        int64_t *tt = golden_i64(g, name, 1);
        snprintf(name, sizeof name, "t%d_predicted_image_embedding", k);
        float *want = golden_f32(g, name, (int64_t)B * C);
        if (!tt || !want) {
            free(tt);
            free(want);
            continue;
        }
        double a = now_ms();
        st = unclip__prior_predict(m, B, x, (float)tt[0], proj, enc, mask, out);
        double b = now_ms();
        TU_CHECK(st == UNCLIP_OK, "%s t=%lld: %s", label, (long long)tt[0],
                 unclip__vk_err(vk)->msg);
        double e = tu_rel_l2(out, want, (int64_t)B * C);
        double e0 = tu_rel_l2(out, want, C), e1 = tu_rel_l2(out + C, want + C, C);
        printf("  %s t=%3lld: rel L2 %.2e (row 0 %.2e, row 1 %.2e), max abs %.2e  (%.2f ms)\n",
               label, (long long)tt[0], e, e0, e1, tu_max_abs(out, want, (int64_t)B * C), b - a);
        TU_CHECK(e <= tol && e0 <= tol && e1 <= tol, "%s t=%lld: rel L2 %.3e > %.0e", label,
                 (long long)tt[0], e, tol);
        TU_CHECK(tu_first_nonfinite(out, (int64_t)B * C) < 0, "%s: non-finite output", label);

        if (k == 1) {
            /* Row 1 alone gives what it gave inside the batch (new scratch size, new mask). */
            st = unclip__prior_predict(m, 1, x + E, (float)tt[0], proj + c->proj_dim,
                                       enc + (int64_t)T * E, mask + T, row);
            double er = tu_rel_l2(row, out + C, C);
            printf("  %s row 1 alone vs in the batch: rel L2 %.2e\n", label, er);
            TU_CHECK(st == UNCLIP_OK && er <= 1e-6, "%s: row 1 alone differs: %.3e", label, er);

            /* Without the mask the padded text tokens are attended: the result must move. */
            st = unclip__prior_predict(m, B, x, (float)tt[0], proj, enc, NULL, out);
            double en = tu_rel_l2(out, want, (int64_t)B * C);
            double en0 = tu_rel_l2(out, want, C);
            printf("  %s without the text mask: rel L2 %.2e vs golden (row 0 %.2e)\n", label,
                   en, en0);
            TU_CHECK(st == UNCLIP_OK && en0 > 100 * tol, "%s: the mask has no effect (%.3e)",
                     label, en0);
            /* And with the mask again (the cached key bias must be rebuilt). */
            st = unclip__prior_predict(m, B, x, (float)tt[0], proj, enc, mask, out);
            double ea = tu_rel_l2(out, want, (int64_t)B * C);
            TU_CHECK(st == UNCLIP_OK && ea <= tol, "%s: mask again: %.3e", label, ea);
        }
        free(tt);
        free(want);
    }

    /* A loop's calls: the same device tensors step after step, so the forward after the
     * first replays what it recorded; the sinusoid and a changed mask must still reach it.
     * Replayed results are those of recording each forward (UNCLIP_NO_REPLAY=1), bit for bit. */
    {
        struct unclip_tensor tx = {0}, tp = {0}, te = {0}, to = {0};
        int64_t sx[2] = {B, E}, sp[2] = {B, c->proj_dim}, se[3] = {B, T, E}, so[2] = {B, C};
        if ((st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, sx, &tx)) == UNCLIP_OK &&
            (st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, sp, &tp)) == UNCLIP_OK &&
            (st = unclip__tensor_new(vk, UNCLIP_DT_F32, 3, se, &te)) == UNCLIP_OK &&
            (st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, so, &to)) == UNCLIP_OK &&
            (st = unclip__tensor_upload_f32(vk, &tx, x)) == UNCLIP_OK &&
            (st = unclip__tensor_upload_f32(vk, &tp, proj)) == UNCLIP_OK)
            st = unclip__tensor_upload_f32(vk, &te, enc);
        TU_CHECK(st == UNCLIP_OK, "%s loop tensors: %s", label, unclip__vk_err(vk)->msg);
        float rep[2 * 4096], rec[2 * 4096];
        int replayed = 0;
        for (int k = 0; k < 3 && st == UNCLIP_OK; k++) {
            char name[64];
            snprintf(name, sizeof name, "t%d_timestep", k);
            int64_t *tt = golden_i64(g, name, 1);
            snprintf(name, sizeof name, "t%d_predicted_image_embedding", k);
            float *want = golden_f32(g, name, (int64_t)B * C);
            /* mask, no mask, mask again: the key bias is rebuilt under the same graph */
            for (int v = 0; v < 3 && tt && want; v++) {
                bool masked = v != 1;
                if (k > 0 || v > 0)
                    replayed += unclip__prior_has_graph(m);
                if ((st = unclip__prior_forward(m, &tx, (float)tt[0], &tp, &te,
                                                masked ? mask : NULL, &to)) == UNCLIP_OK)
                    st = unclip__tensor_download_f32(vk, &to, rep);
                double e0 = tu_rel_l2(rep, want, C), e = tu_rel_l2(rep, want, (int64_t)B * C);
                TU_CHECK(st == UNCLIP_OK && (masked ? e <= tol : e0 > 100 * tol),
                         "%s loop t=%lld %s: rel L2 %.3e (row 0 %.3e): %s", label,
                         (long long)tt[0], masked ? "mask" : "no mask", e, e0,
                         unclip__vk_err(vk)->msg);
            }
            free(tt);
            free(want);
        }
        TU_CHECK(replayed == 8 && unclip__prior_has_graph(m),
                 "%s loop: %d of 8 forwards found a recorded graph", label, replayed);
        setenv("UNCLIP_NO_REPLAY", "1", 1);
        if (st == UNCLIP_OK &&
            (st = unclip__prior_forward(m, &tx, 321.0f, &tp, &te, mask, &to)) == UNCLIP_OK)
            st = unclip__tensor_download_f32(vk, &to, rec);
        unsetenv("UNCLIP_NO_REPLAY");
        if (st == UNCLIP_OK &&
            (st = unclip__prior_forward(m, &tx, 321.0f, &tp, &te, mask, &to)) == UNCLIP_OK)
            st = unclip__tensor_download_f32(vk, &to, rep);
        TU_CHECK(st == UNCLIP_OK && memcmp(rep, rec, sizeof(float) * (size_t)(B * C)) == 0,
                 "%s: replayed forward differs from a recorded one (rel L2 %.3e): %s", label,
                 tu_rel_l2(rep, rec, (int64_t)B * C), unclip__vk_err(vk)->msg);
        printf("  %s loop on the same tensors: 3 timesteps x mask/none/mask match, replay == "
               "record bit for bit\n", label);
        unclip__tensor_free(&tx);
        unclip__tensor_free(&tp);
        unclip__tensor_free(&te);
        unclip__tensor_free(&to);
    }

    /* Time of one forward pass (batch 2, inputs already on the device), the loop's steady
     * state, and the number of dispatches it records. */
    {
        struct unclip_tensor tx = {0}, tp = {0}, te = {0}, to = {0};
        int64_t sx[2] = {B, E}, sp[2] = {B, c->proj_dim}, se[3] = {B, T, E}, so[2] = {B, C};
        unclip__tensor_new(vk, UNCLIP_DT_F32, 2, sx, &tx);
        unclip__tensor_new(vk, UNCLIP_DT_F32, 2, sp, &tp);
        unclip__tensor_new(vk, UNCLIP_DT_F32, 3, se, &te);
        unclip__tensor_new(vk, UNCLIP_DT_F32, 2, so, &to);
        unclip__tensor_upload_f32(vk, &tx, x);
        unclip__tensor_upload_f32(vk, &tp, proj);
        unclip__tensor_upload_f32(vk, &te, enc);
        struct unclip_vk_stats s0, s1;
        int n = 10;
        unclip__vk_finish(vk);
        unclip__vk_stats(vk, &s0);
        double a = now_ms();
        for (int i = 0; i < n && st == UNCLIP_OK; i++) {
            st = unclip__prior_forward(m, &tx, 500.0f - i, &tp, &te, mask, &to);
            if (st == UNCLIP_OK)
                st = unclip__vk_finish(vk);
        }
        double b = now_ms();
        unclip__vk_stats(vk, &s1);
        TU_CHECK(st == UNCLIP_OK, "timing loop: %s", unclip__vk_err(vk)->msg);
        printf("  %s forward, batch 2: %.2f ms (mean of %d), %llu dispatches, %llu submissions "
               "each\n",
               label, (b - a) / n, n, (unsigned long long)(s1.dispatches - s0.dispatches) / n,
               (unsigned long long)(s1.submissions - s0.submissions) / n);
        if (ms_per_forward)
            *ms_per_forward = (b - a) / n;
        unclip__tensor_free(&tx);
        unclip__tensor_free(&tp);
        unclip__tensor_free(&te);
        unclip__tensor_free(&to);
    }

    /* post_process_latents, host and device. */
    float *pin = golden_f32(g, "post_process_in", (int64_t)B * C);
    float *pout = golden_f32(g, "post_process_out", (int64_t)B * C);
    if (pin && pout) {
        float h[2 * 4096];
        memcpy(h, pin, (size_t)B * C * sizeof(float));
        unclip__prior_post_process_host(m, h, B);
        double eh = tu_rel_l2(h, pout, (int64_t)B * C);
        struct unclip_tensor tx = {0};
        int64_t shape[2] = {B, C};
        float d[2 * 4096];
        st = unclip__tensor_new(vk, UNCLIP_DT_F32, 2, shape, &tx);
        if (st == UNCLIP_OK)
            st = unclip__tensor_upload_f32(vk, &tx, pin);
        if (st == UNCLIP_OK)
            st = unclip__prior_post_process(m, &tx, &tx);
        if (st == UNCLIP_OK)
            st = unclip__tensor_download_f32(vk, &tx, d);
        unclip__tensor_free(&tx);
        double ed = tu_rel_l2(d, pout, (int64_t)B * C);
        printf("  %s post_process_latents: host rel L2 %.2e (max abs %.1e), device %.2e\n", label,
               eh, tu_max_abs(h, pout, (int64_t)B * C), ed);
        TU_CHECK(st == UNCLIP_OK, "post_process: %s", unclip__vk_err(vk)->msg);
        TU_CHECK(eh <= 1e-6 && ed <= 1e-6, "post_process rel L2 %.3e / %.3e", eh, ed);
        TU_CHECK(memcmp(h, d, sizeof(float) * (size_t)(B * C)) == 0,
                 "post_process host and device differ");
    }
    free(pin);
    free(pout);

    /* Argument checks. */
    if (fp32) {
        struct unclip_tensor tx = {0}, tp = {0}, te = {0}, to = {0};
        int64_t s_bad[2] = {B, E + 1}, s_p[2] = {B, c->proj_dim}, s_e[3] = {B, T, E},
                s_o[2] = {B, C};
        unclip__tensor_new(vk, UNCLIP_DT_F32, 2, s_bad, &tx);
        unclip__tensor_new(vk, UNCLIP_DT_F32, 2, s_p, &tp);
        unclip__tensor_new(vk, UNCLIP_DT_F32, 3, s_e, &te);
        unclip__tensor_new(vk, UNCLIP_DT_F32, 2, s_o, &to);
        st = unclip__prior_forward(m, &tx, 10.0f, &tp, &te, NULL, &to);
        TU_CHECK(st == UNCLIP_E_ARG && strstr(unclip__vk_err(vk)->msg, "hidden_states"),
                 "wrong x shape: %d %s", st, unclip__vk_err(vk)->msg);
        st = unclip__prior_forward(m, &tp, 10.0f, &tp, &te, NULL, &tp);
        TU_CHECK(st == UNCLIP_E_ARG && strstr(unclip__vk_err(vk)->msg, "alias"),
                 "aliased output: %d %s", st, unclip__vk_err(vk)->msg);
        st = unclip__prior_forward(m, &tp, 1e6f, &tp, &te, NULL, &to);
        TU_CHECK(st == UNCLIP_E_ARG && strstr(unclip__vk_err(vk)->msg, "timestep"),
                 "timestep range: %d %s", st, unclip__vk_err(vk)->msg);
        unclip__tensor_free(&tx);
        unclip__tensor_free(&tp);
        unclip__tensor_free(&te);
        unclip__tensor_free(&to);
    }

done:
    free(x);
    free(proj);
    free(enc);
    free(mask64);
    unclip__st_close(g);
    unclip__prior_free(m);
}

/* ---- loader errors ---- */

static char tmpdir[4096];

struct edit {
    const char *cfg_from, *cfg_to; /* text replacement in config.json (NULL: none) */
    const char *drop;              /* tensor left out                               */
    const char *halve;             /* tensor whose first dimension is halved        */
    const char *as_i64;            /* tensor stored as I64                          */
};

/* Copies the golden prior into <tmpdir>/<tag>/ with one edit; returns the folder. */
static const char *
make_copy(const struct unclip_model_dir *dir, const char *tag, const struct edit *e)
{
    static char out[4200];
    snprintf(out, sizeof out, "%s/%s", tmpdir, tag);
    g_mkdir_with_parents(out, 0700);
    struct unclip_err err = {0};
    char *cpath = NULL, *wpath = NULL, path[4400];
    unclip__model_dir_config_path(dir, "prior", &cpath, &err);
    unclip__model_dir_weights_path(dir, "prior", &wpath, &err);
    TU_CHECK(cpath && wpath, "prior paths: %s", err.msg);
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
        if (e->halve && !strcmp(t->name, e->halve)) {
            shape[0] /= 2;
            st = unclip__st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data, &err);
        } else if (e->as_i64 && !strcmp(t->name, e->as_i64)) {
            int64_t *v = calloc((size_t)t->numel, sizeof(int64_t));
            st = unclip__st_writer_add(w, t->name, UNCLIP_DT_I64, t->ndim, shape, v, &err);
            free(v);
        } else {
            st = unclip__st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data, &err);
        }
        TU_CHECK(st == UNCLIP_OK, "copy %s: %s", t->name, err.msg);
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

static unclip_status
load_copy(struct unclip_vk *vk, const char *folder, struct unclip_err *err)
{
    char c[4400], w[4400];
    snprintf(c, sizeof c, "%s/config.json", folder);
    snprintf(w, sizeof w, "%s/diffusion_pytorch_model.safetensors", folder);
    struct unclip_prior *m = NULL;
    struct unclip_prior_opts o = {.fp32 = true};
    unclip__err_clear(err);
    unclip_status st = unclip__prior_load_files(vk, c, "prior/config.json", w,
                                                "prior/diffusion_pytorch_model.safetensors", &o,
                                                &m, err);
    TU_CHECK((st == UNCLIP_OK) == (m != NULL), "load result and model disagree");
    unclip__prior_free(m);
    return st;
}

struct error_case {
    const char *tag;
    struct edit e;
    unclip_status want;
    const char *needles[3]; /* all must appear in the message */
};

static void
test_load_errors(struct unclip_vk *vk, const struct unclip_model_dir *dir)
{
    static const struct error_case cases[] = {
        {"ok", {0}, UNCLIP_OK, {NULL}},
        {"missing", {.drop = "transformer_blocks.1.norm3.bias"}, UNCLIP_E_MODEL,
         {"prior/diffusion_pytorch_model.safetensors", "missing tensor",
          "'transformer_blocks.1.norm3.bias'"}},
        {"missing-prd", {.drop = "prd_embedding"}, UNCLIP_E_MODEL,
         {"prior/diffusion_pytorch_model.safetensors", "'prd_embedding'", "missing"}},
        {"missing-clip-std", {.drop = "clip_std"}, UNCLIP_E_MODEL, {"'clip_std'", "missing"}},
        {"shape-proj-in", {.halve = "proj_in.weight"}, UNCLIP_E_MODEL,
         {"'proj_in.weight'", "shape [24, 32], expected [48, 32]", "prior/config.json says"}},
        {"shape-ff", {.halve = "transformer_blocks.0.ff.net.0.proj.weight"}, UNCLIP_E_MODEL,
         {"'transformer_blocks.0.ff.net.0.proj.weight'", "shape [96, 48], expected [192, 48]",
          NULL}},
        {"shape-pos", {.halve = "positional_embedding"}, UNCLIP_E_MODEL,
         {"'positional_embedding'", "shape [0, 81, 48]", NULL}},
        {"dtype", {.as_i64 = "norm_out.weight"}, UNCLIP_E_MODEL,
         {"'norm_out.weight'", "I64", NULL}},
        {"fewer-layers", {.cfg_from = "\"num_layers\": 2", .cfg_to = "\"num_layers\": 1"},
         UNCLIP_E_MODEL, {"transformer_blocks.1.", "num_layers 1", NULL}},
        {"more-layers", {.cfg_from = "\"num_layers\": 2", .cfg_to = "\"num_layers\": 3"},
         UNCLIP_E_MODEL, {"missing tensor 'transformer_blocks.2.", NULL, NULL}},
        {"heads", {.cfg_from = "\"num_attention_heads\": 4", .cfg_to = "\"num_attention_heads\": 6"},
         UNCLIP_E_MODEL, {"shape", "width 72", NULL}},
        {"no-prd", {.cfg_from = "\"added_emb_type\": \"prd\"", .cfg_to = "\"added_emb_type\": null"},
         UNCLIP_E_MODEL, {"prior/config.json", "added_emb_type", NULL}},
        {"enc-proj", {.cfg_from = "\"encoder_hid_proj_type\": \"linear\"",
                      .cfg_to = "\"encoder_hid_proj_type\": \"conv\""},
         UNCLIP_E_FORMAT, {"prior/config.json", "encoder_hid_proj_type", "linear"}},
        {"act", {.cfg_from = "\"time_embed_act_fn\": \"silu\"",
                 .cfg_to = "\"time_embed_act_fn\": \"mish\""},
         UNCLIP_E_FORMAT, {"time_embed_act_fn", "mish", NULL}},
        {"norm-in", {.cfg_from = "\"norm_in_type\": null", .cfg_to = "\"norm_in_type\": \"layer\""},
         UNCLIP_E_MODEL, {"missing tensor 'norm_in.weight'", NULL, NULL}},
        {"additional", {.cfg_from = "\"additional_embeddings\": 4",
                        .cfg_to = "\"additional_embeddings\": 5"},
         UNCLIP_E_MODEL, {"additional_embeddings", "5", NULL}},
        {"head-type", {.cfg_from = "\"attention_head_dim\": 12",
                       .cfg_to = "\"attention_head_dim\": \"12\""},
         UNCLIP_E_FORMAT, {"prior/config.json", "attention_head_dim", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct error_case *k = &cases[i];
        const char *folder = make_copy(dir, k->tag, &k->e);
        struct unclip_err err = {0};
        unclip_status st = load_copy(vk, folder, &err);
        bool ok = st == k->want;
        for (int n = 0; n < 3 && k->needles[n]; n++)
            ok = ok && strstr(err.msg, k->needles[n]) != NULL;
        printf("  load %-14s -> %s%s%s\n", k->tag, unclip_status_str(st), err.msg[0] ? ": " : "",
               err.msg);
        TU_CHECK(ok, "%s: status %d (want %d), message '%s'", k->tag, st, k->want, err.msg);
    }
}

/* Makes the k-th host allocation fail for k = 1, 2, ... through a whole load + forward until
 * a run completes without reaching the armed allocation: every failure must be clean. */
static void
test_alloc_failures(struct unclip_vk *vk, const struct unclip_model_dir *dir)
{
    struct unclip_st_file *g = NULL;
    struct unclip_err err = {0};
    if (unclip__st_open(tu_golden_path("goldens/prior.safetensors"), &g, &err) != UNCLIP_OK)
        return;
    float *x = golden_f32(g, "hidden_states", 64);
    float *proj = golden_f32(g, "proj_embedding", 64);
    float *enc = golden_f32(g, "encoder_hidden_states", 2 * 77 * 32);
    uint8_t mask[2 * 77] = {1, 1, 1};
    float out[64];
    int failures = 0, k;
    for (k = 1; k < 5000 && x && proj && enc; k++) {
        struct unclip_prior *m = NULL;
        unclip__err_clear(&err);
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, (uint64_t)k);
        unclip_status st = unclip__prior_load(vk, dir, "prior", NULL, &m, &err);
        if (st == UNCLIP_OK)
            st = unclip__prior_predict(m, 2, x, 999.0f, proj, enc, mask, out);
        uint64_t seen = unclip__fault_count(UNCLIP_FAULT_HOST_ALLOC);
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
        unclip__prior_free(m);
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
    TU_CHECK(failures > 10 && k < 5000, "fault loop did not converge (%d)", k);
    free(x);
    free(proj);
    free(enc);
    unclip__st_close(g);
}

int
main(void)
{
    struct unclip_err err = {0};
    struct unclip_vk *vk = NULL;
    struct unclip_vk_params vp = unclip__vk_params_default();
    unclip_status st = unclip__vk_new(&vp, &vk, &err);
    if (st != UNCLIP_OK) {
        printf("no Vulkan device: %s\n", err.msg);
        return 77;
    }
    struct unclip_model_dir *dir = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s", tu_golden_path("models/tiny-karlo"));
    st = unclip__model_dir_open(path, &dir, &err);
    TU_CHECK(st == UNCLIP_OK, "open %s: %s", path, err.msg);
    if (dir) {
        double ms32 = 0, ms16 = 0;
        test_goldens(vk, dir, true, &ms32);
        test_goldens(vk, dir, false, &ms16);

        snprintf(tmpdir, sizeof tmpdir, "%s/unclip-test-prior-XXXXXX", g_get_tmp_dir());
        if (g_mkdtemp(tmpdir)) {
            test_load_errors(vk, dir);
            char cmd[4200];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
            if (system(cmd) != 0)
                printf("could not remove %s\n", tmpdir);
        } else {
            TU_CHECK(false, "mkdtemp failed");
        }
        test_alloc_failures(vk, dir);
    }
    unclip__model_dir_free(dir);
    unclip__vk_free(vk);
    return tu_summary("prior");
}
