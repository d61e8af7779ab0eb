#!/usr/bin/python3
"""Karlo-size benchmark helper (a benchmark, not a test): random weights with Karlo's real
sizes, and torch on the CPU running one denoising step of each stage with the same weights.

  karlo_model.py make DIR [--stages prior,decoder,super_res]
      Writes DIR/<component>/config.json (Karlo v1 alpha's configs, unclip.md 1.2-1.6, in
      the goldens' diffusers 0.27 layout) and diffusion_pytorch_model.safetensors with random
      weights (torch's default init of our unclip_torch modules, stored as F16: Karlo's
      sizes, generated locally, never committed), and DIR/inputs_<stage>.safetensors with
      the step's inputs (seeded). Components: prior, decoder, super_res_first.
  karlo_model.py torch DIR STAGE [--threads 2] [--repeat N]
      Loads the component with those weights (fp16 values in fp32 modules), runs one step's
      forward on the CPU N times and prints
        TORCH <stage> seconds=<best> cpu_s=<its CPU seconds> first=<first> peak_rss=<bytes>
              params=<n>
      and writes DIR/torch_out_<stage>.safetensors (the output, for the C bench to compare).

Steps (as the pipeline runs them): prior with classifier-free guidance = batch 2 (uncond,
cond) with 77 text tokens; decoder 64x64, batch 2, 4 + 77 context tokens of width 1536 and a
1280-wide class embedding; super-res 256x256, batch 1, 6 input channels (noise + upscaled
image). Karlo has no 1024 stage (unclip.md 5).
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import unclip_torch as ut  # noqa: E402

# Karlo v1 alpha (unclip.md 1.2, 1.5, 1.6); absent fields take the library defaults exactly
# as for the hub configs, which predate them.
PRIOR = {
    "_class_name": "PriorTransformer",
    "num_attention_heads": 32, "attention_head_dim": 64, "num_layers": 20,
    "embedding_dim": 768, "num_embeddings": 77, "additional_embeddings": 4, "dropout": 0.0,
}
DECODER = {
    "_class_name": "UNet2DConditionModel",
    "sample_size": 64, "in_channels": 3, "out_channels": 6,
    "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
                         "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
    "up_block_types": ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                       "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
    "block_out_channels": [320, 640, 960, 1280], "layers_per_block": 3,
    "attention_head_dim": 64, "cross_attention_dim": 1536, "class_embed_type": "identity",
    "resnet_time_scale_shift": "scale_shift", "act_fn": "silu", "norm_num_groups": 32,
    "norm_eps": 1e-05, "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "center_input_sample": False, "only_cross_attention": False,
    "dual_cross_attention": False, "use_linear_projection": False, "upcast_attention": False,
    "num_class_embeds": None,
}
SUPER_RES = {
    "_class_name": "UNet2DModel",
    "sample_size": 256, "in_channels": 6, "out_channels": 3,
    "down_block_types": ["ResnetDownsampleBlock2D"] * 4,
    "up_block_types": ["ResnetUpsampleBlock2D"] * 4,
    "add_attention": False, "block_out_channels": [320, 640, 960, 1280], "layers_per_block": 3,
    "attention_head_dim": 8, "resnet_time_scale_shift": "default", "act_fn": "silu",
    "norm_num_groups": 32, "norm_eps": 1e-05, "time_embedding_type": "positional",
    "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "center_input_sample": False,
}

STAGES = {  # stage -> (component folder, config, class)
    "prior": ("prior", PRIOR, ut.PriorTransformer),
    "decoder": ("decoder", DECODER, ut.UNet2DConditionModel),
    "super_res": ("super_res_first", SUPER_RES, ut.UNet2DModel),
}
WEIGHTS = "diffusion_pytorch_model.safetensors"


def step_inputs(stage, seed=0):
    """The step's inputs as float32 numpy arrays (names shared with bench-karlo.c)."""
    g = np.random.default_rng(seed)
    f = lambda *s: g.standard_normal(s, dtype=np.float32)  # noqa: E731
    if stage == "prior":
        mask = np.zeros((2, 77), np.float32)
        mask[0, :2] = 1   # "" : bos, eos
        mask[1, :12] = 1  # a prompt of 10 tokens
        return {"x": f(2, 768), "proj": f(2, 768), "enc": f(2, 77, 768), "mask": mask,
                "t": np.array([999.0], np.float32)}
    if stage == "decoder":
        mask = np.ones((2, 81), np.float32)
        mask[0, 4 + 2:] = 0
        mask[1, 4 + 12:] = 0
        return {"sample": f(2, 3, 64, 64), "enc": f(2, 81, 1536), "class_labels": f(2, 1280),
                "mask": mask, "t": np.array([999.0], np.float32)}
    return {"sample": f(1, 6, 256, 256), "t": np.array([999.0], np.float32)}


def make(out, stages):
    os.makedirs(out, exist_ok=True)
    index = {"_class_name": "UnCLIPPipeline", "_diffusers_version": "0.27.2"}
    for stage in stages:
        comp, cfg, cls = STAGES[stage]
        t0 = time.time()
        torch.manual_seed(1234)
        m = cls(dict(cfg))
        if stage == "prior":
            # diffusers zero-initialises these; random values keep the attention non-trivial
            m.init_training_params(0.02)
        sd = {k: v.detach().to(torch.float16) for k, v in m.state_dict().items()}
        n = sum(v.numel() for v in sd.values())
        del m
        d = os.path.join(out, comp)
        os.makedirs(d, exist_ok=True)
        full = dict(cfg)
        full["_diffusers_version"] = "0.27.2"
        with open(os.path.join(d, "config.json"), "w") as fh:
            json.dump(full, fh, indent=2, sort_keys=True)
        ut.st.write(os.path.join(d, WEIGHTS), sd)
        del sd
        ut.st.write(os.path.join(out, "inputs_%s.safetensors" % stage), step_inputs(stage))
        index[comp] = ["diffusers", cfg["_class_name"]]
        print("MADE %s %s params=%d seconds=%.1f" % (stage, comp, n, time.time() - t0),
              flush=True)
    with open(os.path.join(out, "model_index.json"), "w") as fh:
        json.dump(index, fh, indent=2)


def run_torch(out, stage, threads, repeat):
    torch.set_num_threads(threads)
    comp, cfg, cls = STAGES[stage]
    d = os.path.join(out, comp)
    with open(os.path.join(d, "config.json")) as fh:
        m = cls(json.load(fh))
    ut.load_state_dict(m, ut.st.read_torch(os.path.join(d, WEIGHTS)), d)
    m.eval()
    n = sum(p.numel() for p in m.parameters())
    x = {k: torch.from_numpy(v) for k, v in
         ut.st.read(os.path.join(out, "inputs_%s.safetensors" % stage)).items()}
    t = int(x["t"][0])
    times, cpus = [], []
    with torch.no_grad():
        for _ in range(repeat):
            t0 = time.perf_counter()
            c0 = time.process_time()
            if stage == "prior":
                y = m(x["x"], t, x["proj"], x["enc"], x["mask"] > 0.5)
            elif stage == "decoder":
                y = m(x["sample"], t, x["enc"], class_labels=x["class_labels"],
                      attention_mask=x["mask"])
            else:
                y = m(x["sample"], t)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    ut.st.write(os.path.join(out, "torch_out_%s.safetensors" % stage),
                {"out": y.float().contiguous()})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("TORCH %s seconds=%.3f cpu_s=%.3f first=%.3f peak_rss=%d params=%d threads=%d" %
          (stage, min(times), cpus[times.index(min(times))], times[0], rss, n, threads),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("make")
    a.add_argument("dir")
    a.add_argument("--stages", default="prior,decoder,super_res")
    b = sub.add_parser("torch")
    b.add_argument("dir")
    b.add_argument("stage", choices=sorted(STAGES))
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.dir, [s for s in args.stages.split(",") if s])
    else:
        run_torch(args.dir, args.stage, args.threads, args.repeat)


if __name__ == "__main__":
    main()
