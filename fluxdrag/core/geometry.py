"""Small geometry on token / latent grids shared by the methods: convex hulls, connected
components, rounding half up, bilinear reads of a grid, and batch repetition of cached tensors.
Pure torch."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """⌊x + 0.5⌋ (ties away from −∞, unlike ``torch.round``'s ties to even); same dtype."""
    return torch.floor(x + 0.5)


def convex_hull(points) -> torch.Tensor:
    """Convex hull by Andrew's monotone chain: (m, 2) float64 vertices, counter-clockwise
    in (x, y) axes, no repeated or collinear vertices. One point gives m = 1, collinear
    points give the two end points (m = 2), no points give m = 0."""
    p = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
    if p.shape[0] == 0:
        return p
    pts = torch.unique(p, dim=0).tolist()  # sorted by x, then y
    if len(pts) <= 2:
        return torch.tensor(pts, dtype=torch.float64)

    def cross(o: list[float], a: list[float], b: list[float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[list[float]] = []
    for q in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    upper: list[list[float]] = []
    for q in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    hull = lower[:-1] + upper[:-1]
    if len(hull) == 2 and hull[0] == hull[1]:
        hull = hull[:1]
    return torch.tensor(hull, dtype=torch.float64)


def bilinear_read(grid: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``grid`` (h, w) read bilinearly at the points (``x``, ``y``) (any shape; cell centres at
    integer coordinates), 0 off the grid; float64 (a bool mask reads as its coverage there)."""
    h, w = grid.shape
    flat = grid.reshape(-1).to(torch.float64)
    x0, y0 = torch.floor(x).long(), torch.floor(y).long()
    fx, fy = x - x0, y - y0
    out = torch.zeros(x.shape, dtype=torch.float64)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        cx, cy = x0 + dx, y0 + dy
        inb = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        val = torch.where(inb, flat[torch.where(inb, cy * w + cx, 0)], torch.zeros_like(fx))
        out += (fx if dx else 1 - fx) * (fy if dy else 1 - fy) * val
    return out


def nearest_of_four(mask: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """(rows, cols, d²): of the four cells around each point (``x``, ``y``) (any shape; cell centres at
    integer coordinates), the nearest one on ``mask`` (h, w) (ties: the first of (0, 0), (1, 0),
    (0, 1), (1, 1)), and its squared distance; d² = inf (rows, cols 0) where none of the four is on."""
    h, w = mask.shape
    on = mask.reshape(-1).to(torch.bool)
    x0, y0 = torch.floor(x).long(), torch.floor(y).long()
    best = torch.full(x.shape, float("inf"), dtype=torch.float64)
    rows, cols = torch.zeros_like(x0), torch.zeros_like(x0)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        cx, cy = x0 + dx, y0 + dy
        inb = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        d = (x - cx) ** 2 + (y - cy) ** 2
        better = inb & on[torch.where(inb, cy * w + cx, 0)] & (d < best)
        best = torch.where(better, d, best)
        rows, cols = torch.where(better, cy, rows), torch.where(better, cx, cols)
    return rows, cols, best


#: [ours] a scaled-down thin shape (a 1-px ring's wall at 0.75) can fall between the grid's samples and
#: vanish under a backward map's membership test (the shape read bilinearly >= 1/2). Where a moved
#: shape's destinations cover less than this share of its scaled area (source pixels × sx·sy), the
#: level drops to the one that covers that area (``kept_area_level``); 0: always 1/2
AREA_KEEP = 0.5
#: [ours] the lowest level ``kept_area_level`` drops to
AREA_FLOOR = 0.1


def kept_area_level(soft: torch.Tensor, want: float, kept: int | None = None) -> float:
    """The membership level of one moved shape's backward map: 1/2, or where the candidates'
    bilinear reads ``soft`` at 1/2 (or the map's own rule: ``kept`` pixels) keep under ``AREA_KEEP``
    × ``want`` pixels (its scaled area: the callers count what lands in the frame), the level
    among the reads (1/2 down to ``AREA_FLOOR``) whose count is nearest ``want``, the higher on a
    tie (a symmetric shape's reads tie in groups: a level just under a group can double the count)."""
    kept = int((soft >= 0.5 - 1e-9).sum()) if kept is None else kept
    if AREA_KEEP <= 0 or not soft.numel() or kept >= AREA_KEEP * want:
        return 0.5
    levels = torch.unique(soft[(soft <= 0.5) & (soft >= AREA_FLOOR)])
    if not levels.numel():
        return 0.5
    ordered = torch.sort(soft.reshape(-1)).values                 # counts by one search, not levels × n
    counts = (ordered.numel() - torch.searchsorted(ordered, levels - 1e-9)).to(torch.float64)
    gap = (counts - want).abs()
    best = torch.nonzero(gap == gap.min()).flatten()
    return float(levels[best].max())


#: [ours] std (latent pixels) of the Gaussian that smooths a moved shape's binary mask before a
#: backward map reads it at the preimages of a rotation or a scale (``outline_on``; on the latent-pixel
#: maps only: LazyDrag's fine map, ContextDrag's moved pixels, DragFlow's regions on the latent). A
#: binary latent mask is the shape sampled at the cell centres; read bilinearly as it is, its staircase
#: edges come back as staircases turned with the shape, which stick out of the turned outline. The
#: smoothed mask's 1/2 level runs straight through a staircase (the sampled straight or smooth edge)
#: and rounds sharp corners a little. The mask is read as it is where smoothing would fill a one-pixel
#: hole or notch, where it keeps under ``OUTLINE_KEEP`` of the pixels, and where a thin shape's level
#: is below 1/2 (``kept_area_level``). 0.6 gives the fewest wrong pixels against the exact turned
#: shapes of the toy scenes (docs/lazydrag.md). 0: the mask read as it is (translations always are:
#: they move the samples whole)
OUTLINE_SIGMA = 0.6


def smoothed_mask(mask: torch.Tensor, sigma: float = OUTLINE_SIGMA) -> torch.Tensor:
    """``mask`` (..., h, w) as float64, smoothed by a separable Gaussian of std ``sigma`` (cells;
    radius ⌈3σ⌉, the edges replicated: a shape cut by the frame goes on past it); as is for sigma <= 0."""
    m = mask.to(torch.float64)
    if sigma <= 0:
        return m
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=m.device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    x = F.pad(m.reshape(-1, 1, *m.shape[-2:]), (r, r, r, r), mode="replicate")
    x = F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return x.reshape(m.shape)


#: [ours] the fewest connected one-sample-thick pixels that make a thin part (``smoothed_outline``)
THIN_PART = 3


def smoothed_outline(mask: torch.Tensor) -> torch.Tensor | None:
    """What a turned or scaled ``mask`` (h, w) is read from: :func:`smoothed_mask` (float64) where its
    1/2 level adds no sample to the mask (it may drop a step's corner pixel, not fill a one-pixel hole
    or notch); None (the mask as it is) where it would, or ``OUTLINE_SIGMA`` is 0. Parts one sample thick
    (pixels in no 2 x 2 block of the mask, ``THIN_PART`` or more of them connected: a line, an arm) have
    no edge to straighten and would fade: they and their neighbours keep the mask's own values. A lone
    such pixel is a staircase's step, and is smoothed."""
    if OUTLINE_SIGMA <= 0:
        return None
    m = mask.to(torch.float64)
    sm = smoothed_mask(m)
    on = m >= 0.5
    if bool(((sm >= 0.5 - 1e-9) & ~on).any()):
        return None
    block = F.avg_pool2d(on.to(torch.float64)[None, None], 2, stride=1) > 1 - 1e-9      # (h-1, w-1)
    thick = F.max_pool2d(F.pad(block.to(torch.float64), (1, 1, 1, 1)), 2, stride=1)[0, 0] > 0
    thin = (on & ~thick).cpu()
    if bool(thin.any()):
        lab = connected_components(thin)
        size = torch.bincount(lab[thin])
        part = thin & (size[lab.clamp(min=0)] >= THIN_PART)
        near = F.max_pool2d(part.to(torch.float64)[None, None], 3, stride=1, padding=1)[0, 0] > 0
        sm = torch.where(near.to(m.device), m, sm)
    return sm


def resamples(angle, scale) -> bool:
    """Whether a move by ``angle`` (rad) and ``scale`` (rx, ry) resamples its shape (turns or scales it)."""
    return float(angle) != 0.0 or any(float(r) != 1.0 for r in scale)


#: [ours] a smoothed outline is kept only where it keeps at least this share of the pixels the mask
#: read as it is keeps at the same level: a shape thinner than the smoothing (a one-pixel line or ring,
#: a lone pixel) would fade under it, and is read as it is
OUTLINE_KEEP = 0.9


def outline_on(mask: torch.Tensor, x: torch.Tensor, y: torch.Tensor, level: float, resampled: bool,
               among: torch.Tensor | None = None, read: torch.Tensor | None = None) -> torch.Tensor:
    """Bool: a moved shape's ``mask`` (h, w) read bilinearly at the preimages (``x``, ``y``) of a
    backward map is at least ``level``; where the map ``resampled`` (:func:`resamples`) a shape read
    at 1/2, from :func:`smoothed_outline` when that keeps ``OUTLINE_KEEP`` of the plain read's pixels
    (counted ``among`` the candidates given). ``read``: that plain read, when the caller has it."""
    on = (bilinear_read(mask, x, y) if read is None else read) >= level - 1e-9
    sm = smoothed_outline(mask) if resampled and level >= 0.5 else None
    if sm is None:
        return on
    smooth = bilinear_read(sm, x, y) >= level - 1e-9
    n, ns = (on, smooth) if among is None else (on & among, smooth & among)
    return smooth if int(ns.sum()) >= OUTLINE_KEEP * int(n.sum()) else on


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """8-connected component labels of a bool (h, w) mask (-1 outside), by min-propagation."""
    h, w = mask.shape
    big = float(h * w + 1)
    lab = torch.arange(h * w, dtype=torch.float64).reshape(1, 1, h, w)
    lab = torch.where(mask[None, None], lab, torch.full_like(lab, big))
    while True:
        nb = -F.max_pool2d(-lab, kernel_size=3, stride=1, padding=1)
        new = torch.where(mask[None, None], torch.minimum(lab, nb), lab)
        if torch.equal(new, lab):
            break
        lab = new
    lab = lab[0, 0]
    _, labels = torch.unique(lab[mask], return_inverse=True)
    out = torch.full((h, w), -1, dtype=torch.long)
    out[mask] = labels
    return out


def repeat_batch(t: torch.Tensor, b: int, owner: str, of: str = "the cached batch") -> torch.Tensor:
    """``t`` (batch n) repeated to batch ``b`` when n divides b (cond+uncond batches share one
    cached source branch); else a RuntimeError naming ``owner``."""
    if t.shape[0] == b:
        return t
    if b % t.shape[0] == 0:
        return t.repeat(b // t.shape[0], *([1] * (t.ndim - 1)))
    raise RuntimeError(f"{owner}: batch {b} does not match {of} {t.shape[0]}")
