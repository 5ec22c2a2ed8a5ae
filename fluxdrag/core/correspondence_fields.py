"""Displacement fields of the LazyDrag correspondence (split from ``correspondence.py``; every
name is re-exported there): elastic drag and rigid move displacements, the winner-takes-all fusion,
and the fusing of drags that describe one rigid motion. Anchors (``"mode": "anchor"``, a handle on
its target) have zero displacement: the content nearest to them keeps its place."""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from .instructions import TokenDrags


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


def _rotation(angle_deg: float) -> torch.Tensor:
    """2x2 rotation by ``angle_deg`` degrees, clockwise on screen ((x, y) with y down)."""
    a = math.radians(float(angle_deg))
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def move_displacement(
    points: torch.Tensor,
    handle: torch.Tensor | Sequence[float],
    target: torch.Tensor | Sequence[float],
    scale: torch.Tensor | Sequence[float] = (1.0, 1.0),
    angle: float = 0.0,
) -> torch.Tensor:
    """Rigid (move-mode) displacement for points (N, 2) -> (N, 2).

    v = e + r * R(angle) (p - s) - p; with angle 0 this is the paper's d + (r - 1) * (p - s).
    ``angle`` [ours: rotation as an instruction] is in degrees, clockwise on screen.
    """
    p = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
    s = torch.as_tensor(handle, dtype=torch.float64).reshape(2)
    e = torch.as_tensor(target, dtype=torch.float64).reshape(2)
    r = torch.as_tensor(scale, dtype=torch.float64).reshape(2)
    if not angle:
        return (e - s) + (r - 1.0) * (p - s)
    return e + r * ((p - s) @ _rotation(angle).T) - p


def move_inverse(
    points: torch.Tensor,
    handle: torch.Tensor | Sequence[float],
    target: torch.Tensor | Sequence[float],
    scale: torch.Tensor | Sequence[float] = (1.0, 1.0),
    angle: float = 0.0,
) -> torch.Tensor:
    """Source positions (N, 2) of destinations x under a move drag: s + R(-angle) ((x - e) / r)."""
    x = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
    s = torch.as_tensor(handle, dtype=torch.float64).reshape(2)
    e = torch.as_tensor(target, dtype=torch.float64).reshape(2)
    r = torch.as_tensor(scale, dtype=torch.float64).reshape(2)
    return s + ((x - e) / r) @ _rotation(-angle).T


def winner_takes_all_field(
    points: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    *,
    modes: Sequence[str] | None = None,
    scales: torch.Tensor | None = None,
    circle_center: torch.Tensor | Sequence[float] | None = None,
    circle_radius: float | None = None,
    angles: torch.Tensor | Sequence[float] | None = None,
    gate_unit: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fuse per-drag displacements by the nearest handle.

    Returns v (N, 2), alpha (N,) = (gate_unit / |p - s_{i*}|)^2 (inf at a handle) and i* (N,)
    long. ``gate_unit`` is the distance, in this grid's cells, that counts as 1 in alpha (the
    paper: 1 token). ``modes`` default to all "drag" (which needs the circle), ``scales`` to
    ones, ``angles`` (degrees, move mode) to zeros.
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
    ang = [0.0] * n if angles is None else [float(a) for a in torch.as_tensor(angles).reshape(n)]
    d2 = ((p.unsqueeze(1) - s.unsqueeze(0)) ** 2).sum(dim=2)  # (N, n) squared distances
    idx = d2.argmin(dim=1)  # first minimum -> lowest drag index on ties
    d2_best = d2.gather(1, idx.unsqueeze(1)).squeeze(1)
    alpha = torch.where(
        d2_best > 0,
        float(gate_unit) ** 2 / torch.where(d2_best > 0, d2_best, torch.ones_like(d2_best)),
        torch.full_like(d2_best, float("inf")),
    )
    v = torch.zeros_like(p)
    for i in range(n):
        sel = idx == i
        if not bool(sel.any()):
            continue
        if modes[i] == "anchor":
            v[sel] = 0.0  # a fixed point: the content nearest to it stays where it is
        elif modes[i] == "move":
            v[sel] = move_displacement(p[sel], s[i], e[i], r[i], ang[i])
        elif modes[i] == "drag":
            if circle_center is None or circle_radius is None:
                raise ValueError("drag-mode displacement needs circle_center and circle_radius")
            v[sel] = drag_displacement(p[sel], s[i], e[i], circle_center, circle_radius)[0]
        else:
            raise ValueError(f'drags[{i}]: unknown mode {modes[i]!r}; use "drag", "move" or '
                             '"anchor"')
    return v, alpha, idx


def _components(mask: torch.Tensor) -> torch.Tensor:
    """8-connected component labels (h, w) long, -1 off the mask (small grids: token level)."""
    h, w = mask.shape
    lab = torch.full((h, w), -1, dtype=torch.long)
    m = mask.tolist()
    lb = lab.tolist()
    n = 0
    for r in range(h):
        for c in range(w):
            if m[r][c] and lb[r][c] < 0:
                stack = [(r, c)]
                lb[r][c] = n
                while stack:
                    y, x = stack.pop()
                    for yy in (y - 1, y, y + 1):
                        for xx in (x - 1, x, x + 1):
                            if 0 <= yy < h and 0 <= xx < w and m[yy][xx] and lb[yy][xx] < 0:
                                lb[yy][xx] = n
                                stack.append((yy, xx))
                n += 1
    return torch.tensor(lb, dtype=torch.long).reshape(h, w)


def token_to_latent(t):
    """Token coordinates -> latent-pixel coordinates of the pixel map: 2·t + 0.5 (a token is 2x2
    latent pixels, centres at integer coordinates on both grids)."""
    return 2.0 * t + 0.5


def fuse_rigid_drags(token_drags: TokenDrags, region: torch.Tensor, tolerance: float = 0.0,
                     pixel_region: torch.Tensor | None = None) -> TokenDrags:
    """[ours, not in the paper] Drags on one connected part of the editable region that describe
    a rigid motion become one ``move`` drag with an angle.

    The drags are grouped by the 8-connected component of ``region`` (token grid) nearest to
    each handle. For a group of two or more, the least-squares rigid motion (rotation about the
    handles' centroid + translation; 2-D Kabsch) is fitted; when its RMS residual is at most
    ``tolerance`` times the mean drag length, the group is replaced by one move drag from the
    handles' centroid to the targets' centroid with the fitted angle (two handles dragged round
    their midpoint = a rotation about that midpoint). ``tolerance`` 0: never (the paper — each
    drag moves its Voronoi cell elastically, which tears a rotated object apart). The fused drag
    keeps the group's depth intent (:func:`group_depth`). ``pixel_region`` [ours]: the same region
    on the latent-pixel grid (2h, 2w; another shape is not read); the parts are then read there, where two objects painted
    apart stay apart although their tokens touch (two objects each dragged by its own move, whose
    drags happen to fit one rotation, were turned together as one body).
    """
    n = len(token_drags)
    if tolerance <= 0 or n < 2:
        return token_drags
    fine = pixel_region is not None and tuple(pixel_region.shape[-2:]) == (2 * region.shape[0], 2 * region.shape[1])
    lab = _components((pixel_region if fine else region).to(torch.bool).cpu())
    yx = torch.nonzero(lab >= 0)
    if yx.shape[0] == 0:
        return token_drags
    pts = yx.flip(1).to(torch.float64)
    groups: dict[int, list[int]] = {}
    for i, h in enumerate(token_drags.handles):
        if token_drags.modes[i] == "anchor":
            continue  # a fixed point is not part of a rigid motion
        if fine:
            h = token_to_latent(h)
        j = int(((pts - h) ** 2).sum(1).argmin())
        groups.setdefault(int(lab[yx[j, 0], yx[j, 1]]), []).append(i)
    keep = [True] * n
    new_h, new_t, new_m, new_s, new_a, new_d = [], [], [], [], [], []
    for idx in groups.values():
        if len(idx) < 2:
            continue
        hs, ts = token_drags.handles[idx], token_drags.targets[idx]
        if any(token_drags.modes[i] == "move" and (token_drags.scales[i] != 1).any() for i in idx):
            continue  # a scaled move is not rigid
        hc, tc = hs.mean(0), ts.mean(0)
        a, b = hs - hc, ts - tc
        theta = math.atan2(float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()), float((a * b).sum()))
        fit = tc + a @ _rotation(math.degrees(theta)).T
        resid = float(((fit - ts) ** 2).sum(1).mean().sqrt())
        length = float((ts - hs).norm(dim=1).mean())
        if resid > tolerance * max(length, 1e-9):
            continue
        for i in idx:
            keep[i] = False
        new_h.append(hc)
        new_t.append(tc)
        new_m.append("move")
        new_s.append(torch.ones(2, dtype=torch.float64))
        new_a.append(math.degrees(theta))
        new_d.append(group_depth([token_drags.depths[i] for i in idx]))
    if not new_h:
        return token_drags
    k = [i for i in range(n) if keep[i]]
    return TokenDrags(
        handles=torch.cat([token_drags.handles[k], torch.stack(new_h)]),
        targets=torch.cat([token_drags.targets[k], torch.stack(new_t)]),
        modes=[token_drags.modes[i] for i in k] + new_m,
        scales=torch.cat([token_drags.scales[k], torch.stack(new_s)]),
        mask=token_drags.mask,
        grid_hw=token_drags.grid_hw,
        image_hw=token_drags.image_hw,
        angles=torch.cat([token_drags.angles[k], torch.tensor(new_a, dtype=torch.float64)]),
        depths=[token_drags.depths[i] for i in k] + new_d,
    )


def group_depth(depths: Sequence[str]) -> str:
    """[ours] The depth intent of drags fused into one rigid motion: the one stated value of the
    group ("auto" drags state none); "auto" (the method's setting decides) when the group states
    none or states both "front" and "behind", with a warning naming the conflict."""
    stated = {d for d in depths if d != "auto"}
    if len(stated) == 1:
        return stated.pop()
    if len(stated) > 1:
        warnings.warn(f"drags moving one part rigidly state different depths ({', '.join(sorted(stated))}); "
                      "the method's depth setting decides for that part. Give them one depth",
                      stacklevel=3)
    return "auto"


#: the part's far end: its points at least this share of the farthest point's distance from the
#: handle (their centroid is the far end's centre, e.g. the joint of a limb's free segment) [ours]
FAR_END = 0.8
#: the part's shaft: its points within this share of the farthest point's distance from the handle
#: (a limb's free segment without the joint's end, where paint over the base's start lies) [ours;
#: 0.7 of 0.6 / 0.7 / 0.8 / 1.0 on tuning seeds 9201–9203, 24 bends: pivot error against the true
#: joint median 0.19 tokens, at most 0.49, where the far end's centroid has 0.22 and 1.81]
SHAFT = 0.7
#: the shaft's axis must cross the bisector at least this steeply (sine of the angle; a swing of
#: under ~20°), and the shaft must be elongated (variance ratio of its principal axes) [ours]
MIN_CROSSING, MIN_ELONGATION = 0.17, 2.0
SWING_PIVOTS = ("shaft", "far_end")


def _shaft_pivot(own: torch.Tensor, dist: torch.Tensor, mid: torch.Tensor, b: torch.Tensor):
    """Where the principal axis of the part's shaft (its points within ``SHAFT`` × the farthest
    distance ``dist`` from the handle) crosses the bisector ``mid`` + u·``b``; None when the shaft
    is not elongated or crosses it too flatly."""
    shaft = own[dist <= SHAFT * dist.max()]
    if shaft.shape[0] < 3:
        return None
    m = shaft.mean(0)
    ev, vec = torch.linalg.eigh((shaft - m).T @ (shaft - m))
    if float(ev[1]) < MIN_ELONGATION * max(float(ev[0]), 1e-12):
        return None
    axis = vec[:, 1]
    A = torch.stack((axis, -b), 1)
    if abs(float(torch.linalg.det(A))) < MIN_CROSSING:
        return None
    u = torch.linalg.solve(A, mid - m)[1]
    return mid + u * b


def behind_pivots(before: TokenDrags, after: TokenDrags, pixel_region: torch.Tensor) -> torch.Tensor:
    """[ours] (2h, 2w) bool: the pixels of ``pixel_region`` (latent resolution) that a swing of
    :func:`swing_lone_drags` (``before`` → ``after``) would carry although they lie beyond its
    pivot — on the far side of the line through the pivot across the pivot → handle direction, in
    the swung part (the connected part of ``pixel_region`` nearest to the handle). For a limb that
    is paint over the start of the part that stays (its base, under a painted shadow): it is kept
    where it is, not swung."""
    mask = pixel_region.to(torch.bool).cpu()
    out = torch.zeros_like(mask)
    lab = _components(mask)
    yx = torch.nonzero(lab >= 0)
    if yx.shape[0] == 0:
        return out
    pts = yx.flip(1).to(torch.float64) / 2 - 0.25     # latent-pixel centres in token units
    part = lab[yx[:, 0], yx[:, 1]]
    for i in range(len(before)):
        if before.modes[i] != "drag" or after.modes[i] != "move":
            continue
        h, c = before.handles[i], after.handles[i]
        comp = int(part[int(((pts - h) ** 2).sum(1).argmin())])
        sel = (part == comp) & (((pts - c) @ (h - c)) < 0)
        out[yx[sel, 0], yx[sel, 1]] = True
    return out


def swing_lone_drags(token_drags: TokenDrags, region: torch.Tensor,
                     pixel_region: torch.Tensor | None = None, pivot: str = "far_end") -> TokenDrags:
    """[ours, not in the paper] A lone elastic drag on a part of a painted mask swings the part
    about its far end: the drag becomes a rotation in place (a ``move`` drag from the pivot to
    itself with an angle), rigid, so the part bends about its joint instead of being smeared.

    A *lone* drag is the only non-anchor drag whose nearest connected part of the editable region
    is that part (drags grouped as in :func:`fuse_rigid_drags`; ``pixel_region``, the mask at
    latent resolution (2h, 2w), is used when given, else ``region`` on the token grid). The pivot
    is the point of the perpendicular bisector of handle → target nearest to the part's point
    farthest from the handle: the rotation about it carries the handle exactly onto the target
    (no scaling), and it pivots as near the far end as a rigid swing allows. ``pivot`` "shaft"
    [ours]: where the principal axis of the part's shaft (its points within ``SHAFT`` of the
    farthest distance from the handle) crosses the bisector — a limb's free segment points at its
    joint, and the paint around the joint (its shadow over the base's start) pulls the far end's
    centroid off it; the far end's rule where the shaft is not elongated or meets the bisector too
    flatly. The paper has no such
    rule (each drag moves its own cell elastically, with the gate decaying away from the handle);
    a drag of zero length, or a part with several drags, is left as it is.
    """
    n = len(token_drags)
    if n == 0:
        return token_drags
    if pixel_region is not None:
        mask = pixel_region.to(torch.bool).cpu()
        lab = _components(mask)
        yx = torch.nonzero(lab >= 0)
        pts = yx.flip(1).to(torch.float64) / 2 - 0.25     # latent-pixel centres in token units
    else:
        lab = _components(region.to(torch.bool).cpu())
        yx = torch.nonzero(lab >= 0)
        pts = yx.flip(1).to(torch.float64)
    if yx.shape[0] == 0:
        return token_drags
    part = lab[yx[:, 0], yx[:, 1]]
    groups: dict[int, list[int]] = {}
    for i, h in enumerate(token_drags.handles):
        if token_drags.modes[i] == "anchor":
            continue
        j = int(((pts - h) ** 2).sum(1).argmin())
        groups.setdefault(int(part[j]), []).append(i)
    handles, targets = token_drags.handles.clone(), token_drags.targets.clone()
    modes, angles = list(token_drags.modes), token_drags.angles.clone()
    changed = False
    for comp, idx in groups.items():
        if len(idx) != 1 or modes[idx[0]] != "drag":
            continue
        i = idx[0]
        h, t = handles[i], targets[i]
        d = t - h
        if float(d.norm()) < 1e-9:
            continue
        own = pts[part == comp]
        dist = (own - h).norm(dim=1)
        f = own[dist >= FAR_END * dist.max()].mean(0)
        b = torch.stack((-d[1], d[0])) / d.norm()         # along the bisector
        mid = (h + t) / 2
        c = _shaft_pivot(own, dist, mid, b) if pivot == "shaft" else None
        if c is None:
            c = mid + ((f - mid) @ b) * b
        a, e = h - c, t - c
        if float(a.norm()) < 1e-9:
            continue
        theta = math.atan2(float(a[0] * e[1] - a[1] * e[0]), float((a * e).sum()))
        handles[i], targets[i], modes[i] = c, c.clone(), "move"
        angles[i] = math.degrees(theta)
        changed = True
    if not changed:
        return token_drags
    return TokenDrags(handles=handles, targets=targets, modes=modes, scales=token_drags.scales.clone(),
                      mask=token_drags.mask, grid_hw=token_drags.grid_hw, image_hw=token_drags.image_hw,
                      angles=angles, depths=list(token_drags.depths))
