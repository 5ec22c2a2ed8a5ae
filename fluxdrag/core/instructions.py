"""Shared drag instructions (``DRAG_INSTRUCTIONS``) and the one place where pixel coordinates
become FLUX token coordinates.

Every method of the pack (LazyDrag, DragFlow, ContextDrag, AttentionDrag) and the editor node read
and write the same versioned JSON document, in image pixels (points as LazyDrag takes them,
regions as DragFlow does)::

    {"version": 1, "image_size": [W, H],
     "drags": [{"handle": [x, y], "target": [x, y], "mode": "drag" | "move" | "anchor",
                "scale": [rx, ry],
                "angle": degrees, "depth": "auto" | "front" | "behind"}],
     "mask": null | {"polygons": [[[x, y], ...], ...]} | {"rle": {"size": [H, W], "counts": [...]}},
     "regions": [{"op": "relocate" | "deform" | "rotate", "mask": <mask>,
                  "begin": [x, y], "target": [x, y], "anchor": [x, y] | null,
                  "scale": [rx, ry], "depth": "auto" | "front" | "behind"}]}

* Points are (x, y) = (column, row) in continuous pixel coordinates: 0 is the left/top edge of the
  image and W/H the right/bottom edge, so a point may lie anywhere in [0, W] x [0, H].
* ``mode`` defaults to ``"drag"`` (elastic, FastDrag/LazyDrag), ``"move"`` is rigid with an axis
  scale ``scale`` = r (default [1, 1]) about the handle.
* ``angle`` (optional, ``move`` drags only, default 0) rotates the moved content by that many
  degrees about the handle, clockwise on screen (image y points down), before the scale:
  p -> target + r * R(angle) (p - handle). Written only when non-zero.
* ``depth`` (optional, default ``"auto"``; drags that move and region operations) is the user's
  depth intent for the moved content where it lands: ``"behind"`` = it goes behind the objects
  at its destination (they stay on top), ``"front"`` = it covers them, ``"auto"`` = the method's
  own ``depth`` setting decides. Which one is meant cannot be read from the image, so it is an
  instruction, per drag. Written only when not ``"auto"``; an anchor (it does not move) refuses
  it. Version 1 reads it as an optional field, as ``angle``: a document without it means what it
  meant before. Methods: LazyDrag, DragFlow and ContextDrag honour it (docs/lazydrag.md, docs/dragflow.md,
  docs/contextdrag.md); AttentionDrag ignores it.
* ``mask`` is the optional editable region. Polygons are rasterised with the even-odd rule at
  pixel centres and several polygons are united; RLE counts are run lengths of 0/1 values in
  row-major order, starting with a run of 0 (which may be empty).
* ``regions`` (DragFlow region operations) are validated and kept as data.
* Unknown keys are ignored so that the editor may store its own UI state next to the schema.
* ``"mode": "anchor"`` is a fixed point: the content at ``handle`` stays where it is (its
  ``target`` may be left out; it is the handle). A drag whose handle equals its target is read as
  an anchor (the DragDiffusion / DragBench convention), except a ``move`` drag with a scale other
  than [1, 1] or an angle (a scale or rotation in place is a real edit). A document whose drags are
  all anchors is refused: nothing would move. How each method holds an anchor, and which drags are
  too short for a method: ``core/drag_sets.py``.

FLUX geometry: pixels -> latent (/8) -> tokens (2x2 latent patches, /16 px). Token (i, j) covers
pixels [16j, 16j+16) x [16i, 16i+16); the continuous token coordinate of pixel coordinate p is
p / 16 - 0.5, so token centres are integers. Images whose size is not a multiple of 16 are refused
with a message naming the size and the fix; nothing is shifted silently.

Documented guesses: pixel -> token mask reduction defaults to ``"any"`` (a token is editable when
any of its pixels is) [guess]; ``to_token_space`` rescales instructions drawn on an image of
another size proportionally per axis, with a warning [guess, parameter ``on_size_mismatch``].

Layout (issue 25): this module holds the document (data classes, parsing, validation,
``from_mask_and_points``, ``rescale``); limits and value parsers are in ``instruction_values``, masks
(polygons, RLE) in ``instruction_masks``, the pixel → token conversion in ``instruction_tokens``.
Every public name stays importable from here.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .instruction_masks import (  # noqa: F401  (re-exported)
    _check_mask,
    _parse_mask,
    rasterize_polygons,
    resize_mask_nearest,
    rle_decode,
    rle_encode,
)
from .instruction_tokens import (  # noqa: F401  (re-exported)
    TokenDrags,
    pixel_mask_to_token_mask,
    pixel_to_token,
    to_token_space,
    token_grid_shape,
    token_to_pixel,
)
from .instruction_values import (  # noqa: F401  (re-exported)
    DRAG_DEPTHS,
    DRAG_MODES,
    LATENT_PX,
    MAX_DRAGS,
    MAX_IMAGE_SIDE,
    MAX_JSON_CHARS,
    MAX_JSON_DEPTH,
    MAX_POLYGON_POINTS,
    MAX_REGIONS,
    MAX_RLE_RUNS,
    REGION_OPS,
    SCHEMA_VERSION,
    SUPPORTED_VERSIONS,
    TOKEN_PX,
    Point,
    _check_counts,
    _check_doc_depth,
    _check_point,
    _check_text_depth,
    _fmt_point,
    _masks_equal,
    _num,
    _num_list,
    _parse_angle,
    _parse_depth,
    _parse_point,
    _parse_size,
    depth_rule,
)

# --------------------------------------------------------------------------------------------
# data classes


@dataclass(frozen=True)
class Drag:
    """One instruction: move the content at ``handle`` to ``target`` (pixel (x, y))."""

    handle: Point
    target: Point
    mode: str = "drag"
    scale: Point = (1.0, 1.0)
    angle: float = 0.0  # degrees, clockwise on screen, about the handle (move mode)
    depth: str = "auto"  # "auto" (the method's depth setting) | "front" | "behind"


@dataclass(eq=False)
class RegionOp:
    """One DragFlow region operation; ``mask`` is a bool (H, W) tensor in image pixels."""

    op: str
    mask: torch.Tensor
    begin: Point
    target: Point
    anchor: Point | None = None
    depth: str = "auto"  # as Drag.depth, for the region's moved content
    #: [ours] relocate / deform: the region scaled by (rx, ry) about ``begin`` as it moves (the
    #: paper's three ops do not scale; a drag's ``scale`` becomes this)
    scale: Point = (1.0, 1.0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegionOp):
            return NotImplemented
        return (
            self.op == other.op
            and tuple(self.scale) == tuple(other.scale)
            and self.begin == other.begin
            and self.target == other.target
            and self.anchor == other.anchor
            and self.depth == other.depth
            and _masks_equal(self.mask, other.mask)
        )


@dataclass(eq=False)
class DragInstructions:
    """Validated drag instructions in image pixels. ``image_size`` is (W, H); ``mask`` (H, W)."""

    image_size: tuple[int, int]
    drags: list[Drag] = field(default_factory=list)
    mask: torch.Tensor | None = None
    regions: list[RegionOp] = field(default_factory=list)
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DragInstructions):
            return NotImplemented
        return (
            self.version == other.version
            and tuple(self.image_size) == tuple(other.image_size)
            and list(self.drags) == list(other.drags)
            and _masks_equal(self.mask, other.mask)
            and list(self.regions) == list(other.regions)
        )

    @property
    def width(self) -> int:
        return self.image_size[0]

    @property
    def height(self) -> int:
        return self.image_size[1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as plain Python data (masks written as RLE)."""
        return {
            "version": self.version,
            "image_size": [int(self.image_size[0]), int(self.image_size[1])],
            "drags": [
                {
                    "handle": _num_list(d.handle),
                    "target": _num_list(d.target),
                    "mode": d.mode,
                    "scale": _num_list(d.scale),
                    **({"angle": _num(d.angle)} if d.angle else {}),
                    **({"depth": d.depth} if d.depth != "auto" else {}),
                }
                for d in self.drags
            ],
            "mask": None if self.mask is None else {"rle": rle_encode(self.mask)},
            "regions": [
                {
                    "op": r.op,
                    "mask": {"rle": rle_encode(r.mask)},
                    "begin": _num_list(r.begin),
                    "target": _num_list(r.target),
                    "anchor": None if r.anchor is None else _num_list(r.anchor),
                    **({"scale": _num_list(r.scale)} if tuple(r.scale) != (1.0, 1.0) else {}),
                    **({"depth": r.depth} if r.depth != "auto" else {}),
                }
                for r in self.regions
            ],
        }

    def to_json(self, indent: int | None = None) -> str:
        """Serialise; ``parse_instructions(x.to_json()) == x``."""
        return json.dumps(self.to_dict(), indent=indent)


# --------------------------------------------------------------------------------------------
# parsing and validation


def parse_instructions(
    text_or_dict: str | bytes | Mapping[str, Any] | DragInstructions,
) -> DragInstructions:
    """Parse and validate a ``DRAG_INSTRUCTIONS`` JSON string or dict."""
    if isinstance(text_or_dict, DragInstructions):
        return text_or_dict
    if isinstance(text_or_dict, (str, bytes)):
        text = text_or_dict.decode() if isinstance(text_or_dict, bytes) else text_or_dict
        if not text.strip():
            raise ValueError(
                "DRAG_INSTRUCTIONS is empty; give a JSON object like "
                '{"version": 1, "image_size": [W, H], "drags": [{"handle": [x, y], '
                '"target": [x, y]}]}'
            )
        if len(text) > MAX_JSON_CHARS:
            raise ValueError(
                f"DRAG_INSTRUCTIONS is {len(text):,} characters, over the limit of "
                f"{MAX_JSON_CHARS:,}; send masks as RLE or simpler polygons"
            )
        _check_text_depth(text)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"DRAG_INSTRUCTIONS is not valid JSON ({e.msg} at line {e.lineno}, column "
                f"{e.colno}); fix the JSON text"
            ) from None
    else:
        doc = text_or_dict
        _check_doc_depth(doc)
    if not isinstance(doc, Mapping):
        raise ValueError(
            f"DRAG_INSTRUCTIONS must be a JSON object, got {type(doc).__name__}; wrap it as "
            '{"version": 1, "image_size": [W, H], "drags": [...]}'
        )

    if "version" not in doc:
        raise ValueError(
            f'DRAG_INSTRUCTIONS has no "version"; add "version": {SCHEMA_VERSION} at the top level'
        )
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or (
        version not in SUPPORTED_VERSIONS
    ):
        raise ValueError(
            f"DRAG_INSTRUCTIONS version {version!r} is not supported (this build reads version "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}); re-export the instructions or update "
            "ComfyUI-FluxDrag"
        )

    if "image_size" not in doc:
        raise ValueError(
            'DRAG_INSTRUCTIONS has no "image_size"; add "image_size": [W, H] of the image the '
            "drags were drawn on"
        )
    W, H = _parse_size(doc["image_size"])

    raw_drags = doc.get("drags") or []
    if not isinstance(raw_drags, Sequence) or isinstance(raw_drags, (str, bytes)):
        raise ValueError('"drags" must be a list of {"handle": [x, y], "target": [x, y]} objects')
    raw_regions = doc.get("regions") or []
    if not isinstance(raw_regions, Sequence) or isinstance(raw_regions, (str, bytes)):
        raise ValueError('"regions" must be a list of region operations')
    _check_counts(len(raw_drags), len(raw_regions))
    drags = [_parse_drag(i, d) for i, d in enumerate(raw_drags)]

    mask = _parse_mask(doc.get("mask"), H, W, "mask")

    regions = [_parse_region(i, r, H, W) for i, r in enumerate(raw_regions)]

    return DragInstructions(
        image_size=(W, H), drags=drags, mask=mask, regions=regions, version=version
    )


def _parse_drag(i: int, d: Any) -> Drag:
    where = f"drags[{i}]"
    if not isinstance(d, Mapping):
        raise ValueError(f'{where} must be an object {{"handle": [x, y], "target": [x, y]}}')
    mode = d.get("mode") or "drag"
    for key in ("handle", "target"):
        if key == "target" and mode == "anchor" and key not in d:
            continue  # an anchor's target is its handle
        if key not in d:
            raise ValueError(f'{where} has no "{key}"; add "{key}": [x, y] in image pixels')
    scale = d.get("scale", (1.0, 1.0))
    if scale is None:
        scale = (1.0, 1.0)
    return Drag(
        handle=_parse_point(d["handle"], f"{where}.handle"),
        target=_parse_point(d.get("target", d["handle"]), f"{where}.target"),
        mode=mode,
        scale=_parse_point(scale, f"{where}.scale"),
        angle=_parse_angle(d.get("angle"), f"{where}.angle"),
        depth=_parse_depth(d.get("depth"), f"{where}.depth"),
    )


def _parse_region(i: int, r: Any, H: int, W: int) -> RegionOp:
    where = f"regions[{i}]"
    if not isinstance(r, Mapping):
        raise ValueError(f'{where} must be an object with "op", "mask", "begin", "target"')
    for key in ("op", "mask", "begin", "target"):
        if r.get(key) is None:
            raise ValueError(f'{where} has no "{key}"; every region operation needs it')
    anchor = r.get("anchor")
    return RegionOp(
        op=r["op"],
        mask=_parse_mask(r["mask"], H, W, f"{where}.mask"),
        begin=_parse_point(r["begin"], f"{where}.begin"),
        target=_parse_point(r["target"], f"{where}.target"),
        anchor=None if anchor is None else _parse_point(anchor, f"{where}.anchor"),
        depth=_parse_depth(r.get("depth"), f"{where}.depth"),
        scale=_parse_point((1.0, 1.0) if r.get("scale") is None else r["scale"], f"{where}.scale"),
    )


def _normalise_drag(i: int, d: Drag) -> Drag:
    where = f"drags[{i}]"
    if not isinstance(d, Drag):
        raise ValueError(f"{where} must be a Drag, got {type(d).__name__}")
    return Drag(
        handle=_parse_point(d.handle, f"{where}.handle"),
        target=_parse_point(d.target, f"{where}.target"),
        mode=d.mode,
        scale=_parse_point(d.scale, f"{where}.scale"),
        angle=_parse_angle(d.angle, f"{where}.angle"),
        depth=_parse_depth(d.depth, f"{where}.depth"),
    )


def _validate(ins: DragInstructions) -> None:
    if ins.version not in SUPPORTED_VERSIONS:
        raise ValueError(
            f"DRAG_INSTRUCTIONS version {ins.version!r} is not supported (this build reads "
            f"version {SCHEMA_VERSION})"
        )
    W, H = _parse_size(ins.image_size)
    ins.image_size = (W, H)
    ins.drags = [_normalise_drag(i, d) for i, d in enumerate(ins.drags)]
    ins.regions = list(ins.regions)
    _check_counts(len(ins.drags), len(ins.regions))  # also for objects built in Python
    if not ins.drags and not ins.regions:
        raise ValueError(
            'DRAG_INSTRUCTIONS has no drags; add at least one {"handle": [x, y], "target": [x, y]} '
            "(image pixels)"
        )
    for i, d in enumerate(ins.drags):
        where = f"drags[{i}]"
        if d.mode not in DRAG_MODES:
            raise ValueError(
                f'{where}: unknown mode {d.mode!r}; use "drag" (elastic) or "move" (rigid, with '
                '"scale": [rx, ry])'
            )
        _check_point(d.handle, f"{where}.handle", W, H)
        _check_point(d.target, f"{where}.target", W, H)
        if not all(math.isfinite(c) for c in d.scale):
            raise ValueError(f"{where}.scale {list(d.scale)} contains NaN or infinity; use [1, 1]")
        if d.scale[0] <= 0 or d.scale[1] <= 0:
            raise ValueError(
                f"{where}.scale {_fmt_point(d.scale)} must be positive on both axes; use [1, 1] "
                "for a plain move, values > 1 to enlarge, between 0 and 1 to shrink"
            )
        if not math.isfinite(d.angle):
            raise ValueError(f"{where}.angle {d.angle} is not finite; use degrees, e.g. 30")
        if d.angle and d.mode != "move":
            raise ValueError(
                f'{where}: "angle" rotates rigid content and needs "mode": "move" (an elastic drag '
                "cannot rotate); set the mode to move or remove the angle"
            )
        in_place = d.mode == "move" and (tuple(d.scale) != (1.0, 1.0) or d.angle % 360 != 0)
        if d.mode == "anchor":
            if d.handle != d.target:
                raise ValueError(
                    f'{where}: an anchor ("mode": "anchor") holds the content at its handle '
                    f"{_fmt_point(d.handle)}, but its target is {_fmt_point(d.target)}; leave out "
                    'the target (or set it to the handle), or use "mode": "drag" to move it')
            if tuple(d.scale) != (1.0, 1.0) or d.angle % 360 != 0:
                raise ValueError(f'{where}: an anchor cannot scale or rotate; remove "scale"/'
                                 '"angle" or use "mode": "move"')
            if d.depth != "auto":
                raise ValueError(f'{where}: an anchor does not move, so "depth" {d.depth!r} has '
                                 'nothing to place; remove "depth" or drag the handle to a target')
        elif d.handle == d.target and not in_place:
            # DragDiffusion / DragBench convention: a handle on its target pins that point (a
            # depth on it has nothing to place and is dropped with the move)
            ins.drags[i] = d = Drag(d.handle, d.target, "anchor")
    if ins.drags and not ins.regions and all(d.mode == "anchor" for d in ins.drags):
        raise ValueError(
            f"DRAG_INSTRUCTIONS has only anchors ({len(ins.drags)} fixed point(s), handle = "
            "target), so nothing would move; drag at least one handle to a new target")
    if ins.mask is not None:
        _check_mask(ins.mask, "mask", W, H)
    for i, r in enumerate(ins.regions):
        where = f"regions[{i}]"
        if r.op not in REGION_OPS:
            raise ValueError(
                f"{where}: unknown op {r.op!r}; use one of {', '.join(map(repr, REGION_OPS))}"
            )
        _check_mask(r.mask, f"{where}.mask", W, H)
        _check_point(r.begin, f"{where}.begin", W, H)
        _check_point(r.target, f"{where}.target", W, H)
        if r.anchor is not None:
            _check_point(r.anchor, f"{where}.anchor", W, H)
        r.depth = _parse_depth(r.depth, f"{where}.depth")
        if not all(math.isfinite(c) and c > 0 for c in r.scale):
            raise ValueError(f"{where}.scale {list(r.scale)} must be finite and positive on both axes; use [1, 1] "
                             "to keep the region's size")
        if tuple(r.scale) != (1.0, 1.0) and r.op not in ("relocate", "deform"):
            raise ValueError(f'{where}: a {r.op!r} region cannot scale; remove "scale" or use "op": "relocate"')


def from_mask_and_points(
    mask: torch.Tensor | None,
    handles: Sequence[Sequence[float]] | torch.Tensor,
    targets: Sequence[Sequence[float]] | torch.Tensor,
    image_size: tuple[int, int] | None = None,
    mode: str | Sequence[str] = "drag",
    scale: Sequence[float] | Sequence[Sequence[float]] = (1.0, 1.0),
) -> DragInstructions:
    """Build instructions from a mask and handle/target pixel points (x, y).

    ``mask`` may be (H, W), (1, H, W) (a ComfyUI MASK) or None; non-bool masks are thresholded at
    0.5. ``image_size`` is (W, H); when None it is taken from the mask. ``mode`` and ``scale`` are
    either one value for all drags or one per drag.
    """
    if mask is not None:
        mask = torch.as_tensor(mask)
        if mask.dim() == 3:
            if mask.shape[0] != 1:
                raise ValueError(
                    f"mask has a batch of {mask.shape[0]}; give a single (H, W) mask"
                )
            mask = mask[0]
        if mask.dim() != 2:
            raise ValueError(f"mask must be (H, W) or (1, H, W), got shape {tuple(mask.shape)}")
        mask = mask.cpu()
        mask = mask if mask.dtype == torch.bool else mask > 0.5
        if image_size is None:
            image_size = (int(mask.shape[1]), int(mask.shape[0]))
    if image_size is None:
        raise ValueError("image_size (W, H) is needed when no mask is given")
    hs = torch.as_tensor(handles, dtype=torch.float64).reshape(-1, 2).tolist()
    ts = torch.as_tensor(targets, dtype=torch.float64).reshape(-1, 2).tolist()
    if len(hs) != len(ts):
        raise ValueError(
            f"got {len(hs)} handles but {len(ts)} targets; give one target per handle"
        )
    n = len(hs)
    modes = [mode] * n if isinstance(mode, str) else list(mode)
    if len(modes) != n:
        raise ValueError(f"got {len(modes)} modes for {n} drags; give one mode or one per drag")
    sc = torch.as_tensor(scale, dtype=torch.float64)
    scales = sc.reshape(1, 2).expand(n, 2).tolist() if sc.numel() == 2 else sc.reshape(-1, 2)
    scales = scales if isinstance(scales, list) else scales.tolist()
    if len(scales) != n:
        raise ValueError(f"got {len(scales)} scales for {n} drags; give one scale or one per drag")
    drags = [
        Drag(handle=tuple(h), target=tuple(t), mode=m, scale=tuple(s))
        for h, t, m, s in zip(hs, ts, modes, scales, strict=True)
    ]
    return DragInstructions(image_size=tuple(image_size), drags=drags, mask=mask)


def rescale(instr: DragInstructions, new_size: tuple[int, int]) -> DragInstructions:
    """Proportionally rescale points and masks to a new image size (W, H); returns a new instance.

    Scales ``scale`` (a relative factor) are kept; masks are resized nearest-neighbour.
    """
    W2, H2 = _parse_size(new_size)
    W, H = instr.image_size
    fx, fy = W2 / W, H2 / H

    def sp(p: Point) -> Point:
        return (min(max(p[0] * fx, 0.0), W2), min(max(p[1] * fy, 0.0), H2))

    drags = [Drag(sp(d.handle), sp(d.target), d.mode, d.scale, d.angle, depth=d.depth) for d in instr.drags]
    mask = None if instr.mask is None else resize_mask_nearest(instr.mask, H2, W2)
    regions = [
        RegionOp(
            r.op,
            resize_mask_nearest(r.mask, H2, W2),
            sp(r.begin),
            sp(r.target),
            None if r.anchor is None else sp(r.anchor),
            depth=r.depth,
            scale=r.scale,
        )
        for r in instr.regions
    ]
    return DragInstructions((W2, H2), drags, mask, regions, instr.version)
