/* Op-test scaffolding: a case creates host inputs and device tensors through these helpers,
 * runs the op and its C reference, and compares. Every tensor a helper makes is released
 * when the case ends. Outputs carry guard words after their data and start filled with NaN,
 * so an out-of-bounds write or an element never written fails the comparison. */
#ifndef UNCLIP_TEST_OPHELP_H
#define UNCLIP_TEST_OPHELP_H

#include "ops/ops.h"
#include "ref/ref.h"
#include "testutil.h"

#define OT_MAX_TENSORS 32

struct ot_ctx {
    struct unclip_vk *vk;
    struct tu_rng rng;
    const char *case_name;
    struct unclip_tensor t[OT_MAX_TENSORS];
    float *host[OT_MAX_TENSORS];
    int n;
};

/* A device input filled with N(0, scale^2) values (dtype F32 or F16); *host receives the
 * float values actually stored (F16-rounded for F16). */
struct unclip_tensor *ot_input(struct ot_ctx *c, enum unclip_dtype dt, int32_t ndim,
                               const int64_t *shape, float scale, float **host);
/* A device input from given host values (F32). */
struct unclip_tensor *ot_input_from(struct ot_ctx *c, int32_t ndim, const int64_t *shape,
                                    const float *values);
/* A device output with guard words, pre-filled with NaN. */
struct unclip_tensor *ot_output(struct ot_ctx *c, int32_t ndim, const int64_t *shape);
/* A host scratch array of n floats (zeroed), released with the case. */
float *ot_scratch(struct ot_ctx *c, int64_t n);

/* Downloads `out`, checks finiteness, guard words and NMSE against ref (<= tol); counts a
 * failure with the figures printed. `label` names the comparison. */
void ot_compare(struct ot_ctx *c, const char *label, const struct unclip_tensor *out,
                const float *ref, double tol);

/* Records a failed op call as a test failure (with the engine's message). true when ok. */
bool ot_ok(struct ot_ctx *c, unclip_status st);

/* Split paths: runs fn(c, d) with the ops' binding limit lowered to `limit` bytes (test hook
 * unclip__ops_bind_limit_override), so small odd-sized tensors take the split path against the
 * same references, and checks that the op ran in at least min_dispatches dispatches. */
void ot_with_bind_limit(struct ot_ctx *c, const int64_t *d, uint64_t limit,
                        void (*fn)(struct ot_ctx *, const int64_t *), uint64_t min_dispatches);

/* NMSE bounds: fp32 ops agree with the double reference to ~1e-12; transcendental and
 * reduction ops to ~1e-10; with fp16 weights the reference gets the same rounded weights, so
 * only accumulation order differs. */
#define TOL_EXACT 1e-12
#define TOL_F32 1e-10
#define TOL_ACC 1e-9

/* One row of the op table: a name (filterable), the case function and its sizes. */
struct op_case {
    const char *name;
    void (*run)(struct ot_ctx *c, const int64_t *d);
    int64_t d[6];
};

/* One table per op family, each ending with a {NULL} row (tests/ops/cases-<family>.c). */
extern const struct op_case ot_cases_elementwise[], ot_cases_linear[], ot_cases_conv[],
    ot_cases_norm[], ot_cases_attention[], ot_cases_resample[], ot_cases_embed[];

#endif
