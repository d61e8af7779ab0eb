// Shared helpers for every compute shader.
// Weights may be F32 or F16. F16 tensors are bound as uint words holding two halves
// (element 2i in the low half), widened with unpackHalf2x16, so no 16-bit device feature
// is needed. Define W_F16 to select the F16 variant of a shader.

// Flat invocation index for 1-D work spread over a 2-D grid (x * y groups), so element
// counts beyond 65535 workgroups in x still fit.
uint flat_index(uint local_size)
{
    return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * local_size +
           gl_LocalInvocationID.x;
}

float sigmoid(float x)
{
    return 1.0 / (1.0 + exp(-x));
}

// erf with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), so exact GELU matches
// torch to float precision.
float erf_approx(float x)
{
    float z = abs(x);
    float t = 1.0 / (1.0 + 0.5 * z);
    float r = t * exp(-z * z - 1.26551223 +
                      t * (1.00002368 +
                      t * (0.37409196 +
                      t * (0.09678418 +
                      t * (-0.18628806 +
                      t * (0.27886807 +
                      t * (-1.13520398 +
                      t * (1.48851587 +
                      t * (-0.82215223 +
                      t * 0.17087277)))))))));
    return x >= 0.0 ? 1.0 - r : r - 1.0;
}

#define ACT_NONE 0u
#define ACT_SILU 1u
#define ACT_GELU 2u
#define ACT_QUICK_GELU 3u
#define ACT_CLAMP 4u

float apply_act(uint act, float v, float lo, float hi)
{
    if (act == ACT_SILU)
        return v * sigmoid(v);
    if (act == ACT_GELU)
        return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
    if (act == ACT_QUICK_GELU)
        return v * sigmoid(1.702 * v);
    if (act == ACT_CLAMP)
        return clamp(v, lo, hi);
    return v;
}
