#include "core/bicubic.h"

#include <math.h>

double
unclip__bicubic_kernel(double x)
{
    const double a = UNCLIP_BICUBIC_A;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static double
stretch(int64_t in_size, int64_t out_size)
{
    double s = (double)in_size / (double)out_size;
    return s > 1.0 ? s : 1.0;
}

int32_t
unclip__bicubic_max_taps(int64_t in_size, int64_t out_size)
{
    return (int32_t)ceil(2.0 * stretch(in_size, out_size)) * 2 + 1;
}

int32_t
unclip__bicubic_taps(int64_t in_size, int64_t out_size, int64_t i, int64_t *first, double *w)
{
    double s = (double)in_size / (double)out_size;
    double f = stretch(in_size, out_size);
    double support = 2.0 * f;
    double c = ((double)i + 0.5) * s;
    /* The casts truncate toward zero like Pillow's and torch's (int) casts; a negative start
     * is clamped to 0 either way. */
    int64_t lo = (int64_t)(c - support + 0.5);
    int64_t hi = (int64_t)(c + support + 0.5);
    if (lo < 0)
        lo = 0;
    if (hi > in_size)
        hi = in_size;
    int32_t n = (int32_t)(hi - lo);
    double sum = 0.0;
    for (int32_t k = 0; k < n; k++) {
        w[k] = unclip__bicubic_kernel(((double)(lo + k) + 0.5 - c) / f);
        sum += w[k];
    }
    /* The centre tap always has a positive weight, so sum > 0; the guard only keeps a
     * corrupt call from dividing by zero (Pillow has the same one). */
    if (sum != 0.0)
        for (int32_t k = 0; k < n; k++)
            w[k] /= sum;
    *first = lo;
    return n;
}
