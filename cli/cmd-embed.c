/* unclip embed-text / embed-image: CLIP embeddings of prompts or PNG images into a
 * safetensors file (the tensor names of the goldens' text_encoder / vision_encoder files). */
#include "cli.h"
#include "png-io.h"

#include "io/safetensors.h"
#include "pipeline/pipeline.h" /* unclip__now_ms */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct embed_opts {
    const char *model, *out, *device;
    bool fp32, quiet;
    int repeat;
    int n_inputs;
    char **inputs;
};

static void
usage(FILE *f, const char *cmd, const char *what)
{
    fprintf(f,
            "usage: unclip %s --model DIR -o OUT.safetensors [options] %s...\n"
            "\n"
            "options:\n"
            "  --model DIR      model folder (diffusers layout)\n"
            "  -o, --output F   safetensors file to write\n"
            "  --fp32           keep weights in fp32 on the device (default fp16)\n"
            "  --device D       device index or part of its name (see 'unclip devices')\n"
            "  --repeat N       encode N times and print the time of each run\n"
            "  -q, --quiet      print nothing on success\n",
            cmd, what);
}

/* Returns 0 on success, 2 on a usage error (message printed). */
static int
parse(int argc, char **argv, const char *what, struct embed_opts *o)
{
    memset(o, 0, sizeof *o);
    o->repeat = 1;
    o->inputs = calloc((size_t)argc, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, argv[0], what);
            return 1;
        } else if (!strcmp(a, "--model") && has_val) {
            o->model = argv[++i];
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has_val) {
            o->out = argv[++i];
        } else if (!strcmp(a, "--device") && has_val) {
            o->device = argv[++i];
        } else if (!strcmp(a, "--repeat") && has_val) {
            o->repeat = atoi(argv[++i]);
        } else if (!strcmp(a, "--fp32")) {
            o->fp32 = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = true;
        } else if (!strcmp(a, "--")) {
            for (i++; i < argc; i++)
                o->inputs[o->n_inputs++] = argv[i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "unclip %s: unknown or incomplete option '%s'\n", argv[0], a);
            usage(stderr, argv[0], what);
            return 2;
        } else {
            o->inputs[o->n_inputs++] = argv[i];
        }
    }
    if (!o->model || !o->out || o->n_inputs == 0 || o->repeat < 1) {
        fprintf(stderr, "unclip %s: --model, -o and at least one %s are required\n", argv[0],
                what);
        usage(stderr, argv[0], what);
        return 2;
    }
    return 0;
}

static int
open_model(const struct embed_opts *o, struct unclip_ctx **ctx, struct unclip_model **model)
{
    struct unclip_ctx_params p = unclip_ctx_params_default();
    p.fp32_weights = o->fp32;
    if (o->device) {
        char *end;
        long idx = strtol(o->device, &end, 10);
        if (*end == '\0')
            p.device_index = (int32_t)idx;
        else
            p.device_name = o->device;
    }
    char err[1024];
    if (unclip_ctx_new(&p, ctx, err, sizeof err) != UNCLIP_OK) {
        fprintf(stderr, "unclip: %s\n", err);
        return 1;
    }
    if (unclip_model_open(*ctx, o->model, model) != UNCLIP_OK) {
        fprintf(stderr, "unclip: %s\n", unclip_ctx_last_error(*ctx));
        unclip_ctx_free(*ctx);
        return 1;
    }
    return 0;
}

/* Adds a tensor; on failure prints and returns false. */
static bool
add(struct unclip_st_writer *w, const char *name, enum unclip_dtype dt, int32_t ndim,
    const int64_t *shape, const void *data)
{
    struct unclip_err e = {0};
    if (unclip__st_writer_add(w, name, dt, ndim, shape, data, &e) != UNCLIP_OK) {
        fprintf(stderr, "unclip: %s\n", e.msg);
        return false;
    }
    return true;
}

static bool
write_file(struct unclip_st_writer *w, const char *path)
{
    struct unclip_err e = {0};
    if (unclip__st_writer_set_metadata(w, "format", "pt", &e) != UNCLIP_OK ||
        unclip__st_writer_write(w, path, &e) != UNCLIP_OK) {
        fprintf(stderr, "unclip: %s\n", e.msg);
        return false;
    }
    return true;
}

int
cli_cmd_embed_text(int argc, char **argv)
{
    struct embed_opts o;
    int rc = parse(argc, argv, "PROMPT", &o);
    if (rc != 0) {
        free(o.inputs);
        return rc == 1 ? 0 : rc;
    }
    struct unclip_ctx *ctx;
    struct unclip_model *model;
    if ((rc = open_model(&o, &ctx, &model)) != 0) {
        free(o.inputs);
        return rc;
    }
    struct unclip_text_embeddings e = {0};
    rc = 1;
    for (int r = 0; r < o.repeat; r++) {
        unclip_text_embeddings_clear(&e);
        double t0 = unclip__now_ms();
        unclip_status st =
            unclip_embed_text(model, (const char *const *)o.inputs, o.n_inputs, &e);
        double t1 = unclip__now_ms();
        if (st != UNCLIP_OK) {
            fprintf(stderr, "unclip: %s\n", unclip_ctx_last_error(ctx));
            goto out;
        }
        if (!o.quiet && o.repeat > 1)
            printf("run %d: %.1f ms%s\n", r + 1, t1 - t0, r == 0 ? " (includes loading)" : "");
        else if (!o.quiet)
            printf("encoded %d prompt%s in %.1f ms (loading included)\n", o.n_inputs,
                   o.n_inputs == 1 ? "" : "s", t1 - t0);
    }
    for (int i = 0; i < e.n; i++)
        if (e.truncated[i])
            fprintf(stderr, "unclip: warning: prompt %d is longer than %d tokens and was cut\n",
                    i + 1, e.seq_len - 2);

    struct unclip_err err = {0};
    struct unclip_st_writer *w = NULL;
    if (unclip__st_writer_new(&w, &err) != UNCLIP_OK) {
        fprintf(stderr, "unclip: %s\n", err.msg);
        goto out;
    }
    int64_t s_ids[2] = {e.n, e.seq_len}, s_te[2] = {e.n, e.embed_dim};
    int64_t s_lh[3] = {e.n, e.seq_len, e.hidden};
    bool ok = add(w, "input_ids", UNCLIP_DT_I64, 2, s_ids, e.input_ids) &&
              add(w, "attention_mask", UNCLIP_DT_I64, 2, s_ids, e.attention_mask) &&
              add(w, "text_embeds", UNCLIP_DT_F32, 2, s_te, e.text_embeds) &&
              add(w, "last_hidden_state", UNCLIP_DT_F32, 3, s_lh, e.last_hidden_state);
    for (int i = 0; ok && i < e.n; i++) {
        char key[32];
        snprintf(key, sizeof key, "prompt.%d", i);
        ok = unclip__st_writer_set_metadata(w, key, o.inputs[i], &err) == UNCLIP_OK;
    }
    if (ok && write_file(w, o.out)) {
        rc = 0;
        if (!o.quiet)
            printf("wrote %s: input_ids [%d, %d], text_embeds [%d, %d], last_hidden_state "
                   "[%d, %d, %d]\n",
                   o.out, e.n, e.seq_len, e.n, e.embed_dim, e.n, e.seq_len, e.hidden);
    }
    unclip__st_writer_free(w);
out:
    unclip_text_embeddings_clear(&e);
    unclip_model_free(model);
    unclip_ctx_free(ctx);
    free(o.inputs);
    return rc;
}

int
cli_cmd_embed_image(int argc, char **argv)
{
    struct embed_opts o;
    int rc = parse(argc, argv, "IMAGE.png", &o);
    if (rc != 0) {
        free(o.inputs);
        return rc == 1 ? 0 : rc;
    }
    struct unclip_image *imgs = calloc((size_t)o.n_inputs, sizeof *imgs);
    for (int i = 0; i < o.n_inputs; i++) {
        char err[1024];
        if (!cli_png_read(o.inputs[i], &imgs[i], err, sizeof err)) {
            fprintf(stderr, "unclip: %s\n", err);
            for (int k = 0; k < i; k++)
                free(imgs[k].pixels);
            free(imgs);
            free(o.inputs);
            return 1;
        }
    }
    struct unclip_ctx *ctx = NULL;
    struct unclip_model *model = NULL;
    struct unclip_image_embeddings e = {0};
    struct unclip_st_writer *w = NULL;
    if ((rc = open_model(&o, &ctx, &model)) != 0)
        goto done;
    rc = 1;
    for (int r = 0; r < o.repeat; r++) {
        unclip_image_embeddings_clear(&e);
        double t0 = unclip__now_ms();
        unclip_status st = unclip_embed_image(model, imgs, o.n_inputs, &e);
        double t1 = unclip__now_ms();
        if (st != UNCLIP_OK) {
            fprintf(stderr, "unclip: %s\n", unclip_ctx_last_error(ctx));
            goto done;
        }
        if (!o.quiet && o.repeat > 1)
            printf("run %d: %.1f ms%s\n", r + 1, t1 - t0, r == 0 ? " (includes loading)" : "");
        else if (!o.quiet)
            printf("encoded %d image%s in %.1f ms (loading included)\n", o.n_inputs,
                   o.n_inputs == 1 ? "" : "s", t1 - t0);
    }
    struct unclip_err err = {0};
    if (unclip__st_writer_new(&w, &err) != UNCLIP_OK) {
        fprintf(stderr, "unclip: %s\n", err.msg);
        goto done;
    }
    int64_t s_px[4] = {e.n, e.channels, e.size, e.size}, s_ie[2] = {e.n, e.embed_dim};
    int64_t s_lh[3] = {e.n, e.tokens, e.hidden};
    bool ok = add(w, "pixel_values", UNCLIP_DT_F32, 4, s_px, e.pixel_values) &&
              add(w, "image_embeds", UNCLIP_DT_F32, 2, s_ie, e.image_embeds) &&
              add(w, "last_hidden_state", UNCLIP_DT_F32, 3, s_lh, e.last_hidden_state);
    for (int i = 0; ok && i < e.n; i++) {
        char key[32];
        snprintf(key, sizeof key, "image.%d", i);
        ok = unclip__st_writer_set_metadata(w, key, o.inputs[i], &err) == UNCLIP_OK;
    }
    if (ok && write_file(w, o.out)) {
        rc = 0;
        if (!o.quiet)
            printf("wrote %s: pixel_values [%d, %d, %d, %d], image_embeds [%d, %d], "
                   "last_hidden_state [%d, %d, %d]\n",
                   o.out, e.n, e.channels, e.size, e.size, e.n, e.embed_dim, e.n, e.tokens,
                   e.hidden);
    }
done:
    unclip__st_writer_free(w);
    unclip_image_embeddings_clear(&e);
    unclip_model_free(model);
    unclip_ctx_free(ctx);
    for (int k = 0; k < o.n_inputs; k++)
        free(imgs[k].pixels);
    free(imgs);
    free(o.inputs);
    return rc;
}
