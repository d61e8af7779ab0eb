#version 450
#extension GL_GOOGLE_include_directive : require
// Layer norm of one row of x: [rows, C] per workgroup: two-pass mean and biased variance in
// fp32, then y = (x - mean) * rstd * gamma + beta. x and y may be the same buffer (each
// element is read, then written, by one invocation after the statistics are complete).
// VEC4: C is a multiple of 4; rows are read and written as vec4s (4x fewer loads, which are
// loops over lanes on lavapipe).
#include "common.glsl"
#if VEC4
#define T vec4
#define HSUM(v) ((v).x + (v).y + (v).z + (v).w)
#else
#define T float
#define HSUM(v) (v)
#endif
// Small workgroups: on lavapipe every barrier switches between all of a workgroup's
// 8-lane slices; 32 measured fastest (group norm 1.3x, layer norm 2.5x, softmax 1.8x faster
// than 128-256).
#define WG 32
layout(local_size_x = WG) in;
layout(std430, binding = 0) readonly buffer X { T x[]; };
#ifdef W_F16
layout(std430, binding = 1) readonly buffer G { uint gamma_w[]; };
layout(std430, binding = 2) readonly buffer B { uint beta_w[]; };
float gamma_at(uint i) { return unpackHalf2x16(gamma_w[i >> 1])[i & 1u]; }
float beta_at(uint i) { return unpackHalf2x16(beta_w[i >> 1])[i & 1u]; }
// elements 4i .. 4i+3
vec4 gamma4_at(uint i)
{
    return vec4(unpackHalf2x16(gamma_w[2u * i]), unpackHalf2x16(gamma_w[2u * i + 1u]));
}
vec4 beta4_at(uint i)
{
    return vec4(unpackHalf2x16(beta_w[2u * i]), unpackHalf2x16(beta_w[2u * i + 1u]));
}
#else
layout(std430, binding = 1) readonly buffer G { float gamma_w[]; };
layout(std430, binding = 2) readonly buffer B { float beta_w[]; };
float gamma_at(uint i) { return gamma_w[i]; }
float beta_at(uint i) { return beta_w[i]; }
layout(std430, binding = 1) readonly buffer G4 { vec4 gamma_w4[]; };
layout(std430, binding = 2) readonly buffer B4 { vec4 beta_w4[]; };
vec4 gamma4_at(uint i) { return gamma_w4[i]; }
vec4 beta4_at(uint i) { return beta_w4[i]; }
#endif
layout(std430, binding = 3) writeonly buffer Y { T y[]; };
// rows: rows in this dispatch, starting at row r0; c: row length in units of T; flags:
// 1 gamma, 2 beta; count: row length in floats; bx / by: the element (T units) x and y are
// bound from (windows of tensors larger than one binding).
layout(push_constant) uniform P { uint rows, c, flags, count; float eps; uint r0, bx, by; } p;

shared float red[WG];

float wg_sum(float v)
{
    uint lid = gl_LocalInvocationID.x;
    red[lid] = v;
    barrier();
    for (uint k = WG / 2; k > 0; k >>= 1) {
        if (lid < k)
            red[lid] += red[lid + k];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main()
{
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= p.rows)
        return;  // uniform over the workgroup, so no barrier is skipped by part of it
    uint lid = gl_LocalInvocationID.x;
    uint xb = (p.r0 + row) * p.c - p.bx;
    uint yb = (p.r0 + row) * p.c - p.by;
    T acc = T(0.0);
    for (uint i = lid; i < p.c; i += WG)
        acc += x[xb + i];
    float mean = wg_sum(HSUM(acc)) / float(p.count);
    acc = T(0.0);
    for (uint i = lid; i < p.c; i += WG) {
        T d = x[xb + i] - mean;
        acc += d * d;
    }
    float rstd = inversesqrt(wg_sum(HSUM(acc)) / float(p.count) + p.eps);
    for (uint i = lid; i < p.c; i += WG) {
        T v = (x[xb + i] - mean) * rstd;
#if VEC4
        if ((p.flags & 1u) != 0u)
            v *= gamma4_at(i);
        if ((p.flags & 2u) != 0u)
            v += beta4_at(i);
#else
        if ((p.flags & 1u) != 0u)
            v *= gamma_at(i);
        if ((p.flags & 2u) != 0u)
            v += beta_at(i);
#endif
        y[yb + i] = v;
    }
}
