"""unCLIP pipelines exactly as diffusers v0.27.2 runs them (CPU, fp32, one torch generator).

    pipe = UnCLIPPipeline.from_pretrained("models/tiny-karlo")
    images = pipe("a frog", generator=torch.Generator("cpu").manual_seed(1),
                  prior_num_inference_steps=25, decoder_num_inference_steps=25,
                  super_res_num_inference_steps=7, prior_guidance_scale=4.0,
                  decoder_guidance_scale=8.0, num_images_per_prompt=1, output_type="np")
    vpipe = UnCLIPImageVariationPipeline.from_pretrained("models/tiny-karlo-variations")
    images = vpipe(image=rgb_u8 (H,W,3|4) or list of them, generator=..., ...)
    images = vpipe(image_embeddings=(B,E) tensor, ...)

output_type "np": float32 (B,H,W,3) in [0,1]; "u8": uint8 round-half-even(255 x);
"pt": the final latents (B,3,H,W) in [-1,1] before the [0,1] mapping.

`trace`: pass a dict to receive every intermediate under the golden file names
(text_encoder_call0_*, prior_step{i}_*, decoder_*, noise_{NN}_{purpose}, image_small, ...).
Draw order: prior latents, prior step noises (t > 0), decoder latents, decoder step noises,
super-res latents, super-res step noises; guidance never doubles a draw.
"""

import numpy as np
import torch

from .loader import load_component
from .resample import upscale_bicubic_aa


class _Ctx:
    def __init__(self, generator, trace):
        self.generator = generator
        self.trace = trace
        self.n_draws = 0

    def put(self, name, value):
        if self.trace is not None:
            self.trace[name] = value.detach().clone() if torch.is_tensor(value) else value

    def randn(self, shape, purpose):
        x = torch.randn(shape, generator=self.generator, dtype=torch.float32)
        self.put("noise_%02d_%s" % (self.n_draws, purpose), x)
        self.n_draws += 1
        return x


def _t(v):
    return torch.tensor(int(v), dtype=torch.int64)


def _loop(ctx, stage, scheduler, timesteps, latents, model_fn):
    """Runs one denoising loop; model_fn(latents, t, i) -> (raw_out or None, model_output)."""
    n = len(timesteps)
    for i, t in enumerate(timesteps):
        raw, out = model_fn(latents, t, i)
        if raw is not None:
            ctx.put("%s_step%d_model_raw_out" % (stage, i), raw)
        prev_t = None if i + 1 == n else timesteps[i + 1]
        noise = None
        if int(t) > 0:
            eps_shape = latents.shape
            noise = ctx.randn(eps_shape, "%s_step%d_variance_noise" % (stage, i))
        ctx.put("%s_step%d_t" % (stage, i), _t(t))
        ctx.put("%s_step%d_prev_t" % (stage, i), _t(-1 if prev_t is None else prev_t))
        ctx.put("%s_step%d_model_output" % (stage, i), out)
        latents, _ = scheduler.step(out, t, latents, prev_timestep=prev_t, noise=noise)
        ctx.put("%s_step%d_prev_sample" % (stage, i), latents)
    return latents


class _DecodeMixin:
    """Decoder + super-resolution stages shared by both pipelines."""

    def _encode_prompt(self, ctx, prompts, num_images_per_prompt, cfg):
        ids, mask = self.tokenizer(prompts)
        ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
        out = self.text_encoder(ids)
        ctx.put("text_encoder_call0_input_ids", ids)
        ctx.put("text_encoder_call0_text_embeds", out.text_embeds)
        ctx.put("text_encoder_call0_last_hidden_state", out.last_hidden_state)
        pe = out.text_embeds.repeat_interleave(num_images_per_prompt, 0)
        hs = out.last_hidden_state.repeat_interleave(num_images_per_prompt, 0)
        m = mask.bool().repeat_interleave(num_images_per_prompt, 0)
        if cfg:
            uids, umask = self.tokenizer([""] * len(prompts))
            uids, umask = torch.from_numpy(uids), torch.from_numpy(umask)
            u = self.text_encoder(uids)
            ctx.put("text_encoder_call1_input_ids", uids)
            ctx.put("text_encoder_call1_text_embeds", u.text_embeds)
            ctx.put("text_encoder_call1_last_hidden_state", u.last_hidden_state)
            upe = u.text_embeds.repeat(1, num_images_per_prompt).view(len(pe), -1)
            uhs = u.last_hidden_state.repeat(1, num_images_per_prompt, 1).view(
                len(pe), hs.shape[1], -1)
            um = umask.bool().repeat_interleave(num_images_per_prompt, 0)
            pe = torch.cat([upe, pe])
            hs = torch.cat([uhs, hs])
            m = torch.cat([um, m])
        return pe, hs, m

    def _decode(self, ctx, image_embeddings, prompt_embeds, text_hidden, text_mask, cfg,
                decoder_num_inference_steps, super_res_num_inference_steps,
                decoder_guidance_scale, decoder_latents, super_res_latents, output_type):
        b = image_embeddings.shape[0]
        ctx.put("text_proj_in_prompt_embeds", prompt_embeds)
        ctx.put("text_proj_in_text_encoder_hidden_states", text_hidden)
        ehs, add = self.text_proj(image_embeddings, prompt_embeds, text_hidden, cfg)
        ctx.put("decoder_encoder_hidden_states", ehs)
        ctx.put("decoder_class_labels", add)
        k = self.text_proj.clip_extra_context_tokens
        dmask = torch.cat([torch.ones(text_mask.shape[0], k, dtype=torch.bool), text_mask], 1)
        ctx.put("decoder_attention_mask", dmask.long())

        ts = self.decoder_scheduler.set_timesteps(decoder_num_inference_steps)
        c_in = self.decoder.config["in_channels"]
        s = self.decoder.config["sample_size"]
        if decoder_latents is None:
            decoder_latents = ctx.randn((b, c_in, s, s), "decoder_initial_latents")
        decoder_latents = decoder_latents * self.decoder_scheduler.init_noise_sigma
        ctx.put("decoder_latents_init", decoder_latents)

        def dec_fn(x, t, i):
            inp = torch.cat([x, x]) if cfg else x
            raw = self.decoder(inp, t, ehs, class_labels=add, attention_mask=dmask)
            if not cfg:
                return raw, raw
            u, c = raw.chunk(2)
            u_eps = u[:, : inp.shape[1]]
            c_eps, c_var = c[:, : inp.shape[1]], c[:, inp.shape[1]:]
            eps = u_eps + decoder_guidance_scale * (c_eps - u_eps)
            return raw, torch.cat([eps, c_var], dim=1)

        x = _loop(ctx, "decoder", self.decoder_scheduler, ts, decoder_latents, dec_fn)
        image_small = x.clamp(-1, 1)
        ctx.put("image_small", image_small)

        ts = self.super_res_scheduler.set_timesteps(super_res_num_inference_steps)
        ch = self.super_res_first.config["in_channels"] // 2
        r = self.super_res_first.config["sample_size"]
        if super_res_latents is None:
            super_res_latents = ctx.randn((b, ch, r, r), "super_res_initial_latents")
        super_res_latents = super_res_latents * self.super_res_scheduler.init_noise_sigma
        ctx.put("super_res_latents_init", super_res_latents)
        up = upscale_bicubic_aa(image_small, (r, r))
        ctx.put("image_upscaled", up)

        def sr_fn(x, t, i):
            last = i == len(ts) - 1
            ctx.put("super_res_step%d_unet" % i, torch.tensor(1 if last else 0))
            net = self.super_res_last if last else self.super_res_first
            return None, net(torch.cat([x, up], dim=1), t)

        x = _loop(ctx, "super_res", self.super_res_scheduler, ts, super_res_latents, sr_fn)
        if output_type == "pt":
            return x
        img = (x * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()
        ctx.put("images", torch.from_numpy(img))
        if output_type == "u8":
            return np.round(img * 255).astype(np.uint8)
        return img


class UnCLIPPipeline(_DecodeMixin):
    COMPONENTS = ("tokenizer", "text_encoder", "prior", "prior_scheduler", "text_proj",
                  "decoder", "decoder_scheduler", "super_res_first", "super_res_last",
                  "super_res_scheduler")

    def __init__(self, **components):
        for name in self.COMPONENTS:
            setattr(self, name, components[name])

    @classmethod
    def from_pretrained(cls, model_dir):
        return cls(**{n: load_component(model_dir, n) for n in cls.COMPONENTS})

    @torch.no_grad()
    def __call__(self, prompt, num_images_per_prompt=1, prior_num_inference_steps=25,
                 decoder_num_inference_steps=25, super_res_num_inference_steps=7,
                 generator=None, prior_latents=None, decoder_latents=None,
                 super_res_latents=None, prior_guidance_scale=4.0, decoder_guidance_scale=8.0,
                 output_type="np", trace=None):
        ctx = _Ctx(generator, trace)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        b = len(prompts) * num_images_per_prompt
        cfg = prior_guidance_scale > 1.0 or decoder_guidance_scale > 1.0
        pe, hs, m = self._encode_prompt(ctx, prompts, num_images_per_prompt, cfg)

        ts = self.prior_scheduler.set_timesteps(prior_num_inference_steps)
        e = self.prior.config["embedding_dim"]
        if prior_latents is None:
            prior_latents = ctx.randn((b, e), "prior_initial_latents")
        prior_latents = prior_latents * self.prior_scheduler.init_noise_sigma
        ctx.put("prior_latents_init", prior_latents)
        ctx.put("prior_proj_embedding", pe)
        ctx.put("prior_encoder_hidden_states", hs)
        ctx.put("prior_attention_mask", m.long())

        def prior_fn(x, t, i):
            inp = torch.cat([x, x]) if cfg else x
            raw = self.prior(inp, t, proj_embedding=pe, encoder_hidden_states=hs,
                             attention_mask=m)
            if not cfg:
                return raw, raw
            u, c = raw.chunk(2)
            return raw, u + prior_guidance_scale * (c - u)

        x = _loop(ctx, "prior", self.prior_scheduler, ts, prior_latents, prior_fn)
        image_embeddings = self.prior.post_process_latents(x)
        ctx.put("image_embeddings", image_embeddings)
        return self._decode(ctx, image_embeddings, pe, hs, m, cfg, decoder_num_inference_steps,
                            super_res_num_inference_steps, decoder_guidance_scale,
                            decoder_latents, super_res_latents, output_type)


class UnCLIPImageVariationPipeline(_DecodeMixin):
    COMPONENTS = ("tokenizer", "text_encoder", "text_proj", "feature_extractor",
                  "image_encoder", "decoder", "decoder_scheduler", "super_res_first",
                  "super_res_last", "super_res_scheduler")

    def __init__(self, **components):
        for name in self.COMPONENTS:
            setattr(self, name, components.get(name))

    @classmethod
    def from_pretrained(cls, model_dir):
        return cls(**{n: load_component(model_dir, n) for n in cls.COMPONENTS})

    @torch.no_grad()
    def __call__(self, image=None, num_images_per_prompt=1, decoder_num_inference_steps=25,
                 super_res_num_inference_steps=7, generator=None, decoder_latents=None,
                 super_res_latents=None, image_embeddings=None, decoder_guidance_scale=8.0,
                 output_type="np", trace=None):
        ctx = _Ctx(generator, trace)
        if image is not None:
            if torch.is_tensor(image):
                pixels = image
            else:
                imgs = image if isinstance(image, (list, tuple)) else [image]
                pixels = torch.cat([self.feature_extractor(im) for im in imgs])
            n = pixels.shape[0]
        else:
            n = image_embeddings.shape[0]
        cfg = decoder_guidance_scale > 1.0
        pe, hs, m = self._encode_prompt(ctx, [""] * n, num_images_per_prompt, cfg)
        if image_embeddings is None:
            ctx.put("image_encoder_pixel_values", pixels)
            image_embeddings = self.image_encoder(pixels).image_embeds
            ctx.put("image_encoder_image_embeds", image_embeddings)
        image_embeddings = image_embeddings.repeat_interleave(num_images_per_prompt, 0)
        ctx.put("image_embeddings", image_embeddings)
        return self._decode(ctx, image_embeddings, pe, hs, m, cfg, decoder_num_inference_steps,
                            super_res_num_inference_steps, decoder_guidance_scale,
                            decoder_latents, super_res_latents, output_type)


def slerp(a, b, w):
    """Standard slerp of two (unnormalised) embeddings in float32 (README section 4):
    angle from the dot product of the unit vectors; lerp when the angle is ~0."""
    a = torch.as_tensor(a, dtype=torch.float32)
    b = torch.as_tensor(b, dtype=torch.float32)
    dot = ((a / a.norm(dim=-1, keepdim=True)) * (b / b.norm(dim=-1, keepdim=True))).sum(-1)
    omega = torch.acos(dot.clamp(-1, 1))[..., None]
    so = torch.sin(omega)
    if bool((so.abs() < 1e-7).any()):
        return (1 - w) * a + w * b
    return torch.sin((1 - w) * omega) / so * a + torch.sin(w * omega) / so * b
