#version 450
#extension GL_GOOGLE_include_directive : require
// One separable pass of the antialiased bicubic resize along an axis: x is viewed as
// [outer, lin, inner] and y as [outer, lout, inner] (horizontal pass: inner = 1; vertical:
// inner = width). The host computes the taps of each output index (engine/core/bicubic.h)
// and uploads them as one uint array:
//   taps[o]                       first input index of output index o   (o < lout)
//   taps[lout + o]                number of taps (first + count <= lin)
//   taps[2 lout + o * k + t]      float bits of the normalised weight of tap t
// Accumulates in fp32, tap by tap in order (like torch's float kernel); no clamping.
// Outputs [i0, i0 + n) of y; x, taps and y are bound from their base elements bx, bt, by
// (windows of tensors larger than one binding).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer T { uint taps[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint n, i0, bx, bt, by, pad0, pad1, pad2;
    uint lin, lout, inner;
    uint k;      // weights per output index (row stride of the weight table)
} p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    uint g = p.i0 + i;
    uint ii = g % p.inner;
    uint r = g / p.inner;
    uint o = r % p.lout;
    uint outer = r / p.lout;
    uint first = taps[o - p.bt];
    uint count = taps[p.lout + o - p.bt];
    uint wbase = 2u * p.lout + o * p.k - p.bt;
    uint xbase = (outer * p.lin + first) * p.inner + ii - p.bx;
    float acc = 0.0;
    for (uint t = 0u; t < count; t++)
        acc += uintBitsToFloat(taps[wbase + t]) * x[xbase + t * p.inner];
    y[g - p.by] = acc;
}
