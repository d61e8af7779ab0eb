/* Op cases: linear. y = x . w^T (+ bias) (+ residual) against the double reference, for F32
 * and F16 weights, odd and aligned K (the generic and the W_VEC shader variants), and a
 * weight bigger than one binding (split along N). */
#include "ophelp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* engine/ops/linear.c's shader override (0 automatic, 1 naive, 2 scalar, 3 vec4, 4 64-bit
 * loads): the variant cases run every shader, not just the one this device gets. */
extern int unclip__gemm_override;

/* 64-bit loads need shaderInt64 (enabled by engine/vk when the device has it; not with
 * UNCLIP_NO_INT64=1): lavapipe runs them anyway, but the validation layer would object. */
static bool
variant_allowed(struct ot_ctx *c, int v)
{
    return v != 4 || unclip__vk_shader_int64(c->vk) || !getenv("UNCLIP_VALIDATION");
}

enum {
    LIN_BIAS = 1,     /* with bias                                          */
    LIN_RES = 2,      /* with a separate residual tensor                    */
    LIN_RES_Y = 4,    /* residual is y itself (in place)                    */
    LIN_F32_ONLY = 8, /* skip the F16 run (big cases)                       */
    LIN_X3D = 16,     /* x as [2, M/2, K] (M even): only numel matters       */
};

/* d: M, K, N, options, shader override. Runs F32 then F16 weights (bias has w's dtype). */
static void
run_linear(struct ot_ctx *c, const int64_t *d)
{
    int64_t m = d[0], k = d[1], n = d[2], opt = d[3];
    if (!variant_allowed(c, (int)d[4]))
        return;
    unclip__gemm_override = (int)d[4];
    int64_t xs2[2] = {m, k}, xs3[3] = {2, m / 2, k};
    float *hx;
    struct unclip_tensor *x = (opt & LIN_X3D) ? ot_input(c, UNCLIP_DT_F32, 3, xs3, 1.0f, &hx)
                                              : ot_input(c, UNCLIP_DT_F32, 2, xs2, 1.0f, &hx);
    float *hres = NULL;
    struct unclip_tensor *res = NULL;
    int64_t ys[2] = {m, n};
    if (opt & (LIN_RES | LIN_RES_Y))
        res = ot_input(c, UNCLIP_DT_F32, 2, ys, 1.0f, &hres);
    for (int f16 = 0; f16 < ((opt & LIN_F32_ONLY) ? 1 : 2); f16++) {
        enum unclip_dtype dt = f16 ? UNCLIP_DT_F16 : UNCLIP_DT_F32;
        int64_t ws[2] = {n, k}, bs[1] = {n};
        float *hw, *hb = NULL;
        /* Weights scaled like a trained layer (~1/sqrt(K)), so outputs are O(1). */
        struct unclip_tensor *w = ot_input(c, dt, 2, ws, 1.0f / sqrtf((float)k), &hw);
        struct unclip_tensor *b = NULL;
        if (opt & LIN_BIAS)
            b = ot_input(c, dt, 1, bs, 1.0f, &hb);
        struct unclip_tensor *y = ot_output(c, 2, ys);
        if ((opt & LIN_RES_Y) && !ot_ok(c, unclip__tensor_upload_f32(c->vk, y, hres)))
            return;
        float *ref = ot_scratch(c, m * n);
        unclip_ref_linear(hx, hw, hb, res ? hres : NULL, m, n, k, ref);
        const struct unclip_tensor *r = (opt & LIN_RES_Y) ? y : res;
        static const char *vn[5] = {"", " naive", " scalar", " vec4", " v64"};
        char label[64];
        snprintf(label, sizeof label, "%lldx%lldx%lld %s%s%s%s%s", (long long)m, (long long)k,
                 (long long)n, f16 ? "f16" : "f32", b ? " bias" : "",
                 (opt & LIN_RES) ? " res" : "", (opt & LIN_RES_Y) ? " res=y" : "", vn[d[4]]);
        if (ot_ok(c, unclip__op_linear(c->vk, x, w, b, r, y)))
            ot_compare(c, label, y, ref, TOL_ACC);
    }
    unclip__gemm_override = 0;
}

/* Argument checks: bad shapes fail cleanly with a message. */
static void
run_linear_errors(struct ot_ctx *c, const int64_t *d)
{
    (void)d;
    int64_t xs[2] = {3, 5}, ws[2] = {4, 6}, ys[2] = {3, 4}, bs[1] = {5};
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 2, xs, 1.0f, NULL);
    struct unclip_tensor *w = ot_input(c, UNCLIP_DT_F32, 2, ws, 1.0f, NULL);
    struct unclip_tensor *y = ot_output(c, 2, ys);
    unclip_status st = unclip__op_linear(c->vk, x, w, NULL, NULL, y);
    TU_CHECK(st == UNCLIP_E_INTERNAL && strstr(unclip__vk_err(c->vk)->msg, "linear"),
             "K mismatch accepted: %d %s", (int)st, unclip__vk_err(c->vk)->msg);
    int64_t ws2[2] = {4, 5};
    struct unclip_tensor *w2 = ot_input(c, UNCLIP_DT_F32, 2, ws2, 1.0f, NULL);
    struct unclip_tensor *b = ot_input(c, UNCLIP_DT_F32, 1, bs, 1.0f, NULL);
    st = unclip__op_linear(c->vk, x, w2, b, NULL, y);
    TU_CHECK(st == UNCLIP_E_INTERNAL, "bias of the wrong size accepted");
    st = unclip__op_linear(c->vk, x, w2, NULL, x, y);
    TU_CHECK(st == UNCLIP_E_INTERNAL, "residual of the wrong size accepted");
}

/* The big-tile entries of engine/ops/linear.c's table: this machine's device takes only its
 * own row, so each is forced in turn through the tuning hook and compared with the reference
 * on odd sizes (partial tiles in both directions), with every load width. */
struct gemm_tiles {
    uint32_t tm, tn, lx, ly;
};
extern struct gemm_tiles unclip__gemm_tiles_override;

static void
run_linear_tiles(struct ot_ctx *c, const int64_t *d)
{
    static const struct gemm_tiles tiles[] = {{6, 8, 8, 8}, {12, 8, 8, 8}, {4, 4, 16, 16}};
    static const int64_t shapes[][5] = {
        {53, 40, 75, LIN_BIAS | LIN_RES, 3},
        {97, 24, 131, LIN_BIAS, 4},
        {61, 13, 9, LIN_RES_Y, 2},
    };
    const struct gemm_tiles t = tiles[d[0]];
    unclip__gemm_tiles_override = t;
    printf("  %-14s tiles %ux%u, %ux%u invocations\n", c->case_name, t.tm, t.tn, t.lx, t.ly);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        run_linear(c, shapes[i]);
    unclip__gemm_tiles_override = (struct gemm_tiles){0, 0, 0, 0};
}

const struct op_case ot_cases_linear[] = {
    {"linear", run_linear, {77, 320, 1280, 0}},
    {"linear", run_linear, {77, 320, 1280, LIN_BIAS | LIN_RES}},
    {"linear", run_linear, {77, 320, 1280, LIN_BIAS | LIN_RES_Y}},
    {"linear", run_linear, {7, 23, 81, LIN_BIAS}},
    {"linear", run_linear, {7, 23, 81, LIN_RES}},
    {"linear", run_linear, {23, 81, 7, LIN_BIAS | LIN_RES}},
    {"linear", run_linear, {1, 1280, 7, LIN_BIAS}},
    {"linear", run_linear, {1, 7, 1, LIN_BIAS}},
    {"linear", run_linear, {82, 24, 77, LIN_BIAS | LIN_X3D}},
    {"linear", run_linear, {2, 1, 3, 0}},
    {"linear", run_linear, {300, 768, 257, LIN_BIAS}},
    /* Weights over 128 MiB (F32): two chunks along N; K odd (generic variant, the second
     * window starts 59 elements after its 256-byte boundary) and K % 8 == 0 (W_VEC). */
    {"linear_big", run_linear, {3, 1283, 26161, LIN_BIAS | LIN_RES | LIN_F32_ONLY}},
    {"linear_big", run_linear, {5, 1288, 26060, LIN_BIAS | LIN_F32_ONLY}},
    /* Every shader variant on an aligned K (the vector loads), an odd K (their scalar
     * fallback) and a small M (the small-tile variants). */
    {"linear_variants", run_linear, {77, 320, 130, LIN_BIAS | LIN_RES, 1}},
    {"linear_variants", run_linear, {77, 320, 130, LIN_BIAS | LIN_RES, 2}},
    {"linear_variants", run_linear, {77, 320, 130, LIN_BIAS | LIN_RES, 3}},
    {"linear_variants", run_linear, {77, 320, 130, LIN_BIAS | LIN_RES, 4}},
    {"linear_variants", run_linear, {100, 23, 65, LIN_BIAS, 1}},
    {"linear_variants", run_linear, {100, 23, 65, LIN_BIAS, 4}},
    {"linear_variants", run_linear, {5, 64, 259, LIN_BIAS | LIN_RES_Y, 2}},
    {"linear_variants", run_linear, {5, 64, 259, LIN_BIAS | LIN_RES_Y, 3}},
    {"linear_variants", run_linear, {5, 64, 259, LIN_BIAS | LIN_RES_Y, 4}},
    {"linear_errors", run_linear_errors, {0}},
    {"linear_tiles", run_linear_tiles, {0}},
    {"linear_tiles", run_linear_tiles, {1}},
    {"linear_tiles", run_linear_tiles, {2}},
    {NULL, NULL, {0}},
};
