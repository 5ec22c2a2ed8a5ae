"""What ContextDrag's patches read from a latent reverse map (``core/reverse_mapping.py``):
the sub-token shifts of the moved content,
and the reference tokens' position ids for position-consistent attention (docs/contextdrag.md)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .geometry import round_half_up
from .reverse_mapping import COLLISIONS, ReverseMap, _check_grid, injection_pairs, reverse_lookup


def subtoken_shifts(rmap: ReverseMap, patch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(src_flat_idx (n,) long, shift (n, 2) long (dx, dy) in latent pixels): for each reference
    token that is a source, the latent-pixel offset of its content that puts it where the drag
    really ends, below the token grid [guess; ContextDrag works on whole tokens].

    A token holds ``patch`` × ``patch`` latent pixels. The destination q shows the reference token
    s = src(q), but the drag asks for the content at the continuous source q + W(q)
    (:func:`reverse_lookup`); their difference, in latent pixels round(patch · (q + W(q) − s)),
    is the shift (within ±(patch − 1)). A token that is the source of several destinations takes
    the first one's (row-major); a destination whose source is more than half a token from q + W(q)
    (an anchor held in place) gives no shift."""
    dst_idx, src_idx = injection_pairs(rmap)
    if not dst_idx.numel():
        return src_idx, torch.zeros(0, 2, dtype=torch.long)
    w = rmap.grid_hw[1]
    q = torch.stack([dst_idx % w, dst_idx // w], 1).to(torch.float64)
    s = torch.stack([src_idx % w, src_idx // w], 1).to(torch.float64)
    prm = rmap.params
    back = reverse_lookup(q, rmap.handles, rmap.targets, anchor=prm.get("anchor", "target"),
                          power=prm.get("power", 2.0), eps=prm.get("eps", 1e-12),
                          fixed_point_iters=prm.get("fixed_point_iters", 5))
    frac = back - s
    shift = round_half_up(frac * patch).long().clamp(-(patch - 1), patch - 1)
    shift[(frac.abs() > 0.5 + 1e-9).any(1)] = 0
    order = torch.sort(src_idx, stable=True).indices
    s_sorted = src_idx[order]
    first = torch.ones_like(s_sorted, dtype=torch.bool)
    first[1:] = s_sorted[1:] != s_sorted[:-1]
    return s_sorted[first], shift[order[first]]


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
