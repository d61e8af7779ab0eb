/* CLIP tokenizer tests (suite "clip").
 *
 *   goldens    all 60 prompts of goldens/tokenizer_prompts.json: ids, mask, counts, token
 *              strings, truncation report; the reference vectors of reference/clip.md 3.5
 *   unicode    cleanup / case / NFC corner cases checked as equivalences between prompts
 *   bpe        the heap BPE against a direct transcription of the reference loop, on random
 *              words over the real merges and on a toy merge list
 *   fuzz       random bytes, random UTF-8, NUL, controls, special literals, 1 MiB prompts:
 *              structure checks, time printed (not asserted)
 *   malformed  toy tokenizer folders with one defect each: status and message
 *   faults     every host allocation of load and encode failing in turn
 *   shapes-v1  the default model's tokenizer (argv[1], skipped when absent): round trips
 */
#include "core/alloc.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"
#include "testutil.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <time.h>

#define MAXI UNCLIP_TOKENIZER_MAX_IDS

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static struct unclip_tokens
enc(const struct unclip_tokenizer *tok, const char *s, size_t n)
{
    struct unclip_tokens r;
    struct unclip_err err = {0};
    memset(&r, 0xAB, sizeof r);
    unclip_status st = unclip__tokenizer_encode(tok, s, n, &r, &err);
    TU_CHECK(st == UNCLIP_OK, "encode failed: %d %s", st, err.msg);
    return r;
}

static struct unclip_tokens
encs(const struct unclip_tokenizer *tok, const char *s)
{
    return enc(tok, s, strlen(s));
}

static bool
same_ids(const struct unclip_tokens *a, const struct unclip_tokens *b)
{
    return a->n_ids == b->n_ids && memcmp(a->ids, b->ids, sizeof a->ids) == 0 &&
           memcmp(a->mask, b->mask, sizeof a->mask) == 0;
}

static void
print_ids(const char *what, const struct unclip_tokens *t)
{
    printf("  %s:", what);
    for (int i = 0; i < t->n_ids; i++)
        printf(" %d", t->ids[i]);
    printf("\n");
}

/* Structure every encode result must have. */
static void
check_structure(const struct unclip_tokenizer *tok, const struct unclip_tokens *t, size_t len,
                const char *what)
{
    int32_t nv = unclip__tokenizer_vocab_size(tok);
    int32_t bos = unclip__tokenizer_bos(tok), eos = unclip__tokenizer_eos(tok),
            pad = unclip__tokenizer_pad(tok);
    TU_CHECK(t->n_ids >= 2 && t->n_ids <= MAXI, "%s: n_ids %d", what, t->n_ids);
    if (t->n_ids < 2 || t->n_ids > MAXI)
        return;
    TU_CHECK(t->ids[0] == bos, "%s: first id %d", what, t->ids[0]);
    TU_CHECK(t->ids[t->n_ids - 1] == eos, "%s: id %d at eos position", what,
             t->ids[t->n_ids - 1]);
    bool ok = true;
    for (int i = 0; i < MAXI; i++) {
        ok &= t->ids[i] >= 0 && t->ids[i] < nv;
        ok &= t->mask[i] == (i < t->n_ids);
        if (i >= t->n_ids)
            ok &= t->ids[i] == pad;
    }
    TU_CHECK(ok, "%s: ids out of range, padding or mask inconsistent", what);
    TU_CHECK(t->n_untruncated >= t->n_ids, "%s: n_untruncated %lld < n_ids %d", what,
             (long long)t->n_untruncated, t->n_ids);
    TU_CHECK(t->truncated == (t->n_untruncated > MAXI), "%s: truncated %d but count %lld", what,
             t->truncated, (long long)t->n_untruncated);
    TU_CHECK(t->n_ids == (t->truncated ? MAXI : t->n_untruncated), "%s: n_ids %d count %lld",
             what, t->n_ids, (long long)t->n_untruncated);
    TU_CHECK(t->count_exact || (t->truncated && t->n_untruncated > 2 * MAXI),
             "%s: inexact count %lld for a prompt that fits", what,
             (long long)t->n_untruncated);
    TU_CHECK(t->dropped_offset <= len, "%s: dropped_offset %zu > %zu", what, t->dropped_offset,
             len);
    TU_CHECK(t->truncated || (t->dropped_offset == len && !t->dropped_partial &&
                              !t->dropped_preview[0]),
             "%s: drop report without truncation", what);
    size_t pl = strnlen(t->dropped_preview, sizeof t->dropped_preview);
    TU_CHECK(pl < sizeof t->dropped_preview && g_utf8_validate(t->dropped_preview, -1, NULL),
             "%s: preview not a valid string", what);
    TU_CHECK(t->n_invalid_utf8 >= 0 && (uint64_t)t->n_invalid_utf8 <= len,
             "%s: n_invalid %lld", what, (long long)t->n_invalid_utf8);
}

/* For a truncated prompt: the text before dropped_offset alone gives the kept content (all 75
 * ids when the first dropped word lost all its tokens, a prefix of them when it was cut). */
static void
check_drop_report(const struct unclip_tokenizer *tok, const char *s, size_t len,
                  const struct unclip_tokens *t, const char *what)
{
    if (!t->truncated)
        return;
    struct unclip_tokens p = enc(tok, s, t->dropped_offset);
    int32_t nc = p.n_ids - 2;
    bool prefix = !p.truncated && memcmp(p.ids, t->ids, (size_t)(nc + 1) * sizeof *p.ids) == 0;
    TU_CHECK(prefix, "%s: text before the dropped offset does not give a prefix", what);
    if (t->dropped_partial)
        TU_CHECK(nc < MAXI - 2, "%s: partial drop, but the prefix has all %d ids", what, nc);
    else
        TU_CHECK(nc == MAXI - 2, "%s: whole-word drop, but the prefix has %d ids", what, nc);
    TU_CHECK(t->dropped_preview[0] != 0 || t->dropped_offset == len,
             "%s: empty preview for a drop", what);
    (void)len;
}

/* ---- golden prompts --------------------------------------------------------------------- */

/* JSON string literal at raw[*i] (opening quote) -> bytes (json-glib's strings stop at an
 * escaped NUL, and one prompt has one). */
static GByteArray *
json_raw_string(const char *raw, size_t *i)
{
    GByteArray *b = g_byte_array_new();
    size_t k = *i + 1;
    while (raw[k] && raw[k] != '"') {
        if (raw[k] != '\\') {
            g_byte_array_append(b, (const guint8 *)&raw[k++], 1);
            continue;
        }
        char c = raw[k + 1];
        k += 2;
        guint8 o;
        switch (c) {
        case 'n': o = '\n'; break;
        case 't': o = '\t'; break;
        case 'r': o = '\r'; break;
        case 'b': o = '\b'; break;
        case 'f': o = '\f'; break;
        case 'u': {
            gunichar u = (gunichar)strtoul((char[]){raw[k], raw[k + 1], raw[k + 2], raw[k + 3], 0},
                                           NULL, 16);
            k += 4;
            if (u >= 0xD800 && u < 0xDC00 && raw[k] == '\\' && raw[k + 1] == 'u') {
                gunichar lo = (gunichar)strtoul(
                    (char[]){raw[k + 2], raw[k + 3], raw[k + 4], raw[k + 5], 0}, NULL, 16);
                k += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            gchar buf[8];
            gint n = g_unichar_to_utf8(u, buf);
            g_byte_array_append(b, (const guint8 *)buf, (guint)n);
            continue;
        }
        default: o = (guint8)c; break;
        }
        g_byte_array_append(b, &o, 1);
    }
    *i = k + 1;
    /* NUL-terminate (not counted), so data is never NULL. */
    guint8 z = 0;
    g_byte_array_append(b, &z, 1);
    b->len--;
    return b;
}

static void
test_goldens(const struct unclip_tokenizer *tok)
{
    gchar *raw = NULL;
    gsize raw_n = 0;
    const char *jpath = tu_golden_path("goldens/tokenizer_prompts.json");
    if (!g_file_get_contents(jpath, &raw, &raw_n, NULL)) {
        TU_CHECK(0, "cannot read %s", jpath);
        return;
    }
    JsonParser *parser = json_parser_new();
    TU_CHECK(json_parser_load_from_data(parser, raw, (gssize)raw_n, NULL), "prompts json");
    JsonArray *arr = json_node_get_array(json_parser_get_root(parser));
    guint n = json_array_get_length(arr);
    TU_CHECK(n == 60, "%u prompts", n);

    struct unclip_err err = {0};
    struct unclip_st_file *st = NULL;
    unclip_status s = unclip__st_open(tu_golden_path("goldens/tokenizer.safetensors"), &st, &err);
    TU_CHECK(s == UNCLIP_OK, "tokenizer.safetensors: %s", err.msg);
    const struct unclip_st_tensor *ti = st ? unclip__st_find(st, "input_ids") : NULL;
    const struct unclip_st_tensor *tm = st ? unclip__st_find(st, "attention_mask") : NULL;
    TU_CHECK(ti && tm && ti->numel == (int64_t)n * MAXI && tm->numel == (int64_t)n * MAXI,
             "golden tensors");
    int64_t *gids = g_new0(int64_t, (gsize)n * MAXI), *gmask = g_new0(int64_t, (gsize)n * MAXI);
    if (ti && tm && ti->numel == (int64_t)n * MAXI && tm->numel == (int64_t)n * MAXI) {
        unclip__st_to_i64(ti, gids, NULL);
        unclip__st_to_i64(tm, gmask, NULL);
    }

    size_t pos = 0;
    int n_pass = 0;
    double t0 = now_s();
    for (guint p = 0; p < n; p++) {
        JsonObject *o = json_array_get_object_element(arr, p);
        const char *name = json_object_get_string_member(o, "name");
        /* The raw text: the p-th "text" key of the file. */
        const char *at = strstr(raw + pos, "\"text\": \"");
        if (!at) {
            TU_CHECK(0, "%s: raw text not found", name);
            break;
        }
        pos = (size_t)(at - raw) + 8;
        GByteArray *text = json_raw_string(raw, &pos);
        const char *jtext = json_object_get_string_member(o, "text");
        TU_CHECK(strncmp(jtext, (const char *)text->data, strlen(jtext)) == 0,
                 "%s: raw text differs from json-glib's", name);

        struct unclip_tokens t = enc(tok, (const char *)text->data, text->len);
        check_structure(tok, &t, text->len, name);
        bool ok = true;
        for (int i = 0; i < MAXI; i++) {
            ok &= t.ids[i] == gids[(size_t)p * MAXI + i];
            ok &= t.mask[i] == gmask[(size_t)p * MAXI + i];
        }
        /* The same rows rebuilt from untruncated_ids: [first 76..., eos] or padded with 0. */
        JsonArray *un = json_object_get_array_member(o, "untruncated_ids");
        guint nu = json_array_get_length(un);
        int64_t want_count = json_object_get_int_member(o, "n_ids_untruncated");
        bool want_trunc = json_object_get_boolean_member(o, "truncated");
        for (int i = 0; i < MAXI; i++) {
            int64_t w = i < (int)nu ? json_array_get_int_element(un, (guint)i) : 0;
            if (nu > MAXI && i == MAXI - 1)
                w = json_array_get_int_element(un, nu - 1);
            ok &= t.ids[i] == w;
        }
        ok &= t.n_untruncated == want_count && (int64_t)nu == want_count;
        ok &= t.truncated == want_trunc && t.count_exact;
        JsonArray *toks = json_object_get_array_member(o, "tokens");
        for (int i = 0; i < MAXI && json_array_get_length(toks) == MAXI; i++)
            ok &= strcmp(unclip__tokenizer_token(tok, t.ids[i]),
                         json_array_get_string_element(toks, (guint)i)) == 0;
        TU_CHECK(ok, "golden prompt %u '%s' differs (count %lld want %lld)", p, name,
                 (long long)t.n_untruncated, (long long)want_count);
        if (!ok) {
            print_ids("got ", &t);
        } else {
            n_pass++;
        }
        check_drop_report(tok, (const char *)text->data, text->len, &t, name);
        if (t.truncated)
            printf("  %-16s %lld tokens, dropped from byte %zu%s: \"%.60s\"\n", name,
                   (long long)t.n_untruncated, t.dropped_offset,
                   t.dropped_partial ? " (mid-word)" : "", t.dropped_preview);
        g_byte_array_unref(text);
    }
    printf("golden prompts: %d/%u identical (ids, mask, count, token strings) in %.1f ms\n",
           n_pass, n, 1e3 * (now_s() - t0));
    g_free(gids);
    g_free(gmask);
    unclip__st_close(st);
    g_object_unref(parser);
    g_free(raw);
}

/* reference/clip.md 3.5 (content ids; Karlo's tokenizer). */
static void
test_reference_vectors(const struct unclip_tokenizer *tok)
{
    static const struct {
        const char *text;
        int32_t ids[16];
    } v[] = {
        {"", {49406, 49407, -1}},
        {"a photo of a cat", {49406, 320, 1125, 539, 320, 2368, 49407, -1}},
        {"a photo of a dog", {49406, 320, 1125, 539, 320, 1929, 49407, -1}},
        {"A PHOTO of  a Cat", {49406, 320, 1125, 539, 320, 2368, 49407, -1}},
        {"don't stop", {49406, 847, 713, 1691, 49407, -1}},
        {"don't stop 42 times", {49406, 847, 713, 1691, 275, 273, 1661, 49407, -1}},
        {"35mm photography", {49406, 274, 276, 2848, 2108, 49407, -1}},
        {"hello-world, 3.14 (test)",
         {49406, 3306, 268, 1002, 267, 274, 269, 272, 275, 263, 1628, 264, 49407, -1}},
        {"Hello, world!", {49406, 3306, 267, 1002, 0, 49407, -1}},
    };
    for (size_t k = 0; k < G_N_ELEMENTS(v); k++) {
        struct unclip_tokens t = encs(tok, v[k].text);
        int n = 0;
        while (v[k].ids[n] >= 0)
            n++;
        bool ok = t.n_ids == n && memcmp(t.ids, v[k].ids, (size_t)n * sizeof(int32_t)) == 0;
        for (int i = n; i < MAXI; i++)
            ok &= t.ids[i] == 0 && t.mask[i] == 0;
        TU_CHECK(ok, "reference vector '%s'", v[k].text);
    }
    /* Decoding for messages. */
    struct unclip_tokens t = encs(tok, "A PHOTO of  a Cat");
    char *s = NULL;
    TU_CHECK(unclip__tokenizer_decode(tok, t.ids, (size_t)t.n_ids, true, &s, NULL) == UNCLIP_OK &&
                 strcmp(s, "a photo of a cat") == 0,
             "decode: '%s'", s ? s : "(null)");
    unclip__free(s);
    s = NULL;
    t = encs(tok, "Ångström café, 猫!");
    TU_CHECK(unclip__tokenizer_decode(tok, t.ids, (size_t)t.n_ids, true, &s, NULL) == UNCLIP_OK &&
                 strcmp(s, "ångström café , 猫 !") == 0,
             "decode: '%s'", s ? s : "(null)");
    unclip__free(s);
    int32_t bad[] = {320, 49408};
    struct unclip_err err = {0};
    TU_CHECK(unclip__tokenizer_decode(tok, bad, 2, false, &s, &err) == UNCLIP_E_ARG &&
                 strstr(err.msg, "49408"),
             "decode of an id out of range: %s", err.msg);
}

/* ---- Unicode corner cases (equivalences the reference implies) ---------------------------- */

static void
same(const struct unclip_tokenizer *tok, const char *a, size_t na, const char *b, const char *why)
{
    struct unclip_tokens x = enc(tok, a, na), y = encs(tok, b);
    TU_CHECK(same_ids(&x, &y), "%s", why);
    if (!same_ids(&x, &y)) {
        print_ids("a", &x);
        print_ids("b", &y);
    }
}

static void
differ(const struct unclip_tokenizer *tok, const char *a, const char *b, const char *why)
{
    struct unclip_tokens x = encs(tok, a), y = encs(tok, b);
    TU_CHECK(!same_ids(&x, &y), "%s", why);
}

static void
test_unicode(const struct unclip_tokenizer *tok)
{
#define SAME(a, b, why) same(tok, a, sizeof(a) - 1, b, why)
    SAME("İstanbul", "i\xCC\x87stanbul", "U+0130 lower-cases to i + U+0307");
    differ(tok, "İstanbul", "istanbul", "U+0130 keeps its dot");
    SAME("ΟΔΟΣ", "οδος", "final sigma at the end of a word");
    SAME("ΣΑ", "σα", "sigma at the start of a word is not final");
    SAME("Σ", "σ", "a lone capital sigma is not final");
    SAME("ΑΣ.", "ας.", "final sigma before punctuation");
    SAME("ΑΣ'Α", "ασ'α", "case-ignorable apostrophe between cased letters: not final");
    SAME("ΑΣ Α", "ας α", "final sigma before a space");
    SAME("Ⅻ Ⓐ", "ⅻ ⓐ", "Roman numerals and circled letters have lower case in Python");
    SAME("ǅ", "ǆ", "title case letters");
    SAME("cafe\xCC\x81", "café", "NFD input is composed (NFC)");
    SAME("a\xE2\x80\xA8" "b\xE2\x80\xA9" "c", "a b c", "U+2028/U+2029 split words");
    SAME("a\xC2\xA0" "b\xE3\x80\x80" "c", "a b c", "Zs spaces");
    SAME("zero\xE2\x80\x8Bwidth", "zerowidth", "format characters are deleted, not spaced");
    SAME("a\x0B" "b", "ab", "\\v is a control (deleted), not a space");
    SAME("a \xF0\x9F\xAB\xA8 b", "a b", "U+1FAE8 (Unicode 15) is unassigned in 14.0: deleted");
    SAME("a\xEE\x80\x80" "b", "ab", "private use is deleted");
    SAME("a\0b", "ab", "NUL is deleted");
    SAME("a\xFF" "b", "ab", "invalid UTF-8 reads as U+FFFD, which is deleted");
    SAME("a\xED\xA0\x80" "b", "ab", "an encoded surrogate is invalid");
    SAME("a\xC3", "a", "truncated sequence at the end");
    SAME("猫猫", "猫 猫", "CJK ideographs are words of their own");
    SAME("<|ENDOFTEXT|>", "<|endoftext|>", "special literal in upper case");
    SAME("hello!", "hello !", "the pad literal ends a word");
    SAME("x<|endoftext|>y", "x <|endoftext|> y", "a literal splits the raw text");
    SAME("<|endo\xE2\x80\x8B" "ftext|>", "<|endoftext|>", "a literal spelled across a deleted "
         "char still matches the pre-token regex");
#undef SAME
    struct unclip_tokens t = enc(tok, "a\xFF\xFE\xC3(b", 6);
    TU_CHECK(t.n_invalid_utf8 == 3, "3 invalid sequences, got %lld",
             (long long)t.n_invalid_utf8);
    /* The long s matches "s" in the case-insensitive regex: "'ſ" is one pre-token. */
    t = encs(tok, "it'ſ");
    int32_t want[8];
    size_t n1 = 0, n2 = 0;
    unclip__tokenizer_bpe(tok, "it", 2, want, 8, &n1, NULL);
    unclip__tokenizer_bpe(tok, "'\xC5\xBF", 3, want + n1, 8 - n1, &n2, NULL);
    TU_CHECK(t.n_ids == (int)(n1 + n2 + 2) &&
                 memcmp(t.ids + 1, want, (n1 + n2) * sizeof(int32_t)) == 0,
             "it'\\u017f");
    /* NFC through our own canonical ordering = GLib's NFC, on random mark sequences. */
    struct tu_rng r;
    tu_rng_seed(&r, 7);
    static const gunichar pool[] = {'a', 'e', 'o', 0x300, 0x301, 0x316, 0x323, 0x327, 0x328,
                                    0x308, 0x345, 0x344, 0x1100, 0x1161, 0x11A8, 0xAC00,
                                    0x0B47, 0x0B3E, 0x0F73, 0x1E0B, 0x3A3, 0x399, 0x313};
    int bad = 0;
    for (int it = 0; it < 300; it++) {
        GString *s = g_string_new(NULL);
        int len = 1 + (int)(tu_rng_u64(&r) % 40);
        for (int i = 0; i < len; i++)
            g_string_append_unichar(s, pool[tu_rng_u64(&r) % G_N_ELEMENTS(pool)]);
        gchar *nfc = g_utf8_normalize(s->str, -1, G_NORMALIZE_NFC);
        struct unclip_tokens x = enc(tok, s->str, s->len), y = encs(tok, nfc);
        bad += !same_ids(&x, &y);
        g_free(nfc);
        g_string_free(s, TRUE);
    }
    TU_CHECK(bad == 0, "NFC: %d of 300 random mark sequences differ from GLib's NFC", bad);
}

/* ---- BPE against the reference loop --------------------------------------------------------- */

struct naive {
    GHashTable *ranks; /* "A B" -> rank + 1 */
};

static void
naive_load(struct naive *nv, const char *merges_path)
{
    nv->ranks = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    gchar *data = NULL;
    if (!g_file_get_contents(merges_path, &data, NULL, NULL))
        return;
    gchar **lines = g_strsplit(g_strstrip(data), "\n", -1);
    for (int i = 1; lines[i] && i <= 48894; i++)
        g_hash_table_insert(nv->ranks, g_strdup(lines[i]), GINT_TO_POINTER(i));
    g_strfreev(lines);
    g_free(data);
}

/* The reference's bpe(): symbols as strings, lowest-rank pair merged everywhere, repeat. */
static GPtrArray *
naive_bpe(const struct naive *nv, const guint8 *b, size_t n)
{
    GPtrArray *w = g_ptr_array_new_with_free_func(g_free);
    for (size_t i = 0; i < n; i++) {
        unsigned x = b[i];
        gunichar c = x;
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) {
            unsigned k = 0;
            for (unsigned y = 0; y < x; y++)
                k += !((y >= 0x21 && y <= 0x7E) || (y >= 0xA1 && y <= 0xAC) || y >= 0xAE);
            c = 0x100 + k;
        }
        gchar buf[8] = {0};
        g_unichar_to_utf8(c, buf);
        g_ptr_array_add(w, i + 1 < n ? g_strdup(buf) : g_strconcat(buf, "</w>", NULL));
    }
    while (w->len > 1) {
        int best = 0;
        guint at = 0;
        for (guint i = 0; i + 1 < w->len; i++) {
            gchar *key = g_strconcat(w->pdata[i], " ", w->pdata[i + 1], NULL);
            int r = GPOINTER_TO_INT(g_hash_table_lookup(nv->ranks, key));
            g_free(key);
            if (r && (!best || r < best)) {
                best = r;
                at = i;
            }
        }
        if (!best)
            break;
        gchar *first = g_strdup(w->pdata[at]), *second = g_strdup(w->pdata[at + 1]);
        GPtrArray *o = g_ptr_array_new_with_free_func(g_free);
        for (guint i = 0; i < w->len;) {
            if (i + 1 < w->len && strcmp(w->pdata[i], first) == 0 &&
                strcmp(w->pdata[i + 1], second) == 0) {
                g_ptr_array_add(o, g_strconcat(first, second, NULL));
                i += 2;
            } else {
                g_ptr_array_add(o, g_strdup(w->pdata[i]));
                i++;
            }
        }
        g_free(first);
        g_free(second);
        g_ptr_array_unref(w);
        w = o;
    }
    return w;
}

static bool
bpe_agrees(const struct unclip_tokenizer *tok, const struct naive *nv, const guint8 *b, size_t n)
{
    GPtrArray *want = naive_bpe(nv, b, n);
    int32_t *ids = g_new(int32_t, n);
    size_t k = 0;
    unclip__tokenizer_bpe(tok, (const char *)b, n, ids, n, &k, NULL);
    bool ok = k == want->len;
    for (size_t i = 0; ok && i < k; i++)
        ok = strcmp(unclip__tokenizer_token(tok, ids[i]), want->pdata[i]) == 0;
    g_free(ids);
    g_ptr_array_unref(want);
    return ok;
}

static void
test_bpe(const struct unclip_tokenizer *tok, const char *merges_path)
{
    struct naive nv;
    naive_load(&nv, merges_path);
    TU_CHECK(g_hash_table_size(nv.ranks) == 48894, "naive merges: %u",
             g_hash_table_size(nv.ranks));
    struct tu_rng r;
    tu_rng_seed(&r, 11);
    int bad = 0, total = 0;
    guint8 buf[3000];
    for (int it = 0; it < 3000; it++) {
        size_t n;
        int kind = it % 5;
        if (kind == 0) { /* lower-case words */
            n = 1 + tu_rng_u64(&r) % 24;
            for (size_t i = 0; i < n; i++)
                buf[i] = (guint8)('a' + tu_rng_u64(&r) % 26);
        } else if (kind == 1) { /* few letters: many equal pairs, overlaps */
            n = 1 + tu_rng_u64(&r) % 60;
            for (size_t i = 0; i < n; i++)
                buf[i] = (guint8)("aeln"[tu_rng_u64(&r) % 4]);
        } else if (kind == 2) { /* punctuation runs */
            n = 1 + tu_rng_u64(&r) % 30;
            for (size_t i = 0; i < n; i++)
                buf[i] = (guint8)("!.-_*=#'"[tu_rng_u64(&r) % 8]);
        } else if (kind == 3) { /* any bytes */
            n = 1 + tu_rng_u64(&r) % 20;
            for (size_t i = 0; i < n; i++)
                buf[i] = (guint8)tu_rng_u64(&r);
        } else { /* long words */
            n = 200 + tu_rng_u64(&r) % 2800;
            if (it % 50 != 4)
                n = 1 + tu_rng_u64(&r) % 100;
            for (size_t i = 0; i < n; i++)
                buf[i] = (guint8)("abcdefghijklmnopqrstuvwxyz"[tu_rng_u64(&r) % (it % 3 ? 26 : 2)]);
        }
        bad += !bpe_agrees(tok, &nv, buf, n);
        total++;
    }
    TU_CHECK(bad == 0, "heap BPE differs from the reference loop on %d of %d words", bad, total);
    printf("bpe: %d random words agree with the reference loop\n", total - bad);
    g_hash_table_unref(nv.ranks);
}

/* ---- toy tokenizer folders ---------------------------------------------------------------- */

static gunichar
byte_sym(unsigned x)
{
    if ((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)
        return x;
    unsigned k = 0;
    for (unsigned y = 0; y < x; y++)
        k += !((y >= 0x21 && y <= 0x7E) || (y >= 0xA1 && y <= 0xAC) || y >= 0xAE);
    return 0x100 + k;
}

static void
json_str(GString *g, const char *s)
{
    g_string_append_c(g, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            g_string_append_c(g, '\\');
        g_string_append_c(g, *s);
    }
    g_string_append_c(g, '"');
}

/* Toy CLIP-format tokenizer: 512 byte symbols, merges (rank order), bos, eos; pad "!". */
static const char *toy_merges[][2] = {
    {"a", "b"}, {"b", "c</w>"}, {"ab", "c</w>"}, {"c", "a"}, {"a", "a"}, {"aa", "a</w>"},
    {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o</w>"},
};

struct toy {
    GString *vocab, *merges, *smap, *cfg;
};

static void
toy_make(struct toy *t)
{
    t->vocab = g_string_new("{");
    /* ids 0..255: byte symbols in bytes_to_unicode order (printable bytes first); 256..511
     * the same with "</w>". */
    unsigned order[256];
    int no = 0, id = 0;
    for (unsigned b = 0; b < 256; b++)
        if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
            order[no++] = b;
    for (unsigned b = 0; b < 256; b++)
        if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE))
            order[no++] = b;
    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < 256; i++) {
            gchar buf[16] = {0};
            g_unichar_to_utf8(byte_sym(order[i]), buf);
            if (w)
                strcat(buf, "</w>");
            if (id)
                g_string_append(t->vocab, ",\n");
            json_str(t->vocab, buf);
            g_string_append_printf(t->vocab, ": %d", id++);
        }
    }
    t->merges = g_string_new("#version: 0.2\n");
    for (size_t m = 0; m < G_N_ELEMENTS(toy_merges); m++) {
        g_string_append_printf(t->merges, "%s %s\n", toy_merges[m][0], toy_merges[m][1]);
        gchar *cat = g_strconcat(toy_merges[m][0], toy_merges[m][1], NULL);
        g_string_append(t->vocab, ",\n");
        json_str(t->vocab, cat);
        g_string_append_printf(t->vocab, ": %d", id++);
        g_free(cat);
    }
    g_string_append_printf(t->vocab, ",\n\"<|startoftext|>\": %d,\n\"<|endoftext|>\": %d\n}\n",
                           id, id + 1);
    t->smap = g_string_new("{\"bos_token\": {\"content\": \"<|startoftext|>\"}, \"eos_token\": "
                           "\"<|endoftext|>\", \"pad_token\": \"!\", \"unk_token\": "
                           "\"<|endoftext|>\"}\n");
    t->cfg = g_string_new(NULL);
    g_string_printf(t->cfg,
                    "{\"added_tokens_decoder\": {\"0\": {\"content\": \"!\"}, \"%d\": {\"content\": "
                    "\"<|startoftext|>\"}, \"%d\": {\"content\": \"<|endoftext|>\"}}, "
                    "\"model_max_length\": 77, \"bos_token\": \"<|startoftext|>\", "
                    "\"eos_token\": \"<|endoftext|>\", \"pad_token\": \"!\"}\n",
                    id, id + 1);
}

static void
toy_free(struct toy *t)
{
    GString *g[] = {t->vocab, t->merges, t->smap, t->cfg};
    for (size_t i = 0; i < G_N_ELEMENTS(g); i++)
        if (g[i])
            g_string_free(g[i], TRUE);
}

/* Replaces the first occurrence of `from` in g by `to`; false when absent. */
static bool
edit(GString *g, const char *from, const char *to)
{
    const char *at = strstr(g->str, from);
    if (!at)
        return false;
    gssize pos = at - g->str;
    g_string_erase(g, pos, (gssize)strlen(from));
    g_string_insert(g, pos, to);
    return true;
}

static void
write_file(const char *dir, const char *name, const GString *g)
{
    if (!g)
        return;
    gchar *p = g_build_filename(dir, name, NULL);
    g_file_set_contents(p, g->str, (gssize)g->len, NULL);
    g_free(p);
}

static void
remove_dir(const char *dir)
{
    static const char *names[] = {"vocab.json", "merges.txt", "special_tokens_map.json",
                                  "tokenizer_config.json"};
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        gchar *p = g_build_filename(dir, names[i], NULL);
        g_unlink(p);
        g_free(p);
    }
    g_rmdir(dir);
}

/* Writes the toy (NULL members are left out) into a new temporary folder. */
static gchar *
toy_write(const struct toy *t)
{
    gchar *dir = g_dir_make_tmp("unclip-tok-XXXXXX", NULL);
    write_file(dir, "vocab.json", t->vocab);
    write_file(dir, "merges.txt", t->merges);
    write_file(dir, "special_tokens_map.json", t->smap);
    write_file(dir, "tokenizer_config.json", t->cfg);
    return dir;
}

static unclip_status
toy_load(const struct toy *t, struct unclip_tokenizer **tok, struct unclip_err *err)
{
    gchar *dir = toy_write(t);
    unclip_status st = unclip__tokenizer_load(dir, tok, err);
    remove_dir(dir);
    g_free(dir);
    return st;
}

static void
test_toy(void)
{
    struct toy t;
    toy_make(&t);
    struct unclip_tokenizer *tok = NULL;
    struct unclip_err err = {0};
    unclip_status st = toy_load(&t, &tok, &err);
    TU_CHECK(st == UNCLIP_OK, "toy load: %s", err.msg);
    if (st == UNCLIP_OK) {
        int32_t nv = unclip__tokenizer_vocab_size(tok);
        TU_CHECK(nv == 512 + (int)G_N_ELEMENTS(toy_merges) + 2, "toy vocab %d", nv);
        TU_CHECK(unclip__tokenizer_bos(tok) == nv - 2 && unclip__tokenizer_eos(tok) == nv - 1 &&
                     unclip__tokenizer_pad(tok) == 0, "toy specials");
        /* BPE on the toy list (ranks: a b, b c</w>, ab c</w>, c a, a a, aa a</w>, ...).
         * "cabc": c a b c</w> -> c ab c</w> (rank 0) -> c abc</w> (rank 2; "c ab" is no
         * merge). "aaaa": a a a a</w> -> "a a" merges left to right without overlap ->
         * aa aa a</w> -> "aa a</w>" -> aa aaa</w>; "aaaa" (4) ends aa a a</w>. */
        static const struct {
            const char *word;
            const char *want[6];
        } c2[] = {
            {"abc", {"abc</w>"}},
            {"bc", {"bc</w>"}},
            {"cabc", {"c", "abc</w>"}},
            {"aaaaa", {"aa", "aaa</w>"}},
            {"aaaa", {"aa", "a", "a</w>"}},
            {"aaa", {"aaa</w>"}},
            {"aa", {"a", "a</w>"}},
            {"hello", {"hello</w>"}},
            {"x", {"x</w>"}},
            {"hellohello", {"hell", "o", "hello</w>"}},
        };
        for (size_t k = 0; k < G_N_ELEMENTS(c2); k++) {
            int32_t ids[16];
            size_t n = 0;
            unclip__tokenizer_bpe(tok, c2[k].word, strlen(c2[k].word), ids, 16, &n, NULL);
            bool ok = true;
            size_t nw = 0;
            while (nw < 6 && c2[k].want[nw])
                nw++;
            ok = n == nw;
            for (size_t i = 0; ok && i < n; i++)
                ok = strcmp(unclip__tokenizer_token(tok, ids[i]), c2[k].want[i]) == 0;
            TU_CHECK(ok, "toy bpe '%s' (%zu symbols)", c2[k].word, n);
            if (!ok) {
                for (size_t i = 0; i < n && i < 16; i++)
                    printf("  [%s]", unclip__tokenizer_token(tok, ids[i]));
                printf("\n");
            }
        }
        /* Truncation/padding layout: 80 words of "abc" -> 75 kept, eos last. */
        GString *s = g_string_new(NULL);
        for (int i = 0; i < 80; i++)
            g_string_append(s, "abc ");
        struct unclip_tokens r = enc(tok, s->str, s->len);
        check_structure(tok, &r, s->len, "toy 80 words");
        TU_CHECK(r.truncated && r.n_untruncated == 82 && r.n_ids == 77 &&
                     r.dropped_offset == 75 * 4 && !r.dropped_partial,
                 "toy truncation: count %lld offset %zu", (long long)r.n_untruncated,
                 r.dropped_offset);
        TU_CHECK(strcmp(r.dropped_preview, "abc abc abc abc abc") == 0, "preview '%s'",
                 r.dropped_preview);
        g_string_free(s, TRUE);
        /* "!" is the pad token but a real token in the prompt: mask 1. */
        r = encs(tok, "!!");
        TU_CHECK(r.n_ids == 4 && r.ids[1] == 0 && r.ids[2] == 0 && r.mask[2] == 1 &&
                     r.mask[3] == 1 && r.mask[4] == 0,
                 "pad characters in the prompt");
    }
    unclip__tokenizer_free(tok);
    toy_free(&t);
}

struct bad_case {
    const char *what;
    unclip_status want;
    const char *msg1, *msg2; /* substrings the message must contain */
};

static void
test_malformed(void)
{
    for (int c = 0;; c++) {
        struct toy t;
        toy_make(&t);
        struct bad_case bc = {0};
        bool done = false;
        switch (c) {
        case 0:
            bc = (struct bad_case){"truncated vocab", UNCLIP_E_FORMAT, "vocab.json", "not valid JSON"};
            g_string_truncate(t.vocab, t.vocab->len / 2);
            break;
        case 1:
            bc = (struct bad_case){"duplicate key", UNCLIP_E_FORMAT, "vocab.json", "duplicate key 'ab'"};
            edit(t.vocab, "{", "{\"ab\": 5,\n");
            break;
        case 2:
            bc = (struct bad_case){"id out of range", UNCLIP_E_FORMAT, "vocab.json", "'hello</w>': id 99999 is out of range"};
            edit(t.vocab, "\"hello</w>\": 521", "\"hello</w>\": 99999");
            break;
        case 3:
            bc = (struct bad_case){"id not an integer", UNCLIP_E_FORMAT, "vocab.json", "'ab': the id is not an integer"};
            edit(t.vocab, "\"ab\": 512", "\"ab\": \"512\"");
            break;
        case 4:
            bc = (struct bad_case){"duplicate id", UNCLIP_E_FORMAT, "vocab.json", "both have id 512"};
            edit(t.vocab, "\"bc</w>\": 513", "\"bc</w>\": 512");
            break;
        case 5:
            bc = (struct bad_case){"merge with unknown symbol", UNCLIP_E_FORMAT, "merges.txt:12:", "symbol 'zq' is not in vocab.json"};
            g_string_append(t.merges, "zq a\n");
            break;
        case 6:
            bc = (struct bad_case){"merge result not in vocab", UNCLIP_E_FORMAT, "merges.txt:12:", "'xy' is not in vocab.json"};
            g_string_append(t.merges, "x y\n");
            break;
        case 7:
            bc = (struct bad_case){"duplicate merge", UNCLIP_E_FORMAT, "merges.txt:12:", "duplicate merge 'a b' (first on line 2)"};
            g_string_append(t.merges, "a b\n");
            break;
        case 8:
            bc = (struct bad_case){"merges cut mid-line", UNCLIP_E_FORMAT, "merges.txt:11:", "found 1 field"};
            edit(t.merges, "hell o</w>\n", "hell");
            break;
        case 9:
            bc = (struct bad_case){"merges cut at a line end", UNCLIP_E_MODEL, "vocab.json", "'hello</w>' (id 521)"};
            edit(t.merges, "hell o</w>\n", "");
            break;
        case 10:
            bc = (struct bad_case){"three fields", UNCLIP_E_FORMAT, "merges.txt:5:", "found 3 fields"};
            edit(t.merges, "c a\n", "c a b\n");
            break;
        case 11:
            bc = (struct bad_case){"no header", UNCLIP_E_FORMAT, "merges.txt:1:", "#version"};
            edit(t.merges, "#version: 0.2\n", "");
            break;
        case 12:
            bc = (struct bad_case){"no pad token", UNCLIP_E_MODEL, "pad_token", "special_tokens_map.json"};
            edit(t.smap, ", \"pad_token\": \"!\"", "");
            edit(t.cfg, ", \"pad_token\": \"!\"", "");
            break;
        case 13:
            bc = (struct bad_case){"pad token not in vocab", UNCLIP_E_MODEL, "pad_token", "'<pad>' is not in vocab.json"};
            edit(t.smap, "\"pad_token\": \"!\"", "\"pad_token\": \"<pad>\"");
            break;
        case 14:
            bc = (struct bad_case){"no vocab.json", UNCLIP_E_MODEL, "vocab.json", "not found"};
            g_string_free(t.vocab, TRUE);
            t.vocab = NULL;
            break;
        case 15:
            bc = (struct bad_case){"no merges.txt", UNCLIP_E_MODEL, "merges.txt", "not found"};
            g_string_free(t.merges, TRUE);
            t.merges = NULL;
            break;
        case 16:
            bc = (struct bad_case){"byte symbol missing", UNCLIP_E_MODEL, "vocab.json", "byte symbol 'z</w>' of byte 0x7A"};
            edit(t.vocab, "\"z</w>\"", "\"zz</w>\"");
            break;
        case 17:
            bc = (struct bad_case){"added token id mismatch", UNCLIP_E_MODEL, "tokenizer_config.json", "'!' has id 0, but vocab.json gives it id 1"};
            edit(t.vocab, "\"!\": 0", "\"!\": 9999");
            edit(t.vocab, "\"\\\"\": 1", "\"!\": 1");
            edit(t.vocab, "\"!\": 9999", "\"\\\"\": 0");
            break;
        case 18:
            bc = (struct bad_case){"model_max_length", UNCLIP_E_MODEL, "tokenizer_config.json", "model_max_length must be 77"};
            edit(t.cfg, "\"model_max_length\": 77", "\"model_max_length\": 512");
            break;
        case 19:
            bc = (struct bad_case){"negative id", UNCLIP_E_FORMAT, "vocab.json", "id -3 is out of range"};
            edit(t.vocab, "\"ab\": 512", "\"ab\": -3");
            break;
        case 20:
            bc = (struct bad_case){"empty merge line", UNCLIP_E_FORMAT, "merges.txt:4:", "found 0 fields"};
            edit(t.merges, "ab c</w>\n", "\nab c</w>\n");
            break;
        case 21:
            bc = (struct bad_case){"special token config is a number", UNCLIP_E_FORMAT, "special_tokens_map.json", "'bos_token' must be a string"};
            edit(t.smap, "{\"content\": \"<|startoftext|>\"}", "5");
            break;
        default:
            done = true;
            break;
        }
        if (done) {
            toy_free(&t);
            break;
        }
        struct unclip_tokenizer *tok = NULL;
        struct unclip_err err = {0};
        unclip_status st = toy_load(&t, &tok, &err);
        bool ok = st == bc.want && strstr(err.msg, bc.msg1) && strstr(err.msg, bc.msg2);
        TU_CHECK(ok, "malformed '%s': status %d (want %d), message: %s", bc.what, st, bc.want,
                 err.msg);
        if (ok)
            printf("  malformed %-32s -> %s\n", bc.what, strrchr(err.msg, '/') ?
                   strrchr(err.msg, '/') + 1 : err.msg);
        unclip__tokenizer_free(tok);
        toy_free(&t);
    }
    /* Missing folder and NULL arguments. */
    struct unclip_tokenizer *tok = NULL;
    struct unclip_err err = {0};
    TU_CHECK(unclip__tokenizer_load("/nonexistent/tokenizer", &tok, &err) == UNCLIP_E_MODEL &&
                 !tok, "missing folder: %s", err.msg);
    TU_CHECK(unclip__tokenizer_load(NULL, &tok, &err) == UNCLIP_E_ARG, "NULL dir");
    struct unclip_tokens r;
    TU_CHECK(unclip__tokenizer_encode(NULL, "a", 1, &r, &err) == UNCLIP_E_ARG, "NULL tok");
}

/* ---- fuzz ----------------------------------------------------------------------------------- */

static void
fuzz_one(const struct unclip_tokenizer *tok, const char *s, size_t n, const char *what,
         double *worst)
{
    double t0 = now_s();
    struct unclip_tokens a = enc(tok, s, n);
    double dt = now_s() - t0;
    if (dt > *worst)
        *worst = dt;
    check_structure(tok, &a, n, what);
    struct unclip_tokens b = enc(tok, s, n);
    TU_CHECK(memcmp(&a, &b, sizeof a) == 0 || (same_ids(&a, &b) && a.n_untruncated ==
             b.n_untruncated), "%s: not deterministic", what);
    if (n < 4096)
        check_drop_report(tok, s, n, &a, what);
}

static void
random_utf8(struct tu_rng *r, GString *g, size_t n_chars)
{
    static const gunichar specials[] = {0, 0x7, 0x1B, 0x85, 0xA0, 0xAD, 0x130, 0x3A3, 0x301,
                                        0x316, 0x200B, 0x2028, 0xFEFF, 0xFFFD, 0x1F438,
                                        0x1F3FD, 0x200D, 0x17F, 0x4E00, 0xE000, 0x1FAE8};
    for (size_t i = 0; i < n_chars; i++) {
        uint64_t k = tu_rng_u64(r);
        gunichar c;
        switch (k % 8) {
        case 0: c = (gunichar)(k >> 8) % 0x80; break;
        case 1: c = (gunichar)(k >> 8) % 0x800; break;
        case 2: c = (gunichar)(k >> 8) % 0x10000; break;
        case 3: c = (gunichar)(k >> 8) % 0x110000; break;
        case 4: c = specials[(k >> 8) % G_N_ELEMENTS(specials)]; break;
        case 5: c = ' '; break;
        case 6: c = "!<|>'"[(k >> 8) % 5]; break;
        default: c = 'a' + (gunichar)((k >> 8) % 26); break;
        }
        if (c >= 0xD800 && c < 0xE000)
            c = 0xFFFD;
        if (c == 0)
            g_string_append_c(g, 0);
        else
            g_string_append_unichar(g, c);
        if (k % 97 == 0)
            g_string_append(g, (k & 1) ? "<|endoftext|>" : "<|StartOfText|>");
    }
}

static void
test_fuzz(const struct unclip_tokenizer *tok)
{
    struct tu_rng r;
    tu_rng_seed(&r, 2024);
    double worst = 0;
    double t0 = now_s();
    int count = 0;
    for (int it = 0; it < 2000; it++, count++) {
        GString *g = g_string_new(NULL);
        if (it % 2) {
            size_t n = tu_rng_u64(&r) % (it % 10 == 1 ? 4000 : 200);
            for (size_t i = 0; i < n; i++)
                g_string_append_c(g, (char)tu_rng_u64(&r));
        } else {
            random_utf8(&r, g, tu_rng_u64(&r) % (it % 10 == 0 ? 2000 : 120));
        }
        fuzz_one(tok, g->str, g->len, it % 2 ? "random bytes" : "random utf-8", &worst);
        g_string_free(g, TRUE);
    }
    printf("fuzz: %d random prompts in %.1f ms (slowest %.2f ms)\n", count,
           1e3 * (now_s() - t0), 1e3 * worst);

    /* 1 MiB prompts of several kinds. */
    const size_t MiB = 1u << 20;
    struct {
        const char *what;
        int kind;
    } big[] = {
        {"1 MiB random bytes", 0},   {"1 MiB random UTF-8", 1},  {"1 MiB words", 2},
        {"1 MiB one letter word", 3}, {"1 MiB of !", 4},         {"1 MiB combining marks", 5},
        {"1 MiB spaces", 6},         {"1 MiB NUL", 7},           {"1 MiB CJK", 8},
        {"1 MiB controls", 9},       {"1 MiB digits", 10},       {"1 MiB mixed letters", 11},
    };
    for (size_t b = 0; b < G_N_ELEMENTS(big); b++) {
        GString *g = g_string_sized_new(MiB + 16);
        while (g->len < MiB) {
            uint64_t k = tu_rng_u64(&r);
            switch (big[b].kind) {
            case 0: g_string_append_c(g, (char)k); break;
            case 1: random_utf8(&r, g, 1); break;
            case 2: g_string_append(g, (const char *[]){"a ", "frog ", "sitting ", "on ",
                                                        "leaf, ", "photo "}[k % 6]); break;
            case 3: g_string_append_c(g, (char)('a' + k % 26)); break;
            case 4: g_string_append_c(g, '!'); break;
            case 5: g_string_append_unichar(g, (k & 1) ? 0x301 : 0x316); break;
            case 6: g_string_append_c(g, ' '); break;
            case 7: g_string_append_c(g, 0); break;
            case 8: g_string_append_unichar(g, 0x4E00 + (gunichar)(k % 0x5000)); break;
            case 9: g_string_append_c(g, (char)(k % 32)); break;
            case 10: g_string_append_c(g, (char)('0' + k % 10)); break;
            default: g_string_append_unichar(g, (gunichar[]){'a', 0xE9, 0x3B1, 0x436, 0x5D0,
                                                            0x627, 0xE01, 0x905}[k % 8]);
                break;
            }
        }
        double w = 0;
        fuzz_one(tok, g->str, g->len, big[b].what, &w);
        struct unclip_tokens t = enc(tok, g->str, g->len);
        printf("  %-24s %7.1f ms  count %s%lld, truncated %d, invalid %lld\n", big[b].what,
               1e3 * w, t.count_exact ? "" : ">=", (long long)t.n_untruncated, t.truncated,
               (long long)t.n_invalid_utf8);
        g_string_free(g, TRUE);
    }
    /* Empty and NULL. */
    struct unclip_tokens e = enc(tok, NULL, 0);
    TU_CHECK(e.n_ids == 2 && e.mask[1] == 1 && e.mask[2] == 0, "empty prompt");
}

/* ---- faults --------------------------------------------------------------------------------- */

/* Load faults on the toy folder (same code paths, no 1 MB parse per step); encode faults on
 * the real vocabulary. */
static void
test_faults(const char *dir)
{
    int nomem = 0, ok = 0;
    struct toy toy;
    toy_make(&toy);
    gchar *toy_dir = toy_write(&toy);
    for (uint64_t k = 1; k < 200; k++) {
        struct unclip_tokenizer *tok = NULL;
        struct unclip_err err = {0};
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, k);
        unclip_status st = unclip__tokenizer_load(toy_dir, &tok, &err);
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
        if (st == UNCLIP_OK) {
            ok = 1;
            unclip__tokenizer_free(tok);
            break;
        }
        nomem += st == UNCLIP_E_NOMEM;
        TU_CHECK(st == UNCLIP_E_NOMEM && !tok, "load with allocation %llu failing: %d %s",
                 (unsigned long long)k, st, err.msg);
    }
    TU_CHECK(ok, "load never succeeded under fault injection");
    remove_dir(toy_dir);
    g_free(toy_dir);
    toy_free(&toy);
    struct unclip_tokenizer *tok = NULL;
    if (unclip__tokenizer_load(dir, &tok, NULL) != UNCLIP_OK)
        return;
    static const char prompt[] = "Ångström café, a frog on a leaf! ΟΔΟΣ 猫 aaaaaaaaaaaa";
    struct unclip_tokens want = encs(tok, prompt);
    int enc_fail = 0;
    for (uint64_t k = 1; k < 200; k++) {
        struct unclip_tokens t;
        struct unclip_err err = {0};
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, k);
        unclip_status st = unclip__tokenizer_encode(tok, prompt, sizeof prompt - 1, &t, &err);
        unclip__fault_arm(UNCLIP_FAULT_HOST_ALLOC, 0);
        if (st == UNCLIP_OK) {
            TU_CHECK(same_ids(&t, &want), "encode result after faults");
            break;
        }
        enc_fail++;
        TU_CHECK(st == UNCLIP_E_NOMEM, "encode with allocation %llu failing: %d",
                 (unsigned long long)k, st);
    }
    printf("faults: load failed cleanly at %d allocation points, encode at %d\n", nomem,
           enc_fail);
    unclip__tokenizer_free(tok);
}

/* ---- the default model's tokenizer ---------------------------------------------------------- */

static void
test_shapes(const char *dir)
{
    if (!dir || !g_file_test(dir, G_FILE_TEST_IS_DIR)) {
        printf("shapes-v1 tokenizer not found (%s): skipped\n", dir ? dir : "no path");
        return;
    }
    struct unclip_tokenizer *tok = NULL;
    struct unclip_err err = {0};
    unclip_status st = unclip__tokenizer_load(dir, &tok, &err);
    TU_CHECK(st == UNCLIP_OK, "shapes-v1 load: %s", err.msg);
    if (st != UNCLIP_OK)
        return;
    int32_t nv = unclip__tokenizer_vocab_size(tok);
    TU_CHECK(unclip__tokenizer_bos(tok) == nv - 2 && unclip__tokenizer_eos(tok) == nv - 1 &&
                 unclip__tokenizer_pad(tok) == 0,
             "shapes-v1 specials: vocab %d bos %d eos %d pad %d", nv, unclip__tokenizer_bos(tok),
             unclip__tokenizer_eos(tok), unclip__tokenizer_pad(tok));
    static const char *colours[] = {"red", "orange", "yellow", "green", "blue", "purple", "pink",
                                    "white", "black", "grey", "brown", "cyan"};
    static const char *shapes[] = {"circle", "square", "triangle", "star", "heart", "ring",
                                   "diamond", "cross"};
    static const char *where[] = {"", " on the left", " at the top right", " in the centre",
                                  " at the bottom", ", and a small"};
    int n = 0, bad = 0, longest = 0;
    for (size_t c = 0; c < G_N_ELEMENTS(colours); c++) {
        for (size_t s = 0; s < G_N_ELEMENTS(shapes); s++) {
            for (size_t w = 0; w < G_N_ELEMENTS(where); w++) {
                gchar *cap = g_strdup_printf("a %s %s%s", colours[c], shapes[s], where[w]);
                struct unclip_tokens t = encs(tok, cap);
                check_structure(tok, &t, strlen(cap), cap);
                char *back = NULL;
                unclip__tokenizer_decode(tok, t.ids, (size_t)t.n_ids, true, &back, NULL);
                /* decode spaces punctuation as its own word: compare without spaces */
                gchar *a = g_strdup(cap), *b = g_strdup(back ? back : "");
                g_strdelimit(a, " ", '_');
                GString *x = g_string_new(NULL), *y = g_string_new(NULL);
                for (char *p = a; *p; p++)
                    if (*p != '_')
                        g_string_append_c(x, *p);
                for (char *p = b; *p; p++)
                    if (*p != ' ')
                        g_string_append_c(y, *p);
                bad += strcmp(x->str, y->str) != 0 || t.truncated;
                if (t.n_ids > longest)
                    longest = t.n_ids;
                n++;
                g_string_free(x, TRUE);
                g_string_free(y, TRUE);
                g_free(a);
                g_free(b);
                unclip__free(back);
                g_free(cap);
            }
        }
    }
    TU_CHECK(bad == 0, "shapes-v1: %d of %d captions do not round-trip", bad, n);
    printf("shapes-v1: vocab %d, %d captions round-trip (longest %d ids)\n", nv, n - bad, longest);
    unclip__tokenizer_free(tok);
}

int
main(int argc, char **argv)
{
    gchar *dir = g_strdup(tu_golden_path("models/tiny-karlo/tokenizer"));
    struct unclip_tokenizer *tok = NULL;
    struct unclip_err err = {0};
    double t0 = now_s();
    unclip_status st = unclip__tokenizer_load(dir, &tok, &err);
    double t_load = now_s() - t0;
    TU_CHECK(st == UNCLIP_OK, "load %s: %s", dir, err.msg);
    if (st != UNCLIP_OK)
        return tu_summary("tokenizer");
    printf("loaded %s: %d ids in %.1f ms\n", dir, unclip__tokenizer_vocab_size(tok), 1e3 * t_load);
    TU_CHECK(unclip__tokenizer_vocab_size(tok) == 49408 && unclip__tokenizer_bos(tok) == 49406 &&
                 unclip__tokenizer_eos(tok) == 49407 && unclip__tokenizer_pad(tok) == 0,
             "karlo special ids");

    test_goldens(tok);
    test_reference_vectors(tok);
    test_unicode(tok);
    gchar *merges = g_build_filename(dir, "merges.txt", NULL);
    test_bpe(tok, merges);
    g_free(merges);
    test_toy();
    test_malformed();
    test_fuzz(tok);
    test_faults(dir);
    test_shapes(argc > 1 ? argv[1] : NULL);

    unclip__tokenizer_free(tok);
    g_free(dir);
    return tu_summary("tokenizer");
}
