"""Which latent pixels ContextDrag's moved content lands on [ours]: each destination pixel that
shows a region pixel and the reference pixel it shows (:func:`content_pairs`, spills included),
the landed and the edited pixels read from them, and a lost edge row pasted into a hole's slot
(:func:`hole_spill`). Split from ``core/reverse_tokens.py``, whose pixel lookups it reads."""
from __future__ import annotations

import torch

from .reverse_mapping import ReverseMap, injection_pairs
from .reverse_tokens import _pair_pixels, _patch_grid, _spill, lost_at, motion_parts


def content_pairs(rmap: ReverseMap, *, subtoken: bool, patch: int = 2, warp: str = "token",
                  on_shape: bool = False, spill_onto: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(dst (n, 2), src (n, 2)) long (row, col) latent pixels [ours]: each destination pixel that
    shows a region pixel (:attr:`~ReverseMap.fine_mask`, shifted by :func:`subtoken_shifts` with
    ``subtoken``, spilled ones included, see :func:`moved_patch_pixels`) and the reference pixel it
    shows. ``on_shape``: less the pixels ``warp="motion"`` marks off the moving shape (its
    sub-pixel edge, which shows the destination's own background); ``spill_onto``: as
    :func:`moved_patch_pixels`'. Without a fine mask: none."""
    h, w = rmap.grid_hw
    fine = rmap.fine_mask
    none = torch.zeros(0, 2, dtype=torch.long)
    d, s = injection_pairs(rmap)
    if fine is None or not d.numel():
        return none, none
    zero = torch.zeros(d.numel(), 2, dtype=torch.long)
    if subtoken:
        rows, cols, off = _pair_pixels(rmap, d, s, patch, warp)
    else:
        rows, cols = _patch_grid(s, zero, (h, w), patch)
        off = torch.zeros(rows.shape, dtype=torch.bool)
    q_rows, q_cols = _patch_grid(d, zero, (h, w), patch)
    obj = fine[rows, cols] & ~off if on_shape else fine[rows, cols]
    dst = [torch.stack([q_rows[obj], q_cols[obj]], 1)]
    src = [torch.stack([rows[obj], cols[obj]], 1)]
    if subtoken:
        spilled, hs = _spills(rmap, rows[~off], cols[~off], patch=patch, warp=warp, onto=spill_onto)
        dst.append(spilled[0])
        src.append(spilled[1])
        if hs is not None:
            holes, rows, cols, take = hs
            own = _patch_grid(holes, torch.zeros(holes.numel(), 2, dtype=torch.long), (h, w), patch)
            dst.append(torch.stack([own[0][take], own[1][take]], 1))
            src.append(torch.stack([rows[take], cols[take]], 1))
    return torch.cat(dst), torch.cat(src)


def hole_spill(rmap: ReverseMap, lost: torch.Tensor, patch: int = 2, warp: str = "token"):
    """(holes (n,), rows, cols, take (n, patch, patch)) or None [ours]: the ``lost`` region pixels
    (no destination and no :func:`_spill` carries them) that would land in a *hole*, a vacated
    token that is a source and so has moved, whose place a hole-fill slot holds
    (:func:`~fluxdrag.core.reverse_ids.hole_slots`): a half-token move loses an edge row there too.
    ``take`` marks the hole's pixels that show a lost pixel, ``rows`` / ``cols`` that pixel; the
    slot pastes them over the filled reference (Position-Consistent Attention's ``fill_in_place``).
    Only on maps that translate: with a rotated, scaled or swung part (:func:`motion_parts`) the
    source pixels no destination reads are the turned raster's, no lost row (on tuning rotation
    186007 one was pasted into the hole: its error 0.030 → 0.231), and the field near such a part
    does not say which part a hole's pixel comes from."""
    from .reverse_ids import hole_slots

    if not bool(lost.any()) or motion_parts(rmap):
        return None
    return lost_at(rmap, hole_slots(rmap)[1], lost, patch, warp)


def hole_spill_of(rmap: ReverseMap, *, subtoken: bool, patch: int = 2, warp: str = "token"):
    """:func:`hole_spill` of the region pixels the pairs and the spill (onto in-place tokens) leave
    lost, as :func:`content_pairs` reads it with ``spill_onto``; None without ``subtoken``."""
    d, s = injection_pairs(rmap)
    if rmap.fine_mask is None or not d.numel() or not subtoken:
        return None
    rows, cols, off = _pair_pixels(rmap, d, s, patch, warp)
    return _spills(rmap, rows[~off], cols[~off], patch=patch, warp=warp, onto=True)[1]


def _spills(rmap: ReverseMap, rows: torch.Tensor, cols: torch.Tensor, *, patch: int, warp: str, onto: bool):
    """((dst (n, 2), src (n, 2)), hole spill or None): what the pairs' source pixels ``rows`` /
    ``cols`` (those read past the frame left out) leave of the region is spilled (:func:`_spill`,
    ``onto``), and with ``onto`` what that leaves lands in the holes (:func:`hole_spill`)."""
    fine = rmap.fine_mask
    got = torch.zeros_like(fine)
    got[rows, cols] = True
    dst = src = torch.zeros(0, 2, dtype=torch.long)
    sp = _spill(rmap, fine & ~got, patch, warp, onto=onto)
    if sp is not None:
        own = _patch_grid(sp[0], torch.zeros(sp[0].numel(), 2, dtype=torch.long), tuple(rmap.grid_hw), patch)
        moved = (sp[1] != own[0]) | (sp[2] != own[1])
        dst = torch.stack([own[0][moved], own[1][moved]], 1)
        src = torch.stack([sp[1][moved], sp[2][moved]], 1)
        got[sp[1][moved], sp[2][moved]] = True
    return (dst, src), (hole_spill(rmap, fine & ~got, patch, warp) if onto else None)


def landed_pixels(rmap: ReverseMap, *, subtoken: bool, patch: int = 2, warp: str = "token",
                  on_shape: bool = False, spill_onto: bool = False) -> torch.Tensor:
    """Bool (patch·h, patch·w): the destination pixels of :func:`content_pairs` [ours]."""
    h, w = rmap.grid_hw
    out = torch.zeros(h * patch, w * patch, dtype=torch.bool)
    dst, _ = content_pairs(rmap, subtoken=subtoken, patch=patch, warp=warp, on_shape=on_shape, spill_onto=spill_onto)
    out[dst[:, 0], dst[:, 1]] = True
    return out


def edited_pixels(rmap: ReverseMap, *, subtoken: bool, patch: int = 2, warp: str = "token",
                  spill_onto: bool = False) -> torch.Tensor:
    """Bool (patch·h, patch·w): the latent pixels an edit may change [ours]: the region (its
    :attr:`~ReverseMap.fine_mask`) and the pixels of every destination that show a region pixel
    (:func:`landed_pixels`). Without a fine mask: the tokens of M_SRC ∪ M_DST."""
    if rmap.fine_mask is None:
        return (rmap.src_mask | rmap.dst_mask).repeat_interleave(patch, 0).repeat_interleave(patch, 1)
    # the whole painted region (a part of it left behind is filled)
    return rmap.painted | landed_pixels(rmap, subtoken=subtoken, patch=patch, warp=warp, spill_onto=spill_onto)
