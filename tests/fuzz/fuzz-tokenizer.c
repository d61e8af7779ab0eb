/* Fuzz target: CLIP tokenizer encoding (io/tokenizer.h) of any bytes as a prompt, with two
 * vocabularies loaded once: Karlo's (the golden tiny-karlo tokenizer: 49408 ids, 48894
 * merges) and the default model's small one (707 ids, so most words fall back to bytes).
 * The first input byte picks the tokenizer; the rest is the prompt. Checked:
 *   - any bytes encode (only UNCLIP_E_NOMEM may fail);
 *   - the layout promises: [bos, content, eos, pad...], mask 1 exactly on bos..eos, ids in
 *     the vocabulary, counts consistent with `truncated`;
 *   - the reported cut: the dropped offset and preview are inside the prompt / valid UTF-8,
 *     and the prompt cut at the dropped offset encodes to the kept tokens (so what the user
 *     is told was dropped is exactly what was dropped);
 *   - decode of the ids works and gives valid UTF-8; encoding is deterministic.
 * Tokenizer folders: $UNCLIP_FUZZ_TOKENIZER_A / _B, else the paths compiled in by meson. */
#include "fuzz.h"
#include "io/tokenizer.h"

#include <glib.h>
#include <string.h>

#ifndef FUZZ_TOKENIZER_A
#define FUZZ_TOKENIZER_A ""
#endif
#ifndef FUZZ_TOKENIZER_B
#define FUZZ_TOKENIZER_B ""
#endif

static struct unclip_tokenizer *toks[2];

static struct unclip_tokenizer *
load(const char *env, const char *fallback)
{
    const char *dir = getenv(env);
    if (!dir || !dir[0])
        dir = fallback;
    struct unclip_err err = {0};
    struct unclip_tokenizer *t = NULL;
    if (unclip__tokenizer_load(dir, &t, &err) != UNCLIP_OK) {
        fprintf(stderr, "fuzz-tokenizer: cannot load the tokenizer in '%s' (set %s): %s\n",
                dir, env, err.msg);
        exit(1);
    }
    return t;
}

static void
free_toks(void)
{
    unclip__tokenizer_free(toks[0]);
    unclip__tokenizer_free(toks[1]);
    toks[0] = toks[1] = NULL;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    toks[0] = load("UNCLIP_FUZZ_TOKENIZER_A", FUZZ_TOKENIZER_A);
    toks[1] = load("UNCLIP_FUZZ_TOKENIZER_B", FUZZ_TOKENIZER_B);
    atexit(free_toks);
    return 0;
}

static bool
same_tokens(const struct unclip_tokens *a, const struct unclip_tokens *b)
{
    return !memcmp(a->ids, b->ids, sizeof a->ids) && !memcmp(a->mask, b->mask, sizeof a->mask) &&
           a->n_ids == b->n_ids && a->n_untruncated == b->n_untruncated &&
           a->count_exact == b->count_exact && a->truncated == b->truncated &&
           a->dropped_offset == b->dropped_offset && a->dropped_partial == b->dropped_partial &&
           !strcmp(a->dropped_preview, b->dropped_preview) &&
           a->n_invalid_utf8 == b->n_invalid_utf8;
}

static void
check_layout(const struct unclip_tokenizer *tok, const struct unclip_tokens *r, size_t len)
{
    int32_t V = unclip__tokenizer_vocab_size(tok), bos = unclip__tokenizer_bos(tok),
            eos = unclip__tokenizer_eos(tok), pad = unclip__tokenizer_pad(tok);
    int32_t T = UNCLIP_TOKENIZER_MAX_IDS;
    FZ_ASSERT(r->n_ids >= 2 && r->n_ids <= T, "n_ids %d", (int)r->n_ids);
    FZ_ASSERT(r->ids[0] == bos && r->ids[r->n_ids - 1] == eos, "bos/eos misplaced");
    for (int32_t i = 0; i < T; i++) {
        FZ_ASSERT(r->ids[i] >= 0 && r->ids[i] < V, "id %d at %d", (int)r->ids[i], (int)i);
        FZ_ASSERT(r->mask[i] == (i < r->n_ids), "mask[%d] = %d", (int)i, (int)r->mask[i]);
        if (i >= r->n_ids)
            FZ_ASSERT(r->ids[i] == pad, "padding id %d at %d", (int)r->ids[i], (int)i);
    }
    FZ_ASSERT(r->n_untruncated >= r->n_ids, "n_untruncated %lld < n_ids %d",
              (long long)r->n_untruncated, (int)r->n_ids);
    if (r->count_exact)
        FZ_ASSERT(r->truncated == (r->n_untruncated > T), "truncated %d with %lld ids",
                  (int)r->truncated, (long long)r->n_untruncated);
    else
        FZ_ASSERT(r->truncated, "an inexact count without truncation");
    FZ_ASSERT(r->truncated || r->n_untruncated == r->n_ids, "untruncated count %lld vs %d",
              (long long)r->n_untruncated, (int)r->n_ids);
    FZ_ASSERT(!r->truncated || r->n_ids == T, "truncated with %d ids", (int)r->n_ids);
    FZ_ASSERT(r->dropped_offset <= len, "dropped offset %zu past %zu", r->dropped_offset, len);
    FZ_ASSERT(memchr(r->dropped_preview, 0, sizeof r->dropped_preview) != NULL,
              "preview not terminated");
    FZ_ASSERT(g_utf8_validate(r->dropped_preview, -1, NULL), "preview not UTF-8");
    if (!r->truncated)
        FZ_ASSERT(r->dropped_offset == len && !r->dropped_preview[0] && !r->dropped_partial,
                  "a cut reported for an untruncated prompt");
    FZ_ASSERT(r->n_invalid_utf8 >= 0 && (uint64_t)r->n_invalid_utf8 <= len, "n_invalid %lld",
              (long long)r->n_invalid_utf8);
}

static unclip_status
one(const uint8_t *data, size_t size)
{
    if (size == 0)
        return UNCLIP_OK;
    const struct unclip_tokenizer *tok = toks[data[0] & 1];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct unclip_err err = {0};
    struct unclip_tokens r, r2, cut;
    unclip_status st = unclip__tokenizer_encode(tok, len ? text : NULL, len, &r, &err);
    if (st != UNCLIP_OK) {
        FZ_ASSERT(st == UNCLIP_E_NOMEM, "encode failed: %d %s", (int)st, err.msg);
        fz_check_failure(st, &err, "tokenizer_encode");
        return st;
    }
    check_layout(tok, &r, len);
    st = unclip__tokenizer_encode(tok, len ? text : NULL, len, &r2, &err);
    if (st == UNCLIP_OK)
        FZ_ASSERT(same_tokens(&r, &r2), "two encodings of one prompt differ");
    else
        return st;

    if (r.truncated) {
        /* The kept part alone: the prompt up to where the dropped words start. */
        size_t k = r.dropped_offset;
        st = unclip__tokenizer_encode(tok, k ? text : NULL, k, &cut, &err);
        if (st != UNCLIP_OK)
            return st;
        check_layout(tok, &cut, k);
        int32_t T = UNCLIP_TOKENIZER_MAX_IDS;
        if (r.dropped_partial) {
            /* the cut word kept some tokens: the prefix has fewer, and they match */
            FZ_ASSERT(!cut.truncated && cut.n_ids < T, "kept part of a partial cut: %d ids, "
                      "truncated %d", (int)cut.n_ids, (int)cut.truncated);
            FZ_ASSERT(!memcmp(cut.ids, r.ids, (size_t)(cut.n_ids - 1) * sizeof r.ids[0]),
                      "kept part encodes differently (partial cut at %zu)", k);
        } else {
            FZ_ASSERT(!cut.truncated && cut.n_ids == T, "kept part (%zu of %zu bytes) gives "
                      "%d ids, truncated %d", k, len, (int)cut.n_ids, (int)cut.truncated);
            FZ_ASSERT(!memcmp(cut.ids, r.ids, sizeof r.ids), "kept part (%zu bytes) encodes "
                      "differently", k);
        }
    }

    char *s = NULL;
    st = unclip__tokenizer_decode(tok, r.ids, (size_t)r.n_ids, data[0] & 2, &s, &err);
    if (st != UNCLIP_OK) {
        FZ_ASSERT(st == UNCLIP_E_NOMEM, "decode failed: %s", err.msg);
        return st;
    }
    FZ_ASSERT(g_utf8_validate(s, -1, NULL), "decode gave invalid UTF-8");
    unclip__free(s);
    return UNCLIP_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_run_with_fault(one, data, size);
    return 0;
}
