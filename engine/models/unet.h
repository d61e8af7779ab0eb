/* The Karlo UNets, one implementation driven by config.json:
 *
 *   - diffusers UNet2DConditionModel as the unCLIP decoder uses it (unclip.md 1.5, 2.4-2.6):
 *     ResnetDownsampleBlock2D / SimpleCrossAttnDownBlock2D down blocks,
 *     UNetMidBlock2DSimpleCrossAttn, SimpleCrossAttnUpBlock2D / ResnetUpsampleBlock2D up
 *     blocks, "scale_shift" or "default" time conditioning, class_embed_type "identity" (the
 *     class labels are added to the time embedding), optional encoder_hid_proj ("text_proj");
 *   - diffusers UNet2DModel as the super-resolution nets use it (unclip.md 1.6, 2.7):
 *     ResnetDownsampleBlock2D / ResnetUpsampleBlock2D only, UNetMidBlock2D without attention.
 *
 * Forward math (per resnet, attention and block) is in unclip.md 2.4-2.7; in short:
 *   emb = linear_2(act(linear_1(Timesteps(t)))) (+ class_labels)
 *   h = conv_in(sample); down blocks push every layer output on a skip stack; mid block;
 *   up blocks pop a skip per layer and concatenate it after h (channels);
 *   out = conv_out(SiLU(GroupNorm(h))).
 * Resnets with resampling apply avg-pool 2x (down) / nearest 2x (up) to both the normalised
 * branch and the skip path, after norm1 + SiLU. SimpleCrossAttn: GroupNorm on the map, queries
 * from it, keys/values = [add_k/v_proj(context); to_k/v(map)] (context first), a key bias
 * (1 - mask) * -10000 on the context keys, to_out, plus the residual.
 *
 * Files: <component>/config.json (every size, block type, head dim, group count, eps, time
 * embedding setting comes from it; unknown block types or options this engine does not
 * implement are UNCLIP_E_MODEL "... is not supported" naming the file, key and value) and
 * the component's weight file. A missing weight or one whose shape disagrees with the config is
 * UNCLIP_E_MODEL naming the file and the tensor; so is a tensor in the file that the config
 * leaves unused.
 *
 * Device memory: conv and linear matrices in the weights' device dtype (F16 by default, F32
 * with opts.fp32); biases and norm parameters F32. Activations live in a workspace owned by
 * the model: on the first forward for a given input geometry (batch, height, width, context
 * length, mask or not) the forward is walked once without running anything to record every
 * intermediate's size and lifetime, and the intermediates are packed by offset into one
 * device buffer (an arena; each intermediate a view at a 256-byte boundary; two share bytes
 * only when their lifetimes do not overlap). Later forwards with the
 * same geometry allocate nothing. A different geometry re-plans. Intermediates die as soon as
 * their last reader is recorded (see resnet_run in unet.c for the order that keeps the peak
 * low).
 *
 * Threading: a model is used from one thread at a time (it uses its vk).
 */
#ifndef UNCLIP_MODELS_UNET_H
#define UNCLIP_MODELS_UNET_H

#include "core/error.h"
#include "io/json.h"
#include "io/model-dir.h"
#include "ops/ops.h"

#include <stdbool.h>
#include <stdint.h>

#define UNCLIP_UNET_MAX_BLOCKS 8

enum unclip_unet_kind {
    UNCLIP_UNET_CONDITION = 0, /* UNet2DConditionModel (decoder)     */
    UNCLIP_UNET_PLAIN,         /* UNet2DModel (super-resolution)     */
};

enum unclip_unet_class_embed {
    UNCLIP_UNET_CLASS_NONE = 0,
    UNCLIP_UNET_CLASS_IDENTITY, /* emb += class_labels [B, time_dim] */
};

struct unclip_unet_config {
    enum unclip_unet_kind kind;
    int32_t in_channels, out_channels;
    int32_t sample_size; /* 0 when the config has none (informational only) */
    int32_t n_blocks;
    int32_t block_out[UNCLIP_UNET_MAX_BLOCKS];
    int32_t layers[UNCLIP_UNET_MAX_BLOCKS];       /* per down block (up blocks: reversed + 1) */
    bool down_attn[UNCLIP_UNET_MAX_BLOCKS];       /* SimpleCrossAttnDownBlock2D               */
    bool up_attn[UNCLIP_UNET_MAX_BLOCKS];         /* SimpleCrossAttnUpBlock2D                 */
    int32_t head_dim[UNCLIP_UNET_MAX_BLOCKS];     /* attention_head_dim per block (index as
                                                     diffusers does: unreversed for up blocks) */
    int32_t cross_dim[UNCLIP_UNET_MAX_BLOCKS];    /* per down block (up blocks: reversed)     */
    bool only_cross[UNCLIP_UNET_MAX_BLOCKS];      /* per down block (up blocks: reversed)     */
    bool has_mid;  /* false: mid_block_type null (nothing between the two paths)  */
    bool mid_attn; /* UNetMidBlock2DSimpleCrossAttn (else UNetMidBlock2D, resnets only) */
    bool mid_only_cross;
    int32_t groups;     /* norm_num_groups (resnets, attention)            */
    int32_t groups_out; /* conv_norm_out's groups                          */
    float eps;          /* norm_eps                                        */
    bool flip_sin_to_cos;
    float freq_shift;
    int32_t time_in;  /* Timesteps width = block_out[0]                  */
    int32_t time_dim; /* time embedding width                            */
    bool timestep_post_act;  /* SiLU after linear_2 (inside TimestepEmbedding) */
    bool time_embed_act;     /* SiLU after the class embedding was added         */
    enum unclip_unet_class_embed class_embed;
    bool scale_shift;        /* resnet_time_scale_shift "scale_shift" (else "default") */
    bool skip_time_act;      /* resnet_skip_time_act: no SiLU before time_emb_proj      */
    float resnet_out_scale;  /* resnet_out_scale_factor (down/up block resnets)          */
    float mid_scale;         /* mid_block_scale_factor (mid block resnets)               */
    int32_t encoder_hid_dim; /* > 0: encoder_hid_proj Linear(encoder_hid_dim, cross_dim) */
    int32_t context_dim;     /* width of encoder_hidden_states the forward takes (0: none) */
    int32_t conv_in_k, conv_out_k; /* 1 or 3 */
    bool center_input;
    int32_t n_downsamplers; /* H and W must be multiples of 2^n_downsamplers */
};

/* Reads and checks a UNet2DConditionModel / UNet2DModel config (the class from
 * "_class_name"; absent keys take diffusers v0.27 defaults of that class). Messages name the
 * document and key. */
unclip_status unclip__unet_config_read(const struct unclip_json *j,
                                       struct unclip_unet_config *out, struct unclip_err *err);

struct unclip_unet;

struct unclip_unet_opts {
    bool fp32; /* F32 matrices on the device instead of F16 */
};

/* Loads from explicit files; config_name / weights_name (NULL: the paths) prefix messages,
 * e.g. "decoder/config.json", "decoder/diffusion_pytorch_model.safetensors". vk is borrowed
 * and must outlive the model. opts may be NULL. */
unclip_status unclip__unet_load_files(struct unclip_vk *vk, const char *config_path,
                                      const char *config_name, const char *weights_path,
                                      const char *weights_name,
                                      const struct unclip_unet_opts *opts,
                                      struct unclip_unet **out, struct unclip_err *err);
/* Loads component `name` ("decoder", "super_res_first", ...) of a model folder. */
unclip_status unclip__unet_load(struct unclip_vk *vk, const struct unclip_model_dir *dir,
                                const char *name, const struct unclip_unet_opts *opts,
                                struct unclip_unet **out, struct unclip_err *err);
void unclip__unet_free(struct unclip_unet *u); /* NULL is a no-op; frees the workspace too */

const struct unclip_unet_config *unclip__unet_config(const struct unclip_unet *u);
/* Device bytes of the weights. */
uint64_t unclip__unet_weight_bytes(const struct unclip_unet *u);
/* Device bytes of the activation workspace planned now (0 before the first forward). */
uint64_t unclip__unet_workspace_bytes(const struct unclip_unet *u);
/* Releases the workspace (the next forward plans again), e.g. between pipeline stages. */
void unclip__unet_release_workspace(struct unclip_unet *u);

struct unclip_unet_inputs {
    const struct unclip_tensor *sample; /* [B, in_channels, H, W] F32; H, W multiples of
                                           2^n_downsamplers                                  */
    float timestep;                     /* one value for the whole batch (0..999 grid index) */
    /* UNet2DConditionModel only (ignored by UNet2DModel, which takes no context): */
    const struct unclip_tensor *encoder_hidden_states; /* [B, T, context_dim] F32            */
    const float *attention_mask; /* host [B * T]: 1 keeps a context token, 0 hides it
                                    (bias (1 - m) * -10000); NULL keeps every token          */
    /* class_embed IDENTITY only (required then): [B, time_dim] F32, added to the time
     * embedding (Karlo's text_proj additive embedding). */
    const struct unclip_tensor *class_labels;
};

/* Runs the network: out [B, out_channels, H, W] F32, allocated by the caller (the decoder's
 * learned-variance output keeps both halves: eps then v). out must not alias an input.
 * It uploads the timestep embedding and the key bias at its start (waiting for them), then
 * the body (conv_in .. conv_out) is recorded once per plan and caller buffers (sample,
 * encoder_hidden_states and out: the same tensors step after step) and replayed: the call
 * returns when the work has run, in submissions of bounded work with the cancel check
 * between them (UNCLIP_E_CANCELLED). UNCLIP_NO_REPLAY=1 records every forward instead (the
 * work is then left recorded, not waited for). Errors (bad shapes, unsupported sizes, device
 * errors) go to unclip__vk_err(vk). */
unclip_status unclip__unet_forward(struct unclip_unet *u, const struct unclip_unet_inputs *in,
                                   struct unclip_tensor *out);

/* Activation memory of one forward for a config and input geometry, planned exactly as
 * unclip__unet_forward plans it, but without weights or a device: for sizing a model (Karlo's
 * super-resolution UNet at 256x256) before loading it, and for tests. */
struct unclip_unet_plan {
    uint64_t workspace_bytes; /* what the forward allocates (the arena)                     */
    uint64_t live_peak_bytes; /* most bytes of intermediates alive at one time: the lower
                                 bound of any packing                                     */
    uint64_t largest_bytes;   /* the largest single intermediate                           */
    int32_t n_tensors;        /* intermediates of one forward                              */
    int32_t n_buffers;        /* device buffers they are packed into (1: the arena; 0 if
                                 there are no intermediates)                              */
};
unclip_status unclip__unet_plan(const struct unclip_unet_config *c, int32_t batch,
                                int32_t height, int32_t width, int32_t context_len, bool mask,
                                struct unclip_unet_plan *out, struct unclip_err *err);

#endif
