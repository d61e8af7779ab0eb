/* Reference of fused attention: the scores of one query row are materialised in double,
 * the softmax is taken over the concatenated keys, and the values are summed in double. */
#include "ref/ref.h"

#include <math.h>
#include <stdlib.h>

/* Element index of row r of batch b, head h in a sequence. */
static int64_t
seq_at(const struct unclip_ref_seq *s, int64_t b, int64_t r, int64_t h, int64_t head_dim)
{
    return s->off + b * s->batch_stride + r * s->row_stride +
           h * (s->head_stride ? s->head_stride : head_dim);
}

void
unclip_ref_attention(const struct unclip_ref_attn *a, float *out)
{
    int64_t d = a->head_dim, l1 = a->k1.len, l2 = a->k2.data ? a->k2.len : 0;
    int64_t lk = l1 + l2, lq = a->q.len;
    double *s = malloc((size_t)(lk > 0 ? lk : 1) * sizeof *s);
    double *o = malloc((size_t)d * sizeof *o);
    if (!s || !o) {
        free(s);
        free(o);
        return;
    }
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t h = 0; h < a->n_heads; h++)
            for (int64_t i = 0; i < lq; i++) {
                const float *q = a->q.data + seq_at(&a->q, b, i, h, d);
                int64_t visible = a->causal ? (i + 1 < lk ? i + 1 : lk) : lk;
                double m = -INFINITY;
                for (int64_t j = 0; j < visible; j++) {
                    const float *k = j < l1 ? a->k1.data + seq_at(&a->k1, b, j, h, d)
                                            : a->k2.data + seq_at(&a->k2, b, j - l1, h, d);
                    double dot = 0.0;
                    for (int64_t e = 0; e < d; e++)
                        dot += (double)q[e] * k[e];
                    s[j] = dot * a->scale;
                    if (a->key_bias && j < l1)
                        s[j] += a->key_bias[b * l1 + j];
                    m = s[j] > m ? s[j] : m;
                }
                double sum = 0.0;
                for (int64_t e = 0; e < d; e++)
                    o[e] = 0.0;
                for (int64_t j = 0; j < visible; j++) {
                    const float *v = j < l1 ? a->v1.data + seq_at(&a->v1, b, j, h, d)
                                            : a->v2.data + seq_at(&a->v2, b, j - l1, h, d);
                    double p = exp(s[j] - m);
                    sum += p;
                    for (int64_t e = 0; e < d; e++)
                        o[e] += p * v[e];
                }
                float *y = out + (b * lq + i) * a->n_heads * d + h * d;
                for (int64_t e = 0; e < d; e++)
                    y[e] = (float)(o[e] / sum);
            }
    free(s);
    free(o);
}
