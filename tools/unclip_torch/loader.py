"""Reading and writing diffusers-layout component folders.

    load_component(model_dir, name) -> module / scheduler / tokenizer / image processor
        name is the sub-folder ("text_encoder", "prior", "decoder", "super_res_first", ...).
        The class comes from model_index.json (or the config's _class_name / architectures).
        Weights must match the module's state dict exactly (the optional transformers
        `position_ids` buffers are ignored); a mismatch raises ValueError naming the keys.
    save_component(module, config, out_dir) -> writes config.json (+ model.safetensors for
        transformers classes, diffusion_pytorch_model.safetensors for diffusers classes),
        scheduler_config.json for a scheduler, preprocessor_config.json for the image
        processor, vocab.json/merges.txt/tokenizer_config.json/special_tokens_map.json for
        the tokenizer, in the layout from_pretrained expects. `config` (may be None) is
        merged over module.config.
    save_model_index(out_dir, components, pipeline="UnCLIPPipeline") -> model_index.json
"""

import json
import os

import torch

from . import st
from .clip import (CLIPImageProcessor, CLIPTextModelWithProjection,
                   CLIPVisionModelWithProjection)
from .prior import PriorTransformer
from .scheduler import UnCLIPScheduler
from .text_proj import UnCLIPTextProjModel
from .tokenizer import CLIPTokenizer
from .unet import UNet2DConditionModel, UNet2DModel

DIFFUSERS_VERSION = "0.27.2"
TRANSFORMERS_VERSION = "4.38.2"

CLASSES = {
    "CLIPTextModelWithProjection": CLIPTextModelWithProjection,
    "CLIPVisionModelWithProjection": CLIPVisionModelWithProjection,
    "PriorTransformer": PriorTransformer,
    "UnCLIPTextProjModel": UnCLIPTextProjModel,
    "UNet2DConditionModel": UNet2DConditionModel,
    "UNet2DModel": UNet2DModel,
    "UnCLIPScheduler": UnCLIPScheduler,
    "CLIPTokenizer": CLIPTokenizer,
    "CLIPImageProcessor": CLIPImageProcessor,
}
TRANSFORMERS_CLASSES = {"CLIPTextModelWithProjection", "CLIPVisionModelWithProjection"}
LIBRARY = {
    "CLIPTextModelWithProjection": "transformers", "CLIPVisionModelWithProjection": "transformers",
    "CLIPTokenizer": "transformers", "CLIPImageProcessor": "transformers",
    "PriorTransformer": "diffusers", "UNet2DConditionModel": "diffusers",
    "UNet2DModel": "diffusers", "UnCLIPScheduler": "diffusers", "UnCLIPTextProjModel": "unclip",
}
_IGNORED_KEYS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def read_json(path):
    with open(st.resolve_path(path), encoding="utf-8") as f:
        return json.load(f)


def _class_of(model_dir, name, cfg):
    idx = os.path.join(model_dir, "model_index.json")
    if os.path.exists(idx):
        entry = read_json(idx).get(name)
        if entry:
            return entry[1]
    if cfg is not None:
        if "_class_name" in cfg:
            return cfg["_class_name"]
        if cfg.get("architectures"):
            return cfg["architectures"][0]
        if "image_processor_type" in cfg:
            return cfg["image_processor_type"]
        if "tokenizer_class" in cfg:
            return cfg["tokenizer_class"]
    raise ValueError("%s/%s: cannot tell the component class" % (model_dir, name))


def load_state_dict(module, tensors, where=""):
    """Strict load: exact key set (ignoring position_ids buffers) and shapes."""
    tensors = {k: v for k, v in tensors.items() if k not in _IGNORED_KEYS}
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise ValueError("%s: state dict mismatch; missing %s; unexpected %s"
                         % (where, missing[:10], extra[:10]))
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError("%s: tensor %s has shape %s, module expects %s"
                             % (where, k, tuple(v.shape), tuple(own[k].shape)))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=True)
    return module


def load_component(model_dir, name):
    comp = os.path.join(model_dir, name)
    cfg = None
    for fn in ("config.json", "scheduler_config.json", "preprocessor_config.json",
               "tokenizer_config.json"):
        p = os.path.join(comp, fn)
        if os.path.exists(p):
            cfg = read_json(p)
            break
    cls_name = _class_of(model_dir, name, cfg)
    if cls_name not in CLASSES:
        raise ValueError("%s: unsupported class %s" % (comp, cls_name))
    cls = CLASSES[cls_name]
    if cls is CLIPTokenizer:
        return CLIPTokenizer.from_dir(comp)
    if cls in (UnCLIPScheduler, CLIPImageProcessor):
        return cls(cfg)
    module = cls(cfg)
    for fn in ("model.safetensors", "diffusion_pytorch_model.safetensors"):
        wp = os.path.join(comp, fn)
        if os.path.exists(wp):
            break
    else:
        raise ValueError("%s: no safetensors weight file" % comp)
    load_state_dict(module, st.read_torch(wp), wp)
    return module.eval()


def _json_config(cls_name, config):
    cfg = {k: v for k, v in dict(config).items()}
    if LIBRARY.get(cls_name) == "transformers":
        cfg.pop("_class_name", None)
        cfg.setdefault("architectures", [cls_name])
        cfg["transformers_version"] = TRANSFORMERS_VERSION
        cfg.setdefault("torch_dtype", "float32")
    else:
        cfg["_class_name"] = cls_name
        cfg["_diffusers_version"] = DIFFUSERS_VERSION
    return cfg


def save_component(module, config, out_dir):
    """Writes one component folder. `config` is the dict the module was built from (or None
    to use module.config). Weights are stored as F32 unless the module holds other dtypes."""
    os.makedirs(out_dir, exist_ok=True)
    cls_name = type(module).__name__
    cfg = _json_config(cls_name, dict(getattr(module, "config", {}) or {}, **(config or {})))
    if isinstance(module, CLIPTokenizer):
        module.save(out_dir)
        return
    if isinstance(module, CLIPImageProcessor):
        cfg.pop("_class_name", None)
        cfg.pop("_diffusers_version", None)
        cfg.pop("transformers_version", None)
        cfg.pop("architectures", None)
        cfg.pop("torch_dtype", None)
        cfg["image_processor_type"] = "CLIPImageProcessor"
        with open(os.path.join(out_dir, "preprocessor_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        return
    if isinstance(module, UnCLIPScheduler):
        path = os.path.join(out_dir, "scheduler_config.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        return
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    fn = "model.safetensors" if cls_name in TRANSFORMERS_CLASSES else \
        "diffusion_pytorch_model.safetensors"
    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    st.write(os.path.join(out_dir, fn), sd, {"format": "pt"})


def save_model_index(out_dir, components, pipeline="UnCLIPPipeline"):
    """components: dict name -> class name (e.g. {"prior": "PriorTransformer", ...})."""
    idx = {"_class_name": pipeline, "_diffusers_version": DIFFUSERS_VERSION}
    for name, cls_name in components.items():
        idx[name] = [LIBRARY[cls_name], cls_name]
    with open(os.path.join(out_dir, "model_index.json"), "w", encoding="utf-8") as f:
        json.dump(idx, f, indent=2, sort_keys=True)
        f.write("\n")
