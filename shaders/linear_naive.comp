#version 450
#extension GL_GOOGLE_include_directive : require
// Linear, one output per invocation: the simple fallback (and the baseline the benchmark
// compares against). y[m, n] = x[m, :] . w[n, :] (+ bias[n]) (+ residual[m, n]).
// Bindings are windows onto the tensors; *_off are element offsets inside each window.
#include "common.glsl"
layout(local_size_x = 16, local_size_y = 4) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
#ifdef W_F16
layout(std430, binding = 1) readonly buffer W { uint w[]; };
float w_at(uint i) { return unpackHalf2x16(w[i >> 1])[i & 1u]; }
#else
layout(std430, binding = 1) readonly buffer W { float w[]; };
float w_at(uint i) { return w[i]; }
#endif
layout(std430, binding = 2) readonly buffer B { uint bias[]; };
layout(std430, binding = 3) readonly buffer R { float res[]; };
layout(std430, binding = 4) buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint M, N, K;   // rows, columns of this chunk, reduction length
    uint ldy;       // row stride of y and residual (the full N)
    uint flags;     // 1: bias, 2: residual buffer, 4: residual is y itself, 8: bias is F16
    uint x_off, w_off, b_off, r_off, y_off;
    uint wk;        // weight row stride (= K)
} p;
void main()
{
    uint n = gl_GlobalInvocationID.x;
    uint m = gl_GlobalInvocationID.y;
    if (n >= p.N || m >= p.M)
        return;
    uint xb = p.x_off + m * p.K;
    uint wb = p.w_off + n * p.wk;
    float acc = 0.0;
    for (uint k = 0u; k < p.K; k++)
        acc = fma(x[xb + k], w_at(wb + k), acc);
    uint o = m * p.ldy + n;
    if ((p.flags & 1u) != 0u) {
        uint bi = p.b_off + n;
        acc += (p.flags & 8u) != 0u ? unpackHalf2x16(bias[bi >> 1])[bi & 1u]
                                    : uintBitsToFloat(bias[bi]);
    }
    if ((p.flags & 2u) != 0u)
        acc += res[p.r_off + o];
    if ((p.flags & 4u) != 0u)
        acc += y[p.y_off + o];
    y[p.y_off + o] = acc;
}
