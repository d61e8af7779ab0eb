/* libunclip: the unCLIP (Karlo) engine on Vulkan compute.
 *
 * This is the one public header of the engine. It uses only C11 and <stdint.h>/<stdbool.h>
 * types: no GLib, GTK or Vulkan types cross it, so the CLI, the GIMP plug-in and tests all
 * link the same engine without knowing how it computes.
 *
 * Error model: every fallible function returns an unclip_status (0 = success, negative =
 * error). Out-parameters are written only on success. The object the call was made on keeps
 * the last error's text, with the detail (which file, which tensor, which offset).
 */
#ifndef UNCLIP_UNCLIP_H
#define UNCLIP_UNCLIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message). Errors are grouped by kind in ranges of ten:
 * -1..-9 caller's arguments, -10..-19 files and models, -20..-29 unsupported device,
 * -30..-39 Vulkan, -40..-49 memory, -50..-59 cancelled, -60.. internal. */
#define UNCLIP_STATUS_LIST(X)                                                         \
    X(UNCLIP_OK,              0,   "success")                                         \
    X(UNCLIP_E_ARG,          -1,   "invalid argument")                                \
    X(UNCLIP_E_PROMPT,       -2,   "prompt cannot be used")                           \
    X(UNCLIP_E_IO,          -10,   "file could not be read or written")               \
    X(UNCLIP_E_FORMAT,      -11,   "malformed file")                                  \
    X(UNCLIP_E_MODEL,       -12,   "model folder is incomplete or inconsistent")      \
    X(UNCLIP_E_UNSUPPORTED, -20,   "the device lacks a feature the engine needs")     \
    X(UNCLIP_E_NO_DEVICE,   -21,   "no usable Vulkan device")                         \
    X(UNCLIP_E_VULKAN,      -30,   "Vulkan call failed")                              \
    X(UNCLIP_E_DEVICE_LOST, -31,   "the GPU device was lost; recreate the context")   \
    X(UNCLIP_E_TIMEOUT,     -32,   "the GPU did not finish in time")                  \
    X(UNCLIP_E_NOMEM,       -40,   "out of host memory")                              \
    X(UNCLIP_E_DEVICE_NOMEM,-41,   "out of device memory")                            \
    X(UNCLIP_E_CANCELLED,   -50,   "cancelled")                                       \
    X(UNCLIP_E_INTERNAL,    -60,   "internal error")

typedef enum unclip_status {
#define UNCLIP_X_ENUM(name, value, msg) name = value,
    UNCLIP_STATUS_LIST(UNCLIP_X_ENUM)
#undef UNCLIP_X_ENUM
} unclip_status;

/* Static text for a status code ("unknown status" for values outside the list). */
const char *unclip_status_str(unclip_status status);

/* Version of the engine, "MAJOR.MINOR.PATCH". Static string. */
const char *unclip_version(void);

/* ---- Devices ---------------------------------------------------------------------------- */

enum unclip_device_type {
    UNCLIP_DEVICE_OTHER = 0,
    UNCLIP_DEVICE_DISCRETE_GPU,
    UNCLIP_DEVICE_INTEGRATED_GPU,
    UNCLIP_DEVICE_VIRTUAL_GPU,
    UNCLIP_DEVICE_CPU,
};

/* What the engine knows about one Vulkan device. Plain data; copy freely. */
struct unclip_device_info {
    int32_t  index;                  /* position in the Vulkan enumeration order            */
    char     name[256];
    char     driver[256];            /* driver name and info, when the driver reports them  */
    enum unclip_device_type type;
    uint32_t api_version;            /* VK_MAKE_API_VERSION encoding                         */
    uint64_t device_local_bytes;     /* sum of device-local heaps                           */
    uint64_t host_visible_bytes;     /* largest host-visible heap                           */
    uint64_t max_storage_buffer_range; /* bytes one binding can see                          */
    uint32_t max_shared_memory;      /* bytes of workgroup shared memory                     */
    uint32_t subgroup_size;
    bool     has_compute_queue;
    bool     shader_float16;         /* fp16 arithmetic in shaders                          */
    bool     storage_16bit;          /* 16-bit storage buffer access                        */
    bool     usable;                 /* has everything the engine needs                     */
    char     why_unusable[128];      /* empty when usable                                   */
};

/* Lists the Vulkan devices. On success *out is an array of *n_out entries that the caller
 * frees with unclip_free(); *n_out may be 0. err (optional, may be NULL) receives a message
 * of at most err_size bytes on failure. */
unclip_status unclip_devices_list(struct unclip_device_info **out, int32_t *n_out,
                                  char *err, size_t err_size);

/* Index of the device the engine picks by default among list[0..n): discrete > integrated >
 * virtual > CPU > other, then the larger device-local memory; -1 when none is usable. */
int32_t unclip_device_pick(const struct unclip_device_info *list, int32_t n);

/* ---- Context ------------------------------------------------------------------------------ */

struct unclip_ctx; /* opaque: one Vulkan device and everything created on it */

struct unclip_ctx_params {
    int32_t     device_index;  /* -1: the best usable device (see unclip_device_pick)    */
    const char *device_name;   /* non-NULL: first usable device whose name contains it
                                  (case-insensitive); borrowed, read during _new only    */
    bool        fp32_weights;  /* false (default): weights are fp16 on the device        */
    bool        validation;    /* enable the Khronos validation layer when installed     */
    uint32_t    submit_timeout_ms; /* longest wait for one GPU submission before the call
                                  fails with UNCLIP_E_TIMEOUT ("did not finish a submission
                                  within N ms"); 0: UNCLIP_SUBMIT_TIMEOUT_MS. Work is split
                                  into bounded submissions (well under a second on a GPU),
                                  so this only has to catch a hung device: it is generous
                                  because a CPU driver (lavapipe) on a loaded machine can
                                  need minutes for one submission.                         */
};

#define UNCLIP_SUBMIT_TIMEOUT_MS 600000u /* 10 minutes */

struct unclip_ctx_params unclip_ctx_params_default(void);

/* Creates a context. On failure *out is untouched and err (optional) gets the message. */
unclip_status unclip_ctx_new(const struct unclip_ctx_params *params, struct unclip_ctx **out,
                             char *err, size_t err_size);
void          unclip_ctx_free(struct unclip_ctx *ctx); /* NULL is a no-op */
/* Text of the last error on this context ("" when none). Valid until the next call. */
const char   *unclip_ctx_last_error(const struct unclip_ctx *ctx);
/* The device the context runs on. */
const struct unclip_device_info *unclip_ctx_device(const struct unclip_ctx *ctx);

/* ---- Models ------------------------------------------------------------------------------- */

struct unclip_model; /* opaque: a diffusers-layout model folder, configs validated; weights are
                        loaded stage by stage during a run and released after it */

enum unclip_model_feature {
    UNCLIP_FEATURE_TEXT_TO_IMAGE = 1u << 0, /* tokenizer, text_encoder, prior, text_proj, ... */
    UNCLIP_FEATURE_IMAGE_EMBED   = 1u << 1, /* image_encoder + feature_extractor              */
    UNCLIP_FEATURE_DECODE        = 1u << 2, /* text_proj, decoder, super-resolution           */
    UNCLIP_FEATURE_TEXT_EMBED    = 1u << 3, /* tokenizer + text_encoder                       */
};

/* Opens `dir` (borrowed). Fails with a message naming what is missing or malformed. */
unclip_status unclip_model_open(struct unclip_ctx *ctx, const char *dir, struct unclip_model **out);
void          unclip_model_free(struct unclip_model *model); /* NULL is a no-op */
uint32_t      unclip_model_features(const struct unclip_model *model); /* UNCLIP_FEATURE_* bits */
int32_t       unclip_model_embed_dim(const struct unclip_model *model);  /* CLIP width, e.g. 768 */
int32_t       unclip_model_image_size(const struct unclip_model *model); /* output side, e.g. 256 */

/* ---- Finding a model ---------------------------------------------------------------------- */

struct unclip_model_search {
    const char *gimp_dir;  /* GIMP's user folder (gimp_directory()); NULL: $GIMP3_DIRECTORY,
                              else $XDG_CONFIG_HOME/GIMP/3.0, else ~/.config/GIMP/3.0        */
    uint32_t    need;      /* UNCLIP_FEATURE_* bits the folder must offer; 0: any pipeline  */
};

/* Finds a model folder. name_or_path is a folder (a diffusers-layout model folder, a hub
 * cache "models--org--name" folder or one of its snapshots), a name ("karlo",
 * "karlo-v1-alpha", "kakaobrain/karlo-v1-alpha", "shapes-v1"), or NULL/"" for $UNCLIP_MODEL
 * or else the shipped default model "shapes-v1". Names are looked up, first match wins, in
 * <gimp_dir>/unclip/models/<folder>, then the Hugging Face hub cache ($HF_HUB_CACHE, else
 * $HF_HOME/hub, else ~/.cache/huggingface/hub: models--org--name/snapshots/<refs/main>), then
 * (default model only) $UNCLIP_DATADIR/models, the installed datadir and the source tree.
 * A folder that exists but lacks what `need` asks for (e.g. no image_encoder/ for
 * variations) is skipped and named in the report. On success `out` (out_size bytes) holds
 * the folder's path. On failure (UNCLIP_E_MODEL) `err` lists every place looked at and why
 * it was rejected. opts may be NULL. */
unclip_status unclip_model_find(const char *name_or_path, const struct unclip_model_search *opts,
                                char *out, size_t out_size, char *err, size_t err_size);

/* ---- Images ------------------------------------------------------------------------------- */

/* 8-bit pixels, rows top to bottom, channels 1 (grey), 3 (RGB) or 4 (RGBA), `stride` bytes per
 * row. Images the engine returns own `pixels` (free with unclip_image_clear); images the
 * caller passes in are borrowed. */
struct unclip_image {
    int32_t  width, height, channels, stride;
    uint8_t *pixels;
};
void unclip_image_clear(struct unclip_image *image); /* frees pixels, zeroes the struct */

/* ---- CLIP embeddings ---------------------------------------------------------------------- */

/* What the CLIP text encoder makes of n prompts, tokenized as the unCLIP pipelines do
 * (padding to seq_len with the pad id, truncation keeping eos last; the encoder sees only
 * input_ids). Arrays are row-major and owned by the struct: free with
 * unclip_text_embeddings_clear(). */
struct unclip_text_embeddings {
    int32_t  n;                  /* prompts                                                  */
    int32_t  seq_len;            /* tokens per prompt (77)                                   */
    int32_t  hidden;             /* text encoder width                                       */
    int32_t  embed_dim;          /* projection width (the CLIP embedding size)               */
    int64_t *input_ids;          /* [n, seq_len]                                             */
    int64_t *attention_mask;     /* [n, seq_len], 1 on bos..eos                              */
    float   *text_embeds;        /* [n, embed_dim]: pooled (first eos) and projected          */
    float   *last_hidden_state;  /* [n, seq_len, hidden], after the final LayerNorm          */
    uint8_t *truncated;          /* [n], 1 when the prompt did not fit and was cut            */
};
void unclip_text_embeddings_clear(struct unclip_text_embeddings *e); /* frees, zeroes */

/* Encodes prompts[0..n) (UTF-8, any length) in one batch. Needs UNCLIP_FEATURE_TEXT_EMBED.
 * The tokenizer and the text encoder are loaded on first use and kept with the model.
 * *out is written only on success. */
unclip_status unclip_embed_text(struct unclip_model *model, const char *const *prompts, int32_t n,
                                struct unclip_text_embeddings *out);

/* What the CLIP image encoder makes of n images after CLIP preprocessing (shortest-edge
 * bicubic resize, centre crop, normalisation; alpha dropped). Owned arrays as above. */
struct unclip_image_embeddings {
    int32_t  n;                  /* images                                                   */
    int32_t  channels, size;     /* pixel_values are [n, channels, size, size]               */
    int32_t  tokens;             /* class token + patches                                    */
    int32_t  hidden;             /* image encoder width                                      */
    int32_t  embed_dim;          /* projection width                                         */
    float   *pixel_values;       /* [n, channels, size, size], the encoder input              */
    float   *image_embeds;       /* [n, embed_dim]                                           */
    float   *last_hidden_state;  /* [n, tokens, hidden], BEFORE post_layernorm               */
};
void unclip_image_embeddings_clear(struct unclip_image_embeddings *e); /* frees, zeroes */

/* Encodes images[0..n) (borrowed; 1, 3 or 4 channels) in one batch. Needs
 * UNCLIP_FEATURE_IMAGE_EMBED. *out is written only on success. */
unclip_status unclip_embed_image(struct unclip_model *model, const struct unclip_image *images,
                                 int32_t n, struct unclip_image_embeddings *out);

/* ---- Runs --------------------------------------------------------------------------------- */

struct unclip_progress {
    const char *stage;        /* "text_encoder", "prior", "decoder", "super_res", ...        */
    int32_t     step, n_steps;            /* step within the stage, 1-based; 0 while loading */
    int32_t     stage_index, n_stages;    /* 0-based index of the stage in this run          */
    double      fraction;                 /* 0..1 of the whole run's estimated work          */
};

struct unclip_run_params {
    uint64_t seed;               /* torch.Generator().manual_seed(seed) equivalent           */
    int32_t  num_images;         /* >= 1                                                      */
    int32_t  prior_steps;        /* 25 */
    int32_t  decoder_steps;      /* 25 */
    int32_t  sr_steps;           /* 7  */
    float    prior_guidance;     /* 4.0 */
    float    decoder_guidance;   /* 8.0 */
    bool   (*cancel_cb)(void *user_data);   /* optional; polled between GPU submissions      */
    void   (*progress_cb)(const struct unclip_progress *p, void *user_data); /* optional     */
    void    *user_data;
    const char *dump_dir;        /* non-NULL: each stage's tensors written there (float32
                                    safetensors, names as in the goldens' whole-run files;
                                    layout: see "Dump" under Pipelines below)                */
    bool     decoder_only;       /* true: stop after the decoder: the images are its output
                                    (e.g. 64 x 64 for Karlo) made 8-bit as below; super-
                                    resolution is skipped (sr_steps and the super_res_*
                                    components are then not needed). For quick previews.
                                    Default false.                                           */
};

struct unclip_run_params unclip_run_params_default(void);

/* ---- Pipelines ---------------------------------------------------------------------------- */

/* The generation pipelines compute what diffusers' UnCLIPPipeline / UnCLIPImageVariationPipeline
 * (v0.27.2) compute: same stages, same classifier-free guidance, same draws from one
 * torch-compatible generator seeded with params.seed, so a seed gives diffusers' picture for
 * `generator=torch.Generator().manual_seed(seed)` (up to fp32 rounding; with the default fp16
 * weights the pictures are close but not equal).
 *
 * Memory: a run loads one stage's weights at a time and releases them before the next stage
 * (text encoder; prior; image encoder; text_proj + decoder; super_res_first; super_res_last),
 * so peak device memory is about the largest stage plus its activations. Any CLIP tower the
 * model kept loaded from unclip_embed_text/_image is released when a run starts.
 *
 * Guidance: classifier-free guidance is on when prior_guidance > 1 or decoder_guidance > 1
 * (text to image) or decoder_guidance > 1 (everything decoded from an image embedding only),
 * as in diffusers; then the networks run doubled batches [unconditional; conditional].
 *
 * Progress and cancel: params.progress_cb is called at the start of every stage (step 0) and
 * after every step; params.cancel_cb is polled after every GPU submission (work is split into
 * bounded submissions), and once it returns true the run stops within that submission, frees
 * everything it allocated, writes nothing (no images, no dump) and returns
 * UNCLIP_E_CANCELLED. The model stays usable.
 *
 * Errors: a missing component names itself and the folder ("no prior/ in DIR: text to image
 * needs it"); running out of device memory is UNCLIP_E_DEVICE_NOMEM naming the stage. The
 * message is unclip_ctx_last_error() of the model's context.
 *
 * Dump: with params.dump_dir set, every intermediate tensor of the run is kept under the
 * names of the goldens' whole-run files (text_encoder_call0_*, prior_step3_model_output,
 * noise_05_decoder_initial_latents, image_small, images_u8, ...) and written, only when the
 * run succeeds, to DIR/run.safetensors (text to image, variations) or to
 * DIR/source-K.safetensors and DIR/frame-NNN.safetensors (interpolation, text diffs). Float
 * tensors are F32; token ids, masks and timesteps I64; images_u8 U8. */

#define UNCLIP_MAX_STAGES 8

/* Cost of one stage of a run. Plain data. */
struct unclip_stage_stats {
    char     name[32];          /* "text_encoder", "image_encoder", "prior", "decoder",
                                   "super_res_first", "super_res_last"                       */
    int32_t  steps;             /* network evaluations (denoising steps) in the stage         */
    double   load_ms;           /* reading and uploading weights                              */
    double   total_ms;          /* the whole stage, loading included                          */
    uint64_t weight_bytes;      /* device bytes of the stage's weights                        */
    uint64_t device_peak_bytes; /* peak device memory during the stage (weights + activations
                                   + buffers; bytes of memory blocks asked from the driver)   */
    uint64_t host_peak_bytes;   /* peak resident memory of the whole process during the stage
                                   (Linux VmHWM, reset at the stage start; 0 when unknown; on
                                   a CPU Vulkan driver it includes the "device" memory)       */
};

struct unclip_run_stats {
    int32_t n_stages;
    struct unclip_stage_stats stages[UNCLIP_MAX_STAGES]; /* in execution order              */
    double   total_ms;
    uint64_t device_peak_bytes; /* max over the stages */
    uint64_t host_peak_bytes;   /* max over the stages */
};

/* What a run returns. images[i] are RGB (3 channels, stride = 3 * width) at the super-
 * resolution size (256 x 256 for Karlo; the decoder's size with params.decoder_only), 8-bit as diffusers' output_type="pil" makes them
 * (round half to even of 255 * clamp(x / 2 + 0.5, 0, 1)). Owned: free with
 * unclip_result_clear(). */
struct unclip_result {
    int32_t n_images;
    struct unclip_image *images;  /* [n_images] */
    struct unclip_run_stats stats;
};
void unclip_result_clear(struct unclip_result *r); /* frees the images, zeroes; NULL is a no-op */

/* Where an image embedding comes from. Pointers are borrowed for the call. */
enum unclip_source_kind {
    UNCLIP_SOURCE_IMAGE = 0, /* `image`: CLIP image embedding (needs image_encoder/ and
                                feature_extractor/); the decoder's text is ""             */
    UNCLIP_SOURCE_PROMPT,    /* `prompt` (UTF-8): the prior's embedding for it with the run's
                                seed, exactly as unclip_run_text_to_image makes it (needs
                                prior/); the decoder's text is the prompt                 */
    UNCLIP_SOURCE_EMBEDDING, /* `embedding`: a given image embedding [embed_dim] (e.g. from
                                unclip_embed_image); the decoder's text is ""             */
};

struct unclip_source {
    enum unclip_source_kind kind;
    const struct unclip_image *image;   /* IMAGE: 1, 3 or 4 channels (alpha dropped)        */
    const char *prompt;                 /* PROMPT                                          */
    const float *embedding;             /* EMBEDDING: [embed_dim] floats, unnormalised      */
    int32_t embed_dim;                  /* EMBEDDING: must equal unclip_model_embed_dim()   */
};

/* Text to image (UnCLIPPipeline): prompt -> params.num_images images. Uses every params field;
 * the images of a batch are one diffusers call with num_images_per_prompt = num_images, so
 * image 1 of a batch of 2 is not the picture of the same seed alone (the draws continue the
 * stream). Needs tokenizer/, text_encoder/, prior/, prior_scheduler/, text_proj/, decoder/,
 * decoder_scheduler/, super_res_first/, super_res_last/, super_res_scheduler/.
 * Steps: prior_steps, decoder_steps, sr_steps >= 2 (diffusers divides by steps - 1).
 * *out is written only on success. */
unclip_status unclip_run_text_to_image(struct unclip_model *model, const char *prompt,
                                       const struct unclip_run_params *params,
                                       struct unclip_result *out);

/* Image variations (UnCLIPImageVariationPipeline): params.num_images pictures decoded from
 * the image embedding of `source` (kind IMAGE or EMBEDDING; PROMPT is UNCLIP_E_ARG: that is
 * text to image), conditioned on the empty text. prior_steps and prior_guidance are unused.
 * Needs the decoder components, the tokenizer and text encoder (for ""), and for an IMAGE
 * source image_encoder/ and feature_extractor/. *out is written only on success. */
unclip_status unclip_run_variations(struct unclip_model *model,
                                    const struct unclip_source *source,
                                    const struct unclip_run_params *params,
                                    struct unclip_result *out);

/* Interpolation (DALL-E 2 paper 3.2): n_frames >= 2 pictures along the way from `from` to
 * `to` (any source kinds). Frame k uses w = k / (n_frames - 1) and
 *   image embedding z_w = slerp of the directions of z_from and z_to (angle between the
 *       normalised vectors), scaled by the linearly interpolated norm
 *       (1 - w)|z_from| + w|z_to|;
 *   decoder text: text_embeds the same way, hidden states (1 - w) H_from + w H_to, and each
 *       text token's attention weight (1 - w) m_from + w m_to (a token only one end sees fades
 *       in or out: its attention logit gets log of its weight);
 * and every frame is decoded with the same noise (one shared seed), so the pictures change
 * smoothly. Frame 0 and frame n_frames - 1 are exactly (to fp32 rounding) the endpoints' own
 * pictures with that seed: unclip_run_text_to_image(prompt) for a PROMPT end,
 * unclip_run_variations(image or embedding) for the others. One exception: when one end is a
 * prompt and the other is not, the frames use the text-to-image noise stream (the one left
 * after the prior's draws), so the non-prompt end equals its variation drawn from that stream
 * rather than from a fresh seed. params.num_images must be 1 (one picture per frame).
 * *out holds n_frames images in order. */
unclip_status unclip_run_interpolation(struct unclip_model *model,
                                       const struct unclip_source *from,
                                       const struct unclip_source *to, int32_t n_frames,
                                       const struct unclip_run_params *params,
                                       struct unclip_result *out);

/* Interpolation at chosen positions: like unclip_run_interpolation, but frame k uses
 * w = positions[k] (n_positions >= 1, each in [0, 1], finite, any order, repeats allowed)
 * instead of evenly spaced w. Every frame is decoded with the same noise, so the frame at
 * w = positions[k] is the picture unclip_run_interpolation shows at that w (e.g. position 0.25
 * gives frame 1 of 5). unclip_run_interpolation(n) equals this with positions k / (n - 1).
 * *out holds n_positions images, in the order of `positions`. */
unclip_status unclip_run_interpolation_at(struct unclip_model *model,
                                          const struct unclip_source *from,
                                          const struct unclip_source *to,
                                          const float *positions, int32_t n_positions,
                                          const struct unclip_run_params *params,
                                          struct unclip_result *out);

/* Text diff (DALL-E 2 paper 3.3): moves the picture of `source` towards a change described
 * by two captions. With z_i the source's image embedding and t_from, t_to the CLIP text
 * embeddings (text_embeds) of `from_prompt` (describing the source, e.g. "a photo of a cat")
 * and `to_prompt` (the target, e.g. "an anime drawing of a cat"):
 *   z_d = normalize(t_to - t_from),
 *   z_a = slerp of the directions of z_i and z_d by amounts[k], with the norm |z_i| kept.
 * One picture per amount (typically 0.25 .. 0.5; 0 gives the source's own picture), all
 * decoded with the same noise and the source's decoder text, like interpolation frames.
 * t_to == t_from is UNCLIP_E_ARG (no direction). params.num_images must be 1. */
unclip_status unclip_run_text_diff(struct unclip_model *model,
                                   const struct unclip_source *source, const char *from_prompt,
                                   const char *to_prompt, const float *amounts,
                                   int32_t n_amounts, const struct unclip_run_params *params,
                                   struct unclip_result *out);

/* Frees memory the engine returned to the caller. NULL is a no-op. */
void unclip_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* UNCLIP_UNCLIP_H */
