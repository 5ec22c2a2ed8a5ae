"""Pure-torch preview drawing shared by the Correspondence Map, Drag Editor and method nodes.

``draw_map_preview`` tints the LazyDrag regions (``core/correspondence.py``) over the image: destination
green, inpaint red, transition yellow, the pixels left to the model for a revealed object's hidden
part (``FineMap.released``) cyan, background untouched, blended with alpha 0.45.
``draw_arrows`` draws handle -> target arrows (anti-alias free line rasterisation by distance to
the segment, a filled triangular head, a dot at the handle and, optionally, the drag number in a
built-in 3x5 bitmap font; no PIL fonts needed).

Images are (H, W, 3) float in [0, 1] (a ComfyUI IMAGE batch (B, H, W, 3) is drawn per image);
points are pixel (x, y), continuous coordinates with pixel centres at (i + 0.5). Functions return
new tensors and never modify their input. No documented guesses here (purely cosmetic choices are
keyword parameters).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from .correspondence import CorrespondenceMap

Color = tuple[float, float, float]

REGION_COLORS: dict[str, Color] = {
    "destination": (0.0, 1.0, 0.0),
    "inpaint": (1.0, 0.0, 0.0),
    "transition": (1.0, 1.0, 0.0),
    "released": (0.0, 0.8, 1.0),
}
ARROW_COLOR: Color = (1.0, 0.35, 0.0)
HANDLE_COLOR: Color = (1.0, 0.0, 0.0)
TARGET_COLOR: Color = (0.0, 0.4, 1.0)

# 3x5 digits, rows top to bottom
_DIGITS = {
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
}


def _per_image(fn):
    @functools.wraps(fn)
    def wrapped(img: torch.Tensor, *args, **kwargs):
        if img.dim() == 4:
            return torch.stack([fn(im, *args, **kwargs) for im in img])
        return fn(img, *args, **kwargs)

    return wrapped


def _upsample_mask(m: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Nearest upsampling of a (h, w) grid mask to (H, W) pixels."""
    h, w = m.shape
    rows = (torch.arange(H) * h // H).clamp(max=h - 1)
    cols = (torch.arange(W) * w // W).clamp(max=w - 1)
    return m[rows][:, cols]


def draw_map_preview(
    image: torch.Tensor | None,
    cmap: CorrespondenceMap,
    grid_hw: tuple[int, int] | None = None,
    image_hw: tuple[int, int] | None = None,
    *,
    alpha: float = 0.45,
    colors: dict[str, Color] | None = None,
    arrows: bool = True,
    background_value: float = 0.5,
) -> torch.Tensor:
    """Tint the map's regions over ``image`` (H, W, 3) and draw the drags' arrows.

    ``image=None`` draws on a grey canvas of ``image_hw`` (default: 16 px per token).
    Background pixels are left untouched (except where an arrow passes).
    """
    h, w = cmap.grid_hw if grid_hw is None else grid_hw
    if tuple(cmap.grid_hw) != (h, w):
        raise ValueError(f"grid_hw {(h, w)} does not match the map's grid {cmap.grid_hw}")
    if image is None:
        H, W = (h * 16, w * 16) if image_hw is None else image_hw
        out = torch.full((H, W, 3), float(background_value), dtype=torch.float32)
    else:
        if image.dim() != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be (H, W, 3), got shape {tuple(image.shape)}")
        H, W = image.shape[:2]
        if image_hw is not None and tuple(image_hw) != (H, W):
            raise ValueError(f"image_hw {tuple(image_hw)} does not match the image {(H, W)}")
        out = image.detach().to(torch.float32).cpu().clone()
    cols = {**REGION_COLORS, **(colors or {})}
    regions = [(name, getattr(cmap, name)) for name in ("destination", "inpaint", "transition")]
    if cmap.fine is not None and cmap.fine.released is not None:   # on the latent-pixel grid
        regions.append(("released", cmap.fine.released))
    for name, mask in regions:
        m = _upsample_mask(mask.cpu(), H, W)
        c = torch.tensor(cols[name], dtype=out.dtype)
        out[m] = (1.0 - alpha) * out[m] + alpha * c
    if arrows and len(cmap.drags):
        sx, sy = W / w, H / h
        to_px = torch.tensor([sx, sy], dtype=torch.float64)
        hs = (cmap.drags.handles + 0.5) * to_px
        ts = (cmap.drags.targets + 0.5) * to_px
        out = draw_arrows(out, hs, ts)
    return out


def _disc(img: torch.Tensor, cx: float, cy: float, r: float, color: torch.Tensor) -> None:
    H, W = img.shape[:2]
    y0, y1 = max(0, math.floor(cy - r - 1)), min(H, math.ceil(cy + r + 1))
    x0, x1 = max(0, math.floor(cx - r - 1)), min(W, math.ceil(cx + r + 1))
    if y0 >= y1 or x0 >= x1:
        return
    yy = torch.arange(y0, y1, dtype=torch.float64).view(-1, 1) + 0.5
    xx = torch.arange(x0, x1, dtype=torch.float64).view(1, -1) + 0.5
    m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    img[y0:y1, x0:x1][m] = color


def _segment(
    img: torch.Tensor, a: Sequence[float], b: Sequence[float], width: float, color: torch.Tensor
) -> None:
    """Pixels whose centre lies within width/2 of the segment a-b."""
    H, W = img.shape[:2]
    r = width / 2.0
    x0 = max(0, math.floor(min(a[0], b[0]) - r - 1))
    x1 = min(W, math.ceil(max(a[0], b[0]) + r + 1))
    y0 = max(0, math.floor(min(a[1], b[1]) - r - 1))
    y1 = min(H, math.ceil(max(a[1], b[1]) + r + 1))
    if y0 >= y1 or x0 >= x1:
        return
    yy = torch.arange(y0, y1, dtype=torch.float64).view(-1, 1) + 0.5
    xx = torch.arange(x0, x1, dtype=torch.float64).view(1, -1) + 0.5
    ax, ay, bx, by = float(a[0]), float(a[1]), float(b[0]), float(b[1])
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    t = ((xx - ax) * dx + (yy - ay) * dy) / L2 if L2 > 0 else torch.zeros_like(xx + yy)
    t = t.clamp(0.0, 1.0)
    dist2 = (xx - (ax + t * dx)) ** 2 + (yy - (ay + t * dy)) ** 2
    img[y0:y1, x0:x1][dist2 <= r * r] = color


def _triangle(img: torch.Tensor, pts: Sequence[Sequence[float]], color: torch.Tensor) -> None:
    H, W = img.shape[:2]
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = max(0, math.floor(min(xs))), min(W, math.ceil(max(xs)) + 1)
    y0, y1 = max(0, math.floor(min(ys))), min(H, math.ceil(max(ys)) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy = torch.arange(y0, y1, dtype=torch.float64).view(-1, 1) + 0.5
    xx = torch.arange(x0, x1, dtype=torch.float64).view(1, -1) + 0.5
    signs = []
    for k in range(3):
        (px, py), (qx, qy) = pts[k], pts[(k + 1) % 3]
        signs.append((qx - px) * (yy - py) - (qy - py) * (xx - px))
    inside = ((signs[0] >= 0) & (signs[1] >= 0) & (signs[2] >= 0)) | (
        (signs[0] <= 0) & (signs[1] <= 0) & (signs[2] <= 0)
    )
    img[y0:y1, x0:x1][inside] = color


def _text(img: torch.Tensor, text: str, xy: tuple[float, float], *, px: int, color: torch.Tensor) -> None:
    """Digits in the 3x5 bitmap font, top-left at ``xy`` = (x, y), each font pixel ``px`` image pixels."""
    x, y = xy
    H, W = img.shape[:2]
    cx = round(x)
    for ch in text:
        glyph = _DIGITS.get(ch)
        if glyph is None:
            cx += 4 * px
            continue
        for r, row in enumerate(glyph):
            for c, bit in enumerate(row):
                if bit == "1":
                    ya, xa = round(y) + r * px, cx + c * px
                    ya0, xa0 = max(0, ya), max(0, xa)
                    ya1, xa1 = min(H, ya + px), min(W, xa + px)
                    if ya0 < ya1 and xa0 < xa1:
                        img[ya0:ya1, xa0:xa1] = color
        cx += 4 * px


@_per_image
def draw_arrows(
    img: torch.Tensor,
    handles_px: torch.Tensor | Sequence[Sequence[float]],
    targets_px: torch.Tensor | Sequence[Sequence[float]],
    color: Color | Sequence[Color] = ARROW_COLOR,
    *,
    width: float | None = None,
    head_length: float | None = None,
    head_angle_deg: float = 28.0,
    handle_color: Color | None = HANDLE_COLOR,
    target_color: Color | None = TARGET_COLOR,
    dot_radius: float | None = None,
    numbers: bool = True,
) -> torch.Tensor:
    """Draw handle -> target arrows on an (H, W, 3) image; returns a new image.

    ``color`` is one RGB triple or one per arrow. Sizes default to the image size
    (width ~ max(2, min(H, W) / 170)). ``numbers`` writes the drag number (1-based, as the editor canvas shows it)
    next to each handle.
    """
    out = img.detach().clone()
    H, W = out.shape[:2]
    hs = torch.as_tensor(handles_px, dtype=torch.float64).reshape(-1, 2).tolist()
    ts = torch.as_tensor(targets_px, dtype=torch.float64).reshape(-1, 2).tolist()
    if len(hs) != len(ts):
        raise ValueError(f"got {len(hs)} handles but {len(ts)} targets")
    base = max(2.0, min(H, W) / 170.0)
    width = base if width is None else float(width)
    head_length = 4.0 * width + 2.0 if head_length is None else float(head_length)
    dot_radius = 1.5 * width + 1.0 if dot_radius is None else float(dot_radius)
    if len(color) == 3 and not isinstance(color[0], (list, tuple)):
        colors = [color] * len(hs)
    else:
        colors = list(color)
    ang = math.radians(head_angle_deg)
    for i, (s, e) in enumerate(zip(hs, ts, strict=True)):
        col = torch.tensor(colors[i], dtype=out.dtype)
        dx, dy = e[0] - s[0], e[1] - s[1]
        L = math.hypot(dx, dy)
        if L > 0:
            ux, uy = dx / L, dy / L
            hl = min(head_length, L)
            base_pt = (e[0] - ux * hl * math.cos(ang), e[1] - uy * hl * math.cos(ang))
            _segment(out, s, base_pt, width, col)
            half = hl * math.sin(ang)
            left = (base_pt[0] - uy * half, base_pt[1] + ux * half)
            right = (base_pt[0] + uy * half, base_pt[1] - ux * half)
            _triangle(out, [e, left, right], col)
        if target_color is not None:
            _disc(out, e[0], e[1], dot_radius * 0.6, torch.tensor(target_color, dtype=out.dtype))
        if handle_color is not None:
            _disc(out, s[0], s[1], dot_radius, torch.tensor(handle_color, dtype=out.dtype))
        if numbers:
            fpx = max(2, round(width / 1.5))
            _text(out, str(i + 1), (s[0] + dot_radius + 1, s[1] - dot_radius - 5 * fpx),
                  px=fpx, color=torch.tensor(handle_color or colors[i], dtype=out.dtype))
    return out
