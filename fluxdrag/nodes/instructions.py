"""Nodes that build the shared ``DRAG_INSTRUCTIONS`` (from JSON, or from a MASK and points)."""
from __future__ import annotations

import re

import torch
from comfy_api.latest import io, ui

from ..core.instructions import (
    MAX_DRAGS,
    DragInstructions,
    from_mask_and_points,
    parse_instructions,
    resize_mask_nearest,
)
from ..core.preview import draw_arrows
from .common import CATEGORY, FluxDragInputError, image_at
from .common import DragInstructions as DragType

EXAMPLE = ('{"version": 1, "image_size": [512, 512], "drags": '
           '[{"handle": [200, 256], "target": [300, 256]}]}')


PREVIEW_MAX_SIDE = 1024  # px: a preview without a source image is drawn at most this large


def instructions_preview(ins: DragInstructions, image: torch.Tensor | None) -> torch.Tensor:
    """IMAGE (1, H, W, 3) with the drags drawn (and the editable mask tinted).

    With a source image the preview has the image's size; without one it is a grey canvas scaled
    down to at most ``PREVIEW_MAX_SIDE`` px, so its cost does not grow with a number in the JSON."""
    W, H = ins.image_size
    s = 1.0 if image is not None else min(1.0, PREVIEW_MAX_SIDE / max(W, H))
    h, w = max(1, round(H * s)), max(1, round(W * s))
    img = image_at(image, h, w)
    if ins.mask is not None:
        m = ins.mask if (h, w) == (H, W) else resize_mask_nearest(ins.mask, h, w)
        m = m.to(torch.float32)[..., None]
        img = img * (1 - 0.3 * m) + 0.3 * m * torch.tensor([0.2, 0.5, 1.0])
    if ins.drags:
        img = draw_arrows(img, [(d.handle[0] * w / W, d.handle[1] * h / H) for d in ins.drags],
                          [(d.target[0] * w / W, d.target[1] * h / H) for d in ins.drags])
    return img[None].clamp(0, 1)


def _parse(text: str, node: str, input_name: str) -> DragInstructions:
    try:
        return parse_instructions(text)
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input '{input_name}': {e}") from None


class DragInstructionsFromJSON(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragInstructionsJSON",
            display_name="FluxDrag Drag Instructions (JSON)",
            category=f"{CATEGORY}/instructions",
            description="Drag instructions from a JSON string (the format the editor and the API "
                        "use): image_size [W,H], drags [{handle:[x,y], target:[x,y], mode, "
                        "scale, angle, depth}], optional mask and DragFlow regions, in image pixels. "
                        "depth (behind | front) is the user's depth intent per drag; LazyDrag and "
                        "DragFlow honour it.",
            inputs=[
                io.String.Input("drags_json", multiline=True, default=EXAMPLE,
                                tooltip="Versioned DRAG_INSTRUCTIONS JSON in pixel coordinates of "
                                        "the image the drags were drawn on."),
                io.Image.Input("image", optional=True,
                               tooltip="The source image, only for the preview."),
            ],
            outputs=[DragType.Output(display_name="drag_instructions"),
                     io.Image.Output(display_name="preview")],
        )

    @classmethod
    def execute(cls, drags_json, image=None) -> io.NodeOutput:
        ins = _parse(drags_json, "FluxDrag Drag Instructions (JSON)", "drags_json")
        prev = instructions_preview(ins, image)
        return io.NodeOutput(ins, prev, ui=ui.PreviewImage(prev, cls=cls))


_POINT = r"\s*\(?\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\)?\s*"
_LINE = re.compile(_POINT + r"(?:->|→|;|\s)" + _POINT + r"$")


def parse_points(text: str, node: str) -> tuple[list, list]:
    handles, targets = [], []
    for n, line in enumerate(text.strip().splitlines()):
        if not line.strip():
            continue
        m = _LINE.match(line.strip())
        if not m:
            raise FluxDragInputError(
                f"{node}: input 'points' line {n + 1} ({line.strip()!r}) is not 'hx,hy -> tx,ty'; "
                f"write one drag per line, e.g. '120,200 -> 180,200'.")
        try:
            a = [float(g) for g in m.groups()]
        except ValueError:
            raise FluxDragInputError(
                f"{node}: input 'points' line {n + 1} ({line.strip()!r}) has a number that is not "
                f"a number; write plain decimals, e.g. '120.5,200 -> 180,200'.") from None
        handles.append(a[:2])
        if len(handles) > MAX_DRAGS:
            raise FluxDragInputError(
                f"{node}: input 'points' has more than {MAX_DRAGS} drags (the limit); one drag per "
                f"object is enough — merge or split the edit.")
        targets.append(a[2:])
    if not handles:
        raise FluxDragInputError(f"{node}: input 'points' has no drags; add lines like '120,200 -> 180,200'.")
    return handles, targets


class DragInstructionsFromPoints(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragInstructionsFromPoints",
            display_name="FluxDrag Drag Instructions (Mask + Points)",
            category=f"{CATEGORY}/instructions",
            description="Drag instructions from handle→target points (one per line) and an "
                        "optional MASK of the editable region.",
            inputs=[
                io.Image.Input("image", tooltip="The source image: fixes the pixel size the points "
                                                "refer to."),
                io.String.Input("points", multiline=True, default="200,256 -> 300,256",
                                tooltip="One drag per line: 'hx,hy -> tx,ty' in image pixels."),
                io.Combo.Input("mode", options=["drag", "move"], default="drag",
                               tooltip="drag: elastic (content near the handle moves most); move: "
                                       "rigid move of the region."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Editable region (white = may change); same size as the image."),
            ],
            outputs=[DragType.Output(display_name="drag_instructions"),
                     io.Image.Output(display_name="preview")],
        )

    @classmethod
    def execute(cls, image, points, mode="drag", mask=None) -> io.NodeOutput:
        node = "FluxDrag Drag Instructions (Mask + Points)"
        H, W = int(image.shape[1]), int(image.shape[2])
        handles, targets = parse_points(points, node)
        if mask is not None and tuple(mask.shape[-2:]) != (H, W):
            raise FluxDragInputError(
                f"{node}: input 'mask' is {mask.shape[-1]}×{mask.shape[-2]} but the image is {W}×{H}; "
                f"use a mask of the image's size.")
        try:
            ins = from_mask_and_points(mask[0] if mask is not None else None, handles, targets,
                                       image_size=(W, H), mode=mode)
        except ValueError as e:
            raise FluxDragInputError(f"{node}: {e}") from None
        prev = instructions_preview(ins, image)
        return io.NodeOutput(ins, prev, ui=ui.PreviewImage(prev, cls=cls))


NODES = [DragInstructionsFromJSON, DragInstructionsFromPoints]
