/* The torch-compatible generator (engine/core/rng.h) against goldens/rng.safetensors.
 *
 * The draw sequences come from manifest.json "rng_cases" (seed, draw index, shape, words
 * consumed); every draw is compared with its golden tensor (max abs diff <= 1e-5, and the
 * number of bit-exact values is reported: all of them are expected with glibc). Where the
 * manifest gives the number of 32-bit words a draw consumes, that count is checked too, by
 * replaying the words on a copy of the generator. */
#include "core/rng.h"
#include "io/safetensors.h"
#include "testutil.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct unclip_st_file *goldens;

/* Golden tensor as floats (caller frees), checking its element count. */
static float *
golden_f32(const char *name, int64_t want_numel)
{
    const struct unclip_st_tensor *t = unclip__st_find(goldens, name);
    TU_CHECK(t != NULL, "golden tensor %s missing", name);
    if (!t)
        return NULL;
    TU_CHECK(t->numel == want_numel, "%s: %lld elements, manifest says %lld", name,
             (long long)t->numel, (long long)want_numel);
    if (t->numel != want_numel)
        return NULL;
    float *v = malloc((size_t)t->numel * sizeof *v);
    struct unclip_err err = {0};
    if (unclip__st_to_f32(t, v, &err) != UNCLIP_OK) {
        TU_CHECK(0, "%s: %s", name, err.msg);
        free(v);
        return NULL;
    }
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

/* Words the engine consumes for n values on the n >= 16 path (documented in rng.h). */
static void
check_word_count(const struct unclip_rng *before, const struct unclip_rng *after,
                 int64_t words, const char *key)
{
    struct unclip_rng replay;
    unclip__rng_copy(&replay, before);
    for (int64_t i = 0; i < words; i++)
        unclip__rng_u32(&replay);
    struct unclip_rng a;
    unclip__rng_copy(&a, after);
    int same = 1;
    for (int i = 0; i < 8; i++)
        same &= unclip__rng_u32(&replay) == unclip__rng_u32(&a);
    TU_CHECK(same, "%s: the draw did not consume exactly %lld words", key, (long long)words);
}

static double worst_abs = 0.0;
static int64_t total_values = 0, total_exact = 0;

static void
run_cases(JsonArray *cases)
{
    struct unclip_rng r;
    int64_t cur_seed = -1;
    guint n_cases = json_array_get_length(cases);
    int drawn = 0;
    for (guint c = 0; c < n_cases; c++) {
        JsonObject *o = json_array_get_object_element(cases, c);
        const char *key = json_object_get_string_member(o, "key");
        if (!json_object_has_member(o, "shape"))
            continue; /* the torch.rand case, checked separately */
        int64_t seed = json_object_get_int_member(o, "seed");
        int64_t index = json_object_get_int_member(o, "draw_index");
        if (seed != cur_seed) {
            TU_CHECK(index == 0, "%s: draws of a seed must start at index 0", key);
            unclip__rng_seed(&r, (uint64_t)seed);
            cur_seed = seed;
        }
        JsonArray *shape = json_object_get_array_member(o, "shape");
        int64_t n = 1;
        for (guint d = 0; d < json_array_get_length(shape); d++)
            n *= json_array_get_int_element(shape, d);
        float *want = golden_f32(key, n);
        if (!want)
            continue;
        float *got = malloc((size_t)n * sizeof *got);
        struct unclip_rng before;
        unclip__rng_copy(&before, &r);
        unclip__rng_randn(&r, got, n);
        double mad = tu_max_abs(got, want, n);
        int64_t exact = count_bit_exact(got, want, n);
        printf("  %-22s n=%-6lld max|diff| %.3g, bit-exact %lld/%lld\n", key, (long long)n, mad,
               (long long)exact, (long long)n);
        TU_CHECK(mad <= 1e-5, "%s: max abs diff %g > 1e-5", key, mad);
        if (mad > worst_abs)
            worst_abs = mad;
        total_values += n;
        total_exact += exact;
        JsonNode *wn = json_object_get_member(o, "mt19937_words");
        if (wn && !JSON_NODE_HOLDS_NULL(wn))
            check_word_count(&before, &r, json_node_get_int(wn), key);
        free(got);
        free(want);
        drawn++;
    }
    TU_CHECK(drawn >= 14, "only %d randn cases found in the manifest", drawn);
}

static void
check_uniform(void)
{
    float *want = golden_f32("seed0_rand_uniform_1000", 1000);
    if (!want)
        return;
    float got[1000];
    struct unclip_rng r;
    unclip__rng_seed(&r, 0);
    unclip__rng_rand(&r, got, 1000);
    int64_t exact = count_bit_exact(got, want, 1000);
    double mad = tu_max_abs(got, want, 1000);
    printf("  seed0_rand_uniform_1000 max|diff| %.3g, bit-exact %lld/1000\n", mad,
           (long long)exact);
    TU_CHECK(exact == 1000, "torch.rand: %lld of 1000 bit-exact", (long long)exact);
    free(want);
}

/* Facts quoted in goldens README 5.2, independent of the golden file. */
static void
check_documented_values(void)
{
    struct unclip_rng r;
    unclip__rng_seed(&r, 0);
    const uint32_t words[4] = {2357136044u, 2546248239u, 3071714933u, 3626093760u};
    for (int i = 0; i < 4; i++) {
        uint32_t w = unclip__rng_u32(&r);
        TU_CHECK(w == words[i], "seed 0 word %d: %u, want %u", i, w, words[i]);
    }
    float v[16];
    unclip__rng_seed(&r, 0);
    unclip__rng_rand(&r, v, 1);
    TU_CHECK(fabsf(v[0] - 0.49625659f) < 1e-7f, "seed 0 rand: %.8f", v[0]);
    unclip__rng_seed(&r, 0);
    unclip__rng_randn(&r, v, 16);
    TU_CHECK(fabsf(v[0] + 1.1258398f) < 1e-6f && fabsf(v[1] + 1.1523602f) < 1e-6f &&
                 fabsf(v[2] + 0.2505786f) < 1e-6f,
             "seed 0 randn(16): %.7f %.7f %.7f", v[0], v[1], v[2]);
    unclip__rng_seed(&r, 0);
    unclip__rng_randn(&r, v, 1);
    TU_CHECK(fabsf(v[0] - 1.5409961f) < 1e-6f, "seed 0 randn(1): %.7f", v[0]);

    /* Seeds are taken mod 2^32, and seeding drops the cached normal. */
    struct unclip_rng a, b;
    unclip__rng_seed(&a, 7);
    unclip__rng_seed(&b, (UINT64_C(1) << 32) + 7);
    TU_CHECK(unclip__rng_u32(&a) == unclip__rng_u32(&b), "seed mod 2^32");
    float x, y;
    unclip__rng_seed(&a, 5);
    unclip__rng_randn(&a, &x, 1); /* leaves a cached value */
    unclip__rng_seed(&a, 5);
    unclip__rng_randn(&a, &y, 1);
    TU_CHECK(x == y, "re-seeding must clear the cached normal (%g vs %g)", x, y);

    /* Forking: a copy continues the same stream independently, cache included. */
    float p[40], q[40];
    unclip__rng_seed(&a, 99);
    unclip__rng_randn(&a, p, 3); /* odd count: a cached value is pending */
    unclip__rng_copy(&b, &a);
    unclip__rng_randn(&a, p, 40);
    unclip__rng_randn(&a, p + 20, 1);
    unclip__rng_randn(&b, q, 40);
    unclip__rng_randn(&b, q + 20, 1);
    TU_CHECK(memcmp(p, q, sizeof p) == 0, "a copied generator must give the same stream");

    /* n <= 0 draws nothing. */
    unclip__rng_seed(&a, 3);
    unclip__rng_seed(&b, 3);
    unclip__rng_randn(&a, NULL, 0);
    unclip__rng_rand(&a, NULL, 0);
    TU_CHECK(unclip__rng_u32(&a) == unclip__rng_u32(&b), "empty draws must not consume words");
}

int
main(void)
{
    struct unclip_err err = {0};
    const char *path = tu_golden_path("goldens/rng.safetensors");
    if (unclip__st_open(path, &goldens, &err) != UNCLIP_OK) {
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
    check_documented_values();
    run_cases(json_object_get_array_member(root, "rng_cases"));
    check_uniform();
    printf("randn: %lld values, %lld bit-exact, worst max|diff| %.3g\n", (long long)total_values,
           (long long)total_exact, worst_abs);
    g_object_unref(parser);
    unclip__st_close(goldens);
    return tu_summary("rng");
}
