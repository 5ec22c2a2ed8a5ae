"""Find a ComfyUI checkout and build tiny FLUX-architecture models through ComfyUI's own classes.

Used by tier-2 tests, ``bench/`` and ``scripts/``. Nothing here installs ComfyUI; it only looks
for one at ``$COMFYUI_PATH`` or ``~/comfy/ComfyUI`` (comfy-cli's default location).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

TINY_FLUX = dict(
    image_model="flux", guidance_embed=True, in_channels=16, out_channels=16, vec_in_dim=32,
    context_in_dim=64, hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2,
    depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True,
    txt_ids_dims=[],
)


def find_comfyui() -> Path | None:
    """Return the ComfyUI checkout to test against, or None when there is none."""
    env = os.environ.get("COMFYUI_PATH")
    candidates = [Path(env)] if env else []
    candidates.append(Path.home() / "comfy" / "ComfyUI")
    for c in candidates:
        if (c / "main.py").is_file() and (c / "comfy").is_dir():
            return c.resolve()
    return None


def import_comfy(path: Path | None = None, cpu: bool = True) -> Path:
    """Put ComfyUI first on ``sys.path`` and select the CPU before ``comfy.model_management`` loads."""
    path = path or find_comfyui()
    if path is None:
        raise RuntimeError("ComfyUI not found: set COMFYUI_PATH or put a checkout at ~/comfy/ComfyUI")
    p = str(path)
    if p in sys.path:
        sys.path.remove(p)
    sys.path.insert(0, p)
    import comfy.cli_args

    if cpu:
        comfy.cli_args.args.cpu = True
    return path


def build_flux(config: dict | None = None, seed: int = 0, init_std: float = 0.05,
               state_dict: dict | None = None, dtype=None):
    """A FLUX-architecture MODEL (ModelPatcher) built through ``comfy.supported_models.Flux``.

    Random init from ComfyUI is near zero, so weights are re-initialised with a seeded normal
    (``init_std``) unless ``state_dict`` is given.
    """
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    cfg = dict(TINY_FLUX)
    cfg.update(config or {})
    mc = comfy.supported_models.Flux(cfg)
    mc.set_inference_dtype(dtype or torch.float32, None)
    base = mc.get_model({}, device="cpu")
    dm = base.diffusion_model
    if state_dict is not None:
        dm.load_state_dict(state_dict)
    else:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _, p in sorted(dm.named_parameters()):
                p.copy_(torch.randn(p.shape, generator=g) * init_std)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


def tiny_conditioning(config: dict | None = None, seed: int = 0, tokens: int = 8,
                      guidance: float = 3.5):
    """A FLUX CONDITIONING list matching ``build_flux``'s text/vector sizes."""
    import torch

    cfg = dict(TINY_FLUX)
    cfg.update(config or {})
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(1, tokens, cfg["context_in_dim"], generator=g)
    pooled = torch.randn(1, cfg["vec_in_dim"], generator=g)
    return [[ctx, {"pooled_output": pooled, "guidance": guidance}]]


TINY_SD15 = dict(
    use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True,
    legacy=False, adm_in_channels=None, in_channels=4, model_channels=32, num_res_blocks=[1, 1],
    transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1], channel_mult=[1, 2],
    transformer_depth_middle=1, use_linear_in_transformer=False, context_dim=64, num_heads=2,
    num_head_channels=-1, dtype=None, disable_self_attentions=None,
    num_attention_blocks=None, use_temporal_attention=False, use_temporal_resblock=False,
)


def build_sd15(config: dict | None = None, seed: int = 0, init_std: float = 0.05):
    """A tiny SD1.x UNet MODEL built through ``comfy.supported_models.SD15``."""
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    cfg = dict(TINY_SD15)
    cfg.update(config or {})
    mc = comfy.supported_models.SD15(cfg)
    mc.set_inference_dtype(torch.float32, None)
    base = mc.get_model({}, device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(base.diffusion_model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * init_std)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)
