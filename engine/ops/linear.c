/* Linear layer: y[M, N] = x[M, K] . w[N, K]^T (+ bias) (+ residual).
 *
 * Shaders: linear.comp (register-blocked; variants by load width and tile size) and
 * linear_naive.comp (one output per invocation: the baseline, kept for benchmarks).
 *
 * Big tensors. One binding sees at most max_storage_buffer_range bytes, so the work is cut
 * into chunks: along N so that each chunk's weight rows fit in one binding, and along M so
 * that each chunk's rows of x, y and the residual fit, and so that one dispatch stays within
 * the submission work bound. Each chunk binds windows that start at a 256-byte aligned
 * offset; the shader gets the remaining element offset in push constants.
 */
#include "ops/ops.h"

#include "ops/op-util.h"

/* Shader variants. Loads: scalar for any K, vec4 when K % 8 == 0, 64-bit components when the
 * device also has shaderInt64. */
struct variant {
    int shader;
    int64_t rows, cols; /* the block of y one workgroup covers */
};
enum { LOADS_SCALAR = 0, LOADS_VEC, LOADS_V64 };
/* [small][loads][f16] */
static const int variants[2][3][2] = {
    {{UNCLIP_SHADER_linear_f32, UNCLIP_SHADER_linear_f16},
     {UNCLIP_SHADER_linear_vec_f32, UNCLIP_SHADER_linear_vec_f16},
     {UNCLIP_SHADER_linear_v64_f32, UNCLIP_SHADER_linear_v64_f16}},
    {{UNCLIP_SHADER_linear_small_f32, UNCLIP_SHADER_linear_small_f16},
     {UNCLIP_SHADER_linear_small_vec_f32, UNCLIP_SHADER_linear_small_vec_f16},
     {UNCLIP_SHADER_linear_small_v64_f32, UNCLIP_SHADER_linear_small_v64_f16}},
};
static const struct variant naive[2] = {{UNCLIP_SHADER_linear_naive_f32, 4, 16},
                                        {UNCLIP_SHADER_linear_naive_f16, 4, 16}};

/* Tile sizes, passed to linear.comp as specialization constants 0..3: TM rows x TN columns
 * of y per invocation, LX x LY invocations per workgroup (a workgroup covers TM * LY rows and
 * TN * LX columns). One row per device class, keyed by device type and subgroup size; the
 * last row matches everything.
 * CPU (lavapipe): 96 accumulators per invocation, the best measured trade between the loads
 * per FMA (each loaded component is a loop over the 8 lanes) and register spills; small M
 * (< SMALL_M rows: text tokens, time embeddings) uses 2 x 4 blocks over 64 lanes of columns.
 * GPUs (not measurable here): 4 x 4 per invocation, 16 x 16 invocations (64 x 64 tiles),
 * about 40 registers per invocation so occupancy stays high. */
struct gemm_tiles {
    uint32_t tm, tn, lx, ly;
};
struct tile_row {
    int type;          /* enum unclip_device_type, or -1: any */
    uint32_t subgroup; /* 0: any */
    int llvm_min;      /* lavapipe's LLVM major version at least (unclip__llvm_major); 0: any */
    struct gemm_tiles big, small;
};
/* LLVM 19 (Debian 13's lavapipe): 6 x 8 ran the F16 matmul 4096x768x3072 at 28.2-28.6
 * GFLOP/s there against 23.6-23.9 at 12 x 8 (which stays best on LLVM 15: 27.4 against
 * 15.8): bench/sweep-tiles.sh and bench-ops --gemm-tiles in the chroot, 2026-11-25, quiet. */
static const struct tile_row tile_table[] = {
    {UNCLIP_DEVICE_CPU, 0, 19, {6, 8, 8, 8}, {2, 4, 64, 1}},
    {UNCLIP_DEVICE_CPU, 0, 0, {12, 8, 8, 8}, {2, 4, 64, 1}},
    {-1, 0, 0, {4, 4, 16, 16}, {1, 4, 64, 1}},
};

/* Benchmarks and tuning only: when tm is non-zero, these tiles replace the table's big tiles
 * (bench-ops --gemm-tiles, tests/ops linear_tiles). Not API. */
struct gemm_tiles unclip__gemm_tiles_override;

static struct gemm_tiles
pick_tiles(struct unclip_vk *vk, bool small)
{
    if (!small && unclip__gemm_tiles_override.tm)
        return unclip__gemm_tiles_override;
    /* Tuning on a new device without rebuilding: UNCLIP_GEMM_TILES=TM,TN,LX,LY (big tiles). */
    uint32_t et[4];
    if (!small && unclip__tiles_from_env("UNCLIP_GEMM_TILES", et))
        return (struct gemm_tiles){et[0], et[1], et[2], et[3]};
    const struct unclip_device_info *info = unclip__vk_info(vk);
    int llvm = unclip__llvm_major(vk);
    size_t n = sizeof tile_table / sizeof tile_table[0];
    const struct tile_row *r = &tile_table[n - 1];
    for (size_t i = 0; i < n; i++)
        if ((tile_table[i].type < 0 || tile_table[i].type == (int)info->type) &&
            (tile_table[i].subgroup == 0 || tile_table[i].subgroup == info->subgroup_size) &&
            (tile_table[i].llvm_min == 0 || llvm >= tile_table[i].llvm_min)) {
            r = &tile_table[i];
            break;
        }
    return small ? r->small : r->big;
}
/* Below this many rows the small-tile variants waste less work than the 96-row tiles. */
#define SMALL_M 48

/* Benchmarks and tuning only: 0 picks automatically; 1 forces the naive shaders, 2 scalar
 * loads, 3 vec4 loads, 4 64-bit loads (only valid when unclip__vk_shader_int64(vk): lavapipe
 * tolerates it otherwise, validation does not). Also read by conv.c. */
int unclip__gemm_override = 0;

#define ALIGN 256u

struct window {
    struct unclip_vk_bind bind;
    uint32_t rem; /* element offset of the first wanted element inside the window */
};

/* A binding of elements [start, start + count) of t, starting at the 256-byte boundary at or
 * before `start`. */
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

/* Which load width the device allows (before the per-chunk alignment check). */
int
unclip__gemm_loads(struct unclip_vk *vk)
{
    /* 64-bit loads need shaderInt64, which engine/vk enables whenever the device has it;
     * without it the vec4 / 32-bit word variants are the widest. */
    return unclip__vk_shader_int64(vk) ? LOADS_V64 : LOADS_VEC;
}

unclip_status
unclip__op_linear(struct unclip_vk *vk, const struct unclip_tensor *x,
                  const struct unclip_tensor *w, const struct unclip_tensor *bias,
                  const struct unclip_tensor *residual, struct unclip_tensor *y)
{
    struct unclip_err *err = unclip__vk_err(vk);
    unclip_status st = unclip__check_tensor(vk, "linear", "w", w, -1, true);
    if (st == UNCLIP_OK)
        st = unclip__check_tensor(vk, "linear", "x", x, -1, false);
    if (st != UNCLIP_OK)
        return st;
    if (w->ndim != 2) {
        char sw[64];
        return unclip__fail(err, UNCLIP_E_INTERNAL, "linear: w has shape %s, expected [N, K]",
                            unclip__shape_str(w, sw, sizeof sw));
    }
    int64_t n = w->shape[0], k = w->shape[1];
    int64_t xn = unclip__tensor_numel(x);
    if (xn % k != 0) {
        char sx[64], sw[64];
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "linear: x %s does not end in K = %lld of w %s",
                            unclip__shape_str(x, sx, sizeof sx), (long long)k,
                            unclip__shape_str(w, sw, sizeof sw));
    }
    int64_t m = xn / k;
    if ((st = unclip__check_tensor(vk, "linear", "y", y, m * n, false)) != UNCLIP_OK)
        return st;
    if (bias && (st = unclip__check_tensor(vk, "linear", "bias", bias, n, true)) != UNCLIP_OK)
        return st;
    bool res_in_y = residual && residual->buf == y->buf;
    if (residual && !res_in_y &&
        (st = unclip__check_tensor(vk, "linear", "residual", residual, m * n, false)) != UNCLIP_OK)
        return st;
    if (residual && residual != y && res_in_y)
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "linear: residual shares y's buffer but is not y");
    if (x->buf == y->buf || w->buf == y->buf)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "linear: y aliases an input");

    /* Chunk sizes. A window may start up to 255 bytes before its first element. */
    uint64_t range = unclip__vk_info(vk)->max_storage_buffer_range;
    uint64_t es = unclip__dtype_size(w->dtype);
    uint64_t room = range > ALIGN ? range - ALIGN : 0;
    int64_t nc = (int64_t)(room / ((uint64_t)k * es));
    int64_t mc_x = (int64_t)(room / ((uint64_t)k * 4));
    int64_t mc_y = (int64_t)(room / ((uint64_t)n * 4));
    if (nc < 1 || mc_x < 1 || mc_y < 1)
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "linear: one row (K = %lld, N = %lld) exceeds the binding range "
                            "of %llu bytes",
                            (long long)k, (long long)n, (unsigned long long)range);
    bool f16 = w->dtype == UNCLIP_DT_F16;
    int loads = unclip__gemm_loads(vk);
    if (unclip__gemm_override >= 2 && unclip__gemm_override <= 4)
        loads = unclip__gemm_override - 2;
    if (k % 8 != 0)
        loads = LOADS_SCALAR;
    bool small = m < SMALL_M;
    struct gemm_tiles tl = pick_tiles(vk, small);
    uint32_t spec[4] = {tl.tm, tl.tn, tl.lx, tl.ly};
    bool use_naive = unclip__gemm_override == 1;
    struct variant var = use_naive ? naive[f16]
                                   : (struct variant){variants[small][loads][f16],
                                                      (int64_t)tl.tm * tl.ly,
                                                      (int64_t)tl.tn * tl.lx};
    int64_t tm = var.rows, tn = var.cols;
    int64_t mc = mc_x < mc_y ? mc_x : mc_y;
    /* Keep each dispatch within the submission bound (at least one row tile) and within the
     * device's workgroup count limits. */
    int64_t mc_work = (int64_t)(UNCLIP_VK_WORK_BOUND / ((uint64_t)(nc < n ? nc : n) * k));
    mc_work = mc_work / tm * tm;
    if (mc_work < tm)
        mc_work = tm;
    if (mc > mc_work)
        mc = mc_work;
    int64_t max_gy = (int64_t)unclip__vk_max_groups(vk, 1) * tm;
    if (mc > max_gy)
        mc = max_gy;
    int64_t max_gx = (int64_t)unclip__vk_max_groups(vk, 0) * tn;
    if (nc > max_gx)
        nc = max_gx;

    for (int64_t n0 = 0; n0 < n; n0 += nc) {
        int64_t ncur = n - n0 < nc ? n - n0 : nc;
        struct window ww = make_window(w, n0 * k, ncur * k);
        struct window wb = {.bind = ww.bind};
        if (bias)
            wb = make_window(bias, n0, ncur);
        for (int64_t m0 = 0; m0 < m; m0 += mc) {
            int64_t mcur = m - m0 < mc ? m - m0 : mc;
            struct window wx = make_window(x, m0 * k, mcur * k);
            /* y and residual: rows m0 .. m0+mcur, columns n0 .. n0+ncur. */
            int64_t ystart = m0 * n + n0, ycount = (mcur - 1) * n + ncur;
            struct window wy = make_window(y, ystart, ycount);
            struct window wr = {.bind = wx.bind};
            if (residual && !res_in_y)
                wr = make_window(residual, ystart, ycount);
            struct {
                uint32_t m, n, k, ldy, flags, x_off, w_off, b_off, r_off, y_off, wk;
            } pc = {
                (uint32_t)mcur, (uint32_t)ncur, (uint32_t)k, (uint32_t)n,
                (bias ? 1u : 0u) | (residual && !res_in_y ? 2u : 0u) | (res_in_y ? 4u : 0u) |
                    (bias && bias->dtype == UNCLIP_DT_F16 ? 8u : 0u),
                wx.rem, ww.rem, wb.rem, wr.rem, wy.rem, (uint32_t)k,
            };
            struct unclip_vk_bind binds[5] = {wx.bind, ww.bind, wb.bind, wr.bind, wy.bind};
            uint32_t gx = (uint32_t)((ncur + tn - 1) / tn);
            uint32_t gy = (uint32_t)((mcur + tm - 1) / tm);
            /* The vector variants need 8-aligned windows (true when K % 8 == 0; checked). */
            int shader = var.shader;
            if (loads != LOADS_SCALAR && !use_naive && ((wx.rem | ww.rem) % 8 != 0))
                shader = variants[small][LOADS_SCALAR][f16];
            st = unclip__vk_dispatch_spec(vk, shader, spec, use_naive ? 0 : 4, binds, 5, &pc,
                                          sizeof pc, gx, gy, 1,
                                          (uint64_t)mcur * (uint64_t)ncur * (uint64_t)k);
            if (st != UNCLIP_OK)
                return st;
        }
    }
    return UNCLIP_OK;
}
