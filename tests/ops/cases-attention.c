/* Op cases: fused attention against the double reference, in the layouts the models use:
 * separate q/k/v, a packed qkv projection, CLIP's causal self-attention, the prior's causal
 * attention with a key bias on padded text tokens, and the decoder's cross attention over
 * [encoder tokens; spatial tokens] with the bias on the encoder part. */
#include "ophelp.h"

#include <math.h>
#include <string.h>

enum {
    A_CAUSAL = 1,  /* causal mask */
    A_BIAS = 2,    /* key bias on k1 (padding mask) */
    A_TWO = 4,     /* a second key/value source of L2 rows */
    A_PACKED = 8,  /* q, k1, v1 in one [B, L, 3 * H * D] tensor (self attention) */
    A_OFFSET = 16, /* separate tensors with leading padding and a loose batch stride */
    A_DECODER = 32, /* SimpleCrossAttn: q, k2, v2 packed [B, Lq, 3 * H * D] from the spatial
                       tokens (L2 = Lq), k1, v1 packed [B, L1, 2 * H * D] from the encoder */
    A_HEADMAJOR = 64, /* with A_DECODER: k2, v2 copied head-major (unclip__attn_head_major)
                         first, as the UNet does for long maps; the reference reads the
                         packed rows */
    A_HSTRIDE = 128,  /* separate tensors laid out [B, H, L, D] with 3 spare elements after
                         each head (head_stride L * D + 3: the scalar loads) */
    A_HSTRIDE4 = 256, /* the same with 4 spare elements (vec4 loads) */
};

/* d: B, H, D, Lq, L1, L2 (L2 used with A_TWO); flags are the case's. */
static void
run_attn(struct ot_ctx *c, const int64_t *d, int flags, float q_scale)
{
    int64_t bsz = d[0], heads = d[1], hd = d[2], lq = d[3], l1 = d[4];
    int64_t l2 = flags & A_TWO ? d[5] : 0, w = heads * hd;
    struct unclip_attn_desc a = {
        .batch = (int32_t)bsz, .n_heads = (int32_t)heads, .head_dim = (int32_t)hd,
        .scale = (float)(1.0 / sqrt((double)hd)), .causal = (flags & A_CAUSAL) != 0,
    };
    struct unclip_ref_attn r = {.batch = bsz, .n_heads = heads, .head_dim = hd,
                                .scale = a.scale, .causal = a.causal};
    if (flags & A_DECODER) {
        int64_t ss[3] = {bsz, lq, 3 * w}, es[3] = {bsz, l1, 2 * w};
        float *hs, *he;
        struct unclip_tensor *sp = ot_input(c, UNCLIP_DT_F32, 3, ss, q_scale, &hs);
        struct unclip_tensor *en = ot_input(c, UNCLIP_DT_F32, 3, es, 1.0f, &he);
        l2 = lq;
        a.q = (struct unclip_seq){sp, 0, 3 * w, lq * 3 * w, (int32_t)lq, 0};
        a.k2 = (struct unclip_seq){sp, w, 3 * w, lq * 3 * w, (int32_t)lq, 0};
        a.v2 = (struct unclip_seq){sp, 2 * w, 3 * w, lq * 3 * w, (int32_t)lq, 0};
        a.k1 = (struct unclip_seq){en, 0, 2 * w, l1 * 2 * w, (int32_t)l1, 0};
        a.v1 = (struct unclip_seq){en, w, 2 * w, l1 * 2 * w, (int32_t)l1, 0};
        r.q = (struct unclip_ref_seq){hs, 0, 3 * w, lq * 3 * w, lq, 0};
        r.k2 = (struct unclip_ref_seq){hs, w, 3 * w, lq * 3 * w, lq, 0};
        r.v2 = (struct unclip_ref_seq){hs, 2 * w, 3 * w, lq * 3 * w, lq, 0};
        r.k1 = (struct unclip_ref_seq){he, 0, 2 * w, l1 * 2 * w, l1, 0};
        r.v1 = (struct unclip_ref_seq){he, w, 2 * w, l1 * 2 * w, l1, 0};
        if (flags & A_HEADMAJOR) {
            int64_t hs[1] = {unclip__attn_head_major_numel((int32_t)bsz, (int32_t)heads,
                                                          (int32_t)hd, (int32_t)lq)};
            struct unclip_tensor *scratch = ot_output(c, 1, hs);
            if (!ot_ok(c, unclip__attn_head_major(c->vk, (int32_t)bsz, (int32_t)heads,
                                                  (int32_t)hd, &a.k2, &a.v2, scratch)))
                return;
            TU_CHECK(a.k2.t == scratch && a.v2.head_stride == lq * hd && a.v2.row_stride == hd,
                     "head-major sequences not rewritten");
        }
    } else if (flags & A_PACKED) {
        /* self attention: one projection output holding q | k | v per row */
        int64_t s[3] = {bsz, lq, 3 * w};
        float *h;
        struct unclip_tensor *t = ot_input(c, UNCLIP_DT_F32, 3, s, q_scale, &h);
        struct unclip_seq *seqs[3] = {&a.q, &a.k1, &a.v1};
        struct unclip_ref_seq *rseqs[3] = {&r.q, &r.k1, &r.v1};
        for (int i = 0; i < 3; i++) {
            *seqs[i] = (struct unclip_seq){t, i * w, 3 * w, lq * 3 * w, (int32_t)lq, 0};
            *rseqs[i] = (struct unclip_ref_seq){h, i * w, 3 * w, lq * 3 * w, lq, 0};
        }
    } else if (flags & A_HSTRIDE) {
        int64_t lens[5] = {lq, l1, l1, l2, l2}, spare = flags & A_HSTRIDE4 ? 4 : 3;
        struct unclip_seq *seqs[5] = {&a.q, &a.k1, &a.v1, &a.k2, &a.v2};
        struct unclip_ref_seq *rseqs[5] = {&r.q, &r.k1, &r.v1, &r.k2, &r.v2};
        for (int i = 0; i < (flags & A_TWO ? 5 : 3); i++) {
            int64_t hs = lens[i] * hd + spare, s[2] = {bsz, heads * hs};
            float *h;
            struct unclip_tensor *t =
                ot_input(c, UNCLIP_DT_F32, 2, s, i == 0 ? q_scale : 1.0f, &h);
            *seqs[i] = (struct unclip_seq){t, 0, hd, heads * hs, (int32_t)lens[i], hs};
            *rseqs[i] = (struct unclip_ref_seq){h, 0, hd, heads * hs, lens[i], hs};
        }
    } else {
        int64_t lens[5] = {lq, l1, l1, l2, l2};
        struct unclip_seq *seqs[5] = {&a.q, &a.k1, &a.v1, &a.k2, &a.v2};
        struct unclip_ref_seq *rseqs[5] = {&r.q, &r.k1, &r.v1, &r.k2, &r.v2};
        int n = flags & A_TWO ? 5 : 3;
        for (int i = 0; i < n; i++) {
            /* A_OFFSET: 3 rows of padding in front and 2 spare rows per batch entry */
            int64_t pad = flags & A_OFFSET ? 3 : 0, spare = flags & A_OFFSET ? 2 : 0;
            int64_t bs = (lens[i] + spare) * w;
            int64_t s[2] = {pad + bsz, bs};
            float *h;
            struct unclip_tensor *t =
                ot_input(c, UNCLIP_DT_F32, 2, s, i == 0 ? q_scale : 1.0f, &h);
            *seqs[i] = (struct unclip_seq){t, pad * bs, w, bs, (int32_t)lens[i], 0};
            *rseqs[i] = (struct unclip_ref_seq){h, pad * bs, w, bs, lens[i], 0};
        }
    }
    float *hbias = NULL;
    if (flags & A_BIAS) {
        /* padding mask: batch entry b keeps its first l1 - 3 - 5b keys (at least 1) */
        hbias = ot_scratch(c, bsz * l1);
        for (int64_t b = 0; b < bsz; b++) {
            int64_t keep = l1 - 3 - 5 * b;
            keep = keep < 1 ? 1 : keep;
            for (int64_t j = 0; j < l1; j++)
                hbias[b * l1 + j] = j < keep ? 0.0f : -10000.0f;
        }
        int64_t bs[2] = {bsz, l1};
        a.key_bias = ot_input_from(c, 2, bs, hbias);
        r.key_bias = hbias;
    }
    int64_t os[3] = {bsz, lq, w};
    struct unclip_tensor *out = ot_output(c, 3, os);
    float *ref = ot_scratch(c, bsz * lq * w);
    unclip_ref_attention(&r, ref);
    char label[96];
    snprintf(label, sizeof label, "B%lld H%lld D%lld Lq%lld L%lld+%lld%s%s%s", (long long)bsz,
             (long long)heads, (long long)hd, (long long)lq, (long long)l1, (long long)l2,
             flags & A_CAUSAL ? " causal" : "", flags & A_BIAS ? " bias" : "",
             flags & A_PACKED      ? " packed"
             : flags & A_HEADMAJOR ? " decoder head-major"
             : flags & A_DECODER   ? " decoder"
             : flags & A_HSTRIDE   ? " head stride"
                                   : "");
    if (ot_ok(c, unclip__op_attention(c->vk, &a, out)))
        ot_compare(c, label, out, ref, TOL_ACC);
}

static void run_plain(struct ot_ctx *c, const int64_t *d) { run_attn(c, d, 0, 1.0f); }
static void run_sharp(struct ot_ctx *c, const int64_t *d) { run_attn(c, d, 0, 4.0f); }
static void run_offset(struct ot_ctx *c, const int64_t *d) { run_attn(c, d, A_OFFSET, 1.0f); }
static void run_causal(struct ot_ctx *c, const int64_t *d) { run_attn(c, d, A_CAUSAL, 1.0f); }
static void run_packed(struct ot_ctx *c, const int64_t *d) { run_attn(c, d, A_PACKED, 1.0f); }
static void run_packed_causal(struct ot_ctx *c, const int64_t *d)
{
    run_attn(c, d, A_PACKED | A_CAUSAL, 1.0f);
}
static void run_prior(struct ot_ctx *c, const int64_t *d)
{
    run_attn(c, d, A_CAUSAL | A_BIAS, 1.0f);
}
static void run_decoder(struct ot_ctx *c, const int64_t *d)
{
    run_attn(c, d, A_DECODER | A_BIAS, 1.0f);
}
static void run_decoder_hm(struct ot_ctx *c, const int64_t *d)
{
    run_attn(c, d, A_DECODER | A_BIAS | A_HEADMAJOR, 1.0f);
}
static void run_hstride(struct ot_ctx *c, const int64_t *d)
{
    run_attn(c, d, A_HSTRIDE | A_TWO, 1.0f);
}
static void run_hstride4(struct ot_ctx *c, const int64_t *d)
{
    run_attn(c, d, A_HSTRIDE | A_HSTRIDE4 | A_TWO, 1.0f);
}
static void run_hstride_causal(struct ot_ctx *c, const int64_t *d)
{
    run_attn(c, d, A_HSTRIDE | A_HSTRIDE4 | A_CAUSAL, 1.0f);
}
/* The 4-queries-per-invocation kernels (what GPUs get; lavapipe takes the 8-query ones for
 * head dims up to 64), forced through the test hook. */
static void run_q4(struct ot_ctx *c, const int64_t *d, int flags)
{
    unclip__attn_qpi_override = 4;
    run_attn(c, d, flags, 1.0f);
    unclip__attn_qpi_override = 0;
}
static void run_q4_plain(struct ot_ctx *c, const int64_t *d) { run_q4(c, d, 0); }
static void run_q4_causal(struct ot_ctx *c, const int64_t *d) { run_q4(c, d, A_CAUSAL); }
static void run_q4_decoder(struct ot_ctx *c, const int64_t *d)
{
    run_q4(c, d, A_DECODER | A_BIAS | A_HEADMAJOR);
}
static void run_two_offset(struct ot_ctx *c, const int64_t *d)
{
    run_attn(c, d, A_TWO | A_BIAS | A_OFFSET, 1.0f);
}
static void run_two(struct ot_ctx *c, const int64_t *d) { run_attn(c, d, A_TWO, 2.0f); }
static void run_two_causal(struct ot_ctx *c, const int64_t *d)
{
    run_attn(c, d, A_TWO | A_CAUSAL, 1.0f);
}

/* Bad descriptors come back as statuses with a message, never a crash or a stray dispatch. */
static void
run_attn_errors(struct ot_ctx *c, const int64_t *d)
{
    (void)d;
    int64_t ts[3] = {1, 5, 3 * 8}, os[3] = {1, 5, 8};
    float *ht;
    struct unclip_tensor *t = ot_input(c, UNCLIP_DT_F32, 3, ts, 1.0f, &ht);
    struct unclip_tensor *out = ot_output(c, 3, os);
    struct unclip_attn_desc a = {
        .batch = 1, .n_heads = 1, .head_dim = 8, .scale = 0.35f,
        .q = {t, 0, 24, 120, 5, 0}, .k1 = {t, 8, 24, 120, 5, 0}, .v1 = {t, 16, 24, 120, 5, 0},
    };
    struct unclip_attn_desc bad = a;
    bad.v1.len = 6; /* reaches past the tensor */
    unclip_status st = unclip__op_attention(c->vk, &bad, out);
    TU_CHECK(st == UNCLIP_E_INTERNAL && strstr(unclip__vk_err(c->vk)->msg, "v1"),
             "v1 past the end: %d %s", (int)st, unclip__vk_err(c->vk)->msg);
    bad = a;
    bad.head_dim = 129;
    bad.q.row_stride = bad.k1.row_stride = bad.v1.row_stride = 0;
    st = unclip__op_attention(c->vk, &bad, out);
    TU_CHECK(st == UNCLIP_E_INTERNAL, "head_dim 129: %d", (int)st);
    bad = a;
    bad.v1.len = 4; /* keys and values of different lengths */
    st = unclip__op_attention(c->vk, &bad, out);
    TU_CHECK(st == UNCLIP_E_INTERNAL, "k1/v1 lengths 5/4: %d", (int)st);
    st = unclip__op_attention(c->vk, &a, t); /* out aliases the inputs (and has the wrong size) */
    TU_CHECK(st == UNCLIP_E_INTERNAL, "out aliasing q: %d", (int)st);
    /* the good descriptor still works after the failures */
    struct unclip_ref_attn r = {.batch = 1, .n_heads = 1, .head_dim = 8, .scale = a.scale,
                                .q = {NULL, 0, 24, 120, 5, 0}};
    r.q.data = ht;
    r.k1 = (struct unclip_ref_seq){ht, 8, 24, 120, 5, 0};
    r.v1 = (struct unclip_ref_seq){ht, 16, 24, 120, 5, 0};
    float *ref = ot_scratch(c, 40);
    unclip_ref_attention(&r, ref);
    if (ot_ok(c, unclip__op_attention(c->vk, &a, out)))
        ot_compare(c, "after errors", out, ref, TOL_ACC);
}

const struct op_case ot_cases_attention[] = {
    {"attention", run_plain, {2, 4, 8, 7, 7}},
    {"attention", run_plain, {1, 3, 12, 1, 1}},
    {"attention_sharp", run_sharp, {2, 2, 16, 33, 81}},
    {"attention_offset", run_offset, {2, 3, 12, 19, 5}},
    {"attention_causal", run_causal, {2, 4, 8, 77, 77}},
    {"attention_causal", run_causal, {1, 2, 64, 77, 77}},
    {"attention_causal", run_causal, {1, 2, 16, 600, 600}}, /* several query blocks */
    {"attention_prior", run_prior, {1, 2, 64, 300, 300}},
    {"attention_packed", run_packed, {2, 4, 8, 77, 77}},
    {"attention_packed", run_packed_causal, {1, 3, 16, 81, 81}},
    {"attention_prior", run_prior, {2, 4, 8, 81, 81}},
    {"attention_prior", run_prior, {2, 2, 64, 81, 81}},
    {"attention_decoder", run_decoder, {2, 4, 8, 81, 81}},
    {"attention_decoder", run_decoder, {1, 2, 64, 81, 81}},
    {"attention_decoder", run_decoder, {2, 3, 12, 49, 81}},
    {"attention_two", run_two_offset, {2, 2, 16, 23, 9, 17}},
    {"attention_two", run_two, {1, 2, 32, 9, 4, 13}},
    {"attention_two", run_two_causal, {2, 2, 8, 40, 7, 33}},
    {"attention", run_plain, {1, 2, 64, 257, 257}},
    {"attention", run_plain, {1, 1, 128, 65, 130}},
    {"attention_odd", run_plain, {2, 3, 5, 17, 9}},
    {"attention_odd", run_causal, {1, 2, 37, 70, 70}},
    {"attention", run_plain, {1, 2, 100, 31, 29}},
    {"attention", run_plain, {1, 1, 40, 1105, 1105}},
    /* heads apart in memory: head-major copies (decoder layout, odd sizes, several query
     * blocks) and explicit head strides with scalar (odd spare) and vec4 loads */
    {"attention_headmajor", run_decoder_hm, {2, 3, 12, 49, 81}},
    {"attention_headmajor", run_decoder_hm, {1, 5, 64, 300, 7}},
    {"attention_headmajor", run_decoder_hm, {2, 2, 20, 517, 3}},
    {"attention_hstride", run_hstride, {2, 3, 16, 23, 9, 17}},
    {"attention_hstride", run_hstride4, {1, 4, 32, 70, 13, 70}},
    {"attention_hstride", run_hstride_causal, {2, 2, 8, 40, 40, 0}},
    {"attention_q4", run_q4_plain, {2, 4, 8, 7, 7}},
    {"attention_q4", run_q4_plain, {2, 3, 5, 17, 9}},
    {"attention_q4", run_q4_causal, {1, 2, 16, 600, 600}},
    {"attention_q4", run_q4_decoder, {1, 5, 64, 300, 7}},
    {"attention_q4", run_q4_plain, {1, 2, 40, 1105, 1105}},
    {"attention_errors", run_attn_errors, {0}},
    {NULL, NULL, {0}},
};
