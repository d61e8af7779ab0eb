#version 450
#extension GL_GOOGLE_include_directive : require
// Sinusoidal timestep embedding (diffusers' get_timestep_embedding), one invocation per
// output element of y [batch, dim].
// The host uploads tf = [t_0 .. t_{batch-1}, f_0 .. f_{half-1}]: the timesteps and the fp32
// frequencies, computed on the host with the exact fp32 steps torch uses (see ops.h). Here
// arg = t * f is one correctly rounded fp32 multiply, as in torch, and sin/cos of it come
// from trig.glsl: the arguments reach ~1000 rad, where the GLSL built-ins have no precision
// guarantee (Vulkan bounds them on [-pi, pi] only).
#include "common.glsl"
#include "trig.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer TF { float tf[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint n;        // batch * dim
    uint batch, dim, half_dim;
    uint flip;     // 1: [cos, sin]; 0: [sin, cos]
} p;

void main()
{
    uint i = flat_index(256u);
    if (i >= p.n)
        return;
    uint b = i / p.dim;
    uint c = i % p.dim;
    float v = 0.0; // the zero column of an odd dim
    if (c < 2u * p.half_dim) {
        bool second = c >= p.half_dim;
        uint k = second ? c - p.half_dim : c;
        precise float arg = tf[b] * tf[p.batch + k];
        // without flip: [sin, cos]; with flip: [cos, sin]
        bool want_cos = (p.flip != 0u) ? !second : second;
        v = trig_sincos(arg, want_cos);
    }
    y[i] = v;
}
