#include "rng.h"

#include <math.h>
#include <string.h>

#define MT_M 397
#define MT_MATRIX_A 0x9908B0DFu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7FFFFFFFu

void
unclip__rng_seed(struct unclip_rng *r, uint64_t seed)
{
    /* torch's mt19937 takes the seed as uint64 and keeps its low 32 bits. */
    r->mt[0] = (uint32_t)(seed & 0xFFFFFFFFu);
    for (uint32_t i = 1; i < UNCLIP_RNG_MT_N; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + i;
    r->next = UNCLIP_RNG_MT_N;
    r->has_normal = false;
    r->normal = 0.0;
}

void
unclip__rng_copy(struct unclip_rng *dst, const struct unclip_rng *src)
{
    if (dst != src)
        memcpy(dst, src, sizeof *dst);
}

static void
regenerate(struct unclip_rng *r)
{
    uint32_t *mt = r->mt;
    for (int i = 0; i < UNCLIP_RNG_MT_N; i++) {
        uint32_t y = (mt[i] & MT_UPPER) | (mt[(i + 1) % UNCLIP_RNG_MT_N] & MT_LOWER);
        mt[i] = mt[(i + MT_M) % UNCLIP_RNG_MT_N] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
    r->next = 0;
}

uint32_t
unclip__rng_u32(struct unclip_rng *r)
{
    if (r->next >= UNCLIP_RNG_MT_N)
        regenerate(r);
    uint32_t y = r->mt[r->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680u;
    y ^= (y << 15) & 0xEFC60000u;
    y ^= y >> 18;
    return y;
}

/* uniform_real_distribution<float>: 24 bits of one word, exact in float. */
static inline float
uniform_f32(struct unclip_rng *r)
{
    return (float)(unclip__rng_u32(r) & 0xFFFFFFu) * (1.0f / 16777216.0f);
}

/* uniform_real_distribution<double>: 53 bits of two words, the first one high. */
static inline double
uniform_f64(struct unclip_rng *r)
{
    uint64_t hi = unclip__rng_u32(r);
    uint64_t lo = unclip__rng_u32(r);
    uint64_t v = ((hi << 32) | lo) & ((UINT64_C(1) << 53) - 1);
    return (double)v * (1.0 / 9007199254740992.0);
}

void
unclip__rng_rand(struct unclip_rng *r, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = uniform_f32(r);
}

/* torch's normal_fill_16 with mean 0, std 1, in place: d[0..8) hold the uniforms that become
 * radii, d[8..16) the ones that become angles. Every step is float32 except the angle, whose
 * product 2*pi*u2 torch evaluates in double (pi is c10::pi<double>) and rounds to float. */
static void
box_muller_16(float *d)
{
    for (int j = 0; j < 8; j++) {
        const float u1 = 1.0f - d[j];
        const float u2 = d[j + 8];
        const float radius = sqrtf(-2.0f * logf(u1));
        const float theta = (float)(2.0 * M_PI * (double)u2);
        d[j] = radius * cosf(theta);
        d[j + 8] = radius * sinf(theta);
    }
}

/* torch's normal_distribution<double> (n < 16 path): returns the cached value when there is
 * one, otherwise makes a pair from two 53-bit uniforms and caches the sine half. */
static double
normal_f64(struct unclip_rng *r)
{
    if (r->has_normal) {
        r->has_normal = false;
        return r->normal;
    }
    const double u1 = uniform_f64(r);
    const double u2 = uniform_f64(r);
    const double radius = sqrt(-2.0 * log1p(-u2));
    const double theta = 2.0 * M_PI * u1;
    r->normal = radius * sin(theta);
    r->has_normal = true;
    return radius * cos(theta);
}

void
unclip__rng_randn(struct unclip_rng *r, float *out, int64_t n)
{
    if (n <= 0)
        return;
    if (n < 16) {
        for (int64_t i = 0; i < n; i++)
            out[i] = (float)normal_f64(r);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        out[i] = uniform_f32(r);
    for (int64_t i = 0; i + 16 <= n; i += 16)
        box_muller_16(out + i);
    if (n % 16 != 0) {
        /* torch redraws 16 uniforms for the last 16 positions and transforms them again,
         * overwriting values the block loop already produced. */
        float *tail = out + n - 16;
        for (int j = 0; j < 16; j++)
            tail[j] = uniform_f32(r);
        box_muller_16(tail);
    }
}
