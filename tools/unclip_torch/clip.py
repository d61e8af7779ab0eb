"""CLIP text and vision towers with projection (transformers v4.38 semantics and state-dict
names), plus the CLIPImageProcessor preprocessing (Pillow-exact bicubic on uint8, numpy only).

    CLIPTextModelWithProjection(config)    config = text_encoder/config.json as a dict
        forward(input_ids (B,77) int64, attention_mask=None)
            -> CLIPTextOutput(text_embeds (B,P), last_hidden_state (B,77,D))
    CLIPVisionModelWithProjection(config)  config = image_encoder/config.json
        forward(pixel_values (B,3,S,S)) -> CLIPVisionOutput(image_embeds (B,P),
            last_hidden_state (B,1+n_patches,D) (before post_layernorm), pooled (B,D))
    CLIPImageProcessor(config)             config = feature_extractor/preprocessor_config.json
        __call__(rgb_u8 (H,W,3|4) numpy) -> pixel_values (1,3,S,S) float32 torch tensor
        steps(rgb_u8) -> dict(resized_u8_chw, cropped_u8_chw, pixel_values) numpy
    pil_resize_u8(img (H,W,C) uint8, out_w, out_h) -> uint8, Pillow BICUBIC bit-exact
"""

import collections
import math

import numpy as np
import torch
import torch.nn as nn

from .layers import activation, attention

CLIPTextOutput = collections.namedtuple("CLIPTextOutput", ["text_embeds", "last_hidden_state"])
CLIPVisionOutput = collections.namedtuple(
    "CLIPVisionOutput", ["image_embeds", "last_hidden_state", "pooled"])

TEXT_DEFAULTS = {
    "vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "projection_dim": 512,
    "num_hidden_layers": 12, "num_attention_heads": 8, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0,
    "initializer_range": 0.02, "initializer_factor": 1.0,
    "pad_token_id": 1, "bos_token_id": 49406, "eos_token_id": 49407,
    "model_type": "clip_text_model", "architectures": ["CLIPTextModelWithProjection"],
}
VISION_DEFAULTS = {
    "hidden_size": 768, "intermediate_size": 3072, "projection_dim": 512,
    "num_hidden_layers": 12, "num_attention_heads": 12, "num_channels": 3, "image_size": 224,
    "patch_size": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
    "attention_dropout": 0.0, "initializer_range": 0.02, "initializer_factor": 1.0,
    "model_type": "clip_vision_model", "architectures": ["CLIPVisionModelWithProjection"],
}


def _fill(defaults, config):
    cfg = dict(defaults)
    cfg.update(config or {})
    return cfg


class CLIPAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, bias=None):
        o = attention(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads, self.scale, bias)
        return self.out_proj(o)


class CLIPMLP(nn.Module):
    def __init__(self, dim, inner, act):
        super().__init__()
        self.fc1 = nn.Linear(dim, inner)
        self.act = activation(act)
        self.fc2 = nn.Linear(inner, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.self_attn = CLIPAttention(d, cfg["num_attention_heads"])
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.mlp = CLIPMLP(d, cfg["intermediate_size"], cfg["hidden_act"])
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x, bias=None):
        x = x + self.self_attn(self.layer_norm1(x), bias)
        x = x + self.mlp(self.layer_norm2(x))
        return x


class CLIPEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])

    def forward(self, x, bias=None):
        for layer in self.layers:
            x = layer(x, bias)
        return x


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.position_embedding = nn.Embedding(cfg["max_position_embeddings"], cfg["hidden_size"])

    def forward(self, input_ids):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.token_embedding(input_ids) + self.position_embedding(pos)[None]


class CLIPTextTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = CLIPTextEmbeddings(cfg)
        self.encoder = CLIPEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])


class CLIPTextModelWithProjection(nn.Module):
    """transformers CLIPTextModelWithProjection. Causal self-attention; the optional
    attention_mask (B,L) additionally hides padded keys (the unCLIP pipelines never pass it).
    Pooling: argmax(input_ids) when config eos_token_id == 2 (legacy configs such as Karlo's),
    else the first position holding eos_token_id."""

    def __init__(self, config):
        super().__init__()
        self.config = _fill(TEXT_DEFAULTS, config)
        cfg = self.config
        self.text_model = CLIPTextTransformer(cfg)
        self.text_projection = nn.Linear(cfg["hidden_size"], cfg["projection_dim"], bias=False)

    def forward(self, input_ids, attention_mask=None):
        input_ids = torch.as_tensor(input_ids, dtype=torch.long)
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        tm = self.text_model
        h = tm.embeddings(input_ids)
        b, l, _ = h.shape
        neg = torch.finfo(h.dtype).min
        bias = torch.full((l, l), neg, dtype=h.dtype, device=h.device).triu_(1)[None, None]
        if attention_mask is not None:
            am = torch.as_tensor(attention_mask, device=h.device)
            keep = (1.0 - am.to(h.dtype))[:, None, None, :] * neg
            bias = bias + keep
        h = tm.encoder(h, bias)
        last = tm.final_layer_norm(h)
        if self.config["eos_token_id"] == 2:
            pos = input_ids.to(torch.int).argmax(dim=-1)
        else:
            pos = (input_ids == self.config["eos_token_id"]).int().argmax(dim=-1)
        pooled = last[torch.arange(b, device=last.device), pos]
        return CLIPTextOutput(self.text_projection(pooled), last)


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.class_embedding = nn.Parameter(torch.randn(d))
        self.patch_embedding = nn.Conv2d(cfg["num_channels"], d, kernel_size=cfg["patch_size"],
                                         stride=cfg["patch_size"], bias=False)
        n = (cfg["image_size"] // cfg["patch_size"]) ** 2 + 1
        self.position_embedding = nn.Embedding(n, d)

    def forward(self, pixel_values):
        b = pixel_values.shape[0]
        p = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        p = p.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(b, 1, -1)
        x = torch.cat([cls, p], dim=1)
        return x + self.position_embedding.weight[None, : x.shape[1]]


class CLIPVisionTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.embeddings = CLIPVisionEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(d, eps=eps)  # sic: transformers' key name
        self.encoder = CLIPEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(d, eps=eps)


class CLIPVisionModelWithProjection(nn.Module):
    """transformers CLIPVisionModelWithProjection: image_embeds =
    visual_projection(post_layernorm(h[:, 0])); last_hidden_state is before post_layernorm."""

    def __init__(self, config):
        super().__init__()
        self.config = _fill(VISION_DEFAULTS, config)
        cfg = self.config
        self.vision_model = CLIPVisionTransformer(cfg)
        self.visual_projection = nn.Linear(cfg["hidden_size"], cfg["projection_dim"], bias=False)

    def forward(self, pixel_values):
        vm = self.vision_model
        h = vm.pre_layrnorm(vm.embeddings(pixel_values))
        h = vm.encoder(h)
        pooled = vm.post_layernorm(h[:, 0])
        return CLIPVisionOutput(self.visual_projection(pooled), h, pooled)


# ----------------------------------------------------------------------------------------
# Preprocessing: transformers CLIPImageProcessor with the PIL resize path.

def _bicubic(x, a=-0.5):
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def pil_coeffs(in_size, out_size, support=2.0, kernel=_bicubic):
    """Pillow's precompute_coeffs for the box (0, in_size): per output index the first tap and
    the normalised double weights. Returns (xmin list, weight-row list)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    sup = support * filterscale
    xmins, rows = [], []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = int(center - sup + 0.5)
        if xmin < 0:
            xmin = 0
        xmax = int(center + sup + 0.5)
        if xmax > in_size:
            xmax = in_size
        ws = [kernel((x + xmin - center + 0.5) * ss) for x in range(xmax - xmin)]
        tot = sum(ws)
        if tot != 0.0:
            ws = [w / tot for w in ws]
        xmins.append(xmin)
        rows.append(ws)
    return xmins, rows


def _fixed_point(w):
    # Pillow normalize_coeffs_8bpc: round half away from zero to 22 fractional bits.
    return int(-0.5 + w * (1 << 22)) if w < 0 else int(0.5 + w * (1 << 22))


def _resample_axis_u8(img, out_size, axis):
    """One Pillow 8-bit bicubic pass along `axis` (0 = rows/vertical, 1 = columns/horizontal)."""
    in_size = img.shape[axis]
    xmins, rows = pil_coeffs(in_size, out_size)
    src = np.moveaxis(img, axis, 0).astype(np.int64)
    out = np.empty((out_size,) + src.shape[1:], dtype=np.uint8)
    for i, (xmin, ws) in enumerate(zip(xmins, rows)):
        acc = np.full(src.shape[1:], 1 << 21, dtype=np.int64)
        for k, w in enumerate(ws):
            acc += src[xmin + k] * _fixed_point(w)
        acc >>= 22
        out[i] = np.clip(acc, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def pil_resize_u8(img, out_w, out_h):
    """Pillow Image.resize((out_w, out_h), BICUBIC) on an (H, W, C) uint8 array: horizontal
    pass first, then vertical, each rounded to 8 bits; an unchanged axis is not resampled."""
    img = np.asarray(img, dtype=np.uint8)
    if img.shape[1] != out_w:
        img = _resample_axis_u8(img, out_w, 1)
    if img.shape[0] != out_h:
        img = _resample_axis_u8(img, out_h, 0)
    return img


PROCESSOR_DEFAULTS = {
    "do_resize": True, "size": {"shortest_edge": 224}, "resample": 3,
    "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
    "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True,
    "image_processor_type": "CLIPImageProcessor",
}


class CLIPImageProcessor:
    """CLIPImageProcessor (PIL path) on numpy uint8 images (H, W, 3 or 4; alpha dropped)."""

    def __init__(self, config=None):
        self.config = _fill(PROCESSOR_DEFAULTS, config)
        if self.config["resample"] != 3:
            raise ValueError("only bicubic (resample=3) is implemented")

    def steps(self, image):
        cfg = self.config
        img = np.asarray(image)
        if img.dtype != np.uint8:
            raise ValueError("expected a uint8 image")
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = img[:, :, :3]
        h, w = img.shape[:2]
        out = {}
        if cfg["do_resize"]:
            s = cfg["size"]["shortest_edge"]
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(s * long / short)
            nh, nw = (new_long, s) if w <= h else (s, new_long)
            img = pil_resize_u8(img, nw, nh)
        out["resized_u8_chw"] = np.ascontiguousarray(img.transpose(2, 0, 1))
        if cfg["do_center_crop"]:
            ch, cw = cfg["crop_size"]["height"], cfg["crop_size"]["width"]
            h, w = img.shape[:2]
            if h < ch or w < cw:
                raise ValueError("image smaller than the crop size")
            top, left = (h - ch) // 2, (w - cw) // 2
            img = img[top:top + ch, left:left + cw]
        out["cropped_u8_chw"] = np.ascontiguousarray(img.transpose(2, 0, 1))
        x = img.astype(np.float64)
        if cfg["do_rescale"]:
            x = x * cfg["rescale_factor"]
        x = x.astype(np.float32)
        if cfg["do_normalize"]:
            mean = np.array(cfg["image_mean"], dtype=np.float32)
            std = np.array(cfg["image_std"], dtype=np.float32)
            x = (x - mean) / std
        out["pixel_values"] = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        return out

    def __call__(self, image):
        return torch.from_numpy(self.steps(image)["pixel_values"])
