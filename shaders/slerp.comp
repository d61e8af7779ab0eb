#version 450
#extension GL_GOOGLE_include_directive : require
// Row-wise spherical interpolation; one workgroup per row of a, b, y ([rows, dim]).
// The workgroup reduces |a|^2, |b|^2 and a.b in fp32 through shared memory, then every
// invocation writes y = ka * a + kb * b for its strided share of the row.
//   mode 0 (raw):  om = acos(clamp(a.b / (|a||b|), -1, 1)),
//                  ka = sin((1-w) om) / sin om, kb = sin(w om) / sin om
//   mode 1 (unit): the same coefficients applied to a/|a| and b/|b|, scaled by the
//                  linearly interpolated norm n = (1-w)|a| + w|b|: ka *= n/|a|, kb *= n/|b|
// acos and sin come from trig.glsl (the built-ins' precision is not guaranteed).
// Fallbacks: sin om < 1e-6 (parallel or opposite rows) uses ka = 1-w, kb = w; a zero row
// gives the plain lerp ka = 1-w, kb = w in both modes; w = 0 and w = 1 return a and b
// exactly.
#include "common.glsl"
#include "trig.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint rows, dim;
    float w;
    uint mode;
} p;
shared float s_aa[256];
shared float s_bb[256];
shared float s_ab[256];
void main()
{
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= p.rows)
        return; // uniform across the workgroup, so no barrier is skipped by part of it
    uint tid = gl_LocalInvocationID.x;
    uint base = row * p.dim;
    float aa = 0.0, bb = 0.0, ab = 0.0;
    for (uint c = tid; c < p.dim; c += 256u) {
        float va = a[base + c], vb = b[base + c];
        aa += va * va;
        bb += vb * vb;
        ab += va * vb;
    }
    s_aa[tid] = aa;
    s_bb[tid] = bb;
    s_ab[tid] = ab;
    barrier();
    for (uint s = 128u; s > 0u; s >>= 1u) {
        if (tid < s) {
            s_aa[tid] += s_aa[tid + s];
            s_bb[tid] += s_bb[tid + s];
            s_ab[tid] += s_ab[tid + s];
        }
        barrier();
    }
    float w = p.w;
    float na = sqrt(s_aa[0]), nb = sqrt(s_bb[0]);
    float ka = 1.0 - w, kb = w;
    if (w == 0.0) {
        ka = 1.0;
        kb = 0.0;
    } else if (w == 1.0) {
        ka = 0.0;
        kb = 1.0;
    } else if (na > 0.0 && nb > 0.0) {
        float cosom = clamp(s_ab[0] / (na * nb), -1.0, 1.0);
        float om = trig_acos(cosom);
        float so = trig_sin(om);
        if (so >= 1e-6) {
            ka = trig_sin((1.0 - w) * om) / so;
            kb = trig_sin(w * om) / so;
        }
        if (p.mode == 1u) {
            float n = (1.0 - w) * na + w * nb;
            ka *= n / na;
            kb *= n / nb;
        }
    }
    for (uint c = tid; c < p.dim; c += 256u)
        y[base + c] = ka * a[base + c] + kb * b[base + c];
}
