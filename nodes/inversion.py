"""Inversion nodes: FireFlow / Uni-Inv samplers, Invert, Sample From Inversion."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from ..attention_patches.router import patch_model, router_of_model
from ..attention_patches.sampling import FluxDragKSampler
from ..core import solvers
from ..core.cache import TokenCache, format_bytes
from ..core.inversion import InversionRecord
from .common import (
    CATEGORY,
    EditMap,
    FluxDragInputError,
    Inversion,
    StepProgress,
    check_batch,
    check_latent,
    require_flux,
    sampling_sigmas,
    to_latent,
    to_model_space,
)

SCHEDULERS = ["simple", "beta", "normal", "sgm_uniform", "linear_quadratic", "kl_optimal"]
SAMPLE_SOLVERS = ["auto", *solvers.SOLVERS]


class FireFlowSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragFireFlowSampler",
            display_name="FluxDrag FireFlow Sampler",
            category=f"{CATEGORY}/inversion",
            description="FireFlow (ICML 2025): second-order midpoint sampler that reuses the previous "
                        "midpoint velocity, one model call per step. Use with SamplerCustomAdvanced.",
            inputs=[],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(FluxDragKSampler("fireflow"))


class UniInvSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragUniInvSampler",
            display_name="FluxDrag Uni-Inv Sampler",
            category=f"{CATEGORY}/inversion",
            description="UniEdit-Flow's Uni-Inv predictor-corrector, one model call per step. Use "
                        "with SamplerCustomAdvanced.",
            inputs=[
                io.Boolean.Input("zero_init", default=False,
                                 tooltip="Start the first predictor from v = 0 (UniEdit-Flow's "
                                         "--zero_init): one model call fewer."),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, zero_init=False) -> io.NodeOutput:
        return io.NodeOutput(FluxDragKSampler("uni_inv", zero_init=zero_init))


def _guider(model, positive, negative=None, cfg: float = 1.0):
    import comfy.samplers

    g = comfy.samplers.CFGGuider(model)
    conds = {"positive": positive}
    if negative is not None:
        conds["negative"] = negative
    g.inner_set_conds(conds)
    g.set_cfg(cfg)
    return g


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

    sampler = FluxDragKSampler(solver, step_callback=step)
    g = _guider(m, cond)
    try:
        g.sample(torch.zeros_like(samples), samples, sampler, inv, disable_pbar=True, seed=0)
    except BaseException:
        for c in caches.values():
            c.free()
        raise
    return InversionRecord(z_T=sampler.result.detach(), sigmas=sig, solver=solver, steps=steps,
                           strength=strength, z_0=z0, trajectory=trajectory, caches=caches,
                           info={"scheduler": scheduler, "guidance": guidance, "edit_map": edit_map,
                                 "cache_policy": cache_policy})


@torch.no_grad()   # DragFlow's optimisation re-enables grad for its own passes
def run_sampling(model, record: InversionRecord, positive, start: torch.Tensor | None = None,
                 solver: str = "auto", cfg: float = 1.0, negative=None, keep_cache: bool = False,
                 node: str = "FluxDrag Sample From Inversion") -> torch.Tensor:
    """Sample back from ``start`` (default: the record's z_T); returns the model-space result."""
    require_flux(model, node)
    z = record.z_T if start is None else start
    if tuple(z.shape) != record.latent_shape:
        raise FluxDragInputError(
            f"{node}: input 'latent' has shape {tuple(z.shape)} but the inversion was made for "
            f"{record.latent_shape}; connect the latent that belongs to this inversion.")
    if abs(cfg - 1.0) > 1e-9 and negative is None:
        raise FluxDragInputError(f"{node}: cfg {cfg} needs input 'negative'; connect one or set cfg 1.")
    name = record.sample_solver if solver == "auto" else solver
    progress = StepProgress(len(record.sigmas) - 1)
    sampler = FluxDragKSampler(name, exact_start=True, step_callback=progress)
    g = _guider(model, positive, negative, cfg)
    router = router_of_model(model)
    paired = router is not None and any(getattr(c, "paired", False) for c in router.controllers)
    b = z.shape[0]
    if paired:  # [edit | reconstruction] rows; the controllers read the second half live
        z = torch.cat((z, record.z_T.to(z)), dim=0)
    try:
        g.sample(z, torch.zeros_like(z), sampler, record.sigmas, disable_pbar=True, seed=0)
    finally:
        if not keep_cache:
            record.free_caches()
    return sampler.result[:b] if paired else sampler.result


class Invert(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragInvert",
            display_name="FluxDrag Invert",
            category=f"{CATEGORY}/inversion",
            description="Inverts an image latent to noise on any FLUX model (FireFlow, Uni-Inv or "
                        "Euler) and outputs the noise and an inversion record for later edits.",
            inputs=[
                io.Model.Input("model", tooltip="A FLUX model from UNETLoader (dev, schnell, Krea, "
                                                "Kontext; fp8/GGUF fine)."),
                io.Latent.Input("latent", tooltip="The source image's latent (VAEEncode). Sides "
                                                  "must be multiples of 16 px."),
                io.Conditioning.Input("positive", tooltip="Prompt for the inversion: usually empty "
                                                          "or a description of the source image."),
                io.Int.Input("steps", default=28, min=1, max=200,
                             tooltip="Steps of the full schedule (FireFlow's paper: 8 on FLUX-dev; "
                                     "the trained toy model needs 16–28, see "
                                     "docs/toyworld_results.md; LazyDrag's default is 50)."),
                io.Combo.Input("solver", options=list(solvers.SOLVERS), default="fireflow",
                               tooltip="fireflow: 2nd order, N+1 calls; uni_inv: predictor-corrector "
                                       "(LazyDrag's choice), N+1 calls; euler: baseline."),
                io.Float.Input("strength", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="How far to invert (1 = to pure noise; 0.7 = LazyDrag's "
                                       "'optimized' setting)."),
                io.Combo.Input("scheduler", options=SCHEDULERS, default="simple",
                               tooltip="Sigma schedule (uses the model's own sampling shift)."),
                io.Float.Input("guidance", default=1.0, min=0.0, max=100.0, step=0.1,
                               tooltip="FLUX distilled guidance during inversion (papers use 1)."),
                EditMap.Input("edit_map", optional=True,
                              tooltip="A drag map (e.g. from FluxDrag Correspondence Map): the "
                                      "inversion then caches exactly the tokens that edit needs."),
                io.Combo.Input("cache_policy", options=["cpu", "fp8", "device", "paired"], default="cpu",
                               tooltip="Where the edit cache lives: cpu (pinned where CUDA exists), "
                                       "fp8 on cpu (half of bf16), device (fastest, costs VRAM), or "
                                       "paired: no cache, the unedited branch is re-sampled in the "
                                       "same batch (~2x compute, least memory)."),
                io.Float.Input("cache_budget_gb", default=0.0, min=0.0, max=4096.0, step=0.5,
                               tooltip="Refuse (with the estimated need) when the cache would exceed "
                                       "this many GiB. 0 = automatic: a cpu/fp8 cache may use 80% of "
                                       "the RAM available when the inversion starts; device: no limit."),
            ],
            outputs=[io.Latent.Output(display_name="noise"), Inversion.Output(display_name="inversion")],
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        # a cache freed by the sampling that used it must be refilled: re-run after each free
        return TokenCache.free_count

    @classmethod
    def execute(cls, model, latent, positive, steps=28, solver="fireflow", strength=1.0,
                scheduler="simple", guidance=1.0, edit_map=None, cache_policy="cpu",
                cache_budget_gb=0.0) -> io.NodeOutput:
        rec = run_inversion(model, latent, positive, steps, solver, strength, scheduler, guidance,
                            edit_map, cache_policy, cache_budget_gb)
        if rec.caches:
            print(f"[FluxDrag] inversion cache holds {format_bytes(rec.cache_bytes())}")
        return io.NodeOutput(to_latent(model, rec.z_T), rec)


class SampleFromInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragSampleFromInversion",
            display_name="FluxDrag Sample From Inversion",
            category=f"{CATEGORY}/inversion",
            description="Denoises back from an inversion with the matching solver and schedule "
                        "(optionally from an edited start latent) and frees the edit cache.",
            inputs=[
                io.Model.Input("model", tooltip="The FLUX model, patched by an edit node or plain "
                                                "(plain = reconstruction)."),
                Inversion.Input("inversion", tooltip="Record from FluxDrag Invert."),
                io.Conditioning.Input("positive", tooltip="Target prompt (FLUX guidance comes from "
                                                          "the conditioning; use FluxGuidance)."),
                io.Combo.Input("solver", options=SAMPLE_SOLVERS, default="auto",
                               tooltip="auto = the solver that reconstructs the inversion "
                                       "(fireflow→fireflow, uni_inv→euler, euler→euler)."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance; FLUX dev/Krea use 1 (needs "
                                       "'negative' otherwise)."),
                io.Latent.Input("latent", optional=True,
                                tooltip="Start latent (e.g. an edit's initial latent); default: "
                                        "the inverted noise."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Negative prompt, only used when cfg ≠ 1."),
                io.Boolean.Input("keep_cache", default=False, optional=True,
                                 tooltip="Keep the inversion's edit cache after sampling (more "
                                         "memory; lets you re-sample without re-inverting)."),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, model, inversion, positive, solver="auto", cfg=1.0, latent=None,
                negative=None, keep_cache=False) -> io.NodeOutput:
        start = to_model_space(model, latent) if latent is not None else None
        z = run_sampling(model, inversion, positive, start, solver, cfg, negative, keep_cache)
        return io.NodeOutput(to_latent(model, z, exact=False))


NODES = [FireFlowSampler, UniInvSampler, Invert, SampleFromInversion]
