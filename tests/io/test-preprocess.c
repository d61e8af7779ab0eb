/* CLIP image preprocessing (engine/io/preprocess.h) against goldens/vision_encoder.safetensors:
 * for each test image i{k}, the Pillow bicubic resize (i{k}_resized_u8_chw) and the centre crop
 * (i{k}_cropped_u8_chw) to at most 1 level (exact expected), and pixel_values by relative L2
 * <= 1e-4. The configuration is the golden variations model's preprocessor_config.json.
 * RGBA and grey inputs, a padded stride, a 1x1 image and config refusals are checked too. */
#include "core/alloc.h"
#include "io/json.h"
#include "io/preprocess.h"
#include "io/safetensors.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct unclip_st_file *goldens;
static struct unclip_preprocess_config cfg;

/* A U8 golden tensor with the expected shape; NULL (after a failed check) otherwise. */
static const uint8_t *
golden_u8(const char *name, int32_t ndim, const int64_t *shape)
{
    const struct unclip_st_tensor *t = unclip__st_find(goldens, name);
    TU_CHECK(t != NULL, "golden tensor %s missing", name);
    if (!t)
        return NULL;
    bool ok = t->dtype == UNCLIP_DT_U8 && t->ndim == ndim;
    for (int32_t d = 0; ok && d < ndim; d++)
        ok = t->shape[d] == shape[d];
    char a[64], b[64];
    TU_CHECK(ok, "%s: %s %s, expected U8 %s", name, unclip__dtype_name(t->dtype),
             unclip__st_shape_str(t->ndim, t->shape, a, sizeof a),
             unclip__st_shape_str(ndim, shape, b, sizeof b));
    return ok ? t->data : NULL; /* bytes: no alignment concern */
}

/* Compares packed HWC RGB with a CHW golden; returns the max level difference. */
static int
compare_hwc_chw(const uint8_t *hwc, const uint8_t *chw, int32_t w, int32_t h, int64_t *exact)
{
    int worst = 0;
    *exact = 0;
    for (int c = 0; c < 3; c++)
        for (int32_t y = 0; y < h; y++)
            for (int32_t x = 0; x < w; x++) {
                int d = abs((int)hwc[((int64_t)y * w + x) * 3 + c] -
                            (int)chw[((int64_t)c * h + y) * w + x]);
                *exact += d == 0;
                if (d > worst)
                    worst = d;
            }
    return worst;
}

static void
check_image(int k)
{
    char name[64];
    struct unclip_err err = {0};
    snprintf(name, sizeof name, "i%d_source_rgb_u8", k);
    const struct unclip_st_tensor *src = unclip__st_find(goldens, name);
    TU_CHECK(src && src->dtype == UNCLIP_DT_U8 && src->ndim == 3 && src->shape[2] == 3,
             "%s missing or not (H, W, 3) U8", name);
    if (!src || src->ndim != 3 || src->shape[2] != 3)
        return;
    const int32_t h = (int32_t)src->shape[0], w = (int32_t)src->shape[1];
    const uint8_t *rgb = src->data;

    int32_t rw, rh;
    unclip__preprocess_resized_size(cfg.shortest_edge, w, h, &rw, &rh);
    snprintf(name, sizeof name, "i%d_resized_u8_chw", k);
    const uint8_t *want_resized = golden_u8(name, 3, (int64_t[]){3, rh, rw});
    uint8_t *resized = malloc((size_t)rw * rh * 3);
    unclip_status st = unclip__resize_bicubic_u8(rgb, w, h, 3, resized, rw, rh, &err);
    TU_CHECK(st == UNCLIP_OK, "i%d resize: %s", k, err.msg);
    if (want_resized && st == UNCLIP_OK) {
        int64_t exact;
        int worst = compare_hwc_chw(resized, want_resized, rw, rh, &exact);
        printf("  i%d %3dx%-3d -> %3dx%-3d resized: max %d level(s), exact %lld/%lld\n", k, w, h,
               rw, rh, worst, (long long)exact, (long long)rw * rh * 3);
        TU_CHECK(worst <= 1, "i%d resized: %d levels off", k, worst);
    }

    const int32_t ch = cfg.crop_height, cw = cfg.crop_width;
    snprintf(name, sizeof name, "i%d_cropped_u8_chw", k);
    const uint8_t *want_cropped = golden_u8(name, 3, (int64_t[]){3, ch, cw});
    if (want_cropped && st == UNCLIP_OK) {
        /* The crop of our resized image, as bytes. */
        uint8_t *crop = malloc((size_t)cw * ch * 3);
        const int32_t top = (rh - ch) / 2, left = (rw - cw) / 2;
        for (int32_t y = 0; y < ch; y++)
            memcpy(crop + (int64_t)y * cw * 3, resized + ((int64_t)(top + y) * rw + left) * 3,
                   (size_t)cw * 3);
        int64_t exact;
        int worst = compare_hwc_chw(crop, want_cropped, cw, ch, &exact);
        printf("  i%d cropped: max %d level(s), exact %lld/%lld\n", k, worst, (long long)exact,
               (long long)cw * ch * 3);
        TU_CHECK(worst <= 1, "i%d cropped: %d levels off", k, worst);
        free(crop);
    }

    /* The whole preprocessing from the RGB source. */
    snprintf(name, sizeof name, "i%d_pixel_values", k);
    const struct unclip_st_tensor *pv = unclip__st_find(goldens, name);
    const int64_t n = 3 * (int64_t)ch * cw;
    TU_CHECK(pv && pv->numel == n, "%s missing or wrong size", name);
    float *want = malloc((size_t)n * sizeof(float));
    float *got = malloc((size_t)n * sizeof(float));
    if (pv && pv->numel == n && unclip__st_to_f32(pv, want, &err) == UNCLIP_OK) {
        struct unclip_image img = {w, h, 3, w * 3, (uint8_t *)rgb};
        st = unclip__preprocess_clip(&cfg, &img, got, &err);
        TU_CHECK(st == UNCLIP_OK, "i%d preprocess: %s", k, err.msg);
        if (st == UNCLIP_OK) {
            double rel = tu_rel_l2(got, want, n);
            int64_t exact = 0;
            for (int64_t i = 0; i < n; i++)
                exact += memcmp(&got[i], &want[i], 4) == 0;
            printf("  i%d pixel_values: rel L2 %.3g, max|diff| %.3g, bit-exact %lld/%lld\n", k,
                   rel, tu_max_abs(got, want, n), (long long)exact, (long long)n);
            TU_CHECK(rel <= 1e-4, "i%d pixel_values: relative L2 %g > 1e-4", k, rel);
        }

        /* The same image with an alpha channel (varying, including 0) and a padded stride:
         * convert("RGB") drops alpha, so the result must be identical. */
        const int32_t stride = w * 4 + 5;
        uint8_t *rgba = malloc((size_t)stride * h);
        memset(rgba, 0xAB, (size_t)stride * h);
        for (int32_t y = 0; y < h; y++)
            for (int32_t x = 0; x < w; x++) {
                memcpy(rgba + (int64_t)y * stride + x * 4, rgb + ((int64_t)y * w + x) * 3, 3);
                rgba[(int64_t)y * stride + x * 4 + 3] = (uint8_t)((x * 37 + y * 11) & 0xFF);
            }
        float *got4 = malloc((size_t)n * sizeof(float));
        struct unclip_image img4 = {w, h, 4, stride, rgba};
        st = unclip__preprocess_clip(&cfg, &img4, got4, &err);
        TU_CHECK(st == UNCLIP_OK && memcmp(got4, got, (size_t)n * sizeof(float)) == 0,
                 "i%d RGBA input must give the RGB result (alpha dropped): %s", k, err.msg);
        free(got4);
        free(rgba);
    }
    free(want);
    free(got);
    free(resized);
}

/* Grey input is replicated into R, G and B. */
static void
check_grey_and_tiny(void)
{
    struct unclip_err err = {0};
    const int32_t w = 37, h = 23;
    struct tu_rng r;
    tu_rng_seed(&r, 5);
    uint8_t grey[37 * 23], rgb[37 * 23 * 3];
    for (int i = 0; i < w * h; i++) {
        grey[i] = (uint8_t)(tu_rng_u64(&r) & 0xFF);
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = grey[i];
    }
    const int64_t n = 3 * (int64_t)cfg.crop_height * cfg.crop_width;
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    struct unclip_image gi = {w, h, 1, w, grey}, ci = {w, h, 3, 3 * w, rgb};
    unclip_status s1 = unclip__preprocess_clip(&cfg, &gi, a, &err);
    unclip_status s2 = unclip__preprocess_clip(&cfg, &ci, b, &err);
    TU_CHECK(s1 == UNCLIP_OK && s2 == UNCLIP_OK &&
                 memcmp(a, b, (size_t)n * sizeof(float)) == 0,
             "grey input must equal its RGB replication: %s", err.msg);

    /* 1x1: every tap set is that one pixel with weight 2^22, so the output is constant and
     * equal to the normalised pixel. */
    uint8_t px[4] = {200, 17, 99, 0};
    struct unclip_image one = {1, 1, 4, 4, px};
    unclip_status st = unclip__preprocess_clip(&cfg, &one, a, &err);
    TU_CHECK(st == UNCLIP_OK, "1x1: %s", err.msg);
    if (st == UNCLIP_OK) {
        int bad = 0;
        const int64_t plane = (int64_t)cfg.crop_height * cfg.crop_width;
        for (int c = 0; c < 3; c++) {
            float want = ((float)(px[c] * cfg.rescale_factor) - cfg.mean[c]) / cfg.std[c];
            for (int64_t i = 0; i < plane; i++)
                bad += a[c * plane + i] != want;
        }
        TU_CHECK(bad == 0, "1x1: %d values differ from the normalised pixel", bad);
    }

    /* Sizes: shortest edge 64 keeps the aspect ratio and truncates the long edge. */
    int32_t rw, rh;
    unclip__preprocess_resized_size(64, 96, 80, &rw, &rh);
    TU_CHECK(rw == 76 && rh == 64, "96x80 -> %dx%d, want 76x64", rw, rh);
    unclip__preprocess_resized_size(64, 50, 120, &rw, &rh);
    TU_CHECK(rw == 64 && rh == 153, "50x120 -> %dx%d, want 64x153", rw, rh);
    unclip__preprocess_resized_size(224, 1, 1, &rw, &rh);
    TU_CHECK(rw == 224 && rh == 224, "1x1 -> %dx%d", rw, rh);

    /* Bad images are refused with a message, not a crash. */
    struct unclip_image bad_img = {0, 5, 3, 0, px};
    TU_CHECK(unclip__preprocess_clip(&cfg, &bad_img, b, &err) == UNCLIP_E_ARG && err.msg[0],
             "0-width image must be refused");
    struct unclip_image bad_stride = {4, 1, 3, 11, px};
    TU_CHECK(unclip__preprocess_clip(&cfg, &bad_stride, b, &err) == UNCLIP_E_ARG,
             "stride < width * channels must be refused");
    struct unclip_image bad_ch = {1, 1, 5, 5, px};
    TU_CHECK(unclip__preprocess_clip(&cfg, &bad_ch, b, &err) == UNCLIP_E_ARG,
             "5 channels must be refused");

    /* Every allocation failure gives a clean UNCLIP_E_NOMEM (a 37x23 grey image resized on
     * both axes allocates several buffers). */
    int nomem = 0, k;
    for (k = 1; k < 20; k++) {
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, (uint64_t)k);
        unclip_status st2 = unclip__preprocess_clip(&cfg, &gi, b, &err);
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
        if (st2 == UNCLIP_OK)
            break;
        nomem += st2 == UNCLIP_E_NOMEM && err.msg[0];
    }
    TU_CHECK(k > 4 && nomem == k - 1, "preprocess under failing allocations: %d/%d clean",
             nomem, k - 1);
    free(a);
    free(b);
}

static void
check_config_docs(void)
{
    struct unclip_err err = {0};
    struct {
        const char *text;
        unclip_status want;
        const char *key;
    } docs[] = {
        {"{}", UNCLIP_OK, NULL},
        {"{\"resample\": 2}", UNCLIP_E_MODEL, "resample"},
        {"{\"do_center_crop\": false}", UNCLIP_E_MODEL, "do_center_crop"},
        {"{\"do_convert_rgb\": false}", UNCLIP_E_MODEL, "do_convert_rgb"},
        {"{\"size\": {\"height\": 224, \"width\": 224}}", UNCLIP_E_MODEL, "shortest_edge"},
        {"{\"size\": {\"shortest_edge\": 64}}", UNCLIP_E_MODEL, "crop_size"},
        {"{\"image_mean\": [0.5, 0.5]}", UNCLIP_E_FORMAT, "image_mean"},
        {"{\"image_std\": [0.5, 0.0, 0.5]}", UNCLIP_E_FORMAT, "image_std"},
        {"{\"size\": {\"shortest_edge\": 0}}", UNCLIP_E_FORMAT, "shortest_edge"},
    };
    char path[] = "/tmp/unclip-test-preprocess-XXXXXX";
    int fd = mkstemp(path);
    TU_CHECK(fd >= 0, "mkstemp");
    if (fd < 0)
        return;
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(docs[i].text, f);
        fclose(f);
        struct unclip_preprocess_config c;
        err.msg[0] = '\0';
        unclip_status st =
            unclip__preprocess_config_load(path, "fe/preprocessor_config.json", &c, &err);
        TU_CHECK(st == docs[i].want, "%s: status %d, want %d (%s)", docs[i].text, st,
                 docs[i].want, err.msg);
        if (docs[i].key)
            TU_CHECK(strstr(err.msg, docs[i].key) && strstr(err.msg, "fe/preprocessor_config"),
                     "%s: message '%s' must name the file and key", docs[i].text, err.msg);
        if (i == 0 && st == UNCLIP_OK)
            TU_CHECK(c.shortest_edge == 224 && c.crop_width == 224 && c.crop_height == 224 &&
                         c.do_rescale && c.do_normalize && c.mean[0] == 0.48145466f &&
                         c.std[2] == 0.27577711f,
                     "{}: CLIPImageProcessor defaults expected");
    }
    remove(path);
    close(fd);
}

int
main(void)
{
    struct unclip_err err = {0};
    const char *cfg_path =
        tu_golden_path("models/tiny-karlo-variations/feature_extractor/preprocessor_config.json");
    if (unclip__preprocess_config_load(cfg_path, "feature_extractor/preprocessor_config.json",
                                       &cfg, &err) != UNCLIP_OK) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    TU_CHECK(cfg.shortest_edge == 64 && cfg.crop_height == 64 && cfg.crop_width == 64 &&
                 fabs(cfg.rescale_factor - 1.0 / 255.0) < 1e-18 && cfg.std[1] == 0.26130258f,
             "golden preprocessor_config.json read wrongly");
    if (unclip__st_open(tu_golden_path("goldens/vision_encoder.safetensors"), &goldens, &err) !=
        UNCLIP_OK) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    for (int k = 0; k < 4; k++)
        check_image(k);
    check_grey_and_tiny();
    check_config_docs();
    unclip__st_close(goldens);
    return tu_summary("preprocess");
}
