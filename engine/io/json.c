#include "io/json.h"

#include "core/alloc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct unclip_json {
    char *name;
    JsonNode *root; /* object */
};

/* ---- strict parsing -------------------------------------------------------------------------
 *
 * json-glib builds the tree, but its GScanner-based lexer accepts things that are not JSON and
 * that would change meaning silently: integers past int64 wrap around (2^64 + 8 reads as 8),
 * text after the root value is ignored, comments, hex numbers, leading zeros, ".5", single
 * quotes and raw control characters in strings are taken, and a repeated key keeps its last
 * value. json-glib's recursive parser also overflows the stack on deep nesting. The lexical
 * pass below only classifies tokens and counts nesting (it builds nothing); json-glib still
 * does the parsing. Duplicate keys are caught through the parser's "object-member" signal. */

static bool
is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool
is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unclip_status
lex_fail(struct unclip_err *err, const char *name, size_t at, const char *what)
{
    return unclip__fail(err, UNCLIP_E_FORMAT, "%s: not valid JSON at byte %zu: %s", name, at,
                        what);
}

/* Number token at t[*i]: JSON grammar, and integers must fit in int64. */
static unclip_status
lex_number(const char *t, size_t n, size_t *i, const char *name, struct unclip_err *err)
{
    size_t s = *i, k = *i;
    bool neg = false, is_int = true;
    if (t[k] == '-') {
        neg = true;
        k++;
    }
    if (k >= n || t[k] < '0' || t[k] > '9')
        return lex_fail(err, name, s, "malformed number");
    if (t[k] == '0' && k + 1 < n && t[k + 1] >= '0' && t[k + 1] <= '9')
        return lex_fail(err, name, s, "number with a leading zero");
    /* Magnitude limit: 2^63 - 1, or 2^63 when negative. */
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    bool overflow = false;
    while (k < n && t[k] >= '0' && t[k] <= '9') {
        unsigned d = (unsigned)(t[k] - '0');
        if (v > (lim - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
        k++;
    }
    if (k < n && t[k] == '.') {
        is_int = false;
        k++;
        if (k >= n || t[k] < '0' || t[k] > '9')
            return lex_fail(err, name, s, "malformed number");
        while (k < n && t[k] >= '0' && t[k] <= '9')
            k++;
    }
    if (k < n && (t[k] == 'e' || t[k] == 'E')) {
        is_int = false;
        k++;
        if (k < n && (t[k] == '+' || t[k] == '-'))
            k++;
        if (k >= n || t[k] < '0' || t[k] > '9')
            return lex_fail(err, name, s, "malformed number");
        while (k < n && t[k] >= '0' && t[k] <= '9')
            k++;
    }
    if (is_int && overflow)
        return lex_fail(err, name, s, "integer does not fit in 64 bits");
    *i = k;
    return UNCLIP_OK;
}

static unclip_status
lex_check(const char *t, size_t n, const char *name, struct unclip_err *err)
{
    const char *end = NULL;
    if (!g_utf8_validate(t, (gssize)n, &end))
        return lex_fail(err, name, (size_t)(end - t), "not UTF-8 (or a NUL byte)");
    size_t i = 0;
    while (i < n && is_ws(t[i]))
        i++;
    if (i >= n)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: empty, expected a JSON object", name);
    if (n - i >= 3 && !memcmp(t + i, "\xef\xbb\xbf", 3))
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: not a JSON object: starts with a UTF-8 "
                            "byte order mark (save it without BOM)", name);
    if (t[i] != '{')
        return unclip__fail(err, UNCLIP_E_FORMAT,
                            "%s: not a JSON object (starts with '%c' at byte %zu)", name,
                            (t[i] >= 0x20 && t[i] < 0x7f) ? t[i] : '?', i);
    int64_t depth = 0;
    bool closed = false;
    while (i < n) {
        char c = t[i];
        if (closed) {
            if (!is_ws(c))
                return lex_fail(err, name, i, "text after the end of the object");
            i++;
            continue;
        }
        if (is_ws(c) || c == ':' || c == ',') {
            i++;
        } else if (c == '{' || c == '[') {
            /* json-glib parses recursively: a header of 100000 '[' overflows the stack. */
            if (++depth > UNCLIP_JSON_MAX_DEPTH)
                return lex_fail(err, name, i, "nested deeper than " G_STRINGIFY(
                                                  UNCLIP_JSON_MAX_DEPTH) " levels");
            i++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return lex_fail(err, name, i, "unbalanced brackets");
            if (depth == 0)
                closed = true;
            i++;
        } else if (c == '"') {
            i++;
            for (;;) {
                if (i >= n)
                    return lex_fail(err, name, n, "unterminated string");
                unsigned char d = (unsigned char)t[i];
                if (d == '"') {
                    i++;
                    break;
                }
                if (d < 0x20)
                    return lex_fail(err, name, i, "control character inside a string");
                if (d == '\\') {
                    if (i + 1 >= n)
                        return lex_fail(err, name, i, "unterminated string");
                    char e = t[i + 1];
                    if (e == 'u') {
                        if (i + 5 >= n || !is_hex(t[i + 2]) || !is_hex(t[i + 3]) ||
                            !is_hex(t[i + 4]) || !is_hex(t[i + 5]))
                            return lex_fail(err, name, i, "bad \\u escape");
                        /* A NUL would cut C strings (names) short: refuse it. */
                        if (!strncmp(t + i + 2, "0000", 4))
                            return lex_fail(err, name, i, "\\u0000 inside a string");
                        i += 6;
                    } else if (strchr("\"\\/bfnrt", e) && e != '\0') {
                        i += 2;
                    } else {
                        return lex_fail(err, name, i, "bad escape in a string");
                    }
                    continue;
                }
                i++;
            }
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            unclip_status st = lex_number(t, n, &i, name, err);
            if (st != UNCLIP_OK)
                return st;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            size_t s = i;
            while (i < n && ((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
                             (t[i] >= '0' && t[i] <= '9') || t[i] == '_'))
                i++;
            size_t l = i - s;
            if (!((l == 4 && !memcmp(t + s, "true", 4)) || (l == 5 && !memcmp(t + s, "false", 5)) ||
                  (l == 4 && !memcmp(t + s, "null", 4))))
                return lex_fail(err, name, s, "unexpected word (only true, false, null)");
        } else {
            char what[64];
            if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
                snprintf(what, sizeof what, "unexpected character '%c'", c);
            else
                snprintf(what, sizeof what, "unexpected byte 0x%02x", (unsigned char)c);
            return lex_fail(err, name, i, what);
        }
    }
    if (!closed)
        return lex_fail(err, name, n, "unterminated object");
    return UNCLIP_OK;
}

struct dup_state {
    GHashTable *seen;  /* JsonObject* -> GHashTable of member names (owned copies) */
    char *dup;         /* first repeated key (owned) or NULL */
};

static void
on_member(JsonParser *parser, JsonObject *object, const gchar *member, gpointer user)
{
    (void)parser;
    struct dup_state *ds = user;
    if (ds->dup)
        return;
    GHashTable *names = g_hash_table_lookup(ds->seen, object);
    if (!names) {
        names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_hash_table_insert(ds->seen, object, names);
    }
    if (g_hash_table_contains(names, member))
        ds->dup = g_strdup(member);
    else
        g_hash_table_add(names, g_strdup(member));
}

unclip_status
unclip__json_parse_strict(const char *text, int64_t len, const char *name, JsonNode **root,
                          struct unclip_err *err)
{
    if (!text || !root)
        return unclip__fail(err, UNCLIP_E_ARG, "json: NULL argument");
    if (!name)
        name = "<json>";
    size_t n = len < 0 ? strlen(text) : (size_t)len;
    if (len >= 0 && (uint64_t)len > G_MAXSSIZE)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: too large", name);
    unclip_status st = lex_check(text, n, name, err);
    if (st != UNCLIP_OK)
        return st;

    struct dup_state ds = {
        .seen = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                      (GDestroyNotify)g_hash_table_unref),
        .dup = NULL,
    };
    JsonParser *parser = json_parser_new_immutable();
    g_signal_connect(parser, "object-member", G_CALLBACK(on_member), &ds);
    GError *gerr = NULL;
    if (!json_parser_load_from_data(parser, text, (gssize)n, &gerr)) {
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: not valid JSON: %s", name,
                          gerr ? gerr->message : "parse error");
        g_clear_error(&gerr);
    } else if (ds.dup) {
        st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: duplicate key '%s'", name, ds.dup);
    } else {
        JsonNode *r = json_parser_get_root(parser);
        if (!r || !JSON_NODE_HOLDS_OBJECT(r))
            st = unclip__fail(err, UNCLIP_E_FORMAT, "%s: not a JSON object", name);
        else
            *root = json_node_ref(r);
    }
    g_object_unref(parser);
    g_hash_table_unref(ds.seen);
    g_free(ds.dup);
    return st;
}

/* ---- documents ---------------------------------------------------------------------------- */

unclip_status
unclip__json_parse(const char *text, int64_t len, const char *display_name,
                   struct unclip_json **out, struct unclip_err *err)
{
    if (!text || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "json: NULL argument");
    const char *name = display_name ? display_name : "<json>";
    struct unclip_json *j = unclip__calloc(1, sizeof *j);
    if (!j || !(j->name = unclip__strdup(name))) {
        unclip__free(j);
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", name);
    }
    unclip_status st = unclip__json_parse_strict(text, len, name, &j->root, err);
    if (st != UNCLIP_OK) {
        unclip__json_free(j);
        return st;
    }
    *out = j;
    return UNCLIP_OK;
}

unclip_status
unclip__json_load(const char *path, const char *display_name, struct unclip_json **out,
                  struct unclip_err *err)
{
    if (!path || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "json: NULL argument");
    const char *name = display_name ? display_name : path;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return unclip__fail(err, UNCLIP_E_MODEL, "%s: file not found (%s)", name, path);
        return unclip__fail(err, UNCLIP_E_IO, "%s: cannot read %s: %s", name, path,
                            strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return unclip__fail(err, UNCLIP_E_IO, "%s: %s is not a regular file", name, path);
    if ((uint64_t)sb.st_size > UNCLIP_JSON_MAX_BYTES)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: %lld bytes, larger than the %u accepted",
                            name, (long long)sb.st_size, UNCLIP_JSON_MAX_BYTES);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return unclip__fail(err, UNCLIP_E_IO, "%s: cannot open %s: %s", name, path,
                            strerror(errno));
    size_t cap = (size_t)sb.st_size + 1;
    char *buf = unclip__malloc(cap);
    if (!buf) {
        fclose(fp);
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", name);
    }
    /* Read at most the size seen by stat (+1 to notice growth). */
    size_t got = fread(buf, 1, cap, fp);
    bool rerr = ferror(fp) != 0;
    fclose(fp);
    if (rerr || got == cap) {
        unclip__free(buf);
        return unclip__fail(err, UNCLIP_E_IO, "%s: read error on %s%s", name, path,
                            rerr ? "" : " (file changed while reading)");
    }
    unclip_status st = unclip__json_parse(buf, (int64_t)got, name, out, err);
    unclip__free(buf);
    return st;
}

void
unclip__json_free(struct unclip_json *j)
{
    if (!j)
        return;
    if (j->root)
        json_node_unref(j->root);
    unclip__free(j->name);
    unclip__free(j);
}

const char *
unclip__json_name(const struct unclip_json *j)
{
    return j ? j->name : NULL;
}

JsonObject *
unclip__json_root(const struct unclip_json *j)
{
    return j && j->root ? json_node_get_object(j->root) : NULL;
}

/* Node at a dotted path; NULL when absent (or a step is not an object). */
static JsonNode *
lookup(const struct unclip_json *j, const char *key)
{
    if (!j || !j->root)
        return NULL;
    if (!key || !*key)
        return j->root;
    JsonNode *node = j->root;
    const char *p = key;
    char part[256];
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (l == 0 || l >= sizeof part || !JSON_NODE_HOLDS_OBJECT(node))
            return NULL;
        memcpy(part, p, l);
        part[l] = '\0';
        JsonObject *o = json_node_get_object(node);
        node = json_object_get_member(o, part);
        if (!node)
            return NULL;
        if (!dot)
            return node;
        p = dot + 1;
    }
}

static enum unclip_json_type
node_type(JsonNode *n)
{
    if (!n)
        return UNCLIP_JSON_ABSENT;
    switch (json_node_get_node_type(n)) {
    case JSON_NODE_NULL:
        return UNCLIP_JSON_NULL;
    case JSON_NODE_OBJECT:
        return UNCLIP_JSON_OBJECT;
    case JSON_NODE_ARRAY:
        return UNCLIP_JSON_ARRAY;
    case JSON_NODE_VALUE: {
        GType t = json_node_get_value_type(n);
        if (t == G_TYPE_INT64)
            return UNCLIP_JSON_INT;
        if (t == G_TYPE_DOUBLE)
            return UNCLIP_JSON_FLOAT;
        if (t == G_TYPE_BOOLEAN)
            return UNCLIP_JSON_BOOL;
        if (t == G_TYPE_STRING)
            return UNCLIP_JSON_STRING;
        return UNCLIP_JSON_ABSENT;
    }
    }
    return UNCLIP_JSON_ABSENT;
}

static const char *
type_word(enum unclip_json_type t)
{
    switch (t) {
    case UNCLIP_JSON_ABSENT: return "absent";
    case UNCLIP_JSON_NULL: return "null";
    case UNCLIP_JSON_BOOL: return "a boolean";
    case UNCLIP_JSON_INT: return "an integer";
    case UNCLIP_JSON_FLOAT: return "a float";
    case UNCLIP_JSON_STRING: return "a string";
    case UNCLIP_JSON_ARRAY: return "an array";
    case UNCLIP_JSON_OBJECT: return "an object";
    }
    return "unknown";
}

enum unclip_json_type
unclip__json_type(const struct unclip_json *j, const char *key)
{
    return node_type(lookup(j, key));
}

bool
unclip__json_has(const struct unclip_json *j, const char *key)
{
    enum unclip_json_type t = unclip__json_type(j, key);
    return t != UNCLIP_JSON_ABSENT && t != UNCLIP_JSON_NULL;
}

/* Finds key; on absence/null: returns 1 when optional (use the default), fails when required. */
static int
fetch(const struct unclip_json *j, const char *key, bool required, const char *expected,
      JsonNode **node, unclip_status *st, struct unclip_err *err)
{
    if (!j) {
        *st = unclip__fail(err, UNCLIP_E_ARG, "json: NULL document");
        return -1;
    }
    JsonNode *n = lookup(j, key);
    enum unclip_json_type t = node_type(n);
    if (t == UNCLIP_JSON_ABSENT || t == UNCLIP_JSON_NULL) {
        if (!required)
            return 1;
        if (t == UNCLIP_JSON_ABSENT)
            *st = unclip__fail(err, UNCLIP_E_MODEL, "%s: missing key '%s' (%s)", j->name, key,
                               expected);
        else
            *st = unclip__fail(err, UNCLIP_E_MODEL, "%s: '%s' is null, expected %s", j->name,
                               key, expected);
        return -1;
    }
    *node = n;
    return 0;
}

static unclip_status
get_int(const struct unclip_json *j, const char *key, bool required, int64_t def, int64_t min,
        int64_t max, int64_t *out, struct unclip_err *err)
{
    JsonNode *n = NULL;
    unclip_status st = UNCLIP_OK;
    int r = fetch(j, key, required, "an integer", &n, &st, err);
    if (r < 0)
        return st;
    if (r > 0) {
        if (out)
            *out = def;
        return UNCLIP_OK;
    }
    enum unclip_json_type t = node_type(n);
    if (t != UNCLIP_JSON_INT)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is %s, expected an integer %lld..%lld",
                            j->name, key, type_word(t), (long long)min, (long long)max);
    int64_t v = json_node_get_int(n);
    if (v < min || v > max)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is %lld, expected %lld..%lld",
                            j->name, key, (long long)v, (long long)min, (long long)max);
    if (out)
        *out = v;
    return UNCLIP_OK;
}

unclip_status
unclip__json_int(const struct unclip_json *j, const char *key, int64_t min, int64_t max,
                 int64_t *out, struct unclip_err *err)
{
    return get_int(j, key, true, 0, min, max, out, err);
}

unclip_status
unclip__json_int_opt(const struct unclip_json *j, const char *key, int64_t def, int64_t min,
                     int64_t max, int64_t *out, struct unclip_err *err)
{
    return get_int(j, key, false, def, min, max, out, err);
}

unclip_status
unclip__json_i32(const struct unclip_json *j, const char *key, int32_t min, int32_t max,
                 int32_t *out, struct unclip_err *err)
{
    int64_t v;
    unclip_status st = get_int(j, key, true, 0, min, max, &v, err);
    if (st == UNCLIP_OK && out)
        *out = (int32_t)v;
    return st;
}

unclip_status
unclip__json_i32_opt(const struct unclip_json *j, const char *key, int32_t def, int32_t min,
                     int32_t max, int32_t *out, struct unclip_err *err)
{
    int64_t v;
    unclip_status st = get_int(j, key, false, def, min, max, &v, err);
    if (st == UNCLIP_OK && out)
        *out = (int32_t)v;
    return st;
}

static unclip_status
get_float(const struct unclip_json *j, const char *key, bool required, double def, double min,
          double max, double *out, struct unclip_err *err)
{
    JsonNode *n = NULL;
    unclip_status st = UNCLIP_OK;
    int r = fetch(j, key, required, "a number", &n, &st, err);
    if (r < 0)
        return st;
    if (r > 0) {
        if (out)
            *out = def;
        return UNCLIP_OK;
    }
    enum unclip_json_type t = node_type(n);
    double v;
    if (t == UNCLIP_JSON_INT)
        v = (double)json_node_get_int(n);
    else if (t == UNCLIP_JSON_FLOAT)
        v = json_node_get_double(n);
    else
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is %s, expected a number %g..%g",
                            j->name, key, type_word(t), min, max);
    if (!isfinite(v) || v < min || v > max)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is %g, expected %g..%g", j->name,
                            key, v, min, max);
    if (out)
        *out = v;
    return UNCLIP_OK;
}

unclip_status
unclip__json_float(const struct unclip_json *j, const char *key, double min, double max,
                   double *out, struct unclip_err *err)
{
    return get_float(j, key, true, 0.0, min, max, out, err);
}

unclip_status
unclip__json_float_opt(const struct unclip_json *j, const char *key, double def, double min,
                       double max, double *out, struct unclip_err *err)
{
    return get_float(j, key, false, def, min, max, out, err);
}

static unclip_status
get_bool(const struct unclip_json *j, const char *key, bool required, bool def, bool *out,
         struct unclip_err *err)
{
    JsonNode *n = NULL;
    unclip_status st = UNCLIP_OK;
    int r = fetch(j, key, required, "true or false", &n, &st, err);
    if (r < 0)
        return st;
    if (r > 0) {
        if (out)
            *out = def;
        return UNCLIP_OK;
    }
    enum unclip_json_type t = node_type(n);
    if (t != UNCLIP_JSON_BOOL)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is %s, expected true or false",
                            j->name, key, type_word(t));
    if (out)
        *out = json_node_get_boolean(n) != FALSE;
    return UNCLIP_OK;
}

unclip_status
unclip__json_bool(const struct unclip_json *j, const char *key, bool *out,
                  struct unclip_err *err)
{
    return get_bool(j, key, true, false, out, err);
}

unclip_status
unclip__json_bool_opt(const struct unclip_json *j, const char *key, bool def, bool *out,
                      struct unclip_err *err)
{
    return get_bool(j, key, false, def, out, err);
}

static unclip_status
get_string(const struct unclip_json *j, const char *key, bool required, const char *def,
           const char **out, struct unclip_err *err)
{
    JsonNode *n = NULL;
    unclip_status st = UNCLIP_OK;
    int r = fetch(j, key, required, "a string", &n, &st, err);
    if (r < 0)
        return st;
    if (r > 0) {
        if (out)
            *out = def;
        return UNCLIP_OK;
    }
    enum unclip_json_type t = node_type(n);
    if (t != UNCLIP_JSON_STRING)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is %s, expected a string", j->name,
                            key, type_word(t));
    if (out)
        *out = json_node_get_string(n);
    return UNCLIP_OK;
}

unclip_status
unclip__json_string(const struct unclip_json *j, const char *key, const char **out,
                    struct unclip_err *err)
{
    return get_string(j, key, true, NULL, out, err);
}

unclip_status
unclip__json_string_opt(const struct unclip_json *j, const char *key, const char *def,
                        const char **out, struct unclip_err *err)
{
    return get_string(j, key, false, def, out, err);
}

unclip_status
unclip__json_enum(const struct unclip_json *j, const char *key, const char *const *choices,
                  int32_t def_index, int32_t *out, struct unclip_err *err)
{
    if (!choices || !choices[0])
        return unclip__fail(err, UNCLIP_E_ARG, "json: no choices for '%s'", key);
    const char *s = NULL;
    unclip_status st = get_string(j, key, def_index < 0, NULL, &s, err);
    if (st != UNCLIP_OK)
        return st;
    if (!s) {
        if (out)
            *out = def_index;
        return UNCLIP_OK;
    }
    char list[512];
    size_t k = 0;
    list[0] = '\0';
    for (int32_t i = 0; choices[i]; i++) {
        if (!strcmp(s, choices[i])) {
            if (out)
                *out = i;
            return UNCLIP_OK;
        }
        if (k < sizeof list)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", choices[i]);
    }
    return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is '%.200s', expected one of %s",
                        j->name, key, s, list);
}

/* Array node at key with a length check; *arr is NULL for an absent optional. */
static unclip_status
get_array(const struct unclip_json *j, const char *key, int32_t min_len, int32_t max_len,
          JsonArray **arr, struct unclip_err *err)
{
    JsonNode *n = NULL;
    unclip_status st = UNCLIP_OK;
    if (fetch(j, key, true, "an array", &n, &st, err) < 0)
        return st;
    enum unclip_json_type t = node_type(n);
    if (t != UNCLIP_JSON_ARRAY)
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is %s, expected an array", j->name,
                            key, type_word(t));
    JsonArray *a = json_node_get_array(n);
    guint len = json_array_get_length(a);
    if (min_len < 0 || max_len < min_len)
        return unclip__fail(err, UNCLIP_E_ARG, "json: bad length bounds for '%s'", key);
    if (len < (guint)min_len || len > (guint)max_len)
        return unclip__fail(err, UNCLIP_E_FORMAT,
                            "%s: '%s' has %u elements, expected %d..%d", j->name, key, len,
                            (int)min_len, (int)max_len);
    *arr = a;
    return UNCLIP_OK;
}

unclip_status
unclip__json_int_array(const struct unclip_json *j, const char *key, int32_t min_len,
                       int32_t max_len, int64_t min, int64_t max, int64_t *out, int32_t *n,
                       struct unclip_err *err)
{
    JsonArray *a = NULL;
    unclip_status st = get_array(j, key, min_len, max_len, &a, err);
    if (st != UNCLIP_OK)
        return st;
    guint len = json_array_get_length(a);
    for (guint i = 0; i < len; i++) {
        JsonNode *e = json_array_get_element(a, i);
        enum unclip_json_type t = node_type(e);
        if (t != UNCLIP_JSON_INT)
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s'[%u] is %s, expected an integer",
                                j->name, key, i, type_word(t));
        int64_t v = json_node_get_int(e);
        if (v < min || v > max)
            return unclip__fail(err, UNCLIP_E_FORMAT,
                                "%s: '%s'[%u] is %lld, expected %lld..%lld", j->name, key, i,
                                (long long)v, (long long)min, (long long)max);
    }
    for (guint i = 0; i < len && out; i++)
        out[i] = json_array_get_int_element(a, i);
    if (n)
        *n = (int32_t)len;
    return UNCLIP_OK;
}

unclip_status
unclip__json_float_array(const struct unclip_json *j, const char *key, int32_t min_len,
                         int32_t max_len, double min, double max, double *out, int32_t *n,
                         struct unclip_err *err)
{
    JsonArray *a = NULL;
    unclip_status st = get_array(j, key, min_len, max_len, &a, err);
    if (st != UNCLIP_OK)
        return st;
    guint len = json_array_get_length(a);
    for (guint i = 0; i < len; i++) {
        JsonNode *e = json_array_get_element(a, i);
        enum unclip_json_type t = node_type(e);
        double v;
        if (t == UNCLIP_JSON_INT)
            v = (double)json_node_get_int(e);
        else if (t == UNCLIP_JSON_FLOAT)
            v = json_node_get_double(e);
        else
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s'[%u] is %s, expected a number",
                                j->name, key, i, type_word(t));
        if (!isfinite(v) || v < min || v > max)
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s'[%u] is %g, expected %g..%g",
                                j->name, key, i, v, min, max);
    }
    for (guint i = 0; i < len && out; i++) {
        JsonNode *e = json_array_get_element(a, i);
        out[i] = node_type(e) == UNCLIP_JSON_INT ? (double)json_node_get_int(e)
                                                 : json_node_get_double(e);
    }
    if (n)
        *n = (int32_t)len;
    return UNCLIP_OK;
}

unclip_status
unclip__json_string_array(const struct unclip_json *j, const char *key, int32_t min_len,
                          int32_t max_len, const char **out, int32_t *n,
                          struct unclip_err *err)
{
    JsonArray *a = NULL;
    unclip_status st = get_array(j, key, min_len, max_len, &a, err);
    if (st != UNCLIP_OK)
        return st;
    guint len = json_array_get_length(a);
    for (guint i = 0; i < len; i++) {
        enum unclip_json_type t = node_type(json_array_get_element(a, i));
        if (t != UNCLIP_JSON_STRING)
            return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s'[%u] is %s, expected a string",
                                j->name, key, i, type_word(t));
    }
    for (guint i = 0; i < len && out; i++)
        out[i] = json_array_get_string_element(a, i);
    if (n)
        *n = (int32_t)len;
    return UNCLIP_OK;
}

unclip_status
unclip__json_keys(const struct unclip_json *j, const char *key, const char ***keys, int32_t *n,
                  struct unclip_err *err)
{
    if (!j || !keys || !n)
        return unclip__fail(err, UNCLIP_E_ARG, "json: NULL argument");
    JsonNode *node = lookup(j, key);
    if (!node)
        return unclip__fail(err, UNCLIP_E_MODEL, "%s: missing key '%s'", j->name, key);
    if (!JSON_NODE_HOLDS_OBJECT(node))
        return unclip__fail(err, UNCLIP_E_FORMAT, "%s: '%s' is %s, expected an object", j->name,
                            key ? key : "", type_word(node_type(node)));
    JsonObject *o = json_node_get_object(node);
    GList *members = json_object_get_members(o);
    guint len = g_list_length(members);
    const char **arr = unclip__calloc(len ? len : 1, sizeof *arr);
    if (!arr) {
        g_list_free(members);
        return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", j->name);
    }
    guint i = 0;
    for (GList *l = members; l; l = l->next)
        arr[i++] = l->data;
    g_list_free(members);
    *keys = arr;
    *n = (int32_t)len;
    return UNCLIP_OK;
}
