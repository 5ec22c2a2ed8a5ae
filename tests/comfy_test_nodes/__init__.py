"""TEST-ONLY ComfyUI node pack: loaders that stand in for real FLUX weights.

Loaded by ``tests/comfy_server.py`` next to the real pack (never shipped to users). Each loader
takes the same input names as the ComfyUI loader it replaces (``UNETLoader``, ``DualCLIPLoader``,
``VAELoader``), as plain strings, so a test swaps only ``class_type`` in a shipped API workflow:

- ``FluxDragTestTinyUNET``: a tiny FLUX-architecture MODEL built through
  ``comfy.supported_models.Flux`` (the repository's ``tools/comfy_env.build_flux``: the test server
  runs with the repository root on ``PYTHONPATH``, ``tests/comfy_server.py``).
- ``FluxDragTestTinyCLIP``: a CLIP stand-in whose conditioning (context (1, 8, 64), pooled (1, 32))
  is a deterministic function of the prompt text, so ``CLIPTextEncode`` / ``FluxGuidance`` run
  unchanged.
- ``FluxDragTestTinyVAE``: a real ``comfy.sd.VAE`` with 16 latent channels and 8x downscale, built
  from a seeded state dict of a small KL autoencoder (ch 32, no residual blocks per level).
  ComfyUI's state-dict detection fixes ch 128 for FLUX-style VAEs (≈ 7 s per 256² round trip on
  CPU), so the VAE is built through ``comfy.sd.VAE``'s explicit ``config`` route instead.
- ``FluxDragTestTinySD15Checkpoint``: stands in for ``CheckpointLoaderSimple`` (input
  ``ckpt_name``): MODEL = a tiny SD1.x UNet through ``comfy.supported_models.SD15``
  (``tools/comfy_env.build_sd15``, context_dim 64), CLIP = the same text stand-in with SD's
  (1, 77, 64) context, VAE = the small VAE above with 4 latent channels.
"""
from __future__ import annotations

import hashlib

import torch

from tools import comfy_env as _ENV

TINY_FLUX = _ENV.TINY_FLUX
TEXT_TOKENS = 8
CATEGORY = "FluxDragTest"

# small KL autoencoder: 16 latent channels, 3 downsamples (/8), GroupNorm(32) needs ch >= 32
VAE_DDCONFIG = {
    "double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3,
    "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 0, "attn_resolutions": [],
    "dropout": 0.0,
}


def _text_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


class TinyFluxCLIP:
    """Duck-typed CLIP: ``tokenize`` + ``encode_from_tokens_scheduled`` like ``comfy.sd.CLIP``."""

    def __init__(self, context_dim: int = TINY_FLUX["context_in_dim"],
                 pooled_dim: int = TINY_FLUX["vec_in_dim"], tokens: int = TEXT_TOKENS):
        self.context_dim, self.pooled_dim, self.tokens = context_dim, pooled_dim, tokens

    def tokenize(self, text: str, return_word_ids: bool = False, **kwargs) -> dict:
        return {"text": text}

    def encode(self, text: str):
        g = torch.Generator().manual_seed(_text_seed(text))
        ctx = torch.randn(1, self.tokens, self.context_dim, generator=g)
        pooled = torch.randn(1, self.pooled_dim, generator=g)
        return ctx, pooled

    def encode_from_tokens_scheduled(self, tokens: dict, unprojected: bool = False,
                                     add_dict: dict | None = None, show_pbar: bool = True) -> list:
        ctx, pooled = self.encode(tokens["text"])
        return [[ctx, {"pooled_output": pooled, **(add_dict or {})}]]

    def encode_from_tokens(self, tokens: dict, return_pooled: bool = False, return_dict: bool = False):
        ctx, pooled = self.encode(tokens["text"])
        if return_dict:
            return {"cond": ctx, "pooled_output": pooled}
        return (ctx, pooled) if return_pooled else ctx


def _vae_config(channels: int) -> dict:
    return dict(VAE_DDCONFIG, z_channels=channels)


def tiny_vae_state_dict(seed: int = 0, channels: int = 16) -> dict:
    """Seeded weights for ``VAE_DDCONFIG`` (ComfyUI's ops skip init, so set every tensor)."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    shapes = AutoencoderKL(ddconfig=_vae_config(channels), embed_dim=channels).state_dict()
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in sorted(shapes.items()):
        if v.ndim >= 2:  # conv / linear: fan-in scaled normal keeps activations O(1)
            sd[k] = torch.randn(v.shape, generator=g) / v[0].numel() ** 0.5
        elif k.endswith("weight"):  # norm scales
            sd[k] = torch.ones(v.shape)
        else:
            sd[k] = torch.zeros(v.shape)
    return sd


def build_tiny_vae(seed: int = 0, channels: int = 16):
    import comfy.sd

    vae = comfy.sd.VAE(sd=tiny_vae_state_dict(seed, channels),
                       config={"params": {"ddconfig": _vae_config(channels), "embed_dim": channels}})
    vae.latent_channels = channels  # the config route keeps the SD default of 4
    return vae


def _names(*names, optional: tuple = ()) -> dict:
    out = {"required": {n: ("STRING", {"default": d}) for n, d in names}}
    if optional:
        out["optional"] = {n: ("STRING", {"default": d}) for n, d in optional}
    return out


class FluxDragTestTinyUNET:
    """Stands in for UNETLoader: a tiny random FLUX (hidden 64, 2+2 blocks)."""

    @classmethod
    def INPUT_TYPES(cls):
        return _names(("unet_name", "flux1-dev.safetensors"), ("weight_dtype", "default"))

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, unet_name: str, weight_dtype: str = "default"):
        return (_ENV.build_flux(seed=_text_seed(unet_name) % 2 ** 31),)


class FluxDragTestTinyCLIP:
    """Stands in for DualCLIPLoader: text → deterministic FLUX conditioning."""

    @classmethod
    def INPUT_TYPES(cls):
        return _names(("clip_name1", "clip_l.safetensors"), ("clip_name2", "t5xxl_fp16.safetensors"),
                      ("type", "flux"), optional=(("device", "default"),))

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, clip_name1: str, clip_name2: str, type: str = "flux", device: str = "default"):
        return (TinyFluxCLIP(),)


class FluxDragTestTinyVAE:
    """Stands in for VAELoader: a small real comfy.sd.VAE with 16 latent channels."""

    @classmethod
    def INPUT_TYPES(cls):
        return _names(("vae_name", "ae.safetensors"))

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, vae_name: str):
        return (build_tiny_vae(),)


SD15_CONTEXT_DIM = _ENV.TINY_SD15["context_dim"]
SD15_TOKENS = 77


class FluxDragTestTinySD15Checkpoint:
    """Stands in for CheckpointLoaderSimple: tiny SD1.x UNet, (1, 77, 64) text stand-in, 4-ch VAE."""

    @classmethod
    def INPUT_TYPES(cls):
        return _names(("ckpt_name", "v1-5-pruned-emaonly.safetensors"))

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, ckpt_name: str):
        model = _ENV.build_sd15(seed=_text_seed(ckpt_name) % 2 ** 31)
        clip = TinyFluxCLIP(context_dim=SD15_CONTEXT_DIM, pooled_dim=SD15_CONTEXT_DIM, tokens=SD15_TOKENS)
        return (model, clip, build_tiny_vae(channels=4))


NODE_CLASS_MAPPINGS = {
    "FluxDragTestTinyUNET": FluxDragTestTinyUNET,
    "FluxDragTestTinyCLIP": FluxDragTestTinyCLIP,
    "FluxDragTestTinyVAE": FluxDragTestTinyVAE,
    "FluxDragTestTinySD15Checkpoint": FluxDragTestTinySD15Checkpoint,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FluxDragTestTinyUNET": "FluxDrag Test Tiny UNET (test only)",
    "FluxDragTestTinyCLIP": "FluxDrag Test Tiny CLIP (test only)",
    "FluxDragTestTinyVAE": "FluxDrag Test Tiny VAE (test only)",
    "FluxDragTestTinySD15Checkpoint": "FluxDrag Test Tiny SD1.5 Checkpoint (test only)",
}
