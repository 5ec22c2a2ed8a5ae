"""The additive attention masks ContextDrag's controllers build (``attention_patches/contextdrag.py``):
bool → additive, widening to appended keys, hiding keys from query rows, appended keys seen only
by some rows. Pure torch; split from the controllers by concern."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch


def as_additive(mask: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """A 4-D additive float mask (bool masks: True = attend)."""
    if mask is None:
        return None
    m = torch.where(mask, 0.0, -torch.inf).to(dtype) if mask.dtype == torch.bool else mask.to(dtype)
    while m.ndim < 4:
        m = m.unsqueeze(0)
    return m


def pad_keys(mask: Optional[torch.Tensor], n_k: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """An additive mask widened to ``n_k`` key columns (new columns open)."""
    m = as_additive(mask, dtype)
    if m is None or m.shape[-1] == n_k:
        return m
    if m.shape[-1] > n_k:
        raise ValueError(f"mask has {m.shape[-1]} key columns, more than the {n_k} keys")
    return torch.nn.functional.pad(m, (0, n_k - m.shape[-1]))


def combine_masks(base: Optional[torch.Tensor], extra: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Sum of two additive masks (either may be None), widening the narrower to the other's keys."""
    if extra is None:
        return base
    if base is None:
        return extra
    n_k = max(base.shape[-1], extra.shape[-1])
    floats = [t.dtype for t in (extra, base) if t.dtype != torch.bool]
    dtype = floats[0] if floats else torch.float32
    return pad_keys(base, n_k, dtype) + pad_keys(extra, n_k, dtype)


def key_hiding_mask(n_q: int, n_k: int, rows: Sequence[slice], hidden_keys: torch.Tensor,
                    dtype: torch.dtype, device: Any) -> torch.Tensor:
    """Additive mask (1, 1, n_q, n_k): −inf at (r, c) for r in ``rows``, c in ``hidden_keys``."""
    m = torch.zeros(1, 1, n_q, n_k, dtype=dtype, device=device)
    cols = hidden_keys.to(device=device, dtype=torch.long)
    if cols.numel():
        for r in rows:
            m[0, 0, r].index_fill_(1, cols, -torch.inf)
    return m


def extras_mask(n_q: int, n_k: int, n_extra: int, visible_rows: Optional[Sequence[slice]],
                dtype: torch.dtype, device: Any, pairs: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """Additive mask (1, 1, n_q, n_k + n_extra) for ``n_extra`` keys appended after ``n_k``.

    ``visible_rows=None`` and no ``pairs``: the extras are visible to every query (returns None).
    Otherwise extras are hidden except from the rows in ``visible_rows`` and, with ``pairs``
    (long (n_extra,) query rows), each extra j from query ``pairs[j]`` only.
    """
    if visible_rows is None and pairs is None:
        return None
    m = torch.zeros(1, 1, n_q, n_k + n_extra, dtype=dtype, device=device)
    block = m[0, 0, :, n_k:]
    block.fill_(-torch.inf)
    for r in visible_rows or ():
        block[r] = 0.0
    if pairs is not None:
        block[pairs.to(device), torch.arange(n_extra, device=device)] = 0.0
    return m
