/* Interpolation and text diffs on small copies of the tiny golden models (golden weights,
 * 8x8 decoder and 32x32 super-res pictures: tp_small_model) in short runs:
 *   - the first and last interpolation frames are, bit for bit, the ends' own pictures with
 *     the same seed (variations of two images; text to image of two prompts), and their
 *     image embeddings are the ends' embeddings; the middle frame differs from both;
 *   - a text diff with amount 0 is the source's own picture; a non-zero amount keeps the
 *     embedding's norm and turns it towards the caption direction;
 *   - progress reports every stage in order with a non-decreasing fraction reaching 1;
 *   - dump_dir receives the run's tensors under the golden names (images_u8 equal to the
 *     returned picture). */
#include "test-pipeline-common.h"

#include <glib/gstdio.h>
#include <math.h>

struct prog {
    int calls;
    double last;
    bool monotonic;
    char stages[8][32];
    int n_stages;
};

static void
on_progress(const struct unclip_progress *p, void *user)
{
    struct prog *g = user;
    g->calls++;
    if (p->fraction + 1e-12 < g->last)
        g->monotonic = false;
    g->last = p->fraction;
    if (p->step == 0 && g->n_stages < 8)
        snprintf(g->stages[g->n_stages++], 32, "%s", p->stage);
}

static double
cosine(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s / (tp_norm(a, n) * tp_norm(b, n));
}

static const char *const WANT[] = {"image_embeddings", "image_encoder_image_embeds",
                                   "text_diff_direction", NULL};

static void
test_images(struct unclip_ctx *ctx)
{
    char *dir = tp_small_model("models/tiny-karlo-variations");
    struct unclip_model *m = tp_model_at(ctx, dir);
    if (!m) {
        if (dir)
            tp_rmtree(dir);
        g_free(dir);
        return;
    }
    struct unclip_image i0 = tp_image(0), i2 = tp_image(2);
    struct unclip_source s0 = {.kind = UNCLIP_SOURCE_IMAGE, .image = &i0};
    struct unclip_source s2 = {.kind = UNCLIP_SOURCE_IMAGE, .image = &i2};
    struct unclip_run_params p = tp_params(4242);
    struct unclip_result r0 = {0}, r2 = {0}, fr = {0}, td = {0};

    /* Variations of the two ends, the first with progress and a dump. */
    char *dump = g_build_filename(g_get_tmp_dir(), "unclip-frames-XXXXXX", NULL);
    TU_CHECK(g_mkdtemp(dump) != NULL, "mkdtemp");
    char *dump_dir = g_build_filename(dump, "d", NULL);
    struct prog pg = {.monotonic = true};
    struct unclip_run_params pd = p;
    pd.progress_cb = on_progress;
    pd.user_data = &pg;
    pd.dump_dir = dump_dir;
    unclip_status st = unclip_run_variations(m, &s0, &pd, &r0);
    TU_CHECK(st == UNCLIP_OK, "variations of picture 0: %s", unclip_ctx_last_error(ctx));
    st = unclip_run_variations(m, &s2, &p, &r2);
    TU_CHECK(st == UNCLIP_OK, "variations of picture 2: %s", unclip_ctx_last_error(ctx));
    if (!r0.n_images || !r2.n_images)
        goto out;
    TU_CHECK(r0.n_images == 1 && r0.images[0].width == TP_SMALL_SR &&
                 r0.images[0].height == TP_SMALL_SR && r0.images[0].channels == 3,
             "variations: %d pictures of %dx%d", (int)r0.n_images, (int)r0.images[0].width,
             (int)r0.images[0].height);
    const char *want_stages[] = {"text_encoder", "image_encoder", "decoder", "super_res_first",
                                 "super_res_last"};
    TU_CHECK(pg.n_stages == 5, "progress saw %d stages", pg.n_stages);
    for (int i = 0; i < 5 && i < pg.n_stages; i++)
        TU_CHECK(!strcmp(pg.stages[i], want_stages[i]), "stage %d is %s, want %s", i,
                 pg.stages[i], want_stages[i]);
    TU_CHECK(pg.monotonic && fabs(pg.last - 1.0) < 1e-9, "progress fraction: monotonic %d, "
             "last %.6f", pg.monotonic, pg.last);
    TU_CHECK(r0.stats.n_stages == 5 && r0.stats.stages[2].steps == 2 &&
                 r0.stats.stages[2].weight_bytes > 0 && r0.stats.device_peak_bytes > 0,
             "stats: %d stages", (int)r0.stats.n_stages);
    /* The dump: one file for the run, holding the pictures returned. */
    char *dfile = g_build_filename(dump_dir, "run.safetensors", NULL);
    struct unclip_err e = {0};
    struct unclip_st_file *f = NULL;
    TU_CHECK(unclip__st_open(dfile, &f, &e) == UNCLIP_OK, "dump: %s", e.msg);
    if (f) {
        const struct unclip_st_tensor *t = unclip__st_find(f, "images_u8");
        TU_CHECK(t && t->dtype == UNCLIP_DT_U8 && t->numel == TP_SMALL_SR * TP_SMALL_SR * 3 &&
                     !memcmp(t->data, r0.images[0].pixels, (size_t)t->numel),
                 "dump: images_u8 is not the picture returned");
        const char *names[] = {"text_encoder_call0_input_ids", "image_encoder_pixel_values",
                               "image_embeddings", "decoder_step1_prev_sample",
                               "noise_00_decoder_initial_latents", "image_upscaled",
                               "super_res_step1_unet", "images"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            TU_CHECK(unclip__st_find(f, names[i]) != NULL, "dump lacks %s", names[i]);
        printf("  dump: %d tensors in run.safetensors\n", (int)unclip__st_count(f));
        unclip__st_close(f);
    }
    g_free(dfile);

    /* Interpolation between the two pictures: 3 frames. */
    struct tp_trace tr;
    tp_trace_init(&tr, WANT);
    struct unclip__trace trace = {.put = tp_trace_put, .user = &tr};
    struct unclip__request rq = {
        .kind = UNCLIP__REQ_INTERPOLATION, .sources = {&s0, &s2}, .n_sources = 2,
        .n_frames = 3,
    };
    st = unclip__pipeline_run(m, &rq, &p, &trace, &fr);
    TU_CHECK(st == UNCLIP_OK && fr.n_images == 3, "interpolation: %s",
             unclip_ctx_last_error(ctx));
    if (st == UNCLIP_OK) {
        tp_check_same("interpolation frame 0 vs variations of picture 0", &fr.images[0],
                   &r0.images[0]);
        tp_check_same("interpolation frame 2 vs variations of picture 2", &fr.images[2],
                   &r2.images[0]);
        double d0 = tp_mean_abs_diff(&fr.images[1], &r0.images[0]);
        double d2 = tp_mean_abs_diff(&fr.images[1], &r2.images[0]);
        printf("  middle frame: mean |diff| %.2f / %.2f levels to the ends\n", d0, d2);
        TU_CHECK(d0 > 0.5 && d2 > 0.5, "the middle frame equals an end");
        const GArray *e0 = tp_trace_get(&tr, "source-0", "image_encoder_image_embeds");
        const GArray *e2 = tp_trace_get(&tr, "source-1", "image_encoder_image_embeds");
        const GArray *f0 = tp_trace_get(&tr, "frame-000", "image_embeddings");
        const GArray *f1 = tp_trace_get(&tr, "frame-001", "image_embeddings");
        const GArray *f2 = tp_trace_get(&tr, "frame-002", "image_embeddings");
        if (e0 && e2 && f0 && f1 && f2) {
            int64_t E = e0->len;
            const float *a = (float *)e0->data, *b = (float *)e2->data, *mid = (float *)f1->data;
            TU_CHECK(!memcmp(f0->data, a, E * 4), "frame 0's embedding is not end 0's");
            TU_CHECK(!memcmp(f2->data, b, E * 4), "frame 2's embedding is not end 1's");
            double want = 0.5 * (tp_norm(a, E) + tp_norm(b, E));
            TU_CHECK(fabs(tp_norm(mid, E) - want) < 1e-5 * want, "middle norm %.6f, want %.6f",
                     tp_norm(mid, E), want);
            TU_CHECK(fabs(cosine(mid, a, E) - cosine(mid, b, E)) < 1e-5,
                     "the middle embedding is not halfway (cos %.6f / %.6f)", cosine(mid, a, E),
                     cosine(mid, b, E));
        }
    }
    tp_trace_clear(&tr);

    /* Text diff: amount 0 gives the picture's own decoding; 0.5 moves it. */
    tp_trace_init(&tr, WANT);
    const float amounts[2] = {0.0f, 0.5f};
    struct unclip__request rd = {
        .kind = UNCLIP__REQ_TEXT_DIFF, .sources = {&s0}, .n_sources = 1,
        .diff_from = "a photo of a cat", .diff_to = "an anime drawing of a cat",
        .amounts = amounts, .n_amounts = 2,
    };
    st = unclip__pipeline_run(m, &rd, &p, &trace, &td);
    TU_CHECK(st == UNCLIP_OK && td.n_images == 2, "text diff: %s", unclip_ctx_last_error(ctx));
    if (st == UNCLIP_OK) {
        tp_check_same("text diff amount 0 vs variations of picture 0", &td.images[0],
                   &r0.images[0]);
        double d = tp_mean_abs_diff(&td.images[1], &r0.images[0]);
        printf("  text diff amount 0.5: mean |diff| %.2f levels to the source\n", d);
        TU_CHECK(d > 0.5, "text diff 0.5 did not change the picture");
        const GArray *zi = tp_trace_get(&tr, "source-0", "image_encoder_image_embeds");
        const GArray *zd = tp_trace_get(&tr, "source-0", "text_diff_direction");
        const GArray *z1 = tp_trace_get(&tr, "frame-001", "image_embeddings");
        const GArray *z0 = tp_trace_get(&tr, "frame-000", "image_embeddings");
        if (zi && zd && z1 && z0) {
            int64_t E = zi->len;
            const float *vi = (float *)zi->data, *vd = (float *)zd->data, *v1 = (float *)z1->data;
            TU_CHECK(!memcmp(z0->data, vi, E * 4), "amount 0 changed the embedding");
            TU_CHECK(fabs(tp_norm(vd, E) - 1.0) < 1e-5, "|z_d| = %.6f", tp_norm(vd, E));
            TU_CHECK(fabs(tp_norm(v1, E) - tp_norm(vi, E)) < 1e-5 * tp_norm(vi, E),
                     "amount 0.5 changed the norm: %.6f vs %.6f", tp_norm(v1, E), tp_norm(vi, E));
            double om = acos(cosine(vi, vd, E)), o1 = acos(cosine(vi, v1, E));
            TU_CHECK(fabs(o1 - 0.5 * om) < 1e-4, "amount 0.5 turned %.5f rad of %.5f", o1, om);
            printf("  text diff: angle to z_d %.4f rad, moved %.4f rad, norm kept %.4f\n", om,
                   o1, tp_norm(v1, E));
        }
    }
    tp_trace_clear(&tr);

out:
    unclip_result_clear(&r0);
    unclip_result_clear(&r2);
    unclip_result_clear(&fr);
    unclip_result_clear(&td);
    gchar *rm[] = {"rm", "-rf", dump, NULL};
    g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    g_free(dump_dir);
    g_free(dump);
    g_free(i0.pixels);
    g_free(i2.pixels);
    unclip_model_free(m);
    tp_rmtree(dir);
    g_free(dir);
}

static void
test_prompts(struct unclip_ctx *ctx)
{
    char *dir = tp_small_model("models/tiny-karlo");
    struct unclip_model *m = tp_model_at(ctx, dir);
    if (!m) {
        if (dir)
            tp_rmtree(dir);
        g_free(dir);
        return;
    }
    const char *a = "a high-resolution photograph of a big red frog on a green leaf.";
    const char *b = "a blue square";
    struct unclip_run_params p = tp_params(1234);
    struct unclip_result ga = {0}, gb = {0}, fr = {0};
    unclip_status st = unclip_run_text_to_image(m, a, &p, &ga);
    TU_CHECK(st == UNCLIP_OK, "text to image A: %s", unclip_ctx_last_error(ctx));
    st = unclip_run_text_to_image(m, b, &p, &gb);
    TU_CHECK(st == UNCLIP_OK, "text to image B: %s", unclip_ctx_last_error(ctx));
    struct unclip_source sa = {.kind = UNCLIP_SOURCE_PROMPT, .prompt = a};
    struct unclip_source sb = {.kind = UNCLIP_SOURCE_PROMPT, .prompt = b};
    st = unclip_run_interpolation(m, &sa, &sb, 3, &p, &fr);
    TU_CHECK(st == UNCLIP_OK && fr.n_images == 3, "prompt interpolation: %s",
             unclip_ctx_last_error(ctx));
    if (st == UNCLIP_OK && ga.n_images && gb.n_images) {
        tp_check_same("prompt interpolation frame 0 vs text to image of A", &fr.images[0],
                   &ga.images[0]);
        tp_check_same("prompt interpolation frame 2 vs text to image of B", &fr.images[2],
                   &gb.images[0]);
        double d0 = tp_mean_abs_diff(&fr.images[1], &ga.images[0]);
        double d2 = tp_mean_abs_diff(&fr.images[1], &gb.images[0]);
        printf("  middle frame: mean |diff| %.2f / %.2f levels to the ends\n", d0, d2);
        TU_CHECK(d0 > 0.5 && d2 > 0.5, "the middle frame equals an end");
    }
    unclip_result_clear(&ga);
    unclip_result_clear(&gb);
    unclip_result_clear(&fr);
    unclip_model_free(m);
    tp_rmtree(dir);
    g_free(dir);
}

int
main(void)
{
    struct unclip_ctx *ctx = tp_ctx();
    if (!ctx)
        return 77;
    gint64 t0 = g_get_monotonic_time();
    test_images(ctx);
    gint64 t1 = g_get_monotonic_time();
    test_prompts(ctx);
    gint64 t2 = g_get_monotonic_time();
    printf("  times: pictures %.1f s, prompts %.1f s\n", (t1 - t0) / 1e6, (t2 - t1) / 1e6);
    unclip_ctx_free(ctx);
    return tu_summary("pipeline-frames");
}
