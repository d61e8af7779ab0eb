/* Runs of the generation pipelines: stage bookkeeping (progress, cancel, timing and memory),
 * tracing, generator draws, and the planning of a request into stages (pipeline.h). */
#include "pipeline/pipeline.h"

#include "core/alloc.h"
#include "ops/ops.h"
#include "pipeline/scheduler.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Relative cost of one network evaluation per batch row, in units of about 1 GMAC at Karlo's
 * sizes (unclip.md 1.8): only used to turn steps into a fraction of the whole run. */
#define WORK_TEXT 10.0
#define WORK_IMAGE 80.0
#define WORK_PRIOR 82.0
#define WORK_DECODER 305.0
#define WORK_SUPER_RES 4250.0

double
unclip__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Peak resident memory of the process (Linux VmHWM), and its reset ("5" to clear_refs resets
 * only the high-water mark; pages are untouched). 0 where /proc is not available. */
static void
host_peak_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static uint64_t
host_peak_read(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024u;
}

/* ---- progress and cancel ---- */

static bool
cancel_poll(void *user)
{
    struct unclip__run *r = user;
    if (!r->cancelled && r->p.cancel_cb && r->p.cancel_cb(r->p.user_data))
        r->cancelled = true;
    return r->cancelled;
}

static void
report(struct unclip__run *r)
{
    if (!r->p.progress_cb)
        return;
    struct unclip_progress pr = {
        .stage = r->stage,
        .step = r->step,
        .n_steps = r->stage_steps,
        .stage_index = r->stage_index,
        .n_stages = r->n_stages,
        .fraction = r->work_total > 0 ? r->work_done / r->work_total : 0.0,
    };
    if (pr.fraction > 1.0)
        pr.fraction = 1.0;
    r->p.progress_cb(&pr, r->p.user_data);
}

unclip_status
unclip__stage_begin(struct unclip__run *r, const char *name, int32_t n_steps,
                    double work_per_step)
{
    if (r->cancelled)
        return unclip__fail(r->err, UNCLIP_E_CANCELLED, "cancelled");
    if (r->stats.n_stages >= UNCLIP_MAX_STAGES)
        return unclip__fail(r->err, UNCLIP_E_INTERNAL, "too many stages in one run");
    if (r->stats.n_stages > 0)
        r->stage_index++;
    r->in_stage = true;
    struct unclip_stage_stats *s = &r->stats.stages[r->stats.n_stages++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    r->stage = s->name;
    r->stage_steps = n_steps;
    r->step = 0;
    r->work_per_step = work_per_step;
    unclip__vk_mem_reset_peak(r->vk);
    host_peak_reset();
    r->t_stage = unclip__now_ms();
    report(r);
    return UNCLIP_OK;
}

void
unclip__stage_loaded(struct unclip__run *r, uint64_t weight_bytes, double t_load)
{
    struct unclip_stage_stats *s = &r->stats.stages[r->stats.n_stages - 1];
    s->load_ms += unclip__now_ms() - t_load;
    s->weight_bytes += weight_bytes;
}

unclip_status
unclip__stage_step(struct unclip__run *r)
{
    r->step++;
    r->stats.stages[r->stats.n_stages - 1].steps = r->step;
    r->work_done += r->work_per_step;
    report(r);
    if (r->cancelled)
        return unclip__fail(r->err, UNCLIP_E_CANCELLED, "cancelled");
    return UNCLIP_OK;
}

void
unclip__stage_end(struct unclip__run *r)
{
    struct unclip_stage_stats *s = &r->stats.stages[r->stats.n_stages - 1];
    r->in_stage = false;
    s->total_ms = unclip__now_ms() - r->t_stage;
    s->device_peak_bytes = unclip__vk_mem_peak(r->vk);
    s->host_peak_bytes = host_peak_read();
    if (s->device_peak_bytes > r->stats.device_peak_bytes)
        r->stats.device_peak_bytes = s->device_peak_bytes;
    if (s->host_peak_bytes > r->stats.host_peak_bytes)
        r->stats.host_peak_bytes = s->host_peak_bytes;
}

unclip_status
unclip__stage_fail(struct unclip__run *r, unclip_status st)
{
    if (r->cancelled || st == UNCLIP_E_CANCELLED)
        return unclip__fail(r->err, UNCLIP_E_CANCELLED, "cancelled");
    if (st == UNCLIP_OK)
        st = UNCLIP_E_INTERNAL;
    if (r->in_stage) {
        if (st == UNCLIP_E_DEVICE_NOMEM)
            unclip__err_prefix(r->err, "%s: out of device memory (the stage needs more than "
                               "the device has%s)", r->stage,
                               r->fp32 ? "; fp16 weights, the default, take half" : "");
        else
            unclip__err_prefix(r->err, "%s", r->stage);
    }
    r->err->code = st;
    return st;
}

/* ---- trace ---- */

static unclip_status
put(struct unclip__run *r, const char *group, const char *name, enum unclip_dtype dt,
    int32_t ndim, const int64_t *shape, const void *data)
{
    if (!r->trace)
        return UNCLIP_OK;
    return r->trace->put(r->trace->user, group, name, dt, ndim, shape, data, r->err);
}

unclip_status
unclip__put_f32(struct unclip__run *r, const char *group, const char *name, int32_t ndim,
                const int64_t *shape, const float *data)
{
    return put(r, group, name, UNCLIP_DT_F32, ndim, shape, data);
}

unclip_status
unclip__put_i64(struct unclip__run *r, const char *group, const char *name, int32_t ndim,
                const int64_t *shape, const int64_t *data)
{
    return put(r, group, name, UNCLIP_DT_I64, ndim, shape, data);
}

unclip_status
unclip__put_u8(struct unclip__run *r, const char *group, const char *name, int32_t ndim,
               const int64_t *shape, const uint8_t *data)
{
    return put(r, group, name, UNCLIP_DT_U8, ndim, shape, data);
}

unclip_status
unclip__put_scalar(struct unclip__run *r, const char *group, const char *name, int64_t value)
{
    return put(r, group, name, UNCLIP_DT_I64, 0, NULL, &value);
}

unclip_status
unclip__draw(struct unclip__run *r, struct unclip__gen *g, const char *group,
             const char *purpose, int32_t ndim, const int64_t *shape, float *out)
{
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++)
        n *= shape[i];
    unclip__rng_randn(&g->rng, out, n);
    char name[128];
    snprintf(name, sizeof name, "noise_%02d_%s", (int)g->draws, purpose);
    g->draws++;
    return unclip__put_f32(r, group, name, ndim, shape, out);
}

unclip_status
unclip__load_sched(struct unclip__run *r, const char *name, struct unclip_sched **out)
{
    struct unclip_json *j = NULL;
    struct unclip_sched_config cfg;
    unclip_status st = unclip__model_dir_config(r->model->dir, name, &j, r->err);
    if (st == UNCLIP_OK)
        st = unclip__sched_config_read(j, &cfg, r->err);
    unclip__json_free(j);
    if (st == UNCLIP_OK)
        st = unclip__sched_new(&cfg, out, r->err);
    return st;
}

void
unclip__plan_free(struct unclip__plan *pl)
{
    unclip__free(pl->ids);
    unclip__free(pl->mask);
    unclip__free(pl->text_embeds);
    unclip__free(pl->hidden);
    for (int32_t i = 0; i < pl->n_sources; i++)
        unclip__free(pl->src[i].z);
    unclip__free(pl->z);
    unclip__free(pl->p);
    unclip__free(pl->h);
    unclip__free(pl->w);
    unclip__free(pl->runs);
    unclip__free(pl->image_small);
    unclip__free(pl->up);
    unclip__free(pl->x);
    memset(pl, 0, sizeof *pl);
}

/* ---- blending (interpolation and text diffs) ---- */

/* y[0..E) = unclip__op_slerp_unit(a, b, w) for one row (the device op: one implementation of
 * the "directions on the arc, norm lerped" rule, exact at w = 0 and 1). */
static unclip_status
slerp_unit_row(struct unclip__run *r, const float *a, const float *b, float w, int32_t E,
               float *y)
{
    int64_t shape[2] = {1, E};
    struct unclip_tensor ta = {0}, tb = {0}, ty = {0};
    unclip_status st;
    if ((st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 2, shape, &ta)) ||
        (st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 2, shape, &tb)) ||
        (st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 2, shape, &ty)) ||
        (st = unclip__tensor_upload_f32(r->vk, &ta, a)) ||
        (st = unclip__tensor_upload_f32(r->vk, &tb, b)) ||
        (st = unclip__op_slerp_unit(r->vk, &ta, &tb, w, &ty)) ||
        (st = unclip__tensor_download_f32(r->vk, &ty, y))) {
    }
    unclip__tensor_free(&ta);
    unclip__tensor_free(&tb);
    unclip__tensor_free(&ty);
    return st;
}

static unclip_status
alloc_rows(struct unclip__run *r, struct unclip__plan *pl, int32_t R)
{
    pl->R = R;
    pl->z = unclip__calloc((size_t)R * pl->E, sizeof(float));
    pl->p = unclip__calloc((size_t)R * pl->E, sizeof(float));
    pl->h = unclip__calloc((size_t)R * pl->T * pl->H, sizeof(float));
    pl->w = unclip__calloc((size_t)R * pl->T, sizeof(float));
    if (!pl->z || !pl->p || !pl->h || !pl->w)
        return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory (%d decode rows)",
                            (int)R);
    return UNCLIP_OK;
}

/* Row `row` gets decoder text number `text` of the text batch. */
static void
set_row_text(struct unclip__plan *pl, int32_t row, int32_t text)
{
    size_t TH = (size_t)pl->T * pl->H;
    memcpy(pl->p + (size_t)row * pl->E, pl->text_embeds + (size_t)text * pl->E,
           sizeof(float) * pl->E);
    memcpy(pl->h + row * TH, pl->hidden + text * TH, sizeof(float) * TH);
    for (int32_t j = 0; j < pl->T; j++)
        pl->w[(size_t)row * pl->T + j] = (float)pl->mask[(size_t)text * pl->T + j];
}

/* Interpolation rows: frame k at w = positions[k], or k / (n - 1) without positions. */
static unclip_status
blend_interpolation(struct unclip__run *r, struct unclip__plan *pl, int32_t n,
                    const float *positions)
{
    unclip_status st = alloc_rows(r, pl, n);
    const struct unclip__source_state *a = &pl->src[0], *b = &pl->src[1];
    size_t TH = (size_t)pl->T * pl->H;
    const float *ha = pl->hidden + a->text * TH, *hb = pl->hidden + b->text * TH;
    const float *pa = pl->text_embeds + (size_t)a->text * pl->E;
    const float *pb = pl->text_embeds + (size_t)b->text * pl->E;
    const int64_t *ma = pl->mask + (size_t)a->text * pl->T;
    const int64_t *mb = pl->mask + (size_t)b->text * pl->T;
    for (int32_t k = 0; k < n && st == UNCLIP_OK; k++) {
        float w = positions ? positions[k] : (float)k / (float)(n - 1);
        st = slerp_unit_row(r, a->z, b->z, w, pl->E, pl->z + (size_t)k * pl->E);
        if (st == UNCLIP_OK)
            st = slerp_unit_row(r, pa, pb, w, pl->E, pl->p + (size_t)k * pl->E);
        /* (1 - w) a + w b returns a at w = 0 and b at w = 1 exactly (finite values). */
        float *h = pl->h + k * TH;
        for (size_t i = 0; i < TH; i++)
            h[i] = (1.0f - w) * ha[i] + w * hb[i];
        for (int32_t j = 0; j < pl->T; j++)
            pl->w[(size_t)k * pl->T + j] = (1.0f - w) * (float)ma[j] + w * (float)mb[j];
    }
    return st;
}

/* Text-diff rows: z_k = slerp of the directions of z_i and z_d by amounts[k], norm |z_i|. */
static unclip_status
blend_text_diff(struct unclip__run *r, struct unclip__plan *pl, int32_t t_from, int32_t t_to,
                const float *amounts, int32_t n)
{
    int32_t E = pl->E;
    const float *zi = pl->src[0].z;
    const float *a = pl->text_embeds + (size_t)t_from * E;
    const float *b = pl->text_embeds + (size_t)t_to * E;
    float *d = unclip__calloc((size_t)E, sizeof(float));
    if (!d)
        return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
    double nd = 0.0, nz = 0.0;
    for (int32_t i = 0; i < E; i++) {
        d[i] = b[i] - a[i];
        nd += (double)d[i] * d[i];
        nz += (double)zi[i] * zi[i];
    }
    unclip_status st = UNCLIP_OK;
    if (!(nd > 0.0) || !isfinite(nd))
        st = unclip__fail(r->err, UNCLIP_E_ARG,
                          "text diff: the two captions have the same CLIP text embedding, so "
                          "there is no direction to move in");
    /* z_d scaled to |z_i|: slerp_unit then keeps the norm at |z_i| all along the arc. */
    float scale = (float)(sqrt(nz) / sqrt(nd));
    int64_t shape[2] = {1, E};
    if (st == UNCLIP_OK) {
        float *unit = unclip__calloc((size_t)E, sizeof(float));
        if (!unit) {
            st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        } else {
            float inv = (float)(1.0 / sqrt(nd));
            for (int32_t i = 0; i < E; i++)
                unit[i] = d[i] * inv;
            st = unclip__put_f32(r, pl->src[0].group, "text_diff_direction", 2, shape, unit);
            unclip__free(unit);
        }
    }
    for (int32_t i = 0; i < E; i++)
        d[i] *= scale;
    if (st == UNCLIP_OK)
        st = alloc_rows(r, pl, n);
    for (int32_t k = 0; k < n && st == UNCLIP_OK; k++) {
        st = slerp_unit_row(r, zi, d, amounts[k], E, pl->z + (size_t)k * E);
        set_row_text(pl, k, pl->src[0].text);
    }
    unclip__free(d);
    return st;
}

/* ---- requests ---- */

static const char *
request_name(enum unclip__request_kind k)
{
    switch (k) {
    case UNCLIP__REQ_TEXT_TO_IMAGE:
        return "text to image";
    case UNCLIP__REQ_VARIATIONS:
        return "image variations";
    case UNCLIP__REQ_INTERPOLATION:
        return "interpolation";
    case UNCLIP__REQ_TEXT_DIFF:
        return "text diffs";
    }
    return "this pipeline";
}

static unclip_status
check_steps(struct unclip_err *err, const char *what, int32_t n)
{
    if (n < 2 || n > 1000)
        return unclip__fail(err, UNCLIP_E_ARG, "%s must be in 2..1000 (got %d)", what, (int)n);
    return UNCLIP_OK;
}

/* Checks the request's arguments and that the folder has what it needs. */
static unclip_status
check_request(struct unclip_model *m, const struct unclip__request *rq,
              const struct unclip_run_params *p, struct unclip_err *err)
{
    const char *what = request_name(rq->kind);
    /* completes "no prior/ in DIR: ... needs it" */
    const char *need = rq->kind == UNCLIP__REQ_VARIATIONS ? "an image variation"
                       : rq->kind == UNCLIP__REQ_TEXT_DIFF ? "a text diff"
                                                           : what;
    bool any_prompt = false, any_image = false;
    for (int32_t i = 0; i < rq->n_sources; i++) {
        const struct unclip_source *s = rq->sources[i];
        if (!s)
            return unclip__fail(err, UNCLIP_E_ARG, "%s: source %d is NULL", what, (int)i);
        switch (s->kind) {
        case UNCLIP_SOURCE_IMAGE:
            if (!s->image || !s->image->pixels || s->image->width < 1 || s->image->height < 1)
                return unclip__fail(err, UNCLIP_E_ARG, "%s: source %d has no image", what,
                                    (int)i);
            any_image = true;
            break;
        case UNCLIP_SOURCE_PROMPT:
            if (!s->prompt)
                return unclip__fail(err, UNCLIP_E_ARG, "%s: source %d has no prompt", what,
                                    (int)i);
            any_prompt = true;
            break;
        case UNCLIP_SOURCE_EMBEDDING:
            if (!s->embedding)
                return unclip__fail(err, UNCLIP_E_ARG, "%s: source %d has no embedding", what,
                                    (int)i);
            if (s->embed_dim != m->embed_dim)
                return unclip__fail(err, UNCLIP_E_ARG,
                                    "%s: the image embedding has %d values, the model's CLIP "
                                    "width is %d", what, (int)s->embed_dim, (int)m->embed_dim);
            for (int32_t k = 0; k < s->embed_dim; k++)
                if (!isfinite(s->embedding[k]))
                    return unclip__fail(err, UNCLIP_E_ARG,
                                        "%s: the image embedding's value %d is not finite",
                                        what, (int)k);
            break;
        default:
            return unclip__fail(err, UNCLIP_E_ARG, "%s: source %d has an unknown kind %d",
                                what, (int)i, (int)s->kind);
        }
    }
    if (!isfinite(p->prior_guidance) || !isfinite(p->decoder_guidance))
        return unclip__fail(err, UNCLIP_E_ARG, "guidance scales must be finite");
    unclip_status st;
    if (any_prompt && (st = check_steps(err, "prior steps", p->prior_steps)))
        return st;
    if ((st = check_steps(err, "decoder steps", p->decoder_steps)) ||
        (!p->decoder_only && (st = check_steps(err, "super-resolution steps", p->sr_steps))))
        return st;
    if (rq->kind == UNCLIP__REQ_TEXT_TO_IMAGE || rq->kind == UNCLIP__REQ_VARIATIONS) {
        if (p->num_images < 1 || p->num_images > 64)
            return unclip__fail(err, UNCLIP_E_ARG, "the number of images must be in 1..64 "
                                "(got %d)", (int)p->num_images);
    } else if (p->num_images != 1) {
        return unclip__fail(err, UNCLIP_E_ARG, "%s makes one picture per frame: num_images "
                            "must be 1 (got %d)", what, (int)p->num_images);
    }
    if (rq->kind == UNCLIP__REQ_INTERPOLATION && !rq->positions &&
        (rq->n_frames < 2 || rq->n_frames > 1000))
        return unclip__fail(err, UNCLIP_E_ARG, "interpolation needs 2..1000 frames (got %d)",
                            (int)rq->n_frames);
    if (rq->kind == UNCLIP__REQ_INTERPOLATION && rq->positions) {
        if (rq->n_frames < 1 || rq->n_frames > 1000)
            return unclip__fail(err, UNCLIP_E_ARG, "interpolation needs 1..1000 positions "
                                "(got %d)", (int)rq->n_frames);
        for (int32_t k = 0; k < rq->n_frames; k++)
            /* written so that NaN fails too */
            if (!(rq->positions[k] >= 0.0f && rq->positions[k] <= 1.0f))
                return unclip__fail(err, UNCLIP_E_ARG, "interpolation: position %d is %g, "
                                    "outside 0..1", (int)k, (double)rq->positions[k]);
    }
    if (rq->kind == UNCLIP__REQ_TEXT_DIFF) {
        if (!rq->diff_from || !rq->diff_to)
            return unclip__fail(err, UNCLIP_E_ARG, "text diff: both captions are needed");
        if (!rq->amounts || rq->n_amounts < 1 || rq->n_amounts > 1000)
            return unclip__fail(err, UNCLIP_E_ARG, "text diff: 1..1000 amounts are needed");
        for (int32_t k = 0; k < rq->n_amounts; k++)
            if (!isfinite(rq->amounts[k]))
                return unclip__fail(err, UNCLIP_E_ARG, "text diff: amount %d is not finite",
                                    (int)k);
    }

    /* Components, in the order of the stages, so the first message names the first gap. */
    const struct unclip_model_dir *d = m->dir;
    static const char *const text[] = {"tokenizer", "text_encoder", NULL};
    static const char *const image[] = {"image_encoder", "feature_extractor", NULL};
    static const char *const prior[] = {"prior", "prior_scheduler", NULL};
    /* decoder_only stops after the first three */
    static const char *const decode[] = {"text_proj", "decoder", "decoder_scheduler",
                                         "super_res_first", "super_res_last",
                                         "super_res_scheduler", NULL};
    static const char *const decode_only[] = {"text_proj", "decoder", "decoder_scheduler",
                                              NULL};
    const char *const *lists[4] = {text, any_image ? image : NULL, any_prompt ? prior : NULL,
                                   p->decoder_only ? decode_only : decode};
    for (int l = 0; l < 4; l++)
        for (int i = 0; lists[l] && lists[l][i]; i++)
            if ((st = unclip__model_dir_require(d, lists[l][i], need, err)))
                return st;
    return UNCLIP_OK;
}

static int32_t
add_text(struct unclip__plan *pl, const char *text)
{
    for (int32_t i = 0; i < pl->n_texts; i++)
        if (!strcmp(pl->texts[i], text))
            return i;
    pl->texts[pl->n_texts] = text;
    return pl->n_texts++;
}

static unclip_status
run_request(struct unclip__run *r, struct unclip__plan *pl, const struct unclip__request *rq)
{
    unclip_status st;
    bool single = rq->kind == UNCLIP__REQ_TEXT_TO_IMAGE || rq->kind == UNCLIP__REQ_VARIATIONS;
    bool any_prompt = false, any_image = false;
    int32_t t_from = 0, t_to = 0;

    /* Sources and the texts they need ("" first: the unconditional text, and the decoder
     * text of image and embedding sources). */
    add_text(pl, "");
    pl->n_sources = rq->n_sources;
    for (int32_t i = 0; i < rq->n_sources; i++) {
        struct unclip__source_state *s = &pl->src[i];
        s->src = rq->sources[i];
        /* image embeddings it makes: a text-to-image prompt one per picture (the prior runs
         * num_images rows), anything else one (repeated for several pictures) */
        s->rows = single && s->src->kind == UNCLIP_SOURCE_PROMPT ? r->p.num_images : 1;
        if (single)
            snprintf(s->group, sizeof s->group, "run");
        else
            snprintf(s->group, sizeof s->group, "source-%d", (int)i);
        unclip__rng_seed(&s->gen.rng, r->p.seed);
        if (s->src->kind == UNCLIP_SOURCE_PROMPT) {
            s->text = add_text(pl, s->src->prompt);
            any_prompt = true;
        }
        any_image = any_image || s->src->kind == UNCLIP_SOURCE_IMAGE;
    }
    pl->t_from = pl->t_to = -1;
    if (rq->kind == UNCLIP__REQ_TEXT_DIFF) {
        t_from = pl->t_from = add_text(pl, rq->diff_from);
        t_to = pl->t_to = add_text(pl, rq->diff_to);
    }
    r->cfg_prior = r->p.prior_guidance > 1.0f || r->p.decoder_guidance > 1.0f;
    r->cfg = any_prompt ? r->cfg_prior : r->p.decoder_guidance > 1.0f;

    int32_t R = rq->kind == UNCLIP__REQ_INTERPOLATION ? rq->n_frames
                : rq->kind == UNCLIP__REQ_TEXT_DIFF   ? rq->n_amounts
                                                      : r->p.num_images;
    double rows_cfg = r->cfg ? 2.0 : 1.0;
    r->n_stages = 1 + any_image + any_prompt + (r->p.decoder_only ? 1 : 3);
    r->work_total = WORK_TEXT * pl->n_texts + WORK_DECODER * rows_cfg * R * r->p.decoder_steps +
                    (r->p.decoder_only ? 0.0 : WORK_SUPER_RES * R * r->p.sr_steps);
    for (int32_t i = 0; i < pl->n_sources; i++) {
        if (pl->src[i].src->kind == UNCLIP_SOURCE_IMAGE)
            r->work_total += WORK_IMAGE;
        if (pl->src[i].src->kind == UNCLIP_SOURCE_PROMPT)
            r->work_total += WORK_PRIOR * (r->cfg_prior ? 2.0 : 1.0) * pl->src[i].rows *
                             r->p.prior_steps;
    }

    if ((st = unclip__text_stage(r, pl)))
        return st;
    if (any_image && (st = unclip__image_stage(r, pl)))
        return st;
    for (int32_t i = 0; i < pl->n_sources; i++) {
        struct unclip__source_state *s = &pl->src[i];
        if (s->src->kind != UNCLIP_SOURCE_EMBEDDING)
            continue;
        s->z = unclip__calloc((size_t)pl->E, sizeof(float));
        if (!s->z)
            return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        memcpy(s->z, s->src->embedding, sizeof(float) * pl->E);
    }
    if (any_prompt && (st = unclip__prior_stage(r, pl)))
        return st;

    /* Decode rows and runs. */
    pl->n_runs = single ? 1 : R;
    pl->runs = unclip__calloc((size_t)pl->n_runs, sizeof *pl->runs);
    if (!pl->runs)
        return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
    /* The generator the pictures are drawn from: after the prior when a prompt is involved
     * (the prior's draws have the same shapes whatever the prompt), else fresh. */
    struct unclip__gen shared = pl->src[0].gen;
    for (int32_t i = 0; i < pl->n_sources; i++)
        if (pl->src[i].src->kind == UNCLIP_SOURCE_PROMPT) {
            shared = pl->src[i].gen;
            break;
        }
    if (single) {
        if ((st = alloc_rows(r, pl, R)))
            return st;
        const struct unclip__source_state *s = &pl->src[0];
        for (int32_t k = 0; k < R; k++) {
            /* prompts: one prior row per image; embeddings: repeated (repeat_interleave) */
            const float *z = s->z + (size_t)(s->rows == R ? k : 0) * pl->E;
            memcpy(pl->z + (size_t)k * pl->E, z, sizeof(float) * pl->E);
            set_row_text(pl, k, s->text);
        }
        pl->runs[0] = (struct unclip__decode_run){.first = 0, .count = R, .gen = shared};
        snprintf(pl->runs[0].group, sizeof pl->runs[0].group, "run");
    } else {
        st = rq->kind == UNCLIP__REQ_INTERPOLATION
                 ? blend_interpolation(r, pl, R, rq->positions)
                 : blend_text_diff(r, pl, t_from, t_to, rq->amounts, R);
        if (st)
            return r->cancelled ? unclip__fail(r->err, UNCLIP_E_CANCELLED, "cancelled") : st;
        for (int32_t k = 0; k < R; k++) {
            pl->runs[k] = (struct unclip__decode_run){.first = k, .count = 1, .gen = shared};
            snprintf(pl->runs[k].group, sizeof pl->runs[k].group, "frame-%03d", (int)k);
        }
    }
    if ((st = unclip__decoder_stage(r, pl)))
        return st;
    if (r->p.decoder_only) {
        /* The clamped decoder output becomes the output latents: unclip__output makes the
         * 8-bit pictures from pl->x at size pl->Rs, as it does after super-resolution. */
        pl->x = pl->image_small;
        pl->image_small = NULL;
        pl->Rs = pl->S;
        return UNCLIP_OK;
    }
    return unclip__super_res_stages(r, pl);
}

unclip_status
unclip__pipeline_run(struct unclip_model *model, const struct unclip__request *rq,
                     const struct unclip_run_params *params, const struct unclip__trace *trace,
                     struct unclip_result *out)
{
    if (!model)
        return UNCLIP_E_ARG;
    struct unclip_err *err = unclip__ctx_err(model->ctx);
    unclip__err_clear(err);
    if (!rq || !params || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "%s: NULL argument",
                            rq ? request_name(rq->kind) : "run");
    unclip_status st = check_request(model, rq, params, err);
    if (st)
        return st;

    struct unclip__run r = {
        .model = model,
        .vk = model->ctx->vk,
        .err = err,
        .p = *params,
        .trace = trace,
        .fp32 = model->ctx->params.fp32_weights,
    };
    struct unclip__plan pl = {0};
    struct unclip_result res = {0};
    /* A stage must start from an empty device: drop CLIP towers kept by the embed calls. */
    unclip__model_release(model);
    unclip__vk_set_cancel(r.vk, cancel_poll, &r);
    r.t_run = unclip__now_ms();
    st = run_request(&r, &pl, rq);
    if (st == UNCLIP_OK)
        st = unclip__output(&r, &pl, &res);
    r.stats.total_ms = unclip__now_ms() - r.t_run;
    unclip__vk_set_cancel(r.vk, NULL, NULL);
    unclip__model_release(model);
    unclip__plan_free(&pl);
    if (st == UNCLIP_OK && r.cancelled)
        st = UNCLIP_E_CANCELLED;
    if (st != UNCLIP_OK) {
        unclip_result_clear(&res);
        if (r.cancelled || st == UNCLIP_E_CANCELLED)
            st = unclip__fail(err, UNCLIP_E_CANCELLED, "%s: cancelled", request_name(rq->kind));
        return st;
    }
    res.stats = r.stats;
    *out = res;
    return UNCLIP_OK;
}

void
unclip_result_clear(struct unclip_result *res)
{
    if (!res)
        return;
    for (int32_t i = 0; res->images && i < res->n_images; i++)
        unclip_image_clear(&res->images[i]);
    unclip__free(res->images);
    memset(res, 0, sizeof *res);
}
