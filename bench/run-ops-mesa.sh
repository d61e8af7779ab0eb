#!/bin/sh
# The ops bench on both lavapipes the project targets, in one run: Debian 12's Mesa (this
# machine) and Debian 13's Mesa (the GIMP chroot of scripts/gimp-chroot.sh), with the same
# bench-ops binary (it links only libc and libvulkan, so the Debian 12 build runs unchanged
# in the newer chroot; only the Vulkan driver differs). Prints GFLOP/s of each and the ratio.
# A benchmark, never a test. Needs root for the chroot (as the plug-in tests do).
#
# Usage: bench/run-ops-mesa.sh [BUILD_DIR] [-- bench-ops options]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
ops="$build/bench/bench-ops"
[ -x "$ops" ] || { echo "run-ops-mesa: build first (ninja -C $build bench/bench-ops)" >&2; exit 1; }

root=$("$here/../scripts/gimp-chroot.sh" path)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; rm -f "$root/tmp/unclip-bench-ops"' EXIT
cp "$ops" "$root/tmp/unclip-bench-ops"

echo "# Debian 12 Mesa" >&2
"$ops" "$@" | tee "$tmp/d12" | grep -E '^(DEVICE|SKIP)' >&2 || true
echo "# Debian 13 Mesa (chroot $root)" >&2
"$here/../scripts/gimp-chroot.sh" run /tmp/unclip-bench-ops "$@" | tee "$tmp/d13" |
    grep -E '^(DEVICE|SKIP)' >&2 || true

/usr/bin/env python3 - "$tmp/d12" "$tmp/d13" <<'PY'
import sys
def load(p):
    r, dev = {}, "?"
    for line in open(p):
        f = line.split()
        if f and f[0] == "DEVICE":
            dev = " ".join(f[1:])
        if len(f) >= 4 and f[0] == "RESULT":
            r[f[1]] = float(f[2])
    return r, dev
a, da = load(sys.argv[1])
b, db = load(sys.argv[2])
print("Debian 12: %s\nDebian 13: %s" % (da, db))
print("%-34s %12s %12s %8s" % ("op", "D12 GFLOP/s", "D13 GFLOP/s", "D13/D12"))
for k in a:
    if k in b:
        print("%-34s %12.2f %12.2f %8.2f" % (k, a[k], b[k], b[k] / a[k] if a[k] else 0))
PY
