# The plug-in inside GIMP 3 with its user interface, under Xvfb (python-fu-eval batch script
# for gimp-3.0; see in-chroot.sh):
#
#  1. one undo step: a run that adds two layers is taken back by ONE Edit > Undo (Ctrl+Z,
#     sent to the image window with XTest), which leaves the image clean; Redo brings both back;
#  2. the dialogs: each procedure runs interactively; with UNCLIP_UI_SCREENSHOT_DIR and
#     UNCLIP_UI_SCREENSHOT_GENERATE=1 set, the dialog presses Generate once, waits for the
#     run, saves a picture of itself and closes; the layers must be there afterwards;
#  3. Stop: the dialog photographs itself running and presses Stop at the first progress
#     report; nothing may change.
#
# Prints "ok ..." / "FAIL ..." lines, then ALL-DONE when nothing failed.

import ctypes
import json
import os
import sys
import time
import traceback

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gegl, Gio, GLib

OUT = os.environ["UNCLIP_TEST_OUT"]
MODELS = os.environ["UNCLIP_TEST_MODELS"]
SHOTS = os.environ["UNCLIP_UI_SCREENSHOT_DIR"]
T2I = os.path.join(MODELS, "tiny-karlo")
COMBINED = os.path.join(OUT, "fixtures", "combined")
IMG1 = "/shared/goldens/goldens/images/img1_shapes_96x80.png"

pdb = Gimp.get_pdb()
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def info(text):
    print("INFO " + text, flush=True)


def load(path):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))


def call(name, run_mode, image, drawables, **args):
    proc = pdb.lookup_procedure(name)
    config = proc.create_config()
    config.set_property("run-mode", run_mode)
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
    message = result.index(1) if status != Gimp.PDBStatusType.SUCCESS and \
        result.length() > 1 else ""
    return status, message


# ---- XTest: keys to a window of the GIMP process ------------------------------------------

class X11:
    def __init__(self):
        self.x = ctypes.CDLL("libX11.so.6")
        self.xt = ctypes.CDLL("libXtst.so.6")
        self.x.XOpenDisplay.restype = ctypes.c_void_p
        self.x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        for f in ("XSetInputFocus", "XRaiseWindow", "XFlush", "XSync", "XKeysymToKeycode"):
            getattr(self.x, f).argtypes = None
        self.dpy = ctypes.c_void_p(self.x.XOpenDisplay(None))
        # Errors (a window that cannot take the focus) must not end the script.
        handler_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
        self._handler = handler_t(lambda d, e: 0)
        self.x.XSetErrorHandler(self._handler)

    def key(self, window, keysyms):
        """Presses keysyms in order and releases them in reverse (a chord)."""
        self.x.XRaiseWindow(self.dpy, ctypes.c_ulong(window))
        self.x.XSetInputFocus(self.dpy, ctypes.c_ulong(window), 2, 0)  # RevertToParent
        self.x.XSync(self.dpy, 0)
        time.sleep(0.3)
        codes = [self.x.XKeysymToKeycode(self.dpy, ctypes.c_ulong(k)) for k in keysyms]
        for c in codes:
            self.xt.XTestFakeKeyEvent(self.dpy, c, 1, 0)
        for c in reversed(codes):
            self.xt.XTestFakeKeyEvent(self.dpy, c, 0, 0)
        self.x.XFlush(self.dpy)


XK_Control_L, XK_z, XK_y = 0xffe3, 0x7a, 0x79


def window_of(display):
    handle = bytes(display.get_window_handle().get_data())
    return int.from_bytes(handle[:8] if len(handle) >= 8 else handle, "little")


def wait_for(predicate, seconds=15.0):
    """GIMP handles the key while this script sleeps (it is another process)."""
    end = time.time() + seconds
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.25)
    return predicate()


# ---------------------------------------------------------------------------------------------

def test_one_undo_step():
    image = load(IMG1)
    display = Gimp.Display.new(image)
    Gimp.displays_flush()
    image.clean_all()
    base = image.get_layers()[0]
    status, message = call("plug-in-unclip-text-to-image", Gimp.RunMode.NONINTERACTIVE,
                           image, [base], prompt="a red circle", seed=7, random_seed=False,
                           num_images=2, quality="custom", prior_steps=3, decoder_steps=3,
                           super_res_steps=2, model_folder=T2I)
    if not check(status == Gimp.PDBStatusType.SUCCESS, "run before undo (%s)" % message):
        return
    check(len(image.get_layers()) == 3 and image.is_dirty(), "two layers added")
    Gimp.displays_flush()

    x = X11()
    window = window_of(display)
    info("image window 0x%x" % window)
    x.key(window, [XK_Control_L, XK_z])
    undone = wait_for(lambda: len(image.get_layers()) == 1)
    check(undone, "one Undo removes both layers (%d layers)" % len(image.get_layers()))
    check(undone and image.get_layers()[0] == base and not image.is_dirty(),
          "after one Undo the image is as loaded (clean)")

    x.key(window, [XK_Control_L, XK_y])
    check(wait_for(lambda: len(image.get_layers()) == 3),
          "one Redo brings both back (%d layers)" % len(image.get_layers()))
    check(all(l.get_parasite("gimp-unclip-parameters") is not None
              for l in image.get_layers()[:2]), "with their parameter parasites")
    display.delete()


# Last values the dialogs open with (GIMP loads them from plug-in-settings/*.last).
DIALOGS = [
    ("plug-in-unclip-text-to-image", "text-to-image", [
        ("prompt", '"a red circle on a blue background"'), ("seed", "7"),
        ("random-seed", "no"), ("num-images", "2"), ("quality", '"custom"'),
        ("prior-steps", "3"), ("decoder-steps", "3"), ("super-res-steps", "2"),
        ("model-folder", '"file://%s"' % T2I)], 2),
    ("plug-in-unclip-variations", "variations", [
        ("seed", "11"), ("random-seed", "no"), ("num-images", "2"), ("quality", '"custom"'),
        ("decoder-steps", "3"), ("super-res-steps", "2"),
        ("model-folder", '"file://%s"' % COMBINED)], 2),
    ("plug-in-unclip-interpolate", "interpolate", [
        ("start-type", '"layer"'), ("end-type", '"prompt"'),
        ("end-prompt", '"a blue square"'), ("frames", "3"), ("position", "0.5"),
        ("seed", "5"), ("random-seed", "no"), ("quality", '"custom"'), ("prior-steps", "3"),
        ("decoder-steps", "3"), ("super-res-steps", "2"),
        ("model-folder", '"file://%s"' % COMBINED)], 3),
    ("plug-in-unclip-text-diff", "text-diff", [
        ("prompt", '"a green star"'), ("source-prompt", '"coloured shapes"'),
        ("amount", "0.5"), ("seed", "9"), ("random-seed", "no"), ("quality", '"custom"'),
        ("decoder-steps", "3"), ("super-res-steps", "2"),
        ("model-folder", '"file://%s"' % COMBINED)], 1),
]


# The shipped default model, when it has been made: the text to image and interpolation
# dialogs then show it (pictures in docs/ look like something); else the goldens' tiny model.
SHAPES = "/src/data/models/shapes-v1"
if os.path.exists(os.path.join(SHAPES, "model_index.json")):
    DIALOGS[0] = (DIALOGS[0][0], DIALOGS[0][1], [
        ("prompt", '"a red circle in the centre"'), ("seed", "7"), ("random-seed", "no"),
        ("num-images", "2"), ("quality", '"fast"')], 2)
    DIALOGS[2] = (DIALOGS[2][0], DIALOGS[2][1], [
        ("start-type", '"prompt"'), ("start-prompt", '"a red circle"'),
        ("end-type", '"prompt"'), ("end-prompt", '"a blue square"'), ("frames", "3"),
        ("position", "0.5"), ("seed", "5"), ("random-seed", "no"), ("quality", '"fast"')], 3)


def write_last(name, settings):
    folder = os.path.join(Gimp.directory(), "plug-in-settings")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "GimpProcedureConfigRun-%s.last" % name)
    with open(path, "w") as f:
        f.write("# written by tests/plugin/test-gui.py\n\n")
        for key, value in settings:
            f.write("(%s %s)\n" % (key, value))
    return path


def test_dialogs():
    for name, kind, settings, n_new in DIALOGS:
        image = load(IMG1)
        display = Gimp.Display.new(image)
        Gimp.displays_flush()
        base = image.get_layers()[0]
        write_last(name, settings)
        shot = os.path.join(SHOTS, "plugin-%s.png" % kind)
        if os.path.exists(shot):
            os.unlink(shot)
        status, message = call(name, Gimp.RunMode.INTERACTIVE, image, [base])
        check(status == Gimp.PDBStatusType.SUCCESS,
              "%s dialog: Generate ran and the dialog closed (%s %s)" % (kind, status, message))
        check(len(image.get_layers()) == 1 + n_new, "%s dialog: %d new layers (%d)"
              % (kind, n_new, len(image.get_layers()) - 1))
        check(os.path.exists(shot), "%s dialog: picture %s" % (kind, os.path.basename(shot)))
        if kind == "interpolate":
            check_preview(settings)
        display.delete()


def model_of(settings):
    for key, value in settings:
        if key == "model-folder":
            return value.strip('"')[len("file://"):]
    return SHAPES


def check_preview(settings):
    """The live preview is the decoder's own output (decoder_only): its sample_size square,
    not the super-resolution size of the layers."""
    raw = os.path.join(SHOTS, "plugin-interpolate-preview.png")
    if not check(os.path.exists(raw), "interpolate dialog: the preview was made"):
        return
    with open(os.path.join(model_of(settings), "decoder", "config.json")) as f:
        side = json.load(f)["sample_size"]
    image = load(raw)
    layer = image.get_layers()[0]
    w, h = layer.get_width(), layer.get_height()
    buf = layer.get_buffer()
    data = bytes(buf.get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B' u8",
                         Gegl.AbyssPolicy.NONE))
    image.delete()
    check((w, h) == (side, side), "interpolate dialog: the preview is the decoder's %dx%d "
          "output (%dx%d)" % (side, side, w, h))
    check(len(set(data)) > 8, "interpolate dialog: the preview is a picture (%d distinct "
          "byte values)" % len(set(data)))


def test_stop():
    """Stop in the dialog: the run ends early and the image stays as it was."""
    name, kind, settings, _ = DIALOGS[0]
    image = load(IMG1)
    display = Gimp.Display.new(image)
    Gimp.displays_flush()
    image.clean_all()
    base = image.get_layers()[0]
    write_last(name, settings)
    flag = os.path.join(SHOTS, "plugin-%s.stop" % kind)
    shot = os.path.join(SHOTS, "plugin-%s-stopped.png" % kind)
    open(flag, "w").close()
    try:
        status, message = call(name, Gimp.RunMode.INTERACTIVE, image, [base])
    finally:
        os.unlink(flag)
    check(status == Gimp.PDBStatusType.CANCEL,
          "Stop: the dialog ends without a finished run (%s %s)" % (status, message))
    check(len(image.get_layers()) == 1 and image.get_layers()[0] == base and
          not image.is_dirty(), "Stop: the image is as it was (%d layers, dirty %s)"
          % (len(image.get_layers()), image.is_dirty()))
    check(os.path.exists(shot), "Stop: picture %s" % os.path.basename(shot))
    running = shot.replace("-stopped.png", "-running.png")
    check(os.path.exists(running), "Stop: picture %s" % os.path.basename(running))
    display.delete()


def main():
    tests = [test_one_undo_step, test_dialogs, test_stop]
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
