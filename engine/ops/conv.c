/* 2-D convolution (k = 1 or 3, stride 1 or 2, zero padding) as an implicit GEMM.
 *
 * Shaders: conv2d.comp (register-blocked; variants by kernel size, stride and weight load
 * width) and conv2d_naive.comp (one output per invocation: the baseline, kept for
 * benchmarks).
 *
 * Big tensors. One binding sees at most max_storage_buffer_range bytes (128 MiB on lavapipe;
 * a 640-channel 256x256 activation is 168 MB per image). The work is cut into:
 *   - groups of whole images whose x and y windows fit;
 *   - passes over Cin when one image's input does not fit (later passes accumulate onto y;
 *     bias and residual go with the first pass);
 *   - chunks of Cout when the weights or one image's output channels do not fit;
 *   - row ranges inside an image group, so one dispatch stays within the submission bound.
 */
#include "ops/ops.h"

#include "ops/op-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Load width shared with linear.c (0 scalar, 1 vec4 / words, 2 64-bit) and its override for
 * benchmarks (0 automatic, 1 naive shaders, 2.. forced width). */
int unclip__gemm_loads(struct unclip_vk *vk);
extern int unclip__gemm_override;

#define ALIGN 256u

struct window {
    struct unclip_vk_bind bind;
    uint32_t rem; /* element offset of the first wanted element inside the window */
};

/* A binding of elements [start, start + count) of t, from the 256-byte boundary at or before
 * `start`. */
static struct window
make_window(const struct unclip_tensor *t, int64_t start, int64_t count)
{
    uint64_t es = unclip__dtype_size(t->dtype);
    uint64_t sb = (uint64_t)start * es;
    uint64_t off = sb & ~(uint64_t)(ALIGN - 1);
    uint64_t end = ((uint64_t)(start + count) * es + 3) & ~(uint64_t)3;
    /* As far as the allocation and one binding reach, not just to `end`: an overrun then
     * lands in the allocation's tail (where the op tests' guard words catch it) instead of
     * being dropped by a robust driver. The callers' chunks guarantee end - off <= range. */
    uint64_t size = unclip__vk_buf_size(t->buf);
    uint64_t range = unclip__vk_buf_bindable(t->buf);
    uint64_t bytes = size - off < range ? size - off : range;
    if (bytes < end - off)
        bytes = end - off;
    struct window w = {
        .bind = {.buf = t->buf, .offset = off, .bytes = bytes},
        .rem = (uint32_t)((sb - off) / es),
    };
    return w;
}

static int64_t
min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

enum { V_F32 = 0, V_F16, V_V64_F32, V_V64_F16 };
enum { K1 = 0, K3S1, K3S2, K3N };
/* [kind][variant] */
static const int shaders[4][4] = {
    {UNCLIP_SHADER_conv2d_k1_f32, UNCLIP_SHADER_conv2d_k1_f16, UNCLIP_SHADER_conv2d_k1_v64_f32,
     UNCLIP_SHADER_conv2d_k1_v64_f16},
    {UNCLIP_SHADER_conv2d_k3s1_f32, UNCLIP_SHADER_conv2d_k3s1_f16,
     UNCLIP_SHADER_conv2d_k3s1_v64_f32, UNCLIP_SHADER_conv2d_k3s1_v64_f16},
    {UNCLIP_SHADER_conv2d_k3s2_f32, UNCLIP_SHADER_conv2d_k3s2_f16,
     UNCLIP_SHADER_conv2d_k3s2_v64_f32, UNCLIP_SHADER_conv2d_k3s2_v64_f16},
    {UNCLIP_SHADER_conv2d_k3n_f32, UNCLIP_SHADER_conv2d_k3n_f16, UNCLIP_SHADER_conv2d_k3n_v64_f32,
     UNCLIP_SHADER_conv2d_k3n_v64_f16},
};
/* Tile sizes, passed to conv2d.comp as specialization constants 0..3: TM output pixels x TN
 * output channels per invocation, LX invocations along channels x LY along pixel blocks per
 * workgroup. One row per device class, keyed by device type and subgroup size (the first
 * matching row wins; the last row matches everything).
 *
 * CPU (lavapipe, 8-lane subgroups): every component a lane loads is a scalar loop over the
 * lanes and there are 32 vector registers, so the tile trades loads per FMA against spills;
 * measured with bench-ops --conv-tiles (docs/performance.md: 3x3 stride 1 at 16 x 4 did
 * 1.65x the GFLOP per CPU-second of 16 x 8, whose 128 accumulators spill). LX = 8 puts a
 * subgroup's lanes on 8 channel blocks of the same pixels: their input reads hit the same
 * lines.
 * GPUs (not measurable here): a smaller per-invocation block keeps ~64 accumulators per
 * invocation, so occupancy stays high; 64-invocation workgroups fill a wave of 32 or 64. */
struct conv_tiles {
    uint32_t tm, tn, lx, ly;
};
struct tile_row {
    int type;          /* enum unclip_device_type, or -1: any */
    uint32_t subgroup; /* 0: any */
    int llvm_min;      /* lavapipe's LLVM major version (from the device name) at least; 0: any */
    struct conv_tiles k[4]; /* [K1, K3S1, K3S2, K3N] */
};
/* LLVM 19 (Debian 13's lavapipe) compiles the same shader differently: 3x3 stride 1 at 8 x 4
 * ran 28.1-30.9 GFLOP/s there against 23.2-23.5 at 16 x 4, while on LLVM 15 (Debian 12)
 * 16 x 4 stays best (29.7 against 21.9): bench-ops --conv-tiles in both, 2026-11-25, quiet. */
static const struct tile_row tile_table[] = {
    {UNCLIP_DEVICE_CPU, 0, 19, {{16, 8, 8, 8}, {8, 4, 8, 8}, {8, 8, 8, 8}, {16, 4, 1, 64}}},
    {UNCLIP_DEVICE_CPU, 0, 0, {{16, 8, 8, 8}, {16, 4, 8, 8}, {8, 8, 8, 8}, {16, 4, 1, 64}}},
    {-1, 0, 0, {{8, 4, 8, 8}, {8, 4, 8, 8}, {4, 4, 8, 8}, {8, 4, 1, 64}}},
};

/* Benchmarks and tuning only: when tm is non-zero, these tiles replace the table's for the
 * k 3 stride 1 kind (bench-ops --conv-tiles). Not API. */
struct conv_tiles unclip__conv_tiles_override;

static struct conv_tiles
pick_tiles(struct unclip_vk *vk, int kind)
{
    if (kind == K3S1 && unclip__conv_tiles_override.tm)
        return unclip__conv_tiles_override;
    /* Tuning on a new device without rebuilding: UNCLIP_CONV_TILES=TM,TN,LX,LY (k 3 stride 1). */
    uint32_t et[4];
    if (kind == K3S1 && unclip__tiles_from_env("UNCLIP_CONV_TILES", et))
        return (struct conv_tiles){et[0], et[1], et[2], et[3]};
    const struct unclip_device_info *info = unclip__vk_info(vk);
    int llvm = unclip__llvm_major(vk);
    size_t n = sizeof tile_table / sizeof tile_table[0];
    for (size_t i = 0; i < n; i++) {
        const struct tile_row *r = &tile_table[i];
        if ((r->type < 0 || r->type == (int)info->type) &&
            (r->subgroup == 0 || r->subgroup == info->subgroup_size) &&
            (r->llvm_min == 0 || llvm >= r->llvm_min))
            return r->k[kind];
    }
    return tile_table[n - 1].k[kind];
}
/* At most this many output channels (a UNet's conv_out): the narrow k 3 variants. */
#define NARROW_COUT 16
#define NAIVE_LOCAL 64

/* Push constants of conv2d.comp and conv2d_naive.comp (the naive shader reads blocks and
 * blk_base as pixels). */
struct conv_pc {
    uint32_t blocks, blk_base;
    uint32_t cin, h, w;
    uint32_t cout, ho, wo;
    uint32_t stride, pad, ks;
    uint32_t wk;
    uint32_t x_img, y_img;
    uint32_t flags;
    uint32_t x_off, w_off, b_off, r_off, y_off;
    uint32_t nbx;
    uint32_t t_off, t_img;
};

unclip_status
unclip__op_conv2d(struct unclip_vk *vk, const struct unclip_tensor *x,
                  const struct unclip_tensor *w, const struct unclip_tensor *bias, int32_t stride,
                  int32_t padding, const struct unclip_tensor *residual, struct unclip_tensor *y)
{
    return unclip__op_conv2d_ex(vk, x, w, bias, NULL, stride, padding, residual, y);
}

unclip_status
unclip__op_conv2d_ex(struct unclip_vk *vk, const struct unclip_tensor *x,
                     const struct unclip_tensor *w, const struct unclip_tensor *bias,
                     const struct unclip_tensor *img_bias, int32_t stride, int32_t padding,
                     const struct unclip_tensor *residual, struct unclip_tensor *y)
{
    struct unclip_err *err = unclip__vk_err(vk);
    unclip_status st = unclip__check_tensor(vk, "conv2d", "x", x, -1, false);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, "conv2d", "w", w, -1, true);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, "conv2d", "y", y, -1, false);
    if (st != UNCLIP_OK)
        return st;
    char s1[64], s2[64];
    if (x->ndim != 4 || w->ndim != 4 || w->shape[1] != x->shape[1] || w->shape[2] != w->shape[3] ||
        (w->shape[2] != 1 && w->shape[2] != 3))
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "conv2d: x %s and w %s are not [N, C, H, W] and [Cout, C, k, k] "
                            "with k 1 or 3",
                            unclip__shape_str(x, s1, sizeof s1), unclip__shape_str(w, s2, sizeof s2));
    if ((stride != 1 && stride != 2) || padding < 0)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "conv2d: stride %d / padding %d unsupported",
                            (int)stride, (int)padding);
    int32_t ks = (int32_t)w->shape[2];
    int64_t nb = x->shape[0], cin = x->shape[1], h = x->shape[2], wd = x->shape[3];
    int64_t cout = w->shape[0];
    int64_t ho = (h + 2 * padding - ks) / stride + 1, wo = (wd + 2 * padding - ks) / stride + 1;
    if (h + 2 * padding < ks || wd + 2 * padding < ks || ho <= 0 || wo <= 0)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "conv2d: input %s too small for k=%d pad=%d",
                            unclip__shape_str(x, s1, sizeof s1), (int)ks, (int)padding);
    int64_t yshape[4] = {nb, cout, ho, wo};
    if ((st = unclip__check_shape(vk, "conv2d", "y", y, 4, yshape)) != UNCLIP_OK)
        return st;
    if (bias && (st = unclip__check_tensor(vk, "conv2d", "bias", bias, cout, true)) != UNCLIP_OK)
        return st;
    if (img_bias && (st = unclip__check_tensor(vk, "conv2d", "img_bias", img_bias, nb * cout,
                                               false)) != UNCLIP_OK)
        return st;
    bool res_in_y = residual && residual->buf == y->buf;
    if (residual && res_in_y && residual != y)
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "conv2d: residual shares y's buffer but is not y");
    if (residual && !res_in_y &&
        ((st = unclip__check_tensor(vk, "conv2d", "residual", residual, -1, false)) != UNCLIP_OK ||
         (st = unclip__check_shape(vk, "conv2d", "residual", residual, 4, yshape)) != UNCLIP_OK))
        return st;
    if (x->buf == y->buf || w->buf == y->buf || (img_bias && img_bias->buf == y->buf))
        return unclip__fail(err, UNCLIP_E_INTERNAL, "conv2d: y aliases an input");

    uint64_t range = unclip__vk_info(vk)->max_storage_buffer_range;
    uint64_t room = range > ALIGN ? range - ALIGN : 0;
    uint64_t es = unclip__dtype_size(w->dtype);
    int64_t hw = h * wd, hwo = ho * wo, k2 = (int64_t)ks * ks, wk = cin * k2;
    int64_t x_img = cin * hw, y_img = cout * hwo;
    bool f16 = w->dtype == UNCLIP_DT_F16;
    bool naive = unclip__gemm_override == 1;
    int loads = unclip__gemm_loads(vk);
    if (unclip__gemm_override >= 2 && unclip__gemm_override <= 4)
        loads = unclip__gemm_override - 2;
    int kind = ks == 1 ? K1 : (stride == 2 ? K3S2 : (cout <= NARROW_COUT ? K3N : K3S1));
    /* The k 3 64-bit variants also read input rows in aligned pairs: W % 4 == 0. */
    bool wide = loads >= 2 && (ks == 1 || wd % 4 == 0);
    int var = f16 ? (wide ? V_V64_F16 : V_F16) : (wide ? V_V64_F32 : V_F32);

    /* Cin per pass: everything when one image's input fits, else whole planes in multiples
     * of 8 channels. */
    int64_t cc = cin;
    if ((uint64_t)x_img * 4 > room) {
        cc = (int64_t)(room / ((uint64_t)hw * 4));
        if (cc >= 8)
            cc -= cc % 8;
    }
    /* Cout per chunk: weight rows and one image's output planes must fit. */
    int64_t coc = min64(cout, (int64_t)(room / ((uint64_t)wk * es)));
    coc = min64(coc, (int64_t)(room / ((uint64_t)hwo * 4)));
    if (naive)
        coc = min64(coc, unclip__vk_max_groups(vk, 1));
    if (cc < 1 || coc < 1)
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "conv2d: x %s / w %s: one plane exceeds the binding range of %llu "
                            "bytes",
                            unclip__shape_str(x, s1, sizeof s1), unclip__shape_str(w, s2, sizeof s2),
                            (unsigned long long)range);
    /* Images per group: whole x and y images must fit (one image when Cin or Cout is split). */
    int64_t ng = nb;
    if (cc < cin || coc < cout)
        ng = 1;
    ng = min64(ng, (int64_t)(room / ((uint64_t)x_img * 4)));
    ng = min64(ng, (int64_t)(room / ((uint64_t)y_img * 4)));
    if (ng < 1)
        ng = 1;
    /* Work items: pixel blocks (naive: pixels) of tm pixels, nbx of them per output row
     * (k 3) or per image (k 1). */
    struct conv_tiles tl = pick_tiles(vk, kind);
    /* Constant 4: the 64-bit k 3 variants' row-segment shift, fixed when every block starts
     * at the same offset modulo 4 (see conv2d.comp); ~0u = computed per block. */
    uint32_t spec[5] = {tl.tm, tl.tn, tl.lx, tl.ly,
                        (tl.tm * (uint32_t)stride) % 4 == 0 ? (uint32_t)(-padding & 3) : ~0u};
    int64_t tm = naive ? 1 : tl.tm;
    int64_t nbx = ks == 3 ? (wo + tm - 1) / tm : (hwo + tm - 1) / tm;
    int64_t per_img = naive ? hwo : (ks == 3 ? ho * nbx : nbx);
    int64_t items_per_group = naive ? NAIVE_LOCAL : tl.ly;
    int64_t cols_per_group = naive ? 1 : (int64_t)tl.tn * tl.lx;
    int shader = naive ? (f16 ? UNCLIP_SHADER_conv2d_naive_f16 : UNCLIP_SHADER_conv2d_naive_f32)
                       : shaders[kind][var];

    for (int64_t b0 = 0; b0 < nb; b0 += ng) {
        int64_t nbc = min64(ng, nb - b0);
        int64_t items_all = nbc * per_img;
        for (int64_t co0 = 0; co0 < cout; co0 += coc) {
            int64_t cocur = min64(coc, cout - co0);
            int64_t ystart = b0 * y_img + co0 * hwo, ycount = (nbc - 1) * y_img + cocur * hwo;
            struct window wy = make_window(y, ystart, ycount);
            struct window wr = {.bind = wy.bind};
            if (residual && !res_in_y)
                wr = make_window(residual, ystart, ycount);
            struct window wb = {.bind = wy.bind};
            if (bias)
                wb = make_window(bias, co0, cocur);
            struct window wt = {.bind = wy.bind};
            if (img_bias)
                wt = make_window(img_bias, b0 * cout + co0, (nbc - 1) * cout + cocur);
            for (int64_t c0 = 0; c0 < cin; c0 += cc) {
                int64_t ccur = min64(cc, cin - c0);
                int64_t kk = ccur * k2;
                struct window wx =
                    make_window(x, b0 * x_img + c0 * hw, (nbc - 1) * x_img + ccur * hw);
                struct window ww = make_window(w, co0 * wk + c0 * k2, (cocur - 1) * wk + kk);
                uint32_t flags = 0;
                if (c0 == 0) {
                    flags |= bias ? 1u : 0u;
                    flags |= bias && bias->dtype == UNCLIP_DT_F16 ? 8u : 0u;
                    flags |= residual && !res_in_y ? 2u : 0u;
                    flags |= res_in_y ? 4u : 0u;
                    flags |= img_bias ? 16u : 0u;
                } else {
                    flags |= 4u;
                }
                /* Items per dispatch: bounded work, whole workgroups, grid limits. */
                int64_t ic = (int64_t)(UNCLIP_VK_WORK_BOUND /
                                       ((uint64_t)cocur * (uint64_t)kk * (uint64_t)tm));
                ic = ic / items_per_group * items_per_group;
                if (ic < items_per_group)
                    ic = items_per_group;
                ic = min64(ic, (int64_t)unclip__vk_max_groups(vk, naive ? 0 : 1) * items_per_group);
                for (int64_t i0 = 0; i0 < items_all; i0 += ic) {
                    int64_t icur = min64(ic, items_all - i0);
                    struct conv_pc pc = {
                        .blocks = (uint32_t)icur, .blk_base = (uint32_t)i0,
                        .cin = (uint32_t)ccur, .h = (uint32_t)h, .w = (uint32_t)wd,
                        .cout = (uint32_t)cocur, .ho = (uint32_t)ho, .wo = (uint32_t)wo,
                        .stride = (uint32_t)stride, .pad = (uint32_t)padding, .ks = (uint32_t)ks,
                        .wk = (uint32_t)wk, .x_img = (uint32_t)x_img, .y_img = (uint32_t)y_img,
                        .flags = flags,
                        .x_off = wx.rem, .w_off = ww.rem, .b_off = wb.rem, .r_off = wr.rem,
                        .y_off = wy.rem, .nbx = (uint32_t)nbx,
                        .t_off = wt.rem, .t_img = (uint32_t)cout,
                    };
                    struct unclip_vk_bind binds[6] = {wx.bind, ww.bind, wb.bind, wr.bind,
                                                      wy.bind, wt.bind};
                    uint32_t gx, gy;
                    if (naive) {
                        gx = (uint32_t)((icur + NAIVE_LOCAL - 1) / NAIVE_LOCAL);
                        gy = (uint32_t)cocur;
                    } else {
                        gx = (uint32_t)((cocur + cols_per_group - 1) / cols_per_group);
                        gy = (uint32_t)((icur + items_per_group - 1) / items_per_group);
                    }
                    st = unclip__vk_dispatch_spec(vk, shader, spec, naive ? 0 : 5, binds, 6,
                                                  &pc, sizeof pc, gx, gy, 1,
                                                  (uint64_t)icur * (uint64_t)tm *
                                                      (uint64_t)cocur * (uint64_t)kk);
                    if (st != UNCLIP_OK)
                        return st;
                }
            }
        }
    }
    return UNCLIP_OK;
}
