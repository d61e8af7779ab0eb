/* Element types and fp16 / bf16 conversions (host side). */
#ifndef UNCLIP_CORE_DTYPE_H
#define UNCLIP_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum unclip_dtype {
    UNCLIP_DT_F32 = 0,
    UNCLIP_DT_F16,
    UNCLIP_DT_BF16,
    UNCLIP_DT_I64,
    UNCLIP_DT_I32,
    UNCLIP_DT_U8,
    UNCLIP_DT_BOOL,
    UNCLIP_DT_N
};

/* Bytes per element. */
static inline size_t
unclip__dtype_size(enum unclip_dtype dt)
{
    static const size_t sz[UNCLIP_DT_N] = {4, 2, 2, 8, 4, 1, 1};
    return (unsigned)dt < UNCLIP_DT_N ? sz[dt] : 0;
}

/* safetensors spelling ("F32", "F16", ...); NULL for out of range. */
const char *unclip__dtype_name(enum unclip_dtype dt);

/* IEEE half <-> float, round to nearest even, with subnormals, inf and NaN. */
uint16_t unclip__f32_to_f16(float f);
float    unclip__f16_to_f32(uint16_t h);

static inline float
unclip__bf16_to_f32(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t unclip__f32_to_bf16(float f);

#endif
