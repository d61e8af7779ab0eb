/* Heavy-op throughput on one Vulkan device: linear (matmul), conv2d and attention, in
 * GFLOP/s (a multiply-add counts 2). A benchmark, not a test: it prints figures and never
 * judges them. bench/run-ops.sh puts them beside torch on the CPU and the CPU's FMA peak.
 *
 * Usage: bench-ops [--device NAME] [--reps N] [--big] [--naive] [--variants] [--only TEXT]
 *                  [--conv-tiles TM,TN,LX,LY] [--gemm-tiles TM,TN,LX,LY]
 *   --big    adds conv 3x3 at 2x320x256x256 (about 240 GFLOP per run; 1x320x256x256 always
 *            runs)
 *   --naive  adds the one-output-per-invocation shaders (the baseline the fast ones replace)
 *   --variants  adds the matmul and 64x64 conv with each load width forced (scalar, vec4,
 *            64-bit), so a device's best choice can be read off
 *   --conv-tiles  replaces the device table's tiles of the 3x3 stride-1 conv (tuning)
 *   --gemm-tiles  replaces the device table's big tiles of the matmul (tuning)
 * Output: one line per case,
 *   "RESULT <name> <GFLOP/s> <ms per run> <runs> <GFLOP per CPU-second>"
 * where the last figure divides by the process's CPU time instead of wall time: on a shared,
 * busy machine it shows the shaders' efficiency per core while wall-clock figures swing. */
#include "ops/ops.h"


#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* engine/ops/linear.c: shader choice for linear and conv2d (0 automatic, 1 the naive
 * one-output-per-invocation shaders, 2 scalar loads, 3 vec4 loads, 4 64-bit loads). A tuning
 * hook, not API; forcing 4 on a device without shaderInt64 enabled is invalid usage (lavapipe
 * accepts it). */
extern int unclip__gemm_override;
/* engine/ops/conv.c: tiles of the 3x3 stride-1 conv when .tm != 0 (tuning hook, not API). */
struct conv_tiles {
    uint32_t tm, tn, lx, ly;
};
extern struct conv_tiles unclip__conv_tiles_override;
/* engine/ops/linear.c: big tiles of the matmul when .tm != 0 (the same layout). */
extern struct conv_tiles unclip__gemm_tiles_override;

static double
clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double
now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

struct bench {
    struct unclip_vk *vk;
    int reps;
    const char *only;
    int failures;
};

static bool
wanted(const struct bench *b, const char *name)
{
    return !b->only || strstr(name, b->only);
}

/* A tensor filled with small pseudo-random values (the values do not matter for timing but
 * should be finite and not denormal). */
static unclip_status
make(struct bench *b, enum unclip_dtype dt, int32_t ndim, const int64_t *shape, float scale,
     struct unclip_tensor *t)
{
    unclip_status st = unclip__tensor_new(b->vk, dt, ndim, shape, t);
    if (st != UNCLIP_OK)
        return st;
    int64_t n = unclip__tensor_numel(t);
    float *h = malloc((size_t)n * sizeof *h);
    if (!h)
        return UNCLIP_E_NOMEM;
    uint32_t s = 12345u;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = scale * ((float)(s >> 8) / 16777216.0f - 0.5f);
    }
    st = unclip__tensor_upload_f32(b->vk, t, h);
    free(h);
    return st;
}

typedef unclip_status (*run_fn)(struct bench *b, void *ctx);

/* One warm-up run (pipeline creation, first touch), then `reps` timed runs; reports the
 * median time per run. */
static void
measure(struct bench *b, const char *name, double flops, run_fn fn, void *ctx, int reps)
{
    unclip_status st = fn(b, ctx);
    if (st == UNCLIP_OK)
        st = unclip__vk_finish(b->vk);
    if (st != UNCLIP_OK) {
        printf("SKIP %s: %s\n", name, unclip__vk_err(b->vk)->msg);
        fflush(stdout);
        return;
    }
    double t[64];
    if (reps > 64)
        reps = 64;
    double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        st = fn(b, ctx);
        if (st == UNCLIP_OK)
            st = unclip__vk_finish(b->vk);
        t[r] = now_s() - t0;
        if (st != UNCLIP_OK) {
            printf("SKIP %s: %s\n", name, unclip__vk_err(b->vk)->msg);
            b->failures++;
            return;
        }
    }
    for (int i = 1; i < reps; i++) /* insertion sort for the median */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    double cpu = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0) / reps;
    double med = t[reps / 2];
    printf("RESULT %s %.2f %.1f %d %.2f\n", name, flops / med * 1e-9, med * 1e3, reps,
           flops / cpu * 1e-9);
    fflush(stdout);
}

/* ---- linear ---- */

struct lin {
    struct unclip_tensor x, w, y;
};

static unclip_status
run_linear(struct bench *b, void *p)
{
    struct lin *l = p;
    return unclip__op_linear(b->vk, &l->x, &l->w, NULL, NULL, &l->y);
}

static void
bench_linear(struct bench *b, const char *name, int64_t m, int64_t k, int64_t n,
             enum unclip_dtype dt, int variant, int reps)
{
    if (!wanted(b, name))
        return;
    struct lin l = {0};
    unclip__gemm_override = variant;
    int64_t xs[2] = {m, k}, ws[2] = {n, k}, ys[2] = {m, n};
    if (make(b, UNCLIP_DT_F32, 2, xs, 1.0f, &l.x) || make(b, dt, 2, ws, 0.05f, &l.w) ||
        unclip__tensor_new(b->vk, UNCLIP_DT_F32, 2, ys, &l.y)) {
        printf("SKIP %s: %s\n", name, unclip__vk_err(b->vk)->msg);
        b->failures++;
    } else {
        measure(b, name, 2.0 * (double)m * (double)n * (double)k, run_linear, &l, reps);
    }
    unclip__gemm_override = 0;
    unclip__tensor_free(&l.x);
    unclip__tensor_free(&l.w);
    unclip__tensor_free(&l.y);
}

/* ---- conv ---- */

struct conv {
    struct unclip_tensor x, w, bias, y;
};

static unclip_status
run_conv(struct bench *b, void *p)
{
    struct conv *c = p;
    return unclip__op_conv2d(b->vk, &c->x, &c->w, &c->bias, 1, 1, NULL, &c->y);
}

static void
bench_conv(struct bench *b, const char *name, int64_t nb, int64_t cin, int64_t hw, int64_t cout,
           enum unclip_dtype dt, int variant, int reps)
{
    if (!wanted(b, name))
        return;
    struct conv c = {0};
    unclip__gemm_override = variant;
    int64_t xs[4] = {nb, cin, hw, hw}, ws[4] = {cout, cin, 3, 3}, bs[1] = {cout};
    int64_t ys[4] = {nb, cout, hw, hw};
    if (make(b, UNCLIP_DT_F32, 4, xs, 1.0f, &c.x) || make(b, dt, 4, ws, 0.02f, &c.w) ||
        make(b, dt, 1, bs, 0.1f, &c.bias) ||
        unclip__tensor_new(b->vk, UNCLIP_DT_F32, 4, ys, &c.y)) {
        printf("SKIP %s: %s\n", name, unclip__vk_err(b->vk)->msg);
        b->failures++;
    } else {
        double flops = 2.0 * (double)(nb * hw * hw) * (double)cout * (double)(cin * 9);
        measure(b, name, flops, run_conv, &c, reps);
    }
    unclip__gemm_override = 0;
    unclip__tensor_free(&c.x);
    unclip__tensor_free(&c.w);
    unclip__tensor_free(&c.bias);
    unclip__tensor_free(&c.y);
}

/* ---- attention ---- */

struct attn {
    struct unclip_tensor qkv, kv, out, hm;
    struct unclip_attn_desc d;
    bool head_major; /* copy the map's keys and values head-major first, as the UNet does */
};

static unclip_status
run_attn(struct bench *b, void *p)
{
    struct attn *a = p;
    struct unclip_attn_desc d = a->d;
    bool two = d.k2.t != NULL;
    unclip_status st = UNCLIP_OK;
    if (a->head_major)
        st = unclip__attn_head_major(b->vk, d.batch, d.n_heads, d.head_dim, two ? &d.k2 : &d.k1,
                                     two ? &d.v2 : &d.v1, &a->hm);
    return st != UNCLIP_OK ? st : unclip__op_attention(b->vk, &d, &a->out);
}

/* Attention as the UNet runs it: batch B, H heads of dimension hd, Lq queries over the keys
 * of a context of Lc tokens (k1/v1, packed [B, Lc, 2 R hd]) followed by the map's own Lq
 * tokens (k2/v2, packed with q in [B, Lq, 3 R hd]); Lc = 0: plain self-attention. Rows are
 * laid out for R = row_heads >= H heads of which the first H are attended (R > H: the same
 * FLOPs on rows further apart, to see what the row stride costs). FLOPs: 2 Lq (Lc + Lq) hd
 * for q k^T and as many for p v, per batch and head. */
static void
bench_attention_rows(struct bench *b, const char *name, int32_t batch, int32_t heads,
                     int32_t row_heads, bool allow_hm, int64_t len, int64_t ctx, int32_t hd,
                     int reps)
{
    if (!wanted(b, name))
        return;
    struct attn a = {0};
    int64_t w = (int64_t)row_heads * hd;
    int64_t qs[3] = {batch, len, 3 * w}, os[3] = {batch, len, (int64_t)heads * hd},
            cs[3] = {batch, ctx, 2 * w};
    if (make(b, UNCLIP_DT_F32, 3, qs, 1.0f, &a.qkv) ||
        (ctx > 0 && make(b, UNCLIP_DT_F32, 3, cs, 1.0f, &a.kv)) ||
        unclip__tensor_new(b->vk, UNCLIP_DT_F32, 3, os, &a.out)) {
        printf("SKIP %s: %s\n", name, unclip__vk_err(b->vk)->msg);
        b->failures++;
    } else {
        struct unclip_seq q = {.t = &a.qkv, .off = 0, .row_stride = 3 * w,
                               .batch_stride = len * 3 * w, .len = (int32_t)len};
        struct unclip_seq k = q, v = q;
        k.off = w;
        v.off = 2 * w;
        a.d = (struct unclip_attn_desc){.batch = batch, .n_heads = heads, .head_dim = hd,
                                        .scale = 1.0f / sqrtf((float)hd), .q = q, .k1 = k,
                                        .v1 = v};
        if (ctx > 0) {
            a.d.k1 = (struct unclip_seq){&a.kv, 0, 2 * w, ctx * 2 * w, (int32_t)ctx, 0};
            a.d.v1 = (struct unclip_seq){&a.kv, w, 2 * w, ctx * 2 * w, (int32_t)ctx, 0};
            a.d.k2 = k;
            a.d.v2 = v;
        }
        /* As attn_run in engine/models/unet.c, unless the case measures the raw layout. */
        int64_t hn = unclip__attn_head_major_numel(batch, heads, hd, (int32_t)len);
        a.head_major = allow_hm && unclip__attn_wants_head_major(heads, hd, &k);
        if (a.head_major && unclip__tensor_new(b->vk, UNCLIP_DT_F32, 1, &hn, &a.hm)) {
            printf("SKIP %s: %s\n", name, unclip__vk_err(b->vk)->msg);
            b->failures++;
            a.head_major = false;
        }
        double flops = 4.0 * batch * heads * (double)len * (double)(len + ctx) * hd;
        measure(b, name, flops, run_attn, &a, reps);
    }
    unclip__tensor_free(&a.qkv);
    unclip__tensor_free(&a.kv);
    unclip__tensor_free(&a.out);
    unclip__tensor_free(&a.hm);
}

static void
bench_attention(struct bench *b, const char *name, int32_t batch, int32_t heads, int64_t len,
                int64_t ctx, int32_t hd, int reps)
{
    bench_attention_rows(b, name, batch, heads, heads, true, len, ctx, hd, reps);
}

int
main(int argc, char **argv)
{
    struct unclip_vk_params p = unclip__vk_params_default();
    struct bench b = {.reps = 5};
    int big = 0, naive = 0, variants = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            p.device_name = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            b.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            b.only = argv[++i];
        else if (!strcmp(argv[i], "--big"))
            big = 1;
        else if (!strcmp(argv[i], "--naive"))
            naive = 1;
        else if (!strcmp(argv[i], "--variants"))
            variants = 1;
        else if ((!strcmp(argv[i], "--conv-tiles") || !strcmp(argv[i], "--gemm-tiles")) &&
                 i + 1 < argc) {
            struct conv_tiles *t = argv[i][2] == 'c' ? &unclip__conv_tiles_override
                                                     : &unclip__gemm_tiles_override;
            if (sscanf(argv[i + 1], "%u,%u,%u,%u", &t->tm, &t->tn, &t->lx, &t->ly) != 4 ||
                !t->tm || !t->tn || !t->lx || !t->ly || t->lx * t->ly > 1024) {
                fprintf(stderr, "bench-ops: %s TM,TN,LX,LY (LX*LY <= 1024)\n", argv[i]);
                return 2;
            }
            i++;
        }
        else {
            fprintf(stderr,
                    "usage: %s [--device NAME] [--reps N] [--big] [--naive] [--variants] "
                    "[--only TEXT] [--conv-tiles TM,TN,LX,LY] [--gemm-tiles TM,TN,LX,LY]\n",
                    argv[0]);
            return 2;
        }
    }
    if (b.reps < 1)
        b.reps = 1;
    /* A slow device on a busy machine may need minutes for one submission. */
    p.fence_timeout_ms = 600000;
    struct unclip_err err = {0};
    if (unclip__vk_new(&p, &b.vk, &err) != UNCLIP_OK) {
        fprintf(stderr, "bench-ops: no Vulkan device: %s\n", err.msg);
        return 1;
    }
    printf("DEVICE %s (shaderInt64 %s)\n", unclip__vk_info(b.vk)->name,
           unclip__vk_shader_int64(b.vk) ? "on" : "off");
    fflush(stdout);

    bench_linear(&b, "matmul_4096x768x3072_f32", 4096, 768, 3072, UNCLIP_DT_F32, 0, b.reps);
    bench_linear(&b, "matmul_4096x768x3072_f16", 4096, 768, 3072, UNCLIP_DT_F16, 0, b.reps);
    bench_conv(&b, "conv3x3_2x320x64x64_f32", 2, 320, 64, 320, UNCLIP_DT_F32, 0, b.reps);
    bench_conv(&b, "conv3x3_2x320x64x64_f16", 2, 320, 64, 320, UNCLIP_DT_F16, 0, b.reps);
    /* Karlo super-res's first level: one image, 320 channels at 256x256 (121 GFLOP). */
    bench_conv(&b, "conv3x3_1x320x256x256_f16", 1, 320, 256, 320, UNCLIP_DT_F16, 0,
               b.reps < 2 ? b.reps : 2);
    if (big)
        bench_conv(&b, "conv3x3_2x320x256x256_f16", 2, 320, 256, 320, UNCLIP_DT_F16, 0,
                   b.reps < 3 ? b.reps : 3);
    bench_attention(&b, "attention_4096x64", 1, 1, 4096, 0, 64, b.reps);
    /* The cases: 4096 tokens x 5 heads of 64 (a 64x64 map of 320 channels), and the
     * Karlo decoder's 32x32 level under CFG: batch 2 x 10 heads, 1024 queries over 81
     * context + 1024 self keys = 1105. */
    bench_attention(&b, "attention_4096x64x5h", 1, 5, 4096, 0, 64, b.reps < 3 ? b.reps : 3);
    /* What the row stride costs: the 5 heads read in place from the packed rows (no
     * head-major copy), and one head on rows laid out for five. */
    bench_attention_rows(&b, "attention_4096x64x5h_packed", 1, 5, 5, false, 4096, 0, 64,
                         b.reps < 3 ? b.reps : 3);
    bench_attention_rows(&b, "attention_4096x64_rows5h", 1, 1, 5, false, 4096, 0, 64, b.reps);
    bench_attention(&b, "attention_1024qx1105k_2x10h", 2, 10, 1024, 81, 64, b.reps);
    bench_attention_rows(&b, "attention_1024qx1105k_2x10h_packed", 2, 10, 10, false, 1024, 81,
                         64, b.reps);
    /* The decoder case without the context keys (one key source): what the second source's
     * loop and the key bias cost. */
    bench_attention(&b, "attention_1024qx1024k_2x10h", 2, 10, 1024, 0, 64, b.reps);
    if (variants) {
        static const char *vn[3] = {"scalar", "vec4", "v64"};
        for (int v = 0; v < 3; v++) {
            char name[96];
            snprintf(name, sizeof name, "matmul_4096x768x3072_f16_%s", vn[v]);
            bench_linear(&b, name, 4096, 768, 3072, UNCLIP_DT_F16, 2 + v, b.reps);
            snprintf(name, sizeof name, "matmul_4096x768x3072_f32_%s", vn[v]);
            bench_linear(&b, name, 4096, 768, 3072, UNCLIP_DT_F32, 2 + v, b.reps);
            snprintf(name, sizeof name, "conv3x3_2x320x64x64_f16_%s", vn[v]);
            bench_conv(&b, name, 2, 320, 64, 320, UNCLIP_DT_F16, 2 + v, b.reps);
            snprintf(name, sizeof name, "conv3x3_2x320x64x64_f32_%s", vn[v]);
            bench_conv(&b, name, 2, 320, 64, 320, UNCLIP_DT_F32, 2 + v, b.reps);
        }
    }
    if (naive) {
        /* The baselines are slow: one run, and the matmul at a quarter of the rows. */
        bench_linear(&b, "naive_matmul_1024x768x3072_f32", 1024, 768, 3072, UNCLIP_DT_F32, 1, 1);
        bench_linear(&b, "naive_matmul_1024x768x3072_f16", 1024, 768, 3072, UNCLIP_DT_F16, 1, 1);
        bench_conv(&b, "naive_conv3x3_1x320x32x32_f16", 1, 320, 32, 320, UNCLIP_DT_F16, 1, 1);
    }
    unclip__vk_free(b.vk);
    return b.failures ? 1 : 0;
}
