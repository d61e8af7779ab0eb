/* Reliability of the Vulkan runtime (engine/vk) on its own, no model needed:
 *   - validation: with UNCLIP_VALIDATION=1 the layer and the debug-utils messenger are on, a
 *     message sent through the messenger fails the next finish() (once), real work makes none;
 *   - memory budget: UNCLIP_DEVICE_BUDGET parsing, the budget/available figures, and the
 *     stage check's UNCLIP_E_DEVICE_NOMEM message;
 *   - fault sites: every buffer creation is a device-allocation event; submit, fence-wait and
 *     device-lost faults give their status, free nothing twice, and (except a lost device)
 *     leave the context usable;
 *   - submissions: with a small work bound no submission carries more than the bound (unless
 *     one dispatch alone is bigger), and a cancel stops at the next submission. */
#include "core/alloc.h"
#include "ops/ops.h"
#include "ops/tensor.h"
#include "testutil.h"
#include "vk/vk.h"

#include <stdlib.h>
#include <string.h>

static struct unclip_vk *
new_vk(const struct unclip_vk_params *p)
{
    struct unclip_err err = {0};
    struct unclip_vk *vk = NULL;
    unclip_status st = unclip__vk_new(p, &vk, &err);
    TU_CHECK(st == UNCLIP_OK, "unclip__vk_new: %s", err.msg);
    return st == UNCLIP_OK ? vk : NULL;
}

/* y = 2x + 1 over n values, checked on the host; returns the status of the first failure. */
static unclip_status
small_work(struct unclip_vk *vk, int64_t n)
{
    struct unclip_tensor x = {0}, y = {0};
    float *h = malloc((size_t)n * sizeof *h);
    unclip_status st = unclip__tensor_new(vk, UNCLIP_DT_F32, 1, &n, &x);
    if (!st)
        st = unclip__tensor_new(vk, UNCLIP_DT_F32, 1, &n, &y);
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)i;
    if (!st)
        st = unclip__tensor_upload_f32(vk, &x, h);
    if (!st)
        st = unclip__op_unary(vk, &x, UNCLIP_ACT_NONE, 2.0f, 1.0f, 0, 0, &y);
    if (!st)
        st = unclip__tensor_download_f32(vk, &y, h);
    if (!st)
        for (int64_t i = 0; i < n; i++)
            if (h[i] != 2.0f * (float)i + 1.0f) {
                TU_CHECK(false, "small work: y[%lld] = %g", (long long)i, h[i]);
                break;
            }
    unclip__tensor_free(&x);
    unclip__tensor_free(&y);
    free(h);
    return st;
}

static void
test_validation(void)
{
    setenv("UNCLIP_VALIDATION", "1", 1);
    struct unclip_vk_params p = unclip__vk_params_default(); /* validation off in params */
    struct unclip_vk *vk = new_vk(&p);
    unsetenv("UNCLIP_VALIDATION");
    if (!vk)
        return;
    if (!unclip__vk_validation_on(vk)) {
        /* the layer is a package of its own (vulkan-validationlayers); CI's validation part
         * sets UNCLIP_REQUIRE_VALIDATION so that a missing layer cannot pass as "0 reports" */
        const char *req = getenv("UNCLIP_REQUIRE_VALIDATION");
        TU_CHECK(!(req && req[0] == '1'), "validation: the Khronos layer is not installed "
                 "(Debian: vulkan-validationlayers) but UNCLIP_REQUIRE_VALIDATION=1");
        printf("  validation: layer not installed, checks skipped\n");
        unclip__vk_free(vk);
        return;
    }
    TU_CHECK(small_work(vk, 1000) == UNCLIP_OK, "work with validation: %s",
             unclip__vk_err(vk)->msg);
    uint64_t clean = unclip__vk_validation_messages(vk);
    TU_CHECK(clean == 0, "validation: %llu messages from plain work",
             (unsigned long long)clean);
    TU_CHECK(unclip__vk_validation_inject(vk, "pretend misuse 1234"), "inject");
    unclip_status st = unclip__vk_finish(vk);
    const char *msg = unclip__vk_err(vk)->msg;
    printf("  validation: an injected message -> status %d: %s\n", (int)st, msg);
    TU_CHECK(st == UNCLIP_E_VULKAN && strstr(msg, "validation") && strstr(msg, "1234"),
             "injected message: status %d, '%s'", (int)st, msg);
    TU_CHECK(unclip__vk_finish(vk) == UNCLIP_OK, "the message was reported twice");
    TU_CHECK(unclip__vk_validation_messages(vk) == 1, "messages %llu",
             (unsigned long long)unclip__vk_validation_messages(vk));
    /* reported on the way out of a download too */
    TU_CHECK(unclip__vk_validation_inject(vk, "second 5678"), "inject");
    st = small_work(vk, 10);
    TU_CHECK(st == UNCLIP_E_VULKAN && strstr(unclip__vk_err(vk)->msg, "5678"),
             "message before a download: status %d", (int)st);
    TU_CHECK(small_work(vk, 10) == UNCLIP_OK, "work after the reports");
    unclip__vk_free(vk);

    /* off: nothing installed, inject refused */
    vk = new_vk(&p);
    if (vk) {
        TU_CHECK(!unclip__vk_validation_on(vk) && !unclip__vk_validation_inject(vk, "x"),
                 "validation on without being asked");
        unclip__vk_free(vk);
    }
}

static void
test_budget(void)
{
    struct unclip_vk_params p = unclip__vk_params_default();
    const char *bad[] = {"abc", "0", "12X", "5MB", "-3", "99999999999999999999", NULL};
    for (int i = 0; bad[i]; i++) {
        setenv("UNCLIP_DEVICE_BUDGET", bad[i], 1);
        struct unclip_err err = {0};
        struct unclip_vk *vk = NULL;
        unclip_status st = unclip__vk_new(&p, &vk, &err);
        TU_CHECK(st == UNCLIP_E_ARG && vk == NULL && strstr(err.msg, "UNCLIP_DEVICE_BUDGET"),
                 "UNCLIP_DEVICE_BUDGET=%s: status %d, '%s'", bad[i], (int)st, err.msg);
        if (vk)
            unclip__vk_free(vk);
    }
    setenv("UNCLIP_DEVICE_BUDGET", "48M", 1);
    struct unclip_vk *vk = new_vk(&p);
    unsetenv("UNCLIP_DEVICE_BUDGET");
    if (!vk)
        return;
    uint64_t avail = 0;
    const char *src = NULL;
    uint64_t b = unclip__vk_budget(vk, &avail, &src);
    TU_CHECK(b == 48ull << 20 && src && !strcmp(src, "UNCLIP_DEVICE_BUDGET"),
             "budget %llu from %s", (unsigned long long)b, src ? src : "?");
    /* the context's own dummy buffer is 256 bytes */
    TU_CHECK(avail == (48ull << 20) - 256, "available %llu", (unsigned long long)avail);
    struct unclip_vk_buf *buf = NULL;
    TU_CHECK(unclip__vk_buf_new(vk, 10u << 20, &buf) == UNCLIP_OK, "10 MiB buffer");
    uint64_t avail2 = 0;
    unclip__vk_budget(vk, &avail2, NULL);
    TU_CHECK(avail2 == avail - (10u << 20), "available after a 10 MiB buffer: %llu",
             (unsigned long long)avail2);
    TU_CHECK(unclip__vk_budget_check(vk, "decoder", 30u << 20, 7u << 20) == UNCLIP_OK,
             "37 MiB of 38 MiB refused: %s", unclip__vk_err(vk)->msg);
    unclip_status st = unclip__vk_budget_check(vk, "decoder", 30u << 20, 9u << 20);
    const char *msg = unclip__vk_err(vk)->msg;
    printf("  budget: %s\n", msg);
    TU_CHECK(st == UNCLIP_E_DEVICE_NOMEM && strstr(msg, "decoder needs 39.0 MiB") &&
                 strstr(msg, "weights 30.0 MiB + activations 9.0 MiB") &&
                 strstr(msg, "only 38.0 MiB is available") && strstr(msg, "budget 48.0 MiB"),
             "over budget: status %d, '%s'", (int)st, msg);
    unclip__vk_buf_free(buf);
    unclip__vk_budget(vk, &avail2, NULL);
    TU_CHECK(avail2 == avail, "available after the free: %llu", (unsigned long long)avail2);
    unclip__vk_free(vk);

    /* The machine's own budget: something positive, and an impossible need is refused. */
    vk = new_vk(&p);
    if (!vk)
        return;
    b = unclip__vk_budget(vk, &avail, &src);
    printf("  budget of %s: %.1f MiB, %.1f MiB available (%s)\n", unclip__vk_info(vk)->name,
           (double)b / 1048576.0, (double)avail / 1048576.0, src);
    TU_CHECK(b > 0 && avail > 0 && avail <= b, "budget %llu, available %llu",
             (unsigned long long)b, (unsigned long long)avail);
    TU_CHECK(unclip__vk_budget_check(vk, "x", 1ull << 50, 0) == UNCLIP_E_DEVICE_NOMEM,
             "a petabyte fits");
    unclip__vk_free(vk);
}

static void
test_faults(void)
{
    struct unclip_vk_params p = unclip__vk_params_default();
    struct unclip_vk *vk = new_vk(&p);
    if (!vk)
        return;
    uint64_t base = unclip__vk_mem_in_use(vk);

    /* every buffer, also those carved from an existing block */
    struct unclip_vk_buf *a = NULL, *b = NULL;
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 0);
    TU_CHECK(unclip__vk_buf_new(vk, 1024, &a) == UNCLIP_OK, "buffer a");
    TU_CHECK(unclip__fault_count(UNCLIP_FAULT_DEVICE_ALLOC) == 1, "a buffer inside a block "
             "counted %llu events", (unsigned long long)unclip__fault_count(UNCLIP_FAULT_DEVICE_ALLOC));
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 1);
    unclip_status st = unclip__vk_buf_new(vk, 1024, &b);
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 0);
    TU_CHECK(st == UNCLIP_E_DEVICE_NOMEM && b == NULL &&
                 strstr(unclip__vk_err(vk)->msg, "out of device memory"),
             "injected buffer failure: %d %s", (int)st, unclip__vk_err(vk)->msg);
    /* a buffer that needs a new block: two events, the second one the block */
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 2);
    st = unclip__vk_buf_new(vk, 100u << 20, &b);
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_ALLOC, 0);
    TU_CHECK(st == UNCLIP_E_DEVICE_NOMEM && unclip__vk_mem_in_use(vk) == base,
             "injected block failure: %d, %llu bytes in use", (int)st,
             (unsigned long long)unclip__vk_mem_in_use(vk));
    unclip__vk_buf_free(a);
    TU_CHECK(unclip__vk_mem_in_use(vk) == base, "memory after the frees");

    /* submit and fence wait: an error, then the context works again */
    struct {
        enum unclip_fault_site site;
        unclip_status want;
        const char *name;
    } sites[] = {{UNCLIP_FAULT_SUBMIT, UNCLIP_E_VULKAN, "submit"},
                 {UNCLIP_FAULT_FENCE_WAIT, UNCLIP_E_TIMEOUT, "fence wait"},
                 {UNCLIP_FAULT_HOST_ALLOC, UNCLIP_E_NOMEM, "host allocation"}};
    for (size_t i = 0; i < sizeof sites / sizeof sites[0]; i++) {
        unclip__fault_arm(sites[i].site, 0);
        TU_CHECK(small_work(vk, 100) == UNCLIP_OK, "%s: baseline", sites[i].name);
        uint64_t n = unclip__fault_count(sites[i].site);
        TU_CHECK(n >= 1, "%s: no event in a small run", sites[i].name);
        int tolerated = 0;
        for (uint64_t k = 1; k <= n; k++) {
            unclip__fault_arm(sites[i].site, k);
            st = small_work(vk, 100);
            unclip__fault_arm(sites[i].site, 0);
            /* freeing never allocates (a buffer brings its free-list node): every host
             * allocation failure is an error of the call that made it */
            if (st == UNCLIP_OK)
                tolerated++;
            TU_CHECK(st == sites[i].want, "%s %llu of %llu: status %d (%s)", sites[i].name,
                     (unsigned long long)k, (unsigned long long)n, (int)st,
                     unclip__vk_err(vk)->msg);
            TU_CHECK(unclip__vk_mem_in_use(vk) == base, "%s %llu: %llu bytes left",
                     sites[i].name, (unsigned long long)k,
                     (unsigned long long)unclip__vk_mem_in_use(vk));
            TU_CHECK(small_work(vk, 100) == UNCLIP_OK, "%s %llu: the context is unusable: %s",
                     sites[i].name, (unsigned long long)k, unclip__vk_err(vk)->msg);
        }
        printf("  %s: %llu fault sites in a small op run, each a clean error (%d tolerated)\n",
               sites[i].name, (unsigned long long)n, tolerated);
    }

    /* a submission that a buffer free makes fails: the next download says so (the work it
     * carried is lost), and only once */
    int64_t n3 = 1000;
    struct unclip_tensor x = {0}, y = {0}, t = {0};
    float h[1000];
    for (int i = 0; i < 1000; i++)
        h[i] = (float)i;
    TU_CHECK(!unclip__tensor_new(vk, UNCLIP_DT_F32, 1, &n3, &x) &&
                 !unclip__tensor_new(vk, UNCLIP_DT_F32, 1, &n3, &y) &&
                 !unclip__tensor_new(vk, UNCLIP_DT_F32, 1, &n3, &t) &&
                 !unclip__tensor_upload_f32(vk, &x, h),
             "tensors");
    TU_CHECK(unclip__op_unary(vk, &x, UNCLIP_ACT_NONE, 3.0f, 0.0f, 0, 0, &y) == UNCLIP_OK,
             "dispatch");
    unclip__fault_arm(UNCLIP_FAULT_SUBMIT, 1);
    unclip__tensor_free(&t); /* submits the pending dispatch, which fails */
    unclip__fault_arm(UNCLIP_FAULT_SUBMIT, 0);
    st = unclip__tensor_download_f32(vk, &y, h);
    printf("  a failed submission inside a buffer free -> the next download: %s\n",
           unclip__vk_err(vk)->msg);
    TU_CHECK(st == UNCLIP_E_VULKAN && strstr(unclip__vk_err(vk)->msg, "freed"),
             "download after a lost submission: status %d (%s)", (int)st,
             unclip__vk_err(vk)->msg);
    TU_CHECK(unclip__op_unary(vk, &x, UNCLIP_ACT_NONE, 3.0f, 0.0f, 0, 0, &y) == UNCLIP_OK &&
                 unclip__tensor_download_f32(vk, &y, h) == UNCLIP_OK && h[999] == 2997.0f,
             "work after the reported failure: %s", unclip__vk_err(vk)->msg);
    unclip__tensor_free(&x);
    unclip__tensor_free(&y);
    unclip__vk_free(vk);

    /* a lost device: that status from then on, with the advice to recreate the context */
    vk = new_vk(&p);
    if (!vk)
        return;
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_LOST, 1);
    st = small_work(vk, 100);
    unclip__fault_arm(UNCLIP_FAULT_DEVICE_LOST, 0);
    TU_CHECK(st == UNCLIP_E_DEVICE_LOST, "device lost: status %d", (int)st);
    st = small_work(vk, 100);
    TU_CHECK(st == UNCLIP_E_DEVICE_LOST && strstr(unclip__vk_err(vk)->msg, "recreate"),
             "after the loss: status %d, '%s'", (int)st, unclip__vk_err(vk)->msg);
    unclip__vk_free(vk);
    vk = new_vk(&p);
    if (vk) {
        TU_CHECK(small_work(vk, 100) == UNCLIP_OK, "a new context after a loss");
        unclip__vk_free(vk);
    }
}

static bool
cancel_after(void *user)
{
    int *left = user;
    return --*left < 0;
}

static void
test_submissions(void)
{
    struct unclip_vk_params p = unclip__vk_params_default();
    p.work_bound = 50000;
    struct unclip_vk *vk = new_vk(&p);
    if (!vk)
        return;
    /* 40 dispatches of 10000 work units each (unary: one unit per element) */
    int64_t n = 10000;
    struct unclip_tensor x = {0};
    TU_CHECK(unclip__tensor_new(vk, UNCLIP_DT_F32, 1, &n, &x) == UNCLIP_OK, "tensor");
    struct unclip_vk_stats s0, s1;
    unclip__vk_stats(vk, &s0);
    for (int i = 0; i < 40; i++)
        TU_CHECK(unclip__op_unary(vk, &x, UNCLIP_ACT_NONE, 1.0f, 0.5f, 0, 0, &x) == UNCLIP_OK,
                 "dispatch %d", i);
    TU_CHECK(unclip__vk_finish(vk) == UNCLIP_OK, "finish");
    unclip__vk_stats(vk, &s1);
    printf("  work bound 50000: %llu dispatches in %llu submissions, at most %llu work units "
           "in one\n", (unsigned long long)(s1.dispatches - s0.dispatches),
           (unsigned long long)(s1.submissions - s0.submissions),
           (unsigned long long)s1.max_work_per_submission);
    TU_CHECK(s1.max_work_per_submission <= p.work_bound && s1.max_work_per_submission > 0,
             "max work per submission %llu", (unsigned long long)s1.max_work_per_submission);
    TU_CHECK(s1.submissions - s0.submissions >= 8, "only %llu submissions",
             (unsigned long long)(s1.submissions - s0.submissions));

    /* cancel: the callback says stop at its 3rd poll; the next dispatches fail */
    int left = 2;
    unclip__vk_set_cancel(vk, cancel_after, &left);
    unclip_status st = UNCLIP_OK;
    int done = 0;
    for (; done < 40 && st == UNCLIP_OK; done++)
        st = unclip__op_unary(vk, &x, UNCLIP_ACT_NONE, 1.0f, 0.5f, 0, 0, &x);
    if (st == UNCLIP_OK)
        st = unclip__vk_finish(vk);
    unclip__vk_stats(vk, &s0);
    TU_CHECK(st == UNCLIP_E_CANCELLED, "cancel: status %d", (int)st);
    printf("  cancel at the 3rd submission: stopped after %d dispatches (%d per submission)\n",
           done, 50000 / 10000);
    TU_CHECK(done <= 3 * 5 + 1, "cancel took effect after %d dispatches", done);
    unclip__vk_set_cancel(vk, NULL, NULL);
    unclip__tensor_free(&x);
    unclip__vk_free(vk);
}

int
main(void)
{
    test_validation();
    test_budget();
    test_faults();
    test_submissions();
    return tu_summary("reliability-vk");
}
