/* unclip download PLAN: fetches a model from the Hugging Face hub (or a mirror) into a model
 * folder, resumable and verified (engine/io/download.h).
 * unclip find-model [NAME_OR_PATH]: prints the folder the model search picks, or where it
 * looked (engine/io/model-search.h). */
#include "cli.h"

#include "io/download.h"
#include "io/model-search.h"

#include "core/alloc.h"
#include "pipeline/pipeline.h" /* unclip__now_ms */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- download ---- */

struct ui {
    bool tty, quiet;
    double last_line;     /* when the last non-tty progress line was printed */
    int last_len;         /* length of the tty status line */
};

static double
mono_s(void)
{
    return unclip__now_ms() * 1e-3; /* the engine's monotonic clock */
}

static const char *
bytes_str(double b, char *buf, size_t n)
{
    if (b >= 1e9)
        snprintf(buf, n, "%.2f GB", b / 1e9);
    else if (b >= 1e6)
        snprintf(buf, n, "%.1f MB", b / 1e6);
    else if (b >= 1e3)
        snprintf(buf, n, "%.0f kB", b / 1e3);
    else
        snprintf(buf, n, "%.0f B", b);
    return buf;
}

static const char *
time_str(double s, char *buf, size_t n)
{
    if (s < 0)
        snprintf(buf, n, "?");
    else if (s < 60)
        snprintf(buf, n, "%.0f s", s);
    else if (s < 3600)
        snprintf(buf, n, "%d min %02d s", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, n, "%d h %02d min", (int)s / 3600, ((int)s % 3600) / 60);
    return buf;
}

static void
clear_status(struct ui *u)
{
    if (u->tty && u->last_len) {
        fprintf(stderr, "\r%*s\r", u->last_len, "");
        u->last_len = 0;
    }
}

static void
on_note(const char *msg, void *user)
{
    struct ui *u = user;
    clear_status(u);
    if (!u->quiet)
        fprintf(stderr, "%s\n", msg);
}

static void
on_progress(const struct unclip_dl_progress *p, void *user)
{
    struct ui *u = user;
    if (u->quiet)
        return;
    char a[32], b[32], c[32], d[32], e[32], f[32];
    if (p->event == UNCLIP_DL_EV_FILE_DONE || p->event == UNCLIP_DL_EV_FILE_KEPT) {
        clear_status(u);
        fprintf(stderr, "[%2d/%d] %s: %s %s\n", p->index + 1, p->count, p->file,
                bytes_str((double)p->file_total, a, sizeof a),
                p->event == UNCLIP_DL_EV_FILE_KEPT ? "already there, verified" : "verified");
        return;
    }
    double now = mono_s();
    if (!u->tty && p->event == UNCLIP_DL_EV_PROGRESS && now - u->last_line < 5.0)
        return;
    u->last_line = now;
    char line[320];
    int len = snprintf(line, sizeof line, "[%2d/%d] %s %s/%s  %s/s  all %s/%s  %s left",
                       p->index + 1, p->count, p->file,
                       bytes_str((double)p->file_done, a, sizeof a),
                       bytes_str((double)p->file_total, b, sizeof b),
                       bytes_str(p->bytes_per_s, c, sizeof c),
                       bytes_str((double)p->done, d, sizeof d),
                       bytes_str((double)p->total, e, sizeof e), time_str(p->eta_s, f, sizeof f));
    if (u->tty) {
        fprintf(stderr, "\r%s", line);
        if (len < u->last_len)
            fprintf(stderr, "%*s", u->last_len - len, "");
        u->last_len = len;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static void
download_usage(FILE *f)
{
    fprintf(f,
            "usage: unclip download MODEL [options]\n"
            "\n"
            "Fetches the files a model needs from the Hugging Face hub into a model folder.\n"
            "Interrupted downloads resume where they stopped; every file is checked against\n"
            "the hash the hub publishes before it gets its final name.\n"
            "\n"
            "models:\n");
    for (int32_t i = 0; unclip__dl_plan_at(i); i++) {
        const struct unclip_dl_plan *p = unclip__dl_plan_at(i);
        fprintf(f, "  %-10s %s, from", p->name, p->folder);
        const char *seen[8] = {0};
        int ns = 0;
        for (int32_t k = 0; k < p->n_items; k++) {
            bool dup = false;
            for (int s = 0; s < ns; s++)
                dup |= !strcmp(seen[s], p->items[k].repo);
            if (!dup && ns < 8) {
                seen[ns++] = p->items[k].repo;
                fprintf(f, "%s\n             %s", ns > 1 ? "," : "", p->items[k].repo);
            }
        }
        fprintf(f, "\n");
    }
    fprintf(f,
            "\n"
            "options:\n"
            "  --dest DIR        model folder to fill (default: GIMP's models folder,\n"
            "                    ~/.config/GIMP/3.0/unclip/models/<name>, where the plug-in\n"
            "                    and 'unclip find-model <name>' look)\n"
            "  --mirror URL      server to fetch from (default $UNCLIP_HF_ENDPOINT, else\n"
            "                    $HF_ENDPOINT, else " UNCLIP_HF_DEFAULT_ENDPOINT ")\n"
            "  --only GROUP      text-to-image (no image encoder) or image-encoder (variations)\n"
            "  --attempts N      tries per file before giving up (default 6)\n"
            "  --retry-delay MS  first wait between tries, doubled each time (default 1000)\n"
            "  --no-hub-cache    fetch everything, even files the Hugging Face hub cache has\n"
            "                    ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub)\n"
            "  --no-space-check  start even when the disk looks too full\n"
            "  -q, --quiet       print errors only\n");
}

int
cli_cmd_download(int argc, char **argv)
{
    const char *model = NULL, *dest = NULL;
    struct unclip_dl_opts o = unclip__dl_opts_default();
    struct ui u = {.tty = isatty(2) != 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            download_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--dest") && v) {
            dest = argv[++i];
        } else if (!strcmp(a, "--mirror") && v) {
            o.endpoint = argv[++i];
        } else if (!strcmp(a, "--only") && v) {
            o.only_group = argv[++i];
            if (strcmp(o.only_group, "text-to-image") && strcmp(o.only_group, "image-encoder")) {
                fprintf(stderr, "unclip download: --only takes text-to-image or image-encoder\n");
                return 2;
            }
        } else if (!strcmp(a, "--attempts") && v) {
            o.attempts = atoi(argv[++i]);
        } else if (!strcmp(a, "--retry-delay") && v) {
            o.retry_delay_ms = atoi(argv[++i]);
        } else if (!strcmp(a, "--no-hub-cache")) {
            o.use_hub_cache = false;
        } else if (!strcmp(a, "--no-space-check")) {
            o.check_space = false;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            u.quiet = true;
        } else if (a[0] == '-') {
            fprintf(stderr, "unclip download: unknown or incomplete option '%s'\n", a);
            download_usage(stderr);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "unclip download: one model at a time ('%s')\n", a);
            return 2;
        }
    }
    if (!model) {
        download_usage(stderr);
        return 2;
    }
    const struct unclip_dl_plan *plan = unclip__dl_plan(model);
    if (!plan) {
        fprintf(stderr, "unclip download: no model called '%s' (known: ", model);
        for (int32_t i = 0; unclip__dl_plan_at(i); i++)
            fprintf(stderr, "%s%s", i ? ", " : "", unclip__dl_plan_at(i)->name);
        fprintf(stderr, ")\n");
        return 2;
    }
    char *dest_owned = NULL;
    if (!dest) {
        char *models = unclip__gimp_models_dir(NULL);
        if (!models) {
            fprintf(stderr, "unclip download: no home folder known: give --dest\n");
            return 2;
        }
        size_t n = strlen(models) + strlen(plan->folder) + 2;
        dest_owned = malloc(n);
        snprintf(dest_owned, n, "%s/%s", models, plan->folder);
        unclip__free(models);
        dest = dest_owned;
    }
    o.progress = on_progress;
    o.note = on_note;
    o.user = &u;
    if (!u.quiet)
        fprintf(stderr, "downloading %s into %s\n", plan->name, dest);
    struct unclip_err err = {0};
    double t0 = mono_s();
    unclip_status st = unclip__dl_run(plan, dest, &o, &err);
    clear_status(&u);
    if (st != UNCLIP_OK) {
        fprintf(stderr, "unclip download: %s\n", err.msg);
        if (st != UNCLIP_E_MODEL && st != UNCLIP_E_ARG)
            fprintf(stderr, "(run the same command again to resume)\n");
        free(dest_owned);
        return 1;
    }
    if (!u.quiet) {
        char t[32];
        printf("%s is ready in %s (%s)\n", plan->folder, dest,
               time_str(mono_s() - t0, t, sizeof t));
    }
    free(dest_owned);
    return 0;
}

/* ---- find-model ---- */

static void
find_usage(FILE *f)
{
    fprintf(f,
            "usage: unclip find-model [--need WHAT] [--gimp-dir DIR] [NAME_OR_PATH]\n"
            "\n"
            "Prints the model folder the engine would use: NAME_OR_PATH when it is a folder,\n"
            "else $UNCLIP_MODEL when no name is given, else the name looked up in GIMP's\n"
            "models folder (<gimp-dir>/unclip/models), the Hugging Face hub cache\n"
            "($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub) and, for the default\n"
            "model " UNCLIP_MODEL_DEFAULT_NAME ", the copy shipped with the program.\n"
            "Names: karlo, karlo-v1-alpha, kakaobrain/karlo-v1-alpha, any org/name of the hub.\n"
            "\n"
            "  --need WHAT   text-to-image, variations or text-embed: skip folders without it\n"
            "  --gimp-dir D  GIMP's user folder (default $GIMP3_DIRECTORY or ~/.config/GIMP/3.0)\n");
}

int
cli_cmd_find_model(int argc, char **argv)
{
    struct unclip_model_search s = {0};
    const char *what = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            find_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--need") && v) {
            const char *n = argv[++i];
            if (!strcmp(n, "text-to-image"))
                s.need |= UNCLIP_FEATURE_TEXT_TO_IMAGE;
            else if (!strcmp(n, "variations"))
                s.need |= UNCLIP_FEATURE_IMAGE_EMBED | UNCLIP_FEATURE_DECODE;
            else if (!strcmp(n, "text-embed"))
                s.need |= UNCLIP_FEATURE_TEXT_EMBED;
            else {
                fprintf(stderr, "unclip find-model: --need takes text-to-image, variations or "
                                "text-embed\n");
                return 2;
            }
        } else if (!strcmp(a, "--gimp-dir") && v) {
            s.gimp_dir = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "unclip find-model: unknown or incomplete option '%s'\n", a);
            find_usage(stderr);
            return 2;
        } else if (!what) {
            what = a;
        } else {
            find_usage(stderr);
            return 2;
        }
    }
    char path[4096], err[4096];
    if (unclip_model_find(what, &s, path, sizeof path, err, sizeof err) != UNCLIP_OK) {
        fprintf(stderr, "unclip find-model: %s\n", err);
        return 1;
    }
    printf("%s\n", path);
    return 0;
}
