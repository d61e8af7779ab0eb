/* Device memory budget at stage entry (issue 7): before a stage loads anything, the weights
 * of its components (sizes from the safetensors headers, as the loaders will upload them) and
 * its planned activations are compared with what the device has left
 * (unclip__vk_budget_check), so a model too big for the device fails at once with the need
 * and the budget in the message, instead of running out of memory halfway through. */
#include "pipeline/budget.h"

#include "core/alloc.h"
#include "io/json.h"
#include "io/model-dir.h"
#include "io/safetensors.h"
#include "models/text-proj.h"
#include "models/unet.h"

#include <string.h>

unclip_status
unclip__weights_device_bytes(const struct unclip_model_dir *d, const char *component, bool fp32,
                             uint64_t *out, struct unclip_err *err)
{
    char *path = NULL;
    unclip_status st = unclip__model_dir_weights_path(d, component, &path, err);
    if (st != UNCLIP_OK)
        return st;
    struct unclip_st_file *f = NULL;
    st = unclip__st_open(path, &f, err);
    unclip__free(path);
    if (st != UNCLIP_OK)
        return st;
    uint64_t bytes = 0;
    for (int32_t i = 0; i < unclip__st_count(f); i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        if (t->dtype != UNCLIP_DT_F32 && t->dtype != UNCLIP_DT_F16 && t->dtype != UNCLIP_DT_BF16)
            continue; /* position_ids and other integer buffers are never uploaded */
        size_t n = strlen(t->name), m = strlen("token_embedding.weight");
        if (n >= m && !strcmp(t->name + n - m, "token_embedding.weight"))
            continue; /* the CLIP text tower gathers its rows on the host */
        /* matrices in the run's weight dtype; biases and norm parameters stay F32; device
         * buffers are rounded up to 256 bytes */
        uint64_t esize = fp32 || t->ndim < 2 ? 4 : 2;
        bytes += ((uint64_t)t->numel * esize + 255) / 256 * 256;
    }
    unclip__st_close(f);
    *out = bytes;
    return UNCLIP_OK;
}

unclip_status
unclip__stage_budget(struct unclip__run *r, const char *stage, const char *const *components,
                     int32_t n, uint64_t activations)
{
    uint64_t weights = 0;
    for (int32_t i = 0; i < n; i++) {
        uint64_t b = 0;
        unclip_status st = unclip__weights_device_bytes(r->model->dir, components[i], r->fp32,
                                                        &b, r->err);
        if (st != UNCLIP_OK)
            return st; /* the loader would fail the same way; say so now */
        weights += b;
    }
    return unclip__vk_budget_check(r->vk, stage, weights, activations);
}

unclip_status
unclip__unet_stage_activations(struct unclip__run *r, const char *unet, int32_t rows_per_image,
                               int32_t count, int32_t context_len, uint64_t *out)
{
    struct unclip_json *j = NULL;
    unclip_status st = unclip__model_dir_config(r->model->dir, unet, &j, r->err);
    if (st != UNCLIP_OK)
        return st;
    struct unclip_unet_config c;
    st = unclip__unet_config_read(j, &c, r->err);
    unclip__json_free(j);
    if (st != UNCLIP_OK)
        return st;
    if (c.sample_size <= 0) {
        *out = 0; /* the stage itself says what is missing */
        return UNCLIP_OK;
    }
    int32_t imgs = unclip__images_per_forward(&c, c.sample_size, rows_per_image, count);
    struct unclip_unet_plan plan;
    st = unclip__unet_plan(&c, imgs * rows_per_image, c.sample_size, c.sample_size, context_len,
                           context_len > 0, &plan, r->err);
    if (st != UNCLIP_OK)
        return st;
    /* the workspace plus the forward's inputs and output (sample, noise prediction) */
    uint64_t io = (uint64_t)imgs * rows_per_image * (uint64_t)c.sample_size * c.sample_size *
                  (uint64_t)(c.in_channels + c.out_channels) * 4u;
    *out = plan.workspace_bytes + io;
    return UNCLIP_OK;
}

unclip_status
unclip__text_proj_extra_tokens(struct unclip__run *r, int32_t *out)
{
    struct unclip_json *j = NULL;
    unclip_status st = unclip__model_dir_config(r->model->dir, "text_proj", &j, r->err);
    if (st != UNCLIP_OK)
        return st;
    struct unclip_text_proj_config c;
    st = unclip__text_proj_config_read(j, &c, r->err);
    unclip__json_free(j);
    if (st == UNCLIP_OK)
        *out = c.extra_tokens;
    return st;
}
