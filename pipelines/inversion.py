"""Inversion and sampling back on FLUX: FireFlow / Uni-Inv / Euler through ComfyUI's guider and
``KSAMPLER`` (``attention_patches/sampling.py``), with an edit map's capture controllers on the
inverting model and its token cache in the returned :class:`InversionRecord`.

The record is a node output: :func:`run_sampling` reads it and changes nothing in it (its cache is
not freed there), so one Invert feeds several samplers and a cached Invert output re-samples the
same. The cache's memory goes with the record; an inversion that fails frees what it captured."""
from __future__ import annotations

import warnings

import torch

from ..attention_patches.router import patch_model, router_of_model
from ..attention_patches.sampling import solver_sampler
from ..core import solvers
from ..core.cache import TokenCache, format_bytes
from ..core.inversion import InversionRecord
from .common import (
    FluxDragInputError,
    StepProgress,
    check_batch,
    check_latent,
    guider,
    require_flux,
    sampling_sigmas,
)

SCHEDULERS = ["simple", "beta", "normal", "sgm_uniform", "linear_quadratic", "kl_optimal"]
SAMPLE_SOLVERS = ["auto", *solvers.SOLVERS]


#: share of the host RAM available at the start that an automatic cpu/fp8 cache budget allows
AUTO_BUDGET_SHARE = 0.8


def cache_budget(policy: str, budget_gb: float) -> tuple[int | None, str]:
    """(bytes or None, label) for a cache: ``budget_gb`` > 0 is taken as given; 0 means automatic:
    a host-RAM cache (cpu, fp8) may use ``AUTO_BUDGET_SHARE`` of the RAM available now, so a
    too-large edit is refused up front with its estimated need instead of exhausting the machine
    (which takes the whole ComfyUI process down); a device cache has no automatic limit (a VRAM
    shortfall is an ordinary, recoverable out-of-memory error)."""
    if budget_gb > 0:
        return int(budget_gb * 1024 ** 3), "cache_budget_gb"
    if policy not in ("cpu", "fp8"):
        return None, ""
    import psutil

    avail = psutil.virtual_memory().available
    return int(avail * AUTO_BUDGET_SHARE), (
        f"automatic: {AUTO_BUDGET_SHARE:.0%} of the {format_bytes(avail)} of RAM available; "
        f"set cache_budget_gb to override")


@torch.no_grad()   # direct Python callers on grad-requiring weights would otherwise keep autograd graphs
def run_inversion(model, latent: dict, positive, steps: int = 28, solver: str = "fireflow",
                  strength: float = 1.0, scheduler: str = "simple", guidance: float = 1.0,
                  edit_map=None, cache_policy: str = "cpu", cache_budget_gb: float = 0.0,
                  node: str = "FluxDrag Invert") -> InversionRecord:
    """Invert ``latent`` to noise with ``solver``; capture what ``edit_map`` asks for."""
    import node_helpers

    require_flux(model, node)
    samples = latent["samples"]
    check_latent(samples, node)
    check_batch(samples, positive, node)
    if solver not in solvers.SOLVERS:
        raise FluxDragInputError(f"{node}: input 'solver' {solver!r} unknown; choose {solvers.SOLVERS}.")
    sig = solvers.strength_slice(sampling_sigmas(model, scheduler, steps), strength)
    inv = sig.flip(0)
    cond = node_helpers.conditioning_set_values(positive, {"guidance": guidance})
    z0 = model.model.process_latent_in(samples.float())

    caches: dict = {}
    m = model
    if edit_map is not None and cache_policy != "paired":
        budget, label = cache_budget(cache_policy, cache_budget_gb)
        cache = TokenCache(cache_policy, budget, name=f"{node} cache", budget_label=label)
        controllers = edit_map.capture_controllers(cache, sig, tuple(samples.shape), m)
        if controllers:
            caches[edit_map.cache_name] = cache
            m = patch_model(model, *controllers)

    trajectory: list = []
    progress = StepProgress(len(inv) - 1)

    def step(i, total, x):
        progress(i, total)
        trajectory.append(x.detach().cpu())

    sampler, run = solver_sampler(solver, on_step=step)
    g = guider(m, cond)
    try:
        g.sample(torch.zeros_like(samples), samples, sampler, inv, disable_pbar=True, seed=0)
    except BaseException:
        for c in caches.values():
            c.free()
        raise
    return InversionRecord(z_T=run.latent.detach(), sigmas=sig, solver=solver, steps=steps,
                           strength=strength, z_0=z0, trajectory=trajectory, caches=caches,
                           scheduler=scheduler, guidance=float(guidance), edit_map=edit_map,
                           cache_policy=cache_policy)


@torch.no_grad()   # DragFlow's optimisation re-enables grad for its own passes
def run_sampling(model, record: InversionRecord, positive, start: torch.Tensor | None = None,
                 solver: str = "auto", cfg: float = 1.0, negative=None, keep_cache: bool = False,
                 node: str = "FluxDrag Sample From Inversion") -> torch.Tensor:
    """Sample back from ``start`` (default: the record's z_T); returns the model-space result.

    ``record`` is read only. ``keep_cache`` is kept for callers and ignored: the record's cache is
    never freed here (it lives as long as the record, see the module doc)."""
    require_flux(model, node)
    z = record.z_T if start is None else start
    if tuple(z.shape) != record.latent_shape:
        raise FluxDragInputError(
            f"{node}: input 'latent' has shape {tuple(z.shape)} but the inversion was made for "
            f"{record.latent_shape}; connect the latent that belongs to this inversion.")
    if abs(cfg - 1.0) > 1e-9 and negative is None:
        raise FluxDragInputError(f"{node}: cfg {cfg} needs input 'negative'; connect one or set cfg 1.")
    name = record.sample_solver if solver == "auto" else solver
    if name != record.sample_solver:
        warnings.warn(f"input 'solver' is {name}, but the inversion used {record.solver}, whose "
                      f"matching sampler is {record.sample_solver} (solver 'auto'): mixing them "
                      f"does not reconstruct the source", stacklevel=2)
    progress = StepProgress(len(record.sigmas) - 1)
    sampler, run = solver_sampler(name, exact_start=True, on_step=progress)
    g = guider(model, positive, negative, cfg)
    router = router_of_model(model)
    paired = router is not None and any(getattr(c, "paired", False) for c in router.controllers)
    b = z.shape[0]
    if paired:  # [edit | reconstruction] rows; the controllers read the second half live
        z = torch.cat((z, record.z_T.to(z)), dim=0)
    g.sample(z, torch.zeros_like(z), sampler, record.sigmas, disable_pbar=True, seed=0)
    return run.latent[:b] if paired else run.latent
