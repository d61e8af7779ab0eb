#version 450
#extension GL_GOOGLE_include_directive : require
// y = act(alpha * x + beta) over the outputs [i0, i0 + n) of a flat index space; x and y are
// bound from their base elements bx, by (windows of tensors larger than one binding).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint n, i0, bx, by, unused, pad0, pad1, pad2;
    uint act;
    float alpha, beta, lo, hi;
} p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    uint g = p.i0 + i;
    y[g - p.by] = apply_act(p.act, p.alpha * x[g - p.bx] + p.beta, p.lo, p.hi);
}
