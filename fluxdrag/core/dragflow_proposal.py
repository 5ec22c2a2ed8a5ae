"""[ours] DragFlow's geometric proposal when only a region's content travels as it is (issue 27):
the content copied, the rest of the paint (a cast shadow) filled as ground or carried as a darkening
of the target's ground (``SHADOW_CARRIES``), unpainted objects in front kept (docs/dragflow.md).
Pure torch."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .affine import Region, resize_mask, warp_mask, warp_with_affine
from .dragflow import WARP_MODE, destination_mask, fill_by_shift, fill_from_surroundings, moved_start
from .instruction_values import depth_rule

#: how a painted cast shadow (the paint's rest, no content) travels with its region [ours]:
#: none = never (the whole painted area is filled as ground; the sampler draws the shadow);
#: in_place = only when the region keeps its content where it stands (a rotation in place), turned
#: about its own pivot (:func:`shadow_motion`), and only on a smooth ground; rigid = with the
#: region's affine as it is (before; what the paper's region, which moves everything it paints, does)
SHADOW_CARRIES = ("none", "in_place", "rigid")


def carried_proposal(x: torch.Tensor, regions: Sequence[Region], content_contrast: float,
                     hole_texture: str = "continued", mask_rule: str = "majority",
                     occluder_contrast: float = 0.0, depth: str = "over", texture: bool = False,
                     one_piece: bool = False, shadow: str = "rigid", grow: bool = False) -> torch.Tensor:
    """[ours] The geometric proposal (the edit by geometry alone, on ``x`` (B, C, h, w) at σ = 0)
    when only a region's *content* travels as it is.

    The painted area P (every cell touching a region) is split by
    ``correspondence.content_pixels`` (contrast ``content_contrast``, the rule LazyDrag's
    ``content_contrast`` uses): the cells that stand out from the harmonic continuation of their
    surroundings (the object) and the rest (a cast shadow, a penumbra, background painted with
    the object). The whole of P is filled as background (``hole_texture``, :func:`hole_filled`;
    never from the content's destination), the content cells are copied to their final pose
    (:func:`moved_start`), and the
    rest is carried as its *deviation* from the background the surroundings continue into P
    (z − harmonic fill), added to the destination's own background: a shadow moves as a darkening,
    not as a copy of the ground it fell on. Filling all of P rather than only the vacated cells
    keeps the old object under the destination out of the fill. [guess] the deviation moves
    rigidly with the region (a point light would shift and reshape the shadow; docs/dragflow.md).

    ``occluder_contrast`` > 0: the unpainted objects in front (``correspondence.FrontObjects``,
    the rule LazyDrag's ``occluder_contrast`` uses) that touch P or the content's destination are
    kept as they are, and the fill and the shadow's background continue *behind* them (not from
    their colour). ``depth`` (with them): over = the moved content covers them (the paper pastes
    the region); under = it goes behind every one; auto = behind those that covered the painted
    object at its source (they touch the paint), over the others. A region's own ``depth`` (the
    user's per-drag intent, ``Region.depth``) overrides it inside that region's footprint (its
    mask moved to its final pose): behind = under, front = over, auto = ``depth``.

    ``texture`` / ``one_piece`` [ours]: ``content_pixels``' texture and one-piece rules (LazyDrag's
    ``content_reference`` "texture" and ``content_piece`` "largest"): a texture's cells under a
    painted shadow, and pieces apart from the dragged object, are no content. ``shadow``
    (``SHADOW_CARRIES``): how the rest travels; in_place carries it only by :func:`shadow_motion`
    and only where the ground is smooth (``continued_texture`` finds no texture continuing into the
    paint: on a texture, z − fill is mostly the fill's phase error), none never, rigid always.
    [measured] on the toy v3 world a shadow carried by a move lands beside the new one, and one
    carried in place gains on a smooth ground what it loses on a faint texture (docs/dragflow.md,
    "A painted shadow is ground, not cargo"). ``grow`` [ours]: the content is grown into its part's
    faint group (``correspondence_content.grown_content``, LazyDrag's ``content_growth`` "split")."""
    from .correspondence import FrontObjects, continued_texture, harmonic_fill

    if shadow not in SHADOW_CARRIES:
        raise ValueError(f"shadow must be one of {', '.join(SHADOW_CARRIES)}, not {shadow!r}")
    grid = tuple(x.shape[-2:])
    P = _painted(regions, grid)
    objects = FrontObjects(x, P, occluder_contrast) if occluder_contrast > 0 else None
    C = region_content(x, regions, P, content_contrast, behind=None if objects is None else objects.touching(P),
                       texture=texture, one_piece=one_piece, grow=grow, objects=objects)
    carried, rest = [], []
    for r in regions:
        c = r.mask & resize_mask(C, r.hw, "any")
        try:
            carried.append(Region(c, r.op, target=r.target, begin=r.begin, anchor=r.anchor, scale=r.scale)
                           if bool(c.any()) else None)
        except ValueError:  # the content's copy leaves the image: nothing of it to place
            carried.append(None)
        rest.append(r.mask & ~c)
    content = [c for c in carried if c is not None]
    dst = destination_mask(content, grid, mask_rule) if content else torch.zeros(grid, dtype=torch.bool)
    front = torch.zeros(grid, dtype=torch.bool) if objects is None else objects.touching(P | dst) & ~P
    under = P | front
    fill = hole_filled(x, under, dst, hole_texture)
    fill = torch.where(front.to(x.device), x, fill)
    out = moved_start(fill, x, content, mask_rule) if content else fill
    if shadow == "none" or not any(bool(m.any()) for m in rest) or (
            shadow == "in_place" and continued_texture(x[0] if x.dim() == 4 else x, under) is not None):
        rest = []
    else:       # the shadow's deviation from the ground the surroundings continue into the paint
        dev = torch.where((P & ~C).to(x.device), x - harmonic_fill(x, under), torch.zeros_like(x))
    for r, m in zip(regions, rest):
        if not bool(m.any()):
            continue
        A = r.affine(1.0, grid)
        m_grid = resize_mask(m, grid, mask_rule) if r.hw != grid else m
        if shadow == "in_place":
            A = shadow_motion(A, _on_grid(r, grid) & C, m_grid.cpu().bool())
            if A is None:
                continue
        to = (warp_mask(m_grid.to(x.device), A) & ~dst.to(x.device))
        out = torch.where(to, out + warp_with_affine(dev, A, mode=WARP_MODE), out)
    if objects is None:
        return out
    modes = [depth_rule(r.depth, depth) for r in regions]

    def kept(mode: str) -> torch.Tensor | None:   # the objects the moved content stays behind
        return None if mode == "over" else front if mode == "under" else objects.touching(P) & ~P

    if len(set(modes)) == 1:      # one rule for every region: over the whole grid, as before
        keep = kept(modes[0])
    else:                         # each region's rule within its own footprint
        keep = torch.zeros(grid, dtype=torch.bool)
        for r, mode in zip(regions, modes):
            k = kept(mode)
            if k is not None:
                m = _on_grid(r, grid)
                keep |= k & warp_mask(m, r.affine(1.0, grid), threshold=0.0).cpu()
    if keep is not None:
        out = torch.where(keep.to(x.device), x, out)
    return out


def hole_filled(x: torch.Tensor, hole: torch.Tensor, avoid: torch.Tensor | None, rule: str) -> torch.Tensor:
    """``x`` (B, C, h, w) with the ``hole`` (h, w) cells filled as background, never from ``avoid``
    (DragFlow's ``hole_texture``): continued [ours] = ``correspondence_latent.continued_fill``
    (LazyDrag's hole fill: the mean of the best offset copies, offsets up to half the shorter side,
    when they predict a held-out ring around the hole better than the membrane does, the membrane
    otherwise; one choice per hole and image), shifted = :func:`~.dragflow.fill_by_shift` (one
    offset copy within 16 cells, or the smooth fill where that predicts the rim better), smooth =
    :func:`~.dragflow.fill_from_surroundings`."""
    from .correspondence import continued_fill

    if rule == "shifted":
        return fill_by_shift(x, hole, avoid=avoid)
    if rule == "smooth":
        return fill_from_surroundings(x, hole)
    if rule != "continued":
        raise ValueError(f"hole_texture must be continued, shifted or smooth, not {rule!r}")
    H = hole.to(torch.bool).cpu()
    if not bool(H.any()):
        return x
    av = None if avoid is None else avoid.to(torch.bool).cpu()
    filled = torch.stack([continued_fill(xb.detach().float(), H, av) for xb in x]).to(x)   # on x's device
    return torch.where(H.to(x.device), filled, x)


def region_content(x: torch.Tensor, regions: Sequence[Region], P: torch.Tensor, contrast: float, *,
                   behind: torch.Tensor | None, texture: bool, one_piece: bool, grow: bool = False,
                   objects=None) -> torch.Tensor:
    """(h, w) bool: the painted cells ``P`` that carry content (``correspondence.content_pixels`` at
    ``contrast``, with ``behind`` and ``texture``). ``one_piece``: of each region's standing-out
    cells in each connected part of the paint only the largest piece (pieces joined through
    ``behind`` count as one): the rule is applied per region, so an object in a region whose paint
    touches another region's stays content. ``grow`` / ``objects``: then each region's content is grown
    into the faint group of its own cells' part nearest to its ``begin`` (``content_pixels``' growth,
    ``correspondence_content.grown_content``), never into the rest of an unpainted object or a piece
    left out: a region grows only what it moves. The contrast is read on the paint as painted: ``P`` with
    the regions' ``hinge`` cells (:func:`hinge_kept`), which stay but are no ground to read against."""
    from .correspondence import content_pixels
    from .correspondence_content import content_score, grown_content, growth_avoid, largest_pieces
    from .correspondence_fields import _components

    grow = grow and contrast > 0
    read = P.clone()                # the paint as painted: the contrast is read against its surroundings
    for r in regions:
        if r.hinge is not None:
            read |= _on_grid(r, tuple(P.shape), r.hinge).cpu()
    score = None
    if not torch.equal(read, P) and contrast > 0:
        score = content_score(x, read, behind=behind, texture=texture, objects=objects) * P
    elif grow:
        score = content_score(x, P, behind=behind, texture=texture, objects=objects)
    C = content_pixels(x, P, contrast, behind=behind, texture=texture, score=score, objects=objects)
    grid = tuple(P.shape)
    out = C
    if one_piece and contrast > 0:
        lab = _components(P)
        out = torch.zeros(grid, dtype=torch.bool)
        for r in regions:
            out |= largest_pieces(C & _on_grid(r, grid), P, lab, behind)
    if not grow:
        return out
    avoid = growth_avoid(P, out, score, contrast, objects)
    grown = out.clone()
    for r in regions:
        cells = _on_grid(r, grid) & P
        (h, w), (bx, by) = r.hw, r.begin
        begin = torch.tensor([[bx * grid[1] / w, by * grid[0] / h]])       # its handle, on the grid
        grown |= grown_content(out & cells, cells, score, contrast, anchors=begin, avoid=avoid)
    return grown


def shadow_motion(A: torch.Tensor, content: torch.Tensor, shadow: torch.Tensor,
                  in_place: float | None = None) -> torch.Tensor | None:
    """[ours] ``shadow_carry`` in_place: the affine (2×3, grid coordinates) that carries a painted
    cast shadow whose object moves by ``A``, or None (not carried). LazyDrag's ``cast_shadow`` rule
    (``core.cast_shadow``): only a motion that keeps the object's centroid within ``in_place``
    (None: ``cast_shadow.IN_PLACE``) × its radius √(area/π) (a rotation in place; a move changes the
    shadow's offset from the object, which one shadow does not tell), conjugated by the shadow's
    offset d (``cast_shadow.shadow_offset`` of ``content`` and ``shadow``, (h, w) bool on the same
    grid): T_s(y) = T(y − d) + d, the rotation about the pivot's own shadow. None also when no
    offset fits."""
    from .cast_shadow import IN_PLACE, keeps_place, shadow_offset

    C = content.to(torch.bool).cpu()
    if not bool(C.any()):
        return None
    A = A.detach().to(torch.float64).cpu()
    yx = torch.nonzero(C).double().mean(0) + 0.5          # cell centres, as the affine's grid
    c = torch.stack((yx[1], yx[0]))
    moved = float((A[:, :2] @ c + A[:, 2] - c).norm())
    if not keeps_place(moved, C, IN_PLACE if in_place is None else in_place):
        return None
    d = shadow_offset(C, shadow)
    if d is None:
        return None
    dd = torch.tensor(d, dtype=torch.float64)
    out = A.clone()
    out[:, 2] += dd - A[:, :2] @ dd
    return out


def _on_grid(r: Region, grid: tuple, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``r``'s mask (or ``mask``, on ``r``'s grid: its ``hinge``) on the latent grid (any of a cell's pixels)."""
    m = r.mask if mask is None else mask
    return resize_mask(m, grid, "any") if r.hw != grid else m.bool().cpu()


def _painted(regions: Sequence[Region], grid: tuple) -> torch.Tensor:
    """P: the union of the ``regions``' masks on the latent grid."""
    P = torch.zeros(grid, dtype=torch.bool)
    for r in regions:
        P |= _on_grid(r, grid)
    return P


def revealed_cells(x: torch.Tensor, regions: Sequence[Region], content_contrast: float, occluder_contrast: float,
                   reach: int, mask_rule: str = "majority", texture: bool = False,
                   one_piece: bool = False, grow: bool = False) -> torch.Tensor:
    """[ours] (h, w) bool on the latent grid of ``x`` (B, C, h, w) at σ = 0: where a region's content
    dragged out from behind another object may have its hidden part after the edit (DragFlow's
    ``reveal_release``; LazyDrag's ``correspondence_latent.hidden_destination`` on the latent grid).

    The hidden part lay under the unpainted objects in front (``correspondence.FrontObjects``,
    contrast ``occluder_contrast``) that touch the painted area P, i.e. those that covered the
    object at its source. Their cells within ``reach`` cells of the region's content
    (``content_pixels`` at ``content_contrast``, as :func:`carried_proposal`) are moved with the
    region's affine (turned with a rotation), less P, the content's destination and every object in
    front touching P or the released cells (they stay where they are, in front). An unpainted region
    the content encloses on every side (a ring's inside: the ground seen through the object, not an
    object it went under; :func:`enclosed_by`) covers nothing; one the paint encloses but the content
    does not (an object in front crossing a painted area wider than the object) still does.
    ``reach`` 0 or no object in front: none. ``texture`` / ``one_piece`` / ``grow``: the content rules
    of :func:`carried_proposal`."""
    from .correspondence import FrontObjects
    from .correspondence_latent import _grow

    grid = tuple(x.shape[-2:])
    out = torch.zeros(grid, dtype=torch.bool)
    if reach <= 0 or content_contrast <= 0 or occluder_contrast <= 0 or not regions:
        return out
    P = _painted(regions, grid)
    objects = FrontObjects(x, P, occluder_contrast)
    touching = objects.touching(P)
    C = region_content(x, regions, P, content_contrast, behind=touching, texture=texture, one_piece=one_piece,
                       grow=grow, objects=objects)
    covering = touching & ~P & ~enclosed_by(covering_parts(objects, P), C)
    if not bool(covering.any()):
        return out
    content = []
    for r in regions:
        m = _on_grid(r, grid)
        c = m & C
        near = covering & _grow(c, reach) & ~c
        if not bool(near.any()):
            continue
        A = r.affine(1.0, grid)
        out |= warp_mask(near.float(), A).cpu()
        try:
            c_px = r.mask & resize_mask(c, r.hw, "any") if r.hw != grid else c
            content.append(Region(c_px, r.op, target=r.target, begin=r.begin, anchor=r.anchor, scale=r.scale))
        except ValueError:  # the content's copy leaves the image
            pass
    if not bool(out.any()):
        return out
    dst = destination_mask(content, grid, mask_rule) if content else torch.zeros(grid, dtype=torch.bool)
    out &= ~P & ~dst.cpu()
    out &= ~objects.touching(P | out)
    return out


def covering_parts(objects, painted: torch.Tensor) -> list[torch.Tensor]:
    """The objects in front (``correspondence.FrontObjects``) that touch ``painted``, one (h, w)
    bool mask each."""
    lab = objects.lab
    if lab is None:
        return []
    near = objects.touching(painted) & ~painted
    return [lab == k for k in torch.unique(lab[near & (lab >= 0)]).tolist()]


def enclosed_by(parts: Sequence[torch.Tensor], around: torch.Tensor) -> torch.Tensor:
    """(h, w) bool: the union of the ``parts`` whose every 4-neighbour outside them lies in ``around``
    (and off the image border): regions ``around`` encloses on every side."""
    from .correspondence_latent import _ring4

    out = torch.zeros(around.shape, dtype=torch.bool)
    for m in parts:
        if bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()):
            continue
        if bool((_ring4(m) <= around).all()):
            out |= m
    return out


def hinge_kept(x: torch.Tensor, regions: Sequence[Region], occluder_contrast: float) -> list[Region]:
    """[ours] ``hinge_keep``: each ``rotate`` region with an anchor loses its painted latent cells that
    lie beyond the anchor (across the line through it square to anchor→begin, away from begin) and
    continue an unpainted object (``FrontObjects.continued``, contrast ``occluder_contrast``): the
    paint over a hinged part's base (a limb's base at its joint) stays where it is instead of turning
    away with the part and leaving the limb split. The cells taken off are the region's ``hinge``
    (:func:`region_content` reads the content against the paint with them). A spun object is painted
    whole, so nothing of it continues outside the paint and its region is unchanged. ``x`` (C, h, w)
    or (1, C, h, w) latent."""
    from dataclasses import replace

    from .correspondence import FrontObjects

    if occluder_contrast <= 0 or not any(r.op == "rotate" and r.anchor is not None for r in regions):
        return list(regions)
    grid = tuple(x.shape[-2:])
    objects = FrontObjects(x, _painted(regions, grid), occluder_contrast)
    out = []
    for r in regions:
        if r.op != "rotate" or r.anchor is None:
            out.append(r)
            continue
        (H, W), (h, w) = r.hw, grid
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
        (ax, ay), (bx, by) = (float(v) for v in r.anchor), (float(v) for v in r.begin)
        ahead = ((xs + 0.5) * W / w - ax) * (bx - ax) + ((ys + 0.5) * H / h - ay) * (by - ay)
        stay = objects.continued(_on_grid(r, grid) & (ahead < 0))
        kept = r.mask & ~resize_mask(stay, r.hw, "any").to(r.mask.device) if bool(stay.any()) else r.mask
        out.append(replace(r, mask=kept, hinge=r.mask & ~kept) if bool(kept.any()) and not torch.equal(kept, r.mask)
                   else r)
    return out
