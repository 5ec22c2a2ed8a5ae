"""Where ContextDrag's reference tokens sit after the move (position-consistent attention): the
reference tokens' position ids (:func:`reference_position_ids`) and the slots that carry a fill of
the vacated tokens (:func:`hole_slots`). Split from ``core/reverse_tokens.py`` by concern."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .reverse_mapping import COLLISIONS, ReverseMap, _check_grid, injection_pairs


def hole_slots(rmap: ReverseMap) -> tuple[torch.Tensor, torch.Tensor]:
    """(slot_flat_idx (n,), hole_flat_idx (n,)) long: reference tokens free to carry a fill of the
    vacated area, and the vacated token each one fills [ours].

    A hole is a token of M_SRC \\ M_DST that is a source: its reference token now sits at its
    destination, so no reference token holds the position and the model must invent it. A slot
    is a reference token under M_DST that is no source (``hide="overlap"``): after the id rewrite
    it shares its position with the moved token there, which (composited) already shows that
    position's background. Slots and holes are paired in row-major order (a token is only a
    slot: its position comes from the ids and its content from the re-embedding); the surplus of
    either is left as it is. After those, an unused token of M_SRC under M_DST is a slot too [ours]:
    a rotated or scaled part (:func:`motion_map`) leaves some, and each shows the old content at a
    position the moved content now claims (a rigid move leaves none)."""
    used = rmap.used_source_mask
    holes = torch.nonzero((rmap.vacated_mask & used).reshape(-1)).flatten()
    free = rmap.dst_mask & ~used
    slots = torch.cat([torch.nonzero((free & ~rmap.src_mask).reshape(-1)).flatten(),
                       torch.nonzero((free & rmap.src_mask).reshape(-1)).flatten()])
    n = min(holes.numel(), slots.numel())
    return slots[:n], holes[:n]


def reference_position_ids(
    base_ids: torch.Tensor,
    grid_hw: Sequence[int],
    rmap: ReverseMap,
    *,
    keep_index: bool = True,
    index_value: float = 0.0,
    collision: str = "mean",
    vacated_offset: Sequence[float] | None = None,
) -> torch.Tensor:
    """Position ids of the reference tokens after the move (position-consistent attention).

    base_ids: (N, 3) or (B, N, 3) ids (index, h, w) of the reference tokens in row-major token
    order, N = h * w (ComfyUI Kontext: index 1, h = row + offset, w = col + offset). The
    reference token at src(q) gets the (h, w) ids of the token at q, for every q in M_DST; a
    token that is the source of several q gets their mean (``collision="mean"`` [guess]) or
    the first q in row-major order (``"first"``). ``keep_index=True`` keeps its index channel,
    otherwise moved tokens get ``index_value``. Tokens that are no source keep their ids;
    ``vacated_offset=(dx, dy)`` adds that offset (token units) to the ids of vacated tokens
    that are no source [guess: default None, they keep their ids]. Returns a new tensor.
    """
    if collision not in COLLISIONS:
        raise ValueError(f"collision must be one of {COLLISIONS}, got {collision!r}")
    h, w = _check_grid(grid_hw)
    if (h, w) != tuple(rmap.grid_hw):
        raise ValueError(f"grid_hw {(h, w)} differs from the reverse map's {tuple(rmap.grid_hw)}")
    if base_ids.shape[-1] != 3 or base_ids.shape[-2] != h * w or base_ids.dim() not in (2, 3):
        raise ValueError(
            f"base_ids must be (N, 3) or (B, N, 3) with N = {h}*{w} = {h * w}, "
            f"got {tuple(base_ids.shape)}"
        )
    squeeze = base_ids.dim() == 2
    ids = base_ids[None] if squeeze else base_ids
    out = ids.clone()
    dev = ids.device
    dst_idx, src_idx = (x.to(dev) for x in injection_pairs(rmap))
    if dst_idx.numel():
        pos = ids[:, dst_idx, 1:]  # (B, m, 2) (h, w) ids of the destinations
        if collision == "mean":
            acc = torch.zeros(ids.shape[0], h * w, 2, dtype=torch.float64, device=dev)
            acc.index_add_(1, src_idx, pos.to(torch.float64))
            cnt = torch.zeros(h * w, dtype=torch.float64, device=dev)
            cnt.index_add_(0, src_idx, torch.ones_like(src_idx, dtype=torch.float64))
            moved = torch.unique(src_idx)
            out[:, moved, 1:] = (acc[:, moved] / cnt[moved, None]).to(out.dtype)
        else:
            # dst_idx is ascending; a stable sort by source keeps the first q of each source first
            order = torch.sort(src_idx, stable=True).indices
            s_sorted = src_idx[order]
            first = torch.ones_like(s_sorted, dtype=torch.bool)
            first[1:] = s_sorted[1:] != s_sorted[:-1]
            moved = s_sorted[first]
            out[:, moved, 1:] = pos[:, order[first]]
        if not keep_index:
            out[:, moved, 0] = float(index_value)
    if vacated_offset is not None:
        dx, dy = (float(v) for v in vacated_offset)
        stay = (rmap.vacated_mask & ~rmap.used_source_mask).reshape(-1).to(dev)
        out[:, stay, 1] += dy
        out[:, stay, 2] += dx
    return out[0] if squeeze else out

