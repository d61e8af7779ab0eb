/* Op cases: conv2d against the double reference: k 1 and 3, stride 1 and 2, padding 0/1,
 * bias, residual (separate and in place), F32 and F16 weights, odd sizes, Cin*k*k both
 * odd (generic shader) and a multiple of 8 (W_VEC). */
#include "ophelp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* engine/ops/linear.c's shader override for linear and conv2d (0 automatic, 1 naive,
 * 2 scalar, 3 32-bit words, 4 64-bit loads). */
extern int unclip__gemm_override;

enum {
    CV_BIAS = 1,       /* with bias                                 */
    CV_RES = 2,        /* separate residual                         */
    CV_RES_Y = 4,      /* residual is y itself                      */
    CV_F32_ONLY = 8,   /* skip the F16 run                          */
    CV_TBIAS = 16,     /* per-image channel bias (unclip__op_conv2d_ex) */
};

/* d: N, Cin, H, W, Cout, packed (k | stride << 4 | pad << 8 | options << 12 |
 * shader override << 20). */
static void
run_conv(struct ot_ctx *c, const int64_t *d)
{
    int64_t nb = d[0], cin = d[1], h = d[2], wd = d[3], cout = d[4];
    int32_t k = (int32_t)(d[5] & 15), stride = (int32_t)((d[5] >> 4) & 15);
    int32_t pad = (int32_t)((d[5] >> 8) & 15);
    int64_t opt = (d[5] >> 12) & 255;
    int variant = (int)(d[5] >> 20);
    if (variant == 4 && !unclip__vk_shader_int64(c->vk) && getenv("UNCLIP_VALIDATION"))
        return; /* 64-bit loads without shaderInt64 (UNCLIP_NO_INT64=1): invalid usage */
    unclip__gemm_override = variant;
    int64_t ho = (h + 2 * pad - k) / stride + 1, wo = (wd + 2 * pad - k) / stride + 1;
    int64_t xs[4] = {nb, cin, h, wd}, ys[4] = {nb, cout, ho, wo};
    int64_t ny = nb * cout * ho * wo;
    float *hx, *hres = NULL, *htb = NULL;
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 4, xs, 1.0f, &hx);
    struct unclip_tensor *res = NULL, *tb = NULL;
    int64_t tbs[2] = {nb, cout};
    if (opt & CV_TBIAS)
        tb = ot_input(c, UNCLIP_DT_F32, 2, tbs, 1.0f, &htb);
    if (opt & (CV_RES | CV_RES_Y))
        res = ot_input(c, UNCLIP_DT_F32, 4, ys, 1.0f, &hres);
    for (int f16 = 0; f16 < ((opt & CV_F32_ONLY) ? 1 : 2); f16++) {
        enum unclip_dtype dt = f16 ? UNCLIP_DT_F16 : UNCLIP_DT_F32;
        int64_t ws[4] = {cout, cin, k, k}, bs[1] = {cout};
        float *hw, *hb = NULL;
        struct unclip_tensor *w =
            ot_input(c, dt, 4, ws, 1.0f / sqrtf((float)(cin * k * k)), &hw);
        struct unclip_tensor *b = NULL;
        if (opt & CV_BIAS)
            b = ot_input(c, dt, 1, bs, 1.0f, &hb);
        struct unclip_tensor *y = ot_output(c, 4, ys);
        if ((opt & CV_RES_Y) && !ot_ok(c, unclip__tensor_upload_f32(c->vk, y, hres)))
            return;
        float *ref = ot_scratch(c, ny);
        unclip_ref_conv2d(hx, nb, cin, h, wd, hw, cout, k, hb, stride, pad, res ? hres : NULL,
                          ref);
        if (tb)
            for (int64_t i = 0; i < ny; i++)
                ref[i] += htb[(i / (ho * wo * cout)) * cout + (i / (ho * wo)) % cout];
        const struct unclip_tensor *r = (opt & CV_RES_Y) ? y : res;
        static const char *vn[5] = {"", " naive", " scalar", " words", " v64"};
        char label[80];
        snprintf(label, sizeof label, "%lldx%lld->%lld k%d s%d p%d %s%s%s%s%s%s", (long long)cin,
                 (long long)h, (long long)cout, (int)k, (int)stride, (int)pad,
                 f16 ? "f16" : "f32", b ? " bias" : "", (opt & CV_RES) ? " res" : "",
                 (opt & CV_RES_Y) ? " res=y" : "", tb ? " tbias" : "", vn[variant]);
        if (ot_ok(c, unclip__op_conv2d_ex(c->vk, x, w, b, tb, stride, pad, r, y)))
            ot_compare(c, label, y, ref, TOL_ACC);
    }
    unclip__gemm_override = 0;
}

static void
run_conv_errors(struct ot_ctx *c, const int64_t *d)
{
    (void)d;
    int64_t xs[4] = {1, 3, 5, 5}, ws[4] = {4, 3, 3, 3}, ys[4] = {1, 4, 5, 5};
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 4, xs, 1.0f, NULL);
    struct unclip_tensor *w = ot_input(c, UNCLIP_DT_F32, 4, ws, 1.0f, NULL);
    struct unclip_tensor *y = ot_output(c, 4, ys);
    /* padding 0 gives 3x3, not y's 5x5 */
    unclip_status st = unclip__op_conv2d(c->vk, x, w, NULL, 1, 0, NULL, y);
    TU_CHECK(st == UNCLIP_E_INTERNAL && strstr(unclip__vk_err(c->vk)->msg, "conv2d"),
             "wrong output shape accepted: %d %s", (int)st, unclip__vk_err(c->vk)->msg);
    st = unclip__op_conv2d(c->vk, x, w, NULL, 3, 1, NULL, y);
    TU_CHECK(st == UNCLIP_E_INTERNAL, "stride 3 accepted");
    int64_t ws5[4] = {4, 3, 5, 5};
    struct unclip_tensor *w5 = ot_input(c, UNCLIP_DT_F32, 4, ws5, 1.0f, NULL);
    st = unclip__op_conv2d(c->vk, x, w5, NULL, 1, 2, NULL, y);
    TU_CHECK(st == UNCLIP_E_INTERNAL, "5x5 kernel accepted");
    st = unclip__op_conv2d(c->vk, x, w, NULL, 1, 1, NULL, y);
    TU_CHECK(st == UNCLIP_OK, "valid conv refused: %s", unclip__vk_err(c->vk)->msg);
}

#define CV(k, s, p, o) ((k) | (s) << 4 | (p) << 8 | (int64_t)(o) << 12)
#define CVV(k, s, p, o, v) (CV(k, s, p, o) | (int64_t)(v) << 20)

/* The tile table's 3x3 stride-1 entries (engine/ops/conv.c) picks one per device; this
 * machine's device takes only its own row, so every entry is forced here in turn through the
 * tuning hook and compared with the reference on odd sizes (rows of partial tiles). */
struct conv_tiles {
    uint32_t tm, tn, lx, ly;
};
extern struct conv_tiles unclip__conv_tiles_override;

static void
run_conv_tiles(struct ot_ctx *c, const int64_t *d)
{
    static const struct conv_tiles tiles[] = {{16, 4, 8, 8}, {8, 4, 8, 8}};
    static const int64_t shapes[][6] = {
        {2, 13, 9, 11, 21, CV(3, 1, 1, CV_BIAS | CV_TBIAS | CV_RES)},
        {1, 24, 7, 19, 70, CVV(3, 1, 1, CV_BIAS, 4)},
        {2, 5, 6, 5, 3, CV(3, 1, 0, CV_RES_Y)},
    };
    const struct conv_tiles t = tiles[d[0]]; /* one entry per case: a case holds few tensors */
    unclip__conv_tiles_override = t;
    printf("  %-14s tiles %ux%u, %ux%u invocations\n", c->case_name, t.tm, t.tn, t.lx, t.ly);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        run_conv(c, shapes[i]);
    unclip__conv_tiles_override = (struct conv_tiles){0, 0, 0, 0};
}

const struct op_case ot_cases_conv[] = {
    {"conv2d", run_conv, {2, 23, 17, 9, 81, CV(3, 1, 1, CV_BIAS)}},
    {"conv2d", run_conv, {2, 23, 17, 9, 81, CV(3, 2, 1, CV_BIAS | CV_RES)}},
    {"conv2d", run_conv, {2, 23, 17, 9, 81, CV(1, 1, 0, CV_BIAS | CV_RES_Y)}},
    {"conv2d", run_conv, {3, 7, 5, 11, 23, CV(3, 1, 0, 0)}},
    {"conv2d", run_conv, {1, 3, 7, 7, 7, CV(1, 2, 0, CV_BIAS)}},
    {"conv2d", run_conv, {1, 1, 1, 1, 1, CV(3, 1, 1, CV_BIAS)}},
    {"conv2d", run_conv, {2, 4, 1, 6, 3, CV(3, 2, 1, 0)}},
    /* 320 channels (Cin*k*k a multiple of 8: the W_VEC variants) at small spatial sizes */
    {"conv2d", run_conv, {1, 320, 9, 7, 320, CV(3, 1, 1, CV_BIAS | CV_RES)}},
    {"conv2d", run_conv, {2, 320, 8, 8, 320, CV(3, 2, 1, CV_BIAS)}},
    {"conv2d", run_conv, {2, 320, 5, 3, 640, CV(1, 1, 0, CV_BIAS | CV_RES_Y)}},
    {"conv2d", run_conv, {2, 8, 13, 11, 5, CV(3, 1, 1, CV_BIAS)}},
    /* per-image channel bias (a resnet's time embedding) in the epilogue: every kind, with a
     * Cout split by the narrow variant and a residual */
    {"conv2d", run_conv, {3, 16, 9, 12, 40, CV(3, 1, 1, CV_BIAS | CV_TBIAS | CV_RES)}},
    {"conv2d", run_conv, {2, 16, 9, 12, 5, CV(3, 1, 1, CV_TBIAS | CV_RES_Y)}},
    {"conv2d", run_conv, {2, 16, 9, 12, 70, CV(3, 2, 1, CV_BIAS | CV_TBIAS)}},
    {"conv2d", run_conv, {2, 16, 9, 12, 70, CV(1, 1, 0, CV_BIAS | CV_TBIAS)}},
    {"conv2d_variants", run_conv, {2, 12, 9, 20, 71, CVV(3, 1, 1, CV_BIAS | CV_TBIAS, 1)}},
    {"conv2d_variants", run_conv, {2, 12, 9, 20, 71, CVV(3, 1, 1, CV_BIAS | CV_TBIAS, 3)}},
    /* Every shader variant: Cin % 4 == 0 (all weight widths), Cin odd (their scalar
     * fallback); k 3 stride 1 / 2 and k 1 with stride 2 and padding. */
    {"conv2d_variants", run_conv, {2, 12, 9, 19, 21, CVV(3, 1, 1, CV_BIAS | CV_RES, 1)}},
    {"conv2d_variants", run_conv, {2, 12, 9, 19, 21, CVV(3, 1, 1, CV_BIAS | CV_RES, 2)}},
    {"conv2d_variants", run_conv, {2, 12, 9, 19, 21, CVV(3, 1, 1, CV_BIAS | CV_RES, 3)}},
    {"conv2d_variants", run_conv, {2, 12, 9, 19, 21, CVV(3, 1, 1, CV_BIAS | CV_RES, 4)}},
    {"conv2d_variants", run_conv, {1, 12, 10, 9, 7, CVV(3, 2, 1, CV_BIAS, 3)}},
    {"conv2d_variants", run_conv, {1, 12, 10, 9, 7, CVV(3, 2, 1, CV_BIAS, 4)}},
    {"conv2d_variants", run_conv, {2, 20, 7, 6, 9, CVV(1, 2, 1, CV_RES_Y, 3)}},
    {"conv2d_variants", run_conv, {2, 20, 7, 6, 9, CVV(1, 2, 1, CV_RES_Y, 4)}},
    {"conv2d_variants", run_conv, {1, 5, 8, 8, 6, CVV(3, 1, 1, CV_BIAS, 4)}},
    /* W % 4 == 0: the 64-bit variants read input rows in aligned pairs */
    {"conv2d_variants", run_conv, {2, 12, 9, 20, 71, CVV(3, 1, 1, CV_BIAS | CV_RES, 4)}},
    {"conv2d_variants", run_conv, {1, 12, 11, 12, 70, CVV(3, 2, 1, CV_BIAS, 4)}},
    {"conv2d_variants", run_conv, {3, 7, 5, 4, 17, CVV(3, 1, 0, 0, 4)}},
    {"conv2d_variants", run_conv, {2, 16, 11, 21, 3, CVV(3, 1, 1, CV_BIAS | CV_RES, 3)}},
    {"conv2d_variants", run_conv, {2, 16, 11, 21, 3, CVV(3, 1, 1, CV_BIAS | CV_RES, 4)}},
    /* One image's input over 128 MiB (135 MB): two Cin passes (8 + 1 channels), the second
     * accumulating onto y; 3 output channels (the narrow variant). */
    {"conv2d_big", run_conv, {1, 9, 2048, 1832, 3, CV(3, 1, 1, CV_BIAS | CV_RES | CV_F32_ONLY)}},
    {"conv2d_tiles", run_conv_tiles, {0}},
    {"conv2d_tiles", run_conv_tiles, {1}},
    {"conv2d_errors", run_conv_errors, {0}},
    {NULL, NULL, {0}},
};
