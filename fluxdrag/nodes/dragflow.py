"""DragFlow nodes: Region Instruction (MASK + points → DRAG_INSTRUCTIONS regions) and Region
Affine Optimise; the pipeline is ``pipelines/dragflow.py``."""
from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..core.affine import Region, mask_centroid, warp_mask
from ..core.instruction_values import DRAG_DEPTHS
from ..core.instructions import REGION_OPS, DragInstructions
from ..core.preview import draw_arrows
from ..pipelines.dragflow import run_dragflow
from ..pipelines.dragflow_inputs import NODE_OPT, NODE_REGION, DragFlowSettings, add_region, build_region
from .common import (
    CATEGORY,
    image_at,
    legacy_options,
    make_options_node,
    options_input,
    to_latent,
    widget_inputs,
    with_options,
)
from .common import DragInstructions as DragType

REGION_TINTS = [(1.0, 0.55, 0.0), (0.9, 0.0, 0.9), (0.0, 0.8, 0.8), (0.6, 0.9, 0.0)]


def regions_preview(ins: DragInstructions, image: torch.Tensor | None,
                    edit_mask: torch.Tensor | None = None) -> torch.Tensor:
    """IMAGE (1, H, W, 3): editable mask (blue), each region (tint) and its moved copy (green),
    begin → target arrows, rotation anchors."""
    W, H = ins.image_size
    img = image_at(image, H, W)

    def tint(m, col, a):
        c = torch.tensor(col, dtype=img.dtype)
        img[m] = (1 - a) * img[m] + a * c

    if edit_mask is not None:
        em = edit_mask.float()[None, None]
        em = torch.nn.functional.interpolate(em, size=(H, W), mode="nearest")[0, 0] > 0.5
        tint(em, (0.2, 0.45, 1.0), 0.25)
    heads, tails, anchors = [], [], []
    for k, r in enumerate(ins.regions):
        reg = Region(r.mask, r.op, target=r.target, begin=r.begin, scale=r.scale,
                     anchor=r.anchor if r.anchor is not None or r.op != "rotate" else mask_centroid(r.mask))
        tint(r.mask, REGION_TINTS[k % len(REGION_TINTS)], 0.4)
        tint(warp_mask(r.mask, reg.affine(1.0)), (0.0, 1.0, 0.2), 0.35)
        heads.append(r.begin)
        tails.append(r.target)
        if reg.anchor is not None and r.op == "rotate":
            anchors.append(reg.anchor)
    if heads:
        img = draw_arrows(img, heads, tails)
    if anchors:
        img = draw_arrows(img, anchors, anchors, handle_color=(1.0, 1.0, 1.0), target_color=None,
                          numbers=False)
    return img[None].clamp(0, 1)


class RegionInstruction(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragRegionInstruction",
            display_name=NODE_REGION,
            category=f"{CATEGORY}/DragFlow",
            description="Adds one DragFlow region operation (a MASK and begin→target points, plus "
                        "an anchor for rotations) to DRAG_INSTRUCTIONS. Chain several to move "
                        "several regions.",
            inputs=[
                io.Mask.Input("mask", tooltip="The region to move (white), at the image's size."),
                io.Combo.Input("op", options=list(REGION_OPS), default="relocate",
                               tooltip="relocate: move the object by target − begin; deform: the "
                                       "same translation as a deformation of a part; rotate: turn "
                                       "by the angle begin→target about the anchor."),
                io.Float.Input("begin_x", default=128.0, min=0.0, max=16384.0, step=1.0,
                               tooltip="Begin point x in image pixels (on the object)."),
                io.Float.Input("begin_y", default=128.0, min=0.0, max=16384.0, step=1.0,
                               tooltip="Begin point y in image pixels (on the object)."),
                io.Float.Input("target_x", default=160.0, min=0.0, max=16384.0, step=1.0,
                               tooltip="Where the begin point should end up, x in pixels."),
                io.Float.Input("target_y", default=128.0, min=0.0, max=16384.0, step=1.0,
                               tooltip="Where the begin point should end up, y in pixels."),
                io.Float.Input("anchor_x", default=-1.0, min=-1.0, max=16384.0, step=1.0,
                               tooltip="Rotation pivot x in pixels; -1 (with anchor_y -1) = the "
                                       "region's centroid. Ignored by relocate/deform."),
                io.Float.Input("anchor_y", default=-1.0, min=-1.0, max=16384.0, step=1.0,
                               tooltip="Rotation pivot y in pixels; -1 = the region's centroid."),
                io.Combo.Input("depth", options=list(DRAG_DEPTHS), default="auto",
                               tooltip="Where the moved region lands on an object it meets: behind "
                                       "= it goes behind it, front = it covers it, auto = the "
                                       "Region Affine Optimise 'depth' option decides."),
                DragType.Input("drag_instructions", optional=True,
                               tooltip="Instructions to extend (e.g. another Region Instruction)."),
                io.Image.Input("image", optional=True, tooltip="Source image, only for the preview."),
            ],
            outputs=[DragType.Output(display_name="drag_instructions"),
                     io.Image.Output(display_name="preview")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, mask, op="relocate", begin_x=128.0, begin_y=128.0, target_x=160.0,
                target_y=128.0, anchor_x=-1.0, anchor_y=-1.0, depth="auto", drag_instructions=None,
                image=None) -> io.NodeOutput:
        anchor = None
        if op == "rotate" and (anchor_x >= 0 or anchor_y >= 0):
            anchor = (float(anchor_x), float(anchor_y))
        region = build_region(mask, op, (begin_x, begin_y), (target_x, target_y), anchor, depth=depth)
        ins = add_region(drag_instructions, region)
        prev = regions_preview(ins, image)
        return io.NodeOutput(ins, prev, ui=ui.PreviewImage(prev, cls=cls))


class RegionAffineOptimise(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragRegionAffineOptimise",
            display_name=NODE_OPT,
            category=f"{CATEGORY}/DragFlow",
            description="DragFlow (region-level affine supervision): FireFlow-inverts the image "
                        "to the (steps − skip_steps)-th step, optimises the latent there so the "
                        "regions' FLUX features follow their affines (TRANSPORT then INTENSIFY, "
                        "hard background constraint), then samples the edit and the original "
                        "branch in lockstep, keeping the background. Outputs the edited latent.",
            inputs=[
                io.Model.Input("model", tooltip="A FLUX model (dev/Krea; fp8/GGUF fine)."),
                io.Latent.Input("latent", tooltip="The source image latent (VAEEncode), batch 1."),
                io.Conditioning.Input("source", tooltip="Source prompt: describes the image "
                                                        "(DragFlow: the background prompt)."),
                io.Conditioning.Input("target", tooltip="Target prompt (DragFlow: background + "
                                                        "editing prompt); may equal the source."),
                DragType.Input("drag_instructions", tooltip="Regions from FluxDrag Region "
                                                            "Instruction (image pixels)."),
                *widget_inputs(DragFlowSettings),
                io.Conditioning.Input("adapter", optional=True,
                                      tooltip="Optional adapter conditioning (e.g. FLUX Redux "
                                              "StyleModelApply on the source prompt): its extra "
                                              "tokens join both prompts in inversion, optimisation "
                                              "and sampling."),
                io.Image.Input("image", optional=True, tooltip="Source image, only for the preview."),
                options_input(DragFlowSettings),
            ],
            outputs=[io.Latent.Output(display_name="latent"), io.Image.Output(display_name="preview")],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, model, latent, source, target, drag_instructions, adapter=None, image=None,
                options=None, **widgets) -> io.NodeOutput:
        uid = getattr(getattr(cls, "hidden", None), "unique_id", None)
        options = legacy_options(cls, DragFlowSettings, ("",), options, NODE_OPT)
        s = with_options(DragFlowSettings, NODE_OPT, options, **widgets)
        z, ins, edit_mask, _ = run_dragflow(model, latent, source, target, drag_instructions, settings=s,
                                            adapter=adapter, unique_id=uid)
        prev = regions_preview(ins, image, edit_mask)
        return io.NodeOutput(to_latent(model, z, exact=False), prev, ui=ui.PreviewImage(prev, cls=cls))


DragFlowOptions = make_options_node(
    DragFlowSettings, "FluxDragDragFlowOptions", ("",),
    "DragFlow's expert settings and our departures from the paper (docs/dragflow.md): the "
    "optimisation (iterations, optimizer, feature grid), K/V injection, background, hole filling, "
    "start and editable area, memory. Connect 'options' to FluxDrag Region Affine Optimise; preset "
    "'paper' sets each to the paper's value.")

NODES = [RegionInstruction, RegionAffineOptimise, DragFlowOptions]
