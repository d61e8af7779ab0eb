/* Op cases: resampling (nearest 2x upsample, 2x2 average pool, antialiased bicubic resize). */
#include "ophelp.h"

#include "ops/op-util.h"

/* d = {N, C, H, W} */
static void
run_upsample(struct ot_ctx *c, const int64_t *d)
{
    int64_t xs[4] = {d[0], d[1], d[2], d[3]}, ys[4] = {d[0], d[1], 2 * d[2], 2 * d[3]};
    float *hx;
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 4, xs, 1.0f, &hx);
    struct unclip_tensor *y = ot_output(c, 4, ys);
    float *ref = ot_scratch(c, unclip__tensor_numel(y));
    unclip_ref_upsample2x(hx, d[0] * d[1], d[2], d[3], ref);
    if (ot_ok(c, unclip__op_upsample2x(c->vk, x, y)))
        ot_compare(c, "nearest", y, ref, 0.0);
}

/* d = {N, C, H, W} */
static void
run_avgpool(struct ot_ctx *c, const int64_t *d)
{
    int64_t xs[4] = {d[0], d[1], d[2], d[3]}, ys[4] = {d[0], d[1], d[2] / 2, d[3] / 2};
    float *hx;
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 4, xs, 1.0f, &hx);
    struct unclip_tensor *y = ot_output(c, 4, ys);
    float *ref = ot_scratch(c, unclip__tensor_numel(y));
    unclip_ref_avgpool2x(hx, d[0] * d[1], d[2], d[3], ref);
    if (ot_ok(c, unclip__op_avgpool2x(c->vk, x, y)))
        ot_compare(c, "2x2 floor", y, ref, TOL_EXACT);
}

/* d = {N, C, H, W, Ho, Wo} */
static void
run_bicubic(struct ot_ctx *c, const int64_t *d)
{
    int64_t xs[4] = {d[0], d[1], d[2], d[3]}, ys[4] = {d[0], d[1], d[4], d[5]};
    float *hx;
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 4, xs, 1.0f, &hx);
    struct unclip_tensor *y = ot_output(c, 4, ys);
    float *ref = ot_scratch(c, unclip__tensor_numel(y));
    unclip_ref_resize_bicubic_aa(hx, d[0] * d[1], d[2], d[3], d[4], d[5], ref);
    char label[64];
    snprintf(label, sizeof label, "%lldx%lld -> %lldx%lld", (long long)d[2], (long long)d[3],
             (long long)d[4], (long long)d[5]);
    if (ot_ok(c, unclip__op_resize_bicubic_aa(c->vk, x, y)))
        ot_compare(c, label, y, ref, TOL_F32);
}

/* Shape mismatches are refused with a message, not dispatched. */
static void
run_resample_errors(struct ot_ctx *c, const int64_t *d)
{
    (void)d;
    int64_t xs[4] = {1, 2, 5, 6}, bad[4] = {1, 2, 10, 11}, flat[2] = {10, 6};
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 4, xs, 1.0f, NULL);
    struct unclip_tensor *y = ot_output(c, 4, bad);
    struct unclip_tensor *f = ot_input(c, UNCLIP_DT_F32, 2, flat, 1.0f, NULL);
    TU_CHECK(unclip__op_upsample2x(c->vk, x, y) == UNCLIP_E_INTERNAL,
             "upsample2x accepted a wrong output shape");
    TU_CHECK(unclip__op_avgpool2x(c->vk, x, y) == UNCLIP_E_INTERNAL,
             "avgpool2x accepted a wrong output shape");
    TU_CHECK(unclip__op_resize_bicubic_aa(c->vk, f, y) == UNCLIP_E_INTERNAL,
             "resize_bicubic_aa accepted a 2-D input");
    printf("  %-14s %-34s refused: %s\n", c->case_name, "bad shapes",
           unclip__vk_err(c->vk)->msg);
}


/* ---- split paths ----
 * Ops split tensors larger than one binding (op-util.h). These cases lower the binding limit
 * through the test hook so that small, odd-sized tensors take the split path, compare with
 * the same references, and check that the op really ran in several dispatches. */

static void
split_upsample(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, 4096, run_upsample, 4);
}

static void
split_avgpool(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, 4096, run_avgpool, 4);
}

/* The tap table is bound whole: the limit must hold it (64 KiB does for these sizes). */
static void
split_bicubic(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, 65536, run_bicubic, 4);
}

static void
split_bicubic_small(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, 4096, run_bicubic, 4);
}

const struct op_case ot_cases_resample[] = {
    {"upsample2x", run_upsample, {2, 3, 7, 9}},
    {"upsample2x", run_upsample, {1, 64, 16, 16}},
    {"avgpool2x", run_avgpool, {1, 23, 81, 77}},
    {"avgpool2x", run_avgpool, {2, 3, 8, 6}},
    {"bicubic_aa", run_bicubic, {2, 3, 7, 9, 28, 36}},
    {"bicubic_aa", run_bicubic, {1, 3, 32, 32, 128, 128}},
    {"bicubic_aa", run_bicubic, {1, 3, 64, 64, 256, 256}},
    {"bicubic_aa", run_bicubic, {1, 2, 81, 81, 23, 23}},  /* downscale: support 2 * 81/23 */
    {"bicubic_aa", run_bicubic, {1, 1, 9, 40, 30, 13}},   /* up in H, down in W */
    {"bicubic_aa", run_bicubic, {1, 2, 16, 20, 16, 50}},  /* H kept: one pass */
    {"bicubic_aa", run_bicubic, {1, 2, 17, 20, 5, 20}},   /* W kept: one pass */
    {"bicubic_aa", run_bicubic, {1, 2, 7, 9, 7, 9}},      /* same size: identity */
    {"bicubic_aa", run_bicubic, {1, 1, 1, 5, 3, 1}},      /* single pixel rows/columns */
    {"resample_errors", run_resample_errors, {0}},
    {"split_upsample2x", split_upsample, {2, 3, 37, 41}},
    {"split_avgpool2x", split_avgpool, {1, 5, 81, 77}},
    {"split_avgpool2x", split_avgpool, {2, 3, 9, 64}},
    {"split_bicubic_aa", split_bicubic, {1, 3, 64, 64, 256, 256}},
    {"split_bicubic_aa", split_bicubic_small, {1, 2, 81, 81, 23, 23}},
    {"split_bicubic_aa", split_bicubic_small, {2, 3, 17, 19, 41, 37}},
    {"split_bicubic_aa", split_bicubic_small, {1, 3, 37, 41, 37, 41}}, /* identity: a copy */
    {NULL, NULL, {0}},
};
