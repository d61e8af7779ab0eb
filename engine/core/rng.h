/* A random generator that reproduces PyTorch 1.13's CPU torch.Generator bit for bit.
 *
 * Why: a seed must give the same image as diffusers for that seed, so every draw the pipeline
 * makes (initial latents, scheduler variance noise) has to be the exact float stream torch
 * produces. The engine is MT19937 as torch::mt19937 (= std::mt19937) seeded like
 * Generator.manual_seed, plus torch's transforms (goldens README section 5.2):
 *   - unclip__rng_rand:  torch.rand of a float32 tensor, one 32-bit word per value,
 *                        u = (w & 0xFFFFFF) * 2^-24 in [0, 1).
 *   - unclip__rng_randn: torch.randn of a contiguous float32 tensor of n values:
 *        n >= 16  blocks of 16 Box-Muller in float32 with the C library's logf/cosf/sinf,
 *                 and the tail rule (n % 16 != 0 redraws 16 words for the last 16 values);
 *        n < 16   value by value in double through torch's normal_distribution<double>,
 *                 which caches the second value of each pair (the cache outlives later
 *                 n >= 16 draws; only seeding clears it).
 *
 * The state is plain data with no pointers: copying the struct (or unclip__rng_copy) forks the
 * stream, e.g. to run two pipeline branches from the same point. Not thread-safe; one owner
 * at a time. */
#ifndef UNCLIP_CORE_RNG_H
#define UNCLIP_CORE_RNG_H

#include <stdbool.h>
#include <stdint.h>

#define UNCLIP_RNG_MT_N 624

struct unclip_rng {
    uint32_t mt[UNCLIP_RNG_MT_N]; /* MT19937 state */
    int32_t  next;                /* index of the next word in mt; N: regenerate first */
    bool     has_normal;          /* normal_distribution<double>'s cached second value   */
    double   normal;
};

/* Generator.manual_seed(seed): the engine is seeded with seed mod 2^32 and the cached normal
 * is dropped. */
void unclip__rng_seed(struct unclip_rng *r, uint64_t seed);

/* dst becomes an independent copy of src (same future stream). */
void unclip__rng_copy(struct unclip_rng *dst, const struct unclip_rng *src);

/* Next tempered 32-bit word (torch's generator->random()). */
uint32_t unclip__rng_u32(struct unclip_rng *r);

/* out[0..n) = torch.rand(n) (float32). n <= 0 draws nothing. */
void unclip__rng_rand(struct unclip_rng *r, float *out, int64_t n);

/* out[0..n) = torch.randn(shape) for a contiguous float32 tensor of n = prod(shape) elements,
 * in row-major order. One call is one torch draw: a [B, C, H, W] latent must be drawn with a
 * single call of n = B*C*H*W, not per image (the block/tail split depends on n).
 * n <= 0 draws nothing. Consumes n words (n >= 16, n % 16 == 0), n + 16 words (n > 16 with a
 * tail), or up to 4 words per pair of values (n < 16). */
void unclip__rng_randn(struct unclip_rng *r, float *out, int64_t n);

#endif
