/* Reference of unclip__op_linear: y = x . w^T + bias + residual, accumulated in double. */
#include "ref/ref.h"

void
unclip_ref_linear(const float *x, const float *w, const float *bias, const float *residual,
                  int64_t m, int64_t n, int64_t k, float *y)
{
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * k;
        for (int64_t j = 0; j < n; j++) {
            const float *wr = w + j * k;
            double acc = 0.0;
            for (int64_t t = 0; t < k; t++)
                acc += (double)xr[t] * wr[t];
            if (bias)
                acc += bias[j];
            if (residual)
                acc += residual[i * n + j];
            y[i * n + j] = (float)acc;
        }
    }
}
