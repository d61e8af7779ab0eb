/* Pipeline arguments and model checks that fail before any weights are read, and the slerp
 * used by interpolation and text diffs: w = 0 and w = 1 return the inputs exactly. */
#include "ops/ops.h"
#include "test-pipeline-common.h"

#include <math.h>

static bool
contains(const char *s, const char *part)
{
    return s && strstr(s, part) != NULL;
}

static void
test_missing(struct unclip_ctx *ctx)
{
    struct unclip_model *t2i = tp_model(ctx, "models/tiny-karlo");
    struct unclip_model *var = tp_model(ctx, "models/tiny-karlo-variations");
    if (!t2i || !var)
        goto out;
    struct unclip_run_params p = tp_params(1);
    struct unclip_result res;
    memset(&res, 0x5a, sizeof res);
    struct unclip_result before = res;

    unclip_status st = unclip_run_text_to_image(var, "a frog", &p, &res);
    const char *msg = unclip_ctx_last_error(ctx);
    printf("  text to image on the variations folder -> %s\n", msg);
    TU_CHECK(st == UNCLIP_E_MODEL && contains(msg, "prior/") && contains(msg, "text to image") &&
                 contains(msg, "tiny-karlo-variations"),
             "missing prior: status %d, message '%s'", (int)st, msg);

    struct unclip_image img = tp_image(0);
    struct unclip_source s = {.kind = UNCLIP_SOURCE_IMAGE, .image = &img};
    st = unclip_run_variations(t2i, &s, &p, &res);
    msg = unclip_ctx_last_error(ctx);
    printf("  variations on the text-to-image folder -> %s\n", msg);
    TU_CHECK(st == UNCLIP_E_MODEL && contains(msg, "image_encoder/") &&
                 contains(msg, "an image variation needs it"),
             "missing image_encoder: status %d, message '%s'", (int)st, msg);

    struct unclip_source pr = {.kind = UNCLIP_SOURCE_PROMPT, .prompt = "a frog"};
    st = unclip_run_interpolation(var, &s, &pr, 3, &p, &res);
    msg = unclip_ctx_last_error(ctx);
    printf("  interpolation to a prompt on the variations folder -> %s\n", msg);
    TU_CHECK(st == UNCLIP_E_MODEL && contains(msg, "prior/") && contains(msg, "interpolation"),
             "interpolation without prior: status %d, message '%s'", (int)st, msg);
    st = unclip_run_text_diff(t2i, &s, "a", "b", (const float[]){0.5f}, 1, &p, &res);
    msg = unclip_ctx_last_error(ctx);
    TU_CHECK(st == UNCLIP_E_MODEL && contains(msg, "image_encoder/") &&
                 contains(msg, "a text diff needs it"),
             "text diff without image_encoder: status %d, message '%s'", (int)st, msg);
    TU_CHECK(!memcmp(&res, &before, sizeof res), "a failed run wrote its output");
    g_free(img.pixels);
out:
    unclip_model_free(t2i);
    unclip_model_free(var);
}

static void
test_args(struct unclip_ctx *ctx)
{
    struct unclip_model *var = tp_model(ctx, "models/tiny-karlo-variations");
    if (!var)
        return;
    struct unclip_result res = {0};
    int32_t E = 0;
    float *emb = tp_embedding(0, &E);
    struct unclip_source s = {.kind = UNCLIP_SOURCE_EMBEDDING, .embedding = emb, .embed_dim = E};
    struct {
        const char *what;
        struct unclip_run_params p;
        const char *needle;
    } cases[] = {
        {"0 images", tp_params(1), "number of images"},
        {"1 decoder step", tp_params(1), "decoder steps"},
        {"1 super-res step", tp_params(1), "super-resolution steps"},
        {"NaN guidance", tp_params(1), "finite"},
    };
    cases[0].p.num_images = 0;
    cases[1].p.decoder_steps = 1;
    cases[2].p.sr_steps = 1;
    cases[3].p.decoder_guidance = NAN;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unclip_status st = unclip_run_variations(var, &s, &cases[i].p, &res);
        const char *msg = unclip_ctx_last_error(ctx);
        TU_CHECK(st == UNCLIP_E_ARG && contains(msg, cases[i].needle), "%s: status %d, '%s'",
                 cases[i].what, (int)st, msg);
    }
    struct unclip_run_params p = tp_params(1);
    struct unclip_source bad = s;
    bad.embed_dim = E + 1;
    TU_CHECK(unclip_run_variations(var, &bad, &p, &res) == UNCLIP_E_ARG &&
                 contains(unclip_ctx_last_error(ctx), "CLIP width"),
             "wrong embedding size: '%s'", unclip_ctx_last_error(ctx));
    struct unclip_source pr = {.kind = UNCLIP_SOURCE_PROMPT, .prompt = "x"};
    TU_CHECK(unclip_run_variations(var, &pr, &p, &res) == UNCLIP_E_ARG,
             "variations of a prompt must be refused");
    TU_CHECK(unclip_run_interpolation(var, &s, &s, 1, &p, &res) == UNCLIP_E_ARG &&
                 contains(unclip_ctx_last_error(ctx), "frames"),
             "1 frame: '%s'", unclip_ctx_last_error(ctx));
    p.num_images = 2;
    TU_CHECK(unclip_run_interpolation(var, &s, &s, 3, &p, &res) == UNCLIP_E_ARG,
             "interpolation with num_images 2 must be refused");
    p.num_images = 1;
    TU_CHECK(unclip_run_text_diff(var, &s, "a", "b", NULL, 0, &p, &res) == UNCLIP_E_ARG,
             "text diff without amounts must be refused");
    TU_CHECK(unclip_run_text_diff(var, &s, "a", "b", (const float[]){NAN}, 1, &p, &res) ==
                 UNCLIP_E_ARG,
             "text diff with a NaN amount must be refused");
    TU_CHECK(unclip_run_text_to_image(NULL, "x", &p, &res) == UNCLIP_E_ARG, "NULL model");
    g_free(emb);
    unclip_model_free(var);
}

/* slerp_unit (interpolation's and text diffs' rule) at w = 0 and 1 returns its inputs bit for
 * bit; in between the norm is the interpolated one and the direction lies between. */
static void
test_slerp(struct unclip_ctx *ctx)
{
    struct unclip_vk *vk = ctx->vk;
    const int32_t B = 3, D = 37;
    int64_t shape[2] = {B, D};
    float a[3 * 37], b[3 * 37], y[3 * 37];
    struct tu_rng rng;
    tu_rng_seed(&rng, 7);
    tu_fill_normal(&rng, a, B * D, 1.0f);
    tu_fill_normal(&rng, b, B * D, 3.0f);
    struct unclip_tensor ta = {0}, tb = {0}, ty = {0};
    bool ok = !unclip__tensor_new(vk, UNCLIP_DT_F32, 2, shape, &ta) &&
              !unclip__tensor_new(vk, UNCLIP_DT_F32, 2, shape, &tb) &&
              !unclip__tensor_new(vk, UNCLIP_DT_F32, 2, shape, &ty) &&
              !unclip__tensor_upload_f32(vk, &ta, a) && !unclip__tensor_upload_f32(vk, &tb, b);
    TU_CHECK(ok, "slerp setup: %s", unclip_ctx_last_error(ctx));
    for (int k = 0; ok && k < 3; k++) {
        float w = k == 0 ? 0.0f : k == 1 ? 1.0f : 0.25f;
        ok = !unclip__op_slerp_unit(vk, &ta, &tb, w, &ty) &&
             !unclip__tensor_download_f32(vk, &ty, y);
        TU_CHECK(ok, "slerp_unit: %s", unclip_ctx_last_error(ctx));
        if (!ok)
            break;
        if (k < 2) {
            TU_CHECK(!memcmp(y, k == 0 ? a : b, sizeof y), "slerp_unit at w = %g is not the "
                     "input", w);
            continue;
        }
        for (int32_t r = 0; r < B; r++) {
            double na = 0, nb = 0, ny = 0, ay = 0, by = 0, ab = 0;
            for (int32_t i = 0; i < D; i++) {
                const float *ra = a + r * D, *rb = b + r * D, *ry = y + r * D;
                na += (double)ra[i] * ra[i];
                nb += (double)rb[i] * rb[i];
                ny += (double)ry[i] * ry[i];
                ay += (double)ra[i] * ry[i];
                by += (double)rb[i] * ry[i];
                ab += (double)ra[i] * rb[i];
            }
            na = sqrt(na), nb = sqrt(nb), ny = sqrt(ny);
            double want = 0.75 * na + 0.25 * nb;
            double om = acos(ab / (na * nb)), oa = acos(ay / (na * ny)), ob = acos(by / (nb * ny));
            TU_CHECK(fabs(ny - want) <= 1e-5 * want, "row %d: norm %.6f, want %.6f", r, ny,
                     want);
            TU_CHECK(fabs(oa - 0.25 * om) <= 1e-4 && fabs(ob - 0.75 * om) <= 1e-4,
                     "row %d: angles %.5f / %.5f of %.5f, want a quarter of the way", r, oa, ob,
                     om);
        }
    }
    unclip__tensor_free(&ta);
    unclip__tensor_free(&tb);
    unclip__tensor_free(&ty);
}

int
main(void)
{
    struct unclip_ctx *ctx = tp_ctx();
    if (!ctx)
        return 77; /* skip: no Vulkan */
    test_missing(ctx);
    test_args(ctx);
    test_slerp(ctx);
    unclip_ctx_free(ctx);
    return tu_summary("pipeline-basic");
}
