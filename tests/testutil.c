#include "testutil.h"

#include <math.h>
#include <stdlib.h>

int tu_failures;
int tu_checks;

void
tu_rng_seed(struct tu_rng *r, uint64_t seed)
{
    r->s = seed * 0x9E3779B97F4A7C15ull + 1;
}

uint64_t
tu_rng_u64(struct tu_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float
tu_rng_uniform(struct tu_rng *r, float lo, float hi)
{
    double u = (double)(tu_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

float
tu_rng_normal(struct tu_rng *r)
{
    double u1 = ((double)(tu_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(tu_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void
tu_fill_uniform(struct tu_rng *r, float *x, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = tu_rng_uniform(r, lo, hi);
}

void
tu_fill_normal(struct tu_rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * tu_rng_normal(r);
}

double
tu_nmse(const float *got, const float *want, int64_t n)
{
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        e += d * d;
        s += (double)want[i] * want[i];
    }
    return e / (s > 1e-30 ? s : 1e-30);
}

double
tu_rel_l2(const float *got, const float *want, int64_t n)
{
    return sqrt(tu_nmse(got, want, n));
}

double
tu_max_abs(const float *got, const float *want, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= m))
            m = d; /* NaN propagates as the max */
    }
    return m;
}

int64_t
tu_first_nonfinite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return -1;
}

int
tu_summary(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

const char *
tu_golden_path(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("UNCLIP_GOLDENS");
    snprintf(buf, sizeof buf, "%s/%s", root && *root ? root : "../shared/goldens", rel);
    return buf;
}
