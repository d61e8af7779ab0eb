/* Interpolation at chosen positions (unclip_run_interpolation_at) and decoder-only runs
 * (unclip_run_params.decoder_only), on small copies of the tiny golden models (golden weights,
 * 8x8 decoder and 32x32 super-res pictures: tp_small_model) with short runs:
 *   - a frame at position w is, bit for bit, the frame an evenly spaced run shows at that w
 *     (positions in any order, repeated); a position between two frames is a new picture
 *     whose image embedding has the lerped norm;
 *   - decoder_only returns the decoder's own size, equal to the 8-bit conversion of the
 *     decoder output of the full run, runs only the stages up to the decoder and needs no
 *     super-resolution steps;
 *   - bad positions are refused with UNCLIP_E_ARG;
 *   - unclip_ctx_params.submit_timeout_ms reaches the device: with 1 ms a run fails with
 *     UNCLIP_E_TIMEOUT naming the limit (on lavapipe; uploads there are plain copies into
 *     mapped memory, so only dispatch submissions wait on a fence). */
#include "test-pipeline-common.h"

#include <math.h>

/* Checks picture k of `got` against ref[k], k < n; pair k is called "<what> #k". */
static void
check_frames(const char *what, const struct unclip_image *got, const struct unclip_image *ref,
             int n)
{
    for (int k = 0; k < n; k++) {
        char name[160];
        snprintf(name, sizeof name, "%s #%d", what, k);
        tp_check_same(name, &got[k], &ref[k]);
    }
}

/* The n 8-bit pictures [S, S, 3] of a traced decoder output `xs` (image_small, [n, 3, S, S]
 * in -1..1), by the rule of unclip.h; NULL (a failed check) when xs holds another number of
 * values. g_free each picture's pixels and the array. */
static struct unclip_image *
decoder_pictures(const GArray *xs, int n, int32_t S)
{
    const size_t per = (size_t)3 * S * S;
    TU_CHECK((size_t)xs->len == (size_t)n * per, "image_small has %u values, want %d x 3 x %d "
             "x %d", xs->len, n, (int)S, (int)S);
    if ((size_t)xs->len != (size_t)n * per)
        return NULL;
    struct unclip_image *im = g_new0(struct unclip_image, n);
    for (int k = 0; k < n; k++) {
        const float *chw = (const float *)xs->data + (size_t)k * per;
        im[k] = (struct unclip_image){.width = S, .height = S, .channels = 3, .stride = 3 * S};
        im[k].pixels = g_malloc(per);
        for (int32_t c = 0; c < 3; c++)
            for (int32_t i = 0; i < S * S; i++) {
                float v = chw[(size_t)c * S * S + i] * 0.5f + 0.5f;
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                im[k].pixels[(size_t)i * 3 + c] = (uint8_t)nearbyintf(v * 255.0f);
            }
    }
    return im;
}

/* Checks each picture of a decoder-only result against the 8-bit decoder output `xs` that
 * the full run traced. */
static void
check_decoder_frames(const char *what, const struct unclip_result *got, const GArray *xs,
                     int32_t S)
{
    struct unclip_image *ref = decoder_pictures(xs, got->n_images, S);
    if (!ref)
        return;
    check_frames(what, got->images, ref, got->n_images);
    for (int k = 0; k < got->n_images; k++)
        g_free(ref[k].pixels);
    g_free(ref);
}

struct prog {
    char stages[8][32];
    int n_stages;
    double last;
};

static void
on_progress(const struct unclip_progress *p, void *user)
{
    struct prog *g = user;
    g->last = p->fraction;
    if (p->step == 0 && g->n_stages < 8)
        snprintf(g->stages[g->n_stages++], 32, "%s", p->stage);
}

static const char *const WANT[] = {"image_embeddings", "image_small", NULL};

static void
test_positions(struct unclip_ctx *ctx, struct unclip_model *m, const struct unclip_source *a,
               const struct unclip_source *b)
{
    struct unclip_run_params p = tp_params(777);
    struct unclip_result even = {0}, at = {0}, mid = {0};

    unclip_status st = unclip_run_interpolation(m, a, b, 5, &p, &even);
    TU_CHECK(st == UNCLIP_OK && even.n_images == 5, "5 evenly spaced frames: %s",
             unclip_ctx_last_error(ctx));
    /* any order, repeats: frames 1, 4, 0, 1 of the evenly spaced run */
    const float pos[4] = {0.25f, 1.0f, 0.0f, 0.25f};
    const int want[4] = {1, 4, 0, 1};
    st = unclip_run_interpolation_at(m, a, b, pos, 4, &p, &at);
    TU_CHECK(st == UNCLIP_OK && at.n_images == 4, "positions 0.25, 1, 0, 0.25: %s",
             unclip_ctx_last_error(ctx));
    if (even.n_images == 5 && at.n_images == 4) {
        struct unclip_image ref[4];
        for (int k = 0; k < 4; k++)
            ref[k] = even.images[want[k]];
        check_frames("positions 0.25, 1, 0, 0.25 vs evenly spaced frames 1, 4, 0, 1", at.images,
                     ref, 4);
    }

    /* A position between frames: a new picture; its embedding has the lerped norm. */
    struct tp_trace tr;
    tp_trace_init(&tr, WANT);
    struct unclip__trace trace = {.put = tp_trace_put, .user = &tr};
    const float w = 0.37f;
    struct unclip__request rq = {
        .kind = UNCLIP__REQ_INTERPOLATION, .sources = {a, b}, .n_sources = 2,
        .n_frames = 1, .positions = &w,
    };
    st = unclip__pipeline_run(m, &rq, &p, &trace, &mid);
    TU_CHECK(st == UNCLIP_OK && mid.n_images == 1, "position 0.37: %s",
             unclip_ctx_last_error(ctx));
    if (st == UNCLIP_OK && even.n_images == 5) {
        double d1 = tp_mean_abs_diff(&mid.images[0], &even.images[1]);
        double d2 = tp_mean_abs_diff(&mid.images[0], &even.images[2]);
        printf("  position 0.37: mean |diff| %.2f / %.2f levels to frames 0.25 / 0.5\n", d1,
               d2);
        TU_CHECK(d1 > 0.05 && d2 > 0.05, "position 0.37 equals a neighbouring frame");
        const GArray *z = tp_trace_get(&tr, "frame-000", "image_embeddings");
        if (z && a->kind == UNCLIP_SOURCE_EMBEDDING && b->kind == UNCLIP_SOURCE_EMBEDDING) {
            int64_t E = z->len;
            double want_norm =
                (1.0 - w) * tp_norm(a->embedding, E) + w * tp_norm(b->embedding, E);
            double got = tp_norm((const float *)z->data, E);
            TU_CHECK(fabs(got - want_norm) < 1e-5 * want_norm, "|z(0.37)| = %.6f, want %.6f",
                     got, want_norm);
        }
    }

    /* decoder_only at the same position: the decoder output of that run, 8-bit. */
    struct prog pg = {0};
    struct unclip_run_params pd = p;
    pd.decoder_only = true;
    pd.progress_cb = on_progress;
    pd.user_data = &pg;
    struct unclip_result small = {0};
    st = unclip_run_interpolation_at(m, a, b, &w, 1, &pd, &small);
    TU_CHECK(st == UNCLIP_OK && small.n_images == 1, "decoder only at 0.37: %s",
             unclip_ctx_last_error(ctx));
    const GArray *xs = tr.t ? g_hash_table_lookup(tr.t, "frame-000/image_small") : NULL;
    TU_CHECK(xs != NULL, "the full run's trace has no image_small");
    if (st == UNCLIP_OK && xs) {
        int32_t S = (int32_t)lround(sqrt(xs->len / 3.0));
        TU_CHECK(small.images[0].width == S && small.images[0].height == S &&
                     S < mid.images[0].width,
                 "decoder only: %dx%d, the decoder makes %dx%d (full run %d)",
                 (int)small.images[0].width, (int)small.images[0].height, (int)S, (int)S,
                 (int)mid.images[0].width);
        check_decoder_frames("decoder only vs the full run's decoder output", &small, xs, S);
        TU_CHECK(small.stats.n_stages == 2 && !strcmp(small.stats.stages[1].name, "decoder"),
                 "decoder only: %d stages, the last %s", (int)small.stats.n_stages,
                 small.stats.n_stages ? small.stats.stages[small.stats.n_stages - 1].name : "-");
        TU_CHECK(pg.n_stages == 2 && fabs(pg.last - 1.0) < 1e-9,
                 "decoder only: progress saw %d stages, ended at %.4f", pg.n_stages, pg.last);
    }
    tp_trace_clear(&tr);
    unclip_result_clear(&small);

    /* Super-resolution steps are not needed (nor checked) without super-resolution. */
    pd.progress_cb = NULL;
    pd.sr_steps = 0;
    st = unclip_run_interpolation_at(m, a, b, &w, 1, &pd, &small);
    TU_CHECK(st == UNCLIP_OK, "decoder only with sr_steps 0: %s", unclip_ctx_last_error(ctx));
    unclip_result_clear(&small);
    p.sr_steps = 0;
    st = unclip_run_interpolation_at(m, a, b, &w, 1, &p, &small);
    TU_CHECK(st == UNCLIP_E_ARG, "sr_steps 0 without decoder_only: status %d", (int)st);

    unclip_result_clear(&even);
    unclip_result_clear(&at);
    unclip_result_clear(&mid);
}

static void
test_bad_positions(struct unclip_ctx *ctx, struct unclip_model *m,
                   const struct unclip_source *a, const struct unclip_source *b)
{
    struct unclip_run_params p = tp_params(1);
    struct {
        float v;
        int n;
        bool null;
        const char *word;
    } cases[] = {
        {0.5f, 0, false, "positions"}, {0.5f, 1001, false, "positions"},
        {-0.01f, 1, false, "position 0"}, {1.01f, 1, false, "position 0"},
        {NAN, 1, false, "position 0"}, {INFINITY, 1, false, "position 0"},
        {0.5f, 1, true, "positions"},
    };
    float *many = g_new0(float, 1001);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct unclip_result r = {0};
        for (int k = 0; k < 1001; k++)
            many[k] = k == 0 ? cases[i].v : 0.5f;
        unclip_status st = unclip_run_interpolation_at(m, a, b, cases[i].null ? NULL : many,
                                                       cases[i].n, &p, &r);
        const char *msg = unclip_ctx_last_error(ctx);
        TU_CHECK(st == UNCLIP_E_ARG && r.n_images == 0 && strstr(msg, cases[i].word),
                 "positions case %d (%g, n %d): status %d, \"%s\"", (int)i, (double)cases[i].v,
                 cases[i].n, (int)st, msg);
    }
    g_free(many);
    printf("  %d bad position cases refused\n", (int)(sizeof cases / sizeof cases[0]));
}

/* Text to image, decoder only: the prompt's decoder output, 8-bit. */
static void
test_text_to_image(struct unclip_ctx *ctx)
{
    char *dir = NULL;
    struct unclip_model *m = tp_small_open(ctx, "models/tiny-karlo", &dir);
    if (!m)
        return;
    struct tp_trace tr;
    tp_trace_init(&tr, WANT);
    struct unclip__trace trace = {.put = tp_trace_put, .user = &tr};
    struct unclip_source s = {.kind = UNCLIP_SOURCE_PROMPT, .prompt = "a red circle"};
    struct unclip__request rq = {
        .kind = UNCLIP__REQ_TEXT_TO_IMAGE, .sources = {&s}, .n_sources = 1,
    };
    struct unclip_run_params p = tp_params(31);
    p.num_images = 2;
    struct unclip_result full = {0}, small = {0};
    unclip_status st = unclip__pipeline_run(m, &rq, &p, &trace, &full);
    TU_CHECK(st == UNCLIP_OK, "text to image: %s", unclip_ctx_last_error(ctx));
    p.decoder_only = true;
    st = unclip_run_text_to_image(m, "a red circle", &p, &small);
    TU_CHECK(st == UNCLIP_OK && small.n_images == 2, "text to image, decoder only: %s",
             unclip_ctx_last_error(ctx));
    const GArray *xs = g_hash_table_lookup(tr.t, "run/image_small");
    TU_CHECK(xs != NULL, "no image_small in the trace");
    if (st == UNCLIP_OK && xs && small.n_images == 2) {
        check_decoder_frames("text to image, decoder only", &small, xs,
                             small.images[0].width);
        TU_CHECK(small.stats.n_stages == 3, "text to image, decoder only: %d stages",
                 (int)small.stats.n_stages);
    }
    tp_trace_clear(&tr);
    unclip_result_clear(&full);
    unclip_result_clear(&small);
    tp_small_close(m, dir);
}

/* 1 ms is far below what one UNet submission takes on lavapipe (milliseconds at least). */
static void
test_submit_timeout(void)
{
    struct unclip_ctx_params cp = unclip_ctx_params_default();
    cp.fp32_weights = true;
    cp.submit_timeout_ms = 1;
    struct unclip_ctx *ctx = NULL;
    char err[1024];
    if (unclip_ctx_new(&cp, &ctx, err, sizeof err) != UNCLIP_OK) {
        TU_CHECK(false, "context with a 1 ms timeout: %s", err);
        return;
    }
    struct unclip_model *m = tp_model(ctx, "models/tiny-karlo");
    if (m) {
        struct unclip_run_params p = tp_params(5);
        struct unclip_result r = {0};
        unclip_status st = unclip_run_text_to_image(m, "a red circle", &p, &r);
        const char *msg = unclip_ctx_last_error(ctx);
        TU_CHECK(st == UNCLIP_E_TIMEOUT && strstr(msg, "within 1 ms") && r.n_images == 0,
                 "1 ms submit timeout: status %d, \"%s\"", (int)st, msg);
        printf("  1 ms submit timeout: %s\n", msg);
        unclip_result_clear(&r);
        unclip_model_free(m);
    }
    unclip_ctx_free(ctx);
}

int
main(void)
{
    struct unclip_ctx *ctx = tp_ctx();
    if (!ctx)
        return 77;
    char *dir = NULL;
    struct unclip_model *m = tp_small_open(ctx, "models/tiny-karlo-variations", &dir);
    if (m) {
        int32_t d0 = 0, d2 = 0;
        float *e0 = tp_embedding(0, &d0), *e2 = tp_embedding(2, &d2);
        struct unclip_source a = {.kind = UNCLIP_SOURCE_EMBEDDING, .embedding = e0,
                                  .embed_dim = d0};
        struct unclip_source b = {.kind = UNCLIP_SOURCE_EMBEDDING, .embedding = e2,
                                  .embed_dim = d2};
        if (e0 && e2) {
            test_bad_positions(ctx, m, &a, &b);
            test_positions(ctx, m, &a, &b);
        }
        g_free(e0);
        g_free(e2);
    }
    tp_small_close(m, dir);
    test_text_to_image(ctx);
    unclip_ctx_free(ctx);
    test_submit_timeout();
    return tu_summary("pipeline-positions");
}
