"""tests/defaultmodel/heldout.tsv (read by the C test of the default model) must say what
tools/world.py says: the same held-out prompts in the same order, their scenes' colours,
shapes, sizes, positions and backgrounds, and the same palette.

Run: /usr/bin/python3 tests/python/test_defaultmodel_data.py
(regenerate the file with /usr/bin/python3 tests/defaultmodel/gen-heldout.py)
"""

import os
import sys
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import world  # noqa: E402

TSV = os.path.join(REPO, "tests", "defaultmodel", "heldout.tsv")


def parse(path):
    """The TSV as the C test reads it: (palette {name: (r, g, b)} in order, cases)."""
    colours, cases = {}, []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            if cols[0] == "colour":
                assert len(cols) == 5, "line %d: %r" % (n, line)
                colours[cols[1]] = tuple(int(v) for v in cols[2:5])
            elif cols[0] == "case":
                assert len(cols) == 7, "line %d: %r" % (n, line)
                objs = [tuple(o.split(":")) for o in cols[5].split(";")]
                cases.append({"index": int(cols[1]), "kind": cols[2], "bg_kind": cols[3],
                              "bg_colour": cols[4], "objects": objs, "prompt": cols[6]})
            else:
                raise AssertionError("line %d: unknown row kind %r" % (n, cols[0]))
    return colours, cases


class HeldoutTsv(unittest.TestCase):
    def setUp(self):
        self.colours, self.cases = parse(TSV)
        self.world_cases = world.heldout_cases()

    def test_palette(self):
        self.assertEqual(list(self.colours), list(world.COLOURS))
        for name, rgb in world.COLOURS.items():
            self.assertEqual(self.colours[name], tuple(int(v) for v in rgb), name)

    def test_prompts_in_order(self):
        self.assertEqual([c["prompt"] for c in self.cases], world.heldout_prompts())
        self.assertEqual([c["index"] for c in self.cases], list(range(len(self.cases))))
        # still held out: never a training caption
        for c in self.cases:
            self.assertTrue(world.is_heldout_caption(c["prompt"]), c["prompt"])

    def test_scenes(self):
        self.assertEqual(len(self.cases), len(self.world_cases))
        for got, want in zip(self.cases, self.world_cases):
            bg = want["scene"]["background"]
            self.assertEqual(got["kind"], want["kind"], got["prompt"])
            self.assertEqual((got["bg_kind"], got["bg_colour"]), (bg["kind"], bg["colour"]),
                             got["prompt"])
            self.assertEqual(got["objects"],
                             [(o["colour"], o["shape"], o["size"], o["position"])
                              for o in want["scene"]["objects"]], got["prompt"])
            for colour, shape, size, position in got["objects"]:
                self.assertIn(colour, world.COLOURS)
                self.assertIn(shape, world.SHAPES)
                self.assertIn(size, world.SIZES)
                self.assertIn(position, world.POSITIONS)
                # the prompt names the object's colour (the C test's colour check relies on it)
                self.assertIn(colour, got["prompt"].split())

    def test_file_is_what_the_generator_writes(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            "gen_heldout", os.path.join(REPO, "tests", "defaultmodel", "gen-heldout.py"))
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
        with open(TSV, encoding="utf-8") as f:
            self.assertEqual(f.read(), gen.tsv_text(),
                             "regenerate with tests/defaultmodel/gen-heldout.py")


if __name__ == "__main__":
    unittest.main(verbosity=2)
