#!/bin/sh
# Tile sweep on both lavapipes (Debian 12's and Debian 13's, through run-ops-mesa.sh): for
# each TM,TN,LX,LY tile, the matmul (gemm) or the 3x3 stride-1 conv (conv) with that tile
# forced, F16 and F32 weights, in GFLOP/s per driver. A benchmark for choosing the rows of
# the tile tables in engine/ops/linear.c and conv.c, never a test. Needs root (the chroot).
#
# Usage: bench/sweep-tiles.sh BUILD_DIR gemm|conv [REPS] [TILE ...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: sweep-tiles.sh BUILD_DIR gemm|conv [REPS] [TILE ...]}
kind=${2:?gemm or conv}
reps=${3:-3}
[ $# -ge 3 ] && shift 3 || shift $#
case $kind in
gemm) only=matmul_4096x768x3072; flag=--gemm-tiles
      [ $# -gt 0 ] || set -- 12,8,8,8 8,8,8,8 16,8,8,8 12,4,8,8 16,4,8,8 8,4,8,8 12,8,8,4 \
                             12,8,4,8 8,8,8,16 6,8,8,8 12,12,8,8 ;;
conv) only=conv3x3_2x320x64x64; flag=--conv-tiles
      [ $# -gt 0 ] || set -- 16,4,8,8 8,4,8,8 8,8,8,8 16,8,8,8 4,4,8,8 8,4,8,4 8,4,4,8 ;;
*) echo "sweep-tiles: kind is gemm or conv" >&2; exit 2 ;;
esac
printf '%-12s %s\n' "tile" "op: D12 / D13 GFLOP/s"
for t in "$@"; do
    out=$("$here/run-ops-mesa.sh" "$build" -- --only "$only" --reps "$reps" "$flag" "$t" 2>/dev/null)
    printf '%-12s' "$t"
    echo "$out" | awk 'NF == 4 && $1 ~ /^(matmul|conv)/ { printf "  %s %s / %s", $1, $2, $3 }'
    echo
done
