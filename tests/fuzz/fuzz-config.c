/* Fuzz target: the strict JSON reader (io/json.h) and every config reader built on it
 * (scheduler, preprocessor, CLIP text/vision, prior, text_proj, UNet configs), on any bytes.
 * An accepted document is walked: every key (nested objects as dotted paths) is read with the
 * getter of its type, which must succeed over the full range, and with the other getters,
 * which must fail with a message. */
#include "fuzz.h"
#include "io/json.h"
#include "io/preprocess.h"
#include "models/clip-text.h"
#include "models/clip-vision.h"
#include "models/prior.h"
#include "models/text-proj.h"
#include "models/unet.h"
#include "pipeline/scheduler.h"

#include <float.h>
#include <string.h>

#define MAX_ARRAY 64

struct walk {
    unclip_status first; /* first failure of a call that must not fail without a fault */
    int budget;          /* keys left to visit (bounds the work on wide documents)     */
};

static void
note(struct walk *w, unclip_status st)
{
    if (st != UNCLIP_OK && w->first == UNCLIP_OK)
        w->first = st;
}

static void
must_fail(unclip_status st, const struct unclip_err *e, const char *what)
{
    FZ_ASSERT(st != UNCLIP_OK, "%s succeeded on a value of another type", what);
    fz_check_failure(st, e, what);
}

static void
read_value(struct walk *w, const struct unclip_json *j, const char *path)
{
    struct unclip_err e = {0};
    enum unclip_json_type t = unclip__json_type(j, path);
    int64_t i64;
    int32_t i32, n;
    double d;
    bool b;
    const char *s;
    int64_t ia[MAX_ARRAY];
    double fa[MAX_ARRAY];
    const char *sa[MAX_ARRAY];
    static const char *const choices[] = {"epsilon", "sample", "learned_range", NULL};

    unclip_status st = unclip__json_int(j, path, INT64_MIN, INT64_MAX, &i64, &e);
    if (t == UNCLIP_JSON_INT) {
        note(w, st);
        FZ_ASSERT(st == UNCLIP_OK || st == UNCLIP_E_NOMEM, "int '%s': %s", path, e.msg);
    } else {
        must_fail(st, &e, "json_int");
    }
    st = unclip__json_i32_opt(j, path, 7, -5, 5, &i32, &e);
    if (st != UNCLIP_OK)
        fz_check_failure(st, &e, "json_i32_opt");
    else
        FZ_ASSERT((i32 >= -5 && i32 <= 5) || (i32 == 7 && t <= UNCLIP_JSON_NULL),
                  "i32_opt gave %d", (int)i32);
    st = unclip__json_float(j, path, -DBL_MAX, DBL_MAX, &d, &e);
    if (t == UNCLIP_JSON_INT || t == UNCLIP_JSON_FLOAT) {
        /* 1e400 is a JSON number json-glib reads as inf: refused as not finite */
        note(w, st);
        FZ_ASSERT(st == UNCLIP_OK || st == UNCLIP_E_NOMEM ||
                      (t == UNCLIP_JSON_FLOAT && st == UNCLIP_E_FORMAT && strstr(e.msg, "inf")),
                  "float '%s': %s", path, e.msg);
    } else {
        must_fail(st, &e, "json_float");
    }
    st = unclip__json_bool(j, path, &b, &e);
    if (t == UNCLIP_JSON_BOOL)
        note(w, st);
    else
        must_fail(st, &e, "json_bool");
    st = unclip__json_string(j, path, &s, &e);
    if (t == UNCLIP_JSON_STRING) {
        note(w, st);
        if (st == UNCLIP_OK)
            FZ_ASSERT(s != NULL, "string '%s' is NULL", path);
    } else {
        must_fail(st, &e, "json_string");
    }
    st = unclip__json_enum(j, path, choices, -1, &i32, &e);
    if (st == UNCLIP_OK)
        FZ_ASSERT(i32 >= 0 && i32 < 3, "enum index %d", (int)i32);
    else
        fz_check_failure(st, &e, "json_enum");
    st = unclip__json_int_array(j, path, 0, MAX_ARRAY, INT64_MIN, INT64_MAX, ia, &n, &e);
    if (st == UNCLIP_OK)
        FZ_ASSERT(t == UNCLIP_JSON_ARRAY && n >= 0 && n <= MAX_ARRAY, "int array of %d", n);
    else
        fz_check_failure(st, &e, "json_int_array");
    st = unclip__json_float_array(j, path, 1, 3, -1.0, 1.0, fa, &n, &e);
    if (st == UNCLIP_OK) {
        FZ_ASSERT(t == UNCLIP_JSON_ARRAY && n >= 1 && n <= 3, "float array of %d", n);
        for (int32_t i = 0; i < n; i++)
            FZ_ASSERT(fa[i] >= -1.0 && fa[i] <= 1.0, "float array value %g", fa[i]);
    } else {
        fz_check_failure(st, &e, "json_float_array");
    }
    st = unclip__json_string_array(j, path, 0, MAX_ARRAY, sa, &n, &e);
    if (st == UNCLIP_OK)
        for (int32_t i = 0; i < n; i++)
            FZ_ASSERT(sa[i] != NULL, "string array entry %d is NULL", (int)i);
    else
        fz_check_failure(st, &e, "json_string_array");
    FZ_ASSERT(unclip__json_has(j, path) == (t > UNCLIP_JSON_NULL), "has('%s') vs type %d",
              path, (int)t);
}

static void
walk(struct walk *w, const struct unclip_json *j, const char *prefix, int depth)
{
    struct unclip_err e = {0};
    const char **keys = NULL;
    int32_t n = 0;
    unclip_status st = unclip__json_keys(j, prefix, &keys, &n, &e);
    if (st != UNCLIP_OK) {
        fz_check_failure(st, &e, "json_keys");
        note(w, st);
        return;
    }
    for (int32_t i = 0; i < n && w->budget > 0; i++, w->budget--) {
        char path[512];
        int len = prefix && prefix[0] ? snprintf(path, sizeof path, "%s.%s", prefix, keys[i])
                                       : snprintf(path, sizeof path, "%s", keys[i]);
        if (len < 0 || (size_t)len >= sizeof path || strchr(keys[i], '.'))
            continue; /* a key with a dot is not addressable by a path */
        read_value(w, j, path);
        if (depth < 4 && unclip__json_type(j, path) == UNCLIP_JSON_OBJECT)
            walk(w, j, path, depth + 1);
    }
    unclip__free(keys);
}

#define READER(fn, type)                                                         \
    do {                                                                         \
        type cfg;                                                                \
        struct unclip_err e = {0};                                               \
        unclip_status s = fn(j, &cfg, &e);                                       \
        note(&w, s);                                                             \
        if (s != UNCLIP_OK) {                                                    \
            fz_check_failure(s, &e, #fn);                                        \
            FZ_ASSERT(strstr(e.msg, "fuzz/config.json") || s == UNCLIP_E_NOMEM, \
                      "%s: the message does not name the file: %s", #fn, e.msg); \
        }                                                                        \
    } while (0)

static unclip_status
one(const uint8_t *data, size_t size)
{
    struct unclip_err err = {0};
    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_parse((const char *)data, (int64_t)size,
                                          "fuzz/config.json", &j, &err);
    if (st != UNCLIP_OK) {
        fz_check_failure(st, &err, "json_parse");
        FZ_ASSERT(j == NULL, "a failed parse returned a document");
        return st;
    }
    struct walk w = {.first = UNCLIP_OK, .budget = 2000};
    walk(&w, j, NULL, 0);
    READER(unclip__sched_config_read, struct unclip_sched_config);
    READER(unclip__preprocess_config_read, struct unclip_preprocess_config);
    READER(unclip__clip_text_config_read, struct unclip_clip_text_config);
    READER(unclip__clip_vision_config_read, struct unclip_clip_vision_config);
    READER(unclip__prior_config_read, struct unclip_prior_config);
    READER(unclip__text_proj_config_read, struct unclip_text_proj_config);
    READER(unclip__unet_config_read, struct unclip_unet_config);
    unclip__json_free(j);
    return w.first;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_run_with_fault(one, data, size);
    return 0;
}
