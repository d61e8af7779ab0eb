#!/usr/bin/env bash
# Contact sheet of the default model as the C engine draws it: 16 held-out prompts of
# tools/world.py (never training captions), each drawn by `unclip generate` at the product
# steps (25 prior / 25 decoder / 7 super-res), laid out beside the world's own rendering of a
# scene that matches the prompt.
#
#   tools/make_contact_sheet_c.sh [--model DIR] [--unclip EXE] [--seed N] [-o OUT.png]
#                                 [-- extra unclip generate options, e.g. --decoder-steps 10]
#
# Defaults: --model data/models/shapes-v1, --unclip build/cli/unclip, --seed 0,
# -o MODEL/contact-sheet.png. Also writes OUT with .txt instead of .png: the legend (tile
# positions, prompts, seeds, per-picture time). Layout: 4 rows x 4 prompts, each prompt as
# two 128x128 tiles [world reference | generated]. Needs /usr/bin/python3 with numpy (layout
# only: tools/contact_sheet.py); the pictures come from the C engine alone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
model=$here/data/models/shapes-v1
unclip=$here/build/cli/unclip
seed=0
out=
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --model) model=$2; shift 2 ;;
    --unclip) unclip=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: $0 [--model DIR] [--unclip EXE] [--seed N] [-o OUT.png] [-- OPTIONS]" >&2
       exit 2 ;;
    esac
done
out=${out:-$model/contact-sheet.png}
[ -f "$model/model_index.json" ] || { echo "no model in $model (model_index.json missing)" >&2; exit 1; }
[ -x "$unclip" ] || { echo "no $unclip: build first (ninja -C build)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The 16 held-out cases shown (indices into world.heldout_cases()): the eight colour + shape
# prompts, four new colour/shape/position compositions, both two-object prompts, and two
# named backgrounds (plain black, blue stripes).
cases="0 1 2 3 4 5 6 7 8 9 10 11 14 15 16 18"
HERE=$here /usr/bin/python3 -c '
import os, sys
sys.path.insert(0, os.path.join(os.environ["HERE"], "tools"))
import world
cases = world.heldout_cases()
for k in sys.argv[1:]:
    print("%s\t%s" % (k, cases[int(k)]["prompt"]))
' $cases > "$tmp/prompts.tsv"

n=0
while IFS=$'\t' read -r k prompt; do
    s=$((seed + k))
    t0=$(date +%s.%N)
    "$unclip" generate --model "$model" --seed "$s" -q "${extra[@]}" \
        -o "$tmp/gen-$k.png" "$prompt"
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    printf '%s\t%s\t%s\t%s\n' "$k" "$s" "$secs" "$prompt" >> "$tmp/made.tsv"
    n=$((n + 1))
    echo "[$n/16] seed $s, $secs s: $prompt"
done < "$tmp/prompts.tsv"

HERE=$here /usr/bin/python3 - "$tmp" "$out" "$model" "${extra[*]:-}" <<'EOF'
import importlib.util, os, sys
import numpy as np
here = os.environ["HERE"]
sys.path.insert(0, os.path.join(here, "tools"))
import contact_sheet, world
# tools/unclip_torch/png.py alone (the package would import torch)
spec = importlib.util.spec_from_file_location(
    "ut_png", os.path.join(here, "tools", "unclip_torch", "png.py"))
png = importlib.util.module_from_spec(spec)
spec.loader.exec_module(png)

tmp, out, model, opts = sys.argv[1:5]
cases = world.heldout_cases()
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(tmp, "made.tsv"))]
tiles, legend = [], []
for pos, (k, seed, secs, prompt) in enumerate(rows):
    gen = np.asarray(png.read_png(os.path.join(tmp, "gen-%s.png" % k)))[..., :3]
    ref = world.render(cases[int(k)]["scene"], gen.shape[0])
    tiles += [ref, gen]
    r, c = divmod(pos, 4)
    legend.append("row %d col %d  case %2s  seed %-3s  %6s s  %s" % (r + 1, c + 1, k, seed,
                                                                    secs, prompt))
sheet = contact_sheet.sheet(tiles, cols=8, pad=4)
contact_sheet.write_png(out, sheet)
txt = os.path.splitext(out)[0] + ".txt"
with open(txt, "w") as f:
    f.write("Contact sheet of %s (%s): held-out prompts of tools/world.py drawn by the C\n"
            "engine (unclip generate %s), each prompt as two tiles:\n"
            "[world reference rendering | generated picture]. 4 prompts per row.\n\n"
            % (os.path.basename(model.rstrip("/")), os.path.basename(out),
               opts or "at the default steps 25/25/7"))
    f.write("\n".join(legend) + "\n")
print("wrote %s (%dx%d) and %s" % (out, sheet.shape[1], sheet.shape[0], txt))
print("\n".join(legend))
EOF
