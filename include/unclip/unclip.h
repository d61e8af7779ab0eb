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
};

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
                                    safetensors, names as in the goldens' whole-run files)   */
};

struct unclip_run_params unclip_run_params_default(void);

/* Frees memory the engine returned to the caller. NULL is a no-op. */
void unclip_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* UNCLIP_UNCLIP_H */
