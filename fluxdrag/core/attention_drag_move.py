"""AttentionDrag across grids: a model layer's attention map (its own token grid) moves the latent.

Paper: AttentionDrag (IJCAI 2025, arXiv 2506.13301; docs/attentiondrag.md). The one-step pipeline of
``core/attention_drag.py`` assumes the attention grid *is* the latent grid. A model's attention
usually runs on a coarser grid: an SD1.5 UNet block at 1/1, 1/2, 1/4 or 1/8 of the latent, FLUX
image tokens at 1/2 (2×2 latent patches). This module

1. finds a layer's token grid from its token count (:func:`block_grid`),
2. computes the attention-to-handle map there from explicit q/k, handles given in *pixels*
   (:func:`attention_maps_from_qk`; the handle's cell on the layer grid),
3. brings the maps to the latent grid (:func:`upsample_maps`, bilinear [guess]),
4. builds the mask/weights/field on the latent grid and keeps them (:func:`plan_move`), then
5. moves the latent in one step and fills the holes (:func:`apply_move`), keeping which cells
   were written, so callers can check that nothing else changed.

Steps 4–5 are exactly ``core.attention_drag.attention_drag``'s (same functions, same order), with
the intermediates kept; on a 1:1 grid the result is bit-identical (tested). Mask choices beyond
the paper's automatic mask ([guess], ``mask_mode``): "replace" uses a given mask for every handle
(as ``attention_drag(mask=...)``), "intersect" keeps the automatic mask inside a given mask (the
handle cell always kept). :func:`attention_preview` draws the map, the mask and the drags.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .attention_drag import (
    _as_points,
    _drag_vectors,
    attention_displacement_field,
    attention_to_handle,
    auto_mask,
    cell_index,
    fill_holes_attention_weighted,
    handle_cells,
    handle_weights,
    warp_latent_one_step,
)
from .preview import draw_arrows

LATENT_PX = 8  # pixels per latent cell (SD and FLUX VAEs)
_MASK_MODES = ("replace", "intersect")
_UPSAMPLE = ("bilinear", "nearest")


# ----------------------------------------------------------------------------- grids


def block_grid(n_tokens: int, latent_hw: tuple[int, int], max_factor: int = 64) -> tuple[int, int, int]:
    """(h_b, w_b, f): the token grid of a layer with ``n_tokens`` tokens over a latent (h, w).

    The layer works at 1/f of the latent (f = 1, 2, 4, …), with ``ceil`` sizes like a stride-2
    convolution with padding 1 (SD UNet) or 2×2 patches of an even latent (FLUX, f = 2).
    ValueError when no power of two up to ``max_factor`` fits.
    """
    h, w = int(latent_hw[0]), int(latent_hw[1])
    f = 1
    while f <= max_factor:
        hb, wb = -(-h // f), -(-w // f)
        if hb * wb == int(n_tokens):
            return hb, wb, f
        f *= 2
    raise ValueError(f"{n_tokens} tokens are no power-of-two downscale of a {h}x{w} latent")


def handle_index_on_grid(point_px: Sequence[float], grid_hw: tuple[int, int], cell_px: float) -> int:
    """Row-major index of the cell holding pixel point (x, y) on a grid of ``cell_px``-pixel
    cells (continuous cell coordinate p/cell_px − 0.5, rounded half up, clamped into the grid
    so that points on the image's right/bottom edge belong to the last cell)."""
    h, w = int(grid_hw[0]), int(grid_hw[1])
    x = math.floor(point_px[0] / cell_px)  # = round-half-up of p / cell_px − 0.5
    y = math.floor(point_px[1] / cell_px)
    return cell_index((min(max(x, 0), w - 1), min(max(y, 0), h - 1)), (h, w))


def pixels_to_cells(points_px: Sequence[Sequence[float]] | torch.Tensor, cell_px: float = LATENT_PX) -> torch.Tensor:
    """(n, 2) float64 continuous cell coordinates ``p / cell_px − 0.5`` of pixel points."""
    p = _as_points(points_px, "points")
    return p / float(cell_px) - 0.5


def clamp_cells(cells: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Cell points clamped into [0, w−1] × [0, h−1] (edge pixels → edge cells)."""
    out = cells.clone()
    out[:, 0] = out[:, 0].clamp(0, int(grid_hw[1]) - 1)
    out[:, 1] = out[:, 1].clamp(0, int(grid_hw[0]) - 1)
    return out


def attention_maps_from_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    handles_px: Sequence[Sequence[float]] | torch.Tensor,
    grid_hw: tuple[int, int],
    cell_px: float,
    direction: str = "query",
    heads_reduce: str = "mean",
    scale: float | None = None,
) -> torch.Tensor:
    """(n, h_b, w_b) attention-to-handle maps on a layer grid (``attention_to_handle``) for
    handles given in image pixels; ``cell_px`` = pixels per layer cell (8·f)."""
    idx = [handle_index_on_grid(p, grid_hw, cell_px) for p in _as_points(handles_px, "handles").tolist()]
    return attention_to_handle(q, k, idx, grid_hw, direction=direction, scale=scale,
                               heads_reduce=heads_reduce)


def upsample_maps(maps: torch.Tensor, latent_hw: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(n, h_b, w_b) maps → (n, h, w) on the latent grid.

    Layer cell (i, j) covers latent cells [i·f, i·f+f) × [j·f, j·f+f) with f = ceil(h/h_b):
    maps are interpolated to (h_b·f, w_b·f) (``mode``: "bilinear" [guess] or "nearest"; pixel
    centres, no corner alignment), cropped to (h, w), clamped ≥ 0. f = 1 returns the maps as
    they are.
    """
    if mode not in _UPSAMPLE:
        raise ValueError(f"mode must be one of {_UPSAMPLE}, got {mode!r}")
    n, hb, wb = maps.shape
    h, w = int(latent_hw[0]), int(latent_hw[1])
    if (hb, wb) == (h, w):
        return maps
    f = -(-h // hb)
    if -(-w // wb) != f:
        raise ValueError(f"maps {hb}x{wb} are not a uniform downscale of the {h}x{w} latent")
    kw = {"align_corners": False} if mode == "bilinear" else {}
    up = torch.nn.functional.interpolate(maps[:, None].float(), size=(hb * f, wb * f), mode=mode, **kw)
    return up[:, 0, :h, :w].clamp_min(0.0)


# ----------------------------------------------------------------------------- plan and move


def mask_parts(mask: torch.Tensor) -> list[torch.Tensor]:
    """The connected parts (8-neighbourhood: cells touching at a corner belong together) of the
    (h, w) bool ``mask``, each an (h, w) bool mask, in row-major order of their first cell. Pure
    torch flood fill by repeated constrained dilation."""
    m = mask.bool()
    left = m.clone()
    parts = []
    while bool(left.any()):
        y, x = (int(v) for v in torch.nonzero(left)[0])
        part = torch.zeros_like(m)
        part[y, x] = True
        while True:
            grown = (torch.nn.functional.max_pool2d(part.float()[None, None], 3, 1, 1)[0, 0] > 0) & m
            if torch.equal(grown, part):
                break
            part = grown
        parts.append(part)
        left &= ~part
    return parts


def split_mask(mask: torch.Tensor, cells: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(n, h, w): the drawn ``mask`` shared out among the handle cells ``(x, y)`` [ours]: each
    connected part (:func:`mask_parts`) goes to the handles lying in it, or, when none does, to
    the handle nearest to it; so a region drawn around several objects gives each drag its own
    object, and with one drag the whole mask moves."""
    m = mask.bool()
    out = torch.zeros((len(cells), *m.shape), dtype=torch.bool, device=m.device)
    for part in mask_parts(m):
        inside = [i for i, (x, y) in enumerate(cells) if bool(part[int(y), int(x)])]
        if not inside:
            ys, xs = torch.nonzero(part, as_tuple=True)
            dist = [float(((ys - int(y)) ** 2 + (xs - int(x)) ** 2).min()) for x, y in cells]
            best = min(dist)
            inside = [i for i, d in enumerate(dist) if d == best]
        for i in inside:
            out[i] |= part
    return out


class MovePlan(NamedTuple):
    attention: torch.Tensor  # (n, h, w) attention to each handle on the latent grid
    masks: torch.Tensor  # (n, h, w) bool, per-handle masks
    weights: torch.Tensor  # (n, h, w) movement weights w_i (zero outside mask_i)
    field: torch.Tensor  # (h, w, 2) displacement (dx, dy) in latent cells
    union: torch.Tensor  # (h, w) bool, union of the masks
    handles: torch.Tensor  # (n, 2) latent cell coordinates (x, y)
    targets: torch.Tensor  # (n, 2)


class MoveResult(NamedTuple):
    latent: torch.Tensor  # (B, C, h, w) moved and hole-filled
    holes: torch.Tensor  # (h, w) bool, vacated cells (filled in ``latent``)
    written: torch.Tensor  # (h, w) bool, destinations of moved cells
    changed_region: torch.Tensor  # (h, w) bool, union ∪ written: the only cells that may change


def plan_move(
    attention: torch.Tensor,
    handles: torch.Tensor | Sequence[Sequence[float]],
    targets: torch.Tensor | Sequence[Sequence[float]],
    tau: float = 2.0,
    relative_to: str = "mean",
    dilate: int = 0,
    normalise: str = "max",
    rigid: bool = False,
    mask: torch.Tensor | None = None,
    mask_mode: str = "replace",
    fuse: str = "sum",
    split: bool = False,
) -> MovePlan:
    """Masks, weights and displacement field on the latent grid.

    ``attention``: (n, h, w) maps (one per handle) on the latent grid; ``handles``/``targets``:
    (n, 2) latent cell coordinates. Without ``mask``: the automatic mask per handle
    (``auto_mask`` with ``tau``/``relative_to``/``dilate``, handle cell included). With ``mask``
    (h, w): ``mask_mode`` "replace" — that mask for every handle; "intersect" — the automatic
    mask ∩ ``mask`` (plus the handle cell) [guess]. ``split``: each handle uses only the connected
    part of ``mask`` it lies in (:func:`split_mask`) [ours]. ``normalise``/``fuse``: see
    ``attention_displacement_field`` ("threshold" uses ``tau``/``relative_to``, the automatic
    mask's own threshold; with a drawn mask in "replace" mode every cell of it counts as selected
    and moves by the full drag [ours]). ValueError on a zero-length drag.
    """
    if attention.ndim != 3:
        raise ValueError(f"attention must be (n, h, w), got {tuple(attention.shape)}")
    if mask_mode not in _MASK_MODES:
        raise ValueError(f"mask_mode must be one of {_MASK_MODES}, got {mask_mode!r}")
    grid = tuple(attention.shape[-2:])
    hp, tp = _as_points(handles, "handles"), _as_points(targets, "targets")
    _drag_vectors(hp, tp)
    if hp.shape[0] != attention.shape[0]:
        raise ValueError(f"{attention.shape[0]} attention maps but {hp.shape[0]} handles")
    cells = handle_cells(hp, grid)
    if mask is not None and tuple(mask.shape) != grid:
        raise ValueError(f"mask must be {grid}, got {tuple(mask.shape)}")
    given = None
    if mask is not None:
        m = mask.to(device=attention.device, dtype=torch.bool)
        given = split_mask(m, cells) if split else m[None].expand_as(attention)
    if mask is None or mask_mode == "intersect":
        masks = auto_mask(attention, tau=tau, relative_to=relative_to, handles=cells, dilate=dilate)
        if given is not None:
            masks = masks & given
            for i, (x, y) in enumerate(cells):
                masks[i, y, x] = True
    else:
        masks = given
    # "threshold": the cells a mask selects move by the full drag — above the threshold for the
    # automatic mask, every cell of a drawn mask ("replace"; a share would leave debris of the
    # object's low-attention cells along the drag), a share only on a dilation ring
    whole = normalise == "threshold" and mask is not None and mask_mode == "replace"
    kw = dict(normalise=normalise, rigid=rigid or whole, tau=tau, relative_to=relative_to)
    wts = handle_weights(attention, hp, masks, **kw)
    field = attention_displacement_field(attention, hp, tp, masks, fuse=fuse, **kw)
    return MovePlan(attention=attention, masks=masks, weights=wts, field=field, union=masks.any(dim=0),
                    handles=hp, targets=tp)


def apply_move(z: torch.Tensor, plan: MovePlan, fill_radius: int | None = None,
               fill_with_attention: bool = True) -> MoveResult:
    """One-step move of ``z`` (B, C, h, w) by ``plan``: forward splat of the masked cells
    (collisions won by the larger movement weight max_i w_i), holes filled from background
    neighbours weighted by 1 − w of the content now there (``fill_with_attention``)."""
    if z.ndim != 4 or tuple(z.shape[-2:]) != tuple(plan.union.shape):
        raise ValueError(f"z must be (B, C, {plan.union.shape[0]}, {plan.union.shape[1]}), "
                         f"got {tuple(z.shape)}")
    w_max = plan.weights.amax(dim=0).to(z.device)
    field, union = plan.field.to(z.device), plan.union.to(z.device)
    warped = warp_latent_one_step(z, field, union, weight=w_max)
    moved_w = warp_latent_one_step(w_max[None, None], field, union, weight=w_max).latent[0, 0]
    filled = fill_holes_attention_weighted(
        warped.latent, warped.holes, attn_weights=moved_w if fill_with_attention else None,
        radius=fill_radius)
    return MoveResult(filled, warped.holes, warped.written, union | warped.written)


# ----------------------------------------------------------------------------- preview


def _heat(a: torch.Tensor) -> torch.Tensor:
    """(h, w) in [0, 1] → (h, w, 3) black-red-yellow-white ramp."""
    a = a.clamp(0, 1)
    return torch.stack(((3 * a).clamp(0, 1), (3 * a - 1).clamp(0, 1), (3 * a - 2).clamp(0, 1)), dim=-1)


def attention_preview(
    plan: MovePlan,
    image_hw: tuple[int, int],
    image: torch.Tensor | None = None,
    cell_px: float = LATENT_PX,
    alpha: float = 0.6,
) -> torch.Tensor:
    """(H, W, 3) picture of the edit: the attention map (max over handles, stretched to
    [min, max]) as a heat ramp blended over ``image`` (or grey), the mask's outline in cyan and the
    drags as arrows."""
    H, W = int(image_hw[0]), int(image_hw[1])
    a = plan.attention.float().amax(dim=0).cpu()
    a = (a - a.min()) / (a.max() - a.min()).clamp_min(torch.finfo(torch.float32).tiny)
    h, w = a.shape
    rows = (torch.arange(H) * h // H).clamp(max=h - 1)
    cols = (torch.arange(W) * w // W).clamp(max=w - 1)
    base = torch.full((H, W, 3), 0.5) if image is None else image.detach().float().cpu().clone()
    if tuple(base.shape) != (H, W, 3):
        raise ValueError(f"image must be ({H}, {W}, 3), got {tuple(base.shape)}")
    out = (1 - alpha) * base + alpha * _heat(a[rows][:, cols])
    m = plan.union.cpu()[rows][:, cols]
    edge = m & ~(torch.nn.functional.max_pool2d((~m).float()[None, None], 3, 1, 1)[0, 0] == 0)
    out[edge] = torch.tensor([0.0, 1.0, 1.0])
    to_px = lambda c: (c + 0.5) * float(cell_px)  # noqa: E731
    out = draw_arrows(out, to_px(plan.handles), to_px(plan.targets))
    return out.clamp(0, 1)


__all__ = [
    "LATENT_PX",
    "MovePlan",
    "MoveResult",
    "apply_move",
    "attention_maps_from_qk",
    "attention_preview",
    "block_grid",
    "clamp_cells",
    "handle_index_on_grid",
    "pixels_to_cells",
    "mask_parts",
    "plan_move",
    "split_mask",
    "upsample_maps",
]
