#!/usr/bin/env bash
# Runs inside the GIMP 3 chroot (started by run-gimp-tests.sh): the checkout is at /src
# (read-only), ../shared at /shared, results go to /out.
#
#   in-chroot.sh build | test
set -euo pipefail
mode=${1:-test}

build=/var/tmp/unclip-plugin-build
stage=/var/tmp/unclip-plugin-stage
gimpdir=/var/tmp/unclip-gimp
export HOME=$gimpdir/home
export GIMP3_DIRECTORY=$gimpdir/config
export XDG_CACHE_HOME=$gimpdir/cache
export XDG_RUNTIME_DIR=$gimpdir/run
export LANG=C.UTF-8 LC_ALL=C.UTF-8
mkdir -p "$HOME" "$GIMP3_DIRECTORY" "$XDG_CACHE_HOME" "$XDG_RUNTIME_DIR" /out
chmod 700 "$XDG_RUNTIME_DIR"

step() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }

# ---- build: the plug-in and the CLI, with the prefix GIMP itself uses ----
step "build"
if [ ! -f "$build/build.ninja" ]; then
    # The project's own -Werror: the engine builds warning-free with Debian 13's gcc 14 too.
    meson setup "$build" /src --prefix=/usr -Dplugin=enabled -Dshared_dir=/shared \
        -Dtorch_tests=disabled >"$build.setup.log" 2>&1 || { cat "$build.setup.log"; exit 1; }
else
    # The source may have moved on (new files, options): let meson notice. -Dwerror=true
    # undoes the -Dwerror=false of build folders made by older versions of this script.
    meson setup --reconfigure "$build" /src -Dwerror=true >"$build.setup.log" 2>&1 ||
        { cat "$build.setup.log"; exit 1; }
fi
ninja -C "$build" -j2 plugin/unclip gimp-unclip-gmo
# The CLI makes the reference pictures; without it those checks fail, the others still run.
cli=$build/cli/unclip
if ! ninja -C "$build" -j2 cli/unclip >"$build.cli.log" 2>&1; then
    tail -20 "$build.cli.log"
    echo "WARNING: the CLI did not build: pixel comparisons will fail"
    cli=/bin/false
fi

# ---- meson install into a staging folder: the plug-in must land where GIMP looks ----
step "install"
rm -rf "$stage"
meson install -C "$build" --no-rebuild --tags plugin,i18n --destdir "$stage" \
    >"$stage.log" 2>&1 ||
    { cat "$stage.log"; exit 1; }
plugdir=$(pkg-config --variable=gimplibdir gimp-3.0)/plug-ins/unclip
if [ ! -x "$stage$plugdir/unclip" ]; then
    echo "FAIL: meson install did not put the plug-in at $plugdir/unclip"
    find "$stage" -type f | head -20
    exit 1
fi
echo "installed: $plugdir/unclip"
for lang in de zh_CN; do
    mo=$stage$plugdir/locale/$lang/LC_MESSAGES/gimp-unclip.mo
    [ -f "$mo" ] || { echo "FAIL: no $mo"; exit 1; }
done

# GIMP's user folder gets a copy of the installed plug-in folder (a fresh config each time
# would cost GIMP's first-start work; only the plug-in is replaced).
rm -rf "$GIMP3_DIRECTORY/plug-ins/unclip"
mkdir -p "$GIMP3_DIRECTORY/plug-ins"
cp -a "$stage$plugdir" "$GIMP3_DIRECTORY/plug-ins/unclip"

[ "$mode" = build ] && exit 0

export UNCLIP_TEST_CLI=$cli
export UNCLIP_TEST_OUT=/out
export UNCLIP_TEST_MODELS=/shared/goldens/models

gimp_batch() {  # gimp_batch SCRIPT EXE [ARGS...]
    local script=$1 exe=$2
    shift 2
    "$exe" "$@" -d -f --batch-interpreter=python-fu-eval -b - --quit <"$script" \
        >"/out/$(basename "$script").log" 2>&1
}

report() {  # report SCRIPT EXIT-CODE: the checks, and the log's tail when something failed
    local log=/out/$(basename "$1").log
    grep -E '^(ok|FAIL|INFO|#)' "$log" || true
    # GIMP's own assertions count as failures (the plug-in made GIMP's core unhappy).
    if grep -q 'Gimp-Core-CRITICAL' "$log"; then
        echo "FAIL GIMP's core reported:"; grep 'Gimp-Core-CRITICAL' "$log"
        set -- "$1" 1
    fi
    if [ "$2" != 0 ] || ! grep -q '^ALL-DONE' "$log"; then
        echo "---- $(basename "$1"): GIMP's log (exit $2) ----"
        grep -v -E '^(ok|INFO) ' "$log" | tail -60
        return 1
    fi
}

python3 /src/tests/plugin/make-fixtures.py /out/fixtures >/dev/null
failed=0

step "procedures, non-interactive, in gimp-console"
rc=0
gimp_batch /src/tests/plugin/test-procedures.py gimp-console-3.0 -i || rc=$?
report /src/tests/plugin/test-procedures.py $rc || failed=1

# The user interface needs an X server: Xvfb. The dialogs save pictures of themselves into
# /out/shots (run-gimp-tests.sh --screenshots copies them to docs/).
step "undo and dialogs, in gimp-3.0 under Xvfb"
mkdir -p /out/shots
export UNCLIP_UI_SCREENSHOT_DIR=/out/shots UNCLIP_UI_SCREENSHOT_GENERATE=1
rc=0
xvfb-run -a -s "-screen 0 1280x1024x24" \
    bash -c "$(declare -f gimp_batch); gimp_batch /src/tests/plugin/test-gui.py gimp-3.0" ||
    rc=$?
report /src/tests/plugin/test-gui.py $rc || failed=1

step "done"
exit $failed
