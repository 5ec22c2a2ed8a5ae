"""ContextDrag on FLUX.1 Kontext (arXiv 2512.19604 §3.2–3.3): the reverse map (LRM) from the
drags on the reference latent's token grid, and the two MODEL patches (Context Token Injection,
Position-Consistent Attention; ``attention_patches/contextdrag.py``) on clones of the MODEL.
Sampling is ComfyUI's own (the Kontext graph with a ReferenceLatent)."""
from __future__ import annotations

import warnings

import torch

from ..attention_patches.contextdrag import ContextTokenInjection, PositionConsistentAttention, parse_block_list
from ..attention_patches.router import patch_model
from ..core.drag_sets import split_drags
from ..core.instructions import TOKEN_PX, parse_instructions, pixel_mask_to_token_mask, to_token_space
from ..core.reverse_mapping import ReverseMap, build_reverse_map
from .common import FluxDragInputError, check_latent, mask_at, require_flux

NODE_MAP = "FluxDrag Reverse Mapping"
NODE_CTI = "FluxDrag Context Token Injection"
NODE_PCA = "FluxDrag Position-Consistent Attention"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def require_kontext_flux(model, node: str, input_name: str = "model"):
    """The FLUX.1 diffusion module of ``model`` (Kontext [dev] loads as plain FLUX.1), or a
    clear error for other families and for FLUX.2 / Fill / Canny / Depth variants."""
    dm = require_flux(model, node, input_name)
    uc = dict(getattr(getattr(model.model, "model_config", None), "unet_config", {}) or {})
    kind = uc.get("image_model", "flux")
    c_in, c_out = uc.get("in_channels", 16), uc.get("out_channels", 16)
    if kind != "flux" or int(getattr(dm, "patch_size", 2)) != 2 or c_in != c_out:
        what = (f"a {kind} model" if kind != "flux"
                else f"a FLUX.1 variant with {c_in} input channels (Fill/Canny/Depth)")
        raise FluxDragInputError(
            f"{node}: input '{input_name}' is {what}, but ContextDrag needs FLUX.1 Kontext [dev] "
            f"(flux1-kontext-dev.safetensors with UNETLoader; fp8/GGUF fine) sampled with a "
            f"ReferenceLatent. Connect a Kontext model.")
    return dm


def _require_map(rmap, node: str) -> ReverseMap:
    if not isinstance(rmap, ReverseMap):
        raise FluxDragInputError(f"{node}: input 'map' must come from {NODE_MAP} "
                                 f"(got {type(rmap).__name__}).")
    return rmap


def _blocks(dm, double_blocks: str, single_blocks: str, node: str) -> dict:
    try:
        return {
            "double_blocks": parse_block_list(double_blocks, len(dm.double_blocks), "double_blocks"),
            "single_blocks": parse_block_list(single_blocks, len(dm.single_blocks), "single_blocks"),
        }
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input {e}") from None


def _window(start: float, end: float, node: str) -> dict:
    if not 0.0 <= start <= end <= 1.0:
        raise FluxDragInputError(f"{node}: inputs 'start' ({start}) and 'end' ({end}) must satisfy "
                                 f"0 <= start <= end <= 1 (fractions of the sampling steps).")
    return {"start": float(start), "end": float(end)}


def build_map(drag_instructions, latent_samples: torch.Tensor, mask=None, anchor: str = "target",
              hull: str = "component", power: float = 2.0) -> ReverseMap:
    """LRM on the token grid of ``latent_samples`` (the reference latent)."""
    check_latent(latent_samples, NODE_MAP)
    if latent_samples.shape[0] > 1:
        warnings.warn(f"input 'latent' has a batch of {latent_samples.shape[0]}: ContextDrag edits with "
                      f"one map, and Kontext's sampler makes as many images as its own empty latent "
                      f"holds (usually 1) — the other references are not edited one by one; queue "
                      f"each image separately", stacklevel=2)
    H, W = latent_samples.shape[-2] * 8, latent_samples.shape[-1] * 8
    try:
        ins = split_drags(parse_instructions(drag_instructions), TOKEN_PX / 2, "ContextDrag",
                          "half a token", stacklevel=3).instructions
        td = to_token_space(ins, (H, W))  # an anchor is a point mapped to itself
        region = td.mask
        if mask is not None:
            region = pixel_mask_to_token_mask(mask_at(mask, H, W))
        if region is not None and not region.any():
            raise ValueError("the editable mask is empty; draw the region to move or leave it out")
        return build_reverse_map(td.handles, td.targets, region, td.grid_hw, power=power, anchor=anchor,
                                 hull=hull != "none", hull_groups="all" if hull == "all" else "component")
    except ValueError as e:
        raise FluxDragInputError(f"{NODE_MAP}: {e}") from None


def apply_cti(model, rmap, mode="replace", visible_to="image", double_blocks="all", single_blocks="all",
              start=0.0, end=1.0, reference_index=0):
    """(patched MODEL clone, controller)."""
    dm = require_kontext_flux(model, NODE_CTI)
    rmap = _require_map(rmap, NODE_CTI)
    ctrl = ContextTokenInjection(rmap, mode=mode, visible_to=visible_to, reference_index=reference_index,
                                 **_blocks(dm, double_blocks, single_blocks, NODE_CTI), **_window(start, end, NODE_CTI))
    return patch_model(model, ctrl), ctrl


def apply_pca(model, rmap, rewrite_ids=True, hide="vacated_overlap", hide_from="image", collision="mean",
              double_blocks="all", single_blocks="all", start=0.0, end=1.0, reference_index=0):
    """(patched MODEL clone, controller)."""
    dm = require_kontext_flux(model, NODE_PCA)
    rmap = _require_map(rmap, NODE_PCA)
    ctrl = PositionConsistentAttention(rmap, rewrite_ids=rewrite_ids, hide=hide, hide_from=hide_from,
                                       collision=collision, reference_index=reference_index,
                                       **_blocks(dm, double_blocks, single_blocks, NODE_PCA),
                                       **_window(start, end, NODE_PCA))
    return patch_model(model, ctrl), ctrl
