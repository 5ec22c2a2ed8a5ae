"""AttentionDrag node (IJCAI 2025) on FLUX.1 and SD1.x; the pipeline is ``pipelines/attention_drag.py``."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..core import solvers
from ..pipelines.attention_drag import (
    MASK_SOURCES,
    NODE,
    AttentionDragSettings,
    outcome_preview,
    run_attention_drag,
)
from ..pipelines.inversion import SCHEDULERS
from .common import CATEGORY, DragInstructions, to_latent


class AttentionDrag(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragAttentionDrag",
            display_name=NODE,
            category=f"{CATEGORY}/AttentionDrag",
            description="AttentionDrag (IJCAI 2025): invert the image part way, read one self-attention "
                        "layer's attention to each handle, move the latent in one step (movement weighted "
                        "by attention, automatic mask, attention-weighted hole filling), denoise back. "
                        "Works on FLUX.1 (image-token attention of a single/double block) and SD1.x "
                        "(DDIM, a UNet self-attention block) models.",
            inputs=[
                io.Model.Input("model", tooltip="A FLUX.1 model (UNETLoader) or an SD1.x checkpoint's "
                                                "model (CheckpointLoaderSimple). Not modified."),
                io.Latent.Input("latent", tooltip="The source image's latent (VAEEncode with this model's "
                                                  "VAE). FLUX: sides a multiple of 16 px."),
                DragInstructions.Input("drag_instructions", tooltip="Handle→target drags in image pixels (and an "
                                                            "optional editable mask, see mask_source)."),
                io.Conditioning.Input("positive", tooltip="Prompt used for inversion and denoising "
                                                          "(usually a description of the image, or empty)."),
                io.Int.Input("steps", default=28, min=1, max=1000,
                             tooltip="Steps of the full schedule (SD1.5 drag papers: 50 DDIM steps; "
                                     "FLUX: 28)."),
                io.Float.Input("strength", default=0.7, min=0.01, max=1.0, step=0.01,
                               tooltip="How far to invert before the move: the edit runs the last "
                                       "round(strength·steps) steps (0.7 = 35 of 50, DragDiffusion/FastDrag)."),
                io.String.Input("layer", default="auto",
                                tooltip="Self-attention layer whose map guides the move. FLUX: 'single.N' "
                                        "or 'double.N' (auto: the middle single block). SD1.x: ComfyUI's "
                                        "UNet block 'output.N', 'input.N', 'middle.0' (auto: first output "
                                        "block at half resolution, output.6 on SD1.5)."),
                io.Float.Input("tau", default=2.0, min=0.0, max=100.0, step=0.1,
                               tooltip="Automatic mask: cells whose attention exceeds tau × the mean "
                                       "attention (paper's τ = 2.0)."),
                io.Combo.Input("direction", options=["query", "key"], default="query",
                               tooltip="query: where the handle looks, softmax_j(q_h·k_j) (the paper's "
                                       "A_t(h, j)); key: which cells look at the handle."),
                io.Combo.Input("mask_source", options=list(MASK_SOURCES), default="auto",
                               tooltip="auto: the drag instructions' mask when it has one, else the "
                                       "automatic mask; attention: always the automatic mask (paper); "
                                       "instructions: the instructions' mask; both: automatic mask "
                                       "inside it."),
                io.Int.Input("dilate", default=0, min=0, max=16,
                             tooltip="Grow the mask by this many latent cells (8 px each)."),
                io.Boolean.Input("rigid", default=False,
                                 tooltip="Move every masked cell by the full drag instead of weighting "
                                         "the movement by attention."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance while denoising (needs 'negative' when "
                                       "not 1). FLUX dev: 1; guidance comes from FluxGuidance."),
                io.Combo.Input("solver", options=list(solvers.SOLVERS), default="uni_inv",
                               tooltip="FLUX only: inversion solver (uni_inv reads the attention at no extra "
                                       "cost). SD1.x always uses DDIM."),
                io.Combo.Input("scheduler", options=SCHEDULERS, default="simple",
                               tooltip="FLUX only: sigma schedule. SD1.x uses DDIM's uniform timesteps."),
                io.Float.Input("inversion_guidance", default=1.0, min=0.0, max=100.0, step=0.1,
                               tooltip="FLUX only: distilled guidance during inversion (papers use 1)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Negative prompt, only used when cfg ≠ 1."),
                io.Image.Input("image", optional=True, tooltip="Source image, only for the preview."),
            ],
            outputs=[io.Latent.Output(display_name="latent"), io.Image.Output(display_name="preview")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, latent, drag_instructions, positive, steps=28, strength=0.7, layer="auto",
                tau=2.0, direction="query", mask_source="auto", dilate=0, rigid=False, cfg=1.0,
                solver="uni_inv", scheduler="simple", inversion_guidance=1.0, negative=None,
                image=None) -> io.NodeOutput:
        s = AttentionDragSettings(steps=steps, strength=strength, layer=layer, tau=tau, direction=direction,
                                  mask_source=mask_source, dilate=dilate, rigid=rigid, cfg=cfg, solver=solver,
                                  scheduler=scheduler, inversion_guidance=inversion_guidance)
        outcome = run_attention_drag(model, latent, drag_instructions, positive, negative, s)
        prev = outcome_preview(outcome, image)
        return io.NodeOutput(to_latent(model, outcome.latent, exact=False), prev, ui=ui.PreviewImage(prev, cls=cls))


NODES = [AttentionDrag]
