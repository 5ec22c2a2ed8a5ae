"""ContextDrag's reverse map with its drags grouped by the region's connected parts
(``build_reverse_map(..., drag_groups="component")`` [departure]; split from ``reverse_mapping``,
which calls it). The paper's LRM weighs every drag at every token, so objects dragged apart mix
their drags between them; here each part is mapped with its own drags and the maps are merged."""
from __future__ import annotations

import torch

from .geometry import connected_components
from .reverse_mapping import ReverseMap, _grid_points, _mask_points, build_reverse_map, reverse_lookup


def drag_groups_of(s: torch.Tensor, m_src: torch.Tensor, pixels: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(region mask, drag indices)] per group of connected components of ``m_src`` (see
    :func:`build_reverse_map`'s ``drag_groups``), in the order of their first drag.

    ``pixels`` [ours] (the painted region at latent pixels, a whole number of them per token): the
    components are read there. Two objects painted a latent pixel or two apart share a token
    corner, so on the token grid they were one component, mapped by one field of both drags: near
    the other object a token took a blend of the two motions (toy scene 205022, `multi`
    `multi_move`: a column of the other object's pixels beside the moved one, BG 0.068). Each token
    of ``m_src`` goes to the component holding most of its pixels (ties: the lowest label); a token
    holding none to the nearest such token's. The paint, not the moving content: a textured
    object's standing-out pixels may be many pieces, and one object is one drag group.
    ``labels`` ((h, w) long, -1 off the parts): the parts as given, e.g. a merged map's
    :func:`group_labels` (the paint the patches see may have lost pixels since)."""
    lab = labels if labels is not None else _pixel_labels(m_src, pixels)
    if lab is None:
        lab = connected_components(m_src)
    comps = [int(v) for v in torch.unique(lab) if int(v) >= 0]
    if len(comps) < 2:
        return [(m_src, torch.arange(s.shape[0]))]
    cells = {c: _mask_points(lab == c) for c in comps}

    def nearest(p: torch.Tensor, among) -> int:
        return min(among, key=lambda c: float(torch.cdist(p[None], cells[c]).min()))

    owner = [nearest(p, comps) for p in s]
    with_drags = sorted(set(owner), key=owner.index)
    region = {c: lab == c for c in with_drags}
    for c in comps:
        if c not in region:
            region[nearest(cells[c].mean(0), with_drags)] |= lab == c
    return [(region[c], torch.tensor([i for i, o in enumerate(owner) if o == c])) for c in with_drags]


def _pixel_labels(m_src: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor | None:
    """(h, w) long component labels of ``m_src``'s tokens read on ``pixels`` (-1 off ``m_src``), or
    None where ``pixels`` does not split ``m_src`` otherwise than its tokens do (see
    :func:`drag_groups_of`)."""
    h, w = m_src.shape
    if pixels is None or pixels.dim() != 2 or pixels.shape[0] % h or pixels.shape[1] % w \
            or pixels.shape[0] // h != pixels.shape[1] // w:
        return None
    p = pixels.shape[0] // h
    m_src = m_src.to(torch.bool).cpu()
    on = pixels.to(torch.bool).cpu() & m_src.repeat_interleave(p, 0).repeat_interleave(p, 1)
    plab = connected_components(on)
    n = int(plab.max()) + 1
    if n < 2:
        return None
    # each token's most frequent component (ties: the lowest label), counted over its pixels only
    ys, xs = torch.nonzero(plab >= 0, as_tuple=True)
    pairs, counts = torch.unique((ys // p * w + xs // p) * n + plab[ys, xs], return_counts=True)
    tok = pairs // n
    order = torch.argsort(tok * (counts.max() + 1) * n + (counts.max() - counts) * n + pairs % n)
    first = torch.ones(order.numel(), dtype=torch.bool)
    first[1:] = tok[order][1:] != tok[order][:-1]
    lab = torch.full((h * w,), -1, dtype=torch.long)
    lab[tok[order][first]] = (pairs % n)[order][first]
    lab = lab.reshape(h, w)
    has = lab >= 0
    rest = m_src & ~has
    if bool(rest.any()):
        held = torch.nonzero(lab >= 0)
        if not held.shape[0]:
            return None
        for y, x in torch.nonzero(rest).tolist():
            k = int(((held - torch.tensor([y, x])) ** 2).sum(1).argmin())
            lab[y, x] = lab[held[k, 0], held[k, 1]]
    return lab if len(torch.unique(lab[lab >= 0])) >= 2 else None


def merged_map(s: torch.Tensor, t: torch.Tensor, m_src: torch.Tensor, *, grid_hw: tuple[int, int],
               groups: list, region_default: bool, kw: dict) -> ReverseMap:
    """One map per drag group, merged (see :func:`build_reverse_map`)."""
    h, w = grid_hw
    subs = [build_reverse_map(s[idx], t[idx], mask, grid_hw, drag_groups="all", **kw) for mask, idx in groups]
    dst = torch.zeros(h, w, dtype=torch.bool)
    src = torch.full((h, w, 2), -1, dtype=torch.long)
    coarse = torch.zeros(h, w, dtype=torch.bool)
    claim = torch.full((h, w), -1, dtype=torch.long)
    for g, sub in enumerate(subs):
        free = sub.dst_mask & ~dst
        dst |= free
        src[free] = sub.src[free]
        claim[free] = g
        coarse |= sub.coarse_mask
    grid = _grid_points(h, w)
    dist, backs = [], []
    for sub in subs:
        near = sub.dst_mask | sub.coarse_mask
        pts = _mask_points(near) if bool(near.any()) else sub.targets
        dist.append(torch.cdist(grid, pts).min(dim=1).values)
        backs.append(reverse_lookup(grid, sub.handles, sub.targets, anchor=kw["anchor"], power=kw["power"],
                                    eps=kw["eps"], fixed_point_iters=kw["fixed_point_iters"]))
    owner = torch.stack(dist, 1).argmin(1)
    owner = torch.where(claim.reshape(-1) >= 0, claim.reshape(-1), owner)
    back = torch.stack(backs, 1)[torch.arange(h * w), owner].reshape(h, w, 2)
    labels = torch.full((h, w), -1, dtype=torch.long)
    for g, (mask, _idx) in enumerate(groups):
        labels[mask.to(torch.bool).cpu()] = g
    params = dict(subs[0].params, region_default=region_default, drag_groups="component",
                  groups=labels.reshape(-1).tolist())
    return ReverseMap(grid_hw=(h, w), handles=s, targets=t, src_mask=m_src, coarse_mask=coarse, dst_mask=dst,
                      src=src, params=params, back=back)


def group_labels(rmap: ReverseMap) -> torch.Tensor | None:
    """(h, w) long: the drag group of each token of M_SRC (-1 elsewhere) the map was merged from
    (``params["groups"]``, :func:`merged_map`), or None for a map of one field."""
    g = (rmap.params or {}).get("groups")
    if g is None or rmap.back is None:
        return None
    h, w = rmap.grid_hw
    return torch.tensor(g, dtype=torch.long).reshape(h, w)
