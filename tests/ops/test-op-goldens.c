/* Resample and slerp ops against tensors computed by the reference implementation
 * (goldens/README.md): the 4x antialiased bicubic upscale before super-resolution
 * (interpolate_bicubic_aa.safetensors: random input and a ramp; super_res_unets.safetensors:
 * image_small -> image_upscaled) and the slerp of the e2e slerp run
 * (slerp(i0_image_embeds, i2_image_embeds, 0.5) = that run's image_embeddings).
 * Tolerance: relative L2 <= 1e-4 (README section 8, module outputs). */
#include "io/safetensors.h"
#include "ops/ops.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define TOL_REL_L2 1e-4

static struct unclip_vk *vk;

/* Opens a golden file; NULL (and a counted failure) when it cannot be read. */
static struct unclip_st_file *
open_golden(const char *rel)
{
    struct unclip_err err = {0};
    struct unclip_st_file *f = NULL;
    unclip_status st = unclip__st_open(tu_golden_path(rel), &f, &err);
    TU_CHECK(st == UNCLIP_OK, "cannot open %s: %s", tu_golden_path(rel), err.msg);
    return st == UNCLIP_OK ? f : NULL;
}

/* Tensor `name` of f as floats (malloc'd; *ndim/shape filled), NULL when missing. */
static float *
load(struct unclip_st_file *f, const char *name, int32_t *ndim, int64_t *shape)
{
    const struct unclip_st_tensor *t = unclip__st_find(f, name);
    TU_CHECK(t != NULL, "%s: no tensor '%s'", unclip__st_path(f), name);
    if (!t)
        return NULL;
    TU_CHECK(t->ndim <= UNCLIP_MAX_DIMS, "%s: '%s' has %d dims", unclip__st_path(f), name,
             (int)t->ndim);
    if (t->ndim > UNCLIP_MAX_DIMS)
        return NULL;
    float *v = malloc((size_t)t->numel * sizeof *v);
    struct unclip_err err = {0};
    if (unclip__st_to_f32(t, v, &err) != UNCLIP_OK) {
        TU_CHECK(0, "%s", err.msg);
        free(v);
        return NULL;
    }
    *ndim = t->ndim;
    memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
    return v;
}

static bool
ok(unclip_status st, const char *what)
{
    TU_CHECK(st == UNCLIP_OK, "%s: %s: %s", what, unclip_status_str(st), unclip__vk_err(vk)->msg);
    return st == UNCLIP_OK;
}

/* Uploads host data into a new tensor (t must be released by the caller). */
static bool
upload(const float *v, int32_t ndim, const int64_t *shape, struct unclip_tensor *t)
{
    return ok(unclip__tensor_new(vk, UNCLIP_DT_F32, ndim, shape, t), "tensor_new") &&
           ok(unclip__tensor_upload_f32(vk, t, v), "upload");
}

/* Downloads y and compares with want by relative L2. */
static void
compare(const char *label, const struct unclip_tensor *y, const float *want)
{
    int64_t n = unclip__tensor_numel(y);
    float *got = malloc((size_t)n * sizeof *got);
    if (ok(unclip__tensor_download_f32(vk, y, got), "download")) {
        double rel = tu_rel_l2(got, want, n);
        TU_CHECK(rel <= TOL_REL_L2, "%s: relative L2 %.3e > %.0e (max abs %.3e)", label, rel,
                 TOL_REL_L2, tu_max_abs(got, want, n));
        printf("  %-52s n=%-7lld rel L2 %.2e  max abs %.2e\n", label, (long long)n, rel,
               tu_max_abs(got, want, n));
    }
    free(got);
}

static void
check_upscale(const char *file, const char *in_name, const char *out_name)
{
    struct unclip_st_file *f = open_golden(file);
    if (!f)
        return;
    int32_t ndx = 0, ndy = 0;
    int64_t sx[UNCLIP_ST_MAX_DIMS], sy[UNCLIP_ST_MAX_DIMS];
    float *hx = load(f, in_name, &ndx, sx);
    float *hy = load(f, out_name, &ndy, sy);
    struct unclip_tensor x = {0}, y = {0};
    if (hx && hy && ndx == 4 && ndy == 4 && upload(hx, 4, sx, &x) &&
        ok(unclip__tensor_new(vk, UNCLIP_DT_F32, 4, sy, &y), "tensor_new") &&
        ok(unclip__op_resize_bicubic_aa(vk, &x, &y), "resize_bicubic_aa")) {
        char label[160];
        snprintf(label, sizeof label, "%s: %s -> %s", file + strlen("goldens/"), in_name,
                 out_name);
        compare(label, &y, hy);
    } else {
        TU_CHECK(!(hx && hy) || (ndx == 4 && ndy == 4), "%s: %s / %s are not 4-D", file,
                 in_name, out_name);
    }
    unclip__tensor_free(&x);
    unclip__tensor_free(&y);
    free(hx);
    free(hy);
    unclip__st_close(f);
}

static void
check_slerp(void)
{
    struct unclip_st_file *ve = open_golden("goldens/vision_encoder.safetensors");
    struct unclip_st_file *run =
        open_golden("goldens/e2e_var_embeds_slerp_seed601_small.safetensors");
    if (!ve || !run) {
        unclip__st_close(ve);
        unclip__st_close(run);
        return;
    }
    int32_t nda, ndb, ndw;
    int64_t sa[UNCLIP_ST_MAX_DIMS], sb[UNCLIP_ST_MAX_DIMS], sw[UNCLIP_ST_MAX_DIMS];
    float *ha = load(ve, "i0_image_embeds", &nda, sa);
    float *hb = load(ve, "i2_image_embeds", &ndb, sb);
    float *hw = load(run, "image_embeddings", &ndw, sw);
    struct unclip_tensor a = {0}, b = {0}, y = {0};
    if (ha && hb && hw && nda == 2 && ndb == 2 && ndw == 2 && upload(ha, 2, sa, &a) &&
        upload(hb, 2, sb, &b) && ok(unclip__tensor_new(vk, UNCLIP_DT_F32, 2, sw, &y), "new") &&
        ok(unclip__op_slerp(vk, &a, &b, 0.5f, &y), "slerp"))
        compare("e2e_var_embeds_slerp: slerp(i0, i2, 0.5)", &y, hw);
    unclip__tensor_free(&a);
    unclip__tensor_free(&b);
    unclip__tensor_free(&y);
    free(ha);
    free(hb);
    free(hw);
    unclip__st_close(ve);
    unclip__st_close(run);
}

int
main(void)
{
    struct unclip_err err = {0};
    struct unclip_vk_params p = unclip__vk_params_default();
    if (getenv("UNCLIP_VALIDATION"))
        p.validation = true;
    if (unclip__vk_new(&p, &vk, &err) != UNCLIP_OK) {
        printf("FAIL: no Vulkan context: %s\n", err.msg);
        return 1;
    }
    check_upscale("goldens/interpolate_bicubic_aa.safetensors", "in", "bicubic_antialias_out");
    check_upscale("goldens/interpolate_bicubic_aa.safetensors", "ramp_in",
                  "ramp_bicubic_antialias_out");
    check_upscale("goldens/super_res_unets.safetensors", "image_small", "image_upscaled");
    check_slerp();
    unclip__vk_free(vk);
    return tu_summary("test-op-goldens");
}
