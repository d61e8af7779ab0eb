/* The picture commands of the CLI: usage errors exit 2, failures exit 1 with a clear
 * message, and one short run writes its pictures under the documented names with a dump.
 *
 *   test-pipeline-cli UNCLIP_EXE */
#include "test-pipeline-common.h"

#include <glib/gstdio.h>

static const char *exe;

/* Runs exe with args; returns the exit code (-1 when it did not run), output in *out. */
static int
run(char **out, const char *first, ...)
{
    GPtrArray *av = g_ptr_array_new();
    g_ptr_array_add(av, (gpointer)exe);
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        g_ptr_array_add(av, (gpointer)a);
    va_end(ap);
    g_ptr_array_add(av, NULL);
    gchar *so = NULL, *se = NULL;
    gint status = 0;
    bool ok = g_spawn_sync(NULL, (gchar **)av->pdata, NULL, 0, NULL, NULL, &so, &se, &status,
                           NULL);
    g_ptr_array_free(av, TRUE);
    *out = g_strconcat(so ? so : "", se ? se : "", NULL);
    g_free(so);
    g_free(se);
    if (!ok)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
expect(int want, const char *needle, const char *what, int got, const char *out)
{
    TU_CHECK(got == want && (!needle || strstr(out, needle)),
             "%s: exit %d (want %d), output '%s' (want '%s')", what, got, want, out,
             needle ? needle : "");
    printf("  %-36s exit %d: %.*s\n", what, got, (int)strcspn(out, "\n"), out);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test-pipeline-cli UNCLIP_EXE\n");
        return 2;
    }
    exe = argv[1];
    char *t2i = tp_model_dir("models/tiny-karlo");
    char *var = tp_model_dir("models/tiny-karlo-variations");
    char *img = g_strdup(tu_golden_path("goldens/images/img1_shapes_96x80.png"));
    char *tmp = g_build_filename(g_get_tmp_dir(), "unclip-cli-XXXXXX", NULL);
    TU_CHECK(g_mkdtemp(tmp) != NULL, "mkdtemp");
    char *o = NULL;
    int rc;

    /* Usage errors: 2. */
    rc = run(&o, "generate", NULL);
    expect(2, "--model", "generate without options", rc, o);
    g_free(o);
    rc = run(&o, "generate", "--model", t2i, "-o", "x.png", NULL);
    expect(2, "PROMPT", "generate without a prompt", rc, o);
    g_free(o);
    rc = run(&o, "generate", "--model", t2i, "-o", "x.png", "--seed", "-3", "a", NULL);
    expect(2, "--seed", "generate with a negative seed", rc, o);
    g_free(o);
    rc = run(&o, "generate", "--model", t2i, "-o", "x.png", "-n", "0", "a", NULL);
    expect(2, "-n", "generate -n 0", rc, o);
    g_free(o);
    rc = run(&o, "generate", "--model", t2i, "-o", "x.png", "--bogus", "a", NULL);
    expect(2, "bogus", "generate with an unknown option", rc, o);
    g_free(o);
    rc = run(&o, "interpolate", "--model", var, "-o", "x.png", "--from", img, NULL);
    expect(2, "--to", "interpolate without --to", rc, o);
    g_free(o);
    rc = run(&o, "text-diff", "--model", var, "-o", "x.png", "--from", "a", "--to", "b",
             "--amount", "lots", img, NULL);
    expect(2, "--amount", "text-diff with a bad amount", rc, o);
    g_free(o);
    rc = run(&o, "variations", "--model", var, "-o", "x.png", "text:a frog", NULL);
    expect(2, "generate", "variations of a prompt", rc, o);
    g_free(o);
    rc = run(&o, "generate", "--help", NULL);
    expect(0, "--prior-guidance", "generate --help", rc, o);
    g_free(o);

    /* Failures: 1 with the reason. */
    rc = run(&o, "variations", "--model", t2i, "-o", "x.png", "--seed", "1", img, NULL);
    expect(1, "image_encoder/", "variations on a text-to-image folder", rc, o);
    g_free(o);
    rc = run(&o, "generate", "--model", var, "-o", "x.png", "--seed", "1", "a frog", NULL);
    expect(1, "prior/", "generate on a variations folder", rc, o);
    g_free(o);
    rc = run(&o, "variations", "--model", var, "-o", "x.png", "--seed", "1", "/nonexistent.png",
             NULL);
    expect(1, "nonexistent", "variations of a missing file", rc, o);
    g_free(o);
    rc = run(&o, "interpolate", "--model", "/nonexistent-model", "-o", "x.png", "--from",
             "text:a", "--to", "text:b", NULL);
    expect(1, "nonexistent-model", "interpolate with a missing model", rc, o);
    g_free(o);

    /* One short run: an embedding file as the source, two pictures via a %d pattern, a dump.
     * On a small copy of the variations model (8x8 decoder, 32x32 pictures): what is checked
     * here is the command line, not the pictures. */
    char *small = tp_small_model("models/tiny-karlo-variations");
    int32_t E = 0;
    float *emb = tp_embedding(3, &E);
    char *efile = g_build_filename(tmp, "e.safetensors", NULL);
    struct unclip_st_writer *w = NULL;
    struct unclip_err e = {0};
    int64_t shape[2] = {1, E};
    TU_CHECK(emb && !unclip__st_writer_new(&w, &e) &&
                 !unclip__st_writer_add_f32(w, "image_embeds", UNCLIP_DT_F32, 2, shape, emb,
                                            &e) &&
                 !unclip__st_writer_write(w, efile, &e),
             "writing the embedding: %s", e.msg);
    unclip__st_writer_free(w);
    char *src = g_strdup_printf("embedding:%s", efile);
    char *pattern = g_build_filename(tmp, "v-%02d.png", NULL);
    char *dump = g_build_filename(tmp, "dump", NULL);
    rc = run(&o, "variations", "--model", small ? small : var, "--seed", "11", "-n", "2",
             "--decoder-steps", "2",
             "--sr-steps", "2", "--stats", "--dump", dump, "-o", pattern, src, NULL);
    printf("%s", o);
    TU_CHECK(rc == 0, "variations run: exit %d: %s", rc, o);
    TU_CHECK(strstr(o, "super_res_last") != NULL, "--stats printed no stage table");
    g_free(o);
    const char *files[] = {"v-00.png", "v-01.png", "dump/run.safetensors"};
    for (size_t i = 0; i < 3; i++) {
        char *f = g_build_filename(tmp, files[i], NULL);
        TU_CHECK(g_file_test(f, G_FILE_TEST_IS_REGULAR), "%s was not written", files[i]);
        g_free(f);
    }
    char *v2 = g_build_filename(tmp, "v-02.png", NULL);
    TU_CHECK(!g_file_test(v2, G_FILE_TEST_EXISTS), "a third picture was written");
    g_free(v2);

    gchar *rm[] = {"rm", "-rf", tmp, NULL};
    g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    if (small)
        tp_rmtree(small);
    g_free(small);
    g_free(emb);
    g_free(efile);
    g_free(src);
    g_free(pattern);
    g_free(dump);
    g_free(t2i);
    g_free(var);
    g_free(img);
    g_free(tmp);
    return tu_summary("pipeline-cli");
}
