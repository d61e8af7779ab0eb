"""The Karlo UNets: diffusers UNet2DConditionModel (the decoder) and UNet2DModel (the
super-resolution nets), v0.27.2 semantics and state-dict names, one shared implementation.

Supported config values (everything Karlo uses):
  down blocks: ResnetDownsampleBlock2D, SimpleCrossAttnDownBlock2D
  mid block:   UNetMidBlock2DSimpleCrossAttn (decoder), UNetMidBlock2D without attention (SR)
  up blocks:   ResnetUpsampleBlock2D, SimpleCrossAttnUpBlock2D
  resnet_time_scale_shift "default" | "scale_shift"; class_embed_type None | "identity" |
  "projection" | "timestep"; time_embedding_type "positional".

    UNet2DConditionModel(config)  forward(sample (B,Cin,H,W), timestep, encoder_hidden_states
        (B,L,X), class_labels=None (B,time_embed_dim), attention_mask=None (B,L) 0/1)
        -> (B,Cout,H,W)
    UNet2DModel(config)  forward(sample (B,Cin,H,W), timestep, class_labels=None) -> (B,Cout,H,W)
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import Timesteps, TimestepEmbedding, activation, batch_timesteps, mask_to_bias

COND_DEFAULTS = {
    "_class_name": "UNet2DConditionModel",
    "sample_size": None, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "CrossAttnDownBlock2D", "DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                       "CrossAttnUpBlock2D"],
    "only_cross_attention": False, "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2, "downsample_padding": 1, "mid_block_scale_factor": 1,
    "dropout": 0.0, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 1280, "transformer_layers_per_block": 1,
    "reverse_transformer_layers_per_block": None, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "attention_head_dim": 8, "num_attention_heads": None,
    "dual_cross_attention": False, "use_linear_projection": False, "class_embed_type": None,
    "addition_embed_type": None, "addition_time_embed_dim": None, "num_class_embeds": None,
    "upcast_attention": False, "resnet_time_scale_shift": "default",
    "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional", "time_embedding_dim": None,
    "time_embedding_act_fn": None, "timestep_post_act": None, "time_cond_proj_dim": None,
    "conv_in_kernel": 3, "conv_out_kernel": 3, "projection_class_embeddings_input_dim": None,
    "attention_type": "default", "class_embeddings_concat": False,
    "mid_block_only_cross_attention": None, "cross_attention_norm": None,
    "addition_embed_type_num_heads": 64,
}

UNCOND_DEFAULTS = {
    "_class_name": "UNet2DModel",
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "freq_shift": 0, "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896], "layers_per_block": 2,
    "mid_block_scale_factor": 1, "downsample_padding": 1, "downsample_type": "conv",
    "upsample_type": "conv", "dropout": 0.0, "act_fn": "silu", "attention_head_dim": 8,
    "norm_num_groups": 32, "attn_norm_num_groups": None, "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None,
    "num_class_embeds": None, "num_train_timesteps": None,
}


class ResnetBlock2D(nn.Module):
    """diffusers ResnetBlock2D with optional resnet up/down sampling (nearest 2x / avgpool 2x,
    applied to both paths after norm1+act) and default or scale_shift time conditioning."""

    def __init__(self, cin, cout, temb, groups, eps, act="silu", time_norm="default",
                 skip_time_act=False, output_scale_factor=1.0, up=False, down=False):
        super().__init__()
        self.time_norm = time_norm
        self.up, self.down = up, down
        self.skip_time_act = skip_time_act
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        if temb is None:
            self.time_emb_proj = None
        elif time_norm == "default":
            self.time_emb_proj = nn.Linear(temb, cout)
        elif time_norm == "scale_shift":
            self.time_emb_proj = nn.Linear(temb, 2 * cout)
        else:
            raise ValueError("unsupported resnet_time_scale_shift %r" % (time_norm,))
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps, affine=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.act = activation(act)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1, 1, 0) if cin != cout else None

    def forward(self, x, temb):
        h = self.act(self.norm1(x))
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        elif self.down:
            x = F.avg_pool2d(x, 2, 2)
            h = F.avg_pool2d(h, 2, 2)
        h = self.conv1(h)
        e = None
        if self.time_emb_proj is not None and temb is not None:
            e = self.time_emb_proj(temb if self.skip_time_act else self.act(temb))[:, :, None, None]
        if self.time_norm == "scale_shift":
            scale, shift = torch.chunk(e, 2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            if e is not None:
                h = h + e
            h = self.norm2(h)
        h = self.conv2(self.act(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale_factor


class AddedKVAttention(nn.Module):
    """diffusers Attention with AttnAddedKVProcessor (Karlo's SimpleCrossAttn): GroupNorm on
    the feature map, queries from it, keys/values = [add_k/v_proj(context); to_k/v(self)],
    key bias = [context mask bias; zeros], residual added."""

    def __init__(self, channels, heads, head_dim, cross_dim, groups, eps=1e-5,
                 only_cross_attention=False):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.scale = head_dim ** -0.5
        self.only_cross_attention = only_cross_attention
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps, affine=True)
        self.to_q = nn.Linear(channels, inner)
        if not only_cross_attention:
            self.to_k = nn.Linear(channels, inner)
            self.to_v = nn.Linear(channels, inner)
        self.add_k_proj = nn.Linear(cross_dim, inner)
        self.add_v_proj = nn.Linear(cross_dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, channels), nn.Dropout(0.0)])

    def forward(self, x, context, bias=None):
        b, c, hh, ww = x.shape
        res = x
        n = self.group_norm(x.reshape(b, c, hh * ww)).transpose(1, 2)  # (B, N, C)
        q = self.to_q(n)
        k = self.add_k_proj(context)
        v = self.add_v_proj(context)
        if not self.only_cross_attention:
            k = torch.cat([k, self.to_k(n)], dim=1)
            v = torch.cat([v, self.to_v(n)], dim=1)
        d = q.shape[-1] // self.heads
        q = q.reshape(b, -1, self.heads, d).transpose(1, 2)
        k = k.reshape(b, -1, self.heads, d).transpose(1, 2)
        v = v.reshape(b, -1, self.heads, d).transpose(1, 2)
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        if bias is not None:
            kb = bias
            if kb.shape[-1] != k.shape[2]:
                kb = F.pad(kb, (0, k.shape[2] - kb.shape[-1]), value=0.0)
            logits = logits + kb[:, None, None, :]
        p = torch.softmax(logits.float(), dim=-1).to(v.dtype)
        o = torch.matmul(p, v).transpose(1, 2).reshape(b, hh * ww, -1)
        o = self.to_out[0](o).transpose(1, 2).reshape(b, c, hh, ww)
        return o + res


class DownBlock(nn.Module):
    """ResnetDownsampleBlock2D (attn=False) / SimpleCrossAttnDownBlock2D (attn=True)."""

    def __init__(self, cin, cout, temb, layers, rk, attn, head_dim=None, cross_dim=None,
                 add_downsample=True, only_cross=False):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, temb, **rk) for i in range(layers)])
        if attn:
            heads = cout // head_dim
            self.attentions = nn.ModuleList(
                [AddedKVAttention(cout, heads, head_dim, cross_dim, rk["groups"],
                                  only_cross_attention=only_cross) for _ in range(layers)])
        else:
            self.attentions = None
        self.downsamplers = (nn.ModuleList([ResnetBlock2D(cout, cout, temb, down=True, **rk)])
                             if add_downsample else None)

    def forward(self, h, temb, context=None, bias=None):
        outs = []
        for i, r in enumerate(self.resnets):
            h = r(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h, context, bias)
            outs.append(h)
        if self.downsamplers is not None:
            h = self.downsamplers[0](h, temb)
            outs.append(h)
        return h, outs


class UpBlock(nn.Module):
    """ResnetUpsampleBlock2D (attn=False) / SimpleCrossAttnUpBlock2D (attn=True)."""

    def __init__(self, cin, cout, prev, temb, layers, rk, attn, head_dim=None, cross_dim=None,
                 add_upsample=True, only_cross=False):
        super().__init__()
        res = []
        for i in range(layers):
            skip = cin if i == layers - 1 else cout
            rin = prev if i == 0 else cout
            res.append(ResnetBlock2D(rin + skip, cout, temb, **rk))
        self.resnets = nn.ModuleList(res)
        if attn:
            heads = cout // head_dim
            self.attentions = nn.ModuleList(
                [AddedKVAttention(cout, heads, head_dim, cross_dim, rk["groups"],
                                  only_cross_attention=only_cross) for _ in range(layers)])
        else:
            self.attentions = None
        self.upsamplers = (nn.ModuleList([ResnetBlock2D(cout, cout, temb, up=True, **rk)])
                           if add_upsample else None)

    def forward(self, h, skips, temb, context=None, bias=None):
        for i, r in enumerate(self.resnets):
            h = torch.cat([h, skips.pop()], dim=1)
            h = r(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h, context, bias)
        if self.upsamplers is not None:
            h = self.upsamplers[0](h, temb)
        return h


class MidBlock(nn.Module):
    """UNetMidBlock2DSimpleCrossAttn (attn=True) / UNetMidBlock2D with add_attention False."""

    def __init__(self, ch, temb, rk, attn, head_dim=None, cross_dim=None, only_cross=False,
                 num_layers=1):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(ch, ch, temb, **rk) for _ in range(num_layers + 1)])
        if attn:
            self.attentions = nn.ModuleList(
                [AddedKVAttention(ch, ch // head_dim, head_dim, cross_dim, rk["groups"],
                                  only_cross_attention=only_cross) for _ in range(num_layers)])
        else:
            self.attentions = None

    def forward(self, h, temb, context=None, bias=None):
        h = self.resnets[0](h, temb)
        for i, r in enumerate(self.resnets[1:]):
            if self.attentions is not None:
                h = self.attentions[i](h, context, bias)
            h = r(h, temb)
        return h


_DOWN = {"ResnetDownsampleBlock2D": False, "SimpleCrossAttnDownBlock2D": True}
_UP = {"ResnetUpsampleBlock2D": False, "SimpleCrossAttnUpBlock2D": True}


def _per_block(v, n):
    return list(v) if isinstance(v, (list, tuple)) else [v] * n


class _UNetBase(nn.Module):
    def _build(self, cfg, conditional):
        boc = list(cfg["block_out_channels"])
        nb = len(boc)
        if len(cfg["down_block_types"]) != nb or len(cfg["up_block_types"]) != nb:
            raise ValueError("block type lists must match block_out_channels")
        if cfg.get("time_embedding_type", "positional") != "positional":
            raise ValueError("only positional time embeddings are supported")
        act = cfg["act_fn"]
        if conditional:
            temb = cfg["time_embedding_dim"] or boc[0] * 4
            kin, kout = cfg["conv_in_kernel"], cfg["conv_out_kernel"]
        else:
            temb = boc[0] * 4
            kin = kout = 3
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], kin, padding=(kin - 1) // 2)
        self.time_proj = Timesteps(boc[0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
        if conditional:
            self.time_embedding = TimestepEmbedding(boc[0], temb, act_fn=act,
                                                    post_act_fn=cfg["timestep_post_act"])
        else:
            self.time_embedding = TimestepEmbedding(boc[0], temb)
        cet = cfg["class_embed_type"]
        if cet is None and cfg.get("num_class_embeds") is not None:
            self.class_embedding = nn.Embedding(cfg["num_class_embeds"], temb)
        elif cet is None:
            self.class_embedding = None
        elif cet == "identity":
            self.class_embedding = nn.Identity()
        elif cet == "timestep":
            self.class_embedding = TimestepEmbedding(boc[0], temb, act_fn=act)
        elif cet == "projection":
            self.class_embedding = TimestepEmbedding(
                cfg["projection_class_embeddings_input_dim"], temb)
        else:
            raise ValueError("unsupported class_embed_type %r" % (cet,))
        if conditional and cfg.get("time_embedding_act_fn"):
            self.time_embed_act = activation(cfg["time_embedding_act_fn"])
        else:
            self.time_embed_act = None
        if conditional and (cfg.get("encoder_hid_dim") is not None
                            or cfg.get("addition_embed_type") is not None):
            raise ValueError("encoder_hid_proj / addition embeddings are not supported")
        if conditional and cfg.get("class_embeddings_concat"):
            raise ValueError("class_embeddings_concat is not supported")

        rk = dict(groups=cfg["norm_num_groups"], eps=cfg["norm_eps"], act=act,
                  time_norm=cfg["resnet_time_scale_shift"])
        if conditional:
            rk["skip_time_act"] = cfg["resnet_skip_time_act"]
            rk["output_scale_factor"] = cfg["resnet_out_scale_factor"]
        lpb = _per_block(cfg["layers_per_block"], nb)
        ahd = _per_block(cfg["attention_head_dim"], nb)
        ahd = [a if a is not None else boc[i] for i, a in enumerate(ahd)]
        xdim = _per_block(cfg.get("cross_attention_dim"), nb)
        only = _per_block(cfg.get("only_cross_attention", False), nb)

        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, bt in enumerate(cfg["down_block_types"]):
            if bt not in _DOWN or (_DOWN[bt] and not conditional):
                raise ValueError("unsupported down block %r" % (bt,))
            cin, cout = cout, boc[i]
            self.down_blocks.append(DownBlock(cin, cout, temb, lpb[i], rk, _DOWN[bt], ahd[i],
                                              xdim[i], add_downsample=i != nb - 1,
                                              only_cross=only[i]))
        mrk = dict(rk)
        mrk["output_scale_factor"] = cfg["mid_block_scale_factor"]
        if conditional:
            mbt = cfg["mid_block_type"]
            if mbt != "UNetMidBlock2DSimpleCrossAttn":
                raise ValueError("unsupported mid block %r" % (mbt,))
            moc = cfg.get("mid_block_only_cross_attention")
            moc = only[-1] if moc is None else moc
            self.mid_block = MidBlock(boc[-1], temb, mrk, True, ahd[-1], xdim[-1], moc)
        else:
            if cfg.get("add_attention", True):
                raise ValueError("UNet2DModel with attention is not supported")
            self.mid_block = MidBlock(boc[-1], temb, mrk, False)

        rboc = boc[::-1]
        rlpb = lpb[::-1]
        rx = xdim[::-1]
        ronly = only[::-1]
        self.up_blocks = nn.ModuleList()
        cout = rboc[0]
        for i, bt in enumerate(cfg["up_block_types"]):
            if bt not in _UP or (_UP[bt] and not conditional):
                raise ValueError("unsupported up block %r" % (bt,))
            prev, cout = cout, rboc[i]
            cin = rboc[min(i + 1, nb - 1)]
            # diffusers quirk: attention_head_dim is indexed unreversed for up blocks
            self.up_blocks.append(UpBlock(cin, cout, prev, temb, rlpb[i] + 1, rk, _UP[bt],
                                          ahd[i], rx[i], add_upsample=i != nb - 1,
                                          only_cross=ronly[i]))
        self.conv_norm_out = nn.GroupNorm(cfg["norm_num_groups"], boc[0], eps=cfg["norm_eps"])
        self.conv_act = activation(act)
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], kout, padding=(kout - 1) // 2)

    def _embed(self, sample, timestep, class_labels):
        t = batch_timesteps(timestep, sample.shape[0], sample.device)
        emb = self.time_embedding(self.time_proj(t).to(sample.dtype))
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("class_labels are required by this UNet")
            if self.config["class_embed_type"] == "timestep":
                class_labels = self.time_proj(class_labels).to(sample.dtype)
            emb = emb + self.class_embedding(class_labels).to(sample.dtype)
        if self.time_embed_act is not None:
            emb = self.time_embed_act(emb)
        return emb

    def _run(self, sample, emb, context, bias):
        if self.config["center_input_sample"]:
            sample = 2 * sample - 1.0
        h = self.conv_in(sample)
        skips = [h]
        for blk in self.down_blocks:
            h, outs = blk(h, emb, context, bias)
            skips += outs
        h = self.mid_block(h, emb, context, bias)
        for blk in self.up_blocks:
            h = blk(h, skips, emb, context, bias)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))


class UNet2DConditionModel(_UNetBase):
    def __init__(self, config):
        super().__init__()
        cfg = dict(COND_DEFAULTS)
        cfg.update(config or {})
        self.config = cfg
        self._build(cfg, True)

    def forward(self, sample, timestep, encoder_hidden_states, class_labels=None,
                attention_mask=None):
        bias = None
        if attention_mask is not None:
            bias = mask_to_bias(torch.as_tensor(attention_mask), sample.dtype)
        emb = self._embed(sample, timestep, class_labels)
        return self._run(sample, emb, encoder_hidden_states, bias)


class UNet2DModel(_UNetBase):
    def __init__(self, config):
        super().__init__()
        cfg = dict(UNCOND_DEFAULTS)
        cfg.update(config or {})
        self.config = cfg
        self._build(cfg, False)

    def forward(self, sample, timestep, class_labels=None):
        emb = self._embed(sample, timestep, class_labels)
        return self._run(sample, emb, None, None)
