#version 450
#extension GL_GOOGLE_include_directive : require
// y = a + scale * (b - a) over the outputs [i0, i0 + n); each tensor bound from its base.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint n, i0, ba, bb, by, pad0, pad1, pad2; float scale; } p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    uint g = p.i0 + i;
    float va = a[g - p.ba];
    y[g - p.by] = va + p.scale * (b[g - p.bb] - va);
}
