"""Which drags move and which hold, for one method: anchors and drags too short to resolve.

DragBench (and DragDiffusion's UI) marks a fixed point as a handle on its own target; the
instructions read it as ``"mode": "anchor"`` (``core/instructions.py``). Each method holds an
anchor in its own way (LazyDrag: zero displacement in the map; ContextDrag: the point mapped to
itself; DragFlow: a held region; AttentionDrag: the latent around it kept), but all of them first
split the drags here:

* a drag shorter than the method's resolution (``min_px``: half a latent cell or half a token)
  cannot move anything on that grid; it does not sink the edit: it is kept as an anchor (its
  content held where it is — the drag says "this point belongs here") [ours; ``short="drop"``
  forgets it instead], with a warning naming the drag and its length (``warnings.warn``, which
  the pack shows in the UI, over the websocket and in the log);
* a move drag that scales or rotates in place is never short;
* when nothing is left to move (only anchors), a ValueError says so.

Also here: DragFlow regions built from a mask and points (:func:`regions_from_drags`), the form
the DragBench region papers use to run point benchmarks with region methods.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from .instructions import Drag, DragInstructions, Point, RegionOp

SHORT_POLICIES = ("anchor", "drop")


@dataclass
class DragSplit:
    """``instructions``: the document with short drags made anchors (or dropped); ``moving`` and
    ``anchors``: indices into ``instructions.drags``; ``short``: (original index, length px)."""

    instructions: DragInstructions
    moving: list[int]
    anchors: list[int]
    short: list[tuple[int, float]]

    @property
    def anchor_points(self) -> list[Point]:
        return [self.instructions.drags[i].handle for i in self.anchors]

    @property
    def moving_drags(self) -> list[Drag]:
        return [self.instructions.drags[i] for i in self.moving]


def drag_length(d: Drag) -> float:
    return math.hypot(d.target[0] - d.handle[0], d.target[1] - d.handle[1])


def _in_place(d: Drag) -> bool:
    return d.mode == "move" and (tuple(d.scale) != (1.0, 1.0) or d.angle % 360 != 0)


def split_drags(ins: DragInstructions, min_px: float, method: str, resolution: str = "",
                short: str = "anchor", stacklevel: int = 2) -> DragSplit:
    """Split ``ins``'s drags into moving ones and anchors for a method resolving ``min_px``.

    A drag whose length is below ``min_px`` becomes an anchor (``short="anchor"``) or is left out
    (``"drop"``), with one warning per drag; ``resolution`` names the grid in that warning.
    Raises ValueError when no drag is left to move (and ``ins`` has no regions).
    """
    if short not in SHORT_POLICIES:
        raise ValueError(f"short must be one of {', '.join(SHORT_POLICIES)}, got {short!r}")
    what = f" ({resolution})" if resolution else ""
    drags: list[Drag] = []
    short_found: list[tuple[int, float]] = []
    for i, d in enumerate(ins.drags):
        length = drag_length(d)
        if d.mode != "anchor" and not _in_place(d) and length < min_px:
            short_found.append((i, length))
            kept = "kept as an anchor (its content held in place)" if short == "anchor" else "left out"
            warnings.warn(
                f"{method}: drag {i} ({_pt(d.handle)} -> {_pt(d.target)}) moves only {length:.1f} px, "
                f"less than this method resolves{what}: {min_px:g} px; it is {kept}. Drag farther "
                "to move it", stacklevel=stacklevel)
            if short == "drop":
                continue
            d = Drag(d.handle, d.handle, "anchor")
        drags.append(d)
    moving = [i for i, d in enumerate(drags) if d.mode != "anchor"]
    anchors = [i for i, d in enumerate(drags) if d.mode == "anchor"]
    if not moving and not ins.regions:
        n_short = len(short_found)
        raise ValueError(
            f"{method}: no drag is left to move: {len(ins.drags)} drag(s), "
            f"{len(ins.drags) - n_short} anchor(s) and {n_short} shorter than {min_px:g} px; drag "
            "at least one handle farther from its target")
    out = DragInstructions(ins.image_size, drags, ins.mask, list(ins.regions), ins.version)
    return DragSplit(out, moving, anchors, short_found)


def disc_mask(center: Point, radius: float, hw: tuple[int, int]) -> torch.Tensor:
    """Pixels (H, W) whose centres lie within ``radius`` of ``center`` (x, y); at least the pixel
    holding the centre."""
    H, W = int(hw[0]), int(hw[1])
    ys = torch.arange(H, dtype=torch.float64).view(-1, 1) + 0.5
    xs = torch.arange(W, dtype=torch.float64).view(1, -1) + 0.5
    m = (xs - center[0]) ** 2 + (ys - center[1]) ** 2 <= radius * radius
    cx = min(max(int(center[0]), 0), W - 1)
    cy = min(max(int(center[1]), 0), H - 1)
    m[cy, cx] = True
    return m


def regions_from_drags(split: DragSplit, min_radius_px: float = 16.0, radius_factor: float = 0.5,
                       anchor_radius_px: float = 16.0, method: str = "DragFlow") -> list[RegionOp]:
    """DragFlow regions from a point drag document (DragBench's points and mask).

    [guess; the region papers convert DragBench by hand or do not say how] Each moving drag
    relocates the part of the editable mask nearest to its handle (the mask split among the
    handles by nearest handle, as LazyDrag's winner-takes-all splits it), from its handle to its
    target, with the drag's ``depth``. Without a mask, a drag's region is the disc of radius
    max(``min_radius_px``, ``radius_factor`` · its length) around the handle (LazyDrag's default
    editable region, in pixels). Each anchor is a held region (relocate by zero): the disc of
    ``anchor_radius_px`` around it, less the moving regions.
    """
    ins = split.instructions
    W, H = ins.image_size
    moving = split.moving_drags
    regions: list[RegionOp] = []
    taken = torch.zeros(H, W, dtype=torch.bool)
    if ins.mask is not None and bool(ins.mask.any()) and moving:
        ys, xs = torch.nonzero(ins.mask, as_tuple=True)
        pts = torch.stack([xs.double() + 0.5, ys.double() + 0.5], 1)
        hs = torch.tensor([d.handle for d in moving], dtype=torch.float64)
        owner = torch.cdist(pts, hs).argmin(1)
        masks = []
        for k in range(len(moving)):
            m = torch.zeros(H, W, dtype=torch.bool)
            sel = owner == k
            m[ys[sel], xs[sel]] = True
            masks.append(m)
    else:
        masks = [torch.zeros(H, W, dtype=torch.bool) for _ in moving]
    for k, d in enumerate(moving):
        if not bool(masks[k].any()):  # no mask, or no mask pixel nearest to this handle
            r = max(min_radius_px, radius_factor * drag_length(d))
            masks[k] = disc_mask(d.handle, r, (H, W)) & ~taken
            if not bool(masks[k].any()):
                masks[k] = disc_mask(d.handle, 0.5, (H, W))
        taken |= masks[k]
        regions.append(RegionOp("relocate", masks[k], d.handle, d.target, depth=d.depth, scale=d.scale))
    for i in split.anchors:
        p = ins.drags[i].handle
        m = disc_mask(p, anchor_radius_px, (H, W)) & ~taken
        if not bool(m.any()):
            warnings.warn(f"{method}: anchor {i} at {_pt(p)} lies inside a moving region; it is not "
                          "held separately", stacklevel=2)
            continue
        regions.append(RegionOp("relocate", m, p, p))
    return regions


def _pt(p: Point) -> str:
    return "(" + ", ".join(f"{c:.1f}".removesuffix(".0") for c in p) + ")"


def hold_mask(points_px: list[Point], grid_hw: tuple[int, int], radius_px: float,
              cell_px: int = 8) -> torch.Tensor:
    """Cells (h, w) of a grid of ``cell_px`` pixels whose centres lie within ``radius_px`` of an
    anchor point (x, y in pixels); at least the cell holding each point."""
    h, w = int(grid_hw[0]), int(grid_hw[1])
    out = torch.zeros(h, w, dtype=torch.bool)
    for p in points_px:
        out |= disc_mask((p[0] / cell_px, p[1] / cell_px), radius_px / cell_px, (h, w))
    return out


def hold_anchors(z_new: torch.Tensor, z_old: torch.Tensor, points_px: list[Point],
                 radius_px: float, cell_px: int = 8) -> torch.Tensor:
    """``z_new`` with the cells around each anchor taken from ``z_old`` (B, C, h, w): the content
    at a fixed point stays where it was."""
    if not points_px:
        return z_new
    m = hold_mask(points_px, tuple(z_new.shape[-2:]), radius_px, cell_px).to(z_new.device)
    return torch.where(m, z_old.to(z_new), z_new)
