/* 2-D convolution (k = 1 or 3, stride 1 or 2, zero padding) as an implicit GEMM.
 *
 * Shaders: conv2d.comp (register-blocked through linear-gemm.glsl; KS 1 / 3, F32 / F16
 * weights, generic and W_VEC variants) and conv2d_naive.comp (one output per invocation) for
 * devices whose subgroup size is not a multiple of 8.
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

/* Must match TM and TN * LOCAL in shaders/conv2d.comp. */
#define FAST_TM 16
#define FAST_TN_LOCAL (4 * 64)
#define NAIVE_LOCAL 64

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

static int
pick_shader(bool fast, int32_t k, bool f16, bool vec)
{
    if (!fast)
        return f16 ? UNCLIP_SHADER_conv2d_naive_f16 : UNCLIP_SHADER_conv2d_naive_f32;
    if (k == 1) {
        if (vec)
            return f16 ? UNCLIP_SHADER_conv2d_k1_vec_f16 : UNCLIP_SHADER_conv2d_k1_vec_f32;
        return f16 ? UNCLIP_SHADER_conv2d_k1_f16 : UNCLIP_SHADER_conv2d_k1_f32;
    }
    if (vec)
        return f16 ? UNCLIP_SHADER_conv2d_k3_vec_f16 : UNCLIP_SHADER_conv2d_k3_vec_f32;
    return f16 ? UNCLIP_SHADER_conv2d_k3_f16 : UNCLIP_SHADER_conv2d_k3_f32;
}

struct conv_pc {
    uint32_t rows, m_base;
    uint32_t cin, h, w;
    uint32_t cout, ho, wo;
    uint32_t stride, pad, ks;
    uint32_t wk;
    uint32_t x_img, y_img;
    uint32_t flags;
    uint32_t x_off, w_off, b_off, r_off, y_off;
};

unclip_status
unclip__op_conv2d(struct unclip_vk *vk, const struct unclip_tensor *x,
                  const struct unclip_tensor *w, const struct unclip_tensor *bias, int32_t stride,
                  int32_t padding, const struct unclip_tensor *residual, struct unclip_tensor *y)
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
    bool res_in_y = residual && residual->buf == y->buf;
    if (residual && res_in_y && residual != y)
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "conv2d: residual shares y's buffer but is not y");
    if (residual && !res_in_y &&
        ((st = unclip__check_tensor(vk, "conv2d", "residual", residual, -1, false)) != UNCLIP_OK ||
         (st = unclip__check_shape(vk, "conv2d", "residual", residual, 4, yshape)) != UNCLIP_OK))
        return st;
    if (x->buf == y->buf || w->buf == y->buf)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "conv2d: y aliases an input");

    uint64_t range = unclip__vk_info(vk)->max_storage_buffer_range;
    uint64_t room = range > ALIGN ? range - ALIGN : 0;
    uint64_t es = unclip__dtype_size(w->dtype);
    int64_t hw = h * wd, hwo = ho * wo, k2 = (int64_t)ks * ks, wk = cin * k2;
    int64_t x_img = cin * hw, y_img = cout * hwo;
    bool fast = unclip__vk_info(vk)->subgroup_size >= 8 && unclip__vk_info(vk)->subgroup_size % 8 == 0;
    bool f16 = w->dtype == UNCLIP_DT_F16;

    /* Cin per pass: everything when one image's input fits, else whole planes in multiples
     * of 8 channels (keeps weight rows 8-aligned for the W_VEC variants). */
    int64_t cc = cin;
    if ((uint64_t)x_img * 4 > room) {
        cc = (int64_t)(room / ((uint64_t)hw * 4));
        if (cc >= 8)
            cc -= cc % 8;
    }
    /* Cout per chunk: weight rows and one image's output planes must fit. */
    int64_t coc = min64(cout, (int64_t)(room / ((uint64_t)wk * es)));
    coc = min64(coc, (int64_t)(room / ((uint64_t)hwo * 4)));
    if (!fast)
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
    int64_t tm = fast ? FAST_TM : NAIVE_LOCAL;
    int64_t tn = fast ? FAST_TN_LOCAL : 1;

    for (int64_t b0 = 0; b0 < nb; b0 += ng) {
        int64_t nbc = min64(ng, nb - b0);
        int64_t rows_all = nbc * hwo;
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
            for (int64_t c0 = 0; c0 < cin; c0 += cc) {
                int64_t ccur = min64(cc, cin - c0);
                int64_t kk = ccur * k2;
                struct window wx =
                    make_window(x, b0 * x_img + c0 * hw, (nbc - 1) * x_img + ccur * hw);
                struct window ww = make_window(w, co0 * wk + c0 * k2, (cocur - 1) * wk + kk);
                bool vec = fast && kk % 8 == 0 && wk % 8 == 0 && ww.rem % 8 == 0;
                int shader = pick_shader(fast, ks, f16, vec);
                uint32_t flags = 0;
                if (c0 == 0) {
                    flags |= bias ? 1u : 0u;
                    flags |= bias && bias->dtype == UNCLIP_DT_F16 ? 8u : 0u;
                    flags |= residual && !res_in_y ? 2u : 0u;
                    flags |= res_in_y ? 4u : 0u;
                } else {
                    flags |= 4u;
                }
                /* Rows per dispatch: bounded work, a whole number of tiles, grid limits. */
                int64_t rc = (int64_t)(UNCLIP_VK_WORK_BOUND / ((uint64_t)cocur * (uint64_t)kk));
                rc = rc / tm * tm;
                if (rc < tm)
                    rc = tm;
                rc = min64(rc, (int64_t)unclip__vk_max_groups(vk, fast ? 1 : 0) * tm);
                for (int64_t r0 = 0; r0 < rows_all; r0 += rc) {
                    int64_t rcur = min64(rc, rows_all - r0);
                    struct conv_pc pc = {
                        .rows = (uint32_t)rcur, .m_base = (uint32_t)r0,
                        .cin = (uint32_t)ccur, .h = (uint32_t)h, .w = (uint32_t)wd,
                        .cout = (uint32_t)cocur, .ho = (uint32_t)ho, .wo = (uint32_t)wo,
                        .stride = (uint32_t)stride, .pad = (uint32_t)padding, .ks = (uint32_t)ks,
                        .wk = (uint32_t)wk, .x_img = (uint32_t)x_img, .y_img = (uint32_t)y_img,
                        .flags = flags,
                        .x_off = wx.rem, .w_off = ww.rem, .b_off = wb.rem, .r_off = wr.rem,
                        .y_off = wy.rem,
                    };
                    struct unclip_vk_bind binds[5] = {wx.bind, ww.bind, wb.bind, wr.bind,
                                                      wy.bind};
                    uint32_t gx, gy;
                    if (fast) {
                        gx = (uint32_t)((cocur + tn - 1) / tn);
                        gy = (uint32_t)((rcur + tm - 1) / tm);
                    } else {
                        gx = (uint32_t)((rcur + tm - 1) / tm);
                        gy = (uint32_t)cocur;
                    }
                    st = unclip__vk_dispatch(vk, shader, binds, 5, &pc, sizeof pc, gx, gy, 1,
                                             (uint64_t)rcur * (uint64_t)cocur * (uint64_t)kk);
                    if (st != UNCLIP_OK)
                        return st;
                }
            }
        }
    }
    return UNCLIP_OK;
}
