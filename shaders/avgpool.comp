#version 450
#extension GL_GOOGLE_include_directive : require
// 2x2 average pool, stride 2, floor: y[nc, oy, ox] = mean of x[nc, 2oy..2oy+1, 2ox..2ox+1].
// Summed row by row and divided by 4, the order torch's CPU avg_pool2d uses. Outputs
// [i0, i0 + n) of y; x and y are bound from their base elements bx, by.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint n, i0, bx, by, unused, pad0, pad1, pad2;
    uint h, w;    // input height and width (odd sizes drop the last row / column)
} p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    uint g = p.i0 + i;
    uint wo = p.w / 2u, ho = p.h / 2u;
    uint ox = g % wo;
    uint r = g / wo;
    uint oy = r % ho;
    uint nc = r / ho;
    uint a = (nc * p.h + 2u * oy) * p.w + 2u * ox - p.bx;
    float s = x[a] + x[a + 1u];
    s += x[a + p.w];
    s += x[a + p.w + 1u];
    y[g - p.by] = s / 4.0;
}
