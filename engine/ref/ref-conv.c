/* Reference of unclip__op_conv2d: direct convolution with zero padding, accumulated in
 * double, bias then residual added. */
#include "ref/ref.h"

void
unclip_ref_conv2d(const float *x, int64_t n, int64_t cin, int64_t h, int64_t w, const float *wt,
                  int64_t cout, int32_t k, const float *bias, int32_t stride, int32_t padding,
                  const float *residual, float *y)
{
    int64_t ho = (h + 2 * padding - k) / stride + 1;
    int64_t wo = (w + 2 * padding - k) / stride + 1;
    for (int64_t b = 0; b < n; b++)
    for (int64_t co = 0; co < cout; co++)
    for (int64_t oy = 0; oy < ho; oy++)
    for (int64_t ox = 0; ox < wo; ox++) {
        double acc = bias ? bias[co] : 0.0;
        for (int64_t ci = 0; ci < cin; ci++)
        for (int32_t ky = 0; ky < k; ky++) {
            int64_t iy = oy * stride + ky - padding;
            if (iy < 0 || iy >= h)
                continue;
            for (int32_t kx = 0; kx < k; kx++) {
                int64_t ix = ox * stride + kx - padding;
                if (ix < 0 || ix >= w)
                    continue;
                acc += (double)x[((b * cin + ci) * h + iy) * w + ix] *
                       wt[((co * cin + ci) * k + ky) * k + kx];
            }
        }
        int64_t o = ((b * cout + co) * ho + oy) * wo + ox;
        if (residual)
            acc += residual[o];
        y[o] = (float)acc;
    }
}
