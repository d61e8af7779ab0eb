#!/usr/bin/env bash
# Makes (or reuses) a Debian 13 chroot with GIMP 3 for the plug-in tests, because Debian 12
# has no GIMP 3. Cached under $UNCLIP_CHROOT_CACHE (default /var/cache/gimp-unclip), keyed by
# the hash of scripts/packages-gimp-chroot.txt: a kept chroot is reused (seconds), else a
# cached tar.zst is unpacked (about 20 s), else debootstrap builds it (about 7 minutes).
#
#   scripts/gimp-chroot.sh path          print the chroot's path, making it when needed
#   scripts/gimp-chroot.sh run CMD...    run CMD inside it (with /proc, /sys, /dev mounted)
#
# Needs root (debootstrap, chroot, mount).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${UNCLIP_CHROOT_CACHE:-/var/cache/gimp-unclip}
list="$here/scripts/packages-gimp-chroot.txt"
key=$(grep -v '^#' "$list" | sort | sha256sum | cut -c1-16)
root="$cache/trixie-$key"
tarball="$cache/trixie-$key.tar.zst"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

make_chroot() {
    as_root mkdir -p "$cache"
    if [ -f "$root/.complete" ]; then return; fi
    as_root rm -rf "$root"
    if [ -f "$tarball" ]; then
        as_root mkdir -p "$root"
        as_root tar --zstd -xf "$tarball" -C "$root"
        return
    fi
    command -v debootstrap >/dev/null ||
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
    local tmp="$root.tmp"
    as_root rm -rf "$tmp"
    as_root debootstrap --variant=minbase trixie "$tmp" http://deb.debian.org/debian
    as_root cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    mount_all "$tmp"
    as_root chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $(grep -v '^#' "$list")
    as_root chroot "$tmp" apt-get clean
    umount_all "$tmp"
    as_root touch "$tmp/.complete"
    as_root mv "$tmp" "$root"
    # A compressed copy survives `rm -rf` of the kept tree and is quick to restore.
    as_root tar --zstd -cf "$tarball.tmp" -C "$root" . && as_root mv "$tarball.tmp" "$tarball"
}

mount_all() {
    local r=$1
    for m in proc sys dev dev/pts; do
        mountpoint -q "$r/$m" || as_root mount --bind "/$m" "$r/$m"
    done
}

umount_all() {
    local r=$1
    for m in dev/pts dev sys proc; do
        mountpoint -q "$r/$m" && as_root umount -l "$r/$m" || true
    done
}

case "${1:-path}" in
path)
    make_chroot; echo "$root" ;;
run)
    shift; make_chroot; mount_all "$root"
    trap 'umount_all "$root"' EXIT
    as_root chroot "$root" "$@" ;;
*)
    echo "usage: scripts/gimp-chroot.sh path | run CMD..." >&2; exit 2 ;;
esac
