"""The Drag Editor node: drags drawn on a canvas widget on the node (js/fluxdrag_editor.js).

The canvas (JS) writes a versioned JSON document (the ``DRAG_INSTRUCTIONS`` contract of
``core/instructions.py``, in pixels of the image it showed) into the hidden STRING widget
``drags``; this node parses and validates it against the image it receives, and outputs the shared
``DRAG_INSTRUCTIONS``, the editable-region MASK and a preview with the arrows drawn server-side (so
API runs get it too). It also saves the source image to ComfyUI's temp folder and returns it as
``ui.fluxdrag_image`` ([{filename, subfolder, type}]) so the canvas shows the image the node ran on.
It is an output node, so that ui is sent on every run, cached or not.

Modelled on KJNodes' PointsEditor (a hidden JSON widget plus a DOM canvas), with the image shown
before the first run, undo and several regions (docs/editor.md). When the image size differs from
the document's ``image_size`` the drags are rescaled proportionally per axis and a warning naming
both sizes is logged; a drag that collapses (handle == target) after rescaling is refused with its
index.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from comfy_api.latest import io, ui

from ..core.instructions import DragInstructions, parse_instructions, rescale
from .common import CATEGORY, FluxDragInputError
from .common import DragInstructions as DragType
from .instructions import instructions_preview

NODE = "FluxDrag Drag Editor"
EMPTY_DOC = '{"version": 1, "image_size": null, "drags": [], "mask": null, "regions": []}'

log = logging.getLogger("FluxDrag")

# The example picture the shipped workflows load (LoadImage), installed into ComfyUI's input folder
# under a pack-specific name so that every template opens with its image.
EXAMPLE_SOURCE = Path(__file__).resolve().parents[2] / "workflows" / "example_inputs" / "source.png"
EXAMPLE_INPUT_NAME = "fluxdrag_example.png"


def install_example_input(input_dir: str | os.PathLike | None = None) -> Path | None:
    """Copy the example picture into ComfyUI's input folder as ``fluxdrag_example.png`` unless a
    file of that name is already there (a user's file is never overwritten). Returns the path
    written, or None when nothing was written (already there, or the folder is not writable)."""
    if input_dir is None:
        import folder_paths

        input_dir = folder_paths.get_input_directory()
    dest = Path(input_dir) / EXAMPLE_INPUT_NAME
    if dest.exists():
        return None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = EXAMPLE_SOURCE.read_bytes()
        with open(dest, "xb") as f:  # exclusive: fails if the name appeared meanwhile
            f.write(data)
    except FileExistsError:
        return None
    except OSError as e:
        log.warning("[FluxDrag] could not install the example image %s into %s: %s",
                    EXAMPLE_INPUT_NAME, input_dir, e)
        return None
    return dest


def _is_blank(doc: object) -> bool:
    """True for a document with nothing drawn (what a fresh node holds)."""
    if not isinstance(doc, dict):
        return False
    mask = doc.get("mask")
    no_mask = mask is None or (isinstance(mask, dict) and not mask.get("polygons")
                               and not mask.get("rle"))
    return not doc.get("drags") and not doc.get("regions") and no_mask


def parse_editor_document(text: str, image_hw: tuple[int, int]) -> tuple[DragInstructions, str | None]:
    """Parse the editor's JSON for an image of (H, W) pixels.

    Returns (instructions at the image size, warning or None). The warning says the document was
    drawn on an image of another size and has been rescaled. Errors are ``FluxDragInputError``
    naming the input and, through ``core.instructions``, the drag (``drags[i]``).
    """
    H, W = int(image_hw[0]), int(image_hw[1])
    where = f"{NODE}: input 'drags'"
    try:
        doc = json.loads(text) if text and text.strip() else None
    except json.JSONDecodeError:
        doc = text  # parse_instructions reports the JSON error with line and column
    if doc is None or _is_blank(doc):
        raise FluxDragInputError(
            f"{where}: no drags drawn yet. Click-drag on the image in the editor from a handle to "
            f"its target (or, over the API, set 'drags' to a JSON document like "
            f'{{"version": 1, "image_size": [{W}, {H}], "drags": [{{"handle": [x, y], '
            f'"target": [x, y]}}]}}).')
    try:
        ins = parse_instructions(doc)
    except ValueError as e:
        raise FluxDragInputError(f"{where}: {e}") from None
    warning = None
    W0, H0 = ins.image_size
    if (W0, H0) != (W, H):
        fx, fy = W / W0, H / H0
        warning = (f"{NODE}: the drags were drawn on a {W0}x{H0} image but the image input is "
                   f"{W}x{H}; rescaled {len(ins.drags)} drag(s)"
                   f"{', the mask' if ins.mask is not None else ''}"
                   f"{f', {len(ins.regions)} region(s)' if ins.regions else ''} "
                   f"by x*{fx:.4g}, y*{fy:.4g}")
        if abs(fx - fy) > 1e-9 * max(fx, fy):
            warning += " (the aspect ratio changed: shapes are stretched, check the drags)"
        warning += ". Open the node to check them; drawing again stores the new size."
        try:
            ins = rescale(ins, (W, H))
        except ValueError as e:
            raise FluxDragInputError(
                f"{where}: after rescaling from {W0}x{H0} to {W}x{H}: {e}") from None
    return ins, warning


def combine_mask(ins: DragInstructions, mask: torch.Tensor | None) -> DragInstructions:
    """Unite a MASK input (B, H, W) / (H, W) with the mask drawn in the editor (both mean 'may
    change'); returns new instructions. The MASK must have the image's size."""
    if mask is None:
        return ins
    W, H = ins.image_size
    m = mask if mask.dim() == 2 else mask[0]
    if tuple(m.shape[-2:]) != (H, W):
        raise FluxDragInputError(
            f"{NODE}: input 'mask' is {m.shape[-1]}x{m.shape[-2]} but the image is {W}x{H}; give a "
            f"mask of the image's size (e.g. drawn on the same image, or resized with the image).")
    m = m.detach().float().cpu() > 0.5
    if ins.mask is not None:
        m = m | ins.mask
    return DragInstructions(ins.image_size, list(ins.drags), m, list(ins.regions), ins.version)


def editable_mask(ins: DragInstructions) -> torch.Tensor:
    """MASK (1, H, W) float: the editable region, the whole image when none was given."""
    W, H = ins.image_size
    if ins.mask is None:
        return torch.ones(1, H, W)
    return ins.mask.to(torch.float32)[None]


def _save_source_ui(image: torch.Tensor, cls) -> dict:
    """Save the first source image to the temp folder; ``{"fluxdrag_image": [ref]}``."""
    refs = ui.ImageSaveHelper.save_images(image[:1], filename_prefix="fluxdrag_editor_src",
                                          folder_type=io.FolderType.temp, cls=cls,
                                          compress_level=1)
    return {"fluxdrag_image": [dict(r) for r in refs]}


class DragEditor(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragDragEditor",
            display_name=NODE,
            category=f"{CATEGORY}/instructions",
            description="Draw drags on the image: click-drag from a handle to its target (numbered "
                        "arrows), Mask/Region tools for the editable region and DragFlow regions, "
                        "right-click deletes, Ctrl+Z undoes, Grid snaps to the 16 px token grid. "
                        "Outputs the shared drag instructions, the editable-region MASK and a "
                        "preview with the arrows.",
            inputs=[
                io.Image.Input("image", tooltip="The image to edit; the canvas shows it as soon as "
                                                "it is connected (Load Image) or after a run."),
                io.String.Input("drags", default=EMPTY_DOC, multiline=False,
                                tooltip="The drawing as JSON (hidden; written by the canvas): "
                                        '{"version": 1, "image_size": [W, H], "drags": '
                                        '[{"handle": [x, y], "target": [x, y]}], "mask", '
                                        '"regions"} in pixels of the image it was drawn on. Set '
                                        "it directly over the API."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional editable region (white = may change), the image's "
                                      "size; united with a mask drawn on the canvas."),
            ],
            outputs=[DragType.Output(display_name="drag_instructions"),
                     io.Mask.Output(display_name="mask"),
                     io.Image.Output(display_name="preview")],
            # an output node: queueing it alone checks the drawing, and its ui (the image for
            # the canvas) comes back even when the whole prompt is served from the cache
            is_output_node=True,
        )

    @classmethod
    def execute(cls, image, drags, mask=None) -> io.NodeOutput:
        H, W = int(image.shape[1]), int(image.shape[2])
        ins, warning = parse_editor_document(drags, (H, W))
        if warning:
            log.warning(warning)
        ins = combine_mask(ins, mask)
        preview = instructions_preview(ins, image)
        return io.NodeOutput(ins, editable_mask(ins), preview, ui=_save_source_ui(image, cls))


NODES = [DragEditor]
