"""What ContextDrag's moved tokens show besides the moved content [ours]: the reference filled
behind the painted region (:func:`filled_reference`), and the depth rule (as LazyDrag's
``depth``): where the moved content lands on an unpainted object in front, it covers it ("over",
the paper: the moved tokens are pasted) or stays behind it ("under": every object in front
touching the region or where it lands; "auto": those touching the painted region, which it was
behind at its source). A drag's stated ``depth`` (behind / front) sets its group's rule. Split
from ``reverse_tokens``, which it reads."""
from __future__ import annotations

import torch

from .reverse_mapping import ReverseMap, injection_pairs
from .reverse_tokens import _first_per_source, _patch_grid


def moved_destinations(rmap: ReverseMap, tokens: torch.Tensor) -> torch.Tensor:
    """(n,) long: the token each of :func:`moved_patch_pixels`' ``tokens`` shows its content at:
    a source's first destination (row-major), else the token itself (a spilled edge row is pasted
    onto the reference token where it lies)."""
    dst_idx, src_idx = injection_pairs(rmap)
    first = torch.full((rmap.grid_hw[0] * rmap.grid_hw[1],), -1, dtype=torch.long)
    if dst_idx.numel():
        pick = _first_per_source(src_idx)
        first[src_idx[pick]] = dst_idx[pick]
    q = first[tokens]
    return torch.where(q >= 0, q, tokens)


def depth_groups(rmap: ReverseMap, depth: str) -> list[tuple[torch.Tensor, str]]:
    """[(part (h, w) bool, rule)] [ours]: the depth rule (auto | under | over, a method's ``depth``
    setting's names) of each group of M_SRC's connected parts with its drags
    (:func:`~fluxdrag.core.reverse_groups.drag_groups_of` over the instructions' own drags kept in
    the map's params, on the parts the map was merged from): a drag stated ``behind`` makes
    its group's rule "under", ``front`` "over", otherwise ``depth``. A group whose drags state both
    takes ``depth``, with a warning naming the conflict: the rule LazyDrag and DragFlow apply
    (:func:`~fluxdrag.core.instruction_values.depth_rule` of
    :func:`~fluxdrag.core.correspondence_fields.group_depth`). A map without its drags: one group,
    ``depth``."""
    from .correspondence_fields import group_depth
    from .instruction_tokens import TokenDrags
    from .instruction_values import depth_rule
    from .reverse_groups import drag_groups_of, group_labels

    drags = rmap.params.get("drags")
    if not drags:
        return [(rmap.src_mask, depth)]
    td = TokenDrags.from_dict({**drags, "mask": None})
    out = []
    for part, idx in drag_groups_of(td.handles, rmap.src_mask, labels=group_labels(rmap)):
        out.append((part, depth_rule(group_depth([td.depths[int(i)] for i in idx]), depth)))
    return out


def kept_behind(rmap: ReverseMap, pixels: tuple, ref: torch.Tensor, *, groups: list, contrast: float,
                edited: torch.Tensor) -> tuple:
    """``pixels`` = :func:`~fluxdrag.core.reverse_tokens.moved_patch_pixels`' (tokens, rows, cols)
    with the rule of each of ``groups`` (:func:`depth_groups`, "over" left out) applied: where
    the moved content stays behind an unpainted object in front
    (:class:`~fluxdrag.core.correspondence_latent.FrontObjects` of the reference ``ref``
    (B, C, H, W) at ``contrast``; "under": those touching the painted region or ``edited``, the
    latent pixels the edit may change; "auto": those touching the painted region), the
    destination pixel shows the reference's own pixel there (the object). A pixel follows its
    group's rule when its token is a source of the group (grown by one token) or when it shows a
    painted pixel of the group: a motion's carrier outside M_SRC and a spilled edge token carry
    the group's content from wherever they lie.

    A token moved by whole tokens with nothing shifted or composited is not in ``pixels`` (it is
    injected as it is); where such a token lands on an object it stays behind, it is added with
    its own pixels and the rule applied, so a drag by a whole number of tokens goes behind too (it
    was pasted over the object)."""
    from .correspondence_latent import FrontObjects

    src, rows, cols = pixels
    fine = rmap.painted
    if not groups or contrast <= 0 or fine is None:
        return pixels
    h, w = rmap.grid_hw
    p = rows.shape[-1]
    src, rows, cols, n_listed = _with_whole_moves(rmap, src, rows, cols, p)
    if not src.numel():
        return pixels
    objects = FrontObjects(ref[:1, :, :h * p, :w * p].float().cpu(), fine, contrast)
    dest = moved_destinations(rmap, src)
    q_rows, q_cols = _patch_grid(dest, torch.zeros(dest.numel(), 2, dtype=torch.long), (h, w), p)
    keep = torch.zeros_like(rows, dtype=torch.bool)
    shown = rows < h * p                     # (a row past the grid indexes the filled reference)
    for part, rule in groups:
        objs = objects.touching(fine | edited) if rule == "under" else objects.touching(fine)
        near = torch.nn.functional.max_pool2d(part.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
        mine = near.repeat_interleave(p, 0).repeat_interleave(p, 1) & fine
        sel = near.reshape(-1)[src][:, None, None] | (shown & mine[rows.clamp(max=h * p - 1), cols])   # (n, p, p)
        keep |= sel & objs[q_rows, q_cols]
    out = torch.arange(src.numel()) < n_listed
    out |= keep.flatten(1).any(1)           # an added token only where the rule changes a pixel
    return src[out], torch.where(keep, q_rows, rows)[out], torch.where(keep, q_cols, cols)[out]


def _with_whole_moves(rmap: ReverseMap, src: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                      p: int) -> tuple:
    """``(src, rows, cols)`` with every source of M_DST that ``src`` lacks appended with its own
    (unshifted) pixels, and how many were listed before."""
    dst_idx, src_idx = injection_pairs(rmap)
    n = src.numel()
    if not dst_idx.numel():
        return src, rows, cols, n
    moved = src_idx[_first_per_source(src_idx)]
    extra = moved[~torch.isin(moved, src)]
    if not extra.numel():
        return src, rows, cols, n
    r, c = _patch_grid(extra, torch.zeros(extra.numel(), 2, dtype=torch.long), rmap.grid_hw, p)
    return torch.cat([src, extra]), torch.cat([rows, r]), torch.cat([cols, c]), n


def filled_reference(x: torch.Tensor, painted: torch.Tensor, *, method: str, contrast: float) -> torch.Tensor:
    """``x`` (B, C, H, W) with its ``painted`` (H, W) pixels filled from their surroundings [ours]:
    the background the vacated area and the moved tokens' vacated pixels show. ``method``
    "harmonic": membrane interpolation; "continued": LazyDrag's hole fill
    (:func:`~fluxdrag.core.correspondence_latent.continued_fill`: the mean of the best offset copies
    of the image where they predict a held-out ring around the region better than the membrane, a
    texture continued; the membrane otherwise), per image; else onion peeling. With ``contrast`` > 0
    the unpainted objects touching the region (:class:`~fluxdrag.core.correspondence_latent.FrontObjects`)
    are filled over too, so the background continues behind them, and keep their own pixels."""
    from .correspondence import harmonic_fill  # (re-exported there; the submodule alone is circular)
    from .correspondence_latent import FrontObjects
    from .dragflow import fill_from_surroundings
    from .dragflow_proposal import hole_filled

    region = painted
    if contrast > 0:
        region = painted | FrontObjects(x[:1].float().cpu(), painted, contrast).touching(painted)
    if method == "continued":          # DragFlow's continued hole fill, per image, copies from anywhere off the region
        filled = hole_filled(x.float(), region, None, "continued")
    else:
        fill = harmonic_fill if method == "harmonic" else fill_from_surroundings
        filled = fill(x.float(), region.to(x.device))
    return torch.where(painted.to(x.device), filled, x.float()).to(x.dtype)


def hole_rim_pixels(rmap: ReverseMap, ref: torch.Tensor, *, rim: int, subtoken: bool, warp: str,
                    contrast: float, patch: int = 2, on_shape: bool = True, spill_onto: bool = False) -> torch.Tensor:
    """(patch·h, patch·w) bool [ours, as LazyDrag's ``hole_rim``]: the painted pixels no moved
    content lands on (vacated) within ``rim`` latent pixels of the landed content
    (:func:`~fluxdrag.core.reverse_landed.landed_pixels`, on the moving shape with ``on_shape``:
    where the moved tokens are composited, which shows the background off it), for the background
    lock to hold to the filled reference: a free vacated pixel next to the landed outline is where
    the model extends the object it sees (a rotation in place or a bent limb leaves its hole along
    the outline). Left out, each carried with the content
    (:func:`~fluxdrag.core.correspondence_latent.carried_hidden`, reach ``rim``): the content pixels
    no destination shows (a half-token move can lose an edge row; the model may draw them back next
    to the landed content) and, with ``contrast`` > 0, the objects in front that touch the paint at
    the source (:class:`~fluxdrag.core.correspondence_latent.FrontObjects` of ``ref``): the
    content's hidden part may show there once it is dragged out. ``rim`` 0 or no fine mask: none."""
    from .correspondence import FrontObjects  # (re-exported there; the submodule alone is circular)
    from .correspondence_latent import carried_hidden
    from .reverse_landed import content_pairs

    h, w = rmap.grid_hw
    H, W = h * patch, w * patch
    out = torch.zeros(H, W, dtype=torch.bool)
    if rim <= 0 or rmap.fine_mask is None:
        return out
    dst, src = content_pairs(rmap, subtoken=subtoken, patch=patch, warp=warp, on_shape=on_shape, spill_onto=spill_onto)
    if not dst.shape[0]:
        return out
    land = torch.zeros(H, W, dtype=torch.bool)
    land[dst[:, 0], dst[:, 1]] = True
    near = torch.nn.functional.max_pool2d(land[None, None].float(), 2 * rim + 1, 1, rim)[0, 0] > 0
    out = near & rmap.painted & ~land
    source = torch.full((H * W,), -1, dtype=torch.long)
    source[dst[:, 0] * W + dst[:, 1]] = src[:, 0] * W + src[:, 1]
    carried = torch.zeros(H, W, dtype=torch.bool)
    carried[src[:, 0], src[:, 1]] = True
    covering = rmap.fine_mask & ~carried              # content no destination shows (a pixel row lost)
    if contrast > 0 and bool(out.any()):
        paint = rmap.painted
        x = ref[:1, :, :H, :W].float().cpu()
        if tuple(x.shape[-2:]) == (H, W):
            covering |= FrontObjects(x, paint, contrast).touching(paint)
    if bool(covering.any()):
        out &= ~carried_hidden(source, (H, W), carried, covering, rim)
    return out
