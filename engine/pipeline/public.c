/* The public pipeline entry points (include/unclip/unclip.h, "Pipelines") and the dump sink
 * behind unclip_run_params.dump_dir. */
#include "pipeline/pipeline.h"

#include "core/alloc.h"
#include "io/safetensors.h"

#include <glib.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- dump: tensors by group, written only when the run succeeded ---- */

struct dump_group {
    char name[32];
    struct unclip_st_writer *w;
};

struct unclip__dump {
    struct dump_group *groups;
    int32_t n, cap;
};

unclip_status
unclip__dump_new(struct unclip__dump **out, struct unclip_err *err)
{
    struct unclip__dump *d = unclip__calloc(1, sizeof *d);
    if (!d)
        return unclip__fail(err, UNCLIP_E_NOMEM, "out of host memory");
    *out = d;
    return UNCLIP_OK;
}

void
unclip__dump_free(struct unclip__dump *d)
{
    if (!d)
        return;
    for (int32_t i = 0; i < d->n; i++)
        unclip__st_writer_free(d->groups[i].w);
    unclip__free(d->groups);
    unclip__free(d);
}

static unclip_status
dump_put(void *user, const char *group, const char *name, enum unclip_dtype dt, int32_t ndim,
         const int64_t *shape, const void *data, struct unclip_err *err)
{
    struct unclip__dump *d = user;
    struct dump_group *g = NULL;
    for (int32_t i = 0; i < d->n && !g; i++)
        if (!strcmp(d->groups[i].name, group))
            g = &d->groups[i];
    if (!g) {
        if (d->n == d->cap) {
            int32_t cap = d->cap ? 2 * d->cap : 8;
            struct dump_group *ng = unclip__realloc(d->groups, (size_t)cap * sizeof *ng);
            if (!ng)
                return unclip__fail(err, UNCLIP_E_NOMEM, "dump: out of host memory");
            d->groups = ng;
            d->cap = cap;
        }
        g = &d->groups[d->n];
        memset(g, 0, sizeof *g);
        snprintf(g->name, sizeof g->name, "%s", group);
        unclip_status st = unclip__st_writer_new(&g->w, err);
        if (st)
            return st;
        d->n++;
    }
    return unclip__st_writer_add(g->w, name, dt, ndim, shape, data, err);
}

struct unclip__trace
unclip__dump_trace(struct unclip__dump *d)
{
    return (struct unclip__trace){.put = dump_put, .user = d};
}

unclip_status
unclip__dump_write(struct unclip__dump *d, const char *dir, struct unclip_err *err)
{
    if (g_mkdir_with_parents(dir, 0755) != 0)
        return unclip__fail(err, UNCLIP_E_IO, "dump: cannot create %s: %s", dir,
                            strerror(errno));
    for (int32_t i = 0; i < d->n; i++) {
        char *path = g_strdup_printf("%s/%s.safetensors", dir, d->groups[i].name);
        unclip_status st = unclip__st_writer_set_metadata(d->groups[i].w, "unclip.dump",
                                                          d->groups[i].name, err);
        if (st == UNCLIP_OK)
            st = unclip__st_writer_write(d->groups[i].w, path, err);
        g_free(path);
        if (st)
            return st;
    }
    return UNCLIP_OK;
}

/* ---- entry points ---- */

static unclip_status
run(struct unclip_model *model, const struct unclip__request *rq,
    const struct unclip_run_params *params, struct unclip_result *out)
{
    if (!model)
        return UNCLIP_E_ARG;
    if (!params || !params->dump_dir)
        return unclip__pipeline_run(model, rq, params, NULL, out);
    struct unclip_err *err = unclip__ctx_err(model->ctx);
    struct unclip__dump *d = NULL;
    unclip_status st = unclip__dump_new(&d, err);
    if (st)
        return st;
    struct unclip__trace tr = unclip__dump_trace(d);
    struct unclip_result res = {0};
    st = unclip__pipeline_run(model, rq, params, &tr, &res);
    if (st == UNCLIP_OK && (st = unclip__dump_write(d, params->dump_dir, err)))
        unclip_result_clear(&res);
    unclip__dump_free(d);
    if (st == UNCLIP_OK)
        *out = res;
    return st;
}

unclip_status
unclip_run_text_to_image(struct unclip_model *model, const char *prompt,
                         const struct unclip_run_params *params, struct unclip_result *out)
{
    struct unclip_source s = {.kind = UNCLIP_SOURCE_PROMPT, .prompt = prompt};
    struct unclip__request rq = {
        .kind = UNCLIP__REQ_TEXT_TO_IMAGE, .sources = {&s}, .n_sources = 1,
    };
    if (model && !prompt)
        return unclip__fail(unclip__ctx_err(model->ctx), UNCLIP_E_ARG,
                            "text to image: the prompt is NULL");
    return run(model, &rq, params, out);
}

unclip_status
unclip_run_variations(struct unclip_model *model, const struct unclip_source *source,
                      const struct unclip_run_params *params, struct unclip_result *out)
{
    if (model && source && source->kind == UNCLIP_SOURCE_PROMPT)
        return unclip__fail(unclip__ctx_err(model->ctx), UNCLIP_E_ARG,
                            "image variations need an image or an image embedding; for a "
                            "prompt use text to image");
    struct unclip__request rq = {
        .kind = UNCLIP__REQ_VARIATIONS, .sources = {source}, .n_sources = 1,
    };
    return run(model, &rq, params, out);
}

unclip_status
unclip_run_interpolation(struct unclip_model *model, const struct unclip_source *from,
                         const struct unclip_source *to, int32_t n_frames,
                         const struct unclip_run_params *params, struct unclip_result *out)
{
    struct unclip__request rq = {
        .kind = UNCLIP__REQ_INTERPOLATION, .sources = {from, to}, .n_sources = 2,
        .n_frames = n_frames,
    };
    return run(model, &rq, params, out);
}

unclip_status
unclip_run_interpolation_at(struct unclip_model *model, const struct unclip_source *from,
                            const struct unclip_source *to, const float *positions,
                            int32_t n_positions, const struct unclip_run_params *params,
                            struct unclip_result *out)
{
    if (model && !positions)
        return unclip__fail(unclip__ctx_err(model->ctx), UNCLIP_E_ARG,
                            "interpolation: the positions are NULL");
    struct unclip__request rq = {
        .kind = UNCLIP__REQ_INTERPOLATION, .sources = {from, to}, .n_sources = 2,
        .n_frames = n_positions, .positions = positions,
    };
    return run(model, &rq, params, out);
}

unclip_status
unclip_run_text_diff(struct unclip_model *model, const struct unclip_source *source,
                     const char *from_prompt, const char *to_prompt, const float *amounts,
                     int32_t n_amounts, const struct unclip_run_params *params,
                     struct unclip_result *out)
{
    struct unclip__request rq = {
        .kind = UNCLIP__REQ_TEXT_DIFF, .sources = {source}, .n_sources = 1,
        .diff_from = from_prompt, .diff_to = to_prompt, .amounts = amounts,
        .n_amounts = n_amounts,
    };
    return run(model, &rq, params, out);
}
