"""DragFlow's edit plan: everything about an edit that follows from the regions, the latent size
and the settings, computed and checked before any model call (pure torch)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch

from .affine import Region, background_edit_mask
from .dragflow import (
    destination_mask,
    feature_grid_hw,
    mean_drag_distance,
    near_tokens,
    region_edit_mask,
    scale_level,
    vacated_mask,
)


@dataclass(frozen=True, eq=False)
class DragFlowPlan:
    """A validated DragFlow edit on a latent of ``latent_hw`` (h, w latent cells)."""

    regions: tuple                      # core.affine.Region, image pixels
    latent_hw: tuple[int, int]
    edit_mask: torch.Tensor             # M_bg, bool (h, w)
    feature_hw: tuple[int, int]         # the grid the features are compared on
    token_grid: bool                    # features on the model's token grid (ours) vs resized (paper)
    kv_scope: Optional[torch.Tensor]    # image tokens whose K/V are injected; None = all
    weights: Optional[list]             # None: adaptive region weights
    hole: Optional[torch.Tensor]        # vacated cells held while optimising (hole_fill surroundings)
    fresh: Optional[torch.Tensor]       # the part of the hole re-drawn with fresh noise (hole_margin)
    n_iter: int                         # TRANSPORT + INTENSIFY iterations


def kv_scope_tokens(edit_mask: torch.Tensor, scope: str) -> Optional[torch.Tensor]:
    """Image tokens whose K/V the edited branch takes from the inversion (bool (h/2 · w/2,), FLUX's
    token order) for ``kv_scope``: "all" → None (every token, the paper); "outside_edit" [ours] →
    the tokens with no latent pixel in M_bg, the background the hard constraint keeps anyway.
    Inside M_bg — the regions, their destinations, the path between and the vacated area — the
    edited branch keeps its own K/V, so the source layout is never written over the destination."""
    if scope == "all":
        return None
    m = edit_mask.bool()
    h, w = m.shape[-2:]
    touched = m.reshape(h // 2, 2, w // 2, 2).any(3).any(1)
    return (~touched).reshape(-1)


def plan_dragflow(regions: Sequence[Region], latent_hw: tuple[int, int], *, edit_region: str,
                  edit_dilate: int, feature_scale: float, scale_rule: str, feature_grid: str,
                  kv_scope: str, adaptive_weights: bool, hole_fill: str, n_transport: int,
                  n_intensify: int, hole_margin: int = -1) -> DragFlowPlan:
    """The edit's masks, feature grid, K/V scope and region weights (settings fields by keyword,
    as ``pipelines.dragflow_inputs.DragFlowSettings`` names them). ``hole_margin`` < 0: the whole
    hole is re-drawn with fresh noise."""
    h, w = latent_hw
    H, W = h * 8, w * 8
    affines = [r.affine(1.0) for r in regions]
    masks = [r.mask for r in regions]
    if edit_region == "rect":
        edit_mask = background_edit_mask(masks, affines, H, W, out_hw=(h, w))
    else:
        edit_mask = region_edit_mask(masks, affines, (h, w), edit_dilate)
    token_grid = feature_grid == "token"
    if token_grid:
        fhw = (h // 2, w // 2)
    else:
        level = float(feature_scale) if feature_scale > 0 else scale_level(
            (H, W), mean_drag_distance(regions, (H, W)), use_adaptive=scale_rule == "adaptive")
        fhw = feature_grid_hw((H, W), level)
    # None: optimise_latent's adaptive weights w_k ∝ clamp(1 + 0.5/(s_k + 0.1), 1, 5)
    weights = None if adaptive_weights else [1.0 / len(regions)] * len(regions)
    hole = vacated_mask(regions, (h, w)) if hole_fill == "surroundings" else None
    # fresh noise only in the hole's cells farther than hole_margin tokens from a moved copy: a
    # token that mixes fresh noise with an object's latent is neither, and small objects dissolved
    fresh = None if hole is None else hole & ~near_tokens(destination_mask(regions, (h, w)), hole_margin)
    return DragFlowPlan(regions=tuple(regions), latent_hw=(h, w), edit_mask=edit_mask, feature_hw=fhw,
                        token_grid=token_grid, kv_scope=kv_scope_tokens(edit_mask, kv_scope),
                        weights=weights, hole=hole, fresh=fresh, n_iter=n_transport + n_intensify)
