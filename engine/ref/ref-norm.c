/* References of the normalisation ops (group norm, layer norm, softmax): two-pass mean and
 * variance in double. */
#include "ref/ref.h"

#include <math.h>

void
unclip_ref_group_norm(const float *x, int64_t n, int64_t c, int64_t spatial, int32_t n_groups,
                      float eps, const float *gamma, const float *beta,
                      const float *scale_shift, bool silu, float *y)
{
    int64_t cpg = c / n_groups;
    for (int64_t b = 0; b < n; b++)
        for (int32_t g = 0; g < n_groups; g++) {
            const float *xg = x + (b * c + g * cpg) * spatial;
            float *yg = y + (b * c + g * cpg) * spatial;
            int64_t count = cpg * spatial;
            double mean = 0.0, var = 0.0;
            for (int64_t i = 0; i < count; i++)
                mean += xg[i];
            mean /= (double)count;
            for (int64_t i = 0; i < count; i++)
                var += (xg[i] - mean) * (xg[i] - mean);
            var /= (double)count;
            double rstd = 1.0 / sqrt(var + eps);
            for (int64_t k = 0; k < cpg; k++) {
                int64_t ch = g * cpg + k;
                double ga = gamma ? gamma[ch] : 1.0, be = beta ? beta[ch] : 0.0;
                double sc = scale_shift ? scale_shift[b * 2 * c + ch] : 0.0;
                double sh = scale_shift ? scale_shift[b * 2 * c + c + ch] : 0.0;
                for (int64_t s = 0; s < spatial; s++) {
                    int64_t i = k * spatial + s;
                    double v = (xg[i] - mean) * rstd * ga + be;
                    v = v * (1.0 + sc) + sh;
                    if (silu)
                        v = v / (1.0 + exp(-v));
                    yg[i] = (float)v;
                }
            }
        }
}

void
unclip_ref_layer_norm(const float *x, int64_t rows, int64_t c, const float *gamma,
                      const float *beta, float eps, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < c; i++)
            mean += xr[i];
        mean /= (double)c;
        for (int64_t i = 0; i < c; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        var /= (double)c;
        double rstd = 1.0 / sqrt(var + eps);
        for (int64_t i = 0; i < c; i++)
            y[r * c + i] = (float)((xr[i] - mean) * rstd * (gamma ? gamma[i] : 1.0) +
                                   (beta ? beta[i] : 0.0));
    }
}

void
unclip_ref_softmax(const float *x, int64_t rows, int64_t len, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * len;
        double m = -INFINITY, sum = 0.0;
        for (int64_t i = 0; i < len; i++)
            m = xr[i] > m ? xr[i] : m;
        for (int64_t i = 0; i < len; i++)
            sum += exp(xr[i] - m);
        for (int64_t i = 0; i < len; i++)
            y[r * len + i] = (float)(exp(xr[i] - m) / sum);
    }
}
