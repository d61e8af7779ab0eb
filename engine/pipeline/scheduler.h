/* UnCLIPScheduler (diffusers v0.27.2, scheduling_unclip.py), reproduced in float32 on the host.
 *
 * Reference: /work/shared/reference/unclip.md section 3 and goldens README section 9.
 *   - betas: squaredcos_cap_v2 computed in double, capped at 0.999, rounded to float;
 *     alphas = 1 - betas in float; alphas_cumprod = a double running product of the float
 *     alphas, each entry rounded to float (torch's CPU cumprod).
 *   - timesteps for n steps: reverse(round_half_even(k * (N-1)/(n-1))), k = 0..n-1, in double.
 *   - step(): every scalar and element-wise quantity in float32 with the same operation order
 *     as torch, so results agree with diffusers to float rounding. The variance noise is drawn
 *     from the generator only when t > 0, before the variance is computed, with the shape of
 *     the sample (a learned-range model output's variance channels are split off first).
 *
 * The latents this runs on are small (prior [B, D], decoder [B, 3, 64, 64]), so step() works
 * on host float arrays; the caller moves data to and from the GPU. */
#ifndef UNCLIP_PIPELINE_SCHEDULER_H
#define UNCLIP_PIPELINE_SCHEDULER_H

#include "core/error.h"
#include "core/rng.h"

#include <stdbool.h>
#include <stdint.h>

enum unclip_variance_type {
    UNCLIP_VARIANCE_FIXED_SMALL_LOG = 0, /* sigma = sqrt(max(posterior variance, 1e-20)) */
    UNCLIP_VARIANCE_LEARNED_RANGE,       /* sigma interpolated in log space by the model  */
};

enum unclip_prediction_type {
    UNCLIP_PREDICTION_EPSILON = 0, /* the model predicts the noise        */
    UNCLIP_PREDICTION_SAMPLE,      /* the model predicts x0 directly (prior) */
};

/* scheduler_config.json of an UnCLIPScheduler. */
struct unclip_sched_config {
    int32_t num_train_timesteps;                 /* >= 2; diffusers default 1000           */
    enum unclip_variance_type variance_type;     /* default fixed_small_log                */
    enum unclip_prediction_type prediction_type; /* default epsilon                        */
    bool clip_sample;                            /* default true                           */
    float clip_sample_range;                     /* > 0; default 1.0                       */
};

/* diffusers' defaults for UnCLIPScheduler (the values used for absent keys). */
struct unclip_sched_config unclip__sched_config_default(void);

struct unclip_json;

/* Reads an UnCLIPScheduler scheduler_config.json document (io/json.h; e.g. from
 * unclip__model_dir_config(d, "decoder_scheduler", ..)). Absent or null keys take the defaults
 * above. "beta_schedule", when present, must be "squaredcos_cap_v2" (the only schedule
 * UnCLIPScheduler accepts) and "_class_name", when present, "UnCLIPScheduler": otherwise
 * UNCLIP_E_MODEL (a model this engine cannot run). Wrong types, values out of range
 * (num_train_timesteps 2..100000, clip_sample_range > 0) and variance_type / prediction_type
 * other than fixed_small_log|learned_range / epsilon|sample are UNCLIP_E_FORMAT (io/json.h's
 * rule). Messages name the file and key. Other keys are ignored. *out is written on success. */
unclip_status unclip__sched_config_read(const struct unclip_json *j,
                                        struct unclip_sched_config *out, struct unclip_err *err);
/* The same from a file path (display name for messages: the path). */
unclip_status unclip__sched_config_load(const char *path, struct unclip_sched_config *out,
                                        struct unclip_err *err);

/* The tables of one configuration. Immutable after creation; one scheduler may serve any
 * number of runs (step() keeps no state between calls). */
struct unclip_sched {
    struct unclip_sched_config cfg;
    float *betas;          /* [num_train_timesteps], owned */
    float *alphas;         /* [num_train_timesteps], owned */
    float *alphas_cumprod; /* [num_train_timesteps], owned */
};

/* Validates cfg and computes the tables. *out is freed with unclip__sched_free. */
unclip_status unclip__sched_new(const struct unclip_sched_config *cfg, struct unclip_sched **out,
                                struct unclip_err *err);
void unclip__sched_free(struct unclip_sched *s); /* NULL is a no-op */

/* set_timesteps(n): out[0..n) in descending order, from N-1 down to 0. n must be in
 * 2..num_train_timesteps (diffusers divides by n - 1). */
unclip_status unclip__sched_timesteps(const struct unclip_sched *s, int32_t n, int32_t *out,
                                      struct unclip_err *err);

/* prev_t value meaning "not given": the scheduler uses t - 1 (the pipeline's last step). */
#define UNCLIP_SCHED_PREV_NONE INT32_MIN

/* One step() call. Layout: sample [B, C, S] (S = spatial size, 1 for the prior's [B, D] with
 * C = D); model_output [B, Cm, S] with Cm == C, or Cm == 2C for learned_range (eps channels
 * first, then the predicted variance, per batch item: diffusers' split on dim 1). */
struct unclip_sched_step {
    const float *model_output; /* [B, Cm, S]                                             */
    const float *sample;       /* [B, C, S] (x_t)                                        */
    int32_t batch;             /* B >= 1                                                 */
    int32_t channels;          /* C >= 1                                                 */
    int32_t model_channels;    /* Cm                                                     */
    int64_t spatial;           /* S >= 1                                                 */
    int32_t t;                 /* 0 <= t < num_train_timesteps                           */
    int32_t prev_t;            /* -1 <= prev_t < N (-1: alpha_prod_prev = 1), or
                                  UNCLIP_SCHED_PREV_NONE for t - 1                       */
    /* Noise for t > 0: `noise` [B, C, S] when given (replays a recorded draw), otherwise one
     * unclip__rng_randn draw of B*C*S values from `rng`. Neither is touched when t == 0. */
    struct unclip_rng *rng;
    const float *noise;
    /* Outputs (caller-owned). prev_sample may alias sample (read element by element before
     * it is written); the others must not alias any input. */
    float *prev_sample;          /* [B, C, S] x_{prev}                                    */
    float *pred_original_sample; /* optional [B, C, S]: x0 after clipping                 */
    float *noise_used;           /* optional [B, C, S]: the noise added (zeros at t == 0) */
};

/* Performs one step. UNCLIP_E_ARG for bad sizes/timesteps/pointers (nothing is drawn then),
 * UNCLIP_E_NOMEM when a noise buffer cannot be allocated. */
unclip_status unclip__sched_step(const struct unclip_sched *s, const struct unclip_sched_step *a,
                                 struct unclip_err *err);

#endif
