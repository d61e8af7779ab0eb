/* Helpers of the reliability tests that run pipelines (header only). Models, run parameters,
 * small model copies and picture comparison are the pipeline tests' (test-pipeline-common.h:
 * tp_model, tp_small_model, tp_params, tp_same_result, ...); this adds what differs here:
 * contexts with fp16 weights and a long submission wait. */
#ifndef UNCLIP_TEST_RELIABILITY_COMMON_H
#define UNCLIP_TEST_RELIABILITY_COMMON_H

#include "../pipeline/test-pipeline-common.h"
#include "vk/vk.h"

/* Longest wait for one submission in these tests: a CPU driver on a shared, loaded CI
 * machine can take minutes for a submission that needs a second on its own (a 60 s wait once
 * failed a budget run at load 15 on 2 cores); the tests check results, not speed. */
#define REL_SUBMIT_TIMEOUT_MS 600000u

/* Context parameters of these tests: the defaults (fp16 weights) and the long wait. */
static inline struct unclip_ctx_params
rel_ctx_params(void)
{
    struct unclip_ctx_params cp = unclip_ctx_params_default();
    cp.submit_timeout_ms = REL_SUBMIT_TIMEOUT_MS;
    return cp;
}

/* A context with rel_ctx_params(); NULL (and a message) without one. */
static inline struct unclip_ctx *
rel_ctx(void)
{
    struct unclip_ctx_params cp = rel_ctx_params();
    return tp_ctx_with(&cp);
}

static inline double
rel_seconds(void)
{
    return (double)g_get_monotonic_time() / 1e6;
}

#endif
