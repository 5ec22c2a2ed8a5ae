"""ContextDrag latent-space reverse mapping (LRM) on the FLUX token grid.

ContextDrag (arXiv 2512.08477; docs/contextdrag.md) drags on FLUX.1 Kontext without inversion: the
source image is Kontext's reference and its noise-free tokens are re-used at the dragged
positions. LRM gives every destination token q a source token src(q), with no holes:

1. forward coarse target region: for p in M_SRC the displacement
   D(p) = sum_i w_i(p) d_i / (sum_i w_i(p) + eps),  w_i(p) = |p - s_i|^-power,
   (s_i handles, t_i targets, d_i = t_i - s_i; at a handle D = d_i exactly), and
   M_DST^coarse = the grid cells inside the convex hull of {p + D(p)}, clipped to the grid;
2. reverse lookup: for q in M_DST^coarse an inverse displacement W(q) by inverse-distance
   weighting anchored on the targets, W(q) = sum_i w_i(q) (-d_i) / sum_i w_i(q) with
   w_i(q) = |q - t_i|^-power, and src(q) = round(q + W(q)); q whose source falls outside
   M_SRC (or the grid) are dropped, which gives M_DST and the dense map src.

The results feed context-preserving token injection and position-consistent attention
(:func:`injection_pairs`; ``core/reverse_tokens.py``: sub-token shifts; ``core/reverse_ids.py``:
reference position ids; :meth:`ReverseMap.hide_mask`).

Coordinates: points are float (x, y) token coordinates (token centres are integers), masks
are bool (h, w) indexed [y, x], the dense map ``src`` is (h, w, 2) long holding (x, y).
Flat token indices are row-major, y * w + x (the order of FLUX's token sequence).

No official code exists. Documented guesses, each a parameter with the guess as default:

* ``eps=1e-12`` in D(p): the review's formula has an unspecified eps; a tiny one keeps a
  single drag an exact translation [guess].
* ``hull_groups="component"``: one convex hull per 8-connected component of M_SRC (the
  review's single hull over all of M_SRC, ``"all"``, fills the gap between separate
  regions) [guess]; ``hull=False`` uses the rounded forward points dilated by ``dilate=1``
  cells instead of a hull [guess].
* ``anchor="target"``: the reverse weights are anchored on the targets (the review's
  reading); ``"handle"`` inverts the forward map by ``fixed_point_iters=5`` fixed-point
  steps p <- q - D(p) [guess].
* Rounding is half-up, floor(x + 0.5), so results do not depend on banker's rounding [guess].
* Default region when no mask is given: a disc of radius max(1, |d_i| / 2) around each
  handle (``region_radius_scale=0.5``, ``region_radius_min=1.0``) [guess].
* :meth:`ReverseMap.hide_mask` hides the vacated area M_SRC \\ M_DST by default, minus the
  tokens that serve as a source (they carry a destination position after the id rewrite)
  [guess].
* :func:`~fluxdrag.core.reverse_ids.reference_position_ids`: a reference token that is the source of several
  destinations carries their mean position (``collision="mean"``) [guess]; the index
  channel is kept (``keep_index=True``); vacated tokens that are no source keep their ids
  (``vacated_offset=None``) [guess].

Why one long module: the two LRM steps and what its two consumers derive from one ReverseMap
(injection pairs, reference position ids, hide masks) are one algorithm, kept together so paper and
code read side by side; generic geometry (hulls, components) is in :mod:`.geometry`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .geometry import connected_components, convex_hull, round_half_up
from .instructions import rle_decode, rle_encode

MAP_VERSION = 1
HULL_GROUPS = ("component", "all")
ANCHORS = ("target", "handle")
DRAG_GROUPS = ("component", "all")
HIDE_SETS = ("vacated", "source", "overlap", "vacated_overlap", "none")
COLLISIONS = ("mean", "first")
#: ``snap`` rounding: a forward point within this of a half-token tie rounds up, a reverse one down
SNAP_TOL = 1e-6

PointsLike = torch.Tensor | Sequence[Sequence[float]]

__all__ = [
    "ReverseMap",
    "build_reverse_map",
    "convex_hull",
    "default_region_mask",
    "forward_coarse_region",
    "forward_displacement",
    "idw_displacement",
    "injection_pairs",
    "points_in_convex_polygon",
    "reverse_lookup",
]


# --------------------------------------------------------------------------------------------
# small helpers


def _points(p: PointsLike, where: str) -> torch.Tensor:
    t = torch.as_tensor(p, dtype=torch.float64).cpu()
    if t.numel() == 0:
        return t.reshape(0, 2)
    if t.dim() == 1 and t.numel() == 2:
        t = t.reshape(1, 2)
    if t.dim() != 2 or t.shape[1] != 2:
        raise ValueError(f"{where} must be (n, 2) (x, y) points, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{where} holds a non-finite coordinate")
    return t


def _grid_points(h: int, w: int) -> torch.Tensor:
    """All token centres as (h*w, 2) float64 (x, y), row-major."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


def _mask_points(mask: torch.Tensor) -> torch.Tensor:
    """(n, 2) float64 (x, y) of the True cells of an (h, w) mask, row-major."""
    yx = torch.nonzero(mask)
    return yx.flip(1).to(torch.float64)


def _check_grid(grid_hw: Sequence[int]) -> tuple[int, int]:
    if len(grid_hw) != 2:
        raise ValueError(f"grid_hw must be (h, w), got {grid_hw!r}")
    h, w = int(grid_hw[0]), int(grid_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"grid_hw must be two positive integers, got {grid_hw!r}")
    return h, w


def _check_mask(mask: Any, h: int, w: int, where: str) -> torch.Tensor:
    m = torch.as_tensor(mask).cpu()
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != (h, w):
        raise ValueError(f"{where} must be a ({h}, {w}) token mask, got shape {tuple(m.shape)}")
    return m.to(torch.bool)


# --------------------------------------------------------------------------------------------
# step 1: forward displacement and the coarse destination region


def idw_displacement(
    points: PointsLike,
    anchors: PointsLike,
    vectors: PointsLike,
    power: float = 2.0,
    eps: float = 0.0,
) -> torch.Tensor:
    """Inverse-distance weighted field sum_i w_i v_i / (sum_i w_i + eps), w_i = |p - a_i|^-power.

    A point that coincides with an anchor (w = inf) gets that anchor's vector exactly (the mean
    when several anchors coincide there). Returns (n, 2) float64.
    """
    p = _points(points, "points")
    a = _points(anchors, "anchors")
    v = _points(vectors, "vectors")
    if a.shape[0] != v.shape[0] or a.shape[0] == 0:
        raise ValueError(
            f"need as many vectors as anchors (>= 1), got {a.shape[0]} and {v.shape[0]}"
        )
    dist = torch.cdist(p, a)  # (n, k)
    at = dist <= 1e-12
    wgt = torch.where(at, torch.zeros_like(dist), dist.clamp_min(1e-300).pow(-float(power)))
    out = (wgt @ v) / (wgt.sum(dim=1, keepdim=True) + float(eps))
    hit = at.any(dim=1)
    if hit.any():
        ah = at[hit].to(torch.float64)
        out[hit] = (ah @ v) / ah.sum(dim=1, keepdim=True)
    return out


def forward_displacement(
    points: PointsLike,
    handles: PointsLike,
    targets: PointsLike,
    power: float = 2.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """D(p) = sum_i w_i(p) d_i / (sum_i w_i(p) + eps), w_i(p) = |p - s_i|^-power, d_i = t_i - s_i.

    ``eps=1e-12`` [guess]. Returns (n, 2) float64.
    """
    s = _points(handles, "handles")
    t = _points(targets, "targets")
    if s.shape != t.shape:
        raise ValueError(f"handles {tuple(s.shape)} and targets {tuple(t.shape)} differ in shape")
    return idw_displacement(points, s, t - s, power=power, eps=eps)


def points_in_convex_polygon(
    points: PointsLike, hull: torch.Tensor, tol: float = 1e-3
) -> torch.Tensor:
    """Bool (n,) - inside or on the boundary (within distance ``tol``) of a convex polygon
    given counter-clockwise as from :func:`convex_hull` (1 vertex: a point, 2: a segment)."""
    p = _points(points, "points")
    v = torch.as_tensor(hull, dtype=torch.float64).reshape(-1, 2)
    m = v.shape[0]
    if m == 0 or p.shape[0] == 0:
        return torch.zeros(p.shape[0], dtype=torch.bool)
    if m == 1:
        return (p - v[0]).norm(dim=1) <= tol
    if m == 2:
        e = v[1] - v[0]
        r = p - v[0]
        length = e.norm()
        along = (r @ e) / length
        off = (e[0] * r[:, 1] - e[1] * r[:, 0]).abs() / length
        return (off <= tol) & (along >= -tol) & (along <= length + tol)
    e = v.roll(-1, dims=0) - v  # (m, 2) edges v_k -> v_k+1
    r = p[:, None, :] - v[None, :, :]  # (n, m, 2)
    cr = e[None, :, 0] * r[..., 1] - e[None, :, 1] * r[..., 0]  # (n, m); >= 0 on the left
    return (cr >= -tol * e.norm(dim=1)[None, :]).all(dim=1)


def forward_coarse_region(
    handles: PointsLike,
    targets: PointsLike,
    src_mask: torch.Tensor,
    *,
    power: float = 2.0,
    eps: float = 1e-12,
    hull: bool = True,
    hull_groups: str = "component",
    hull_tol: float = 1e-3,
    dilate: int = 1,
    snap: bool = False,
) -> torch.Tensor:
    """M_DST^coarse: bool (h, w) cells covered by the forward-displaced source region.

    ``hull=True``: cells inside the convex hull of {p + D(p) : p in M_SRC} (boundary
    inclusive within ``hull_tol``), one hull per 8-connected component of M_SRC
    (``hull_groups="component"`` [guess]) or one over all of it (``"all"``, the review's
    literal reading); ``snap=True`` adds the cells the forward points round to (half-up) [guess]:
    a drag of a half token puts every forward point between cell centres, so the hull's cells
    alone lose one row or column of the region (and a one-token-thin region, whose hull is a
    segment between centres, loses every cell). ``hull=False``: the rounded forward points
    dilated by ``dilate`` cells (Chebyshev) [guess]. Always clipped to the grid.
    """
    if hull_groups not in HULL_GROUPS:
        raise ValueError(f"hull_groups must be one of {HULL_GROUPS}, got {hull_groups!r}")
    src_mask = torch.as_tensor(src_mask).to(torch.bool).cpu()
    h, w = src_mask.shape
    out = torch.zeros(h, w, dtype=torch.bool)
    if not src_mask.any():
        return out
    p = _mask_points(src_mask)
    fwd = p + forward_displacement(p, handles, targets, power=power, eps=eps)  # (n, 2)
    if not hull:
        r = int(dilate)
        if r < 0:
            raise ValueError(f"dilate must be >= 0, got {dilate}")
        base = round_half_up(fwd).long()  # (n, 2) x, y
        off = torch.stack(
            torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="xy"), dim=-1
        ).reshape(-1, 2)
        cells = (base[:, None, :] + off[None]).reshape(-1, 2)
        ok = (cells[:, 0] >= 0) & (cells[:, 0] < w) & (cells[:, 1] >= 0) & (cells[:, 1] < h)
        cells = cells[ok]
        out[cells[:, 1], cells[:, 0]] = True
        return out
    grid = _grid_points(h, w)
    if hull_groups == "all":
        groups = torch.zeros(p.shape[0], dtype=torch.long)
    else:
        groups = connected_components(src_mask)[src_mask]  # row-major, same order as p
    flat = out.reshape(-1)
    for g in torch.unique(groups).tolist():
        poly = convex_hull(fwd[groups == g])
        flat |= points_in_convex_polygon(grid, poly, tol=hull_tol)
    if snap:   # ties within SNAP_TOL count as ties (eps in D(p) makes 2.5 into 2.4999…)
        cells = round_half_up(fwd + SNAP_TOL).long()
        ok = (cells[:, 0] >= 0) & (cells[:, 0] < w) & (cells[:, 1] >= 0) & (cells[:, 1] < h)
        out[cells[ok, 1], cells[ok, 0]] = True
    return out


# --------------------------------------------------------------------------------------------
# step 2: reverse lookup


def reverse_lookup(
    query_points: PointsLike,
    handles: PointsLike,
    targets: PointsLike,
    *,
    anchor: str = "target",
    power: float = 2.0,
    eps: float = 1e-12,
    fixed_point_iters: int = 5,
) -> torch.Tensor:
    """Continuous source positions q + W(q) for destination points q: (n, 2) float64.

    ``anchor="target"``: W(q) = sum_i w_i(q) (-d_i) / sum_i w_i(q), w_i(q) = |q - t_i|^-power
    (the review's reading). ``anchor="handle"``: p solves p + D(p) = q by ``fixed_point_iters``
    steps p <- q - D(p) from p = q, with D the forward field anchored on the handles [guess].
    """
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    q = _points(query_points, "query_points")
    s = _points(handles, "handles")
    t = _points(targets, "targets")
    if q.shape[0] == 0:
        return q
    if anchor == "target":
        return q + idw_displacement(q, t, s - t, power=power, eps=eps)
    p = q.clone()
    for _ in range(max(1, int(fixed_point_iters))):
        p = q - forward_displacement(p, s, t, power=power, eps=eps)
    return p


# --------------------------------------------------------------------------------------------
# the map


@dataclass(eq=False)
class ReverseMap:
    """Result of LRM on an (h, w) token grid.

    handles, targets: (k, 2) float64 token (x, y); src_mask = M_SRC, coarse_mask =
    M_DST^coarse, dst_mask = M_DST: bool (h, w); src: (h, w, 2) long, src[y, x] = (x', y') of
    the source token of destination (x, y), -1 where not a destination; params: the settings
    used (JSON values); back: (h, w, 2) float64 continuous source q + W(q) of every token, or None
    when it is the one inverse-distance field of all drags (:func:`reverse_lookup`; a map built
    with ``drag_groups="component"`` and several groups stores its own); fine_mask: the region
    to move at latent-pixel resolution, bool (patch·h, patch·w) (a token is patch × patch latent
    pixels), or None when it is only known by token (the default discs): what
    :func:`~fluxdrag.core.reverse_tokens.moved_patch_pixels` composites with; paint_mask: the
    whole painted region at latent pixels when fine_mask is only its content (the rest, e.g. a
    cast shadow, is vacated and filled, not moved), else None; content_score: float (patch·h,
    patch·w), each painted pixel's contrast against the region's harmonic fill over its part's
    strongest (``core.correspondence_latent.content_score``), or None (not kept in the JSON);
    continued [ours]: the painted pixels continuing an unpainted object (map node), or None.
    """

    grid_hw: tuple[int, int]
    handles: torch.Tensor
    targets: torch.Tensor
    src_mask: torch.Tensor
    coarse_mask: torch.Tensor
    dst_mask: torch.Tensor
    src: torch.Tensor
    params: dict[str, Any] = field(default_factory=dict)
    fine_mask: torch.Tensor | None = None
    back: torch.Tensor | None = None
    paint_mask: torch.Tensor | None = None
    content_score: torch.Tensor | None = None
    continued: torch.Tensor | None = None

    @property
    def painted(self) -> torch.Tensor | None:
        """The painted region at latent pixels: :attr:`paint_mask`, else :attr:`fine_mask`."""
        return self.paint_mask if self.paint_mask is not None else self.fine_mask

    @property
    def vacated_mask(self) -> torch.Tensor:
        """M_SRC \\ M_DST: bool (h, w)."""
        return self.src_mask & ~self.dst_mask

    @property
    def used_source_mask(self) -> torch.Tensor:
        """Bool (h, w): tokens that are src(q) of at least one destination q."""
        h, w = self.grid_hw
        out = torch.zeros(h * w, dtype=torch.bool)
        _, s = injection_pairs(self)
        out[s] = True
        return out.reshape(h, w)

    def hide_mask(self, which: str = "vacated", exclude_sources: bool = True) -> torch.Tensor:
        """Reference tokens (bool (h, w), by their original grid position) to hide from image
        queries in the overlap-aware attention mask [guess].

        ``"vacated"``: M_SRC \\ M_DST; ``"source"``: M_SRC; ``"overlap"``: tokens inside M_DST
        that are no source (after the id rewrite they share a position with a moved token);
        ``"vacated_overlap"``: both; ``"none"``: nothing. ``exclude_sources=True`` [guess]
        never hides a token that serves as a source: with the position rewrite it sits at its
        destination, no longer in the vacated area.
        """
        if which not in HIDE_SETS:
            raise ValueError(f"which must be one of {HIDE_SETS}, got {which!r}")
        h, w = self.grid_hw
        used = self.used_source_mask
        if which == "none":
            return torch.zeros(h, w, dtype=torch.bool)
        if which == "source":
            m = self.src_mask.clone()
        elif which == "vacated":
            m = self.vacated_mask
        else:
            m = self.dst_mask & ~used
            if which == "vacated_overlap":
                m = m | self.vacated_mask
        if exclude_sources:
            m = m & ~used
        return m

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: masks as row-major RLE, the map as [qx, qy, sx, sy] pairs."""
        d, s = injection_pairs(self)
        w = self.grid_hw[1]
        pairs = torch.stack([d % w, d // w, s % w, s // w], dim=1).tolist()
        return {
            "version": MAP_VERSION,
            "grid_hw": [int(self.grid_hw[0]), int(self.grid_hw[1])],
            "handles": self.handles.tolist(),
            "targets": self.targets.tolist(),
            "src_mask": rle_encode(self.src_mask),
            "coarse_mask": rle_encode(self.coarse_mask),
            "pairs": pairs,
            "params": dict(self.params),
            "fine_mask": None if self.fine_mask is None else rle_encode(self.fine_mask),
            "paint_mask": None if self.paint_mask is None else rle_encode(self.paint_mask),
            "back": None if self.back is None else self.back.reshape(-1, 2).tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReverseMap:
        """Inverse of :meth:`to_dict`; validates version, sizes and that pairs lie in the grid
        with sources in M_SRC."""
        if d.get("version") != MAP_VERSION:
            raise ValueError(f"reverse map version {d.get('version')!r} is not {MAP_VERSION}")
        h, w = _check_grid(d["grid_hw"])
        src_mask = _check_mask(rle_decode(d["src_mask"], "src_mask"), h, w, "src_mask")
        coarse = _check_mask(rle_decode(d["coarse_mask"], "coarse_mask"), h, w, "coarse_mask")
        pairs = torch.as_tensor(d["pairs"], dtype=torch.long).reshape(-1, 4)
        qx, qy, sx, sy = pairs.unbind(1)
        inside = ((qx >= 0) & (qx < w) & (qy >= 0) & (qy < h) & (sx >= 0) & (sx < w)
                  & (sy >= 0) & (sy < h))
        if not inside.all():
            raise ValueError("reverse map pairs fall outside the grid")
        if not src_mask[sy, sx].all():
            raise ValueError("reverse map has a source outside src_mask")
        dst = torch.zeros(h, w, dtype=torch.bool)
        dst[qy, qx] = True
        if int(dst.sum()) != pairs.shape[0]:
            raise ValueError("reverse map lists a destination twice")
        src = torch.full((h, w, 2), -1, dtype=torch.long)
        src[qy, qx] = torch.stack([sx, sy], dim=1)
        k = len(d["handles"])
        fine = d.get("fine_mask")
        if fine is not None:
            fine = rle_decode(fine, "fine_mask")
            if fine.shape[0] % h or fine.shape[1] % w or fine.shape[0] // h != fine.shape[1] // w:
                raise ValueError(f"fine_mask {tuple(fine.shape)} is no whole multiple of the {h}x{w} grid")
        return cls(
            grid_hw=(h, w),
            handles=torch.tensor(d["handles"], dtype=torch.float64).reshape(k, 2),
            targets=torch.tensor(d["targets"], dtype=torch.float64).reshape(k, 2),
            src_mask=src_mask,
            coarse_mask=coarse,
            dst_mask=dst,
            src=src,
            params=dict(d.get("params", {})),
            fine_mask=fine,
            paint_mask=None if d.get("paint_mask") is None else rle_decode(d["paint_mask"], "paint_mask"),
            back=None if d.get("back") is None else torch.tensor(d["back"], dtype=torch.float64).reshape(h, w, 2),
        )


def default_region_mask(handles: PointsLike, targets: PointsLike, grid_hw: Sequence[int],
                        radius_scale: float = 0.5, radius_min: float = 1.0) -> torch.Tensor:
    """M_SRC when none is given: cells within radius max(radius_min, radius_scale * |d_i|)
    of each handle s_i (inclusive) [guess]. Bool (h, w)."""
    h, w = _check_grid(grid_hw)
    s = _points(handles, "handles")
    t = _points(targets, "targets")
    r = torch.clamp((t - s).norm(dim=1) * float(radius_scale), min=float(radius_min))  # (k,)
    dist = torch.cdist(_grid_points(h, w), s)  # (h*w, k)
    return (dist <= r[None, :] + 1e-9).any(dim=1).reshape(h, w)


def build_reverse_map(
    handles: PointsLike,
    targets: PointsLike,
    src_mask: torch.Tensor | None,
    grid_hw: Sequence[int],
    *,
    power: float = 2.0,
    eps: float = 1e-12,
    hull: bool = True,
    hull_groups: str = "component",
    hull_tol: float = 1e-3,
    dilate: int = 1,
    anchor: str = "target",
    fixed_point_iters: int = 5,
    region_radius_scale: float = 0.5,
    region_radius_min: float = 1.0,
    snap: bool = False,
    drag_groups: str = "all",
    pixel_region: torch.Tensor | None = None,
) -> ReverseMap:
    """Latent-space reverse mapping: M_SRC -> M_DST^coarse -> (M_DST, src).

    handles, targets: (k, 2) token (x, y); src_mask: bool (h, w) M_SRC or None for the
    default discs (:func:`default_region_mask`). Every destination has a source inside M_SRC
    and the grid. Parameters and their guesses are described in the module docstring.

    ``snap=True`` [guess]: M_DST^coarse also holds the rounded forward cells
    (:func:`forward_coarse_region`), and the reverse lookup rounds half *down*, the mirror of the
    forward half-up: for a rigid drag d, q = ⌊p + d + ½⌋ then gives ⌈q − d − ½⌉ = p back, so a
    drag of a half token moves the whole region by one rounded displacement. With both half-up
    (``snap=False``) the first source row/column is never a source and the last destination
    row/column is dropped: the region shrinks by one token per half-token axis.

    ``drag_groups="component"`` [departure; ``"all"`` is the paper's one field of every drag]: each
    8-connected component of M_SRC is displaced by its own drags only (those whose handle lies in
    it, else the nearest; a component without a drag joins the nearest one that has one), one map
    per group, merged (a destination claimed twice keeps the first group's source); the merged map
    stores each token's continuous source (:attr:`ReverseMap.back`) from the field of the group
    whose destinations lie nearest. With one group both are the same map. ``pixel_region`` [ours]:
    the painted region at latent pixels, where the parts are read (:func:`.reverse_groups.drag_groups_of`).
    """
    h, w = _check_grid(grid_hw)
    s = _points(handles, "handles")
    t = _points(targets, "targets")
    if s.shape != t.shape or s.shape[0] == 0:
        raise ValueError(
            f"need one target per handle (>= 1 drag), got {s.shape[0]} handles and "
            f"{t.shape[0]} targets"
        )
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    if drag_groups not in DRAG_GROUPS:
        raise ValueError(f"drag_groups must be one of {DRAG_GROUPS}, got {drag_groups!r}")
    if src_mask is None:
        m_src = default_region_mask(s, t, (h, w), region_radius_scale, region_radius_min)
    else:
        m_src = _check_mask(src_mask, h, w, "src_mask")
    kw = dict(power=power, eps=eps, hull=hull, hull_groups=hull_groups, hull_tol=hull_tol, dilate=dilate,
              anchor=anchor, fixed_point_iters=fixed_point_iters, region_radius_scale=region_radius_scale,
              region_radius_min=region_radius_min, snap=snap)
    if drag_groups == "component":
        from .reverse_groups import drag_groups_of, merged_map  # (that module builds on this one)

        groups = drag_groups_of(s, m_src, pixel_region)
        if len(groups) > 1:
            return merged_map(s, t, m_src, grid_hw=(h, w), groups=groups, region_default=src_mask is None, kw=kw)

    coarse = forward_coarse_region(
        s, t, m_src, power=power, eps=eps, hull=hull, hull_groups=hull_groups,
        hull_tol=hull_tol, dilate=dilate, snap=snap,
    )
    q = _mask_points(coarse)  # (n, 2) row-major
    back = reverse_lookup(q, s, t, anchor=anchor, power=power, eps=eps,
                          fixed_point_iters=fixed_point_iters)
    src_xy = (torch.ceil(back - 0.5 - SNAP_TOL) if snap else round_half_up(back)).long()  # (n, 2) long
    sx, sy = src_xy[:, 0], src_xy[:, 1]
    keep = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    keep[keep.clone()] = m_src[sy[keep], sx[keep]]
    qi = q[keep].long()

    dst = torch.zeros(h, w, dtype=torch.bool)
    dst[qi[:, 1], qi[:, 0]] = True
    src = torch.full((h, w, 2), -1, dtype=torch.long)
    src[qi[:, 1], qi[:, 0]] = src_xy[keep]
    _hold_anchors(dst, src, s, t, m_src, power=power, eps=eps)
    params = {
        "power": float(power), "eps": float(eps), "hull": bool(hull), "hull_groups": hull_groups,
        "hull_tol": float(hull_tol), "dilate": int(dilate), "anchor": anchor,
        "fixed_point_iters": int(fixed_point_iters), "region_default": src_mask is None,
        "region_radius_scale": float(region_radius_scale),
        "region_radius_min": float(region_radius_min), "snap": bool(snap), "drag_groups": drag_groups,
    }
    return ReverseMap(grid_hw=(h, w), handles=s, targets=t, src_mask=m_src, coarse_mask=coarse, dst_mask=dst,
                      src=src, params=params)


def _hold_anchors(dst: torch.Tensor, src: torch.Tensor, s: torch.Tensor, t: torch.Tensor,
                  m_src: torch.Tensor, *, power: float, eps: float) -> None:
    """Anchors (a handle on its target: zero displacement) map to themselves, in place.

    The cell holding each anchor, and every cell of M_SRC whose nearest handle is an anchor and
    whose forward displacement rounds to zero, map to themselves, over a moved drag's
    destination there (a fixed point holds; a small component's hull may miss them).
    """
    fixed = (t - s).norm(dim=1) == 0
    if not bool(fixed.any()):
        return
    h, w = dst.shape
    p = _mask_points(m_src)
    cells = round_half_up(s[fixed]).long()
    if p.shape[0]:
        near = torch.cdist(p, s).argmin(dim=1)
        moved = round_half_up(p + forward_displacement(p, s, t, power=power, eps=eps)).long()
        stay = fixed[near] & (moved == p.long()).all(dim=1)
        cells = torch.cat([cells, p[stay].long()])
    ok = (cells[:, 0] >= 0) & (cells[:, 0] < w) & (cells[:, 1] >= 0) & (cells[:, 1] < h)
    cells = cells[ok]
    dst[cells[:, 1], cells[:, 0]] = True
    src[cells[:, 1], cells[:, 0]] = cells


def injection_pairs(rmap: ReverseMap) -> tuple[torch.Tensor, torch.Tensor]:
    """(dst_flat_idx, src_flat_idx): long (m,) row-major token indices y * w + x, one pair
    per destination q in M_DST (ascending q), src_flat_idx the index of src(q)."""
    w = rmap.grid_hw[1]
    qyx = torch.nonzero(rmap.dst_mask)  # (m, 2) y, x, row-major
    dst_idx = qyx[:, 0] * w + qyx[:, 1]
    s = rmap.src[qyx[:, 0], qyx[:, 1]]  # (m, 2) x, y
    return dst_idx, s[:, 1] * w + s[:, 0]
