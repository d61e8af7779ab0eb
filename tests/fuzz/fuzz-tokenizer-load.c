/* Fuzz target: loading a tokenizer folder (io/tokenizer.h) from any bytes. The input is cut at
 * each line "#unclip-fuzz-file#" into up to four files, written into a scratch folder:
 * vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json (fewer parts: the
 * later files are absent). A tokenizer that loads must then encode a few prompts and decode
 * their ids within its vocabulary. Seeds are real small tokenizers, so mutations stay close
 * to valid files. */
#include "fuzz.h"
#include "io/tokenizer.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

#define SEP "\n#unclip-fuzz-file#\n"

static const char *const names[4] = {"vocab.json", "merges.txt", "special_tokens_map.json",
                                     "tokenizer_config.json"};
static char *root;
static char *paths[4];

static void
cleanup(void)
{
    for (int i = 0; i < 4; i++) {
        if (paths[i])
            g_unlink(paths[i]);
        g_free(paths[i]);
        paths[i] = NULL;
    }
    if (root)
        g_rmdir(root);
    g_free(root);
    root = NULL;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    root = fz_scratch_dir("unclip-fuzz-tok-XXXXXX");
    FZ_ASSERT(root != NULL, "no scratch folder");
    for (int i = 0; i < 4; i++)
        paths[i] = g_build_filename(root, names[i], NULL);
    atexit(cleanup);
    return 0;
}

static void
write_parts(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    size_t sl = strlen(SEP);
    for (int i = 0; i < 4; i++) {
        g_unlink(paths[i]);
        if (!p)
            continue;
        const char *q = p;
        /* memmem: the input may hold NULs */
        const char *hit = NULL;
        for (; q + sl <= end; q++)
            if (!memcmp(q, SEP, sl)) {
                hit = q;
                break;
            }
        const char *stop = hit ? hit : end;
        FZ_ASSERT(fz_write_file(paths[i], p, (size_t)(stop - p)), "cannot write %s",
                  paths[i]);
        p = hit ? hit + sl : NULL;
    }
}

static const char *const prompts[] = {
    "a red circle on the left of a blue square",
    "", "!!!", "<|startoftext|>x<|endoftext|>", "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 don't",
    "\xff\xfe invalid \x80 bytes", NULL};

static unclip_status
one(const uint8_t *data, size_t size)
{
    write_parts(data, size);
    struct unclip_err err = {0};
    struct unclip_tokenizer *tok = NULL;
    unclip_status st = unclip__tokenizer_load(root, &tok, &err);
    if (st != UNCLIP_OK) {
        fz_check_failure(st, &err, "tokenizer_load");
        FZ_ASSERT(tok == NULL, "a failed load returned a tokenizer");
        return st;
    }
    int32_t V = unclip__tokenizer_vocab_size(tok);
    FZ_ASSERT(V > 0, "vocab size %d", (int)V);
    int32_t specials[3] = {unclip__tokenizer_bos(tok), unclip__tokenizer_eos(tok),
                           unclip__tokenizer_pad(tok)};
    for (int i = 0; i < 3; i++)
        FZ_ASSERT(specials[i] >= 0 && specials[i] < V && unclip__tokenizer_token(tok, specials[i]),
                  "special id %d of %d", (int)specials[i], (int)V);
    for (int i = 0; prompts[i] && st == UNCLIP_OK; i++) {
        struct unclip_tokens r;
        st = unclip__tokenizer_encode(tok, prompts[i], strlen(prompts[i]), &r, &err);
        if (st != UNCLIP_OK) {
            FZ_ASSERT(st == UNCLIP_E_NOMEM, "encode: %s", err.msg);
            break;
        }
        FZ_ASSERT(r.n_ids >= 2 && r.n_ids <= UNCLIP_TOKENIZER_MAX_IDS, "n_ids %d",
                  (int)r.n_ids);
        for (int32_t k = 0; k < UNCLIP_TOKENIZER_MAX_IDS; k++)
            FZ_ASSERT(r.ids[k] >= 0 && r.ids[k] < V, "id %d of %d", (int)r.ids[k], (int)V);
        char *s = NULL;
        st = unclip__tokenizer_decode(tok, r.ids, (size_t)r.n_ids, false, &s, &err);
        if (st == UNCLIP_OK)
            FZ_ASSERT(g_utf8_validate(s, -1, NULL), "decode gave invalid UTF-8");
        else
            FZ_ASSERT(st == UNCLIP_E_NOMEM, "decode: %s", err.msg);
        unclip__free(s);
    }
    unclip__tokenizer_free(tok);
    return st;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_run_with_fault(one, data, size);
    return 0;
}
