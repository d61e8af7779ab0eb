#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/<target>/ (committed).

Usage: make-corpus.py [SHARED_DIR]   (default: ../shared beside the repository)

Seeds: the malformed cases of tests/io/gen-malformed.py (small ones), the goldens' configs and
model_index.json files, hand-made safetensors files (every dtype, scalars, empty tensors,
metadata), the golden tokenizer prompts plus hard prompts, and small tokenizer folders.
Existing seed files (seed-*) are replaced; crash reproducers (other names) are kept. Plain
standard library. Total size is kept well under 1 MB.
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SEP = b"\n#unclip-fuzz-file#\n"
MAX_SEED = 16 * 1024


def out_dir(target):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    return d


def put(d, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_SEED:
        return
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    h = hashlib.sha1(data).hexdigest()[:8]
    with open(os.path.join(d, "seed-%s-%s" % (safe, h)), "wb") as f:
        f.write(data)


def st(header, data=b""):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors(d, cases_root, cases):
    for kind, rel, *_ in cases:
        if kind == "st" and os.path.isfile(os.path.join(cases_root, rel)):
            put(d, os.path.basename(rel), open(os.path.join(cases_root, rel), "rb").read())
    e = lambda dt, shape, b, n: {"dtype": dt, "shape": shape, "data_offsets": [b, b + n]}
    put(d, "f32", st({"w": e("F32", [2, 2], 0, 16)}, struct.pack("<4f", 1, -2, 3.5, 0)))
    put(d, "all-dtypes", st({
        "__metadata__": {"format": "pt", "note": "x"},
        "a": e("F32", [2], 0, 8), "b": e("F16", [3], 8, 6), "c": e("BF16", [1], 14, 2),
        "d": e("I64", [1], 16, 8), "e": e("I32", [2], 24, 8), "f": e("U8", [3], 32, 3),
        "g": e("BOOL", [1], 35, 1)}, bytes(range(36))))
    put(d, "scalar-and-empty", st({"s": e("F32", [], 0, 4), "z": e("F16", [0, 5], 4, 0),
                                   "t": e("I64", [1, 1, 1, 1, 1, 1, 1, 1], 4, 8)},
                                  b"\x00\x00\x80\x3f" + b"\x07" + b"\x00" * 7))
    put(d, "no-tensors", st({"__metadata__": {"format": "pt"}}))
    put(d, "unknown-dtype", st({"w": e("F8_E4M3", [2], 0, 2)}, b"\x01\x02"))
    put(d, "nested-meta", st({"__metadata__": {"a": {"b": 1}}}))
    # A real header (names and shapes of the golden tiny text encoder) with data cut to fit.
    path = os.path.join(SHARED, "goldens", "models", "tiny-karlo", "text_proj",
                        "diffusion_pytorch_model.safetensors")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        small, off = {}, 0
        for k, v in list(hdr.items())[:12]:
            if k == "__metadata__":
                small[k] = v
                continue
            shape = [min(s, 2) for s in v["shape"]]
            size = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}[v["dtype"]]
            nb = size
            for s in shape:
                nb *= s
            small[k] = e(v["dtype"], shape, off, nb)
            off += nb
        put(d, "golden-text-proj-header", st(small, bytes(off)))


def configs(d, cases_root, cases):
    for kind, rel, *_ in cases:
        p = os.path.join(cases_root, rel)
        if kind in ("cfg", "pre") and os.path.isfile(p):
            put(d, rel.replace("/", "-"), open(p, "rb").read())
    for model in ("tiny-karlo", "tiny-karlo-variations"):
        root = os.path.join(SHARED, "goldens", "models", model)
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                if f.endswith(".json") and f != "vocab.json" and os.path.getsize(p) > 200:
                    put(d, model + "-" + os.path.relpath(p, root).replace("/", "-"),
                        open(p, "rb").read())
    put(d, "nested", '{"size": {"shortest_edge": 224}, "crop_size": {"height": 224, '
                     '"width": 224}, "a": {"b": {"c": [1, 2.5, "x", true, null]}}}')
    put(d, "types", '{"i": -9223372036854775808, "f": 1e-300, "s": "\\u00e9\\ud83d\\ude00", '
                    '"b": false, "n": null, "a": [], "o": {}}')
    put(d, "enum", '{"prediction_type": "sample", "variance_type": "learned_range"}')


def model_index(d, cases_root, cases):
    seen = set()
    for kind, rel, *_ in cases:
        for folder in (rel, os.path.dirname(rel)):
            p = os.path.join(cases_root, folder, "model_index.json")
            if os.path.isfile(p) and p not in seen:
                seen.add(p)
                put(d, folder.replace("/", "-"), open(p, "rb").read())
    for model in ("tiny-karlo", "tiny-karlo-variations"):
        p = os.path.join(SHARED, "goldens", "models", model, "model_index.json")
        if os.path.isfile(p):
            put(d, model, open(p, "rb").read())
    comps = {"_class_name": "UnCLIPPipeline", "prior": ["diffusers", "PriorTransformer"],
             "decoder": ["diffusers", "UNet2DConditionModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"],
             "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
             "prior_scheduler": ["diffusers", "UnCLIPScheduler"],
             "image_encoder": [None, None]}
    put(d, "scratch-components", json.dumps(comps))
    put(d, "bad-names", json.dumps({"../x": ["a", "b"], ".hidden": ["a", "b"]}))
    put(d, "link-stub", "prior/config.json")


def tokenizer(d):
    prompts = [p["text"] for p in json.load(open(os.path.join(
        SHARED, "goldens", "goldens", "tokenizer_prompts.json"), encoding="utf-8"))]
    # json.load keeps "\u0000" (json-glib would not): the raw prompts, NULs included.
    hard = [
        " ".join("word%d" % i for i in range(120)),              # truncated mid-sentence
        "a " * 74 + "supercalifragilisticexpialidocious tail",   # cut inside a word
        "<|startoftext|><|endoftext|>!!<|endoftext|>x",           # literal specials
        "null\x00char \x01\x02\x1b[31m red \x7f\t\r\n",           # controls
        "caf\u00e9 \u4e2d\u6587\u5b57 \u0130stanbul \u03a3\u03c3\u03c2 \u017ft",
        "e\u0301\u0301\u0301 \u200b\u200d\ufeff \U0001f600\U0001f44d\U0001f3fd",
        "x" * 3000,                                                # a giant word
        "'s 't 're 've 'm 'll 'd 'S 'LL",
        "1234567890 3.14 \u0661\u0662 \u00bd",
    ]
    for i, p in enumerate(prompts + hard):
        b = p.encode("utf-8", "surrogatepass")
        put(d, "prompt%d-karlo" % i, b"\x00" + b)
        if i % 3 == 0:
            put(d, "prompt%d-shapes" % i, b"\x01" + b)
    put(d, "invalid-utf8", b"\x00a\xffb\xc3(\xe2\x82 \xf0\x9f\x98 \xed\xa0\x80 \xc0\xaf")
    put(d, "invalid-utf8-shapes", b"\x01\x80\x80\x80 red \xfe\xfe")


def tokenizer_load(d):
    shapes = os.path.join(REPO, "data", "models", "shapes-v1", "tokenizer")
    files = ["vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"]
    parts = [open(os.path.join(shapes, f), "rb").read() for f in files]
    put(d, "shapes-v1", SEP.join(parts))
    put(d, "shapes-v1-two-files", SEP.join(parts[:2]))
    # A byte-level tokenizer with a handful of merges, written from scratch.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    syms = [chr(c) for c in cs]
    vocab = syms + [s + "</w>" for s in syms]
    merges = [("a", "b"), ("ab", "c</w>"), ("r", "e"), ("re", "d</w>")]
    vocab += [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]
    v = json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False)
    m = "#version: 0.2\n" + "".join("%s %s\n" % ab for ab in merges)
    sp = json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                     "unk_token": "<|endoftext|>", "pad_token": "!"})
    put(d, "bytes-only", SEP.join([v.encode(), m.encode(), sp.encode()]))


def main():
    global SHARED
    SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared")
    tmp = tempfile.mkdtemp()
    try:
        manifest = os.path.join(tmp, "cases.tsv")
        subprocess.check_call([sys.executable, os.path.join(REPO, "tests", "io",
                                                            "gen-malformed.py"), manifest])
        root = os.path.join(tmp, "cases")
        cases = [l.rstrip("\n").split("\t") for l in open(manifest, encoding="utf-8")
                 if not l.startswith("#")]
        safetensors(out_dir("safetensors"), root, cases)
        configs(out_dir("config"), root, cases)
        model_index(out_dir("model-index"), root, cases)
        tokenizer(out_dir("tokenizer"))
        tokenizer_load(out_dir("tokenizer-load"))
    finally:
        shutil.rmtree(tmp)
    total = 0
    for t in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        files = os.listdir(os.path.join(HERE, "corpus", t))
        size = sum(os.path.getsize(os.path.join(HERE, "corpus", t, f)) for f in files)
        total += size
        print("%-16s %4d files %8d bytes" % (t, len(files), size))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
