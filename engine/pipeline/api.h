/* Internal definitions behind the public context and model handles (include/unclip/unclip.h),
 * for the pipeline code that extends them.
 *
 * Errors: the context's error record IS the Vulkan runtime's (unclip__vk_err(ctx->vk)), so
 * ops, model loaders and the public functions all report into one place and
 * unclip_ctx_last_error() shows the latest failure whatever layer it came from.
 *
 * Model parts are loaded on first use and kept until unclip_model_free() (or until
 * unclip__model_release() drops them, e.g. between the stages of a long run).
 */
#ifndef UNCLIP_PIPELINE_API_H
#define UNCLIP_PIPELINE_API_H

#include "unclip/unclip.h"

#include "core/error.h"
#include "io/model-dir.h"
#include "io/preprocess.h"
#include "io/tokenizer.h"
#include "models/clip-text.h"
#include "models/clip-vision.h"
#include "vk/vk.h"

struct unclip_ctx {
    struct unclip_vk *vk;                  /* owned */
    struct unclip_ctx_params params;       /* device_name cleared (borrowed at _new only) */
    struct unclip_device_info device;
};

struct unclip_model {
    struct unclip_ctx *ctx;                /* borrowed; outlives the model */
    struct unclip_model_dir *dir;          /* owned */
    uint32_t features;                     /* UNCLIP_FEATURE_* */
    int32_t embed_dim;                     /* text_encoder projection_dim (0 if none)   */
    int32_t image_size;                    /* output side of the pipeline (0 if unknown) */

    /* Loaded on first use (NULL until then). */
    struct unclip_tokenizer *tokenizer;
    struct unclip_clip_text *text;
    struct unclip_clip_vision *vision;
    bool have_preprocess;
    struct unclip_preprocess_config preprocess;
};

/* The context's error record. */
struct unclip_err *unclip__ctx_err(struct unclip_ctx *ctx);

/* Loaders of the model parts (no-ops when already loaded). Errors in the context. */
unclip_status unclip__model_tokenizer(struct unclip_model *m, struct unclip_tokenizer **out);
unclip_status unclip__model_text(struct unclip_model *m, struct unclip_clip_text **out);
unclip_status unclip__model_vision(struct unclip_model *m, struct unclip_clip_vision **out,
                                   const struct unclip_preprocess_config **pre);
/* Frees every loaded part (they are reloaded on next use). */
void unclip__model_release(struct unclip_model *m);

#endif
