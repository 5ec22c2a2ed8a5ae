"""LazyDrag explicit correspondence map and initial latent (LazyDrag, arXiv 2509.12203, §3;
anchors.md §1.2; elastic displacement from FastDrag, anchors §7).

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
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .instructions import TokenDrags, rle_decode, rle_encode

CMAP_VERSION = 1


# --------------------------------------------------------------------------------------------
# displacement fields


def drag_displacement(
    points: torch.Tensor,
    handle: torch.Tensor | Sequence[float],
    target: torch.Tensor | Sequence[float],
    circle_center: torch.Tensor | Sequence[float],
    circle_radius: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Elastic (drag-mode) displacement v = lambda * d for points (N, 2) -> (v (N, 2), lambda (N,)).

    lambda = |p - q| / |s - q| with q the intersection of the ray s -> p with circle O; 1 at the
    handle s, 0 on the circle, clamped at 0 outside it (and 0 where the ray misses O).
    """
    p = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
    s = torch.as_tensor(handle, dtype=torch.float64).reshape(2)
    e = torch.as_tensor(target, dtype=torch.float64).reshape(2)
    c = torch.as_tensor(circle_center, dtype=torch.float64).reshape(2)
    R = float(circle_radius)
    diff = p - s  # (N, 2)
    dist = diff.norm(dim=1)  # |p - s|
    at_handle = dist == 0
    u = diff / torch.where(at_handle, torch.ones_like(dist), dist).unsqueeze(1)
    sc = s - c
    b = (u * sc).sum(dim=1)  # u . (s - c)
    disc = b * b - (sc @ sc - R * R)
    t = -b + disc.clamp(min=0).sqrt()  # distance from s to q along u (t > 0 when s inside O)
    ok = (disc >= 0) & (t > 0)
    lam = torch.where(ok, 1.0 - dist / torch.where(ok, t, torch.ones_like(t)), torch.zeros_like(t))
    lam = lam.clamp(min=0.0)
    lam = torch.where(at_handle, torch.ones_like(lam), lam)
    return lam.unsqueeze(1) * (e - s), lam


def move_displacement(
    points: torch.Tensor,
    handle: torch.Tensor | Sequence[float],
    target: torch.Tensor | Sequence[float],
    scale: torch.Tensor | Sequence[float] = (1.0, 1.0),
) -> torch.Tensor:
    """Rigid (move-mode) displacement v = d + (r - 1) * (p - s) for points (N, 2) -> (N, 2)."""
    p = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
    s = torch.as_tensor(handle, dtype=torch.float64).reshape(2)
    e = torch.as_tensor(target, dtype=torch.float64).reshape(2)
    r = torch.as_tensor(scale, dtype=torch.float64).reshape(2)
    return (e - s) + (r - 1.0) * (p - s)


def winner_takes_all_field(
    points: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    modes: Sequence[str] | None = None,
    scales: torch.Tensor | None = None,
    circle_center: torch.Tensor | Sequence[float] | None = None,
    circle_radius: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fuse per-drag displacements by the nearest handle.

    Returns v (N, 2), alpha (N,) = |p - s_{i*}|^-2 (inf at a handle) and i* (N,) long.
    ``modes`` default to all "drag" (which needs the circle), ``scales`` to ones.
    """
    p = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
    s = torch.as_tensor(handles, dtype=torch.float64).reshape(-1, 2)
    e = torch.as_tensor(targets, dtype=torch.float64).reshape(-1, 2)
    n = s.shape[0]
    if n == 0:
        raise ValueError("winner_takes_all_field needs at least one drag")
    modes = ["drag"] * n if modes is None else list(modes)
    r = (
        torch.ones(n, 2, dtype=torch.float64)
        if scales is None
        else torch.as_tensor(scales, dtype=torch.float64).reshape(n, 2)
    )
    d2 = ((p.unsqueeze(1) - s.unsqueeze(0)) ** 2).sum(dim=2)  # (N, n) squared distances
    idx = d2.argmin(dim=1)  # first minimum -> lowest drag index on ties
    d2_best = d2.gather(1, idx.unsqueeze(1)).squeeze(1)
    alpha = torch.where(
        d2_best > 0, 1.0 / torch.where(d2_best > 0, d2_best, torch.ones_like(d2_best)),
        torch.full_like(d2_best, float("inf")),
    )
    v = torch.zeros_like(p)
    for i in range(n):
        sel = idx == i
        if not bool(sel.any()):
            continue
        if modes[i] == "move":
            v[sel] = move_displacement(p[sel], s[i], e[i], r[i])
        elif modes[i] == "drag":
            if circle_center is None or circle_radius is None:
                raise ValueError("drag-mode displacement needs circle_center and circle_radius")
            v[sel] = drag_displacement(p[sel], s[i], e[i], circle_center, circle_radius)[0]
        else:
            raise ValueError(f'drags[{i}]: unknown mode {modes[i]!r}; use "drag" or "move"')
    return v, alpha, idx


# --------------------------------------------------------------------------------------------
# the map


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


def build_correspondence(
    token_drags: TokenDrags,
    grid_hw: tuple[int, int] | None = None,
    region_mask: torch.Tensor | None = None,
    transition_width: int = 1,
    default_region_factor: float = 0.5,
    default_region_min_radius: float = 1.0,
) -> CorrespondenceMap:
    """Build (M, A) and the four regions from token-space drags.

    The editable region P is ``region_mask`` (h, w) if given, else the instructions' mask, else
    :func:`default_editable_region` [guess]. ``transition_width`` [guess] is the width in tokens of
    the R_trans ring.
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

    src_yx = torch.nonzero(P)  # (N, 2) row, col
    if src_yx.shape[0] == 0:
        raise ValueError(
            "the editable region is empty on the token grid; paint a larger region (a token is "
            "16x16 pixels)"
        )
    pts = src_yx.flip(1).to(torch.float64)  # (N, 2) x, y
    needs_circle = any(m == "drag" for m in token_drags.modes)
    center, radius = (
        circumscribed_circle(P, token_drags.handles) if needs_circle else (None, None)
    )
    v, alpha, _ = winner_takes_all_field(
        pts, token_drags.handles, token_drags.targets, token_drags.modes, token_drags.scales,
        center, radius,
    )
    dst_xy = torch.floor(pts + v + 0.5).long()  # round half up
    inside = (
        (dst_xy[:, 0] >= 0) & (dst_xy[:, 0] < w) & (dst_xy[:, 1] >= 0) & (dst_xy[:, 1] < h)
    )
    src_flat = (src_yx[:, 0] * w + src_yx[:, 1])[inside]
    dst_flat = (dst_xy[:, 1] * w + dst_xy[:, 0])[inside]
    a = alpha[inside]

    N = h * w
    best = torch.full((N,), -float("inf"), dtype=torch.float64)
    best = best.scatter_reduce(0, dst_flat, a, reduce="amax", include_self=True)
    cand = torch.where(a == best[dst_flat], src_flat, torch.full_like(src_flat, N))
    chosen = torch.full((N,), N, dtype=torch.long)
    chosen = chosen.scatter_reduce(0, dst_flat, cand, reduce="amin", include_self=True)
    dest = chosen < N  # (N,)

    alpha_of_src = torch.zeros(N, dtype=torch.float64)
    alpha_of_src[src_flat] = a
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
    )


# --------------------------------------------------------------------------------------------
# initial latent


def _patchify(z: torch.Tensor) -> torch.Tensor:
    """(B, C, 2h, 2w) -> (B, C, 2, 2, h*w) token view (row-major tokens)."""
    B, C, H, W = z.shape
    return z.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(
        B, C, 2, 2, (H // 2) * (W // 2)
    )


def _unpatchify(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    B, C = t.shape[:2]
    return t.reshape(B, C, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(B, C, 2 * h, 2 * w)


def compose_initial_latent(
    z_T: torch.Tensor, cmap: CorrespondenceMap, seed: int = 0
) -> torch.Tensor:
    """New initial latent z_hat_T for a latent (B, C, 2h, 2w) (token = 2x2 latent patch).

    Destination tokens take z_T at M(x), inpaint tokens seeded N(0, I) noise (a CPU
    ``torch.Generator`` drawing the full latent's shape, so the noise does not depend on the map),
    the rest keep z_T. Returns a new tensor; z_T is not modified.
    """
    if z_T.dim() != 4:
        raise ValueError(f"latent must be (B, C, H, W), got shape {tuple(z_T.shape)}")
    H, W = z_T.shape[-2:]
    h, w = cmap.grid_hw
    if H % 2 or W % 2 or (H // 2, W // 2) != (h, w):
        raise ValueError(
            f"latent {H}x{W} does not match the correspondence map's token grid {h}x{w} "
            f"(expected latent {2 * h}x{2 * w}); build the map for this image size"
        )
    dev = z_T.device
    tok = _patchify(z_T)
    out = tok.clone()
    src = cmap.source_index().to(dev)
    dst = src >= 0
    out[..., dst] = tok[..., src[dst]]
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(z_T.shape, generator=gen, dtype=torch.float32)
    noise = _patchify(noise.to(device=dev, dtype=z_T.dtype))
    inp = cmap.inpaint.reshape(-1).to(dev)
    out[..., inp] = noise[..., inp]
    return _unpatchify(out, h, w)
