"""Masks of the drag instructions: polygon rasterisation, RLE, nearest resize, and the parse and
check of a mask entry (split from ``instructions.py``; re-exported there)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .instruction_values import MAX_POLYGON_POINTS, MAX_RLE_RUNS, _parse_point, _parse_size


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
