#version 450
#extension GL_GOOGLE_include_directive : require
// Strided 4-D copy (element units).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer S { float src[]; };
layout(std430, binding = 1) writeonly buffer D { float dst[]; };
layout(push_constant) uniform P {
    uvec4 shape;
    uvec4 ss;
    uvec4 ds;
    uint soff;
    uint doff;
    uint n;
} p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    uint r = i;
    uint i3 = r % p.shape.w; r /= p.shape.w;
    uint i2 = r % p.shape.z; r /= p.shape.z;
    uint i1 = r % p.shape.y;
    uint i0 = r / p.shape.y;
    uvec4 idx = uvec4(i0, i1, i2, i3);
    dst[p.doff + idx.x * p.ds.x + idx.y * p.ds.y + idx.z * p.ds.z + idx.w * p.ds.w] =
        src[p.soff + idx.x * p.ss.x + idx.y * p.ss.y + idx.z * p.ss.z + idx.w * p.ss.w];
}
