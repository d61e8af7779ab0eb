#version 450
#extension GL_GOOGLE_include_directive : require
// Group norm of one (sample, group) per workgroup over x: [N, C, S] (S = spatial size):
// two passes for mean and biased variance in fp32 (the data is re-read rather than using
// E[x^2] - E[x]^2, which cancels badly when |mean| >> std), then
//   y = ((x - mean) * rstd * gamma + beta) * (1 + scale) + shift,  optionally SiLU.
// x and y may be the same buffer: each element is read and then written by one invocation,
// after the statistics passes have finished (the reduction barriers order them).
#include "common.glsl"
#define WG 256
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
layout(std430, binding = 3) readonly buffer SS { float ss[]; };  // [N, 2C]
layout(std430, binding = 4) writeonly buffer Y { float y[]; };
// n0: index of the first sample of this dispatch (x/y are bound from that sample on).
// flags: 1 gamma, 2 beta, 4 scale_shift, 8 SiLU.
layout(push_constant) uniform P {
    uint c, s, cpg, n0, flags;
    float eps;
} p;

shared float red[WG];

// Sum of v over the workgroup (a tree; every invocation gets the result).
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
    uint g = gl_WorkGroupID.x;
    uint n = gl_WorkGroupID.y;  // sample within this dispatch
    uint lid = gl_LocalInvocationID.x;
    uint count = p.cpg * p.s;
    uint base = (n * p.c + g * p.cpg) * p.s;

    float acc = 0.0;
    for (uint i = lid; i < count; i += WG)
        acc += x[base + i];
    float mean = wg_sum(acc) / float(count);

    acc = 0.0;
    for (uint i = lid; i < count; i += WG) {
        float d = x[base + i] - mean;
        acc += d * d;
    }
    float rstd = inversesqrt(wg_sum(acc) / float(count) + p.eps);

    uint nabs = p.n0 + n;
    for (uint i = lid; i < count; i += WG) {
        uint ch = g * p.cpg + i / p.s;
        float a = rstd, b = 0.0;
        if ((p.flags & 1u) != 0u)
            a *= gamma_at(ch);
        if ((p.flags & 2u) != 0u)
            b = beta_at(ch);
        float v = (x[base + i] - mean) * a + b;
        if ((p.flags & 4u) != 0u)
            v = v * (1.0 + ss[nabs * 2u * p.c + ch]) + ss[nabs * 2u * p.c + p.c + ch];
        if ((p.flags & 8u) != 0u)
            v = v * sigmoid(v);
        y[base + i] = v;
    }
}
