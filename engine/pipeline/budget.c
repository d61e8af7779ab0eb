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

#include <stdio.h>
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

/* Bytes for a message: KiB below 1 MiB (tiny models and test budgets), MiB below 10 GiB,
 * then GiB; one decimal. */
static void
fmt_bytes(char *buf, size_t n, uint64_t v)
{
    if (v < (1u << 20))
        snprintf(buf, n, "%.1f KiB", (double)v / 1024.0);
    else if (v < (10ull << 30))
        snprintf(buf, n, "%.1f MiB", (double)v / 1048576.0);
    else
        snprintf(buf, n, "%.1f GiB", (double)v / 1073741824.0);
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
    uint64_t avail = 0;
    const char *src = "";
    uint64_t budget = unclip__vk_budget(r->vk, &avail, &src);
    uint64_t need = weights + activations;
    if (need <= avail)
        return UNCLIP_OK;
    char s_need[32], s_w[32], s_a[32], s_avail[32], s_budget[32], s_held[32];
    fmt_bytes(s_need, sizeof s_need, need);
    fmt_bytes(s_w, sizeof s_w, weights);
    fmt_bytes(s_a, sizeof s_a, activations);
    fmt_bytes(s_avail, sizeof s_avail, avail);
    fmt_bytes(s_budget, sizeof s_budget, budget);
    fmt_bytes(s_held, sizeof s_held, budget > avail ? budget - avail : 0);
    if (!strcmp(s_need, s_avail)) { /* rounded alike: the exact figures tell them apart */
        snprintf(s_need, sizeof s_need, "%llu bytes", (unsigned long long)need);
        snprintf(s_avail, sizeof s_avail, "%llu bytes", (unsigned long long)avail);
    }
    return unclip__fail(r->err, UNCLIP_E_DEVICE_NOMEM,
                        "%s needs %s of device memory (weights %s + activations %s) but only "
                        "%s is available on %s (budget %s from %s, %s of it in use)",
                        stage, s_need, s_w, s_a, s_avail, unclip__vk_info(r->vk)->name,
                        s_budget, src, s_held);
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
