/* Plain C references of every GPU op: the oracle the op tests compare against.
 *
 * Same math as the ops in engine/ops/ops.h, on host float arrays (row-major, contiguous),
 * accumulating in double. Weights are float (an F16 weight is first widened by the test).
 * Speed is irrelevant here; clarity is the point. Used by tests only. */
#ifndef UNCLIP_REF_REF_H
#define UNCLIP_REF_REF_H

#include "ops/ops.h"

#include <stdbool.h>
#include <stdint.h>

/* elementwise */
void unclip_ref_unary(const float *x, int64_t n, enum unclip_act act, float alpha, float beta,
                      float lo, float hi, float *y);
/* a, b: shapes right-aligned to y's (ndim <= 4), broadcasting dims of size 1. */
void unclip_ref_binary(enum unclip_binop op, const float *a, int32_t a_ndim, const int64_t *a_shape,
                       const float *b, int32_t b_ndim, const int64_t *b_shape, float *y,
                       int32_t y_ndim, const int64_t *y_shape);
void unclip_ref_lerp(const float *a, const float *b, int64_t n, float scale, float *y);
void unclip_ref_copy(const float *src, float *dst, const struct unclip_copy_desc *d);
void unclip_ref_embedding(const float *table, int64_t dim, const int32_t *ids, int32_t n_ids,
                          float *y);

/* linear and conv (ref-linear.c, ref-conv.c). linear: x [m, k], w [n, k], bias [n] or NULL,
 * residual [m, n] or NULL, y [m, n]. conv2d: x [n, cin, h, w], wt [cout, cin, k, k], bias
 * [cout] or NULL, residual NULL or y's shape [n, cout, ho, wo]; zero padding. */
void unclip_ref_linear(const float *x, const float *w, const float *bias, const float *residual,
                       int64_t m, int64_t n, int64_t k, float *y);
void unclip_ref_conv2d(const float *x, int64_t n, int64_t cin, int64_t h, int64_t w,
                       const float *wt, int64_t cout, int32_t k, const float *bias,
                       int32_t stride, int32_t padding, const float *residual, float *y);

/* normalisation (ref-norm.c). x: [n, c, spatial] for group norm, [rows, c] for layer norm,
 * [rows, len] for softmax; gamma/beta may be NULL (1 / 0); scale_shift NULL or [n, 2c]. */
void unclip_ref_group_norm(const float *x, int64_t n, int64_t c, int64_t spatial, int32_t n_groups,
                           float eps, const float *gamma, const float *beta,
                           const float *scale_shift, bool silu, float *y);
void unclip_ref_layer_norm(const float *x, int64_t rows, int64_t c, const float *gamma,
                           const float *beta, float eps, float *y);
void unclip_ref_softmax(const float *x, int64_t rows, int64_t len, float *y);

/* attention (ref-attention.c): the host mirror of struct unclip_attn_desc. A sequence's row r
 * of batch b, head h starts at data[off + b * batch_stride + r * row_stride + h * head_stride]
 * (head_stride 0: head_dim).
 * k2/v2 are used when k2.data is non-NULL; key_bias is NULL or [batch, k1.len].
 * out: [batch, q.len, n_heads * head_dim]. */
struct unclip_ref_seq {
    const float *data;
    int64_t off, row_stride, batch_stride, len;
    int64_t head_stride; /* 0: head_dim */
};
struct unclip_ref_attn {
    int64_t batch, n_heads, head_dim;
    double scale;
    bool causal;
    struct unclip_ref_seq q, k1, v1, k2, v2;
    const float *key_bias;
};
void unclip_ref_attention(const struct unclip_ref_attn *a, float *out);

/* resample (ref-resample.c): x is N*C planes of [h, w] (nc = N * C), y likewise. The bicubic
 * reference evaluates the formula of goldens/README.md section 7 directly (its own kernel and
 * tap bounds, not engine/core/bicubic.h), both axes at once, in double. */
void unclip_ref_upsample2x(const float *x, int64_t nc, int64_t h, int64_t w, float *y);
void unclip_ref_avgpool2x(const float *x, int64_t nc, int64_t h, int64_t w, float *y);
void unclip_ref_resize_bicubic_aa(const float *x, int64_t nc, int64_t h, int64_t w, int64_t ho,
                                  int64_t wo, float *y);

/* embed (ref-embed.c). timestep embedding: the frequencies and arguments rounded to float as
 * the op's contract says, sin/cos in double; y [batch, dim]. slerp: a, b, y [rows, dim];
 * unit selects the unclip__op_slerp_unit variant; fallbacks as in ops.h, in double. */
void unclip_ref_timestep_embedding(const float *t, int32_t batch, int32_t dim,
                                   bool flip_sin_to_cos, float freq_shift, float max_period,
                                   float *y);
void unclip_ref_slerp(const float *a, const float *b, int64_t rows, int64_t dim, float w,
                      bool unit, float *y);

#endif
