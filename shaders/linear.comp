#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_ballot : require
#extension GL_EXT_control_flow_attributes : require
// Linear, register-blocked (see linear-gemm.glsl):
//     y[m, n] = x[m, :] . w[n, :] (+ bias[n]) (+ residual[m, n])
// Bindings are windows onto the tensors (the host splits big weights along N and big
// activations along M); *_off are element offsets inside each window.
#include "common.glsl"
#ifndef TM
#define TM 16u
#endif
#ifndef TN
#define TN 4u
#endif
#ifndef LOCAL
#define LOCAL 64u
#endif
layout(local_size_x = LOCAL) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
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

uint gemm_M() { return p.M; }
uint gemm_N() { return p.N; }
uint gemm_K() { return p.K; }

uint xrow[TM];
void a_rows(uint m0)
{
    [[unroll]] for (uint i = 0u; i < TM; i++)
        xrow[i] = p.x_off + min(m0 + i, p.M - 1u) * p.K;
}
uint ak;
bool ak_valid;
void a_kprep(uint k, bool tail)
{
    ak_valid = !tail || k < p.K;
    ak = tail ? min(k, p.K - 1u) : k;
}
float a_load(uint i)
{
    float v = x[xrow[i] + ak];
    return ak_valid ? v : 0.0;
}

float bias_at(uint n)
{
    uint i = p.b_off + n;
    if ((p.flags & 8u) != 0u)
        return unpackHalf2x16(bias[i >> 1])[i & 1u];
    return uintBitsToFloat(bias[i]);
}

void c_store(uint m, uint n, float v)
{
    uint o = m * p.ldy + n;
    if ((p.flags & 1u) != 0u)
        v += bias_at(n);
    if ((p.flags & 2u) != 0u)
        v += res[p.r_off + o];
    if ((p.flags & 4u) != 0u)
        v += y[p.y_off + o];
    y[p.y_off + o] = v;
}

#include "linear-gemm.glsl"

void main()
{
    gemm_run();
}
