#include "ref/ref.h"

#include <math.h>

void
unclip_ref_timestep_embedding(const float *t, int32_t batch, int32_t dim, bool flip_sin_to_cos,
                              float freq_shift, float max_period, float *y)
{
    int32_t half = dim / 2;
    for (int32_t b = 0; b < batch; b++) {
        float *row = y + (int64_t)b * dim;
        for (int32_t k = 0; k < half; k++) {
            /* The rounding points of the op's contract (torch's fp32 steps). */
            float e = (float)-log((double)max_period) * (float)k;
            e = e / ((float)half - freq_shift);
            float f = expf(e);
            float arg = t[b] * f;
            double s = sin((double)arg), c = cos((double)arg);
            row[k] = (float)(flip_sin_to_cos ? c : s);
            row[half + k] = (float)(flip_sin_to_cos ? s : c);
        }
        if (dim % 2)
            row[dim - 1] = 0.0f;
    }
}

void
unclip_ref_slerp(const float *a, const float *b, int64_t rows, int64_t dim, float w, bool unit,
                 float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *ar = a + r * dim, *br = b + r * dim;
        double aa = 0, bb = 0, ab = 0;
        for (int64_t c = 0; c < dim; c++) {
            aa += (double)ar[c] * ar[c];
            bb += (double)br[c] * br[c];
            ab += (double)ar[c] * br[c];
        }
        double na = sqrt(aa), nb = sqrt(bb);
        double ka = 1.0 - w, kb = w;
        if (w == 0.0f) {
            ka = 1.0;
            kb = 0.0;
        } else if (w == 1.0f) {
            ka = 0.0;
            kb = 1.0;
        } else if (na > 0.0 && nb > 0.0) {
            double cosom = ab / (na * nb);
            cosom = cosom < -1.0 ? -1.0 : (cosom > 1.0 ? 1.0 : cosom);
            double om = acos(cosom), so = sin(om);
            if (so >= 1e-6) {
                ka = sin((1.0 - w) * om) / so;
                kb = sin(w * om) / so;
            }
            if (unit) {
                double n = (1.0 - w) * na + w * nb;
                ka *= n / na;
                kb *= n / nb;
            }
        }
        for (int64_t c = 0; c < dim; c++)
            y[r * dim + c] = (float)(ka * ar[c] + kb * br[c]);
    }
}
