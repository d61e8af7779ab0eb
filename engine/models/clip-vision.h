/* CLIP vision tower with projection: transformers CLIPVisionModelWithProjection (v4.38).
 *
 *   patches = Conv2d(C, H, kernel = stride = patch_size, no bias)(pixels) -> [B, N, H]
 *             (N = (image_size / patch_size)^2, row-major patch order)
 *   h = [class_embedding; patches] + position_embedding             [B, 1 + N, H]
 *   h = pre_layrnorm(h)                 (sic: transformers' key name)
 *   num_hidden_layers x (pre-LN layer, full bidirectional attention, no mask)
 *   last_hidden_state = h               (BEFORE post_layernorm, as transformers returns it)
 *   image_embeds = visual_projection(post_layernorm(h[:, 0]))       [B, P]   (no bias)
 *
 * The patch convolution runs as one matrix product: the host cuts the pixels into patch rows
 * [B, 1 + N, C * p * p] (row 0 of each image all zeros, for the class token) in the (c, ky, kx)
 * order of the conv weight [H, C, p, p], read as [H, C * p * p]; the class embedding and the
 * position embeddings enter as the product's residual, so no new op is needed.
 *
 * Files: <component>/config.json and the weight file (vision_model.*, visual_projection.weight);
 * the same checks and messages as clip-text.h. Pixels come from io/preprocess.h
 * (feature_extractor/preprocessor_config.json); the tower itself only needs them normalised,
 * [B, num_channels, image_size, image_size].
 */
#ifndef UNCLIP_MODELS_CLIP_VISION_H
#define UNCLIP_MODELS_CLIP_VISION_H

#include "core/error.h"
#include "io/json.h"
#include "io/model-dir.h"
#include "ops/ops.h"

#include <stdbool.h>
#include <stdint.h>

struct unclip_clip_vision_config {
    int32_t hidden, inner, layers, heads;
    int32_t image_size, patch_size, channels;
    int32_t proj_dim;
    int32_t grid;   /* image_size / patch_size (patches per side)  */
    int32_t tokens; /* 1 + grid^2                                  */
    float eps;
    enum unclip_act act;
};

/* Reads and checks a CLIPVisionConfig (absent keys take transformers' defaults; hidden_size a
 * multiple of num_attention_heads, head size <= 128, patch_size <= image_size). */
unclip_status unclip__clip_vision_config_read(const struct unclip_json *j,
                                              struct unclip_clip_vision_config *out,
                                              struct unclip_err *err);

struct unclip_clip_vision;

struct unclip_clip_vision_opts {
    bool fp32; /* F32 matrices on the device instead of F16 */
};

unclip_status unclip__clip_vision_load_files(struct unclip_vk *vk, const char *config_path,
                                             const char *config_name, const char *weights_path,
                                             const char *weights_name,
                                             const struct unclip_clip_vision_opts *opts,
                                             struct unclip_clip_vision **out,
                                             struct unclip_err *err);
/* Component `name` (usually "image_encoder") of a model folder. */
unclip_status unclip__clip_vision_load(struct unclip_vk *vk, const struct unclip_model_dir *dir,
                                       const char *name,
                                       const struct unclip_clip_vision_opts *opts,
                                       struct unclip_clip_vision **out, struct unclip_err *err);
void unclip__clip_vision_free(struct unclip_clip_vision *m); /* NULL is a no-op */

const struct unclip_clip_vision_config *
unclip__clip_vision_config(const struct unclip_clip_vision *m);
uint64_t unclip__clip_vision_weight_bytes(const struct unclip_clip_vision *m);

/* Runs the tower on pixels [batch, channels, image_size, image_size] (host floats). Allocates
 * *image_embeds [batch, P] and *last_hidden [batch, tokens, H] (F32, caller frees); either may
 * be NULL. Errors go to unclip__vk_err(vk). Non-finite pixels are UNCLIP_E_ARG. */
unclip_status unclip__clip_vision_forward(struct unclip_clip_vision *m, const float *pixels,
                                          int32_t batch, struct unclip_tensor *image_embeds,
                                          struct unclip_tensor *last_hidden);
/* Host outputs (either may be NULL); waits for the device. */
unclip_status unclip__clip_vision_encode(struct unclip_clip_vision *m, const float *pixels,
                                         int32_t batch, float *image_embeds, float *last_hidden);

#endif
