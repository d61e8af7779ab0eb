/* Cancel and watchdog over short text-to-image runs (golden tiny model, steps 2/2/2):
 *   - watchdog: no submission carries more work than the bound (vk stats), none has a single
 *     dispatch above it, and the longest fence wait is printed; checked at the default bound
 *     and at a small one (UNCLIP_WORK_BOUND, many more submissions and cancel points);
 *   - cancel at 50 random moments: a timer thread raises a flag after a random delay within
 *     the run's duration and the cancel callback returns it. A run that sees it returns
 *     UNCLIP_E_CANCELLED with at most one more submission after the callback first said stop,
 *     never asks again, leaves the result untouched, writes no dump folder, and gives every
 *     device byte and host block back; a run that ends first makes the reference picture.
 * Prints the cancels tried, how many stopped a run, and the submissions after the cancel. */
#include "rel-common.h"

#include <stdatomic.h>
#include <stdlib.h>

struct canceller {
    struct unclip_vk *vk;
    atomic_bool raised;
    int64_t polls;
    int64_t polls_after; /* polls after the first "stop" */
    bool fired;
    uint64_t subs_at_fire;
};

static bool
on_cancel(void *user)
{
    struct canceller *c = user;
    c->polls++;
    if (c->fired) {
        c->polls_after++;
        return true;
    }
    if (atomic_load(&c->raised)) {
        struct unclip_vk_stats s;
        unclip__vk_stats(c->vk, &s);
        c->subs_at_fire = s.submissions;
        c->fired = true;
        return true;
    }
    return false;
}

struct timer {
    struct canceller *c;
    gint64 delay_us;
};

static gpointer
timer_main(gpointer data)
{
    struct timer *t = data;
    g_usleep((gulong)t->delay_us);
    atomic_store(&t->c->raised, true);
    return NULL;
}

static const char *prompt = "a red circle on the left of a blue square";

/* One run; checks the watchdog figures of its submissions. */
static unclip_status
timed_run(struct unclip_ctx *ctx, struct unclip_model *m, uint64_t bound, const char *label,
          struct unclip_result *out)
{
    struct unclip_vk *vk = ctx->vk;
    struct unclip_run_params p = rel_params(7);
    struct unclip_vk_stats s0, s1;
    unclip__vk_stats(vk, &s0);
    double t0 = rel_seconds();
    unclip_status st = unclip_run_text_to_image(m, prompt, &p, out);
    double t1 = rel_seconds();
    unclip__vk_stats(vk, &s1);
    printf("  %s: %.2f s, %llu submissions, %llu dispatches, at most %llu work units in one "
           "submission (bound %llu), %llu in one dispatch (%s), longest wait %.1f ms\n", label,
           t1 - t0, (unsigned long long)(s1.submissions - s0.submissions),
           (unsigned long long)(s1.dispatches - s0.dispatches),
           (unsigned long long)s1.max_work_per_submission, (unsigned long long)bound,
           (unsigned long long)s1.max_work_per_dispatch,
           s1.max_dispatch_shader ? s1.max_dispatch_shader : "-", s1.max_submission_ms);
    TU_CHECK(st == UNCLIP_OK, "%s: %s", label, unclip_ctx_last_error(ctx));
    /* Batching never passes the bound; only one dispatch alone can (the runtime cannot split
     * it): at the default bound none may. */
    uint64_t limit = bound > s1.max_work_per_dispatch ? bound : s1.max_work_per_dispatch;
    TU_CHECK(s1.max_work_per_submission <= limit, "%s: a submission of %llu work units, bound "
             "%llu, largest dispatch %llu", label,
             (unsigned long long)s1.max_work_per_submission, (unsigned long long)bound,
             (unsigned long long)s1.max_work_per_dispatch);
    if (bound == UNCLIP_VK_WORK_BOUND)
        TU_CHECK(s1.max_work_per_dispatch <= bound, "%s: one dispatch of %llu work units, "
                 "bound %llu (the op must split its work)", label,
                 (unsigned long long)s1.max_work_per_dispatch, (unsigned long long)bound);
    return st;
}

int
main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Small submissions for the second context: many cancel points in a short run. */
    const uint64_t small_bound = 1u << 22;

    struct unclip_ctx *ctx = rel_ctx();
    if (!ctx)
        return 77;
    struct unclip_model *m = rel_model(ctx, "models/tiny-karlo");
    if (!m)
        return tu_summary("reliability-cancel");
    struct unclip_result ref = {0}, tmp = {0};
    timed_run(ctx, m, UNCLIP_VK_WORK_BOUND, "warm-up, default bound", &tmp);
    unclip_result_clear(&tmp);
    unclip_model_free(m);
    unclip_ctx_free(ctx);

    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)small_bound);
    setenv("UNCLIP_WORK_BOUND", b, 1);
    ctx = rel_ctx();
    unsetenv("UNCLIP_WORK_BOUND");
    if (!ctx)
        return tu_summary("reliability-cancel");
    m = rel_model(ctx, "models/tiny-karlo");
    if (!m)
        return tu_summary("reliability-cancel");
    struct unclip_vk *vk = ctx->vk;
    timed_run(ctx, m, small_bound, "warm-up, small bound", &tmp);
    unclip_result_clear(&tmp);
    double t0 = rel_seconds();
    timed_run(ctx, m, small_bound, "small bound", &ref);
    double run_s = rel_seconds() - t0;
    uint64_t mem_base = unclip__vk_mem_in_use(vk);
    int64_t live_base = unclip__alloc_live();

    char *tmpdir = g_build_filename(g_get_tmp_dir(), "unclip-rel-cancel-XXXXXX", NULL);
    TU_CHECK(g_mkdtemp(tmpdir) != NULL, "mkdtemp");
    char *dump = g_build_filename(tmpdir, "dump", NULL);

    struct tu_rng rng;
    tu_rng_seed(&rng, 2024);
    int tried = 0, cancelled = 0, completed = 0;
    uint64_t max_after = 0;
    for (int i = 0; i < 50; i++) {
        struct canceller c = {.vk = vk};
        atomic_init(&c.raised, false);
        struct timer t = {.c = &c,
                          .delay_us = (gint64)(tu_rng_uniform(&rng, 0.0f, 1.05f) * run_s * 1e6)};
        struct unclip_run_params p = rel_params(7);
        p.cancel_cb = on_cancel;
        p.user_data = &c;
        p.dump_dir = dump;
        struct unclip_result res;
        memset(&res, 0x5a, sizeof res);
        struct unclip_result before = res;
        GThread *th = g_thread_new("cancel-timer", timer_main, &t);
        unclip_status st = unclip_run_text_to_image(m, prompt, &p, &res);
        g_thread_join(th);
        tried++;
        struct unclip_vk_stats s;
        unclip__vk_stats(vk, &s);
        if (st == UNCLIP_OK) {
            completed++;
            TU_CHECK(!c.fired && rel_same_result(&res, &ref), "cancel %d (%.0f ms): the run "
                     "completed %s", i, t.delay_us / 1e3,
                     c.fired ? "after the callback said stop" : "with another picture");
            TU_CHECK(g_file_test(dump, G_FILE_TEST_IS_DIR), "cancel %d: a completed run "
                     "wrote no dump", i);
            unclip_result_clear(&res);
            gchar *rm[] = {"rm", "-rf", dump, NULL};
            g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL,
                         NULL);
            continue;
        }
        cancelled++;
        uint64_t after = s.submissions - c.subs_at_fire;
        if (after > max_after)
            max_after = after;
        TU_CHECK(st == UNCLIP_E_CANCELLED && c.fired, "cancel %d (%.0f ms): status %d (%s)", i,
                 t.delay_us / 1e3, (int)st, unclip_ctx_last_error(ctx));
        TU_CHECK(after <= 1, "cancel %d: %llu submissions after the callback said stop", i,
                 (unsigned long long)after);
        TU_CHECK(c.polls_after == 0, "cancel %d: the callback was asked %lld more times", i,
                 (long long)c.polls_after);
        TU_CHECK(!memcmp(&res, &before, sizeof res), "cancel %d: the result was written", i);
        TU_CHECK(!g_file_test(dump, G_FILE_TEST_EXISTS), "cancel %d: a dump was written", i);
        TU_CHECK(unclip__vk_mem_in_use(vk) == mem_base, "cancel %d: %llu device bytes in use, "
                 "%llu before", i, (unsigned long long)unclip__vk_mem_in_use(vk),
                 (unsigned long long)mem_base);
        TU_CHECK(unclip__alloc_live() == live_base, "cancel %d: %lld host blocks live, %lld "
                 "after a full run", i, (long long)unclip__alloc_live(), (long long)live_base);
    }
    printf("  cancels tried: %d at random moments of a %.2f s run; %d stopped the run (at most "
           "%llu submission after the stop), %d came after the end\n", tried, run_s, cancelled,
           (unsigned long long)max_after, completed);
    TU_CHECK(cancelled >= 40, "only %d of %d cancels stopped a run", cancelled, tried);

    /* and the model still works */
    struct unclip_result again = {0};
    timed_run(ctx, m, small_bound, "after the cancels", &again);
    TU_CHECK(rel_same_result(&again, &ref), "the picture after the cancels differs");
    unclip_result_clear(&again);
    unclip_result_clear(&ref);
    gchar *rm[] = {"rm", "-rf", tmpdir, NULL};
    g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    g_free(dump);
    g_free(tmpdir);
    unclip_model_free(m);
    unclip_ctx_free(ctx);
    return tu_summary("reliability-cancel");
}
