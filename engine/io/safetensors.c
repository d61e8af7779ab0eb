#include "io/safetensors.h"

#include "core/alloc.h"
#include "io/json.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor bytes are read in place with memcpy; the format is little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors reading assumes a little-endian host"
#endif

struct unclip_st_file {
    char *path;
    GMappedFile *map;              /* NULL for unclip__st_open_memory */
    const uint8_t *bytes;
    uint64_t size;
    JsonNode *root;                /* header; owns the name and metadata strings */
    struct unclip_st_tensor *tensors;
    int32_t n_tensors;
    GHashTable *by_name;           /* name -> index + 1 */
    const char **meta_keys;
    const char **meta_values;
    int32_t n_meta;
};

static const char *const dtype_names[UNCLIP_DT_N] = {"F32", "F16", "BF16", "I64",
                                                     "I32", "U8",  "BOOL"};

/* dtypes of the safetensors format that the engine does not read. */
static const char *const other_dtypes[] = {"F64", "I8", "I16", "U16", "U32", "U64",
                                           "F8_E4M3", "F8_E5M2", NULL};

const char *
unclip__st_shape_str(int32_t ndim, const int64_t *shape, char *buf, size_t size)
{
    if (!buf || size == 0)
        return buf;
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int32_t i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < size)
        snprintf(buf + k, size - k, "]");
    return buf;
}

static bool
ends_with_ci(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

bool
unclip__st_looks_like_checkpoint(const char *path, const void *head, uint64_t head_size)
{
    if (path) {
        static const char *const suffixes[] = {".bin", ".pt", ".pth", ".ckpt", ".pkl",
                                               ".pickle", NULL};
        for (int i = 0; suffixes[i]; i++)
            if (ends_with_ci(path, suffixes[i]))
                return true;
    }
    if (!head || head_size < 4)
        return false;
    const uint8_t *b = head;
    /* A real safetensors header starts with '{' right after the 8 length bytes, so a length
     * whose low bytes happen to equal a magic is not mistaken for a checkpoint. */
    bool json_follows = head_size > 8 && b[8] == '{';
    bool zip = b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4;
    bool pickle = b[0] == 0x80 && b[1] >= 2 && b[1] <= 5;
    return (zip || pickle) && !json_follows;
}

static unclip_status
refuse_checkpoint(const char *name, struct unclip_err *err)
{
    return unclip__fail(err, UNCLIP_E_FORMAT,
                        "%s: this is a PyTorch checkpoint (pickle/zip), not safetensors; it is "
                        "not loaded because unpickling can run code; convert it to safetensors "
                        "(e.g. save_pretrained(..., safe_serialization=True) in diffusers)",
                        name);
}

static uint64_t
read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int
cmp_offsets(const void *a, const void *b)
{
    const struct unclip_st_tensor *x = a, *y = b;
    if (x->file_offset != y->file_offset)
        return x->file_offset < y->file_offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static const char *
json_kind(JsonNode *n)
{
    if (!n)
        return "missing";
    switch (json_node_get_node_type(n)) {
    case JSON_NODE_OBJECT: return "an object";
    case JSON_NODE_ARRAY: return "an array";
    case JSON_NODE_NULL: return "null";
    case JSON_NODE_VALUE: {
        GType t = json_node_get_value_type(n);
        if (t == G_TYPE_INT64) return "an integer";
        if (t == G_TYPE_DOUBLE) return "a float";
        if (t == G_TYPE_BOOLEAN) return "a boolean";
        if (t == G_TYPE_STRING) return "a string";
        return "a value";
    }
    }
    return "a value";
}

static bool
is_int_node(JsonNode *n)
{
    return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64;
}

/* One tensor entry: fills t (name, dtype, shape, numel, nbytes, data offsets relative to the
 * data buffer in t->file_offset / t->nbytes for now). */
static unclip_status
parse_entry(const char *fname, const char *tname, JsonNode *node, uint64_t data_size,
            uint64_t data_start, struct unclip_st_tensor *t, struct unclip_err *err)
{
    if (!*tname)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: empty tensor name", fname);
    if (!JSON_NODE_HOLDS_OBJECT(node))
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': entry is %s, expected an "
                            "object with dtype, shape, data_offsets", fname, tname,
                            json_kind(node));
    JsonObject *o = json_node_get_object(node);
    t->name = tname;

    JsonNode *dn = json_object_get_member(o, "dtype");
    if (!dn || !JSON_NODE_HOLDS_VALUE(dn) || json_node_get_value_type(dn) != G_TYPE_STRING)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': 'dtype' is %s, expected a "
                            "string", fname, tname, json_kind(dn));
    const char *ds = json_node_get_string(dn);
    int dt = -1;
    for (int i = 0; i < UNCLIP_DT_N; i++)
        if (!strcmp(ds, dtype_names[i]))
            dt = i;
    if (dt < 0) {
        for (int i = 0; other_dtypes[i]; i++)
            if (!strcmp(ds, other_dtypes[i]))
                return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': unsupported dtype "
                                    "'%s' (F32, F16, BF16, I64, I32, U8, BOOL are read)", fname,
                                    tname, ds);
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': unknown dtype '%.64s'",
                            fname, tname, ds);
    }
    t->dtype = (enum unclip_dtype)dt;
    uint64_t esize = unclip__dtype_size(t->dtype);

    JsonNode *sn = json_object_get_member(o, "shape");
    if (!sn || !JSON_NODE_HOLDS_ARRAY(sn))
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': 'shape' is %s, expected an "
                            "array of integers", fname, tname, json_kind(sn));
    JsonArray *sa = json_node_get_array(sn);
    guint nd = json_array_get_length(sa);
    if (nd > UNCLIP_ST_MAX_DIMS)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': %u dimensions, at most %d "
                            "are supported", fname, tname, nd, UNCLIP_ST_MAX_DIMS);
    int64_t numel = 1;
    bool overflow = false;
    for (guint i = 0; i < nd; i++) {
        JsonNode *e = json_array_get_element(sa, i);
        if (!is_int_node(e))
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': shape[%u] is %s, "
                                "expected a non-negative integer", fname, tname, i,
                                json_kind(e));
        int64_t v = json_node_get_int(e);
        if (v < 0)
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': shape[%u] is %lld, "
                                "negative", fname, tname, i, (long long)v);
        t->shape[i] = v;
        /* Keep numel * esize representable; a zero dimension makes the product 0 anyway. */
        if (v != 0 && numel > (int64_t)(INT64_MAX / (int64_t)esize) / v)
            overflow = true;
        else
            numel *= v;
    }
    t->ndim = (int32_t)nd;
    char sbuf[160];
    bool has_zero = false;
    for (guint i = 0; i < nd; i++)
        has_zero |= t->shape[i] == 0;
    if (overflow && !has_zero)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': shape %s has more elements "
                            "than fit in 64 bits", fname, tname,
                            unclip__st_shape_str(t->ndim, t->shape, sbuf, sizeof sbuf));
    if (has_zero)
        numel = 0;
    t->numel = numel;

    JsonNode *on = json_object_get_member(o, "data_offsets");
    if (!on || !JSON_NODE_HOLDS_ARRAY(on))
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': 'data_offsets' is %s, "
                            "expected [begin, end]", fname, tname, json_kind(on));
    JsonArray *oa = json_node_get_array(on);
    if (json_array_get_length(oa) != 2)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': 'data_offsets' has %u "
                            "elements, expected [begin, end]", fname, tname,
                            json_array_get_length(oa));
    int64_t be[2];
    for (guint i = 0; i < 2; i++) {
        JsonNode *e = json_array_get_element(oa, i);
        if (!is_int_node(e))
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': data_offsets[%u] is %s, "
                                "expected an integer", fname, tname, i, json_kind(e));
        be[i] = json_node_get_int(e);
        if (be[i] < 0)
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': data_offsets[%u] is "
                                "%lld, negative", fname, tname, i, (long long)be[i]);
    }
    if (be[1] < be[0])
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] "
                            "are reversed", fname, tname, (long long)be[0], (long long)be[1]);
    if ((uint64_t)be[1] > data_size)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] "
                            "run past the end of the data (%llu bytes; file offset %llu)",
                            fname, tname, (long long)be[0], (long long)be[1],
                            (unsigned long long)data_size,
                            (unsigned long long)(data_start + (uint64_t)be[0]));
    uint64_t nbytes = (uint64_t)(be[1] - be[0]);
    uint64_t want = (uint64_t)numel * esize;
    if (nbytes != want)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': %llu bytes at file offset "
                            "%llu, but %s x shape %s needs %llu", fname, tname,
                            (unsigned long long)nbytes,
                            (unsigned long long)(data_start + (uint64_t)be[0]), ds,
                            unclip__st_shape_str(t->ndim, t->shape, sbuf, sizeof sbuf),
                            (unsigned long long)want);
    t->file_offset = (uint64_t)be[0]; /* relative for now; made absolute by the caller */
    t->nbytes = nbytes;
    return UNCLIP_OK;
}

static unclip_status
parse_metadata(struct unclip_st_file *f, JsonNode *node, struct unclip_err *err)
{
    if (!JSON_NODE_HOLDS_OBJECT(node))
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '__metadata__' is %s, expected an object "
                            "of strings", f->path, json_kind(node));
    JsonObject *o = json_node_get_object(node);
    GList *members = json_object_get_members(o);
    guint n = g_list_length(members);
    f->meta_keys = unclip__calloc(n ? n : 1, sizeof *f->meta_keys);
    f->meta_values = unclip__calloc(n ? n : 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) {
        g_list_free(members);
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", f->path);
    }
    for (GList *l = members; l; l = l->next) {
        const char *k = l->data;
        JsonNode *v = json_object_get_member(o, k);
        if (!v || !JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_STRING) {
            g_list_free(members);
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '__metadata__': '%s' is %s, expected "
                                "a string", f->path, k, json_kind(v));
        }
        f->meta_keys[f->n_meta] = k;
        f->meta_values[f->n_meta] = json_node_get_string(v);
        f->n_meta++;
    }
    g_list_free(members);
    return UNCLIP_OK;
}

/* Git without symlink support stores a link as a small file holding its target path. */
static bool
looks_like_link_text(const uint8_t *b, uint64_t size)
{
    if (size > 1024)
        return false;
    for (uint64_t i = 0; i < size; i++)
        if (b[i] < 0x20 || b[i] >= 0x7f)
            return false;
    return true;
}

/* Validates f->bytes[0..size) and builds the tensor table. */
static unclip_status
parse_file(struct unclip_st_file *f, struct unclip_err *err)
{
    const char *name = f->path;
    uint64_t size = f->size;
    if (unclip__st_looks_like_checkpoint(NULL, f->bytes, size))
        return refuse_checkpoint(name, err);
    if (size < 8)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: %llu bytes, shorter than the 8-byte "
                            "header length", name, (unsigned long long)size);
    uint64_t hlen = read_le64(f->bytes);
    if (hlen == 0)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: header length is 0", name);
    if (hlen > UNCLIP_ST_MAX_HEADER) {
        if (looks_like_link_text(f->bytes, size))
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: not safetensors but %llu bytes of "
                                "text ('%.*s'): a symbolic link stored as a text file? Copy the "
                                "model with its links (cp -r, tar, git with symlinks)", name,
                                (unsigned long long)size, (int)(size < 200 ? size : 200),
                                (const char *)f->bytes);
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: header length %llu is larger than the "
                            "%u bytes accepted", name, (unsigned long long)hlen,
                            UNCLIP_ST_MAX_HEADER);
    }
    if (hlen > size - 8)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: header length %llu runs past the end of "
                            "the file (%llu bytes)", name, (unsigned long long)hlen,
                            (unsigned long long)size);
    const char *htext = (const char *)f->bytes + 8;
    if (htext[0] != '{')
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: header does not start with '{' (byte 8 "
                            "is 0x%02x)", name, (unsigned char)htext[0]);
    unclip_status st = unclip__json_parse_strict(htext, (int64_t)hlen, name, &f->root, err);
    if (st != UNCLIP_OK)
        return st;

    uint64_t data_start = 8 + hlen;
    uint64_t data_size = size - data_start;
    JsonObject *o = json_node_get_object(f->root);
    GList *members = json_object_get_members(o);
    guint n = g_list_length(members);
    f->tensors = unclip__calloc(n ? n : 1, sizeof *f->tensors);
    f->by_name = g_hash_table_new(g_str_hash, g_str_equal);
    if (!f->tensors) {
        g_list_free(members);
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", name);
    }
    for (GList *l = members; l; l = l->next) {
        const char *k = l->data;
        JsonNode *v = json_object_get_member(o, k);
        if (!strcmp(k, "__metadata__")) {
            st = parse_metadata(f, v, err);
        } else {
            struct unclip_st_tensor *t = &f->tensors[f->n_tensors];
            st = parse_entry(name, k, v, data_size, data_start, t, err);
            if (st == UNCLIP_OK)
                f->n_tensors++;
        }
        if (st != UNCLIP_OK) {
            g_list_free(members);
            return st;
        }
    }
    g_list_free(members);

    /* The tensors must tile the data buffer exactly: sorted by offset, each one starts where
     * the previous ended, and the last ends at the end of the file. */
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_offsets);
    uint64_t expect = 0;
    const char *prev = NULL;
    for (int32_t i = 0; i < f->n_tensors; i++) {
        struct unclip_st_tensor *t = &f->tensors[i];
        uint64_t b = t->file_offset;
        if (b < expect)
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] "
                                "overlap tensor '%s' (which ends at %llu; file offset %llu)",
                                name, t->name, (unsigned long long)b,
                                (unsigned long long)(b + t->nbytes), prev,
                                (unsigned long long)expect,
                                (unsigned long long)(data_start + b));
        if (b > expect)
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: tensor '%s': gap of %llu unused bytes "
                                "before it (data bytes %llu..%llu; file offset %llu)", name,
                                t->name, (unsigned long long)(b - expect),
                                (unsigned long long)expect, (unsigned long long)b,
                                (unsigned long long)(data_start + expect));
        expect = b + t->nbytes;
        prev = t->name;
    }
    if (expect != data_size)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: %llu trailing bytes after the last tensor "
                            "(data bytes %llu..%llu; file offset %llu)", name,
                            (unsigned long long)(data_size - expect), (unsigned long long)expect,
                            (unsigned long long)data_size,
                            (unsigned long long)(data_start + expect));
    for (int32_t i = 0; i < f->n_tensors; i++) {
        struct unclip_st_tensor *t = &f->tensors[i];
        t->data = f->bytes + data_start + t->file_offset;
        t->file_offset += data_start;
        /* Names are unique here: the strict parser refuses repeated keys. */
        g_hash_table_insert(f->by_name, (gpointer)t->name, GINT_TO_POINTER(i + 1));
    }
    return UNCLIP_OK;
}

static unclip_status
new_file(const char *name, struct unclip_st_file **out, struct unclip_err *err)
{
    struct unclip_st_file *f = unclip__calloc(1, sizeof *f);
    if (!f || !(f->path = unclip__strdup(name))) {
        unclip__free(f);
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", name);
    }
    *out = f;
    return UNCLIP_OK;
}

unclip_status
unclip__st_open_memory(const void *bytes, uint64_t size, const char *name,
                       struct unclip_st_file **out, struct unclip_err *err)
{
    if ((!bytes && size) || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors: NULL argument");
    if (!name)
        name = "<memory>";
    struct unclip_st_file *f;
    unclip_status st = new_file(name, &f, err);
    if (st != UNCLIP_OK)
        return st;
    static const uint8_t empty[1];
    f->bytes = bytes ? bytes : empty;
    f->size = size;
    st = parse_file(f, err);
    if (st != UNCLIP_OK) {
        unclip__st_close(f);
        return st;
    }
    *out = f;
    return UNCLIP_OK;
}

unclip_status
unclip__st_open(const char *path, struct unclip_st_file **out, struct unclip_err *err)
{
    if (!path || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors: NULL argument");
    if (unclip__st_looks_like_checkpoint(path, NULL, 0))
        return refuse_checkpoint(path, err);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return unclip__fail(err, UNCLIP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return unclip__fail(err, UNCLIP_E_IO, "%s: not a regular file", path);
    if (sb.st_size < 8)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: %lld bytes, shorter than the 8-byte "
                            "header length", path, (long long)sb.st_size);
    struct unclip_st_file *f;
    unclip_status st = new_file(path, &f, err);
    if (st != UNCLIP_OK)
        return st;
    GError *gerr = NULL;
    f->map = g_mapped_file_new(path, FALSE, &gerr);
    if (!f->map) {
        st = unclip__fail(err, UNCLIP_E_IO, "%s: cannot map: %s", path,
                          gerr ? gerr->message : "unknown error");
        g_clear_error(&gerr);
        unclip__st_close(f);
        return st;
    }
    f->bytes = (const uint8_t *)g_mapped_file_get_contents(f->map);
    f->size = g_mapped_file_get_length(f->map);
    if (!f->bytes || f->size < 8) {
        /* The file shrank between stat and map. */
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: %llu bytes, shorter than the 8-byte header "
                          "length", path, (unsigned long long)f->size);
        unclip__st_close(f);
        return st;
    }
    st = parse_file(f, err);
    if (st != UNCLIP_OK) {
        unclip__st_close(f);
        return st;
    }
    *out = f;
    return UNCLIP_OK;
}

void
unclip__st_close(struct unclip_st_file *f)
{
    if (!f)
        return;
    if (f->by_name)
        g_hash_table_unref(f->by_name);
    unclip__free(f->tensors);
    unclip__free(f->meta_keys);
    unclip__free(f->meta_values);
    if (f->root)
        json_node_unref(f->root);
    if (f->map)
        g_mapped_file_unref(f->map);
    unclip__free(f->path);
    unclip__free(f);
}

const char *
unclip__st_path(const struct unclip_st_file *f)
{
    return f ? f->path : NULL;
}

int32_t
unclip__st_count(const struct unclip_st_file *f)
{
    return f ? f->n_tensors : 0;
}

const struct unclip_st_tensor *
unclip__st_at(const struct unclip_st_file *f, int32_t i)
{
    if (!f || i < 0 || i >= f->n_tensors)
        return NULL;
    return &f->tensors[i];
}

const struct unclip_st_tensor *
unclip__st_find(const struct unclip_st_file *f, const char *name)
{
    if (!f || !name || !f->by_name)
        return NULL;
    int idx = GPOINTER_TO_INT(g_hash_table_lookup(f->by_name, name));
    return idx > 0 ? &f->tensors[idx - 1] : NULL;
}

const char *
unclip__st_metadata(const struct unclip_st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    for (int32_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key))
            return f->meta_values[i];
    return NULL;
}

int32_t
unclip__st_metadata_count(const struct unclip_st_file *f)
{
    return f ? f->n_meta : 0;
}

bool
unclip__st_metadata_at(const struct unclip_st_file *f, int32_t i, const char **key,
                       const char **value)
{
    if (!f || i < 0 || i >= f->n_meta)
        return false;
    if (key)
        *key = f->meta_keys[i];
    if (value)
        *value = f->meta_values[i];
    return true;
}

unclip_status
unclip__st_to_f32(const struct unclip_st_tensor *t, float *dst, struct unclip_err *err)
{
    if (!t || (!dst && t->numel))
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors: NULL argument");
    const uint8_t *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case UNCLIP_DT_F32:
        if (n)
            memcpy(dst, p, (size_t)n * 4);
        break;
    case UNCLIP_DT_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = unclip__f16_to_f32(h);
        }
        break;
    case UNCLIP_DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = unclip__bf16_to_f32(h);
        }
        break;
    case UNCLIP_DT_I64:
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            dst[i] = (float)v;
        }
        break;
    case UNCLIP_DT_I32:
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = (float)v;
        }
        break;
    case UNCLIP_DT_U8:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)p[i];
        break;
    case UNCLIP_DT_BOOL:
        for (int64_t i = 0; i < n; i++)
            dst[i] = p[i] ? 1.0f : 0.0f;
        break;
    default:
        return unclip__fail(err, UNCLIP_E_ARG, "tensor '%s': bad dtype %d", t->name,
                            (int)t->dtype);
    }
    return UNCLIP_OK;
}

unclip_status
unclip__st_to_i64(const struct unclip_st_tensor *t, int64_t *dst, struct unclip_err *err)
{
    if (!t || (!dst && t->numel))
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors: NULL argument");
    const uint8_t *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case UNCLIP_DT_I64:
        if (n)
            memcpy(dst, p, (size_t)n * 8);
        break;
    case UNCLIP_DT_I32:
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = v;
        }
        break;
    case UNCLIP_DT_U8:
        for (int64_t i = 0; i < n; i++)
            dst[i] = p[i];
        break;
    case UNCLIP_DT_BOOL:
        for (int64_t i = 0; i < n; i++)
            dst[i] = p[i] ? 1 : 0;
        break;
    default:
        return unclip__fail(err, UNCLIP_E_FORMAT, "tensor '%s': dtype %s, expected an integer "
                            "type (I64, I32, U8, BOOL)", t->name,
                            unclip__dtype_name(t->dtype) ? unclip__dtype_name(t->dtype) : "?");
    }
    return UNCLIP_OK;
}

/* ---- writer -------------------------------------------------------------------------------- */

struct w_entry {
    char *name;
    enum unclip_dtype dtype;
    int32_t ndim;
    int64_t shape[UNCLIP_ST_MAX_DIMS];
    uint8_t *data;
    uint64_t nbytes;
};

struct unclip_st_writer {
    struct w_entry *e;
    int32_t n, cap;
    char **mkeys, **mvals;
    int32_t nm, mcap;
};

unclip_status
unclip__st_writer_new(struct unclip_st_writer **out, struct unclip_err *err)
{
    if (!out)
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: NULL argument");
    struct unclip_st_writer *w = unclip__calloc(1, sizeof *w);
    if (!w)
        return unclip__fail(err, UNCLIP_E_NOMEM, "safetensors writer: out of host memory");
    *out = w;
    return UNCLIP_OK;
}

void
unclip__st_writer_free(struct unclip_st_writer *w)
{
    if (!w)
        return;
    for (int32_t i = 0; i < w->n; i++) {
        unclip__free(w->e[i].name);
        unclip__free(w->e[i].data);
    }
    for (int32_t i = 0; i < w->nm; i++) {
        unclip__free(w->mkeys[i]);
        unclip__free(w->mvals[i]);
    }
    unclip__free(w->e);
    unclip__free(w->mkeys);
    unclip__free(w->mvals);
    unclip__free(w);
}

/* Validates name/dtype/shape and reserves an entry with nbytes of storage. */
static unclip_status
w_reserve(struct unclip_st_writer *w, const char *name, enum unclip_dtype dtype, int32_t ndim,
          const int64_t *shape, struct w_entry **out, struct unclip_err *err)
{
    if (!w || !name || (ndim > 0 && !shape))
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: NULL argument");
    if (!*name || !strcmp(name, "__metadata__"))
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: bad tensor name '%s'", name);
    if (!g_utf8_validate(name, -1, NULL))
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: tensor name is not UTF-8");
    if ((unsigned)dtype >= UNCLIP_DT_N)
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: tensor '%s': bad dtype %d",
                            name, (int)dtype);
    if (ndim < 0 || ndim > UNCLIP_ST_MAX_DIMS)
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: tensor '%s': ndim %d",
                            name, (int)ndim);
    for (int32_t i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name))
            return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: duplicate tensor '%s'",
                                name);
    uint64_t esize = unclip__dtype_size(dtype);
    uint64_t numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: tensor '%s': shape[%d] "
                                "is negative", name, (int)i);
        if (shape[i] && numel > ((uint64_t)INT64_MAX / esize) / (uint64_t)shape[i])
            return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: tensor '%s': too large",
                                name);
        numel *= (uint64_t)shape[i];
    }
    uint64_t nbytes = numel * esize;
    if (nbytes > SIZE_MAX)
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: tensor '%s': too large",
                            name);
    if (w->n == w->cap) {
        int32_t cap = w->cap ? w->cap * 2 : 16;
        struct w_entry *ne = unclip__realloc(w->e, (size_t)cap * sizeof *ne);
        if (!ne)
            return unclip__fail(err, UNCLIP_E_NOMEM, "safetensors writer: out of host memory");
        w->e = ne;
        w->cap = cap;
    }
    struct w_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = unclip__strdup(name);
    e->data = unclip__malloc(nbytes ? (size_t)nbytes : 1);
    if (!e->name || !e->data) {
        unclip__free(e->name);
        unclip__free(e->data);
        return unclip__fail(err, UNCLIP_E_NOMEM, "safetensors writer: tensor '%s': out of host "
                            "memory (%llu bytes)", name, (unsigned long long)nbytes);
    }
    e->dtype = dtype;
    e->ndim = ndim;
    for (int32_t i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->nbytes = nbytes;
    *out = e;
    return UNCLIP_OK;
}

unclip_status
unclip__st_writer_add(struct unclip_st_writer *w, const char *name, enum unclip_dtype dtype,
                      int32_t ndim, const int64_t *shape, const void *data,
                      struct unclip_err *err)
{
    struct w_entry *e;
    unclip_status st = w_reserve(w, name, dtype, ndim, shape, &e, err);
    if (st != UNCLIP_OK)
        return st;
    if (e->nbytes && !data) {
        unclip__free(e->name);
        unclip__free(e->data);
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: tensor '%s': NULL data",
                            name);
    }
    if (e->nbytes)
        memcpy(e->data, data, (size_t)e->nbytes);
    w->n++;
    return UNCLIP_OK;
}

unclip_status
unclip__st_writer_add_f32(struct unclip_st_writer *w, const char *name, enum unclip_dtype dtype,
                          int32_t ndim, const int64_t *shape, const float *src,
                          struct unclip_err *err)
{
    if (dtype != UNCLIP_DT_F32 && dtype != UNCLIP_DT_F16 && dtype != UNCLIP_DT_BF16)
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: tensor '%s': add_f32 "
                            "stores F32, F16 or BF16", name ? name : "");
    struct w_entry *e;
    unclip_status st = w_reserve(w, name, dtype, ndim, shape, &e, err);
    if (st != UNCLIP_OK)
        return st;
    uint64_t n = e->nbytes / unclip__dtype_size(dtype);
    if (n && !src) {
        unclip__free(e->name);
        unclip__free(e->data);
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: tensor '%s': NULL data",
                            name);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (dtype == UNCLIP_DT_F32) {
            memcpy(e->data + 4 * i, &src[i], 4);
        } else {
            uint16_t h = dtype == UNCLIP_DT_F16 ? unclip__f32_to_f16(src[i])
                                                : unclip__f32_to_bf16(src[i]);
            memcpy(e->data + 2 * i, &h, 2);
        }
    }
    w->n++;
    return UNCLIP_OK;
}

unclip_status
unclip__st_writer_set_metadata(struct unclip_st_writer *w, const char *key, const char *value,
                               struct unclip_err *err)
{
    if (!w || !key || !value)
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: NULL argument");
    if (!g_utf8_validate(key, -1, NULL) || !g_utf8_validate(value, -1, NULL))
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: metadata is not UTF-8");
    char *v = unclip__strdup(value);
    if (!v)
        return unclip__fail(err, UNCLIP_E_NOMEM, "safetensors writer: out of host memory");
    for (int32_t i = 0; i < w->nm; i++) {
        if (!strcmp(w->mkeys[i], key)) {
            unclip__free(w->mvals[i]);
            w->mvals[i] = v;
            return UNCLIP_OK;
        }
    }
    if (w->nm == w->mcap) {
        int32_t cap = w->mcap ? w->mcap * 2 : 4;
        char **nk = unclip__realloc(w->mkeys, (size_t)cap * sizeof *nk);
        if (nk)
            w->mkeys = nk;
        char **nv = nk ? unclip__realloc(w->mvals, (size_t)cap * sizeof *nv) : NULL;
        if (nv)
            w->mvals = nv;
        if (!nk || !nv) {
            unclip__free(v);
            return unclip__fail(err, UNCLIP_E_NOMEM, "safetensors writer: out of host memory");
        }
        w->mcap = cap;
    }
    char *k = unclip__strdup(key);
    if (!k) {
        unclip__free(v);
        return unclip__fail(err, UNCLIP_E_NOMEM, "safetensors writer: out of host memory");
    }
    w->mkeys[w->nm] = k;
    w->mvals[w->nm] = v;
    w->nm++;
    return UNCLIP_OK;
}

static bool
write_all(int fd, const void *buf, uint64_t n)
{
    const uint8_t *p = buf;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t k = write(fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += k;
        n -= (uint64_t)k;
    }
    return true;
}

unclip_status
unclip__st_writer_write(struct unclip_st_writer *w, const char *path, struct unclip_err *err)
{
    if (!w || !path)
        return unclip__fail(err, UNCLIP_E_ARG, "safetensors writer: NULL argument");
    /* Larger elements first (stable), so every tensor starts aligned to its element size. */
    int32_t *order = unclip__calloc(w->n ? (size_t)w->n : 1, sizeof *order);
    if (!order)
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", path);
    int32_t k = 0;
    for (size_t sz = 8; sz >= 1; sz /= 2)
        for (int32_t i = 0; i < w->n; i++)
            if (unclip__dtype_size(w->e[i].dtype) == sz)
                order[k++] = i;

    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    if (w->nm) {
        json_builder_set_member_name(b, "__metadata__");
        json_builder_begin_object(b);
        for (int32_t i = 0; i < w->nm; i++) {
            json_builder_set_member_name(b, w->mkeys[i]);
            json_builder_add_string_value(b, w->mvals[i]);
        }
        json_builder_end_object(b);
    }
    uint64_t off = 0;
    for (int32_t j = 0; j < w->n; j++) {
        const struct w_entry *e = &w->e[order[j]];
        json_builder_set_member_name(b, e->name);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "dtype");
        json_builder_add_string_value(b, unclip__dtype_name(e->dtype));
        json_builder_set_member_name(b, "shape");
        json_builder_begin_array(b);
        for (int32_t d = 0; d < e->ndim; d++)
            json_builder_add_int_value(b, e->shape[d]);
        json_builder_end_array(b);
        json_builder_set_member_name(b, "data_offsets");
        json_builder_begin_array(b);
        json_builder_add_int_value(b, (gint64)off);
        json_builder_add_int_value(b, (gint64)(off + e->nbytes));
        json_builder_end_array(b);
        json_builder_end_object(b);
        off += e->nbytes;
    }
    json_builder_end_object(b);
    JsonNode *root = json_builder_get_root(b);
    g_object_unref(b);
    JsonGenerator *gen = json_generator_new();
    json_generator_set_root(gen, root);
    gsize hlen0 = 0;
    gchar *htext = json_generator_to_data(gen, &hlen0);
    g_object_unref(gen);
    json_node_unref(root);

    unclip_status st = UNCLIP_OK;
    uint64_t hlen = (hlen0 + 7) & ~(uint64_t)7;
    char *header = unclip__malloc((size_t)hlen + 8);
    char *tmp = NULL;
    int fd = -1;
    if (!header) {
        st = unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", path);
        goto done;
    }
    for (int i = 0; i < 8; i++)
        header[i] = (char)((hlen >> (8 * i)) & 0xff);
    memcpy(header + 8, htext, hlen0);
    memset(header + 8 + hlen0, ' ', (size_t)(hlen - hlen0));

    size_t plen = strlen(path);
    tmp = unclip__malloc(plen + 16);
    if (!tmp) {
        st = unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", path);
        goto done;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", 12);
    fd = mkstemp(tmp);
    if (fd < 0) {
        st = unclip__fail(err, UNCLIP_E_IO, "%s: cannot create a temporary file: %s", path,
                          strerror(errno));
        goto done;
    }
    bool ok = write_all(fd, header, hlen + 8);
    for (int32_t j = 0; ok && j < w->n; j++)
        ok = write_all(fd, w->e[order[j]].data, w->e[order[j]].nbytes);
    /* mkstemp makes 0600; a model or embedding file is ordinary data. */
    if (ok)
        ok = fchmod(fd, 0644) == 0;
    if (ok)
        ok = fsync(fd) == 0;
    if (!ok) {
        st = unclip__fail(err, UNCLIP_E_IO, "%s: write failed: %s", path, strerror(errno));
        close(fd);
        fd = -1;
        unlink(tmp);
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        st = unclip__fail(err, UNCLIP_E_IO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        st = unclip__fail(err, UNCLIP_E_IO, "%s: cannot rename the temporary file: %s", path,
                          strerror(errno));
        unlink(tmp);
        goto done;
    }
done:
    g_free(htext);
    unclip__free(header);
    unclip__free(tmp);
    unclip__free(order);
    return st;
}
