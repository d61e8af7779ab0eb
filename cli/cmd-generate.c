/* unclip generate: text to image. Also the shared parts of every picture command (gen.h). */
#include "cli.h"
#include "gen.h"
#include "png-io.h"

#include "core/dtype.h"
#include "io/safetensors.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- options ---- */

void
gen_opts_init(struct gen_opts *o, const char *cmd)
{
    struct unclip_run_params d = unclip_run_params_default();
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->count = 1;
    o->prior_steps = d.prior_steps;
    o->decoder_steps = d.decoder_steps;
    o->sr_steps = d.sr_steps;
    o->prior_guidance = d.prior_guidance;
    o->decoder_guidance = d.decoder_guidance;
}

void
gen_opts_clear(struct gen_opts *o)
{
    g_free(o->model);
    g_free(o->output);
    g_free(o->dump);
    g_free(o->device);
    g_free(o->seed);
    o->model = o->output = o->dump = o->device = o->seed = NULL;
}

void
gen_add_entries(GOptionContext *oc, struct gen_opts *o, bool with_count, bool with_prior)
{
    GOptionEntry common[] = {
        {"model", 0, 0, G_OPTION_ARG_FILENAME, &o->model,
         "model folder (diffusers layout, e.g. karlo-v1-alpha)", "DIR"},
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &o->output,
         "PNG file to write (several pictures: see below)", "FILE"},
        {"seed", 0, 0, G_OPTION_ARG_STRING, &o->seed,
         "seed of the generator, as torch.Generator().manual_seed(N) (default: random, "
         "printed)", "N"},
        {"decoder-steps", 0, 0, G_OPTION_ARG_INT, &o->decoder_steps,
         "decoder denoising steps (default 25)", "N"},
        {"sr-steps", 0, 0, G_OPTION_ARG_INT, &o->sr_steps,
         "super-resolution steps (default 7)", "N"},
        {"decoder-guidance", 0, 0, G_OPTION_ARG_DOUBLE, &o->decoder_guidance,
         "decoder classifier-free guidance scale (default 8.0)", "G"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &o->device,
         "Vulkan device: index or part of its name (see 'unclip devices')", "D"},
        {"fp32", 0, 0, G_OPTION_ARG_NONE, &o->fp32,
         "keep weights in fp32 on the device (default fp16; fp32 matches diffusers to "
         "rounding)", NULL},
        {"decoder-only", 0, 0, G_OPTION_ARG_NONE, &o->decoder_only,
         "stop after the decoder and write its own small pictures (its sample size, e.g. "
         "64x64 for Karlo): a quick preview; --sr-steps is unused and super_res_* are not "
         "needed", NULL},
        {"dump", 0, 0, G_OPTION_ARG_FILENAME, &o->dump,
         "write every stage's tensors as safetensors into DIR (the goldens' names)", "DIR"},
        {"stats", 0, 0, G_OPTION_ARG_NONE, &o->stats,
         "print time and peak memory per stage", NULL},
        {"quiet", 'q', 0, G_OPTION_ARG_NONE, &o->quiet, "print nothing on success", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionEntry count[] = {
        {"count", 'n', 0, G_OPTION_ARG_INT, &o->count, "pictures to make (default 1)", "K"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionEntry prior[] = {
        {"prior-steps", 0, 0, G_OPTION_ARG_INT, &o->prior_steps,
         "prior denoising steps (default 25)", "N"},
        {"prior-guidance", 0, 0, G_OPTION_ARG_DOUBLE, &o->prior_guidance,
         "prior classifier-free guidance scale (default 4.0)", "G"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    g_option_context_add_main_entries(oc, common, NULL);
    if (with_count)
        g_option_context_add_main_entries(oc, count, NULL);
    if (with_prior)
        g_option_context_add_main_entries(oc, prior, NULL);
}

int
gen_parse(GOptionContext *oc, struct gen_opts *o, int *argc, char ***argv)
{
    GError *ge = NULL;
    /* --help is handled here rather than by GLib (which would exit the process). */
    for (int i = 1; i < *argc; i++)
        if (!strcmp((*argv)[i], "--help") || !strcmp((*argv)[i], "-h")) {
            gchar *help = g_option_context_get_help(oc, TRUE, NULL);
            fputs(help, stdout);
            g_free(help);
            return -1;
        }
    g_option_context_set_help_enabled(oc, FALSE);
    if (!g_option_context_parse(oc, argc, argv, &ge)) {
        fprintf(stderr, "unclip %s: %s (see 'unclip %s --help')\n", o->cmd, ge->message,
                o->cmd);
        g_clear_error(&ge);
        return 2;
    }
    const char *missing = !o->model ? "--model DIR" : !o->output ? "-o FILE" : NULL;
    if (missing) {
        fprintf(stderr, "unclip %s: %s is required (see 'unclip %s --help')\n", o->cmd, missing,
                o->cmd);
        return 2;
    }
    if (o->count < 1 || o->count > 64) {
        fprintf(stderr, "unclip %s: -n must be in 1..64\n", o->cmd);
        return 2;
    }
    if (o->seed) {
        guint64 v;
        if (!g_ascii_string_to_unsigned(o->seed, 10, 0, G_MAXUINT64, &v, NULL)) {
            fprintf(stderr, "unclip %s: --seed wants a non-negative integer, not '%s'\n",
                    o->cmd, o->seed);
            return 2;
        }
    }
    return 0;
}

int
gen_open(const struct gen_opts *o, struct unclip_ctx **ctx, struct unclip_model **model)
{
    struct unclip_ctx_params p = unclip_ctx_params_default();
    p.fp32_weights = o->fp32;
    if (o->device) {
        char *end;
        long idx = strtol(o->device, &end, 10);
        if (*o->device && *end == '\0')
            p.device_index = (int32_t)idx;
        else
            p.device_name = o->device;
    }
    char err[1024];
    if (unclip_ctx_new(&p, ctx, err, sizeof err) != UNCLIP_OK) {
        fprintf(stderr, "unclip %s: %s\n", o->cmd, err);
        return 1;
    }
    if (unclip_model_open(*ctx, o->model, model) != UNCLIP_OK) {
        fprintf(stderr, "unclip %s: %s\n", o->cmd, unclip_ctx_last_error(*ctx));
        unclip_ctx_free(*ctx);
        *ctx = NULL;
        return 1;
    }
    return 0;
}

/* ---- progress and Ctrl-C ---- */

static volatile sig_atomic_t interrupted;
static bool progress_tty, progress_open;

static void
on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static bool
cancel_cb(void *user)
{
    (void)user;
    return interrupted != 0;
}

static void
progress_cb(const struct unclip_progress *p, void *user)
{
    const struct gen_opts *o = user;
    if (o->quiet)
        return;
    if (progress_tty) {
        char bar[31];
        int fill = (int)(p->fraction * 30.0 + 0.5);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r[%s] %3.0f%%  %d/%d %-16s %3d/%-3d", bar, p->fraction * 100.0,
                (int)p->stage_index + 1, (int)p->n_stages, p->stage, (int)p->step,
                (int)p->n_steps);
        progress_open = true;
    } else if (p->step == 0) {
        fprintf(stderr, "%s: stage %d/%d %s (%d steps)\n", o->cmd, (int)p->stage_index + 1,
                (int)p->n_stages, p->stage, (int)p->n_steps);
    } else {
        fprintf(stderr, "%s: %s step %d/%d (%.0f%% of the run)\n", o->cmd, p->stage,
                (int)p->step, (int)p->n_steps, p->fraction * 100.0);
    }
    fflush(stderr);
}

struct unclip_run_params
gen_params(struct gen_opts *o)
{
    struct unclip_run_params p = unclip_run_params_default();
    guint64 seed = 0;
    if (o->seed) {
        g_ascii_string_to_unsigned(o->seed, 10, 0, G_MAXUINT64, &seed, NULL);
    } else {
        seed = g_random_int();
        o->seed = g_strdup_printf("%" G_GUINT64_FORMAT, seed);
        if (!o->quiet)
            printf("seed %s\n", o->seed);
    }
    p.seed = seed;
    p.num_images = o->count;
    p.prior_steps = o->prior_steps;
    p.decoder_steps = o->decoder_steps;
    p.sr_steps = o->sr_steps;
    p.prior_guidance = (float)o->prior_guidance;
    p.decoder_guidance = (float)o->decoder_guidance;
    p.cancel_cb = cancel_cb;
    p.progress_cb = progress_cb;
    p.user_data = o;
    p.dump_dir = o->dump;
    p.decoder_only = o->decoder_only;
    return p;
}

void
gen_run_begin(struct gen_opts *o)
{
    (void)o;
    progress_tty = isatty(STDERR_FILENO);
    progress_open = false;
    interrupted = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

int
gen_run_end(struct gen_opts *o, struct unclip_ctx *ctx, unclip_status st)
{
    signal(SIGINT, SIG_DFL);
    if (progress_open)
        fputc('\n', stderr);
    progress_open = false;
    if (st == UNCLIP_OK)
        return 0;
    if (st == UNCLIP_E_CANCELLED)
        fprintf(stderr, "unclip %s: cancelled; nothing was written\n", o->cmd);
    else
        fprintf(stderr, "unclip %s: %s\n", o->cmd, unclip_ctx_last_error(ctx));
    return 1;
}

/* ---- sources ---- */

static bool
read_embedding(const struct gen_opts *o, const char *path, float **out, int32_t *dim)
{
    struct unclip_err e = {0};
    struct unclip_st_file *f = NULL;
    if (unclip__st_open(path, &f, &e) != UNCLIP_OK) {
        fprintf(stderr, "unclip %s: %s\n", o->cmd, e.msg);
        return false;
    }
    const struct unclip_st_tensor *found = NULL;
    int n_found = 0;
    for (int32_t i = 0; i < unclip__st_count(f); i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        if (g_str_has_suffix(t->name, "image_embeds") ||
            g_str_has_suffix(t->name, "image_embeddings")) {
            found = t;
            n_found++;
        }
    }
    bool ok = false;
    if (n_found != 1)
        fprintf(stderr, "unclip %s: %s: expected exactly one tensor named *image_embeds or "
                        "*image_embeddings, found %d\n", o->cmd, path, n_found);
    else if (!(found->ndim == 1 || (found->ndim == 2 && found->shape[0] == 1)) ||
             found->numel < 1 || found->dtype == UNCLIP_DT_I64 || found->dtype == UNCLIP_DT_I32 ||
             found->dtype == UNCLIP_DT_U8 || found->dtype == UNCLIP_DT_BOOL)
        fprintf(stderr, "unclip %s: %s: '%s' is not one float embedding ([E] or [1, E])\n",
                o->cmd, path, found->name);
    else {
        *out = g_new0(float, found->numel);
        if (unclip__st_to_f32(found, *out, &e) != UNCLIP_OK) {
            fprintf(stderr, "unclip %s: %s\n", o->cmd, e.msg);
            g_free(*out);
            *out = NULL;
        } else {
            *dim = (int32_t)found->numel;
            ok = true;
        }
    }
    unclip__st_close(f);
    return ok;
}

bool
gen_source(const struct gen_opts *o, const char *arg, struct unclip_source *src,
           struct gen_source_store *store)
{
    memset(src, 0, sizeof *src);
    memset(store, 0, sizeof *store);
    if (g_str_has_prefix(arg, "text:")) {
        src->kind = UNCLIP_SOURCE_PROMPT;
        src->prompt = arg + 5;
        return true;
    }
    if (g_str_has_prefix(arg, "embedding:")) {
        src->kind = UNCLIP_SOURCE_EMBEDDING;
        if (!read_embedding(o, arg + 10, &store->embedding, &src->embed_dim))
            return false;
        src->embedding = store->embedding;
        return true;
    }
    char err[1024];
    if (!cli_png_read(arg, &store->image, err, sizeof err)) {
        fprintf(stderr, "unclip %s: %s\n", o->cmd, err);
        return false;
    }
    src->kind = UNCLIP_SOURCE_IMAGE;
    src->image = &store->image;
    return true;
}

void
gen_source_clear(struct gen_source_store *store)
{
    free(store->image.pixels);
    g_free(store->embedding);
    memset(store, 0, sizeof *store);
}

/* ---- output ---- */

/* True when `s` holds exactly one integer conversion %[0]*[width]d (and no other %, except
 * %%), so it can be used as a printf format with one int. */
static bool
is_index_pattern(const char *s)
{
    int conv = 0;
    for (const char *p = s; *p; p++) {
        if (*p != '%')
            continue;
        if (p[1] == '%') {
            p++;
            continue;
        }
        const char *q = p + 1;
        while (*q >= '0' && *q <= '9')
            q++;
        if (*q != 'd' || q - p > 4)
            return false;
        conv++;
        p = q;
    }
    return conv == 1;
}

static char *
output_name(const char *out, int32_t k, int32_t n)
{
    if (is_index_pattern(out)) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        return g_strdup_printf(out, (int)k);
#pragma GCC diagnostic pop
    }
    if (n == 1 || k == 0)
        return g_strdup(out);
    const char *slash = strrchr(out, '/');
    const char *dot = strrchr(out, '.');
    if (!dot || (slash && dot < slash) || dot == (slash ? slash + 1 : out))
        return g_strdup_printf("%s-%d", out, (int)k);
    return g_strdup_printf("%.*s-%d%s", (int)(dot - out), out, (int)k, dot);
}

int
gen_write(const struct gen_opts *o, const struct unclip_result *res)
{
    for (int32_t k = 0; k < res->n_images; k++) {
        char *name = output_name(o->output, k, res->n_images);
        char err[1024];
        if (!cli_png_write(name, &res->images[k], err, sizeof err)) {
            fprintf(stderr, "unclip %s: %s\n", o->cmd, err);
            g_free(name);
            return 1;
        }
        if (!o->quiet)
            printf("wrote %s (%dx%d)\n", name, (int)res->images[k].width,
                   (int)res->images[k].height);
        g_free(name);
    }
    if (!o->quiet && o->dump)
        printf("dumped the run's tensors into %s/\n", o->dump);
    return 0;
}

void
gen_print_stats(const struct unclip_run_stats *s)
{
    printf("%-16s %5s %10s %10s %10s %12s %12s\n", "stage", "steps", "load ms", "total ms",
           "weights", "device peak", "host peak");
    for (int32_t i = 0; i < s->n_stages; i++) {
        const struct unclip_stage_stats *t = &s->stages[i];
        printf("%-16s %5d %10.1f %10.1f %7.1f MiB %8.1f MiB %8.1f MiB\n", t->name,
               (int)t->steps, t->load_ms, t->total_ms, t->weight_bytes / 1048576.0,
               t->device_peak_bytes / 1048576.0, t->host_peak_bytes / 1048576.0);
    }
    printf("%-16s %5s %10s %10.1f %10s %8.1f MiB %8.1f MiB\n", "run", "", "", s->total_ms, "",
           s->device_peak_bytes / 1048576.0, s->host_peak_bytes / 1048576.0);
}

/* ---- generate ---- */

int
cli_cmd_generate(int argc, char **argv)
{
    struct gen_opts o;
    gen_opts_init(&o, "generate");
    GOptionContext *oc = g_option_context_new("PROMPT - text to image");
    g_option_context_set_summary(
        oc, "Makes pictures from a prompt as diffusers' UnCLIPPipeline does: the same seed gives "
            "the same picture.");
    g_option_context_set_description(
        oc, "With -n K > 1 the pictures are one batch (num_images_per_prompt = K) and are\n"
            "written to out.png, out-1.png, ... or, when -o holds a %d conversion such as\n"
            "'out-%02d.png', to out-00.png, out-01.png, ...\n");
    gen_add_entries(oc, &o, true, true);
    int rc = gen_parse(oc, &o, &argc, &argv);
    if (rc == 0 && argc != 2) {
        fprintf(stderr, "unclip generate: give exactly one PROMPT (quote it); see 'unclip "
                        "generate --help'\n");
        rc = 2;
    }
    struct unclip_ctx *ctx = NULL;
    struct unclip_model *model = NULL;
    if (rc == 0)
        rc = gen_open(&o, &ctx, &model);
    if (rc == 0) {
        struct unclip_run_params p = gen_params(&o);
        struct unclip_result res = {0};
        gen_run_begin(&o);
        unclip_status st = unclip_run_text_to_image(model, argv[1], &p, &res);
        rc = gen_run_end(&o, ctx, st);
        if (rc == 0)
            rc = gen_write(&o, &res);
        if (rc == 0 && o.stats)
            gen_print_stats(&res.stats);
        unclip_result_clear(&res);
    }
    unclip_model_free(model);
    unclip_ctx_free(ctx);
    g_option_context_free(oc);
    gen_opts_clear(&o);
    return rc < 0 ? 0 : rc;
}
