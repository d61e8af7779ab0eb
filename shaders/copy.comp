#version 450
#extension GL_GOOGLE_include_directive : require
// Strided 4-D copy (element units) of the indices [i0, i0 + n) of `shape`:
//   dst[idx . ds - bd] = src[idx . ss - bs]
// where bs / bd are the bindings' base elements minus the descriptor's offsets (uint
// arithmetic wraps, so an offset above the base works).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer S { float src[]; };
layout(std430, binding = 1) writeonly buffer D { float dst[]; };
layout(push_constant) uniform P {
    uint n, i0, bs, bd, unused, pad0, pad1, pad2;  // 32 bytes: the uvec4s below are 16-aligned
    uvec4 shape;
    uvec4 ss;
    uvec4 ds;
} p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    uint r = p.i0 + i;
    uint i3 = r % p.shape.w; r /= p.shape.w;
    uint i2 = r % p.shape.z; r /= p.shape.z;
    uint i1 = r % p.shape.y;
    uint i0 = r / p.shape.y;
    uvec4 idx = uvec4(i0, i1, i2, i3);
    dst[idx.x * p.ds.x + idx.y * p.ds.y + idx.z * p.ds.z + idx.w * p.ds.w - p.bd] =
        src[idx.x * p.ss.x + idx.y * p.ss.y + idx.z * p.ss.z + idx.w * p.ss.w - p.bs];
}
