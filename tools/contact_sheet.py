"""Contact sheets of the procedural world (or of any images), written as PNG with numpy + zlib.

Usage:
    /usr/bin/python3 tools/contact_sheet.py [--n 16] [--size 64] [--seed 0] [--cols 4]
                                             [--heldout] [-o sheet.png]

prints the captions of each tile (row-major) and writes one PNG. Library use:
    write_png(path, uint8 [H, W, 3])
    sheet(images, cols, pad) -> uint8 [H, W, 3]
"""

import argparse
import os
import struct
import sys
import zlib

import numpy as np


def _chunk(tag, data):
    body = tag + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_png(img):
    """uint8 [H, W, 3] (or [H, W] grey) -> PNG bytes (8-bit, filter 0 on every row)."""
    img = np.ascontiguousarray(img)
    if img.dtype != np.uint8:
        raise ValueError("encode_png wants uint8, got %s" % img.dtype)
    if img.ndim == 2:
        colour_type, ch = 0, 1
        img = img[..., None]
    elif img.ndim == 3 and img.shape[2] in (3, 4):
        ch = img.shape[2]
        colour_type = 2 if ch == 3 else 6
    else:
        raise ValueError("encode_png: bad shape %r" % (img.shape,))
    h, w = img.shape[:2]
    raw = np.zeros((h, 1 + w * ch), dtype=np.uint8)   # leading 0 = filter type None
    raw[:, 1:] = img.reshape(h, w * ch)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + _chunk(b"IEND", b""))


def write_png(path, img):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "wb") as f:
        f.write(encode_png(img))


def sheet(images, cols=4, pad=2, pad_value=255, scale=1):
    """Tile equally sized uint8 [H, W, 3] images into one grid, optional nearest upscale."""
    images = [np.asarray(i) for i in images]
    if scale > 1:
        images = [i.repeat(scale, 0).repeat(scale, 1) for i in images]
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), pad_value, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + h, x:x + w] = im[..., :3]
    return out


def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import world

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--scale", type=int, default=1, help="nearest-neighbour zoom of each tile")
    ap.add_argument("--heldout", action="store_true", help="show the held-out cases instead")
    ap.add_argument("-o", "--output", default="tools/_work/world_sheet.png")
    a = ap.parse_args(argv)

    rng = np.random.default_rng(a.seed)
    imgs = []
    if a.heldout:
        for k, c in enumerate(world.heldout_cases()):
            imgs.append(world.render(c["scene"], a.size))
            print("%2d [%s] %s" % (k, c["kind"], c["prompt"]))
    else:
        for k in range(a.n):
            sc = world.sample_scene(rng)
            imgs.append(world.render(sc, a.size))
            print("%2d %s" % (k, " | ".join(world.captions(sc, rng, 2))))
    write_png(a.output, sheet(imgs, a.cols, scale=a.scale))
    print("wrote", a.output)


if __name__ == "__main__":
    main()
