#version 450
#extension GL_GOOGLE_include_directive : require
// Nearest 2x upsample: y[nc, oy, ox] = x[nc, oy / 2, ox / 2]; one invocation per output,
// outputs [i0, i0 + n) of y; x and y are bound from their base elements bx, by.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint n, i0, bx, by, unused, pad0, pad1, pad2;
    uint h, w;  // input height and width
} p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    uint g = p.i0 + i;
    uint wo = 2u * p.w, ho = 2u * p.h;
    uint ox = g % wo;
    uint r = g / wo;
    uint oy = r % ho;
    uint nc = r / ho;
    y[g - p.by] = x[(nc * p.h + oy / 2u) * p.w + ox / 2u - p.bx];
}
