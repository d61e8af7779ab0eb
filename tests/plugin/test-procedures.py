# The plug-in's procedures inside a headless GIMP 3 (python-fu-eval batch script; see
# in-chroot.sh). Every procedure is run non-interactively and its result checked: new layers,
# their size, position, names and parasite, pixels equal to the unclip CLI's output for the
# same seed and settings, and that a failed run leaves the image as it was.
#
# Environment: UNCLIP_TEST_CLI (the CLI built from the same checkout), UNCLIP_TEST_OUT (scratch
# folder; fixtures/ made by make-fixtures.py), UNCLIP_TEST_MODELS (the goldens' models).
# Prints one line per check ("ok ..." / "FAIL ..."), then ALL-DONE when nothing failed.

import os
import subprocess
import sys
import traceback

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gegl, Gio, GLib

OUT = os.environ["UNCLIP_TEST_OUT"]
CLI = os.environ["UNCLIP_TEST_CLI"]
MODELS = os.environ["UNCLIP_TEST_MODELS"]
T2I = os.path.join(MODELS, "tiny-karlo")
VAR = os.path.join(MODELS, "tiny-karlo-variations")
FIX = os.path.join(OUT, "fixtures")
COMBINED = os.path.join(FIX, "combined")
# Variations and text diffs need the tokenizer and text encoder too (for ""): the combined
# folder has them as real files (tiny-karlo-variations has them as git link stubs).
VARIATIONS = COMBINED
IMG1 = "/shared/goldens/goldens/images/img1_shapes_96x80.png"
PARASITE = "gimp-unclip-parameters"
# Small step counts keep the test quick; the same values go to the CLI.
STEPS = dict(prior_steps=3, decoder_steps=3, super_res_steps=2,
             prior_guidance=4.0, decoder_guidance=8.0)
CLI_STEPS = ["--prior-steps", "3", "--decoder-steps", "3", "--sr-steps", "2",
             "--prior-guidance", "4.0", "--decoder-guidance", "8.0"]

pdb = Gimp.get_pdb()
failures = []


def failed_with(status, values):
    """The error message of a failed call, for the check's text."""
    return "" if status == Gimp.PDBStatusType.SUCCESS else "%s: %s" % (status, values)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def info(text):
    print("INFO " + text, flush=True)


def call(name, image=None, drawables=(), **args):
    """Runs a procedure non-interactively. Returns (status, values or error message)."""
    proc = pdb.lookup_procedure(name)
    if proc is None:
        return None, "no procedure " + name
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    if drawables:
        config.set_core_object_array("drawables", list(drawables))
    for key, value in args.items():
        key = key.replace("_", "-")
        if key == "model-folder":
            value = Gio.File.new_for_path(value)
        config.set_property(key, value)
    result = proc.run(config)
    status = result.index(0)
    if status != Gimp.PDBStatusType.SUCCESS:
        message = result.index(1) if result.length() > 1 else ""
        return status, message
    # index(2), the layers, is a GimpCoreObjectArray that Python sees as an opaque boxed
    # value: the tests look at the image's layer stack instead.
    return status, (result.index(1), result.index(2), result.index(3))


def cli(*args):
    """Runs the CLI; returns its exit code (output in the log)."""
    cmd = [CLI] + [str(a) for a in args]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        info("CLI failed: " + " ".join(cmd) + "\n" + done.stdout)
    return done.returncode


def load(path):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))


def pixels(drawable):
    buf = drawable.get_buffer()
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    data = buf.get(rect, 1.0, "R'G'B' u8", Gegl.AbyssPolicy.NONE)
    return bytes(data)


def png_pixels(path):
    image = load(path)
    layer = image.get_layers()[0]
    data = (pixels(layer), layer.get_width(), layer.get_height())
    image.delete()
    return data


def offsets(layer):
    r = layer.get_offsets()
    return (r[1], r[2]) if len(r) == 3 else tuple(r)


def parasite(layer):
    p = layer.get_parasite(PARASITE)
    if p is None:
        return {}
    text = bytes(p.get_data()).rstrip(b"\0").decode("utf-8")
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("["):
            k, v = line.split("=", 1)
            values[k.strip()] = v.strip()
    return values


def same_pixels(layer, png, what):
    if not os.path.exists(png):
        return check(False, what + ": CLI output " + png + " missing")
    ref, w, h = png_pixels(png)
    got = pixels(layer)
    if (layer.get_width(), layer.get_height()) != (w, h):
        return check(False, "%s: layer %dx%d, CLI %dx%d" % (what, layer.get_width(),
                                                               layer.get_height(), w, h))
    diff = sum(1 for a, b in zip(got, ref) if a != b)
    return check(diff == 0, "%s: pixels equal to the CLI's (%d of %d bytes differ)"
                 % (what, diff, len(ref)))


def snapshot(image):
    """What a failed run must not change."""
    return ([(l.get_name(), offsets(l), l.get_width(), l.get_height(), pixels(l))
             for l in image.get_layers()], image.is_dirty())


def new_layers(image, before):
    names = [l.get_name() for l in image.get_layers()]
    return [l for l in image.get_layers() if l.get_id() not in before]


# ---------------------------------------------------------------------------------------------

def test_registration():
    for name in ("plug-in-unclip-text-to-image", "plug-in-unclip-variations",
                 "plug-in-unclip-interpolate", "plug-in-unclip-text-diff"):
        proc = pdb.lookup_procedure(name)
        if not check(proc is not None, "procedure %s is registered" % name):
            continue
        paths = proc.get_menu_paths()
        check("<Image>/Filters/Render/unCLIP" in paths, "%s is under Filters > Render > "
              "unCLIP (%s)" % (name, paths))
        args = [a.get_name() for a in proc.get_arguments()]
        for a in ("seed", "random-seed", "quality", "decoder-steps", "super-res-steps",
                  "decoder-guidance", "device", "model-folder", "placement"):
            check(a in args, "%s has argument %s" % (name, a))


def test_text_to_image():
    image = load(IMG1)
    base = image.get_layers()[0]
    before = {l.get_id() for l in image.get_layers()}
    prompt = "a red circle on a blue background"
    status, values = call("plug-in-unclip-text-to-image", image, [base], prompt=prompt,
                          seed=7, random_seed=False, num_images=2, quality="custom",
                          model_folder=T2I, **STEPS)
    if not check(status == Gimp.PDBStatusType.SUCCESS,
                 "text to image runs %s" % failed_with(status, values)):
        return
    result_image, layers, seed_used = values
    check(result_image == image, "text to image adds to the given image")
    check(seed_used == 7, "seed-used is 7 (%s)" % seed_used)
    added = new_layers(image, before)
    check(len(added) == 2 and layers is not None, "two new layers (%d)" % len(added))
    stack = image.get_layers()
    check([l.get_name() for l in stack[:2]] ==
          [prompt + " (seed 7, 1/2)", prompt + " (seed 7, 2/2)"] and stack[2] == base,
          "names and order: %s" % [l.get_name() for l in stack])

    ref = os.path.join(OUT, "t2i.png")
    cli("generate", "--model", T2I, "--seed", 7, "-n", 2, *CLI_STEPS, "-q", "-o", ref, prompt)
    for i, layer in enumerate(stack[:2]):
        w, h = layer.get_width(), layer.get_height()
        check((w, h) == (128, 128), "layer %d is the model's native 128x128 (%dx%d)"
              % (i, w, h))
        check(offsets(layer) == ((96 - w) // 2, (80 - h) // 2),
              "layer %d centred on the image (%s)" % (i, offsets(layer)))
        same_pixels(layer, ref if i == 0 else os.path.join(OUT, "t2i-1.png"),
                    "text to image #%d" % i)
        p = parasite(layer)
        check(p.get("procedure") == "text-to-image" and p.get("prompt") == prompt and
              p.get("seed") == "7" and p.get("image-index") == str(i) and
              p.get("decoder-steps") == "3" and p.get("super-res-steps") == "2" and
              p.get("model-folder") == T2I,
              "layer %d carries its parameters (%s)" % (i, p))
    check(image.is_dirty(), "the image is marked changed")
    image.delete()


def test_text_to_image_new_image_and_placement():
    status, values = call("plug-in-unclip-text-to-image", None, [], prompt="a green star",
                          seed=3, random_seed=False, quality="custom", model_folder=T2I,
                          **STEPS)
    if check(status == Gimp.PDBStatusType.SUCCESS, "text to image without an image runs %s" % failed_with(status, values)):
        image = values[0]
        check(image is not None and image.get_width() == 128 and image.get_height() == 128
              and len(image.get_layers()) == 1,
              "it makes a new 128x128 image with one layer")
        check(image.get_layers()[0].get_name() == "a green star (seed 3)",
              "single image name: %s" % image.get_layers()[0].get_name())
        ref = os.path.join(OUT, "star.png")
        cli("generate", "--model", T2I, "--seed", 3, *CLI_STEPS, "-q", "-o", ref,
            "a green star")
        same_pixels(image.get_layers()[0], ref, "text to image in a new image")
        image.delete()

    # Scaled to the image: 96x80 -> 80x80, centred.
    image = load(IMG1)
    status, values = call("plug-in-unclip-text-to-image", image, [image.get_layers()[0]],
                          prompt="a green star", seed=3, random_seed=False, quality="custom",
                          placement="image", model_folder=T2I, **STEPS)
    if check(status == Gimp.PDBStatusType.SUCCESS, "placement 'image' runs %s" % failed_with(status, values)):
        layer = image.get_layers()[0]
        check((layer.get_width(), layer.get_height(), offsets(layer)) == (80, 80, (8, 0)),
              "scaled to fit the image: %dx%d at %s" % (layer.get_width(),
                                                         layer.get_height(), offsets(layer)))
    # Scaled to a selection, with a random seed: the seed used comes back and is in the name.
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 20, 40, 30)
    status, values = call("plug-in-unclip-text-to-image", image, [image.get_layers()[0]],
                          prompt="a green star", random_seed=True, quality="custom",
                          placement="selection", model_folder=T2I, **STEPS)
    if check(status == Gimp.PDBStatusType.SUCCESS, "placement 'selection' with a random seed "
             "runs %s" % failed_with(status, values)):
        layer = image.get_layers()[0]
        check((layer.get_width(), layer.get_height(), offsets(layer)) == (30, 30, (15, 20)),
              "scaled to fit the selection: %dx%d at %s" % (layer.get_width(),
                                                             layer.get_height(),
                                                             offsets(layer)))
        seed = values[2]
        check(layer.get_name() == "a green star (seed %d)" % seed,
              "random seed %d is in the name (%s)" % (seed, layer.get_name()))
        check(parasite(layer).get("seed") == str(seed), "and in the parasite")
    image.delete()


def test_variations():
    image = load(IMG1)
    base = image.get_layers()[0]
    status, values = call("plug-in-unclip-variations", image, [base], seed=11,
                          random_seed=False, num_images=2, quality="custom", model_folder=VARIATIONS,
                          decoder_steps=3, super_res_steps=2, decoder_guidance=8.0)
    if check(status == Gimp.PDBStatusType.SUCCESS, "variations run %s"
             % failed_with(status, values)):
        stack = image.get_layers()
        src = base.get_name()
        check([l.get_name() for l in stack[:2]] ==
              ["Variation of %s (seed 11, 1/2)" % src, "Variation of %s (seed 11, 2/2)" % src],
              "variation names: %s" % [l.get_name() for l in stack[:2]])
        ref = os.path.join(OUT, "var.png")
        cli("variations", "--model", VARIATIONS, "--seed", 11, "-n", 2, "--decoder-steps", 3,
            "--sr-steps", 2, "--decoder-guidance", 8.0, "-q", "-o", ref, IMG1)
        same_pixels(stack[0], ref, "variation #0")
        same_pixels(stack[1], os.path.join(OUT, "var-1.png"), "variation #1")

    # Of a selection: the CLI gets the same crop as a PNG.
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 10, 50, 40)
    before = {l.get_id() for l in image.get_layers()}
    status, values = call("plug-in-unclip-variations", image, [base], seed=12,
                          random_seed=False, num_images=1, quality="custom", model_folder=VARIATIONS,
                          decoder_steps=3, super_res_steps=2, decoder_guidance=8.0)
    if check(status == Gimp.PDBStatusType.SUCCESS, "variations of a selection run %s" % failed_with(status, values)):
        crop = image.duplicate()
        for layer in crop.get_layers()[:-1]:   # only the source: the export flattens
            crop.remove_layer(layer)
        Gimp.Selection.none(crop)
        crop.crop(50, 40, 20, 10)
        crop_png = os.path.join(OUT, "crop.png")
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, crop, Gio.File.new_for_path(crop_png),
                       None)
        crop.delete()
        ref = os.path.join(OUT, "var-sel.png")
        cli("variations", "--model", VARIATIONS, "--seed", 12, "--decoder-steps", 3, "--sr-steps", 2,
            "--decoder-guidance", 8.0, "-q", "-o", ref, crop_png)
        # New layers go right above the source, under the earlier variations.
        added = new_layers(image, before)
        check(len(added) == 1 and image.get_layers()[2] == added[0] and
              image.get_layers()[3] == base, "the variation sits right above the source")
        layer = added[0]
        same_pixels(layer, ref, "variation of the selection")
        check(offsets(layer) == (20 + (50 - 128) // 2, 10 + (40 - 128) // 2),
              "centred on the selection (%s)" % (offsets(layer),))
    image.delete()


def test_interpolate():
    # Two prompts, three frames.
    image = load(IMG1)
    before = {l.get_id() for l in image.get_layers()}
    status, values = call("plug-in-unclip-interpolate", image, [image.get_layers()[0]],
                          start_type="prompt", start_prompt="a red circle",
                          end_type="prompt", end_prompt="a blue square", frames=3, seed=5,
                          random_seed=False, quality="custom", model_folder=T2I, **STEPS)
    if check(status == Gimp.PDBStatusType.SUCCESS, "interpolation between prompts runs %s"
             % failed_with(status, values)):
        stack = image.get_layers()
        check(len(new_layers(image, before)) == 3, "three frames")
        check([l.get_name() for l in stack[:3]] ==
              ["a red circle → a blue square at %.2f (seed 5)" % w for w in (0.0, 0.5, 1.0)],
              "frame names: %s" % [l.get_name() for l in stack[:3]])
        ref = os.path.join(OUT, "interp-%d.png")
        cli("interpolate", "--model", T2I, "--from", "text:a red circle", "--to",
            "text:a blue square", "--frames", 3, "--seed", 5, *CLI_STEPS, "-q", "-o", ref)
        for k in range(3):
            same_pixels(stack[k], ref % k, "interpolation frame %d" % k)
        p = parasite(stack[1])
        check(p.get("position") == "0.5" and p.get("frames") == "3" and
              p.get("start-prompt") == "a red circle", "frame parasite: %s" % p)

    # One frame at the slider's position: the middle frame of the same way.
    before = {l.get_id() for l in image.get_layers()}
    status, values = call("plug-in-unclip-interpolate", image, [image.get_layers()[0]],
                          start_type="prompt", start_prompt="a red circle",
                          end_type="prompt", end_prompt="a blue square", frames=1,
                          position=0.5, seed=5, random_seed=False, quality="custom",
                          model_folder=T2I, **STEPS)
    if check(status == Gimp.PDBStatusType.SUCCESS, "one frame at position 0.5 runs %s"
             % failed_with(status, values)):
        added = new_layers(image, before)
        # GIMP appends " #1": the three-frame run made a layer of that name already.
        check(len(added) == 1 and added[0].get_name().startswith(
              "a red circle → a blue square at 0.50 (seed 5)"),
              "one frame named %s" % [l.get_name() for l in added])
        same_pixels(added[0], os.path.join(OUT, "interp-1.png"), "frame at position 0.5")

    # A position no small evenly spaced set holds on eighths: 0.2 = frame 1 of 6. The engine
    # decodes it directly (unclip_run_interpolation_at); the same noise makes it equal.
    before = {l.get_id() for l in image.get_layers()}
    status, values = call("plug-in-unclip-interpolate", image, [image.get_layers()[0]],
                          start_type="prompt", start_prompt="a red circle",
                          end_type="prompt", end_prompt="a blue square", frames=1,
                          position=0.2, seed=5, random_seed=False, quality="custom",
                          model_folder=T2I, **STEPS)
    if check(status == Gimp.PDBStatusType.SUCCESS, "one frame at position 0.2 runs %s"
             % failed_with(status, values)):
        added = new_layers(image, before)
        check(len(added) == 1 and added[0].get_name() ==
              "a red circle → a blue square at 0.20 (seed 5)",
              "one frame named %s" % [l.get_name() for l in added])
        ref = os.path.join(OUT, "interp6-%d.png")
        cli("interpolate", "--model", T2I, "--from", "text:a red circle", "--to",
            "text:a blue square", "--frames", 6, "--seed", 5, *CLI_STEPS, "-q", "-o", ref)
        if added:
            same_pixels(added[0], ref % 1, "frame at position 0.2 (the CLI's frame 1 of 6)")
            check(parasite(added[0]).get("position") == "0.2",
                  "its parasite says position 0.2 (%s)" % parasite(added[0]).get("position"))
    image.delete()

    # A layer and a prompt (a model with both the image encoder and the prior).
    image = load(IMG1)
    base = image.get_layers()[0]
    status, values = call("plug-in-unclip-interpolate", image, [base], start_type="layer",
                          start_layer=base, end_type="prompt", end_prompt="a blue square",
                          frames=2, seed=6, random_seed=False, quality="custom",
                          model_folder=COMBINED, **STEPS)
    if check(status == Gimp.PDBStatusType.SUCCESS, "interpolation layer -> prompt runs %s"
             % failed_with(status, values)):
        stack = image.get_layers()
        ref = os.path.join(OUT, "interp-lp-%d.png")
        cli("interpolate", "--model", COMBINED, "--from", IMG1, "--to", "text:a blue square",
            "--frames", 2, "--seed", 6, *CLI_STEPS, "-q", "-o", ref)
        for k in range(2):
            same_pixels(stack[k], ref % k, "layer -> prompt frame %d" % k)
    image.delete()


def test_text_diff():
    image = load(IMG1)
    base = image.get_layers()[0]
    status, values = call("plug-in-unclip-text-diff", image, [base], prompt="a green star",
                          source_prompt="shapes", amount=0.5, seed=9, random_seed=False,
                          quality="custom", model_folder=VARIATIONS, decoder_steps=3,
                          super_res_steps=2, decoder_guidance=8.0)
    if check(status == Gimp.PDBStatusType.SUCCESS, "text diff runs %s"
             % failed_with(status, values)):
        layer = image.get_layers()[0]
        check(layer.get_name() == "%s → “a green star” ×0.50 (seed 9)" % base.get_name(),
              "text diff name: %s" % layer.get_name())
        ref = os.path.join(OUT, "diff.png")
        cli("text-diff", "--model", VARIATIONS, "--from", "shapes", "--to", "a green star",
            "--amount", "0.5", "--seed", 9, "--decoder-steps", 3, "--sr-steps", 2,
            "--decoder-guidance", 8.0, "-q", "-o", ref, IMG1)
        same_pixels(layer, ref, "text diff")
        check(parasite(layer).get("amount") == "0.5", "text diff parasite has the amount")
    image.delete()


def test_errors():
    cases = [
        ("plug-in-unclip-text-to-image", dict(prompt="a red circle",
                                              model_folder=os.path.join(FIX, "broken")),
         ["decoder"], "a damaged decoder file"),
        ("plug-in-unclip-text-to-image", dict(prompt="a red circle",
                                              model_folder=os.path.join(FIX, "no-index")),
         ["model_index.json"], "a folder without model_index.json"),
        # GIMP itself refuses a folder argument that does not exist (a calling error).
        ("plug-in-unclip-text-to-image", dict(prompt="a red circle",
                                              model_folder="/nonexistent/model"),
         ["model-folder"], "a folder that does not exist"),
        ("plug-in-unclip-variations", dict(model_folder=T2I),
         ["image_encoder/", "feature_extractor/"], "a model without an image encoder"),
        ("plug-in-unclip-text-to-image", dict(prompt="", model_folder=T2I),
         ["prompt"], "an empty prompt"),
        ("plug-in-unclip-text-to-image", dict(prompt="a red circle", model_folder=T2I,
                                              device="no-such-gpu"),
         ["no-such-gpu"], "a device that does not exist"),
    ]
    for name, args, words, what in cases:
        image = load(IMG1)
        base = image.get_layers()[0]
        # Something to keep: a second layer and a selection.
        before = snapshot(image)
        status, message = call(name, image, [base], seed=1, random_seed=False,
                               quality="custom", **dict(STEPS, **args)) \
            if name.endswith("image") else \
            call(name, image, [base], seed=1, random_seed=False, quality="custom",
                 decoder_steps=3, super_res_steps=2, **args)
        check(status in (Gimp.PDBStatusType.EXECUTION_ERROR,
                         Gimp.PDBStatusType.CALLING_ERROR),
              "%s: the run fails (%s)" % (what, status))
        message = str(message)
        check(all(w in message for w in words), "%s: the message names %s: %s"
              % (what, words, message))
        after = snapshot(image)
        check(after == before, "%s: the image is exactly as it was (layers, pixels, clean)"
              % what)
        image.delete()


def main():
    Gegl.init(None)
    tests = [test_registration, test_text_to_image, test_text_to_image_new_image_and_placement,
             test_variations, test_interpolate, test_text_diff, test_errors]
    only = os.environ.get("UNCLIP_TEST_ONLY")
    for t in tests:
        if only and only not in t.__name__:
            continue
        info("---- " + t.__name__)
        try:
            t()
        except Exception:
            traceback.print_exc(file=sys.stdout)
            check(False, t.__name__ + " raised")
    print("# %d failed" % len(failures), flush=True)
    if not failures:
        print("ALL-DONE", flush=True)


main()
