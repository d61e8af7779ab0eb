/* CLIP image preprocessing on the host, bit-exact with transformers' CLIPImageProcessor
 * (v4.38, the PIL path) on Pillow 9.4.
 *
 * Reference: goldens README 7.1 and reference/clip.md 5.3. Steps:
 *   1. convert to RGB like Pillow's convert("RGB"): grey is replicated, alpha is DROPPED
 *      (not composited onto a background);
 *   2. resize so the shortest edge becomes size.shortest_edge (the other edge
 *      int(shortest * long / short), truncated) with Pillow's 8-bit antialiased bicubic
 *      (a = -0.5): fixed-point weights (22 fractional bits), horizontal pass into an 8-bit
 *      image first, then the vertical pass; an axis that keeps its size is not resampled;
 *   3. centre crop crop_size at top = (H - h) / 2, left = (W - w) / 2 (floor);
 *   4. x = u8 * rescale_factor computed in double and stored as float, then
 *      (x - mean[c]) / std[c] in float; output planar CHW, RGB order.
 *
 * Images are struct unclip_image (include/unclip/unclip.h): 8-bit, rows top to bottom,
 * interleaved channels 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), `stride` bytes per row
 * (>= width * channels). Any size >= 1x1 is accepted. */
#ifndef UNCLIP_IO_PREPROCESS_H
#define UNCLIP_IO_PREPROCESS_H

#include "core/error.h"

#include <stdbool.h>
#include <stdint.h>

/* feature_extractor/preprocessor_config.json of a CLIPImageProcessor. */
struct unclip_preprocess_config {
    int32_t shortest_edge;            /* size.shortest_edge; default 224                     */
    int32_t crop_height, crop_width;  /* crop_size; default 224 x 224                        */
    bool    do_rescale;               /* default true                                        */
    double  rescale_factor;           /* default 1/255                                       */
    bool    do_normalize;             /* default true                                        */
    float   mean[3];                  /* image_mean; default OpenAI CLIP's                   */
    float   std[3];                   /* image_std; > 0                                      */
};

/* transformers' CLIPImageProcessor() defaults. */
struct unclip_preprocess_config unclip__preprocess_config_default(void);

struct unclip_json;

/* Reads a preprocessor_config.json document (io/json.h; e.g. from
 * unclip__model_dir_config(d, "feature_extractor", ..)). Absent keys take the defaults. The engine implements only
 * what the CLIP vision tower can use: do_convert_rgb, do_resize and do_center_crop must be
 * true (or absent), resample 3 (bicubic), size given as {"shortest_edge": n} (n in 1..8192),
 * crop_size {"height", "width"} no larger than shortest_edge; other values are UNCLIP_E_MODEL
 * naming the file and key; wrong types and out-of-range values are UNCLIP_E_FORMAT. */
unclip_status unclip__preprocess_config_read(const struct unclip_json *j,
                                             struct unclip_preprocess_config *out,
                                             struct unclip_err *err);
/* The same from a file; `display_name` (may be NULL: the path) is used in messages. */
unclip_status unclip__preprocess_config_load(const char *path, const char *display_name,
                                             struct unclip_preprocess_config *out,
                                             struct unclip_err *err);

/* Size after the shortest-edge resize of a width x height image (transformers'
 * get_resize_output_image_size with default_to_square=False). */
void unclip__preprocess_resized_size(int32_t shortest_edge, int32_t width, int32_t height,
                                     int32_t *out_width, int32_t *out_height);

/* Pillow's convert("RGB"): dst is width*height*3 bytes, packed HWC. */
unclip_status unclip__image_to_rgb8(const struct unclip_image *img, uint8_t *dst,
                                    struct unclip_err *err);

/* Pillow's Image.resize(BICUBIC) of packed 8-bit HWC data with `channels` (1..4) independent
 * channels: src [h, w, channels] -> dst [oh, ow, channels]. All sizes >= 1. Allocates one
 * temporary image when both axes change (UNCLIP_E_NOMEM if that fails). */
unclip_status unclip__resize_bicubic_u8(const uint8_t *src, int32_t w, int32_t h,
                                        int32_t channels, uint8_t *dst, int32_t ow, int32_t oh,
                                        struct unclip_err *err);

/* Steps 3-4 on a packed RGB image [h, w, 3] that is at least crop-sized:
 * out [3, crop_height, crop_width]. */
unclip_status unclip__preprocess_crop_normalize(const struct unclip_preprocess_config *cfg,
                                                const uint8_t *rgb, int32_t w, int32_t h,
                                                float *out, struct unclip_err *err);

/* The whole preprocessing: out [3, crop_height, crop_width] float (caller-owned), the
 * vision encoder's pixel_values for one image. */
unclip_status unclip__preprocess_clip(const struct unclip_preprocess_config *cfg,
                                      const struct unclip_image *img, float *out,
                                      struct unclip_err *err);

#endif
