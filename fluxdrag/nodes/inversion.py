"""Inversion nodes: FireFlow / Uni-Inv samplers, Invert, Sample From Inversion."""
from __future__ import annotations

from comfy_api.latest import io

from ..attention_patches.sampling import solver_sampler
from ..core.cache import format_bytes
from ..pipelines.common import log
from ..pipelines.inversion import (
    NODE_INVERT,
    NODE_SAMPLE,
    InversionSettings,
    SamplingSettings,
    run_inversion,
    run_sampling,
)
from .common import CATEGORY, EditMap, Inversion, specs, to_latent, to_model_space, widget_input, with_options
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
                *[widget_input(x) for x in specs(InversionSettings)[:5]],
                EditMap.Input("edit_map", optional=True,
                              tooltip="A drag map (e.g. from FluxDrag Correspondence Map): the "
                                      "inversion then caches exactly the tokens that edit needs."),
                *[widget_input(x) for x in specs(InversionSettings)[5:]],
            ],
            outputs=[io.Latent.Output(display_name="noise"), Inversion.Output(display_name="inversion")],
            hidden=[io.Hidden.unique_id, io.Hidden.dynprompt],
        )

    @classmethod
    def execute(cls, model, latent, positive, edit_map=None, **widgets) -> io.NodeOutput:
        hidden = getattr(cls, "hidden", None)
        check_patch_maps(getattr(hidden, "dynprompt", None), getattr(hidden, "unique_id", None))
        s = with_options(InversionSettings, NODE_INVERT, None, **widgets)
        rec = run_inversion(model, latent, positive, s, edit_map=edit_map)
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
                *[widget_input(x) for x in specs(SamplingSettings)],
                io.Latent.Input("latent", optional=True,
                                tooltip="Start latent (e.g. an edit's initial latent); default: "
                                        "the inverted noise."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Negative prompt, only used when cfg ≠ 1."),
            ],
            outputs=[io.Latent.Output()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, cfg=None, negative=MISSING, **kwargs):
        # runs when the prompt is queued, before any node: a linked input is present (its value
        # unknown yet), an unconnected one is MISSING
        if cfg is not None and abs(float(cfg) - 1.0) > 1e-9 and negative is MISSING:
            return (f"FluxDrag Sample From Inversion: cfg {cfg} needs input 'negative'; connect a "
                    f"negative prompt or set cfg 1 (FLUX dev/Krea use 1).")
        return True

    @classmethod
    def execute(cls, model, inversion, positive, latent=None, negative=None, **widgets) -> io.NodeOutput:
        start = to_model_space(model, latent) if latent is not None else None
        s = with_options(SamplingSettings, NODE_SAMPLE, None, **widgets)
        z = run_sampling(model, inversion, positive, s, start=start, negative=negative)
        return io.NodeOutput(to_latent(model, z, exact=False))


NODES = [FireFlowSampler, UniInvSampler, Invert, SampleFromInversion]
