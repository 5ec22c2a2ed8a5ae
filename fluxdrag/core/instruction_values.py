"""Limits and single-value parsers of the drag instructions document (split from
``instructions.py``; everything here is re-exported there).

The limits bound what one document may ask for and are checked before anything of image size is
allocated; each error names the limit and the fix (README, "Limits").
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
TOKEN_PX = 16  # pixels per FLUX token side (VAE /8, then 2x2 patches)
LATENT_PX = 8  # pixels per latent cell side
DRAG_MODES = ("drag", "move", "anchor")
REGION_OPS = ("relocate", "deform", "rotate")
#: per-drag depth intent (``Drag.depth``, ``RegionOp.depth``): "auto" (the default, never written) =
#: the method's ``depth`` setting decides; "front" = the moved content covers what is at its
#: destination; "behind" = it goes behind the objects there
DRAG_DEPTHS = ("auto", "front", "behind")

Point = tuple[float, float]

MAX_IMAGE_SIDE = 4096        # px per side: 65 536 FLUX tokens at 4096², far past FLUX.1's ~2 MP
MAX_DRAGS = 64               # drags per document
MAX_REGIONS = 32             # DragFlow region operations per document
MAX_POLYGON_POINTS = 10_000  # vertices over all polygons of one mask
MAX_RLE_RUNS = 4 * MAX_IMAGE_SIDE * MAX_IMAGE_SIDE // 64  # run lengths of one RLE mask
MAX_JSON_CHARS = 4_000_000   # characters of one JSON document
MAX_JSON_DEPTH = 32          # nesting of lists/objects (the schema needs 5)


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


def _parse_angle(a: Any, where: str) -> float:
    if a is None:
        return 0.0
    if isinstance(a, bool):
        raise ValueError(f"{where} must be a number of degrees, got {a!r}")
    try:
        return float(a)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number of degrees, got {a!r}") from None


def _parse_depth(v: Any, where: str) -> str:
    """A per-drag ``depth`` value (None = "auto"); anything else but the three names is refused."""
    if v is None:
        return "auto"
    if not isinstance(v, str) or v not in DRAG_DEPTHS:
        raise ValueError(
            f"{where} is {v!r}; use one of {', '.join(map(repr, DRAG_DEPTHS))} (\"behind\": the moved "
            "content goes behind the objects at its destination, \"front\": it covers them, "
            "\"auto\" or leave it out: the method's depth setting decides)"
        )
    return v


def depth_rule(intent: str, setting: str) -> str:
    """The depth rule a method applies (its settings' names: auto | under | over) for a drag's or
    region's stated ``intent`` (auto | front | behind): behind = under, front = over, auto = the
    method's ``setting``."""
    return {"behind": "under", "front": "over"}.get(intent, setting)


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
