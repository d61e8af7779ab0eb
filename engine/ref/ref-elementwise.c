#include "ref/ref.h"

#include <math.h>

static double
act_ref(enum unclip_act act, double v, double lo, double hi)
{
    switch (act) {
    case UNCLIP_ACT_SILU: return v / (1.0 + exp(-v));
    case UNCLIP_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case UNCLIP_ACT_QUICK_GELU: return v / (1.0 + exp(-1.702 * v));
    case UNCLIP_ACT_CLAMP: return v < lo ? lo : (v > hi ? hi : v);
    default: return v;
    }
}

void
unclip_ref_unary(const float *x, int64_t n, enum unclip_act act, float alpha, float beta,
                 float lo, float hi, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)act_ref(act, (double)alpha * x[i] + beta, lo, hi);
}

static void
shape4(int32_t ndim, const int64_t *shape, int64_t out[4])
{
    for (int k = 0; k < 4; k++) {
        int i = ndim - (4 - k);
        out[k] = i >= 0 ? shape[i] : 1;
    }
}

static int64_t
bcast_index(const int64_t s[4], const int64_t idx[4])
{
    int64_t off = 0;
    for (int k = 0; k < 4; k++)
        off = off * s[k] + (s[k] == 1 ? 0 : idx[k]);
    return off;
}

void
unclip_ref_binary(enum unclip_binop op, const float *a, int32_t a_ndim, const int64_t *a_shape,
                  const float *b, int32_t b_ndim, const int64_t *b_shape, float *y,
                  int32_t y_ndim, const int64_t *y_shape)
{
    int64_t sa[4], sb[4], sy[4];
    shape4(a_ndim, a_shape, sa);
    shape4(b_ndim, b_shape, sb);
    shape4(y_ndim, y_shape, sy);
    int64_t idx[4];
    int64_t n = 0;
    for (idx[0] = 0; idx[0] < sy[0]; idx[0]++)
        for (idx[1] = 0; idx[1] < sy[1]; idx[1]++)
            for (idx[2] = 0; idx[2] < sy[2]; idx[2]++)
                for (idx[3] = 0; idx[3] < sy[3]; idx[3]++) {
                    double va = a[bcast_index(sa, idx)], vb = b[bcast_index(sb, idx)];
                    y[n++] = (float)(op == UNCLIP_BIN_ADD ? va + vb
                                     : op == UNCLIP_BIN_SUB ? va - vb
                                                            : va * vb);
                }
}

void
unclip_ref_lerp(const float *a, const float *b, int64_t n, float scale, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)(a[i] + (double)scale * ((double)b[i] - a[i]));
}

void
unclip_ref_copy(const float *src, float *dst, const struct unclip_copy_desc *d)
{
    for (int64_t i0 = 0; i0 < d->shape[0]; i0++)
        for (int64_t i1 = 0; i1 < d->shape[1]; i1++)
            for (int64_t i2 = 0; i2 < d->shape[2]; i2++)
                for (int64_t i3 = 0; i3 < d->shape[3]; i3++)
                    dst[d->dst_off + i0 * d->dst_stride[0] + i1 * d->dst_stride[1] +
                        i2 * d->dst_stride[2] + i3 * d->dst_stride[3]] =
                        src[d->src_off + i0 * d->src_stride[0] + i1 * d->src_stride[1] +
                            i2 * d->src_stride[2] + i3 * d->src_stride[3]];
}

void
unclip_ref_embedding(const float *table, int64_t dim, const int32_t *ids, int32_t n_ids, float *y)
{
    for (int32_t i = 0; i < n_ids; i++)
        for (int64_t c = 0; c < dim; c++)
            y[(int64_t)i * dim + c] = table[(int64_t)ids[i] * dim + c];
}
