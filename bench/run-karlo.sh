#!/bin/sh
# Karlo-size stages side by side, measured in one run (a benchmark, never a pass/fail test):
# one denoising step of the prior (CFG batch 2), the decoder (64x64, CFG batch 2) and the
# super-resolution UNet (256x256, batch 1) with random weights of Karlo's real sizes, on the
# Vulkan device (bench-karlo, F16 weights) and with torch on the CPU (bench/karlo_model.py,
# fp32, 2 threads, the same weights and inputs). Prints seconds per step (wall and CPU
# seconds: on a shared machine the CPU figure is the steadier one), the ratio torch/ours in
# CPU seconds, peak device and host memory per stage, and ours-vs-torch relative L2.
#
# Usage: bench/run-karlo.sh [BUILD_DIR] [-- options]
#   --model DIR     where the random model lives (made there when missing; ~5.2 GB of F16
#                   weights). Default: $UNCLIP_KARLO_BENCH_DIR or a temporary folder that is
#                   deleted at the end.
#   --stages LIST   comma-separated subset of prior,decoder,super_res (default all)
#   --no-torch      skip the torch column (and the comparison: an old torch output is removed)
#   --reuse-torch   no torch run, but compare with the torch output an earlier run left in
#                   the model folder (torch_out_<stage>.safetensors; same weights and inputs)
#   --fp32          F32 weights on the device (peak device memory about doubles)
# Needs about 6 GB of disk for the model and, per stage, up to ~6 GB of RAM for torch and
# ~3 GB for lavapipe. On 2 lavapipe cores the super-res step alone takes several minutes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
model=${UNCLIP_KARLO_BENCH_DIR:-}
stages=prior,decoder,super_res
torch=1
fp32=""
while [ $# -gt 0 ]; do
    case $1 in
    --model) model=$2; shift 2 ;;
    --stages) stages=$2; shift 2 ;;
    --no-torch) torch=0; shift ;;
    --reuse-torch) torch=2; shift ;;
    --fp32) fp32=--fp32; shift ;;
    *) echo "run-karlo: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ ! -x "$build/bench/bench-karlo" ]; then
    echo "run-karlo: build first (ninja -C $build bench/bench-karlo)" >&2
    exit 1
fi
py=/usr/bin/python3
if ! $py -c 'import torch' 2>/dev/null; then
    echo "run-karlo: $py with torch is needed to make the random model" >&2
    exit 1
fi
tmp=""
if [ -z "$model" ]; then
    tmp=$(mktemp -d)
    model=$tmp/model
fi
out=$(mktemp)
trap 'rm -f "$out"; [ -n "$tmp" ] && rm -rf "$tmp"' EXIT

for s in $(echo "$stages" | tr ',' ' '); do
    case $s in
    prior) comp=prior ;; decoder) comp=decoder ;; super_res) comp=super_res_first ;;
    *) echo "run-karlo: unknown stage $s" >&2; exit 2 ;;
    esac
    if [ ! -f "$model/$comp/diffusion_pytorch_model.safetensors" ] ||
       [ ! -f "$model/inputs_$s.safetensors" ]; then
        echo "# making random Karlo-size $comp in $model" >&2
        $py "$here/karlo_model.py" make "$model" --stages "$s" >&2
    fi
    if [ $torch = 1 ]; then
        echo "# torch (CPU): $s" >&2
        $py "$here/karlo_model.py" torch "$model" "$s" | tee -a "$out" >&2
    elif [ $torch = 0 ]; then
        rm -f "$model/torch_out_$s.safetensors"
    elif [ ! -f "$model/torch_out_$s.safetensors" ]; then
        echo "# no earlier torch output for $s: rel L2 not reported" >&2
    fi
    echo "# ours: $s" >&2
    "$build/bench/bench-karlo" $fp32 "$model" "$s" | tee -a "$out" >&2
done

$py - "$out" <<'EOF'
import sys
ours, torch, dev = {}, {}, ""
for line in open(sys.argv[1]):
    f = line.split()
    if not f:
        continue
    kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
    if f[0] == "RESULT" and f[1].startswith("karlo_"):
        ours[f[1][6:]] = kv
    elif f[0] == "TORCH":
        torch[f[1]] = kv
    elif f[0] == "DEVICE":
        dev = " ".join(f[1:])
gib = lambda b: "%.2f" % (int(b) / 2**30)
print("Karlo-size step, random weights (%s; torch fp32 on the CPU)" % dev)
print("%-10s %8s %8s %8s %8s %8s %8s %8s %9s %9s %9s" % (
    "stage", "ours s", "ours cpu", "torch s", "torch cpu", "t/o cpu", "weights", "dev peak",
    "host peak", "torch rss", "rel L2"))
for s, o in ours.items():
    t = torch.get(s, {})
    ts = float(t["seconds"]) if t else None
    tc = float(t["cpu_s"]) if t and "cpu_s" in t else None
    oc = float(o.get("step_cpu_s", "nan"))
    print("%-10s %8.2f %8.2f %8s %8s %8s %8s %8s %9s %9s %9s" % (
        s, float(o["step_s"]), oc, "%.2f" % ts if ts else "-", "%.2f" % tc if tc else "-",
        "%.3f" % (tc / oc) if tc and oc > 0 else "-",
        gib(o["weights"]), gib(o["device_peak"]), gib(o["host_peak"]),
        gib(t["peak_rss"]) if t else "-", o["rel_l2"]))
print("(memory in GiB; dev peak = device-memory blocks of the context during the step: "
      "weights (%s) + activations; host peak = VmHWM of the stage's process; on lavapipe "
      "device memory is host memory)" % ("F32" if any(o.get("dtype") == "f32" for o in ours.values()) else "F16"))
EOF
