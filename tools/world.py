"""A procedural world of captioned images, for training and testing the default model.

Pure numpy (run with /usr/bin/python3). Everything is deterministic given a
numpy Generator: the same seed gives the same scenes, images and captions.

A scene is a JSON-able dict:

    {"background": {"kind": "plain" | "striped" | "gradient", "colour": name,
                    "angle": degrees,      # stripe or gradient direction
                    "period": fraction},   # stripe period, as a fraction of the image side
     "objects": [{"shape": name, "colour": name, "size": "small"|"medium"|"large",
                  "position": name, "cx": x, "cy": y, "r": radius}, ...]}

Coordinates are fractions of the image side (0..1, y grows downwards), so one scene
renders at any resolution. Objects are drawn in list order (later ones on top).

API:
    sample_scene(rng, allow_heldout=False) -> scene
    render(scene, size) -> np.uint8 [size, size, 3]
    object_masks(scene, size) -> np.float32 [n_objects, size, size], visible coverage 0..1
    object_mask(scene, size, index) -> np.float32 [size, size]
    mean_object_colour(image, mask) -> np.float64 [3]
    captions(scene, rng, k) -> list of k captions (never a held-out prompt)
    heldout_prompts() -> list of the held-out prompt strings
    heldout_cases() -> list of {"prompt", "scene", "rankable", "kind"}
    COLOURS, SHAPES, SIZES, POSITIONS

Held-out prompts (see heldout_cases()) are kept out of training in two ways:
  * exact strings: captions() never returns a string equal (after lower-casing and
    collapsing whitespace) to any held-out prompt; it re-samples instead. The scene
    content itself (e.g. a red circle) still occurs, described with other words.
  * combinations: HELDOUT_TRIPLES lists (colour, shape, position) triples that
    sample_scene() never produces (unless allow_heldout=True). Prompts naming such a
    triple are therefore new compositions of known words, e.g. "a blue heart on the
    left": blue hearts and things on the left occur in training, a blue heart on the
    left never does.
"""

import numpy as np

# ---------------------------------------------------------------------------------------
# Vocabulary of the world

# Clearly distinct sRGB colours. Names are the caption words.
COLOURS = {
    "red": (214, 32, 32),
    "orange": (245, 135, 20),
    "yellow": (247, 215, 30),
    "green": (34, 160, 56),
    "blue": (30, 80, 220),
    "purple": (128, 44, 168),
    "pink": (246, 128, 196),
    "white": (246, 246, 246),
    "grey": (128, 128, 128),
    "black": (18, 18, 18),
}
COLOUR_NAMES = list(COLOURS)

SHAPES = ["circle", "square", "triangle", "star", "heart", "ring", "diamond", "cross"]

# Half-extent of an object, as a fraction of the image side.
SIZES = {"small": 0.12, "medium": 0.18, "large": 0.25}

# Nominal centre of each position (x, y), y downwards.
POSITIONS = {
    "centre": (0.5, 0.5),
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
}

BACKGROUND_KINDS = ["plain", "striped", "gradient"]

# (colour, shape, position) triples that training scenes never contain.
HELDOUT_TRIPLES = {
    ("blue", "heart", "left"),
    ("yellow", "circle", "bottom"),
    ("green", "star", "top left"),
    ("red", "triangle", "right"),
    ("white", "ring", "top"),
    ("black", "square", "centre"),
}

# ---------------------------------------------------------------------------------------
# Scene sampling

_N_OBJECTS_P = [0.45, 0.35, 0.20]      # 1, 2, 3 objects
_MIN_VISIBLE = 0.55                    # each object keeps >= 55% of its own area visible


def _obj_colour_ok(colour, bg_colour):
    return colour != bg_colour


def sample_scene(rng, allow_heldout=False):
    """Draw one scene. Rejection-samples until every object is mostly visible."""
    while True:
        bg = {
            "kind": BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))],
            "colour": COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))],
            "angle": float(rng.choice([0.0, 90.0, 45.0, 135.0, 180.0, 270.0])),
            "period": float(rng.uniform(0.09, 0.16)),
        }
        n = 1 + int(rng.choice(3, p=_N_OBJECTS_P))
        pos_names = list(POSITIONS)
        picks = rng.permutation(len(pos_names))[:n]
        objects = []
        ok = True
        for pi in picks:
            position = pos_names[int(pi)]
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
            size = list(SIZES)[int(rng.integers(len(SIZES)))]
            if not _obj_colour_ok(colour, bg["colour"]):
                ok = False
                break
            if not allow_heldout and (colour, shape, position) in HELDOUT_TRIPLES:
                ok = False
                break
            objects.append(_place(shape, colour, size, position,
                                  jitter=rng.uniform(-0.035, 0.035, size=2)))
        if not ok:
            continue
        scene = {"background": bg, "objects": objects}
        if _visible_enough(scene):
            return scene


def _place(shape, colour, size, position, jitter=(0.0, 0.0)):
    r = SIZES[size]
    px, py = POSITIONS[position]
    lo, hi = r + 0.015, 1.0 - r - 0.015
    cx = float(np.clip(px + jitter[0], lo, hi))
    cy = float(np.clip(py + jitter[1], lo, hi))
    return {"shape": shape, "colour": colour, "size": size, "position": position,
            "cx": cx, "cy": cy, "r": r}


def make_scene(objects, background=("plain", "grey"), angle=0.0, period=0.125):
    """Build a scene from [(colour, shape, size, position), ...] without jitter."""
    kind, bcol = background
    return {"background": {"kind": kind, "colour": bcol, "angle": float(angle),
                           "period": float(period)},
            "objects": [_place(s, c, z, p) for (c, s, z, p) in objects]}


def _visible_enough(scene, size=48):
    objs = scene["objects"]
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            a, b = objs[i], objs[j]
            # same-coloured objects must not touch, or they read as one compound shape
            if a["colour"] == b["colour"] and \
                    np.hypot(a["cx"] - b["cx"], a["cy"] - b["cy"]) < a["r"] + b["r"] + 0.03:
                return False
    full = _coverages(scene, size, ss=2)
    vis = _visible_from_coverage(full)
    for f, v in zip(full, vis):
        area = f.sum()
        if area <= 0 or v.sum() < _MIN_VISIBLE * area:
            return False
    return True

# ---------------------------------------------------------------------------------------
# Geometry: inside tests in object-local units (x right, y down, radius 1)


def _poly_inside(x, y, verts):
    """Even-odd point-in-polygon for arrays x, y; verts: list of (x, y)."""
    inside = np.zeros(x.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        x0, y0 = verts[i]
        x1, y1 = verts[(i + 1) % n]
        if y0 == y1:
            continue
        cond = (y0 > y) != (y1 > y)
        xint = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= cond & (x < xint)
    return inside


def _regular(n, radius, phase_deg):
    a = np.deg2rad(phase_deg) + 2 * np.pi * np.arange(n) / n
    return [(radius * np.cos(t), -radius * np.sin(t)) for t in a]


_TRIANGLE = [(0.0, -1.0), (0.95, 0.72), (-0.95, 0.72)]
_STAR = []
for _k in range(10):
    _t = np.pi / 2 + _k * np.pi / 5
    _rad = 1.0 if _k % 2 == 0 else 0.42
    _STAR.append((_rad * np.cos(_t), -_rad * np.sin(_t) + 0.08))
_DIAMOND = [(0.0, -1.0), (0.75, 0.0), (0.0, 1.0), (-0.75, 0.0)]


def _inside(shape, x, y):
    if shape == "circle":
        return x * x + y * y <= 1.0
    if shape == "square":
        return (np.abs(x) <= 0.86) & (np.abs(y) <= 0.86)
    if shape == "triangle":
        return _poly_inside(x, y, _TRIANGLE)
    if shape == "star":
        return _poly_inside(x, y, _STAR)
    if shape == "diamond":
        return _poly_inside(x, y, _DIAMOND)
    if shape == "ring":
        d = x * x + y * y
        return (d <= 1.0) & (d >= 0.55 * 0.55)
    if shape == "cross":
        a, b = np.abs(x), np.abs(y)
        return ((a <= 0.3) & (b <= 0.92)) | ((b <= 0.3) & (a <= 0.92))
    if shape == "heart":
        # classic implicit heart (X^2 + Y^2 - 1)^3 - X^2 Y^3 <= 0, Y up
        X = x * 1.18
        Y = -y * 1.18 + 0.18
        q = X * X + Y * Y - 1.0
        return q * q * q - X * X * Y * Y * Y <= 0.0
    raise ValueError("unknown shape %r" % shape)


def _coverage(obj, size, ss):
    """Anti-aliased coverage [size, size] of one object, ss x ss supersampling."""
    cov = np.zeros((size, size), dtype=np.float32)
    r = obj["r"]
    # bounding box in pixels, with one pixel of margin
    x0 = max(0, int(np.floor((obj["cx"] - r) * size)) - 1)
    x1 = min(size, int(np.ceil((obj["cx"] + r) * size)) + 1)
    y0 = max(0, int(np.floor((obj["cy"] - r) * size)) - 1)
    y1 = min(size, int(np.ceil((obj["cy"] + r) * size)) + 1)
    if x1 <= x0 or y1 <= y0:
        return cov
    sub = (np.arange(ss) + 0.5) / ss
    xs = ((np.arange(x0, x1)[:, None] + sub[None, :]).reshape(-1)) / size
    ys = ((np.arange(y0, y1)[:, None] + sub[None, :]).reshape(-1)) / size
    lx = (xs - obj["cx"]) / r
    ly = (ys - obj["cy"]) / r
    X, Y = np.meshgrid(lx, ly)
    ins = _inside(obj["shape"], X, Y).astype(np.float32)
    ins = ins.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3))
    cov[y0:y1, x0:x1] = ins
    return cov


def _default_ss(size):
    return 4 if size <= 96 else 3


def _coverages(scene, size, ss=None):
    ss = ss or _default_ss(size)
    return [_coverage(o, size, ss) for o in scene["objects"]]


def _visible_from_coverage(covs):
    vis = []
    for i, c in enumerate(covs):
        v = c.copy()
        for later in covs[i + 1:]:
            v *= (1.0 - later)
        vis.append(v)
    return vis

# ---------------------------------------------------------------------------------------
# Rendering


def _rgb(name):
    return np.array(COLOURS[name], dtype=np.float32) / 255.0


def _shade(name, amount):
    """Darker version of a colour (lighter for black), used for stripes and gradients."""
    c = _rgb(name)
    if name == "black":
        return c + (1.0 - c) * amount * 0.6
    return c * (1.0 - amount)


def _background(bg, size):
    c = _rgb(bg["colour"])
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = c
    if bg["kind"] == "plain":
        return img
    t = np.deg2rad(bg["angle"])
    dx, dy = np.cos(t), np.sin(t)
    if bg["kind"] == "striped":
        ss = _default_ss(size)
        sub = (np.arange(size * ss) + 0.5) / (size * ss)
        X, Y = np.meshgrid(sub, sub)
        u = X * dx + Y * dy
        stripe = (np.floor(u / bg["period"]) % 2 == 1).astype(np.float32)
        stripe = stripe.reshape(size, ss, size, ss).mean(axis=(1, 3))
        s = _shade(bg["colour"], 0.3)
        return img * (1.0 - stripe[..., None]) + s * stripe[..., None]
    if bg["kind"] == "gradient":
        p = (np.arange(size) + 0.5) / size
        X, Y = np.meshgrid(p, p)
        u = (X - 0.5) * dx + (Y - 0.5) * dy          # -0.71 .. 0.71
        w = np.clip(u / 1.42 + 0.5, 0.0, 1.0)[..., None]
        s = _shade(bg["colour"], 0.55)
        return img * (1.0 - w) + s * w
    raise ValueError("unknown background %r" % bg["kind"])


def render(scene, size):
    """Render a scene at size x size pixels: np.uint8 [size, size, 3], sRGB."""
    img = _background(scene["background"], size)
    for obj, cov in zip(scene["objects"], _coverages(scene, size)):
        a = cov[..., None]
        img = img * (1.0 - a) + _rgb(obj["colour"]) * a
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def object_masks(scene, size):
    """Visible coverage (0..1) of every object after occlusion: float32 [n, size, size]."""
    vis = _visible_from_coverage(_coverages(scene, size))
    return np.stack(vis) if vis else np.zeros((0, size, size), np.float32)


def object_mask(scene, size, index):
    return object_masks(scene, size)[index]


def mean_object_colour(image, mask, threshold=0.99):
    """Mean RGB (0..255) of an image over pixels where mask >= threshold (object interior)."""
    sel = mask >= threshold
    if not sel.any():
        sel = mask >= mask.max() * 0.9
    return image[sel].astype(np.float64).mean(axis=0)

# ---------------------------------------------------------------------------------------
# Captions

_SIZE_WORDS = {"small": ["small", "small", "little", "tiny"],
               "medium": ["medium", "medium-sized", "medium sized"],
               "large": ["large", "big", "big", "large"]}
_POS_PHRASES = {
    "centre": ["in the centre", "in the center", "in the middle"],
    "left": ["on the left", "at the left"],
    "right": ["on the right", "at the right"],
    "top": ["at the top"],
    "bottom": ["at the bottom"],
    "top left": ["in the top left corner", "at the top left", "in the top left"],
    "top right": ["in the top right corner", "at the top right", "in the top right"],
    "bottom left": ["in the bottom left corner", "at the bottom left", "in the bottom left"],
    "bottom right": ["in the bottom right corner", "at the bottom right",
                     "in the bottom right"],
}
_COLOUR_WORDS = {c: [c] for c in COLOURS}
_COLOUR_WORDS["grey"] = ["grey", "gray"]
_PREFIXES = ["a picture of", "an image of", "a drawing of", "a picture with", "an illustration of"]
_COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
_COUNT_NOUNS = ["shapes", "objects", "things"]


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def _fix_articles(s):
    """'a orange' -> 'an orange' wherever a phrase put the article before a vowel."""
    w = s.split(" ")
    for i in range(len(w) - 1):
        if w[i] == "a" and w[i + 1][:1] in ("a", "e", "i", "o", "u"):
            w[i] = "an"
    return " ".join(w)


def _norm(s):
    return " ".join(s.lower().split())


def _noun_phrase(rng, obj, p_size, p_pos, article=True, allow_pos=True):
    words = []
    if rng.random() < p_size:
        words.append(_pick(rng, _SIZE_WORDS[obj["size"]]))
    words.append(_pick(rng, _COLOUR_WORDS[obj["colour"]]))
    words.append(obj["shape"])
    s = " ".join(words)
    if article:
        s = _article(s) + " " + s
    if allow_pos and rng.random() < p_pos:
        s += " " + _pick(rng, _POS_PHRASES[obj["position"]])
    return s


def _bg_phrase(rng, bg):
    c = _pick(rng, _COLOUR_WORDS[bg["colour"]])
    if bg["kind"] == "plain":
        return _pick(rng, ["on a %s background" % c, "on a plain %s background" % c,
                           "on %s" % c, "against a %s background" % c])
    if bg["kind"] == "striped":
        return _pick(rng, ["on a %s striped background" % c, "on %s stripes" % c,
                           "on a striped %s background" % c])
    return _pick(rng, ["on a %s gradient background" % c, "on a %s gradient" % c,
                       "on a %s gradient" % c, "on a fading %s background" % c])


def _bg_noun(rng, bg):
    c = _pick(rng, _COLOUR_WORDS[bg["colour"]])
    kind = {"plain": ["", "plain "], "striped": ["striped "],
            "gradient": ["gradient ", "fading "]}[bg["kind"]]
    s = "%s%s background" % (_pick(rng, kind), c)
    return _article(s) + " " + s


def _join(parts):
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _relation(a, b):
    """Spatial relation of object a to object b, from their centres."""
    dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _one_caption(scene, rng):
    objs = list(scene["objects"])
    bg = scene["background"]
    n = len(objs)
    order = [objs[i] for i in rng.permutation(n)] if rng.random() < 0.5 else objs
    form = rng.random()
    p_bg = 0.5
    if form < 0.18:
        # tag list: "red circle, blue square"
        parts = [_noun_phrase(rng, o, 0.3, 0.0, article=False) for o in order]
        s = ", ".join(parts)
        if rng.random() < 0.35:
            c = _pick(rng, _COLOUR_WORDS[bg["colour"]])
            s += ", %s%s background" % ({"plain": "", "striped": "striped ",
                                           "gradient": "gradient "}[bg["kind"]], c)
        return s
    if form < 0.30:
        # background first: "a yellow background with a red circle on the left"
        parts = [_noun_phrase(rng, o, 0.5, 0.5) for o in order]
        return _bg_noun(rng, bg) + " with " + _join(parts)
    if form < 0.42 and n >= 2:
        # relation: "a small red circle to the left of a blue square"
        a, b = order[0], order[1]
        s = "%s %s %s" % (_noun_phrase(rng, a, 0.4, 0.0), _relation(a, b),
                          _noun_phrase(rng, b, 0.4, 0.0))
        if n == 3:
            s += ", and " + _noun_phrase(rng, order[2], 0.4, 0.7)
        if rng.random() < p_bg:
            s += " " + _bg_phrase(rng, bg)
        return s
    if form < 0.52 and n >= 2:
        # counting: "two shapes: a red circle and a blue square"
        parts = [_noun_phrase(rng, o, 0.4, 0.5) for o in order]
        s = "%s %s: %s" % (_COUNT_WORDS[n], _pick(rng, _COUNT_NOUNS), _join(parts))
        if rng.random() < p_bg:
            s += ", " + _bg_phrase(rng, bg)
        return s
    # full sentence, optionally with a prefix
    parts = [_noun_phrase(rng, o, 0.5, 0.6) for o in order]
    s = _join(parts)
    if rng.random() < p_bg:
        s += (", " if rng.random() < 0.5 else " ") + _bg_phrase(rng, bg)
    if rng.random() < 0.3:
        s = _pick(rng, _PREFIXES) + " " + s
    return s


def captions(scene, rng, k=1):
    """k captions of a scene (independent draws; may repeat). Never a held-out prompt."""
    held = _heldout_set()
    out = []
    while len(out) < k:
        for _ in range(100):
            s = _fix_articles(_one_caption(scene, rng))
            if _norm(s) not in held:
                break
        else:  # practically unreachable: fall back to the full tag list with sizes
            s = ", ".join("%s %s %s %s" % (o["size"], o["colour"], o["shape"], o["position"])
                          for o in scene["objects"])
        out.append(s)
    return out

# ---------------------------------------------------------------------------------------
# Held-out prompts


def heldout_cases():
    """Fixed prompts kept out of training, each with a scene that matches it.

    kind "string": the exact prompt string never appears as a training caption.
    kind "triple": additionally the (colour, shape, position) triple never appears in a
                   training scene (HELDOUT_TRIPLES).
    rankable: every rankable case has its own set of (colour, shape) pairs, so a
    prompt matches its own scene better than any other rankable case's scene; a CLIP
    ranking test can use all rankable cases together.
    """
    g = ("plain", "grey")
    spec = [
        # single objects, colour + shape only (exact strings held out)
        ("a red circle", [("red", "circle", "medium", "centre")], g, "string"),
        ("a blue square", [("blue", "square", "medium", "centre")], g, "string"),
        ("a green triangle", [("green", "triangle", "medium", "centre")], g, "string"),
        ("a yellow star", [("yellow", "star", "medium", "centre")], g, "string"),
        ("a purple heart", [("purple", "heart", "medium", "centre")], g, "string"),
        ("an orange ring", [("orange", "ring", "medium", "centre")], g, "string"),
        ("a white diamond", [("white", "diamond", "medium", "centre")], g, "string"),
        ("a pink cross", [("pink", "cross", "medium", "centre")], g, "string"),
        # new colour + shape + position compositions
        ("a blue heart on the left", [("blue", "heart", "medium", "left")], g, "triple"),
        ("a yellow circle at the bottom", [("yellow", "circle", "medium", "bottom")], g,
         "triple"),
        ("a large green star in the top left corner",
         [("green", "star", "large", "top left")], g, "triple"),
        ("a red triangle on the right", [("red", "triangle", "medium", "right")], g,
         "triple"),
        ("a white ring at the top", [("white", "ring", "medium", "top")], g, "triple"),
        ("a black square in the centre", [("black", "square", "medium", "centre")], g,
         "triple"),
        # two objects
        ("a pink star to the left of a green square",
         [("pink", "star", "medium", "left"), ("green", "square", "medium", "right")], g,
         "string"),
        ("an orange heart above a white circle",
         [("orange", "heart", "medium", "top"), ("white", "circle", "medium", "bottom")], g,
         "string"),
        # backgrounds
        ("a white star on a black background", [("white", "star", "medium", "centre")],
         ("plain", "black"), "string"),
        ("a big red heart on a yellow background", [("red", "heart", "large", "centre")],
         ("plain", "yellow"), "string"),
        ("an orange square on a blue striped background",
         [("orange", "square", "medium", "centre")], ("striped", "blue"), "string"),
    ]
    cases = []
    for prompt, objs, bg, kind in spec:
        scene = make_scene(objs, background=bg)
        cases.append({"prompt": prompt, "scene": scene, "kind": kind, "rankable": True})
    return cases


def heldout_prompts():
    return [c["prompt"] for c in heldout_cases()]


_HELD = None


def _heldout_set():
    global _HELD
    if _HELD is None:
        _HELD = frozenset(_norm(p) for p in heldout_prompts())
    return _HELD


def is_heldout_caption(s):
    return _norm(s) in _heldout_set()


def scene_has_heldout_triple(scene):
    return any((o["colour"], o["shape"], o["position"]) in HELDOUT_TRIPLES
               for o in scene["objects"])


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    for i in range(12):
        sc = sample_scene(rng)
        print(" | ".join(captions(sc, rng, 3)))
