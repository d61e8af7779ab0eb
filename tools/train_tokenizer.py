"""Learn a small byte-level BPE tokenizer from the world's captions, in CLIP's file format.

Usage:
    /usr/bin/python3 tools/train_tokenizer.py [--out data/models/shapes-v1/tokenizer]
        [--scenes 20000] [--seed 1234] [--max-vocab 2048] [--check-goldens ../shared/goldens]

Writes vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json that the slow
transformers CLIPTokenizer (and our C engine) read unchanged:

  * vocab.json: ids 0..255 the GPT-2 byte symbols in bytes_to_unicode order, 256..511 the
    same with "</w>", then one id per learned merge (id = 512 + merge rank; the trainer never
    learns a merge whose concatenation already is a token, so the layout is exact), then
    "<|startoftext|>" and "<|endoftext|>" as the last two ids. Written like transformers
    saves it: sorted keys, indent 2, raw UTF-8.
  * merges.txt: "#version: 0.2", then the merges in rank order.
  * "!" is the pad token (id 0), as in Karlo's tokenizer, with the same config files.

Learning applies the same text path as the tokenizer at run time: the no-ftfy cleanup
(BERT BasicTokenizer: drop controls, spaces, CJK spacing, NFC, lower-case), the split at
special literals, then CLIP's pre-tokenisation (letter runs, single digits, other runs).

The module also holds ClipBPE, a small Python re-implementation of the slow CLIPTokenizer
as Karlo's pipeline calls it (padding to 77 with "!" = 0, truncation keeping eos last).
With --check-goldens it is first checked against the 60 golden prompts of the real
Karlo vocabulary, so the verification of our own files uses a trusted encoder.
"""

import argparse
import collections
import json
import os
import sys
import unicodedata

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
PAD = "!"
MAX_LENGTH = 77
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")

# ---------------------------------------------------------------------------------------
# Text path shared by training and encoding


def bytes_to_unicode():
    """GPT-2 / CLIP byte -> printable symbol table, as a list indexed by symbol id order.

    Returns (order, table): order lists the 256 bytes in id order, table maps byte -> char.
    """
    order = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1))
             + list(range(0xAE, 0xFF + 1)))
    chars = list(order)
    n = 0
    for b in range(256):
        if b not in order:
            order.append(b)
            chars.append(256 + n)
            n += 1
    return order, {b: chr(c) for b, c in zip(order, chars)}


_BYTE_ORDER, BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}

_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def clean_text(text):
    """transformers' fallback cleanup without ftfy (BasicTokenizer, no accent stripping)."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        cat = unicodedata.category(ch)
        if ch in "\t\n\r" or cat == "Zs":
            out.append(" ")
            continue
        if cat.startswith("C"):
            continue
        if any(lo <= cp <= hi for lo, hi in _CJK):
            out.append(" " + ch + " ")
        else:
            out.append(ch)
    text = unicodedata.normalize("NFC", "".join(out))
    return " ".join(w.lower() for w in text.split())


def _is_letter(ch):
    return unicodedata.category(ch).startswith("L")


def _is_number(ch):
    return unicodedata.category(ch).startswith("N")


def pretokenize(text):
    """CLIP's regex, as a scanner: specials, contractions, letter runs, one digit, other runs."""
    pieces = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        lit = next((s for s in (BOS, EOS) if text.startswith(s, i)), None)
        if lit is None:
            lit = next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
        if lit is not None:
            pieces.append(lit)
            i += len(lit)
            continue
        j = i + 1
        if _is_letter(ch):
            while j < n and _is_letter(text[j]):
                j += 1
        elif _is_number(ch):
            pass
        else:
            while j < n and not (text[j].isspace() or _is_letter(text[j])
                                 or _is_number(text[j])):
                j += 1
        pieces.append(text[i:j])
        i = j
    return pieces


def split_specials(text, specials=(BOS, EOS, PAD)):
    """Cut text at every literal special token (longest first, left to right).

    Returns a list of (is_special, string)."""
    out, buf, i = [], [], 0
    specials = sorted(specials, key=len, reverse=True)
    while i < len(text):
        hit = next((s for s in specials if text.startswith(s, i)), None)
        if hit is None:
            buf.append(text[i])
            i += 1
            continue
        if buf:
            out.append((False, "".join(buf)))
            buf = []
        out.append((True, hit))
        i += len(hit)
    if buf:
        out.append((False, "".join(buf)))
    return out


def word_symbols(piece):
    """A pre-token as byte symbols, "</w>" on the last one."""
    syms = [BYTE_ENCODER[b] for b in piece.encode("utf-8")]
    syms[-1] = syms[-1] + "</w>"
    return syms

# ---------------------------------------------------------------------------------------
# Encoder (slow CLIPTokenizer behaviour, as Karlo's pipeline calls it)


class ClipBPE:
    def __init__(self, vocab, merges):
        self.vocab = dict(vocab)
        self.inv = {v: k for k, v in self.vocab.items()}
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.bos = self.vocab[BOS]
        self.eos = self.vocab[EOS]
        self.pad = self.vocab[PAD]
        self.cache = {BOS: [BOS], EOS: [EOS]}

    @classmethod
    def load(cls, folder):
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        return cls(vocab, [tuple(l.split()) for l in lines])

    def bpe(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        syms = word_symbols(piece)
        while len(syms) > 1:
            best = min(((self.ranks.get(p, 1 << 30), k) for k, p in
                        enumerate(zip(syms, syms[1:]))))
            if best[0] == 1 << 30:
                break
            pair = (syms[best[1]], syms[best[1] + 1])
            out, k = [], 0
            while k < len(syms):
                if k + 1 < len(syms) and (syms[k], syms[k + 1]) == pair:
                    out.append(syms[k] + syms[k + 1])
                    k += 2
                else:
                    out.append(syms[k])
                    k += 1
            syms = out
        self.cache[piece] = syms
        return syms

    def tokens(self, text):
        out = []
        for special, part in split_specials(text):
            if special:
                out.append(part)
                continue
            for piece in pretokenize(clean_text(part)):
                out.extend(self.bpe(piece))
        return out

    def encode(self, text):
        """Untruncated ids with bos/eos."""
        return [self.bos] + [self.vocab.get(t, self.eos) for t in self.tokens(text)] + [self.eos]

    def __call__(self, text, max_length=MAX_LENGTH):
        """(ids, mask), padded/truncated to max_length like padding="max_length"."""
        ids = self.encode(text)
        if len(ids) > max_length:
            ids = ids[:max_length - 1] + [self.eos]
        mask = [1] * len(ids) + [0] * (max_length - len(ids))
        return ids + [self.pad] * (max_length - len(ids)), mask

    def decode(self, ids):
        toks = [self.inv[i] for i in ids if i not in (self.bos, self.eos)]
        raw = bytearray(BYTE_DECODER[c] for c in "".join(toks))
        return raw.decode("utf-8", "replace").replace("</w>", " ").strip()

# ---------------------------------------------------------------------------------------
# Training


def base_vocab():
    syms = [BYTE_ENCODER[b] for b in _BYTE_ORDER]
    return syms + [s + "</w>" for s in syms]


def corpus_words(texts):
    """Pre-token counts over texts, through the run-time text path."""
    counts = collections.Counter()
    for t in texts:
        for special, part in split_specials(t):
            if not special:
                counts.update(pretokenize(clean_text(part)))
    return counts


def learn_bpe(word_counts, max_merges, min_count=2):
    """Greedy BPE: repeatedly merge the most frequent adjacent pair.

    Ties break on the pair's strings, so the result is deterministic. A pair whose
    concatenation is already a token is skipped (keeps id = 512 + rank exact)."""
    words = [(word_symbols(w), c) for w, c in sorted(word_counts.items())]
    known = set(base_vocab())
    merges = []
    while len(merges) < max_merges:
        pairs = collections.Counter()
        for syms, c in words:
            for p in zip(syms, syms[1:]):
                pairs[p] += c
        cands = sorted(((-c, p) for p, c in pairs.items()
                        if c >= min_count and p[0] + p[1] not in known))
        if not cands:
            break
        pair = cands[0][1]
        merged = pair[0] + pair[1]
        merges.append(pair)
        known.add(merged)
        new_words = []
        for syms, c in words:
            out, k = [], 0
            while k < len(syms):
                if k + 1 < len(syms) and (syms[k], syms[k + 1]) == pair:
                    out.append(merged)
                    k += 2
                else:
                    out.append(syms[k])
                    k += 1
            new_words.append((out, c))
        words = new_words
    return merges


def build_vocab(merges):
    toks = base_vocab() + [a + b for a, b in merges] + [BOS, EOS]
    vocab = {t: i for i, t in enumerate(toks)}
    if len(vocab) != len(toks):
        raise RuntimeError("duplicate token in vocabulary")
    return vocab


def _added(content, normalized):
    return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False,
            "single_word": False, "special": True}


def write_tokenizer(folder, vocab, merges):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))
    n = len(vocab)
    config = {
        "added_tokens_decoder": {
            str(vocab[PAD]): _added(PAD, False),
            str(n - 2): _added(BOS, True),
            str(n - 1): _added(EOS, True),
        },
        "bos_token": BOS,
        "clean_up_tokenization_spaces": True,
        "eos_token": EOS,
        "errors": "replace",
        "model_max_length": MAX_LENGTH,
        "pad_token": PAD,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": EOS,
    }
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    tok = {"content": None, "lstrip": False, "normalized": True, "rstrip": False,
           "single_word": False}
    special = {"bos_token": dict(tok, content=BOS), "eos_token": dict(tok, content=EOS),
               "pad_token": PAD, "unk_token": dict(tok, content=EOS)}
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(special, indent=2, sort_keys=True, ensure_ascii=False) + "\n")

# ---------------------------------------------------------------------------------------
# Checks


def check_against_goldens(goldens_dir):
    """Our encoder vs the reference ids of the 60 golden prompts (real CLIP vocabulary)."""
    tok = ClipBPE.load(os.path.join(goldens_dir, "models", "tiny-karlo", "tokenizer"))
    with open(os.path.join(goldens_dir, "goldens", "tokenizer_prompts.json"),
              encoding="utf-8") as f:
        cases = json.load(f)
    bad = [c["name"] for c in cases if tok.encode(c["text"]) != c["untruncated_ids"]]
    if bad:
        raise SystemExit("encoder disagrees with goldens on: %s" % ", ".join(bad))
    return len(cases)


def check_tokenizer(folder, texts):
    """Round trip and length checks of the written files; returns the longest id count."""
    tok = ClipBPE.load(folder)
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    n = len(vocab)
    assert vocab[PAD] == 0 and vocab[BOS] == n - 2 and vocab[EOS] == n - 1
    assert sorted(vocab.values()) == list(range(n)), "ids not dense"
    longest = 0
    for t in texts:
        raw = tok.encode(t)
        longest = max(longest, len(raw))
        if len(raw) > MAX_LENGTH:
            raise SystemExit("caption too long (%d ids): %r" % (len(raw), t))
        if any(i == tok.eos for i in raw[1:-1]):
            raise SystemExit("unknown symbol in %r" % t)
        expect = " ".join(pretokenize(clean_text(t)))
        if tok.decode(raw) != expect:
            raise SystemExit("round trip: %r -> %r" % (t, tok.decode(raw)))
        if tok.encode(tok.decode(raw)) != raw:
            raise SystemExit("re-encode differs for %r" % t)
        ids, mask = tok(t)
        assert len(ids) == MAX_LENGTH and sum(mask) == len(raw) and ids[len(raw) - 1] == tok.eos
    return longest


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import numpy as np
    import world

    repo = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(repo, "data/models/shapes-v1/tokenizer"))
    ap.add_argument("--scenes", type=int, default=20000)
    ap.add_argument("--captions-per-scene", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-vocab", type=int, default=2048)
    ap.add_argument("--check-goldens", default=os.path.join(repo, "..", "shared", "goldens"))
    a = ap.parse_args(argv)

    if a.check_goldens and os.path.isdir(a.check_goldens):
        print("encoder matches the reference on %d golden prompts"
              % check_against_goldens(a.check_goldens))
    else:
        print("goldens not found, skipping the encoder check")

    rng = np.random.default_rng(a.seed)
    texts = []
    for _ in range(a.scenes):
        texts.extend(world.captions(world.sample_scene(rng), rng, a.captions_per_scene))
    # every word the world can say, even if a rare template missed it in this sample
    texts.append(" ".join(list(world.COLOURS) + world.SHAPES + ["gray"]))
    words = corpus_words(texts)
    merges = learn_bpe(words, a.max_vocab - 512 - 2)
    vocab = build_vocab(merges)
    write_tokenizer(a.out, vocab, merges)
    print("%d distinct pre-tokens, %d merges, vocab %d -> %s"
          % (len(words), len(merges), len(vocab), a.out))

    check_rng = np.random.default_rng(a.seed + 1)
    check = world.heldout_prompts()
    for _ in range(5000):
        check.extend(world.captions(world.sample_scene(check_rng), check_rng, 2))
    check += ["Hello, World.  A RED circle", "x.y 35mm caf\u00e9", "don't stop 42 times"]
    longest = check_tokenizer(a.out, check)
    print("checked %d texts: round trip ok, longest %d ids (limit %d)"
          % (len(check), longest, MAX_LENGTH))


if __name__ == "__main__":
    main()
