#!/usr/bin/env python3
"""Model folders for the plug-in tests, made from the goldens' tiny models (standard library
only: it runs with the chroot's python3).

    make-fixtures.py OUT_DIR

  OUT_DIR/combined     tiny-karlo + the image encoder of tiny-karlo-variations (symbolic
                       links to the component folders): text to image, variations,
                       interpolation with a layer at one end and a prompt at the other.
  OUT_DIR/broken       tiny-karlo with a damaged decoder weight file (truncated header).
  OUT_DIR/no-index     a folder without model_index.json.
"""
import json
import os
import shutil
import sys

MODELS = os.environ.get("UNCLIP_TEST_MODELS", "/shared/goldens/models")


def main(out):
    t2i = os.path.join(MODELS, "tiny-karlo")
    var = os.path.join(MODELS, "tiny-karlo-variations")
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)

    combined = os.path.join(out, "combined")
    os.makedirs(combined)
    with open(os.path.join(t2i, "model_index.json")) as f:
        index = json.load(f)
    with open(os.path.join(var, "model_index.json")) as f:
        vindex = json.load(f)
    for comp in os.listdir(t2i):
        if os.path.isdir(os.path.join(t2i, comp)):
            os.symlink(os.path.join(t2i, comp), os.path.join(combined, comp))
    # The variations folder's own components are real files (its shared ones are link stubs).
    for comp in ("image_encoder", "feature_extractor"):
        os.symlink(os.path.join(var, comp), os.path.join(combined, comp))
        index[comp] = vindex[comp]
    with open(os.path.join(combined, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)

    broken = os.path.join(out, "broken")
    os.makedirs(broken)
    for comp in os.listdir(t2i):
        src = os.path.join(t2i, comp)
        if comp == "decoder":
            os.makedirs(os.path.join(broken, comp))
            shutil.copy(os.path.join(src, "config.json"), os.path.join(broken, comp))
            with open(os.path.join(src, "diffusion_pytorch_model.safetensors"), "rb") as f:
                head = f.read(4096)
            # The 8-byte header length now points past the end of the file.
            with open(os.path.join(broken, comp, "diffusion_pytorch_model.safetensors"),
                      "wb") as f:
                f.write(head)
        elif os.path.isdir(src):
            os.symlink(src, os.path.join(broken, comp))
        else:
            shutil.copy(src, broken)

    os.makedirs(os.path.join(out, "no-index", "decoder"))
    print("fixtures in", out)


if __name__ == "__main__":
    main(sys.argv[1])
