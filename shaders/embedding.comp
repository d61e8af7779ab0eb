#version 450
#extension GL_GOOGLE_include_directive : require
// y[i, :] = table[ids[i], :]
#include "common.glsl"
layout(local_size_x = 256) in;
#ifdef W_F16
layout(std430, binding = 0) readonly buffer T { uint tab[]; };
float tab_at(uint i) { return unpackHalf2x16(tab[i >> 1])[i & 1u]; }
#else
layout(std430, binding = 0) readonly buffer T { float tab[]; };
float tab_at(uint i) { return tab[i]; }
#endif
layout(std430, binding = 1) readonly buffer I { int ids[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint n_ids; uint dim; } p;
void main()
{
    uint i = flat_index(256u);
    if (i >= p.n_ids * p.dim)
        return;
    uint row = i / p.dim;
    uint col = i % p.dim;
    y[i] = tab_at(uint(ids[row]) * p.dim + col);
}
