"""The LazyDrag initial latent (split from ``correspondence.py``; every name is re-exported
there): z_hat(x) = z_T(M(x)) on R_dst, seeded N(0, I) on R_inp, z_T(x) elsewhere, and the harmonic
fill of a region."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .correspondence import CorrespondenceMap


def _patchify(z: torch.Tensor) -> torch.Tensor:
    """(B, C, 2h, 2w) -> (B, C, 2, 2, h*w) token view (row-major tokens)."""
    B, C, H, W = z.shape
    return z.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(
        B, C, 2, 2, (H // 2) * (W // 2)
    )


def _unpatchify(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    B, C = t.shape[:2]
    return t.reshape(B, C, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(B, C, 2 * h, 2 * w)


def inpaint_noise(shape: Sequence[int], seed: int, device=None, dtype=None) -> torch.Tensor:
    """The N(0, I) noise that fills the vacated area: a CPU generator seeded with ``seed`` drawing
    the full latent's shape (so it does not depend on the map)."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(tuple(shape), generator=gen, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype or torch.float32)


def compose_initial_latent(
    z_T: torch.Tensor, cmap: CorrespondenceMap, seed: int = 0
) -> torch.Tensor:
    """New initial latent z_hat_T for a latent (B, C, 2h, 2w) (token = 2x2 latent patch).

    Destination tokens take z_T at M(x), inpaint tokens seeded N(0, I) noise (a CPU
    ``torch.Generator`` drawing the full latent's shape, so the noise does not depend on the map),
    the rest keep z_T. With a latent-pixel map (``cmap.fine``) [ours] the same is done per latent
    pixel: only the editable pixels move and only the vacated pixels become noise, so no source
    background travels with the object and no background around it is replaced by noise.
    Returns a new tensor; z_T is not modified.
    """
    if z_T.dim() != 4:
        raise ValueError(f"latent must be (B, C, H, W), got shape {tuple(z_T.shape)}")
    H, W = z_T.shape[-2:]
    h, w = cmap.grid_hw
    if H % 2 or W % 2 or (H // 2, W // 2) != (h, w):
        raise ValueError(
            f"latent {H}x{W} does not match the correspondence map's token grid {h}x{w} "
            f"(expected latent {2 * h}x{2 * w}); build the map for this image size"
        )
    dev = z_T.device
    noise = inpaint_noise(z_T.shape, seed, dev, z_T.dtype)
    if cmap.fine is not None:
        fm = cmap.fine
        flat = z_T.reshape(*z_T.shape[:2], H * W)
        out = flat.clone()
        src = fm.source.to(dev)
        dst = src >= 0
        out[..., dst] = flat[..., src[dst]]
        vac = fm.vacated.reshape(-1).to(dev)
        out[..., vac] = noise.reshape(*z_T.shape[:2], H * W)[..., vac]
        return out.reshape(z_T.shape)
    tok = _patchify(z_T)
    out = tok.clone()
    src = cmap.source_index().to(dev)
    dst = src >= 0
    out[..., dst] = tok[..., src[dst]]
    noise = _patchify(noise)
    inp = cmap.inpaint.reshape(-1).to(dev)
    out[..., inp] = noise[..., inp]
    return _unpatchify(out, h, w)


def harmonic_fill(latent: torch.Tensor, region: torch.Tensor, iters: int = 0) -> torch.Tensor:
    """[ours] ``latent`` (B, C, H, W) with ``region`` (H, W) replaced by the harmonic (membrane)
    interpolation of its surroundings: Jacobi iterations of the 4-neighbour mean, started from
    the mean of the ring around the region, boundary values fixed (image borders reflect).
    ``iters`` 0: 2·(H + W), enough for the fill to settle over the region's width.
    """
    region = region.to(device=latent.device, dtype=torch.bool)
    if not bool(region.any()):
        return latent.clone()
    H, W = region.shape
    ring = F.max_pool2d(region[None, None].float(), 3, 1, 1)[0, 0].bool() & ~region
    x = latent.clone().float()
    if bool(ring.any()):
        x[..., region] = x[..., ring].mean(-1, keepdim=True)
    for _ in range(iters or 2 * (H + W)):
        p = F.pad(x, (1, 1, 1, 1), mode="replicate")
        avg = 0.25 * (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:])
        x = torch.where(region, avg, x)
    return x.to(latent.dtype)


def content_pixels(latent: torch.Tensor, editable: torch.Tensor, contrast: float) -> torch.Tensor:
    """[ours] The painted pixels that carry content: (H, W) bool, those of ``editable`` whose
    latent stands out from the region's harmonic fill (:func:`harmonic_fill`, what the
    surroundings would continue into it) by at least ``contrast`` × the strongest such contrast
    of their connected part (8-connected; norm over channels, ``latent`` (C, H, W) or
    (1, C, H, W)). The rest of the painted region (a cast shadow, a penumbra, background painted
    with the object) changes with the scene, not with the object: it is vacated and filled,
    never carried to the target. ``contrast`` 0: every painted pixel (the paper moves the whole
    region)."""
    from .correspondence_fields import _components

    P = editable.to(torch.bool).cpu()
    if contrast <= 0 or not bool(P.any()):
        return P.clone()
    z = latent.detach().float().cpu()
    z = z[0] if z.dim() == 4 else z
    s = (z - harmonic_fill(z[None], P)[0]).norm(dim=0)
    lab = _components(P)
    keep = torch.zeros_like(P)
    for k in range(int(lab.max()) + 1):
        part = lab == k
        top = float(s[part].max())
        keep |= part & (s >= contrast * top) if top > 0 else part
    return keep
