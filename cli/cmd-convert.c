/* unclip convert --fp16 SRC DST: a copy of a model folder whose weights are stored as fp16
 * (half the disk; the engine reads F32, F16 and BF16 alike and uploads fp16 by default, so
 * the default run computes the same).
 *
 * What is copied: model_index.json and, for every component it lists, the component's config
 * and tokenizer files (.json, .txt) unchanged, and its weight file (the one the engine would
 * load: diffusion_pytorch_model.safetensors | model.safetensors | *.fp16.safetensors) with
 * every F32/BF16 tensor converted to F16 (round to nearest even). Integer tensors stay. A
 * float tensor holding a finite value beyond fp16's range (|x| > 65504) keeps its dtype (it
 * would become infinite) and is named in a note. PyTorch pickles and other frameworks' files
 * are not copied. Links and git link stubs in SRC (hub cache snapshots) are followed, so DST
 * holds plain files.
 *
 * The copy is written to "DST.part" and renamed to DST only when every file is written and
 * the new weight files pass the safetensors validation, so DST is never half a model. An
 * interrupted conversion leaves DST.part, which the next run deletes and redoes. Weight files
 * are streamed tensor by tensor (memory stays small whatever the model size). */
#include "cli.h"

#include "core/alloc.h"
#include "core/dtype.h"
#include "io/download.h"
#include "io/model-dir.h"
#include "io/model-search.h"
#include "io/safetensors.h"

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MARKER ".unclip-convert-in-progress"

struct conv {
    uint64_t in_bytes, out_bytes;
    int32_t n_files, n_tensors, n_converted, n_kept;
    bool quiet;
};

static bool
fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static bool
fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "unclip convert: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return false;
}

static uint64_t
size_of(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* Removes a folder tree we created (only files and folders inside it). */
static void
remove_tree(const char *path)
{
    GDir *d = g_dir_open(path, 0, NULL);
    if (d) {
        const char *n;
        while ((n = g_dir_read_name(d))) {
            gchar *p = g_build_filename(path, n, NULL);
            if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
                remove_tree(p);
            else
                g_unlink(p);
            g_free(p);
        }
        g_dir_close(d);
    }
    g_rmdir(path);
}

static bool
copy_small(const char *src, const char *dst, struct conv *c)
{
    gchar *data = NULL;
    gsize len = 0;
    GError *ge = NULL;
    if (!g_file_get_contents(src, &data, &len, &ge) ||
        !g_file_set_contents(dst, data, (gssize)len, &ge)) {
        bool r = fail("%s", ge->message);
        g_error_free(ge);
        g_free(data);
        return r;
    }
    g_free(data);
    c->in_bytes += len;
    c->out_bytes += len;
    c->n_files++;
    return true;
}

static bool
is_float(enum unclip_dtype dt)
{
    return dt == UNCLIP_DT_F32 || dt == UNCLIP_DT_BF16 || dt == UNCLIP_DT_F16;
}

/* Reads element i of a float tensor (data may be unaligned). */
static inline float
elem(const struct unclip_st_tensor *t, int64_t i)
{
    const uint8_t *p = (const uint8_t *)t->data;
    if (t->dtype == UNCLIP_DT_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->dtype == UNCLIP_DT_BF16 ? unclip__bf16_to_f32(h) : unclip__f16_to_f32(h);
}

static bool
fits_f16(const struct unclip_st_tensor *t)
{
    for (int64_t i = 0; i < t->numel; i++) {
        float f = elem(t, i);
        if (isfinite(f) && fabsf(f) > 65504.0f)
            return false;
    }
    return true;
}

/* Streams one safetensors file to dst with floats as F16. */
static bool
convert_weights(const char *src, const char *dst, const char *display, struct conv *c)
{
    struct unclip_err err = {0};
    struct unclip_st_file *f = NULL;
    if (unclip__st_open(src, &f, &err) != UNCLIP_OK)
        return fail("%s", err.msg);
    int32_t n = unclip__st_count(f);
    struct unclip_st_entry *e = calloc((size_t)(n ? n : 1), sizeof *e);
    enum unclip_dtype *out_dt = calloc((size_t)(n ? n : 1), sizeof *out_dt);
    const struct unclip_st_tensor **src_t = calloc((size_t)(n ? n : 1), sizeof *src_t);
    bool ok = e && out_dt && src_t;
    for (int32_t i = 0; ok && i < n; i++) {
        const struct unclip_st_tensor *t = unclip__st_at(f, i);
        enum unclip_dtype dt = t->dtype;
        if (is_float(dt) && dt != UNCLIP_DT_F16) {
            if (fits_f16(t)) {
                dt = UNCLIP_DT_F16;
                c->n_converted++;
            } else {
                c->n_kept++;
                if (!c->quiet)
                    fprintf(stderr, "%s: '%s' has values beyond fp16's range: kept as %s\n",
                            display, t->name, unclip__dtype_name(t->dtype));
            }
        }
        /* the layout sorts entries; remember each one's tensor by its order (= index) */
        e[i] = (struct unclip_st_entry){.name = t->name, .dtype = unclip__dtype_name(dt),
                                        .ndim = t->ndim, .nbytes = (uint64_t)t->numel *
                                                                  unclip__dtype_size(dt),
                                        .order = i};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        out_dt[i] = dt;
        src_t[i] = t;
    }
    /* metadata: the source's, plus a note of the conversion */
    int32_t nm = unclip__st_metadata_count(f);
    const char **meta = calloc((size_t)(2 * nm + 3), sizeof *meta);
    int32_t k = 0;
    for (int32_t i = 0; meta && i < nm; i++) {
        const char *key, *val;
        if (unclip__st_metadata_at(f, i, &key, &val) && strcmp(key, "unclip.convert")) {
            meta[k++] = key;
            meta[k++] = val;
        }
    }
    if (meta) {
        meta[k++] = "unclip.convert";
        meta[k++] = "fp16";
    }
    uint8_t *header = NULL;
    uint64_t hl = 0;
    ok = ok && meta && unclip__st_layout(e, n, meta, &header, &hl, &err) == UNCLIP_OK;
    if (!ok && !err.msg[0])
        fail("%s: out of memory", display);
    else if (!ok)
        fail("%s", err.msg);
    FILE *fp = ok ? fopen(dst, "wb") : NULL;
    if (ok && !fp)
        ok = fail("%s: %s", dst, g_strerror(errno));
    if (ok && fwrite(header, 1, hl, fp) != hl)
        ok = fail("%s: %s", dst, g_strerror(errno));
    enum { CHUNK = 1 << 18 };
    uint16_t *buf = ok ? malloc(CHUNK * sizeof *buf) : NULL;
    if (ok && !buf)
        ok = fail("out of memory");
    for (int32_t i = 0; ok && i < n; i++) {
        const struct unclip_st_tensor *t = src_t[e[i].order];
        enum unclip_dtype dt = out_dt[e[i].order];
        if (dt == t->dtype) {
            if (t->nbytes && fwrite(t->data, 1, t->nbytes, fp) != t->nbytes)
                ok = fail("%s: %s", dst, g_strerror(errno));
            continue;
        }
        for (int64_t s = 0; ok && s < t->numel; s += CHUNK) {
            int64_t m = t->numel - s < CHUNK ? t->numel - s : CHUNK;
            for (int64_t j = 0; j < m; j++)
                buf[j] = unclip__f32_to_f16(elem(t, s + j));
            if (fwrite(buf, 2, (size_t)m, fp) != (size_t)m)
                ok = fail("%s: %s", dst, g_strerror(errno));
        }
    }
    if (fp && fclose(fp) != 0 && ok)
        ok = fail("%s: %s", dst, g_strerror(errno));
    c->n_tensors += n;
    unclip__st_close(f);
    free(buf);
    free(e);
    free(out_dt);
    free(src_t);
    free(meta);
    unclip__free(header);
    if (!ok)
        return false;
    /* The new file must pass the reader's validation. */
    struct unclip_st_file *chk = NULL;
    if (unclip__st_open(dst, &chk, &err) != UNCLIP_OK)
        return fail("the converted %s does not read back: %s", display, err.msg);
    bool same = unclip__st_count(chk) == n;
    unclip__st_close(chk);
    if (!same)
        return fail("the converted %s lost tensors", display);
    c->in_bytes += size_of(src);
    c->out_bytes += size_of(dst);
    c->n_files++;
    return true;
}

static bool
skip_name(const char *n)
{
    static const char *const skip[] = {".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".h5",
                                       ".onnx", ".part", ".pkl", NULL};
    if (n[0] == '.')
        return true;
    for (int i = 0; skip[i]; i++)
        if (g_str_has_suffix(n, skip[i]))
            return true;
    return false;
}

static bool
convert_component(const struct unclip_model_dir *d, const char *name, const char *out_root,
                  struct conv *c)
{
    struct unclip_err err = {0};
    char *folder = NULL, *weights = NULL;
    if (unclip__model_dir_folder(d, name, &folder, &err) != UNCLIP_OK)
        return fail("%s", err.msg);
    /* the weight file the engine would read, when the component has one */
    bool has_weights = unclip__model_dir_weights_path(d, name, &weights, &err) == UNCLIP_OK;
    gchar *weights_base = has_weights ? g_path_get_basename(weights) : NULL;
    gchar *out_dir = g_build_filename(out_root, name, NULL);
    bool ok = g_mkdir_with_parents(out_dir, 0755) == 0 ||
              fail("%s: %s", out_dir, g_strerror(errno));
    GDir *dh = ok ? g_dir_open(folder, 0, NULL) : NULL;
    if (ok && !dh)
        ok = fail("%s: cannot list", folder);
    const char *fn;
    while (ok && dh && (fn = g_dir_read_name(dh))) {
        if (skip_name(fn))
            continue;
        gchar *src = g_build_filename(folder, fn, NULL);
        gchar *dst = g_build_filename(out_dir, fn, NULL);
        gchar *display = g_build_filename(name, fn, NULL);
        char *real = NULL;
        if (unclip__model_file_resolve(src, &real, &err) != UNCLIP_OK) {
            /* a sub-folder or a dangling link: not part of the layout we copy */
        } else if (g_str_has_suffix(fn, ".safetensors")) {
            if (weights_base && !strcmp(fn, weights_base))
                ok = convert_weights(real, dst, display, c);
            else if (!c->quiet)
                fprintf(stderr, "%s: not the weight file the engine reads; skipped\n", display);
        } else {
            ok = copy_small(real, dst, c);
        }
        unclip__free(real);
        g_free(src);
        g_free(dst);
        g_free(display);
    }
    if (dh)
        g_dir_close(dh);
    g_free(out_dir);
    g_free(weights_base);
    unclip__free(folder);
    unclip__free(weights);
    return ok;
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: unclip convert --fp16 [-q] SRC DST\n"
            "\n"
            "Writes DST, a copy of the model folder SRC (a folder, a hub cache snapshot or a\n"
            "model name such as 'karlo') with its weights stored as fp16: half the disk, same\n"
            "configs, tokenizer and layout. DST must not exist yet.\n");
}

int
cli_cmd_convert(int argc, char **argv)
{
    const char *src_arg = NULL, *dst = NULL;
    bool fp16 = false;
    struct conv c = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--fp16")) {
            fp16 = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            c.quiet = true;
        } else if (a[0] == '-') {
            fprintf(stderr, "unclip convert: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!src_arg) {
            src_arg = a;
        } else if (!dst) {
            dst = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!src_arg || !dst) {
        usage(stderr);
        return 2;
    }
    if (!fp16) {
        fprintf(stderr, "unclip convert: say --fp16 (the only conversion there is)\n");
        return 2;
    }
    struct unclip_err err = {0};
    char *src = NULL;
    if (unclip__model_find(src_arg, NULL, 0, &src, &err) != UNCLIP_OK) {
        fprintf(stderr, "unclip convert: %s\n", err.msg);
        return 1;
    }
    if (g_file_test(dst, G_FILE_TEST_EXISTS)) {
        fprintf(stderr, "unclip convert: %s exists; give a new folder\n", dst);
        unclip__free(src);
        return 1;
    }
    struct unclip_model_dir *d = NULL;
    if (unclip__model_dir_open(src, &d, &err) != UNCLIP_OK) {
        fprintf(stderr, "unclip convert: %s\n", err.msg);
        unclip__free(src);
        return 1;
    }
    gchar *part = g_strconcat(dst, ".part", NULL);
    gchar *marker = g_build_filename(part, MARKER, NULL);
    if (g_file_test(part, G_FILE_TEST_IS_DIR)) {
        if (!g_file_test(marker, G_FILE_TEST_EXISTS)) {
            fprintf(stderr, "unclip convert: %s exists and is not an unfinished conversion; "
                            "remove it or pick another DST\n", part);
            g_free(marker);
            g_free(part);
            unclip__model_dir_free(d);
            unclip__free(src);
            return 1;
        }
        remove_tree(part); /* an interrupted earlier run: start again */
    }
    bool ok = g_mkdir_with_parents(part, 0755) == 0 || fail("%s: %s", part, g_strerror(errno));
    ok = ok && (g_file_set_contents(marker, "", 0, NULL) || fail("%s: cannot write", marker));
    if (ok) {
        gchar *idx = g_build_filename(src, "model_index.json", NULL);
        gchar *oidx = g_build_filename(part, "model_index.json", NULL);
        char *real = NULL;
        ok = (unclip__model_file_resolve(idx, &real, &err) == UNCLIP_OK || fail("%s", err.msg)) &&
             copy_small(real, oidx, &c);
        unclip__free(real);
        g_free(idx);
        g_free(oidx);
    }
    for (int32_t i = 0; ok && i < unclip__model_dir_count(d); i++) {
        const struct unclip_component *comp = unclip__model_dir_at(d, i);
        if (!unclip__model_dir_has(d, comp->name)) {
            if (!c.quiet)
                fprintf(stderr, "%s: listed in model_index.json but absent; skipped\n",
                        comp->name);
            continue;
        }
        ok = convert_component(d, comp->name, part, &c);
    }
    if (ok) {
        g_unlink(marker);
        if (rename(part, dst) != 0)
            ok = fail("cannot rename %s to %s: %s", part, dst, g_strerror(errno));
    }
    if (!ok)
        remove_tree(part);
    if (ok && !c.quiet)
        printf("%s -> %s: %d files, %d tensors to fp16 (%d kept), %.1f MB -> %.1f MB\n", src,
               dst, (int)c.n_files, (int)c.n_converted, (int)c.n_kept, c.in_bytes / 1e6,
               c.out_bytes / 1e6);
    g_free(marker);
    g_free(part);
    unclip__model_dir_free(d);
    unclip__free(src);
    return ok ? 0 : 1;
}
