"""The toy world's latent space: a fixed orthonormal basis of R^16 (object signatures and the
background subspace), pixel geometry, the pack's RLE masks, the fixed RGB view and detection of
objects by their signature.

Layout (a fixed orthonormal basis of R^16, seeded):
  * rows 0..PALETTE_SIZE-1 are the object signatures s_k; an object of palette k has
    <x, s_k> ≈ OBJECT_AMPLITUDE on its pixels;
  * the remaining rows span the background subspace; backgrounds (and the v3 world's light and
    shadows) live only there, so ``detect_objects`` finds objects by correlation with s_k without
    being fooled by the background.

Geometry: points are (x, y) = (column, row) in image pixels; a latent pixel (r, c) covers image
pixels [8c, 8c+8) × [8r, 8r+8) and is rendered at its centre (8c+4, 8r+4).
Pure torch; never imports comfy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.geometry import connected_components
from ..core.instructions import rle_decode as core_rle_decode
from ..core.instructions import rle_encode as core_rle_encode

LATENT_CHANNELS = 16
PALETTE_SIZE = 6
OBJECT_AMPLITUDE = 2.0
PIXELS_PER_LATENT = 8

BASIS_SEED = 20240917

_PALETTE_RGB = torch.tensor([
    [0.90, 0.20, 0.20], [0.20, 0.80, 0.25], [0.25, 0.35, 0.95],
    [0.95, 0.85, 0.20], [0.85, 0.25, 0.85], [0.20, 0.85, 0.90],
])


def _basis() -> torch.Tensor:
    """Fixed orthonormal basis (16, 16) by Gram-Schmidt on seeded Gaussian rows (float64)."""
    g = torch.Generator().manual_seed(BASIS_SEED)
    a = torch.randn(LATENT_CHANNELS, LATENT_CHANNELS, generator=g, dtype=torch.float64)
    rows = []
    for v in a:
        for u in rows:
            v = v - (v @ u) * u
        rows.append(v / v.norm())
    return torch.stack(rows)


_Q = _basis()
SIGNATURES = _Q[:PALETTE_SIZE].float()          # (P, 16) unit rows
BG_BASIS = _Q[PALETTE_SIZE:].float()            # (16-P, 16) unit rows, ⟂ SIGNATURES


def _palette_extras() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(BASIS_SEED + 1)
    nb = BG_BASIS.shape[0]
    tint = torch.randn(PALETTE_SIZE, nb, generator=g) * 0.25 @ BG_BASIS       # (P, 16)
    tex = torch.randn(PALETTE_SIZE, nb, generator=g)
    tex = tex / tex.norm(dim=1, keepdim=True) @ BG_BASIS                       # (P, 16)
    return tint, tex


_TINT, _TEX_DIR = _palette_extras()


def pixel_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-pixel coordinates (x, y) of the latent pixel centres, each (H, W)."""
    ys = torch.arange(h, dtype=torch.float32) * PIXELS_PER_LATENT + PIXELS_PER_LATENT / 2
    xs = torch.arange(w, dtype=torch.float32) * PIXELS_PER_LATENT + PIXELS_PER_LATENT / 2
    return xs[None, :].expand(h, w), ys[:, None].expand(h, w)



# ----------------------------------------------------------------------------- masks / RLE

def rle_encode(mask: torch.Tensor) -> dict:
    """Pack's RLE: run lengths alternating 0/1 starting with 0, row-major over (H, W)."""
    return core_rle_encode(mask.bool())


def rle_decode(rle: dict) -> torch.Tensor:
    """Inverse of ``rle_encode``: (H, W) bool."""
    return core_rle_decode(rle)


def latent_mask_to_pixels(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) latent mask → (8H, 8W) pixel mask (nearest)."""
    return mask.repeat_interleave(PIXELS_PER_LATENT, 0).repeat_interleave(PIXELS_PER_LATENT, 1)


# ----------------------------------------------------------------------------- RGB view

def _rgb_matrix() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(BASIS_SEED + 2)
    m = (_PALETTE_RGB - 0.5).T @ SIGNATURES / (0.8 * OBJECT_AMPLITUDE)        # (3, 16)
    m = m + torch.randn(3, BG_BASIS.shape[0], generator=g) * 0.07 @ BG_BASIS
    return m, torch.full((3,), 0.5)


_RGB_M, _RGB_B = _rgb_matrix()


def to_rgb(latent: torch.Tensor) -> torch.Tensor:
    """Fixed 16→RGB projection, nearest-upsampled ×8 so coordinates match the image.

    (16, H, W) → (3, 8H, 8W), or (B, 16, H, W) → (B, 3, 8H, 8W); values in [0, 1].
    """
    single = latent.dim() == 3
    x = latent[None] if single else latent
    rgb = torch.einsum("bchw,dc->bdhw", x.float(), _RGB_M) + _RGB_B[None, :, None, None]
    rgb = rgb.clamp(0, 1).repeat_interleave(PIXELS_PER_LATENT, 2).repeat_interleave(PIXELS_PER_LATENT, 3)
    return rgb[0] if single else rgb


# ----------------------------------------------------------------------------- detection

@dataclass
class Detection:
    mask: torch.Tensor                    # (H, W) bool, largest connected blob
    centre: tuple[float, float] | None    # (x, y) px, None when nothing found
    area: int                             # latent pixels in the blob
    total: int                            # latent pixels above threshold anywhere
    score: float                          # mean correlation inside the blob / OBJECT_AMPLITUDE


def _components(mask: torch.Tensor) -> list[list[tuple[int, int]]]:
    """8-connected blobs of a bool (H, W) mask as (y, x) pixel lists, in row-major order of
    their first pixel."""
    labels = connected_components(mask.bool())
    n = int(labels.max()) + 1 if labels.numel() else 0
    return [[(y, x) for y, x in torch.nonzero(labels == k).tolist()] for k in range(n)]


def signature_map(latent: torch.Tensor, signature: torch.Tensor | int) -> torch.Tensor:
    """Per-pixel correlation <x, s> (H, W) with a signature row or a palette index."""
    s = SIGNATURES[signature] if isinstance(signature, int) else signature
    return torch.einsum("chw,c->hw", latent.float(), s.float() / s.float().norm())


def detect_objects(latent: torch.Tensor, signature: torch.Tensor | int,
                   threshold: float = 0.5) -> Detection:
    """Find the object painted with ``signature`` by correlation.

    Pixels with <x, s> > threshold·OBJECT_AMPLITUDE are candidates; the largest 8-connected blob
    is the object. ``threshold`` = 0.5 [guess]: halfway between background (0) and object (A).
    """
    corr = signature_map(latent, signature)
    cand = corr > threshold * OBJECT_AMPLITUDE
    comps = _components(cand)
    h, w = corr.shape
    if not comps:
        return Detection(torch.zeros(h, w, dtype=torch.bool), None, 0, 0, 0.0)
    best = max(comps, key=len)
    mask = torch.zeros(h, w, dtype=torch.bool)
    idx = torch.tensor(best)
    mask[idx[:, 0], idx[:, 1]] = True
    x, y = pixel_grid(h, w)
    cx = float(x[mask].mean())
    cy = float(y[mask].mean())
    score = float(corr[mask].mean()) / OBJECT_AMPLITUDE
    return Detection(mask, (cx, cy), len(best), int(cand.sum()), score)


def detect_all(latent: torch.Tensor, min_area: int = 4, purity: float = 0.7,
               threshold: float = 0.5) -> dict[int, Detection]:
    """Palette index → detection, for every signature whose largest blob is an object.

    A blob counts when it has at least ``min_area`` latent pixels and holds at least ``purity``
    of all pixels above threshold for that signature (noise gives many scattered pixels, a scene
    one compact blob) [guess: 4 px, 0.7].
    """
    out = {}
    for k in range(PALETTE_SIZE):
        d = detect_objects(latent, k, threshold)
        if d.area >= min_area and d.area >= purity * d.total:
            out[k] = d
    return out
