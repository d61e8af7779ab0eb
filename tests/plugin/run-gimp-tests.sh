#!/usr/bin/env bash
# The plug-in inside a real GIMP 3, headless, in the Debian 13 chroot of scripts/gimp-chroot.sh
# (Debian 12 has no GIMP 3).
#
#   tests/plugin/run-gimp-tests.sh                 build, install, run every procedure, check
#   tests/plugin/run-gimp-tests.sh --screenshots   the same, and copy the dialogs' pictures
#                                                  to docs/plugin-*.png
#   tests/plugin/run-gimp-tests.sh --build-only    build and install only
#
# UNCLIP_TEST_ONLY=NAME runs only the test functions whose name contains NAME;
# UNCLIP_TEST_KEEP=1 keeps the scratch folder (logs, CLI pictures, dialog pictures).
#
# Exit 77 (meson's "skipped") when not root or when the chroot cannot be made. The checkout is
# bind-mounted read-only at /src in the chroot, ../shared at /shared; the build directory
# (/var/tmp/unclip-plugin-build) and GIMP's configuration folder (/var/tmp/unclip-gimp) stay in
# the chroot between runs, so a second run only rebuilds what changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
shared=${UNCLIP_SHARED:-$src/../shared}
mode=test
shots=0
for arg in "$@"; do
    case "$arg" in
    --screenshots) shots=1 ;;
    --build-only) mode=build ;;
    *) echo "usage: $0 [--screenshots | --build-only]" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: the plug-in tests need root (debootstrap, chroot, mount)"
    exit 77
fi
if [ ! -d "$shared/goldens/models/tiny-karlo" ]; then
    echo "SKIP: no goldens at $shared (set UNCLIP_SHARED)"
    exit 77
fi
if ! root=$("$src/scripts/gimp-chroot.sh" path) || [ ! -x "$root/usr/bin/gimp-console-3.0" ]; then
    echo "SKIP: the GIMP 3 chroot could not be made"
    exit 77
fi

# One run at a time: the mounts and the build directory are shared.
exec 9>"$root.plugin-test.lock"
flock 9

out=$(mktemp -d /tmp/unclip-plugin-test.XXXXXX)
chmod 755 "$out"
mounted=()
cleanup() {
    local m
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        m=${mounted[$i]}
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    if [ -n "${UNCLIP_TEST_KEEP:-}" ]; then echo "kept: $out"; else rm -rf "$out"; fi
}
trap cleanup EXIT

bind() {  # bind SOURCE TARGET ro|rw
    mkdir -p "$2"
    if mountpoint -q "$2"; then umount "$2" || umount -l "$2"; fi
    mount --bind "$1" "$2"
    mounted+=("$2")
    if [ "$3" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
bind "$src" "$root/src" ro
bind "$(cd "$shared" && pwd)" "$root/shared" ro
bind "$out" "$root/out" rw

status=0
"$src/scripts/gimp-chroot.sh" run env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    UNCLIP_TEST_ONLY="${UNCLIP_TEST_ONLY:-}" \
    bash /src/tests/plugin/in-chroot.sh "$mode" || status=$?

if [ $shots = 1 ]; then
    mkdir -p "$src/docs"
    for f in "$out"/shots/*.png; do
        [ -e "$f" ] || continue
        case "$f" in *-preview.png) continue ;; esac  # the raw preview: for the test only
        cp "$f" "$src/docs/"
        echo "saved docs/$(basename "$f")"
    done
fi
exit $status
