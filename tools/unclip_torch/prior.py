"""diffusers PriorTransformer (v0.27.2 semantics and state-dict names).

    PriorTransformer(config)   config = prior/config.json as a dict
    forward(hidden_states (B,E), timestep, proj_embedding (B,E), encoder_hidden_states (B,T,E),
            attention_mask (B,T) bool/0-1 or None) -> predicted_image_embedding (B,E)
    post_process_latents(x) -> x * clip_std + clip_mean
    init_training_params(std=0.02, clip_mean=None, clip_std=None)  call before training from
        scratch (the diffusers zero init of the embeddings and clip_std does not train)
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import Timesteps, TimestepEmbedding, attention, batch_timesteps, mask_to_bias

PRIOR_DEFAULTS = {
    "_class_name": "PriorTransformer",
    "num_attention_heads": 32, "attention_head_dim": 64, "num_layers": 20,
    "embedding_dim": 768, "num_embeddings": 77, "additional_embeddings": 4, "dropout": 0.0,
    "time_embed_act_fn": "silu", "norm_in_type": None, "embedding_proj_norm_type": None,
    "encoder_hid_proj_type": "linear", "added_emb_type": "prd", "time_embed_dim": None,
    "embedding_proj_dim": None, "clip_embed_dim": None,
}


class SelfAttention(nn.Module):
    """diffusers Attention (self-attention only, with biases) under keys to_q/to_k/to_v/to_out.0."""

    def __init__(self, dim, heads, head_dim, bias=True):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.scale = head_dim ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(dim, inner, bias=bias)
        self.to_v = nn.Linear(dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x, bias=None):
        o = attention(self.to_q(x), self.to_k(x), self.to_v(x), self.heads, self.scale, bias)
        return self.to_out[0](o)


class GELUProj(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GELUProj(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention + GELU MLP (no cross-attention: no norm2/attn2 keys)."""

    def __init__(self, dim, heads, head_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = SelfAttention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim)

    def forward(self, x, bias=None):
        x = x + self.attn1(self.norm1(x), bias)
        x = x + self.ff(self.norm3(x))
        return x


class PriorTransformer(nn.Module):
    def __init__(self, config):
        super().__init__()
        cfg = dict(PRIOR_DEFAULTS)
        cfg.update(config or {})
        self.config = cfg
        heads, hd = cfg["num_attention_heads"], cfg["attention_head_dim"]
        inner = heads * hd
        emb = cfg["embedding_dim"]
        time_dim = cfg["time_embed_dim"] or inner
        proj_dim = cfg["embedding_proj_dim"] or emb
        clip_dim = cfg["clip_embed_dim"] or emb
        self.inner_dim = inner
        self.time_proj = Timesteps(inner, True, 0)
        self.time_embedding = TimestepEmbedding(inner, time_dim, out_dim=inner,
                                                act_fn=cfg["time_embed_act_fn"])
        self.proj_in = nn.Linear(emb, inner)
        if cfg["embedding_proj_norm_type"] is None:
            self.embedding_proj_norm = None
        elif cfg["embedding_proj_norm_type"] == "layer":
            self.embedding_proj_norm = nn.LayerNorm(proj_dim)
        else:
            raise ValueError("unsupported embedding_proj_norm_type")
        self.embedding_proj = nn.Linear(proj_dim, inner)
        if cfg["encoder_hid_proj_type"] is None:
            self.encoder_hidden_states_proj = None
        elif cfg["encoder_hid_proj_type"] == "linear":
            self.encoder_hidden_states_proj = nn.Linear(emb, inner)
        else:
            raise ValueError("unsupported encoder_hid_proj_type")
        n_tok = cfg["num_embeddings"] + cfg["additional_embeddings"]
        self.positional_embedding = nn.Parameter(torch.zeros(1, n_tok, inner))
        if cfg["added_emb_type"] == "prd":
            self.prd_embedding = nn.Parameter(torch.zeros(1, 1, inner))
        elif cfg["added_emb_type"] is None:
            self.prd_embedding = None
        else:
            raise ValueError("unsupported added_emb_type")
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, hd) for _ in range(cfg["num_layers"])])
        if cfg["norm_in_type"] == "layer":
            self.norm_in = nn.LayerNorm(inner)
        elif cfg["norm_in_type"] is None:
            self.norm_in = None
        else:
            raise ValueError("unsupported norm_in_type")
        self.norm_out = nn.LayerNorm(inner)
        self.proj_to_clip_embeddings = nn.Linear(inner, clip_dim)
        causal = torch.full((n_tok, n_tok), -10000.0).triu_(1)
        self.register_buffer("causal_attention_mask", causal[None], persistent=False)
        self.clip_mean = nn.Parameter(torch.zeros(1, clip_dim))
        self.clip_std = nn.Parameter(torch.zeros(1, clip_dim))

    def forward(self, hidden_states, timestep, proj_embedding, encoder_hidden_states=None,
                attention_mask=None):
        b = hidden_states.shape[0]
        t = batch_timesteps(timestep, b, hidden_states.device)
        temb = self.time_embedding(self.time_proj(t).to(hidden_states.dtype))
        if self.embedding_proj_norm is not None:
            proj_embedding = self.embedding_proj_norm(proj_embedding)
        pe = self.embedding_proj(proj_embedding)
        if self.encoder_hidden_states_proj is not None and encoder_hidden_states is not None:
            encoder_hidden_states = self.encoder_hidden_states_proj(encoder_hidden_states)
        elif encoder_hidden_states is not None:
            raise ValueError("encoder_hidden_states given but encoder_hid_proj_type is None")
        h = self.proj_in(hidden_states)
        seq = []
        if encoder_hidden_states is not None:
            seq.append(encoder_hidden_states)
        if pe.dim() == 2:
            pe = pe[:, None]
        if h.dim() == 2:
            h = h[:, None]
        seq += [pe, temb[:, None, :], h]
        if self.prd_embedding is not None:
            seq.append(self.prd_embedding.to(h.dtype).expand(b, -1, -1))
        x = torch.cat(seq, dim=1)
        pos = self.positional_embedding.to(x.dtype)
        if pos.shape[1] < x.shape[1]:
            pos = F.pad(pos, (0, 0, x.shape[1] - pos.shape[1], 0), value=0.0)
        x = x + pos
        bias = None
        if attention_mask is not None:
            mb = mask_to_bias(torch.as_tensor(attention_mask), x.dtype)
            mb = F.pad(mb, (0, self.config["additional_embeddings"]), value=0.0)
            bias = (mb[:, None, :] + self.causal_attention_mask.to(x.dtype))[:, None]
        if self.norm_in is not None:
            x = self.norm_in(x)
        for blk in self.transformer_blocks:
            x = blk(x, bias)
        x = self.norm_out(x)
        if self.prd_embedding is not None:
            x = x[:, -1]
        else:
            x = x[:, -(h.shape[1]):]  # diffusers slices after the additional embeddings
        return self.proj_to_clip_embeddings(x)

    @torch.no_grad()
    def init_training_params(self, std=0.02, clip_mean=None, clip_std=None):
        """diffusers initialises positional_embedding, prd_embedding, clip_mean and clip_std
        to zeros (checkpoints overwrite them). From scratch that leaves the prd query at zero
        (no gradient reaches attn1.to_q of a one-layer prior) and clip_std = 0 hides the
        output: draw the two embeddings from N(0, std^2) and set the statistics (defaults
        mean 0, std 1; pass the image-embedding statistics of the training data)."""
        self.positional_embedding.normal_(0.0, std)
        if self.prd_embedding is not None:
            self.prd_embedding.normal_(0.0, std)
        self.clip_mean.copy_(torch.zeros_like(self.clip_mean) if clip_mean is None
                             else torch.as_tensor(clip_mean).reshape(self.clip_mean.shape))
        self.clip_std.copy_(torch.ones_like(self.clip_std) if clip_std is None
                            else torch.as_tensor(clip_std).reshape(self.clip_std.shape))
        return self

    def post_process_latents(self, latents):
        return latents * self.clip_std + self.clip_mean
