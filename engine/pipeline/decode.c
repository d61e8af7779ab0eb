/* Decoding (pipeline.h): text_proj + the 64x64 decoder loop with classifier-free guidance,
 * the 4x antialiased bicubic upscale, the super-resolution loop (super_res_first for every
 * step but the last, super_res_last for the last) and the 8-bit output, as diffusers'
 * UnCLIPPipeline steps 3-7 (unclip.md 4.1).
 *
 * The latents stay on the host between network evaluations (the scheduler runs there, and
 * they are small next to a UNet evaluation). Networks run the rows of one decode run in
 * chunks of a fixed size (the last chunk padded with copies of its last picture), so a run's
 * numbers do not depend on the other runs of the request: an interpolation frame is computed
 * exactly like the stand-alone run of its endpoint. */
#include "pipeline/pipeline.h"

#include "core/alloc.h"
#include "models/text-proj.h"
#include "models/unet.h"
#include "ops/ops.h"
#include "pipeline/budget.h"
#include "pipeline/scheduler.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Largest activation one forward may make (bytes): the widest map is the first level's,
 * and up blocks concatenate a skip onto it. Kept well below one binding's 128 MiB. */
#define FORWARD_BUDGET (64ull << 20)

int32_t
unclip__images_per_forward(const struct unclip_unet_config *c, int64_t side,
                           int32_t rows_per_image, int32_t count)
{
    uint64_t per_row = (uint64_t)c->block_out[0] * (uint64_t)(side * side) * 4u * 2u;
    uint64_t n = FORWARD_BUDGET / (per_row * (uint64_t)rows_per_image);
    if (n < 1)
        n = 1;
    return n < (uint64_t)count ? (int32_t)n : count;
}

/* Key weight (1 keeps, 0 hides, between: fades) -> the UNet's mask value m, whose key bias is
 * (1 - m) * -10000: a weight w in (0, 1) becomes the bias log(w), so the token's attention is
 * scaled by w. 0 and 1 map to themselves. */
static float
mask_value(float w)
{
    if (w >= 1.0f)
        return 1.0f;
    if (w <= 0.0f)
        return 0.0f;
    double b = log((double)w);
    if (b < -10000.0)
        b = -10000.0;
    return (float)(1.0 + b / 10000.0);
}

static bool
all_integral(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f && v[i] != 1.0f)
            return false;
    return true;
}

/* The conditioning of the decoder (host), rows [uncond x R; cond x R] with guidance. */
struct cond {
    int32_t rows;      /* R2 = cfg ? 2R : R */
    int32_t L, X, D;   /* context tokens K + T, cross-attention width, time width */
    float *ehs;        /* [R2, L, X] */
    float *add;        /* [R2, D]    */
    float *mask;       /* [R2, L] UNet mask values */
};

static void
cond_free(struct cond *c)
{
    unclip__free(c->ehs);
    unclip__free(c->add);
    unclip__free(c->mask);
}

/* Rows of run `u` of a [R2, n] host array in golden order: [uncond rows; cond rows]. */
static float *
gather_run(const float *all, size_t n, int32_t R, bool cfg, const struct unclip__decode_run *u)
{
    int32_t rows = cfg ? 2 * u->count : u->count;
    float *o = unclip__calloc((size_t)rows * n, sizeof(float));
    if (!o)
        return NULL;
    for (int32_t k = 0; k < u->count; k++) {
        memcpy(o + (size_t)k * n, all + (size_t)(u->first + k) * n, sizeof(float) * n);
        if (cfg)
            memcpy(o + (size_t)(u->count + k) * n, all + (size_t)(R + u->first + k) * n,
                   sizeof(float) * n);
    }
    return o;
}

static unclip_status
put_run_rows(struct unclip__run *r, const struct unclip__decode_run *u, const char *name,
             const float *all, int32_t R, bool cfg, int32_t ndim, const int64_t *row_shape)
{
    if (!r->trace)
        return UNCLIP_OK;
    size_t n = 1;
    int64_t shape[4];
    shape[0] = cfg ? 2 * u->count : u->count;
    for (int32_t i = 1; i < ndim; i++) {
        shape[i] = row_shape[i - 1];
        n *= (size_t)row_shape[i - 1];
    }
    float *o = gather_run(all, n, R, cfg, u);
    if (!o)
        return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
    unclip_status st = unclip__put_f32(r, u->group, name, ndim, shape, o);
    unclip__free(o);
    return st;
}

/* text_proj on every decode row; the model is freed before returning. */
static unclip_status
run_text_proj(struct unclip__run *r, struct unclip__plan *pl, struct cond *cd)
{
    const int32_t R = pl->R, E = pl->E, T = pl->T, H = pl->H;
    const int32_t R2 = r->cfg ? 2 * R : R;
    struct unclip_text_proj *tp = NULL;
    float *pe = NULL, *hid = NULL;
    double t0 = unclip__now_ms();
    struct unclip_text_proj_opts o = {.fp32 = r->fp32};
    unclip_status st = unclip__text_proj_load(r->vk, r->model->dir, "text_proj", &o, &tp, r->err);
    if (st)
        return st;
    unclip__stage_loaded(r, unclip__text_proj_weight_bytes(tp), t0);
    const struct unclip_text_proj_config *c = unclip__text_proj_config(tp);
    if (c->clip_dim != E || H != E) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "text_proj/config.json: clip_embeddings_dim %d does not fit the text "
                          "encoder (projection_dim %d, hidden_size %d)", (int)c->clip_dim,
                          (int)E, (int)H);
        goto done;
    }
    cd->rows = R2;
    cd->L = c->extra_tokens + T;
    cd->X = c->cross_dim;
    cd->D = c->time_dim;
    pe = unclip__calloc((size_t)R2 * E, sizeof(float));
    hid = unclip__calloc((size_t)R2 * T * H, sizeof(float));
    cd->ehs = unclip__calloc((size_t)R2 * cd->L * cd->X, sizeof(float));
    cd->add = unclip__calloc((size_t)R2 * cd->D, sizeof(float));
    cd->mask = unclip__calloc((size_t)R2 * cd->L, sizeof(float));
    if (!pe || !hid || !cd->ehs || !cd->add || !cd->mask) {
        st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        goto done;
    }
    /* [uncond ("") x R; the rows' decoder texts] */
    const size_t TH = (size_t)T * H;
    for (int32_t k = 0; k < R2; k++) {
        bool unc = r->cfg && k < R;
        int32_t row = r->cfg ? k % R : k;
        float *m = cd->mask + (size_t)k * cd->L;
        memcpy(pe + (size_t)k * E, unc ? pl->text_embeds : pl->p + (size_t)row * E,
               sizeof(float) * E);
        memcpy(hid + k * TH, unc ? pl->hidden : pl->h + row * TH, sizeof(float) * TH);
        for (int32_t j = 0; j < c->extra_tokens; j++)
            m[j] = 1.0f;
        for (int32_t j = 0; j < T; j++)
            m[c->extra_tokens + j] = unc ? (float)pl->mask[j]
                                         : mask_value(pl->w[(size_t)row * T + j]);
    }
    st = unclip__text_proj_run(tp, R, T, pl->z, pe, hid, r->cfg, cd->ehs, cd->add);
    if (st)
        goto done;

    int64_t s_e[1] = {E}, s_h[2] = {T, H}, s_ehs[2] = {cd->L, cd->X}, s_add[1] = {cd->D};
    int64_t s_l[1] = {cd->L};
    for (int32_t i = 0; i < pl->n_runs && r->trace; i++) {
        const struct unclip__decode_run *u = &pl->runs[i];
        int64_t s_z[2] = {u->count, E};
        int64_t rows = r->cfg ? 2 * u->count : u->count;
        if ((st = unclip__put_f32(r, u->group, "image_embeddings", 2, s_z,
                                  pl->z + (size_t)u->first * E)) ||
            (st = put_run_rows(r, u, "text_proj_in_prompt_embeds", pe, R, r->cfg, 2, s_e)) ||
            (st = put_run_rows(r, u, "text_proj_in_text_encoder_hidden_states", hid, R, r->cfg,
                               3, s_h)) ||
            (st = put_run_rows(r, u, "decoder_encoder_hidden_states", cd->ehs, R, r->cfg, 3,
                               s_ehs)) ||
            (st = put_run_rows(r, u, "decoder_class_labels", cd->add, R, r->cfg, 2, s_add)))
            goto done;
        float *m = gather_run(cd->mask, (size_t)cd->L, R, r->cfg, u);
        if (!m) {
            st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
            goto done;
        }
        size_t nm = (size_t)rows * cd->L;
        if (all_integral(m, nm)) {
            int64_t *mi = unclip__calloc(nm, sizeof(int64_t));
            if (!mi) {
                unclip__free(m);
                st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
                goto done;
            }
            for (size_t k = 0; k < nm; k++)
                mi[k] = (int64_t)m[k];
            int64_t s_m[2] = {rows, cd->L};
            st = unclip__put_i64(r, u->group, "decoder_attention_mask", 2, s_m, mi);
            unclip__free(mi);
        } else {
            st = put_run_rows(r, u, "decoder_attention_mask", cd->mask, R, r->cfg, 2, s_l);
        }
        unclip__free(m);
        if (st)
            goto done;
    }

done:
    unclip__free(pe);
    unclip__free(hid);
    unclip__text_proj_free(tp);
    return st;
}

/* Device buffers of one forward geometry. */
struct fwd {
    int32_t imgs, rows;  /* pictures per forward, batch rows (2 imgs with guidance) */
    struct unclip_tensor sample, out, ehs, add;
    float *h_sample, *h_out, *h_mask;
};

static void
fwd_free(struct fwd *f)
{
    unclip__tensor_free(&f->sample);
    unclip__tensor_free(&f->out);
    unclip__tensor_free(&f->ehs);
    unclip__tensor_free(&f->add);
    unclip__free(f->h_sample);
    unclip__free(f->h_out);
    unclip__free(f->h_mask);
    memset(f, 0, sizeof *f);
}

static unclip_status
fwd_new(struct unclip__run *r, struct fwd *f, int32_t imgs, int32_t rows, int32_t cin,
        int32_t cout, int64_t side, const struct cond *cd)
{
    f->imgs = imgs;
    f->rows = rows;
    int64_t s_in[4] = {rows, cin, side, side}, s_out[4] = {rows, cout, side, side};
    unclip_status st;
    if ((st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 4, s_in, &f->sample)) ||
        (st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 4, s_out, &f->out)))
        return st;
    if (cd) {
        int64_t s_ehs[3] = {rows, cd->L, cd->X}, s_add[2] = {rows, cd->D};
        if ((st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 3, s_ehs, &f->ehs)) ||
            (st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 2, s_add, &f->add)))
            return st;
        f->h_mask = unclip__calloc((size_t)rows * cd->L, sizeof(float));
        if (!f->h_mask)
            return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
    }
    f->h_sample = unclip__calloc((size_t)unclip__tensor_numel(&f->sample), sizeof(float));
    f->h_out = unclip__calloc((size_t)unclip__tensor_numel(&f->out), sizeof(float));
    if (!f->h_sample || !f->h_out)
        return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
    return UNCLIP_OK;
}

/* Picture index of slot j of the chunk starting at run-relative picture a (padding repeats
 * the run's last picture). */
static int32_t
slot_image(const struct unclip__decode_run *u, int32_t a, int32_t j)
{
    int32_t k = a + j;
    return u->first + (k < u->count ? k : u->count - 1);
}

/* Uploads the conditioning rows of a chunk: slot j <- picture img (uncond row img, cond row
 * R + img with guidance). */
static unclip_status
upload_cond(struct unclip__run *r, struct fwd *f, const struct cond *cd, int32_t R,
            const struct unclip__decode_run *u, int32_t a)
{
    size_t ne = (size_t)cd->L * cd->X;
    float *ehs = unclip__calloc((size_t)f->rows * ne, sizeof(float));
    float *add = unclip__calloc((size_t)f->rows * cd->D, sizeof(float));
    if (!ehs || !add) {
        unclip__free(ehs);
        unclip__free(add);
        return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
    }
    for (int32_t slot = 0; slot < f->rows; slot++) {
        int32_t img = slot_image(u, a, slot % f->imgs);
        int32_t src = r->cfg && slot >= f->imgs ? R + img : img;
        memcpy(ehs + slot * ne, cd->ehs + src * ne, sizeof(float) * ne);
        memcpy(add + (size_t)slot * cd->D, cd->add + (size_t)src * cd->D,
               sizeof(float) * cd->D);
        memcpy(f->h_mask + (size_t)slot * cd->L, cd->mask + (size_t)src * cd->L,
               sizeof(float) * cd->L);
    }
    unclip_status st = unclip__tensor_upload_f32(r->vk, &f->ehs, ehs);
    if (st == UNCLIP_OK)
        st = unclip__tensor_upload_f32(r->vk, &f->add, add);
    unclip__free(ehs);
    unclip__free(add);
    return st;
}

static unclip_status
load_unet(struct unclip__run *r, const char *name, struct unclip_unet **out)
{
    double t0 = unclip__now_ms();
    struct unclip_unet_opts o = {.fp32 = r->fp32};
    unclip_status st = unclip__unet_load(r->vk, r->model->dir, name, &o, out, r->err);
    if (st == UNCLIP_OK)
        unclip__stage_loaded(r, unclip__unet_weight_bytes(*out), t0);
    return st;
}

static unclip_status
timesteps(struct unclip__run *r, const struct unclip_sched *s, int32_t n, int32_t **out)
{
    *out = unclip__calloc((size_t)n, sizeof(int32_t));
    if (!*out)
        return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
    return unclip__sched_timesteps(s, n, *out, r->err);
}

/* One scheduler step of a run plus its per-step tensors. x, mo: the run's rows. */
static unclip_status
run_step(struct unclip__run *r, const struct unclip_sched *sched, struct unclip__decode_run *u,
         const char *stage, int32_t i, int32_t t, int32_t prev, int32_t C, int32_t Cm,
         int64_t side, float *x, const float *mo, float *noise)
{
    char name[96];
    int64_t s_x[4] = {u->count, C, side, side}, s_mo[4] = {u->count, Cm, side, side};
    unclip_status st;
    if (t > 0) {
        snprintf(name, sizeof name, "%s_step%d_variance_noise", stage, (int)i);
        if ((st = unclip__draw(r, &u->gen, u->group, name, 4, s_x, noise)))
            return st;
    }
    snprintf(name, sizeof name, "%s_step%d_t", stage, (int)i);
    if ((st = unclip__put_scalar(r, u->group, name, t)))
        return st;
    snprintf(name, sizeof name, "%s_step%d_prev_t", stage, (int)i);
    if ((st = unclip__put_scalar(r, u->group, name, prev == UNCLIP_SCHED_PREV_NONE ? -1 : prev)))
        return st;
    snprintf(name, sizeof name, "%s_step%d_model_output", stage, (int)i);
    if ((st = unclip__put_f32(r, u->group, name, 4, s_mo, mo)))
        return st;
    struct unclip_sched_step a = {
        .model_output = mo, .sample = x, .batch = u->count, .channels = C,
        .model_channels = Cm, .spatial = side * side, .t = t, .prev_t = prev,
        .noise = t > 0 ? noise : NULL, .prev_sample = x,
    };
    if ((st = unclip__sched_step(sched, &a, r->err)))
        return st;
    snprintf(name, sizeof name, "%s_step%d_prev_sample", stage, (int)i);
    return unclip__put_f32(r, u->group, name, 4, s_x, x);
}

/* ---- decoder ---- */

static unclip_status
decoder_loop(struct unclip__run *r, struct unclip__plan *pl, struct unclip_unet *net,
             const struct unclip_sched *sched, const struct cond *cd, int32_t Cm)
{
    const int32_t R = pl->R, C = pl->C;
    const int64_t S = pl->S, px = (int64_t)C * S * S, pxm = (int64_t)Cm * S * S;
    const float g = r->p.decoder_guidance;
    const int32_t rpi = r->cfg ? 2 : 1; /* batch rows per picture */
    int32_t n = r->p.decoder_steps, *ts = NULL;
    int32_t count = pl->runs[0].count; /* every run has the same size */
    struct fwd f = {0};
    float *raw = unclip__calloc((size_t)R * rpi * pxm, sizeof(float));
    float *mo = unclip__calloc((size_t)count * pxm, sizeof(float));
    float *noise = unclip__calloc((size_t)count * px, sizeof(float));
    pl->image_small = unclip__calloc((size_t)R * px, sizeof(float));
    unclip_status st = UNCLIP_OK;
    if (!raw || !mo || !noise || !pl->image_small) {
        st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        goto done;
    }
    if ((st = timesteps(r, sched, n, &ts)))
        goto done;
    float *x = pl->image_small; /* the latents, clamped into image_small at the end */
    int64_t s_lat[4] = {count, C, S, S};
    for (int32_t k = 0; k < pl->n_runs; k++) {
        struct unclip__decode_run *u = &pl->runs[k];
        float *xu = x + (size_t)u->first * px;
        if ((st = unclip__draw(r, &u->gen, u->group, "decoder_initial_latents", 4, s_lat, xu)) ||
            (st = unclip__put_f32(r, u->group, "decoder_latents_init", 4, s_lat, xu)))
            goto done;
    }
    int32_t imgs = unclip__images_per_forward(unclip__unet_config(net), S, rpi, count);
    if ((st = fwd_new(r, &f, imgs, imgs * rpi, C, Cm, S, cd)))
        goto done;
    int32_t chunks = pl->n_runs * ((count + imgs - 1) / imgs);

    for (int32_t i = 0; i < n; i++) {
        int32_t t = ts[i], prev = i + 1 < n ? ts[i + 1] : UNCLIP_SCHED_PREV_NONE;
        for (int32_t k = 0; k < pl->n_runs; k++) {
            const struct unclip__decode_run *u = &pl->runs[k];
            for (int32_t a = 0; a < count; a += imgs) {
                for (int32_t slot = 0; slot < f.rows; slot++)
                    memcpy(f.h_sample + slot * px, x + (size_t)slot_image(u, a, slot % imgs) * px,
                           sizeof(float) * px);
                if ((chunks > 1 || i == 0) && (st = upload_cond(r, &f, cd, R, u, a)))
                    goto done;
                struct unclip_unet_inputs in = {
                    .sample = &f.sample, .timestep = (float)t,
                    .encoder_hidden_states = &f.ehs, .attention_mask = f.h_mask,
                    .class_labels = &f.add,
                };
                if ((st = unclip__tensor_upload_f32(r->vk, &f.sample, f.h_sample)) ||
                    (st = unclip__unet_forward(net, &in, &f.out)) ||
                    (st = unclip__tensor_download_f32(r->vk, &f.out, f.h_out)))
                    goto done;
                for (int32_t j = 0; j < imgs && a + j < count; j++)
                    for (int32_t h = 0; h < rpi; h++)
                        memcpy(raw + ((size_t)h * R + u->first + a + j) * pxm,
                               f.h_out + ((size_t)h * imgs + j) * pxm, sizeof(float) * pxm);
            }
        }
        for (int32_t k = 0; k < pl->n_runs; k++) {
            struct unclip__decode_run *u = &pl->runs[k];
            /* Guidance on the eps channels only; the variance comes from the cond half. */
            for (int32_t j = 0; j < u->count; j++) {
                const float *ou = raw + (size_t)(u->first + j) * pxm;
                const float *oc = r->cfg ? raw + (size_t)(R + u->first + j) * pxm : ou;
                float *m = mo + (size_t)j * pxm;
                if (!r->cfg) {
                    memcpy(m, ou, sizeof(float) * pxm);
                    continue;
                }
                for (int64_t e = 0; e < px; e++)
                    m[e] = ou[e] + g * (oc[e] - ou[e]);
                memcpy(m + px, oc + px, sizeof(float) * (pxm - px));
            }
            char name[64];
            int64_t s_raw[3] = {Cm, S, S};
            snprintf(name, sizeof name, "decoder_step%d_model_raw_out", (int)i);
            if ((st = put_run_rows(r, u, name, raw, R, r->cfg, 4, s_raw)) ||
                (st = run_step(r, sched, u, "decoder", i, t, prev, C, Cm, S,
                               x + (size_t)u->first * px, mo, noise)))
                goto done;
        }
        if ((st = unclip__stage_step(r)))
            goto done;
    }
    for (int64_t e = 0; e < (int64_t)R * px; e++)
        x[e] = x[e] < -1.0f ? -1.0f : x[e] > 1.0f ? 1.0f : x[e];
    for (int32_t k = 0; k < pl->n_runs; k++) {
        const struct unclip__decode_run *u = &pl->runs[k];
        if ((st = unclip__put_f32(r, u->group, "image_small", 4, s_lat,
                                  x + (size_t)u->first * px)))
            goto done;
    }

done:
    fwd_free(&f);
    unclip__free(ts);
    unclip__free(raw);
    unclip__free(mo);
    unclip__free(noise);
    return st;
}

unclip_status
unclip__decoder_stage(struct unclip__run *r, struct unclip__plan *pl)
{
    unclip_status st = unclip__stage_begin(r, "decoder", r->p.decoder_steps,
                                           305.0 * (r->cfg ? 2 : 1) * pl->R);
    if (st)
        return st;
    struct cond cd = {0};
    struct unclip_unet *net = NULL;
    struct unclip_sched *sched = NULL;
    /* budget before loading: text_proj + decoder weights, one forward's activations */
    static const char *const parts[] = {"text_proj", "decoder"};
    int32_t K = 0;
    uint64_t act = 0;
    if ((st = unclip__text_proj_extra_tokens(r, &K)) ||
        (st = unclip__unet_stage_activations(r, "decoder", r->cfg ? 2 : 1, pl->runs[0].count,
                                             K + pl->T, &act)) ||
        (st = unclip__stage_budget(r, "decoder", parts, 2, act)))
        goto done;
    if ((st = run_text_proj(r, pl, &cd)) || (st = load_unet(r, "decoder", &net)) ||
        (st = unclip__load_sched(r, "decoder_scheduler", &sched)))
        goto done;
    const struct unclip_unet_config *c = unclip__unet_config(net);
    int32_t Cm = c->out_channels;
    if (c->kind != UNCLIP_UNET_CONDITION || c->class_embed != UNCLIP_UNET_CLASS_IDENTITY ||
        c->context_dim != cd.X || c->time_dim != cd.D) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "decoder/config.json does not fit text_proj/config.json: the decoder "
                          "must be a UNet2DConditionModel with class_embed_type \"identity\", "
                          "cross_attention_dim %d and a %d-wide time embedding (it has %d and "
                          "%d)", (int)cd.X, (int)cd.D, (int)c->context_dim, (int)c->time_dim);
        goto done;
    }
    if (c->in_channels != 3 || c->sample_size <= 0) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "decoder/config.json: in_channels %d and sample_size %d (an RGB "
                          "decoder with a sample_size is needed)", (int)c->in_channels,
                          (int)c->sample_size);
        goto done;
    }
    bool learned = sched->cfg.variance_type == UNCLIP_VARIANCE_LEARNED_RANGE;
    if (Cm != (learned ? 2 : 1) * c->in_channels) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          "decoder/config.json: out_channels %d, but decoder_scheduler's "
                          "variance_type needs %d", (int)Cm,
                          (int)((learned ? 2 : 1) * c->in_channels));
        goto done;
    }
    pl->C = c->in_channels;
    pl->S = c->sample_size;
    st = decoder_loop(r, pl, net, sched, &cd, Cm);

done:
    unclip__sched_free(sched);
    unclip__unet_free(net);
    cond_free(&cd);
    if (st)
        return unclip__stage_fail(r, st);
    unclip__stage_end(r);
    return UNCLIP_OK;
}

/* ---- super-resolution ---- */

/* Steps [i0, i1) of the super-resolution loop with `net` over every run. */
static unclip_status
super_res_loop(struct unclip__run *r, struct unclip__plan *pl, struct unclip_unet *net,
               const struct unclip_sched *sched, const int32_t *ts, int32_t n, int32_t i0,
               int32_t i1, int32_t which)
{
    const int32_t C = pl->C;
    const int64_t Rs = pl->Rs, px = (int64_t)C * Rs * Rs;
    int32_t count = pl->runs[0].count;
    int32_t imgs = unclip__images_per_forward(unclip__unet_config(net), Rs, 1, count);
    struct fwd f = {0};
    float *eps = unclip__calloc((size_t)pl->R * px, sizeof(float));
    float *noise = unclip__calloc((size_t)count * px, sizeof(float));
    unclip_status st = UNCLIP_OK;
    if (!eps || !noise) {
        st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        goto done;
    }
    if ((st = fwd_new(r, &f, imgs, imgs, 2 * C, C, Rs, NULL)))
        goto done;
    for (int32_t i = i0; i < i1; i++) {
        int32_t t = ts[i], prev = i + 1 < n ? ts[i + 1] : UNCLIP_SCHED_PREV_NONE;
        for (int32_t k = 0; k < pl->n_runs; k++) {
            const struct unclip__decode_run *u = &pl->runs[k];
            for (int32_t a = 0; a < count; a += imgs) {
                /* input = cat([latents, upscaled image], channels) */
                for (int32_t slot = 0; slot < imgs; slot++) {
                    int32_t img = slot_image(u, a, slot);
                    memcpy(f.h_sample + (size_t)slot * 2 * px, pl->x + (size_t)img * px,
                           sizeof(float) * px);
                    memcpy(f.h_sample + (size_t)slot * 2 * px + px, pl->up + (size_t)img * px,
                           sizeof(float) * px);
                }
                struct unclip_unet_inputs in = {.sample = &f.sample, .timestep = (float)t};
                if ((st = unclip__tensor_upload_f32(r->vk, &f.sample, f.h_sample)) ||
                    (st = unclip__unet_forward(net, &in, &f.out)) ||
                    (st = unclip__tensor_download_f32(r->vk, &f.out, f.h_out)))
                    goto done;
                for (int32_t j = 0; j < imgs && a + j < count; j++)
                    memcpy(eps + (size_t)(u->first + a + j) * px, f.h_out + (size_t)j * px,
                           sizeof(float) * px);
            }
        }
        for (int32_t k = 0; k < pl->n_runs; k++) {
            struct unclip__decode_run *u = &pl->runs[k];
            char name[64];
            snprintf(name, sizeof name, "super_res_step%d_unet", (int)i);
            if ((st = unclip__put_scalar(r, u->group, name, which)) ||
                (st = run_step(r, sched, u, "super_res", i, t, prev, C, C, Rs,
                               pl->x + (size_t)u->first * px, eps + (size_t)u->first * px,
                               noise)))
                goto done;
        }
        if ((st = unclip__stage_step(r)))
            goto done;
    }

done:
    fwd_free(&f);
    unclip__free(eps);
    unclip__free(noise);
    return st;
}

/* Checks a super-resolution net against the decoder and returns its sample size. */
static unclip_status
check_super_res(struct unclip__run *r, const char *name, const struct unclip_unet *net,
                int32_t C, int32_t *side)
{
    const struct unclip_unet_config *c = unclip__unet_config(net);
    if (c->kind != UNCLIP_UNET_PLAIN || c->in_channels != 2 * C || c->out_channels != C)
        return unclip__fail(r->err, UNCLIP_E_MODEL,
                            "%s/config.json: a UNet2DModel with in_channels %d (latents + "
                            "upscaled picture) and out_channels %d is needed (it has %d and %d)",
                            name, (int)(2 * C), (int)C, (int)c->in_channels,
                            (int)c->out_channels);
    if (side)
        *side = c->sample_size;
    return UNCLIP_OK;
}

/* image_small -> pl->up, one picture at a time (torch interpolate, bicubic, antialias). */
static unclip_status
upscale(struct unclip__run *r, struct unclip__plan *pl)
{
    const int32_t C = pl->C;
    int64_t s_small[4] = {1, C, pl->S, pl->S}, s_up[4] = {1, C, pl->Rs, pl->Rs};
    size_t ps = (size_t)C * pl->S * pl->S, pu = (size_t)C * pl->Rs * pl->Rs;
    struct unclip_tensor a = {0}, b = {0};
    unclip_status st;
    pl->up = unclip__calloc((size_t)pl->R * pu, sizeof(float));
    if (!pl->up)
        return unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
    if ((st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 4, s_small, &a)) ||
        (st = unclip__tensor_new(r->vk, UNCLIP_DT_F32, 4, s_up, &b)))
        goto done;
    for (int32_t k = 0; k < pl->R; k++)
        if ((st = unclip__tensor_upload_f32(r->vk, &a, pl->image_small + k * ps)) ||
            (st = unclip__op_resize_bicubic_aa(r->vk, &a, &b)) ||
            (st = unclip__tensor_download_f32(r->vk, &b, pl->up + k * pu)))
            goto done;
done:
    unclip__tensor_free(&a);
    unclip__tensor_free(&b);
    return st;
}

unclip_status
unclip__super_res_stages(struct unclip__run *r, struct unclip__plan *pl)
{
    const int32_t n = r->p.sr_steps, C = pl->C;
    unclip_status st = unclip__stage_begin(r, "super_res_first", n - 1, 4250.0 * pl->R);
    if (st)
        return st;
    struct unclip_unet *net = NULL;
    struct unclip_sched *sched = NULL;
    int32_t *ts = NULL;
    int32_t count = pl->runs[0].count;
    static const char *const first[] = {"super_res_first"};
    uint64_t act = 0;
    if ((st = unclip__unet_stage_activations(r, "super_res_first", 1, count, 0, &act)) ||
        (st = unclip__stage_budget(r, "super_res_first", first, 1, act)))
        goto fail;
    if ((st = load_unet(r, "super_res_first", &net)) ||
        (st = check_super_res(r, "super_res_first", net, C, &pl->Rs)) ||
        (st = unclip__load_sched(r, "super_res_scheduler", &sched)) ||
        (st = timesteps(r, sched, n, &ts)))
        goto fail;
    if (pl->Rs <= 0 || sched->cfg.variance_type == UNCLIP_VARIANCE_LEARNED_RANGE) {
        st = unclip__fail(r->err, UNCLIP_E_MODEL,
                          pl->Rs <= 0 ? "super_res_first/config.json has no sample_size (the "
                                        "output size)"
                                      : "super_res_scheduler/scheduler_config.json: "
                                        "learned_range needs a variance output the "
                                        "super-resolution nets do not have");
        goto fail;
    }
    const int64_t Rs = pl->Rs, px = (int64_t)C * Rs * Rs;
    pl->x = unclip__calloc((size_t)pl->R * px, sizeof(float));
    if (!pl->x) {
        st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        goto fail;
    }
    /* Draw order per run: the latents come right after the decoder's draws. */
    int64_t s_lat[4] = {count, C, Rs, Rs};
    for (int32_t k = 0; k < pl->n_runs; k++) {
        struct unclip__decode_run *u = &pl->runs[k];
        float *xu = pl->x + (size_t)u->first * px;
        if ((st = unclip__draw(r, &u->gen, u->group, "super_res_initial_latents", 4, s_lat,
                               xu)) ||
            (st = unclip__put_f32(r, u->group, "super_res_latents_init", 4, s_lat, xu)))
            goto fail;
    }
    if ((st = upscale(r, pl)))
        goto fail;
    for (int32_t k = 0; k < pl->n_runs; k++) {
        const struct unclip__decode_run *u = &pl->runs[k];
        if ((st = unclip__put_f32(r, u->group, "image_upscaled", 4, s_lat,
                                  pl->up + (size_t)u->first * px)))
            goto fail;
    }
    if ((st = super_res_loop(r, pl, net, sched, ts, n, 0, n - 1, 0)))
        goto fail;
    unclip__unet_free(net);
    net = NULL;
    unclip__stage_end(r);

    if ((st = unclip__stage_begin(r, "super_res_last", 1, 4250.0 * pl->R)))
        goto out;
    int32_t side = 0;
    static const char *const last[] = {"super_res_last"};
    if ((st = unclip__unet_stage_activations(r, "super_res_last", 1, count, 0, &act)) ||
        (st = unclip__stage_budget(r, "super_res_last", last, 1, act)))
        goto fail;
    if ((st = load_unet(r, "super_res_last", &net)) ||
        (st = check_super_res(r, "super_res_last", net, C, &side)) ||
        (st = super_res_loop(r, pl, net, sched, ts, n, n - 1, n, 1)))
        goto fail;
    unclip__unet_free(net);
    unclip__sched_free(sched);
    unclip__free(ts);
    unclip__stage_end(r);
    return UNCLIP_OK;

fail:
    st = unclip__stage_fail(r, st);
out:
    unclip__unet_free(net);
    unclip__sched_free(sched);
    unclip__free(ts);
    return st;
}

/* ---- output ---- */

unclip_status
unclip__output(struct unclip__run *r, struct unclip__plan *pl, struct unclip_result *out)
{
    const int32_t C = pl->C, R = pl->R;
    const int64_t Rs = pl->Rs, px = (int64_t)C * Rs * Rs;
    struct unclip_result res = {0};
    float *img = unclip__calloc((size_t)R * px, sizeof(float));
    uint8_t *u8 = unclip__calloc((size_t)R * px, 1);
    res.images = unclip__calloc((size_t)R, sizeof *res.images);
    unclip_status st = UNCLIP_OK;
    if (!img || !u8 || !res.images) {
        st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
        goto done;
    }
    /* clamp(x * 0.5 + 0.5, 0, 1) as HWC, then round half to even of 255 * v (numpy). */
    for (int32_t k = 0; k < R; k++)
        for (int32_t c = 0; c < C; c++)
            for (int64_t i = 0; i < Rs * Rs; i++) {
                float v = pl->x[(size_t)k * px + (size_t)c * Rs * Rs + i] * 0.5f + 0.5f;
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                size_t o = (size_t)k * px + (size_t)i * C + c;
                img[o] = v;
                u8[o] = (uint8_t)nearbyintf(v * 255.0f);
            }
    for (int32_t k = 0; k < pl->n_runs; k++) {
        const struct unclip__decode_run *u = &pl->runs[k];
        int64_t s[4] = {u->count, Rs, Rs, C};
        if ((st = unclip__put_f32(r, u->group, "images", 4, s, img + (size_t)u->first * px)) ||
            (st = unclip__put_u8(r, u->group, "images_u8", 4, s, u8 + (size_t)u->first * px)))
            goto done;
    }
    for (int32_t k = 0; k < R; k++) {
        struct unclip_image *im = &res.images[k];
        im->pixels = unclip__malloc((size_t)px);
        if (!im->pixels) {
            st = unclip__fail(r->err, UNCLIP_E_NOMEM, "out of host memory");
            goto done;
        }
        memcpy(im->pixels, u8 + (size_t)k * px, (size_t)px);
        im->width = im->height = (int32_t)Rs;
        im->channels = C;
        im->stride = (int32_t)(Rs * C);
        res.n_images = k + 1;
    }
    *out = res;
    res.images = NULL;
    res.n_images = 0;

done:
    unclip_result_clear(&res);
    unclip__free(img);
    unclip__free(u8);
    return st;
}
