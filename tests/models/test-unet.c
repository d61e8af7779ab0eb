/* The UNets against the goldens (README sections 3 and 8):
 *   decoder_unet.safetensors     sample, encoder_hidden_states, class_labels, attention_mask,
 *                                t{i}_timestep -> t{i}_out (decoder, 3 timesteps)
 *   super_res_unets.safetensors  sample, first_t{i}_* (super_res_first), last_t{i}_*
 *                                (super_res_last), 2 timesteps each
 * with fp32 device weights (relative L2 <= 1e-4, the README's module rule) and fp16 device
 * weights (<= 5e-3). Also: a batch of one (the workspace re-plans; row 1's own mask), no
 * device allocation on a repeated forward, encoder_hid_proj through an exactly invertible
 * projection, and loader errors (missing tensor, wrong shape, unused tensor, unknown block
 * type) built in a temporary folder from the golden decoder. */
#include "core/alloc.h"
#include "io/json.h"
#include "io/model-dir.h"
#include "io/safetensors.h"
#include "models/unet.h"
#include "testutil.h"

#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FP32_TOL 1e-4
#define FP16_TOL 5e-3

static char tmpdir[4096];

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time of the whole process (lavapipe's worker threads included): on a loaded machine
 * this says more about the work than the wall clock. */
static double
cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Golden tensor as floats (new array); NULL when absent. */
static float *
golden_f32(const struct unclip_st_file *f, const char *name, int64_t *n)
{
    const struct unclip_st_tensor *t = unclip__st_find(f, name);
    if (!t)
        return NULL;
    float *x = malloc((size_t)t->numel * sizeof(float) + 1);
    unclip__st_to_f32(t, x, NULL);
    if (n)
        *n = t->numel;
    return x;
}

static const struct unclip_st_tensor *
golden_t(const struct unclip_st_file *f, const char *name)
{
    const struct unclip_st_tensor *t = unclip__st_find(f, name);
    TU_CHECK(t != NULL, "golden tensor %s missing", name);
    return t;
}

static float
golden_scalar(const struct unclip_st_file *f, const char *name)
{
    int64_t v = -1;
    const struct unclip_st_tensor *t = golden_t(f, name);
    if (t)
        unclip__st_to_i64(t, &v, NULL);
    return (float)v;
}

/* Device tensor with the golden's shape (or `shape` when given) and data. */
static bool
upload(struct unclip_vk *vk, const struct unclip_st_file *f, const char *name,
       struct unclip_tensor *out)
{
    const struct unclip_st_tensor *t = golden_t(f, name);
    if (!t)
        return false;
    float *x = golden_f32(f, name, NULL);
    unclip_status st = unclip__tensor_new(vk, UNCLIP_DT_F32, t->ndim, t->shape, out);
    if (st == UNCLIP_OK)
        st = unclip__tensor_upload_f32(vk, out, x);
    free(x);
    TU_CHECK(st == UNCLIP_OK, "upload %s: %s", name, unclip__vk_err(vk)->msg);
    return st == UNCLIP_OK;
}

/* Runs one forward, downloads, compares with golden `want` (n floats at offset `off`). */
static double
run_compare(struct unclip_vk *vk, struct unclip_unet *u, const struct unclip_unet_inputs *in,
            struct unclip_tensor *out, const float *want, int64_t n, double *ms, double *cpu)
{
    double t0 = now_ms(), c0 = cpu_ms();
    unclip_status st = unclip__unet_forward(u, in, out);
    if (st == UNCLIP_OK)
        st = unclip__vk_finish(vk);
    double t1 = now_ms(), c1 = cpu_ms();
    if (ms)
        *ms = t1 - t0;
    if (cpu)
        *cpu = c1 - c0;
    TU_CHECK(st == UNCLIP_OK, "forward: %s", unclip__vk_err(vk)->msg);
    if (st != UNCLIP_OK)
        return 1e9;
    float *got = malloc((size_t)n * sizeof(float));
    st = unclip__tensor_download_f32(vk, out, got);
    TU_CHECK(st == UNCLIP_OK, "download: %s", unclip__vk_err(vk)->msg);
    TU_CHECK(tu_first_nonfinite(got, n) < 0, "non-finite output");
    double e = tu_rel_l2(got, want, n);
    free(got);
    return e;
}

/* ---- decoder ---- */

static void
test_decoder(struct unclip_vk *vk, const struct unclip_model_dir *dir, bool fp32)
{
    const char *label = fp32 ? "fp32" : "fp16";
    double tol = fp32 ? FP32_TOL : FP16_TOL;
    struct unclip_err err = {0};
    struct unclip_unet *u = NULL;
    struct unclip_unet_opts opts = {.fp32 = fp32};
    double t0 = now_ms();
    unclip_status st = unclip__unet_load(vk, dir, "decoder", &opts, &u, &err);
    double t1 = now_ms();
    TU_CHECK(st == UNCLIP_OK, "decoder %s: load: %s", label, err.msg);
    if (st != UNCLIP_OK)
        return;
    const struct unclip_unet_config *c = unclip__unet_config(u);
    TU_CHECK(c->kind == UNCLIP_UNET_CONDITION && c->scale_shift &&
                 c->class_embed == UNCLIP_UNET_CLASS_IDENTITY && c->mid_attn,
             "decoder config not read as a scale-shift, identity-class conditional UNet");
    printf("decoder %s: %d blocks (%d", label, (int)c->n_blocks, (int)c->block_out[0]);
    for (int32_t i = 1; i < c->n_blocks; i++)
        printf(", %d", (int)c->block_out[i]);
    printf("), time %d, context %d, %.2f MiB of weights, loaded in %.0f ms\n",
           (int)c->time_dim, (int)c->context_dim, unclip__unet_weight_bytes(u) / 1048576.0,
           t1 - t0);

    struct unclip_st_file *g = NULL;
    st = unclip__st_open(tu_golden_path("goldens/decoder_unet.safetensors"), &g, &err);
    TU_CHECK(st == UNCLIP_OK, "open decoder goldens: %s", err.msg);
    if (st != UNCLIP_OK) {
        unclip__unet_free(u);
        return;
    }
    struct unclip_tensor sample = {0}, ehs = {0}, cls = {0}, out = {0};
    int64_t n_mask = 0;
    float *mask = golden_f32(g, "attention_mask", &n_mask);
    if (upload(vk, g, "sample", &sample) && upload(vk, g, "encoder_hidden_states", &ehs) &&
        upload(vk, g, "class_labels", &cls) && mask) {
        int64_t b = sample.shape[0], h = sample.shape[2], w = sample.shape[3];
        int64_t t = ehs.shape[1];
        int64_t oshape[4] = {b, c->out_channels, h, w};
        unclip__tensor_new(vk, UNCLIP_DT_F32, 4, oshape, &out);
        struct unclip_unet_inputs in = {
            .sample = &sample,
            .encoder_hidden_states = &ehs,
            .attention_mask = mask,
            .class_labels = &cls,
        };
        int64_t n_out = b * c->out_channels * h * w;
        for (int i = 0; i < 3; i++) {
            char name[64];
            snprintf(name, sizeof name, "t%d_timestep", i);
            in.timestep = golden_scalar(g, name);
            snprintf(name, sizeof name, "t%d_out", i);
            float *want = golden_f32(g, name, NULL);
            if (!want)
                continue;
            uint64_t mem0 = unclip__vk_mem_in_use(vk);
            double ms, cpu;
            double e = run_compare(vk, u, &in, &out, want, n_out, &ms, &cpu);
            printf("  decoder %s t=%3.0f (B %lld, %lldx%lld): rel L2 %.2e  (%.0f ms wall, %.0f ms "
                   "CPU, workspace %.2f MiB)\n",
                   label, (double)in.timestep, (long long)b, (long long)h, (long long)w, e, ms,
                   cpu, unclip__unet_workspace_bytes(u) / 1048576.0);
            TU_CHECK(e <= tol, "decoder %s t%d: rel L2 %.3e > %.0e", label, i, e, tol);
            if (i == 1) /* the first call planned the workspace: this one is the timing */
                printf("  decoder %s forward: %.0f ms wall, %.0f ms CPU (batch %lld)\n", label,
                       ms, cpu, (long long)b);
            if (i > 0)
                TU_CHECK(unclip__vk_mem_in_use(vk) == mem0,
                         "decoder %s: device memory in use changed over a repeated forward "
                         "(%llu -> %llu)", label, (unsigned long long)mem0,
                         (unsigned long long)unclip__vk_mem_in_use(vk));
            free(want);
        }
        /* The device-free plan of the same geometry must give the workspace the forward
         * allocated (each buffer rounded up to 256 bytes). */
        {
            struct unclip_unet_plan p;
            struct unclip_err perr = {0};
            st = unclip__unet_plan(c, (int32_t)b, (int32_t)h, (int32_t)w, (int32_t)t, true, &p,
                                   &perr);
            TU_CHECK(st == UNCLIP_OK, "decoder plan: %s", perr.msg);
            uint64_t ws = unclip__unet_workspace_bytes(u);
            TU_CHECK(st == UNCLIP_OK && ws >= p.workspace_bytes &&
                         ws <= p.workspace_bytes + 256ull * (uint64_t)p.n_buffers,
                     "decoder: workspace %llu vs plan %llu", (unsigned long long)ws,
                     (unsigned long long)p.workspace_bytes);
            printf("  decoder %s plan: %d intermediates in %d buffers, %.2f MiB (live peak %.2f "
                   "MiB)\n", label, (int)p.n_tensors, (int)p.n_buffers,
                   p.workspace_bytes / 1048576.0, p.live_peak_bytes / 1048576.0);
        }

        /* Batch of one: row 1 alone, with its own mask row (the workspace re-plans). */
        if (b >= 2) {
            struct unclip_tensor s1 = {0}, e1 = {0}, c1 = {0}, o1 = {0};
            int64_t ss[4] = {1, sample.shape[1], h, w}, es[3] = {1, t, ehs.shape[2]};
            int64_t cs[2] = {1, cls.shape[1]}, os[4] = {1, c->out_channels, h, w};
            float *hs = golden_f32(g, "sample", NULL), *he = golden_f32(g, "encoder_hidden_states",
                                                                        NULL);
            float *hc = golden_f32(g, "class_labels", NULL), *want = golden_f32(g, "t1_out", NULL);
            unclip__tensor_new(vk, UNCLIP_DT_F32, 4, ss, &s1);
            unclip__tensor_new(vk, UNCLIP_DT_F32, 3, es, &e1);
            unclip__tensor_new(vk, UNCLIP_DT_F32, 2, cs, &c1);
            unclip__tensor_new(vk, UNCLIP_DT_F32, 4, os, &o1);
            unclip__tensor_upload_f32(vk, &s1, hs + unclip__tensor_numel(&s1));
            unclip__tensor_upload_f32(vk, &e1, he + unclip__tensor_numel(&e1));
            unclip__tensor_upload_f32(vk, &c1, hc + unclip__tensor_numel(&c1));
            struct unclip_unet_inputs in1 = {
                .sample = &s1,
                .timestep = golden_scalar(g, "t1_timestep"),
                .encoder_hidden_states = &e1,
                .attention_mask = mask + t,
                .class_labels = &c1,
            };
            int64_t n1 = unclip__tensor_numel(&o1);
            double e = run_compare(vk, u, &in1, &o1, want + n1, n1, NULL, NULL);
            printf("  decoder %s row 1 alone: rel L2 %.2e\n", label, e);
            TU_CHECK(e <= tol, "decoder %s row 1 alone: rel L2 %.3e > %.0e", label, e, tol);
            /* Without the mask the result must change (the mask matters for row 1). */
            in1.attention_mask = NULL;
            e = run_compare(vk, u, &in1, &o1, want + n1, n1, NULL, NULL);
            printf("  decoder %s row 1 without its mask: rel L2 %.2e (must differ)\n", label, e);
            TU_CHECK(e > 1e-2, "decoder %s: ignoring the mask changed nothing (%.3e)", label, e);
            unclip__tensor_free(&s1);
            unclip__tensor_free(&e1);
            unclip__tensor_free(&c1);
            unclip__tensor_free(&o1);
            free(hs);
            free(he);
            free(hc);
            free(want);
        }

        /* Argument checks. */
        in.class_labels = NULL;
        st = unclip__unet_forward(u, &in, &out);
        TU_CHECK(st == UNCLIP_E_ARG && strstr(unclip__vk_err(vk)->msg, "class_labels"),
                 "decoder without class_labels: %d %s", st, unclip__vk_err(vk)->msg);
        printf("  missing class labels -> %s\n", unclip__vk_err(vk)->msg);
        in.class_labels = &cls;
        in.encoder_hidden_states = &cls;
        st = unclip__unet_forward(u, &in, &out);
        TU_CHECK(st == UNCLIP_E_ARG && strstr(unclip__vk_err(vk)->msg, "encoder_hidden_states"),
                 "decoder with a wrong context: %d %s", st, unclip__vk_err(vk)->msg);
    }
    unclip__tensor_free(&sample);
    unclip__tensor_free(&ehs);
    unclip__tensor_free(&cls);
    unclip__tensor_free(&out);
    free(mask);
    unclip__st_close(g);
    unclip__unet_free(u);
}

/* ---- super-resolution ---- */

static void
test_sr(struct unclip_vk *vk, const struct unclip_model_dir *dir, const char *comp,
        const char *prefix, bool fp32)
{
    const char *label = fp32 ? "fp32" : "fp16";
    double tol = fp32 ? FP32_TOL : FP16_TOL;
    struct unclip_err err = {0};
    struct unclip_unet *u = NULL;
    struct unclip_unet_opts opts = {.fp32 = fp32};
    unclip_status st = unclip__unet_load(vk, dir, comp, &opts, &u, &err);
    TU_CHECK(st == UNCLIP_OK, "%s %s: load: %s", comp, label, err.msg);
    if (st != UNCLIP_OK)
        return;
    const struct unclip_unet_config *c = unclip__unet_config(u);
    TU_CHECK(c->kind == UNCLIP_UNET_PLAIN && !c->scale_shift && c->context_dim == 0,
             "%s config not read as a plain default-time UNet", comp);
    struct unclip_st_file *g = NULL;
    st = unclip__st_open(tu_golden_path("goldens/super_res_unets.safetensors"), &g, &err);
    TU_CHECK(st == UNCLIP_OK, "open super-res goldens: %s", err.msg);
    struct unclip_tensor sample = {0}, out = {0};
    if (st == UNCLIP_OK && upload(vk, g, "sample", &sample)) {
        int64_t b = sample.shape[0], h = sample.shape[2], w = sample.shape[3];
        int64_t oshape[4] = {b, c->out_channels, h, w};
        unclip__tensor_new(vk, UNCLIP_DT_F32, 4, oshape, &out);
        struct unclip_unet_inputs in = {.sample = &sample};
        int64_t n_out = unclip__tensor_numel(&out);
        for (int i = 0; i < 2; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s_t%d_timestep", prefix, i);
            in.timestep = golden_scalar(g, name);
            snprintf(name, sizeof name, "%s_t%d_out", prefix, i);
            float *want = golden_f32(g, name, NULL);
            if (!want)
                continue;
            double ms, cpu;
            double e = run_compare(vk, u, &in, &out, want, n_out, &ms, &cpu);
            printf("  %s %s t=%3.0f (B %lld, %lldx%lld): rel L2 %.2e  (%.0f ms wall, %.0f ms CPU, "
                   "workspace %.2f MiB, weights %.2f MiB)\n",
                   comp, label, (double)in.timestep, (long long)b, (long long)h, (long long)w, e,
                   ms, cpu, unclip__unet_workspace_bytes(u) / 1048576.0,
                   unclip__unet_weight_bytes(u) / 1048576.0);
            TU_CHECK(e <= tol, "%s %s t%d: rel L2 %.3e > %.0e", comp, label, i, e, tol);
            free(want);
        }
        /* Wrong input size: the network halves it n_downsamplers times. */
        struct unclip_tensor odd = {0};
        int64_t os[4] = {1, c->in_channels, 12, 12};
        unclip__tensor_new(vk, UNCLIP_DT_F32, 4, os, &odd);
        in.sample = &odd;
        st = unclip__unet_forward(u, &in, &out);
        TU_CHECK(st == UNCLIP_E_ARG && strstr(unclip__vk_err(vk)->msg, "multiple"),
                 "%s: a 12x12 sample: %d %s", comp, st, unclip__vk_err(vk)->msg);
        unclip__tensor_free(&odd);
    }
    unclip__tensor_free(&sample);
    unclip__tensor_free(&out);
    unclip__st_close(g);
    unclip__unet_free(u);
}

/* ---- edited copies of the golden decoder ---- */

struct edit {
    const char *cfg_from, *cfg_to; /* text replacement in config.json (NULL: none) */
    const char *drop;              /* tensor left out                              */
    const char *halve;             /* tensor whose first dimension is halved       */
    const char *extra;             /* tensor added ([4] zeros)                     */
    bool hid_proj;                 /* add encoder_hid_proj (see test_hid_proj)     */
};

/* A signed permutation P ([D, D], orthogonal) and a bias for the encoder_hid_proj test. */
static void
hid_proj_weights(int64_t d, float *w, float *bias)
{
    memset(w, 0, (size_t)(d * d) * sizeof(float));
    for (int64_t i = 0; i < d; i++) {
        int64_t j = (i * 7 + 3) % d; /* a bijection when gcd(7, d) = 1 */
        w[i * d + j] = (i % 3 == 0) ? -1.0f : 1.0f;
        bias[i] = 0.25f * (float)((i % 5) - 2);
    }
}

/* Copies the golden decoder into <tmpdir>/<tag>/decoder with the edit; returns the config and
 * weight paths in cfg / wts. */
static void
make_copy(const char *tag, const struct edit *e, char *cfg, char *wts, size_t size)
{
    char dir[4200], src[4096];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, tag);
    g_mkdir_with_parents(dir, 0700);
    snprintf(cfg, size, "%s/config.json", dir);
    snprintf(wts, size, "%s/diffusion_pytorch_model.safetensors", dir);

    snprintf(src, sizeof src, "%s/decoder/config.json", tu_golden_path("models/tiny-karlo"));
    gchar *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(src, &text, &len, NULL)) {
        TU_CHECK(0, "cannot read %s", src);
        return;
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
    g_file_set_contents(cfg, text, -1, NULL);
    g_free(text);

    struct unclip_err err = {0};
    struct unclip_st_file *f = NULL;
    snprintf(src, sizeof src, "%s/decoder/diffusion_pytorch_model.safetensors",
             tu_golden_path("models/tiny-karlo"));
    unclip_status st = unclip__st_open(src, &f, &err);
    TU_CHECK(st == UNCLIP_OK, "open %s: %s", src, err.msg);
    if (st != UNCLIP_OK)
        return;
    struct unclip_st_writer *w = NULL;
    unclip__st_writer_new(&w, &err);
    for (int32_t i = 0; i < unclip__st_count(f); i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        if (e->drop && !strcmp(t->name, e->drop))
            continue;
        int64_t shape[UNCLIP_ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (e->halve && !strcmp(t->name, e->halve))
            shape[0] /= 2; /* the leading half of the data is a valid smaller tensor */
        st = unclip__st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data, &err);
        TU_CHECK(st == UNCLIP_OK, "copy tensor %s: %s", t->name, err.msg);
    }
    if (e->extra) {
        float z[4] = {0};
        int64_t shape[1] = {4};
        unclip__st_writer_add_f32(w, e->extra, UNCLIP_DT_F32, 1, shape, z, &err);
    }
    if (e->hid_proj) {
        const struct unclip_st_tensor *k =
            unclip__st_find(f, "mid_block.attentions.0.add_k_proj.weight");
        int64_t d = k ? k->shape[1] : 1;
        float *pw = malloc((size_t)(d * d) * sizeof(float));
        float *pb = malloc((size_t)d * sizeof(float));
        hid_proj_weights(d, pw, pb);
        int64_t ws[2] = {d, d}, bs[1] = {d};
        unclip__st_writer_add_f32(w, "encoder_hid_proj.weight", UNCLIP_DT_F32, 2, ws, pw, &err);
        unclip__st_writer_add_f32(w, "encoder_hid_proj.bias", UNCLIP_DT_F32, 1, bs, pb, &err);
        free(pw);
        free(pb);
    }
    st = unclip__st_writer_write(w, wts, &err);
    TU_CHECK(st == UNCLIP_OK, "write %s: %s", wts, err.msg);
    unclip__st_writer_free(w);
    unclip__st_close(f);
}

static unclip_status
load_copy(struct unclip_vk *vk, const char *tag, const struct edit *e, struct unclip_unet **u,
          struct unclip_err *err)
{
    char cfg[4300], wts[4300], cname[128], wname[128];
    make_copy(tag, e, cfg, wts, sizeof cfg);
    snprintf(cname, sizeof cname, "%s/config.json", tag);
    snprintf(wname, sizeof wname, "%s/diffusion_pytorch_model.safetensors", tag);
    memset(err, 0, sizeof *err);
    struct unclip_unet_opts opts = {.fp32 = true};
    return unclip__unet_load_files(vk, cfg, cname, wts, wname, &opts, u, err);
}

/* Loading must fail with `code` and a message holding every needle. */
static void
expect_fail(struct unclip_vk *vk, const char *tag, const struct edit *e, unclip_status code,
            const char *n1, const char *n2, const char *n3)
{
    struct unclip_err err;
    struct unclip_unet *u = NULL;
    unclip_status st = load_copy(vk, tag, e, &u, &err);
    printf("  %s -> %s\n", tag, err.msg);
    TU_CHECK(st == code, "%s: status %d, expected %d (%s)", tag, (int)st, (int)code, err.msg);
    TU_CHECK(u == NULL, "%s: model returned on failure", tag);
    const char *needles[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i])
            TU_CHECK(strstr(err.msg, needles[i]) != NULL, "%s: '%s' not in \"%s\"", tag,
                     needles[i], err.msg);
    unclip__unet_free(u);
}

static void
test_load_errors(struct unclip_vk *vk)
{
    struct unclip_err err;
    struct unclip_unet *u = NULL;
    struct edit none = {0};
    unclip_status st = load_copy(vk, "ok", &none, &u, &err);
    TU_CHECK(st == UNCLIP_OK, "untouched copy: %s", err.msg);
    unclip__unet_free(u);

    struct edit missing = {.drop = "down_blocks.2.attentions.1.add_k_proj.weight"};
    expect_fail(vk, "missing", &missing, UNCLIP_E_MODEL, "missing",
                "down_blocks.2.attentions.1.add_k_proj.weight",
                "missing/diffusion_pytorch_model.safetensors");
    struct edit shape = {.halve = "up_blocks.1.resnets.2.conv1.weight"};
    expect_fail(vk, "shape", &shape, UNCLIP_E_MODEL, "up_blocks.1.resnets.2.conv1.weight",
                "expected", "shape/diffusion_pytorch_model.safetensors");
    struct edit extra = {.extra = "down_blocks.0.resnets.7.norm1.weight"};
    expect_fail(vk, "unused", &extra, UNCLIP_E_MODEL, "down_blocks.0.resnets.7.norm1.weight",
                NULL, NULL);
    /* One layer per block instead of two: the config no longer matches the file (the up
     * blocks' concatenation widths change, and tensors of the second layers go unread). */
    struct edit fewer = {.cfg_from = "\"layers_per_block\": 2",
                         .cfg_to = "\"layers_per_block\": 1"};
    expect_fail(vk, "fewer-layers", &fewer, UNCLIP_E_MODEL, "fewer-layers/", NULL, NULL);
    struct edit block = {.cfg_from = "\"SimpleCrossAttnDownBlock2D\",",
                         .cfg_to = "\"CrossAttnDownBlock2D\","};
    expect_fail(vk, "block-type", &block, UNCLIP_E_MODEL, "block-type/config.json",
                "down_block_types[1]", "CrossAttnDownBlock2D");
    struct edit mid = {.cfg_from = "\"UNetMidBlock2DSimpleCrossAttn\"",
                       .cfg_to = "\"UNetMidBlock2DCrossAttn\""};
    expect_fail(vk, "mid-type", &mid, UNCLIP_E_MODEL, "mid_block_type", "UNetMidBlock2DCrossAttn",
                NULL);
    struct edit cet = {.cfg_from = "\"class_embed_type\": \"identity\"",
                       .cfg_to = "\"class_embed_type\": \"projection\""};
    expect_fail(vk, "class-embed", &cet, UNCLIP_E_MODEL, "class_embed_type", "projection", NULL);
    struct edit groups = {.cfg_from = "\"norm_num_groups\": 32",
                          .cfg_to = "\"norm_num_groups\": 5"};
    expect_fail(vk, "groups", &groups, UNCLIP_E_MODEL, "norm_num_groups", NULL, NULL);
}

/* encoder_hid_proj ("text_proj"): with W a signed permutation (orthogonal) and bias b,
 * feeding E' = (E - b) W makes E' W^T + b = E exactly, so the golden output must come out. */
static void
test_hid_proj(struct unclip_vk *vk)
{
    struct unclip_err err;
    struct unclip_unet *u = NULL;
    struct edit e = {.cfg_from = "\"encoder_hid_dim\": null", .cfg_to = "\"encoder_hid_dim\": 48",
                     .hid_proj = true};
    unclip_status st = load_copy(vk, "hid-proj", &e, &u, &err);
    TU_CHECK(st == UNCLIP_OK, "hid-proj: load: %s", err.msg);
    if (st != UNCLIP_OK)
        return;
    const struct unclip_unet_config *c = unclip__unet_config(u);
    TU_CHECK(c->encoder_hid_dim == 48 && c->context_dim == 48, "hid-proj: config %d/%d",
             (int)c->encoder_hid_dim, (int)c->context_dim);
    struct unclip_st_file *g = NULL;
    st = unclip__st_open(tu_golden_path("goldens/decoder_unet.safetensors"), &g, &err);
    if (st != UNCLIP_OK) {
        unclip__unet_free(u);
        return;
    }
    const struct unclip_st_tensor *te = golden_t(g, "encoder_hidden_states");
    struct unclip_tensor sample = {0}, cls = {0}, ehs = {0}, out = {0};
    if (te && upload(vk, g, "sample", &sample) && upload(vk, g, "class_labels", &cls)) {
        int64_t d = te->shape[2], rows = te->shape[0] * te->shape[1];
        float *E = golden_f32(g, "encoder_hidden_states", NULL);
        float *W = malloc((size_t)(d * d) * sizeof(float)), *bias = malloc((size_t)d * 4);
        float *Ep = calloc((size_t)(rows * d), sizeof(float));
        hid_proj_weights(d, W, bias);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < d; i++)
                for (int64_t k = 0; k < d; k++)
                    Ep[r * d + k] += (E[r * d + i] - bias[i]) * W[i * d + k];
        unclip__tensor_new(vk, UNCLIP_DT_F32, 3, te->shape, &ehs);
        unclip__tensor_upload_f32(vk, &ehs, Ep);
        int64_t os[4] = {sample.shape[0], c->out_channels, sample.shape[2], sample.shape[3]};
        unclip__tensor_new(vk, UNCLIP_DT_F32, 4, os, &out);
        float *mask = golden_f32(g, "attention_mask", NULL);
        float *want = golden_f32(g, "t2_out", NULL);
        struct unclip_unet_inputs in = {
            .sample = &sample,
            .timestep = golden_scalar(g, "t2_timestep"),
            .encoder_hidden_states = &ehs,
            .attention_mask = mask,
            .class_labels = &cls,
        };
        double er = run_compare(vk, u, &in, &out, want, unclip__tensor_numel(&out), NULL, NULL);
        printf("  encoder_hid_proj (signed permutation + bias): rel L2 %.2e\n", er);
        TU_CHECK(er <= FP32_TOL, "hid-proj: rel L2 %.3e > %.0e", er, FP32_TOL);
        free(E);
        free(W);
        free(bias);
        free(Ep);
        free(mask);
        free(want);
    }
    unclip__tensor_free(&sample);
    unclip__tensor_free(&cls);
    unclip__tensor_free(&ehs);
    unclip__tensor_free(&out);
    unclip__st_close(g);
    unclip__unet_free(u);
}

/* ---- allocation failures ---- */

/* Forward planning under failing host / device allocations (the k-th one, k = 1, 2, ...):
 * every run fails cleanly or succeeds, and afterwards the model still gives the result it
 * gave before. A small geometry (8x8, one image) keeps the loop short. Then the same for
 * host allocations during a whole load of the super-resolution net. */
static void
test_faults(struct unclip_vk *vk, const struct unclip_model_dir *dir)
{
    struct unclip_err err = {0};
    struct unclip_unet *u = NULL;
    unclip_status st = unclip__unet_load(vk, dir, "decoder", NULL, &u, &err);
    TU_CHECK(st == UNCLIP_OK, "faults: load: %s", err.msg);
    if (st != UNCLIP_OK)
        return;
    const struct unclip_unet_config *c = unclip__unet_config(u);
    int64_t m = (int64_t)1 << c->n_downsamplers;
    int64_t ss[4] = {1, c->in_channels, m, m}, es[3] = {1, 7, c->context_dim};
    int64_t cs[2] = {1, c->time_dim}, os[4] = {1, c->out_channels, m, m};
    struct unclip_tensor x = {0}, e = {0}, cl = {0}, y = {0};
    struct tu_rng rng;
    tu_rng_seed(&rng, 7);
    float hx[4096], he[4096], hc[4096], mask[7] = {1, 1, 1, 0, 1, 0, 0};
    tu_fill_normal(&rng, hx, 4096, 1.0f);
    tu_fill_normal(&rng, he, 4096, 1.0f);
    tu_fill_normal(&rng, hc, 4096, 1.0f);
    unclip__tensor_new(vk, UNCLIP_DT_F32, 4, ss, &x);
    unclip__tensor_new(vk, UNCLIP_DT_F32, 3, es, &e);
    unclip__tensor_new(vk, UNCLIP_DT_F32, 2, cs, &cl);
    unclip__tensor_new(vk, UNCLIP_DT_F32, 4, os, &y);
    int64_t ny = unclip__tensor_numel(&y);
    if (unclip__tensor_numel(&x) > 4096 || unclip__tensor_numel(&e) > 4096 ||
        unclip__tensor_numel(&cl) > 4096 || ny > 4096) {
        TU_CHECK(0, "faults: model too big for the fixed buffers");
        goto done;
    }
    unclip__tensor_upload_f32(vk, &x, hx);
    unclip__tensor_upload_f32(vk, &e, he);
    unclip__tensor_upload_f32(vk, &cl, hc);
    struct unclip_unet_inputs in = {.sample = &x, .timestep = 321.0f,
                                    .encoder_hidden_states = &e, .attention_mask = mask,
                                    .class_labels = &cl};
    float ref[4096], got[4096];
    st = unclip__unet_forward(u, &in, &y);
    if (st == UNCLIP_OK)
        st = unclip__tensor_download_f32(vk, &y, ref);
    TU_CHECK(st == UNCLIP_OK, "faults: reference forward: %s", unclip__vk_err(vk)->msg);
    const enum unclip_fault_site sites[2] = {UNCLIP_FAULT_HOST_ALLOC, UNCLIP_FAULT_DEVICE_ALLOC};
    for (int si = 0; si < 2 && st == UNCLIP_OK; si++) {
        int k, failures = 0;
        for (k = 1; k < 2000; k++) {
            unclip__unet_release_workspace(u); /* the next forward plans and allocates */
            unclip__fault_arm(sites[si], (uint64_t)k);
            unclip_status fs = unclip__unet_forward(u, &in, &y);
            if (fs == UNCLIP_OK)
                fs = unclip__vk_finish(vk);
            uint64_t seen = unclip__fault_count(sites[si]);
            unclip__fault_arm(sites[si], 0);
            if (fs != UNCLIP_OK) {
                failures++;
                TU_CHECK(fs == UNCLIP_E_NOMEM || fs == UNCLIP_E_DEVICE_NOMEM,
                         "faults: site %d, k %d: status %d (%s)", si, k, fs,
                         unclip__vk_err(vk)->msg);
            }
            if (seen < (uint64_t)k)
                break;
        }
        printf("  forward with the k-th %s allocation failing, k = 1..%d: %d failed cleanly\n",
               si ? "device" : "host", k, failures);
        TU_CHECK(failures > 0 && k < 2000, "faults: site %d: loop did not converge (%d)", si, k);
        st = unclip__unet_forward(u, &in, &y);
        if (st == UNCLIP_OK)
            st = unclip__tensor_download_f32(vk, &y, got);
        TU_CHECK(st == UNCLIP_OK, "faults: forward after the loop: %s", unclip__vk_err(vk)->msg);
        double d = st == UNCLIP_OK ? tu_rel_l2(got, ref, ny) : 1e9;
        TU_CHECK(d <= 1e-6, "faults: result after the loop differs (rel L2 %.3e)", d);
    }

    /* Host allocation failures during a whole load. */
    {
        int k, failures = 0;
        for (k = 1; k < 20000; k++) {
            struct unclip_unet *v = NULL;
            struct unclip_err lerr = {0};
            unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, (uint64_t)k);
            unclip_status ls = unclip__unet_load(vk, dir, "super_res_last", NULL, &v, &lerr);
            uint64_t seen = unclip__fault_count(UNCLIP_FAULT_HOST_ALLOC);
            unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
            TU_CHECK((ls == UNCLIP_OK) == (v != NULL), "faults: load k %d: status %d, model %p",
                     k, ls, (void *)v);
            unclip__unet_free(v);
            if (ls != UNCLIP_OK) {
                failures++;
                TU_CHECK(ls == UNCLIP_E_NOMEM || ls == UNCLIP_E_DEVICE_NOMEM,
                         "faults: load k %d: status %d (%s)", k, ls, lerr.msg);
            }
            if (seen < (uint64_t)k)
                break;
        }
        printf("  super_res_last load with the k-th host allocation failing, k = 1..%d: %d "
               "failed cleanly\n", k, failures);
        TU_CHECK(failures > 0 && k < 20000, "faults: load loop did not converge (%d)", k);
    }
done:
    unclip__tensor_free(&x);
    unclip__tensor_free(&e);
    unclip__tensor_free(&cl);
    unclip__tensor_free(&y);
    unclip__unet_free(u);
}

/* ---- workspace planning at Karlo's sizes (no weights needed) ---- */

/* Karlo v1 alpha's decoder and super-resolution configs (unclip.md 1.5, 1.6). */
static const char *const karlo_decoder_cfg =
    "{\"_class_name\": \"UNet2DConditionModel\", \"sample_size\": 64, \"in_channels\": 3,"
    " \"out_channels\": 6, \"down_block_types\": [\"ResnetDownsampleBlock2D\","
    " \"SimpleCrossAttnDownBlock2D\", \"SimpleCrossAttnDownBlock2D\","
    " \"SimpleCrossAttnDownBlock2D\"], \"mid_block_type\": \"UNetMidBlock2DSimpleCrossAttn\","
    " \"up_block_types\": [\"SimpleCrossAttnUpBlock2D\", \"SimpleCrossAttnUpBlock2D\","
    " \"SimpleCrossAttnUpBlock2D\", \"ResnetUpsampleBlock2D\"],"
    " \"block_out_channels\": [320, 640, 960, 1280], \"layers_per_block\": 3,"
    " \"attention_head_dim\": 64, \"cross_attention_dim\": 1536,"
    " \"class_embed_type\": \"identity\","
    " \"resnet_time_scale_shift\": \"scale_shift\", \"act_fn\": \"silu\", \"norm_num_groups\": 32,"
    " \"norm_eps\": 1e-05, \"flip_sin_to_cos\": true, \"freq_shift\": 0,"
    " \"downsample_padding\": 1,"
    " \"mid_block_scale_factor\": 1, \"center_input_sample\": false,"
    " \"only_cross_attention\": false, \"dual_cross_attention\": false,"
    " \"use_linear_projection\": false, \"upcast_attention\": false, \"num_class_embeds\": null}";
static const char *const karlo_sr_cfg =
    "{\"_class_name\": \"UNet2DModel\", \"sample_size\": 256, \"in_channels\": 6,"
    " \"out_channels\": 3, \"down_block_types\": [\"ResnetDownsampleBlock2D\","
    " \"ResnetDownsampleBlock2D\", \"ResnetDownsampleBlock2D\", \"ResnetDownsampleBlock2D\"],"
    " \"up_block_types\": [\"ResnetUpsampleBlock2D\", \"ResnetUpsampleBlock2D\","
    " \"ResnetUpsampleBlock2D\", \"ResnetUpsampleBlock2D\"], \"add_attention\": false,"
    " \"block_out_channels\": [320, 640, 960, 1280], \"layers_per_block\": 3,"
    " \"attention_head_dim\": 8, \"resnet_time_scale_shift\": \"default\", \"act_fn\": \"silu\","
    " \"norm_num_groups\": 32, \"norm_eps\": 1e-05, \"flip_sin_to_cos\": true, \"freq_shift\": 0,"
    " \"downsample_padding\": 1, \"mid_block_scale_factor\": 1, \"center_input_sample\": false,"
    " \"time_embedding_type\": \"positional\"}";

static bool
plan_of(const char *text, const char *name, int32_t b, int32_t s, int32_t t,
        struct unclip_unet_config *c, struct unclip_unet_plan *p)
{
    struct unclip_err err = {0};
    struct unclip_json *j = NULL;
    unclip_status st = unclip__json_parse(text, -1, name, &j, &err);
    if (st == UNCLIP_OK)
        st = unclip__unet_config_read(j, c, &err);
    if (st == UNCLIP_OK)
        st = unclip__unet_plan(c, b, s, s, t, t > 0, p, &err);
    unclip__json_free(j);
    TU_CHECK(st == UNCLIP_OK, "%s: plan: %s", name, err.msg);
    if (st != UNCLIP_OK)
        return false;
    printf("  %s, batch %d, %dx%d: %d intermediates in %d buffers, workspace %.1f MiB (live peak "
           "%.1f MiB, largest tensor %.1f MiB)\n",
           name, (int)b, (int)s, (int)s, (int)p->n_tensors, (int)p->n_buffers,
           p->workspace_bytes / 1048576.0, p->live_peak_bytes / 1048576.0,
           p->largest_bytes / 1048576.0);
    TU_CHECK(p->workspace_bytes >= p->live_peak_bytes, "%s: packing below the live peak", name);
    TU_CHECK((double)p->workspace_bytes <= 1.35 * (double)p->live_peak_bytes,
             "%s: packed workspace %.1f MiB is more than 1.35x the live peak %.1f MiB", name,
             p->workspace_bytes / 1048576.0, p->live_peak_bytes / 1048576.0);
    return true;
}

static void
test_plan(void)
{
    struct unclip_unet_config c;
    struct unclip_unet_plan p;
    /* Decoder under classifier-free guidance: batch 2, 64x64, 4 + 77 context tokens. */
    if (plan_of(karlo_decoder_cfg, "karlo decoder", 2, 64, 81, &c, &p)) {
        /* The widest map: the first up-level-3 concat [2, 640 + 320, 64, 64]. */
        uint64_t want = 2ull * (uint64_t)(c.block_out[1] + c.block_out[0]) * 64 * 64 * 4;
        TU_CHECK(p.largest_bytes == want, "karlo decoder: largest %llu, expected %llu",
                 (unsigned long long)p.largest_bytes, (unsigned long long)want);
    }
    /* Super-resolution at 256x256, batch 1: the biggest map is the concat [1, 960, 256, 256]
     * (252 MB), above one binding's 128 MiB on lavapipe. */
    if (plan_of(karlo_sr_cfg, "karlo super-res", 1, 256, 0, &c, &p)) {
        uint64_t want = (uint64_t)(c.block_out[1] + c.block_out[0]) * 256 * 256 * 4;
        TU_CHECK(p.largest_bytes == want, "karlo super-res: largest %llu, expected %llu",
                 (unsigned long long)p.largest_bytes, (unsigned long long)want);
    }
}

int
main(void)
{
    struct unclip_err err = {0};
    struct unclip_vk *vk = NULL;
    struct unclip_vk_params vp = unclip__vk_params_default();
    unclip_status st = unclip__vk_new(&vp, &vk, &err);
    if (st != UNCLIP_OK) {
        printf("no Vulkan device: %s\n", err.msg);
        return 77; /* skipped */
    }
    struct unclip_model_dir *dir = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s", tu_golden_path("models/tiny-karlo"));
    st = unclip__model_dir_open(path, &dir, &err);
    TU_CHECK(st == UNCLIP_OK, "open %s: %s", path, err.msg);
    if (dir) {
        for (int k = 0; k < 2; k++) {
            bool fp32 = k == 0;
            test_decoder(vk, dir, fp32);
            test_sr(vk, dir, "super_res_first", "first", fp32);
            test_sr(vk, dir, "super_res_last", "last", fp32);
        }
        /* The tiny decoder's maps are too small for the head-major copy of the map's keys
         * and values (engine/ops/attention.c); forced, it must give the goldens too. */
        printf("decoder with head-major keys and values (forced):\n");
        unclip__attn_head_major_force = 1;
        test_decoder(vk, dir, false);
        unclip__attn_head_major_force = 0;
        test_faults(vk, dir);
    }
    unclip__model_dir_free(dir);
    test_plan();

    snprintf(tmpdir, sizeof tmpdir, "%s/unclip-unet-XXXXXX", g_get_tmp_dir());
    if (!g_mkdtemp(tmpdir)) {
        TU_CHECK(0, "cannot make a temporary folder");
    } else {
        test_load_errors(vk);
        test_hid_proj(vk);
        gchar *argv[] = {"rm", "-rf", tmpdir, NULL};
        g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    }
    unclip__vk_free(vk);
    return tu_summary("unet");
}
