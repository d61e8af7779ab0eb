#!/usr/bin/env bash
# Builds the libFuzzer targets (clang -fsanitize=fuzzer with ASan + UBSan) in a separate build
# folder and runs each for SECONDS (default 60), printing executions and seconds per target.
#
#   tests/fuzz/run-fuzz.sh [SECONDS] [TARGET...]     targets: see tests/fuzz/meson.build
#
# FUZZ_BUILD_DIR (default build-fuzz) is the build folder; FUZZ_JOBS=N runs N targets at a
# time (default 1; each target is one process). Each run starts from the committed corpus
# (tests/fuzz/corpus/<target>) plus what earlier runs in this build folder found
# (<build>/fuzz-work/<target>). A crash, sanitizer report, leak or timeout fails the script:
# the reproducer is copied to tests/fuzz/corpus/<target>/crash-<sha1> (commit it with the fix:
# the fuzz-replay-<target> test of `meson test` then replays it in every build).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
secs=${1:-60}
[ $# -gt 0 ] && shift
all=(safetensors config model-index tokenizer tokenizer-load)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
build=${FUZZ_BUILD_DIR:-$here/build-fuzz}
jobs=${FUZZ_JOBS:-1}

cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null; then
    echo "run-fuzz: $cc not found (Debian: apt-get install clang)" >&2
    exit 1
fi

t0=$(date +%s)
if [ ! -f "$build/build.ninja" ]; then
    # fuzzer-no-link instruments the engine for coverage feedback; only the fuzz-* executables
    # link libFuzzer itself. Warnings are the main build's business (werror off here).
    CC=$cc meson setup "$build" "$here" -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dwerror=false -Dc_args=-fsanitize=fuzzer-no-link \
        -Dplugin=disabled -Dtorch_tests=disabled >"$build.setup.log" 2>&1 || {
        cat "$build.setup.log" >&2; echo "run-fuzz: meson setup failed" >&2; exit 1; }
fi
exes=()
for t in "${targets[@]}"; do exes+=("tests/fuzz/fuzz-$t"); done
if ! ninja -C "$build" -j 2 "${exes[@]}" >"$build/fuzz-build.log" 2>&1; then
    tail -40 "$build/fuzz-build.log" >&2
    echo "run-fuzz: build failed" >&2
    exit 1
fi
echo "run-fuzz: built ${#targets[@]} targets in $(( $(date +%s) - t0 )) s ($build)"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export UNCLIP_GOLDENS=${UNCLIP_GOLDENS:-$here/../shared/goldens}

run_one() {
    local t=$1 work="$build/fuzz-work/$t" art="$build/fuzz-artifacts/$t/" log="$build/fuzz-$t.log"
    mkdir -p "$work" "$art"
    local start=$(date +%s.%N)
    "$build/tests/fuzz/fuzz-$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 \
        -print_final_stats=1 -artifact_prefix="$art" "$work" "$here/tests/fuzz/corpus/$t" \
        >"$log" 2>&1
    local rc=$?
    local end=$(date +%s.%N)
    local execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    local cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    local nc=$(ls "$work" | wc -l)
    local crashes=0
    for a in "$art"*; do
        [ -f "$a" ] || continue
        crashes=$((crashes + 1))
        local sha=$(sha1sum "$a" | cut -c1-16)
        cp "$a" "$here/tests/fuzz/corpus/$t/crash-$sha"
        echo "run-fuzz: $t: reproducer saved as tests/fuzz/corpus/$t/crash-$sha" \
             "(from $(basename "$a"))"
        rm -f "$a"
    done
    printf 'fuzz %-15s %9s executions in %6.1f s (%s exec/s), coverage %s, corpus +%s, exit %s, %s crashes\n' \
        "$t" "${execs:-?}" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" \
        "$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)" "${cov:-?}" "$nc" \
        "$rc" "$crashes"
    if [ $rc -ne 0 ] || [ $crashes -ne 0 ]; then
        grep -E 'ERROR|SUMMARY|broken promise|runtime error|==[0-9]+==' "$log" | head -20
        echo "run-fuzz: $t FAILED (log: $log)"
        return 1
    fi
    return 0
}

failed=0
pids=()
names=()
for t in "${targets[@]}"; do
    run_one "$t" >"$build/fuzz-$t.summary" 2>&1 &
    pids+=($!)
    names+=("$t")
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed=$((failed + 1))
    cat "$build/fuzz-${names[$i]}.summary"
done
echo "run-fuzz: ${#targets[@]} targets, $secs s each, $failed failed," \
     "$(( $(date +%s) - t0 )) s in all"
[ $failed -eq 0 ]
