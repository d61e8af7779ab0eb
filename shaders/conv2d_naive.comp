#version 450
#extension GL_GOOGLE_include_directive : require
// 2-D convolution, one output per invocation: the simple fallback and benchmark baseline.
// Same push constants and windows as conv2d.comp, with pixels for blocks: rows
// m = (image, output pixel) of the window from m_base; the workgroup's y index is the output
// channel.
#include "common.glsl"
layout(local_size_x = 64) in;
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
layout(std430, binding = 5) readonly buffer T { float tb[]; };
layout(push_constant) uniform P {
    uint rows, m_base;
    uint cin, h, w;
    uint cout, ho, wo;
    uint stride, pad, ks;
    uint wk;
    uint x_img, y_img;
    uint flags;        // 1: bias, 2: residual buffer, 4: accumulate onto y, 8: bias is F16,
                       // 16: per-image channel bias tb[t_off + b * t_img + co]
    uint x_off, w_off, b_off, r_off, y_off;
    uint unused_nbx;
    uint t_off, t_img;
} p;
void main()
{
    uint r = gl_GlobalInvocationID.x;
    uint co = gl_WorkGroupID.y;
    if (r >= p.rows)
        return;
    uint hwo = p.ho * p.wo;
    uint m = p.m_base + r;
    uint b = m / hwo, pix = m % hwo;
    uint oy = pix / p.wo, ox = pix % p.wo;
    int iy0 = int(oy * p.stride) - int(p.pad);
    int ix0 = int(ox * p.stride) - int(p.pad);
    uint xb = p.x_off + b * p.x_img;
    uint wb = p.w_off + co * p.wk;
    float acc = 0.0;
    for (uint ci = 0u; ci < p.cin; ci++) {
        for (uint ky = 0u; ky < p.ks; ky++) {
            int iy = iy0 + int(ky);
            if (iy < 0 || iy >= int(p.h))
                continue;
            for (uint kx = 0u; kx < p.ks; kx++) {
                int ix = ix0 + int(kx);
                if (ix < 0 || ix >= int(p.w))
                    continue;
                acc = fma(x[xb + (ci * p.h + uint(iy)) * p.w + uint(ix)],
                          w_at(wb + (ci * p.ks + ky) * p.ks + kx), acc);
            }
        }
    }
    uint o = b * p.y_img + co * hwo + pix;
    if ((p.flags & 1u) != 0u) {
        uint bi = p.b_off + co;
        acc += (p.flags & 8u) != 0u ? unpackHalf2x16(bias[bi >> 1])[bi & 1u]
                                    : uintBitsToFloat(bias[bi]);
    }
    if ((p.flags & 16u) != 0u)
        acc += tb[p.t_off + b * p.t_img + co];
    if ((p.flags & 2u) != 0u)
        acc += res[p.r_off + o];
    if ((p.flags & 4u) != 0u)
        acc += y[p.y_off + o];
    y[p.y_off + o] = acc;
}
