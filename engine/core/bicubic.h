/* The PIL-style antialiased bicubic filter (Keys' cubic, a = -0.5), shared by the float
 * upscale op (engine/ops/resample.c) and the 8-bit CLIP preprocessing.
 *
 * One axis of a resize from in_size to out_size samples: scale s = in/out, stretch
 * f = max(s, 1) (the filter widens only when shrinking, which is the antialiasing), support
 * 2f. Output index i is centred at c = (i + 0.5) s in input coordinates; its taps are the
 * input indices j in [max(0, (int)(c - 2f + 0.5)), min(in, (int)(c + 2f + 0.5))) with weights
 * k((j + 0.5 - c) / f) divided by their sum. Near the borders the taps are cut off and the
 * rest renormalised (edge pixels are not repeated). This is what Pillow's precompute_coeffs
 * and torch's interpolate(mode="bicubic", antialias=True) compute (both in their own
 * precision; here everything is double).
 *
 * Ownership: none; callers pass buffers. No function here fails for sizes >= 1. */
#ifndef UNCLIP_CORE_BICUBIC_H
#define UNCLIP_CORE_BICUBIC_H

#include <stdint.h>

#define UNCLIP_BICUBIC_A (-0.5)

/* Keys' kernel with a = -0.5: (a+2)|x|^3 - (a+3)|x|^2 + 1 for |x| < 1,
 * a(|x|^3 - 5|x|^2 + 8|x| - 4) for 1 <= |x| < 2, else 0. */
double unclip__bicubic_kernel(double x);

/* An upper bound of the tap count of every output index of the axis: 2 ceil(2f) + 1
 * (Pillow's ksize). in_size, out_size >= 1. */
int32_t unclip__bicubic_max_taps(int64_t in_size, int64_t out_size);

/* Taps of output index i (0 <= i < out_size): writes the first input index to *first and the
 * normalised weights of input indices first, first+1, ... to w (capacity
 * unclip__bicubic_max_taps()), and returns their count (>= 1; first + count <= in_size). */
int32_t unclip__bicubic_taps(int64_t in_size, int64_t out_size, int64_t i, int64_t *first,
                             double *w);

#endif
