/* Op cases: normalisation (group norm, layer norm, softmax) against the double references. */
#include "ophelp.h"

#include "ops/op-util.h"

#include <string.h>

/* Host values x[i] = base + spread * N(0, 1): a mean far from zero relative to the spread
 * catches one-pass E[x^2] - E[x]^2 variance, which cancels. */
static struct unclip_tensor *
offset_input(struct ot_ctx *c, int32_t ndim, const int64_t *shape, float base, float spread,
             float **host)
{
    int64_t n = 1;
    for (int32_t k = 0; k < ndim; k++)
        n *= shape[k];
    float *v = ot_scratch(c, n);
    tu_fill_normal(&c->rng, v, n, spread);
    for (int64_t i = 0; i < n; i++)
        v[i] += base;
    *host = v;
    return ot_input_from(c, ndim, shape, v);
}

/* d: N, C, H, W, groups. Plain, scale-shift, SiLU, both, in place, and F16 gamma/beta. */
static void
run_group_norm(struct ot_ctx *c, const int64_t *d)
{
    int64_t xs[4] = {d[0], d[1], d[2], d[3]}, cs[1] = {d[1]}, sss[2] = {d[0], 2 * d[1]};
    int64_t n = d[0] * d[1] * d[2] * d[3];
    int32_t groups = (int32_t)d[4];
    float eps = 1e-5f;
    float *hx, *hg, *hb, *hss, *hg16, *hb16;
    struct unclip_tensor *x = offset_input(c, 4, xs, 3.0f, 1.5f, &hx);
    struct unclip_tensor *g = ot_input(c, UNCLIP_DT_F32, 1, cs, 1.0f, &hg);
    struct unclip_tensor *b = ot_input(c, UNCLIP_DT_F32, 1, cs, 1.0f, &hb);
    struct unclip_tensor *ss = ot_input(c, UNCLIP_DT_F32, 2, sss, 0.5f, &hss);
    for (int mode = 0; mode < 4; mode++) {
        bool use_ss = mode & 1, silu = mode & 2;
        struct unclip_tensor *y = ot_output(c, 4, xs);
        float *ref = ot_scratch(c, n);
        unclip_ref_group_norm(hx, d[0], d[1], d[2] * d[3], groups, eps, hg, hb,
                              use_ss ? hss : NULL, silu, ref);
        char label[64];
        snprintf(label, sizeof label, "%d groups%s%s", (int)groups, use_ss ? " scale-shift" : "",
                 silu ? " silu" : "");
        if (ot_ok(c, unclip__op_group_norm(c->vk, x, g, b, groups, eps, use_ss ? ss : NULL, silu,
                                           y)))
            ot_compare(c, label, y, ref, TOL_ACC);
    }
    /* F16 gamma/beta, in place on a copy of x, no scale-shift, SiLU */
    struct unclip_tensor *g16 = ot_input(c, UNCLIP_DT_F16, 1, cs, 1.0f, &hg16);
    struct unclip_tensor *b16 = ot_input(c, UNCLIP_DT_F16, 1, cs, 1.0f, &hb16);
    struct unclip_tensor *xy = ot_output(c, 4, xs);
    struct unclip_copy_desc cd = {.shape = {1, 1, 1, n}, .src_stride = {0, 0, 0, 1},
                                  .dst_stride = {0, 0, 0, 1}};
    float *ref = ot_scratch(c, n);
    unclip_ref_group_norm(hx, d[0], d[1], d[2] * d[3], groups, eps, hg16, hb16, hss, true, ref);
    if (ot_ok(c, unclip__op_copy(c->vk, x, xy, &cd)) &&
        ot_ok(c, unclip__op_group_norm(c->vk, xy, g16, b16, groups, eps, ss, true, xy)))
        ot_compare(c, "f16 affine, in place", xy, ref, TOL_ACC);
    /* no affine parameters */
    struct unclip_tensor *y = ot_output(c, 4, xs);
    ref = ot_scratch(c, n);
    unclip_ref_group_norm(hx, d[0], d[1], d[2] * d[3], groups, eps, NULL, NULL, NULL, false, ref);
    if (ot_ok(c, unclip__op_group_norm(c->vk, x, NULL, NULL, groups, eps, NULL, false, y)))
        ot_compare(c, "no affine", y, ref, TOL_ACC);
}

/* A group norm over more than one binding can see (160 MiB > lavapipe's 128 MiB range), as
 * super-resolution activations of several images are: the op splits it into chunks of whole
 * samples. d: N, C, H, W, groups. */
static void
run_group_norm_big(struct ot_ctx *c, const int64_t *d)
{
    int64_t xs[4] = {d[0], d[1], d[2], d[3]}, cs[1] = {d[1]}, sss[2] = {d[0], 2 * d[1]};
    int64_t n = d[0] * d[1] * d[2] * d[3];
    float *hx, *hg, *hb, *hss;
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 4, xs, 1.0f, &hx);
    struct unclip_tensor *g = ot_input(c, UNCLIP_DT_F32, 1, cs, 1.0f, &hg);
    struct unclip_tensor *b = ot_input(c, UNCLIP_DT_F32, 1, cs, 1.0f, &hb);
    struct unclip_tensor *ss = ot_input(c, UNCLIP_DT_F32, 2, sss, 0.5f, &hss);
    struct unclip_tensor *y = ot_output(c, 4, xs);
    float *ref = ot_scratch(c, n);
    unclip_ref_group_norm(hx, d[0], d[1], d[2] * d[3], (int32_t)d[4], 1e-5f, hg, hb, hss, true,
                          ref);
    if (ot_ok(c, unclip__op_group_norm(c->vk, x, g, b, (int32_t)d[4], 1e-5f, ss, true, y)))
        ot_compare(c, "chunked over samples", y, ref, TOL_ACC);
}

/* d: rows, C. With and without gamma/beta, in place, F16 gamma/beta. */
static void
run_layer_norm(struct ot_ctx *c, const int64_t *d)
{
    int64_t xs[2] = {d[0], d[1]}, cs[1] = {d[1]}, n = d[0] * d[1];
    float eps = 1e-5f;
    float *hx, *hg, *hb, *hg16, *hb16;
    struct unclip_tensor *x = offset_input(c, 2, xs, -7.0f, 0.75f, &hx);
    struct unclip_tensor *g = ot_input(c, UNCLIP_DT_F32, 1, cs, 1.0f, &hg);
    struct unclip_tensor *b = ot_input(c, UNCLIP_DT_F32, 1, cs, 1.0f, &hb);
    struct unclip_tensor *g16 = ot_input(c, UNCLIP_DT_F16, 1, cs, 1.0f, &hg16);
    struct unclip_tensor *b16 = ot_input(c, UNCLIP_DT_F16, 1, cs, 1.0f, &hb16);
    struct {
        const char *label;
        struct unclip_tensor *g, *b;
        const float *hg, *hb;
    } modes[] = {
        {"affine", g, b, hg, hb},
        {"no affine", NULL, NULL, NULL, NULL},
        {"gamma only", g, NULL, hg, NULL},
        {"f16 affine", g16, b16, hg16, hb16},
    };
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        struct unclip_tensor *y = ot_output(c, 2, xs);
        float *ref = ot_scratch(c, n);
        unclip_ref_layer_norm(hx, d[0], d[1], modes[m].hg, modes[m].hb, eps, ref);
        if (ot_ok(c, unclip__op_layer_norm(c->vk, x, modes[m].g, modes[m].b, eps, y)))
            ot_compare(c, modes[m].label, y, ref, TOL_ACC);
    }
    struct unclip_tensor *xy = ot_output(c, 2, xs);
    struct unclip_copy_desc cd = {.shape = {1, 1, 1, n}, .src_stride = {0, 0, 0, 1},
                                  .dst_stride = {0, 0, 0, 1}};
    float *ref = ot_scratch(c, n);
    unclip_ref_layer_norm(hx, d[0], d[1], hg, hb, eps, ref);
    if (ot_ok(c, unclip__op_copy(c->vk, x, xy, &cd)) &&
        ot_ok(c, unclip__op_layer_norm(c->vk, xy, g, b, eps, xy)))
        ot_compare(c, "in place", xy, ref, TOL_ACC);
}

/* d: rows, L, scale of the logits. Out of place and in place. */
static void
run_softmax(struct ot_ctx *c, const int64_t *d)
{
    int64_t xs[2] = {d[0], d[1]}, n = d[0] * d[1];
    float *hx;
    /* a large common offset: exp without the max subtraction would overflow */
    struct unclip_tensor *x = offset_input(c, 2, xs, 200.0f, (float)d[2], &hx);
    struct unclip_tensor *y = ot_output(c, 2, xs);
    float *ref = ot_scratch(c, n);
    unclip_ref_softmax(hx, d[0], d[1], ref);
    if (ot_ok(c, unclip__op_softmax(c->vk, x, y)))
        ot_compare(c, "out of place", y, ref, TOL_ACC);
    struct unclip_tensor *xy = ot_output(c, 2, xs);
    struct unclip_copy_desc cd = {.shape = {1, 1, 1, n}, .src_stride = {0, 0, 0, 1},
                                  .dst_stride = {0, 0, 0, 1}};
    if (ot_ok(c, unclip__op_copy(c->vk, x, xy, &cd)) && ot_ok(c, unclip__op_softmax(c->vk, xy, xy)))
        ot_compare(c, "in place", xy, ref, TOL_ACC);
}

/* Argument errors come back as statuses with a message, never a crash. */
static void
run_norm_errors(struct ot_ctx *c, const int64_t *d)
{
    (void)d;
    int64_t xs[4] = {1, 6, 3, 3}, cs[1] = {5};
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 4, xs, 1.0f, NULL);
    struct unclip_tensor *g = ot_input(c, UNCLIP_DT_F32, 1, cs, 1.0f, NULL);
    struct unclip_tensor *y = ot_output(c, 4, xs);
    unclip_status st = unclip__op_group_norm(c->vk, x, NULL, NULL, 4, 1e-5f, NULL, false, y);
    TU_CHECK(st == UNCLIP_E_INTERNAL && strstr(unclip__vk_err(c->vk)->msg, "divisible"),
             "group_norm with 6 channels in 4 groups: %d %s", (int)st, unclip__vk_err(c->vk)->msg);
    st = unclip__op_group_norm(c->vk, x, g, NULL, 3, 1e-5f, NULL, false, y);
    TU_CHECK(st == UNCLIP_E_INTERNAL, "group_norm with a gamma of 5 for 6 channels: %d", (int)st);
    st = unclip__op_layer_norm(c->vk, x, g, NULL, 1e-5f, y);
    TU_CHECK(st == UNCLIP_E_INTERNAL, "layer_norm with a gamma of 5 for 3 channels: %d", (int)st);
}


/* ---- split paths ----
 * Ops split tensors larger than one binding (op-util.h). These cases lower the binding limit
 * through the test hook so that small, odd-sized tensors take the split path, compare with
 * the same references, and check that the op really ran in several dispatches. */

/* d[5]: the binding limit in bytes. Group norm splits into chunks of whole groups (inside a
 * sample when one sample is larger than a binding, as Karlo's 960-channel maps at 256x256
 * are). */
static void
split_group_norm(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, (uint64_t)d[5], run_group_norm, 6 * 2);
}

static void
split_layer_norm(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, (uint64_t)d[5], run_layer_norm, 4);
}

static void
split_softmax(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, (uint64_t)d[5], run_softmax, 4);
}

/* One group larger than a binding cannot be split (its statistics would need several
 * passes): a clean error naming the sizes. */
static void
split_norm_errors(struct ot_ctx *c, const int64_t *d)
{
    (void)d;
    int64_t xs[4] = {1, 4, 33, 31};
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 4, xs, 1.0f, NULL);
    struct unclip_tensor *y = ot_output(c, 4, xs);
    unclip__ops_bind_limit_override = 4096;
    unclip_status st = unclip__op_group_norm(c->vk, x, NULL, NULL, 2, 1e-5f, NULL, false, y);
    unclip__ops_bind_limit_override = 0;
    TU_CHECK(st == UNCLIP_E_INTERNAL && strstr(unclip__vk_err(c->vk)->msg, "one unit of 2046"),
             "group_norm with a group over the binding limit: %d %s", (int)st,
             unclip__vk_err(c->vk)->msg);
}

const struct op_case ot_cases_norm[] = {
    {"group_norm", run_group_norm, {2, 320, 7, 9, 32}},
    {"group_norm", run_group_norm, {3, 23, 5, 7, 23}},
    {"group_norm", run_group_norm, {1, 23, 11, 1, 1}},
    {"group_norm", run_group_norm, {2, 64, 33, 31, 32}},
    {"group_norm", run_group_norm, {2, 320, 8, 8, 32}},
    {"group_norm", run_group_norm, {2, 96, 4, 3, 32}},
    {"group_norm", run_group_norm, {1, 64, 1, 20, 2}},
    {"group_norm_big", run_group_norm_big, {5, 32, 512, 512, 32}},
    {"layer_norm", run_layer_norm, {77, 1280}},
    {"layer_norm", run_layer_norm, {7, 23}},
    {"layer_norm", run_layer_norm, {3, 2048}},
    {"layer_norm", run_layer_norm, {5, 12}},
    {"softmax", run_softmax, {81, 1105, 4}},
    {"softmax", run_softmax, {5, 7, 1}},
    {"softmax", run_softmax, {2, 4099, 10}},
    {"norm_errors", run_norm_errors, {0}},
    {"split_group_norm", split_group_norm, {2, 64, 33, 31, 32, 16384}},
    {"split_group_norm", split_group_norm, {2, 320, 8, 8, 32, 8192}},
    {"split_group_norm", split_group_norm, {3, 23, 5, 7, 23, 1024}},
    {"split_group_norm", split_group_norm, {1, 96, 9, 13, 32, 2048}},
    {"split_layer_norm", split_layer_norm, {77, 1280, 0, 0, 0, 16384}},
    {"split_layer_norm", split_layer_norm, {37, 23, 0, 0, 0, 1024}},
    {"split_softmax", split_softmax, {81, 1105, 4, 0, 0, 16384}},
    {"split_softmax", split_softmax, {37, 77, 1, 0, 0, 1024}},
    {"split_norm_errors", split_norm_errors, {0}},
    {NULL, NULL, {0}},
};
