/* GPU ops: host wrappers that check arguments and record one or more dispatches.
 *
 * Conventions for every op:
 * - Activations (x, y, residuals, masks) are F32 tensors; weights (w) are F32 or F16, and the
 *   op picks the shader variant from w->dtype. Accumulation is always fp32.
 * - Shapes are checked against each other; a mismatch returns UNCLIP_E_INTERNAL with both
 *   shapes in the message (it is a programming error in a model, not a user error).
 * - Outputs are written, never read (unless the op says "in place" or takes a residual).
 *   An output must not alias an input unless the op says so.
 * - Recording may submit earlier work (bounded submissions) and so may return
 *   UNCLIP_E_CANCELLED or a device error; see vk.h.
 * - Tensors larger than one binding (max_storage_buffer_range, 128 MiB on lavapipe) are
 *   split into chunks internally (engine/ops/op-util.h), so callers never split.
 * - Every op has a plain C reference in engine/ref/ref.h with the same math, used by the op
 *   tests on random, odd-sized inputs.
 */
#ifndef UNCLIP_OPS_OPS_H
#define UNCLIP_OPS_OPS_H

#include "ops/tensor.h"

#include <stdbool.h>

/* ---- elementwise (engine/ops/elementwise.c) ---- */

enum unclip_act {
    UNCLIP_ACT_NONE = 0,
    UNCLIP_ACT_SILU,       /* x * sigmoid(x)                       */
    UNCLIP_ACT_GELU,       /* exact: 0.5 x (1 + erf(x / sqrt 2))   */
    UNCLIP_ACT_QUICK_GELU, /* x * sigmoid(1.702 x)                 */
    UNCLIP_ACT_CLAMP,      /* clamp(x, lo, hi) (unclip__op_unary's lo/hi) */
};

/* y = act(alpha * x + beta), elementwise over numel(x). y may be x (in place).
 * lo/hi are used by UNCLIP_ACT_CLAMP only. */
unclip_status unclip__op_unary(struct unclip_vk *vk, const struct unclip_tensor *x,
                               enum unclip_act act, float alpha, float beta, float lo, float hi,
                               struct unclip_tensor *y);

enum unclip_binop { UNCLIP_BIN_ADD = 0, UNCLIP_BIN_SUB, UNCLIP_BIN_MUL };

/* y = a (op) b with numpy broadcasting: shapes are right-aligned; each dimension of b (and
 * of a) is either equal to y's or 1. y's shape is the broadcast shape and must be allocated
 * with it. y may alias a (in place) when a has y's shape. */
unclip_status unclip__op_binary(struct unclip_vk *vk, enum unclip_binop op,
                                const struct unclip_tensor *a, const struct unclip_tensor *b,
                                struct unclip_tensor *y);

/* y = a + scale * (b - a): classifier-free guidance (a = unconditional, b = conditional)
 * and linear interpolation. Same shapes; y may alias a. */
unclip_status unclip__op_lerp(struct unclip_vk *vk, const struct unclip_tensor *a,
                              const struct unclip_tensor *b, float scale, struct unclip_tensor *y);

/* Strided 4-D copy: for every index i in `shape`,
 *   dst[dst_off + sum_k i_k * dst_stride_k] = src[src_off + sum_k i_k * src_stride_k]
 * (element units). Covers concat, slicing, chunking and transposes. Both F32. */
struct unclip_copy_desc {
    int64_t shape[4];
    int64_t src_off, src_stride[4];
    int64_t dst_off, dst_stride[4];
};
unclip_status unclip__op_copy(struct unclip_vk *vk, const struct unclip_tensor *src,
                              struct unclip_tensor *dst, const struct unclip_copy_desc *d);

/* Concatenation along `dim` of a and b into y (same ndim, other dims equal). */
unclip_status unclip__op_concat(struct unclip_vk *vk, const struct unclip_tensor *a,
                                const struct unclip_tensor *b, int32_t dim,
                                struct unclip_tensor *y);

/* Row gather: y[i, :] = table[ids[i], :]. table: [V, D] (F32 or F16), ids on the host
 * (n_ids values in [0, V)), y: [n_ids, D] F32. */
unclip_status unclip__op_embedding(struct unclip_vk *vk, const struct unclip_tensor *table,
                                   const int32_t *ids, int32_t n_ids, struct unclip_tensor *y);

/* ---- linear algebra (engine/ops/linear.c) ---- */

/* y[M, N] = x[M, K] . w[N, K]^T (+ bias[N]) (+ residual[M, N]), where w is stored as PyTorch's
 * nn.Linear.weight ([out, in]); M = numel(x) / K. bias and residual may be NULL; residual may
 * alias y only if it is exactly y. y: any shape with numel M * N. */
unclip_status unclip__op_linear(struct unclip_vk *vk, const struct unclip_tensor *x,
                                const struct unclip_tensor *w, const struct unclip_tensor *bias,
                                const struct unclip_tensor *residual, struct unclip_tensor *y);

/* 2-D convolution, x: [N, Cin, H, W], w: [Cout, Cin, k, k] with k in {1, 3}, bias [Cout] or
 * NULL, stride 1 or 2, padding >= 0 (zeros). y: [N, Cout, Ho, Wo] with
 * Ho = (H + 2p - k) / stride + 1. residual (NULL or y's shape) is added after the bias. */
unclip_status unclip__op_conv2d(struct unclip_vk *vk, const struct unclip_tensor *x,
                                const struct unclip_tensor *w, const struct unclip_tensor *bias,
                                int32_t stride, int32_t padding,
                                const struct unclip_tensor *residual, struct unclip_tensor *y);
/* As unclip__op_conv2d, plus img_bias: NULL or an F32 tensor of N * Cout values ([N, Cout],
 * any shape) added to every pixel of image n, channel c after the bias and before the
 * residual: a UNet resnet's additive time embedding, fused into the epilogue instead of a
 * separate pass over the map. */
unclip_status unclip__op_conv2d_ex(struct unclip_vk *vk, const struct unclip_tensor *x,
                                   const struct unclip_tensor *w, const struct unclip_tensor *bias,
                                   const struct unclip_tensor *img_bias, int32_t stride,
                                   int32_t padding, const struct unclip_tensor *residual,
                                   struct unclip_tensor *y);

/* ---- normalisation (engine/ops/norm.c) ---- */

/* Group norm over x: [N, C, *] (spatial dims flattened), groups of C / n_groups channels,
 * biased variance, then y = xn * gamma[c] + beta[c]; then, when scale_shift ([N, 2C]) is
 * given, y = y * (1 + scale[n, c]) + shift[n, c] with scale = scale_shift[:, :C] and
 * shift = scale_shift[:, C:]; then SiLU when silu. y may alias x. gamma/beta [C] may be NULL
 * (1 / 0) and are F32 or F16 (both the same). Mean and variance are two-pass in fp32. A tensor
 * larger than one binding is processed in chunks of whole groups (one group, C / n_groups *
 * spatial floats, must fit a binding). */
unclip_status unclip__op_group_norm(struct unclip_vk *vk, const struct unclip_tensor *x,
                                    const struct unclip_tensor *gamma,
                                    const struct unclip_tensor *beta, int32_t n_groups, float eps,
                                    const struct unclip_tensor *scale_shift, bool silu,
                                    struct unclip_tensor *y);

/* Layer norm over the last dimension C of x ([*, C]); gamma/beta [C] (may be NULL: 1 / 0;
 * F32 or F16, both the same). y may alias x. */
unclip_status unclip__op_layer_norm(struct unclip_vk *vk, const struct unclip_tensor *x,
                                    const struct unclip_tensor *gamma,
                                    const struct unclip_tensor *beta, float eps,
                                    struct unclip_tensor *y);

/* Softmax over the last dimension of x ([*, L]), max-subtracted; y may alias x. */
unclip_status unclip__op_softmax(struct unclip_vk *vk, const struct unclip_tensor *x,
                                 struct unclip_tensor *y);

/* ---- attention (engine/ops/attention.c) ---- */

/* A sequence of rows inside a tensor: row r of batch b, head h starts at element
 *   off + b * batch_stride + r * row_stride + h * head_stride
 * with head_stride 0 meaning head_dim: the heads side by side in a row, as a projection
 * writes them (so q/k/v may live packed in one projection output). A head-major copy
 * (unclip__attn_head_major) has head_stride = len * head_dim. */
struct unclip_seq {
    const struct unclip_tensor *t;
    int64_t off, row_stride, batch_stride;
    int32_t len; /* rows */
    int64_t head_stride; /* 0: head_dim */
};

/* Fused multi-head attention, softmax(q k^T * scale + mask) v, never materialising the
 * scores in memory.
 *   q: Lq rows; keys/values: k1/v1 (L1 rows) followed by k2/v2 (L2 rows, optional: len 0 or
 *   t NULL) concatenated along the sequence;
 *   key_bias: NULL or an F32 tensor [B, L1] added to the scores of the first L1 keys
 *   (0 keeps, a large negative value masks; use finite values such as -10000: a query that
 *   sees no finite-scored key gets an undefined result);
 *   causal: query i only sees keys j <= i (counting over the concatenated keys).
 * head_dim <= 128. out: [B, Lq, n_heads * head_dim] contiguous, must not alias an input.
 * Rows are read as vec4s (much faster on lavapipe) when head_dim and every key/value
 * offset and stride are multiples of 4; any layout works. Each tensor is bound whole, so it
 * must fit one binding (128 MiB on lavapipe). */
struct unclip_attn_desc {
    int32_t batch, n_heads, head_dim;
    float scale;
    bool causal;
    struct unclip_seq q, k1, v1, k2, v2;
    const struct unclip_tensor *key_bias;
};
unclip_status unclip__op_attention(struct unclip_vk *vk, const struct unclip_attn_desc *d,
                                   struct unclip_tensor *out);

/* Keys and values far apart in memory cost the attention op its speed on a CPU driver: with
 * several heads side by side in a row, one head's key rows lie a whole row apart (5 heads of
 * 64 in q/k/v rows: 3.8 KB, a page each), and a workgroup walking 4096 of them ran at half
 * the rate of the same work on 768-byte rows (bench-ops attention_4096x64_rows5h; the
 * prefetcher and the TLB lose). unclip__attn_head_major copies k and v (len L each) into
 * `scratch` head-major, [B, H, L, head_dim] keys then values, contiguous per head, and
 * rewrites the two sequences to read from there; it records two copy dispatches (a
 * 1 / (2 Lq) fraction of the attention's traffic). scratch: F32, at least
 * unclip__attn_head_major_numel elements. unclip__attn_wants_head_major says whether the
 * copy pays for a sequence (several heads, long, rows at least 1 KiB apart). */
bool unclip__attn_wants_head_major(int32_t n_heads, int32_t head_dim, const struct unclip_seq *k);
/* Test hook (not API): non-zero makes unclip__attn_wants_head_major true for any sequence
 * not already head-major, so small models take the copy path. */
extern int unclip__attn_head_major_force;
/* Test hook (not API): 4 or 8 forces that many queries per invocation for head dims up to 64
 * (the kernel variant GPUs get, or lavapipe's); 0 picks by device type. */
extern int unclip__attn_qpi_override;
int64_t unclip__attn_head_major_numel(int32_t batch, int32_t n_heads, int32_t head_dim,
                                      int32_t len);
unclip_status unclip__attn_head_major(struct unclip_vk *vk, int32_t batch, int32_t n_heads,
                                      int32_t head_dim, struct unclip_seq *k,
                                      struct unclip_seq *v, struct unclip_tensor *scratch);

/* ---- resampling (engine/ops/resample.c) ---- */

/* Nearest 2x upsample [N, C, H, W] -> [N, C, 2H, 2W] (x, y 4-D F32). */
unclip_status unclip__op_upsample2x(struct unclip_vk *vk, const struct unclip_tensor *x,
                                    struct unclip_tensor *y);
/* 2x2 average pool, stride 2: [N, C, H, W] -> [N, C, H/2, W/2] (floor: an odd last row or
 * column is dropped, like torch's AvgPool2d(2)); H, W >= 2. Sums row by row, then / 4. */
unclip_status unclip__op_avgpool2x(struct unclip_vk *vk, const struct unclip_tensor *x,
                                   struct unclip_tensor *y);
/* PIL-style antialiased bicubic (a = -0.5) resize of float data, separable, no clamping:
 * x [N, C, H, W] -> y [N, C, Ho, Wo] (torch interpolate bicubic, align_corners=False,
 * antialias=True), any sizes up or down. Taps and weights come from engine/core/bicubic.h
 * (computed in double on the host, uploaded as fp32); accumulation is fp32. Like torch, the
 * horizontal pass runs first (into a temporary [N, C, H, Wo]), then the vertical one; a pass
 * whose axis keeps its size is skipped. Waits for the device before returning (it frees its
 * temporaries). */
unclip_status unclip__op_resize_bicubic_aa(struct unclip_vk *vk, const struct unclip_tensor *x,
                                           struct unclip_tensor *y);

/* ---- embeddings and vectors (engine/ops/embed.c) ---- */

/* Sinusoidal timestep embedding, y: [B, dim], for timesteps t[0..B) given on the host:
 * half = dim / 2, freq_k = exp(-ln(max_period) * k / (half - freq_shift)), args = t * freq,
 * y = [sin(args), cos(args)], swapped to [cos, sin] when flip_sin_to_cos; a zero column is
 * appended when dim is odd (diffusers' get_timestep_embedding; diffusers' models use
 * max_period 10000).
 * Precision: freq_k and args are rounded exactly as torch's fp32 code rounds them (in this
 * order, every step in float: e = (float)(-ln max_period) * (float)k; e = e / (float)(half -
 * freq_shift); freq_k = expf(e) on the host; args = t * freq_k on the device), so only sin/cos
 * differ from torch, by about 1 ulp (the shader reduces the ~1000 rad arguments itself).
 * dim >= 2 and half > freq_shift (UNCLIP_E_INTERNAL otherwise); |t * freq_0| < 8192.
 * Waits for the device before returning (it frees its upload buffer). */
unclip_status unclip__op_timestep_embedding(struct unclip_vk *vk, const float *t, int32_t batch,
                                            int32_t dim, bool flip_sin_to_cos, float freq_shift,
                                            float max_period, struct unclip_tensor *y);

/* Row-wise spherical interpolation of a and b ([B, D] each, 2-D F32) by w (usually in
 * [0, 1]; other values extrapolate along the arc): om = acos(clamp(a.b / (|a| |b|), -1, 1))
 * (the angle between the normalised rows) and
 *   y = sin((1-w) om) / sin om * a + sin(w om) / sin om * b,
 * the DALL-E 2 paper's slerp of the raw (unnormalised) vectors, which is what the golden
 * slerp run does. Fallbacks: when sin om < 1e-6 (parallel or opposite rows) and when a row of
 * a or b is all zero, y = (1-w) a + w b. w = 0 and w = 1 return a and b exactly.
 * Opposite rows have no defined arc. fp32 reductions in the shader. y: [B, D], must not
 * alias a or b. */
unclip_status unclip__op_slerp(struct unclip_vk *vk, const struct unclip_tensor *a,
                               const struct unclip_tensor *b, float w, struct unclip_tensor *y);

/* The interpolation feature's variant (unclip.md 4.3, "slerp the directions, lerp the
 * norms"): the same arc between the unit rows a/|a| and b/|b|, scaled by the linearly
 * interpolated norm:
 *   y = ((1-w) |a| + w |b|) * (sin((1-w) om) / sin om * a/|a| + sin(w om) / sin om * b/|b|).
 * Unlike unclip__op_slerp, the norm of y moves linearly from |a| to |b| (for raw slerp it
 * sags in the middle when the angle is large), which matters when one end is a unit-norm
 * text-diff direction and the other a raw image embedding. Same fallbacks: when sin om < 1e-6
 * y = n ((1-w) a/|a| + w b/|b|) with n the interpolated norm; a zero row gives
 * (1-w) a + w b; w = 0 / 1 return a / b exactly. Shapes as unclip__op_slerp. */
unclip_status unclip__op_slerp_unit(struct unclip_vk *vk, const struct unclip_tensor *a,
                                    const struct unclip_tensor *b, float w,
                                    struct unclip_tensor *y);

#endif
