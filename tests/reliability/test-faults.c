/* Fault injection over a short text-to-image run (steps 2/2/2) of a small copy of the golden
 * tiny model (golden weights and stages, 8x8 decoder and 32x32 super-res pictures:
 * tp_small_model; the runs are only compared with each other): the k-th host allocation,
 * device allocation (buffer or memory block), queue submit or fence wait fails, and a lost
 * device is simulated at chosen fence waits.
 *
 * Which k: every queue submit and every fence wait the run reaches (21 each at the default
 * work bound; 23 at the full picture sizes, whose larger UNet steps take more bounded
 * submissions, through the same 10 call stacks). Host and device allocations are too many
 * for that (about 3100 and 1100, the same at both sizes; a failing run costs up to a whole
 * run): a reference run records the call stack of every
 * event (the N innermost frames above the fault hook: --depth N, default 2 for host
 * allocations, whose callers are many, and 4 for device ones), and each distinct stack is
 * failed once, at its first occurrence (events inside a loop share a stack and take the
 * same error path; under ASan submits and fence waits too). --all fails every k of every
 * kind instead (about 4200 runs).
 * Each failing run must
 *   - return the site's status (UNCLIP_E_NOMEM, _DEVICE_NOMEM, _VULKAN, _TIMEOUT,
 *     _DEVICE_LOST) with a message, never crash, and leave the result untouched;
 *   - give back every device byte (vk mem_in_use as before the run) and every host block
 *     (unclip__alloc_live() after the next good run equals its value after the reference
 *     run; under ASan, LeakSanitizer checks the rest at exit);
 *   - leave the model usable: the next normal run makes the reference picture again; after a
 *     lost device every call says to recreate the context, and a new one works.
 * A host allocation whose failure the engine may tolerate (none today) lets the run succeed:
 * then the picture must be the reference one.
 *
 *   test-faults [--sites host,device,submit,fence,lost] [--depth N | --all] [--check-every N]
 *               [--range A:B]
 *
 * --check-every N does the "usable again" run after every N-th failure (default 1). Prints
 * the events per kind, the distinct stacks and the fault sites exercised. */
#include "rel-common.h"

#include <execinfo.h>
#include <stdlib.h>

/* Under ASan (about 3x slower) submits and fence waits are failed once per distinct stack
 * too: LeakSanitizer needs each error path once; the plain build fails every k. */
#if defined(__SANITIZE_ADDRESS__)
static const bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
static const bool sanitized = true;
#else
static const bool sanitized = false;
#endif
#else
static const bool sanitized = false;
#endif

struct site {
    enum unclip_fault_site site;
    const char *name;
    unclip_status want;
};

static const struct site sites[] = {
    {UNCLIP_FAULT_HOST_ALLOC, "host", UNCLIP_E_NOMEM},
    {UNCLIP_FAULT_DEVICE_ALLOC, "device", UNCLIP_E_DEVICE_NOMEM},
    {UNCLIP_FAULT_SUBMIT, "submit", UNCLIP_E_VULKAN},
    {UNCLIP_FAULT_FENCE_WAIT, "fence", UNCLIP_E_TIMEOUT},
    {UNCLIP_FAULT_DEVICE_LOST, "lost", UNCLIP_E_DEVICE_LOST},
};
#define N_SITES (sizeof sites / sizeof sites[0])

static const char *prompt = "a red circle on the left of a blue square";

/* Call-stack signatures of the reference run's events: per site, the first event index of
 * each distinct stack, in order. */
static int depth[UNCLIP_FAULT_N_SITES] = {2, 4, 4, 4, 4};
static GHashTable *seen[UNCLIP_FAULT_N_SITES];
static GArray *firsts[UNCLIP_FAULT_N_SITES];

static void
observe(enum unclip_fault_site site, uint64_t index, void *user)
{
    (void)user;
    void *frames[64];
    /* frames[0] is this function, [1] unclip__fault_hit */
    int n = backtrace(frames, depth[site] + 2 < 64 ? depth[site] + 2 : 64);
    uint64_t h = 1469598103934665603ull;
    for (int i = 2; i < n; i++)
        h = (h ^ (uint64_t)(uintptr_t)frames[i]) * 1099511628211ull;
    if (!g_hash_table_contains(seen[site], &h)) {
        g_hash_table_add(seen[site], g_memdup2(&h, sizeof h));
        g_array_append_val(firsts[site], index);
    }
}

static void
arm_all(uint64_t k)
{
    for (size_t i = 0; i < N_SITES; i++)
        unclip__fault_arm(sites[i].site, k);
}

struct state {
    char *model_dir; /* the small copy (tp_small_model) */
    struct unclip_ctx *ctx;
    struct unclip_model *model;
    struct unclip_result ref;
    uint64_t mem_base;
    int64_t live_base;
};

/* A normal run that must give the reference picture; then the host blocks must be back to
 * the reference count. */
static bool
good_run(struct state *s, const char *after)
{
    struct unclip_run_params p = tp_params(7);
    struct unclip_result r = {0};
    unclip_status st = unclip_run_text_to_image(s->model, prompt, &p, &r);
    bool ok = st == UNCLIP_OK && tp_same_result(&r, &s->ref);
    TU_CHECK(ok, "%s: the next run: status %d (%s), %s picture", after, (int)st,
             unclip_ctx_last_error(s->ctx), st ? "no" : "another");
    unclip_result_clear(&r);
    int64_t live = unclip__alloc_live();
    TU_CHECK(live == s->live_base, "%s: %lld host blocks live after a good run, %lld after the "
             "reference run", after, (long long)live, (long long)s->live_base);
    return ok && live == s->live_base;
}

static bool
open_all(struct state *s)
{
    s->ctx = rel_ctx();
    if (!s->ctx)
        return false;
    s->model = tp_model_at(s->ctx, s->model_dir);
    return s->model != NULL;
}

static void
close_all(struct state *s)
{
    unclip_model_free(s->model);
    unclip_ctx_free(s->ctx);
    s->model = NULL;
    s->ctx = NULL;
}

/* Closes the model and context, removes the small copy, returns the test's exit status. */
static int
finish(struct state *s)
{
    close_all(s);
    tp_rmtree(s->model_dir);
    g_free(s->model_dir);
    s->model_dir = NULL;
    return tu_summary("reliability-faults");
}

int
main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows in meson's log as it happens */
    const char *want_sites = "host,device,submit,fence,lost";
    uint64_t check_every = 1;
    unsigned long long k_lo = 1, k_hi = UINT64_MAX; /* --range A:B: only k in [A, B] */
    bool all = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sites") && i + 1 < argc)
            want_sites = argv[++i];
        else if (!strcmp(argv[i], "--depth") && i + 1 < argc) {
            int d = atoi(argv[++i]);
            for (size_t j = 0; j < UNCLIP_FAULT_N_SITES; j++)
                depth[j] = d < 1 ? 1 : d;
        }
        else if (!strcmp(argv[i], "--all"))
            all = true;
        else if (!strcmp(argv[i], "--range") && i + 1 < argc)
            sscanf(argv[++i], "%llu:%llu", &k_lo, &k_hi);
        else if (!strcmp(argv[i], "--check-every") && i + 1 < argc)
            check_every = strtoull(argv[++i], NULL, 10);
    }
    if (check_every == 0)
        check_every = 1;

    struct state s = {.model_dir = tp_small_model("models/tiny-karlo")};
    if (!s.model_dir)
        return tu_summary("reliability-faults");
    if (!open_all(&s) && !s.ctx) {
        finish(&s);
        return 77;
    }
    if (!s.model)
        return finish(&s);

    /* Warm-up (loads what the model keeps between runs), then the reference run that
     * counts the events of every site. */
    struct unclip_run_params p = tp_params(7);
    double t0 = rel_seconds();
    unclip_status st = unclip_run_text_to_image(s.model, prompt, &p, &s.ref);
    TU_CHECK(st == UNCLIP_OK, "warm-up run: %s", unclip_ctx_last_error(s.ctx));
    if (st != UNCLIP_OK)
        return finish(&s);
    unclip_result_clear(&s.ref);
    double t1 = rel_seconds();
    s.mem_base = unclip__vk_mem_in_use(s.ctx->vk);
    for (size_t i = 0; i < UNCLIP_FAULT_N_SITES; i++) {
        seen[i] = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
        firsts[i] = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    }
    arm_all(0);
    unclip__fault_observe(observe, NULL);
    st = unclip_run_text_to_image(s.model, prompt, &p, &s.ref);
    unclip__fault_observe(NULL, NULL);
    double t2 = rel_seconds();
    uint64_t counts[N_SITES];
    for (size_t i = 0; i < N_SITES; i++)
        counts[i] = unclip__fault_count(sites[i].site);
    TU_CHECK(st == UNCLIP_OK, "reference run: %s", unclip_ctx_last_error(s.ctx));
    s.live_base = unclip__alloc_live();
    /* the reference result is kept: account for its blocks */
    printf("  reference run: %.2f s (warm-up %.2f s)\n", t2 - t1, t1 - t0);
    for (size_t i = 0; i < 4; i++)
        printf("  %-6s %5llu events, %4u distinct call stacks (%d frames)\n", sites[i].name,
               (unsigned long long)counts[i], firsts[sites[i].site]->len,
               depth[sites[i].site]);
    for (size_t i = 0; i < 4; i++)
        TU_CHECK(counts[i] > 0 && firsts[sites[i].site]->len > 0, "the run reached no %s event",
                 sites[i].name);
    TU_CHECK(s.mem_base == unclip__vk_mem_in_use(s.ctx->vk), "the reference run kept %llu "
             "device bytes", (unsigned long long)(unclip__vk_mem_in_use(s.ctx->vk) - s.mem_base));
    if (st != UNCLIP_OK)
        return finish(&s);

    uint64_t total = 0, total_clean = 0, injected[N_SITES] = {0};
    double t_faults = rel_seconds();
    for (size_t i = 0; i < N_SITES; i++) {
        const struct site *site = &sites[i];
        if (!strstr(want_sites, site->name))
            continue;
        bool lost = site->site == UNCLIP_FAULT_DEVICE_LOST;
        uint64_t n = counts[lost ? 3 : i];
        /* the k to fail: every one, or the first of each distinct stack; a loss costs a new
         * context and model, so three fence waits for it */
        GArray *ks = g_array_new(FALSE, FALSE, sizeof(uint64_t));
        if (lost) {
            uint64_t pts[3] = {1, n / 2, n};
            for (int j = 0; j < 3; j++)
                if (pts[j] >= 1 && (j == 0 || pts[j] != pts[j - 1]))
                    g_array_append_val(ks, pts[j]);
        } else if (all || (!sanitized && (site->site == UNCLIP_FAULT_SUBMIT ||
                                          site->site == UNCLIP_FAULT_FENCE_WAIT))) {
            for (uint64_t k = 1; k <= n; k++)
                g_array_append_val(ks, k);
        } else {
            g_array_append_vals(ks, firsts[site->site]->data, firsts[site->site]->len);
        }
        uint64_t tried = 0, tolerated = 0, failures = 0;
        double ts = rel_seconds();
        for (guint ki = 0; ki < ks->len; ki++) {
            uint64_t k = g_array_index(ks, uint64_t, ki);
            if (k < k_lo || k > k_hi)
                continue;
            char what[96];
            snprintf(what, sizeof what, "%s fault %llu of %llu", site->name,
                     (unsigned long long)k, (unsigned long long)n);
            struct unclip_result res;
            memset(&res, 0x5a, sizeof res);
            struct unclip_result before = res;
            struct unclip_run_params pk = tp_params(7);
            unclip__fault_arm(site->site, k);
            st = unclip_run_text_to_image(s.model, prompt, &pk, &res);
            uint64_t seen = unclip__fault_count(site->site);
            unclip__fault_arm(site->site, 0);
            tried++;
            const char *msg = unclip_ctx_last_error(s.ctx);
            TU_CHECK(seen >= k, "%s: the run saw only %llu events", what,
                     (unsigned long long)seen);
            if (st == UNCLIP_OK) {
                tolerated++;
                printf("  %s: tolerated (the run succeeded)\n", what);
                TU_CHECK(site->site == UNCLIP_FAULT_HOST_ALLOC && tp_same_result(&res, &s.ref),
                         "%s: the run succeeded%s", what,
                         site->site == UNCLIP_FAULT_HOST_ALLOC ? " with another picture" : "");
                unclip_result_clear(&res);
            } else {
                failures++;
                TU_CHECK(st == site->want && msg[0], "%s: status %d (%s), expected %d", what,
                         (int)st, msg, (int)site->want);
                TU_CHECK(!memcmp(&res, &before, sizeof res), "%s: the result was written",
                         what);
            }
            TU_CHECK(unclip__vk_mem_in_use(s.ctx->vk) == s.mem_base, "%s: %llu device bytes "
                     "in use, %llu before", what,
                     (unsigned long long)unclip__vk_mem_in_use(s.ctx->vk),
                     (unsigned long long)s.mem_base);
            if (site->site == UNCLIP_FAULT_DEVICE_LOST && st == UNCLIP_E_DEVICE_LOST) {
                struct unclip_run_params pa = tp_params(7);
                struct unclip_result again = {0};
                unclip_status st2 = unclip_run_text_to_image(s.model, prompt, &pa, &again);
                msg = unclip_ctx_last_error(s.ctx);
                TU_CHECK(st2 == UNCLIP_E_DEVICE_LOST && strstr(msg, "recreate"),
                         "%s: a run after the loss: status %d, '%s'", what, (int)st2, msg);
                unclip_result_clear(&again);
                close_all(&s);
                if (!open_all(&s))
                    break;
                good_run(&s, what);
                continue;
            }
            if (failures % check_every == 0 || ki + 1 == ks->len)
                if (!good_run(&s, what) && tu_failures > 20)
                    break;
        }
        total += tried;
        total_clean += failures;
        injected[i] = tried;
        printf("  %-6s %4llu of %4llu events failed on purpose, %llu failed cleanly, %llu "
               "tolerated, %.1f s\n", site->name, (unsigned long long)tried,
               (unsigned long long)n, (unsigned long long)failures,
               (unsigned long long)tolerated, rel_seconds() - ts);
        g_array_free(ks, TRUE);
        if (tu_failures > 20)
            break;
    }
    printf("  faults injected: %llu (host %llu, device %llu, submit %llu, fence %llu, lost "
           "device %llu), %llu failed the run cleanly, in %.1f s\n", (unsigned long long)total,
           (unsigned long long)injected[0], (unsigned long long)injected[1],
           (unsigned long long)injected[2], (unsigned long long)injected[3],
           (unsigned long long)injected[4], (unsigned long long)total_clean,
           rel_seconds() - t_faults);
    for (size_t i = 0; i < UNCLIP_FAULT_N_SITES; i++) {
        g_hash_table_destroy(seen[i]);
        g_array_free(firsts[i], TRUE);
    }
    unclip_result_clear(&s.ref);
    return finish(&s);
}
