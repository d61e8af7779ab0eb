"""unclip_torch: a PyTorch (1.13, CPU) re-implementation of every Karlo unCLIP component with
the exact diffusers v0.27.2 / transformers v4.38.2 state-dict names and math. It is a tool:
the trainer of our small default model and a debugging oracle for the C engine. The product
never imports it. Checked against shared/goldens by tests/python/test_torch_modules.py.

Import: put tools/ on sys.path, then `import unclip_torch as ut`.

Constructors take the component's config dict, with the same field names as the diffusers /
transformers config.json (missing fields get the library defaults; `module.config` holds the
filled dict, which save_component writes back):

  ut.CLIPTextModelWithProjection(cfg)(input_ids (B,L) int64, attention_mask=None)
        -> CLIPTextOutput(text_embeds (B,P), last_hidden_state (B,L,D))      [namedtuple]
  ut.CLIPVisionModelWithProjection(cfg)(pixel_values (B,3,S,S))
        -> CLIPVisionOutput(image_embeds (B,P), last_hidden_state (B,1+N,D), pooled (B,D))
  ut.CLIPImageProcessor(cfg)(rgb_u8 (H,W,3|4) numpy) -> pixel_values (1,3,S,S) tensor
        .steps(rgb_u8) -> {"resized_u8_chw", "cropped_u8_chw", "pixel_values"} numpy
  ut.CLIPTokenizer.from_dir(dir)(list_of_str) -> (ids, mask) int64 numpy (B,77)
  ut.PriorTransformer(cfg)(hidden_states (B,E), timestep, proj_embedding (B,E),
        encoder_hidden_states (B,T,E), attention_mask (B,T)) -> predicted x0 (B,E)
        .post_process_latents(x) = x * clip_std + clip_mean
  ut.UnCLIPTextProjModel(cfg)(image_embeddings (B,E), prompt_embeds (B',E),
        text_encoder_hidden_states (B',T,E), do_classifier_free_guidance: bool)
        -> (encoder_hidden_states (B',K+T,X), additive_clip_time_embeddings (B',time_dim))
  ut.UNet2DConditionModel(cfg)(sample (B,C,H,W), timestep, encoder_hidden_states (B,L,X),
        class_labels (B,time_dim), attention_mask (B,L) 0/1) -> (B,Cout,H,W)     [decoder]
  ut.UNet2DModel(cfg)(sample (B,C,H,W), timestep) -> (B,Cout,H,W)              [super-res]
  ut.UnCLIPScheduler(cfg): .set_timesteps(n) -> int64 tensor; .step(model_output, t, sample,
        prev_timestep=None, generator=None, noise=None) -> (prev_sample, pred_original_sample);
        .add_noise(x0, noise, t); .betas / .alphas_cumprod
  ut.upscale_bicubic_aa(x, (H,W))  the antialiased bicubic upscale before super-resolution
  timestep: int, 0-d or (B,) tensor. All modules are plain nn.Modules (train them as usual).

Files:
  ut.load_component(model_dir, name)   builds any component from a diffusers folder
        (config.json / scheduler_config.json / preprocessor_config.json + safetensors, strict)
  ut.save_component(module, config_or_None, out_dir)   writes the diffusers layout
        (config.json + model.safetensors for CLIP towers, diffusion_pytorch_model.safetensors
        otherwise; scheduler_config.json for schedulers)
  ut.save_model_index(out_dir, {name: class_name}, pipeline="UnCLIPPipeline")
  ut.st.read(path) / ut.st.read_torch(path) / ut.st.write(path, tensors, metadata)

Pipelines (generator = torch.Generator("cpu").manual_seed(seed), draw order as diffusers):
  ut.UnCLIPPipeline.from_pretrained(dir)(prompt, generator=..., prior_num_inference_steps=25,
        decoder_num_inference_steps=25, super_res_num_inference_steps=7,
        prior_guidance_scale=4.0, decoder_guidance_scale=8.0, num_images_per_prompt=1,
        output_type="np"|"u8"|"pt", trace=None)
  ut.UnCLIPImageVariationPipeline.from_pretrained(dir)(image=rgb_u8 | [rgb_u8] | pixels,
        image_embeddings=None, generator=..., decoder/super_res steps, decoder_guidance_scale)
  trace=dict() collects every intermediate under the golden tensor names.
  ut.slerp(a, b, w)
"""

from . import st
from .clip import (CLIPImageProcessor, CLIPTextModelWithProjection,
                   CLIPVisionModelWithProjection, pil_resize_u8)
from .loader import load_component, load_state_dict, save_component, save_model_index
from .pipeline import UnCLIPImageVariationPipeline, UnCLIPPipeline, slerp
from .prior import PriorTransformer
from .resample import bicubic_aa_matrix, upscale_bicubic_aa
from .scheduler import UnCLIPScheduler
from .text_proj import UnCLIPTextProjModel
from .tokenizer import CLIPTokenizer
from .unet import UNet2DConditionModel, UNet2DModel

__all__ = [
    "st", "CLIPImageProcessor", "CLIPTextModelWithProjection", "CLIPVisionModelWithProjection",
    "pil_resize_u8", "load_component", "load_state_dict", "save_component", "save_model_index",
    "UnCLIPImageVariationPipeline", "UnCLIPPipeline", "slerp", "PriorTransformer",
    "bicubic_aa_matrix", "upscale_bicubic_aa", "UnCLIPScheduler", "UnCLIPTextProjModel",
    "CLIPTokenizer", "UNet2DConditionModel", "UNet2DModel",
]
