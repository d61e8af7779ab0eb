"""Building blocks shared by the unCLIP modules (diffusers semantics, our own code)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def activation(name):
    """nn.Module for a diffusers/transformers activation name."""
    if name in ("silu", "swish"):
        return nn.SiLU()
    if name == "gelu":
        return nn.GELU()
    if name == "quick_gelu":
        return QuickGELU()
    if name == "mish":
        return nn.Mish()
    if name == "relu":
        return nn.ReLU()
    raise ValueError("unsupported activation %r" % (name,))


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the CLIP activation."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


def timestep_embedding(timesteps, dim, flip_sin_to_cos=True, downscale_freq_shift=0.0,
                       max_period=10000):
    """Sinusoidal projection of 1-D `timesteps` (B) to (B, dim), fp32, diffusers order of ops:
    f_k = exp(-ln(max_period) * k / (half - shift)); [sin(t f), cos(t f)], swapped if flip."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32,
                                                    device=timesteps.device)
    exponent = exponent / (half - downscale_freq_shift)
    freqs = torch.exp(exponent)
    args = timesteps[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


def batch_timesteps(timestep, batch, device):
    """Any timestep form (int, float, 0-d or 1-d tensor) -> 1-D tensor of length `batch`."""
    if not torch.is_tensor(timestep):
        dtype = torch.float32 if isinstance(timestep, float) else torch.int64
        timestep = torch.tensor([timestep], dtype=dtype, device=device)
    elif timestep.dim() == 0:
        timestep = timestep[None].to(device)
    return timestep.expand(batch)


class Timesteps(nn.Module):
    """diffusers `Timesteps` (no parameters)."""

    def __init__(self, dim, flip_sin_to_cos=True, downscale_freq_shift=0.0):
        super().__init__()
        self.dim = dim
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift

    def forward(self, timesteps):
        return timestep_embedding(timesteps, self.dim, self.flip_sin_to_cos,
                                  self.downscale_freq_shift)


class TimestepEmbedding(nn.Module):
    """diffusers `TimestepEmbedding`: linear_1 -> act -> linear_2 (-> optional post act)."""

    def __init__(self, in_channels, time_embed_dim, act_fn="silu", out_dim=None,
                 post_act_fn=None):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = activation(act_fn)
        self.linear_2 = nn.Linear(time_embed_dim, out_dim if out_dim is not None else time_embed_dim)
        self.post_act = activation(post_act_fn) if post_act_fn else None

    def forward(self, x):
        x = self.linear_2(self.act(self.linear_1(x)))
        if self.post_act is not None:
            x = self.post_act(x)
        return x


def attention(q, k, v, heads, scale, bias=None):
    """Multi-head attention on token-major tensors.
    q: (B, Lq, H*D), k/v: (B, Lk, H*D); channels of head h are [h*D, (h+1)*D).
    bias: None or additive logits broadcastable to (B, heads, Lq, Lk).
    Returns (B, Lq, H*D). Softmax in fp32."""
    b, lq, c = q.shape
    lk = k.shape[1]
    d = c // heads
    q = q.reshape(b, lq, heads, d).transpose(1, 2)
    k = k.reshape(b, lk, heads, d).transpose(1, 2)
    v = v.reshape(b, lk, heads, v.shape[-1] // heads).transpose(1, 2)
    logits = torch.matmul(q, k.transpose(-1, -2)) * scale
    if bias is not None:
        logits = logits + bias
    probs = torch.softmax(logits.float(), dim=-1).to(v.dtype)
    out = torch.matmul(probs, v)
    return out.transpose(1, 2).reshape(b, lq, -1)


def mask_to_bias(mask, dtype=torch.float32, value=-10000.0):
    """(B, L) 0/1 or bool key mask -> additive bias (B, L): 0 where kept, `value` where masked."""
    return (1.0 - mask.to(dtype)) * value
