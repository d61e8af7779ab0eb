/* Fused multi-head attention (shaders/attention.comp): checks the sequences' addressing
 * against their tensors, picks the head-dim variant and splits the grid so that one
 * dispatch stays within the per-submission work bound. */
#include "ops/ops.h"

#include "ops/op-util.h"

static int64_t
head_stride(const struct unclip_seq *s, int32_t head_dim)
{
    return s->head_stride ? s->head_stride : head_dim;
}

/* Element range a sequence addresses must lie inside its tensor (and in 32-bit indices). */
static unclip_status
check_seq(struct unclip_vk *vk, const char *what, const struct unclip_seq *s, int32_t batch,
          int32_t n_heads, int32_t head_dim)
{
    unclip_status st = unclip__check_tensor(vk, "attention", what, s->t, -1, false);
    if (st != UNCLIP_OK)
        return st;
    if (s->len <= 0 || s->off < 0 || s->row_stride < 0 || s->batch_stride < 0 ||
        s->head_stride < 0)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "attention: %s has length %d, offset %lld, strides %lld/%lld/%lld",
                            what, (int)s->len, (long long)s->off, (long long)s->row_stride,
                            (long long)s->batch_stride, (long long)s->head_stride);
    int64_t last = s->off + (int64_t)(batch - 1) * s->batch_stride +
                   (int64_t)(s->len - 1) * s->row_stride +
                   (int64_t)(n_heads - 1) * head_stride(s, head_dim) + head_dim - 1;
    if (last >= unclip__tensor_numel(s->t))
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "attention: %s reaches element %lld of a tensor of %lld", what,
                            (long long)last, (long long)unclip__tensor_numel(s->t));
    return UNCLIP_OK;
}

static bool
seq_used(const struct unclip_seq *s)
{
    return s->t != NULL && s->len > 0;
}

unclip_status
unclip__op_attention(struct unclip_vk *vk, const struct unclip_attn_desc *d,
                     struct unclip_tensor *out)
{
    struct unclip_err *err = unclip__vk_err(vk);
    if (!d || d->batch <= 0 || d->n_heads <= 0 || d->head_dim <= 0)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "attention: bad batch/heads/head_dim");
    if (d->head_dim > 128)
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "attention: head_dim %d is above the supported 128",
                            (int)d->head_dim);
    int32_t width = d->n_heads * d->head_dim;
    bool two = seq_used(&d->k2);
    unclip_status st;
    const int32_t B = d->batch, H = d->n_heads, D = d->head_dim;
    if ((st = check_seq(vk, "q", &d->q, B, H, D)) || (st = check_seq(vk, "k1", &d->k1, B, H, D)) ||
        (st = check_seq(vk, "v1", &d->v1, B, H, D)))
        return st;
    if (two && ((st = check_seq(vk, "k2", &d->k2, B, H, D)) ||
                (st = check_seq(vk, "v2", &d->v2, B, H, D))))
        return st;
    if (d->v1.len != d->k1.len || (two && d->v2.len != d->k2.len) ||
        (!two && seq_used(&d->v2)))
        return unclip__fail(err, UNCLIP_E_INTERNAL,
                            "attention: key and value lengths differ (%d/%d, %d/%d)",
                            (int)d->k1.len, (int)d->v1.len, (int)d->k2.len, (int)d->v2.len);
    int64_t lq = d->q.len, l1 = d->k1.len, l2 = two ? d->k2.len : 0;
    if (d->key_bias &&
        (st = unclip__check_tensor(vk, "attention", "key_bias", d->key_bias, d->batch * l1,
                                   false)))
        return st;
    if ((st = unclip__check_tensor(vk, "attention", "out", out, d->batch * lq * width, false)))
        return st;
    const struct unclip_tensor *ins[6] = {d->q.t, d->k1.t, d->v1.t, d->k2.t, d->v2.t,
                                          d->key_bias};
    for (int i = 0; i < 6; i++)
        if (ins[i] && ins[i]->buf == out->buf)
            return unclip__fail(err, UNCLIP_E_INTERNAL, "attention: out aliases an input");

    /* Rows are read as vec4s when every key/value row start is a multiple of 4 elements
     * (so is head_dim); otherwise element by element. The variant's head-dim capacity is
     * the smallest that fits. */
    bool vec4 = d->head_dim % 4 == 0;
    const struct unclip_seq *kv[4] = {&d->k1, &d->v1, &d->k2, &d->v2};
    for (int i = 0; i < (two ? 4 : 2); i++)
        vec4 = vec4 && kv[i]->off % 4 == 0 && kv[i]->row_stride % 4 == 0 &&
               kv[i]->batch_stride % 4 == 0 && head_stride(kv[i], D) % 4 == 0;
    /* Queries per invocation (QPI, each using every loaded key/value element): 8 on CPU
     * drivers for head dims up to 64, where reuse of each load is what counts (measured on
     * lavapipe, alternating runs: 1.2-1.3x on Debian 12, 1.4-2.2x on Debian 13 over 4); 4
     * elsewhere (2 above 64), since 8 rows of q and o in registers would spill on a GPU. */
    int qpi = D > 64 ? 2 : 4;
    if (D <= 64 && unclip__vk_info(vk)->type == UNCLIP_DEVICE_CPU)
        qpi = 8;
    if (D <= 64 && (unclip__attn_qpi_override == 4 || unclip__attn_qpi_override == 8))
        qpi = unclip__attn_qpi_override;
    static const int shaders[2][2][4] = {
        /* [q8][vec4][head-dim class 16, 32, 64, 128] */
        {{UNCLIP_SHADER_attention_s16, UNCLIP_SHADER_attention_s32, UNCLIP_SHADER_attention_s64,
          UNCLIP_SHADER_attention_s128},
         {UNCLIP_SHADER_attention_v16, UNCLIP_SHADER_attention_v32, UNCLIP_SHADER_attention_v64,
          UNCLIP_SHADER_attention_v128}},
        {{UNCLIP_SHADER_attention_s16_q8, UNCLIP_SHADER_attention_s32_q8,
          UNCLIP_SHADER_attention_s64_q8, UNCLIP_SHADER_attention_s128},
         {UNCLIP_SHADER_attention_v16_q8, UNCLIP_SHADER_attention_v32_q8,
          UNCLIP_SHADER_attention_v64_q8, UNCLIP_SHADER_attention_v128}},
    };
    int hd_class = D <= 16 ? 0 : D <= 32 ? 1 : D <= 64 ? 2 : 3;
    int shader = shaders[qpi == 8][vec4][hd_class];

    struct {
        uint32_t lq, l1, l2, n_heads, head_dim, flags, z0, qb0;
        float scale_log2;
        uint32_t seq[5][4];
    } pc = {
        (uint32_t)lq, (uint32_t)l1, (uint32_t)l2, (uint32_t)d->n_heads, (uint32_t)d->head_dim,
        (d->causal ? 1u : 0u) | (d->key_bias ? 2u : 0u), 0, 0,
        (float)(d->scale * 1.4426950408889634), {{0}},
    };
    const struct unclip_seq *seqs[5] = {&d->q, &d->k1, &d->v1, &d->k2, &d->v2};
    for (int i = 0; i < 5; i++) {
        const struct unclip_seq *s = i >= 3 && !two ? seqs[1] : seqs[i];
        pc.seq[i][0] = (uint32_t)s->off;
        pc.seq[i][1] = (uint32_t)s->row_stride;
        pc.seq[i][2] = (uint32_t)s->batch_stride;
        pc.seq[i][3] = (uint32_t)head_stride(s, D);
    }
    struct unclip_vk_bind b[7] = {
        unclip__tensor_bind(d->q.t),
        unclip__tensor_bind(d->k1.t),
        unclip__tensor_bind(d->v1.t),
        unclip__tensor_bind(two ? d->k2.t : d->k1.t),
        unclip__tensor_bind(two ? d->v2.t : d->v1.t),
        unclip__tensor_bind(d->key_bias ? d->key_bias : d->q.t),
        unclip__tensor_bind(out),
    };

    /* Work per (batch, head, block of queries): two multiply-adds per score element. A block
     * is WG (64) invocations times QPI queries each, as in shaders/attention.comp. */
    const int64_t qblock = 64 * (int64_t)qpi;
    int64_t nqb = (lq + qblock - 1) / qblock, nz = (int64_t)d->batch * d->n_heads;
    uint64_t work_qb = (uint64_t)qblock * (uint64_t)(l1 + l2) * (uint64_t)d->head_dim * 2;
    uint64_t bound = UNCLIP_VK_WORK_BOUND;
    int64_t qb_per = (int64_t)(bound / work_qb);
    if (qb_per < 1)
        qb_per = 1;
    if (qb_per > nqb)
        qb_per = nqb;
    int64_t z_per = qb_per < nqb ? 1 : (int64_t)(bound / (work_qb * (uint64_t)nqb));
    if (z_per < 1)
        z_per = 1;
    if (z_per > 65535)
        z_per = 65535;
    for (int64_t z0 = 0; z0 < nz; z0 += z_per) {
        int64_t zc = nz - z0 < z_per ? nz - z0 : z_per;
        for (int64_t q0 = 0; q0 < nqb; q0 += qb_per) {
            int64_t qc = nqb - q0 < qb_per ? nqb - q0 : qb_per;
            pc.z0 = (uint32_t)z0;
            pc.qb0 = (uint32_t)q0;
            st = unclip__vk_dispatch(vk, shader, b, 7, &pc, sizeof pc, (uint32_t)qc, (uint32_t)zc,
                                     1, work_qb * (uint64_t)(qc * zc));
            if (st != UNCLIP_OK)
                return st;
        }
    }
    return UNCLIP_OK;
}

int unclip__attn_head_major_force;
int unclip__attn_qpi_override;

bool
unclip__attn_wants_head_major(int32_t n_heads, int32_t head_dim, const struct unclip_seq *k)
{
    (void)head_dim;
    if (k->head_stride != 0)
        return false; /* already apart by heads */
    /* Measured (bench-ops, lavapipe): 5 heads x 4096 keys on 3.8 KB rows and 10 heads x 1024
     * keys on 7.5 KB rows gain; a few hundred keys stay in cache either way. */
    return unclip__attn_head_major_force ||
           (n_heads >= 2 && k->len >= 512 && k->row_stride >= 256);
}

int64_t
unclip__attn_head_major_numel(int32_t batch, int32_t n_heads, int32_t head_dim, int32_t len)
{
    return 2 * (int64_t)batch * n_heads * len * head_dim;
}

unclip_status
unclip__attn_head_major(struct unclip_vk *vk, int32_t batch, int32_t n_heads, int32_t head_dim,
                        struct unclip_seq *k, struct unclip_seq *v, struct unclip_tensor *scratch)
{
    if (batch <= 0 || n_heads <= 0 || head_dim <= 0 || k->len != v->len)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "attention head-major copy: batch %d, %d heads of %d, lengths %d/%d",
                            (int)batch, (int)n_heads, (int)head_dim, (int)k->len, (int)v->len);
    unclip_status st;
    if ((st = check_seq(vk, "k", k, batch, n_heads, head_dim)) ||
        (st = check_seq(vk, "v", v, batch, n_heads, head_dim)))
        return st;
    const int64_t L = k->len, D = head_dim, H = n_heads, half = (int64_t)batch * H * L * D;
    if ((st = unclip__check_tensor(vk, "attention head-major copy", "scratch", scratch, -1,
                                   false)))
        return st;
    if (unclip__tensor_numel(scratch) < 2 * half)
        return unclip__fail(unclip__vk_err(vk), UNCLIP_E_INTERNAL,
                            "attention head-major copy: scratch of %lld elements, needs %lld",
                            (long long)unclip__tensor_numel(scratch), (long long)(2 * half));
    struct unclip_seq *seqs[2] = {k, v};
    for (int i = 0; i < 2; i++) {
        struct unclip_seq *s = seqs[i];
        /* [B, H, L, D] from rows [B, L, (H, D)]: sequential writes, each source row slice
         * read once. */
        struct unclip_copy_desc c = {
            .shape = {batch, H, L, D},
            .src_off = s->off,
            .src_stride = {s->batch_stride, head_stride(s, head_dim), s->row_stride, 1},
            .dst_off = i * half,
            .dst_stride = {H * L * D, L * D, D, 1},
        };
        if ((st = unclip__op_copy(vk, s->t, scratch, &c)))
            return st;
        *s = (struct unclip_seq){.t = scratch, .off = i * half, .row_stride = D,
                                 .batch_stride = H * L * D, .len = (int32_t)L,
                                 .head_stride = L * D};
    }
    return UNCLIP_OK;
}
