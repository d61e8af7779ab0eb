/* CLIP byte-level BPE tokenizer, as Karlo's diffusers pipeline runs it.
 *
 * Reference behaviour: transformers' slow CLIPTokenizer (v4.38) without ftfy, called with
 * padding="max_length", max_length=77, truncation=True (reference/clip.md section 3, goldens
 * README section 6). Per prompt:
 *
 *   1. The raw text is cut at every literal special token (bos, eos, pad, unk and the
 *      added_tokens_decoder entries; case-sensitive, leftmost then longest). Each literal is
 *      its own id: with Karlo's pad token every "!" becomes id 0.
 *   2. Each piece between literals is cleaned like BERT's BasicTokenizer: U+0000, U+FFFD and
 *      every category C* code point (controls, format chars, private use, and everything
 *      unassigned in Unicode 14.0, the reference's tables) are dropped, TAB/LF/CR and Zs
 *      become spaces, CJK ideographs get spaces around them; then NFC, split on whitespace,
 *      Python str.lower() per word (full case mapping: U+0130 -> "i" U+0307, final sigma).
 *   3. Pre-tokens per word, leftmost-first: "<|startoftext|>", "<|endoftext|>", 's 't 're 've
 *      'm 'll 'd, letter runs \p{L}+, ONE number \p{N}, runs of anything else.
 *   4. UTF-8 bytes -> GPT-2 byte symbols, "</w>" on the last; BPE by merge rank; vocab ids.
 *   5. ids = [bos] + first 75 content ids + [eos], padded to 77 with the pad id; mask = 1 on
 *      bos..eos (pad-id tokens written by the prompt itself are real tokens with mask 1).
 *
 * Files read from the tokenizer folder: vocab.json, merges.txt, special_tokens_map.json and
 * tokenizer_config.json (either of the last two may be absent; special_tokens_map.json wins
 * where both define a token, as in transformers).
 *
 * Known limits: Unicode classes come from GLib (categories, NFC, simple lower-case mapping)
 * filtered through an embedded table of the code points assigned in Unicode 14.0, so newer
 * GLib tables give the reference's result. With a GLib older than Unicode 14 (< 2.72) code
 * points new in 14.0 are dropped. Case-insensitive matching of the special/contraction
 * pre-tokens treats U+017F (long s) as "s", like the reference's regex; no other folding.
 */
#ifndef UNCLIP_IO_TOKENIZER_H
#define UNCLIP_IO_TOKENIZER_H

#include "core/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sequence length the text encoder takes (tokenizer_config.json model_max_length must say
 * this when it is present). */
#define UNCLIP_TOKENIZER_MAX_IDS 77

/* Counting stops after this many content tokens: longer prompts report a lower bound
 * (count_exact = false). Together with a cut of giant words (over 16384 code points, or a
 * pre-token over 16384 bytes, for CLIP's vocabulary) this bounds the work on huge inputs. */
#define UNCLIP_TOKENIZER_COUNT_CAP 4096

/* Bytes of the dropped-text preview in struct unclip_tokens (NUL included). */
#define UNCLIP_TOKENIZER_PREVIEW 256

struct unclip_tokenizer;

/* Result of one encode. Plain data, no pointers: copy freely. */
struct unclip_tokens {
    int32_t ids[UNCLIP_TOKENIZER_MAX_IDS];  /* [bos, content..., eos, pad...]              */
    uint8_t mask[UNCLIP_TOKENIZER_MAX_IDS]; /* 1 on positions 0..n_ids-1, else 0           */
    int32_t n_ids;          /* positions holding bos..eos: 2..77; eos is ids[n_ids - 1]      */
    int64_t n_untruncated;  /* ids the reference makes without truncation (bos + content +
                               eos); a lower bound when !count_exact                        */
    bool count_exact;       /* false when counting stopped (UNCLIP_TOKENIZER_COUNT_CAP, or a
                               giant word); then truncated is true as well                  */
    bool truncated;         /* content had more than 75 tokens; the tail was dropped        */
    /* When truncated: byte offset in the input where the dropped part starts, i.e. the start
     * of the first word (whitespace-separated, after cleanup) or special literal that lost a
     * token; == input length when nothing was dropped. dropped_partial: that word kept some
     * of its leading tokens (it was cut in the middle). */
    size_t dropped_offset;
    bool dropped_partial;
    /* input[dropped_offset..] for messages: valid UTF-8, control characters removed,
     * whitespace runs collapsed to one space, trimmed, cut at a character boundary with "..."
     * when longer than the buffer. "" when nothing was dropped. */
    char dropped_preview[UNCLIP_TOKENIZER_PREVIEW];
    /* Invalid UTF-8 sequences in the input (each maximal invalid subpart counts once). They
     * are read as U+FFFD, which the cleanup drops like the reference drops U+FFFD; e.g.
     * "a\xffb" encodes as "ab". */
    int64_t n_invalid_utf8;
};

/* Loads <dir>/vocab.json, <dir>/merges.txt and the special-token configs and validates them:
 * vocab ids unique and dense 0..n-1, every byte symbol and byte symbol + "</w>" present,
 * every merge a pair of vocab tokens whose concatenation is a vocab token, no duplicate merge,
 * every other vocab token produced by a merge or a special token (a merges.txt cut at a line
 * end is caught here), bos/eos/pad defined and consistent with vocab.json.
 * Errors name the file and the line or entry:
 *   UNCLIP_E_MODEL  a file or a special token is missing, files disagree, unsupported length
 *   UNCLIP_E_FORMAT malformed JSON, malformed merges line, bad or duplicate entries
 *   UNCLIP_E_IO, UNCLIP_E_NOMEM, UNCLIP_E_ARG (NULL arguments).
 * On success *out is a new tokenizer the caller frees with unclip__tokenizer_free(). It is
 * read-only afterwards: encode/decode may run from several threads at once. */
unclip_status unclip__tokenizer_load(const char *dir, struct unclip_tokenizer **out,
                                     struct unclip_err *err);
void unclip__tokenizer_free(struct unclip_tokenizer *tok); /* NULL is a no-op */

/* Encodes text[0..len) (any bytes: NUL and invalid UTF-8 are handled as described above;
 * text may be NULL when len is 0). Work is bounded: once more than
 * UNCLIP_TOKENIZER_COUNT_CAP content tokens are found, or inside a giant word, the rest is
 * not tokenized (the first 75 ids are still the reference's: a cut happens hundreds of tokens
 * after them); the scan of the remaining bytes is linear. A 1 MiB prompt takes milliseconds
 * to tens of milliseconds.
 * Errors: UNCLIP_E_ARG (tok or out NULL, text NULL with len > 0), UNCLIP_E_NOMEM. *out is
 * written only on success. */
unclip_status unclip__tokenizer_encode(const struct unclip_tokenizer *tok, const char *text,
                                       size_t len, struct unclip_tokens *out,
                                       struct unclip_err *err);

/* Text of ids[0..n) for messages: byte symbols back to bytes, "</w>" -> space, trimmed,
 * invalid UTF-8 replaced by U+FFFD. skip_special drops bos and eos (a pad token written by the
 * prompt, such as "!", is kept). *out is a new NUL-terminated string freed with
 * unclip__free(). Errors: UNCLIP_E_ARG (an id out of range, NULL arguments), UNCLIP_E_NOMEM. */
unclip_status unclip__tokenizer_decode(const struct unclip_tokenizer *tok, const int32_t *ids,
                                       size_t n, bool skip_special, char **out,
                                       struct unclip_err *err);

/* Vocabulary size and the special ids. */
int32_t unclip__tokenizer_vocab_size(const struct unclip_tokenizer *tok);
int32_t unclip__tokenizer_bos(const struct unclip_tokenizer *tok);
int32_t unclip__tokenizer_eos(const struct unclip_tokenizer *tok);
int32_t unclip__tokenizer_pad(const struct unclip_tokenizer *tok);

/* The vocab.json string of an id (byte symbols, e.g. "photo</w>"), NULL when out of range.
 * Owned by the tokenizer. */
const char *unclip__tokenizer_token(const struct unclip_tokenizer *tok, int32_t id);

/* BPE of one pre-token given as UTF-8 bytes (step 4 only: no cleanup, no splitting).
 * Writes at most cap ids to out and the full count to *n_out. For tests. Errors: UNCLIP_E_ARG
 * (n == 0, NULL arguments), UNCLIP_E_NOMEM. */
unclip_status unclip__tokenizer_bpe(const struct unclip_tokenizer *tok, const char *bytes,
                                    size_t n, int32_t *out, size_t cap, size_t *n_out,
                                    struct unclip_err *err);

#endif
