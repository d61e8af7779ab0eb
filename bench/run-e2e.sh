#!/bin/sh
# The default model end to end: text to PNG with the CLI, default steps (prior 25, decoder 25,
# super-res 7), timing each stage (load and total), the peak device and host memory, and the
# whole process's wall and CPU time. A benchmark, never a pass/fail test: on a shared machine
# figures swing, so run it under `flock /work/team/bench.lock` on a quiet machine and compare
# within one run. Each repetition is a fresh process (weights loaded, pipelines created: what
# a user waits for); Mesa's shader disk cache is warmed by one untimed run first.
#
# Usage: bench/run-e2e.sh [BUILD_DIR] [-- options]
#   options: --model DIR (default data/models/shapes-v1), --reps N (default 3),
#            --prompt TEXT, --seed N, --fp32, --device NAME, --keep DIR (keep the PNGs)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=${1:-build}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
model="$src/data/models/shapes-v1"
reps=3
prompt="a red circle above a blue square"
seed=42
extra=""
keep=""
while [ $# -gt 0 ]; do
    case "$1" in
    --model) model=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --fp32) extra="$extra --fp32"; shift ;;
    --device) extra="$extra --device $2"; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "run-e2e: unknown option $1" >&2; exit 2 ;;
    esac
done
exe="$build/cli/unclip"
if [ ! -x "$exe" ]; then
    echo "run-e2e: build first (ninja -C $build cli/unclip)" >&2
    exit 1
fi
if [ ! -f "$model/model_index.json" ]; then
    echo "run-e2e: no model at $model (model_index.json missing)" >&2
    exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "# model $model, prompt '$prompt', seed $seed, $reps timed runs after one warm-up"
# shellcheck disable=SC2086
"$exe" generate --model "$model" --seed "$seed" -q $extra -o "$out/warm.png" "$prompt"
r=1
while [ "$r" -le "$reps" ]; do
    # The wrapper times the child (wall clock and its CPU time from getrusage).
    # shellcheck disable=SC2086
    /usr/bin/env python3 - "$exe" "$out/run-$r.txt" generate --model "$model" --seed "$seed" \
        --stats $extra -o "$out/run-$r.png" "$prompt" <<'EOF'
import resource, subprocess, sys, time
exe, log, args = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.monotonic()
with open(log, "w") as f:
    rc = subprocess.call([exe] + args, stdout=f)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(log, "a") as f:
    f.write("WALL %.2f CPU %.2f\n" % (wall, ru.ru_utime + ru.ru_stime))
sys.exit(rc)
EOF
    echo "## run $r: $(sed -n 's/^WALL \(.*\) CPU \(.*\)/wall \1 s, process CPU \2 s/p' "$out/run-$r.txt")"
    grep -v '^WALL ' "$out/run-$r.txt"
    r=$((r + 1))
done
if [ -n "$keep" ]; then
    mkdir -p "$keep"
    cp "$out"/run-*.png "$keep"/
fi
