"""Shared drag instructions (``DRAG_INSTRUCTIONS``) and the one place where pixel coordinates
become FLUX token coordinates.

Every method of the pack (LazyDrag, DragFlow, ContextDrag, AttentionDrag) and the editor node read
and write the same versioned JSON document, in image pixels (issue 3, anchors §1.2 and §2.1)::

    {"version": 1, "image_size": [W, H],
     "drags": [{"handle": [x, y], "target": [x, y], "mode": "drag" | "move", "scale": [rx, ry],
                "angle": degrees}],
     "mask": null | {"polygons": [[[x, y], ...], ...]} | {"rle": {"size": [H, W], "counts": [...]}},
     "regions": [{"op": "relocate" | "deform" | "rotate", "mask": <mask>,
                  "begin": [x, y], "target": [x, y], "anchor": [x, y] | null}]}

* Points are (x, y) = (column, row) in continuous pixel coordinates: 0 is the left/top edge of the
  image and W/H the right/bottom edge, so a point may lie anywhere in [0, W] x [0, H].
* ``mode`` defaults to ``"drag"`` (elastic, FastDrag/LazyDrag), ``"move"`` is rigid with an axis
  scale ``scale`` = r (default [1, 1]) about the handle.
* ``angle`` (optional, ``move`` drags only, default 0) rotates the moved content by that many
  degrees about the handle, clockwise on screen (image y points down), before the scale:
  p -> target + r * R(angle) (p - handle). Written only when non-zero.
* ``mask`` is the optional editable region. Polygons are rasterised with the even-odd rule at
  pixel centres and several polygons are united; RLE counts are run lengths of 0/1 values in
  row-major order, starting with a run of 0 (which may be empty).
* ``regions`` (DragFlow region operations) are validated and kept as data.
* Unknown keys are ignored so that the editor may store its own UI state next to the schema.
* A drag whose handle equals its target is refused, except a ``move`` drag with a scale other
  than [1, 1] or an angle (a scale or rotation in place is a real edit).

FLUX geometry: pixels -> latent (/8) -> tokens (2x2 latent patches, /16 px). Token (i, j) covers
pixels [16j, 16j+16) x [16i, 16i+16); the continuous token coordinate of pixel coordinate p is
p / 16 - 0.5, so token centres are integers. Images whose size is not a multiple of 16 are refused
with a message naming the size and the fix; nothing is shifted silently.

Documented guesses: pixel -> token mask reduction defaults to ``"any"`` (a token is editable when
any of its pixels is) [guess]; ``to_token_space`` rescales instructions drawn on an image of
another size proportionally per axis, with a warning [guess, parameter ``on_size_mismatch``].

Why one long module: the JSON schema, its validation, mask rasterisation (polygons, RLE) and the
pixel → token conversion are one contract every method and the editor read; split, the checks of
one document would be scattered over several files.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
TOKEN_PX = 16  # pixels per FLUX token side (VAE /8, then 2x2 patches)
LATENT_PX = 8  # pixels per latent cell side
DRAG_MODES = ("drag", "move")
REGION_OPS = ("relocate", "deform", "rotate")

Point = tuple[float, float]

# Limits on what one document may ask for, checked before anything of image size is allocated.
# They bound the work to what was drawn; each error names the limit and the fix (README, "Limits").
MAX_IMAGE_SIDE = 4096        # px per side: 65 536 FLUX tokens at 4096², far past FLUX.1's ~2 MP
MAX_DRAGS = 64               # drags per document
MAX_REGIONS = 32             # DragFlow region operations per document
MAX_POLYGON_POINTS = 10_000  # vertices over all polygons of one mask
MAX_RLE_RUNS = 4 * MAX_IMAGE_SIDE * MAX_IMAGE_SIDE // 64  # run lengths of one RLE mask
MAX_JSON_CHARS = 4_000_000   # characters of one JSON document
MAX_JSON_DEPTH = 32          # nesting of lists/objects (the schema needs 5)


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


@dataclass(eq=False)
class RegionOp:
    """One DragFlow region operation; ``mask`` is a bool (H, W) tensor in image pixels."""

    op: str
    mask: torch.Tensor
    begin: Point
    target: Point
    anchor: Point | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegionOp):
            return NotImplemented
        return (
            self.op == other.op
            and self.begin == other.begin
            and self.target == other.target
            and self.anchor == other.anchor
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
                }
                for r in self.regions
            ],
        }

    def to_json(self, indent: int | None = None) -> str:
        """Serialise; ``parse_instructions(x.to_json()) == x``."""
        return json.dumps(self.to_dict(), indent=indent)


@dataclass
class TokenDrags:
    """Drags on the FLUX token grid (float token coordinates, (x, y) order).

    handles, targets, scales: (n, 2) float64; modes: n strings; mask: (h, w) bool editable
    region on the token grid or None; grid_hw = (h, w) tokens; image_hw = (H, W) pixels;
    angles: (n,) float64 degrees (move mode; clockwise on screen), None = all 0.
    """

    handles: torch.Tensor
    targets: torch.Tensor
    modes: list[str]
    scales: torch.Tensor
    mask: torch.Tensor | None
    grid_hw: tuple[int, int]
    image_hw: tuple[int, int]
    angles: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.angles is None:
            self.angles = torch.zeros(int(self.handles.shape[0]), dtype=torch.float64)

    def __len__(self) -> int:
        return int(self.handles.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "handles": self.handles.tolist(),
            "targets": self.targets.tolist(),
            "modes": list(self.modes),
            "scales": self.scales.tolist(),
            "mask": None if self.mask is None else rle_encode(self.mask),
            "grid_hw": list(self.grid_hw),
            "image_hw": list(self.image_hw),
            "angles": self.angles.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TokenDrags:
        n = len(d["handles"])
        return cls(
            handles=torch.tensor(d["handles"], dtype=torch.float64).reshape(n, 2),
            targets=torch.tensor(d["targets"], dtype=torch.float64).reshape(n, 2),
            modes=list(d["modes"]),
            scales=torch.tensor(d["scales"], dtype=torch.float64).reshape(n, 2),
            mask=None if d.get("mask") is None else rle_decode(d["mask"]),
            grid_hw=(int(d["grid_hw"][0]), int(d["grid_hw"][1])),
            image_hw=(int(d["image_hw"][0]), int(d["image_hw"][1])),
            angles=torch.tensor(d.get("angles") or [0.0] * n, dtype=torch.float64).reshape(n),
        )


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


def _check_counts(n_drags: int, n_regions: int) -> None:
    if n_drags > MAX_DRAGS:
        raise ValueError(
            f"DRAG_INSTRUCTIONS has {n_drags} drags, over the limit of {MAX_DRAGS}; merge drags "
            "that move one object (one drag per object is enough) or split the edit"
        )
    if n_regions > MAX_REGIONS:
        raise ValueError(
            f"DRAG_INSTRUCTIONS has {n_regions} regions, over the limit of {MAX_REGIONS}; merge "
            "regions that move together or split the edit"
        )


def _depth_error(depth: int) -> ValueError:
    return ValueError(
        f"DRAG_INSTRUCTIONS is nested deeper than {MAX_JSON_DEPTH} levels (found {depth}); the "
        "format needs at most 5 — check the JSON for runaway brackets"
    )


def _check_text_depth(text: str) -> None:
    """Bracket nesting of a JSON text, outside strings, before ``json.loads`` recurses into it."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise _depth_error(depth)
        elif ch in "]}":
            depth -= 1


def _check_doc_depth(doc: Any) -> None:
    """The same limit for an already-parsed document (iterative: no recursion to exhaust)."""
    stack = [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, Mapping):
            children = node.values()
        elif isinstance(node, Sequence) and not isinstance(node, (str, bytes)):
            children = node
        else:
            continue
        if d > MAX_JSON_DEPTH:
            raise _depth_error(d)
        stack.extend((c, d + 1) for c in children)


def _parse_size(v: Any, what: str = '"image_size"', form: str = "[W, H]") -> tuple[int, int]:
    ok = isinstance(v, Sequence) and not isinstance(v, (str, bytes)) and len(v) == 2
    if ok:
        try:
            w, h = float(v[0]), float(v[1])
        except (TypeError, ValueError, OverflowError):
            ok = False
        else:
            ok = math.isfinite(w) and math.isfinite(h) and w == int(w) and h == int(h)
            ok = ok and w >= 1 and h >= 1
    if not ok:
        raise ValueError(
            f"{what} must be {form} with two positive integers, got {v!r}; give the pixel "
            "size of the image the drags were drawn on"
        )
    if w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
        raise ValueError(
            f"{what} {form} = {[int(w), int(h)]} is over the limit of {MAX_IMAGE_SIDE} px per side; draw "
            f"the drags on an image of at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} (scale it down "
            "first)"
        )
    return int(w), int(h)


def _parse_point(v: Any, where: str) -> Point:
    if (
        not isinstance(v, Sequence)
        or isinstance(v, (str, bytes))
        or len(v) != 2
        or any(isinstance(c, bool) for c in v)
    ):
        raise ValueError(f"{where} must be [x, y] (two numbers), got {v!r}")
    try:
        x, y = float(v[0]), float(v[1])
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be [x, y] (two numbers), got {v!r}") from None
    return (x, y)


def _parse_drag(i: int, d: Any) -> Drag:
    where = f"drags[{i}]"
    if not isinstance(d, Mapping):
        raise ValueError(f'{where} must be an object {{"handle": [x, y], "target": [x, y]}}')
    for key in ("handle", "target"):
        if key not in d:
            raise ValueError(f'{where} has no "{key}"; add "{key}": [x, y] in image pixels')
    mode = d.get("mode") or "drag"
    scale = d.get("scale", (1.0, 1.0))
    if scale is None:
        scale = (1.0, 1.0)
    return Drag(
        handle=_parse_point(d["handle"], f"{where}.handle"),
        target=_parse_point(d["target"], f"{where}.target"),
        mode=mode,
        scale=_parse_point(scale, f"{where}.scale"),
        angle=_parse_angle(d.get("angle"), f"{where}.angle"),
    )


def _parse_angle(a: Any, where: str) -> float:
    if a is None:
        return 0.0
    if isinstance(a, bool):
        raise ValueError(f"{where} must be a number of degrees, got {a!r}")
    try:
        return float(a)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number of degrees, got {a!r}") from None


def _parse_mask(m: Any, H: int, W: int, where: str) -> torch.Tensor | None:
    if m is None:
        return None
    if isinstance(m, torch.Tensor):
        return m
    if not isinstance(m, Mapping):
        raise ValueError(
            f'{where} must be null, {{"polygons": [...]}} or {{"rle": {{"size": [H, W], '
            f'"counts": [...]}}}}, got {type(m).__name__}'
        )
    if "rle" in m:
        return rle_decode(m["rle"], where=f"{where}.rle")
    if "polygons" in m:
        polys = m["polygons"]
        if not isinstance(polys, Sequence) or isinstance(polys, (str, bytes)):
            raise ValueError(f"{where}.polygons must be a list of polygons [[x, y], ...]")
        n_points = sum(len(p) for p in polys if isinstance(p, Sequence))
        if n_points > MAX_POLYGON_POINTS:
            raise ValueError(
                f"{where}.polygons have {n_points:,} points, over the limit of "
                f"{MAX_POLYGON_POINTS:,}; simplify the outline or send the mask as RLE"
            )
        parsed = []
        for k, poly in enumerate(polys):
            if not isinstance(poly, Sequence) or len(poly) < 3:
                raise ValueError(
                    f"{where}.polygons[{k}] needs at least 3 points [[x, y], ...]; draw a "
                    "polygon or remove it"
                )
            pts = [_parse_point(p, f"{where}.polygons[{k}][{n}]") for n, p in enumerate(poly)]
            if not all(math.isfinite(c) for p in pts for c in p):
                raise ValueError(f"{where}.polygons[{k}] contains NaN or infinity; redraw it")
            parsed.append(pts)
        return rasterize_polygons(parsed, H, W)
    raise ValueError(f'{where} must have a "polygons" or an "rle" key, got keys {sorted(m)}')


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
    )


def _check_point(p: Point, where: str, W: int, H: int) -> None:
    if not all(math.isfinite(c) for c in p):
        raise ValueError(f"{where} {list(p)} contains NaN or infinity; set a finite pixel position")
    x, y = p
    if not (0.0 <= x <= W and 0.0 <= y <= H):
        raise ValueError(
            f"{where} {_fmt_point(p)} lies outside the {W}x{H} image (x must be in [0, {W}], y in "
            f"[0, {H}]); move the point into the image, or check that image_size is the size the "
            "drags were drawn on"
        )


def _check_mask(m: torch.Tensor, where: str, W: int, H: int) -> None:
    if not isinstance(m, torch.Tensor) or m.dim() != 2:
        raise ValueError(f"{where} must be a 2-D (H, W) mask")
    if m.dtype != torch.bool:
        raise ValueError(f"{where} must be a bool tensor (use mask > 0.5)")
    mh, mw = m.shape
    if (mh, mw) != (H, W):
        raise ValueError(
            f"{where} is {mw}x{mh} (WxH) but image_size is {W}x{H}; draw the mask on the same "
            "image as the drags, or resize it to the image size"
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
        if d.handle == d.target and not in_place:
            raise ValueError(
                f"{where}: handle {_fmt_point(d.handle)} equals its target, so the drag does "
                "nothing; move the target away from the handle or delete this drag"
            )
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


# --------------------------------------------------------------------------------------------
# masks: polygons and RLE


def rasterize_polygons(
    polys: Sequence[Sequence[Sequence[float]]], H: int, W: int, edge_chunk: int = 256
) -> torch.Tensor:
    """Rasterise polygons (lists of pixel (x, y) vertices) to a bool (H, W) mask.

    Each polygon uses the even-odd rule, tested at pixel centres (x + 0.5, y + 0.5); several
    polygons are united. Cost O(edges * H + H * W): each edge crossing of a pixel row toggles the
    pixels left of the crossing, counted with a suffix sum.
    """
    out = torch.zeros(H, W, dtype=torch.bool)
    py = torch.arange(H, dtype=torch.float64) + 0.5  # (H,) row centres
    for poly in polys:
        pts = torch.as_tensor(poly, dtype=torch.float64).reshape(-1, 2)
        if pts.shape[0] < 3:
            continue
        a, b = pts, torch.roll(pts, -1, 0)
        keep = a[:, 1] != b[:, 1]  # horizontal edges never cross a horizontal ray
        a, b = a[keep], b[keep]
        hits = torch.zeros(H, W + 1, dtype=torch.int32)
        for k0 in range(0, a.shape[0], edge_chunk):
            x1, y1 = a[k0:k0 + edge_chunk, :1], a[k0:k0 + edge_chunk, 1:]  # (E, 1)
            x2, y2 = b[k0:k0 + edge_chunk, :1], b[k0:k0 + edge_chunk, 1:]
            spans = (y1 > py) != (y2 > py)  # (E, H): edge crosses the row's centre line
            x_cross = x1 + (py - y1) * (x2 - x1) / (y2 - y1)  # (E, H)
            # pixels j with centre j + 0.5 < x_cross are j < ceil(x_cross - 0.5)
            n_left = torch.ceil(x_cross - 0.5).clamp(0, W).long()
            e_idx, rows = torch.nonzero(spans, as_tuple=True)
            hits.index_put_(
                (rows, n_left[e_idx, rows]), torch.ones_like(rows, dtype=torch.int32), accumulate=True
            )
        # crossings to the right of pixel j = hits summed over columns > j
        right = hits.flip(1).cumsum(1).flip(1)[:, 1:]  # (H, W)
        out |= (right % 2) == 1
    return out


def rle_encode(mask: torch.Tensor) -> dict[str, Any]:
    """Row-major run lengths of a bool (H, W) mask, alternating 0/1 and starting with 0."""
    if mask.dim() != 2:
        raise ValueError(f"rle_encode needs an (H, W) mask, got shape {tuple(mask.shape)}")
    H, W = mask.shape
    flat = mask.reshape(-1).to(torch.int8).cpu()
    if flat.numel() == 0:
        return {"size": [int(H), int(W)], "counts": []}
    change = torch.nonzero(flat[1:] != flat[:-1]).reshape(-1) + 1
    bounds = torch.cat([torch.tensor([0]), change, torch.tensor([flat.numel()])])
    counts = torch.diff(bounds).tolist()
    if int(flat[0]) == 1:
        counts = [0] + counts
    return {"size": [int(H), int(W)], "counts": counts}


def rle_decode(rle: Mapping[str, Any], where: str = "rle") -> torch.Tensor:
    """Inverse of :func:`rle_encode`; validates size and counts."""
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise ValueError(f'{where} must be {{"size": [H, W], "counts": [...]}}')
    H, W = _parse_size(rle["size"], f"{where}.size", "[H, W]")  # same checks as image_size
    counts = rle["counts"]
    if isinstance(counts, Sequence) and len(counts) > MAX_RLE_RUNS:
        raise ValueError(f"{where}.counts has {len(counts):,} runs, over the limit of "
                         f"{MAX_RLE_RUNS:,}; re-export the mask")
    if not isinstance(counts, Sequence) or isinstance(counts, (str, bytes)) or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts
    ):
        raise ValueError(f"{where}.counts must be a list of non-negative integers")
    if sum(counts) != H * W:
        raise ValueError(
            f"{where}.counts sum to {sum(counts)} but size {H}x{W} (HxW) has {H * W} pixels; "
            "re-export the mask"
        )
    values = (torch.arange(len(counts)) % 2).to(torch.bool)
    flat = torch.repeat_interleave(values, torch.tensor(counts, dtype=torch.long))
    return flat.reshape(H, W)


def resize_mask_nearest(mask: torch.Tensor, H2: int, W2: int) -> torch.Tensor:
    H, W = mask.shape
    rows = ((torch.arange(H2, dtype=torch.float64) + 0.5) * H / H2).floor().long().clamp(0, H - 1)
    cols = ((torch.arange(W2, dtype=torch.float64) + 0.5) * W / W2).floor().long().clamp(0, W - 1)
    return mask[rows][:, cols]


def rescale(instr: DragInstructions, new_size: tuple[int, int]) -> DragInstructions:
    """Proportionally rescale points and masks to a new image size (W, H); returns a new instance.

    Scales ``scale`` (a relative factor) are kept; masks are resized nearest-neighbour.
    """
    W2, H2 = _parse_size(new_size)
    W, H = instr.image_size
    fx, fy = W2 / W, H2 / H

    def sp(p: Point) -> Point:
        return (min(max(p[0] * fx, 0.0), W2), min(max(p[1] * fy, 0.0), H2))

    drags = [Drag(sp(d.handle), sp(d.target), d.mode, d.scale, d.angle) for d in instr.drags]
    mask = None if instr.mask is None else resize_mask_nearest(instr.mask, H2, W2)
    regions = [
        RegionOp(
            r.op,
            resize_mask_nearest(r.mask, H2, W2),
            sp(r.begin),
            sp(r.target),
            None if r.anchor is None else sp(r.anchor),
        )
        for r in instr.regions
    ]
    return DragInstructions((W2, H2), drags, mask, regions, instr.version)


# --------------------------------------------------------------------------------------------
# pixel -> token conversion (the only place)


def _check_multiple_of_16(W: int, H: int) -> None:
    if W % TOKEN_PX or H % TOKEN_PX or W <= 0 or H <= 0:
        dn = (max(TOKEN_PX, W // TOKEN_PX * TOKEN_PX), max(TOKEN_PX, H // TOKEN_PX * TOKEN_PX))
        up = (-(-W // TOKEN_PX) * TOKEN_PX, -(-H // TOKEN_PX) * TOKEN_PX)
        raise ValueError(
            f"image size {W}x{H} (WxH) is not a multiple of {TOKEN_PX}: FLUX tokens cover "
            f"{TOKEN_PX}x{TOKEN_PX} pixels. Crop to {dn[0]}x{dn[1]} or resize to {up[0]}x{up[1]} "
            "(e.g. with an ImageScale/ImageCrop node) before editing"
        )


def token_grid_shape(W: int, H: int) -> tuple[int, int]:
    """Token grid (h_tok, w_tok) of a W x H pixel image; refuses sizes not a multiple of 16."""
    _check_multiple_of_16(int(W), int(H))
    return int(H) // TOKEN_PX, int(W) // TOKEN_PX


def pixel_to_token(
    xy: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor,
    image_size_px: tuple[int, int],
) -> torch.Tensor:
    """Pixel (x, y) -> continuous token (x, y) = p / 16 - 0.5 (token centres are integers).

    ``image_size_px`` is (W, H) and must be a multiple of 16. Returns float64 (..., 2).
    """
    token_grid_shape(*image_size_px)
    p = torch.as_tensor(xy, dtype=torch.float64)
    return p / TOKEN_PX - 0.5


def token_to_pixel(xy_tok: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`pixel_to_token`: token (x, y) -> pixel (x, y) of the token centre."""
    return (torch.as_tensor(xy_tok, dtype=torch.float64) + 0.5) * TOKEN_PX


def pixel_mask_to_token_mask(mask: torch.Tensor, how: str = "any") -> torch.Tensor:
    """Reduce a pixel mask (H, W) to the token grid (H/16, W/16).

    ``how="any"``: a token is set when any of its pixels is [guess, default];
    ``"majority"``: when more than half of its 256 pixels are.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    H, W = mask.shape
    h, w = token_grid_shape(W, H)
    m = mask.to(torch.bool).reshape(h, TOKEN_PX, w, TOKEN_PX)
    if how == "any":
        return m.any(dim=3).any(dim=1)
    if how == "majority":
        return m.sum(dim=(1, 3)) * 2 > TOKEN_PX * TOKEN_PX
    raise ValueError(f'how must be "any" or "majority", got {how!r}')


def to_token_space(
    instr: DragInstructions | str | Mapping[str, Any],
    image_hw_px: tuple[int, int],
    *,
    mask_how: str = "any",
    on_size_mismatch: str = "rescale",
    snap: bool = False,
) -> TokenDrags:
    """Convert instructions to token coordinates for an image of (H, W) pixels.

    When the instructions were drawn on an image of another size they are rescaled
    proportionally per axis with a warning (``on_size_mismatch="rescale"``) [guess] or refused
    (``"error"``). ``snap=True`` rounds handles and targets to token centres.
    """
    ins = parse_instructions(instr)
    H, W = int(image_hw_px[0]), int(image_hw_px[1])
    h, w = token_grid_shape(W, H)
    if min(h, w) < 2:
        warnings.warn(
            f"the image is {W}x{H} px, {w}x{h} FLUX token(s) of {TOKEN_PX} px: along a side one "
            f"token wide nothing can move to another token; use an image of at least "
            f"{2 * TOKEN_PX} px per side", stacklevel=2)
    if tuple(ins.image_size) != (W, H):
        msg = (
            f"DRAG_INSTRUCTIONS were drawn on a {ins.image_size[0]}x{ins.image_size[1]} image but "
            f"the image is {W}x{H} (WxH)"
        )
        if on_size_mismatch == "error":
            raise ValueError(msg + "; redraw the drags on this image or rescale them")
        if on_size_mismatch != "rescale":
            raise ValueError(f'on_size_mismatch must be "rescale" or "error", got '
                             f"{on_size_mismatch!r}")
        warnings.warn(msg + "; rescaling the drags proportionally", stacklevel=2)
        ins = rescale(ins, (W, H))
    n = len(ins.drags)
    handles = pixel_to_token([d.handle for d in ins.drags], (W, H)).reshape(n, 2)
    targets = pixel_to_token([d.target for d in ins.drags], (W, H)).reshape(n, 2)
    if snap:
        handles = torch.floor(handles + 0.5)
        targets = torch.floor(targets + 0.5)
    scales = torch.tensor([d.scale for d in ins.drags], dtype=torch.float64).reshape(n, 2)
    mask = None if ins.mask is None else pixel_mask_to_token_mask(ins.mask, mask_how)
    return TokenDrags(
        handles=handles,
        targets=targets,
        modes=[d.mode for d in ins.drags],
        scales=scales,
        mask=mask,
        grid_hw=(h, w),
        image_hw=(H, W),
        angles=torch.tensor([d.angle for d in ins.drags], dtype=torch.float64).reshape(n),
    )


# --------------------------------------------------------------------------------------------
# helpers


def _masks_equal(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(torch.equal(a.cpu(), b.cpu()))


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def _num_list(p: Sequence[float]) -> list[int | float]:
    return [_num(c) for c in p]


def _fmt_point(p: Sequence[float]) -> str:
    return "[" + ", ".join(str(_num(c)) for c in p) + "]"
