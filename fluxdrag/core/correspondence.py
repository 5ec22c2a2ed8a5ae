"""LazyDrag explicit correspondence map and initial latent (LazyDrag, arXiv 2509.12203, §3;
docs/lazydrag.md; elastic displacement from FastDrag, arXiv 2405.15769).

Everything lives on the integer FLUX token grid (h, w); points are (x, y) = (column, row) in token
coordinates (token centres are integers, see ``instructions.pixel_to_token``).

Per drag i with handle s_i, target e_i, d_i = e_i - s_i, for each editable grid point p in P:

* drag mode (elastic): v_i(p) = lambda_i(p) d_i, lambda_i(p) = |p - q| / |s_i - q| where q is the
  intersection of the ray s_i -> p with the circle O circumscribing P's bounding rectangle
  (1 at the handle, 0 on the circle, clamped at 0 beyond it);
* move mode (rigid + axis scale r): v_i(p) = d_i + (r - 1) * (p - s_i).

Winner takes all: alpha_i(p) = |p - s_i|^-2 (inf at the handle), i*(p) = argmax_i alpha_i
(nearest handle, ties -> lowest drag index); v(p) = v_{i*}(p), alpha(p) = alpha_{i*}(p).
Destinations P* = round(p + v(p)) (round half up); destinations off the grid are dropped; a
destination hit by several sources keeps the source with the largest alpha (ties -> the lowest
row-major source index). M(x) = that source, A(x) = min(1, alpha).
Regions: R_dst = P*, R_inp = P minus P*, R_trans, R_bg = the rest (disjoint, covering the grid).

Initial latent: z_hat(x) = z_T(M(x)) on R_dst, seeded N(0, I) on R_inp, z_T(x) elsewhere.

Documented guesses (each a parameter):

* R_trans [guess]: the ring of tokens within ``transition_width`` (default 1) tokens of
  R_dst u R_inp in the Chebyshev (square) metric, excluding R_dst u R_inp (the paper gives no
  geometric definition).
* Default editable region when no mask is given [guess]: the union of discs around each handle
  with radius max(``default_region_min_radius`` = 1, ``default_region_factor`` = 0.5 * |d_i|)
  tokens, i.e. the content within half a drag length of the handle moves.
* The circle O circumscribes the rectangle covering P's token *cells* (centres +- 0.5), so every
  token of P has lambda > 0 [guess; FastDrag uses the mask's pixel bounding box]; if a handle lies
  outside P the radius is enlarged to reach one token beyond that handle [guess].
Departures from the paper [ours, issue 18; each off at this module's defaults, on in the node;
docs/lazydrag.md]: ``angle`` on move drags (rotation as an instruction); ``backward`` mapping of
move drags (no holes when enlarging or rotating); ``rigid_tolerance`` (drags that fit a rigid
motion become one rotation, :func:`fuse_rigid_drags`); ``gate_reference`` (the gate's unit an
image fraction, :func:`gate_unit_tokens`); ``pixel_mask`` (the same map per latent pixel,
:class:`FineMap`, for the initial latent and the latent locks).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from .correspondence_fields import (  # noqa: F401  (re-exported)
    SWING_PIVOTS,
    _components,
    _rotation,
    behind_pivots,
    drag_displacement,
    fuse_rigid_drags,
    move_displacement,
    move_inverse,
    swing_lone_drags,
    token_to_latent,
    winner_takes_all_field,
)
from .geometry import bilinear_read, kept_area_level, nearest_of_four, outline_on, resamples
from .instructions import TokenDrags, rle_decode, rle_encode

CMAP_VERSION = 1


@dataclass(eq=False)
class CorrespondenceMap:
    """Explicit correspondence on an (h, w) token grid.

    matching: (h, w, 2) long, (row, col) of the source token M(x) for x in R_dst, -1 elsewhere
              (an index, hence row first);
    weight:   (h, w) float, A(x) = min(1, alpha) on R_dst, 0 elsewhere;
    destination, inpaint, transition, background: (h, w) bool, disjoint, covering the grid;
    editable: (h, w) bool, the editable region P; drags: the token-space drags.
    """

    matching: torch.Tensor
    weight: torch.Tensor
    destination: torch.Tensor
    inpaint: torch.Tensor
    transition: torch.Tensor
    background: torch.Tensor
    editable: torch.Tensor
    drags: TokenDrags
    grid_hw: tuple[int, int]
    transition_width: int = 1
    fine: FineMap | None = None   # [ours] the latent-pixel map (build_correspondence pixel_mask)
    gate_unit: float = 1.0        # tokens per gate unit (gate_unit_tokens)

    def source_index(self) -> torch.Tensor:
        """Flat row-major source index M(x) per destination token, (h*w,) long, -1 elsewhere."""
        w = self.grid_hw[1]
        m = self.matching.reshape(-1, 2)
        return torch.where(self.destination.reshape(-1), m[:, 0] * w + m[:, 1], -1)

    def id_source_index(self) -> torch.Tensor:
        """Flat M~(x): M(x) on R_dst, x on R_trans, -1 elsewhere (for identity preservation)."""
        h, w = self.grid_hw
        idx = self.source_index()
        own = torch.arange(h * w)
        return torch.where(self.transition.reshape(-1), own, idx)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly record (masks as RLE, matching as [dst_row, dst_col, src_row, src_col])."""
        dst = torch.nonzero(self.destination)  # (k, 2) row, col
        src = self.matching[dst[:, 0], dst[:, 1]]
        return {
            "version": CMAP_VERSION,
            "grid_hw": [int(self.grid_hw[0]), int(self.grid_hw[1])],
            "transition_width": int(self.transition_width),
            "matching": torch.cat([dst, src], dim=1).tolist(),
            "weight": self.weight[dst[:, 0], dst[:, 1]].tolist(),
            "editable": rle_encode(self.editable),
            "inpaint": rle_encode(self.inpaint),
            "transition": rle_encode(self.transition),
            "drags": self.drags.to_dict(),
            "gate_unit": float(self.gate_unit),
            "fine": None if self.fine is None else self.fine.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CorrespondenceMap:
        if d.get("version") != CMAP_VERSION:
            raise ValueError(
                f"correspondence map version {d.get('version')!r} is not supported "
                f"(expected {CMAP_VERSION}); rebuild the map"
            )
        h, w = int(d["grid_hw"][0]), int(d["grid_hw"][1])
        matching = torch.full((h, w, 2), -1, dtype=torch.long)
        weight = torch.zeros(h, w, dtype=torch.float64)
        destination = torch.zeros(h, w, dtype=torch.bool)
        rows = torch.tensor(d["matching"], dtype=torch.long).reshape(-1, 4)
        if rows.numel():
            matching[rows[:, 0], rows[:, 1]] = rows[:, 2:]
            weight[rows[:, 0], rows[:, 1]] = torch.tensor(d["weight"], dtype=torch.float64)
            destination[rows[:, 0], rows[:, 1]] = True
        inpaint = rle_decode(d["inpaint"])
        transition = rle_decode(d["transition"])
        return cls(
            matching=matching,
            weight=weight,
            destination=destination,
            inpaint=inpaint,
            transition=transition,
            background=~(destination | inpaint | transition),
            editable=rle_decode(d["editable"]),
            drags=TokenDrags.from_dict(d["drags"]),
            grid_hw=(h, w),
            transition_width=int(d.get("transition_width", 1)),
            fine=None if d.get("fine") is None else FineMap.from_dict(d["fine"]),
            gate_unit=float(d.get("gate_unit", 1.0)),
        )


def default_editable_region(
    token_drags: TokenDrags,
    grid_hw: tuple[int, int],
    factor: float = 0.5,
    min_radius: float = 1.0,
) -> torch.Tensor:
    """[guess] Union of discs around the handles, radius max(min_radius, factor * |d_i|) tokens."""
    h, w = grid_hw
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    out = torch.zeros(h, w, dtype=torch.bool)
    for s, e in zip(token_drags.handles.tolist(), token_drags.targets.tolist(), strict=True):
        rad = max(min_radius, factor * ((e[0] - s[0]) ** 2 + (e[1] - s[1]) ** 2) ** 0.5)
        out |= (xs - s[0]) ** 2 + (ys - s[1]) ** 2 <= rad * rad + 1e-9
    return out


def circumscribed_circle(
    region: torch.Tensor, handles: torch.Tensor | None = None
) -> tuple[torch.Tensor, float]:
    """Circle O around the rectangle covering the region's token cells -> (centre (x, y), radius).

    [guess] When a handle lies outside, the radius grows to one token beyond that handle.
    """
    yx = torch.nonzero(region).to(torch.float64)
    if yx.numel() == 0:
        raise ValueError("the editable region is empty; paint a region that covers the handles")
    x0, x1 = yx[:, 1].min() - 0.5, yx[:, 1].max() + 0.5
    y0, y1 = yx[:, 0].min() - 0.5, yx[:, 0].max() + 0.5
    c = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2])
    R = float(0.5 * torch.hypot(x1 - x0, y1 - y0))
    if handles is not None and handles.numel():
        far = float((handles.to(torch.float64) - c).norm(dim=1).max())
        if far >= R:
            R = far + 1.0
    return c, R


def gate_unit_tokens(image_hw: tuple[int, int], gate_reference: int = 0) -> float:
    """Length, in tokens, that counts as distance 1 in the gate alpha = |p - s|^-2.

    ``gate_reference`` 0: one token (the paper read literally; its reach in image terms shrinks
    as the resolution grows: at 1024² a token three away gets 0.11). ``gate_reference`` R > 0
    [ours]: 1/32 of the image's shorter side scaled as if that side were R pixels, i.e. the unit
    is ``min(H, W) / R`` tokens — one token at R px (512, DragBench's size, is the paper's own
    setting), two tokens at 2R: the same image fraction at every resolution.
    """
    if gate_reference <= 0:
        return 1.0
    return min(int(image_hw[0]), int(image_hw[1])) / float(gate_reference)


def _match(
    P: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    *,
    modes: Sequence[str],
    scales: torch.Tensor,
    angles: torch.Tensor,
    circle: tuple | None,
    gate_unit: float,
    backward: bool,
    outline: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Destination -> (source flat index or N, alpha of each source, the drag that moves each
    destination's source or -1) on one grid (h, w) for region P (``outline``: a latent-pixel grid,
    whose turned shapes are read smoothed, ``geometry.OUTLINE_SIGMA``).

    Forward (the paper): each p in P goes to round(p + v(p)); a destination hit by several keeps
    the largest alpha (ties: lowest source index). ``backward`` [ours]: for move drags every grid
    point x looks up its source round(T_i^-1(x)) and takes it when that source is in P and won by
    drag i — no holes when a move enlarges or rotates (forward rounding leaves gaps there);
    elastic drags stay forward.
    """
    h, w = P.shape
    N = h * w
    src_yx = torch.nonzero(P)
    pts = src_yx.flip(1).to(torch.float64)
    cc, rr = (None, None) if circle is None else circle
    v, alpha, win = winner_takes_all_field(pts, handles, targets, modes=modes, scales=scales,
                                           circle_center=cc, circle_radius=rr, angles=angles,
                                           gate_unit=gate_unit)
    src_flat_all = src_yx[:, 0] * w + src_yx[:, 1]
    fwd = torch.ones(pts.shape[0], dtype=torch.bool)
    if backward:
        fwd = torch.tensor([modes[int(i)] != "move" for i in win], dtype=torch.bool)
    dst_xy = torch.floor(pts + v + 0.5).long()  # round half up
    inside = (dst_xy[:, 0] >= 0) & (dst_xy[:, 0] < w) & (dst_xy[:, 1] >= 0) & (dst_xy[:, 1] < h)
    sel = inside & fwd
    src_l = [src_flat_all[sel]]
    dst_l = [(dst_xy[:, 1] * w + dst_xy[:, 0])[sel]]
    a_l = [alpha[sel]]
    win_grid = torch.full((N + 1,), -1, dtype=torch.long)     # N: no source
    win_grid[src_flat_all] = torch.as_tensor(win, dtype=torch.long)
    if backward:
        alpha_grid = torch.full((N,), -1.0, dtype=torch.float64)
        alpha_grid[src_flat_all] = alpha
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).to(torch.float64)
        for i, m in enumerate(modes):
            if m != "move":
                continue
            pre = move_inverse(grid, handles[i], targets[i], scales[i], float(angles[i]))
            # membership: P read bilinearly at the exact preimage, >= 1/2 (a rounded preimage thins
            # rings and bars under a stretch), or the kept-area level of a thin shape; with ``outline``
            # (the fine map) a turned or scaled outline at 1/2 is read smoothed (outline_on). The
            # source is the nearest P cell of the four around the preimage
            soft = bilinear_read(P, pre[:, 0], pre[:, 1])
            qy, qx, best_d = nearest_of_four(P, pre[:, 0], pre[:, 1])
            qf = qy * w + qx
            cand = torch.isfinite(best_d) & (win_grid[qf] == i)
            want = int(((torch.as_tensor(win) == i) & inside).sum()) * float(scales[i][0]) * float(scales[i][1])
            level = kept_area_level(soft[cand], want)
            turned = outline and resamples(angles[i], scales[i])
            ok = cand & outline_on(P, pre[:, 0], pre[:, 1], level, turned, among=cand, read=soft)
            src_l.append(qf[ok])
            dst_l.append(torch.arange(N)[ok])
            a_l.append(alpha_grid[qf[ok]])
    src_flat, dst_flat, a = torch.cat(src_l), torch.cat(dst_l), torch.cat(a_l)
    best = torch.full((N,), -float("inf"), dtype=torch.float64)
    best = best.scatter_reduce(0, dst_flat, a, reduce="amax", include_self=True)
    cand = torch.where(a == best[dst_flat], src_flat, torch.full_like(src_flat, N))
    chosen = torch.full((N,), N, dtype=torch.long)
    chosen = chosen.scatter_reduce(0, dst_flat, cand, reduce="amin", include_self=True)
    alpha_of_src = torch.zeros(N, dtype=torch.float64)
    alpha_of_src[src_flat] = a
    return chosen, alpha_of_src, win_grid[chosen]


@dataclass(eq=False)
class FineMap:
    """[ours] The same correspondence on the latent-pixel grid (H, W) = 2x the token grid.

    source: (H*W,) long, flat source latent pixel of each destination pixel, -1 elsewhere;
    editable: (H, W) the editable region P at latent resolution (a latent cell is in when any of
    its 8x8 image pixels is); destination: (H, W). Derived: ``vacated`` = P minus destinations,
    ``free`` = P or destinations (what the latent locks leave to the model).
    """

    source: torch.Tensor
    editable: torch.Tensor
    destination: torch.Tensor
    #: [ours] where the hole fill is computed (the editable region and the unpainted objects in
    #: front that touch it, ``unpainted_objects``): None = the editable region
    fill_region: torch.Tensor | None = None
    #: (H*W,) long: the drag (index into the map's ``drags``, after fusing) that moves each
    #: destination pixel, -1 elsewhere; None = unknown. Read while the map is built (per-drag
    #: ``depth``, ``cast_shadow``); not serialised.
    drag: torch.Tensor | None = None
    #: [ours] (H*W,) long: the painted shadow pixel whose darkening each pixel receives after the
    #: edit (``cast_shadow.carried_shadow``), -1 for none; None = no shadow carried
    shadow: torch.Tensor | None = None
    #: [ours] (H, W) bool: the destination pixels of a swing (``swing_lone_drags``; its part and the
    #: paint it keeps in place): a part bent about its joint with the rest of its object, whose joint
    #: the model draws (the Patch's ``hole_rim`` holds no rim around them); None = none
    joined: torch.Tensor | None = None
    #: [ours] (H, W) bool: pixels left free of the background lock where the moved content's hidden
    #: part may lie after the edit (``correspondence_latent.hidden_destination``); None = none
    released: torch.Tensor | None = None

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.editable.shape[0]), int(self.editable.shape[1])

    @property
    def hole_region(self) -> torch.Tensor:
        """(H, W) bool: the region the hole fill covers (``fill_region``, else the editable region)."""
        return self.editable if self.fill_region is None else self.fill_region

    @property
    def vacated(self) -> torch.Tensor:
        return self.editable & ~self.destination

    @property
    def free(self) -> torch.Tensor:
        return self.editable | self.destination

    def staying(self, stay: torch.Tensor) -> FineMap:
        """This map with the pixels of ``stay`` ((H, W) bool) that no content lands on their own
        sources (they stay where they are)."""
        src = self.source.clone()
        k = stay.reshape(-1).to(torch.bool).cpu() & (src < 0)
        src[k] = torch.nonzero(k).flatten()
        return replace(self, source=src, destination=(src >= 0).reshape(self.hw))

    def to_dict(self) -> dict[str, Any]:
        dst = torch.nonzero(self.source >= 0).flatten()
        out = {"editable": rle_encode(self.editable),
               "matching": torch.stack([dst, self.source[dst]], 1).tolist()}
        if self.fill_region is not None:
            out["fill_region"] = rle_encode(self.fill_region)
        if self.shadow is not None:
            at = torch.nonzero(self.shadow >= 0).flatten()
            out["shadow"] = torch.stack([at, self.shadow[at]], 1).tolist()
        if self.joined is not None:
            out["joined"] = rle_encode(self.joined)
        if self.released is not None:
            out["released"] = rle_encode(self.released)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FineMap:
        editable = rle_decode(d["editable"])
        H, W = editable.shape
        source = torch.full((H * W,), -1, dtype=torch.long)
        rows = torch.tensor(d["matching"], dtype=torch.long).reshape(-1, 2)
        if rows.numel():
            source[rows[:, 0]] = rows[:, 1]
        fill = d.get("fill_region")
        shadow = None
        if d.get("shadow") is not None:
            shadow = torch.full((H * W,), -1, dtype=torch.long)
            rows = torch.tensor(d["shadow"], dtype=torch.long).reshape(-1, 2)
            if rows.numel():
                shadow[rows[:, 0]] = rows[:, 1]
        joined, released = d.get("joined"), d.get("released")
        return cls(source, editable, (source >= 0).reshape(H, W), None if fill is None else rle_decode(fill),
                   shadow=shadow, joined=None if joined is None else rle_decode(joined),
                   released=None if released is None else rle_decode(released))


def build_fine_map(token_drags: TokenDrags, editable_px: torch.Tensor, circle: tuple | None,
                   gate_unit: float = 1.0, backward: bool = True,
                   content_px: torch.Tensor | None = None) -> FineMap:
    """The map on the latent-pixel grid for a latent-resolution editable mask (H, W).

    ``content_px`` [ours]: the part of the mask that moves (``content_pixels``); the rest of the
    mask is only vacated. None: all of it moves.

    Latent-pixel coordinates are 2·token + 0.5 (a token is 2x2 latent pixels); lengths double,
    the gate unit too, so each pixel's winner and weight match its token's.
    """
    P = editable_px.to(torch.bool).cpu()
    Pc = P if content_px is None else content_px.to(torch.bool).cpu() & P
    H, W = P.shape
    circ = None if circle is None else (token_to_latent(circle[0]), 2.0 * circle[1])
    chosen, _, drag = _match(Pc, token_to_latent(token_drags.handles), token_to_latent(token_drags.targets),
                       modes=token_drags.modes, scales=token_drags.scales, angles=token_drags.angles,
                       circle=circ, gate_unit=2.0 * gate_unit, backward=backward, outline=True)
    N = H * W
    dest = chosen < N
    source = torch.where(dest, chosen, -1)
    return FineMap(source, P, dest.reshape(H, W), drag=torch.where(dest, drag, -1))


def latent_region(pixel_mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """(H·8, W·8) image-pixel mask -> (H, W) latent cells, a cell is in when any pixel is."""
    H, W = int(latent_hw[0]), int(latent_hw[1])
    m = pixel_mask.to(torch.bool)
    if tuple(m.shape) != (8 * H, 8 * W):
        raise ValueError(f"mask is {tuple(m.shape)} pixels but the latent needs {(8 * H, 8 * W)}")
    return m.reshape(H, 8, W, 8).any(3).any(1)


def build_correspondence(
    token_drags: TokenDrags,
    grid_hw: tuple[int, int] | None = None,
    region_mask: torch.Tensor | None = None,
    transition_width: int = 1,
    default_region_factor: float = 0.5,
    default_region_min_radius: float = 1.0,
    gate_reference: int = 0,
    backward: bool = False,
    rigid_tolerance: float = 0.0,
    pixel_mask: torch.Tensor | None = None,
    swing: bool = False,
    content_mask: torch.Tensor | None = None,
    swing_pivot: str = "far_end",
    swing_base: str = "swing",
) -> CorrespondenceMap:
    """Build (M, A) and the four regions from token-space drags.

    The editable region P is ``region_mask`` (h, w) if given, else the instructions' mask, else
    :func:`default_editable_region` [guess]. ``transition_width`` [guess] is the width in tokens of
    the R_trans ring. Departures from the paper, each off at its default here (the node turns
    them on): ``gate_reference`` (:func:`gate_unit_tokens`), ``backward`` (see :func:`_match`),
    ``rigid_tolerance`` (:func:`fuse_rigid_drags`), ``swing`` (:func:`swing_lone_drags`, only on
    a painted region: ``region_mask`` or the instructions' mask; ``swing_pivot`` its pivot rule;
    ``swing_base`` "keep": the moving pixels beyond the pivot, :func:`behind_pivots`, stay where they
    are: they are not carried, and stay in the fine map as their own sources) and
    ``pixel_mask`` — an editable mask at latent
    resolution (2h, 2w) — which adds the latent-pixel map (:class:`FineMap`) used to compose the
    initial latent and to place the latent locks at pixel precision; ``content_mask`` (same
    grid, with ``pixel_mask``) is the part of it that moves (:func:`build_fine_map`).
    """
    h, w = token_drags.grid_hw if grid_hw is None else (int(grid_hw[0]), int(grid_hw[1]))
    if (h, w) != tuple(token_drags.grid_hw):
        raise ValueError(
            f"grid {h}x{w} does not match the drags' token grid {token_drags.grid_hw}; convert the "
            "instructions for this image with to_token_space"
        )
    if len(token_drags) == 0:
        raise ValueError(
            "LazyDrag needs at least one drag (handle -> target); region-only instructions are "
            "for DragFlow"
        )
    if transition_width < 0:
        raise ValueError(f"transition_width must be >= 0, got {transition_width}")
    if region_mask is not None:
        P = torch.as_tensor(region_mask).to(torch.bool).cpu()
    elif token_drags.mask is not None:
        P = token_drags.mask.to(torch.bool).cpu()
    else:
        P = default_editable_region(
            token_drags, (h, w), default_region_factor, default_region_min_radius
        )
    if tuple(P.shape) != (h, w):
        raise ValueError(f"region mask is {tuple(P.shape)} but the token grid is {(h, w)}")
    if not bool(P.any()):
        raise ValueError(
            "the editable region is empty on the token grid; paint a larger region (a token is "
            "16x16 pixels)"
        )
    px_region = None if pixel_mask is None else torch.as_tensor(pixel_mask).to(torch.bool).cpu()
    token_drags = fuse_rigid_drags(token_drags, P, rigid_tolerance, pixel_region=px_region)   # a wrong shape:
    # read on the token grid here, reported below where the pixel map is built
    painted = region_mask is not None or token_drags.mask is not None
    kept, swung = None, []
    if swing and painted:
        before = token_drags
        token_drags = swing_lone_drags(token_drags, P, pixel_mask if content_mask is None else content_mask,
                                       pivot=swing_pivot)
        swung = [i for i, (a, b) in enumerate(zip(before.modes, token_drags.modes)) if a != b]
        if swing_base == "keep" and pixel_mask is not None:
            moving = torch.as_tensor(pixel_mask if content_mask is None else content_mask).to(torch.bool).cpu()
            kept = behind_pivots(before, token_drags, moving)
            content_mask = moving & ~kept
    gate_unit = gate_unit_tokens(token_drags.image_hw, gate_reference)
    needs_circle = any(m == "drag" for m in token_drags.modes)
    circle = circumscribed_circle(P, token_drags.handles) if needs_circle else None
    chosen, alpha_of_src, _ = _match(P, token_drags.handles, token_drags.targets, modes=token_drags.modes,
                                  scales=token_drags.scales, angles=token_drags.angles, circle=circle,
                                  gate_unit=gate_unit, backward=backward)
    N = h * w
    dest = chosen < N  # (N,)
    weight = torch.zeros(N, dtype=torch.float64)
    weight[dest] = alpha_of_src[chosen[dest]].clamp(max=1.0)
    matching = torch.full((N, 2), -1, dtype=torch.long)
    matching[dest, 0] = chosen[dest] // w
    matching[dest, 1] = chosen[dest] % w

    destination = dest.reshape(h, w)
    inpaint = P & ~destination
    moved = destination | inpaint
    if transition_width > 0:
        k = 2 * transition_width + 1
        grown = F.max_pool2d(
            moved.to(torch.float32)[None, None], kernel_size=k, stride=1, padding=transition_width
        )[0, 0] > 0
        transition = grown & ~moved
    else:
        transition = torch.zeros_like(moved)
    background = ~(moved | transition)
    fine = None
    if pixel_mask is not None:
        pm = torch.as_tensor(pixel_mask).to(torch.bool).cpu()
        if tuple(pm.shape) != (2 * h, 2 * w):
            raise ValueError(f"pixel_mask is {tuple(pm.shape)} but the latent grid is {(2 * h, 2 * w)}")
        fine = build_fine_map(token_drags, pm, circle, gate_unit, backward=backward, content_px=content_mask)
        if kept is not None and bool(kept.any()):   # [ours] they stay: their own sources, unless content lands there
            fine = fine.staying(kept)
        if swung and fine.drag is not None:   # the swung parts and the paint they keep in place
            joined = torch.isin(fine.drag, torch.tensor(swung)) | (fine.source >= 0) & (fine.drag < 0)
            fine.joined = joined.reshape(fine.hw)
    return CorrespondenceMap(
        matching=matching.reshape(h, w, 2),
        weight=weight.reshape(h, w),
        destination=destination,
        inpaint=inpaint,
        transition=transition,
        background=background,
        editable=P,
        drags=token_drags,
        grid_hw=(h, w),
        transition_width=int(transition_width),
        fine=fine,
        gate_unit=gate_unit,
    )


from .correspondence_content import CONTENT_GROWTHS, CONTENT_PIECES, CONTENT_REFERENCES, content_pixels  # noqa: E402,F401,E501  (re-exported)
from .correspondence_latent import (  # noqa: E402,F401  (re-exported; that module imports this one)
    FrontObjects,
    _patchify,
    _unpatchify,
    compose_initial_latent,
    continued_fill,
    continued_texture,
    harmonic_fill,
    hidden_destination,
    inpaint_noise,
    texture_fill,
    texture_offset,
    texture_offsets,
    unpainted_objects,
)
