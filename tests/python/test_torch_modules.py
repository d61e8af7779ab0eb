#!/usr/bin/python3
"""Checks tools/unclip_torch against the golden fixtures (shared/goldens/README.md).

Usage: /usr/bin/python3 tests/python/test_torch_modules.py <goldens dir> [--all-e2e]

One line per check with the measured number, then a summary line; exit status 1 on any
failure. Rules (README section 8): module outputs relative L2 <= 1e-4, scheduler <= 1e-5,
integers exact, CLIP 8-bit intermediates within 1 level, generator outputs max |diff| <= 1e-5,
end-to-end images: mean |diff| <= 0.25 levels, <= 0.5 % of pixels more than 2 levels off,
PSNR >= 40 dB. By default three end-to-end runs are replayed (two of them keep every step);
--all-e2e replays all eleven.
"""

import json
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))

import unclip_torch as ut  # noqa: E402
from unclip_torch.png import read_png  # noqa: E402

MODULE_TOL = 1e-4
SCHED_TOL = 1e-5
RNG_TOL = 1e-5

DEFAULT_E2E = ["t2i_a_seed1_small", "var_img1_seed402_small", "t2i_b_batch2_seed304_small"]


class Checker:
    def __init__(self):
        self.n_pass = 0
        self.failures = []

    def report(self, name, ok, detail):
        print("%-4s %-60s %s" % ("ok" if ok else "FAIL", name, detail), flush=True)
        if ok:
            self.n_pass += 1
        else:
            self.failures.append(name)

    def rel(self, name, got, want, tol=MODULE_TOL):
        got = torch.as_tensor(got).double()
        want = torch.as_tensor(want).double()
        if tuple(got.shape) != tuple(want.shape):
            self.report(name, False, "shape %s != %s" % (tuple(got.shape), tuple(want.shape)))
            return
        den = float(want.norm())
        r = float((got - want).norm()) / den if den > 0 else float((got - want).norm())
        self.report(name, r <= tol and math.isfinite(r), "rel_l2 %.3e (tol %.0e)" % (r, tol))

    def exact(self, name, got, want):
        got = np.asarray(torch.as_tensor(got)).astype(np.int64)
        want = np.asarray(torch.as_tensor(want)).astype(np.int64)
        ok = got.shape == want.shape and bool((got == want).all())
        n = int((got != want).sum()) if got.shape == want.shape else -1
        self.report(name, ok, "mismatches %d of %d" % (n, want.size))

    def maxabs(self, name, got, want, tol):
        got = torch.as_tensor(got).double()
        want = torch.as_tensor(want).double()
        if tuple(got.shape) != tuple(want.shape):
            self.report(name, False, "shape %s != %s" % (tuple(got.shape), tuple(want.shape)))
            return
        d = float((got - want).abs().max()) if want.numel() else 0.0
        self.report(name, d <= tol, "max_abs %.3g (tol %g)" % (d, tol))

    def image(self, name, got_u8, want_u8):
        g = got_u8.astype(np.float64)
        w = want_u8.astype(np.float64)
        if g.shape != w.shape:
            self.report(name, False, "shape %s != %s" % (g.shape, w.shape))
            return
        d = np.abs(g - w)
        mean = d.mean()
        frac = (d > 2).mean()
        mse = (((g - w) / 255.0) ** 2).mean()
        psnr = 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")
        ok = mean <= 0.25 and frac <= 0.005 and psnr >= 40.0
        self.report(name, ok, "mean %.4f levels, >2: %.4f%%, PSNR %.1f dB, max %d"
                    % (mean, 100 * frac, psnr, int(d.max())))


def check_tokenizer(c, gdir, mdir):
    tok = ut.CLIPTokenizer.from_dir(os.path.join(mdir, "tiny-karlo", "tokenizer"))
    g = ut.st.read(os.path.join(gdir, "tokenizer.safetensors"))
    with open(os.path.join(gdir, "tokenizer_prompts.json"), encoding="utf-8") as f:
        prompts = json.load(f)
    ids, mask = tok([p["text"] for p in prompts])
    c.exact("tokenizer input_ids (60 prompts)", ids, g["input_ids"])
    c.exact("tokenizer attention_mask (60 prompts)", mask, g["attention_mask"])
    bad = [p["name"] for p in prompts
           if [tok.bos_id] + tok.encode_text(p["text"]) + [tok.eos_id] != p["untruncated_ids"]]
    c.report("tokenizer untruncated ids (60 prompts)", not bad, "mismatching: %s" % (bad,))
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        ut.save_component(tok, None, os.path.join(tmp, "tokenizer"))
        fe = ut.load_component(os.path.join(mdir, "tiny-karlo-variations"), "feature_extractor")
        ut.save_component(fe, None, os.path.join(tmp, "feature_extractor"))
        tok2 = ut.load_component(tmp, "tokenizer")
        fe2 = ut.load_component(tmp, "feature_extractor")
        ids2, mask2 = tok2([p["text"] for p in prompts])
        same = (len(tok2.encoder) == len(tok.encoder) and tok2.bpe_ranks == tok.bpe_ranks
                and fe2.config == fe.config)
        c.exact("tokenizer save/load round trip ids", ids2, g["input_ids"])
        c.report("tokenizer + feature_extractor save/load round trip tables", same,
                 "vocab %d, merges %d" % (len(tok2.encoder), len(tok2.bpe_ranks)))


def check_text_encoder(c, gdir, mdir):
    te = ut.load_component(os.path.join(mdir, "tiny-karlo"), "text_encoder")
    g = ut.st.read_torch(os.path.join(gdir, "text_encoder.safetensors"))
    for k in range(6):
        o = te(g["p%d_input_ids" % k])
        c.rel("text_encoder p%d text_embeds" % k, o.text_embeds, g["p%d_text_embeds" % k])
        c.rel("text_encoder p%d last_hidden_state" % k, o.last_hidden_state,
              g["p%d_last_hidden_state" % k])


def check_vision(c, gdir, mdir, manifest):
    vdir = os.path.join(mdir, "tiny-karlo-variations")
    ve = ut.load_component(vdir, "image_encoder")
    fe = ut.load_component(vdir, "feature_extractor")
    g = ut.st.read(os.path.join(gdir, "vision_encoder.safetensors"))
    for k, name in enumerate(manifest["test_images"]):
        png = read_png(os.path.join(gdir, "images", name + ".png"))
        src = g["i%d_source_rgb_u8" % k]
        c.exact("vision i%d png decode == source_rgb_u8" % k, png[:, :, :3], src)
        s = fe.steps(png)
        for step in ("resized_u8_chw", "cropped_u8_chw"):
            c.maxabs("vision i%d %s" % (k, step), s[step], g["i%d_%s" % (k, step)], 1)
        c.rel("vision i%d pixel_values" % k, s["pixel_values"], g["i%d_pixel_values" % k])
        o = ve(torch.from_numpy(g["i%d_pixel_values" % k]))
        c.rel("vision i%d image_embeds" % k, o.image_embeds, g["i%d_image_embeds" % k])
        c.rel("vision i%d last_hidden_state" % k, o.last_hidden_state,
              g["i%d_last_hidden_state" % k])
        o2 = ve(fe(png))
        c.rel("vision i%d image_embeds from png" % k, o2.image_embeds, g["i%d_image_embeds" % k])


def check_prior(c, gdir, mdir):
    pr = ut.load_component(os.path.join(mdir, "tiny-karlo"), "prior")
    g = ut.st.read_torch(os.path.join(gdir, "prior.safetensors"))
    for i in range(3):
        o = pr(g["hidden_states"], g["t%d_timestep" % i], g["proj_embedding"],
               g["encoder_hidden_states"], g["attention_mask"])
        c.rel("prior t=%d predicted_image_embedding" % int(g["t%d_timestep" % i]), o,
              g["t%d_predicted_image_embedding" % i])
    c.rel("prior post_process_latents", pr.post_process_latents(g["post_process_in"]),
          g["post_process_out"])


def check_text_proj(c, gdir, mdir):
    tp = ut.load_component(os.path.join(mdir, "tiny-karlo"), "text_proj")
    g = ut.st.read_torch(os.path.join(gdir, "text_proj.safetensors"))
    for p, cfg in (("cfg", True), ("nocfg", False)):
        e, a = tp(g[p + "_image_embeddings"], g[p + "_prompt_embeds"],
                  g[p + "_text_encoder_hidden_states"], cfg)
        c.rel("text_proj %s encoder_hidden_states" % p, e, g[p + "_out_encoder_hidden_states"])
        c.rel("text_proj %s additive_clip_time_embeddings" % p, a,
              g[p + "_out_additive_clip_time_embeddings"])


def check_decoder(c, gdir, mdir):
    dec = ut.load_component(os.path.join(mdir, "tiny-karlo"), "decoder")
    g = ut.st.read_torch(os.path.join(gdir, "decoder_unet.safetensors"))
    for i in range(3):
        o = dec(g["sample"], g["t%d_timestep" % i], g["encoder_hidden_states"],
                class_labels=g["class_labels"], attention_mask=g["attention_mask"])
        c.rel("decoder_unet t=%d" % int(g["t%d_timestep" % i]), o, g["t%d_out" % i])


def check_super_res(c, gdir, mdir):
    g = ut.st.read_torch(os.path.join(gdir, "super_res_unets.safetensors"))
    c.rel("super_res image_upscaled", ut.upscale_bicubic_aa(g["image_small"], (128, 128)),
          g["image_upscaled"])
    for nm in ("first", "last"):
        net = ut.load_component(os.path.join(mdir, "tiny-karlo"), "super_res_" + nm)
        for i in range(2):
            t = g["%s_t%d_timestep" % (nm, i)]
            c.rel("super_res_%s t=%d" % (nm, int(t)), net(g["sample"], t),
                  g["%s_t%d_out" % (nm, i)])


def check_interpolate(c, gdir):
    g = ut.st.read_torch(os.path.join(gdir, "interpolate_bicubic_aa.safetensors"))
    for src, dst in (("in", "bicubic_antialias_out"), ("ramp_in", "ramp_bicubic_antialias_out")):
        c.rel("interpolate %s (F.interpolate)" % src, ut.upscale_bicubic_aa(g[src], (128, 128)),
              g[dst])
        c.rel("interpolate %s (weight matrices)" % src,
              ut.bicubic_aa_matrix(g[src], (128, 128)), g[dst])


def check_scheduler(c, gdir, mdir, manifest):
    g = ut.st.read_torch(os.path.join(gdir, "scheduler.safetensors"))
    s = ut.UnCLIPScheduler({})
    c.rel("scheduler betas", s.betas, g["betas"], SCHED_TOL)
    c.rel("scheduler alphas_cumprod", s.alphas_cumprod, g["alphas_cumprod"], SCHED_TOL)
    for n in (2, 3, 5, 7, 25, 50, 1000):
        c.exact("scheduler timesteps n=%d" % n, s.set_timesteps(n), g["timesteps_n%d" % n])
    cfgs = {}
    for name in ("prior", "decoder", "super_res"):
        path = os.path.join(mdir, "tiny-karlo", name + "_scheduler", "scheduler_config.json")
        cfgs[name] = ut.loader.read_json(path)
    for case in manifest["scheduler_cases"]:
        key = case["key"]
        sch = ut.UnCLIPScheduler(cfgs[case["scheduler"]])
        gen = torch.Generator("cpu").manual_seed(case["generator_seed"])
        prev, x0 = sch.step(g[key + "_model_output"], case["timestep"], g[key + "_sample"],
                            prev_timestep=case["prev_timestep"], generator=gen)
        label = "scheduler %s (t=%s prev=%s)" % (key, case["timestep"], case["prev_timestep"])
        c.rel(label + " prev_sample", prev, g[key + "_prev_sample"], SCHED_TOL)
        c.rel(label + " pred_original_sample", x0, g[key + "_pred_original_sample"], SCHED_TOL)


def check_rng(c, gdir, manifest):
    g = ut.st.read_torch(os.path.join(gdir, "rng.safetensors"))
    gens = {}
    for case in manifest["rng_cases"]:
        if "shape" not in case:
            continue
        seed = case["seed"]
        if seed not in gens:
            gens[seed] = torch.Generator("cpu").manual_seed(seed)
        x = torch.randn(case["shape"], generator=gens[seed])
        c.maxabs("rng %s" % case["key"], x, g[case["key"]], RNG_TOL)
    u = torch.rand(1000, generator=torch.Generator("cpu").manual_seed(0))
    c.maxabs("rng seed0_rand_uniform_1000", u, g["seed0_rand_uniform_1000"], RNG_TOL)


SMALL_CONFIGS = {
    "text_encoder": ("CLIPTextModelWithProjection", {
        "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "projection_dim": 16, "eos_token_id": 2}),
    "image_encoder": ("CLIPVisionModelWithProjection", {
        "hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 1,
        "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "projection_dim": 16}),
    "prior": ("PriorTransformer", {
        "num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 1,
        "embedding_dim": 16}),
    "text_proj": ("UnCLIPTextProjModel", {
        "clip_embeddings_dim": 16, "time_embed_dim": 128, "cross_attention_dim": 24}),
    "decoder": ("UNet2DConditionModel", {
        "sample_size": 16, "in_channels": 3, "out_channels": 6,
        "block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 16,
        "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
        "up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        "mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "cross_attention_dim": 24,
        "class_embed_type": "identity", "resnet_time_scale_shift": "scale_shift"}),
    "super_res_first": ("UNet2DModel", {
        "sample_size": 32, "in_channels": 6, "out_channels": 3, "block_out_channels": [32, 32],
        "layers_per_block": 1, "add_attention": False,
        "down_block_types": ["ResnetDownsampleBlock2D"] * 2,
        "up_block_types": ["ResnetUpsampleBlock2D"] * 2}),
}


def _small_forward(name, m, g):
    """A forward pass of each small component on seeded inputs, reduced to one loss."""
    b = 2
    if name == "text_encoder":
        ids = torch.randint(0, 49406, (b, 77), generator=g)
        ids[:, 0], ids[:, 9] = 49406, 49407
        o = m(ids)
        return o.text_embeds.square().mean() + o.last_hidden_state.square().mean(), o
    if name == "image_encoder":
        o = m(torch.randn(b, 3, 32, 32, generator=g))
        return o.image_embeds.square().mean() + o.last_hidden_state.square().mean(), o
    if name == "prior":
        mask = torch.ones(b, 77, dtype=torch.long)
        mask[:, 20:] = 0
        o = m(torch.randn(b, 16, generator=g), 500, torch.randn(b, 16, generator=g),
              torch.randn(b, 77, 16, generator=g), mask)
        return m.post_process_latents(o).square().mean(), o
    if name == "text_proj":
        e, a = m(torch.randn(1, 16, generator=g), torch.randn(b, 16, generator=g),
                 torch.randn(b, 77, 16, generator=g), True)
        return e.square().mean() + a.square().mean(), e
    if name == "decoder":
        mask = torch.ones(b, 81, dtype=torch.long)
        mask[:, 30:] = 0
        o = m(torch.randn(b, 3, 16, 16, generator=g), torch.tensor([999, 3]),
              torch.randn(b, 81, 24, generator=g), class_labels=torch.randn(b, 128, generator=g),
              attention_mask=mask)
        return o.square().mean(), o
    o = m(torch.randn(b, 6, 32, 32, generator=g), 250)
    return o.square().mean(), o


def check_small_models(c):
    """Builds small Karlo-architecture components from config dicts (what the trainer does),
    checks that every parameter gets a finite non-zero gradient, and that save_component +
    load_component round-trips weights, config and outputs exactly."""
    import tempfile
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        classes = {}
        for name, (cls_name, cfg) in SMALL_CONFIGS.items():
            m = getattr(ut, cls_name)(cfg)
            if name == "prior":
                m.init_training_params()
            with torch.enable_grad():
                loss, _ = _small_forward(name, m, torch.Generator().manual_seed(1))
                loss.backward()
            dead = [k for k, p in m.named_parameters()
                    if p.grad is None or not bool(torch.isfinite(p.grad).all())
                    or float(p.grad.abs().sum()) == 0.0]
            n = sum(p.numel() for p in m.parameters())
            c.report("small %s (%s, %d params) gradients" % (name, cls_name, n), not dead,
                     "params without finite non-zero grad: %s" % (dead[:5],))
            ut.save_component(m, None, os.path.join(tmp, name))
            classes[name] = cls_name
            m2 = ut.load_component(tmp, name)
            sd1, sd2 = m.state_dict(), m2.state_dict()
            same = set(sd1) == set(sd2) and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
            _, o1 = _small_forward(name, m.eval(), torch.Generator().manual_seed(2))
            _, o2 = _small_forward(name, m2, torch.Generator().manual_seed(2))
            o1 = o1[0] if isinstance(o1, tuple) else o1
            o2 = o2[0] if isinstance(o2, tuple) else o2
            c.report("small %s save/load round trip" % name, same and torch.equal(o1, o2),
                     "%d tensors, weights equal %s, outputs equal %s"
                     % (len(sd1), same, torch.equal(o1, o2)))
        ut.save_model_index(tmp, classes)
        with open(os.path.join(tmp, "model_index.json"), encoding="utf-8") as f:
            idx = json.load(f)
        c.report("small model_index.json", idx.get("decoder") == ["diffusers",
                 "UNet2DConditionModel"] and idx.get("text_encoder") == [
                 "transformers", "CLIPTextModelWithProjection"], str(sorted(idx)))
        files = sorted(os.listdir(os.path.join(tmp, "text_encoder")) +
                       os.listdir(os.path.join(tmp, "decoder")))
        c.report("small weight file names", files == [
            "config.json", "config.json", "diffusion_pytorch_model.safetensors",
            "model.safetensors"], str(files))


BEFORE_DECODER_LOOP = (
    "text_encoder_call0_text_embeds", "text_encoder_call0_last_hidden_state",
    "text_encoder_call1_text_embeds", "text_encoder_call1_last_hidden_state",
    "prior_proj_embedding", "prior_encoder_hidden_states", "image_embeddings",
    "image_encoder_pixel_values", "image_encoder_image_embeds", "text_proj_in_prompt_embeds",
    "text_proj_in_text_encoder_hidden_states", "decoder_encoder_hidden_states",
    "decoder_class_labels")
INTEGERS = ("text_encoder_call0_input_ids", "text_encoder_call1_input_ids",
            "prior_attention_mask", "decoder_attention_mask")
LATENTS = ("prior_latents_init", "decoder_latents_init", "super_res_latents_init")


def run_e2e(c, run, gdir, mdir, manifest, pipes, vision):
    info = manifest["e2e"][run]
    call = info["call"]
    g = ut.st.read_torch(os.path.join(gdir, "e2e_%s.safetensors" % run))
    gen = torch.Generator("cpu").manual_seed(info["spec"]["kwargs"]["seed"])
    trace = {}
    steps = {k: call[k] for k in ("decoder_num_inference_steps",
                                  "super_res_num_inference_steps") if k in call}
    t0 = time.time()
    if info["pipeline"] == "UnCLIPPipeline":
        if "t2i" not in pipes:
            pipes["t2i"] = ut.UnCLIPPipeline.from_pretrained(os.path.join(mdir, "tiny-karlo"))
        if "prior_num_inference_steps" in call:
            steps["prior_num_inference_steps"] = call["prior_num_inference_steps"]
        u8 = pipes["t2i"](call["prompt"], generator=gen, output_type="u8", trace=trace,
                          num_images_per_prompt=call.get("num_images_per_prompt", 1), **steps)
    else:
        if "var" not in pipes:
            pipes["var"] = ut.UnCLIPImageVariationPipeline.from_pretrained(
                os.path.join(mdir, "tiny-karlo-variations"))
        if "image" in call:
            img = read_png(os.path.join(gdir, "images", call["image"] + ".png"))
            u8 = pipes["var"](image=img, generator=gen, output_type="u8", trace=trace, **steps)
        else:
            a = torch.from_numpy(vision["i0_image_embeds"])
            b = torch.from_numpy(vision["i2_image_embeds"])
            emb = ut.slerp(a, b, 0.5)
            u8 = pipes["var"](image_embeddings=emb, generator=gen, output_type="u8",
                              trace=trace, **steps)
    dt = time.time() - t0
    pre = "e2e %s " % run
    for k in INTEGERS:
        if k in g:
            c.exact(pre + k, trace.get(k, torch.zeros(0)), g[k])
    for k in BEFORE_DECODER_LOOP:
        if k in g:
            c.rel(pre + k, trace.get(k, torch.zeros(g[k].shape)), g[k])
    for k in LATENTS:
        if k in g:
            c.maxabs(pre + k, trace.get(k, torch.zeros(g[k].shape)), g[k], RNG_TOL)
    # every generator draw: purpose and shape from the manifest log, values where stored
    calls = info["randn_calls"]
    made = sorted(k for k in trace if k.startswith("noise_"))
    want = ["noise_%02d_%s" % (r["index"], r["purpose"]) for r in calls]
    bad = [k for k, r in zip(want, calls)
           if k not in trace or list(trace[k].shape) != list(r["shape"])
           or (k in g and float((trace[k] - g[k]).abs().max()) > RNG_TOL)]
    n_vals = len([k for k in want if k in g])
    c.report(pre + "generator draws (order, shape, values)", not bad and made == want,
             "%d draws made, %d logged, %d values compared, bad %s"
             % (len(made), len(want), n_vals, bad[:3]))
    # informational: everything from the decoder loop on
    info_keys = [k for k in g if (k.startswith(("decoder_step", "super_res_step", "prior_step"))
                                  and g[k].dtype == torch.float32)
                 or k in ("image_small", "image_upscaled")]
    worst = 0.0
    for k in info_keys:
        if k in trace:
            den = float(g[k].double().norm()) or 1.0
            worst = max(worst, float((trace[k].double() - g[k].double()).norm()) / den)
    if info_keys:
        print("info %-60s worst rel_l2 %.3e over %d step tensors (informational)"
              % (pre + "loop tensors", worst, len(info_keys)))
    c.image(pre + "images_u8 (%.1f s)" % dt, u8, g["images_u8"].numpy())


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__)
        return 2
    root = args[0]
    gdir = os.path.join(root, "goldens")
    mdir = os.path.join(root, "models")
    # One thread: the goldens were made that way, and meson runs other tests beside this
    # one on the same cores (two OpenMP threads then mostly wait for each other).
    torch.set_num_threads(1)
    with open(os.path.join(gdir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    c = Checker()
    t0 = time.time()
    times = []

    def timed(name, fn, *a):
        w0, c0 = time.time(), time.process_time()
        fn(*a)
        times.append("%s %.1f/%.1f" % (name, time.time() - w0, time.process_time() - c0))

    with torch.no_grad():
        timed("tokenizer", check_tokenizer, c, gdir, mdir)
        timed("text_encoder", check_text_encoder, c, gdir, mdir)
        timed("vision", check_vision, c, gdir, mdir, manifest)
        timed("prior", check_prior, c, gdir, mdir)
        timed("text_proj", check_text_proj, c, gdir, mdir)
        timed("decoder", check_decoder, c, gdir, mdir)
        timed("super_res", check_super_res, c, gdir, mdir)
        timed("interpolate", check_interpolate, c, gdir)
        timed("scheduler", check_scheduler, c, gdir, mdir, manifest)
        timed("rng", check_rng, c, gdir, manifest)
        timed("small_models", check_small_models, c)
        runs = list(manifest["e2e"]) if "--all-e2e" in sys.argv else DEFAULT_E2E
        vision = ut.st.read(os.path.join(gdir, "vision_encoder.safetensors"))
        pipes = {}
        for run in runs:
            timed(run, run_e2e, c, run, gdir, mdir, manifest, pipes, vision)
    print("times (wall/CPU s): " + ", ".join(times))
    print("SUMMARY: %d passed, %d failed (%.1f s)%s"
          % (c.n_pass, len(c.failures), time.time() - t0,
             "" if not c.failures else "; failed: " + ", ".join(c.failures)))
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
