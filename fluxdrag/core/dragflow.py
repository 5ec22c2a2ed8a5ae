"""DragFlow's region-level affine supervision in pure torch (docs/dragflow.md).

DragFlow (arXiv 2510.02253) edits by optimising the latent z at one timestep so that the
FLUX image-stream features F(z) inside each region, at its current pose A_k(p), match the
original features F_orig warped by A_k(p):

    L(z) = Σ_k w_k · mean | M_k ⊙ F(z) − M_k ⊙ warp(F_orig, A_k(p)) |
    M_k  = warp(R_k, A_k(p)) > 0.5                     (R_k: the region's initial mask)
    z ← (1 − M_bg) ⊙ z_bg + M_bg ⊙ (z − lr · ∇_z L)    (hard background constraint)

with p = (τ+1)/50 during TRANSPORT (τ < 50) and p = 1 during INTENSIFY (20 more iterations),
plain gradient descent, lr 1000, and adaptive region weights w_k. This module holds the
schedule, weights, feature unpacking, the loss and the loop, written against any
differentiable ``feature_fn(z) -> F`` so it can be tested without a model. Region geometry
and the editable mask M_bg live in :mod:`.affine`. Written from the paper and docs/dragflow.md only.

Documented guesses ([guess], each a parameter with the guess as default):
- ``scale_level``: "full" resolution is the *image* resolution and the level is a divisor, so
  features are compared on a (H/level)×(W/level) grid (the fixed rule keeps the mean side near
  256 cells). The adaptive rule's "scale = 30 / mean drag" is a resize factor, returned here as
  the divisor mean_drag / 30, so the mean drag spans 30 cells of the feature grid.
- region masks are brought to the feature grid by area majority (``resize_mask`` "majority"),
  falling back to "any" when a small region would vanish;
- ``use_grad_mask`` multiplies the gradient by M_bg before the step (the hard constraint after
  the step makes this a no-op for a binary mask; it matters for soft masks);
- ``early_stop_tol`` (off by default) ends INTENSIFY once the loss is at or below it.

Also here: :func:`paired_fireflow`, the edited and original branches sampled in lockstep with
the hard background constraint after every step. The K/V injection layer sets are in
:mod:`.dragflow_layers`; the validated edit plan in :mod:`.dragflow_plan`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .affine import Region, resize_mask, warp_mask, warp_region, warp_with_affine

# ----------------------------------------------------------------------------- schedule/weights


def progressive_weight(tau: int, n_transport: int = 50) -> float:
    """Progress p at iteration τ (0-based): (τ+1)/n_transport in TRANSPORT, then 1 (INTENSIFY)."""
    if n_transport <= 0 or tau >= n_transport:
        return 1.0
    return (tau + 1) / n_transport


def region_weights(
    areas_frac: Sequence[float] | torch.Tensor,
    gain: float = 0.5,
    offset: float = 0.1,
    w_min: float = 1.0,
    w_max: float = 5.0,
) -> torch.Tensor:
    """Adaptive region weights: w_k ∝ clamp(1 + gain/(s_k + offset), w_min, w_max), Σ w_k = 1.

    s_k = region area / image area. Small regions get up to 5× the weight of large ones."""
    s = torch.as_tensor(areas_frac, dtype=torch.float64).reshape(-1)
    if s.numel() == 0:
        raise ValueError("region_weights needs at least one region")
    w = torch.clamp(1.0 + gain / (s + offset), w_min, w_max)
    return w / w.sum()


def scale_level(
    image_hw: tuple[int, int],
    mean_drag_px: float,
    use_adaptive: bool = False,
    target_drag_px: float = 30.0,
) -> float:
    """Divisor from image resolution to the feature ("cut") grid (see module docstring [guess]).

    Fixed rule on the mean side (H+W)/2: 4 if > 1000, 3 if > 600, else 2. With
    ``use_adaptive`` and a mean drag ≥ ``target_drag_px`` (30 px), the divisor is
    mean_drag / 30 instead (the notes' scale 30/mean distance as a resize factor)."""
    H, W = image_hw
    if use_adaptive and mean_drag_px >= target_drag_px:
        return float(mean_drag_px) / float(target_drag_px)
    mean_side = (H + W) / 2.0
    if mean_side > 1000:
        return 4.0
    if mean_side > 600:
        return 3.0
    return 2.0


def feature_grid_hw(image_hw: tuple[int, int], level: float) -> tuple[int, int]:
    """Feature grid (h, w) = round(image side / level), at least 1."""
    H, W = image_hw
    return max(1, round(H / level)), max(1, round(W / level))


def mean_drag_distance(regions: Sequence[Region], image_hw: tuple[int, int] | None = None) -> float:
    """Mean |target − begin| over regions, in image pixels when ``image_hw`` is given (each
    region's distance is rescaled from its mask grid), else in the regions' own units."""
    if not regions:
        raise ValueError("no regions")
    ds = []
    for r in regions:
        d = r.drag_distance
        if image_hw is not None:
            sy, sx = image_hw[0] / r.hw[0], image_hw[1] / r.hw[1]
            d = math.hypot((r.target[0] - r.begin[0]) * sx, (r.target[1] - r.begin[1]) * sy)
        ds.append(d)
    return sum(ds) / len(ds)


# ----------------------------------------------------------------------------- features


def patchify(x: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """FLUX packing ``b c (h ph) (w pw) -> b (h w) (c ph pw)``: (B, C, 2h, 2w) → (B, h·w, 4C)."""
    B, C, H2, W2 = x.shape
    if H2 % patch or W2 % patch:
        raise ValueError(f"spatial size {(H2, W2)} is not a multiple of {patch}")
    h, w = H2 // patch, W2 // patch
    x = x.reshape(B, C, h, patch, w, patch).permute(0, 2, 4, 1, 3, 5)  # b h w c ph pw
    return x.reshape(B, h * w, C * patch * patch)


def unpack_token_features(
    tokens: torch.Tensor, grid_hw: tuple[int, int], patch: int = 2
) -> torch.Tensor:
    """Inverse of :func:`patchify`: token features (B, h·w, C) → maps (B, C/4, 2h, 2w).

    Each token's C channels are read as C/4 channels × 2×2 sub-cells in FLUX's (c, ph, pw)
    order, so a 3072-wide hidden state gives a 768-channel map at latent resolution."""
    B, N, C = tokens.shape
    h, w = grid_hw
    if N != h * w:
        raise ValueError(f"{N} tokens do not form a {h}×{w} grid")
    if C % (patch * patch):
        raise ValueError(f"token width {C} is not divisible by {patch * patch}")
    c = C // (patch * patch)
    x = tokens.reshape(B, h, w, c, patch, patch).permute(0, 3, 1, 4, 2, 5)  # b c h ph w pw
    return x.reshape(B, c, h * patch, w * patch)


def token_maps(tokens: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Token features (B, h·w, C) → a map (B, C, h, w) on the model's own token grid (ours: no
    2×2 unpacking, no resize — one cell per token, the grid the model computes on)."""
    B, N, C = tokens.shape
    h, w = grid_hw
    if N != h * w:
        raise ValueError(f"{N} tokens do not form a {h}×{w} grid")
    return tokens.transpose(1, 2).reshape(B, C, h, w)


def cut_features(maps: Sequence[torch.Tensor], grid_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear-resize each (B, C_i, h, w) map to ``grid_hw`` and concatenate the channels."""
    out = []
    for m in maps:
        if tuple(m.shape[-2:]) != tuple(grid_hw):
            m = F.interpolate(m, size=tuple(grid_hw), mode="bilinear", align_corners=False)
        out.append(m)
    return torch.cat(out, dim=1)


# ----------------------------------------------------------------------------- loss


def region_targets(
    F_orig: torch.Tensor,
    region_masks: Sequence[torch.Tensor],
    affines: Sequence[torch.Tensor],
    target_mode: str = "bilinear",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per region (M_k, T_k): the region mask at pose A_k, (1, 1, h, w) in F's dtype, and the
    warped original features T_k = warp(F_orig, A_k). Masks and affines are on F's grid."""
    out = []
    with torch.no_grad():
        for mask, A in zip(region_masks, affines):
            M = warp_mask(torch.as_tensor(mask).bool().to(F_orig.device), A)
            T = warp_with_affine(F_orig, A, mode=target_mode)
            out.append((M.reshape(1, 1, *M.shape[-2:]).to(F_orig.dtype), T))
    return out


def masked_l1(
    F_cur: torch.Tensor,
    targets: Sequence[tuple[torch.Tensor, torch.Tensor]],
    weights: torch.Tensor | Sequence[float],
) -> torch.Tensor:
    """Σ_k w_k · mean |M_k ⊙ F_cur − M_k ⊙ T_k| (mean over every element of F)."""
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if w.numel() != len(targets):
        raise ValueError(f"{w.numel()} weights for {len(targets)} regions")
    loss = F_cur.new_zeros(())
    for wk, (M, T) in zip(w.tolist(), targets):
        loss = loss + wk * (M * F_cur - M * T).abs().mean()
    return loss


def affine_feature_loss(
    F_cur: torch.Tensor,
    F_orig: torch.Tensor,
    region_masks: Sequence[torch.Tensor],
    affines: Sequence[torch.Tensor],
    weights: torch.Tensor | Sequence[float],
) -> torch.Tensor:
    """DragFlow's region affine loss L = Σ_k w_k · mean |M_k⊙F − M_k⊙warp(F_orig, A_k)|.

    F_cur, F_orig: (B, C, h, w); ``region_masks``: initial region masks R_k (h, w) on the
    same grid; ``affines``: A_k(p) in that grid's coordinates; M_k = warp(R_k, A_k) > 0.5."""
    if F_cur.shape != F_orig.shape:
        raise ValueError(f"feature shapes differ: {tuple(F_cur.shape)} vs {tuple(F_orig.shape)}")
    return masked_l1(F_cur, region_targets(F_orig, region_masks, affines), weights)


def hard_background_constraint(
    z: torch.Tensor, z_bg: torch.Tensor, edit_mask: torch.Tensor
) -> torch.Tensor:
    """(1 − M) ⊙ z_bg + M ⊙ z. A bool M selects exactly (outside M the result is bitwise
    z_bg); a float M blends. M broadcasts against z, e.g. (h, w) or (B, 1, h, w)."""
    M = edit_mask.to(z.device)
    if M.dtype == torch.bool:
        return torch.where(M, z, z_bg)
    M = M.to(z.dtype)
    return (1 - M) * z_bg + M * z


def fill_from_surroundings(x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, h, w) with the ``hole`` (h, w) pixels filled from outside in: each round, every
    hole pixel with known 8-neighbours takes their mean and becomes known (onion peeling)."""
    out = x.clone()
    known = ~hole.bool().to(x.device)
    if bool(known.all()) or not bool(known.any()):
        return out
    kernel = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
    B, C, h, w = x.shape
    while not bool(known.all()):
        k = known.to(x.dtype)[None, None]
        cnt = F.conv2d(k, kernel, padding=1)[0, 0]
        s = F.conv2d((out * k).reshape(B * C, 1, h, w), kernel, padding=1).reshape(B, C, h, w)
        front = ~known & (cnt > 0)
        out = torch.where(front, s / cnt.clamp(min=1), out)
        known = known | front
    return out


def fill_by_shift(x: torch.Tensor, hole: torch.Tensor, avoid: torch.Tensor | None = None,
                  radius: int = 16, ring: int = 2) -> torch.Tensor:
    """[ours] ``x`` (B, C, h, w) with the ``hole`` (h, w) cells copied from the same image at one
    offset d: the d (0 < |d|∞ ≤ ``radius`` cells) whose copy of the ``ring`` cells around the hole
    best matches them (mean squared difference), among the offsets that take every hole cell to
    a known cell inside the image outside ``hole`` and ``avoid``. A periodic background (stripes,
    a checker) is continued instead of blurred. The offset is chosen on the rim's outer cells and
    checked on its inner ring (the cells next to the hole): when :func:`fill_from_surroundings`
    predicts that ring better from outside (a smooth background), or no offset is valid, the hole
    is filled that way instead. [guess] one offset for the whole hole, a rim of 2 cells, offsets
    within 16 cells."""
    hole = hole.bool().to(x.device)
    if not bool(hole.any()) or bool(hole.all()):
        return fill_from_surroundings(x, hole)
    h, w = hole.shape
    bad = hole if avoid is None else hole | avoid.bool().to(x.device)
    grown = F.max_pool2d(hole.float()[None, None], 2 * ring + 1, stride=1, padding=ring)[0, 0] > 0
    inner = (F.max_pool2d(hole.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0) & ~bad
    rim = grown & ~bad & ~inner
    hy, hx = torch.nonzero(hole, as_tuple=True)
    ry, rx = torch.nonzero(rim, as_tuple=True)
    if ry.numel() == 0:
        return fill_from_surroundings(x, hole)
    best, best_d = None, None
    R = int(radius)
    for dy in range(-R, R + 1):
        for dx in range(-R, R + 1):
            if dy == 0 and dx == 0:
                continue
            sy, sx = hy + dy, hx + dx
            if bool(((sy < 0) | (sy >= h) | (sx < 0) | (sx >= w)).any()) or bool(bad[sy, sx].any()):
                continue
            qy, qx = ry + dy, rx + dx
            ok = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
            ok = ok & ~bad[qy.clamp(0, h - 1), qx.clamp(0, w - 1)]
            if int(ok.sum()) * 2 < ry.numel():
                continue
            err = float((x[..., qy[ok], qx[ok]] - x[..., ry[ok], rx[ok]]).pow(2).mean())
            if best is None or err < best:
                best, best_d = err, (dy, dx)
    if best_d is None:
        return fill_from_surroundings(x, hole)
    iy, ix = torch.nonzero(inner, as_tuple=True)
    if iy.numel():  # which fill predicts the ring next to the hole better from outside it
        smooth = fill_from_surroundings(x, hole | inner)[..., iy, ix]
        qy, qx = (iy + best_d[0]).clamp(0, h - 1), (ix + best_d[1]).clamp(0, w - 1)
        valid = ~bad[qy, qx] & (iy + best_d[0] == qy) & (ix + best_d[1] == qx)
        shifted = torch.where(valid, x[..., qy, qx], smooth)
        truth = x[..., iy, ix]
        if float((shifted - truth).pow(2).mean()) >= float((smooth - truth).pow(2).mean()):
            return fill_from_surroundings(x, hole)
    out = x.clone()
    out[..., hy, hx] = x[..., hy + best_d[0], hx + best_d[1]]
    return out


def region_edit_mask(region_masks: Sequence[torch.Tensor], affines: Sequence[torch.Tensor],
                     out_hw: tuple[int, int], dilate: int = 0) -> torch.Tensor:
    """[ours] A tight editable mask: the cells touching any region or its moved copy ("any"
    rule), grown by ``dilate`` cells (a square neighbourhood) so the edit can blend in. The
    paper's M_bg is the minimum-area rectangle around both (``affine.background_edit_mask``),
    whose background the edited branch must then regenerate."""
    out = torch.zeros(tuple(out_hw), dtype=torch.bool)
    for m, A in zip(region_masks, affines):
        m = torch.as_tensor(m).bool().cpu()
        out |= resize_mask(m | warp_mask(m, A), tuple(out_hw), "any")
    if dilate > 0:
        k = 2 * int(dilate) + 1
        out = F.max_pool2d(out.float()[None, None], k, stride=1, padding=int(dilate))[0, 0] > 0
    return out


def vacated_mask(regions: Sequence[Region], grid_hw: tuple[int, int],
                 mask_rule: str = "majority") -> torch.Tensor:
    """The area the regions leave on ``grid_hw`` (e.g. the latent): cells touching any region
    ("any" rule) that no moved copy covers — the copies placed exactly as :func:`moved_start`
    places them (the region on the grid by ``mask_rule``, warped, threshold 0.5)."""
    grid = tuple(grid_hw)
    src = torch.zeros(grid, dtype=torch.bool)
    dst = torch.zeros(grid, dtype=torch.bool)
    for r, m in zip(regions, _regions_on_grid(regions, grid, mask_rule)):
        src |= resize_mask(r.mask, grid, "any") if r.hw != grid else r.mask
        dst |= warp_mask(m, r.affine(1.0, grid), outline=True)
    return src & ~dst


def destination_mask(regions: Sequence[Region], grid_hw: tuple[int, int],
                     mask_rule: str = "majority") -> torch.Tensor:
    """The cells of ``grid_hw`` the regions' moved copies cover, placed exactly as
    :func:`moved_start` places them (bool (h, w))."""
    grid = tuple(grid_hw)
    dst = torch.zeros(grid, dtype=torch.bool)
    for r, m in zip(regions, _regions_on_grid(regions, grid, mask_rule)):
        dst |= warp_mask(m, r.affine(1.0, grid), outline=True)
    return dst


def near_tokens(mask: torch.Tensor, margin: int, patch: int = 2) -> torch.Tensor:
    """The latent cells (bool (h, w)) of every token (``patch``×``patch`` cells) that holds a cell
    of ``mask`` or lies within ``margin`` tokens of one (a square neighbourhood); margin < 0: none."""
    h, w = mask.shape[-2:]
    if margin < 0 or h % patch or w % patch:
        return torch.zeros((h, w), dtype=torch.bool) if margin < 0 else mask.bool().clone()
    tok = mask.bool().reshape(h // patch, patch, w // patch, patch).any(3).any(1).float()
    if margin > 0:
        tok = F.max_pool2d(tok[None, None], 2 * margin + 1, stride=1, padding=margin)[0, 0]
    return tok.bool().repeat_interleave(patch, 0).repeat_interleave(patch, 1)


def hole_start(z: torch.Tensor, x0: torch.Tensor, hole: torch.Tensor, sigma: float,
               seed: int = 0, fill_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[ours] The start latent with the vacated area re-drawn as a fresh sample of the flow's
    interpolation z_σ = (1 − σ)·x̂ + σ·ε: x̂ = the background around the hole
    (``fill_from_surroundings`` of the source x₀), ε = new Gaussian noise (seeded). A
    deterministic inversion's noise still encodes the object there (at σ₀ ≈ 0.9 it is 90 % of
    the latent), so only fresh noise lets the sampler regenerate the hole as background.
    ``fill_mask`` (default ``hole``): the area filled from its surroundings (e.g. the whole
    vacated area when only part of it is re-drawn)."""
    if not bool(hole.any()):
        return z
    filled = fill_from_surroundings(x0, hole if fill_mask is None else fill_mask)
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    eps = torch.randn(z.shape, generator=g, dtype=torch.float32).to(z.device, z.dtype)
    fresh = (1.0 - sigma) * filled + sigma * eps
    return torch.where(hole.to(z.device), fresh, z)


WARP_MODE = "nearest"


def moved_start(z: torch.Tensor, z_src: torch.Tensor, regions: Sequence[Region],
                mask_rule: str = "majority") -> torch.Tensor:
    """[ours] ``z`` with each region's destination cells taken from ``z_src`` (the inverted
    latent) moved by the region's final affine: the object's own inverted latent — its colour and
    texture, which features late in the network at a high σ barely pin — starts where it must
    end. Regions are rescaled to z's grid; later regions win where destinations overlap."""
    grid = tuple(z.shape[-2:])
    out = z.clone()
    for r, m in zip(regions, _regions_on_grid(regions, grid, mask_rule)):
        A = r.affine(1.0, grid)
        dst, moved = warp_region(z_src, m.to(z.device), A, mode=WARP_MODE)
        out = torch.where(dst, moved, out)
    return out


# ----------------------------------------------------------------------------- loop


@dataclass(eq=False)
class LatentOptimisation:
    """Result of :func:`optimise_latent`: the optimised latent and the loss per iteration
    (computed before that iteration's update)."""

    z: torch.Tensor
    losses: list[float] = field(default_factory=list)

    @property
    def iterations(self) -> int:
        return len(self.losses)


def _regions_on_grid(
    regions: Sequence[Region], grid_hw: tuple[int, int], mask_rule: str
) -> list[torch.Tensor]:
    masks = []
    for r in regions:
        if r.hw == tuple(grid_hw):
            m = r.mask
        else:
            m = resize_mask(r.mask, grid_hw, mask_rule)
            if not bool(m.any()):
                m = resize_mask(r.mask, grid_hw, "any")
        masks.append(m)
    return masks


def optimise_latent(
    z0: torch.Tensor,
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    F_orig: torch.Tensor,
    regions: Sequence[Region],
    z_bg: torch.Tensor,
    edit_mask: torch.Tensor,
    n_transport: int = 50,
    n_intensify: int = 20,
    lr: float = 1000.0,
    callback: Callable[[dict], None] | None = None,
    weights: Sequence[float] | torch.Tensor | None = None,
    use_grad_mask: bool = True,
    early_stop_tol: float | None = None,
    mask_rule: str = "majority",
    optimizer: str = "sgd",
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    hole: torch.Tensor | None = None,
    target_warp: str = "bilinear",
) -> LatentOptimisation:
    """DragFlow latent optimisation (arXiv 2510.02253; docs/dragflow.md): TRANSPORT then INTENSIFY, plain gradient descent.

    z0, z_bg: (B, 16, h_z, w_z) latents (start point and background branch); ``feature_fn``:
    differentiable z ↦ F (B, C, h, w); F_orig = F(z_orig) (no grad); ``regions``: their masks
    and points are in their own mask grid and are rescaled to F's grid; ``edit_mask``: M_bg,
    bool, broadcastable to z (e.g. (h_z, w_z)). Per iteration τ: p = progressive_weight(τ),
    L = affine_feature_loss at A_k(p) (INTENSIFY re-uses p = 1), z ← z − lr·∇L (∇ masked by
    M_bg if ``use_grad_mask``), then the hard background constraint. ``weights`` default to
    :func:`region_weights` of the regions' area fractions. ``callback`` receives
    {i, phase, p, loss, z} after each update (loss = L before that update); it may raise to
    interrupt. Runs in z's dtype; the first forward sees z0 itself.

    ``optimizer``: "sgd" (the paper: z ← z − lr·∇L; the step scales with the gradient, hence
    with the loss's normalisation over C·h·w and the image size) or "adam" (ours: bias-corrected
    Adam moments, z ← z − lr·m̂/(√v̂ + eps), a step of about ``lr`` latent units per element
    whatever the feature or image size).

    ``hole`` [ours]: a bool mask (broadcastable to z) held at z0 after every update, like the
    background — the vacated area keeps its (re-drawn) start and the optimisation cannot paint
    the region back where it left.

    ``target_warp`` [ours]: how F_orig is resampled at the region's pose, "bilinear" (the notes)
    or "nearest". On a coarse grid (FLUX's token grid) a bilinear target of a rotation or of a
    shift that is not cell-aligned is a blend of neighbouring cells: a blurred object that the
    optimisation then paints (small rotated objects dissolved on the toy world); a nearest
    target keeps every cell a real feature vector at the pose the moved start has."""
    if target_warp not in ("bilinear", "nearest"):
        raise ValueError(f"unknown target_warp {target_warp!r}; choose bilinear or nearest")
    if optimizer not in ("sgd", "adam", "normalized"):
        raise ValueError(f"unknown optimizer {optimizer!r}; choose sgd, adam or normalized")
    if not regions:
        raise ValueError("optimise_latent needs at least one region")
    if z_bg.shape != z0.shape:
        raise ValueError(f"z_bg {tuple(z_bg.shape)} does not match z0 {tuple(z0.shape)}")
    grid_hw = tuple(F_orig.shape[-2:])
    masks = _regions_on_grid(regions, grid_hw, mask_rule)
    if weights is None:
        weights = region_weights([r.area_fraction for r in regions])
    M_bg = edit_mask.to(z0.device)
    if M_bg.dtype != torch.bool:
        M_bg = M_bg > 0.5
    torch.broadcast_shapes(M_bg.shape, z0.shape)  # raises if incompatible
    F_orig = F_orig.detach()
    z_bg = z_bg.detach()

    z = z0.detach().clone()  # the first forward sees z0 itself, as in the notes
    hole_keep = None if hole is None else hole.to(z0.device).bool()
    z_hold = z0.detach()
    losses: list[float] = []
    cache: dict[float, list] = {}
    n_total = n_transport + n_intensify
    m1 = torch.zeros_like(z)
    m2 = torch.zeros_like(z)
    for tau in range(n_total):
        p = progressive_weight(tau, n_transport)
        if p not in cache:
            cache.clear()
            cache[p] = region_targets(F_orig, masks, [r.affine(p, grid_hw) for r in regions], target_warp)
        z.requires_grad_(True)
        feats = feature_fn(z)
        if feats.shape != F_orig.shape:
            raise ValueError(
                f"feature_fn gave {tuple(feats.shape)}, F_orig is {tuple(F_orig.shape)}"
            )
        loss = masked_l1(feats, cache[p], weights)
        (grad,) = torch.autograd.grad(loss, z)
        with torch.no_grad():
            if use_grad_mask:
                grad = grad * M_bg
            if optimizer == "adam":
                m1.mul_(betas[0]).add_(grad, alpha=1 - betas[0])
                m2.mul_(betas[1]).addcmul_(grad, grad, value=1 - betas[1])
                mh = m1 / (1 - betas[0] ** (tau + 1))
                vh = m2 / (1 - betas[1] ** (tau + 1))
                step = lr * mh / (vh.sqrt() + eps)
            elif optimizer == "normalized":
                sel = grad[M_bg.expand_as(grad)] if use_grad_mask else grad
                rms = sel.pow(2).mean().sqrt() if sel.numel() else grad.new_zeros(())
                step = lr * grad / (rms + eps)
            else:
                step = lr * grad
            z = hard_background_constraint(z.detach() - step, z_bg, M_bg)
            if hole_keep is not None:
                z = torch.where(hole_keep, z_hold, z)
        losses.append(float(loss.detach()))
        if callback is not None:
            callback({
                "i": tau, "phase": "transport" if tau < n_transport else "intensify",
                "p": p, "loss": losses[-1], "z": z,
            })
        if early_stop_tol is not None and tau >= n_transport and losses[-1] <= early_stop_tol:
            break
    return LatentOptimisation(z.detach(), losses)


# ----------------------------------------------------------------------------- sampling


def paired_fireflow(
    v_edit: Callable[[torch.Tensor, float], torch.Tensor],
    v_orig: Callable[[torch.Tensor, float], torch.Tensor],
    z: torch.Tensor,
    z_orig: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor,
    edit_mask: torch.Tensor,
    v_edit_init: torch.Tensor | None = None,
    v_orig_init: torch.Tensor | None = None,
    callback: Callable[[dict], None] | None = None,
    orig_path: Sequence[torch.Tensor] | None = None,
    hold: tuple[torch.Tensor, Callable[[float], torch.Tensor], float]
    | Sequence[tuple[torch.Tensor, Callable[[float], torch.Tensor], float]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The edited and the original branch sampled in lockstep with FireFlow (arXiv 2412.07517), the
    hard background constraint z ← (1 − M_bg)·z_orig + M_bg·z after every step.

    Each branch is a FireFlow midpoint step reusing its previous midpoint velocity (``*_init``
    stands for the first step's v(z, σ₀) when already known, e.g. the original branch's velocity
    the background half step used). Returns (z, z_orig) at the last sigma; ``callback`` receives
    {i, sigma, sigma_next, z, z_orig} after each constrained step and may raise to interrupt.

    ``orig_path`` [ours]: the original branch given as its latents at every sigma (e.g. the
    inversion's own trajectory, ending at the source): ``v_orig`` is then never called and the
    background is held at exactly these latents. ``hold`` [ours] = (mask, path(σ), σ_min): the
    mask's cells are set to path(σ) after every step that ends at σ ≥ σ_min; a list of them is
    applied in its order (a later one wins where masks overlap)."""
    s = [float(x) for x in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    if len(s) < 2:
        raise ValueError(f"a sigma schedule needs at least 2 values, got {len(s)}")
    if z.shape != z_orig.shape:
        raise ValueError(f"branches differ in shape: {tuple(z.shape)} vs {tuple(z_orig.shape)}")
    M = edit_mask.to(z.device)
    if M.dtype != torch.bool:
        M = M > 0.5
    if orig_path is not None and len(orig_path) != len(s):
        raise ValueError(f"orig_path has {len(orig_path)} latents for {len(s)} sigmas")
    holds = [] if hold is None else [hold] if isinstance(hold, tuple) else list(hold)
    ve_prev, vo_prev = v_edit_init, v_orig_init
    for i in range(len(s) - 1):
        d = s[i + 1] - s[i]
        if orig_path is not None:
            z_orig = orig_path[i + 1].to(z.device, z.dtype)
        else:
            vo_c = v_orig(z_orig, s[i]) if vo_prev is None else vo_prev
            vo_mid = v_orig(z_orig + (d / 2) * vo_c, s[i] + d / 2)
            z_orig = z_orig + d * vo_mid
            vo_prev = vo_mid
        ve_c = v_edit(z, s[i]) if ve_prev is None else ve_prev
        ve_mid = v_edit(z + (d / 2) * ve_c, s[i] + d / 2)
        z = hard_background_constraint(z + d * ve_mid, z_orig, M)
        for h_mask, h_path, h_min in holds:
            if s[i + 1] >= h_min:
                z = torch.where(h_mask.to(z.device), h_path(s[i + 1]).to(z), z)
        ve_prev = ve_mid
        if callback is not None:
            callback({"i": i, "sigma": s[i], "sigma_next": s[i + 1], "z": z, "z_orig": z_orig})
    return z, z_orig
