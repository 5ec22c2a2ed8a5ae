"""Region affines, affine warps and DragFlow's editable (background) mask, in pure torch.

DragFlow (arXiv 2510.02253; docs/dragflow.md) supervises each user region with
an affine map A_k: ``relocate`` / ``deform`` translate the region by p·(target − begin),
``rotate`` turns it by p·θ about an anchor, θ being the signed angle from (begin − anchor) to
(target − anchor); p ∈ (0, 1] is the progressive weight. Its editable mask M_bg is the union,
over regions, of the minimum-area rotated rectangle that covers the region and its transformed
copy. OpenCV's ``minAreaRect`` is replaced here by a monotone-chain convex hull plus the
"one side lies on a hull edge" search (Freeman–Shapira), written from the geometry, not from
any reference code.

Coordinate convention (used by every function here). A 2×3 affine ``A`` maps a point (x, y)
= (column, row) to ``A @ (x, y, 1)``. Coordinates are continuous *grid* coordinates: on a grid
of H×W cells, cell [row i, col j] covers [j, j+1) × [i, i+1) and its centre is (j+0.5, i+0.5).
This is exactly ``grid_sample``'s ``align_corners=False`` convention (normalised u = 2x/W − 1),
so moving between grids is a pure scaling: image pixels → FLUX latent is ×1/8, → tokens ×1/16
(a token's centre then sits at p/16, i.e. integer + 0.5 in these coordinates; the pack's
"token coordinate" p/16 − 0.5 is the same point measured from the first centre). An integer
translation moves content by exactly that many cells (``warp_with_affine`` takes an exact
shifting path for it).

Documented guesses ([guess], each a parameter):
- the pixel→latent resize of the editable mask: a latent cell is editable if *any* of its
  pixels is (``rule="any"``; "majority" and "all" are offered);
- the editable mask also contains the region and its warped copy themselves, so it can never
  cut into the moved object even where rasterising the rectangle is off by a pixel.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import geometry
from .geometry import convex_hull, kept_area_level

OPS = ("relocate", "deform", "rotate")
_OP_ALIASES = {
    "relocate": "relocate", "translate": "relocate", "transformation": "relocate",
    "deform": "deform", "deformation": "deform",
    "rotate": "rotate", "rotation": "rotate",
}
_MIN_ANGLE = 1e-6  # rad; below this a rotation counts as "rotation of 0"

Point = Sequence[float]


# ----------------------------------------------------------------------------- affines


def _normalise_op(op: str) -> str:
    key = str(op).strip().lower()
    if key not in _OP_ALIASES:
        raise ValueError(f"unknown region operation {op!r}; expected one of {OPS}")
    return _OP_ALIASES[key]


def _xy(p: Point | torch.Tensor, name: str) -> tuple[float, float]:
    if p is None:
        raise ValueError(f"{name} point is missing")
    vals = [float(v) for v in (p.tolist() if isinstance(p, torch.Tensor) else p)]
    if len(vals) != 2 or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{name} must be a finite (x, y) point, got {p!r}")
    return vals[0], vals[1]


def rotation_angle(begin: Point, target: Point, anchor: Point) -> float:
    """Signed angle θ (radians, (−π, π]) turning (begin − anchor) onto (target − anchor).

    Positive θ goes from +x towards +y, i.e. clockwise on screen (y points down)."""
    bx, by = _xy(begin, "begin")
    tx, ty = _xy(target, "target")
    ax, ay = _xy(anchor, "anchor")
    ux, uy, vx, vy = bx - ax, by - ay, tx - ax, ty - ay
    if math.hypot(ux, uy) < 1e-9 or math.hypot(vx, vy) < 1e-9:
        raise ValueError("rotation undefined: begin or target coincides with the anchor")
    return math.atan2(ux * vy - uy * vx, ux * vx + uy * vy)


def translation_affine(dx: float, dy: float) -> torch.Tensor:
    """2×3 float64 affine (x, y) ↦ (x + dx, y + dy)."""
    return torch.tensor([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=torch.float64)


def rotation_affine(theta: float, anchor: Point) -> torch.Tensor:
    """2×3 float64 affine rotating by θ (radians, +x towards +y) about ``anchor`` = (x, y)."""
    ax, ay = _xy(anchor, "anchor")
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor(
        [[c, -s, ax - (c * ax - s * ay)], [s, c, ay - (s * ax + c * ay)]], dtype=torch.float64
    )


def region_affine(
    op: str,
    begin: Point,
    target: Point,
    anchor: Point | None = None,
    progress: float = 1.0,
    image_hw: tuple[int, int] | None = None,
    scale: Point = (1.0, 1.0),
) -> torch.Tensor:
    """A_k(p): the 2×3 float64 affine of one region at progress p (see module docstring).

    ``relocate``/``deform``: translation p·(target − begin); with ``scale`` (rx, ry) [ours: the
    paper's ops do not scale] also scaled about ``begin`` by 1 + p·(r − 1) per axis. ``rotate``: rotation by p·θ about
    ``anchor`` (θ from :func:`rotation_angle`). ``image_hw`` (H, W), when given, is used to
    reject an anchor outside the image. Raises ValueError for an unknown op, a missing or
    outside anchor, and a rotation of 0 (begin and target on the same ray from the anchor)."""
    kind = _normalise_op(op)
    bx, by = _xy(begin, "begin")
    tx, ty = _xy(target, "target")
    p = float(progress)
    if kind in ("relocate", "deform"):
        sx, sy = (1.0 + p * (float(r) - 1.0) for r in scale)
        A = translation_affine(p * (tx - bx), p * (ty - by))
        A[0, 0], A[1, 1] = sx, sy
        A[0, 2] += bx - sx * bx
        A[1, 2] += by - sy * by
        return A
    if anchor is None:
        raise ValueError("rotate needs an anchor point (the rotation pivot)")
    ax, ay = _xy(anchor, "anchor")
    if image_hw is not None:
        h, w = image_hw
        if not (0.0 <= ax <= w and 0.0 <= ay <= h):
            raise ValueError(f"rotation anchor ({ax:g}, {ay:g}) lies outside the {w}×{h} image")
    theta = rotation_angle((bx, by), (tx, ty), (ax, ay))
    if abs(theta) < _MIN_ANGLE:
        raise ValueError(
            "rotation of 0: begin and target lie on the same ray from the anchor; "
            "move the target around the anchor"
        )
    return rotation_affine(p * theta, (ax, ay))


def _as_batch_affine(A: torch.Tensor | Sequence, batch: int) -> torch.Tensor:
    A = torch.as_tensor(A, dtype=torch.float64)
    if A.shape == (2, 3):
        A = A.unsqueeze(0)
    if A.dim() != 3 or A.shape[1:] != (2, 3):
        raise ValueError(f"affine must be 2×3 or B×2×3, got {tuple(A.shape)}")
    if A.shape[0] == 1 and batch > 1:
        A = A.expand(batch, 2, 3)
    if A.shape[0] != batch:
        raise ValueError(f"affine batch {A.shape[0]} does not match tensor batch {batch}")
    return A


def invert_affine(A: torch.Tensor) -> torch.Tensor:
    """Inverse of a 2×3 (or B×2×3) affine, same shape, float64."""
    A = torch.as_tensor(A, dtype=torch.float64)
    lin, t = A[..., :2], A[..., 2:]
    inv = torch.linalg.inv(lin)
    return torch.cat([inv, -inv @ t], dim=-1)


def apply_affine(A: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Map (N, 2) points (x, y) through the 2×3 affine A; returns float64 (N, 2)."""
    A = torch.as_tensor(A, dtype=torch.float64)
    pts = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
    return pts @ A[:, :2].T + A[:, 2]


def rescale_affine(A: torch.Tensor, sx: float, sy: float | None = None) -> torch.Tensor:
    """Express an affine given on one grid on another grid scaled by (sx, sy) (x' = sx·x).

    E.g. image pixels → latent: ``rescale_affine(A, 1/8)``; → an h×w feature map of an H×W
    image: ``rescale_affine(A, w/W, h/H)``. Result = S A S⁻¹ with S = diag(sx, sy)."""
    sy = sx if sy is None else sy
    A = torch.as_tensor(A, dtype=torch.float64)
    S = torch.tensor([[sx, 0.0], [0.0, sy]], dtype=torch.float64)
    Sinv = torch.tensor([[1.0 / sx, 0.0], [0.0, 1.0 / sy]], dtype=torch.float64)
    lin = S @ A[..., :2] @ Sinv
    t = A[..., 2] * torch.tensor([sx, sy], dtype=torch.float64)
    return torch.cat([lin, t.unsqueeze(-1)], dim=-1)


# ----------------------------------------------------------------------------- warps


def _integer_shift(A: torch.Tensor, tol: float = 1e-9) -> tuple[int, int] | None:
    """(dx, dy) if A is exactly the identity plus an integer translation, else None."""
    eye = torch.eye(2, dtype=torch.float64)
    if not bool(torch.all((A[:, :2] - eye).abs() <= tol)):
        return None
    t = A[:, 2]
    r = torch.round(t)
    if torch.all((t - r).abs() <= tol):
        return int(r[0]), int(r[1])
    return None


def _shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """out[..., i, j] = x[..., i − dy, j − dx], zeros where that falls outside."""
    H, W = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dx) >= W or abs(dy) >= H:
        return out
    out[..., max(dy, 0): H + min(dy, 0), max(dx, 0): W + min(dx, 0)] = x[
        ..., max(-dy, 0): H - max(dy, 0), max(-dx, 0): W - max(dx, 0)
    ]
    return out


def affine_sampling_grid(A: torch.Tensor, hw: tuple[int, int], batch: int = 1) -> torch.Tensor:
    """``grid_sample`` grid (B, H, W, 2), float64, for the forward affine A on an H×W grid.

    Output cell q takes its value from the source point A⁻¹(q), q a cell centre (j+.5, i+.5);
    normalised with ``align_corners=False``: u = 2x/W − 1, v = 2y/H − 1."""
    H, W = hw
    Ainv = invert_affine(_as_batch_affine(A, batch))  # (B, 2, 3)
    ys = torch.arange(H, dtype=torch.float64) + 0.5
    xs = torch.arange(W, dtype=torch.float64) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W)
    pts = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)  # (H, W, 3)
    src = torch.einsum("bkc,hwc->bhwk", Ainv, pts)  # (B, H, W, 2) in grid coordinates
    scale = torch.tensor([2.0 / W, 2.0 / H], dtype=torch.float64)
    return src * scale - 1.0


def warp_with_affine(
    x: torch.Tensor,
    A: torch.Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Move the content of x (B, C, H, W) by the forward affine A (2×3 or B×2×3, grid coords).

    out(q) = x(A⁻¹ q), sampled with ``grid_sample(..., align_corners=False)``; content moved in
    from outside is 0 (``padding_mode="zeros"``). An identity-plus-integer translation with zero
    padding is done by exact slicing, so content moves by exactly that many cells, bit for bit.
    Half/bfloat16 inputs are sampled in float32 (the grid needs the precision) and cast back."""
    if x.dim() != 4:
        raise ValueError(f"warp_with_affine expects (B, C, H, W), got {tuple(x.shape)}")
    B, _, H, W = x.shape
    Ab = _as_batch_affine(A, B)
    if padding_mode == "zeros":
        shifts = [_integer_shift(Ab[b]) for b in range(B)]
        if all(s is not None for s in shifts):
            if all(s == shifts[0] for s in shifts):
                return _shift(x, *shifts[0])
            return torch.stack([_shift(x[b], *shifts[b]) for b in range(B)])
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    grid = affine_sampling_grid(Ab, (H, W), B).to(device=x.device, dtype=work.dtype)
    out = F.grid_sample(work, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.to(x.dtype)


def _mask_4d(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    shape = mask.shape
    if mask.dim() == 2:
        m = mask[None, None]
    elif mask.dim() == 3:
        m = mask[:, None]
    elif mask.dim() == 4:
        m = mask
    else:
        raise ValueError(f"mask must be (H, W), (B, H, W) or (B, 1, H, W), got {tuple(shape)}")
    return m, shape


def warp_mask(mask: torch.Tensor, A: torch.Tensor, threshold: float = 0.5, outline: bool = False) -> torch.Tensor:
    """Bool mask at its transformed pose: ``warp_with_affine(mask, A, "bilinear") > threshold``.

    At the default threshold ½ a mask keeps its area [ours]: where under ``AREA_KEEP`` of its area
    × |det A| passes ½ (a one-pixel ring shrunk by 0.75 reads below ½ almost everywhere and
    vanished), the level drops to :func:`~.geometry.kept_area_level`'s. ``outline`` [ours] (a region's
    shape on the latent): a turned or scaled mask read at ½ is warped smoothed
    (:func:`~.geometry.outline_on`'s rule: ``OUTLINE_SIGMA``, ``OUTLINE_KEEP``).
    Accepts (H, W), (B, H, W) or (B, 1, H, W); returns bool of the same shape."""
    m, shape = _mask_4d(mask)
    return _warped(m, A, threshold, outline)[1].reshape(shape)


def _warped(m: torch.Tensor, A: torch.Tensor, threshold: float,
            outline: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(the (B, 1, H, W) mask ``m`` warped bilinearly, :func:`warp_mask`'s bool mask of it)."""
    dtype = m.dtype if m.dtype in (torch.float32, torch.float64) else torch.float32
    soft = warp_with_affine(m.to(dtype), A, mode="bilinear")
    out = soft > threshold
    if threshold == 0.5:
        Ab = _as_batch_affine(A, m.shape[0]).cpu()              # the count below runs on the CPU
        H, W = m.shape[-2:]
        for b in range(m.shape[0]):
            yx = torch.nonzero(m[b, 0]).cpu().to(torch.float64) + 0.5
            to = apply_affine(Ab[b], yx.flip(1))                        # the pixels' images, in frame or not
            landed = (to[:, 0] >= 0) & (to[:, 0] < W) & (to[:, 1] >= 0) & (to[:, 1] < H)
            want = float(landed.sum()) * abs(float(torch.linalg.det(Ab[b, :, :2].double())))
            sb = soft[b]
            kept = int(out[b].sum())
            level = kept_area_level(sb[sb > 0], want, kept=kept)
            if level < 0.5 or kept < geometry.AREA_KEEP * want:        # a line read at ½ exactly too
                out[b] = sb >= level - 1e-6
            elif outline and (Ab[b, :, :2] - torch.eye(2, dtype=Ab.dtype)).abs().max() > 1e-9:   # turned or scaled
                # decided on the CPU in float64, so the hole (CPU) and the moved copy (the latent's device) agree
                mb = m[b, 0].cpu().to(torch.float64)
                src = geometry.smoothed_outline(mb)
                if src is None:
                    continue
                sm = warp_with_affine(src[None, None], Ab[b], mode="bilinear")[0]
                plain = warp_with_affine(mb[None, None], Ab[b], mode="bilinear")[0]
                if int((sm > threshold).sum()) >= geometry.OUTLINE_KEEP * int((plain > threshold).sum()):
                    soft[b], out[b] = sm.to(soft.device, soft.dtype), (sm > threshold).to(out.device)
    return soft, out


def warp_region(z: torch.Tensor, mask: torch.Tensor, A: torch.Tensor, mode: str = "nearest") -> tuple:
    """(destination (H, W) bool, ``z`` (B, C, H, W) moved by ``A``): the region ``mask`` (H, W) at its
    pose (:func:`warp_mask` with ``outline``) and the content sampled with ``mode``; a destination the
    level ½ alone would not take (a shrunk thin shape, :func:`warp_mask`) shows the region's own pixels
    only (``z`` and the mask warped bilinearly, divided: the nearest pixel there is the hollow or the ground)."""
    soft, dst = _warped(mask[None, None], A, 0.5, outline=True)
    soft, dst = soft[0, 0], dst[0, 0]
    moved = warp_with_affine(z, A, mode=mode)
    thin = dst & ~(soft > 0.5)
    if bool(thin.any()):
        m = mask.to(z.dtype if z.dtype in (torch.float32, torch.float64) else torch.float32)[None, None]
        own = warp_with_affine(z * m.to(z.dtype), A, mode="bilinear") / soft.clamp(min=1e-6).to(z.dtype)
        moved = torch.where(thin, own, moved)
    return dst, moved


def resize_mask(mask: torch.Tensor, hw: tuple[int, int], rule: str = "any") -> torch.Tensor:
    """Resize a bool mask (H, W) / (B, H, W) / (B, 1, H, W) to ``hw`` by a cell-cover rule.

    ``rule``: "any" — a target cell is set if any source cell it covers is set (max pool);
    "majority" — if at least half its area is set (area average ≥ 0.5); "all" — if all are.
    Sizes need not be integer multiples (adaptive pooling, or nearest when upsampling)."""
    m, shape = _mask_4d(mask)
    m = m.float()
    h, w = hw
    if h >= m.shape[-2] and w >= m.shape[-1]:
        out = F.interpolate(m, size=(h, w), mode="nearest-exact") > 0.5
    elif rule == "any":
        out = F.adaptive_max_pool2d(m, (h, w)) > 0.5
    elif rule == "majority":
        out = F.adaptive_avg_pool2d(m, (h, w)) >= 0.5
    elif rule == "all":
        out = F.adaptive_avg_pool2d(m, (h, w)) >= 1.0 - 1e-6
    else:
        raise ValueError(f"unknown mask resize rule {rule!r}; expected any, majority or all")
    return out.reshape(*shape[:-2], h, w)


# ----------------------------------------------------------------------------- geometry


def mask_outline_points(mask: torch.Tensor) -> torch.Tensor:
    """Points (N, 2) float64 whose convex hull equals the hull of the mask's cell squares.

    For each row with set cells, the outer corners of its leftmost and rightmost cells
    (4 points per row), so N ≤ 4·H. An empty mask gives (0, 2)."""
    m = torch.as_tensor(mask).bool()
    if m.dim() != 2:
        raise ValueError(f"mask_outline_points expects an (H, W) mask, got {tuple(m.shape)}")
    rows = torch.nonzero(m.any(dim=1)).flatten()
    if rows.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.float64)
    sub = m[rows].float()
    W = m.shape[1]
    cols = torch.arange(W, dtype=torch.float32)
    left = torch.where(sub > 0, cols, torch.full_like(sub, W)).amin(dim=1).double()
    right = torch.where(sub > 0, cols, torch.full_like(sub, -1)).amax(dim=1).double() + 1.0
    y0 = rows.double()
    y1 = y0 + 1.0
    pts = torch.stack(
        [torch.stack([left, y0], -1), torch.stack([left, y1], -1),
         torch.stack([right, y0], -1), torch.stack([right, y1], -1)], dim=1
    )
    return pts.reshape(-1, 2)


@dataclass(eq=False)
class MinAreaRect:
    """A rotated rectangle: ``centre`` (x, y); ``size`` (w, h) with w along ``angle``;
    ``angle`` in radians in [0, π/2), measured from +x towards +y; ``corners`` (4, 2) in order
    around the rectangle. All float64."""

    centre: torch.Tensor
    size: torch.Tensor
    angle: float
    corners: torch.Tensor = field(repr=False)

    @property
    def area(self) -> float:
        return float(self.size[0] * self.size[1])


def min_area_rect(points: torch.Tensor) -> MinAreaRect:
    """Minimum-area enclosing rectangle of (N, 2) points (x, y) (pure replacement for OpenCV's
    ``minAreaRect``). Convex hull by monotone chain; the optimal rectangle has one side on a hull
    edge, so every edge direction is tried at once (vectorised calipers: project the hull on
    each edge direction and its normal, keep the smallest extent product)."""
    hull = convex_hull(points)
    if hull.shape[0] == 0:
        raise ValueError("min_area_rect needs at least one point")
    if hull.shape[0] == 1:
        c = hull[0]
        return MinAreaRect(c.clone(), torch.zeros(2, dtype=torch.float64), 0.0, c.repeat(4, 1))
    edges = torch.roll(hull, -1, dims=0) - hull  # (K, 2)
    lengths = edges.norm(dim=1)
    keep = lengths > 1e-12
    d = edges[keep] / lengths[keep, None]  # unit edge directions (E, 2)
    n = torch.stack([-d[:, 1], d[:, 0]], dim=1)  # normals
    pu = hull @ d.T  # (K, E) projections on the directions
    pv = hull @ n.T
    umin, umax = pu.min(0).values, pu.max(0).values
    vmin, vmax = pv.min(0).values, pv.max(0).values
    areas = (umax - umin) * (vmax - vmin)
    k = int(torch.argmin(areas))
    u0, u1, v0, v1 = umin[k], umax[k], vmin[k], vmax[k]
    dk, nk = d[k], n[k]
    corners = torch.stack(
        [u0 * dk + v0 * nk, u1 * dk + v0 * nk, u1 * dk + v1 * nk, u0 * dk + v1 * nk]
    )
    centre = corners.mean(0)
    w, h = float(u1 - u0), float(v1 - v0)
    angle = math.atan2(float(dk[1]), float(dk[0])) % math.pi
    if angle >= math.pi / 2 - 1e-12:  # express with the first side in [0, π/2)
        angle -= math.pi / 2
        w, h = h, w
    if abs(angle) < 1e-12:
        angle = 0.0
    return MinAreaRect(centre, torch.tensor([w, h], dtype=torch.float64), angle, corners)


def rect_mask(corners: torch.Tensor, H: int, W: int, eps: float = 1e-7) -> torch.Tensor:
    """Bool (H, W): cells whose centre (j+.5, i+.5) lies inside (or on) the convex quad
    ``corners`` (4, 2), given in either winding order."""
    c = torch.as_tensor(corners, dtype=torch.float64).reshape(-1, 2)
    ys = torch.arange(H, dtype=torch.float64) + 0.5
    xs = torch.arange(W, dtype=torch.float64) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    a, b = c, torch.roll(c, -1, dims=0)
    # cross((b − a), (q − a)) for every edge and cell: (4, H, W)
    cr = (b[:, 0, None, None] - a[:, 0, None, None]) * (gy[None] - a[:, 1, None, None]) - (
        b[:, 1, None, None] - a[:, 1, None, None]
    ) * (gx[None] - a[:, 0, None, None])
    scale = max(1.0, float((b - a).norm(dim=1).max()))
    tol = eps * scale
    return torch.all(cr >= -tol, dim=0) | torch.all(cr <= tol, dim=0)


def background_edit_mask(
    region_masks: Sequence[torch.Tensor],
    affines: Sequence[torch.Tensor],
    H: int,
    W: int,
    out_hw: tuple[int, int] | None = None,
    rule: str = "any",
    include_regions: bool = True,
) -> torch.Tensor:
    """DragFlow's editable mask M_bg (the notes' "background mask"): the union over regions of
    the minimum-area rotated rectangle covering region_k ∪ A_k(region_k).

    ``region_masks``: (H, W) masks at pixel resolution; ``affines``: their final (p = 1) 2×3
    affines in the same pixel grid coordinates. The transformed copy is taken exactly, by
    mapping the region's outline points through A_k. Rasterised at H×W (cell centre inside),
    then, if ``out_hw`` is given (e.g. the latent (H/8, W/8)), resized with
    :func:`resize_mask` ``rule`` ([guess] "any": a latent cell is editable if any of its pixels
    is). ``include_regions`` [guess] also ORs in the region and its warped mask themselves.
    Returns a bool mask; 1 = editable, 0 = hard background."""
    if len(region_masks) != len(affines):
        raise ValueError("one affine per region mask is needed")
    out = torch.zeros(H, W, dtype=torch.bool)
    for mask, A in zip(region_masks, affines):
        m = torch.as_tensor(mask).bool().cpu()
        if m.shape != (H, W):
            raise ValueError(f"region mask {tuple(m.shape)} does not match image {(H, W)}")
        pts = mask_outline_points(m)
        if pts.shape[0] == 0:
            raise ValueError("empty region mask")
        A = torch.as_tensor(A, dtype=torch.float64).cpu()
        rect = min_area_rect(torch.cat([pts, apply_affine(A, pts)]))
        out |= rect_mask(rect.corners, H, W)
        if include_regions:
            out |= m | warp_mask(m, A)
    if out_hw is not None and tuple(out_hw) != (H, W):
        out = resize_mask(out, tuple(out_hw), rule)
    return out


# ----------------------------------------------------------------------------- regions


def mask_centroid(mask: torch.Tensor) -> tuple[float, float]:
    """Centroid (x, y) of a bool (H, W) mask in grid coordinates (cell centres at +0.5)."""
    m = torch.as_tensor(mask).bool()
    idx = torch.nonzero(m).double()
    if idx.shape[0] == 0:
        raise ValueError("empty region mask")
    return float(idx[:, 1].mean() + 0.5), float(idx[:, 0].mean() + 0.5)


@dataclass(eq=False)
class Region:
    """One DragFlow region instruction, in the grid coordinates of its own mask (H, W).

    ``op``: relocate | deform | rotate (DragFlow's transformation | deformation | rotation are
    accepted); ``begin`` defaults to the mask centroid; ``anchor`` is the rotation pivot;
    ``depth`` the user's depth intent for the moved content (the instructions' per-drag
    ``depth``: auto | front | behind; ``core.dragflow_proposal.carried_proposal`` reads it).
    Validated on creation: empty mask, unknown op, missing/outside anchor, rotation of 0, and a
    region whose transformed copy leaves the image entirely raise ValueError."""

    mask: torch.Tensor
    op: str
    target: tuple[float, float]
    begin: tuple[float, float] | None = None
    anchor: tuple[float, float] | None = None
    depth: str = "auto"
    #: [ours] relocate / deform: scaled by (rx, ry) about ``begin`` (:func:`region_affine`)
    scale: tuple[float, float] = (1.0, 1.0)
    #: [ours] (H, W) bool: painted cells that stay where they are although the user painted them
    #: (``dragflow_proposal.hinge_kept``: a limb's base at its joint); they are no part of ``mask``
    #: but the content is read against the paint as painted. None: none
    hinge: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.depth not in ("auto", "front", "behind"):
            raise ValueError(f"region depth {self.depth!r}: use 'auto', 'front' or 'behind'")
        m = torch.as_tensor(self.mask)
        if m.dim() != 2:
            raise ValueError(f"region mask must be (H, W), got {tuple(m.shape)}")
        self.mask = m.bool()
        if self.hinge is not None:
            self.hinge = torch.as_tensor(self.hinge).bool()
            if tuple(self.hinge.shape) != tuple(self.mask.shape):
                raise ValueError(f"region hinge {tuple(self.hinge.shape)} must match its mask {tuple(m.shape)}")
        if not bool(self.mask.any()):
            raise ValueError("empty region mask: draw the region to move")
        self.op = _normalise_op(self.op)
        self.target = _xy(self.target, "target")
        self.begin = mask_centroid(self.mask) if self.begin is None else _xy(self.begin, "begin")
        if self.anchor is not None:
            self.anchor = _xy(self.anchor, "anchor")
        self.scale = _xy(self.scale, "scale")
        if min(self.scale) <= 0:
            raise ValueError(f"region scale {self.scale} must be positive on both axes")
        if self.scale != (1.0, 1.0) and self.op == "rotate":
            raise ValueError("a rotate region cannot scale; use relocate with a scale")
        A = self.affine(1.0)  # raises for rotate problems
        if not bool(warp_mask(self.mask, A, threshold=0.0).any()):
            raise ValueError("the transformed region lies entirely outside the image")

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @property
    def area_fraction(self) -> float:
        """s_k = region area / image area."""
        return float(self.mask.float().mean())

    @property
    def drag_distance(self) -> float:
        """|target − begin| in this region's grid units."""
        return math.hypot(self.target[0] - self.begin[0], self.target[1] - self.begin[1])

    def affine(self, progress: float = 1.0, grid_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """A_k(p) as 2×3 float64; on another grid (e.g. the latent or a feature map) when
        ``grid_hw`` is given (scaled by grid/mask size)."""
        A = region_affine(self.op, self.begin, self.target, self.anchor, progress=progress, image_hw=self.hw,
                          scale=self.scale)
        if grid_hw is not None and tuple(grid_hw) != self.hw:
            H, W = self.hw
            A = rescale_affine(A, grid_hw[1] / W, grid_hw[0] / H)
        return A
