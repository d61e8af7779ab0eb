/* Model folder search (see model-search.h for the order). */
#include "io/model-search.h"

#include "core/alloc.h"
#include "io/safetensors.h"
#include "io/model-paths.h" /* generated: UNCLIP_INSTALL_MODELS_DIR, UNCLIP_SOURCE_MODELS_DIR */

#include <dirent.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Names a user may type for the models we know; everything else is searched as given. */
static const struct unclip_model_alias ALIASES[] = {
    {"karlo", "karlo-v1-alpha", "kakaobrain/karlo-v1-alpha"},
    {"karlo-variations", "karlo-v1-alpha-image-variations",
     "kakaobrain/karlo-v1-alpha-image-variations"},
    {UNCLIP_MODEL_DEFAULT_NAME, UNCLIP_MODEL_DEFAULT_NAME, NULL},
};

const struct unclip_model_alias *
unclip__model_alias(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        const struct unclip_model_alias *a = &ALIASES[i];
        if (!strcmp(name, a->name) || !strcmp(name, a->folder) ||
            (a->repo && !strcmp(name, a->repo)))
            return a;
    }
    return NULL;
}

/* ---- features (the rule of unclip_model_open) ---- */

static bool
has_all(const struct unclip_model_dir *d, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (!unclip__model_dir_has(d, names[i]))
            return false;
    return true;
}

uint32_t
unclip__model_dir_features(const struct unclip_model_dir *d)
{
    static const char *const t2i[] = {"tokenizer", "text_encoder", "prior", "prior_scheduler",
                                      "text_proj", "decoder", "decoder_scheduler",
                                      "super_res_first", "super_res_last", "super_res_scheduler",
                                      NULL};
    static const char *const dec[] = {"text_proj", "decoder", "decoder_scheduler",
                                      "super_res_first", "super_res_last", "super_res_scheduler",
                                      NULL};
    static const char *const img[] = {"image_encoder", "feature_extractor", NULL};
    static const char *const txt[] = {"tokenizer", "text_encoder", NULL};
    uint32_t f = 0;
    if (has_all(d, t2i))
        f |= UNCLIP_FEATURE_TEXT_TO_IMAGE;
    if (has_all(d, dec))
        f |= UNCLIP_FEATURE_DECODE;
    if (has_all(d, img))
        f |= UNCLIP_FEATURE_IMAGE_EMBED;
    if (has_all(d, txt))
        f |= UNCLIP_FEATURE_TEXT_EMBED;
    return f;
}

/* What a missing feature means, for the report. */
static const char *
missing_text(uint32_t missing)
{
    if (missing & UNCLIP_FEATURE_IMAGE_EMBED)
        return "no image_encoder/ + feature_extractor/ (variations need an image encoder: "
               "'unclip download karlo' adds one; see README, Models)";
    if (missing & UNCLIP_FEATURE_TEXT_TO_IMAGE)
        return "not a complete text-to-image model (tokenizer, text_encoder, prior, "
               "text_proj, decoder, super_res_first/last and the schedulers)";
    if (missing & UNCLIP_FEATURE_DECODE)
        return "no decoder (text_proj, decoder, super_res_first/last and the schedulers)";
    return "no tokenizer/ + text_encoder/";
}

/* The first listed component whose files are not there (a copy that lost its weights, link
 * stubs pointing nowhere), as a new message; NULL when every component has its config (or
 * tokenizer vocabulary) and, for networks, a weight file whose safetensors header is valid
 * (the header is parsed, the data only mapped: cheap even for multi-GB files). */
static char *
component_problem(const struct unclip_model_dir *d)
{
    for (int32_t i = 0; i < unclip__model_dir_count(d); i++) {
        const struct unclip_component *c = unclip__model_dir_at(d, i);
        if (!unclip__model_dir_has(d, c->name))
            continue;
        struct unclip_err e = {0};
        char *p = NULL;
        unclip_status st;
        bool tok = strstr(c->class_name, "Tokenizer") != NULL;
        bool net = !tok && !strstr(c->class_name, "Scheduler") &&
                   !strstr(c->class_name, "Processor") && !strstr(c->class_name, "Extractor");
        if (tok)
            st = unclip__model_dir_file(d, c->name, "vocab.json", &p, &e);
        else
            st = unclip__model_dir_config_path(d, c->name, &p, &e);
        unclip__free(p);
        p = NULL;
        if (st == UNCLIP_OK && net)
            st = unclip__model_dir_weights_path(d, c->name, &p, &e);
        if (st == UNCLIP_OK && net) {
            /* the header only (mapped, not read): catches stubs, truncated copies, pickles */
            struct unclip_st_file *f = NULL;
            st = unclip__st_open(p, &f, &e);
            unclip__st_close(f);
        }
        unclip__free(p);
        if (st != UNCLIP_OK)
            return unclip__strdup(e.msg);
    }
    return NULL;
}

/* ---- default places ---- */

static char *
dup_g(gchar *s)
{
    char *r = s ? unclip__strdup(s) : NULL;
    g_free(s);
    return r;
}

static const char *
env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static const char *
home_dir(void)
{
    const char *h = env_nonempty("HOME");
    return h ? h : g_get_home_dir();
}

char *
unclip__gimp_user_dir(void)
{
    const char *v = env_nonempty("GIMP3_DIRECTORY");
    if (v)
        return unclip__strdup(v);
    const char *x = env_nonempty("XDG_CONFIG_HOME");
    if (x)
        return dup_g(g_build_filename(x, "GIMP", "3.0", NULL));
    const char *h = home_dir();
    return h ? dup_g(g_build_filename(h, ".config", "GIMP", "3.0", NULL)) : NULL;
}

char *
unclip__gimp_models_dir(const char *gimp_dir)
{
    char *g = gimp_dir ? unclip__strdup(gimp_dir) : unclip__gimp_user_dir();
    if (!g)
        return NULL;
    char *r = dup_g(g_build_filename(g, "unclip", "models", NULL));
    unclip__free(g);
    return r;
}

char *
unclip__hub_cache_dir(void)
{
    /* huggingface_hub's rule; HUGGINGFACE_HUB_CACHE is its older spelling. */
    const char *v = env_nonempty("HF_HUB_CACHE");
    if (!v)
        v = env_nonempty("HUGGINGFACE_HUB_CACHE");
    if (v)
        return unclip__strdup(v);
    const char *hf = env_nonempty("HF_HOME");
    if (hf)
        return dup_g(g_build_filename(hf, "hub", NULL));
    const char *x = env_nonempty("XDG_CACHE_HOME");
    if (x)
        return dup_g(g_build_filename(x, "huggingface", "hub", NULL));
    const char *h = home_dir();
    return h ? dup_g(g_build_filename(h, ".cache", "huggingface", "hub", NULL)) : NULL;
}

static bool
is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool
has_index(const char *dir)
{
    gchar *p = g_build_filename(dir, "model_index.json", NULL);
    char *r = NULL;
    struct unclip_err e = {0};
    bool ok = unclip__model_file_resolve(p, &r, &e) == UNCLIP_OK;
    unclip__free(r);
    g_free(p);
    return ok;
}

/* A hub cache folder name for "org/name": "models--org--name". */
static gchar *
hub_repo_folder(const char *repo)
{
    gchar **parts = g_strsplit(repo, "/", -1);
    gchar *joined = g_strjoinv("--", parts);
    gchar *r = g_strconcat("models--", joined, NULL);
    g_free(joined);
    g_strfreev(parts);
    return r;
}

/* Snapshot of one repo folder of the cache (models--org--name). */
static unclip_status
snapshot_in(const char *repo_dir, char **out, struct unclip_err *err)
{
    gchar *snaps = g_build_filename(repo_dir, "snapshots", NULL);
    if (!is_dir(snaps)) {
        unclip_status st = unclip__fail(err, UNCLIP_E_MODEL, "%s: not there", snaps);
        g_free(snaps);
        return st;
    }
    /* refs/main names the commit the hub's "main" pointed at when it was downloaded. */
    gchar *ref = g_build_filename(repo_dir, "refs", "main", NULL);
    gchar *rev = NULL;
    char *found = NULL;
    if (g_file_get_contents(ref, &rev, NULL, NULL)) {
        g_strstrip(rev);
        if (*rev && !strchr(rev, '/') && strcmp(rev, "..")) {
            gchar *p = g_build_filename(snaps, rev, NULL);
            if (is_dir(p) && has_index(p))
                found = unclip__strdup(p);
            g_free(p);
        }
        g_free(rev);
    }
    g_free(ref);
    if (!found) {
        /* Otherwise the snapshot most recently written that is a model folder. */
        DIR *dh = opendir(snaps);
        time_t best = 0;
        struct dirent *de;
        while (dh && (de = readdir(dh))) {
            if (de->d_name[0] == '.')
                continue;
            gchar *p = g_build_filename(snaps, de->d_name, NULL);
            struct stat sb;
            if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode) && has_index(p) &&
                (!found || sb.st_mtime > best)) {
                unclip__free(found);
                found = unclip__strdup(p);
                best = sb.st_mtime;
            }
            g_free(p);
        }
        if (dh)
            closedir(dh);
    }
    if (!found) {
        unclip_status st = unclip__fail(err, UNCLIP_E_MODEL,
                                        "%s: no snapshot with a model_index.json", snaps);
        g_free(snaps);
        return st;
    }
    g_free(snaps);
    *out = found;
    return UNCLIP_OK;
}

unclip_status
unclip__hub_snapshot(const char *hub, const char *repo, char **out, struct unclip_err *err)
{
    gchar *folder = hub_repo_folder(repo);
    gchar *dir = g_build_filename(hub, folder, NULL);
    g_free(folder);
    unclip_status st;
    if (!is_dir(dir))
        st = unclip__fail(err, UNCLIP_E_MODEL, "%s: not there", dir);
    else
        st = snapshot_in(dir, out, err);
    g_free(dir);
    return st;
}

/* ---- the search ---- */

struct search {
    uint32_t need;
    GString *report;   /* one line per place looked at */
    char *found;
};

/* Checks one candidate folder; true when it is the answer (s->found set). */
static bool
try_folder(struct search *s, const char *path, const char *origin)
{
    if (!is_dir(path)) {
        g_string_append_printf(s->report, "\n  %s (%s): not there", path, origin);
        return false;
    }
    if (!has_index(path)) {
        g_string_append_printf(s->report, "\n  %s (%s): no model_index.json", path, origin);
        return false;
    }
    struct unclip_err e = {0};
    struct unclip_model_dir *d = NULL;
    if (unclip__model_dir_open(path, &d, &e) != UNCLIP_OK) {
        g_string_append_printf(s->report, "\n  %s (%s): unusable: %s", path, origin, e.msg);
        return false;
    }
    uint32_t f = unclip__model_dir_features(d);
    char *problem = component_problem(d);
    unclip__model_dir_free(d);
    if (problem) {
        g_string_append_printf(s->report, "\n  %s (%s): %s", path, origin, problem);
        unclip__free(problem);
        return false;
    }
    uint32_t missing = s->need & ~f;
    if (!f || missing) {
        g_string_append_printf(s->report, "\n  %s (%s): %s", path, origin,
                               missing_text(f ? missing : UNCLIP_FEATURE_TEXT_EMBED));
        return false;
    }
    s->found = unclip__strdup(path);
    return true;
}

static bool
try_hub(struct search *s, const char *hub, const char *repo)
{
    char *snap = NULL;
    struct unclip_err e = {0};
    if (unclip__hub_snapshot(hub, repo, &snap, &e) != UNCLIP_OK) {
        g_string_append_printf(s->report, "\n  %s (hub cache)", e.msg);
        return false;
    }
    bool ok = try_folder(s, snap, "hub cache");
    unclip__free(snap);
    return ok;
}

/* "org/name" with two plain components. */
static bool
looks_like_repo(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/'))
        return false;
    return s[0] != '.' && s[0] != '~' && strncmp(s, "..", 2) != 0;
}

/* An existing folder given by the caller. */
static unclip_status
given_folder(struct search *s, const char *path, struct unclip_err *err)
{
    if (try_folder(s, path, "given"))
        return UNCLIP_OK;
    if (!has_index(path)) {
        /* A hub cache repo folder (models--org--name) or its snapshots/ folder. */
        gchar *base = g_path_get_basename(path);
        char *snap = NULL;
        struct unclip_err e = {0};
        unclip_status st = UNCLIP_E_MODEL;
        if (g_str_has_prefix(base, "models--"))
            st = snapshot_in(path, &snap, &e);
        else if (!strcmp(base, "snapshots")) {
            gchar *parent = g_path_get_dirname(path);
            st = snapshot_in(parent, &snap, &e);
            g_free(parent);
        }
        g_free(base);
        if (st == UNCLIP_OK) {
            g_string_truncate(s->report, 0);
            bool ok = try_folder(s, snap, "hub cache folder given");
            unclip__free(snap);
            if (ok)
                return UNCLIP_OK;
        }
    }
    return unclip__fail(err, UNCLIP_E_MODEL, "%s is not a usable model folder:%s", path,
                        s->report->str);
}

unclip_status
unclip__model_find(const char *name_or_path, const char *gimp_dir, uint32_t need, char **out,
                   struct unclip_err *err)
{
    if (!out)
        return unclip__fail(err, UNCLIP_E_ARG, "unclip_model_find: out is NULL");
    struct search s = {.need = need, .report = g_string_new(NULL)};
    unclip_status st = UNCLIP_OK;
    char *gmodels = NULL, *hub = NULL;
    const char *what = name_or_path;
    const char *origin = "given";
    if (!what || !*what) {
        what = env_nonempty("UNCLIP_MODEL");
        origin = "UNCLIP_MODEL";
        if (!what) {
            what = UNCLIP_MODEL_DEFAULT_NAME;
            origin = "default model";
        }
    }

    if (is_dir(what)) {
        st = given_folder(&s, what, err);
        if (st != UNCLIP_OK && strcmp(origin, "given"))
            unclip__err_prefix(err, "%s", origin);
        goto done;
    }
    /* Something that can only be a path (and is not there). */
    bool pathish = what[0] == '/' || what[0] == '.' || what[0] == '~' ||
                   (strchr(what, '/') && !looks_like_repo(what));
    if (pathish) {
        st = unclip__fail(err, UNCLIP_E_MODEL, "model folder %s (%s): no such folder", what,
                          origin);
        goto done;
    }

    /* A name. Folder names to try under the GIMP folder, and the hub repo. */
    const struct unclip_model_alias *a = unclip__model_alias(what);
    const char *repo = a ? a->repo : (looks_like_repo(what) ? what : NULL);
    const char *folders[2] = {a ? a->folder : NULL, NULL};
    gchar *tail = NULL;
    if (!a) {
        tail = g_path_get_basename(what); /* "org/name" -> "name" */
        folders[0] = tail;
    } else if (strcmp(a->folder, what) && !strchr(what, '/')) {
        folders[1] = what;
    }

    gmodels = unclip__gimp_models_dir(gimp_dir);
    for (int i = 0; i < 2 && gmodels && !s.found; i++) {
        if (!folders[i])
            continue;
        gchar *p = g_build_filename(gmodels, folders[i], NULL);
        try_folder(&s, p, "GIMP models folder");
        g_free(p);
    }
    hub = unclip__hub_cache_dir();
    if (!s.found && repo && hub)
        try_hub(&s, hub, repo);

    bool is_default = !strcmp(folders[0], UNCLIP_MODEL_DEFAULT_NAME);
    if (!s.found && is_default) {
        const char *dd = env_nonempty("UNCLIP_DATADIR");
        if (dd) {
            gchar *p = g_build_filename(dd, "models", UNCLIP_MODEL_DEFAULT_NAME, NULL);
            try_folder(&s, p, "UNCLIP_DATADIR");
            g_free(p);
        }
        const char *shipped[] = {UNCLIP_INSTALL_MODELS_DIR, UNCLIP_SOURCE_MODELS_DIR};
        const char *shipped_why[] = {"installed default", "source tree default"};
        for (int i = 0; i < 2 && !s.found; i++) {
            gchar *p = g_build_filename(shipped[i], UNCLIP_MODEL_DEFAULT_NAME, NULL);
            try_folder(&s, p, shipped_why[i]);
            g_free(p);
        }
    }
    g_free(tail);
    if (!s.found) {
        const char *hint = "";
        if (a && a->repo && !strcmp(a->name, "karlo"))
            hint = "\nget it with: unclip download karlo";
        else if (repo)
            hint = "\ndownload it into one of these places, or give its folder";
        st = unclip__fail(err, UNCLIP_E_MODEL, "no usable model '%s' (%s); looked at:%s%s", what,
                          origin, s.report->str, hint);
    }

done:
    unclip__free(gmodels);
    unclip__free(hub);
    g_string_free(s.report, TRUE);
    if (st == UNCLIP_OK) {
        *out = s.found;
        return UNCLIP_OK;
    }
    unclip__free(s.found);
    return st;
}

/* ---- public ---- */

unclip_status
unclip_model_find(const char *name_or_path, const struct unclip_model_search *opts, char *out,
                  size_t out_size, char *err, size_t err_size)
{
    struct unclip_err e = {0};
    char *path = NULL;
    unclip_status st;
    if (!out || out_size == 0) {
        st = unclip__fail(&e, UNCLIP_E_ARG, "unclip_model_find: no output buffer");
    } else {
        st = unclip__model_find(name_or_path, opts ? opts->gimp_dir : NULL,
                                opts ? opts->need : 0, &path, &e);
        if (st == UNCLIP_OK && strlen(path) >= out_size)
            st = unclip__fail(&e, UNCLIP_E_ARG, "unclip_model_find: path longer than %zu bytes: %s",
                              out_size - 1, path);
        if (st == UNCLIP_OK)
            memcpy(out, path, strlen(path) + 1);
    }
    unclip__free(path);
    unclip__err_copy(&e, err, err_size);
    return st;
}
