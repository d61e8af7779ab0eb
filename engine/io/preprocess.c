#include "io/preprocess.h"

#include "core/alloc.h"
#include "core/bicubic.h"
#include "io/json.h"

#include <string.h>

/* Pillow's fixed-point precision for 8-bit resampling (Resample.c: 32 - 8 - 2 bits). */
#define PREC_BITS 22

struct unclip_preprocess_config
unclip__preprocess_config_default(void)
{
    return (struct unclip_preprocess_config){
        .shortest_edge = 224,
        .crop_height = 224,
        .crop_width = 224,
        .do_rescale = true,
        .rescale_factor = 1.0 / 255.0,
        .do_normalize = true,
        .mean = {0.48145466f, 0.4578275f, 0.40821073f},
        .std = {0.26862954f, 0.26130258f, 0.27577711f},
    };
}

/* Largest image side the preprocessing accepts: bounds every size product in int64 and the
 * fixed-point sums in int32 range regardless of the input. */
#define MAX_SIDE (1 << 16)

unclip_status
unclip__preprocess_config_load(const char *path, const char *display_name,
                               struct unclip_preprocess_config *out, struct unclip_err *err)
{
    if (!path || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "preprocessor config: NULL argument");
    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_load(path, display_name, &j, err);
    if (st != UNCLIP_OK)
        return st;
    st = unclip__preprocess_config_read(j, out, err);
    unclip__json_free(j);
    return st;
}

unclip_status
unclip__preprocess_config_read(const struct unclip_json *j, struct unclip_preprocess_config *out,
                               struct unclip_err *err)
{
    if (!j || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "preprocessor config: NULL argument");
    unclip_status st;
    const char *name = unclip__json_name(j);
    struct unclip_preprocess_config c = unclip__preprocess_config_default();
    bool convert = true, resize = true, crop = true;
    int32_t resample = 3;
    double mean[3], std[3];
    int32_t n_mean = 0, n_std = 0;
    if ((st = unclip__json_bool_opt(j, "do_convert_rgb", true, &convert, err)) ||
        (st = unclip__json_bool_opt(j, "do_resize", true, &resize, err)) ||
        (st = unclip__json_bool_opt(j, "do_center_crop", true, &crop, err)) ||
        (st = unclip__json_i32_opt(j, "resample", 3, 0, 5, &resample, err)) ||
        (st = unclip__json_i32_opt(j, "size.shortest_edge", c.shortest_edge, 1, 8192,
                                   &c.shortest_edge, err)) ||
        (st = unclip__json_i32_opt(j, "crop_size.height", c.crop_height, 1, 8192,
                                   &c.crop_height, err)) ||
        (st = unclip__json_i32_opt(j, "crop_size.width", c.crop_width, 1, 8192, &c.crop_width,
                                   err)) ||
        (st = unclip__json_bool_opt(j, "do_rescale", true, &c.do_rescale, err)) ||
        (st = unclip__json_float_opt(j, "rescale_factor", c.rescale_factor, 1e-12, 1e12,
                                     &c.rescale_factor, err)) ||
        (st = unclip__json_bool_opt(j, "do_normalize", true, &c.do_normalize, err)))
        goto done;
    if (unclip__json_has(j, "image_mean")) {
        st = unclip__json_float_array(j, "image_mean", 3, 3, -1e6, 1e6, mean, &n_mean, err);
        if (st)
            goto done;
        for (int i = 0; i < 3; i++)
            c.mean[i] = (float)mean[i];
    }
    if (unclip__json_has(j, "image_std")) {
        st = unclip__json_float_array(j, "image_std", 3, 3, 1e-12, 1e6, std, &n_std, err);
        if (st)
            goto done;
        for (int i = 0; i < 3; i++)
            c.std[i] = (float)std[i];
    }
    /* The size may also be given as {"height", "width"} by other processors; CLIP's is the
     * shortest edge, and nothing else keeps the aspect ratio the way the pipeline expects. */
    if (unclip__json_has(j, "size") && !unclip__json_has(j, "size.shortest_edge")) {
        st = unclip__fail(err, UNCLIP_E_MODEL,
                          "%s: 'size' has no 'shortest_edge'; only CLIP's shortest-edge resize "
                          "is supported",
                          name);
        goto done;
    }
    if (!convert || !resize || !crop) {
        st = unclip__fail(err, UNCLIP_E_MODEL,
                          "%s: '%s' is false; the vision encoder needs RGB, resized and cropped "
                          "input",
                          name, !convert ? "do_convert_rgb" : !resize ? "do_resize"
                                                                      : "do_center_crop");
        goto done;
    }
    if (resample != 3) {
        st = unclip__fail(err, UNCLIP_E_MODEL,
                          "%s: 'resample' is %d; only 3 (bicubic) is supported", name,
                          (int)resample);
        goto done;
    }
    if (c.crop_height > c.shortest_edge || c.crop_width > c.shortest_edge) {
        st = unclip__fail(err, UNCLIP_E_MODEL,
                          "%s: crop_size %dx%d is larger than size.shortest_edge %d (padding "
                          "is not supported)",
                          name, (int)c.crop_width, (int)c.crop_height, (int)c.shortest_edge);
        goto done;
    }
    *out = c;
done:
    return st;
}

void
unclip__preprocess_resized_size(int32_t shortest_edge, int32_t width, int32_t height,
                                int32_t *out_width, int32_t *out_height)
{
    const int64_t shrt = width <= height ? width : height;
    const int64_t lng = width <= height ? height : width;
    /* Python: int(size * long / short): an exact integer product, one correctly rounded
     * division (as in C for these magnitudes), truncated. */
    const int32_t new_long = (int32_t)((double)(shortest_edge * lng) / (double)shrt);
    if (width <= height) {
        *out_width = shortest_edge;
        *out_height = new_long;
    } else {
        *out_width = new_long;
        *out_height = shortest_edge;
    }
}

static unclip_status
check_image(const struct unclip_image *img, const char *what, struct unclip_err *err)
{
    if (!img || !img->pixels)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: no image", what);
    if (img->width < 1 || img->height < 1 || img->width > MAX_SIDE || img->height > MAX_SIDE)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: image size %dx%d not in 1..%d", what,
                            (int)img->width, (int)img->height, MAX_SIDE);
    if (img->channels < 1 || img->channels > 4)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: %d channels; expected 1, 2, 3 or 4", what,
                            (int)img->channels);
    if ((int64_t)img->stride < (int64_t)img->width * img->channels)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: stride %d < width %d x %d channels", what,
                            (int)img->stride, (int)img->width, (int)img->channels);
    return UNCLIP_OK;
}

unclip_status
unclip__image_to_rgb8(const struct unclip_image *img, uint8_t *dst, struct unclip_err *err)
{
    unclip_status st = check_image(img, "convert to RGB", err);
    if (st != UNCLIP_OK)
        return st;
    if (!dst)
        return unclip__fail(err, UNCLIP_E_ARG, "convert to RGB: NULL output");
    const int32_t ch = img->channels;
    for (int32_t y = 0; y < img->height; y++) {
        const uint8_t *row = img->pixels + (int64_t)y * img->stride;
        uint8_t *o = dst + (int64_t)y * img->width * 3;
        for (int32_t x = 0; x < img->width; x++) {
            const uint8_t *p = row + (int64_t)x * ch;
            /* Grey (L, LA) is replicated; alpha is ignored, exactly like convert("RGB"). */
            if (ch <= 2) {
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = p[0];
            } else {
                o[3 * x] = p[0];
                o[3 * x + 1] = p[1];
                o[3 * x + 2] = p[2];
            }
        }
    }
    return UNCLIP_OK;
}

/* Fixed-point taps of one axis, Pillow's layout: for output index i, first[i] and count[i],
 * and count[i] weights at w[i * k]. */
struct taps {
    int32_t k;
    int32_t *first, *count, *w;
};

/* Releases and clears, so a second call is harmless. */
static void
taps_free(struct taps *t)
{
    unclip__free(t->first);
    unclip__free(t->count);
    unclip__free(t->w);
    t->first = t->count = t->w = NULL;
}

static unclip_status
taps_build(struct taps *t, int32_t in, int32_t out, struct unclip_err *err)
{
    t->k = unclip__bicubic_max_taps(in, out);
    t->first = unclip__calloc((size_t)out, sizeof(int32_t));
    t->count = unclip__calloc((size_t)out, sizeof(int32_t));
    t->w = unclip__calloc((size_t)out * (size_t)t->k, sizeof(int32_t));
    double *dw = unclip__calloc((size_t)t->k, sizeof(double));
    if (!t->first || !t->count || !t->w || !dw) {
        taps_free(t);
        unclip__free(dw);
        return unclip__fail(err, UNCLIP_E_NOMEM, "bicubic resize: no memory for the taps of "
                            "%d -> %d", (int)in, (int)out);
    }
    for (int32_t i = 0; i < out; i++) {
        int64_t first;
        int32_t n = unclip__bicubic_taps(in, out, i, &first, dw);
        t->first[i] = (int32_t)first;
        t->count[i] = n;
        for (int32_t j = 0; j < n; j++) {
            /* Pillow's normalize_coeffs_8bpc: scaled by 2^22, rounded half away from zero. */
            double v = dw[j] * (double)(1 << PREC_BITS);
            t->w[(int64_t)i * t->k + j] = v < 0 ? (int32_t)(v - 0.5) : (int32_t)(v + 0.5);
        }
    }
    unclip__free(dw);
    return UNCLIP_OK;
}

/* Rounding start 2^21, arithmetic shift by 22, clamp to 0..255 (Pillow's clip8). */
static inline uint8_t
clip8(int64_t acc)
{
    int64_t v = acc >> PREC_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* One pass along an axis: src viewed as [outer, in, inner] -> dst [outer, out, inner], where
 * inner counts bytes (pixels x channels) that are filtered independently. */
static void
resample_axis(const uint8_t *src, uint8_t *dst, int64_t outer, int32_t in, int32_t out,
              int64_t inner, const struct taps *t)
{
    for (int64_t o = 0; o < outer; o++) {
        const uint8_t *s = src + o * in * inner;
        uint8_t *d = dst + o * out * inner;
        for (int32_t i = 0; i < out; i++) {
            const int32_t *w = t->w + (int64_t)i * t->k;
            const uint8_t *s0 = s + (int64_t)t->first[i] * inner;
            for (int64_t c = 0; c < inner; c++) {
                int64_t acc = 1 << (PREC_BITS - 1);
                for (int32_t j = 0; j < t->count[i]; j++)
                    acc += (int64_t)s0[j * inner + c] * w[j];
                d[(int64_t)i * inner + c] = clip8(acc);
            }
        }
    }
}

unclip_status
unclip__resize_bicubic_u8(const uint8_t *src, int32_t w, int32_t h, int32_t channels,
                          uint8_t *dst, int32_t ow, int32_t oh, struct unclip_err *err)
{
    if (!src || !dst)
        return unclip__fail(err, UNCLIP_E_ARG, "bicubic resize: NULL buffer");
    if (w < 1 || h < 1 || ow < 1 || oh < 1 || w > MAX_SIDE || h > MAX_SIDE || ow > MAX_SIDE ||
        oh > MAX_SIDE || channels < 1 || channels > 4)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "bicubic resize: %dx%d -> %dx%d with %d channels is out of range",
                            (int)w, (int)h, (int)ow, (int)oh, (int)channels);
    const bool horizontal = ow != w, vertical = oh != h;
    if (!horizontal && !vertical) {
        memcpy(dst, src, (size_t)w * (size_t)h * (size_t)channels);
        return UNCLIP_OK;
    }
    struct taps th = {0}, tv = {0};
    uint8_t *tmp = NULL;
    unclip_status st = UNCLIP_OK;
    if (horizontal && (st = taps_build(&th, w, ow, err)) != UNCLIP_OK)
        goto done;
    if (vertical && (st = taps_build(&tv, h, oh, err)) != UNCLIP_OK)
        goto done;
    if (horizontal && vertical) {
        tmp = unclip__malloc((size_t)ow * (size_t)h * (size_t)channels);
        if (!tmp) {
            st = unclip__fail(err, UNCLIP_E_NOMEM,
                              "bicubic resize: no memory for a %dx%d intermediate image",
                              (int)ow, (int)h);
            goto done;
        }
    }
    /* Pillow resizes horizontally first into an 8-bit image, then vertically. (It filters
     * only the rows the vertical pass reads; the values are the same.) */
    if (horizontal)
        resample_axis(src, vertical ? tmp : dst, h, w, ow, channels, &th);
    if (vertical)
        resample_axis(horizontal ? tmp : src, dst, 1, h, oh, (int64_t)ow * channels, &tv);
done:
    unclip__free(tmp);
    taps_free(&th);
    taps_free(&tv);
    return st;
}

unclip_status
unclip__preprocess_crop_normalize(const struct unclip_preprocess_config *cfg, const uint8_t *rgb,
                                  int32_t w, int32_t h, float *out, struct unclip_err *err)
{
    if (!cfg || !rgb || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "centre crop: NULL argument");
    const int32_t ch = cfg->crop_height, cw = cfg->crop_width;
    if (ch < 1 || cw < 1 || w < cw || h < ch)
        return unclip__fail(err, UNCLIP_E_ARG, "centre crop: %dx%d crop of a %dx%d image",
                            (int)cw, (int)ch, (int)w, (int)h);
    const int32_t top = (h - ch) / 2, left = (w - cw) / 2;
    for (int c = 0; c < 3; c++) {
        float *plane = out + (int64_t)c * ch * cw;
        for (int32_t y = 0; y < ch; y++) {
            const uint8_t *row = rgb + ((int64_t)(top + y) * w + left) * 3 + c;
            for (int32_t x = 0; x < cw; x++) {
                /* numpy: uint8 * python float -> float64, stored as float32; then the
                 * normalisation in float32. */
                float v = (float)row[3 * x];
                if (cfg->do_rescale)
                    v = (float)((double)row[3 * x] * cfg->rescale_factor);
                if (cfg->do_normalize)
                    v = (v - cfg->mean[c]) / cfg->std[c];
                plane[(int64_t)y * cw + x] = v;
            }
        }
    }
    return UNCLIP_OK;
}

unclip_status
unclip__preprocess_clip(const struct unclip_preprocess_config *cfg,
                        const struct unclip_image *img, float *out, struct unclip_err *err)
{
    if (!cfg || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "preprocess: NULL argument");
    unclip_status st = check_image(img, "preprocess", err);
    if (st != UNCLIP_OK)
        return st;
    if (cfg->shortest_edge < 1 || cfg->shortest_edge > MAX_SIDE ||
        cfg->crop_height > cfg->shortest_edge || cfg->crop_width > cfg->shortest_edge)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "preprocess: shortest edge %d with a %dx%d crop is not supported",
                            (int)cfg->shortest_edge, (int)cfg->crop_width,
                            (int)cfg->crop_height);
    int32_t rw, rh;
    unclip__preprocess_resized_size(cfg->shortest_edge, img->width, img->height, &rw, &rh);
    if (rw > MAX_SIDE || rh > MAX_SIDE)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "preprocess: a %dx%d image would be resized to %dx%d (limit %d)",
                            (int)img->width, (int)img->height, (int)rw, (int)rh, MAX_SIDE);
    uint8_t *rgb = unclip__malloc((size_t)img->width * (size_t)img->height * 3);
    uint8_t *resized = unclip__malloc((size_t)rw * (size_t)rh * 3);
    if (!rgb || !resized) {
        st = unclip__fail(err, UNCLIP_E_NOMEM, "preprocess: no memory for a %dx%d image",
                          (int)rw, (int)rh);
        goto done;
    }
    if ((st = unclip__image_to_rgb8(img, rgb, err)) != UNCLIP_OK ||
        (st = unclip__resize_bicubic_u8(rgb, img->width, img->height, 3, resized, rw, rh,
                                        err)) != UNCLIP_OK ||
        (st = unclip__preprocess_crop_normalize(cfg, resized, rw, rh, out, err)) != UNCLIP_OK)
        goto done;
done:
    unclip__free(rgb);
    unclip__free(resized);
    return st;
}
