/* UnCLIPTextProjModel (diffusers v0.27.2), unclip.md sections 1.4 and 2.3: turns the image
 * embedding and the prompt's text encoder outputs into the decoder's conditioning.
 *
 * Sizes from text_proj/config.json: E = clip_embeddings_dim, D = time_embed_dim,
 * X = cross_attention_dim, K = clip_extra_context_tokens. Inputs (device, F32):
 *   image_embeddings z  [B, E]
 *   prompt_embeds    p  [B', E]      text_embeds; with guidance ordered [uncond ""; cond]
 *   text_hidden      H  [B', T, E]   last_hidden_state (any T >= 1, 77 in the pipelines)
 * With classifier-free guidance B' = 2B and z becomes [learned null embedding x B; z];
 * without it B' = B. Then
 *   additive = clip_image_embeddings_project_to_time_embeddings(z) + embedding_proj(p)
 *                                                                   [B', D]
 *   u        = clip_extra_context_tokens_proj(z)                    [B', K X]
 *   extra[b, k, d] = u[b, d K + k]   (channel-major view (X, K), transposed)
 *   text     = text_encoder_hidden_states_norm(encoder_hidden_states_proj(H))  [B', T, X]
 *   encoder_hidden_states = [extra (K tokens); text (T tokens)]     [B', K + T, X]
 * The decoder's key mask is [K ones; text mask], built by the pipeline.
 *
 * Weights: matrices in the device dtype (F16 default, F32 with opts.fp32); biases, the norm
 * and the null embedding F32. Missing, misshaped or unused tensors are UNCLIP_E_MODEL naming
 * the file and the tensor (and the config values for shapes).
 */
#ifndef UNCLIP_MODELS_TEXT_PROJ_H
#define UNCLIP_MODELS_TEXT_PROJ_H

#include "core/error.h"
#include "io/json.h"
#include "io/model-dir.h"
#include "ops/ops.h"

#include <stdbool.h>
#include <stdint.h>

struct unclip_text_proj_config {
    int32_t clip_dim;     /* E: clip_embeddings_dim      */
    int32_t time_dim;     /* D: time_embed_dim           */
    int32_t cross_dim;    /* X: cross_attention_dim      */
    int32_t extra_tokens; /* K: clip_extra_context_tokens */
};

/* Reads text_proj/config.json; absent keys take diffusers' defaults (Karlo's sizes). */
unclip_status unclip__text_proj_config_read(const struct unclip_json *j,
                                            struct unclip_text_proj_config *out,
                                            struct unclip_err *err);

struct unclip_text_proj;

struct unclip_text_proj_opts {
    bool fp32; /* F32 matrices on the device instead of F16 */
};

unclip_status unclip__text_proj_load_files(struct unclip_vk *vk, const char *config_path,
                                           const char *config_name, const char *weights_path,
                                           const char *weights_name,
                                           const struct unclip_text_proj_opts *opts,
                                           struct unclip_text_proj **out,
                                           struct unclip_err *err);
/* Loads component `name` (usually "text_proj") of a model folder. */
unclip_status unclip__text_proj_load(struct unclip_vk *vk, const struct unclip_model_dir *dir,
                                     const char *name, const struct unclip_text_proj_opts *opts,
                                     struct unclip_text_proj **out, struct unclip_err *err);
void unclip__text_proj_free(struct unclip_text_proj *m); /* NULL is a no-op */

const struct unclip_text_proj_config *
unclip__text_proj_config(const struct unclip_text_proj *m);
uint64_t unclip__text_proj_weight_bytes(const struct unclip_text_proj *m);

/* Device forward (see above). Allocates *encoder_hidden_states [B', K + T, X] and *additive
 * [B', D] (F32, caller frees with unclip__tensor_free); on failure both are left zeroed.
 * UNCLIP_E_ARG when the shapes disagree (e.g. guidance with prompt batch != 2B). Recorded,
 * not waited for; errors go to unclip__vk_err(vk). */
unclip_status unclip__text_proj_forward(struct unclip_text_proj *m,
                                        const struct unclip_tensor *image_embeddings,
                                        const struct unclip_tensor *prompt_embeds,
                                        const struct unclip_tensor *text_hidden,
                                        bool guidance,
                                        struct unclip_tensor *encoder_hidden_states,
                                        struct unclip_tensor *additive);

/* Host wrapper: batch = B (image rows), T text tokens; prompt_embeds [B', E], text_hidden
 * [B', T, E]; outputs encoder_hidden_states [B', K + T, X] and additive [B', D] floats
 * (either may be NULL). Waits for the device. */
unclip_status unclip__text_proj_run(struct unclip_text_proj *m, int32_t batch, int32_t tokens,
                                    const float *image_embeddings, const float *prompt_embeds,
                                    const float *text_hidden, bool guidance,
                                    float *encoder_hidden_states, float *additive);

#endif
