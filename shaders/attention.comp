#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// Fused multi-head attention with an online softmax (flash-attention style). Each invocation
// owns QPI query rows of one (batch, head) and visits the keys in order, keeping for every
// query the running maximum m, the running sum l and the unnormalised output o; they are
// rescaled whenever the maximum grows. The scores never reach memory.
//
// Keys/values come from two sources visited in order (k1/v1 rows, then k2/v2 rows), so the
// concatenation [encoder tokens; spatial tokens] is never built.
//
// Cost model (lavapipe, the CPU driver this must be fast on): a buffer load is a loop over
// the 8 lanes of a vector, whatever the addresses; cross-lane operations (subgroup
// broadcasts) are loops too. Arithmetic on registers is cheap. So every lane reads the key
// and value rows itself as whole vec4s and uses each loaded element for QPI queries; the hot
// loop handles one key per iteration and stays small, because lavapipe's LLVM compile time
// grows quickly with the number of load sites.
//
// Defines: HD   head-dim capacity, a multiple of 4 (q and o live in registers);
//          VEC4 rows start at multiples of 4 elements and head_dim is a multiple of 4: rows
//               are read as vec4s; otherwise element by element.
// Elements at or past head_dim read the row's last element (a valid address); q is zero
// there, so they add nothing, and those o entries are never written.
// Scores are in base 2: q is pre-multiplied by scale * log2(e) and the key bias by log2(e),
// so exp2 replaces exp.
#include "common.glsl"
#ifndef HD
#define HD 64
#endif
#ifndef VEC4
#define VEC4 0
#endif
#define WG 64
// Queries per invocation: more reuse of every loaded element, more registers (the host
// mirrors this choice in attention.c).
#ifndef QPI
#if HD > 64
#define QPI 2
#else
#define QPI 4
#endif
#endif
#define NC (HD / 4) // vec4 chunks of a row
layout(local_size_x = WG) in;
layout(std430, binding = 0) readonly buffer Q { float qb[]; };
layout(std430, binding = 1) readonly buffer K1 { float k1b[]; };
layout(std430, binding = 2) readonly buffer V1 { float v1b[]; };
layout(std430, binding = 3) readonly buffer K2 { float k2b[]; };
layout(std430, binding = 4) readonly buffer V2 { float v2b[]; };
layout(std430, binding = 5) readonly buffer KB { float kbias[]; };  // [B, L1]
layout(std430, binding = 6) writeonly buffer O { float ob[]; };     // [B, Lq, H * D]
#if VEC4
// The same buffers seen as vec4s.
layout(std430, binding = 1) readonly buffer K1v { vec4 k1bv[]; };
layout(std430, binding = 2) readonly buffer V1v { vec4 v1bv[]; };
layout(std430, binding = 3) readonly buffer K2v { vec4 k2bv[]; };
layout(std430, binding = 4) readonly buffer V2v { vec4 v2bv[]; };
#endif
// flags: 1 causal, 2 key bias. z0: first (batch * n_heads + head) index of this dispatch;
// qb0: first block of WG * QPI queries of this dispatch.
// For each sequence: element offset, row stride, batch stride, head stride.
layout(push_constant) uniform P {
    uint lq, l1, l2, n_heads, head_dim, flags, z0, qb0;
    float scale_log2;
    uint q_off, q_rs, q_bs, q_hs;
    uint k1_off, k1_rs, k1_bs, k1_hs;
    uint v1_off, v1_rs, v1_bs, v1_hs;
    uint k2_off, k2_rs, k2_bs, k2_hs;
    uint v2_off, v2_rs, v2_bs, v2_hs;
} p;

const float LOG2E = 1.4426950408889634;
const float NEG = -1.0e30;  // finite "minus infinity": m - NEG never makes a NaN

float q[QPI * HD];
float o[QPI * HD];
float m_run[QPI];
float l_run[QPI];
uint qidx[QPI];
uint dlast;  // head_dim - 1 (VEC4: head_dim / 4 - 1)

// Chunk c (elements 4c .. 4c+3) of the row starting at element `base`.
#if VEC4
#define LOAD4(BUF, base, c) BUF##v[((base) >> 2) + min(c, dlast)]
#else
#define LOAD4(BUF, base, c) vec4(BUF[(base) + min(4u * (c), dlast)],      \
                                 BUF[(base) + min(4u * (c) + 1u, dlast)], \
                                 BUF[(base) + min(4u * (c) + 2u, dlast)], \
                                 BUF[(base) + min(4u * (c) + 3u, dlast)])
#endif

// One key: the row at kbase / vbase; jg is its index in the concatenated sequence (causal);
// bias is added to every query's score (base 2).
#define DEFINE_STEP(NAME, KBUF, VBUF)                                                      \
void NAME(uint kbase, uint vbase, uint jg, float bias)                                     \
{                                                                                          \
    float s[QPI];                                                                          \
    [[unroll]] for (uint u = 0; u < QPI; u++)                                              \
        s[u] = bias;                                                                       \
    [[unroll]] for (uint c = 0; c < NC; c++) {                                             \
        vec4 kv = LOAD4(KBUF, kbase, c);                                                   \
        [[unroll]] for (uint u = 0; u < QPI; u++) {                                        \
            s[u] = fma(q[u * HD + 4 * c], kv.x, s[u]);                                     \
            s[u] = fma(q[u * HD + 4 * c + 1], kv.y, s[u]);                                 \
            s[u] = fma(q[u * HD + 4 * c + 2], kv.z, s[u]);                                 \
            s[u] = fma(q[u * HD + 4 * c + 3], kv.w, s[u]);                                 \
        }                                                                                  \
    }                                                                                      \
    float alpha[QPI], pr[QPI];                                                             \
    [[unroll]] for (uint u = 0; u < QPI; u++) {                                            \
        bool live = (p.flags & 1u) == 0u || jg <= qidx[u];                                 \
        float mn = live ? max(m_run[u], s[u]) : m_run[u];                                  \
        alpha[u] = exp2(m_run[u] - mn);                                                    \
        pr[u] = live ? exp2(s[u] - mn) : 0.0;                                              \
        l_run[u] = fma(l_run[u], alpha[u], pr[u]);                                         \
        m_run[u] = mn;                                                                     \
    }                                                                                      \
    [[unroll]] for (uint c = 0; c < NC; c++) {                                             \
        vec4 vv = LOAD4(VBUF, vbase, c);                                                   \
        [[unroll]] for (uint u = 0; u < QPI; u++) {                                        \
            o[u * HD + 4 * c] = fma(pr[u], vv.x, o[u * HD + 4 * c] * alpha[u]);            \
            o[u * HD + 4 * c + 1] = fma(pr[u], vv.y, o[u * HD + 4 * c + 1] * alpha[u]);    \
            o[u * HD + 4 * c + 2] = fma(pr[u], vv.z, o[u * HD + 4 * c + 2] * alpha[u]);    \
            o[u * HD + 4 * c + 3] = fma(pr[u], vv.w, o[u * HD + 4 * c + 3] * alpha[u]);    \
        }                                                                                  \
    }                                                                                      \
}

DEFINE_STEP(step1, k1b, v1b)
DEFINE_STEP(step2, k2b, v2b)

void main()
{
    uint z = p.z0 + gl_WorkGroupID.y;
    uint b = z / p.n_heads, h = z % p.n_heads;
    uint first = (p.qb0 + gl_WorkGroupID.x) * (WG * QPI);
    bool causal = (p.flags & 1u) != 0u;
#if VEC4
    dlast = p.head_dim / 4u - 1u;
#else
    dlast = p.head_dim - 1u;
#endif
    uint hoff = h * p.head_dim; // the output's heads are side by side

    // Query u of this lane: first + u * WG + lane; rows past the end compute a copy of the
    // last row and are not written.
    [[unroll]] for (uint u = 0; u < QPI; u++) {
        qidx[u] = first + u * WG + gl_LocalInvocationID.x;
        uint qbase = p.q_off + b * p.q_bs + min(qidx[u], p.lq - 1u) * p.q_rs + h * p.q_hs;
        [[unroll]] for (uint d = 0; d < HD; d++) {
            q[u * HD + d] = d < p.head_dim ? qb[qbase + d] * p.scale_log2 : 0.0;
            o[u * HD + d] = 0.0;
        }
        m_run[u] = NEG;
        l_run[u] = 0.0;
    }

    // Keys this workgroup needs: all of them, or (causal) up to its last query.
    uint lk = p.l1 + p.l2;
    uint kend = causal ? min(lk, min(first + WG * QPI, p.lq)) : lk;

    uint e1 = min(kend, p.l1);
    uint kb1 = p.k1_off + b * p.k1_bs + h * p.k1_hs, vb1 = p.v1_off + b * p.v1_bs + h * p.v1_hs;
    bool has_bias = (p.flags & 2u) != 0u;
    for (uint j = 0; j < e1; j++) {
        float bias = has_bias ? kbias[b * p.l1 + j] * LOG2E : 0.0;
        step1(kb1 + j * p.k1_rs, vb1 + j * p.v1_rs, j, bias);
    }
    uint e2 = kend > p.l1 ? kend - p.l1 : 0u;
    uint kb2 = p.k2_off + b * p.k2_bs + h * p.k2_hs, vb2 = p.v2_off + b * p.v2_bs + h * p.v2_hs;
    for (uint j = 0; j < e2; j++)
        step2(kb2 + j * p.k2_rs, vb2 + j * p.v2_rs, p.l1 + j, 0.0);

    [[unroll]] for (uint u = 0; u < QPI; u++) {
        if (qidx[u] < p.lq) {
            float inv = 1.0 / l_run[u];
            uint obase = (b * p.lq + qidx[u]) * p.n_heads * p.head_dim + hoff;
            [[unroll]] for (uint d = 0; d < HD; d++)
                if (d < p.head_dim)
                    ob[obase + d] = o[u * HD + d] * inv;
        }
    }
}
