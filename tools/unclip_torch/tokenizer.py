"""CLIP byte-level BPE tokenizer as the unCLIP pipelines call transformers' slow
CLIPTokenizer (no ftfy, pad token "!" = id 0): padding="max_length", max_length=77,
truncation=True. Our own implementation of the behaviour described in
shared/goldens/README.md section 6 and shared/reference/clip.md section 3.

    tok = CLIPTokenizer.from_dir("model/tokenizer")
    ids, mask = tok(["a cat", ""])        # int64 numpy arrays (B, 77)
    tok.encode_text("a cat")              # content ids without bos/eos, untruncated
"""

import json
import os
import unicodedata

import numpy as np

from .st import resolve_path


def bytes_to_unicode():
    """GPT-2/CLIP byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def clean_text(text):
    """BERT BasicTokenizer path (strip_accents=False, no punctuation split) used by
    transformers when ftfy is absent: drop controls, spaces for whitespace, CJK isolation,
    NFC, split, lower-case each word, join with one space."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        cat = unicodedata.category(ch)
        if ch in "\t\n\r" or ch == " " or cat == "Zs":
            out.append(" ")
        elif cat.startswith("C"):
            continue
        else:
            out.append(ch)
    out2 = []
    for ch in out:
        if _is_cjk(ord(ch)):
            out2.extend([" ", ch, " "])
        else:
            out2.append(ch)
    text = unicodedata.normalize("NFC", "".join(out2))
    return " ".join(w.lower() for w in text.split())


def _is_letter(ch):
    return unicodedata.category(ch).startswith("L")


def _is_number(ch):
    return unicodedata.category(ch) in ("Nd", "Nl", "No")


_SPECIAL_WORDS = ("<|startoftext|>", "<|endoftext|>")
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def _ci_startswith(text, i, lit):
    # case-insensitive literal match (the regex runs with IGNORECASE; 's' also matches U+017F)
    seg = text[i:i + len(lit)]
    if len(seg) != len(lit):
        return False
    for a, b in zip(seg, lit):
        if a == b or a.lower() == b or (b == "s" and a == "\u017f"):
            continue
        return False
    return True


def pretokenize(text):
    """The CLIP split regex, leftmost-first: special words, contractions, letter runs,
    single numbers, runs of other non-space characters."""
    pieces = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        matched = None
        for lit in _SPECIAL_WORDS + _CONTRACTIONS:
            if _ci_startswith(text, i, lit):
                matched = text[i:i + len(lit)]
                break
        if matched is None:
            j = i
            if _is_letter(ch):
                while j < n and _is_letter(text[j]):
                    j += 1
            elif _is_number(ch):
                j = i + 1
            else:
                while j < n and not (text[j].isspace() or _is_letter(text[j])
                                     or _is_number(text[j])):
                    j += 1
            matched = text[i:j]
        pieces.append(matched)
        i += len(matched)
    return pieces


class CLIPTokenizer:
    def __init__(self, vocab, merges, max_length=77, pad_token="!"):
        self.encoder = dict(vocab)
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.bpe_ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.max_length = max_length
        self.bos_id = self.encoder["<|startoftext|>"]
        self.eos_id = self.encoder["<|endoftext|>"]
        self.unk_id = self.eos_id
        self.pad_token = pad_token
        self.pad_id = self.encoder[pad_token]
        # tokens never split: the special literals and the pad token
        self.added = {"<|startoftext|>": self.bos_id, "<|endoftext|>": self.eos_id,
                      pad_token: self.pad_id}
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}

    @classmethod
    def from_dir(cls, path, max_length=None):
        with open(resolve_path(os.path.join(path, "vocab.json")), encoding="utf-8") as f:
            vocab = json.load(f)
        with open(resolve_path(os.path.join(path, "merges.txt")), encoding="utf-8") as f:
            lines = f.read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(line.split()) for line in lines]
        pad = "!"
        cfgp = os.path.join(path, "tokenizer_config.json")
        if os.path.exists(cfgp):
            with open(resolve_path(cfgp), encoding="utf-8") as f:
                cfg = json.load(f)
            p = cfg.get("pad_token", pad)
            pad = p["content"] if isinstance(p, dict) else p
            if max_length is None:
                max_length = cfg.get("model_max_length", 77)
        return cls(vocab, merges, max_length or 77, pad)

    def save(self, out_dir):
        """Writes vocab.json, merges.txt and the two config files (transformers layout)."""
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(self.encoder, f, ensure_ascii=False, indent=2, sort_keys=True)
            f.write("\n")
        merges = sorted(self.bpe_ranks.items(), key=lambda kv: kv[1])
        with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for (a, b), _ in merges:
                f.write("%s %s\n" % (a, b))

        def special(content, normalized=True):
            return {"content": content, "lstrip": False, "normalized": normalized,
                    "rstrip": False, "single_word": False, "special": True}
        cfg = {
            "added_tokens_decoder": {
                str(self.pad_id): special(self.pad_token, False),
                str(self.bos_id): special("<|startoftext|>"),
                str(self.eos_id): special("<|endoftext|>"),
            },
            "bos_token": "<|startoftext|>", "clean_up_tokenization_spaces": True,
            "eos_token": "<|endoftext|>", "errors": "replace",
            "model_max_length": self.max_length, "pad_token": self.pad_token,
            "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>",
        }
        with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        tok = {k: v for k, v in special("<|startoftext|>").items() if k != "special"}
        eos = dict(tok, content="<|endoftext|>")
        smap = {"bos_token": tok, "eos_token": eos, "pad_token": self.pad_token,
                "unk_token": eos}
        with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
            json.dump(smap, f, indent=2, sort_keys=True)
            f.write("\n")

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        if not pairs:
            return token + "</w>"
        while True:
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            first, second = best
            new = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
            if len(word) == 1:
                break
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        out = " ".join(word)
        self.cache[token] = out
        return out

    def _split_added(self, text):
        """Cut at every added-token literal (earliest occurrence, longest at that point)."""
        parts = []
        i, start, n = 0, 0, len(text)
        lits = sorted(self.added, key=len, reverse=True)
        while i < n:
            hit = None
            for lit in lits:
                if text.startswith(lit, i):
                    hit = lit
                    break
            if hit is None:
                i += 1
                continue
            if i > start:
                parts.append((False, text[start:i]))
            parts.append((True, hit))
            i += len(hit)
            start = i
        if start < n:
            parts.append((False, text[start:]))
        return parts

    def tokens(self, text):
        """BPE token strings of `text` (no bos/eos)."""
        out = []
        for special, piece in self._split_added(text):
            if special:
                out.append(piece)
                continue
            for word in pretokenize(clean_text(piece)):
                mapped = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
                out.extend(self.bpe(mapped).split(" "))
        return out

    def encode_text(self, text):
        """Content ids (no bos/eos, untruncated)."""
        ids = []
        for t in self.tokens(text):
            ids.append(self.added[t] if t in self.added and t == self.pad_token
                       else self.encoder.get(t, self.unk_id))
        return ids

    def encode(self, text):
        """(ids, mask) int64 numpy (max_length,), as padding="max_length", truncation=True."""
        content = self.encode_text(text)[: self.max_length - 2]
        ids = [self.bos_id] + content + [self.eos_id]
        mask = [1] * len(ids) + [0] * (self.max_length - len(ids))
        ids = ids + [self.pad_id] * (self.max_length - len(ids))
        return np.array(ids, dtype=np.int64), np.array(mask, dtype=np.int64)

    def __call__(self, texts):
        if isinstance(texts, str):
            texts = [texts]
        enc = [self.encode(t) for t in texts]
        return np.stack([e[0] for e in enc]), np.stack([e[1] for e in enc])
