#version 450
#extension GL_GOOGLE_include_directive : require
// Layer norm of one row of x: [rows, C] per workgroup: two-pass mean and biased variance in
// fp32, then y = (x - mean) * rstd * gamma + beta. x and y may be the same buffer (each
// element is read, then written, by one invocation after the statistics are complete).
#include "common.glsl"
#define WG 128
layout(local_size_x = WG) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
#ifdef W_F16
layout(std430, binding = 1) readonly buffer G { uint gamma_w[]; };
layout(std430, binding = 2) readonly buffer B { uint beta_w[]; };
float gamma_at(uint i) { return unpackHalf2x16(gamma_w[i >> 1])[i & 1u]; }
float beta_at(uint i) { return unpackHalf2x16(beta_w[i >> 1])[i & 1u]; }
#else
layout(std430, binding = 1) readonly buffer G { float gamma_w[]; };
layout(std430, binding = 2) readonly buffer B { float beta_w[]; };
float gamma_at(uint i) { return gamma_w[i]; }
float beta_at(uint i) { return beta_w[i]; }
#endif
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
// rows: rows in this dispatch; flags: 1 gamma, 2 beta.
layout(push_constant) uniform P { uint rows, c, flags; float eps; } p;

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
    uint base = row * p.c;
    float acc = 0.0;
    for (uint i = lid; i < p.c; i += WG)
        acc += x[base + i];
    float mean = wg_sum(acc) / float(p.c);
    acc = 0.0;
    for (uint i = lid; i < p.c; i += WG) {
        float d = x[base + i] - mean;
        acc += d * d;
    }
    float rstd = inversesqrt(wg_sum(acc) / float(p.c) + p.eps);
    for (uint i = lid; i < p.c; i += WG) {
        float v = (x[base + i] - mean) * rstd;
        if ((p.flags & 1u) != 0u)
            v *= gamma_at(i);
        if ((p.flags & 2u) != 0u)
            v += beta_at(i);
        y[base + i] = v;
    }
}
