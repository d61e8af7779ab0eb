/* Internal interface of the generation pipelines (engine/pipeline/run.c, encode.c, decode.c,
 * entry.c): the public functions of include/unclip/unclip.h ("Pipelines") are thin wrappers of
 * unclip__pipeline_run(), which also takes an optional trace that receives every intermediate
 * tensor under the names of the goldens' whole-run files (goldens README section 4). The
 * public dump_dir and `unclip parity` are two sinks of that trace.
 *
 * A run is planned as:
 *   sources (image / prompt / embedding)
 *     -> text stage: one batch of prompts ("" first) through the CLIP text encoder
 *     -> image stage: IMAGE sources through preprocessing + the CLIP vision encoder
 *     -> prior stage: PROMPT sources, each with its own generator seeded with params.seed
 *     -> decode rows: each row = image embedding + decoder text (embeds, hidden, key weights);
 *        rows are grouped in "runs", each with its own generator (a text-to-image batch is one
 *        run of num_images rows; interpolation frames are one run of one row each, every run
 *        starting from the same generator state)
 *     -> decoder stage (text_proj, then the decoder loop), super_res_first, super_res_last.
 * Every stage loads its weights, runs, and releases them before the next one.
 */
#ifndef UNCLIP_PIPELINE_PIPELINE_H
#define UNCLIP_PIPELINE_PIPELINE_H

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "pipeline/api.h"

#include <stdbool.h>
#include <stdint.h>

struct unclip_sched;

/* ---- trace ---- */

/* Receives one tensor: `group` says which file of a dump it belongs to ("run" for a single
 * text-to-image or variation run, "source-K" for the K-th source of an interpolation or text
 * diff, "frame-NNN" for its pictures), `name` is the golden name. data (F32 floats, I64 ints,
 * U8 bytes) is borrowed for the call. A failure stops the run with that status. */
struct unclip__trace {
    unclip_status (*put)(void *user, const char *group, const char *name, enum unclip_dtype dt,
                         int32_t ndim, const int64_t *shape, const void *data,
                         struct unclip_err *err);
    void *user;
};

/* ---- requests ---- */

enum unclip__request_kind {
    UNCLIP__REQ_TEXT_TO_IMAGE = 0, /* sources[0] PROMPT, num_images rows                    */
    UNCLIP__REQ_VARIATIONS,        /* sources[0] IMAGE or EMBEDDING, num_images rows         */
    UNCLIP__REQ_INTERPOLATION,     /* sources[0] -> sources[1], n_frames rows                */
    UNCLIP__REQ_TEXT_DIFF,         /* sources[0], from/to prompts, n_amounts rows            */
};

struct unclip__request {
    enum unclip__request_kind kind;
    const struct unclip_source *sources[2];
    int32_t n_sources;
    int32_t n_frames;              /* interpolation                                          */
    const float *positions;        /* interpolation at chosen w, [n_frames]; NULL: k/(n-1)   */
    const char *diff_from, *diff_to; /* text diff captions                                   */
    const float *amounts;          /* text diff, [n_amounts]                                 */
    int32_t n_amounts;
};

/* Runs a request. trace may be NULL. On success *out holds the pictures (and stats); on any
 * failure (cancel included) everything is freed and *out is untouched. */
unclip_status unclip__pipeline_run(struct unclip_model *model, const struct unclip__request *rq,
                                   const struct unclip_run_params *params,
                                   const struct unclip__trace *trace, struct unclip_result *out);

/* A trace sink that keeps the tensors in memory by group and writes <dir>/<group>.safetensors
 * for every group when unclip__dump_write() is called (the public dump_dir: nothing is written
 * for a failed or cancelled run). */
struct unclip__dump;
unclip_status unclip__dump_new(struct unclip__dump **out, struct unclip_err *err);
struct unclip__trace unclip__dump_trace(struct unclip__dump *d);
unclip_status unclip__dump_write(struct unclip__dump *d, const char *dir, struct unclip_err *err);
void unclip__dump_free(struct unclip__dump *d); /* NULL is a no-op */

/* ---- helpers shared by the stage files (run.c) ---- */

/* A generator and the number of draws it made in this run (the NN of noise_NN_purpose). */
struct unclip__gen {
    struct unclip_rng rng;
    int32_t draws;
};

/* The state of one run (run.c). */
struct unclip__run {
    struct unclip_model *model;
    struct unclip_vk *vk;
    struct unclip_err *err;
    struct unclip_run_params p;
    const struct unclip__trace *trace; /* NULL: nothing collected                          */
    bool fp32;                         /* weights as F32 on the device                     */
    bool cfg_prior;                    /* guidance in the prior (text-to-image rule)       */
    bool cfg;                          /* guidance in the decoder                          */
    bool cancelled;                    /* the cancel callback said stop (sticky)           */
    bool in_stage;
    /* progress */
    int32_t n_stages, stage_index;
    const char *stage;
    int32_t stage_steps, step;
    double work_total, work_done, work_per_step;
    /* stats */
    struct unclip_run_stats stats;
    double t_run, t_stage;
};

/* Stage bookkeeping: begin resets the peaks, reports step 0 and starts the clock; loaded
 * records the load time and weight bytes; step reports progress (and returns
 * UNCLIP_E_CANCELLED once a cancel was asked); end records time and peaks. */
unclip_status unclip__stage_begin(struct unclip__run *r, const char *name, int32_t n_steps,
                                  double work_per_step);
void unclip__stage_loaded(struct unclip__run *r, uint64_t weight_bytes, double t_load);
double unclip__now_ms(void); /* monotonic clock */
unclip_status unclip__stage_step(struct unclip__run *r);
void unclip__stage_end(struct unclip__run *r);
/* Status to return after a failure inside a stage: UNCLIP_E_CANCELLED when a cancel was
 * asked (whatever the layer reported), else st with the stage name prefixed. */
unclip_status unclip__stage_fail(struct unclip__run *r, unclip_status st);

/* Trace helpers (no-ops without a trace). shape has ndim entries. */
unclip_status unclip__put_f32(struct unclip__run *r, const char *group, const char *name,
                              int32_t ndim, const int64_t *shape, const float *data);
unclip_status unclip__put_i64(struct unclip__run *r, const char *group, const char *name,
                              int32_t ndim, const int64_t *shape, const int64_t *data);
unclip_status unclip__put_u8(struct unclip__run *r, const char *group, const char *name,
                             int32_t ndim, const int64_t *shape, const uint8_t *data);
unclip_status unclip__put_scalar(struct unclip__run *r, const char *group, const char *name,
                                 int64_t value);
/* One torch.randn draw of prod(shape) values into out, traced as noise_NN_<purpose>. */
unclip_status unclip__draw(struct unclip__run *r, struct unclip__gen *g, const char *group,
                           const char *purpose, int32_t ndim, const int64_t *shape, float *out);

/* Loads the scheduler of component `name` (e.g. "decoder_scheduler"). */
unclip_status unclip__load_sched(struct unclip__run *r, const char *name,
                                 struct unclip_sched **out);

/* ---- the plan of a run ---- */

#define UNCLIP__MAX_TEXTS 6

struct unclip__source_state {
    const struct unclip_source *src;
    int32_t text;            /* index of its decoder text in plan->texts ("" = 0)         */
    int32_t rows;            /* image embeddings it makes                                  */
    float *z;                /* [rows, E] owned                                            */
    struct unclip__gen gen;  /* the generator after its draws (prompts: after the prior)   */
    char group[32];
};

struct unclip__decode_run {
    int32_t first, count;    /* rows [first, first + count)                                */
    struct unclip__gen gen;
    char group[32];
};

struct unclip__plan {
    /* Text stage: texts[0] is "", then every other prompt needed. Each is encoded alone. */
    int32_t n_texts;
    const char *texts[UNCLIP__MAX_TEXTS];
    int32_t T, H, E;         /* tokens (77), text hidden width, CLIP embedding width        */
    int64_t *ids;            /* [n_texts, T]                                               */
    int64_t *mask;           /* [n_texts, T]                                               */
    float *text_embeds;      /* [n_texts, E]                                               */
    float *hidden;           /* [n_texts, T, H]                                            */
    int32_t t_from, t_to;    /* text diff captions in texts[] (-1: none)                   */

    int32_t n_sources;
    struct unclip__source_state src[2];

    /* Decode rows: image embedding + decoder text (embeds, hidden, key weights). */
    int32_t R;
    float *z;                /* [R, E]                                                     */
    float *p;                /* [R, E]                                                     */
    float *h;                /* [R, T, H]                                                  */
    float *w;                /* [R, T]: 1 keeps a token, 0 hides it, between: fades        */
    int32_t n_runs;
    struct unclip__decode_run *runs;

    /* Decode results (host). */
    int32_t C;               /* image channels (3)                                         */
    int32_t S, Rs;           /* decoder and super-resolution sizes                         */
    float *image_small;      /* [R, C, S, S]                                               */
    float *up;               /* [R, C, Rs, Rs]                                             */
    float *x;                /* [R, C, Rs, Rs] super-resolution latents                    */
};

void unclip__plan_free(struct unclip__plan *pl);

/* Stages (encode.c, decode.c). Each loads its weights, runs and releases them. */
unclip_status unclip__text_stage(struct unclip__run *r, struct unclip__plan *pl);
unclip_status unclip__image_stage(struct unclip__run *r, struct unclip__plan *pl);
unclip_status unclip__prior_stage(struct unclip__run *r, struct unclip__plan *pl);
unclip_status unclip__decoder_stage(struct unclip__run *r, struct unclip__plan *pl);
unclip_status unclip__super_res_stages(struct unclip__run *r, struct unclip__plan *pl);
/* Images of `count` that one UNet forward takes at once (side x side maps, rows_per_image
 * batch rows each): bounded so the widest activation stays well below one binding (decode.c). */
struct unclip_unet_config;
int32_t unclip__images_per_forward(const struct unclip_unet_config *c, int64_t side,
                                   int32_t rows_per_image, int32_t count);

/* The 8-bit pictures of pl->x (and the traced images / images_u8). */
unclip_status unclip__output(struct unclip__run *r, struct unclip__plan *pl,
                             struct unclip_result *out);

#endif
