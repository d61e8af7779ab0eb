/* Loading errors of the CLIP towers: every failure must say which file and which tensor or
 * config key, and the config values a shape was derived from. The cases are built in a
 * temporary folder from the golden tiny models (config text edited, tensors dropped,
 * reshaped or retyped), next to an untouched copy that must load. Also: allocation failures
 * injected at every host allocation of a load + encode give clean errors. */
#include "core/alloc.h"
#include "io/safetensors.h"
#include "models/clip-text.h"
#include "models/clip-vision.h"
#include "testutil.h"

#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[4096];

/* What to change when copying a component. */
struct edit {
    const char *cfg_from, *cfg_to;  /* text replacement in config.json (NULL: none)      */
    const char *drop;               /* tensor left out                                   */
    const char *halve;              /* tensor whose first dimension is halved            */
    const char *as_i64;             /* tensor stored as I64 (same shape)                 */
    bool add_position_ids;          /* add an I64 "<prefix>.embeddings.position_ids"     */
    const char *pos_ids_name;
};

/* Copies <golden model>/<comp> into <tmpdir>/<tag>/ with the edit; returns the folder. */
static const char *
make_copy(const char *model, const char *comp, const char *tag, const struct edit *e)
{
    static char out[4200];
    char src[4096], path[4300];
    snprintf(out, sizeof out, "%s/%s", tmpdir, tag);
    g_mkdir_with_parents(out, 0700);

    /* config.json */
    snprintf(src, sizeof src, "%s/%s/config.json", tu_golden_path(model), comp);
    gchar *text = NULL;
    gsize len = 0;
    /* The variations folder stores some files as link stubs: follow one level. */
    if (!g_file_get_contents(src, &text, &len, NULL)) {
        printf("FAIL cannot read %s\n", src);
        tu_failures++;
        return out;
    }
    if (len < 200 && text[0] != '{') {
        char *dir = g_path_get_dirname(src);
        char *target = g_build_filename(dir, g_strstrip(text), NULL);
        g_free(text);
        g_file_get_contents(target, &text, &len, NULL);
        g_free(dir);
        g_free(target);
    }
    if (e->cfg_from) {
        char *at = strstr(text, e->cfg_from);
        TU_CHECK(at != NULL, "%s: '%s' not in the config", tag, e->cfg_from);
        if (at) {
            GString *s = g_string_new_len(text, at - text);
            g_string_append(s, e->cfg_to);
            g_string_append(s, at + strlen(e->cfg_from));
            g_free(text);
            text = g_string_free(s, FALSE);
        }
    }
    snprintf(path, sizeof path, "%s/config.json", out);
    g_file_set_contents(path, text, -1, NULL);
    g_free(text);

    /* model.safetensors */
    struct unclip_err err = {0};
    struct unclip_st_file *f = NULL;
    snprintf(src, sizeof src, "%s/%s/model.safetensors", tu_golden_path(model), comp);
    char *resolved = NULL;
    gchar *stub = NULL;
    gsize stub_len = 0;
    if (g_file_get_contents(src, &stub, &stub_len, NULL) && stub_len < 200 && stub[0] == '.') {
        char *dir = g_path_get_dirname(src);
        resolved = g_build_filename(dir, g_strstrip(stub), NULL);
        g_free(dir);
    }
    g_free(stub);
    unclip_status st = unclip__st_open(resolved ? resolved : src, &f, &err);
    g_free(resolved);
    TU_CHECK(st == UNCLIP_OK, "open %s: %s", src, err.msg);
    if (st != UNCLIP_OK)
        return out;
    struct unclip_st_writer *w = NULL;
    unclip__st_writer_new(&w, &err);
    for (int32_t i = 0; i < unclip__st_count(f); i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        if (e->drop && !strcmp(t->name, e->drop))
            continue;
        int64_t shape[UNCLIP_ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (e->halve && !strcmp(t->name, e->halve)) {
            shape[0] /= 2; /* the leading half of the data is a valid smaller tensor */
            st = unclip__st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data, &err);
        } else if (e->as_i64 && !strcmp(t->name, e->as_i64)) {
            int64_t *v = calloc((size_t)t->numel, sizeof(int64_t));
            st = unclip__st_writer_add(w, t->name, UNCLIP_DT_I64, t->ndim, shape, v, &err);
            free(v);
        } else {
            st = unclip__st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data, &err);
        }
        TU_CHECK(st == UNCLIP_OK, "copy tensor %s: %s", t->name, err.msg);
    }
    if (e->add_position_ids) {
        int64_t ids[1024], shape[2] = {1, 0};
        const char *pos_name = strstr(e->pos_ids_name, "text_model") ? 
            "text_model.embeddings.position_embedding.weight" :
            "vision_model.embeddings.position_embedding.weight";
        const struct unclip_st_tensor *pe = unclip__st_find(f, pos_name);
        shape[1] = pe ? pe->shape[0] : 1;
        for (int64_t i = 0; i < shape[1] && i < 1024; i++)
            ids[i] = i;
        unclip__st_writer_add(w, e->pos_ids_name, UNCLIP_DT_I64, 2, shape, ids, &err);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    st = unclip__st_writer_write(w, path, &err);
    TU_CHECK(st == UNCLIP_OK, "write %s: %s", path, err.msg);
    unclip__st_writer_free(w);
    unclip__st_close(f);
    return out;
}

/* Loads the text tower from a copy; returns the status, message in err. */
static unclip_status
load_text(struct unclip_vk *vk, const char *dir, struct unclip_err *err)
{
    char c[4300], w[4300];
    snprintf(c, sizeof c, "%s/config.json", dir);
    snprintf(w, sizeof w, "%s/model.safetensors", dir);
    struct unclip_clip_text *m = NULL;
    struct unclip_clip_text_opts o = {.fp32 = true};
    unclip__err_clear(err);
    unclip_status st = unclip__clip_text_load_files(vk, c, "text_encoder/config.json", w,
                                                    "text_encoder/model.safetensors", &o, &m,
                                                    err);
    unclip__clip_text_free(m);
    return st;
}

static unclip_status
load_vision(struct unclip_vk *vk, const char *dir, struct unclip_err *err)
{
    char c[4300], w[4300];
    snprintf(c, sizeof c, "%s/config.json", dir);
    snprintf(w, sizeof w, "%s/model.safetensors", dir);
    struct unclip_clip_vision *m = NULL;
    unclip__err_clear(err);
    unclip_status st = unclip__clip_vision_load_files(vk, c, "image_encoder/config.json", w,
                                                      "image_encoder/model.safetensors", NULL,
                                                      &m, err);
    unclip__clip_vision_free(m);
    return st;
}

/* Checks status and that every needle is in the message. */
static void
expect(const char *what, unclip_status st, const struct unclip_err *err, unclip_status want,
       const char *const *needles)
{
    printf("  %-28s -> %s\n", what, st == UNCLIP_OK ? "ok" : err->msg);
    TU_CHECK(st == want, "%s: status %d, expected %d (%s)", what, st, want, err->msg);
    for (int i = 0; needles && needles[i]; i++)
        TU_CHECK(strstr(err->msg, needles[i]) != NULL, "%s: message lacks \"%s\": %s", what,
                 needles[i], err->msg);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

static void
text_cases(struct unclip_vk *vk)
{
    const char *M = "models/tiny-karlo", *C = "text_encoder";
    struct unclip_err err;
    unclip_status st;
    const char *d;

    d = make_copy(M, C, "t-ok", &(struct edit){0});
    st = load_text(vk, d, &err);
    expect("untouched copy", st, &err, UNCLIP_OK, NULL);

    d = make_copy(M, C, "t-posids",
                  &(struct edit){.add_position_ids = true,
                                 .pos_ids_name = "text_model.embeddings.position_ids"});
    st = load_text(vk, d, &err);
    expect("with position_ids buffer", st, &err, UNCLIP_OK, NULL);

    /* missing files */
    {
        char c[4300], w[4300];
        struct unclip_clip_text *m = NULL;
        d = make_copy(M, C, "t-nofile", &(struct edit){0});
        snprintf(c, sizeof c, "%s/config.json", d);
        snprintf(w, sizeof w, "%s/model.safetensors", d);
        unlink(w);
        st = unclip__clip_text_load_files(vk, c, "text_encoder/config.json", w,
                                          "text_encoder/model.safetensors", NULL, &m, &err);
        expect("missing weight file", st, &err, st == UNCLIP_OK ? -999 : st,
               NEEDLES("text_encoder/model.safetensors"));
        TU_CHECK(st == UNCLIP_E_IO || st == UNCLIP_E_MODEL, "missing weights: status %d", st);
        TU_CHECK(m == NULL, "model returned on failure");
        unlink(c);
        st = unclip__clip_text_load_files(vk, c, "text_encoder/config.json", w,
                                          "text_encoder/model.safetensors", NULL, &m, &err);
        expect("missing config file", st, &err, UNCLIP_E_MODEL,
               NEEDLES("text_encoder/config.json"));
    }

    d = make_copy(M, C, "t-drop", &(struct edit){.drop = "text_model.encoder.layers.1.mlp.fc2.bias"});
    st = load_text(vk, d, &err);
    expect("missing tensor", st, &err, UNCLIP_E_MODEL,
           NEEDLES("text_encoder/model.safetensors",
                   "missing tensor 'text_model.encoder.layers.1.mlp.fc2.bias'"));

    d = make_copy(M, C, "t-droptok",
                  &(struct edit){.drop = "text_model.embeddings.token_embedding.weight"});
    st = load_text(vk, d, &err);
    expect("missing token table", st, &err, UNCLIP_E_MODEL,
           NEEDLES("text_encoder/model.safetensors",
                   "missing tensor 'text_model.embeddings.token_embedding.weight'"));

    d = make_copy(M, C, "t-dropq",
                  &(struct edit){.drop = "text_model.encoder.layers.0.self_attn.k_proj.weight"});
    st = load_text(vk, d, &err);
    expect("missing packed k_proj", st, &err, UNCLIP_E_MODEL,
           NEEDLES("missing tensor 'text_model.encoder.layers.0.self_attn.k_proj.weight'"));

    d = make_copy(M, C, "t-shape", &(struct edit){.halve = "text_projection.weight"});
    st = load_text(vk, d, &err);
    expect("wrong shape", st, &err, UNCLIP_E_MODEL,
           NEEDLES("text_encoder/model.safetensors", "'text_projection.weight'", "[16, 32]",
                   "expected [32, 32]", "projection_dim 32"));

    d = make_copy(M, C, "t-dtype",
                  &(struct edit){.as_i64 = "text_model.final_layer_norm.weight"});
    st = load_text(vk, d, &err);
    expect("integer weight", st, &err, UNCLIP_E_MODEL,
           NEEDLES("'text_model.final_layer_norm.weight'", "I64"));

    d = make_copy(M, C, "t-hidden",
                  &(struct edit){.cfg_from = "\"hidden_size\": 32", .cfg_to = "\"hidden_size\": 64"});
    st = load_text(vk, d, &err);
    expect("config hidden_size 64", st, &err, UNCLIP_E_MODEL,
           NEEDLES("text_encoder/model.safetensors",
                   "'text_model.embeddings.token_embedding.weight'", "expected [49408, 64]",
                   "text_encoder/config.json says", "hidden_size 64"));

    d = make_copy(M, C, "t-inner",
                  &(struct edit){.cfg_from = "\"intermediate_size\": 128",
                                 .cfg_to = "\"intermediate_size\": 96"});
    st = load_text(vk, d, &err);
    expect("config intermediate_size 96", st, &err, UNCLIP_E_MODEL,
           NEEDLES("'text_model.encoder.layers.0.mlp.fc1.weight'", "expected [96, 32]",
                   "intermediate_size 96"));

    d = make_copy(M, C, "t-fewer",
                  &(struct edit){.cfg_from = "\"num_hidden_layers\": 2",
                                 .cfg_to = "\"num_hidden_layers\": 1"});
    st = load_text(vk, d, &err);
    expect("config with fewer layers", st, &err, UNCLIP_E_MODEL,
           NEEDLES("text_encoder/model.safetensors", "'text_model.encoder.layers.1.",
                   "num_hidden_layers 1", "disagree"));

    d = make_copy(M, C, "t-more",
                  &(struct edit){.cfg_from = "\"num_hidden_layers\": 2",
                                 .cfg_to = "\"num_hidden_layers\": 3"});
    st = load_text(vk, d, &err);
    expect("config with more layers", st, &err, UNCLIP_E_MODEL,
           NEEDLES("missing tensor 'text_model.encoder.layers.2.layer_norm1.weight'"));

    d = make_copy(M, C, "t-pos",
                  &(struct edit){.cfg_from = "\"max_position_embeddings\": 77",
                                 .cfg_to = "\"max_position_embeddings\": 64"});
    st = load_text(vk, d, &err);
    expect("config max_position 64", st, &err, UNCLIP_E_MODEL,
           NEEDLES("'text_model.embeddings.position_embedding.weight'", "[77, 32]",
                   "expected [64, 32]"));

    d = make_copy(M, C, "t-act",
                  &(struct edit){.cfg_from = "\"quick_gelu\"", .cfg_to = "\"gelu_new\""});
    st = load_text(vk, d, &err);
    expect("unsupported hidden_act", st, &err, UNCLIP_E_MODEL,
           NEEDLES("text_encoder/config.json", "hidden_act 'gelu_new'"));

    d = make_copy(M, C, "t-heads",
                  &(struct edit){.cfg_from = "\"num_attention_heads\": 4",
                                 .cfg_to = "\"num_attention_heads\": 5"});
    st = load_text(vk, d, &err);
    expect("heads do not divide", st, &err, UNCLIP_E_MODEL,
           NEEDLES("text_encoder/config.json", "num_attention_heads 5"));

    d = make_copy(M, C, "t-type",
                  &(struct edit){.cfg_from = "\"hidden_size\": 32", .cfg_to = "\"hidden_size\": \"32\""});
    st = load_text(vk, d, &err);
    expect("hidden_size a string", st, &err, UNCLIP_E_FORMAT,
           NEEDLES("text_encoder/config.json", "hidden_size"));
}

static void
vision_cases(struct unclip_vk *vk)
{
    const char *M = "models/tiny-karlo-variations", *C = "image_encoder";
    struct unclip_err err;
    unclip_status st;
    const char *d;

    d = make_copy(M, C, "v-ok",
                  &(struct edit){.add_position_ids = true,
                                 .pos_ids_name = "vision_model.embeddings.position_ids"});
    st = load_vision(vk, d, &err);
    expect("untouched copy", st, &err, UNCLIP_OK, NULL);

    d = make_copy(M, C, "v-patch",
                  &(struct edit){.cfg_from = "\"patch_size\": 8", .cfg_to = "\"patch_size\": 16"});
    st = load_vision(vk, d, &err);
    expect("config patch_size 16", st, &err, UNCLIP_E_MODEL,
           NEEDLES("image_encoder/model.safetensors",
                   "'vision_model.embeddings.position_embedding.weight'", "[65, 48]",
                   "expected [17, 48]", "patch_size 16 (17 positions)"));

    d = make_copy(M, C, "v-size",
                  &(struct edit){.cfg_from = "\"image_size\": 64", .cfg_to = "\"image_size\": 72"});
    st = load_vision(vk, d, &err);
    expect("config image_size 72", st, &err, UNCLIP_E_MODEL,
           NEEDLES("'vision_model.embeddings.position_embedding.weight'", "expected [82, 48]",
                   "image_size 72"));

    d = make_copy(M, C, "v-chan",
                  &(struct edit){.cfg_from = "\"num_channels\": 3", .cfg_to = "\"num_channels\": 4"});
    st = load_vision(vk, d, &err);
    expect("config num_channels 4", st, &err, UNCLIP_E_MODEL,
           NEEDLES("'vision_model.embeddings.patch_embedding.weight'", "[48, 3, 8, 8]",
                   "expected [48, 4, 8, 8]"));

    d = make_copy(M, C, "v-drop", &(struct edit){.drop = "vision_model.post_layernorm.bias"});
    st = load_vision(vk, d, &err);
    expect("missing tensor", st, &err, UNCLIP_E_MODEL,
           NEEDLES("image_encoder/model.safetensors",
                   "missing tensor 'vision_model.post_layernorm.bias'"));

    d = make_copy(M, C, "v-cls",
                  &(struct edit){.as_i64 = "vision_model.embeddings.class_embedding"});
    st = load_vision(vk, d, &err);
    expect("integer class embedding", st, &err, UNCLIP_E_MODEL,
           NEEDLES("'vision_model.embeddings.class_embedding'", "I64"));

    d = make_copy(M, C, "v-proj", &(struct edit){.halve = "visual_projection.weight"});
    st = load_vision(vk, d, &err);
    expect("wrong projection shape", st, &err, UNCLIP_E_MODEL,
           NEEDLES("'visual_projection.weight'", "[16, 48]", "expected [32, 48]"));

    d = make_copy(M, C, "v-fewer",
                  &(struct edit){.cfg_from = "\"num_hidden_layers\": 2",
                                 .cfg_to = "\"num_hidden_layers\": 1"});
    st = load_vision(vk, d, &err);
    expect("config with fewer layers", st, &err, UNCLIP_E_MODEL,
           NEEDLES("'vision_model.encoder.layers.1.", "num_hidden_layers 1"));

    d = make_copy(M, C, "v-bigpatch",
                  &(struct edit){.cfg_from = "\"patch_size\": 8", .cfg_to = "\"patch_size\": 65"});
    st = load_vision(vk, d, &err);
    expect("patch larger than image", st, &err, UNCLIP_E_MODEL,
           NEEDLES("image_encoder/config.json", "patch_size 65"));
}

/* Makes the k-th host allocation fail for k = 1, 2, ... through a whole load + encode until
 * a run completes without reaching the armed allocation. */
static void
fault_cases(struct unclip_vk *vk)
{
    char dir[4300], c[4400], w[4400];
    snprintf(dir, sizeof dir, "%s/t-ok", tmpdir);
    snprintf(c, sizeof c, "%s/config.json", dir);
    snprintf(w, sizeof w, "%s/model.safetensors", dir);
    int64_t ids[77] = {49406, 320, 1125, 49407};
    float te[64];
    int failures = 0, k;
    for (k = 1; k < 5000; k++) {
        struct unclip_err err = {0};
        struct unclip_clip_text *m = NULL;
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, (uint64_t)k);
        unclip_status st = unclip__clip_text_load_files(vk, c, NULL, w, NULL, NULL, &m, &err);
        if (st == UNCLIP_OK)
            st = unclip__clip_text_encode(m, ids, 1, 77, te, NULL);
        uint64_t seen = unclip__fault_count(UNCLIP_FAULT_HOST_ALLOC);
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
        unclip__clip_text_free(m);
        if (st != UNCLIP_OK) {
            failures++;
            TU_CHECK(st == UNCLIP_E_NOMEM || st == UNCLIP_E_DEVICE_NOMEM,
                     "fault %d: status %d (%s)", k, st, err.msg[0] ? err.msg :
                     unclip__vk_err(vk)->msg);
        }
        if (seen < (uint64_t)k) /* the run made fewer than k allocations: all covered */
            break;
    }
    printf("  host allocation faults: %d runs, %d failed cleanly\n", k, failures);
    TU_CHECK(failures > 0 && k < 5000, "fault loop did not converge (%d)", k);
}

int
main(void)
{
    struct unclip_err err = {0};
    struct unclip_vk *vk = NULL;
    struct unclip_vk_params vp = unclip__vk_params_default();
    if (unclip__vk_new(&vp, &vk, &err) != UNCLIP_OK) {
        printf("no Vulkan device: %s\n", err.msg);
        return 77;
    }
    snprintf(tmpdir, sizeof tmpdir, "%s/unclip-clip-load-XXXXXX", g_get_tmp_dir());
    if (!g_mkdtemp(tmpdir)) {
        printf("cannot make a temporary folder\n");
        return 1;
    }
    printf("text encoder:\n");
    text_cases(vk);
    printf("image encoder:\n");
    vision_cases(vk);
    printf("fault injection:\n");
    fault_cases(vk);
    unclip__vk_free(vk);

    /* Remove the temporary tree. */
    gchar *argv[] = {"rm", "-rf", tmpdir, NULL};
    g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    return tu_summary("clip-load");
}
