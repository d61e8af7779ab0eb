/* Helpers shared by the C tests: deterministic random data, comparisons with the measured
 * figure printed, and a small check macro that counts failures. */
#ifndef UNCLIP_TESTUTIL_H
#define UNCLIP_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* splitmix64-based generator: same sequence on every machine. */
struct tu_rng {
    uint64_t s;
};
void     tu_rng_seed(struct tu_rng *r, uint64_t seed);
uint64_t tu_rng_u64(struct tu_rng *r);
float    tu_rng_uniform(struct tu_rng *r, float lo, float hi); /* [lo, hi) */
float    tu_rng_normal(struct tu_rng *r);
void     tu_fill_uniform(struct tu_rng *r, float *x, int64_t n, float lo, float hi);
void     tu_fill_normal(struct tu_rng *r, float *x, int64_t n, float scale);

/* Normalised mean squared error sum((a-b)^2) / max(sum(b^2), tiny). */
double tu_nmse(const float *got, const float *want, int64_t n);
/* Relative L2 sqrt(sum((a-b)^2) / sum(b^2)). */
double tu_rel_l2(const float *got, const float *want, int64_t n);
double tu_max_abs(const float *got, const float *want, int64_t n);
/* Index of the first NaN/Inf, or -1. */
int64_t tu_first_nonfinite(const float *x, int64_t n);

/* Failure counting: TU_CHECK(cond, fmt, ...) prints FAIL with the message and counts it. */
extern int tu_failures;
extern int tu_checks;
#define TU_CHECK(cond, ...)                                    \
    do {                                                       \
        tu_checks++;                                           \
        if (!(cond)) {                                         \
            tu_failures++;                                     \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);        \
            printf(__VA_ARGS__);                               \
            printf("\n");                                      \
        }                                                      \
    } while (0)

/* Prints "<name>: N checks, M failed" and returns the process exit code. */
int tu_summary(const char *name);

/* Path of a golden file: $UNCLIP_GOLDENS/<rel> (or ../shared/goldens/<rel>). Static buffer. */
const char *tu_golden_path(const char *rel);

#endif
