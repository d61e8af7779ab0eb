/* bench-karlo: one denoising step of each Karlo-size stage on a Vulkan device, with the peak
 * device and host memory of the stage (a benchmark, never a pass/fail test).
 *
 * Usage: bench-karlo [--fp32] [--no-warmup] [--memory-only] [--device NAME] MODEL_DIR STAGE...
 *   --memory-only (UNets): load, plan and allocate the step, stop at its first submission
 *   and print MEMORY karlo_<stage> weights= workspace= device_peak= host_peak= (seconds
 *   instead of minutes on lavapipe for the super-resolution step).
 *   MODEL_DIR: written by `bench/karlo_model.py make` (Karlo's configs, random F16 weights,
 *   inputs_<stage>.safetensors); STAGE: prior | decoder | super_res. Run one stage per
 *   process for clean host peaks (bench/run-karlo.sh does).
 *
 * Per stage: load the component (weights F16 on the device unless --fp32), upload the step's
 * inputs, run a warm-up forward at a smaller size (compiles the shaders, which lavapipe does
 * on first use: seconds each), release its activations, then time one forward of the real
 * step: prior batch 2 (classifier-free guidance), decoder 64x64 batch 2, super-res 256x256
 * batch 1. The output is checked for NaN/Inf and compared with torch's
 * (torch_out_<stage>.safetensors, when `karlo_model.py torch` wrote one) by relative L2.
 *
 * Prints one line per stage:
 *   RESULT karlo_<stage> step_s=.. step_cpu_s=.. load_s=.. warmup_s=.. weights=<bytes>
 *          workspace=<bytes> device_peak=<bytes> host_peak=<bytes> rel_l2=<x|->
 *          nonfinite=<count> max_submission_ms=.. dtype=f16|f32
 * device_peak: the context's device-memory blocks at their highest during the stage
 * (weights + activations + temporaries); host_peak: the process's VmHWM since the stage
 * started (on lavapipe device memory is host memory, so it includes device_peak, plus the
 * weight file's mapped pages while they are read).
 */
#include "core/alloc.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/prior.h"
#include "models/unet.h"
#include "ops/ops.h"
#include "pipeline/pipeline.h"
#include "vk/vk.h"

#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

/* Wall seconds on the engine's monotonic clock (the one its run statistics use). */
static double
now_s(void)
{
    return unclip__now_ms() * 1e-3;
}

/* CPU seconds of the whole process (lavapipe's worker threads included): on a shared machine
 * a better measure of the work than wall time. */
static double
cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* Peak resident set (VmHWM) and its reset: "5" to /proc/self/clear_refs (Linux >= 4.0). */
static void
host_peak_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static unsigned long long
host_peak(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

struct bench {
    struct unclip_vk *vk;
    const char *dir;
    bool fp32, warmup, memory_only;
    struct unclip_st_file *inputs, *torch_out;
    struct unclip_tensor t[16];
    int nt;
};

/* --memory-only: stop at the first submission of the step. The UNet plans and allocates its
 * whole activation workspace before recording anything, so the device peak is then known
 * without paying for the (on lavapipe, minutes-long) computation. */
static bool
cancel_now(void *user)
{
    (void)user;
    return true;
}

static int
fail(struct bench *b, const char *what, unclip_status st)
{
    fprintf(stderr, "bench-karlo: %s failed (%d): %s\n", what, (int)st,
            unclip__vk_err(b->vk)->msg);
    return 1;
}

/* A device tensor holding input `name` of inputs_<stage>.safetensors with `n` floats, or
 * normal(0, 1) values from a fixed seed when the file or the name is absent. */
static struct unclip_tensor *
input(struct bench *b, const char *name, int32_t ndim, const int64_t *shape)
{
    struct unclip_tensor *t = &b->t[b->nt];
    if (unclip__tensor_new(b->vk, UNCLIP_DT_F32, ndim, shape, t) != UNCLIP_OK)
        return NULL;
    b->nt++;
    int64_t n = unclip__tensor_numel(t);
    float *h = malloc((size_t)n * sizeof *h);
    const struct unclip_st_tensor *s = b->inputs ? unclip__st_find(b->inputs, name) : NULL;
    if (s && s->numel == n) {
        if (unclip__st_to_f32(s, h, unclip__vk_err(b->vk)) != UNCLIP_OK) {
            free(h);
            return NULL;
        }
    } else {
        uint64_t z = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
        for (int64_t i = 0; i < n; i += 2) {
            double u[2];
            for (int k = 0; k < 2; k++) {
                z ^= z << 13, z ^= z >> 7, z ^= z << 17;
                u[k] = ((double)(z >> 11) + 0.5) / 9007199254740992.0;
            }
            double r = sqrt(-2 * log(u[0]));
            h[i] = (float)(r * cos(6.283185307179586 * u[1]));
            if (i + 1 < n)
                h[i + 1] = (float)(r * sin(6.283185307179586 * u[1]));
        }
    }
    unclip_status st = unclip__tensor_upload_f32(b->vk, t, h);
    free(h);
    return st == UNCLIP_OK ? t : NULL;
}

/* Host floats of input `name` (mask, ...) or `fill` when absent. */
static float *
host_input(struct bench *b, const char *name, int64_t n, float fill)
{
    float *h = malloc((size_t)n * sizeof *h);
    const struct unclip_st_tensor *s = b->inputs ? unclip__st_find(b->inputs, name) : NULL;
    if (s && s->numel == n && unclip__st_to_f32(s, h, unclip__vk_err(b->vk)) == UNCLIP_OK)
        return h;
    for (int64_t i = 0; i < n; i++)
        h[i] = fill;
    return h;
}

/* NaN/Inf count of `out`, and rel L2 against torch's output when there is one (-1: none). */
static int64_t
check_output(struct bench *b, const struct unclip_tensor *out, double *rel)
{
    int64_t n = unclip__tensor_numel(out), bad = 0;
    float *h = malloc((size_t)n * sizeof *h), *r = NULL;
    *rel = -1;
    if (unclip__tensor_download_f32(b->vk, out, h) != UNCLIP_OK) {
        free(h);
        return -1;
    }
    const struct unclip_st_tensor *s = b->torch_out ? unclip__st_find(b->torch_out, "out") : NULL;
    if (s && s->numel == n) {
        r = malloc((size_t)n * sizeof *r);
        if (unclip__st_to_f32(s, r, unclip__vk_err(b->vk)) != UNCLIP_OK) {
            free(r);
            r = NULL;
        }
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(h[i]))
            bad++;
        if (r) {
            double d = (double)h[i] - r[i];
            num += d * d;
            den += (double)r[i] * r[i];
        }
    }
    if (r)
        *rel = sqrt(num / (den > 0 ? den : 1));
    free(h);
    free(r);
    return bad;
}

static void
path_of(char *buf, size_t size, const char *dir, const char *comp, const char *file)
{
    if (comp)
        snprintf(buf, size, "%s/%s/%s", dir, comp, file);
    else
        snprintf(buf, size, "%s/%s", dir, file);
}

static void
open_aux(struct bench *b, const char *stage)
{
    char p[4096], name[64];
    snprintf(name, sizeof name, "inputs_%s.safetensors", stage);
    path_of(p, sizeof p, b->dir, NULL, name);
    if (unclip__st_open(p, &b->inputs, unclip__vk_err(b->vk)) != UNCLIP_OK)
        b->inputs = NULL;
    snprintf(name, sizeof name, "torch_out_%s.safetensors", stage);
    path_of(p, sizeof p, b->dir, NULL, name);
    if (unclip__st_open(p, &b->torch_out, unclip__vk_err(b->vk)) != UNCLIP_OK)
        b->torch_out = NULL;
}

static void
close_stage(struct bench *b)
{
    for (int i = 0; i < b->nt; i++)
        unclip__tensor_free(&b->t[i]);
    b->nt = 0;
    unclip__st_close(b->inputs);
    unclip__st_close(b->torch_out);
    b->inputs = b->torch_out = NULL;
}

static void
report(struct bench *b, const char *stage, double load_s, double warm_s, double step_s,
       double step_cpu, uint64_t weights, uint64_t workspace, unsigned long long hpeak,
       const struct unclip_tensor *out)
{
    double rel;
    int64_t bad = check_output(b, out, &rel);
    struct unclip_vk_stats vs;
    unclip__vk_stats(b->vk, &vs);
    char relbuf[32] = "-";
    if (rel >= 0)
        snprintf(relbuf, sizeof relbuf, "%.3g", rel);
    printf("RESULT karlo_%s step_s=%.2f step_cpu_s=%.2f load_s=%.2f warmup_s=%.2f weights=%llu "
           "workspace=%llu "
           "device_peak=%llu host_peak=%llu rel_l2=%s nonfinite=%lld max_submission_ms=%.0f "
           "dtype=%s\n",
           stage, step_s, step_cpu, load_s, warm_s, (unsigned long long)weights,
           (unsigned long long)workspace, (unsigned long long)unclip__vk_mem_peak(b->vk), hpeak,
           relbuf, (long long)bad, vs.max_submission_ms, b->fp32 ? "f32" : "f16");
    fflush(stdout);
}

static int
run_prior(struct bench *b)
{
    struct unclip_err *err = unclip__vk_err(b->vk);
    char cfg[4096], wts[4096];
    path_of(cfg, sizeof cfg, b->dir, "prior", "config.json");
    path_of(wts, sizeof wts, b->dir, "prior", "diffusion_pytorch_model.safetensors");
    struct unclip_prior *m = NULL;
    double t0 = now_s();
    unclip_status st = unclip__prior_load_files(b->vk, cfg, "prior/config.json", wts, NULL,
                                                &(struct unclip_prior_opts){.fp32 = b->fp32},
                                                &m, err);
    if (st != UNCLIP_OK)
        return fail(b, "prior load", st);
    double load_s = now_s() - t0;
    const struct unclip_prior_config *c = unclip__prior_config(m);
    int64_t E = c->embedding_dim, T = c->num_embeddings, P = c->proj_dim, C = c->clip_dim;
    const int64_t sx[2] = {2, E}, sp[2] = {2, P}, se[3] = {2, T, E}, so[2] = {2, C};
    struct unclip_tensor *x = input(b, "x", 2, sx), *proj = input(b, "proj", 2, sp),
                         *enc = input(b, "enc", 3, se), *out = x ? &b->t[b->nt] : NULL;
    if (!x || !proj || !enc || unclip__tensor_new(b->vk, UNCLIP_DT_F32, 2, so, out))
        return fail(b, "prior inputs", UNCLIP_E_NOMEM);
    b->nt++;
    float *mf = host_input(b, "mask", 2 * T, 1.0f);
    float *tt = host_input(b, "t", 1, 999.0f);
    uint8_t *mask = malloc((size_t)(2 * T));
    for (int64_t i = 0; i < 2 * T; i++)
        mask[i] = mf[i] > 0.5f;
    double warm_s = 0;
    if (b->warmup) {
        /* batch 2 again: the prior is small enough, and the same shapes pick the same
         * shader variants */
        t0 = now_s();
        st = unclip__prior_forward(m, x, tt[0], proj, enc, mask, out);
        if (st == UNCLIP_OK)
            st = unclip__vk_finish(b->vk);
        if (st != UNCLIP_OK)
            return fail(b, "prior warm-up", st);
        warm_s = now_s() - t0;
        unclip__prior_release_scratch(m);
    }
    unclip__vk_mem_reset_peak(b->vk);
    double c0 = cpu_s();
    t0 = now_s();
    st = unclip__prior_forward(m, x, tt[0], proj, enc, mask, out);
    if (st == UNCLIP_OK)
        st = unclip__vk_finish(b->vk);
    if (st != UNCLIP_OK)
        return fail(b, "prior step", st);
    double step_s = now_s() - t0, step_cpu = cpu_s() - c0;
    report(b, "prior", load_s, warm_s, step_s, step_cpu, unclip__prior_weight_bytes(m), 0,
           host_peak(), out);
    free(mf);
    free(tt);
    free(mask);
    close_stage(b);
    unclip__prior_free(m);
    return 0;
}

static int
run_unet(struct bench *b, bool decoder)
{
    struct unclip_err *err = unclip__vk_err(b->vk);
    const char *comp = decoder ? "decoder" : "super_res_first";
    const char *stage = decoder ? "decoder" : "super_res";
    char cfg[4096], wts[4096], cname[64];
    path_of(cfg, sizeof cfg, b->dir, comp, "config.json");
    path_of(wts, sizeof wts, b->dir, comp, "diffusion_pytorch_model.safetensors");
    snprintf(cname, sizeof cname, "%s/config.json", comp);
    struct unclip_unet *u = NULL;
    double t0 = now_s();
    unclip_status st = unclip__unet_load_files(b->vk, cfg, cname, wts, NULL,
                                               &(struct unclip_unet_opts){.fp32 = b->fp32}, &u,
                                               err);
    if (st != UNCLIP_OK)
        return fail(b, "unet load", st);
    double load_s = now_s() - t0;
    const struct unclip_unet_config *c = unclip__unet_config(u);
    int64_t B = decoder ? 2 : 1, S = decoder ? 64 : 256, T = 81;
    const int64_t ss[4] = {B, c->in_channels, S, S}, so[4] = {B, c->out_channels, S, S};
    const int64_t se[3] = {B, T, c->context_dim > 0 ? c->context_dim : 1},
                  sl[2] = {B, c->time_dim};
    struct unclip_tensor *sample = input(b, "sample", 4, ss);
    struct unclip_tensor *enc = decoder ? input(b, "enc", 3, se) : NULL;
    struct unclip_tensor *cls = decoder ? input(b, "class_labels", 2, sl) : NULL;
    float *mask = decoder ? host_input(b, "mask", B * T, 1.0f) : NULL;
    float *tt = host_input(b, "t", 1, 999.0f);
    struct unclip_tensor *out = &b->t[b->nt];
    if (!sample || (decoder && (!enc || !cls)) ||
        unclip__tensor_new(b->vk, UNCLIP_DT_F32, 4, so, out))
        return fail(b, "unet inputs", UNCLIP_E_NOMEM);
    b->nt++;
    struct unclip_unet_inputs in = {
        .sample = sample, .timestep = tt[0], .encoder_hidden_states = enc,
        .attention_mask = mask, .class_labels = cls,
    };
    double warm_s = 0;
    if (b->warmup) {
        /* A quarter of the size (a sixteenth of the work): compiles the same shader
         * variants (lavapipe compiles on first use) without paying for a second full step. */
        int64_t ws = S / 4, sws[4] = {B, c->in_channels, ws, ws},
                swo[4] = {B, c->out_channels, ws, ws};
        struct unclip_tensor wsm = {0}, wout = {0};
        t0 = now_s();
        st = unclip__tensor_new(b->vk, UNCLIP_DT_F32, 4, sws, &wsm);
        if (st == UNCLIP_OK)
            st = unclip__tensor_new(b->vk, UNCLIP_DT_F32, 4, swo, &wout);
        if (st == UNCLIP_OK) {
            struct unclip_copy_desc d = {.shape = {1, 1, 1, unclip__tensor_numel(&wsm)},
                                         .src_stride = {0, 0, 0, 1}, .dst_stride = {0, 0, 0, 1}};
            st = unclip__op_copy(b->vk, sample, &wsm, &d);
        }
        struct unclip_unet_inputs win = in;
        win.sample = &wsm;
        if (st == UNCLIP_OK)
            st = unclip__unet_forward(u, &win, &wout);
        if (st == UNCLIP_OK)
            st = unclip__vk_finish(b->vk);
        unclip__tensor_free(&wsm);
        unclip__tensor_free(&wout);
        if (st != UNCLIP_OK)
            return fail(b, "unet warm-up", st);
        warm_s = now_s() - t0;
        unclip__unet_release_workspace(u);
    }
    unclip__vk_mem_reset_peak(b->vk);
    double c0 = cpu_s();
    t0 = now_s();
    if (b->memory_only)
        unclip__vk_set_cancel(b->vk, cancel_now, NULL);
    st = unclip__unet_forward(u, &in, out);
    if (st == UNCLIP_OK)
        st = unclip__vk_finish(b->vk);
    if (b->memory_only) {
        unclip__vk_set_cancel(b->vk, NULL, NULL);
        if (st == UNCLIP_E_CANCELLED) {
            printf("MEMORY karlo_%s weights=%llu workspace=%llu device_peak=%llu host_peak=%llu "
                   "load_s=%.2f dtype=%s (step cancelled at its first submission)\n",
                   stage, (unsigned long long)unclip__unet_weight_bytes(u),
                   (unsigned long long)unclip__unet_workspace_bytes(u),
                   (unsigned long long)unclip__vk_mem_peak(b->vk), host_peak(), load_s,
                   b->fp32 ? "f32" : "f16");
            fflush(stdout);
            free(mask);
            free(tt);
            close_stage(b);
            unclip__unet_free(u);
            return 0;
        }
    }
    if (st != UNCLIP_OK)
        return fail(b, "unet step", st);
    double step_s = now_s() - t0, step_cpu = cpu_s() - c0;
    report(b, stage, load_s, warm_s, step_s, step_cpu, unclip__unet_weight_bytes(u),
           unclip__unet_workspace_bytes(u), host_peak(), out);
    free(mask);
    free(tt);
    close_stage(b);
    unclip__unet_free(u);
    return 0;
}

int
main(int argc, char **argv)
{
    struct bench b = {.warmup = true};
    struct unclip_vk_params p = unclip__vk_params_default();
    /* A loaded shared machine can stretch one bounded submission far beyond its usual
     * fraction of a second: wait long rather than report a hang that is not one. */
    p.fence_timeout_ms = 600000;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--fp32"))
            b.fp32 = true;
        else if (!strcmp(argv[i], "--no-warmup"))
            b.warmup = false;
        else if (!strcmp(argv[i], "--memory-only"))
            b.memory_only = true, b.warmup = false;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc)
            p.device_name = argv[++i];
        else {
            fprintf(stderr, "bench-karlo: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (argc - i < 2) {
        fprintf(stderr, "usage: bench-karlo [--fp32] [--no-warmup] [--memory-only] "
                        "[--device NAME] MODEL_DIR prior|decoder|super_res...\n");
        return 2;
    }
    b.dir = argv[i++];
    struct unclip_err err = {0};
    unclip_status st = unclip__vk_new(&p, &b.vk, &err);
    if (st != UNCLIP_OK) {
        fprintf(stderr, "bench-karlo: no Vulkan device: %s\n", err.msg);
        return 1;
    }
    printf("DEVICE %s\n", unclip__vk_info(b.vk)->name);
    int rc = 0;
    for (; i < argc && rc == 0; i++) {
        const char *stage = argv[i];
        host_peak_reset();
        unclip__vk_mem_reset_peak(b.vk);
        open_aux(&b, stage);
        if (!strcmp(stage, "prior"))
            rc = run_prior(&b);
        else if (!strcmp(stage, "decoder"))
            rc = run_unet(&b, true);
        else if (!strcmp(stage, "super_res"))
            rc = run_unet(&b, false);
        else {
            fprintf(stderr, "bench-karlo: unknown stage %s\n", stage);
            rc = 2;
        }
        if (rc)
            close_stage(&b);
    }
    unclip__vk_free(b.vk);
    return rc;
}
