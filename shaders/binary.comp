#version 450
#extension GL_GOOGLE_include_directive : require
// y = a (op) b with broadcasting through zero strides; 4-D index from the flat output index.
// Outputs [i0, i0 + n) of y; each tensor is bound from its base element (ba, bb, by), so a
// chunk of a tensor larger than one binding indexes its window.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint n, i0, ba, bb, by, pad0, pad1, pad2;  // 32 bytes: the uvec4s below are 16-aligned
    uvec4 shape;   // y's shape
    uvec4 sa;      // a's strides (0 on broadcast dims)
    uvec4 sb;      // b's strides
    uint op;       // 0 add, 1 sub, 2 mul
} p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    uint g = p.i0 + i;
    uint r = g;
    uint i3 = r % p.shape.w; r /= p.shape.w;
    uint i2 = r % p.shape.z; r /= p.shape.z;
    uint i1 = r % p.shape.y;
    uint i0 = r / p.shape.y;
    uvec4 idx = uvec4(i0, i1, i2, i3);
    float va = a[idx.x * p.sa.x + idx.y * p.sa.y + idx.z * p.sa.z + idx.w * p.sa.w - p.ba];
    float vb = b[idx.x * p.sb.x + idx.y * p.sb.y + idx.z * p.sb.z + idx.w * p.sb.w - p.bb];
    float v = p.op == 0u ? va + vb : (p.op == 1u ? va - vb : va * vb);
    y[g - p.by] = v;
}
