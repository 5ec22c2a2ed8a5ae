"""Rotary position helpers on explicit tensors, using ComfyUI's own FLUX RoPE kernel.

The attention override receives q and k *after* RoPE. FLUX's rotary embedding rotates each pair
of channels by an angle that depends on the token's (index, h, w) ids, so it is undone exactly by
the transposed rotation. Re-encoding a cached key at another grid position (LazyDrag's
``RoPE_x(K̄_M(x))``, arXiv 2509.12203) is un-rotate with the source position, rotate with the
destination position.
"""
from __future__ import annotations

import torch


def _apply(x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    from comfy.ldm.flux.math import apply_rope1

    return apply_rope1(x, pe.contiguous())


def rope_rotate(x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """RoPE_pe(x) for x (B, heads, n, D) and pe (B, 1, n, D/2, 2, 2)."""
    return _apply(x, pe)


def rope_unrotate(x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rope_rotate` (the transposed rotation)."""
    return _apply(x, pe.transpose(-1, -2))


def rope_reencode(x: torch.Tensor, pe_from: torch.Tensor, pe_to: torch.Tensor) -> torch.Tensor:
    """Move rotated tokens from the positions of ``pe_from`` to those of ``pe_to``."""
    return rope_rotate(rope_unrotate(x, pe_from), pe_to)


def pe_tokens(pe: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of a rotary table for the given token indices (along the sequence axis)."""
    return pe.index_select(2, index.to(pe.device))
