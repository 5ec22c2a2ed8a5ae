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

from ..attention_patches.contextdrag import CTI_MODES, HIDE_FROM, VISIBILITY
from ..core.preview import draw_arrows
from ..core.reverse_mapping import ANCHORS, HIDE_SETS, ReverseMap
from ..pipelines.contextdrag import NODE_CTI, NODE_MAP, NODE_PCA, apply_cti, apply_pca, build_map
from .common import CATEGORY, DragInstructions, image_at

ReverseMapType = io.Custom("FLUXDRAG_REVERSE_MAP")

SUBCATEGORY = f"{CATEGORY}/ContextDrag"
HULLS = ("component", "all", "none")

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
def _block_inputs():
    return [
        io.String.Input("double_blocks", default="all",
                        tooltip="Double-stream blocks to act in: 'all', 'none' or indices/ranges like "
                                "'0-9, 15' (FLUX.1 has 19). The paper does not say which [guess: all]."),
        io.String.Input("single_blocks", default="all",
                        tooltip="Single-stream blocks to act in: 'all', 'none' or e.g. '0-37' (FLUX.1 "
                                "has 38) [guess: all]."),
        io.Float.Input("start", default=0.0, min=0.0, max=1.0, step=0.01,
                       tooltip="First sampling step where the patch acts, as a fraction of the steps."),
        io.Float.Input("end", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Fraction of the steps where the patch stops acting (1 = to the end) "
                               "[guess: all steps]."),
        io.Int.Input("reference_index", default=0, min=0, max=15,
                     tooltip="Which ReferenceLatent (in chaining order) is the drag source; 0 = the "
                             "first."),
    ]


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
                io.Combo.Input("anchor", options=list(ANCHORS), default="target",
                               tooltip="Reverse lookup: inverse-distance weights anchored on the targets "
                                       "(the paper's review reading) or an inversion of the forward field "
                                       "anchored on the handles [guess]."),
                io.Combo.Input("hull", options=list(HULLS), default="component",
                               tooltip="Coarse target region: convex hull per connected region "
                                       "('component' [guess]), one hull over everything ('all', the "
                                       "literal reading) or the displaced cells grown by one ('none')."),
                io.Float.Input("power", default=2.0, min=0.0, max=8.0, step=0.1,
                               tooltip="Inverse-distance weighting exponent (paper: 2)."),
                io.Image.Input("image", optional=True, tooltip="Image for the preview background (e.g. "
                                                               "the scaled source)."),
            ],
            outputs=[ReverseMapType.Output(display_name="map"), io.Image.Output(display_name="preview")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, drag_instructions, latent, mask=None, anchor="target", hull="component", power=2.0,
                image=None) -> io.NodeOutput:
        samples = latent["samples"]
        rmap = build_map(drag_instructions, samples, mask, anchor, hull, power)
        H, W = samples.shape[-2] * 8, samples.shape[-1] * 8
        prev = draw_reverse_map_preview(None if image is None else image[0], rmap, H, W)[None].clamp(0, 1)
        return io.NodeOutput(rmap, prev, ui=ui.PreviewImage(prev, cls=cls))


class ContextTokenInjectionNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragContextTokenInjection",
            display_name=NODE_CTI,
            category=SUBCATEGORY,
            description="ContextDrag's context-preserving token injection on FLUX.1 Kontext: the "
                        "noise-free reference token at src(q) is put into attention for the image "
                        "token q, its key re-encoded with RoPE at q. Sample with a ReferenceLatent of "
                        "the same image the map was built from.",
            inputs=[
                io.Model.Input("model", tooltip="FLUX.1 Kontext [dev] (may already carry the "
                                                "Position-Consistent Attention patch)."),
                ReverseMapType.Input("map", tooltip="From FluxDrag Reverse Mapping."),
                io.Combo.Input("mode", options=list(CTI_MODES), default="replace",
                               tooltip="'replace': the image tokens' K/V at the destination become the "
                                       "reference tokens' [guess]; 'append': the reference K/V are added "
                                       "as extra keys (the other reading)."),
                io.Combo.Input("visible_to", options=list(VISIBILITY), default="image",
                               tooltip="Append mode only: which queries see the appended tokens — all "
                                       "image queries [guess], only the destination query, or all."),
                *_block_inputs(),
            ],
            outputs=[io.Model.Output()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, map, mode="replace", visible_to="image", double_blocks="all", single_blocks="all",
                start=0.0, end=1.0, reference_index=0) -> io.NodeOutput:
        m, _ = apply_cti(model, map, mode, visible_to, double_blocks, single_blocks, start, end, reference_index)
        return io.NodeOutput(m)


class PositionConsistentAttentionNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragPositionConsistentAttention",
            display_name=NODE_PCA,
            category=SUBCATEGORY,
            description="ContextDrag's position-consistent attention on FLUX.1 Kontext: moved reference "
                        "tokens get their destination's rotary position, and an overlap-aware mask hides "
                        "conflicting reference tokens (default: the vacated area) from the image queries.",
            inputs=[
                io.Model.Input("model", tooltip="FLUX.1 Kontext [dev] (may already carry the Context "
                                                "Token Injection patch)."),
                ReverseMapType.Input("map", tooltip="From FluxDrag Reverse Mapping."),
                io.Boolean.Input("rewrite_ids", default=True,
                                 tooltip="Give each moved reference token the position ids of its "
                                         "destination (mean over several destinations)."),
                io.Combo.Input("hide", options=list(HIDE_SETS), default="vacated_overlap",
                               tooltip="Reference tokens hidden from image queries: the vacated area, "
                                       "the whole source region, the non-moved tokens under the "
                                       "destination that share position ids with the moved ones "
                                       "('overlap'), vacated + overlap (default [guess]), or none. With "
                                       "rewrite_ids, tokens that are a source are never hidden."),
                io.Combo.Input("hide_from", options=list(HIDE_FROM), default="image",
                               tooltip="Queries the hidden tokens are hidden from [guess: image]."),
                io.Combo.Input("collision", options=["mean", "first"], default="mean",
                               tooltip="Position of a reference token that is the source of several "
                                       "destinations: their mean [guess] or the first."),
                *_block_inputs(),
            ],
            outputs=[io.Model.Output()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, map, rewrite_ids=True, hide="vacated_overlap", hide_from="image", collision="mean",
                double_blocks="all", single_blocks="all", start=0.0, end=1.0, reference_index=0) -> io.NodeOutput:
        m, _ = apply_pca(model, map, rewrite_ids, hide, hide_from, collision, double_blocks, single_blocks,
                         start, end, reference_index)
        return io.NodeOutput(m)


NODES = [ReverseMapping, ContextTokenInjectionNode, PositionConsistentAttentionNode]
