#!/bin/sh
# Heavy ops side by side, measured in one run: our Vulkan shaders (bench-ops), torch on the
# CPU (bench/torch_ops.py, 2 threads, OpenBLAS) and the CPU's fp32 FMA peak (cpu-peak).
# Prints one table with GFLOP/s and the ratios ours/torch and ours/peak. A benchmark, never a
# pass/fail test: on a shared machine the figures swing; compare within one run.
#
# Usage: bench/run-ops.sh [BUILD_DIR] [-- bench-ops options, e.g. --device NAME --big]
#   BUILD_DIR defaults to ./build; extra options go to bench-ops (--big also to torch).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
big=""
for a in "$@"; do [ "$a" = "--big" ] && big="--big"; done

if [ ! -x "$build/bench/bench-ops" ] || [ ! -x "$build/bench/cpu-peak" ]; then
    echo "run-ops: build first (ninja -C $build bench/bench-ops bench/cpu-peak)" >&2
    exit 1
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "# CPU FMA peak" >&2
"$build/bench/cpu-peak" 2 >>"$out"
echo "# Vulkan (bench-ops $*)" >&2
"$build/bench/bench-ops" "$@" | tee -a "$out" | grep -E '^(DEVICE|SKIP)' >&2 || true
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "# torch on the CPU" >&2
    /usr/bin/python3 "$here/torch_ops.py" $big | tee -a "$out" | grep -E '^TORCH' >&2 || true
else
    echo "# torch: /usr/bin/python3 with torch not found, column left empty" >&2
fi

/usr/bin/env python3 - "$out" <<'EOF'
import sys
res = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 4 and f[0] == "RESULT":
        res[f[1]] = (float(f[2]), float(f[3]), f[5] if len(f) > 5 else "")
peak = next((v[0] for k, v in res.items() if k.startswith("cpu_fma_peak")), None)
def torch_for(name):
    base = name
    for suf in ("_f16", "_f32"):
        if base.endswith(suf):
            base = base[: -len(suf)]
    return res.get("torch_" + base + "_f32") or res.get("torch_" + base)
print("%-34s %9s %9s %10s %9s %10s %9s" % ("op", "GFLOP/s", "ms", "GF/CPU-s", "torch", "ours/torch",
                                          "ours/peak"))
for name, (gf, ms, cpu) in res.items():
    if name.startswith("torch_") or name.startswith("cpu_fma_peak"):
        continue
    t = torch_for(name)
    print("%-34s %9.2f %9.1f %10s %9s %10s %9s" % (
        name, gf, ms, cpu or "-",
        "%.1f" % t[0] if t else "-",
        "%.3f" % (gf / t[0]) if t else "-",
        "%.4f" % (gf / peak) if peak else "-"))
for name, (gf, ms, _) in res.items():
    if name.startswith("torch_"):
        print("%-34s %9.2f %9.1f %10s %9s %10s %9s" % (name, gf, ms, "-", "-", "-",
              "%.4f" % (gf / peak) if peak else "-"))
if peak:
    print("%-34s %9.1f" % ("cpu fp32 FMA peak (2 threads)", peak))
# the same attention as the UNet runs it (head-major keys/values) against the packed rows
for name, (gf, _, _) in res.items():
    if name.endswith("_packed") and name[: -len("_packed")] in res:
        print("%-34s %9.2fx" % (name[: -len("_packed")] + " / packed", res[name[: -len("_packed")]][0] / gf))
EOF
