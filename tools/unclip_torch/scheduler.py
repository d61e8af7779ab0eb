"""diffusers UnCLIPScheduler (v0.27.2), fp32 arithmetic like torch.

    s = UnCLIPScheduler(config)          config = *_scheduler/scheduler_config.json as a dict
    s.set_timesteps(n)                   s.timesteps: int64 tensor, round_half_even(k*999/(n-1)) reversed
    s.step(model_output, t, sample, prev_timestep=None, generator=None, noise=None)
        -> (prev_sample, pred_original_sample)
    The variance noise is drawn (torch.randn(shape of the eps part, generator=generator)) only
    when t > 0, before the variance is computed; `noise` overrides the draw (tests, training).
    s.add_noise(x0, noise, t) -> sqrt(abar_t) x0 + sqrt(1-abar_t) noise (training helper).
"""

import math

import numpy as np
import torch

SCHED_DEFAULTS = {
    "_class_name": "UnCLIPScheduler",
    "num_train_timesteps": 1000, "variance_type": "fixed_small_log", "clip_sample": True,
    "clip_sample_range": 1.0, "prediction_type": "epsilon", "beta_schedule": "squaredcos_cap_v2",
}


def cosine_betas(n, max_beta=0.999):
    """squaredcos_cap_v2 betas computed in double, stored as float32."""
    def abar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), max_beta) for i in range(n)],
                        dtype=torch.float32)


class UnCLIPScheduler:
    def __init__(self, config=None):
        cfg = dict(SCHED_DEFAULTS)
        cfg.update(config or {})
        if cfg["beta_schedule"] != "squaredcos_cap_v2":
            raise ValueError("UnCLIPScheduler only supports squaredcos_cap_v2")
        self.config = cfg
        n = cfg["num_train_timesteps"]
        self.betas = cosine_betas(n)
        self.alphas = 1.0 - self.betas
        # torch's CPU cumprod accumulates in double and rounds each entry to float32
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.one = torch.tensor(1.0)
        self.init_noise_sigma = 1.0
        self.variance_type = cfg["variance_type"]
        self.timesteps = torch.from_numpy(np.arange(0, n)[::-1].copy())
        self.num_inference_steps = None

    def set_timesteps(self, num_inference_steps):
        if num_inference_steps < 2:
            raise ValueError("UnCLIPScheduler needs at least 2 inference steps")
        self.num_inference_steps = num_inference_steps
        ratio = (self.config["num_train_timesteps"] - 1) / (num_inference_steps - 1)
        ts = (np.arange(0, num_inference_steps) * ratio).round()[::-1].copy().astype(np.int64)
        self.timesteps = torch.from_numpy(ts)
        return self.timesteps

    def _alphas(self, t, prev_t):
        a_t = self.alphas_cumprod[t]
        a_p = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        if prev_t == t - 1:
            beta, alpha = self.betas[t], self.alphas[t]
        else:
            beta = 1 - a_t / a_p
            alpha = 1 - beta
        return a_t, a_p, beta, alpha

    def _get_variance(self, t, prev_t, predicted_variance=None):
        a_t, a_p, beta, _ = self._alphas(t, prev_t)
        variance = (1 - a_p) / (1 - a_t) * beta
        if self.variance_type == "fixed_small_log":
            variance = torch.log(torch.clamp(variance, min=1e-20))
            return torch.exp(0.5 * variance)
        if self.variance_type == "learned_range":
            min_log = variance.log()
            max_log = beta.log()
            frac = (predicted_variance + 1) / 2
            return frac * max_log + (1 - frac) * min_log
        raise ValueError("unsupported variance_type %r" % (self.variance_type,))

    def step(self, model_output, timestep, sample, prev_timestep=None, generator=None,
             noise=None):
        t = int(timestep)
        if (model_output.shape[1] == sample.shape[1] * 2
                and self.variance_type == "learned_range"):
            model_output, predicted_variance = torch.split(model_output, sample.shape[1], dim=1)
        else:
            predicted_variance = None
        prev_t = t - 1 if prev_timestep is None else int(prev_timestep)
        a_t, a_p, beta, alpha = self._alphas(t, prev_t)
        b_t = 1 - a_t
        b_p = 1 - a_p
        pt = self.config["prediction_type"]
        if pt == "epsilon":
            x0 = (sample - b_t ** 0.5 * model_output) / a_t ** 0.5
        elif pt == "sample":
            x0 = model_output
        else:
            raise ValueError("unsupported prediction_type %r" % (pt,))
        if self.config["clip_sample"]:
            r = self.config["clip_sample_range"]
            x0 = torch.clamp(x0, -r, r)
        c_x0 = (a_p ** 0.5 * beta) / b_t
        c_xt = alpha ** 0.5 * b_p / b_t
        prev = c_x0 * x0 + c_xt * sample
        if t > 0:
            if noise is None:
                noise = torch.randn(model_output.shape, generator=generator,
                                    dtype=model_output.dtype)
            var = self._get_variance(t, prev_t, predicted_variance)
            if self.variance_type == "learned_range":
                var = (0.5 * var).exp()
            prev = prev + var * noise
        return prev, x0

    def add_noise(self, original, noise, timesteps):
        a = self.alphas_cumprod.to(original.device)[timesteps].to(original.dtype)
        while a.dim() < original.dim():
            a = a[..., None]
        return a.sqrt() * original + (1 - a).sqrt() * noise
