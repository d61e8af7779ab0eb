#!/usr/bin/env python3
"""Writes malformed safetensors files, config files and model folders for tests/io/test-io.c.

Usage: gen-malformed.py OUT_MANIFEST
Files go to a folder named like the manifest without ".tsv"; the manifest lists one case a line:
    kind <TAB> path (relative to the manifest's folder) <TAB> status <TAB> substring <TAB> arg
where kind says which reader the C test calls, status is the expected unclip status name and
substring must appear in the error message. Plain standard library (no numpy, no torch).
"""
import json
import os
import shutil
import struct
import sys

CASES = []


def st_bytes(header, data=b"", hlen=None, raw_header=None):
    """safetensors image: 8-byte length, header text, data. header may be a dict or str."""
    if raw_header is None:
        h = header if isinstance(header, (str, bytes)) else json.dumps(header)
        raw_header = h.encode("utf-8") if isinstance(h, str) else h
    n = len(raw_header) if hlen is None else hlen
    return struct.pack("<Q", n) + raw_header + data


def f32(*vals):
    return struct.pack("<%df" % len(vals), *vals)


class Gen:
    def __init__(self, root):
        self.root = root

    def path(self, rel):
        p = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def write(self, rel, content):
        with open(self.path(rel), "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode("utf-8"))

    def case(self, kind, rel, status, sub, arg=""):
        for field in (rel, sub, arg):
            assert "\t" not in field and "\n" not in field
        CASES.append((kind, rel, status, sub, arg))

    def st(self, name, content, status, sub):
        rel = "st/" + name
        self.write(rel, content)
        self.case("st", rel, status, sub)


def ok_entry(dtype="F32", shape=(2,), offs=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offs)}


def gen_safetensors(g):
    E = "UNCLIP_E_FORMAT"
    d8 = f32(1.0, 2.0)
    good = {"__metadata__": {"format": "pt"}, "w": ok_entry()}
    g.st("empty.safetensors", b"", E, "shorter than the 8-byte")
    g.st("short.safetensors", b"\x01\x02\x03\x04\x05", E, "shorter than the 8-byte")
    g.st("hlen-zero.safetensors", struct.pack("<Q", 0) + b"{}", E, "header length is 0")
    g.st("hlen-huge.safetensors", struct.pack("<Q", 1 << 40) + b"{}", E, "larger than the")
    g.st("hlen-past-end.safetensors", st_bytes(good, d8, hlen=1000), E, "runs past the end")
    g.st("hlen-wraps.safetensors", st_bytes(good, d8, hlen=(1 << 64) - 1), E, "larger than")
    g.st("hlen-wraps8.safetensors", st_bytes(good, d8, hlen=(1 << 64) - 8), E, "larger than")
    g.st("not-utf8.safetensors", st_bytes(b'{"w\xff": {}}'), E, "not UTF-8")
    g.st("nul-in-header.safetensors", st_bytes(b'{"w": 1\x00}'), E, "not UTF-8 (or a NUL")
    g.st("not-json.safetensors", st_bytes("{garbage", d8), E, "not valid JSON")
    g.st("not-object.safetensors", st_bytes("[1, 2]", d8), E, "does not start with '{'")
    g.st("space-first.safetensors", st_bytes(" " + json.dumps(good), d8), E,
         "does not start with '{'")
    g.st("two-objects.safetensors", st_bytes(json.dumps(good) + '{"x": 1}', d8), E,
         "text after the end")
    g.st("unterminated.safetensors", st_bytes('{"w": {"dtype": "F32', d8), E, "unterminated")
    g.st("comment.safetensors",
         st_bytes('{"w": {"dtype": "F32", "shape": [2], /* x */ "data_offsets": [0, 8]}}', d8),
         E, "unexpected character '/'")
    g.st("single-quotes.safetensors",
         st_bytes("{'w': {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", d8),
         E, "unexpected character")
    g.st("hex-number.safetensors",
         st_bytes('{"w": {"dtype": "F32", "shape": [0x2], "data_offsets": [0, 8]}}', d8), E,
         "unexpected word")
    g.st("leading-zero.safetensors",
         st_bytes('{"w": {"dtype": "F32", "shape": [02], "data_offsets": [0, 8]}}', d8), E,
         "leading zero")
    g.st("bad-escape.safetensors",
         st_bytes('{"w\\x41": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', d8), E,
         "bad escape")
    g.st("raw-newline.safetensors",
         st_bytes('{"w\n": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', d8), E,
         "control character")
    g.st("u0000-name.safetensors",
         st_bytes('{"w\\u0000x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', d8), E,
         "\\u0000")
    g.st("deep-nesting.safetensors",
         st_bytes('{"w": ' + "[" * 200000 + "]" * 200000 + "}", d8), E, "nested deeper than 64")
    g.st("lone-surrogate.safetensors",
         st_bytes('{"w\\ud800": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', d8), E,
         "not valid JSON")
    g.st("meta-not-object.safetensors",
         st_bytes({"__metadata__": "pt", "w": ok_entry()}, d8), E,
         "'__metadata__' is a string, expected an object")
    g.st("meta-value-int.safetensors",
         st_bytes({"__metadata__": {"format": 1}, "w": ok_entry()}, d8), E,
         "'__metadata__': 'format' is an integer, expected a string")
    g.st("meta-value-object.safetensors",
         st_bytes({"__metadata__": {"format": {"a": "b"}}, "w": ok_entry()}, d8), E,
         "'format' is an object")
    g.st("entry-not-object.safetensors", st_bytes({"w": [1, 2]}, d8), E,
         "tensor 'w': entry is an array")
    g.st("empty-name.safetensors", st_bytes({"": ok_entry()}, d8), E, "empty tensor name")
    g.st("dtype-missing.safetensors",
         st_bytes({"w": {"shape": [2], "data_offsets": [0, 8]}}, d8), E,
         "tensor 'w': 'dtype' is missing")
    g.st("dtype-int.safetensors", st_bytes({"w": ok_entry(dtype=5)}, d8), E,
         "tensor 'w': 'dtype' is an integer")
    g.st("dtype-unknown.safetensors", st_bytes({"w": ok_entry(dtype="F31")}, d8), E,
         "tensor 'w': unknown dtype 'F31'")
    g.st("dtype-lowercase.safetensors", st_bytes({"w": ok_entry(dtype="f32")}, d8), E,
         "unknown dtype 'f32'")
    g.st("dtype-f64.safetensors", st_bytes({"w": ok_entry(dtype="F64", shape=(1,))}, d8), E,
         "tensor 'w': unsupported dtype 'F64'")
    g.st("shape-missing.safetensors",
         st_bytes({"w": {"dtype": "F32", "data_offsets": [0, 8]}}, d8), E,
         "tensor 'w': 'shape' is missing")
    g.st("shape-not-array.safetensors",
         st_bytes('{"w": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}', d8), E,
         "tensor 'w': 'shape' is an integer")
    g.st("shape-negative.safetensors", st_bytes({"w": ok_entry(shape=(-2,))}, d8), E,
         "tensor 'w': shape[0] is -2, negative")
    g.st("shape-float.safetensors",
         st_bytes('{"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}', d8), E,
         "tensor 'w': shape[0] is a float")
    g.st("shape-string.safetensors", st_bytes({"w": ok_entry(shape=("2",))}, d8), E,
         "tensor 'w': shape[0] is a string")
    g.st("shape-null.safetensors", st_bytes({"w": ok_entry(shape=(None,))}, d8), E,
         "tensor 'w': shape[0] is null")
    g.st("shape-9-dims.safetensors", st_bytes({"w": ok_entry(shape=(1,) * 9)}, d8), E,
         "9 dimensions")
    g.st("shape-product-overflow.safetensors",
         st_bytes({"w": ok_entry(shape=(1 << 32, 1 << 32, 1 << 32))}, d8), E,
         "more elements than fit in 64 bits")
    g.st("shape-product-overflow2.safetensors",
         st_bytes({"w": ok_entry(shape=(3, (1 << 62)))}, d8), E,
         "more elements than fit")
    g.st("shape-literal-2e64.safetensors",
         st_bytes('{"w": {"dtype": "F32", "shape": [18446744073709551618], '
                  '"data_offsets": [0, 8]}}', d8), E, "integer does not fit in 64 bits")
    g.st("offsets-missing.safetensors", st_bytes({"w": {"dtype": "F32", "shape": [2]}}, d8), E,
         "tensor 'w': 'data_offsets' is missing")
    g.st("offsets-not-array.safetensors",
         st_bytes({"w": {"dtype": "F32", "shape": [2], "data_offsets": "0-8"}}, d8), E,
         "tensor 'w': 'data_offsets' is a string")
    g.st("offsets-three.safetensors", st_bytes({"w": ok_entry(offs=(0, 8, 8))}, d8), E,
         "'data_offsets' has 3 elements")
    g.st("offsets-one.safetensors", st_bytes({"w": ok_entry(offs=(8,))}, d8), E,
         "'data_offsets' has 1 elements")
    g.st("offsets-float.safetensors",
         st_bytes('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}}', d8), E,
         "data_offsets[1] is a float")
    g.st("offsets-negative.safetensors", st_bytes({"w": ok_entry(offs=(-8, 0))}, d8), E,
         "data_offsets[0] is -8, negative")
    g.st("offsets-reversed.safetensors", st_bytes({"w": ok_entry(offs=(8, 0))}, d8), E,
         "data_offsets [8, 0] are reversed")
    g.st("offsets-past-end.safetensors", st_bytes({"w": ok_entry(offs=(0, 16), shape=(4,))}, d8),
         E, "run past the end of the data (8 bytes")
    g.st("offsets-wrap-literal.safetensors",
         st_bytes('{"w": {"dtype": "F32", "shape": [2], '
                  '"data_offsets": [18446744073709551616, 18446744073709551624]}}', d8), E,
         "integer does not fit in 64 bits")
    g.st("offsets-int64-max.safetensors",
         st_bytes({"w": ok_entry(offs=((1 << 63) - 9, (1 << 63) - 1))}, d8), E,
         "run past the end")
    g.st("size-mismatch.safetensors",
         st_bytes({"w": ok_entry(shape=(2, 3), offs=(0, 20))}, f32(*range(5))), E,
         "20 bytes at file offset")
    g.st("size-mismatch-f16.safetensors",
         st_bytes({"w": ok_entry(dtype="F16", shape=(4,), offs=(0, 16))}, f32(*range(4))), E,
         "needs 8")
    g.st("overlap.safetensors",
         st_bytes({"a": ok_entry(offs=(0, 8)), "b": ok_entry(offs=(4, 12))}, f32(1, 2, 3)), E,
         "overlap tensor 'a'")
    g.st("overlap-same.safetensors",
         st_bytes({"a": ok_entry(offs=(0, 8)), "b": ok_entry(offs=(0, 8))}, f32(1, 2)), E,
         "overlap tensor")
    g.st("gap.safetensors",
         st_bytes({"a": ok_entry(offs=(0, 8)), "b": ok_entry(offs=(12, 20))},
                  f32(1, 2, 3, 4, 5)), E, "tensor 'b': gap of 4 unused bytes")
    g.st("gap-at-start.safetensors", st_bytes({"a": ok_entry(offs=(4, 12))}, f32(1, 2, 3)), E,
         "tensor 'a': gap of 4")
    g.st("trailing-bytes.safetensors", st_bytes({"w": ok_entry()}, d8 + b"\0" * 5), E,
         "5 trailing bytes after the last tensor")
    g.st("no-tensors-trailing.safetensors", st_bytes({"__metadata__": {}}, b"xyz"), E,
         "3 trailing bytes")
    dup = '{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, ' \
          '"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}'
    g.st("duplicate-name.safetensors", st_bytes(dup, f32(1, 2, 3, 4)), E, "duplicate key 'w'")
    g.st("duplicate-field.safetensors",
         st_bytes('{"w": {"dtype": "F32", "dtype": "F16", "shape": [2], '
                  '"data_offsets": [0, 8]}}', d8), E, "duplicate key 'dtype'")
    g.st("duplicate-metadata.safetensors",
         st_bytes('{"__metadata__": {"format": "pt", "format": "np"}, "w": '
                  '{"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', d8), E,
         "duplicate key 'format'")
    # PyTorch checkpoints: refused by name, or by the zip / pickle magic, never parsed.
    pickle_bytes = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.}q\x00."
    g.st("pytorch_model.bin", pickle_bytes, E, "convert it to safetensors")
    g.st("model.ckpt", b"PK\x03\x04" + b"\0" * 60, E, "PyTorch checkpoint")
    g.st("renamed-pickle.safetensors", pickle_bytes, E, "PyTorch checkpoint (pickle/zip)")
    g.st("renamed-zip.safetensors", b"PK\x03\x04\x14\x00\x00\x00" + b"archive/data.pkl" * 4, E,
         "not loaded because unpickling can run code")
    g.st("link-as-text.safetensors", b"../../tiny-karlo/decoder/diffusion_pytorch_model.safetensors",
         E, "symbolic link stored as a text file")
    # Not files at all.
    os.makedirs(g.path("st/a-folder.safetensors/x"), exist_ok=True)
    g.case("st", "st/a-folder.safetensors", "UNCLIP_E_IO", "not a regular file")
    g.case("st", "st/does-not-exist.safetensors", "UNCLIP_E_IO", "cannot open")


DECODER = {
    "_class_name": "UNet2DConditionModel",
    "layers_per_block": 2,
    "block_out_channels": [32, 32, 64, 64],
    "norm_eps": 1e-05,
    "act_fn": "silu",
    "center_input_sample": False,
    "sample_size": 32,
    "class_embed_type": "identity",
}


def gen_configs(g):
    E = "UNCLIP_E_FORMAT"

    def cfg(name, text, status, sub):
        rel = "cfg/" + name + "/config.json"
        if text is not None:
            g.write(rel, text)
        g.case("cfg", rel, status, sub)

    def mod(name, status, sub, **changes):
        d = dict(DECODER)
        for k, v in changes.items():
            if v is KeyError:
                del d[k]
            else:
                d[k] = v
        cfg(name, json.dumps(d), status, sub)

    cfg("missing", None, "UNCLIP_E_MODEL", "file not found")
    cfg("empty", "", E, "empty, expected a JSON object")
    cfg("not-json", "layers_per_block = 2\n", E, "not a JSON object")
    cfg("not-object", "[1, 2, 3]", E, "not a JSON object")
    cfg("truncated", json.dumps(DECODER)[:-10], E, "not valid JSON")
    cfg("trailing-comma", '{"layers_per_block": 2,}', E, "not valid JSON")
    cfg("trailing-garbage", json.dumps(DECODER) + " x", E, "text after the end")
    cfg("nan", json.dumps(DECODER).replace("1e-05", "NaN"), E, "unexpected word")
    cfg("not-utf8", b'{"act_fn": "s\xe9lu"}', E,
        "not UTF-8")
    cfg("bom", "\ufeff" + json.dumps(DECODER), E, "byte order mark")
    cfg("deep-nesting", '{"a": ' + "[" * 100000 + "]" * 100000 + "}", E, "nested deeper")
    cfg("dup-key", '{"layers_per_block": 2, "layers_per_block": 3}', E,
        "duplicate key 'layers_per_block'")
    cfg("int-overflow", json.dumps(DECODER).replace('"layers_per_block": 2',
                                                     '"layers_per_block": 99999999999999999999'),
        E, "integer does not fit in 64 bits")
    mod("layers-huge", E, "'layers_per_block' is 1000000000, expected 1..64",
        layers_per_block=1000000000)
    mod("layers-zero", E, "'layers_per_block' is 0, expected 1..64", layers_per_block=0)
    mod("layers-negative", E, "'layers_per_block' is -3, expected 1..64", layers_per_block=-3)
    mod("layers-string", E, "'layers_per_block' is a string, expected an integer",
        layers_per_block="2")
    mod("layers-float", E, "'layers_per_block' is a float", layers_per_block=2.5)
    mod("layers-bool", E, "'layers_per_block' is a boolean", layers_per_block=True)
    mod("layers-array", E, "'layers_per_block' is an array", layers_per_block=[2])
    mod("layers-missing", "UNCLIP_E_MODEL", "missing key 'layers_per_block'",
        layers_per_block=KeyError)
    mod("layers-null", "UNCLIP_E_MODEL", "'layers_per_block' is null", layers_per_block=None)
    mod("channels-not-array", E, "'block_out_channels' is an integer, expected an array",
        block_out_channels=32)
    mod("channels-empty", E, "'block_out_channels' has 0 elements, expected 1..8",
        block_out_channels=[])
    mod("channels-too-many", E, "'block_out_channels' has 100 elements",
        block_out_channels=[32] * 100)
    mod("channels-negative", E, "'block_out_channels'[1] is -64, expected 1..65536",
        block_out_channels=[32, -64])
    mod("channels-huge", E, "'block_out_channels'[0] is 1000000000000",
        block_out_channels=[10 ** 12])
    mod("channels-string", E, "'block_out_channels'[2] is a string",
        block_out_channels=[32, 32, "64"])
    mod("eps-string", E, "'norm_eps' is a string, expected a number", norm_eps="1e-5")
    mod("eps-negative", E, "'norm_eps' is -1, expected", norm_eps=-1)
    mod("eps-huge", E, "'norm_eps' is 5, expected", norm_eps=5.0)
    cfg("eps-inf", json.dumps(DECODER).replace("1e-05", "1e400"), E, "'norm_eps' is inf")
    mod("act-unknown", E, "'act_fn' is 'swoosh', expected one of silu, gelu, quick_gelu",
        act_fn="swoosh")
    mod("act-int", E, "'act_fn' is an integer, expected a string", act_fn=3)
    mod("center-string", E, "'center_input_sample' is a string, expected true or false",
        center_input_sample="yes")
    mod("class-embed-int", E, "'class_embed_type' is an integer", class_embed_type=1)
    # Nested key (preprocessor_config.json style).
    pre = {"size": {"shortest_edge": "64"}, "crop_size": {"height": 64, "width": 64}}
    rel = "cfg/pre-nested/preprocessor_config.json"
    g.write(rel, json.dumps(pre))
    g.case("pre", rel, E, "'size.shortest_edge' is a string, expected an integer")
    pre = {"size": 64, "crop_size": {"height": 64, "width": 64}}
    rel = "cfg/pre-not-object/preprocessor_config.json"
    g.write(rel, json.dumps(pre))
    g.case("pre", rel, "UNCLIP_E_MODEL", "missing key 'size.shortest_edge'")
    pre = {"size": {"shortest_edge": 64}, "crop_size": {"height": 64, "width": 0}}
    rel = "cfg/pre-zero-crop/preprocessor_config.json"
    g.write(rel, json.dumps(pre))
    g.case("pre", rel, E, "'crop_size.width' is 0, expected 1..4096")


def gen_model_dirs(g):
    M = "UNCLIP_E_MODEL"
    F = "UNCLIP_E_FORMAT"
    good_st = st_bytes({"__metadata__": {"format": "pt"}, "w": ok_entry()}, f32(1.5, -2.0))

    def index(folder, comps):
        d = {"_class_name": "UnCLIPPipeline", "_diffusers_version": "0.27.2"}
        d.update(comps)
        g.write(folder + "/model_index.json", d if isinstance(d, str) else json.dumps(d))

    def component(folder, name, config=True, weights="diffusion_pytorch_model.safetensors"):
        if config:
            g.write("%s/%s/config.json" % (folder, name), json.dumps(DECODER))
        if weights:
            g.write("%s/%s/%s" % (folder, name, weights), good_st)

    os.makedirs(g.path("dir/no-index/prior"), exist_ok=True)
    g.case("dir_open", "dir/no-index", M, "no model_index.json in")
    g.write("dir/a-file", "hello")
    g.case("dir_open", "dir/a-file", M, "is not a folder")
    g.case("dir_open", "dir/does-not-exist", M, "no model folder at")
    g.write("dir/index-not-json/model_index.json", "{\"prior\": [\"diffusers\", ")
    g.case("dir_open", "dir/index-not-json", F, "model_index.json: not valid JSON")
    g.write("dir/index-dup/model_index.json",
            '{"prior": ["diffusers", "PriorTransformer"], "prior": ["x", "y"]}')
    g.case("dir_open", "dir/index-dup", F, "duplicate key 'prior'")
    for tag, bad in [("dotdot", "../x"), ("dotdot-only", ".."), ("absolute", "/etc/passwd"),
                     ("slash", "prior/../../x"), ("hidden", ".git"),
                     ("backslash", "..\\x"), ("empty", "")]:
        index("dir/name-" + tag, {bad: ["diffusers", "PriorTransformer"]})
        g.case("dir_open", "dir/name-" + tag, M, "is not a plain folder name")
    index("dir/pair-string", {"prior": "diffusers"})
    g.case("dir_open", "dir/pair-string", F, "'prior' is not a [library, class] pair")
    index("dir/pair-three", {"prior": ["diffusers", "PriorTransformer", "x"]})
    g.case("dir_open", "dir/pair-three", F, "'prior' is not a [library, class] pair")
    index("dir/pair-number", {"prior": ["diffusers", 7]})
    g.case("dir_open", "dir/pair-number", F, "pair of strings")
    index("dir/class-int", {"_class_name": 5})
    g.case("dir_open", "dir/class-int", F, "'_class_name' is an integer")

    # A folder that is fine on its own; each case asks for something it lacks.
    base = "dir/partial"
    index(base, {"decoder": ["diffusers", "UNet2DConditionModel"],
                 "prior": ["diffusers", "PriorTransformer"],
                 "text_proj": ["unclip", "UnCLIPTextProjModel"],
                 "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
                 "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
                 "super_res_first": ["diffusers", "UNet2DModel"],
                 "super_res_last": ["diffusers", "UNet2DModel"],
                 "safety_checker": [None, None],
                 "scheduler": ["diffusers", "UnCLIPScheduler"]})
    component(base, "decoder")
    # prior: listed, folder missing.
    component(base, "text_proj", weights=None)
    component(base, "image_encoder", weights="pytorch_model.bin")
    g.write(base + "/image_encoder/pytorch_model.bin", b"\x80\x02}q\x00.")
    component(base, "text_encoder", config=False, weights="model.safetensors")
    component(base, "super_res_first", weights="diffusion_pytorch_model.safetensors.index.json")
    component(base, "super_res_last", weights=None)
    g.write(base + "/super_res_last/config.json", '{"layers_per_block": 2')
    g.write(base + "/scheduler", "not a folder\x00")
    os.makedirs(g.path(base + "/unlisted"), exist_ok=True)
    g.case("dir_require", base, M, "no prior/ in", "prior")
    g.case("dir_require", base, M, "(model_index.json lists it, the folder is missing): "
           "text to image needs it", "prior")
    g.case("dir_require", base, M, "no unlisted/ in", "unlisted")
    g.case("dir_require", base, M, "model_index.json does not list it", "safety_checker")
    g.case("dir_require", base, M, "is not a folder", "scheduler")
    g.case("dir_require", base, "UNCLIP_E_ARG", "is not a plain folder name", "../decoder")
    g.case("dir_weights", base, M, "no diffusion_pytorch_model.safetensors or "
           "model.safetensors in", "text_proj")
    g.case("dir_weights", base, M, "only pytorch_model.bin (a PyTorch pickle checkpoint)",
           "image_encoder")
    g.case("dir_weights", base, M, "convert it to safetensors", "image_encoder")
    g.case("dir_weights", base, M, "split into shards", "super_res_first")
    g.case("dir_config", base, M, "no config.json, scheduler_config.json or "
           "preprocessor_config.json in", "text_encoder")
    g.case("dir_config", base, F, "super_res_last/config.json: not valid JSON",
           "super_res_last")
    g.case("dir_file", base, M, "no vocab.json in", "decoder")
    g.case("dir_file", base, "UNCLIP_E_ARG", "is not a plain name", "decoder:../model_index.json")
    # Weight file present but malformed: the message names the component's file.
    bad = "dir/bad-weights"
    index(bad, {"decoder": ["diffusers", "UNet2DConditionModel"]})
    g.write(bad + "/decoder/config.json", json.dumps(DECODER))
    g.write(bad + "/decoder/diffusion_pytorch_model.safetensors",
            st_bytes({"w": ok_entry(offs=(0, 8))}, f32(1, 2, 3)))
    g.case("dir_weights", bad, F, "decoder/diffusion_pytorch_model.safetensors: 4 trailing bytes",
           "decoder")
    # Weights whose tensors do not match what the model asks for (arg: the request).
    wf = "w/weights.safetensors"
    g.write(wf, st_bytes({"__metadata__": {"format": "pt"},
                          "proj.weight": ok_entry(shape=(2, 3), offs=(0, 24)),
                          "ids": ok_entry(dtype="I64", shape=(2,), offs=(24, 40)),
                          "norm.bias": ok_entry(shape=(3,), offs=(40, 52))},
                         f32(*range(6)) + struct.pack("<2q", 5, 6) + f32(7, 8, 9)))
    g.case("weights", wf, M, "missing tensor 'proj.bias'", "proj.bias:2,3")
    g.case("weights", wf, M, "tensor 'proj.weight': shape [2, 3], expected [3, 2]",
           "proj.weight:3,2")
    g.case("weights", wf, M, "tensor 'proj.weight': shape [2, 3], expected [2, 3, 1]",
           "proj.weight:2,3,1")
    g.case("weights", wf, M, "tensor 'norm.bias': shape [3], expected []", "norm.bias:")
    g.case("weights", wf, M, "tensor 'ids': dtype I64, expected F32, F16 or BF16", "ids:2")
    g.case("weights", wf, M, "2 tensors of the file not used by the model ('ids', 'norm.bias')",
           "proj.weight:2,3 all_used")
    g.case("weights", "w/pytorch_model.bin", F, "convert it to safetensors", "x:1")
    g.write("w/pytorch_model.bin", b"\x80\x02}q\x00.")


def main():
    manifest = sys.argv[1]
    root = manifest[:-4] if manifest.endswith(".tsv") else manifest + ".d"
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root)
    g = Gen(root)
    gen_safetensors(g)
    gen_configs(g)
    gen_model_dirs(g)
    with open(manifest, "w", encoding="utf-8") as f:
        f.write("# kind\tpath\tstatus\tsubstring\targ (root: %s)\n" % os.path.basename(root))
        for c in CASES:
            f.write("\t".join(c) + "\n")
    print("%d cases in %s" % (len(CASES), manifest))


if __name__ == "__main__":
    main()
