/* UnCLIPScheduler (engine/pipeline/scheduler.h) against goldens/scheduler.safetensors:
 * betas and alphas_cumprod (relative L2 <= 1e-5), the timestep lists (exact), and the 27
 * step() cases of manifest.json "scheduler_cases" (prev_sample and pred_original_sample by
 * relative L2 <= 1e-5; the variance noise drawn from a generator seeded with the case's seed
 * by max abs diff <= 1e-5). Also the three scheduler_config.json files of the golden model. */
#include "core/alloc.h"
#include "core/rng.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "pipeline/scheduler.h"
#include "testutil.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct unclip_st_file *goldens;
static double worst_step_rel = 0.0, worst_noise_abs = 0.0;

/* Golden tensor as floats (caller frees); *numel receives its size. */
static float *
golden_f32(const char *name, int64_t *numel)
{
    const struct unclip_st_tensor *t = unclip__st_find(goldens, name);
    TU_CHECK(t != NULL, "golden tensor %s missing", name);
    if (!t)
        return NULL;
    float *v = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *v);
    struct unclip_err err = {0};
    if (unclip__st_to_f32(t, v, &err) != UNCLIP_OK) {
        TU_CHECK(0, "%s: %s", name, err.msg);
        free(v);
        return NULL;
    }
    *numel = t->numel;
    return v;
}

static int64_t
count_bit_exact(const float *a, const float *b, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        k += memcmp(&a[i], &b[i], sizeof(float)) == 0;
    return k;
}

static void
check_tables(const struct unclip_sched *s)
{
    const char *names[2] = {"betas", "alphas_cumprod"};
    const float *got[2] = {s->betas, s->alphas_cumprod};
    for (int k = 0; k < 2; k++) {
        int64_t n = 0;
        float *want = golden_f32(names[k], &n);
        if (!want)
            continue;
        TU_CHECK(n == s->cfg.num_train_timesteps, "%s: %lld entries", names[k], (long long)n);
        if (n == s->cfg.num_train_timesteps) {
            double rel = tu_rel_l2(got[k], want, n);
            double mad = tu_max_abs(got[k], want, n);
            printf("  %-15s rel L2 %.3g, max|diff| %.3g, bit-exact %lld/%lld\n", names[k], rel,
                   mad, (long long)count_bit_exact(got[k], want, n), (long long)n);
            TU_CHECK(rel <= 1e-5, "%s: relative L2 %g > 1e-5", names[k], rel);
        }
        free(want);
    }
    /* Values quoted in reference/unclip.md 3.1 (independent of the golden file). */
    TU_CHECK(fabsf(s->betas[0] - 4.1284224e-05f) < 1e-11f, "beta_0 %.8g", s->betas[0]);
    TU_CHECK(s->betas[999] == 0.999f, "beta_999 %.8g (capped)", s->betas[999]);
    TU_CHECK(fabsf(s->alphas_cumprod[999] - 2.4287350e-09f) < 1e-15f, "alphas_cumprod_999 %.8g",
             s->alphas_cumprod[999]);
}

static void
check_timesteps(const struct unclip_sched *s)
{
    const int ns[] = {2, 3, 5, 7, 25, 50, 1000};
    int32_t got[1000];
    struct unclip_err err = {0};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        char name[64];
        snprintf(name, sizeof name, "timesteps_n%d", ns[k]);
        const struct unclip_st_tensor *t = unclip__st_find(goldens, name);
        TU_CHECK(t && t->numel == ns[k], "%s missing or wrong size", name);
        if (!t || t->numel != ns[k])
            continue;
        int64_t want[1000];
        unclip__st_to_i64(t, want, &err);
        unclip_status st = unclip__sched_timesteps(s, ns[k], got, &err);
        TU_CHECK(st == UNCLIP_OK, "timesteps(%d): %s", ns[k], err.msg);
        int mismatches = 0;
        for (int i = 0; i < ns[k]; i++)
            mismatches += got[i] != want[i];
        printf("  %-15s %d/%d equal\n", name, ns[k] - mismatches, ns[k]);
        TU_CHECK(mismatches == 0, "%s: %d entries differ", name, mismatches);
    }
    /* Half to even: N = 7 gives 832 and 166, not 833 and 167 (goldens README 9). */
    unclip__sched_timesteps(s, 7, got, &err);
    TU_CHECK(got[1] == 832 && got[5] == 166 && got[6] == 0, "n=7: %d %d %d", got[1], got[5],
             got[6]);
    TU_CHECK(unclip__sched_timesteps(s, 1, got, &err) == UNCLIP_E_ARG, "n = 1 must be refused");
    TU_CHECK(unclip__sched_timesteps(s, 1001, got, &err) == UNCLIP_E_ARG,
             "n > num_train_timesteps must be refused");
}

static struct unclip_sched_config
config_from_json(JsonObject *c)
{
    struct unclip_sched_config cfg = unclip__sched_config_default();
    if (json_object_has_member(c, "num_train_timesteps"))
        cfg.num_train_timesteps = (int32_t)json_object_get_int_member(c, "num_train_timesteps");
    if (json_object_has_member(c, "variance_type"))
        cfg.variance_type = strcmp(json_object_get_string_member(c, "variance_type"),
                                   "learned_range") == 0
                                ? UNCLIP_VARIANCE_LEARNED_RANGE
                                : UNCLIP_VARIANCE_FIXED_SMALL_LOG;
    if (json_object_has_member(c, "prediction_type"))
        cfg.prediction_type =
            strcmp(json_object_get_string_member(c, "prediction_type"), "sample") == 0
                ? UNCLIP_PREDICTION_SAMPLE
                : UNCLIP_PREDICTION_EPSILON;
    if (json_object_has_member(c, "clip_sample_range"))
        cfg.clip_sample_range = (float)json_object_get_double_member(c, "clip_sample_range");
    if (json_object_has_member(c, "clip_sample"))
        cfg.clip_sample = json_object_get_boolean_member(c, "clip_sample");
    return cfg;
}

static double
check_rel(const char *key, const char *what, const float *got, const float *want, int64_t n)
{
    double rel = tu_rel_l2(got, want, n);
    TU_CHECK(rel <= 1e-5, "%s %s: relative L2 %g > 1e-5", key, what, rel);
    TU_CHECK(tu_first_nonfinite(got, n) < 0, "%s %s: non-finite output", key, what);
    if (rel > worst_step_rel)
        worst_step_rel = rel;
    return rel;
}

static void
run_case(JsonObject *o)
{
    const char *key = json_object_get_string_member(o, "key");
    struct unclip_err err = {0};
    /* The configuration comes from the golden model's scheduler_config.json, read by the
     * engine's reader, and must agree with what the manifest says the case used. */
    char rel[256];
    snprintf(rel, sizeof rel, "models/tiny-karlo/%s_scheduler/scheduler_config.json",
             json_object_get_string_member(o, "scheduler"));
    struct unclip_sched_config cfg;
    if (unclip__sched_config_load(tu_golden_path(rel), &cfg, &err) != UNCLIP_OK) {
        TU_CHECK(0, "%s: %s", key, err.msg);
        return;
    }
    struct unclip_sched_config want =
        config_from_json(json_object_get_object_member(o, "config"));
    TU_CHECK(cfg.num_train_timesteps == want.num_train_timesteps &&
                 cfg.variance_type == want.variance_type &&
                 cfg.prediction_type == want.prediction_type &&
                 cfg.clip_sample == want.clip_sample &&
                 cfg.clip_sample_range == want.clip_sample_range,
             "%s: %s disagrees with the manifest's config", key, rel);
    struct unclip_sched *s = NULL;
    if (unclip__sched_new(&cfg, &s, &err) != UNCLIP_OK) {
        TU_CHECK(0, "%s: %s", key, err.msg);
        return;
    }
    char name[128];
    int64_t n_mo = 0, n_x = 0, n_noise = 0, n_prev = 0, n_x0 = 0;
#define LOAD(var, suffix, count)                               \
    snprintf(name, sizeof name, "%s_%s", key, suffix);         \
    float *var = golden_f32(name, &count);
    LOAD(model_output, "model_output", n_mo)
    LOAD(sample, "sample", n_x)
    LOAD(noise, "noise", n_noise)
    LOAD(prev_sample, "prev_sample", n_prev)
    LOAD(pred_x0, "pred_original_sample", n_x0)
#undef LOAD
    if (!model_output || !sample || !noise || !prev_sample || !pred_x0)
        goto done;
    TU_CHECK(n_noise == n_x && n_prev == n_x && n_x0 == n_x, "%s: golden sizes disagree", key);

    /* Shapes from the manifest: [B, C, H, W] or [B, D]. */
    JsonArray *shape = json_object_get_array_member(o, "shape");
    int32_t batch = (int32_t)json_array_get_int_element(shape, 0);
    int32_t channels = (int32_t)json_array_get_int_element(shape, 1);
    int64_t spatial = 1;
    for (guint d = 2; d < json_array_get_length(shape); d++)
        spatial *= json_array_get_int_element(shape, d);
    int64_t n = (int64_t)batch * channels * spatial;
    TU_CHECK(n == n_x, "%s: manifest shape gives %lld values, golden has %lld", key,
             (long long)n, (long long)n_x);
    int32_t model_channels = (int32_t)(n_mo / ((int64_t)batch * spatial));

    int32_t t = (int32_t)json_object_get_int_member(o, "timestep");
    JsonNode *pn = json_object_get_member(o, "prev_timestep");
    int32_t prev_t = JSON_NODE_HOLDS_NULL(pn) ? UNCLIP_SCHED_PREV_NONE
                                              : (int32_t)json_node_get_int(pn);
    int64_t seed = json_object_get_int_member(o, "generator_seed");
    bool drawn = json_object_get_boolean_member(o, "noise_drawn");
    TU_CHECK(drawn == (t > 0), "%s: manifest says noise_drawn=%d at t=%d", key, drawn, t);

    float *got_prev = calloc((size_t)n, sizeof(float));
    float *got_x0 = calloc((size_t)n, sizeof(float));
    float *got_noise = calloc((size_t)n, sizeof(float));
    struct unclip_rng rng, fresh;
    unclip__rng_seed(&rng, (uint64_t)seed);
    unclip__rng_seed(&fresh, (uint64_t)seed);
    struct unclip_sched_step a = {
        .model_output = model_output, .sample = sample, .batch = batch, .channels = channels,
        .model_channels = model_channels, .spatial = spatial, .t = t, .prev_t = prev_t,
        .rng = &rng, .prev_sample = got_prev, .pred_original_sample = got_x0,
        .noise_used = got_noise,
    };
    unclip_status st = unclip__sched_step(s, &a, &err);
    TU_CHECK(st == UNCLIP_OK, "%s: step failed: %s", key, err.msg);
    if (st == UNCLIP_OK) {
        double nad = tu_max_abs(got_noise, noise, n);
        TU_CHECK(nad <= 1e-5, "%s: noise max abs diff %g > 1e-5", key, nad);
        if (nad > worst_noise_abs)
            worst_noise_abs = nad;
        double r1 = check_rel(key, "prev_sample", got_prev, prev_sample, n);
        double r2 = check_rel(key, "pred_original_sample", got_x0, pred_x0, n);
        char prev_txt[16];
        if (prev_t == UNCLIP_SCHED_PREV_NONE)
            snprintf(prev_txt, sizeof prev_txt, "none");
        else
            snprintf(prev_txt, sizeof prev_txt, "%d", prev_t);
        printf("  %-14s t=%3d prev=%-4s  prev_sample %.3g (exact %lld/%lld)  x0 %.3g  "
               "noise max|diff| %.3g\n",
               key, t, prev_txt, r1,
               (long long)count_bit_exact(got_prev, prev_sample, n), (long long)n, r2, nad);
        /* The generator is touched exactly when t > 0 (one draw of n values). */
        if (t > 0) {
            float *skip = malloc((size_t)n * sizeof(float));
            unclip__rng_randn(&fresh, skip, n);
            free(skip);
        }
        TU_CHECK(unclip__rng_u32(&fresh) == unclip__rng_u32(&rng),
                 "%s: the step consumed the wrong amount of the generator", key);
    }

    /* Replaying the golden noise, in place (prev_sample aliasing sample), gives the same. */
    float *inplace = malloc((size_t)n * sizeof(float));
    memcpy(inplace, sample, (size_t)n * sizeof(float));
    struct unclip_sched_step b = {
        .model_output = model_output, .sample = inplace, .batch = batch, .channels = channels,
        .model_channels = model_channels, .spatial = spatial, .t = t, .prev_t = prev_t,
        .noise = noise, .prev_sample = inplace,
    };
    st = unclip__sched_step(s, &b, &err);
    TU_CHECK(st == UNCLIP_OK, "%s: replay step failed: %s", key, err.msg);
    if (st == UNCLIP_OK)
        check_rel(key, "prev_sample (golden noise, in place)", inplace, prev_sample, n);

    free(inplace);
    free(got_prev);
    free(got_x0);
    free(got_noise);
done:
    free(model_output);
    free(sample);
    free(noise);
    free(prev_sample);
    free(pred_x0);
    unclip__sched_free(s);
}

static void
check_errors(const struct unclip_sched *s)
{
    struct unclip_err err = {0};
    float x[8] = {0}, y[8], mo[16] = {0};
    struct unclip_rng r;
    unclip__rng_seed(&r, 1);
    struct unclip_sched_step a = {
        .model_output = mo, .sample = x, .batch = 1, .channels = 8, .model_channels = 8,
        .spatial = 1, .t = 1000, .prev_t = UNCLIP_SCHED_PREV_NONE, .rng = &r, .prev_sample = y,
    };
    TU_CHECK(unclip__sched_step(s, &a, &err) == UNCLIP_E_ARG && err.msg[0],
             "t = N must be refused");
    a.t = 10;
    a.prev_t = 1000;
    TU_CHECK(unclip__sched_step(s, &a, &err) == UNCLIP_E_ARG, "prev_t = N must be refused");
    a.prev_t = 5;
    a.model_channels = 16; /* fixed_small_log does not split */
    TU_CHECK(unclip__sched_step(s, &a, &err) == UNCLIP_E_ARG, "Cm = 2C must be refused");
    a.model_channels = 8;
    a.rng = NULL;
    TU_CHECK(unclip__sched_step(s, &a, &err) == UNCLIP_E_ARG, "t > 0 without noise source");
    a.t = 0;
    a.prev_t = UNCLIP_SCHED_PREV_NONE;
    TU_CHECK(unclip__sched_step(s, &a, &err) == UNCLIP_OK, "t = 0 needs no noise: %s", err.msg);

    /* Config documents: defaults for absent keys, refusals with the key named. */
    struct {
        const char *text;
        unclip_status want;
        const char *in_msg;
    } docs[] = {
        {"{}", UNCLIP_OK, NULL},
        {"{\"beta_schedule\": \"linear\"}", UNCLIP_E_MODEL, "beta_schedule"},
        {"{\"_class_name\": \"DDPMScheduler\"}", UNCLIP_E_MODEL, "_class_name"},
        {"{\"variance_type\": \"fixed_large\"}", UNCLIP_E_FORMAT, "variance_type"},
        {"{\"prediction_type\": \"v_prediction\"}", UNCLIP_E_FORMAT, "prediction_type"},
        {"{\"num_train_timesteps\": 1}", UNCLIP_E_FORMAT, "num_train_timesteps"},
        {"{\"clip_sample_range\": -1.0}", UNCLIP_E_FORMAT, "clip_sample_range"},
        {"{\"clip_sample\": \"yes\"}", UNCLIP_E_FORMAT, "clip_sample"},
        {"{\"variance_type\": \"learned_range\", \"prediction_type\": \"sample\", "
         "\"clip_sample\": false, \"clip_sample_range\": 2.5, \"num_train_timesteps\": 500}",
         UNCLIP_OK, NULL},
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        struct unclip_json *j = NULL;
        if (unclip__json_parse(docs[i].text, -1, "test/scheduler_config.json", &j, &err) !=
            UNCLIP_OK) {
            TU_CHECK(0, "parse %s: %s", docs[i].text, err.msg);
            continue;
        }
        struct unclip_sched_config c = {0};
        err.msg[0] = '\0';
        unclip_status st = unclip__sched_config_read(j, &c, &err);
        TU_CHECK(st == docs[i].want, "%s: status %d, want %d (%s)", docs[i].text, st,
                 docs[i].want, err.msg);
        if (docs[i].in_msg)
            TU_CHECK(strstr(err.msg, docs[i].in_msg) &&
                         strstr(err.msg, "test/scheduler_config.json"),
                     "%s: message '%s' must name the file and key", docs[i].text, err.msg);
        if (i == 0 && st == UNCLIP_OK) {
            struct unclip_sched_config d = unclip__sched_config_default();
            TU_CHECK(c.num_train_timesteps == d.num_train_timesteps &&
                         c.variance_type == d.variance_type &&
                         c.prediction_type == d.prediction_type &&
                         c.clip_sample == d.clip_sample &&
                         c.clip_sample_range == d.clip_sample_range &&
                         d.num_train_timesteps == 1000 && d.clip_sample_range == 1.0f,
                     "{}: defaults expected");
        }
        if (i == 8 && st == UNCLIP_OK)
            TU_CHECK(c.variance_type == UNCLIP_VARIANCE_LEARNED_RANGE &&
                         c.prediction_type == UNCLIP_PREDICTION_SAMPLE && !c.clip_sample &&
                         c.clip_sample_range == 2.5f && c.num_train_timesteps == 500,
                     "explicit config values not read");
        unclip__json_free(j);
    }

    /* Every allocation failure gives a clean UNCLIP_E_NOMEM. */
    struct unclip_sched_config dc = unclip__sched_config_default();
    int nomem = 0, k;
    for (k = 1; k < 10; k++) {
        struct unclip_sched *q = NULL;
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, (uint64_t)k);
        unclip_status st = unclip__sched_new(&dc, &q, &err);
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
        if (st == UNCLIP_OK) {
            unclip__sched_free(q);
            break;
        }
        nomem += st == UNCLIP_E_NOMEM && q == NULL;
    }
    TU_CHECK(k > 1 && nomem == k - 1, "sched_new under failing allocations: %d/%d clean", nomem,
             k - 1);
    /* A step whose noise buffer cannot be allocated fails before drawing anything. */
    struct unclip_rng r2, r3;
    unclip__rng_seed(&r2, 11);
    unclip__rng_seed(&r3, 11);
    a.t = 10;
    a.prev_t = 5;
    a.rng = &r2;
    unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 1);
    unclip_status fst = unclip__sched_step(s, &a, &err);
    unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
    TU_CHECK(fst == UNCLIP_E_NOMEM && unclip__rng_u32(&r2) == unclip__rng_u32(&r3),
             "step with a failing allocation: status %d, generator must be untouched", fst);

    struct unclip_sched_config bad = unclip__sched_config_default();
    struct unclip_sched *p = NULL;
    bad.num_train_timesteps = 1;
    TU_CHECK(unclip__sched_new(&bad, &p, &err) == UNCLIP_E_ARG && !p, "N = 1 must be refused");
    bad = unclip__sched_config_default();
    bad.clip_sample_range = 0.0f;
    TU_CHECK(unclip__sched_new(&bad, &p, &err) == UNCLIP_E_ARG && !p, "range 0 refused");
}

int
main(void)
{
    struct unclip_err err = {0};
    if (unclip__st_open(tu_golden_path("goldens/scheduler.safetensors"), &goldens, &err) !=
        UNCLIP_OK) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    GError *gerr = NULL;
    JsonParser *parser = json_parser_new();
    if (!json_parser_load_from_file(parser, tu_golden_path("goldens/manifest.json"), &gerr)) {
        printf("FAIL: manifest.json: %s\n", gerr->message);
        return 1;
    }
    JsonObject *root = json_node_get_object(json_parser_get_root(parser));

    struct unclip_sched_config cfg = unclip__sched_config_default();
    struct unclip_sched *s = NULL;
    if (unclip__sched_new(&cfg, &s, &err) != UNCLIP_OK) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    check_tables(s);
    check_timesteps(s);
    check_errors(s);
    unclip__sched_free(s);

    JsonArray *cases = json_object_get_array_member(root, "scheduler_cases");
    guint n_cases = json_array_get_length(cases);
    TU_CHECK(n_cases == 27, "%u scheduler cases in the manifest, expected 27", n_cases);
    for (guint c = 0; c < n_cases; c++)
        run_case(json_array_get_object_element(cases, c));
    printf("step(): worst relative L2 %.3g, worst noise max|diff| %.3g over %u cases\n",
           worst_step_rel, worst_noise_abs, n_cases);

    g_object_unref(parser);
    unclip__st_close(goldens);
    return tu_summary("scheduler");
}
