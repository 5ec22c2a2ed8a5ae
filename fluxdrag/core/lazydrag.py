"""LazyDrag attention control, the pure parts (Yin et al., arXiv 2509.12203; docs/lazydrag.md).

What the single-stream attention controls need, computed from a :class:`CorrespondenceMap`:

- background preservation (every step): background tokens' (Q, K, V) ← the inversion's, at the
  same position (so cached *rotated* q/k are already ``RoPE_x(Q̄_x)``);
- identity preservation (steps before the activation step): for x ∈ R_dst ∪ R_trans one extra
  key/value ``RoPE_x(K̄_M̃(x))``, ``V̄_M̃(x)`` appended, M̃ = M on R_dst and identity on R_trans;
  text queries are masked from the extras by default [guess: the paper is silent; CharaConsist
  masks them];
- gated output merging (same steps): ``y_x ← (1 − γ) y_x + γ ȳ_M(x)`` on R_dst with
  γ = h_t · A(x). The decay h_t [guess, the paper says it "follows CharaConsist"]: ``h_max`` for the
  first ``hold`` fraction of the sampling steps, then cosine to 0 at the ``end`` fraction
  (CharaConsist's 0.8 for steps 1–10, cosine over 11–30 of 50 → hold 0.2, end 0.6).

Also the cache size arithmetic used to refuse over-budget runs and by ``bench/lazydrag.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .correspondence import CorrespondenceMap


@dataclass
class LazyDragIndices:
    """Flat row-major image-token indices for the three controls."""

    bg: torch.Tensor          # (n_bg,) background tokens
    id_dst: torch.Tensor      # (n_id,) tokens that get an extra K/V (R_dst ∪ R_trans)
    id_src: torch.Tensor      # (n_id,) M̃(x) for each
    id_src_unique: torch.Tensor  # (n_uid,) distinct M̃ sources (what the cache stores)
    id_src_pos: torch.Tensor  # (n_id,) position of id_src[i] in id_src_unique
    y_dst: torch.Tensor       # (n_y,) destination tokens (gated merge)
    y_src_unique: torch.Tensor   # (n_uy,) distinct M(x) sources
    y_src_pos: torch.Tensor   # (n_y,)
    y_weight: torch.Tensor    # (n_y,) A(x)

    @property
    def n_tokens(self) -> int:
        return int(self.bg.numel() + self.id_dst.numel())


def lazydrag_indices(cmap: CorrespondenceMap) -> LazyDragIndices:
    """Index sets for background / identity / output control from a correspondence map."""
    bg = torch.nonzero(cmap.background.reshape(-1)).flatten()
    mt = cmap.id_source_index()
    id_dst = torch.nonzero(mt >= 0).flatten()
    id_src = mt[id_dst]
    id_u, id_pos = torch.unique(id_src, return_inverse=True)
    m = cmap.source_index()
    y_dst = torch.nonzero(m >= 0).flatten()
    y_u, y_pos = torch.unique(m[y_dst], return_inverse=True)
    wgt = cmap.weight.reshape(-1)[y_dst].to(torch.float32)
    return LazyDragIndices(bg=bg, id_dst=id_dst, id_src=id_src, id_src_unique=id_u,
                           id_src_pos=id_pos.reshape(-1), y_dst=y_dst, y_src_unique=y_u,
                           y_src_pos=y_pos.reshape(-1), y_weight=wgt)


def output_gate(step: float, total_steps: int, h_max: float = 0.8, hold: float = 0.2,
                end: float = 0.6) -> float:
    """h_t of the gated merge at sampling step ``step`` of ``total_steps`` [guess, see module doc]."""
    if total_steps <= 0:
        return 0.0
    f = float(step) / float(total_steps)
    if f < hold:
        return h_max
    if f >= end or end <= hold:
        return 0.0
    return h_max * 0.5 * (1.0 + math.cos(math.pi * (f - hold) / (end - hold)))


def activation_sigma(sigmas: torch.Tensor, fraction: float) -> float:
    """Identity/output control is on while σ > this value: the first round(fraction·N) steps.

    The paper activates them for 40 of 50 steps (fraction 0.8), scaled here to any step count.
    """
    n = len(sigmas) - 1
    act = max(0, min(n, int(round(fraction * n))))
    if act == 0:
        return float("inf")
    return float(sigmas[act]) + 1e-7


def extra_kv_mask(n_q: int, n_k: int, n_extra: int, n_txt_rows: slice | None, dtype: torch.dtype,
                  device: torch.device, base: torch.Tensor | None = None) -> torch.Tensor | None:
    """Additive attention mask (1, 1, n_q, n_k + n_extra) hiding the extras from ``n_txt_rows``.

    ``base`` (an existing additive mask over the first n_k keys) is kept; extra columns are open
    unless masked. Returns None when nothing is masked.
    """
    if n_txt_rows is None and base is None:
        return None
    m = torch.zeros(1, 1, n_q, n_k + n_extra, dtype=dtype, device=device)
    if base is not None:
        b = base if base.dtype != torch.bool else torch.where(base, 0.0, -torch.inf).to(dtype)
        while b.ndim < 4:
            b = b.unsqueeze(0)
        m = m.expand(b.shape[0], b.shape[1], n_q, n_k + n_extra).clone()
        m[..., :n_k] = b
    if n_txt_rows is not None:
        m[..., n_txt_rows, n_k:] = -torch.inf
    return m


def gated_merge(y: torch.Tensor, y_cached: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """(1 − γ)·y + γ·ȳ per token; y, ȳ (B, n, C), γ (n,)."""
    g = gamma.to(y.dtype).reshape(1, -1, 1)
    return (1 - g) * y + g * y_cached.to(y.dtype)


def estimate_cache_bytes(n_blocks: int, n_keys: int, n_active_keys: int, n_bg: int, n_uid: int,
                         n_uy: int, hidden: int, batch: int = 1, bytes_per_element: int = 2,
                         bg_tensors: int = 3) -> int:
    """Bytes LazyDrag's cache holds: per block and step, background q,k,v (``bg_tensors`` 2: k,v
    only, the query stays live); per block and active step also the identity sources' k,v and the
    merge sources' attention outputs."""
    per_bg = bg_tensors * n_bg * hidden
    per_active = (2 * n_uid + n_uy) * hidden
    return int(n_blocks * batch * bytes_per_element * (n_keys * per_bg + n_active_keys * per_active))
