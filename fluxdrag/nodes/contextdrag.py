"""ContextDrag nodes (FLUX.1 Kontext): Reverse Mapping, Context Token Injection,
Position-Consistent Attention.

They sit next to ComfyUI's own Kontext graph (``FluxKontextImageScale`` → ``VAEEncode`` →
``ReferenceLatent`` → ``FluxGuidance`` → KSampler/SamplerCustomAdvanced): the map comes from the
reference latent, the two patches are MODEL → MODEL and compose in either order.

What "Kontext" means here: ComfyUI 0.8.0 loads FLUX.1 Kontext [dev] with the same
``supported_models.Flux`` config (``image_model="flux"``, 16 in/out channels) as FLUX.1 [dev] and
Krea — the architectures are identical and nothing in the loaded model says "Kontext". So the
node checks that the model is a FLUX.1-architecture model (not SD, FLUX.2, Chroma, Fill/Canny/
Depth), and the patch checks at sampling time that the sequence holds reference tokens (the
ReferenceLatent conditioning); a FLUX.1 [dev] sampled with a reference latent cannot be told apart.
"""
from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..core.preview import draw_arrows
from ..core.reverse_mapping import ReverseMap
from ..pipelines.contextdrag import (
    NODE_CTI,
    NODE_MAP,
    NODE_PCA,
    ContextDragSettings,
    apply_cti,
    apply_pca,
    build_map,
)
from .common import (
    CATEGORY,
    DragInstructions,
    image_at,
    legacy_options,
    make_options_node,
    options_input,
    widget_inputs,
    with_options,
)

ReverseMapType = io.Custom("FLUXDRAG_REVERSE_MAP")

SUBCATEGORY = f"{CATEGORY}/ContextDrag"

PREVIEW_COLORS = {"destination": (0.0, 1.0, 0.0), "vacated": (1.0, 0.0, 0.0),
                  "dropped": (1.0, 1.0, 0.0)}


def _upsample(m: torch.Tensor, H: int, W: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(m[None, None].float(), size=(H, W), mode="nearest")[0, 0] > 0.5


def draw_reverse_map_preview(image: torch.Tensor | None, rmap: ReverseMap, H: int, W: int,
                             alpha: float = 0.45) -> torch.Tensor:
    """(H, W, 3): destinations M_DST green, vacated M_SRC \\ M_DST red, coarse cells dropped for
    lack of a source yellow, drags as arrows."""
    out = image_at(image, H, W)
    regions = {"destination": rmap.dst_mask, "vacated": rmap.vacated_mask,
               "dropped": rmap.coarse_mask & ~rmap.dst_mask}
    for name, m in regions.items():
        px = _upsample(m, H, W)
        out[px] = (1 - alpha) * out[px] + alpha * torch.tensor(PREVIEW_COLORS[name])
    h, w = rmap.grid_hw
    scale = torch.tensor([W / w, H / h], dtype=torch.float64)
    return draw_arrows(out, (rmap.handles + 0.5) * scale, (rmap.targets + 0.5) * scale)


# --------------------------------------------------------------------------------------------
# nodes
# --------------------------------------------------------------------------------------------
class ReverseMapping(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragReverseMapping",
            display_name=NODE_MAP,
            category=SUBCATEGORY,
            description="ContextDrag's latent-space reverse mapping: forward-displaces the region to "
                        "move, then looks every destination token's source up backwards (no holes). "
                        "Build it from the latent that goes into ReferenceLatent and connect 'map' to "
                        "the Context Token Injection and Position-Consistent Attention patches. "
                        "Preview: destination green, vacated red, dropped yellow.",
            inputs=[
                DragInstructions.Input("drag_instructions", tooltip="Handle→target drags (and optional "
                                       "region mask) in image pixels; rescaled if drawn on another size."),
                io.Latent.Input("latent", tooltip="The Kontext reference latent (VAEEncode of the scaled "
                                                  "source image); fixes the token grid."),
                io.Mask.Input("mask", optional=True, tooltip="Region to move (M_SRC); overrides the "
                              "instructions' mask. Default: discs of radius |drag|/2 around the handles."),
                *widget_inputs(ContextDragSettings, ("map",)),
                io.Image.Input("image", optional=True, tooltip="Image for the preview background (e.g. "
                                                               "the scaled source)."),
            ],
            outputs=[ReverseMapType.Output(display_name="map"), io.Image.Output(display_name="preview")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, drag_instructions, latent, mask=None, image=None, **widgets) -> io.NodeOutput:
        samples = latent["samples"]
        rmap = build_map(drag_instructions, samples, mask, with_options(ContextDragSettings, NODE_MAP, **widgets))
        H, W = samples.shape[-2] * 8, samples.shape[-1] * 8
        prev = draw_reverse_map_preview(None if image is None else image[0], rmap, H, W)[None].clamp(0, 1)
        return io.NodeOutput(rmap, prev, ui=ui.PreviewImage(prev, cls=cls))


def _patch_node(*, node_id: str, name: str, tag: str, apply, description: str, model_tooltip: str):
    """One of the two MODEL → MODEL patch nodes: the ``tag`` fields of ContextDragSettings as
    widgets, the shared options socket, and ``apply`` (``apply_cti`` / ``apply_pca``)."""

    class PatchNode(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id=node_id,
                display_name=name,
                category=SUBCATEGORY,
                description=description,
                inputs=[
                    io.Model.Input("model", tooltip=model_tooltip),
                    ReverseMapType.Input("map", tooltip="From FluxDrag Reverse Mapping."),
                    *widget_inputs(ContextDragSettings, (tag,)),
                    options_input(ContextDragSettings),
                ],
                outputs=[io.Model.Output()],
                hidden=[io.Hidden.unique_id, io.Hidden.prompt],
            )

        @classmethod
        def execute(cls, model, map, options=None, **widgets) -> io.NodeOutput:
            options = legacy_options(cls, ContextDragSettings, (tag, "patch"), options, name)
            m, _ = apply(model, map, with_options(ContextDragSettings, name, options, **widgets))
            return io.NodeOutput(m)

    return PatchNode


ContextTokenInjectionNode = _patch_node(
    node_id="FluxDragContextTokenInjection", name=NODE_CTI, tag="cti", apply=apply_cti,
    description="ContextDrag's context-preserving token injection on FLUX.1 Kontext: the "
                "noise-free reference token at src(q) is put into attention for the image "
                "token q, its key re-encoded with RoPE at q. Sample with a ReferenceLatent of "
                "the same image the map was built from.",
    model_tooltip="FLUX.1 Kontext [dev] (may already carry the Position-Consistent Attention patch).")
ContextTokenInjectionNode.__name__ = ContextTokenInjectionNode.__qualname__ = "ContextTokenInjectionNode"

PositionConsistentAttentionNode = _patch_node(
    node_id="FluxDragPositionConsistentAttention", name=NODE_PCA, tag="pca", apply=apply_pca,
    description="ContextDrag's position-consistent attention on FLUX.1 Kontext: moved reference "
                "tokens get their destination's rotary position, and an overlap-aware mask hides "
                "conflicting reference tokens (default: the vacated area) from the image queries.",
    model_tooltip="FLUX.1 Kontext [dev] (may already carry the Context Token Injection patch).")
PositionConsistentAttentionNode.__name__ = PositionConsistentAttentionNode.__qualname__ = \
    "PositionConsistentAttentionNode"


ContextDragOptions = make_options_node(
    ContextDragSettings, "FluxDragContextDragOptions", ("patch",),
    "ContextDrag's expert settings: the blocks and the share of the sampling steps the patches act in, "
    "and which ReferenceLatent is the drag source. Connect 'options' to Context Token Injection and/or "
    "Position-Consistent Attention (one options node each to set them apart).")

NODES = [ReverseMapping, ContextTokenInjectionNode, PositionConsistentAttentionNode, ContextDragOptions]
