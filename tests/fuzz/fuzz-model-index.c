/* Fuzz target: the model-folder reader (io/model-dir.h) with any bytes as model_index.json.
 * The input is written into a scratch model folder (made once per process) that holds a few
 * component folders: prior/ with a config.json, decoder/ with only a PyTorch .bin,
 * tokenizer/ with a vocab.json stub, text_encoder/ with a model.safetensors, so listed names
 * resolve to every kind of lookup result. An accepted index is then queried for each
 * component: no lookup may step outside the folder, and every failure names what is
 * missing. */
#include "fuzz.h"
#include "io/model-dir.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

static char *root;       /* scratch model folder */
static char *index_path; /* root/model_index.json */

static void
cleanup(void)
{
    if (!root)
        return;
    gchar *argv[] = {"rm", "-rf", root, NULL};
    g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL |
                 G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    g_free(root);
    g_free(index_path);
    root = index_path = NULL;
}

static void
put(const char *rel, const char *text)
{
    char *p = g_build_filename(root, rel, NULL);
    char *dir = g_path_get_dirname(p);
    g_mkdir_with_parents(dir, 0700);
    FZ_ASSERT(fz_write_file(p, text, strlen(text)), "cannot write %s", p);
    g_free(dir);
    g_free(p);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    root = fz_scratch_dir("unclip-fuzz-model-XXXXXX");
    FZ_ASSERT(root != NULL, "no scratch folder");
    index_path = g_build_filename(root, "model_index.json", NULL);
    put("prior/config.json", "{\"num_layers\": 2}");
    put("prior_scheduler/scheduler_config.json", "{\"num_train_timesteps\": 1000}");
    put("decoder/diffusion_pytorch_model.bin", "PK\003\004");
    put("tokenizer/vocab.json", "{\"a\": 0}");
    put("text_encoder/model.safetensors", "not really");
    put("text_encoder/config.json", "../prior/config.json"); /* a git link stub */
    atexit(cleanup);
    return 0;
}

static const char *const probes[] = {"prior", "decoder", "tokenizer", "text_encoder",
                                     "prior_scheduler", "missing", "..", "", NULL};

static void
query(const struct unclip_model_dir *d, const char *name)
{
    struct unclip_err e = {0};
    char *p = NULL;
    bool has = unclip__model_dir_has(d, name);
    unclip_status st = unclip__model_dir_require(d, name, "fuzzing", &e);
    if ((st == UNCLIP_OK) != has) /* has() is false on out of memory: ask again */
        has = unclip__model_dir_has(d, name);
    FZ_ASSERT((st == UNCLIP_OK) == has || st == UNCLIP_E_NOMEM, "require/has disagree on '%s'",
              name);
    if (st != UNCLIP_OK)
        fz_check_failure(st, &e, "model_dir_require");
    unclip_status (*lookups[])(const struct unclip_model_dir *, const char *, char **,
                               struct unclip_err *) = {
        unclip__model_dir_folder, unclip__model_dir_config_path, unclip__model_dir_weights_path};
    for (size_t i = 0; i < sizeof lookups / sizeof lookups[0]; i++) {
        st = lookups[i](d, name, &p, &e);
        if (st == UNCLIP_OK) {
            FZ_ASSERT(p && g_str_has_prefix(p, root), "lookup %zu of '%s' left the folder: %s",
                      i, name, p ? p : "(null)");
            unclip__free(p);
        } else {
            fz_check_failure(st, &e, "model_dir lookup");
        }
    }
    st = unclip__model_dir_file(d, name, "vocab.json", &p, &e);
    if (st == UNCLIP_OK)
        unclip__free(p);
    else
        fz_check_failure(st, &e, "model_dir_file");
    struct unclip_json *j = NULL;
    st = unclip__model_dir_config(d, name, &j, &e);
    if (st == UNCLIP_OK)
        unclip__json_free(j);
    else
        fz_check_failure(st, &e, "model_dir_config");
}

static unclip_status
one(const uint8_t *data, size_t size)
{
    /* The file is rewritten by both runs of an input; a failing write is the machine's
     * problem, not the reader's. */
    FZ_ASSERT(fz_write_file(index_path, data, size),
              "cannot write %s", index_path);
    struct unclip_err err = {0};
    struct unclip_model_dir *d = NULL;
    unclip_status st = unclip__model_dir_open(root, &d, &err);
    if (st != UNCLIP_OK) {
        fz_check_failure(st, &err, "model_dir_open");
        FZ_ASSERT(d == NULL, "a failed open returned a folder");
        return st;
    }
    int32_t n = unclip__model_dir_count(d);
    FZ_ASSERT(n >= 0, "count %d", (int)n);
    for (int32_t i = 0; i < n; i++) {
        const struct unclip_component *c = unclip__model_dir_at(d, i);
        FZ_ASSERT(c && c->name && c->library && c->class_name, "component %d", (int)i);
        FZ_ASSERT(unclip__model_dir_name_ok(c->name), "accepted component name '%s'", c->name);
        FZ_ASSERT(unclip__model_dir_find(d, c->name) != NULL, "'%s' not found by name",
                  c->name);
        query(d, c->name);
    }
    FZ_ASSERT(unclip__model_dir_at(d, n) == NULL, "component past the count");
    for (int i = 0; probes[i]; i++)
        query(d, probes[i]);
    (void)unclip__model_dir_class(d);
    unclip__model_dir_free(d);
    return UNCLIP_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_run_with_fault(one, data, size);
    return 0;
}
