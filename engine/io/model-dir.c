#include "io/model-dir.h"

#include "core/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct unclip_model_dir {
    char *path;
    struct unclip_json *index;
    const char *class_name;             /* borrowed from index */
    struct unclip_component *comps;     /* strings borrowed from index */
    int32_t n;
};

bool
unclip__model_dir_name_ok(const char *name)
{
    if (!name || !*name || name[0] == '.')
        return false;
    if (strchr(name, '/') || strchr(name, '\\') || strstr(name, ".."))
        return false;
    return strlen(name) < 256;
}

static char *
join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/')
        la--;
    char *s = unclip__malloc(la + lb + 2);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

/* A symlink that went through a tool without symlink support (git with core.symlinks=false,
 * some archivers and copies) becomes a small regular file holding the link target, e.g.
 * "../../tiny-karlo/decoder/config.json". Real model files never look like that (JSON starts
 * with '{', safetensors with 8 length bytes, merges.txt with "#version"), so such a stub is
 * followed like the link it stands for. Returns 1 with *target a new path, 0 when the
 * file is not a stub, -1 when out of memory. */
#define STUB_MAX 1024

static int
read_stub(const char *path, const struct stat *sb, char **target)
{
    *target = NULL;
    if (!S_ISREG(sb->st_mode) || sb->st_size <= 0 || sb->st_size >= STUB_MAX)
        return 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    char buf[STUB_MAX];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n == 0 || buf[0] == '/')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c < 0x20 || c == 0x7f || c == '{' || c == '"' || c == '#')
            return 0;
    }
    buf[n] = '\0';
    /* Resolve relative to the folder holding the stub. */
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 0;
    char *dir = unclip__malloc(dl + 2);
    if (!dir)
        return -1;
    if (slash && dl > 0) {
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    } else {
        strcpy(dir, slash ? "/" : ".");
    }
    *target = join(dir, buf);
    unclip__free(dir);
    return *target ? 1 : -1;
}

enum find_result { FOUND = 0, NOT_FOUND = 1, WRONG_KIND = 2, FIND_ERR = 3 };

/* Resolves `path` (following link stubs, at most 8) to an existing folder (want_dir) or
 * regular file. *out receives a new string on FOUND. */
static enum find_result
resolve(const char *path, bool want_dir, char **out)
{
    char *cur = unclip__strdup(path);
    if (!cur)
        return FIND_ERR;
    for (int hop = 0; hop <= 8; hop++) {
        struct stat sb;
        if (stat(cur, &sb) != 0) {
            unclip__free(cur);
            return NOT_FOUND;
        }
        bool kind_ok = want_dir ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode);
        char *next = NULL;
        int stub = (kind_ok && want_dir) ? 0 : read_stub(cur, &sb, &next);
        if (stub < 0) {
            unclip__free(cur);
            return FIND_ERR;
        }
        if (stub > 0) {
            struct stat tb;
            if (stat(next, &tb) == 0) {
                unclip__free(cur);
                cur = next;
                continue;
            }
            /* A short text file whose target does not exist: not a stub after all. */
            unclip__free(next);
        }
        if (kind_ok) {
            *out = cur;
            return FOUND;
        }
        unclip__free(cur);
        return WRONG_KIND;
    }
    unclip__free(cur);
    return NOT_FOUND;
}

unclip_status
unclip__model_file_resolve(const char *path, char **out, struct unclip_err *err)
{
    if (!path || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "model folder: NULL argument");
    char *found = NULL;
    switch (resolve(path, false, &found)) {
    case FOUND:
        *out = found;
        return UNCLIP_OK;
    case NOT_FOUND:
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: not found", path);
    case WRONG_KIND:
        return unclip__fail(err, UNCLIP_E_IO, "%s: not a regular file", path);
    default:
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", path);
    }
}

static unclip_status
nomem(struct unclip_err *err)
{
    return unclip__fail(err, UNCLIP_E_NOMEM, "model folder: out of host memory");
}

unclip_status
unclip__model_dir_open(const char *path, struct unclip_model_dir **out, struct unclip_err *err)
{
    if (!path || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "model folder: NULL argument");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return unclip__fail(err, UNCLIP_E_MODEL, "no model folder at %s: %s", path,
                            strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return unclip__fail(err, UNCLIP_E_MODEL, "%s is not a folder (expected a diffusers "
                            "model folder with model_index.json)", path);
    struct unclip_model_dir *d = unclip__calloc(1, sizeof *d);
    if (!d || !(d->path = unclip__strdup(path))) {
        unclip__free(d);
        return nomem(err);
    }
    unclip_status st = UNCLIP_OK;
    char *ipath = join(path, "model_index.json");
    char *found = NULL;
    if (!ipath) {
        st = nomem(err);
        goto fail;
    }
    enum find_result fr = resolve(ipath, false, &found);
    if (fr == FIND_ERR) {
        st = nomem(err);
        goto fail;
    }
    if (fr != FOUND) {
        st = unclip__fail(err, UNCLIP_E_MODEL, "no model_index.json in %s (is it a diffusers "
                          "model folder?)", path);
        goto fail;
    }
    st = unclip__json_load(found, ipath, &d->index, err);
    if (st != UNCLIP_OK)
        goto fail;
    st = unclip__json_string_opt(d->index, "_class_name", NULL, &d->class_name, err);
    if (st != UNCLIP_OK)
        goto fail;

    const char **keys = NULL;
    int32_t nk = 0;
    st = unclip__json_keys(d->index, NULL, &keys, &nk, err);
    if (st != UNCLIP_OK)
        goto fail;
    d->comps = unclip__calloc(nk ? (size_t)nk : 1, sizeof *d->comps);
    if (!d->comps) {
        unclip__free(keys);
        st = nomem(err);
        goto fail;
    }
    JsonObject *root = unclip__json_root(d->index);
    for (int32_t i = 0; i < nk; i++) {
        const char *k = keys[i];
        if (k[0] == '_')
            continue; /* "_class_name", "_diffusers_version", ... */
        if (!unclip__model_dir_name_ok(k)) {
            st = unclip__fail(err, UNCLIP_E_MODEL, "%s: component name '%.200s' is not a plain "
                              "folder name (no '/', '\\', '..' or leading '.')", ipath, k);
            break;
        }
        JsonNode *v = json_object_get_member(root, k);
        JsonArray *a = JSON_NODE_HOLDS_ARRAY(v) ? json_node_get_array(v) : NULL;
        if (!a || json_array_get_length(a) != 2) {
            st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is not a [library, class] pair",
                              ipath, k);
            break;
        }
        JsonNode *l = json_array_get_element(a, 0), *c = json_array_get_element(a, 1);
        if (JSON_NODE_HOLDS_NULL(l) && JSON_NODE_HOLDS_NULL(c))
            continue; /* an optional component that this model does not have */
        bool ls = JSON_NODE_HOLDS_VALUE(l) && json_node_get_value_type(l) == G_TYPE_STRING;
        bool cs = JSON_NODE_HOLDS_VALUE(c) && json_node_get_value_type(c) == G_TYPE_STRING;
        if (!ls || !cs) {
            st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is not a [library, class] pair of "
                              "strings", ipath, k);
            break;
        }
        d->comps[d->n].name = k;
        d->comps[d->n].library = json_node_get_string(l);
        d->comps[d->n].class_name = json_node_get_string(c);
        d->n++;
    }
    unclip__free(keys);
    if (st != UNCLIP_OK)
        goto fail;
    unclip__free(ipath);
    unclip__free(found);
    *out = d;
    return UNCLIP_OK;
fail:
    unclip__free(ipath);
    unclip__free(found);
    unclip__model_dir_free(d);
    return st;
}

void
unclip__model_dir_free(struct unclip_model_dir *d)
{
    if (!d)
        return;
    unclip__free(d->comps);
    unclip__json_free(d->index);
    unclip__free(d->path);
    unclip__free(d);
}

const char *
unclip__model_dir_path(const struct unclip_model_dir *d)
{
    return d ? d->path : NULL;
}

const char *
unclip__model_dir_class(const struct unclip_model_dir *d)
{
    return d ? d->class_name : NULL;
}

const struct unclip_json *
unclip__model_dir_index(const struct unclip_model_dir *d)
{
    return d ? d->index : NULL;
}

int32_t
unclip__model_dir_count(const struct unclip_model_dir *d)
{
    return d ? d->n : 0;
}

const struct unclip_component *
unclip__model_dir_at(const struct unclip_model_dir *d, int32_t i)
{
    if (!d || i < 0 || i >= d->n)
        return NULL;
    return &d->comps[i];
}

const struct unclip_component *
unclip__model_dir_find(const struct unclip_model_dir *d, const char *name)
{
    if (!d || !name)
        return NULL;
    for (int32_t i = 0; i < d->n; i++)
        if (!strcmp(d->comps[i].name, name))
            return &d->comps[i];
    return NULL;
}

/* Listed + folder present; *out (optional) gets the resolved folder. */
static unclip_status
component_folder(const struct unclip_model_dir *d, const char *name, const char *needed_for,
                 char **out, struct unclip_err *err)
{
    if (!d || !name)
        return unclip__fail(err, UNCLIP_E_ARG, "model folder: NULL argument");
    if (!unclip__model_dir_name_ok(name))
        return unclip__fail(err, UNCLIP_E_ARG, "component name '%.200s' is not a plain folder "
                            "name", name);
    char tail[300];
    if (needed_for)
        snprintf(tail, sizeof tail, ": %s needs it", needed_for);
    else
        tail[0] = '\0';
    if (!unclip__model_dir_find(d, name))
        return unclip__fail(err, UNCLIP_E_MODEL, "no %s/ in %s (model_index.json does not list "
                            "it)%s", name, d->path, tail);
    char *p = join(d->path, name);
    if (!p)
        return nomem(err);
    char *found = NULL;
    enum find_result fr = resolve(p, true, &found);
    unclip_status st = UNCLIP_OK;
    if (fr == FIND_ERR)
        st = nomem(err);
    else if (fr == NOT_FOUND)
        st = unclip__fail(err, UNCLIP_E_MODEL, "no %s/ in %s (model_index.json lists it, the "
                          "folder is missing)%s", name, d->path, tail);
    else if (fr == WRONG_KIND)
        st = unclip__fail(err, UNCLIP_E_MODEL, "%s is not a folder%s", p, tail);
    unclip__free(p);
    if (st != UNCLIP_OK)
        return st;
    if (out)
        *out = found;
    else
        unclip__free(found);
    return UNCLIP_OK;
}

unclip_status
unclip__model_dir_require(const struct unclip_model_dir *d, const char *name,
                          const char *needed_for, struct unclip_err *err)
{
    return component_folder(d, name, needed_for, NULL, err);
}

bool
unclip__model_dir_has(const struct unclip_model_dir *d, const char *name)
{
    return component_folder(d, name, NULL, NULL, NULL) == UNCLIP_OK;
}

unclip_status
unclip__model_dir_folder(const struct unclip_model_dir *d, const char *name, char **out,
                         struct unclip_err *err)
{
    if (!out)
        return unclip__fail(err, UNCLIP_E_ARG, "model folder: NULL argument");
    return component_folder(d, name, NULL, out, err);
}

/* First of files[] present in the component folder. *which gets its index. */
static unclip_status
find_first(const struct unclip_model_dir *d, const char *name, const char *const *files,
           char **out, int *which, char **folder_out, struct unclip_err *err)
{
    char *folder = NULL;
    unclip_status st = component_folder(d, name, NULL, &folder, err);
    if (st != UNCLIP_OK)
        return st;
    for (int i = 0; files[i]; i++) {
        char *p = join(folder, files[i]);
        if (!p) {
            unclip__free(folder);
            return nomem(err);
        }
        char *found = NULL;
        enum find_result fr = resolve(p, false, &found);
        unclip__free(p);
        if (fr == FIND_ERR) {
            unclip__free(folder);
            return nomem(err);
        }
        if (fr == FOUND) {
            *out = found;
            *which = i;
            if (folder_out)
                *folder_out = folder;
            else
                unclip__free(folder);
            return UNCLIP_OK;
        }
    }
    *which = -1;
    if (folder_out)
        *folder_out = folder;
    else
        unclip__free(folder);
    return UNCLIP_OK;
}

unclip_status
unclip__model_dir_file(const struct unclip_model_dir *d, const char *name, const char *file,
                       char **out, struct unclip_err *err)
{
    if (!out || !file)
        return unclip__fail(err, UNCLIP_E_ARG, "model folder: NULL argument");
    if (!unclip__model_dir_name_ok(file))
        return unclip__fail(err, UNCLIP_E_ARG, "file name '%.200s' is not a plain name", file);
    const char *files[2] = {file, NULL};
    int which = -1;
    char *folder = NULL, *found = NULL;
    unclip_status st = find_first(d, name, files, &found, &which, &folder, err);
    if (st != UNCLIP_OK)
        return st;
    if (which < 0)
        st = unclip__fail(err, UNCLIP_E_MODEL, "no %s in %s", file, folder);
    else
        *out = found;
    unclip__free(folder);
    return st;
}

static const char *const config_files[] = {"config.json", "scheduler_config.json",
                                           "preprocessor_config.json", NULL};

unclip_status
unclip__model_dir_config_path(const struct unclip_model_dir *d, const char *name, char **out,
                              struct unclip_err *err)
{
    if (!out)
        return unclip__fail(err, UNCLIP_E_ARG, "model folder: NULL argument");
    int which = -1;
    char *folder = NULL, *found = NULL;
    unclip_status st = find_first(d, name, config_files, &found, &which, &folder, err);
    if (st != UNCLIP_OK)
        return st;
    if (which < 0)
        st = unclip__fail(err, UNCLIP_E_MODEL, "no config.json, scheduler_config.json or "
                          "preprocessor_config.json in %s", folder);
    else
        *out = found;
    unclip__free(folder);
    return st;
}

unclip_status
unclip__model_dir_config(const struct unclip_model_dir *d, const char *name,
                         struct unclip_json **out, struct unclip_err *err)
{
    if (!out)
        return unclip__fail(err, UNCLIP_E_ARG, "model folder: NULL argument");
    int which = -1;
    char *folder = NULL, *found = NULL;
    unclip_status st = find_first(d, name, config_files, &found, &which, &folder, err);
    if (st != UNCLIP_OK)
        return st;
    if (which < 0) {
        st = unclip__fail(err, UNCLIP_E_MODEL, "no config.json, scheduler_config.json or "
                          "preprocessor_config.json in %s", folder);
        unclip__free(folder);
        return st;
    }
    unclip__free(folder);
    char display[600];
    snprintf(display, sizeof display, "%s/%s", name, config_files[which]);
    st = unclip__json_load(found, display, out, err);
    unclip__free(found);
    return st;
}

unclip_status
unclip__model_dir_weights_path(const struct unclip_model_dir *d, const char *name, char **out,
                               struct unclip_err *err)
{
    static const char *const weights[] = {
        "diffusion_pytorch_model.safetensors", "model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors", NULL};
    static const char *const sharded[] = {"diffusion_pytorch_model.safetensors.index.json",
                                          "model.safetensors.index.json", NULL};
    static const char *const pickles[] = {
        "diffusion_pytorch_model.bin", "pytorch_model.bin", "diffusion_pytorch_model.fp16.bin",
        "pytorch_model.fp16.bin", "model.ckpt", "model.pt", "model.pth", NULL};
    if (!out)
        return unclip__fail(err, UNCLIP_E_ARG, "model folder: NULL argument");
    int which = -1;
    char *folder = NULL, *found = NULL;
    unclip_status st = find_first(d, name, weights, &found, &which, &folder, err);
    if (st != UNCLIP_OK)
        return st;
    if (which >= 0) {
        unclip__free(folder);
        *out = found;
        return UNCLIP_OK;
    }
    st = find_first(d, name, sharded, &found, &which, NULL, err);
    if (st == UNCLIP_OK && which >= 0) {
        unclip__free(found);
        st = unclip__fail(err, UNCLIP_E_MODEL, "%s: weights split into shards (%s) are not "
                          "supported; save the component as one safetensors file", folder,
                          sharded[which]);
        unclip__free(folder);
        return st;
    }
    if (st == UNCLIP_OK)
        st = find_first(d, name, pickles, &found, &which, NULL, err);
    if (st == UNCLIP_OK && which >= 0) {
        unclip__free(found);
        st = unclip__fail(err, UNCLIP_E_MODEL, "%s: only %s (a PyTorch pickle checkpoint), which "
                          "is never loaded because unpickling can run code; convert it to "
                          "safetensors (e.g. save_pretrained(..., safe_serialization=True))",
                          folder, pickles[which]);
    } else if (st == UNCLIP_OK) {
        st = unclip__fail(err, UNCLIP_E_MODEL, "no diffusion_pytorch_model.safetensors or "
                          "model.safetensors in %s", folder);
    }
    unclip__free(folder);
    return st;
}
