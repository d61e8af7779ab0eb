/* Whole pipeline runs against the goldens (README sections 4 and 8).
 *
 *   test-pipeline-e2e UNCLIP_EXE RUN...       runs `unclip parity --only e2e_RUN.safetensors
 *                                             ...` (fp32; one process for all the RUNs, so
 *                                             shaders and the tokenizer are set up once) and
 *                                             compares each output with its golden file
 *   test-pipeline-e2e --coverage RUN...       checks that the RUN list names every run of
 *                                             manifest.json's e2e (so none is forgotten)
 *
 * Rules, by tensor (every tensor manifest.json lists for the run must be produced):
 *   integer tensors (token ids, masks, timesteps, unet choice)           exact
 *   generator draws (noise_*, *_latents_init)                            max |diff| <= 1e-5
 *   tensors up to the decoder loop (text encoder calls, prior inputs and
 *   steps, image encoder, image_embeddings, text_proj in/out)           relative L2 <= 1e-4
 *   images_u8                     mean |diff| <= 0.25 levels, <= 0.5 % of values off by more
 *                                 than 2 levels, PSNR >= 40 dB over [0, 1] values
 *   from the decoder loop on (decoder_step*, super_res_step*, image_small, image_upscaled,
 *   images)                                                              reported only */
#include "core/alloc.h"
#include "io/safetensors.h"
#include "testutil.h"

#include <glib.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool
starts(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static bool
ends(const char *s, const char *p)
{
    size_t ls = strlen(s), lp = strlen(p);
    return ls >= lp && !strcmp(s + ls - lp, p);
}

enum rule { RULE_EXACT, RULE_DRAW, RULE_REL, RULE_IMAGE, RULE_INFO };

static enum rule
rule_of(const char *name, enum unclip_dtype dt)
{
    if (!strcmp(name, "images_u8"))
        return RULE_IMAGE;
    if (dt == UNCLIP_DT_I64 || dt == UNCLIP_DT_I32 || dt == UNCLIP_DT_BOOL || dt == UNCLIP_DT_U8)
        return RULE_EXACT;
    if (starts(name, "noise_") || ends(name, "_latents_init"))
        return RULE_DRAW;
    if (starts(name, "decoder_step") || starts(name, "super_res_step") ||
        !strcmp(name, "image_small") || !strcmp(name, "image_upscaled") ||
        !strcmp(name, "images"))
        return RULE_INFO;
    return RULE_REL;
}

static JsonParser *
load_manifest(const char *root, JsonObject **e2e)
{
    char *path = g_build_filename(root, "goldens", "manifest.json", NULL);
    JsonParser *p = json_parser_new();
    GError *ge = NULL;
    if (!json_parser_load_from_file(p, path, &ge)) {
        printf("cannot read %s: %s\n", path, ge->message);
        g_clear_error(&ge);
        g_object_unref(p);
        g_free(path);
        return NULL;
    }
    g_free(path);
    JsonObject *m = json_node_get_object(json_parser_get_root(p));
    *e2e = m && json_object_has_member(m, "e2e") ? json_object_get_object_member(m, "e2e")
                                                 : NULL;
    return p;
}

static void
compare_images(const char *run, const struct unclip_st_tensor *g, const struct unclip_st_tensor *o)
{
    const uint8_t *a = o->data, *b = g->data;
    double sum = 0.0, sq = 0.0;
    int64_t over2 = 0;
    int maxd = 0;
    for (int64_t i = 0; i < g->numel; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        sum += d;
        sq += (d / 255.0) * (d / 255.0);
        over2 += d > 2;
        maxd = d > maxd ? d : maxd;
    }
    double mean = sum / (double)g->numel, frac = (double)over2 / (double)g->numel;
    double mse = sq / (double)g->numel;
    double psnr = mse > 0 ? 10.0 * log10(1.0 / mse) : INFINITY;
    printf("  %s images_u8: mean |diff| %.4f levels, %.3f %% > 2 levels, PSNR %.1f dB, max %d "
           "levels\n", run, mean, 100.0 * frac, psnr, maxd);
    TU_CHECK(mean <= 0.25, "%s: images_u8 mean |diff| %.4f > 0.25 levels", run, mean);
    TU_CHECK(frac <= 0.005, "%s: images_u8: %.3f %% of values > 2 levels off (max 0.5 %%)", run,
             100.0 * frac);
    TU_CHECK(psnr >= 40.0, "%s: images_u8 PSNR %.1f dB < 40", run, psnr);
}

static void
compare_run(const char *run, JsonArray *names, const char *golden_path, const char *our_path)
{
    struct unclip_err err = {0};
    struct unclip_st_file *g = NULL, *o = NULL;
    TU_CHECK(unclip__st_open(golden_path, &g, &err) == UNCLIP_OK, "%s", err.msg);
    TU_CHECK(unclip__st_open(our_path, &o, &err) == UNCLIP_OK, "%s", err.msg);
    if (!g || !o) {
        unclip__st_close(g);
        unclip__st_close(o);
        return;
    }
    double worst_rel = 0.0, worst_draw = 0.0;
    const char *worst_rel_name = "-";
    int n_exact = 0, n_draw = 0, n_rel = 0, n_info = 0;
    GString *info = g_string_new("");
    for (guint i = 0; i < json_array_get_length(names); i++) {
        const char *name = json_array_get_string_element(names, i);
        const struct unclip_st_tensor *gt = unclip__st_find(g, name);
        const struct unclip_st_tensor *ot = unclip__st_find(o, name);
        TU_CHECK(gt != NULL, "%s: the golden file lacks %s", run, name);
        TU_CHECK(ot != NULL, "%s: %s was not produced", run, name);
        if (!gt || !ot)
            continue;
        bool same = gt->ndim == ot->ndim && gt->dtype == ot->dtype;
        for (int32_t k = 0; same && k < gt->ndim; k++)
            same = gt->shape[k] == ot->shape[k];
        char a[96], b[96];
        TU_CHECK(same, "%s: %s is %s %s, golden %s %s", run, name,
                 unclip__dtype_name(ot->dtype), unclip__st_shape_str(ot->ndim, ot->shape, a, 96),
                 unclip__dtype_name(gt->dtype), unclip__st_shape_str(gt->ndim, gt->shape, b, 96));
        if (!same)
            continue;
        enum rule r = rule_of(name, gt->dtype);
        if (r == RULE_IMAGE) {
            compare_images(run, gt, ot);
            continue;
        }
        if (r == RULE_EXACT) {
            n_exact++;
            TU_CHECK(gt->nbytes == ot->nbytes && !memcmp(gt->data, ot->data, gt->nbytes),
                     "%s: %s differs (integers must be exact)", run, name);
            continue;
        }
        float *x = g_new0(float, gt->numel + 1), *y = g_new0(float, gt->numel + 1);
        unclip__st_to_f32(ot, x, NULL);
        unclip__st_to_f32(gt, y, NULL);
        TU_CHECK(tu_first_nonfinite(x, gt->numel) < 0, "%s: %s has NaN/Inf", run, name);
        if (r == RULE_DRAW) {
            double m = tu_max_abs(x, y, gt->numel);
            n_draw++;
            worst_draw = fmax(worst_draw, m);
            TU_CHECK(m <= 1e-5, "%s: %s: max |diff| %.3e > 1e-5 (generator draws)", run, name,
                     m);
        } else if (r == RULE_REL) {
            double e = tu_rel_l2(x, y, gt->numel);
            n_rel++;
            if (e > worst_rel) {
                worst_rel = e;
                worst_rel_name = name;
            }
            TU_CHECK(e <= 1e-4, "%s: %s: relative L2 %.3e > 1e-4", run, name, e);
        } else {
            n_info++;
            if (!strcmp(name, "image_small") || !strcmp(name, "image_upscaled") ||
                !strcmp(name, "images") || ends(name, "step0_model_output"))
                g_string_append_printf(info, " %s %.2e", name, tu_rel_l2(x, y, gt->numel));
        }
        g_free(x);
        g_free(y);
    }
    printf("  %s: %d exact, %d draws (max |diff| %.1e), %d up to the decoder loop (worst rel L2 "
           "%.2e, %s), %d informational\n", run, n_exact, n_draw, worst_draw, n_rel, worst_rel,
           worst_rel_name, n_info);
    if (info->len)
        printf("  %s informational rel L2:%s\n", run, info->str);
    g_string_free(info, TRUE);
    unclip__st_close(g);
    unclip__st_close(o);
}

static int
coverage(int argc, char **argv)
{
    JsonObject *e2e = NULL;
    JsonParser *p = load_manifest(tu_golden_path(""), &e2e);
    TU_CHECK(p && e2e, "manifest.json has no e2e section");
    if (e2e) {
        GList *names = json_object_get_members(e2e);
        for (GList *l = names; l; l = l->next) {
            bool listed = false;
            for (int i = 2; i < argc && !listed; i++)
                listed = !strcmp(argv[i], l->data);
            TU_CHECK(listed, "golden run %s has no test (add it to tests/pipeline/meson.build)",
                     (const char *)l->data);
        }
        printf("%u golden runs, %d tested\n", g_list_length(names), argc - 2);
        g_list_free(names);
    }
    if (p)
        g_object_unref(p);
    return tu_summary("pipeline-e2e-coverage");
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "--coverage"))
        return coverage(argc, argv);
    if (argc < 3) {
        fprintf(stderr, "usage: test-pipeline-e2e UNCLIP_EXE RUN... | --coverage RUN...\n");
        return 2;
    }
    char root[4096];
    snprintf(root, sizeof root, "%s", tu_golden_path(""));
    size_t rl = strlen(root);
    if (rl > 1 && root[rl - 1] == '/')
        root[rl - 1] = '\0';
    JsonObject *e2e = NULL;
    JsonParser *mp = load_manifest(root, &e2e);
    int n_runs = argc - 2;
    const char **golden = g_new0(const char *, n_runs);
    JsonArray **names = g_new0(JsonArray *, n_runs);
    GPtrArray *av = g_ptr_array_new();
    g_ptr_array_add(av, argv[1]);
    g_ptr_array_add(av, "parity");
    for (int k = 0; k < n_runs; k++) {
        const char *run = argv[2 + k];
        JsonObject *entry = e2e && json_object_has_member(e2e, run)
                                ? json_object_get_object_member(e2e, run) : NULL;
        TU_CHECK(entry != NULL, "manifest.json has no e2e run %s", run);
        if (!entry)
            continue;
        golden[k] = json_object_get_string_member(entry, "golden");
        names[k] = json_object_get_array_member(entry, "tensors");
        g_ptr_array_add(av, "--only");
        g_ptr_array_add(av, (gpointer)golden[k]);
    }
    if (av->len == 2) { /* no run known: do not let parity run everything */
        g_ptr_array_free(av, TRUE);
        g_free(golden);
        g_free(names);
        if (mp)
            g_object_unref(mp);
        return tu_summary("pipeline-e2e");
    }

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/unclip-e2e-XXXXXX", g_get_tmp_dir());
    if (!g_mkdtemp(tmp)) {
        printf("cannot create a temporary folder\n");
        return 1;
    }
    g_ptr_array_add(av, root);
    g_ptr_array_add(av, tmp);
    g_ptr_array_add(av, NULL);
    gchar *out = NULL, *errout = NULL;
    gint status = 0;
    GError *ge = NULL;
    gint64 t0 = g_get_monotonic_time();
    bool ran = g_spawn_sync(NULL, (gchar **)av->pdata, NULL, 0, NULL, NULL, &out, &errout,
                            &status, &ge);
    gint64 t1 = g_get_monotonic_time();
    printf("%s%s", out ? out : "", errout ? errout : "");
    printf("  unclip parity took %.1f s for %d run(s)\n", (t1 - t0) / 1e6, n_runs);
    TU_CHECK(ran && g_spawn_check_wait_status(status, NULL), "unclip parity failed: %s",
             ge ? ge->message : "non-zero exit");
    g_clear_error(&ge);
    g_free(out);
    g_free(errout);
    g_ptr_array_free(av, TRUE);

    /* Every run is compared, whatever happened to the others. */
    for (int k = 0; k < n_runs; k++) {
        if (!golden[k] || !names[k])
            continue;
        char *gpath = g_build_filename(root, "goldens", golden[k], NULL);
        char *opath = g_build_filename(tmp, golden[k], NULL);
        compare_run(argv[2 + k], names[k], gpath, opath);
        g_free(gpath);
        g_free(opath);
    }
    g_free(golden);
    g_free(names);
    if (mp)
        g_object_unref(mp);
    gchar *rm[] = {"rm", "-rf", tmp, NULL};
    g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    return tu_summary("pipeline-e2e");
}
