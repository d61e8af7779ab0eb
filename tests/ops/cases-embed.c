/* Op cases: embeddings and vectors (sinusoidal timestep embedding, row-wise slerp). */
#include "ophelp.h"

#include <math.h>
#include <stdlib.h>

/* d = {dim}: every flip / shift combination on timesteps across the schedule. */
static void
run_timestep(struct ot_ctx *c, const int64_t *d)
{
    const float t[] = {999.0f, 0.0f, 1.0f, 437.0f, 500.5f, 6000.0f};
    const int32_t batch = (int32_t)(sizeof t / sizeof t[0]);
    int32_t dim = (int32_t)d[0];
    for (int flip = 0; flip < 2; flip++)
        for (int shift = 0; shift < 2; shift++) {
            if (dim / 2 - shift <= 0)
                continue;
            int64_t ys[2] = {batch, dim};
            struct unclip_tensor *y = ot_output(c, 2, ys);
            float *ref = ot_scratch(c, batch * dim);
            unclip_ref_timestep_embedding(t, batch, dim, flip, (float)shift, 10000.0f, ref);
            char label[64];
            snprintf(label, sizeof label, "dim %d flip %d shift %d", (int)dim, flip, shift);
            if (ot_ok(c, unclip__op_timestep_embedding(c->vk, t, batch, dim, flip, (float)shift,
                                                       10000.0f, y)))
                ot_compare(c, label, y, ref, TOL_EXACT);
        }
}

/* torch's fp32 values at t = 999 (reference/unclip.md 2.1, flip_sin_to_cos, shift 0): an
 * independent check of the formula and of the fp32 argument rounding. */
static void
run_timestep_torch(struct ot_ctx *c, const int64_t *d)
{
    (void)d;
    static const struct {
        int32_t dim;
        float v[7]; /* emb[0..2], emb[half..half+2], emb[dim-1] */
    } tab[] = {
        {320, {0.99965f, 0.802678f, -0.278121f, -0.0264608f, 0.596413f, -0.960546f, 0.105622f}},
        {2048, {0.99965f, -0.899084f, 0.529497f, -0.0264608f, -0.437776f, 0.848312f, 0.100632f}},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        int32_t dim = tab[i].dim, half = dim / 2;
        int64_t ys[2] = {1, dim};
        struct unclip_tensor *y = ot_output(c, 2, ys);
        float t = 999.0f;
        if (!ot_ok(c, unclip__op_timestep_embedding(c->vk, &t, 1, dim, true, 0.0f, 10000.0f, y)))
            continue;
        float *got = ot_scratch(c, dim);
        if (!ot_ok(c, unclip__tensor_download_f32(c->vk, y, got)))
            continue;
        const int32_t at[7] = {0, 1, 2, half, half + 1, half + 2, dim - 1};
        double worst = 0;
        for (int k = 0; k < 7; k++) {
            double e = fabs((double)got[at[k]] - tab[i].v[k]);
            worst = e > worst ? e : worst;
            TU_CHECK(e <= 6e-6, "timestep dim %d: emb[%d] = %.7f, torch %.6f", (int)dim,
                     (int)at[k], (double)got[at[k]], (double)tab[i].v[k]);
        }
        printf("  %-14s dim %-30d max |diff| to torch's printed values %.1e\n", c->case_name,
               (int)dim, worst);
    }
    /* Outside the accurate range of the shader's argument reduction: refused. */
    int64_t ys[2] = {1, 32};
    struct unclip_tensor *y = ot_output(c, 2, ys);
    float big = 1e5f;
    TU_CHECK(unclip__op_timestep_embedding(c->vk, &big, 1, 32, true, 0.0f, 10000.0f, y) ==
                 UNCLIP_E_ARG,
             "timestep 1e5 was not refused");
}

/* d = {rows, dim, special}: rows of random pairs; special = 1 (dim >= 16) also puts in row 1
 * an exactly parallel pair whose fp32 cosine is exactly 1 (a = 0.25 in 16 places, b = 2.5 a:
 * om = 0, so without the lerp fallback the row would be 0/0), in row 2 a nearly parallel
 * pair and (with more than 3 rows) a zero row a in row 3. */
static void
run_slerp(struct ot_ctx *c, const int64_t *d)
{
    int64_t rows = d[0], dim = d[1], s[2] = {d[0], d[1]};
    float *ha = ot_scratch(c, rows * dim), *hb = ot_scratch(c, rows * dim);
    tu_fill_normal(&c->rng, ha, rows * dim, 1.0f);
    tu_fill_normal(&c->rng, hb, rows * dim, 2.0f);
    if (d[2] && rows >= 3 && dim >= 16) {
        for (int64_t k = 0; k < dim; k++) {
            ha[dim + k] = k < 16 ? 0.25f : 0.0f;
            hb[dim + k] = 2.5f * ha[dim + k];
            hb[2 * dim + k] = 1.7f * ha[2 * dim + k] + 1e-4f * tu_rng_normal(&c->rng);
            if (rows > 3)
                ha[3 * dim + k] = 0.0f;
        }
    }
    struct unclip_tensor *a = ot_input_from(c, 2, s, ha);
    struct unclip_tensor *b = ot_input_from(c, 2, s, hb);
    const float ws[] = {0.0f, 1.0f, 0.5f, 0.3f, 0.77f, 1.25f};
    float *ref = ot_scratch(c, rows * dim), *got = ot_scratch(c, rows * dim);
    for (int unit = 0; unit < 2; unit++)
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            struct unclip_tensor *y = ot_output(c, 2, s);
            unclip_ref_slerp(ha, hb, rows, dim, ws[i], unit, ref);
            /* The endpoints are exact: compare with the inputs themselves. */
            const float *want = ws[i] == 0.0f ? ha : ws[i] == 1.0f ? hb : ref;
            char label[64];
            snprintf(label, sizeof label, "%s w %.2f", unit ? "unit" : "raw", (double)ws[i]);
            unclip_status st = unit ? unclip__op_slerp_unit(c->vk, a, b, ws[i], y)
                                    : unclip__op_slerp(c->vk, a, b, ws[i], y);
            if (!ot_ok(c, st))
                continue;
            ot_compare(c, label, y, want, ws[i] == 0.0f || ws[i] == 1.0f ? 0.0 : TOL_EXACT);
            if (!unit || ws[i] == 0.0f || ws[i] == 1.0f)
                continue;
            /* The unit variant's norm moves linearly from |a| to |b| (checked on the device
             * result itself, independently of the reference). */
            if (!ot_ok(c, unclip__tensor_download_f32(c->vk, y, got)))
                continue;
            for (int64_t r = 0; r < rows; r++) {
                double na = 0, nb = 0, ny = 0;
                for (int64_t k = 0; k < dim; k++) {
                    na += (double)ha[r * dim + k] * ha[r * dim + k];
                    nb += (double)hb[r * dim + k] * hb[r * dim + k];
                    ny += (double)got[r * dim + k] * got[r * dim + k];
                }
                double ab = 0;
                for (int64_t k = 0; k < dim; k++)
                    ab += (double)ha[r * dim + k] * hb[r * dim + k];
                double want_n = (1.0 - ws[i]) * sqrt(na) + ws[i] * sqrt(nb);
                /* Skipped: a zero row (plain lerp by design) and opposite rows (no arc). */
                if (na == 0.0 || ab <= -0.999 * sqrt(na * nb))
                    continue;
                TU_CHECK(fabs(sqrt(ny) - want_n) <= 1e-5 * want_n,
                         "slerp_unit row %lld w %.2f: |y| = %.7g, expected %.7g", (long long)r,
                         (double)ws[i], sqrt(ny), want_n);
            }
        }
}

const struct op_case ot_cases_embed[] = {
    {"timestep_embedding", run_timestep, {32}},
    {"timestep_embedding", run_timestep, {320}},
    {"timestep_embedding", run_timestep, {1280}},
    {"timestep_embedding", run_timestep, {7}},
    {"timestep_embedding", run_timestep, {2}},
    {"timestep_torch", run_timestep_torch, {0}},
    {"slerp", run_slerp, {3, 81, 0}},
    {"slerp", run_slerp, {3, 81, 1}},
    {"slerp", run_slerp, {4, 81, 1}},
    {"slerp", run_slerp, {3, 768, 1}},
    {"slerp", run_slerp, {5, 2048, 0}},
    {"slerp", run_slerp, {3, 1, 0}},
    {NULL, NULL, {0}},
};
