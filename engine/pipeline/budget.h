/* Device memory budget at the entry of pipeline stages (see budget.c). */
#ifndef UNCLIP_PIPELINE_BUDGET_H
#define UNCLIP_PIPELINE_BUDGET_H

#include "pipeline/pipeline.h"

#include <stdbool.h>
#include <stdint.h>

struct unclip_model_dir;

/* Device bytes the weights of `component` take once uploaded (from the safetensors header
 * only; nothing is read or uploaded): matrices in F16 (F32 with fp32), 1-D parameters in F32,
 * integer buffers and the CLIP text token table (kept on the host) not counted. An estimate
 * within a few percent of what the loaders upload. */
unclip_status unclip__weights_device_bytes(const struct unclip_model_dir *d, const char *component,
                                           bool fp32, uint64_t *out, struct unclip_err *err);

/* Checks that the weights of components[0..n) plus `activations` bytes fit what the device
 * has left (unclip__vk_budget). Call at the stage's entry, before loading. When they do not:
 * UNCLIP_E_DEVICE_NOMEM in r->err, e.g. "decoder needs 6.4 MiB of device memory (weights
 * 4.5 MiB + activations 1.9 MiB) but only 4.0 MiB is available on <device> (budget 4.0 MiB
 * from <source>, 0.0 KiB of it in use)"; figures in KiB below 1 MiB, exact bytes when need
 * and available would round alike. */
unclip_status unclip__stage_budget(struct unclip__run *r, const char *stage,
                                   const char *const *components, int32_t n,
                                   uint64_t activations);

/* Planned activation bytes of the UNet component `unet` in a stage that runs `count` images
 * of rows_per_image batch rows each (2 under guidance) at its config's sample_size, with
 * context_len cross-attention tokens (0: none, no mask). */
unclip_status unclip__unet_stage_activations(struct unclip__run *r, const char *unet,
                                             int32_t rows_per_image, int32_t count,
                                             int32_t context_len, uint64_t *out);

/* clip_extra_context_tokens of text_proj/config.json (the decoder's extra context tokens). */
unclip_status unclip__text_proj_extra_tokens(struct unclip__run *r, int32_t *out);

#endif
