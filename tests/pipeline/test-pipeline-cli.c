/* The picture commands of the CLI: usage errors exit 2, failures exit 1 with a clear
 * message, and one short run writes its pictures under the documented names with a dump.
 * interpolate --at gives the --frames pictures at those positions (pixel for pixel, in the
 * order given), --decoder-only writes the decoder's own small pictures.
 *
 *   test-pipeline-cli UNCLIP_EXE */
#include "test-pipeline-common.h"

#include "../../cli/png-io.h"

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

/* "embedding:FILE" for golden image embedding k written into dir (NULL on failure). */
static char *
embedding_source(const char *dir, int k)
{
    int32_t E = 0;
    float *emb = tp_embedding(k, &E);
    char name[32];
    snprintf(name, sizeof name, "emb%d.safetensors", k);
    char *file = g_build_filename(dir, name, NULL);
    struct unclip_st_writer *w = NULL;
    struct unclip_err e = {0};
    int64_t shape[2] = {1, E};
    bool ok = emb && !unclip__st_writer_new(&w, &e) &&
              !unclip__st_writer_add_f32(w, "image_embeds", UNCLIP_DT_F32, 2, shape, emb, &e) &&
              !unclip__st_writer_write(w, file, &e);
    TU_CHECK(ok, "writing embedding %d: %s", k, e.msg);
    unclip__st_writer_free(w);
    g_free(emb);
    char *src = ok ? g_strdup_printf("embedding:%s", file) : NULL;
    g_free(file);
    return src;
}

/* Reads dir/name (a PNG the CLI wrote); false with a failed check when it cannot. */
static bool
read_png(const char *dir, const char *name, struct unclip_image *img)
{
    char *f = g_build_filename(dir, name, NULL), err[1024];
    bool ok = cli_png_read(f, img, err, sizeof err);
    TU_CHECK(ok, "%s: %s", name, err);
    g_free(f);
    return ok;
}

/* PNG `a` and `b` in dir hold the same pixels (and both exist). */
static void
check_same_png(const char *dir, const char *a, const char *b)
{
    struct unclip_image ia = {0}, ib = {0};
    if (read_png(dir, a, &ia) && read_png(dir, b, &ib)) {
        bool same = tp_same_image(&ia, &ib);
        TU_CHECK(same, "%s (%dx%d) and %s (%dx%d) differ (mean |diff| %.3f levels)", a,
                 (int)ia.width, (int)ia.height, b, (int)ib.width, (int)ib.height,
                 ia.width == ib.width && ia.height == ib.height && ia.channels == ib.channels
                     ? tp_mean_abs_diff(&ia, &ib)
                     : -1.0);
        if (same)
            printf("  %s == %s (%dx%d)\n", a, b, (int)ia.width, (int)ia.height);
    }
    free(ia.pixels);
    free(ib.pixels);
}

/* PNG dir/name is size x size RGB. */
static void
check_png_size(const char *dir, const char *name, int size)
{
    struct unclip_image img = {0};
    if (read_png(dir, name, &img)) {
        TU_CHECK(img.width == size && img.height == size && img.channels == 3,
                 "%s is %dx%dx%d, want %dx%dx3", name, (int)img.width, (int)img.height,
                 (int)img.channels, size, size);
        printf("  %s: %dx%d\n", name, (int)img.width, (int)img.height);
    }
    free(img.pixels);
}

static bool
exists_in(const char *dir, const char *name)
{
    char *f = g_build_filename(dir, name, NULL);
    bool e = g_file_test(f, G_FILE_TEST_EXISTS);
    g_free(f);
    return e;
}

/* interpolate --at and --decoder-only on small copies of the golden models (8x8 decoder,
 * 32x32 pictures): real runs compared with each other. */
static void
positions_and_decoder_only(const char *tmp, const char *small_var, const char *small_t2i)
{
    char *a = embedding_source(tmp, 1), *b = embedding_source(tmp, 3);
    if (!a || !b || !small_var) {
        TU_CHECK(false, "no small model or embeddings for the --at / --decoder-only runs");
        g_free(a);
        g_free(b);
        return;
    }
    char *o = NULL;
    int rc;
    char *evenly = g_build_filename(tmp, "f-%d.png", NULL);
    char *at = g_build_filename(tmp, "at-%d.png", NULL);
    char *pv = g_build_filename(tmp, "pv.png", NULL);
    char *vd = g_build_filename(tmp, "vd.png", NULL);
    char *gd = g_build_filename(tmp, "gd.png", NULL);

    /* Evenly spaced frames, then the same positions in another order: equal pixel for
     * pixel (shared noise), in the order given. */
    rc = run(&o, "interpolate", "--model", small_var, "--seed", "5", "--decoder-steps", "2",
             "--sr-steps", "2", "--from", a, "--to", b, "--frames", "3", "-o", evenly, NULL);
    TU_CHECK(rc == 0, "interpolate --frames 3: exit %d: %s", rc, o);
    g_free(o);
    rc = run(&o, "interpolate", "--model", small_var, "--seed", "5", "--decoder-steps", "2",
             "--sr-steps", "2", "--from", a, "--to", b, "--at", "1, 0.5", "--at", "0", "-o", at,
             NULL);
    TU_CHECK(rc == 0, "interpolate --at 1,0.5 --at 0: exit %d: %s", rc, o);
    TU_CHECK(strstr(o, "at-2.png") && !strstr(o, "at-3.png"),
             "interpolate --at with 3 positions did not report 3 frames: %s", o);
    g_free(o);
    check_same_png(tmp, "at-0.png", "f-2.png");
    check_same_png(tmp, "at-1.png", "f-1.png");
    check_same_png(tmp, "at-2.png", "f-0.png");
    check_png_size(tmp, "f-1.png", TP_SMALL_SR);
    /* the ends must differ, or the order check above proves nothing */
    struct unclip_image e0 = {0}, e2 = {0};
    if (read_png(tmp, "f-0.png", &e0) && read_png(tmp, "f-2.png", &e2))
        TU_CHECK(!tp_same_image(&e0, &e2), "frames 0 and 2 are the same picture");
    free(e0.pixels);
    free(e2.pixels);
    TU_CHECK(!exists_in(tmp, "at-3.png"), "a fourth --at frame was written");

    /* --decoder-only: the decoder's sample size, no super-resolution stage run. */
    rc = run(&o, "interpolate", "--model", small_var, "--seed", "5", "--decoder-steps", "2",
             "--from", a, "--to", b, "--at", "0.5", "--decoder-only", "--stats", "-o", pv,
             NULL);
    TU_CHECK(rc == 0 && strstr(o, "decoder") && !strstr(o, "super_res"),
             "interpolate --at 0.5 --decoder-only --stats: exit %d: %s", rc, o);
    g_free(o);
    check_png_size(tmp, "pv.png", TP_SMALL_DECODER);
    TU_CHECK(!exists_in(tmp, "pv-1.png"), "--at 0.5 wrote a second picture");
    rc = run(&o, "variations", "--model", small_var, "--seed", "5", "--decoder-steps", "2",
             "--decoder-only", "-o", vd, a, NULL);
    TU_CHECK(rc == 0, "variations --decoder-only: exit %d: %s", rc, o);
    g_free(o);
    check_png_size(tmp, "vd.png", TP_SMALL_DECODER);
    if (small_t2i) {
        rc = run(&o, "generate", "--model", small_t2i, "--seed", "5", "--prior-steps", "2",
                 "--decoder-steps", "2", "--decoder-only", "-o", gd, "a frog", NULL);
        TU_CHECK(rc == 0, "generate --decoder-only: exit %d: %s", rc, o);
        g_free(o);
        check_png_size(tmp, "gd.png", TP_SMALL_DECODER);
    } else {
        TU_CHECK(false, "no small text-to-image model");
    }
    g_free(a);
    g_free(b);
    g_free(evenly);
    g_free(at);
    g_free(pv);
    g_free(vd);
    g_free(gd);
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
    static const char *const bad_at[][2] = {
        {"abc", "not 'abc'"},          {"1.5", "position 1.5 is outside [0, 1]"},
        {"-0.25", "outside [0, 1]"},   {"", "at least one position"},
        {"0,,1", "empty position"},    {"0.5,", "empty position"},
        {"nan", "not 'nan'"},          {"0.2x", "not '0.2x'"},
    };
    for (size_t i = 0; i < sizeof bad_at / sizeof bad_at[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "interpolate --at '%s'", bad_at[i][0]);
        rc = run(&o, "interpolate", "--model", var, "-o", "x.png", "--from", "text:a", "--to",
                 "text:b", "--at", bad_at[i][0], NULL);
        expect(2, bad_at[i][1], what, rc, o);
        g_free(o);
    }
    rc = run(&o, "interpolate", "--model", var, "-o", "x.png", "--from", "text:a", "--to",
             "text:b", "--at", "0.5", "--frames", "3", NULL);
    expect(2, "either --frames", "interpolate --at with --frames", rc, o);
    g_free(o);
    rc = run(&o, "generate", "--help", NULL);
    expect(0, "--prior-guidance", "generate --help", rc, o);
    expect(0, "unclip generate [OPTION", "generate --help names the program", rc, o);
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

    char *small_t2i = tp_small_model("models/tiny-karlo");
    positions_and_decoder_only(tmp, small, small_t2i);
    if (small_t2i)
        tp_rmtree(small_t2i);
    g_free(small_t2i);

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
