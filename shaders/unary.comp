#version 450
#extension GL_GOOGLE_include_directive : require
// y = act(alpha * x + beta)
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; uint act; float alpha; float beta; float lo; float hi; } p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    y[i] = apply_act(p.act, p.alpha * x[i] + p.beta, p.lo, p.hi);
}
