#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef W_V64
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#endif
// 2-D convolution as an implicit GEMM (no im2col buffer), register-blocked like linear.comp:
// each invocation computes TM output pixels x TN output channels in registers.
//
//   KS = 3: the TM pixels are consecutive in one output row, so for each (input channel, ky)
//           one input row segment of S = (TM-1) * STRIDE + 3 values serves all 3 kx taps of
//           all TM pixels (STRIDE is a define: 1 or 2).
//   KS = 1: the TM pixels are consecutive in the flattened output plane; stride and padding
//           are runtime values (each pixel keeps its own input offset).
// Zero padding: taps outside the input read index 0 and are replaced by 0.
//
// The weights [Cout, Cin, KS, KS] are read in place: for output channel co, NW consecutive
// weights are loaded per step (KS 3: the 9 taps of one input channel; KS 1: 8 input channels),
// from any element offset. The load width is a variant:
//   (default)  F32: scalar loads; W_F16: 32-bit words (2 halves), 5 words per step
//   W_V64      64-bit components (needs shaderInt64): 5 per step (F32), 3 per step (F16);
//              KS 3 then also reads the input row segments through 64-bit pairs (W % 4 == 0)
// The wide loads start at the aligned element at or before the first weight and select the
// shifted values; indices are clamped to the binding, so no read leaves it.
// On lavapipe each component a lane loads costs a scalar loop over the lanes, so fewer, wider
// components are what makes this fast (see linear.comp). The ci loop is not unrolled, which
// keeps the shader small enough for llvmpipe to compile quickly.
//
// The host may split Cin into passes (flag 4 accumulates onto y), Cout into chunks, and the
// pixel blocks into dispatches (blk_base); *_off are element offsets inside the windows.
#include "common.glsl"
// Tile sizes are specialization constants (ops/conv.c picks them per device and kind; the
// defines only give the defaults): TM pixels x TN channels per invocation, LX x LY
// invocations per workgroup (LX along channels, LY along pixel blocks).
#ifndef TM_DEF
#define TM_DEF 16u
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
// KS 3 with 64-bit loads: ix0 & 3 when it is the same for every block (the host knows: TM *
// STRIDE % 4 == 0 makes it (-pad) & 3), else -1 (computed per block). A constant shift turns
// the per-element shift selects into plain register moves.
layout(constant_id = 4) const int SH_SPEC = -1;
#ifndef STRIDE
#define STRIDE 1
#endif
#if KS == 3
#define NW 9u  // weights per output channel per step: the taps of one input channel
#define CSTEP 1u
#else
#define NW 8u  // 1x1: eight input channels per step
#define CSTEP 8u
#endif
layout(local_size_x_id = 2, local_size_y_id = 3) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
#ifdef W_F16
layout(std430, binding = 1) readonly buffer W { uint w[]; };
#else
layout(std430, binding = 1) readonly buffer W { float w[]; };
#endif
#ifdef W_V64
layout(std430, binding = 1) readonly buffer WQ { uint64_t wq[]; };
layout(std430, binding = 0) readonly buffer XQ { u64vec2 xq[]; };
#endif
#ifdef W_F16
layout(std430, binding = 1) readonly buffer WH { uint wh[]; };
#endif
layout(std430, binding = 2) readonly buffer B { uint bias[]; };
layout(std430, binding = 3) readonly buffer R { float res[]; };
layout(std430, binding = 4) buffer Y { float y[]; };
layout(std430, binding = 5) readonly buffer T { float tb[]; };
layout(push_constant) uniform P {
    uint blocks, blk_base; // pixel blocks of this dispatch, starting at block blk_base
    uint cin, h, w;        // input channels of this pass, input size
    uint cout, ho, wo;     // output channels of this chunk, output size
    uint stride, pad, ks;  // ks: the kernel size (KS here; conv2d_naive.comp reads it)
    uint wk;               // weight row stride: Cin_total * KS * KS
    uint x_img, y_img;     // element strides between images in x and in y/residual
    uint flags;            // 1: bias, 2: residual buffer, 4: accumulate onto y, 8: bias F16,
                           // 16: per-image channel bias tb[t_off + b * t_img + co] (a UNet
                           // resnet's time embedding, added after the bias)
    uint x_off, w_off, b_off, r_off, y_off;
    uint nbx;              // KS 3: blocks per output row; KS 1: blocks per image
    uint t_off, t_img;     // per-image channel bias: window offset, stride between images
} p;

float w_at(uint i)
{
#ifdef W_F16
    return unpackHalf2x16(w[i >> 1])[i & 1u];
#else
    return w[i];
#endif
}

// The NW weights of one output channel starting at element e (any alignment).
void w_step(uint e, out float v[NW])
{
#if defined(W_V64) && defined(W_F16)
    // 3 x 64 bits = 12 halves from the 4-aligned element at or before e.
    uint q0 = e >> 2, sh = e & 3u, last = uint(wq.length()) - 1u;
    float h[12];
    [[unroll]] for (uint t = 0u; t < 3u; t++) {
        uvec2 q = unpack32(wq[min(q0 + t, last)]);
        vec2 lo = unpackHalf2x16(q.x), hi = unpackHalf2x16(q.y);
        h[4u * t] = lo.x; h[4u * t + 1u] = lo.y; h[4u * t + 2u] = hi.x; h[4u * t + 3u] = hi.y;
    }
    [[unroll]] for (uint t = 0u; t < NW; t++)
        v[t] = sh == 0u ? h[t] : (sh == 1u ? h[t + 1u] : (sh == 2u ? h[t + 2u] : h[t + 3u]));
#elif defined(W_V64)
    // 5 x 64 bits = 10 floats from the even element at or before e.
    uint q0 = e >> 1, last = uint(wq.length()) - 1u;
    bool odd = (e & 1u) != 0u;
    float f[10];
    [[unroll]] for (uint t = 0u; t < 5u; t++) {
        uvec2 q = unpack32(wq[min(q0 + t, last)]);
        f[2u * t] = uintBitsToFloat(q.x);
        f[2u * t + 1u] = uintBitsToFloat(q.y);
    }
    [[unroll]] for (uint t = 0u; t < NW; t++)
        v[t] = odd ? f[t + 1u] : f[t];
#elif defined(W_F16)
    // 5 words = 10 halves from the even element at or before e.
    uint q0 = e >> 1, last = uint(wh.length()) - 1u;
    bool odd = (e & 1u) != 0u;
    float h[10];
    [[unroll]] for (uint t = 0u; t < 5u; t++) {
        vec2 pr = unpackHalf2x16(wh[min(q0 + t, last)]);
        h[2u * t] = pr.x;
        h[2u * t + 1u] = pr.y;
    }
    [[unroll]] for (uint t = 0u; t < NW; t++)
        v[t] = odd ? h[t + 1u] : h[t];
#else
    uint last = uint(w.length()) - 1u;
    [[unroll]] for (uint t = 0u; t < NW; t++)
        v[t] = w[min(e + t, last)];
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
    uint hwi = p.h * p.w, hwo = p.ho * p.wo;
    uint lb = gl_WorkGroupID.y * LY + gl_LocalInvocationID.y;
    bool blk_ok = lb < p.blocks;
    uint blk = p.blk_base + min(lb, p.blocks - 1u);
    uint co0 = (gl_WorkGroupID.x * LX + gl_LocalInvocationID.x) * TN;
    uint wrow[TN];
    [[unroll]] for (uint j = 0u; j < TN; j++)
        wrow[j] = p.w_off + min(co0 + j, p.cout - 1u) * p.wk;

#if KS == 3
    uint per_img = p.ho * p.nbx;
    uint b = blk / per_img, r = blk - b * per_img;
    uint oy = r / p.nbx, ox0 = (r - oy * p.nbx) * TM;
    int iy0 = int(oy * STRIDE) - int(p.pad);
    int ix0 = int(ox0 * STRIDE) - int(p.pad);
    uint xbase = p.x_off + b * p.x_img;
    const uint S = (TM - 1u) * STRIDE + KS;
#ifdef W_V64
    const uint NA = (S + 3u + 3u) / 4u; // 64-bit pairs covering the segment from a0
    int sh = SH_SPEC >= 0 ? SH_SPEC : (ix0 & 3);
#endif
#else
    uint b = blk / p.nbx, pb = blk - b * p.nbx;
    uint xbase = p.x_off + b * p.x_img;
    int xo[TM];      // input offset of each pixel inside a channel plane
    bool xok[TM];
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint pix = min(pb * TM + i, hwo - 1u);
        uint oy = pix / p.wo, ox = pix - oy * p.wo;
        int iy = int(oy * p.stride) - int(p.pad), ix = int(ox * p.stride) - int(p.pad);
        xok[i] = uint(iy) < p.h && uint(ix) < p.w;
        xo[i] = xok[i] ? iy * int(p.w) + ix : 0;
    }
#endif

    float acc[TM][TN];
    [[unroll]] for (uint i = 0u; i < TM; i++)
        [[unroll]] for (uint j = 0u; j < TN; j++)
            acc[i][j] = 0.0;

    for (uint ci0 = 0u; ci0 < p.cin; ci0 += CSTEP) {
        float wc[TN][NW];
        [[unroll]] for (uint j = 0u; j < TN; j++)
            w_step(wrow[j] + ci0 * KS * KS, wc[j]);
#if KS == 3
        uint plane = xbase + ci0 * hwi;
        [[unroll]] for (uint ky = 0u; ky < 3u; ky++) {
            int iy = iy0 + int(ky);
            bool row_ok = uint(iy) < p.h;
            int rb = int(plane) + iy * int(p.w) + ix0;
            float seg[S];
#ifdef W_V64
            // 64-bit loads of the row segment from the 4-aligned element at or before its
            // start (rows are 4-aligned: the host uses this variant only when W % 4 == 0);
            // sh = ix0 & 3 is the same for every block of the dispatch.
            int a0 = rb - sh;
            float f[NA * 4u];
            [[unroll]] for (uint t = 0u; t < NA; t++) {
                int qi = (a0 >> 2) + int(t);
                u64vec2 q = xq[uint(clamp(qi, 0, int(xq.length()) - 1))];
                uvec2 lo = unpack32(q.x), hi = unpack32(q.y);
                f[4u * t] = uintBitsToFloat(lo.x); f[4u * t + 1u] = uintBitsToFloat(lo.y);
                f[4u * t + 2u] = uintBitsToFloat(hi.x); f[4u * t + 3u] = uintBitsToFloat(hi.y);
            }
            [[unroll]] for (uint t = 0u; t < S; t++) {
                bool ok = row_ok && uint(ix0 + int(t)) < p.w;
                float v = sh == 0 ? f[t] : (sh == 1 ? f[t + 1u] : (sh == 2 ? f[t + 2u] : f[t + 3u]));
                seg[t] = ok ? v : 0.0;
            }
#else
            [[unroll]] for (uint t = 0u; t < S; t++) {
                bool ok = row_ok && uint(ix0 + int(t)) < p.w;
                float v = x[ok ? uint(rb + int(t)) : 0u];
                seg[t] = ok ? v : 0.0;
            }
#endif
            [[unroll]] for (uint kx = 0u; kx < 3u; kx++)
                [[unroll]] for (uint i = 0u; i < TM; i++)
                    [[unroll]] for (uint j = 0u; j < TN; j++)
                        acc[i][j] = fma(seg[i * STRIDE + kx], wc[j][ky * 3u + kx], acc[i][j]);
        }
#else
        // Channels past Cin (in the last step) are skipped by zeroing both factors: the
        // weights read there may be the next row's or the allocation's uninitialised tail.
        [[unroll]] for (uint c = 0u; c < CSTEP; c++) {
            bool c_ok = ci0 + c < p.cin;
            uint plane = xbase + min(ci0 + c, p.cin - 1u) * hwi;
            float a[TM];
            [[unroll]] for (uint i = 0u; i < TM; i++) {
                float v = x[plane + uint(xo[i])];
                a[i] = c_ok && xok[i] ? v : 0.0;
            }
            [[unroll]] for (uint j = 0u; j < TN; j++) {
                float wv = c_ok ? wc[j][c] : 0.0;
                [[unroll]] for (uint i = 0u; i < TM; i++)
                    acc[i][j] = fma(a[i], wv, acc[i][j]);
            }
        }
#endif
    }

    if (!blk_ok)
        return;
    [[unroll]] for (uint i = 0u; i < TM; i++) {
#if KS == 3
        uint ox = ox0 + i;
        bool pix_ok = ox < p.wo;
        uint pix = oy * p.wo + ox;
#else
        uint pix = pb * TM + i;
        bool pix_ok = pix < hwo;
#endif
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            uint co = co0 + j;
            if (pix_ok && co < p.cout) {
                uint o = b * p.y_img + co * hwo + pix;
                float v = acc[i][j];
                if ((p.flags & 1u) != 0u)
                    v += bias_at(co);
                if ((p.flags & 16u) != 0u)
                    v += tb[p.t_off + b * p.t_img + co];
                if ((p.flags & 2u) != 0u)
                    v += res[p.r_off + o];
                if ((p.flags & 4u) != 0u)
                    v += y[p.y_off + o];
                y[p.y_off + o] = v;
            }
        }
    }
}
