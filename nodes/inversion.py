"""Inversion nodes: FireFlow / Uni-Inv samplers, Invert, Sample From Inversion."""
from __future__ import annotations

from comfy_api.latest import io

from ..attention_patches.sampling import solver_sampler
from ..core import solvers
from ..core.cache import format_bytes
from ..pipelines.common import log
from ..pipelines.inversion import SAMPLE_SOLVERS, SCHEDULERS, run_inversion, run_sampling
from .common import CATEGORY, EditMap, Inversion, to_latent, to_model_space
from .graph import MISSING, check_patch_maps


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
        return io.NodeOutput(solver_sampler("fireflow")[0])


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
        return io.NodeOutput(solver_sampler("uni_inv", zero_init=zero_init)[0])


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
            hidden=[io.Hidden.unique_id, io.Hidden.dynprompt],
        )

    @classmethod
    def execute(cls, model, latent, positive, steps=28, solver="fireflow", strength=1.0,
                scheduler="simple", guidance=1.0, edit_map=None, cache_policy="cpu",
                cache_budget_gb=0.0) -> io.NodeOutput:
        hidden = getattr(cls, "hidden", None)
        check_patch_maps(getattr(hidden, "dynprompt", None), getattr(hidden, "unique_id", None))
        rec = run_inversion(model, latent, positive, steps, solver, strength, scheduler, guidance,
                            edit_map, cache_policy, cache_budget_gb)
        if rec.caches:
            log.info("[FluxDrag] inversion cache holds %s", format_bytes(rec.cache_bytes()))
        return io.NodeOutput(to_latent(model, rec.z_T), rec)


class SampleFromInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragSampleFromInversion",
            display_name="FluxDrag Sample From Inversion",
            category=f"{CATEGORY}/inversion",
            description="Denoises back from an inversion with the matching solver and schedule "
                        "(optionally from an edited start latent). Reads the inversion and leaves "
                        "it as it is: one Invert can feed several samplers.",
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
                                 tooltip="No effect (kept so older workflows load): the edit cache "
                                         "belongs to the Invert output and lives as long as "
                                         "ComfyUI keeps that output; sampling never frees it."),
            ],
            outputs=[io.Latent.Output()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, cfg=1.0, negative=MISSING, **kwargs):
        # runs when the prompt is queued, before any node: a linked input is present (its value
        # unknown yet), an unconnected one is MISSING
        if cfg is not None and abs(float(cfg) - 1.0) > 1e-9 and negative is MISSING:
            return (f"FluxDrag Sample From Inversion: cfg {cfg} needs input 'negative'; connect a "
                    f"negative prompt or set cfg 1 (FLUX dev/Krea use 1).")
        return True

    @classmethod
    def execute(cls, model, inversion, positive, solver="auto", cfg=1.0, latent=None,
                negative=None, keep_cache=False) -> io.NodeOutput:
        start = to_model_space(model, latent) if latent is not None else None
        z = run_sampling(model, inversion, positive, start, solver, cfg, negative, keep_cache)
        return io.NodeOutput(to_latent(model, z, exact=False))


NODES = [FireFlowSampler, UniInvSampler, Invert, SampleFromInversion]
