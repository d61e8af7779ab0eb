#!/usr/bin/python3
"""The shapes of bench-ops.c in torch on the CPU, for the side-by-side table of run-ops.sh.

Run with Debian's /usr/bin/python3 (torch 1.13). torch computes in fp32 here (its CPU fp16
matmul/conv paths are not what a CPU user would run), with torch.set_num_threads(2).
Prints "RESULT torch_<name> <GFLOP/s> <ms per run> <runs>" lines, median of the runs.
Usage: torch_ops.py [--reps N] [--big] [--threads N]
"""
import argparse
import ctypes.util
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def measure(name, flops, fn, reps):
    fn()  # warm-up: allocations, oneDNN primitive creation
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print("RESULT torch_%s %.2f %.1f %d" % (name, flops / med * 1e-9, med * 1e3, reps), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--big", action="store_true", help="also conv 3x3 at 2x320x256x256")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    # Debian's torch uses the reference BLAS unless OpenBLAS is installed: say which.
    blas = ctypes.util.find_library("openblas")
    print("TORCH %s threads=%d openblas=%s" % (torch.__version__, torch.get_num_threads(),
                                              "yes" if blas else "NO (netlib: slow matmul)"),
          flush=True)

    with torch.no_grad():
        x = torch.randn(4096, 768)
        w = torch.randn(3072, 768) * 0.05
        measure("matmul_4096x768x3072_f32", 2.0 * 4096 * 768 * 3072, lambda: F.linear(x, w), a.reps)

        def conv_case(name, n, c, hw, co, reps):
            xi = torch.randn(n, c, hw, hw)
            wi = torch.randn(co, c, 3, 3) * 0.02
            bi = torch.randn(co) * 0.1
            flops = 2.0 * n * hw * hw * co * c * 9
            measure(name, flops, lambda: F.conv2d(xi, wi, bi, padding=1), reps)

        conv_case("conv3x3_2x320x64x64_f32", 2, 320, 64, 320, a.reps)
        conv_case("conv3x3_1x320x256x256_f32", 1, 320, 256, 320, min(a.reps, 2))
        if a.big:
            conv_case("conv3x3_2x320x256x256_f32", 2, 320, 256, 320, min(a.reps, 3))

        # Attention (torch 1.13 has no fused scaled_dot_product_attention: this materialises
        # the scores). bh = batch x heads, lq queries over lk keys, head dim 64.
        def attn_case(name, bh, lq, lk, reps, D=64):
            q = torch.randn(bh, lq, D)
            k, v = torch.randn(bh, lk, D), torch.randn(bh, lk, D)

            def attn():
                s = torch.bmm(q, k.transpose(1, 2)) * (1.0 / D ** 0.5)
                return torch.bmm(torch.softmax(s, dim=-1), v)

            measure(name, 4.0 * bh * lq * lk * D, attn, reps)

        attn_case("attention_4096x64", 1, 4096, 4096, a.reps)
        attn_case("attention_4096x64x5h", 5, 4096, 4096, min(a.reps, 3))
        attn_case("attention_1024qx1105k_2x10h", 20, 1024, 1105, a.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
