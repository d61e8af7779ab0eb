/* Cancel and out-of-device-memory on a short variations run (a small copy of the tiny golden
 * model: golden weights, 8x8 decoder and 32x32 super-res pictures, see tp_small_model):
 *   - a cancel callback that says stop at its k-th poll (k from the first to the last poll of
 *     a full run) makes the run return UNCLIP_E_CANCELLED with at most one more GPU
 *     submission, never asks the callback again, frees every device byte it took, leaves the
 *     result untouched and writes no dump;
 *   - a device allocation that fails (fault injection, k-th allocation of the run) gives
 *     UNCLIP_E_DEVICE_NOMEM with a message naming the stage, and frees everything too;
 *   - after all that the model still makes the same picture. */
#include "core/alloc.h"
#include "test-pipeline-common.h"

struct canceller {
    struct unclip_vk *vk;
    int64_t polls;        /* calls so far                                 */
    int64_t fire_at;      /* 0: never; else say stop from this call on    */
    uint64_t subs_at_fire;
    bool fired;
};

static bool
on_cancel(void *user)
{
    struct canceller *c = user;
    c->polls++;
    if (c->fire_at > 0 && c->polls >= c->fire_at) {
        if (!c->fired) {
            struct unclip_vk_stats s;
            unclip__vk_stats(c->vk, &s);
            c->subs_at_fire = s.submissions;
            c->fired = true;
        }
        return true;
    }
    return false;
}

static uint64_t
submissions(struct unclip_vk *vk)
{
    struct unclip_vk_stats s;
    unclip__vk_stats(vk, &s);
    return s.submissions;
}

int
main(void)
{
    struct unclip_ctx *ctx = tp_ctx();
    if (!ctx)
        return 77;
    struct unclip_vk *vk = ctx->vk;
    char *dir = tp_small_model("models/tiny-karlo-variations");
    struct unclip_model *m = tp_model_at(ctx, dir);
    int32_t E = 0;
    float *emb = tp_embedding(1, &E);
    if (!m || !emb) {
        if (dir)
            tp_rmtree(dir);
        return tu_summary("pipeline-cancel");
    }
    struct unclip_source s = {.kind = UNCLIP_SOURCE_EMBEDDING, .embedding = emb, .embed_dim = E};
    char *tmp = g_build_filename(g_get_tmp_dir(), "unclip-cancel-XXXXXX", NULL);
    TU_CHECK(g_mkdtemp(tmp) != NULL, "mkdtemp");
    char *dump = g_build_filename(tmp, "dump", NULL);

    /* A full run: how many polls and device allocations it makes. */
    uint64_t base = unclip__vk_mem_in_use(vk);
    struct canceller c = {.vk = vk};
    struct unclip_run_params p = tp_params(77);
    p.cancel_cb = on_cancel;
    p.user_data = &c;
    struct unclip_result ref = {0};
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 0);
    unclip_status st = unclip_run_variations(m, &s, &p, &ref);
    uint64_t n_allocs = unclip__fault_count(UNCLIP_FAULT_DEVICE_ALLOC);
    TU_CHECK(st == UNCLIP_OK && ref.n_images == 1, "full run: %s", unclip_ctx_last_error(ctx));
    int64_t n_polls = c.polls;
    printf("  full run: %lld cancel polls, %llu device allocations, device memory back to "
           "%llu bytes\n", (long long)n_polls, (unsigned long long)n_allocs,
           (unsigned long long)unclip__vk_mem_in_use(vk));
    TU_CHECK(unclip__vk_mem_in_use(vk) == base, "a full run left %llu device bytes (was %llu)",
             (unsigned long long)unclip__vk_mem_in_use(vk), (unsigned long long)base);
    TU_CHECK(n_polls > 10, "only %lld polls in a run", (long long)n_polls);

    /* Cancel at the k-th poll. */
    int64_t ks[] = {1, 2, 3, n_polls / 4, n_polls / 2, (3 * n_polls) / 4, n_polls - 1, n_polls};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0] && n_polls > 10; i++) {
        struct canceller k = {.vk = vk, .fire_at = ks[i]};
        struct unclip_run_params pk = p;
        pk.user_data = &k;
        pk.dump_dir = dump;
        struct unclip_result res;
        memset(&res, 0x5a, sizeof res);
        struct unclip_result before = res;
        st = unclip_run_variations(m, &s, &pk, &res);
        uint64_t extra = submissions(vk) - k.subs_at_fire;
        printf("  cancel at poll %lld of %lld: %s; %llu submissions after it; device memory "
               "%llu bytes\n", (long long)ks[i], (long long)n_polls,
               unclip_ctx_last_error(ctx), (unsigned long long)extra,
               (unsigned long long)unclip__vk_mem_in_use(vk));
        TU_CHECK(st == UNCLIP_E_CANCELLED, "cancel at poll %lld: status %d (%s)",
                 (long long)ks[i], (int)st, unclip_ctx_last_error(ctx));
        TU_CHECK(k.fired && k.polls == ks[i], "cancel at poll %lld: the callback was asked "
                 "%lld times", (long long)ks[i], (long long)k.polls);
        TU_CHECK(extra <= 1, "cancel at poll %lld: %llu submissions after the cancel",
                 (long long)ks[i], (unsigned long long)extra);
        TU_CHECK(unclip__vk_mem_in_use(vk) == base, "cancel at poll %lld: %llu device bytes "
                 "left (was %llu)", (long long)ks[i],
                 (unsigned long long)unclip__vk_mem_in_use(vk), (unsigned long long)base);
        TU_CHECK(!memcmp(&res, &before, sizeof res), "cancel at poll %lld: the result was "
                 "written", (long long)ks[i]);
        TU_CHECK(!g_file_test(dump, G_FILE_TEST_EXISTS), "cancel at poll %lld: the dump "
                 "folder was created", (long long)ks[i]);
    }

    /* Out of device memory at the k-th allocation. */
    uint64_t as[] = {1, 2, n_allocs / 2, n_allocs};
    for (size_t i = 0; i < sizeof as / sizeof as[0] && n_allocs >= 2; i++) {
        struct unclip_run_params pa = tp_params(77);
        struct unclip_result res;
        memset(&res, 0x5a, sizeof res);
        struct unclip_result before = res;
        unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, as[i]);
        st = unclip_run_variations(m, &s, &pa, &res);
        unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 0);
        const char *msg = unclip_ctx_last_error(ctx);
        printf("  device allocation %llu of %llu fails: %s\n", (unsigned long long)as[i],
               (unsigned long long)n_allocs, msg);
        bool staged = strstr(msg, "text_encoder") || strstr(msg, "decoder") ||
                      strstr(msg, "super_res_first") || strstr(msg, "super_res_last");
        TU_CHECK(st == UNCLIP_E_DEVICE_NOMEM && strstr(msg, "out of device memory") && staged,
                 "allocation %llu: status %d, message '%s'", (unsigned long long)as[i], (int)st,
                 msg);
        TU_CHECK(unclip__vk_mem_in_use(vk) == base, "allocation %llu: %llu device bytes left",
                 (unsigned long long)as[i], (unsigned long long)unclip__vk_mem_in_use(vk));
        TU_CHECK(!memcmp(&res, &before, sizeof res), "allocation %llu: the result was written",
                 (unsigned long long)as[i]);
    }

    /* Still the same picture afterwards. */
    struct unclip_run_params pr = tp_params(77);
    struct unclip_result again = {0};
    st = unclip_run_variations(m, &s, &pr, &again);
    TU_CHECK(st == UNCLIP_OK && again.n_images == 1 && ref.n_images == 1 &&
                 tp_same_image(&again.images[0], &ref.images[0]),
             "the picture after cancels and failures differs: %s", unclip_ctx_last_error(ctx));
    unclip_result_clear(&again);
    gchar *rm[] = {"rm", "-rf", tmp, NULL};
    g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    unclip_result_clear(&ref);
    g_free(tmp);
    g_free(dump);
    g_free(emb);
    unclip_model_free(m);
    tp_rmtree(dir);
    g_free(dir);
    unclip_ctx_free(ctx);
    return tu_summary("pipeline-cancel");
}
