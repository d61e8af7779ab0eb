/* Model-file layer: every malformed file of gen-malformed.py is rejected with its own status
 * and message; the goldens' real model folders and tensors load with the right names, shapes
 * and values; the writer round-trips; allocation failures and random corruption give clean
 * errors.
 *
 * Usage: test-io CASES.tsv [--no-device]
 *   CASES.tsv is written by gen-malformed.py (its files sit in the folder of the same name). */
#include "testutil.h"

#include "core/alloc.h"
#include "io/json.h"
#include "io/model-dir.h"
#include "io/safetensors.h"
#include "models/weights.h"
#include "vk/vk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct unclip_vk *g_vk;

/* ---- readers the manifest cases go through ----------------------------------------------- */

/* The keys a UNet config loader reads (decoder-style); ranges as a loader would set them. */
static unclip_status
read_decoder_config(const char *path, struct unclip_err *err)
{
    /* display name "<case>/config.json" like model-dir gives */
    const char *slash = strrchr(path, '/');
    const char *prev = slash;
    while (prev && prev > path && prev[-1] != '/')
        prev--;
    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_load(path, prev ? prev : path, &j, err);
    if (st != UNCLIP_OK)
        return st;
    static const char *const acts[] = {"silu", "gelu", "quick_gelu", NULL};
    int32_t layers, sample, act, nch;
    int64_t ch[8];
    double eps;
    bool center;
    const char *cls;
    if ((st = unclip__json_i32(j, "layers_per_block", 1, 64, &layers, err)) ||
        (st = unclip__json_int_array(j, "block_out_channels", 1, 8, 1, 65536, ch, &nch, err)) ||
        (st = unclip__json_float(j, "norm_eps", 1e-12, 1.0, &eps, err)) ||
        (st = unclip__json_enum(j, "act_fn", acts, -1, &act, err)) ||
        (st = unclip__json_bool_opt(j, "center_input_sample", false, &center, err)) ||
        (st = unclip__json_i32(j, "sample_size", 1, 4096, &sample, err)) ||
        (st = unclip__json_string_opt(j, "class_embed_type", NULL, &cls, err))) {
        unclip__json_free(j);
        return st;
    }
    unclip__json_free(j);
    return UNCLIP_OK;
}

static unclip_status
read_preprocessor_config(const char *path, struct unclip_err *err)
{
    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_load(path, "preprocessor_config.json", &j, err);
    if (st != UNCLIP_OK)
        return st;
    int32_t e, h, w;
    if (!(st = unclip__json_i32(j, "size.shortest_edge", 1, 4096, &e, err)) &&
        !(st = unclip__json_i32(j, "crop_size.height", 1, 4096, &h, err)))
        st = unclip__json_i32(j, "crop_size.width", 1, 4096, &w, err);
    unclip__json_free(j);
    return st;
}

/* arg "name:d0,d1,..." (empty dims: a scalar) then optionally " all_used". */
static unclip_status
weights_case(const char *path, const char *arg, struct unclip_err *err)
{
    struct unclip_weights *w = NULL;
    unclip_status st = unclip__weights_open(g_vk, path, "weights.safetensors", NULL, &w, err);
    if (st != UNCLIP_OK)
        return st;
    char name[128];
    const char *colon = strchr(arg, ':');
    size_t nl = colon ? (size_t)(colon - arg) : strlen(arg);
    snprintf(name, sizeof name, "%.*s", (int)nl, arg);
    int64_t shape[8];
    int32_t nd = 0;
    const char *p = colon ? colon + 1 : "";
    while (*p && *p != ' ' && nd < 8) {
        shape[nd++] = strtoll(p, (char **)&p, 10);
        if (*p == ',')
            p++;
    }
    float buf[64];
    st = unclip__weights_get_host(w, name, nd, shape, buf, err);
    if (st == UNCLIP_OK && strstr(arg, "all_used"))
        st = unclip__weights_check_all_used(w, err);
    unclip__weights_free(w);
    return st;
}

static unclip_status
run_case(const char *kind, const char *path, const char *arg, struct unclip_err *err)
{
    if (!strcmp(kind, "st")) {
        struct unclip_st_file *f = NULL;
        unclip_status st = unclip__st_open(path, &f, err);
        unclip__st_close(f);
        return st;
    }
    if (!strcmp(kind, "cfg"))
        return read_decoder_config(path, err);
    if (!strcmp(kind, "pre"))
        return read_preprocessor_config(path, err);
    if (!strcmp(kind, "weights"))
        return weights_case(path, arg, err);
    struct unclip_model_dir *d = NULL;
    unclip_status st = unclip__model_dir_open(path, &d, err);
    if (st != UNCLIP_OK || !strcmp(kind, "dir_open"))
        goto done;
    char *out = NULL;
    if (!strcmp(kind, "dir_require")) {
        st = unclip__model_dir_require(d, arg, "text to image", err);
    } else if (!strcmp(kind, "dir_weights")) {
        st = unclip__model_dir_weights_path(d, arg, &out, err);
        if (st == UNCLIP_OK) {
            char display[256];
            snprintf(display, sizeof display, "%s/%s", arg, strrchr(out, '/') + 1);
            struct unclip_weights *w = NULL;
            st = unclip__weights_open(NULL, out, display, NULL, &w, err);
            unclip__weights_free(w);
        }
    } else if (!strcmp(kind, "dir_config")) {
        struct unclip_json *j = NULL;
        st = unclip__model_dir_config(d, arg, &j, err);
        unclip__json_free(j);
    } else if (!strcmp(kind, "dir_file")) {
        const char *colon = strchr(arg, ':');
        char comp[128];
        snprintf(comp, sizeof comp, "%.*s", colon ? (int)(colon - arg) : (int)strlen(arg), arg);
        st = unclip__model_dir_file(d, comp, colon ? colon + 1 : "vocab.json", &out, err);
    } else {
        st = unclip__fail(err, UNCLIP_E_INTERNAL, "unknown case kind '%s'", kind);
    }
    unclip__free(out);
done:
    unclip__model_dir_free(d);
    return st;
}

static unclip_status
status_by_name(const char *s)
{
#define X(name, value, msg) \
    if (!strcmp(s, #name))  \
        return name;
    UNCLIP_STATUS_LIST(X)
#undef X
    return (unclip_status)1; /* matches nothing */
}

static int
run_manifest(const char *manifest)
{
    FILE *fp = fopen(manifest, "r");
    TU_CHECK(fp != NULL, "cannot open %s", manifest);
    if (!fp)
        return 0;
    char root[4096];
    snprintf(root, sizeof root, "%.*s", (int)(strlen(manifest) - 4), manifest);
    char line[2048];
    int n = 0, rejected = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#')
            continue;
        line[strcspn(line, "\n")] = '\0';
        char *f[5] = {0};
        int k = 0;
        char *s = line;
        for (; k < 5; k++) {
            f[k] = s;
            char *t = strchr(s, '\t');
            if (!t) {
                k++;
                break;
            }
            *t = '\0';
            s = t + 1;
        }
        if (k < 4)
            continue;
        const char *arg = k >= 5 ? f[4] : "";
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", root, f[1]);
        struct unclip_err err = {0};
        unclip_status want = status_by_name(f[2]);
        unclip_status got = run_case(f[0], path, arg, &err);
        n++;
        bool ok = got == want && strstr(err.msg, f[3]) != NULL;
        TU_CHECK(ok, "%s %s [%s]: got %d '%s', want %s with '%s'", f[0], f[1], arg, (int)got,
                 err.msg, f[2], f[3]);
        if (ok)
            rejected++;
        if (getenv("TEST_IO_VERBOSE"))
            printf("  %-12s %-50s %s\n", f[0], f[1], err.msg);
    }
    fclose(fp);
    printf("malformed inputs: %d cases, %d rejected with the expected status and message\n", n,
           rejected);
    TU_CHECK(n >= 40, "only %d malformed cases", n);
    return rejected;
}

/* ---- real files -------------------------------------------------------------------------- */

static float
host_f32(const struct unclip_st_tensor *t, int64_t i)
{
    float v;
    memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
    return v;
}

static void
test_golden_models(void)
{
    static const char *const folders[] = {"models/tiny-karlo", "models/tiny-karlo-variations"};
    int total_tensors[2] = {0, 0};
    for (int m = 0; m < 2; m++) {
        struct unclip_err err = {0};
        struct unclip_model_dir *d = NULL;
        unclip_status st = unclip__model_dir_open(tu_golden_path(folders[m]), &d, &err);
        TU_CHECK(st == UNCLIP_OK, "%s: %s", folders[m], err.msg);
        if (st != UNCLIP_OK)
            continue;
        TU_CHECK(d && unclip__model_dir_class(d) &&
                     !strcmp(unclip__model_dir_class(d),
                             m ? "UnCLIPImageVariationPipeline" : "UnCLIPPipeline"),
                 "%s: class %s", folders[m], unclip__model_dir_class(d));
        TU_CHECK(unclip__model_dir_count(d) == 10, "%s: %d components", folders[m],
                 unclip__model_dir_count(d));
        const struct unclip_component *c = unclip__model_dir_find(d, "text_proj");
        TU_CHECK(c && !strcmp(c->library, "unclip") && !strcmp(c->class_name,
                                                                "UnCLIPTextProjModel"),
                 "text_proj entry");
        TU_CHECK(unclip__model_dir_has(d, "prior") == (m == 0), "%s: prior presence",
                 folders[m]);
        TU_CHECK(unclip__model_dir_has(d, "image_encoder") == (m == 1), "image_encoder");
        if (m == 1) {
            st = unclip__model_dir_require(d, "prior", "text to image", &err);
            TU_CHECK(st == UNCLIP_E_MODEL && strstr(err.msg, "no prior/ in") &&
                         strstr(err.msg, "text to image needs it"),
                     "variations folder without prior: %d %s", st, err.msg);
        }
        int with_weights = 0;
        for (int32_t i = 0; i < unclip__model_dir_count(d); i++) {
            const struct unclip_component *comp = unclip__model_dir_at(d, i);
            char *wp = NULL, *cp = NULL;
            bool wants_weights = !strstr(comp->class_name, "Scheduler") &&
                                 !strstr(comp->class_name, "Tokenizer") &&
                                 !strstr(comp->class_name, "Processor");
            st = unclip__model_dir_weights_path(d, comp->name, &wp, &err);
            TU_CHECK((st == UNCLIP_OK) == wants_weights, "%s/%s weights: %s", folders[m],
                     comp->name, err.msg);
            if (strcmp(comp->name, "tokenizer")) {
                st = unclip__model_dir_config_path(d, comp->name, &cp, &err);
                TU_CHECK(st == UNCLIP_OK, "%s/%s config: %s", folders[m], comp->name, err.msg);
                struct unclip_json *j = NULL;
                st = unclip__model_dir_config(d, comp->name, &j, &err);
                TU_CHECK(st == UNCLIP_OK, "%s/%s config: %s", folders[m], comp->name, err.msg);
                const char *cls = NULL;
                if (j && !strstr(comp->class_name, "Processor")) {
                    st = unclip__json_string_opt(j, "_class_name", NULL, &cls, &err);
                    TU_CHECK(st == UNCLIP_OK, "%s", err.msg);
                }
                unclip__json_free(j);
            }
            if (wp) {
                struct unclip_st_file *f = NULL;
                st = unclip__st_open(wp, &f, &err);
                TU_CHECK(st == UNCLIP_OK, "%s: %s", wp, err.msg);
                if (f) {
                    with_weights++;
                    total_tensors[m] += unclip__st_count(f);
                    const char *fmt = unclip__st_metadata(f, "format");
                    TU_CHECK(fmt && !strcmp(fmt, "pt"), "%s: format %s", wp, fmt);
                    for (int32_t k = 0; k < unclip__st_count(f); k++)
                        TU_CHECK(unclip__st_at(f, k)->dtype == UNCLIP_DT_F32, "%s: %s not F32",
                                 wp, unclip__st_at(f, k)->name);
                }
                unclip__st_close(f);
            }
            char *vocab = NULL;
            /* Every JSON file of the tokenizer passes the strict parser too. */
            static const char *const tok_json[] = {"tokenizer_config.json",
                                                   "special_tokens_map.json"};
            for (int k = 0; k < 2 && !strcmp(comp->name, "tokenizer"); k++) {
                char *tp = NULL;
                struct unclip_json *j = NULL;
                st = unclip__model_dir_file(d, "tokenizer", tok_json[k], &tp, &err);
                if (st == UNCLIP_OK)
                    st = unclip__json_load(tp, tok_json[k], &j, &err);
                TU_CHECK(st == UNCLIP_OK, "%s/tokenizer/%s: %s", folders[m], tok_json[k],
                         err.msg);
                unclip__json_free(j);
                unclip__free(tp);
            }
            if (!strcmp(comp->name, "tokenizer")) {
                st = unclip__model_dir_file(d, "tokenizer", "vocab.json", &vocab, &err);
                TU_CHECK(st == UNCLIP_OK, "vocab.json: %s", err.msg);
                struct unclip_json *j = NULL;
                if (vocab)
                    st = unclip__json_load(vocab, "tokenizer/vocab.json", &j, &err);
                TU_CHECK(st == UNCLIP_OK, "vocab.json: %s", err.msg);
                int64_t eot = -1;
                if (j)
                    unclip__json_int(j, "<|endoftext|>", 0, 100000, &eot, &err);
                TU_CHECK(eot == 49407, "vocab <|endoftext|> = %lld", (long long)eot);
                unclip__json_free(j);
            }
            unclip__free(vocab);
            unclip__free(wp);
            unclip__free(cp);
        }
        TU_CHECK(with_weights == 6, "%s: %d weight files", folders[m], with_weights);
        /* A tokenizer folder opened by path: the stub (or link) is followed. */
        char vp[4096], *rv = NULL;
        snprintf(vp, sizeof vp, "%s/tokenizer/merges.txt", tu_golden_path(folders[m]));
        st = unclip__model_file_resolve(vp, &rv, &err);
        TU_CHECK(st == UNCLIP_OK && rv, "resolve %s: %s", vp, err.msg);
        if (rv) {
            FILE *fp = fopen(rv, "rb");
            char head[9] = {0};
            TU_CHECK(fp && fread(head, 1, 8, fp) == 8 && !strcmp(head, "#version"),
                     "%s does not start with #version", rv);
            if (fp)
                fclose(fp);
        }
        unclip__free(rv);
        snprintf(vp, sizeof vp, "%s/tokenizer/nope.txt", tu_golden_path(folders[m]));
        TU_CHECK(unclip__model_file_resolve(vp, &rv, &err) == UNCLIP_E_MODEL &&
                     strstr(err.msg, "not found"), "missing file: %s", err.msg);
        snprintf(vp, sizeof vp, "%s/tokenizer", tu_golden_path(folders[m]));
        TU_CHECK(unclip__model_file_resolve(vp, &rv, &err) == UNCLIP_E_IO, "folder as file");
        unclip__model_dir_free(d);
    }
    /* Counts read with numpy: prior 50, text_encoder 37, text_proj 11, decoder 540, super-res
     * 228 each; image_encoder 40. */
    TU_CHECK(total_tensors[0] == 50 + 37 + 11 + 540 + 228 + 228, "tiny-karlo: %d tensors",
             total_tensors[0]);
    TU_CHECK(total_tensors[1] == 40 + 37 + 11 + 540 + 228 + 228, "variations: %d tensors",
             total_tensors[1]);
}

static void
test_golden_values(void)
{
    struct unclip_err err = {0};
    struct unclip_st_file *f = NULL;
    unclip_status st =
        unclip__st_open(tu_golden_path("models/tiny-karlo/prior/diffusion_pytorch_model.safetensors"),
                        &f, &err);
    TU_CHECK(st == UNCLIP_OK, "%s", err.msg);
    if (f) {
        TU_CHECK(unclip__st_count(f) == 50, "prior tensors %d", unclip__st_count(f));
        const struct unclip_st_tensor *t = unclip__st_find(f, "clip_mean");
        TU_CHECK(t && t->ndim == 2 && t->shape[0] == 1 && t->shape[1] == 32 && t->numel == 32 &&
                     t->nbytes == 128,
                 "clip_mean shape");
        /* Values read by hand with numpy.frombuffer. */
        if (t) {
            TU_CHECK(host_f32(t, 0) == -0.03847198f, "clip_mean[0] %.9g", host_f32(t, 0));
            TU_CHECK(host_f32(t, 31) == 0.36435184f, "clip_mean[31] %.9g", host_f32(t, 31));
        }
        t = unclip__st_find(f, "clip_std");
        float s[32];
        TU_CHECK(t && unclip__st_to_f32(t, s, &err) == UNCLIP_OK && s[5] == 0.8736508f,
                 "clip_std[5]");
        TU_CHECK(unclip__st_find(f, "nope") == NULL, "absent tensor found");
        /* File order: offsets increase and tile the data. */
        for (int32_t i = 1; i < unclip__st_count(f); i++)
            TU_CHECK(unclip__st_at(f, i)->file_offset ==
                         unclip__st_at(f, i - 1)->file_offset + unclip__st_at(f, i - 1)->nbytes,
                     "tensor %d not contiguous", (int)i);
    }
    unclip__st_close(f);

    f = NULL;
    st = unclip__st_open(
        tu_golden_path("models/tiny-karlo/decoder/diffusion_pytorch_model.safetensors"), &f, &err);
    TU_CHECK(st == UNCLIP_OK, "%s", err.msg);
    if (f) {
        const struct unclip_st_tensor *t = unclip__st_find(f, "conv_in.weight");
        TU_CHECK(t && t->ndim == 4 && t->shape[0] == 32 && t->shape[1] == 3 && t->shape[2] == 3 &&
                     t->shape[3] == 3,
                 "conv_in.weight shape");
        if (t && t->numel == 864) {
            float w[864];
            unclip__st_to_f32(t, w, &err);
            double sum = 0;
            for (int i = 0; i < 864; i++)
                sum += w[i];
            TU_CHECK(w[31 * 27 + 2 * 9 + 2 * 3 + 1] == 0.06207232f, "conv_in.weight[31,2,2,1]");
            TU_CHECK(fabs(sum - 1.3825215101242065) < 1e-6, "conv_in.weight sum %.9g", sum);
        }
    }
    unclip__st_close(f);

    f = NULL;
    st = unclip__st_open(tu_golden_path("goldens/tokenizer.safetensors"), &f, &err);
    TU_CHECK(st == UNCLIP_OK, "%s", err.msg);
    if (f) {
        const struct unclip_st_tensor *ids = unclip__st_find(f, "input_ids");
        const struct unclip_st_tensor *mask = unclip__st_find(f, "attention_mask");
        TU_CHECK(ids && ids->dtype == UNCLIP_DT_I64 && ids->shape[0] == 60 &&
                     ids->shape[1] == 77 && mask,
                 "input_ids");
        if (ids && mask && ids->numel == 60 * 77) {
            int64_t *v = malloc(60 * 77 * sizeof *v), *mv = malloc(60 * 77 * sizeof *mv);
            unclip__st_to_i64(ids, v, &err);
            unclip__st_to_i64(mask, mv, &err);
            int64_t sum = 0, msum = 0;
            for (int i = 0; i < 60 * 77; i++)
                sum += v[i];
            for (int i = 0; i < 77; i++)
                msum += mv[77 + i];
            TU_CHECK(v[0] == 49406 && v[1] == 49407 && v[2] == 0, "row 0 ids");
            TU_CHECK(sum == 12482576, "ids sum %lld", (long long)sum);
            TU_CHECK(msum == 2, "mask row 1 sum %lld", (long long)msum);
            float fv[4];
            struct unclip_st_tensor head = *ids;
            head.numel = 4;
            unclip__st_to_f32(&head, fv, &err);
            TU_CHECK(fv[0] == 49406.0f, "i64 -> f32");
            TU_CHECK(unclip__st_to_i64(unclip__st_find(f, "input_ids"), v, &err) == UNCLIP_OK,
                     "to_i64");
            free(v);
            free(mv);
        }
    }
    unclip__st_close(f);

    /* scheduler: I64 timesteps. */
    f = NULL;
    st = unclip__st_open(tu_golden_path("goldens/scheduler.safetensors"), &f, &err);
    TU_CHECK(st == UNCLIP_OK, "%s", err.msg);
    if (f) {
        const struct unclip_st_tensor *t = unclip__st_find(f, "timesteps_n25");
        int64_t ts[25] = {0};
        TU_CHECK(t && t->numel == 25 && unclip__st_to_i64(t, ts, &err) == UNCLIP_OK &&
                     ts[0] == 999 && ts[1] == 957 && ts[4] == 832,
                 "timesteps_n25");
        float x;
        const struct unclip_st_tensor *fl = NULL;
        for (int32_t i = 0; i < unclip__st_count(f) && !fl; i++)
            if (unclip__st_at(f, i)->dtype == UNCLIP_DT_F32)
                fl = unclip__st_at(f, i);
        int64_t tmp[1];
        TU_CHECK(!fl || unclip__st_to_i64(fl, tmp, &err) == UNCLIP_E_FORMAT,
                 "to_i64 of a float tensor must fail");
        (void)x;
    }
    unclip__st_close(f);

    /* Real configs through the typed getters (numbers from goldens/README.md). */
    struct unclip_model_dir *d = NULL;
    st = unclip__model_dir_open(tu_golden_path("models/tiny-karlo-variations"), &d, &err);
    TU_CHECK(st == UNCLIP_OK, "%s", err.msg);
    struct unclip_json *j = NULL;
    if (d && unclip__model_dir_config(d, "decoder", &j, &err) == UNCLIP_OK) {
        int32_t layers = 0, n = 0;
        int64_t ch[8];
        TU_CHECK(!strcmp(unclip__json_name(j), "decoder/config.json"), "name %s",
                 unclip__json_name(j));
        TU_CHECK(unclip__json_i32(j, "layers_per_block", 1, 64, &layers, &err) == UNCLIP_OK &&
                     layers == 2,
                 "layers_per_block %d %s", layers, err.msg);
        TU_CHECK(unclip__json_int_array(j, "block_out_channels", 1, 8, 1, 1 << 16, ch, &n,
                                        &err) == UNCLIP_OK &&
                     n == 4 && ch[0] == 32 && ch[3] == 64,
                 "block_out_channels");
        TU_CHECK(unclip__json_i32(j, "layers_per_block", 3, 64, &layers, &err) ==
                         UNCLIP_E_FORMAT &&
                     strstr(err.msg, "decoder/config.json: 'layers_per_block' is 2, expected 3..64"),
                 "range message: %s", err.msg);
        int64_t dflt = 0;
        TU_CHECK(unclip__json_int_opt(j, "no_such_key", 7, 0, 1, &dflt, &err) == UNCLIP_OK &&
                     dflt == 7,
                 "optional default");
        TU_CHECK(unclip__json_type(j, "num_class_embeds") == UNCLIP_JSON_NULL, "null type");
        TU_CHECK(unclip__json_int_opt(j, "num_class_embeds", -1, 0, 10, &dflt, &err) ==
                         UNCLIP_OK && dflt == -1,
                 "null gives the default");
    } else {
        TU_CHECK(false, "decoder config: %s", err.msg);
    }
    unclip__json_free(j);
    j = NULL;
    if (d && unclip__model_dir_config(d, "feature_extractor", &j, &err) == UNCLIP_OK) {
        double mean[3] = {0};
        int32_t n = 0, edge = 0;
        TU_CHECK(unclip__json_float_array(j, "image_mean", 3, 3, 0, 1, mean, &n, &err) ==
                         UNCLIP_OK && fabs(mean[0] - 0.48145466) < 1e-12,
                 "image_mean");
        TU_CHECK(unclip__json_i32(j, "size.shortest_edge", 1, 4096, &edge, &err) == UNCLIP_OK &&
                     edge == 64,
                 "size.shortest_edge");
        const char *kind = NULL;
        TU_CHECK(unclip__json_string(j, "image_processor_type", &kind, &err) == UNCLIP_OK &&
                     !strcmp(kind, "CLIPImageProcessor"),
                 "image_processor_type");
    } else {
        TU_CHECK(false, "feature_extractor config: %s", err.msg);
    }
    unclip__json_free(j);
    unclip__model_dir_free(d);
}

/* ---- writer -------------------------------------------------------------------------------- */

static void
test_writer_round_trip(const char *dir)
{
    struct unclip_err err = {0};
    struct unclip_st_writer *w = NULL;
    TU_CHECK(unclip__st_writer_new(&w, &err) == UNCLIP_OK, "%s", err.msg);
    if (!w)
        return;
    struct tu_rng r;
    tu_rng_seed(&r, 7);
    float a[3 * 5 * 7], b[11];
    tu_fill_normal(&r, a, 3 * 5 * 7, 3.0f);
    tu_fill_normal(&r, b, 11, 1.0f);
    b[0] = 65504.0f; /* largest half */
    b[1] = 1e-7f;    /* half subnormal */
    int64_t sa[3] = {3, 5, 7}, sb[1] = {11}, si[2] = {2, 3}, s0[2] = {4, 0};
    int64_t iv[6] = {-1, 0, 1, INT64_MAX, INT64_MIN, 49407};
    uint8_t u8[5] = {0, 1, 127, 128, 255};
    uint8_t bl[3] = {1, 0, 1};
    int32_t i32[2] = {-7, 7};
    float scalar = 0.25f;
    int64_t s5[1] = {5}, s3[1] = {3}, s2[1] = {2};
    unclip_status st = UNCLIP_OK;
    /* Sizes mixed on purpose: the writer must still align every tensor. */
    st |= unclip__st_writer_add(w, "u8", UNCLIP_DT_U8, 1, s5, u8, &err);
    st |= unclip__st_writer_add_f32(w, "a.f32", UNCLIP_DT_F32, 3, sa, a, &err);
    st |= unclip__st_writer_add_f32(w, "b.f16", UNCLIP_DT_F16, 1, sb, b, &err);
    st |= unclip__st_writer_add_f32(w, "b.bf16", UNCLIP_DT_BF16, 1, sb, b, &err);
    st |= unclip__st_writer_add(w, "ids", UNCLIP_DT_I64, 2, si, iv, &err);
    st |= unclip__st_writer_add(w, "mask", UNCLIP_DT_BOOL, 1, s3, bl, &err);
    st |= unclip__st_writer_add(w, "i32", UNCLIP_DT_I32, 1, s2, i32, &err);
    st |= unclip__st_writer_add_f32(w, "scalar", UNCLIP_DT_F32, 0, NULL, &scalar, &err);
    st |= unclip__st_writer_add_f32(w, "empty", UNCLIP_DT_F32, 2, s0, NULL, &err);
    st |= unclip__st_writer_set_metadata(w, "format", "pt", &err);
    st |= unclip__st_writer_set_metadata(w, "note", "unicode \xc3\xa9 \"quoted\"", &err);
    st |= unclip__st_writer_set_metadata(w, "format", "np", &err);
    TU_CHECK(st == UNCLIP_OK, "writer add: %s", err.msg);
    /* Refusals. */
    TU_CHECK(unclip__st_writer_add(w, "u8", UNCLIP_DT_U8, 1, s5, u8, &err) == UNCLIP_E_ARG &&
                 strstr(err.msg, "duplicate tensor 'u8'"),
             "duplicate: %s", err.msg);
    TU_CHECK(unclip__st_writer_add(w, "__metadata__", UNCLIP_DT_U8, 1, s5, u8, &err) ==
                 UNCLIP_E_ARG, "__metadata__ name");
    int64_t neg[1] = {-1};
    TU_CHECK(unclip__st_writer_add(w, "neg", UNCLIP_DT_U8, 1, neg, u8, &err) == UNCLIP_E_ARG,
             "negative shape");
    TU_CHECK(unclip__st_writer_add_f32(w, "i", UNCLIP_DT_I64, 1, s5, b, &err) == UNCLIP_E_ARG,
             "add_f32 as I64");

    char path[4200];
    snprintf(path, sizeof path, "%s/round-trip.safetensors", dir);
    st = unclip__st_writer_write(w, path, &err);
    TU_CHECK(st == UNCLIP_OK, "write: %s", err.msg);
    /* Written twice: the second write replaces the first atomically. */
    st = unclip__st_writer_write(w, path, &err);
    TU_CHECK(st == UNCLIP_OK, "rewrite: %s", err.msg);
    unclip__st_writer_free(w);
    char bad[4300];
    snprintf(bad, sizeof bad, "%s/no-such-folder/x.safetensors", dir);
    struct unclip_st_writer *w2 = NULL;
    unclip__st_writer_new(&w2, &err);
    TU_CHECK(unclip__st_writer_write(w2, bad, &err) == UNCLIP_E_IO, "write into missing folder");
    unclip__st_writer_free(w2);

    struct unclip_st_file *f = NULL;
    st = unclip__st_open(path, &f, &err);
    TU_CHECK(st == UNCLIP_OK, "read back: %s", err.msg);
    if (!f)
        return;
    TU_CHECK(unclip__st_count(f) == 9, "count %d", unclip__st_count(f));
    TU_CHECK(unclip__st_metadata_count(f) == 2 && !strcmp(unclip__st_metadata(f, "format"), "np") &&
                 !strcmp(unclip__st_metadata(f, "note"), "unicode \xc3\xa9 \"quoted\""),
             "metadata");
    for (int32_t i = 0; i < unclip__st_count(f); i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        size_t es = unclip__dtype_size(t->dtype);
        TU_CHECK((uintptr_t)t->data % es == 0 && t->file_offset % es == 0,
                 "tensor %s misaligned at %llu", t->name, (unsigned long long)t->file_offset);
    }
    const struct unclip_st_tensor *t = unclip__st_find(f, "a.f32");
    float back[3 * 5 * 7];
    TU_CHECK(t && t->ndim == 3 && t->shape[2] == 7 && t->dtype == UNCLIP_DT_F32, "a.f32");
    if (t) {
        unclip__st_to_f32(t, back, &err);
        TU_CHECK(!memcmp(back, a, sizeof a), "a.f32 values");
    }
    t = unclip__st_find(f, "b.f16");
    if (t && t->numel == 11) {
        unclip__st_to_f32(t, back, &err);
        bool ok = true;
        for (int i = 0; i < 11; i++)
            ok &= back[i] == unclip__f16_to_f32(unclip__f32_to_f16(b[i]));
        TU_CHECK(ok && back[0] == 65504.0f && back[1] != 0.0f, "b.f16 values");
    } else {
        TU_CHECK(false, "b.f16 missing");
    }
    t = unclip__st_find(f, "b.bf16");
    if (t && t->numel == 11) {
        unclip__st_to_f32(t, back, &err);
        bool ok = true;
        for (int i = 0; i < 11; i++)
            ok &= back[i] == unclip__bf16_to_f32(unclip__f32_to_bf16(b[i])) &&
                  fabsf(back[i] - b[i]) <= fabsf(b[i]) / 128.0f;
        TU_CHECK(ok, "b.bf16 values");
    }
    t = unclip__st_find(f, "ids");
    int64_t ib[6];
    TU_CHECK(t && unclip__st_to_i64(t, ib, &err) == UNCLIP_OK && !memcmp(ib, iv, sizeof iv),
             "ids values");
    t = unclip__st_find(f, "u8");
    float fb[5];
    TU_CHECK(t && unclip__st_to_f32(t, fb, &err) == UNCLIP_OK && fb[4] == 255.0f && fb[3] == 128.0f,
             "u8 values");
    t = unclip__st_find(f, "mask");
    TU_CHECK(t && t->dtype == UNCLIP_DT_BOOL && unclip__st_to_i64(t, ib, &err) == UNCLIP_OK &&
                 ib[0] == 1 && ib[1] == 0 && ib[2] == 1,
             "bool values");
    t = unclip__st_find(f, "i32");
    TU_CHECK(t && unclip__st_to_i64(t, ib, &err) == UNCLIP_OK && ib[0] == -7 && ib[1] == 7,
             "i32 values");
    t = unclip__st_find(f, "scalar");
    TU_CHECK(t && t->ndim == 0 && t->numel == 1 && unclip__st_to_f32(t, fb, &err) == UNCLIP_OK &&
                 fb[0] == 0.25f,
             "scalar");
    t = unclip__st_find(f, "empty");
    TU_CHECK(t && t->numel == 0 && t->nbytes == 0 && t->shape[0] == 4 && t->shape[1] == 0,
             "empty tensor");
    unclip__st_close(f);

    /* The written bytes must also satisfy an independent reader: python's json + struct would
     * do, but the in-memory opener over a copy exercises the same checks without a mapping. */
    FILE *fp = fopen(path, "rb");
    uint8_t *bytes = NULL;
    long size = 0;
    if (fp) {
        fseek(fp, 0, SEEK_END);
        size = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        bytes = malloc((size_t)size);
        TU_CHECK(bytes && fread(bytes, 1, (size_t)size, fp) == (size_t)size, "read");
        fclose(fp);
    }
    if (bytes) {
        uint64_t hl;
        memcpy(&hl, bytes, 8);
        TU_CHECK(hl % 8 == 0 && bytes[8] == '{', "header padded to 8 (%llu)",
                 (unsigned long long)hl);
        f = NULL;
        TU_CHECK(unclip__st_open_memory(bytes, (uint64_t)size, "memory", &f, &err) == UNCLIP_OK,
                 "open_memory: %s", err.msg);
        unclip__st_close(f);
        /* Random corruption: any outcome but a crash or an out-of-range tensor is fine. */
        struct tu_rng r2;
        tu_rng_seed(&r2, 99);
        int accepted = 0, refused = 0;
        uint8_t *m = malloc((size_t)size);
        for (int it = 0; it < 3000 && m; it++) {
            memcpy(m, bytes, (size_t)size);
            int flips = 1 + (int)(tu_rng_u64(&r2) % 4);
            for (int k = 0; k < flips; k++) {
                uint64_t span = hl + 8 < (uint64_t)size ? hl + 8 : (uint64_t)size;
                uint64_t pos = tu_rng_u64(&r2) % span;
                uint64_t kind = tu_rng_u64(&r2) % 3;
                if (kind == 0)
                    m[pos] ^= (uint8_t)(1u << (tu_rng_u64(&r2) % 8));
                else if (kind == 1)
                    m[pos] = "{}[]\":,0123456789-.eE \\u"[tu_rng_u64(&r2) % 25];
                else
                    m[pos] = (uint8_t)tu_rng_u64(&r2);
            }
            uint64_t cut = (it % 10 == 0) ? tu_rng_u64(&r2) % (uint64_t)size : (uint64_t)size;
            f = NULL;
            st = unclip__st_open_memory(m, cut, "fuzz", &f, &err);
            if (st == UNCLIP_OK) {
                accepted++;
                uint64_t sum = 0;
                for (int32_t i = 0; i < unclip__st_count(f); i++) {
                    const struct unclip_st_tensor *u = unclip__st_at(f, i);
                    TU_CHECK((const uint8_t *)u->data >= m &&
                                 (const uint8_t *)u->data + u->nbytes <= m + cut,
                             "fuzz: tensor out of range");
                    sum += u->nbytes;
                }
                TU_CHECK(sum <= cut, "fuzz: sizes exceed the file");
            } else {
                refused++;
                TU_CHECK(st == UNCLIP_E_FORMAT && strstr(err.msg, "fuzz"),
                         "fuzz: status %d message '%s'", st, err.msg);
            }
            unclip__st_close(f);
        }
        printf("header corruption: %d refused, %d still valid\n", refused, accepted);
        free(m);
        free(bytes);
    }
    unlink(path);
}

/* ---- allocation failures ----------------------------------------------------------------- */

static void
test_alloc_failures(void)
{
    const char *p = tu_golden_path("models/tiny-karlo-variations");
    int failed_cleanly = 0;
    for (uint64_t k = 1; k < 200; k++) {
        struct unclip_err err = {0};
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, k);
        struct unclip_model_dir *d = NULL;
        unclip_status st = unclip__model_dir_open(p, &d, &err);
        char *wp = NULL;
        struct unclip_st_file *f = NULL;
        if (st == UNCLIP_OK)
            st = unclip__model_dir_weights_path(d, "text_proj", &wp, &err);
        if (st == UNCLIP_OK)
            st = unclip__st_open(wp, &f, &err);
        struct unclip_st_writer *w = NULL;
        if (st == UNCLIP_OK)
            st = unclip__st_writer_new(&w, &err);
        int64_t s[1] = {3};
        float v[3] = {1, 2, 3};
        if (st == UNCLIP_OK)
            st = unclip__st_writer_add_f32(w, "x", UNCLIP_DT_F16, 1, s, v, &err);
        if (st == UNCLIP_OK)
            st = unclip__st_writer_set_metadata(w, "k", "v", &err);
        bool reached_end = unclip__fault_count(UNCLIP_FAULT_HOST_ALLOC) < k;
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
        unclip__st_writer_free(w);
        unclip__st_close(f);
        unclip__free(wp);
        unclip__model_dir_free(d);
        if (reached_end) {
            TU_CHECK(st == UNCLIP_OK, "no fault injected but failed: %s", err.msg);
            break;
        }
        TU_CHECK(st == UNCLIP_E_NOMEM && err.msg[0], "allocation %llu: status %d '%s'",
                 (unsigned long long)k, st, err.msg);
        failed_cleanly++;
    }
    printf("host allocation failures: %d injected, each a clean UNCLIP_E_NOMEM\n",
           failed_cleanly);
    TU_CHECK(failed_cleanly >= 10, "only %d allocation sites", failed_cleanly);
}

/* ---- device uploads ---------------------------------------------------------------------- */

static void
test_weights_upload(const char *dir)
{
    struct unclip_err err = {0};
    /* A small file with every float encoding and an odd F16 count. */
    char path[4200];
    snprintf(path, sizeof path, "%s/weights-upload.safetensors", dir);
    struct unclip_st_writer *wr = NULL;
    unclip__st_writer_new(&wr, &err);
    struct tu_rng r;
    tu_rng_seed(&r, 3);
    float v[7 * 3];
    tu_fill_normal(&r, v, 21, 2.0f);
    int64_t s73[2] = {7, 3}, s7[1] = {7}, s731[4] = {7, 3, 1, 1};
    unclip__st_writer_add_f32(wr, "f32", UNCLIP_DT_F32, 2, s73, v, &err);
    unclip__st_writer_add_f32(wr, "f16", UNCLIP_DT_F16, 1, s7, v, &err);
    unclip__st_writer_add_f32(wr, "bf16", UNCLIP_DT_BF16, 1, s7, v, &err);
    unclip__st_writer_add_f32(wr, "conv", UNCLIP_DT_F32, 4, s731, v, &err);
    TU_CHECK(unclip__st_writer_write(wr, path, &err) == UNCLIP_OK, "%s", err.msg);
    unclip__st_writer_free(wr);

    for (int fp32 = 0; fp32 < 2; fp32++) {
        struct unclip_weights_opts opts = {.fp32 = fp32 != 0};
        struct unclip_weights *w = NULL;
        unclip_status st = unclip__weights_open(g_vk, path, "upload", &opts, &w, &err);
        TU_CHECK(st == UNCLIP_OK, "%s", err.msg);
        if (!w)
            continue;
        TU_CHECK(unclip__weights_dtype(w) == (fp32 ? UNCLIP_DT_F32 : UNCLIP_DT_F16), "dtype");
        struct unclip_tensor t[4] = {{0}};
        float back[21];
        st = unclip__weights_get(w, "f32", 2, s73, &t[0], &err);
        TU_CHECK(st == UNCLIP_OK && t[0].dtype == (fp32 ? UNCLIP_DT_F32 : UNCLIP_DT_F16),
                 "get f32: %s", err.msg);
        if (st == UNCLIP_OK && unclip__tensor_download_f32(g_vk, &t[0], back) == UNCLIP_OK) {
            bool ok = true;
            for (int i = 0; i < 21; i++)
                ok &= back[i] == (fp32 ? v[i] : unclip__f16_to_f32(unclip__f32_to_f16(v[i])));
            TU_CHECK(ok, "f32 -> device %s values", fp32 ? "F32" : "F16");
        }
        st = unclip__weights_get(w, "f16", 1, s7, &t[1], &err);
        if (st == UNCLIP_OK && unclip__tensor_download_f32(g_vk, &t[1], back) == UNCLIP_OK) {
            bool ok = true;
            for (int i = 0; i < 7; i++)
                ok &= back[i] == unclip__f16_to_f32(unclip__f32_to_f16(v[i]));
            TU_CHECK(ok, "f16 (odd count) -> device values");
        } else {
            TU_CHECK(false, "get f16: %s", err.msg);
        }
        st = unclip__weights_get_as(w, "bf16", 1, s7, UNCLIP_DT_F32, &t[2], &err);
        if (st == UNCLIP_OK && unclip__tensor_download_f32(g_vk, &t[2], back) == UNCLIP_OK) {
            bool ok = t[2].dtype == UNCLIP_DT_F32;
            for (int i = 0; i < 7; i++)
                ok &= back[i] == unclip__bf16_to_f32(unclip__f32_to_bf16(v[i]));
            TU_CHECK(ok, "bf16 -> device F32 values");
        } else {
            TU_CHECK(false, "get bf16: %s", err.msg);
        }
        int64_t s21[1] = {21};
        st = unclip__weights_get_reshaped(w, "conv", 4, s731, 1, s21, UNCLIP_DT_F32, &t[3], &err);
        if (st == UNCLIP_OK && unclip__tensor_download_f32(g_vk, &t[3], back) == UNCLIP_OK)
            TU_CHECK(t[3].ndim == 1 && !memcmp(back, v, sizeof v), "reshaped values");
        else
            TU_CHECK(false, "get_reshaped: %s", err.msg);
        int64_t s20[1] = {20};
        struct unclip_tensor bad = {0};
        TU_CHECK(unclip__weights_get_reshaped(w, "conv", 4, s731, 1, s20, UNCLIP_DT_N, &bad,
                                              &err) == UNCLIP_E_ARG,
                 "reshape with another count");
        uint64_t want = 0;
        for (int i = 0; i < 4; i++)
            want += unclip__tensor_bytes(&t[i]);
        TU_CHECK(unclip__weights_bytes_uploaded(w) == want && want > 0,
                 "bytes uploaded %llu, want %llu",
                 (unsigned long long)unclip__weights_bytes_uploaded(w), (unsigned long long)want);
        TU_CHECK(unclip__weights_unused_count(w) == 0 &&
                     unclip__weights_check_all_used(w, &err) == UNCLIP_OK,
                 "all used");
        unclip__weights_free(w);
        /* The tensors outlive the weights object. */
        if (t[0].buf)
            TU_CHECK(unclip__tensor_download_f32(g_vk, &t[0], back) == UNCLIP_OK,
                     "tensor after weights_free");
        for (int i = 0; i < 4; i++)
            unclip__tensor_free(&t[i]);
    }
    /* Failures while uploading: a clean status naming the tensor, nothing counted. */
    struct unclip_weights *wf = NULL;
    if (unclip__weights_open(g_vk, path, "upload", NULL, &wf, &err) == UNCLIP_OK) {
        /* bf16 -> F16 goes through host staging: every host allocation of the upload fails in
         * turn (device blocks are sub-allocated, so the device site is not reached here). */
        int injected = 0;
        for (uint64_t k = 1; k < 20; k++) {
            struct unclip_tensor t = {0};
            unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, k);
            unclip_status st = unclip__weights_get(wf, "bf16", 1, s7, &t, &err);
            bool reached = unclip__fault_count(UNCLIP_FAULT_HOST_ALLOC) >= k;
            unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
            if (!reached) {
                TU_CHECK(st == UNCLIP_OK, "upload without fault: %s", err.msg);
                if (st == UNCLIP_OK)
                    unclip__tensor_free(&t);
                break;
            }
            injected++;
            TU_CHECK(st == UNCLIP_E_NOMEM && t.buf == NULL &&
                         strstr(err.msg, "upload: tensor 'bf16'"),
                     "allocation %llu of an upload: status %d '%s'", (unsigned long long)k, st,
                     err.msg);
        }
        TU_CHECK(injected >= 1, "no allocation in an upload");
        TU_CHECK(unclip__weights_bytes_uploaded(wf) == 7 * 2 + 2, "bytes after failures %llu",
                 (unsigned long long)unclip__weights_bytes_uploaded(wf));
        unclip__weights_free(wf);
    }
    unlink(path);

    /* A real component: the decoder's conv_in as F16 against the file. */
    struct unclip_weights *w = NULL;
    unclip_status st = unclip__weights_open(
        g_vk, tu_golden_path("models/tiny-karlo/decoder/diffusion_pytorch_model.safetensors"),
        "decoder", NULL, &w, &err);
    TU_CHECK(st == UNCLIP_OK, "%s", err.msg);
    if (w) {
        int64_t s[4] = {32, 3, 3, 3};
        struct unclip_tensor t = {0};
        float host[864], dev[864];
        st = unclip__weights_get(w, "conv_in.weight", 4, s, &t, &err);
        TU_CHECK(st == UNCLIP_OK, "%s", err.msg);
        if (st == UNCLIP_OK && unclip__tensor_download_f32(g_vk, &t, dev) == UNCLIP_OK &&
            unclip__weights_get_host(w, "conv_in.weight", 4, s, host, &err) == UNCLIP_OK) {
            double rel = tu_rel_l2(dev, host, 864);
            printf("decoder conv_in.weight as F16 on %s: rel L2 %.3g\n",
                   unclip__vk_info(g_vk)->name, rel);
            TU_CHECK(rel < 1e-3 && rel > 0, "fp16 rel L2 %g", rel);
            TU_CHECK(unclip__weights_bytes_uploaded(w) == 864 * 2, "bytes %llu",
                     (unsigned long long)unclip__weights_bytes_uploaded(w));
        }
        unclip__tensor_free(&t);
        TU_CHECK(unclip__weights_check_all_used(w, &err) == UNCLIP_E_MODEL &&
                     strstr(err.msg, "539 tensors of the file not used"),
                 "unused: %s", err.msg);
        unclip__weights_free(w);
    }
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test-io CASES.tsv [--no-device]\n");
        return 2;
    }
    bool device = !(argc > 2 && !strcmp(argv[2], "--no-device"));
    struct unclip_err err = {0};
    if (device) {
        struct unclip_vk_params p = unclip__vk_params_default();
        if (unclip__vk_new(&p, &g_vk, &err) != UNCLIP_OK) {
            printf("FAIL: no Vulkan context: %s\n", err.msg);
            return 1;
        }
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(argv[1], '/') ? strrchr(argv[1], '/') - argv[1]
                                                                   : 1),
             strrchr(argv[1], '/') ? argv[1] : ".");

    run_manifest(argv[1]);
    test_golden_models();
    test_golden_values();
    test_writer_round_trip(dir);
    test_alloc_failures();
    if (g_vk)
        test_weights_upload(dir);
    unclip__vk_free(g_vk);
    return tu_summary("test-io");
}
