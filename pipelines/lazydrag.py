"""LazyDrag (arXiv 2509.12203): correspondence map → Uni-Inv inversion caching what the map needs →
attention control on a model clone (``attention_patches/lazydrag.py``) → sampling back.

The nodes expose the steps (Correspondence Map, Invert, LazyDrag Patch, Sample From Inversion);
:func:`run_lazydrag` chains them for scripts, bench and tests with the nodes' defaults."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..attention_patches.lazydrag import BACKGROUND_QUERY, CACHE_NAME, LazyDragControl, LazyDragPlan
from ..attention_patches.router import patch_model
from ..core.correspondence import build_correspondence, compose_initial_latent
from ..core.instructions import parse_instructions, pixel_mask_to_token_mask, to_token_space
from .common import FluxDragInputError, check_latent, mask_at, require_flux
from .inversion import run_inversion, run_sampling

NODE_MAP = "FluxDrag Correspondence Map"
NODE_PATCH = "FluxDrag LazyDrag Patch"


def build_plan(drag_instructions, latent_samples: torch.Tensor, mask=None, transition_width=1,
               activation=0.8, seed=0, background_query="live") -> LazyDragPlan:
    check_latent(latent_samples, NODE_MAP)
    H, W = latent_samples.shape[-2] * 8, latent_samples.shape[-1] * 8
    try:
        ins = parse_instructions(drag_instructions)
        td = to_token_space(ins, (H, W))
        region = None
        if mask is not None:
            region = pixel_mask_to_token_mask(mask_at(mask, H, W))
        cmap = build_correspondence(td, td.grid_hw, region_mask=region, transition_width=transition_width)
    except ValueError as e:
        raise FluxDragInputError(f"{NODE_MAP}: {e}") from None
    if background_query not in BACKGROUND_QUERY:
        raise FluxDragInputError(f"{NODE_MAP}: input 'background_query' {background_query!r} unknown; "
                                 f"choose {', '.join(BACKGROUND_QUERY)}.")
    return LazyDragPlan(cmap, activation=activation, seed=seed, background_query=background_query)


def inversion_trajectory(inversion) -> dict:
    """sigma_key → model-space latent of the inversion at that sigma (σ = 0: the source)."""
    from ..core.cache import sigma_key

    inv = inversion.sigmas.flip(0).tolist()
    out = {sigma_key(s): z for s, z in zip(inv[1:], inversion.trajectory)}
    if inversion.z_0 is not None:
        out[sigma_key(0.0)] = inversion.z_0.detach().cpu()
    return out


def apply_lazydrag(model, inversion, plan: LazyDragPlan, background=True, identity=True,
                   refine=True, mask_text=True, h_max=0.8, hold=0.2, end=0.6, background_lock=1.0):
    """(patched MODEL, initial model-space latent) for a LazyDrag edit."""
    require_flux(model, NODE_PATCH)
    if not isinstance(plan, LazyDragPlan):
        raise FluxDragInputError(f"{NODE_PATCH}: input 'map' must come from {NODE_MAP}.")
    traj = inversion_trajectory(inversion) if background_lock > 0 else None
    if inversion.info.get("cache_policy") == "paired":
        if tuple(inversion.z_T.shape[-2:]) != tuple(2 * g for g in plan.cmap.grid_hw):
            raise FluxDragInputError(f"{NODE_PATCH}: input 'map' was built for another image size "
                                     f"than the inversion's latent; rebuild it from that latent.")
        ctrl = LazyDragControl(plan, None, inversion.sigmas, background, identity, refine, mask_text,
                               h_max, hold, end, paired_batch=int(inversion.z_T.shape[0]),
                               background_lock=background_lock, trajectory=traj)
        z0 = compose_initial_latent(inversion.z_T, plan.cmap, plan.seed)
        return patch_model(model, ctrl), z0, ctrl
    cache = inversion.caches.get(CACHE_NAME)
    if cache is None or inversion.info.get("edit_map") is not plan:
        raise FluxDragInputError(
            f"{NODE_PATCH}: the inversion holds no LazyDrag cache for this map. Connect the same "
            f"'map' output of {NODE_MAP} to FluxDrag Invert's 'edit_map' input.")
    if cache.freed:
        raise FluxDragInputError(
            f"{NODE_PATCH}: the inversion's cache was freed by an earlier sampling; queue again "
            f"(FluxDrag Invert re-runs) or set keep_cache on the sampler.")
    ctrl = LazyDragControl(plan, cache, inversion.sigmas, background, identity, refine, mask_text,
                           h_max, hold, end, background_lock=background_lock,
                           trajectory=traj)
    z0 = compose_initial_latent(inversion.z_T, plan.cmap, plan.seed)
    return patch_model(model, ctrl), z0, ctrl


@dataclass
class LazyDragSettings:
    """The four nodes' inputs, with their defaults (inversion: Uni-Inv, as LazyDrag)."""

    steps: int = 28
    solver: str = "uni_inv"
    strength: float = 1.0
    scheduler: str = "simple"
    inversion_guidance: float = 1.0
    transition_width: int = 1
    activation: float = 0.8
    seed: int = 0
    background_query: str = "live"
    background: bool = True
    identity: bool = True
    refine: bool = True
    mask_text: bool = True
    h_max: float = 0.8
    hold: float = 0.2
    end: float = 0.6
    background_lock: float = 1.0
    cache_policy: str = "cpu"
    cache_budget_gb: float = 0.0


def run_lazydrag(model, latent: dict, drag_instructions, positive, settings: LazyDragSettings | None = None,
                 mask=None) -> torch.Tensor:
    """One LazyDrag edit as the node chain runs it; returns the model-space edited latent."""
    s = settings or LazyDragSettings()
    plan = build_plan(drag_instructions, latent["samples"], mask, s.transition_width, s.activation,
                      s.seed, s.background_query)
    rec = run_inversion(model, latent, positive, s.steps, s.solver, s.strength, s.scheduler,
                        s.inversion_guidance, plan, s.cache_policy, s.cache_budget_gb)
    patched, z0, _ = apply_lazydrag(model, rec, plan, s.background, s.identity, s.refine, s.mask_text,
                                    s.h_max, s.hold, s.end, s.background_lock)
    return run_sampling(patched, rec, positive, start=z0)
