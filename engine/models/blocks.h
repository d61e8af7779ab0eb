/* Transformer building blocks shared by the model towers: nn.Linear, nn.LayerNorm,
 * multi-head self-attention with q/k/v/out projections, the two-layer MLP, and the CLIP
 * pre-LayerNorm encoder layer (transformers CLIPEncoderLayer) built from them.
 *
 * Loading: each block reads its tensors through the weights uploader (models/weights.h) under
 * names the caller gives, with the exact shapes the caller's config implies, so a file that
 * disagrees with the config fails with the file and tensor name in the message. Matrices are
 * uploaded in the uploader's device dtype (F16 by default, F32 on request); biases and
 * LayerNorm parameters are always F32 (they are tiny, and fp16 would cost accuracy for
 * nothing).
 *
 * Running: every *_run records GPU work on `vk` (see ops/ops.h) and returns without waiting.
 * Activations are F32 tensors; shapes are stated per function. Scratch tensors are owned by
 * the caller (struct unclip_enc_scratch), so one allocation serves all layers of a tower.
 *
 * Ownership: *_load fills a caller-provided struct whose tensors it owns; *_free releases
 * them and zeroes the struct (a zeroed struct is a valid no-op argument). On failure *_load
 * leaves the struct zeroed.
 */
#ifndef UNCLIP_MODELS_BLOCKS_H
#define UNCLIP_MODELS_BLOCKS_H

#include "core/error.h"
#include "models/weights.h"
#include "ops/ops.h"

#include <stdbool.h>
#include <stdint.h>

/* transformers/diffusers activation names: "quick_gelu", "gelu" (exact erf), "silu"/"swish".
 * Other names are UNCLIP_E_MODEL: "<what>: hidden_act 'x' is not supported (quick_gelu, gelu,
 * silu)". `what` names the config file for the message. */
unclip_status unclip__act_from_name(const char *name, const char *what, enum unclip_act *out,
                                    struct unclip_err *err);

/* ---- nn.Linear: y = x W^T + b, W [out, in] ---- */
struct unclip_lin {
    struct unclip_tensor w; /* [out, in], device weight dtype                 */
    struct unclip_tensor b; /* [out] F32; buf == NULL when the layer has no bias */
    int32_t in, out;
};

/* Reads "<name>.weight" [out, in] and, when `bias`, "<name>.bias" [out]. */
unclip_status unclip__lin_load(struct unclip_weights *w, const char *name, int32_t in,
                               int32_t out, bool bias, struct unclip_lin *l,
                               struct unclip_err *err);
/* Packs n Linear layers of the same input size into one whose output rows are the layers'
 * rows in order: W = [W_0; W_1; ...] ([n * out, in]), b likewise. Used for q/k/v, which then
 * run as one matrix product. Goes through a host copy of the packed weight; the device tensor
 * is made on vk (which must be the uploader's device) in the uploader's dtype. */
unclip_status unclip__lin_load_packed(struct unclip_vk *vk, struct unclip_weights *w,
                                      const char *const *names, int32_t n, int32_t in,
                                      int32_t out, bool bias, struct unclip_lin *l,
                                      struct unclip_err *err);
void unclip__lin_free(struct unclip_lin *l);
/* y [M, out] = x [M, in] W^T + b (+ residual [M, out]; may be y itself). */
unclip_status unclip__lin_run(struct unclip_vk *vk, const struct unclip_lin *l,
                              const struct unclip_tensor *x, const struct unclip_tensor *residual,
                              struct unclip_tensor *y);

/* ---- nn.LayerNorm over the last dimension ---- */
struct unclip_ln {
    struct unclip_tensor g, b; /* [dim] F32 */
    int32_t dim;
    float eps;
};

/* Reads "<name>.weight" and "<name>.bias", both [dim]. */
unclip_status unclip__ln_load(struct unclip_weights *w, const char *name, int32_t dim, float eps,
                              struct unclip_ln *ln, struct unclip_err *err);
void unclip__ln_free(struct unclip_ln *ln);
/* y = LayerNorm(x) over rows of dim values; y may be x. */
unclip_status unclip__ln_run(struct unclip_vk *vk, const struct unclip_ln *ln,
                             const struct unclip_tensor *x, struct unclip_tensor *y);

/* ---- multi-head self-attention (transformers CLIPAttention, diffusers Attention) ---- */

/* Sub-names of the four projections below the block's prefix, e.g. CLIP's
 * {"q_proj", "k_proj", "v_proj", "out_proj"} or diffusers' {"to_q", "to_k", "to_v", "to_out.0"}. */
struct unclip_attn_names {
    const char *q, *k, *v, *out;
};
extern const struct unclip_attn_names unclip__clip_attn_names;

struct unclip_self_attn {
    struct unclip_lin qkv; /* packed [3 dim, dim]: q rows, then k, then v */
    struct unclip_lin out; /* [dim, dim]                                   */
    int32_t dim, heads, head_dim;
    float scale; /* head_dim^-0.5 */
};

/* Reads "<prefix>.<names.q>.weight" etc.; dim must be a multiple of heads. `bias`: whether
 * the four projections have biases. */
unclip_status unclip__self_attn_load(struct unclip_vk *vk, struct unclip_weights *w,
                                     const char *prefix,
                                     const struct unclip_attn_names *names, int32_t dim,
                                     int32_t heads, bool bias, struct unclip_self_attn *a,
                                     struct unclip_err *err);
void unclip__self_attn_free(struct unclip_self_attn *a);

/* h [B, L, dim] += out_proj(attention(q, k, v)) with q, k, v the projections of x [B, L, dim]
 * (h and x distinct). causal: query i sees keys j <= i. key_bias: NULL or [B, L] F32 added to
 * the scores (0 keeps a key, a large negative value hides it). Scratch (F32, any shape):
 * qkv of exactly B * L * 3 dim elements and o of exactly B * L * dim (the ops check element
 * counts). */
unclip_status unclip__self_attn_run(struct unclip_vk *vk, const struct unclip_self_attn *a,
                                    const struct unclip_tensor *x, int32_t batch, int32_t len,
                                    bool causal, const struct unclip_tensor *key_bias,
                                    struct unclip_tensor *qkv, struct unclip_tensor *o,
                                    struct unclip_tensor *h);

/* ---- two-layer MLP: fc2(act(fc1(x))) ---- */
struct unclip_mlp {
    struct unclip_lin fc1; /* [inner, dim] */
    struct unclip_lin fc2; /* [dim, inner] */
    enum unclip_act act;
};

/* Reads "<prefix>.<fc1>.*" and "<prefix>.<fc2>.*" (with biases), e.g. CLIP's "fc1"/"fc2". */
unclip_status unclip__mlp_load(struct unclip_weights *w, const char *prefix, const char *fc1,
                               const char *fc2, int32_t dim, int32_t inner, enum unclip_act act,
                               struct unclip_mlp *m, struct unclip_err *err);
void unclip__mlp_free(struct unclip_mlp *m);
/* h [M, dim] += fc2(act(fc1(x [M, dim]))); mid: scratch of exactly M * inner elements. */
unclip_status unclip__mlp_run(struct unclip_vk *vk, const struct unclip_mlp *m,
                              const struct unclip_tensor *x, struct unclip_tensor *mid,
                              struct unclip_tensor *h);

/* ---- CLIP encoder (transformers CLIPEncoder / CLIPEncoderLayer, pre-LayerNorm) ---- */

struct unclip_clip_enc_config {
    int32_t dim, heads, inner, layers;
    float eps;
    enum unclip_act act;
};

struct unclip_clip_layer {
    struct unclip_ln ln1;
    struct unclip_self_attn attn;
    struct unclip_ln ln2;
    struct unclip_mlp mlp;
};

struct unclip_clip_encoder {
    struct unclip_clip_enc_config cfg;
    struct unclip_clip_layer *layers; /* cfg.layers entries, owned */
};

/* Reads "<prefix>.layers.{i}.{layer_norm1,self_attn.{q,k,v,out}_proj,layer_norm2,mlp.fc1,
 * mlp.fc2}.*" for i in 0..layers-1. */
unclip_status unclip__clip_encoder_load(struct unclip_vk *vk, struct unclip_weights *w,
                                        const char *prefix,
                                        const struct unclip_clip_enc_config *cfg,
                                        struct unclip_clip_encoder *e, struct unclip_err *err);
void unclip__clip_encoder_free(struct unclip_clip_encoder *e);

/* Device bytes of every tensor the encoder holds. */
uint64_t unclip__clip_encoder_bytes(const struct unclip_clip_encoder *e);

/* True when `name` is "<prefix>.layers.<i>.<one of the tensors a CLIP layer reads>" with
 * i < layers (for checking that a file holds nothing the config leaves unused). */
bool unclip__clip_layer_tensor(const char *name, const char *prefix, int32_t layers);

/* Activations of one encoder pass over `rows` = B * L tokens. */
struct unclip_enc_scratch {
    struct unclip_tensor x;   /* [rows, dim]     LayerNorm output     */
    struct unclip_tensor qkv; /* [rows, 3 dim]   packed projections   */
    struct unclip_tensor o;   /* [rows, dim]     attention output     */
    struct unclip_tensor mid; /* [rows, inner]   MLP hidden           */
    struct unclip_vk_buf *arena; /* the four are views of it (unclip__tensor_arena) */
};
unclip_status unclip__enc_scratch_new(struct unclip_vk *vk, int64_t rows, int32_t dim,
                                      int32_t inner, struct unclip_enc_scratch *s);
void unclip__enc_scratch_free(struct unclip_enc_scratch *s);

/* Runs every layer in place on h [B, L, dim]:
 *   h += attn(ln1(h)); h += mlp(ln2(h)). */
unclip_status unclip__clip_encoder_run(struct unclip_vk *vk, const struct unclip_clip_encoder *e,
                                       struct unclip_tensor *h, int32_t batch, int32_t len,
                                       bool causal, struct unclip_enc_scratch *s);

/* Copies the device's error record (where ops and tensor calls write) into err, unless they
 * are the same record. */
void unclip__err_take_vk(struct unclip_err *err, struct unclip_vk *vk);

/* Appends " (<text>)" to the message recorded in err (for adding the config values that a
 * failed shape check was derived from). */
void unclip__err_append(struct unclip_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
