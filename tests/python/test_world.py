"""Tests of the procedural world, the PNG writer and the shipped tokenizer files.

Run: /usr/bin/python3 -m unittest discover -s tests/python -p 'test_world.py'
"""

import json
import os
import struct
import sys
import unittest
import zlib

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import contact_sheet  # noqa: E402
import train_tokenizer as tt  # noqa: E402
import world  # noqa: E402

TOKENIZER = os.path.join(REPO, "data", "models", "shapes-v1", "tokenizer")
GOLDENS = os.path.join(REPO, "..", "shared", "goldens")


def _scenes(seed, n):
    rng = np.random.default_rng(seed)
    return [world.sample_scene(rng) for _ in range(n)]


def _decode_png(data):
    """Minimal decoder for the PNGs we write (8-bit RGB, filter 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", None, None
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        if tag == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
            assert body[8:10] == b"\x08\x02"
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


class WorldTest(unittest.TestCase):
    def test_deterministic(self):
        a, b = _scenes(7, 20), _scenes(7, 20)
        self.assertEqual(a, b)
        self.assertNotEqual(a, _scenes(8, 20))
        ca = world.captions(a[3], np.random.default_rng(1), 4)
        cb = world.captions(b[3], np.random.default_rng(1), 4)
        self.assertEqual(ca, cb)
        np.testing.assert_array_equal(world.render(a[5], 40), world.render(b[5], 40))

    def test_render_sizes_and_scene_is_json(self):
        sc = _scenes(3, 1)[0]
        json.dumps(sc)
        for size in (32, 64, 128, 37):
            img = world.render(sc, size)
            self.assertEqual(img.shape, (size, size, 3))
            self.assertEqual(img.dtype, np.uint8)
        # resolutions agree: 128 box-averaged to 32 is close to a direct 32 render
        big = world.render(sc, 128).astype(np.float64).reshape(32, 4, 32, 4, 3).mean((1, 3))
        small = world.render(sc, 32).astype(np.float64)
        self.assertLess(np.abs(big - small).mean(), 3.0)

    def test_object_colours_measurable(self):
        for case in world.heldout_cases():
            sc = case["scene"]
            for size in (32, 128):
                img = world.render(sc, size)
                masks = world.object_masks(sc, size)
                self.assertEqual(masks.shape, (len(sc["objects"]), size, size))
                for obj, m in zip(sc["objects"], masks):
                    self.assertGreater((m > 0.99).sum(), 4, case["prompt"])
                    got = world.mean_object_colour(img, m)
                    want = np.array(world.COLOURS[obj["colour"]], np.float64)
                    self.assertLess(np.abs(got - want).max(), 1.5, case["prompt"])

    def test_objects_mostly_visible_and_inside(self):
        for sc in _scenes(11, 300):
            self.assertTrue(1 <= len(sc["objects"]) <= 3)
            full = [world._coverage(o, 64, 4).sum() for o in sc["objects"]]
            vis = world.object_masks(sc, 64).sum(axis=(1, 2))
            for f, v, o in zip(full, vis, sc["objects"]):
                self.assertGreaterEqual(v, 0.5 * f)
                self.assertNotEqual(o["colour"], sc["background"]["colour"])
                self.assertTrue(o["r"] <= o["cx"] <= 1 - o["r"])
                self.assertTrue(o["r"] <= o["cy"] <= 1 - o["r"])

    def test_captions_mention_every_object(self):
        rng = np.random.default_rng(5)
        for sc in _scenes(12, 300):
            for cap in world.captions(sc, rng, 3):
                self.assertNotIn(" a orange", " " + cap)
                for o in sc["objects"]:
                    self.assertIn(o["shape"], cap)
                    words = ["gray", "grey"] if o["colour"] == "grey" else [o["colour"]]
                    self.assertTrue(any(w in cap for w in words), (cap, o))

    def test_relations_match_geometry(self):
        a = world._place("circle", "red", "small", "left")
        b = world._place("square", "blue", "small", "right")
        c = world._place("star", "green", "small", "top")
        self.assertEqual(world._relation(a, b), "to the left of")
        self.assertEqual(world._relation(b, a), "to the right of")
        self.assertEqual(world._relation(c, world._place("ring", "red", "small", "bottom")),
                         "above")

    def test_heldout_prompts_never_trained(self):
        prompts = world.heldout_prompts()
        self.assertGreaterEqual(len(prompts), 16)
        self.assertEqual(len(set(prompts)), len(prompts))
        for p in ("a red circle", "a blue square"):
            self.assertIn(p, prompts)
        cases = world.heldout_cases()
        rankable = [c for c in cases if c["rankable"]]
        self.assertGreaterEqual(len(rankable), 12)
        pair_sets = [frozenset((o["colour"], o["shape"]) for o in c["scene"]["objects"])
                     for c in rankable]
        for i, s in enumerate(pair_sets):
            for j, t in enumerate(pair_sets):
                if i != j:
                    self.assertFalse(s & t, (rankable[i]["prompt"], rankable[j]["prompt"]))
        for c in cases:
            for o in c["scene"]["objects"]:
                self.assertIn(o["colour"], c["prompt"])
                self.assertIn(o["shape"], c["prompt"])
        held = set(prompts)
        rng = np.random.default_rng(99)
        n_single = 0
        for sc in _scenes(13, 3000):
            self.assertFalse(world.scene_has_heldout_triple(sc))
            n_single += len(sc["objects"]) == 1
            for cap in world.captions(sc, rng, 3):
                self.assertNotIn(" ".join(cap.lower().split()), held)
        self.assertGreater(n_single, 900)

    def test_png_writer_round_trip(self):
        img = world.render(_scenes(4, 1)[0], 24)
        sheet = contact_sheet.sheet([img, img[::-1]], cols=2, pad=1)
        self.assertEqual(sheet.shape, (26, 51, 3))
        np.testing.assert_array_equal(_decode_png(contact_sheet.encode_png(sheet)), sheet)


class TokenizerFilesTest(unittest.TestCase):
    def setUp(self):
        self.tok = tt.ClipBPE.load(TOKENIZER)
        with open(os.path.join(TOKENIZER, "vocab.json"), encoding="utf-8") as f:
            self.vocab = json.load(f)

    def test_layout(self):
        v = self.vocab
        n = len(v)
        self.assertTrue(512 < n <= 2048)
        self.assertEqual(sorted(v.values()), list(range(n)))
        self.assertEqual((v["!"], v["!</w>"], v["a</w>"], v[",</w>"]), (0, 256, 320, 267))
        self.assertEqual((v["<|startoftext|>"], v["<|endoftext|>"]), (n - 2, n - 1))
        with open(os.path.join(TOKENIZER, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().strip().split("\n")
        self.assertEqual(lines[0], "#version: 0.2")
        for rank, line in enumerate(lines[1:]):
            a, b = line.split(" ")
            self.assertEqual(v[a + b], 512 + rank)
        with open(os.path.join(TOKENIZER, "tokenizer_config.json")) as f:
            cfg = json.load(f)
        self.assertEqual(cfg["pad_token"], "!")
        self.assertEqual(cfg["added_tokens_decoder"][str(n - 1)]["content"], "<|endoftext|>")

    def test_world_words_are_single_tokens(self):
        for w in list(world.COLOURS) + world.SHAPES + ["background", "striped", "gray"]:
            self.assertEqual(self.tok.tokens(w), [w + "</w>"])

    def test_encode_pad_and_mask(self):
        ids, mask = self.tok("A  Red circle!")
        n = len(self.vocab)
        want = [n - 2, self.vocab["a</w>"], self.vocab["red</w>"], self.vocab["circle</w>"], 0,
                n - 1]
        self.assertEqual(ids[:6], want)
        self.assertEqual(ids[6:], [0] * 71)
        self.assertEqual(mask, [1] * 6 + [0] * 71)
        ids, mask = self.tok("red " * 100)
        self.assertEqual((ids[76], sum(mask)), (n - 1, 77))

    def test_captions_fit_and_round_trip(self):
        rng = np.random.default_rng(21)
        texts = world.heldout_prompts()
        for sc in _scenes(14, 400):
            texts += world.captions(sc, rng, 2)
        self.assertLessEqual(tt.check_tokenizer(TOKENIZER, texts), 77)

    @unittest.skipUnless(os.path.isdir(GOLDENS), "goldens not beside the checkout")
    def test_encoder_matches_reference(self):
        self.assertEqual(tt.check_against_goldens(GOLDENS), 60)


if __name__ == "__main__":
    unittest.main()
