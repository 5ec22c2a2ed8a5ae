"""LazyDrag (arXiv 2509.12203): correspondence map → Uni-Inv inversion caching what the map needs →
attention control on a model clone (``attention_patches/lazydrag.py``) → sampling back.

The nodes expose the steps (Correspondence Map, Invert, LazyDrag Patch, Sample From Inversion);
:func:`run_lazydrag` chains them for scripts, bench and tests with the nodes' defaults."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..attention_patches.lazydrag import BACKGROUND_QUERY, CACHE_NAME, LazyDragControl, LazyDragPlan
from ..attention_patches.router import patch_model
from ..core.correspondence import (
    build_correspondence,
    compose_initial_latent,
    default_editable_region,
    latent_region,
)
from ..core.instructions import parse_instructions, pixel_mask_to_token_mask, to_token_space
from .common import FluxDragInputError, check_latent, mask_at, require_flux
from .inversion import run_inversion, run_sampling

NODE_MAP = "FluxDrag Correspondence Map"
NODE_PATCH = "FluxDrag LazyDrag Patch"


# Departures from the paper (docs/lazydrag.md); each input's paper value is named in its tooltip.
MAP_DEFAULTS = {"resolution": "pixel", "mapping": "backward", "rigid_tolerance": 0.2,
                "gate_reference": 512}
MAP_PAPER = {"resolution": "token", "mapping": "forward", "rigid_tolerance": 0.0,
             "gate_reference": 0}
RESOLUTIONS = ("pixel", "token")
MAPPINGS = ("backward", "forward")


def build_plan(drag_instructions, latent_samples: torch.Tensor, mask=None, transition_width=1,
               activation=0.8, seed=0, background_query="live", resolution="pixel",
               mapping="backward", rigid_tolerance=0.2, gate_reference=512) -> LazyDragPlan:
    check_latent(latent_samples, NODE_MAP)
    H, W = latent_samples.shape[-2] * 8, latent_samples.shape[-1] * 8
    for name, val, opts in (("resolution", resolution, RESOLUTIONS), ("mapping", mapping, MAPPINGS)):
        if val not in opts:
            raise FluxDragInputError(f"{NODE_MAP}: input '{name}' {val!r} unknown; choose "
                                     f"{', '.join(opts)}.")
    try:
        ins = parse_instructions(drag_instructions)
        td = to_token_space(ins, (H, W))
        region = pixel = None
        px = mask_at(mask, H, W) if mask is not None else ins.mask
        if mask is not None:
            region = pixel_mask_to_token_mask(px)
        if resolution == "pixel":
            if px is not None:
                pixel = latent_region(px, (H // 8, W // 8))
            else:   # the default discs on the token grid, at latent resolution
                pixel = default_editable_region(td, td.grid_hw).repeat_interleave(2, 0) \
                    .repeat_interleave(2, 1)
        cmap = build_correspondence(td, td.grid_hw, region_mask=region, transition_width=transition_width,
                                    gate_reference=gate_reference, backward=mapping == "backward",
                                    rigid_tolerance=rigid_tolerance, pixel_mask=pixel)
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


# content lock: every step, like the background lock — the moved content follows its sources'
# inversion path to the end, so it arrives as exact as the background stays (a free step
# re-generates it: where the inversion is not exact the object drifts, issue 18's identity error).
# hole lock: the first 80 % of the steps, the paper's activation fraction for its own identity
# controls; the model alone shapes the vacated area's last 20 % (blending, detail).
PATCH_DEFAULTS = {"content_lock": 1.0, "hole_lock": 0.8, "lock_margin": 0}
PATCH_PAPER = {"content_lock": 0.0, "hole_lock": 0.0, "lock_margin": 0}


def apply_lazydrag(model, inversion, plan: LazyDragPlan, background=True, identity=True,
                   refine=True, mask_text=True, h_max=0.8, hold=0.2, end=0.6, background_lock=1.0,
                   content_lock=PATCH_DEFAULTS["content_lock"], hole_lock=PATCH_DEFAULTS["hole_lock"],
                   lock_margin=PATCH_DEFAULTS["lock_margin"]):
    """(patched MODEL, initial model-space latent) for a LazyDrag edit."""
    require_flux(model, NODE_PATCH)
    if not isinstance(plan, LazyDragPlan):
        raise FluxDragInputError(f"{NODE_PATCH}: input 'map' must come from {NODE_MAP}.")
    locks = dict(content_lock=content_lock, hole_lock=hole_lock, lock_margin=lock_margin)
    traj = inversion_trajectory(inversion) if max(background_lock, content_lock, hole_lock) > 0 else None
    if inversion.cache_policy == "paired":
        if tuple(inversion.z_T.shape[-2:]) != tuple(2 * g for g in plan.cmap.grid_hw):
            raise FluxDragInputError(f"{NODE_PATCH}: input 'map' was built for another image size "
                                     f"than the inversion's latent; rebuild it from that latent.")
        ctrl = LazyDragControl(plan, None, inversion.sigmas, background, identity, refine, mask_text,
                               h_max, hold, end, paired_batch=int(inversion.z_T.shape[0]),
                               background_lock=background_lock, trajectory=traj, **locks)
        z0 = compose_initial_latent(inversion.z_T, plan.cmap, plan.seed)
        return patch_model(model, ctrl), z0, ctrl
    cache = inversion.caches.get(CACHE_NAME)
    if cache is None or inversion.edit_map is not plan:
        raise FluxDragInputError(
            f"{NODE_PATCH}: the inversion holds no LazyDrag cache for this map. Connect the same "
            f"'map' output of {NODE_MAP} to FluxDrag Invert's 'edit_map' input.")
    if cache.freed:  # only a caller that freed the record itself gets here
        raise FluxDragInputError(
            f"{NODE_PATCH}: the inversion's cache was freed (free_caches); run FluxDrag Invert again.")
    ctrl = LazyDragControl(plan, cache, inversion.sigmas, background, identity, refine, mask_text,
                           h_max, hold, end, background_lock=background_lock,
                           trajectory=traj, **locks)
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
    resolution: str = MAP_DEFAULTS["resolution"]
    mapping: str = MAP_DEFAULTS["mapping"]
    rigid_tolerance: float = MAP_DEFAULTS["rigid_tolerance"]
    gate_reference: int = MAP_DEFAULTS["gate_reference"]
    background: bool = True
    identity: bool = True
    refine: bool = True
    mask_text: bool = True
    h_max: float = 0.8
    hold: float = 0.2
    end: float = 0.6
    background_lock: float = 1.0
    content_lock: float = PATCH_DEFAULTS["content_lock"]
    hole_lock: float = PATCH_DEFAULTS["hole_lock"]
    lock_margin: int = PATCH_DEFAULTS["lock_margin"]
    cache_policy: str = "cpu"
    cache_budget_gb: float = 0.0


def run_lazydrag(model, latent: dict, drag_instructions, positive, settings: LazyDragSettings | None = None,
                 mask=None) -> torch.Tensor:
    """One LazyDrag edit as the node chain runs it; returns the model-space edited latent."""
    s = settings or LazyDragSettings()
    plan = build_plan(drag_instructions, latent["samples"], mask, s.transition_width, s.activation,
                      s.seed, s.background_query, s.resolution, s.mapping, s.rigid_tolerance,
                      s.gate_reference)
    rec = run_inversion(model, latent, positive, s.steps, s.solver, s.strength, s.scheduler,
                        s.inversion_guidance, plan, s.cache_policy, s.cache_budget_gb)
    patched, z0, _ = apply_lazydrag(model, rec, plan, s.background, s.identity, s.refine, s.mask_text,
                                    s.h_max, s.hold, s.end, s.background_lock, s.content_lock,
                                    s.hole_lock, s.lock_margin)
    return run_sampling(patched, rec, positive, start=z0)
