/* `unclip embed-text` / `unclip embed-image` end to end (tokenizer or PNG reading +
 * preprocessing + tower + safetensors writing) against the CLIP tensors of the goldens'
 * whole-pipeline runs: for every run in manifest.json -> e2e, the prompt (t2i runs) or the
 * input image (variation runs) goes through the CLI with --fp32 and must give
 *   text_encoder_call0_{input_ids, text_embeds, last_hidden_state} (and call1 for ""),
 *   image_encoder_{pixel_values, image_embeds}
 * (ids exact, floats relative L2 <= 1e-4). Also the CLI's failure modes and exit codes.
 *
 *   test-clip-cli UNCLIP_EXE        (golden root from $UNCLIP_GOLDENS) */
#include "io/safetensors.h"
#include "testutil.h"

#include <glib.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/wait.h>

static const char *exe;
static char tmp[4096];

/* Runs the CLI; returns the exit code (-1 when it could not run), stderr in *err_out. */
static int
run(const char *const *args, char **err_out)
{
    GPtrArray *av = g_ptr_array_new();
    g_ptr_array_add(av, (gpointer)exe);
    for (int i = 0; args[i]; i++)
        g_ptr_array_add(av, (gpointer)args[i]);
    g_ptr_array_add(av, NULL);
    gchar *out = NULL, *err = NULL;
    gint status = 0;
    int code = -1;
    if (g_spawn_sync(NULL, (gchar **)av->pdata, NULL, 0, NULL, NULL, &out, &err, &status, NULL))
        code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    g_ptr_array_free(av, TRUE);
    g_free(out);
    if (err_out)
        *err_out = err;
    else
        g_free(err);
    return code;
}

/* Compares ours[our_name] row `row` with golden[gname] (whole tensor, batch 1). */
static void
compare(const struct unclip_st_file *ours, const char *our_name, int64_t row,
        const struct unclip_st_file *gold, const char *gname, const char *what)
{
    const struct unclip_st_tensor *o = unclip__st_find(ours, our_name);
    const struct unclip_st_tensor *g = unclip__st_find(gold, gname);
    TU_CHECK(o && g, "%s: %s or %s missing", what, our_name, gname);
    if (!o || !g)
        return;
    int64_t n = g->numel;
    TU_CHECK(o->numel >= (row + 1) * n, "%s: %s has %lld values, want row %lld of %lld", what,
             our_name, (long long)o->numel, (long long)row, (long long)n);
    if (o->numel < (row + 1) * n)
        return;
    if (g->dtype == UNCLIP_DT_I64) {
        int64_t *x = g_new(int64_t, o->numel), *y = g_new(int64_t, n);
        unclip__st_to_i64(o, x, NULL);
        unclip__st_to_i64(g, y, NULL);
        TU_CHECK(!memcmp(x + row * n, y, (size_t)n * sizeof(int64_t)), "%s: %s differ", what,
                 gname);
        g_free(x);
        g_free(y);
    } else {
        float *x = g_new(float, o->numel), *y = g_new(float, n);
        unclip__st_to_f32(o, x, NULL);
        unclip__st_to_f32(g, y, NULL);
        double e = tu_rel_l2(x + row * n, y, n);
        printf("  %-40s rel L2 %.2e\n", gname, e);
        TU_CHECK(e <= 1e-4, "%s: %s rel L2 %.3e", what, gname, e);
        g_free(x);
        g_free(y);
    }
}

static void
check_run(const char *root, const char *run_name, JsonObject *kwargs, const char *models_t2i,
          const char *models_var)
{
    char *gpath = g_strdup_printf("%s/goldens/e2e_%s.safetensors", root, run_name);
    char *opath = g_strdup_printf("%s/%s.safetensors", tmp, run_name);
    struct unclip_st_file *g = NULL, *o = NULL;
    struct unclip_err err = {0};
    TU_CHECK(unclip__st_open(gpath, &g, &err) == UNCLIP_OK, "%s", err.msg);
    const char *prompt = json_object_get_string_member_with_default(kwargs, "prompt", NULL);
    const char *image = json_object_get_string_member_with_default(kwargs, "image", NULL);
    char *stderr_text = NULL;
    if (g && prompt) {
        printf("%s: embed-text \"%s\" \"\"\n", run_name, prompt);
        const char *args[] = {"embed-text", "--fp32", "-q", "--model", models_t2i, "-o", opath,
                              "--", prompt, "", NULL};
        int code = run(args, &stderr_text);
        TU_CHECK(code == 0, "embed-text exit %d: %s", code, stderr_text);
        if (code == 0 && unclip__st_open(opath, &o, &err) == UNCLIP_OK) {
            compare(o, "input_ids", 0, g, "text_encoder_call0_input_ids", run_name);
            compare(o, "text_embeds", 0, g, "text_encoder_call0_text_embeds", run_name);
            compare(o, "last_hidden_state", 0, g, "text_encoder_call0_last_hidden_state",
                    run_name);
            compare(o, "input_ids", 1, g, "text_encoder_call1_input_ids", run_name);
            compare(o, "text_embeds", 1, g, "text_encoder_call1_text_embeds", run_name);
            compare(o, "last_hidden_state", 1, g, "text_encoder_call1_last_hidden_state",
                    run_name);
        }
    } else if (g && image && unclip__st_find(g, "image_encoder_image_embeds")) {
        char *png = g_strdup_printf("%s/goldens/images/%s.png", root, image);
        printf("%s: embed-image %s\n", run_name, png);
        const char *args[] = {"embed-image", "--fp32", "-q", "--model", models_var, "-o", opath,
                              png, NULL};
        int code = run(args, &stderr_text);
        TU_CHECK(code == 0, "embed-image exit %d: %s", code, stderr_text);
        if (code == 0 && unclip__st_open(opath, &o, &err) == UNCLIP_OK) {
            compare(o, "pixel_values", 0, g, "image_encoder_pixel_values", run_name);
            compare(o, "image_embeds", 0, g, "image_encoder_image_embeds", run_name);
        }
        g_free(png);
        /* The variations pipeline encodes "" with the variations folder's text encoder and
         * tokenizer (reached through link stubs in the goldens). */
        printf("%s: embed-text \"\" (variations folder)\n", run_name);
        unclip__st_close(o);
        o = NULL;
        g_free(stderr_text);
        stderr_text = NULL;
        const char *targs[] = {"embed-text", "--fp32", "-q", "--model", models_var, "-o", opath,
                               "", NULL};
        code = run(targs, &stderr_text);
        TU_CHECK(code == 0, "embed-text (variations) exit %d: %s", code, stderr_text);
        if (code == 0 && unclip__st_open(opath, &o, &err) == UNCLIP_OK) {
            compare(o, "input_ids", 0, g, "text_encoder_call0_input_ids", run_name);
            compare(o, "text_embeds", 0, g, "text_encoder_call0_text_embeds", run_name);
            compare(o, "last_hidden_state", 0, g, "text_encoder_call0_last_hidden_state",
                    run_name);
        }
    }
    g_free(stderr_text);
    unclip__st_close(o);
    unclip__st_close(g);
    g_free(gpath);
    g_free(opath);
}

static void
check_failures(const char *t2i, const char *root)
{
    char *out = g_strdup_printf("%s/fail.safetensors", tmp);
    char *e = NULL;
    int code = run((const char *const[]){"embed-text", "-o", out, "a cat", NULL}, &e);
    TU_CHECK(code == 2 && strstr(e, "--model"), "no --model: exit %d, %s", code, e);
    g_free(e);
    code = run((const char *const[]){"embed-text", "--model", "/nonexistent/model", "-o", out,
                                     "a cat", NULL}, &e);
    TU_CHECK(code == 1 && strstr(e, "/nonexistent/model"), "missing model: exit %d, %s", code,
             e);
    g_free(e);
    /* tiny-karlo has no image encoder */
    char *png = g_strdup_printf("%s/goldens/images/img0_gradient_64x64.png", root);
    code = run((const char *const[]){"embed-image", "--model", t2i, "-o", out, png, NULL}, &e);
    TU_CHECK(code == 1 && strstr(e, "image_encoder"), "text-only model: exit %d, %s", code, e);
    g_free(e);
    /* not a PNG */
    char *json = g_strdup_printf("%s/goldens/manifest.json", root);
    code = run((const char *const[]){"embed-image", "--model", t2i, "-o", out, json, NULL}, &e);
    TU_CHECK(code == 1 && strstr(e, "not a PNG"), "not a PNG: exit %d, %s", code, e);
    g_free(e);
    TU_CHECK(!g_file_test(out, G_FILE_TEST_EXISTS), "a failed run left %s", out);
    g_free(json);
    g_free(png);
    g_free(out);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test-clip-cli UNCLIP_EXE\n");
        return 2;
    }
    exe = argv[1];
    char root[4096];
    snprintf(root, sizeof root, "%s", tu_golden_path(""));
    size_t rl = strlen(root);
    if (rl > 1 && root[rl - 1] == '/')
        root[rl - 1] = '\0';
    snprintf(tmp, sizeof tmp, "%s/unclip-clip-cli-XXXXXX", g_get_tmp_dir());
    if (!g_mkdtemp(tmp))
        return 1;
    char *mpath = g_strdup_printf("%s/goldens/manifest.json", root);
    JsonParser *p = json_parser_new();
    if (!json_parser_load_from_file(p, mpath, NULL)) {
        printf("cannot read %s\n", mpath);
        return 1;
    }
    JsonObject *m = json_node_get_object(json_parser_get_root(p));
    JsonObject *dirs = json_object_get_object_member(m, "model_dirs");
    char *t2i = g_strdup_printf("%s/%s", root, json_object_get_string_member(
        json_object_get_object_member(dirs, "tiny_karlo"), "path"));
    char *var = g_strdup_printf("%s/%s", root, json_object_get_string_member(
        json_object_get_object_member(dirs, "tiny_karlo_variations"), "path"));
    JsonObject *e2e = json_object_get_object_member(m, "e2e");
    GList *runs = json_object_get_members(e2e);
    GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (GList *l = runs; l; l = l->next) {
        JsonObject *spec = json_object_get_object_member(
            json_object_get_object_member(e2e, l->data), "spec");
        JsonObject *kw = spec ? json_object_get_object_member(spec, "kwargs") : NULL;
        if (!kw)
            continue;
        /* one run per distinct prompt / image */
        const char *key = json_object_get_string_member_with_default(
            kw, "prompt", json_object_get_string_member_with_default(kw, "image", NULL));
        if (!key || g_hash_table_contains(seen, key))
            continue;
        g_hash_table_add(seen, g_strdup(key));
        check_run(root, l->data, kw, t2i, var);
    }
    TU_CHECK(g_hash_table_size(seen) >= 3, "expected prompts A, B and an image in the e2e runs");
    check_failures(t2i, root);
    g_hash_table_destroy(seen);
    g_list_free(runs);
    g_free(t2i);
    g_free(var);
    g_object_unref(p);
    g_free(mpath);
    gchar *rm[] = {"rm", "-rf", tmp, NULL};
    g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    return tu_summary("clip-cli");
}
