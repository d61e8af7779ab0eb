/* Typed, validated reading of small JSON config files (config.json, model_index.json,
 * scheduler_config.json, preprocessor_config.json, tokenizer_config.json).
 *
 * A document is parsed with json-glib after a strict lexical check (RFC 8259 tokens only: no
 * comments, hex, leading zeros, single quotes, text after the root; integers must fit in int64;
 * "\u0000" and nesting deeper than UNCLIP_JSON_MAX_DEPTH are refused). Duplicate keys in any
 * object are rejected (json-glib would silently keep the last one). The root must be an object. Every document carries a
 * display name (e.g. "decoder/config.json") and every error message starts with it and names
 * the key: "decoder/config.json: 'layers_per_block' is 1000000000, expected 1..64".
 *
 * Keys are paths: "size.shortest_edge" looks up "shortest_edge" in the object "size".
 *
 * Required getters (no _opt): absent or null keys are UNCLIP_E_MODEL ("missing key"), a wrong
 * type or a value out of range is UNCLIP_E_FORMAT. Optional getters (_opt): absent or null keys
 * give the default (which is not range-checked); a present key of the wrong type or out of
 * range is still an error. Out-parameters are written only on success.
 *
 * Numbers: integer getters accept JSON integers only (64.0 is a float and is rejected: configs
 * write sizes as integers); float getters accept integers and floats.
 * Booleans are true/false only.
 *
 * Lifetime: strings returned are owned by the document and live until unclip__json_free().
 */
#ifndef UNCLIP_IO_JSON_H
#define UNCLIP_IO_JSON_H

#include "core/error.h"

#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>

struct unclip_json;

/* Largest config file read (bigger files are refused; vocab.json is ~1.5 MB). */
#define UNCLIP_JSON_MAX_BYTES (64u * 1024u * 1024u)
/* Deepest nesting of objects/arrays accepted (json-glib parses recursively). */
#define UNCLIP_JSON_MAX_DEPTH 64

enum unclip_json_type {
    UNCLIP_JSON_ABSENT = 0,
    UNCLIP_JSON_NULL,
    UNCLIP_JSON_BOOL,
    UNCLIP_JSON_INT,
    UNCLIP_JSON_FLOAT,
    UNCLIP_JSON_STRING,
    UNCLIP_JSON_ARRAY,
    UNCLIP_JSON_OBJECT,
};

/* Reads and parses `path`. display_name (may be NULL: the path) is used in messages.
 * Errors: UNCLIP_E_MODEL when the file does not exist, UNCLIP_E_IO when it cannot be read,
 * UNCLIP_E_FORMAT when it is not UTF-8 JSON with an object root or has duplicate keys. */
unclip_status unclip__json_load(const char *path, const char *display_name,
                                struct unclip_json **out, struct unclip_err *err);
/* Parses text[0..len) (len < 0: NUL-terminated). */
unclip_status unclip__json_parse(const char *text, int64_t len, const char *display_name,
                                 struct unclip_json **out, struct unclip_err *err);
void unclip__json_free(struct unclip_json *j); /* NULL is a no-op */

const char *unclip__json_name(const struct unclip_json *j);
/* The root object, for callers that walk big documents themselves (vocab.json). Owned by j. */
JsonObject *unclip__json_root(const struct unclip_json *j);

/* Type of the value at key (UNCLIP_JSON_ABSENT when missing or a path step is not an object). */
enum unclip_json_type unclip__json_type(const struct unclip_json *j, const char *key);
/* Present and not null. */
bool unclip__json_has(const struct unclip_json *j, const char *key);

/* Member names of the object at key (NULL or "": the root), in document order. *keys is an
 * array of *n borrowed strings, freed by the caller with unclip__free() (the array only). */
unclip_status unclip__json_keys(const struct unclip_json *j, const char *key, const char ***keys,
                                int32_t *n, struct unclip_err *err);

unclip_status unclip__json_int(const struct unclip_json *j, const char *key, int64_t min,
                               int64_t max, int64_t *out, struct unclip_err *err);
unclip_status unclip__json_int_opt(const struct unclip_json *j, const char *key, int64_t def,
                                   int64_t min, int64_t max, int64_t *out,
                                   struct unclip_err *err);
/* int32 convenience wrappers (min/max must fit in int32). */
unclip_status unclip__json_i32(const struct unclip_json *j, const char *key, int32_t min,
                               int32_t max, int32_t *out, struct unclip_err *err);
unclip_status unclip__json_i32_opt(const struct unclip_json *j, const char *key, int32_t def,
                                   int32_t min, int32_t max, int32_t *out,
                                   struct unclip_err *err);

/* Finite numbers only (NaN/Inf are never accepted). */
unclip_status unclip__json_float(const struct unclip_json *j, const char *key, double min,
                                 double max, double *out, struct unclip_err *err);
unclip_status unclip__json_float_opt(const struct unclip_json *j, const char *key, double def,
                                     double min, double max, double *out,
                                     struct unclip_err *err);

unclip_status unclip__json_bool(const struct unclip_json *j, const char *key, bool *out,
                                struct unclip_err *err);
unclip_status unclip__json_bool_opt(const struct unclip_json *j, const char *key, bool def,
                                    bool *out, struct unclip_err *err);

/* Borrowed string. def may be NULL. */
unclip_status unclip__json_string(const struct unclip_json *j, const char *key,
                                  const char **out, struct unclip_err *err);
unclip_status unclip__json_string_opt(const struct unclip_json *j, const char *key,
                                      const char *def, const char **out,
                                      struct unclip_err *err);

/* A string that must be one of choices[] (NULL-terminated); *out is its index.
 * Error: "'prediction_type' is 'v', expected one of epsilon, sample". def_index < 0 makes the
 * key required; otherwise absent/null gives def_index. */
unclip_status unclip__json_enum(const struct unclip_json *j, const char *key,
                                const char *const *choices, int32_t def_index, int32_t *out,
                                struct unclip_err *err);

/* Arrays: the array must have min_len..max_len elements (out has room for max_len), each of
 * the right type and within [min, max]. *n receives the length. Errors name the index:
 * "'block_out_channels'[2] is -64, expected 1..100000". */
unclip_status unclip__json_int_array(const struct unclip_json *j, const char *key,
                                     int32_t min_len, int32_t max_len, int64_t min, int64_t max,
                                     int64_t *out, int32_t *n, struct unclip_err *err);
unclip_status unclip__json_float_array(const struct unclip_json *j, const char *key,
                                       int32_t min_len, int32_t max_len, double min, double max,
                                       double *out, int32_t *n, struct unclip_err *err);
/* Borrowed strings; out has room for max_len pointers. */
unclip_status unclip__json_string_array(const struct unclip_json *j, const char *key,
                                        int32_t min_len, int32_t max_len, const char **out,
                                        int32_t *n, struct unclip_err *err);

/* Parses JSON text with json-glib and fails with UNCLIP_E_FORMAT ("<name>: duplicate key 'k'")
 * when any object repeats a key. On success *root is a new reference the caller unrefs.
 * Used by the safetensors header parser too. text need not be NUL-terminated. */
unclip_status unclip__json_parse_strict(const char *text, int64_t len, const char *name,
                                        JsonNode **root, struct unclip_err *err);

#endif
