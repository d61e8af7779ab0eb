#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef W_V64
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#endif
// Linear, register-blocked:  y[m, n] = x[m, :] . w[n, :] (+ bias[n]) (+ residual[m, n])
//
// Each invocation computes a TM x TN block of y (rows (wg.y * LY + ly) * TM + i, columns
// (wg.x * LX + lx) * TN + j), walking K in chunks of 8 and keeping the block in registers.
// Lanes of a subgroup differ in lx, so they read the same x rows (cache hits).
//
// Why no shared memory or subgroup broadcast: on lavapipe every load whose address differs
// per lane is a scalar loop over the lanes, and so is every cross-lane operation; barriers are
// costly. What remains is the number of 32-bit (or 64-bit) components each lane loads per FMA:
// TM * TN * 8 FMAs per (TM + TN) * 8 values. The load width is a variant:
//   (default) scalar loads, any K and offsets, with a masked tail chunk;
//   W_VEC     K % 8 == 0 and 8-aligned rows: vec4 / uvec4 loads;
//   W_V64     the same through 64-bit components (needs shaderInt64): half the components.
//
// Bindings are windows onto the tensors (the host splits big weights along N and big
// activations along M); *_off are element offsets inside each window.
#include "common.glsl"
// Tile sizes are specialization constants 0..3 (ops/linear.c picks them per device; the
// *_DEF defines only give defaults).
#ifndef TM_DEF
#define TM_DEF 12u
#endif
#ifndef TN_DEF
#define TN_DEF 8u
#endif
#ifndef LX_DEF
#define LX_DEF 8u
#endif
#ifndef LY_DEF
#define LY_DEF 8u
#endif
layout(constant_id = 0) const uint TM = TM_DEF;
layout(constant_id = 1) const uint TN = TN_DEF;
layout(constant_id = 2) const uint LX = LX_DEF;
layout(constant_id = 3) const uint LY = LY_DEF;
layout(local_size_x_id = 2, local_size_y_id = 3) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 0) readonly buffer XV { vec4 xv[]; };
#ifdef W_F16
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer WV { uvec4 wv[]; };
#else
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 1) readonly buffer WV { vec4 wv[]; };
#endif
#ifdef W_V64
layout(std430, binding = 0) readonly buffer XQ { u64vec4 xq[]; };
#ifdef W_F16
layout(std430, binding = 1) readonly buffer WQ { u64vec2 wq[]; };
#else
layout(std430, binding = 1) readonly buffer WQ { u64vec4 wq[]; };
#endif
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

float w_at(uint i)
{
#ifdef W_F16
    return unpackHalf2x16(w[i >> 1])[i & 1u];
#else
    return w[i];
#endif
}

#ifdef W_V64
void split8(u64vec4 q, out float v[8])
{
    uvec2 a = unpack32(q.x), b = unpack32(q.y), c = unpack32(q.z), d = unpack32(q.w);
    v[0] = uintBitsToFloat(a.x); v[1] = uintBitsToFloat(a.y);
    v[2] = uintBitsToFloat(b.x); v[3] = uintBitsToFloat(b.y);
    v[4] = uintBitsToFloat(c.x); v[5] = uintBitsToFloat(c.y);
    v[6] = uintBitsToFloat(d.x); v[7] = uintBitsToFloat(d.y);
}
#endif

void halves8(uvec4 q, out float v[8])
{
    vec2 h0 = unpackHalf2x16(q.x), h1 = unpackHalf2x16(q.y);
    vec2 h2 = unpackHalf2x16(q.z), h3 = unpackHalf2x16(q.w);
    v[0] = h0.x; v[1] = h0.y; v[2] = h1.x; v[3] = h1.y;
    v[4] = h2.x; v[5] = h2.y; v[6] = h3.x; v[7] = h3.y;
}

// x[e .. e+7] (e: element index, 8-aligned in the vector variants).
void x_load8(uint e, out float v[8])
{
#if defined(W_V64)
    split8(xq[e >> 3], v);
#elif defined(W_VEC)
    vec4 q0 = xv[e >> 2], q1 = xv[(e >> 2) + 1u];
    v[0] = q0.x; v[1] = q0.y; v[2] = q0.z; v[3] = q0.w;
    v[4] = q1.x; v[5] = q1.y; v[6] = q1.z; v[7] = q1.w;
#else
    [[unroll]] for (uint t = 0u; t < 8u; t++)
        v[t] = x[e + t];
#endif
}

// w[e .. e+7].
void w_load8(uint e, out float v[8])
{
#if defined(W_V64) && defined(W_F16)
    u64vec2 q = wq[e >> 3];
    halves8(uvec4(unpack32(q.x), unpack32(q.y)), v);
#elif defined(W_V64)
    split8(wq[e >> 3], v);
#elif defined(W_VEC) && defined(W_F16)
    halves8(wv[e >> 3], v);
#elif defined(W_VEC)
    vec4 q0 = wv[e >> 2], q1 = wv[(e >> 2) + 1u];
    v[0] = q0.x; v[1] = q0.y; v[2] = q0.z; v[3] = q0.w;
    v[4] = q1.x; v[5] = q1.y; v[6] = q1.z; v[7] = q1.w;
#else
    [[unroll]] for (uint t = 0u; t < 8u; t++)
        v[t] = w_at(e + t);
#endif
}

float bias_at(uint n)
{
    uint i = p.b_off + n;
    if ((p.flags & 8u) != 0u)
        return unpackHalf2x16(bias[i >> 1])[i & 1u];
    return uintBitsToFloat(bias[i]);
}

void main()
{
    uint m0 = (gl_WorkGroupID.y * LY + gl_LocalInvocationID.y) * TM;
    uint n0 = (gl_WorkGroupID.x * LX + gl_LocalInvocationID.x) * TN;
    // Rows and columns past the edge read the last valid one; their results are dropped.
    uint xrow[TM];
    [[unroll]] for (uint i = 0u; i < TM; i++)
        xrow[i] = p.x_off + min(m0 + i, p.M - 1u) * p.K;
    uint wrow[TN];
    [[unroll]] for (uint j = 0u; j < TN; j++)
        wrow[j] = p.w_off + min(n0 + j, p.N - 1u) * p.wk;
    float acc[TM][TN];
    [[unroll]] for (uint i = 0u; i < TM; i++)
        [[unroll]] for (uint j = 0u; j < TN; j++)
            acc[i][j] = 0.0;

    uint k0 = 0u;
    for (; k0 + 8u <= p.K; k0 += 8u) {
        float a[TM][8];
        float b[TN][8];
        [[unroll]] for (uint i = 0u; i < TM; i++)
            x_load8(xrow[i] + k0, a[i]);
        [[unroll]] for (uint j = 0u; j < TN; j++)
            w_load8(wrow[j] + k0, b[j]);
        [[unroll]] for (uint t = 0u; t < 8u; t++)
            [[unroll]] for (uint i = 0u; i < TM; i++)
                [[unroll]] for (uint j = 0u; j < TN; j++)
                    acc[i][j] = fma(a[i][t], b[j][t], acc[i][j]);
    }
#if !defined(W_VEC) && !defined(W_V64)
    // Tail: the last K % 8 columns, one at a time.
    for (; k0 < p.K; k0++) {
        float a[TM];
        float b[TN];
        [[unroll]] for (uint i = 0u; i < TM; i++)
            a[i] = x[xrow[i] + k0];
        [[unroll]] for (uint j = 0u; j < TN; j++)
            b[j] = w_at(wrow[j] + k0);
        [[unroll]] for (uint i = 0u; i < TM; i++)
            [[unroll]] for (uint j = 0u; j < TN; j++)
                acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
#endif

    [[unroll]] for (uint i = 0u; i < TM; i++) {
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            uint m = m0 + i, n = n0 + j;
            if (m < p.M && n < p.N) {
                uint o = m * p.ldy + n;
                float v = acc[i][j];
                if ((p.flags & 1u) != 0u)
                    v += bias_at(n);
                if ((p.flags & 2u) != 0u)
                    v += res[p.r_off + o];
                if ((p.flags & 4u) != 0u)
                    v += y[p.y_off + o];
                y[p.y_off + o] = v;
            }
        }
    }
}
