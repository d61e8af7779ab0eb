#include "pipeline/scheduler.h"

#include "core/alloc.h"
#include "io/json.h"

#include <math.h>
#include <string.h>

/* Upper bound on num_train_timesteps: far above any real schedule, small enough that the
 * tables stay tiny and int32 arithmetic on timesteps cannot overflow. */
#define MAX_TRAIN_TIMESTEPS 100000

struct unclip_sched_config
unclip__sched_config_default(void)
{
    return (struct unclip_sched_config){
        .num_train_timesteps = 1000,
        .variance_type = UNCLIP_VARIANCE_FIXED_SMALL_LOG,
        .prediction_type = UNCLIP_PREDICTION_EPSILON,
        .clip_sample = true,
        .clip_sample_range = 1.0f,
    };
}

unclip_status
unclip__sched_config_read(const struct unclip_json *j, struct unclip_sched_config *out,
                          struct unclip_err *err)
{
    if (!j || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler config: NULL argument");
    static const char *const variances[] = {"fixed_small_log", "learned_range", NULL};
    static const char *const predictions[] = {"epsilon", "sample", NULL};
    const char *name = unclip__json_name(j);
    struct unclip_sched_config c = unclip__sched_config_default();
    const char *cls = NULL, *schedule = NULL;
    int32_t variance = 0, prediction = 0;
    double range = c.clip_sample_range;
    unclip_status st;
    if ((st = unclip__json_string_opt(j, "_class_name", NULL, &cls, err)) != UNCLIP_OK ||
        (st = unclip__json_string_opt(j, "beta_schedule", NULL, &schedule, err)) != UNCLIP_OK ||
        (st = unclip__json_i32_opt(j, "num_train_timesteps", c.num_train_timesteps, 2, MAX_TRAIN_TIMESTEPS,
                                   &c.num_train_timesteps, err)) != UNCLIP_OK ||
        (st = unclip__json_enum(j, "variance_type", variances, 0, &variance, err)) !=
            UNCLIP_OK ||
        (st = unclip__json_enum(j, "prediction_type", predictions, 0, &prediction, err)) !=
            UNCLIP_OK ||
        (st = unclip__json_bool_opt(j, "clip_sample", c.clip_sample, &c.clip_sample, err)) !=
            UNCLIP_OK ||
        (st = unclip__json_float_opt(j, "clip_sample_range", range, 1e-30, 1e30, &range,
                                     err)) != UNCLIP_OK)
        return st;
    if (cls && strcmp(cls, "UnCLIPScheduler") != 0)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: '_class_name' is '%.100s'; only UnCLIPScheduler is supported",
                            name, cls);
    if (schedule && strcmp(schedule, "squaredcos_cap_v2") != 0)
        return unclip__fail(err, UNCLIP_E_MODEL,
                            "%s: 'beta_schedule' is '%.100s'; UnCLIPScheduler only supports "
                            "squaredcos_cap_v2",
                            name, schedule);
    c.variance_type = variance == 1 ? UNCLIP_VARIANCE_LEARNED_RANGE
                                    : UNCLIP_VARIANCE_FIXED_SMALL_LOG;
    c.prediction_type = prediction == 1 ? UNCLIP_PREDICTION_SAMPLE : UNCLIP_PREDICTION_EPSILON;
    /* torch.clamp converts the Python float bound to float32. */
    c.clip_sample_range = (float)range;
    *out = c;
    return UNCLIP_OK;
}

unclip_status
unclip__sched_config_load(const char *path, struct unclip_sched_config *out,
                          struct unclip_err *err)
{
    if (!path || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler config: NULL argument");
    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_load(path, NULL, &j, err);
    if (st != UNCLIP_OK)
        return st;
    st = unclip__sched_config_read(j, out, err);
    unclip__json_free(j);
    return st;
}

static unclip_status
check_config(const struct unclip_sched_config *c, struct unclip_err *err)
{
    if (c->num_train_timesteps < 2 || c->num_train_timesteps > MAX_TRAIN_TIMESTEPS)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler: num_train_timesteps %d not in 2..%d",
                            (int)c->num_train_timesteps, MAX_TRAIN_TIMESTEPS);
    if (c->variance_type != UNCLIP_VARIANCE_FIXED_SMALL_LOG &&
        c->variance_type != UNCLIP_VARIANCE_LEARNED_RANGE)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler: unknown variance type %d",
                            (int)c->variance_type);
    if (c->prediction_type != UNCLIP_PREDICTION_EPSILON &&
        c->prediction_type != UNCLIP_PREDICTION_SAMPLE)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler: unknown prediction type %d",
                            (int)c->prediction_type);
    if (!(c->clip_sample_range > 0.0f) || isinf(c->clip_sample_range))
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler: clip_sample_range %g must be > 0",
                            (double)c->clip_sample_range);
    return UNCLIP_OK;
}

/* The cosine schedule's alpha-bar, exactly as diffusers writes it in Python (double). */
static double
alpha_bar(double t)
{
    double c = cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
}

unclip_status
unclip__sched_new(const struct unclip_sched_config *cfg, struct unclip_sched **out,
                  struct unclip_err *err)
{
    if (!cfg || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler: NULL argument");
    unclip_status st = check_config(cfg, err);
    if (st != UNCLIP_OK)
        return st;
    const int32_t n = cfg->num_train_timesteps;
    struct unclip_sched *s = unclip__calloc(1, sizeof *s);
    if (!s)
        goto fail_alloc;
    s->cfg = *cfg;
    s->betas = unclip__calloc((size_t)n, sizeof(float));
    s->alphas = unclip__calloc((size_t)n, sizeof(float));
    s->alphas_cumprod = unclip__calloc((size_t)n, sizeof(float));
    if (!s->betas || !s->alphas || !s->alphas_cumprod)
        goto fail_tables;

    double running = 1.0;
    for (int32_t i = 0; i < n; i++) {
        double t1 = (double)i / n;
        double t2 = (double)(i + 1) / n;
        double beta = 1.0 - alpha_bar(t2) / alpha_bar(t1);
        if (beta > 0.999)
            beta = 0.999;
        s->betas[i] = (float)beta;
        s->alphas[i] = 1.0f - s->betas[i];
        /* torch's CPU cumprod keeps the running product in double. */
        running *= (double)s->alphas[i];
        s->alphas_cumprod[i] = (float)running;
    }
    *out = s;
    return UNCLIP_OK;

fail_tables:
    unclip__sched_free(s);
fail_alloc:
    return unclip__fail(err, UNCLIP_E_NOMEM, "scheduler: out of memory for %d-entry tables",
                        (int)n);
}

void
unclip__sched_free(struct unclip_sched *s)
{
    if (!s)
        return;
    unclip__free(s->betas);
    unclip__free(s->alphas);
    unclip__free(s->alphas_cumprod);
    unclip__free(s);
}

unclip_status
unclip__sched_timesteps(const struct unclip_sched *s, int32_t n, int32_t *out,
                        struct unclip_err *err)
{
    if (!s || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler timesteps: NULL argument");
    const int32_t nt = s->cfg.num_train_timesteps;
    if (n < 2 || n > nt)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "scheduler: %d inference steps; UnCLIPScheduler needs 2..%d", (int)n,
                            (int)nt);
    /* numpy: (arange(n) * ratio).round() in float64, half to even (nearbyint in the default
     * rounding mode), then reversed. */
    const double ratio = (double)(nt - 1) / (double)(n - 1);
    for (int32_t k = 0; k < n; k++)
        out[n - 1 - k] = (int32_t)nearbyint((double)k * ratio);
    return UNCLIP_OK;
}

/* torch.clamp: NaN stays NaN. */
static inline float
clampf(float x, float lo, float hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

unclip_status
unclip__sched_step(const struct unclip_sched *s, const struct unclip_sched_step *a,
                   struct unclip_err *err)
{
    if (!s || !a || !a->model_output || !a->sample || !a->prev_sample)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler step: NULL argument");
    const struct unclip_sched_config *cfg = &s->cfg;
    const int32_t nt = cfg->num_train_timesteps;
    const int32_t t = a->t;
    if (t < 0 || t >= nt)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler step: timestep %d not in 0..%d",
                            (int)t, (int)nt - 1);
    const int32_t prev_t = a->prev_t == UNCLIP_SCHED_PREV_NONE ? t - 1 : a->prev_t;
    if (prev_t < -1 || prev_t >= nt)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "scheduler step: previous timestep %d not in -1..%d", (int)prev_t,
                            (int)nt - 1);
    if (a->batch < 1 || a->channels < 1 || a->spatial < 1 ||
        (int64_t)a->batch * a->channels > INT64_MAX / 4 / a->spatial)
        return unclip__fail(err, UNCLIP_E_ARG, "scheduler step: bad shape [%d, %d, %lld]",
                            (int)a->batch, (int)a->channels, (long long)a->spatial);
    const bool learned = cfg->variance_type == UNCLIP_VARIANCE_LEARNED_RANGE;
    const int32_t want_cm = learned ? 2 * a->channels : a->channels;
    if (a->model_channels != want_cm)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "scheduler step: model output has %d channels, the %s scheduler "
                            "needs %d for a %d-channel sample",
                            (int)a->model_channels, learned ? "learned_range" : "fixed_small_log",
                            (int)want_cm, (int)a->channels);
    if (t > 0 && !a->noise && !a->rng)
        return unclip__fail(err, UNCLIP_E_ARG,
                            "scheduler step: t = %d needs noise or a generator", (int)t);

    const int64_t per_item = (int64_t)a->channels * a->spatial;
    const int64_t n = (int64_t)a->batch * per_item;
    const int64_t model_item = (int64_t)a->model_channels * a->spatial;

    /* Scalars, in torch's float32 operation order. */
    const float alpha_prod_t = s->alphas_cumprod[t];
    const float alpha_prod_t_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : 1.0f;
    const float beta_prod_t = 1.0f - alpha_prod_t;
    const float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;
    float beta, alpha;
    if (prev_t == t - 1) {
        beta = s->betas[t];
        alpha = s->alphas[t];
    } else {
        beta = 1.0f - alpha_prod_t / alpha_prod_t_prev;
        alpha = 1.0f - beta;
    }
    const float sqrt_beta_prod_t = sqrtf(beta_prod_t);
    const float sqrt_alpha_prod_t = sqrtf(alpha_prod_t);
    const float x0_coeff = sqrtf(alpha_prod_t_prev) * beta / beta_prod_t;
    const float xt_coeff = sqrtf(alpha) * beta_prod_t_prev / beta_prod_t;
    const float range = cfg->clip_sample_range;

    /* The noise is drawn first (diffusers draws before computing the variance), and only for
     * t > 0. */
    const float *noise = NULL;
    float *noise_buf = NULL;
    if (t > 0) {
        if (a->noise) {
            noise = a->noise;
        } else {
            float *dst = a->noise_used;
            if (!dst) {
                noise_buf = unclip__malloc((size_t)n * sizeof(float));
                if (!noise_buf)
                    return unclip__fail(err, UNCLIP_E_NOMEM,
                                        "scheduler step: out of memory for %lld noise values",
                                        (long long)n);
                dst = noise_buf;
            }
            unclip__rng_randn(a->rng, dst, n);
            noise = dst;
        }
    }

    /* Posterior variance terms (used only when t > 0). */
    const float variance = beta_prod_t_prev / beta_prod_t * beta;
    float sigma_fixed = 0.0f, min_log = 0.0f, max_log = 0.0f;
    if (t > 0) {
        if (learned) {
            min_log = logf(variance);
            max_log = logf(beta);
        } else {
            sigma_fixed = expf(0.5f * logf(variance < 1e-20f ? 1e-20f : variance));
        }
    }

    for (int32_t b = 0; b < a->batch; b++) {
        const float *eps = a->model_output + b * model_item;
        const float *v = eps + per_item; /* learned_range: the variance channels */
        const float *xt = a->sample + b * per_item;
        float *prev = a->prev_sample + b * per_item;
        for (int64_t i = 0; i < per_item; i++) {
            const int64_t gi = b * per_item + i;
            const float x = xt[i];
            float x0;
            if (cfg->prediction_type == UNCLIP_PREDICTION_EPSILON)
                x0 = (x - sqrt_beta_prod_t * eps[i]) / sqrt_alpha_prod_t;
            else
                x0 = eps[i];
            if (cfg->clip_sample)
                x0 = clampf(x0, -range, range);
            float mu = x0_coeff * x0 + xt_coeff * x;
            if (t > 0) {
                float sigma;
                if (learned) {
                    const float frac = (v[i] + 1.0f) / 2.0f;
                    const float log_var = frac * max_log + (1.0f - frac) * min_log;
                    sigma = expf(0.5f * log_var);
                } else {
                    sigma = sigma_fixed;
                }
                mu = mu + sigma * noise[gi];
            }
            if (a->pred_original_sample)
                a->pred_original_sample[gi] = x0;
            prev[i] = mu;
        }
    }

    if (a->noise_used) {
        if (t == 0)
            memset(a->noise_used, 0, (size_t)n * sizeof(float));
        else if (noise != a->noise_used)
            memcpy(a->noise_used, noise, (size_t)n * sizeof(float));
    }
    unclip__free(noise_buf);
    return UNCLIP_OK;
}
