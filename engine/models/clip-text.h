/* CLIP text tower with projection: transformers CLIPTextModelWithProjection (v4.38), as the
 * unCLIP pipelines call it (input_ids only, no attention mask).
 *
 *   h = token_embedding[ids] + position_embedding[0..L)          [B, L, H]
 *   num_hidden_layers x (causal pre-LN layer: h += attn(ln1(h)); h += mlp(ln2(h)))
 *   last_hidden_state = final_layer_norm(h)                       [B, L, H]
 *   text_embeds = text_projection(last_hidden_state[b, pool_b])  [B, P]   (no bias)
 *
 * pool_b is argmax(ids[b]) (the first maximal id, i.e. the first <|endoftext|>) when the
 * config's eos_token_id is 2 (the legacy value Karlo's config keeps), else the first position
 * holding eos_token_id (0 when there is none), like transformers 4.38.
 *
 * Files: <component>/config.json and the component's weight file (text_model.* and
 * text_projection.weight). Every size comes from the config; a weight whose shape disagrees
 * with it, a missing weight, or a weight the config leaves unused (e.g. more layers in the
 * file than num_hidden_layers) is UNCLIP_E_MODEL naming the file, the tensor and the config
 * values involved.
 *
 * Device memory: matrices in the weights' device dtype (F16 by default, F32 with opts.fp32),
 * biases/norms F32. The token-embedding table is NOT uploaded: its rows are gathered on the
 * host from the memory-mapped weight file (Karlo's table is 152 MB in fp32, above one binding's
 * 128 MiB, and a call needs only B * L rows), so the model keeps the weight file mapped.
 */
#ifndef UNCLIP_MODELS_CLIP_TEXT_H
#define UNCLIP_MODELS_CLIP_TEXT_H

#include "core/error.h"
#include "io/json.h"
#include "io/model-dir.h"
#include "ops/ops.h"

#include <stdbool.h>
#include <stdint.h>

struct unclip_clip_text_config {
    int32_t vocab_size;   /* rows of the token embedding          */
    int32_t hidden;       /* hidden_size H                         */
    int32_t inner;        /* intermediate_size                     */
    int32_t layers;       /* num_hidden_layers                     */
    int32_t heads;        /* num_attention_heads (divides H)       */
    int32_t max_positions;/* max_position_embeddings (77)          */
    int32_t proj_dim;     /* projection_dim P                      */
    float eps;            /* layer_norm_eps                        */
    enum unclip_act act;  /* hidden_act                            */
    int64_t eos_token_id; /* 2 selects argmax pooling (see above)  */
};

/* Reads and checks a CLIPTextConfig (absent keys take transformers' CLIPTextConfig defaults;
 * hidden_size must be a multiple of num_attention_heads, head size <= 128).
 * The messages name the document (its display name). */
unclip_status unclip__clip_text_config_read(const struct unclip_json *j,
                                            struct unclip_clip_text_config *out,
                                            struct unclip_err *err);

struct unclip_clip_text;

struct unclip_clip_text_opts {
    bool fp32; /* F32 matrices on the device instead of F16 */
};

/* Loads from explicit files. config_name / weights_name (may be NULL: the paths) prefix the
 * messages, e.g. "text_encoder/config.json", "text_encoder/model.safetensors". vk is borrowed
 * and must outlive the model. opts may be NULL. */
unclip_status unclip__clip_text_load_files(struct unclip_vk *vk, const char *config_path,
                                           const char *config_name, const char *weights_path,
                                           const char *weights_name,
                                           const struct unclip_clip_text_opts *opts,
                                           struct unclip_clip_text **out,
                                           struct unclip_err *err);
/* Loads component `name` (usually "text_encoder") of a model folder. */
unclip_status unclip__clip_text_load(struct unclip_vk *vk, const struct unclip_model_dir *dir,
                                     const char *name, const struct unclip_clip_text_opts *opts,
                                     struct unclip_clip_text **out, struct unclip_err *err);
void unclip__clip_text_free(struct unclip_clip_text *m); /* NULL is a no-op */

const struct unclip_clip_text_config *unclip__clip_text_config(const struct unclip_clip_text *m);
/* Device bytes of the weights. */
uint64_t unclip__clip_text_weight_bytes(const struct unclip_clip_text *m);

/* Pooling position of one row of ids (see above). */
int32_t unclip__clip_text_pool_index(const struct unclip_clip_text_config *cfg,
                                     const int64_t *ids, int32_t len);

/* Runs the tower on ids [batch, len] (host, 1 <= len <= max_positions, every id in
 * [0, vocab_size): UNCLIP_E_ARG naming the position otherwise). Allocates *text_embeds
 * [batch, P] and *last_hidden [batch, len, H] (F32; caller frees with unclip__tensor_free);
 * either pointer may be NULL when not wanted. Errors go to unclip__vk_err(vk). Work is
 * recorded, not waited for. */
unclip_status unclip__clip_text_forward(struct unclip_clip_text *m, const int64_t *ids,
                                        int32_t batch, int32_t len,
                                        struct unclip_tensor *text_embeds,
                                        struct unclip_tensor *last_hidden);

/* The same with host outputs: text_embeds [batch, P] and last_hidden [batch, len, H] floats
 * (either may be NULL). Waits for the device. */
unclip_status unclip__clip_text_encode(struct unclip_clip_text *m, const int64_t *ids,
                                       int32_t batch, int32_t len, float *text_embeds,
                                       float *last_hidden);

#endif
