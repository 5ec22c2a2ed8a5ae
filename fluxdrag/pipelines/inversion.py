"""Inversion and sampling back on FLUX: FireFlow / Uni-Inv / Euler through ComfyUI's guider and
``KSAMPLER`` (``attention_patches/sampling.py``), with an edit map's capture controllers on the
inverting model and its token cache in the returned :class:`InversionRecord`.

The record is a node output: :func:`run_sampling` reads it and changes nothing in it (its cache is
not freed there), so one Invert feeds several samplers and a cached Invert output re-samples the
same. The cache's memory goes with the record; an inversion that fails frees what it captured."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

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
    check_finite,
    check_latent,
    guider,
    require_flux,
    sampling_sigmas,
)
from .settings import overrides, setting, validate

SCHEDULERS = ["simple", "beta", "normal", "sgm_uniform", "linear_quadratic", "kl_optimal"]
SAMPLE_SOLVERS = ["auto", *solvers.SOLVERS]
CACHE_POLICIES = ("cpu", "fp8", "device", "paired")
NODE_INVERT = "FluxDrag Invert"
NODE_SAMPLE = "FluxDrag Sample From Inversion"


@dataclass
class InversionSettings:
    """FluxDrag Invert's inputs: the only place their defaults live."""

    METHOD: ClassVar[str] = "Inversion"

    steps: int = setting(28, "Steps of the full schedule (FireFlow's paper: 8 on FLUX-dev; the trained "
                             "toy model needs 16–28, see docs/toyworld_results.md; LazyDrag's default is 50).",
                         min=1, max=1000, main=True)
    solver: str = setting("fireflow", "fireflow: 2nd order, N+1 calls; uni_inv: predictor-corrector "
                                      "(LazyDrag's choice), N+1 calls; euler: baseline.",
                          options=solvers.SOLVERS, main=True)
    strength: float = setting(1.0, "How far to invert (1 = to pure noise; 0.7 = LazyDrag's 'optimized' "
                                   "setting).", min=0.01, max=1.0, step=0.01, main=True)
    scheduler: str = setting("simple", "Sigma schedule (uses the model's own sampling shift).",
                             options=SCHEDULERS, main=True)
    guidance: float = setting(1.0, "FLUX distilled guidance during inversion (papers use 1).",
                              min=0.0, max=100.0, step=0.1, main=True)
    cache_policy: str = setting("cpu", "Where the edit cache lives: cpu (pinned where CUDA exists), fp8 on "
                                       "cpu (half of bf16), device (fastest, costs VRAM), or paired: no "
                                       "cache, the unedited branch is re-sampled in the same batch (~2x "
                                       "compute, least memory).", options=CACHE_POLICIES, main=True)
    cache_budget_gb: float = setting(0.0, "Refuse (with the estimated need) when the cache would exceed this "
                                          "many GiB. 0 = automatic: a cpu/fp8 cache may use 80% of the RAM "
                                          "available when the inversion starts; device: no limit.",
                                     min=0.0, max=4096.0, step=0.5, main=True)


@dataclass
class SamplingSettings:
    """FluxDrag Sample From Inversion's inputs."""

    METHOD: ClassVar[str] = "Sampling"

    solver: str = setting("auto", "auto = the solver that reconstructs the inversion (fireflow→fireflow, "
                                  "uni_inv→euler, euler→euler).", options=SAMPLE_SOLVERS, main=True)
    cfg: float = setting(1.0, "Classifier-free guidance; FLUX dev/Krea use 1 (needs 'negative' otherwise).",
                         min=0.0, max=30.0, step=0.1, main=True)
    # ``keep_cache`` (a widget until issue 25) is gone: the edit cache belongs to the Invert output
    # and lives as long as ComfyUI keeps that output; sampling never frees it. Older workflows
    # still load (ComfyUI ignores an input a node no longer declares; js/fluxdrag/legacy.js drops
    # the saved UI value).


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
def run_inversion(model, latent: dict, positive, settings: InversionSettings | None = None, *,
                  edit_map=None, node: str = NODE_INVERT, **kw) -> InversionRecord:
    """Invert ``latent`` to noise as ``settings`` say (keyword overrides of its fields allowed);
    capture what ``edit_map`` asks for."""
    import node_helpers

    st = overrides(settings, InversionSettings, **kw)
    steps, solver, strength, scheduler = st.steps, st.solver, st.strength, st.scheduler
    guidance, cache_policy, cache_budget_gb = st.guidance, st.cache_policy, st.cache_budget_gb
    validate(st, node)
    require_flux(model, node)
    samples = latent["samples"]
    check_latent(samples, node)
    check_batch(samples, positive, node)
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
        check_finite(run.latent, node, f"{solver} inversion")
    except BaseException:
        for c in caches.values():
            c.free()
        raise
    return InversionRecord(z_T=run.latent.detach(), sigmas=sig, solver=solver, steps=steps,
                           strength=strength, z_0=z0, trajectory=trajectory, caches=caches,
                           scheduler=scheduler, guidance=float(guidance), edit_map=edit_map,
                           cache_policy=cache_policy)


@torch.no_grad()   # DragFlow's optimisation re-enables grad for its own passes
def run_sampling(model, record: InversionRecord, positive, settings: SamplingSettings | None = None, *,
                 start: torch.Tensor | None = None, negative=None, node: str = NODE_SAMPLE,
                 **kw) -> torch.Tensor:
    """Sample back from ``start`` (default: the record's z_T); returns the model-space result.
    ``kw``: overrides of ``settings``' fields (solver, cfg)."""
    st = overrides(settings, SamplingSettings, **kw)
    solver, cfg = st.solver, st.cfg
    validate(st, node)
    # ``record`` is read only: its cache is never freed here (it lives as long as the record, see
    # the module doc)
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
    return check_finite(run.latent[:b] if paired else run.latent, node, f"{name} sampling")
