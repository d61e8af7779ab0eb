/* Device memory budget at stage entry, through the public API (golden tiny model, 2/2/2):
 *   - the weight estimate read from the safetensors headers matches what each stage really
 *     uploads (run statistics), fp16 and fp32;
 *   - with a pretend small device (UNCLIP_DEVICE_BUDGET = 32 KiB, 64 KiB, ...) a run fails at the
 *     entry of the first stage that does not fit, with UNCLIP_E_DEVICE_NOMEM and a message
 *     naming the stage, its need (weights + activations) and the budget; the stage that
 *     fails moves forward as the budget grows, nothing is left on the device, the result is
 *     untouched; a budget above every need runs to the end.
 * The golden model itself, not its small copy (tp_small_model): the activations, and so
 * which stage fails at which budget, depend on the picture sizes. */
#include "pipeline/budget.h"
#include "rel-common.h"

#include <math.h>
#include <stdlib.h>

static const char *prompt = "a red circle on the left of a blue square";

static const char *const stage_order[] = {"text_encoder", "prior", "decoder", "super_res_first",
                                          "super_res_last", NULL};

static int
stage_index(const char *msg)
{
    /* the message starts "<stage>: out of device memory (...): <stage> needs ..." */
    for (int i = 0; stage_order[i]; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s needs ", stage_order[i]);
        if (strstr(msg, want))
            return i;
    }
    return -1;
}

/* The figure after `key` in msg ("4.5 MiB", "62.3 KiB", "1.2 GiB" or "123 bytes") in bytes;
 * -1 when absent. */
static double
figure(const char *msg, const char *key)
{
    const char *p = strstr(msg, key);
    if (!p)
        return -1;
    char *end;
    double v = strtod(p + strlen(key), &end);
    if (end == p + strlen(key))
        return -1;
    if (!strncmp(end, " KiB", 4))
        return v * 1024.0;
    if (!strncmp(end, " MiB", 4))
        return v * 1048576.0;
    if (!strncmp(end, " GiB", 4))
        return v * 1073741824.0;
    if (!strncmp(end, " bytes", 6))
        return v;
    return -1;
}

/* Relative rounding of a one-decimal figure of value v (KiB below 1 MiB, then MiB). */
static double
slack(double v)
{
    return v < 1048576.0 ? 0.05 * 1024.0 : 0.05 * 1048576.0;
}

static void
test_estimates(bool fp32)
{
    struct unclip_ctx_params cp = rel_ctx_params();
    cp.fp32_weights = fp32;
    struct unclip_ctx *ctx = tp_ctx_with(&cp);
    TU_CHECK(ctx != NULL, "no %s context", fp32 ? "fp32" : "fp16");
    if (!ctx)
        return;
    struct unclip_model *m = tp_model(ctx, "models/tiny-karlo");
    struct unclip_run_params p = tp_params(7);
    struct unclip_result res = {0};
    unclip_status st = m ? unclip_run_text_to_image(m, prompt, &p, &res) : UNCLIP_E_MODEL;
    TU_CHECK(st == UNCLIP_OK, "run: %s", unclip_ctx_last_error(ctx));
    for (int32_t i = 0; st == UNCLIP_OK && i < res.stats.n_stages; i++) {
        const struct unclip_stage_stats *s = &res.stats.stages[i];
        uint64_t est = 0, b = 0;
        struct unclip_err e = {0};
        if (!strcmp(s->name, "decoder")) {
            TU_CHECK(!unclip__weights_device_bytes(m->dir, "text_proj", fp32, &b, &e), "%s",
                     e.msg);
            est += b;
        }
        TU_CHECK(!unclip__weights_device_bytes(m->dir, s->name, fp32, &b, &e), "%s", e.msg);
        est += b;
        double ratio = s->weight_bytes ? (double)est / (double)s->weight_bytes : 0;
        printf("  %s weights of %-15s estimated %9llu bytes, uploaded %9llu (x%.3f)\n",
               fp32 ? "fp32" : "fp16", s->name, (unsigned long long)est,
               (unsigned long long)s->weight_bytes, ratio);
        /* small models: 256-byte rounding and a few tensors uploaded in F32 move it most */
        TU_CHECK(ratio >= 0.9 && ratio <= 1.2, "%s: weight estimate %llu for %llu uploaded",
                 s->name, (unsigned long long)est, (unsigned long long)s->weight_bytes);
    }
    unclip_result_clear(&res);
    unclip_model_free(m);
    unclip_ctx_free(ctx);
}

static void
test_small_budgets(void)
{
    int last_stage = -1, n_fail = 0;
    bool completed = false;
    for (int kib = 32; kib <= 4096 * 1024 && !completed; kib *= 2) {
        char b[32];
        snprintf(b, sizeof b, "%dK", kib);
        double mib = kib / 1024.0;
        setenv("UNCLIP_DEVICE_BUDGET", b, 1);
        struct unclip_ctx *ctx = rel_ctx();
        unsetenv("UNCLIP_DEVICE_BUDGET");
        if (!ctx)
            return;
        struct unclip_model *m = tp_model(ctx, "models/tiny-karlo");
        if (!m) {
            unclip_ctx_free(ctx);
            return;
        }
        uint64_t base = unclip__vk_mem_in_use(ctx->vk);
        struct unclip_run_params p = tp_params(7);
        struct unclip_result res;
        memset(&res, 0x5a, sizeof res);
        struct unclip_result before = res;
        unclip_status st = unclip_run_text_to_image(m, prompt, &p, &res);
        const char *msg = unclip_ctx_last_error(ctx);
        if (st == UNCLIP_OK) {
            completed = true;
            printf("  budget %7.3f MiB: the run completes\n", mib);
            unclip_result_clear(&res);
        } else {
            n_fail++;
            int k = stage_index(msg);
            printf("  budget %7.3f MiB: %s\n", mib, msg);
            TU_CHECK(st == UNCLIP_E_DEVICE_NOMEM && k >= 0 && strstr(msg, "of device memory") &&
                         strstr(msg, "is available") && strstr(msg, "from UNCLIP_DEVICE_BUDGET"),
                     "budget %.3f MiB: status %d, '%s'", mib, (int)st, msg);
            /* the figures: need = weights + activations > available <= budget = the one set,
             * weights = the header estimate of the stage's components */
            char key[64];
            snprintf(key, sizeof key, "%s needs ", k >= 0 ? stage_order[k] : "?");
            double need = figure(msg, key), w = figure(msg, "(weights "),
                   a = figure(msg, " + activations "), av = figure(msg, "but only "),
                   bud = figure(msg, "(budget ");
            TU_CHECK(need > 0 && w > 0 && a >= 0 && av >= 0 && bud > 0, "budget %.3f MiB: "
                     "figures missing in '%s'", mib, msg);
            TU_CHECK(need > av, "budget %.3f MiB: needs %.0f bytes, %.0f available: '%s'", mib,
                     need, av, msg);
            TU_CHECK(fabs(bud - kib * 1024.0) <= slack(bud) && av <= bud + slack(bud),
                     "budget %.3f MiB: the message says budget %.0f bytes, available %.0f", mib,
                     bud, av);
            TU_CHECK(fabs(need - (w + a)) <= slack(need) + slack(w) + slack(a), "budget %.3f MiB:"
                     " need %.0f != weights %.0f + activations %.0f", mib, need, w, a);
            if (k >= 0) {
                uint64_t est = 0, b = 0;
                struct unclip_err e = {0};
                if (!strcmp(stage_order[k], "decoder") &&
                    !unclip__weights_device_bytes(m->dir, "text_proj", false, &b, &e))
                    est += b;
                if (!unclip__weights_device_bytes(m->dir, stage_order[k], false, &b, &e))
                    est += b;
                TU_CHECK(fabs(w - (double)est) <= slack(w), "budget %.3f MiB: %s weights %.0f in "
                         "the message, estimate %llu", mib, stage_order[k], w,
                         (unsigned long long)est);
            }
            TU_CHECK(k >= last_stage, "budget %.3f MiB: %s fails after %s failed with less", mib,
                     k >= 0 ? stage_order[k] : "?",
                     last_stage >= 0 ? stage_order[last_stage] : "?");
            last_stage = k;
            TU_CHECK(!memcmp(&res, &before, sizeof res), "budget %.3f MiB: result written", mib);
        }
        TU_CHECK(unclip__vk_mem_in_use(ctx->vk) == base, "budget %.3f MiB: %llu device bytes "
                 "left", mib, (unsigned long long)(unclip__vk_mem_in_use(ctx->vk) - base));
        unclip_model_free(m);
        unclip_ctx_free(ctx);
    }
    TU_CHECK(n_fail >= 2 && completed, "budgets: %d refusals, completed %d", n_fail,
             (int)completed);
}

int
main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct unclip_ctx *probe = rel_ctx();
    if (!probe)
        return 77;
    unclip_ctx_free(probe);
    test_estimates(false);
    test_estimates(true);
    test_small_budgets();
    return tu_summary("reliability-budget");
}
