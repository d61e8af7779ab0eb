#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_ballot : require
#extension GL_EXT_control_flow_attributes : require
// 2-D convolution as an implicit GEMM (no im2col buffer), register-blocked through
// linear-gemm.glsl:
//     rows    m = (image, output pixel), flattened over the images of the window
//     columns n = output channel
//     k       = (input channel, ky, kx), which is exactly the row layout of the PyTorch
//               weight [Cout, Cin, KS, KS], so the weights are read in place.
// A[m, k] is x at the tapped input pixel, 0 in the zero padding. KS (1 or 3) is a define.
// The host may split Cin (passes after the first accumulate onto y, flag 4), Cout and the
// rows; *_off are element offsets inside each binding window.
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
    uint rows, m_base; // rows of this dispatch, starting at row m_base of the window
    uint cin, h, w;    // input channels of this pass, input size
    uint cout, ho, wo; // output channels of this chunk, output size
    uint stride, pad, ks;
    uint wk;           // weight row stride: Cin_total * KS * KS
    uint x_img, y_img; // element strides between images in x and in y/residual
    uint flags;        // 1: bias, 2: residual buffer, 4: accumulate onto y, 8: bias is F16
    uint x_off, w_off, b_off, r_off, y_off;
} p;

uint gemm_M() { return p.rows; }
uint gemm_N() { return p.cout; }
uint gemm_K() { return p.cin * KS * KS; }

// Per row: the element index of the input pixel under tap (0, 0) (may lie in the padding,
// so it is kept signed) and that pixel's coordinates.
int rbase[TM];
int riy[TM];
int rix[TM];
void a_rows(uint m0)
{
    uint hwo = p.ho * p.wo;
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint m = p.m_base + min(m0 + i, p.rows - 1u);
        uint b = m / hwo, pix = m - b * hwo;
        uint oy = pix / p.wo, ox = pix - oy * p.wo;
        riy[i] = int(oy * p.stride) - int(p.pad);
        rix[i] = int(ox * p.stride) - int(p.pad);
        rbase[i] = int(p.x_off + b * p.x_img) + riy[i] * int(p.w) + rix[i];
    }
}

int kofs;       // offset of tap (ci, ky, kx) relative to the row's base
int kky, kkx;
bool kvalid;
void a_kprep(uint k, bool tail)
{
    kvalid = !tail || k < gemm_K();
    uint ci = k / (KS * KS);
    uint r = k - ci * (KS * KS);
    uint ky = r / KS, kx = r - ky * KS;
    kky = int(ky);
    kkx = int(kx);
    kofs = int(ci * p.h * p.w) + kky * int(p.w) + kkx;
}
float a_load(uint i)
{
    bool ok = kvalid && uint(riy[i] + kky) < p.h && uint(rix[i] + kkx) < p.w;
    int idx = rbase[i] + kofs;
    float v = x[ok ? uint(idx) : 0u];
    return ok ? v : 0.0;
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
    uint hwo = p.ho * p.wo;
    uint mm = p.m_base + m;
    uint b = mm / hwo, pix = mm - b * hwo;
    uint o = b * p.y_img + n * hwo + pix;
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
