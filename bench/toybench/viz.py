"""Pictures for the toy world with Pillow only: image grids with labels, drag arrows, line plots."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw

LABEL_H = 14


def to_pil(rgb: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] → PIL RGB."""
    arr = (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(arr, "RGB")


def draw_drags(img: Image.Image, drags: dict, scale: float = 1.0) -> Image.Image:
    """Arrows handle → target (red handle dot, blue target dot) on a copy of ``img``."""
    img = img.copy()
    d = ImageDraw.Draw(img)
    for i, dr in enumerate(drags.get("drags", [])):
        hx, hy = (c * scale for c in dr["handle"])
        tx, ty = (c * scale for c in dr["target"])
        d.line([(hx, hy), (tx, ty)], fill=(255, 255, 255), width=3)
        d.line([(hx, hy), (tx, ty)], fill=(0, 0, 0), width=1)
        ang = math.atan2(ty - hy, tx - hx)
        for s in (-1, 1):
            a = ang + math.pi + s * 0.45
            d.line([(tx, ty), (tx + 9 * math.cos(a), ty + 9 * math.sin(a))], fill=(255, 255, 255), width=3)
        d.ellipse([hx - 4, hy - 4, hx + 4, hy + 4], fill=(230, 30, 30), outline=(255, 255, 255))
        d.ellipse([tx - 4, ty - 4, tx + 4, ty + 4], fill=(30, 60, 230), outline=(255, 255, 255))
        d.text((hx + 5, hy - 12), str(i + 1), fill=(255, 255, 255))
    return img


def save_grid(tiles: list, path: Path | str, ncols: int, labels: list[str] | None = None,
              title: str | None = None, pad: int = 4) -> Path:
    """Tiles (PIL images or (3, H, W) tensors) in rows of ``ncols`` with a label above each."""
    ims = [t if isinstance(t, Image.Image) else to_pil(t) for t in tiles]
    w, h = ims[0].size
    rows = math.ceil(len(ims) / ncols)
    top = 18 if title else 0
    size = (ncols * (w + pad) + pad, top + rows * (h + LABEL_H + pad) + pad)
    canvas = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    if title:
        d.text((pad, 3), title, fill=(0, 0, 0))
    for i, im in enumerate(ims):
        r, c = divmod(i, ncols)
        x0 = pad + c * (w + pad)
        y0 = top + pad + r * (h + LABEL_H + pad)
        if labels:
            d.text((x0, y0), labels[i][: max(8, w // 6)], fill=(0, 0, 0))
        canvas.paste(im, (x0, y0 + LABEL_H))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def line_plot(xs: list[float], ys: list[float], path: Path | str, title: str = "",
              xlabel: str = "", ylabel: str = "", log_y: bool = False,
              size: tuple[int, int] = (640, 400)) -> Path:
    """A minimal line plot with axes, ticks and labels."""
    W, H = size
    ml, mr, mt, mb = 60, 20, 30, 40
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)

    def fy(v: float) -> float:
        return math.log10(max(v, 1e-12)) if log_y else v

    vals = [fy(v) for v in ys]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(vals), max(vals)
    if y_hi - y_lo < 1e-9:
        y_hi = y_lo + 1.0
    if x_hi == x_lo:
        x_hi = x_lo + 1

    def px(x: float, yv: float) -> tuple[float, float]:
        return (ml + (x - x_lo) / (x_hi - x_lo) * (W - ml - mr),
                H - mb - (yv - y_lo) / (y_hi - y_lo) * (H - mt - mb))

    d.rectangle([ml, mt, W - mr, H - mb], outline=(0, 0, 0))
    for i in range(5):
        yv = y_lo + (y_hi - y_lo) * i / 4
        _, yy = px(x_lo, yv)
        d.line([(ml - 4, yy), (ml, yy)], fill=(0, 0, 0))
        lab = 10 ** yv if log_y else yv
        d.text((4, yy - 6), f"{lab:.3g}", fill=(0, 0, 0))
        xv = x_lo + (x_hi - x_lo) * i / 4
        xx, _ = px(xv, y_lo)
        d.line([(xx, H - mb), (xx, H - mb + 4)], fill=(0, 0, 0))
        d.text((xx - 10, H - mb + 6), f"{xv:.0f}", fill=(0, 0, 0))
    d.line([px(x, v) for x, v in zip(xs, vals, strict=True)], fill=(30, 80, 200), width=2)
    d.text((ml, 2), title, fill=(0, 0, 0))
    d.text((W // 2 - 20, H - 16), xlabel, fill=(0, 0, 0))
    d.text((4, mt - 13), ylabel + (" (log)" if log_y else ""), fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
