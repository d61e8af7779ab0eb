// Register-blocked GEMM core shared by linear.comp and conv2d.comp:
//     C[m, n] = sum_k A[m, k] * Wt[n, k]      (Wt row-major with row stride p.wk)
//
// Tiling. A workgroup of LOCAL invocations shares TM rows m0 .. m0+TM-1; invocation l owns
// the TN columns (wg.x * LOCAL + l) * TN + j. K is walked in chunks of 8.
// Why this shape: lavapipe turns every load whose address differs between lanes into a
// scalar loop over the 8 lanes, so loads, not FMAs, bound the speed. The A values of a
// chunk are the same for every lane, so lane s loads A[m0+i, k0 + s%8] once and the others
// get it through subgroupBroadcast (a register extract on lavapipe): per chunk a lane does
// TM loads of A and 8*TN of Wt for 8*TM*TN FMAs. The subgroup size must be a multiple of 8.
//
// The includer enables GL_KHR_shader_subgroup_basic, GL_KHR_shader_subgroup_ballot and
// GL_EXT_control_flow_attributes; defines TM, TN, LOCAL, optionally W_F16 and W_VEC (every
// weight row starts at a multiple of 8 elements and K % 8 == 0: 128-bit loads, no tail);
// declares push constants p with w_off and wk; and provides
//     uint  gemm_M(), gemm_N(), gemm_K()        tile bounds of this dispatch
//     void  a_rows(uint m0)                     prepares rows m0 .. m0+TM-1 (clamped)
//     void  a_kprep(uint k, bool tail)          prepares column k of A for a_load (when
//                                               tail, k may be >= K and A is then 0)
//     float a_load(uint i)                      A[m0+i, k]
//     void  c_store(uint m, uint n, float v)    writes one valid output

#ifdef W_F16
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer WV { uvec4 wv[]; };
float w_at(uint i) { return unpackHalf2x16(w[i >> 1])[i & 1u]; }
#else
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 1) readonly buffer WV { vec4 wv[]; };
float w_at(uint i) { return w[i]; }
#endif

// The 8 weights Wt[n, k0 .. k0+7] of row start `e` (element index of Wt[n, k0]).
void w_load8(uint e, out float v[8])
{
#if defined(W_VEC) && defined(W_F16)
    uvec4 q = wv[e >> 3];
    vec2 h0 = unpackHalf2x16(q.x), h1 = unpackHalf2x16(q.y);
    vec2 h2 = unpackHalf2x16(q.z), h3 = unpackHalf2x16(q.w);
    v[0] = h0.x; v[1] = h0.y; v[2] = h1.x; v[3] = h1.y;
    v[4] = h2.x; v[5] = h2.y; v[6] = h3.x; v[7] = h3.y;
#elif defined(W_VEC)
    vec4 q0 = wv[e >> 2], q1 = wv[(e >> 2) + 1u];
    v[0] = q0.x; v[1] = q0.y; v[2] = q0.z; v[3] = q0.w;
    v[4] = q1.x; v[5] = q1.y; v[6] = q1.z; v[7] = q1.w;
#else
    [[unroll]] for (uint t = 0u; t < 8u; t++)
        v[t] = w_at(e + t);
#endif
}

// One k-chunk: `full` chunks read everything; the tail chunk (non-W_VEC only) clamps the
// weight index to the row (A is 0 there, so those products vanish).
#define GEMM_BCAST_STEP(KK)                                                     \
    [[unroll]] for (uint i = 0u; i < TM; i++) {                                 \
        float a = subgroupBroadcast(av[i], KK);                                 \
        [[unroll]] for (uint j = 0u; j < TN; j++)                               \
            acc[i][j] = fma(a, wv8[j][KK], acc[i][j]);                          \
    }

void gemm_run()
{
    uint M = gemm_M(), N = gemm_N(), K = gemm_K();
    uint lane8 = gl_SubgroupInvocationID & 7u;
    uint m0 = gl_WorkGroupID.y * TM;
    uint nb = (gl_WorkGroupID.x * LOCAL + gl_LocalInvocationID.x) * TN;
    a_rows(m0);
    uint wrow[TN];
    [[unroll]] for (uint j = 0u; j < TN; j++)
        wrow[j] = p.w_off + min(nb + j, N - 1u) * p.wk;
    float acc[TM][TN];
    [[unroll]] for (uint i = 0u; i < TM; i++)
        [[unroll]] for (uint j = 0u; j < TN; j++)
            acc[i][j] = 0.0;

    uint k0 = 0u;
    for (; k0 + 8u <= K; k0 += 8u) {
        float av[TM];
        a_kprep(k0 + lane8, false);
        [[unroll]] for (uint i = 0u; i < TM; i++)
            av[i] = a_load(i);
        float wv8[TN][8];
        [[unroll]] for (uint j = 0u; j < TN; j++)
            w_load8(wrow[j] + k0, wv8[j]);
        GEMM_BCAST_STEP(0u) GEMM_BCAST_STEP(1u) GEMM_BCAST_STEP(2u) GEMM_BCAST_STEP(3u)
        GEMM_BCAST_STEP(4u) GEMM_BCAST_STEP(5u) GEMM_BCAST_STEP(6u) GEMM_BCAST_STEP(7u)
    }
#ifndef W_VEC
    if (k0 < K) {
        float av[TM];
        a_kprep(k0 + lane8, true);
        [[unroll]] for (uint i = 0u; i < TM; i++)
            av[i] = a_load(i);
        float wv8[TN][8];
        [[unroll]] for (uint j = 0u; j < TN; j++)
            [[unroll]] for (uint t = 0u; t < 8u; t++)
                wv8[j][t] = w_at(wrow[j] + min(k0 + t, K - 1u));
        GEMM_BCAST_STEP(0u) GEMM_BCAST_STEP(1u) GEMM_BCAST_STEP(2u) GEMM_BCAST_STEP(3u)
        GEMM_BCAST_STEP(4u) GEMM_BCAST_STEP(5u) GEMM_BCAST_STEP(6u) GEMM_BCAST_STEP(7u)
    }
#endif
    [[unroll]] for (uint i = 0u; i < TM; i++)
        [[unroll]] for (uint j = 0u; j < TN; j++)
            if (m0 + i < M && nb + j < N)
                c_store(m0 + i, nb + j, acc[i][j]);
}
