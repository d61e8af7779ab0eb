// Accurate fp32 sin, cos and acos for shaders that need them (timestep.comp, slerp.comp).
// The GLSL built-ins are only bounded on [-pi, pi] for sin/cos (2^-11 absolute) and to
// thousands of ulp for acos in the Vulkan spec, and diffusion timesteps feed sin/cos with
// arguments near 1000 rad. These follow Cephes' sinf/cosf/asinf: about 1-2 ulp.

// Cody-Waite reduction by pi/4 in three parts: DP1 and DP2 have few significant bits, so
// j * DP1 and j * DP2 are exact for |x| < 8192 and the reduced argument is accurate to about
// one ulp. `precise` keeps the compiler from contracting or reassociating the subtractions.
const float TRIG_DP1 = 0.78515625;
const float TRIG_DP2 = 2.4187564849853515625e-4;
const float TRIG_DP3 = 3.77489497744594108e-8;
const float TRIG_FOPI = 1.27323954473516; // 4 / pi
const float TRIG_PI = 3.14159265358979;
const float TRIG_PIO2 = 1.57079632679490;

float trig_sin_poly(float z, float zz)
{
    return ((-1.9515295891e-4 * zz + 8.3321608736e-3) * zz - 1.6666654611e-1) * zz * z + z;
}

float trig_cos_poly(float zz)
{
    return ((2.443315711809948e-5 * zz - 1.388731625493765e-3) * zz + 4.166664568298827e-2) *
               zz * zz - 0.5 * zz + 1.0;
}

// sin (want_cos false) or cos (true) of x, accurate for |x| < 8192.
float trig_sincos(float x, bool want_cos)
{
    float ax = abs(x);
    uint j = uint(TRIG_FOPI * ax);
    j += j & 1u;             // to an even octant: the reduced argument lies in [-pi/4, pi/4]
    float fj = float(j);
    precise float z = ((ax - fj * TRIG_DP1) - fj * TRIG_DP2) - fj * TRIG_DP3;
    float zz = z * z;
    uint q = (j >> 1u) & 3u; // quadrant: ax = q pi/2 + z (mod 2 pi)
    if (want_cos)
        q += 1u;             // cos(a) = sin(a + pi/2)
    float v = (q & 1u) == 0u ? trig_sin_poly(z, zz) : trig_cos_poly(zz);
    if ((q & 2u) != 0u)
        v = -v;
    if (!want_cos && x < 0.0)
        v = -v;              // sin is odd, cos even
    return v;
}

float trig_sin(float x) { return trig_sincos(x, false); }
float trig_cos(float x) { return trig_sincos(x, true); }

// asin on [-0.5, 0.5] (Cephes' asinf polynomial).
float trig_asin_small(float x)
{
    float z = x * x;
    return ((((4.2163199048e-2 * z + 2.4181311049e-2) * z + 4.5470025998e-2) * z +
             7.4953002686e-2) * z + 1.6666752422e-1) * z * x + x;
}

// acos on [-1, 1]: near +-1 through the half-angle identity, which keeps the relative
// accuracy of small angles (the angle between nearly parallel vectors).
float trig_acos(float x)
{
    if (x > 0.5)
        return 2.0 * trig_asin_small(sqrt(0.5 * (1.0 - x)));
    if (x < -0.5)
        return TRIG_PI - 2.0 * trig_asin_small(sqrt(0.5 * (1.0 + x)));
    return TRIG_PIO2 - trig_asin_small(x);
}
