#include "ref/ref.h"

#include <math.h>
#include <stdlib.h>

void
unclip_ref_upsample2x(const float *x, int64_t nc, int64_t h, int64_t w, float *y)
{
    for (int64_t p = 0; p < nc; p++)
        for (int64_t oy = 0; oy < 2 * h; oy++)
            for (int64_t ox = 0; ox < 2 * w; ox++)
                y[(p * 2 * h + oy) * 2 * w + ox] = x[(p * h + oy / 2) * w + ox / 2];
}

void
unclip_ref_avgpool2x(const float *x, int64_t nc, int64_t h, int64_t w, float *y)
{
    int64_t ho = h / 2, wo = w / 2;
    for (int64_t p = 0; p < nc; p++)
        for (int64_t oy = 0; oy < ho; oy++)
            for (int64_t ox = 0; ox < wo; ox++) {
                const float *q = x + (p * h + 2 * oy) * w + 2 * ox;
                y[(p * ho + oy) * wo + ox] =
                    (float)(((double)q[0] + q[1] + q[w] + q[w + 1]) / 4.0);
            }
}

/* Keys' cubic, a = -0.5, written out from the README's formula. */
static double
keys(double x)
{
    const double a = -0.5;
    double ax = fabs(x);
    if (ax < 1.0)
        return (a + 2.0) * ax * ax * ax - (a + 3.0) * ax * ax + 1.0;
    if (ax < 2.0)
        return a * (ax * ax * ax - 5.0 * ax * ax + 8.0 * ax - 4.0);
    return 0.0;
}

/* Normalised weights of output index i over all n_in inputs (zero outside the taps). */
static void
axis_weights(int64_t n_in, int64_t n_out, int64_t i, double *wt)
{
    double s = (double)n_in / (double)n_out;
    double f = s > 1.0 ? s : 1.0;
    double c = (i + 0.5) * s;
    double lo = c - 2.0 * f + 0.5, hi = c + 2.0 * f + 0.5;
    int64_t j0 = lo < 0.0 ? 0 : (int64_t)lo;
    int64_t j1 = (int64_t)hi < n_in ? (int64_t)hi : n_in;
    double sum = 0.0;
    for (int64_t j = 0; j < n_in; j++) {
        wt[j] = j >= j0 && j < j1 ? keys((j + 0.5 - c) / f) : 0.0;
        sum += wt[j];
    }
    for (int64_t j = 0; j < n_in; j++)
        wt[j] /= sum;
}

void
unclip_ref_resize_bicubic_aa(const float *x, int64_t nc, int64_t h, int64_t w, int64_t ho,
                             int64_t wo, float *y)
{
    double *wy = malloc((size_t)(ho * h) * sizeof *wy);
    double *wx = malloc((size_t)(wo * w) * sizeof *wx);
    for (int64_t i = 0; i < ho; i++)
        axis_weights(h, ho, i, wy + i * h);
    for (int64_t i = 0; i < wo; i++)
        axis_weights(w, wo, i, wx + i * w);
    for (int64_t p = 0; p < nc; p++)
        for (int64_t oy = 0; oy < ho; oy++)
            for (int64_t ox = 0; ox < wo; ox++) {
                double acc = 0.0;
                for (int64_t j = 0; j < h; j++) {
                    double a = wy[oy * h + j];
                    if (a == 0.0)
                        continue;
                    for (int64_t i = 0; i < w; i++)
                        acc += a * wx[ox * w + i] * x[(p * h + j) * w + i];
                }
                y[(p * ho + oy) * wo + ox] = (float)acc;
            }
    free(wy);
    free(wx);
}
