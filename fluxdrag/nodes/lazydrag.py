"""LazyDrag nodes: Correspondence Map, LazyDrag Patch and LazyDrag Options. Their widgets and
defaults come from ``pipelines.lazydrag.LazyDragSettings``."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..core.preview import draw_map_preview
from ..pipelines.lazydrag import NODE_MAP, NODE_PATCH, LazyDragSettings, apply_lazydrag, build_plan
from .common import (
    CATEGORY,
    DragInstructions,
    EditMap,
    Inversion,
    image_at,
    legacy_options,
    make_options_node,
    options_input,
    to_latent,
    widget_inputs,
    with_options,
)

MAP_NODES = ("map",)
PATCH_NODES = ("patch",)


class CorrespondenceMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragCorrespondenceMap",
            display_name=NODE_MAP,
            category=f"{CATEGORY}/LazyDrag",
            description="LazyDrag's explicit correspondence map from the drags: winner-takes-all "
                        "displacement, matching map M, weights A and the destination / inpaint / "
                        "transition / background regions. Connect 'map' to FluxDrag Invert's "
                        "edit_map (so the inversion caches what the edit needs) and to the patch.",
            inputs=[
                DragInstructions.Input("drag_instructions", tooltip="Handle→target drags (and "
                                       "optional editable mask) in image pixels."),
                io.Latent.Input("latent", tooltip="The source latent (fixes the token grid)."),
                io.Mask.Input("mask", optional=True, tooltip="Editable region; overrides the "
                              "instructions' mask. Default: discs around the handles."),
                *widget_inputs(LazyDragSettings, MAP_NODES),
                io.Image.Input("image", optional=True, tooltip="Source image for the preview."),
                options_input(LazyDragSettings),
            ],
            outputs=[EditMap.Output(display_name="map"), io.Image.Output(display_name="preview")],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, drag_instructions, latent, mask=None, image=None, options=None,
                **widgets) -> io.NodeOutput:
        options = legacy_options(cls, LazyDragSettings, MAP_NODES, options, NODE_MAP)
        s = with_options(LazyDragSettings, NODE_MAP, options, **widgets)
        samples = latent["samples"]
        plan = build_plan(drag_instructions, samples, mask, s)
        H, W = samples.shape[-2] * 8, samples.shape[-1] * 8
        prev = draw_map_preview(image_at(image, H, W, grey=None), plan.cmap, image_hw=(H, W))[None].clamp(0, 1)
        return io.NodeOutput(plan, prev, ui=ui.PreviewImage(prev, cls=cls))


class LazyDragPatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragLazyDragPatch",
            display_name=NODE_PATCH,
            category=f"{CATEGORY}/LazyDrag",
            description="LazyDrag attention control in FLUX's single-stream blocks: background "
                        "tokens from the inversion cache, cached source K/V re-encoded at their "
                        "destination, gated output merging. Outputs the patched model and the "
                        "edited initial latent for FluxDrag Sample From Inversion. The latent "
                        "locks (ours) are on FluxDrag LazyDrag Options.",
            inputs=[
                io.Model.Input("model", tooltip="FLUX.1 dev/Krea (the model used for the inversion)."),
                Inversion.Input("inversion", tooltip="From FluxDrag Invert, run with this map as "
                                                     "edit_map."),
                EditMap.Input("map", tooltip="From FluxDrag Correspondence Map."),
                *widget_inputs(LazyDragSettings, PATCH_NODES),
                options_input(LazyDragSettings),
            ],
            outputs=[io.Model.Output(), io.Latent.Output(display_name="initial_latent")],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, model, inversion, map, options=None, **widgets) -> io.NodeOutput:
        options = legacy_options(cls, LazyDragSettings, PATCH_NODES, options, NODE_PATCH)
        s = with_options(LazyDragSettings, NODE_PATCH, options, **widgets)
        m, z0, _ = apply_lazydrag(model, inversion, map, s)
        return io.NodeOutput(m, to_latent(model, z0))


LazyDragOptions = make_options_node(
    LazyDragSettings, "FluxDragLazyDragOptions", MAP_NODES + PATCH_NODES,
    "LazyDrag's expert settings and our departures from the paper (docs/lazydrag.md): the map's "
    "resolution, mapping, rigid fusion and gate unit; the Patch's latent locks. Connect 'options' "
    "to the Correspondence Map and the LazyDrag Patch (each reads its own fields); preset 'paper' "
    "sets every one to the paper's value.")

NODES = [CorrespondenceMap, LazyDragPatch, LazyDragOptions]
