/* Op cases: elementwise ops (unary, binary, lerp, copy/concat, embedding). */
#include "ophelp.h"

#include "ops/op-util.h"

#include <stdlib.h>
#include <string.h>

/* ---- elementwise ---- */

static void
run_unary(struct ot_ctx *c, const int64_t *d)
{
    static const enum unclip_act acts[] = {UNCLIP_ACT_NONE, UNCLIP_ACT_SILU, UNCLIP_ACT_GELU,
                                           UNCLIP_ACT_QUICK_GELU, UNCLIP_ACT_CLAMP};
    static const char *names[] = {"none", "silu", "gelu", "quick_gelu", "clamp"};
    int64_t shape[3] = {d[0], d[1], d[2]};
    float *hx;
    struct unclip_tensor *x = ot_input(c, UNCLIP_DT_F32, 3, shape, 2.0f, &hx);
    int64_t n = d[0] * d[1] * d[2];
    for (int a = 0; a < 5; a++) {
        struct unclip_tensor *y = ot_output(c, 3, shape);
        float *ref = ot_scratch(c, n);
        float alpha = 1.25f, beta = -0.5f;
        unclip_ref_unary(hx, n, acts[a], alpha, beta, -1.0f, 1.0f, ref);
        if (ot_ok(c, unclip__op_unary(c->vk, x, acts[a], alpha, beta, -1.0f, 1.0f, y)))
            ot_compare(c, names[a], y, ref, TOL_F32);
    }
}

static void
run_binary(struct ot_ctx *c, const int64_t *d)
{
    /* y [d0, d1, d2, d3]; b broadcasts in two patterns: per-channel [d1, 1, 1] and [d0, d1, 1, 1]
     * (bias over spatial dims, time embedding per sample), plus the same-shape case. */
    int64_t ys[4] = {d[0], d[1], d[2], d[3]};
    int64_t bsh[3][4] = {{d[0], d[1], d[2], d[3]}, {d[1], 1, 1, 0}, {d[0], d[1], 1, 1}};
    int bnd[3] = {4, 3, 4};
    float *ha;
    struct unclip_tensor *a = ot_input(c, UNCLIP_DT_F32, 4, ys, 1.0f, &ha);
    for (int p = 0; p < 3; p++) {
        float *hb;
        struct unclip_tensor *b = ot_input(c, UNCLIP_DT_F32, bnd[p], bsh[p], 1.0f, &hb);
        for (int op = 0; op < 3; op++) {
            struct unclip_tensor *y = ot_output(c, 4, ys);
            float *ref = ot_scratch(c, unclip__tensor_numel(y));
            unclip_ref_binary((enum unclip_binop)op, ha, 4, ys, hb, bnd[p], bsh[p], ref, 4, ys);
            char label[64];
            snprintf(label, sizeof label, "op%d bcast%d", op, p);
            if (ot_ok(c, unclip__op_binary(c->vk, (enum unclip_binop)op, a, b, y)))
                ot_compare(c, label, y, ref, TOL_EXACT);
        }
    }
}

static void
run_lerp(struct ot_ctx *c, const int64_t *d)
{
    int64_t s[2] = {d[0], d[1]};
    float *ha, *hb;
    struct unclip_tensor *a = ot_input(c, UNCLIP_DT_F32, 2, s, 1.0f, &ha);
    struct unclip_tensor *b = ot_input(c, UNCLIP_DT_F32, 2, s, 1.0f, &hb);
    struct unclip_tensor *y = ot_output(c, 2, s);
    float *ref = ot_scratch(c, d[0] * d[1]);
    unclip_ref_lerp(ha, hb, d[0] * d[1], 8.0f, ref);
    if (ot_ok(c, unclip__op_lerp(c->vk, a, b, 8.0f, y)))
        ot_compare(c, "scale 8", y, ref, TOL_F32);
}

static void
run_copy_concat(struct ot_ctx *c, const int64_t *d)
{
    /* concat along dim 1 of [d0, d1, d3] and [d0, d2, d3] */
    int64_t sa[3] = {d[0], d[1], d[3]}, sb[3] = {d[0], d[2], d[3]}, sy[3] = {d[0], d[1] + d[2], d[3]};
    float *ha, *hb;
    struct unclip_tensor *a = ot_input(c, UNCLIP_DT_F32, 3, sa, 1.0f, &ha);
    struct unclip_tensor *b = ot_input(c, UNCLIP_DT_F32, 3, sb, 1.0f, &hb);
    struct unclip_tensor *y = ot_output(c, 3, sy);
    float *ref = ot_scratch(c, sy[0] * sy[1] * sy[2]);
    for (int64_t i = 0; i < d[0]; i++) {
        memcpy(ref + i * sy[1] * d[3], ha + i * d[1] * d[3], (size_t)(d[1] * d[3]) * 4);
        memcpy(ref + i * sy[1] * d[3] + d[1] * d[3], hb + i * d[2] * d[3], (size_t)(d[2] * d[3]) * 4);
    }
    if (ot_ok(c, unclip__op_concat(c->vk, a, b, 1, y)))
        ot_compare(c, "concat dim1", y, ref, 0.0);

    /* transpose [d0, d1, d3] -> [d0, d3, d1] through strides */
    int64_t st[3] = {d[0], d[3], d[1]};
    struct unclip_tensor *t = ot_output(c, 3, st);
    struct unclip_copy_desc cd = {
        .shape = {1, d[0], d[3], d[1]},
        .src_stride = {0, d[1] * d[3], 1, d[3]},
        .dst_stride = {0, d[3] * d[1], d[1], 1},
    };
    float *rt = ot_scratch(c, d[0] * d[1] * d[3]);
    unclip_ref_copy(ha, rt, &cd);
    if (ot_ok(c, unclip__op_copy(c->vk, a, t, &cd)))
        ot_compare(c, "transpose", t, rt, 0.0);
}

static void
run_embedding(struct ot_ctx *c, const int64_t *d)
{
    for (int f16 = 0; f16 < 2; f16++) {
        int64_t ts[2] = {d[0], d[1]};
        float *ht;
        struct unclip_tensor *tab =
            ot_input(c, f16 ? UNCLIP_DT_F16 : UNCLIP_DT_F32, 2, ts, 1.0f, &ht);
        int32_t n_ids = (int32_t)d[2];
        int32_t *ids = malloc((size_t)n_ids * sizeof *ids);
        for (int32_t i = 0; i < n_ids; i++)
            ids[i] = (int32_t)(tu_rng_u64(&c->rng) % (uint64_t)d[0]);
        ids[n_ids - 1] = (int32_t)d[0] - 1; /* the last row, for the bound */
        int64_t ys[2] = {n_ids, d[1]};
        struct unclip_tensor *y = ot_output(c, 2, ys);
        float *ref = ot_scratch(c, n_ids * d[1]);
        unclip_ref_embedding(ht, d[1], ids, n_ids, ref);
        if (ot_ok(c, unclip__op_embedding(c->vk, tab, ids, n_ids, y)))
            ot_compare(c, f16 ? "f16 table" : "f32 table", y, ref, 0.0);
        free(ids);
    }
}


/* ---- split paths ----
 * Ops split tensors larger than one binding (op-util.h). These cases lower the binding limit
 * through the test hook so that small, odd-sized tensors take the split path, compare with
 * the same references, and check that the op really ran in several dispatches. */

/* d[5]: the binding limit in bytes */
static void
split_unary(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, (uint64_t)d[5], run_unary, 5 * 4);
}

static void
split_binary(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, (uint64_t)d[5], run_binary, 9 * 4);
}

static void
split_lerp(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, (uint64_t)d[5], run_lerp, 4);
}

static void
split_copy(struct ot_ctx *c, const int64_t *d)
{
    ot_with_bind_limit(c, d, (uint64_t)d[5], run_copy_concat, 3 * 2);
}

const struct op_case ot_cases_elementwise[] = {
    {"unary", run_unary, {7, 23, 81}},
    {"unary", run_unary, {1, 77, 1280}},
    {"binary", run_binary, {2, 23, 7, 81}},
    {"binary", run_binary, {1, 320, 7, 7}},
    {"lerp", run_lerp, {77, 1280}},
    {"copy", run_copy_concat, {2, 23, 7, 81}},
    {"copy", run_copy_concat, {3, 77, 4, 320}},
    {"embedding", run_embedding, {1281, 81, 77}},
    {"embedding", run_embedding, {7, 320, 23}},
    {"split_unary", split_unary, {3, 37, 101, 0, 0, 4096}},
    {"split_binary", split_binary, {2, 23, 7, 81, 0, 8192}},
    {"split_binary", split_binary, {1, 37, 11, 13, 0, 1024}},
    {"split_lerp", split_lerp, {77, 1280, 0, 0, 0, 4096}},
    {"split_copy", split_copy, {2, 23, 7, 81, 0, 8192}},
    {"split_copy", split_copy, {3, 77, 4, 31, 0, 4096}},
    {NULL, NULL, {0}},
};

