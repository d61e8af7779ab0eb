#version 450
#extension GL_GOOGLE_include_directive : require
// y = a + scale * (b - a)
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; float scale; } p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    float va = a[i];
    y[i] = va + p.scale * (b[i] - va);
}
