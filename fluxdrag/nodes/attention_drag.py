"""AttentionDrag node (IJCAI 2025) on FLUX.1 and SD1.x; the pipeline is ``pipelines/attention_drag.py``."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..pipelines.attention_drag import NODE, AttentionDragSettings, outcome_preview, run_attention_drag
from .common import (
    CATEGORY,
    DragInstructions,
    legacy_options,
    make_options_node,
    options_input,
    to_latent,
    widget_inputs,
    with_options,
)


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
                *widget_inputs(AttentionDragSettings),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Negative prompt, only used when cfg ≠ 1."),
                io.Image.Input("image", optional=True, tooltip="Source image, only for the preview."),
                options_input(AttentionDragSettings),
            ],
            outputs=[io.Latent.Output(display_name="latent"), io.Image.Output(display_name="preview")],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, model, latent, drag_instructions, positive, negative=None, image=None, options=None,
                **widgets) -> io.NodeOutput:
        options = legacy_options(cls, AttentionDragSettings, ("",), options, NODE)
        s = with_options(AttentionDragSettings, NODE, options, **widgets)
        outcome = run_attention_drag(model, latent, drag_instructions, positive, s, negative=negative)
        prev = outcome_preview(outcome, image)
        return io.NodeOutput(to_latent(model, outcome.latent, exact=False), prev, ui=ui.PreviewImage(prev, cls=cls))


AttentionDragOptions = make_options_node(
    AttentionDragSettings, "FluxDragAttentionDragOptions", ("",),
    "AttentionDrag's expert settings: attention direction, mask source and growth, rigid moves, the "
    "hole filling, cfg and the FLUX inversion (solver, schedule, guidance). Connect 'options' to "
    "FluxDrag AttentionDrag; preset 'paper' sets each to the paper's value.")

NODES = [AttentionDrag, AttentionDragOptions]
