"""diffusers UnCLIPTextProjModel (pipelines/unclip/text_proj.py, v0.27.2).

    UnCLIPTextProjModel(config)   config = text_proj/config.json as a dict
    forward(image_embeddings (B,E), prompt_embeds (B',E), text_encoder_hidden_states (B',T,E),
            do_classifier_free_guidance) -> (encoder_hidden_states (B',K+T,X),
                                            additive_clip_time_embeddings (B',time_embed_dim))
    With guidance the learned null embedding is put in front: B' = 2B, [uncond; cond].
"""

import torch
import torch.nn as nn

TEXT_PROJ_DEFAULTS = {
    "_class_name": "UnCLIPTextProjModel",
    "clip_extra_context_tokens": 4, "clip_embeddings_dim": 768, "time_embed_dim": 1280,
    "cross_attention_dim": 1536,
}


class UnCLIPTextProjModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        cfg = dict(TEXT_PROJ_DEFAULTS)
        cfg.update(config or {})
        self.config = cfg
        e, t, x = cfg["clip_embeddings_dim"], cfg["time_embed_dim"], cfg["cross_attention_dim"]
        self.clip_extra_context_tokens = k = cfg["clip_extra_context_tokens"]
        self.learned_classifier_free_guidance_embeddings = nn.Parameter(torch.zeros(e))
        self.embedding_proj = nn.Linear(e, t)
        self.clip_image_embeddings_project_to_time_embeddings = nn.Linear(e, t)
        self.clip_extra_context_tokens_proj = nn.Linear(e, k * x)
        self.encoder_hidden_states_proj = nn.Linear(e, x)
        self.text_encoder_hidden_states_norm = nn.LayerNorm(x)

    def forward(self, image_embeddings, prompt_embeds, text_encoder_hidden_states,
                do_classifier_free_guidance):
        if do_classifier_free_guidance:
            n = image_embeddings.shape[0]
            null = self.learned_classifier_free_guidance_embeddings[None].expand(n, -1)
            image_embeddings = torch.cat([null.to(image_embeddings.dtype), image_embeddings], 0)
        if image_embeddings.shape[0] != prompt_embeds.shape[0]:
            raise ValueError("image and prompt batch sizes differ")
        b = prompt_embeds.shape[0]
        add = (self.clip_image_embeddings_project_to_time_embeddings(image_embeddings)
               + self.embedding_proj(prompt_embeds))
        extra = self.clip_extra_context_tokens_proj(image_embeddings)
        extra = extra.reshape(b, -1, self.clip_extra_context_tokens).permute(0, 2, 1)
        txt = self.text_encoder_hidden_states_norm(
            self.encoder_hidden_states_proj(text_encoder_hidden_states))
        return torch.cat([extra, txt], dim=1), add
