/* Diffusion prior: diffusers PriorTransformer (v0.27.2), unclip.md sections 1.2 and 2.2.
 *
 * Given the noisy (normalised) image embedding x_t, the timestep, the prompt's text_embeds and
 * the text encoder's last_hidden_state with its token mask, it predicts the clean latent x0:
 *
 *   te  = time_embedding(sinusoid_W(t))             linear_1 -> act -> linear_2     [B, W]
 *   e   = embedding_proj(embedding_proj_norm?(p))                                   [B, W]
 *   txt = encoder_hidden_states_proj(H)                                             [B, T, W]
 *   hx  = proj_in(x)                                                                [B, W]
 *   seq = [txt (T rows), e, te, hx, prd_embedding] + positional_embedding           [B, T+4, W]
 *   key bias[b, j] = -10000 for text positions j with mask 0, else 0; causal (query i sees
 *   keys j <= i); norm_in? ; num_layers x (h += attn1(norm1(h)); h += ff(norm3(h)), GELU MLP
 *   of 4 W); y = proj_to_clip_embeddings(norm_out(h[:, last]))                      [B, C]
 *
 * where W = num_attention_heads * attention_head_dim, E = embedding_dim, T = num_embeddings,
 * P = embedding_proj_dim (default E) and C = clip_embed_dim (default E). post_process_latents
 * is x * clip_std + clip_mean ([1, C] each), applied once after the whole prior loop.
 *
 * Masking: diffusers adds -10000 for masked text keys and -10000 for future keys (both may
 * add up). Here the future keys are skipped (the attention op's causal flag) and the text
 * mask is an additive -10000 key bias. The two agree whenever a query sees at least one
 * unmasked key, which always holds for tokenizer masks (the bos token is never masked); only
 * an all-zero mask row differs (diffusers then spreads a text query's attention over its
 * masked past keys and the four trailing tokens; here over its masked past keys only).
 *
 * Config support (UNCLIP_E_MODEL naming the key otherwise): encoder_hid_proj_type "linear",
 * added_emb_type "prd", additional_embeddings 4 (the sequence length T + 4 must equal the
 * positional table's num_embeddings + additional_embeddings), time_embed_act_fn "silu"/"swish"
 * or "gelu", norm_in_type and embedding_proj_norm_type null or "layer" (eps 1e-5), every size
 * from the config; head size <= 128. Karlo's config and the golden tiny config are of this
 * form.
 *
 * Weights: matrices in the device dtype of the weights (F16 by default, F32 with opts.fp32);
 * biases, norms, positional/prd embeddings and clip_mean/clip_std in F32. A missing tensor,
 * a shape that disagrees with the config, or a tensor the config leaves unused (e.g. more
 * layers in the file) is UNCLIP_E_MODEL naming the file and the tensor.
 */
#ifndef UNCLIP_MODELS_PRIOR_H
#define UNCLIP_MODELS_PRIOR_H

#include "core/error.h"
#include "io/json.h"
#include "io/model-dir.h"
#include "ops/ops.h"

#include <stdbool.h>
#include <stdint.h>

struct unclip_prior_config {
    int32_t heads, head_dim;  /* num_attention_heads, attention_head_dim       */
    int32_t width;            /* W = heads * head_dim (inner_dim)              */
    int32_t layers;           /* num_layers                                    */
    int32_t embedding_dim;    /* E: x and encoder_hidden_states width          */
    int32_t num_embeddings;   /* T: text tokens                                */
    int32_t additional_embeddings; /* 4                                        */
    int32_t seq_len;          /* T + additional_embeddings                     */
    int32_t time_embed_dim;   /* time_embedding.linear_1 output (default W)    */
    int32_t proj_dim;         /* embedding_proj input P (default E)            */
    int32_t clip_dim;         /* C: output and clip_mean/clip_std width        */
    enum unclip_act time_act; /* time_embed_act_fn                             */
    bool norm_in;             /* norm_in_type "layer"                          */
    bool embedding_proj_norm; /* embedding_proj_norm_type "layer"              */
};

/* Reads and checks prior/config.json (absent or null keys take diffusers' defaults, i.e.
 * Karlo's sizes). Messages name the document and the key. */
unclip_status unclip__prior_config_read(const struct unclip_json *j,
                                        struct unclip_prior_config *out,
                                        struct unclip_err *err);

struct unclip_prior;

struct unclip_prior_opts {
    bool fp32; /* F32 matrices on the device instead of F16 */
};

/* Loads from explicit files. config_name / weights_name (NULL: the paths) prefix messages,
 * e.g. "prior/config.json". vk is borrowed and must outlive the model; opts may be NULL. */
unclip_status unclip__prior_load_files(struct unclip_vk *vk, const char *config_path,
                                       const char *config_name, const char *weights_path,
                                       const char *weights_name,
                                       const struct unclip_prior_opts *opts,
                                       struct unclip_prior **out, struct unclip_err *err);
/* Loads component `name` (usually "prior") of a model folder. */
unclip_status unclip__prior_load(struct unclip_vk *vk, const struct unclip_model_dir *dir,
                                 const char *name, const struct unclip_prior_opts *opts,
                                 struct unclip_prior **out, struct unclip_err *err);
void unclip__prior_free(struct unclip_prior *m); /* NULL is a no-op */

const struct unclip_prior_config *unclip__prior_config(const struct unclip_prior *m);
/* Device bytes of the weights. */
uint64_t unclip__prior_weight_bytes(const struct unclip_prior *m);

/* One forward pass (device tensors, F32):
 *   x              [B, E]     noisy latent x_t (normalised space)
 *   t              timestep on the 1000-step grid (same for every row), |t| < 8192
 *   proj_embedding [B, P]     text_embeds
 *   enc            [B, T, E]  text last_hidden_state
 *   mask           host [B, T] bytes, nonzero = real token (tokenizer mask); NULL: all real
 *   out            [B, C]     predicted x0, allocated by the caller (numel checked); must not
 *                             alias an input
 * Scratch activations are kept in the model between calls with the same B (a prior loop
 * reuses them), so one model serves one caller at a time. The timestep embedding (and a
 * changed mask) uploads and waits at the start; the rest is recorded once per batch and
 * caller buffers (x, proj_embedding, enc, out: the same tensors step after step) and
 * replayed, so the call returns when the work has run, in submissions of bounded work with
 * the cancel check between them (UNCLIP_E_CANCELLED). UNCLIP_NO_REPLAY=1 records every
 * forward instead (the work is then left recorded, not waited for). Errors go to
 * unclip__vk_err(vk) (UNCLIP_E_ARG for bad shapes or batch). */
unclip_status unclip__prior_forward(struct unclip_prior *m, const struct unclip_tensor *x,
                                    float t, const struct unclip_tensor *proj_embedding,
                                    const struct unclip_tensor *enc, const uint8_t *mask,
                                    struct unclip_tensor *out);

/* Host wrapper: the same with host float arrays (x [B, E], proj [B, P], enc [B, T, E],
 * out [B, C]); waits for the device. */
unclip_status unclip__prior_predict(struct unclip_prior *m, int32_t batch, const float *x,
                                    float t, const float *proj_embedding, const float *enc,
                                    const uint8_t *mask, float *out);

/* post_process_latents on the device: y = x * clip_std + clip_mean, x and y [B, C] F32
 * (y may be x). Recorded, not waited for. */
unclip_status unclip__prior_post_process(struct unclip_prior *m, const struct unclip_tensor *x,
                                         struct unclip_tensor *y);
/* The same on host rows: x [rows, C] in place (same fp32 rounding: multiply, then add). */
void unclip__prior_post_process_host(const struct unclip_prior *m, float *x, int64_t rows);

/* Whether a recorded forward is held for replay (for tests: the loop really replays). */
bool unclip__prior_has_graph(const struct unclip_prior *m);

/* Frees the scratch activations kept between calls (they come back on the next call). */
void unclip__prior_release_scratch(struct unclip_prior *m);

#endif
