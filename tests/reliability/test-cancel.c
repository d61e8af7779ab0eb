/* Cancel and watchdog over short text-to-image runs (steps 2/2/2):
 *   - watchdog: no submission carries more work than the bound (vk stats), none has a single
 *     dispatch above it, and the longest fence wait is printed; checked at the default bound
 *     with the golden tiny model (its largest submissions come near the bound) and at a small
 *     bound (UNCLIP_WORK_BOUND, many more submissions and cancel points) with a small copy
 *     of it (golden weights and stages, 8x8 decoder and 32x32 super-res pictures:
 *     tp_small_model), which all the cancels below use: they compare runs with each other;
 *   - cancel at 50 random moments: a full run polls the cancel callback P times (once per
 *     finished submission); each of the 50 picks a poll index uniformly in [1, P] and the
 *     callback says stop from there on. Moments are counted in polls, not milliseconds, so
 *     every one lands inside the run however loaded the machine is (a timer would often
 *     fire after the end on a busy CI machine). The run must return UNCLIP_E_CANCELLED with
 *     at most one more submission after the callback first said stop, never ask again, leave
 *     the result untouched, write no dump folder, and give every device byte and host block
 *     back;
 *   - 10 more cancels come from another thread after a random delay (as a GUI's Stop button):
 *     a run that sees it obeys the same rules, one that ends first makes the reference picture.
 * Prints the cancels tried, how many stopped a run, and the submissions after the cancel. */
#include "rel-common.h"

#include <stdatomic.h>
#include <stdlib.h>

struct canceller {
    struct unclip_vk *vk;
    atomic_bool raised;  /* set by the timer thread */
    int64_t stop_at;     /* > 0: say stop from this poll on (1-based) */
    int64_t polls;
    int64_t polls_after; /* polls after the first "stop" */
    bool fired;
    uint64_t subs_at_fire;
    double t_fire; /* rel_seconds() at the first "stop" */
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
    if ((c->stop_at > 0 && c->polls >= c->stop_at) || atomic_load(&c->raised)) {
        struct unclip_vk_stats s;
        unclip__vk_stats(c->vk, &s);
        c->subs_at_fire = s.submissions;
        c->t_fire = rel_seconds();
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
    struct unclip_run_params p = tp_params(7);
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
    struct unclip_model *m = tp_model(ctx, "models/tiny-karlo");
    if (!m) {
        unclip_ctx_free(ctx);
        return tu_summary("reliability-cancel");
    }
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
    char *small_dir = NULL;
    m = tp_small_open(ctx, "models/tiny-karlo", &small_dir);
    if (!m) {
        unclip_ctx_free(ctx);
        return tu_summary("reliability-cancel");
    }
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

    /* P: polls of the cancel callback in a full run (it never says stop here). */
    struct canceller count = {.vk = vk};
    atomic_init(&count.raised, false);
    struct unclip_run_params pc = tp_params(7);
    pc.cancel_cb = on_cancel;
    pc.user_data = &count;
    unclip_status st = unclip_run_text_to_image(m, prompt, &pc, &tmp);
    TU_CHECK(st == UNCLIP_OK && tp_same_result(&tmp, &ref), "a run with a cancel callback "
             "that never stops: status %d (%s)", (int)st, unclip_ctx_last_error(ctx));
    unclip_result_clear(&tmp);
    const int64_t P = count.polls;
    TU_CHECK(P >= 50, "a full run polls the cancel callback only %lld times", (long long)P);

    struct tu_rng rng;
    tu_rng_seed(&rng, 2024);
    const int n_polled = 50, n_timed = 10;
    int tried = 0, cancelled = 0, completed = 0, timed_cancelled = 0;
    uint64_t max_after = 0;
    double max_return_ms = 0;
    for (int i = 0; i < n_polled + n_timed; i++) {
        bool timed = i >= n_polled;
        struct canceller c = {.vk = vk};
        atomic_init(&c.raised, false);
        struct timer t = {.c = &c,
                          .delay_us = (gint64)(tu_rng_uniform(&rng, 0.0f, 1.05f) * run_s * 1e6)};
        if (!timed)
            c.stop_at = 1 + (int64_t)(tu_rng_u64(&rng) % (uint64_t)(P > 0 ? P : 1));
        char moment[64];
        if (timed)
            snprintf(moment, sizeof moment, "timed cancel %d (%.0f ms)", i - n_polled,
                     t.delay_us / 1e3);
        else
            snprintf(moment, sizeof moment, "cancel %d (poll %lld of %lld)", i,
                     (long long)c.stop_at, (long long)P);
        struct unclip_run_params p = tp_params(7);
        p.cancel_cb = on_cancel;
        p.user_data = &c;
        p.dump_dir = dump;
        struct unclip_result res;
        memset(&res, 0x5a, sizeof res);
        struct unclip_result before = res;
        GThread *th = timed ? g_thread_new("cancel-timer", timer_main, &t) : NULL;
        st = unclip_run_text_to_image(m, prompt, &p, &res);
        double t_end = rel_seconds();
        if (th)
            g_thread_join(th);
        tried++;
        struct unclip_vk_stats s;
        unclip__vk_stats(vk, &s);
        if (st == UNCLIP_OK) {
            completed++;
            TU_CHECK(timed && !c.fired && tp_same_result(&res, &ref), "%s: the run "
                     "completed %s", moment,
                     !timed ? "although the callback said stop"
                     : c.fired ? "after the callback said stop" : "with another picture");
            TU_CHECK(g_file_test(dump, G_FILE_TEST_IS_DIR), "%s: a completed run wrote no "
                     "dump", moment);
            unclip_result_clear(&res);
            tp_rmtree(dump);
            continue;
        }
        cancelled++;
        timed_cancelled += timed;
        uint64_t after = s.submissions - c.subs_at_fire;
        if (after > max_after)
            max_after = after;
        if (c.fired && (t_end - c.t_fire) * 1e3 > max_return_ms)
            max_return_ms = (t_end - c.t_fire) * 1e3;
        TU_CHECK(st == UNCLIP_E_CANCELLED && c.fired, "%s: status %d (%s)", moment, (int)st,
                 unclip_ctx_last_error(ctx));
        TU_CHECK(strstr(unclip_ctx_last_error(ctx), "cancel") != NULL, "%s: message '%s'",
                 moment, unclip_ctx_last_error(ctx));
        TU_CHECK(after <= 1, "%s: %llu submissions after the callback said stop", moment,
                 (unsigned long long)after);
        TU_CHECK(c.polls_after == 0, "%s: the callback was asked %lld more times", moment,
                 (long long)c.polls_after);
        TU_CHECK(!timed || c.polls <= P, "%s: %lld polls, a full run has %lld", moment,
                 (long long)c.polls, (long long)P);
        TU_CHECK(!memcmp(&res, &before, sizeof res), "%s: the result was written", moment);
        TU_CHECK(!g_file_test(dump, G_FILE_TEST_EXISTS), "%s: a dump was written", moment);
        TU_CHECK(unclip__vk_mem_in_use(vk) == mem_base, "%s: %llu device bytes in use, %llu "
                 "before", moment, (unsigned long long)unclip__vk_mem_in_use(vk),
                 (unsigned long long)mem_base);
        TU_CHECK(unclip__alloc_live() == live_base, "%s: %lld host blocks live, %lld after a "
                 "full run", moment, (long long)unclip__alloc_live(), (long long)live_base);
    }
    struct unclip_vk_stats s_end;
    unclip__vk_stats(vk, &s_end);
    printf("  cancels tried: %d (%d at random polls of the %lld a full run makes, %d from a "
           "timer thread within a %.2f s run); %d stopped the run (%d of the timed), at most "
           "%llu submission after the stop, returned at most %.1f ms after it (longest submission "
           "%.1f ms); %d timed ones came after the end\n", tried, n_polled, (long long)P,
           n_timed, run_s, cancelled, timed_cancelled, (unsigned long long)max_after,
           max_return_ms, s_end.max_submission_ms, completed);
    TU_CHECK(cancelled - timed_cancelled == n_polled, "only %d of %d cancels stopped a run",
             cancelled - timed_cancelled, n_polled);

    /* and the model still works */
    struct unclip_result again = {0};
    timed_run(ctx, m, small_bound, "after the cancels", &again);
    TU_CHECK(tp_same_result(&again, &ref), "the picture after the cancels differs");
    unclip_result_clear(&again);
    unclip_result_clear(&ref);
    tp_rmtree(tmpdir);
    g_free(dump);
    g_free(tmpdir);
    tp_small_close(m, small_dir);
    unclip_ctx_free(ctx);
    return tu_summary("reliability-cancel");
}
