"""The LazyDrag initial latent (split from ``correspondence.py``; every name is re-exported
there): z_hat(x) = z_T(M(x)) on R_dst, seeded N(0, I) on R_inp, z_T(x) elsewhere, and the harmonic
fill of a region."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .correspondence import CorrespondenceMap, FineMap


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


#: the membrane's solve stops when every channel's residual (conjugate gradients' running estimate)
#: is below this share of its right-hand side, the boundary taken relative to its ring's mean (float32:
#: the fill then agrees with the exact solution to ~1e-5 of the boundary's range at any hole size)
MEMBRANE_TOL = 1e-6
#: the solve checks its stop every this many iterations (one device sync each)
_CHECK_EVERY = 8


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Σ of the 4 neighbours of every pixel (the image border reflects: a missing neighbour is the
    pixel itself)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def harmonic_fill(latent: torch.Tensor, region: torch.Tensor, iters: int = 0) -> torch.Tensor:
    """[ours] ``latent`` (B, C, H, W) with ``region`` (H, W) replaced by the harmonic (membrane)
    interpolation of its surroundings: every region pixel the mean of its 4 neighbours, the pixels
    around the region fixed, the image border reflecting. Solved by conjugate gradients (the
    discrete Laplace equation is symmetric positive definite on the region) per channel, for the
    deviation from the mean of the ring around the region (so a channel's constant offset costs no
    precision), from that mean, until the residual is ``MEMBRANE_TOL`` of the right-hand side or
    after ``iters`` iterations (0: 4 × the region's box height + width, more than it needs).
    Jacobi sweeps of 2·(H + W), used before, left a hole wider than about 20 pixels part-way between
    the ring's mean and the membrane (at 60 pixels, 7–18 % of the boundary's range off); smaller
    holes are the same to ~1e-4. A region with no ring (the whole image) takes the mean of its own
    values: the membrane with no boundary is a constant.
    """
    region = region.to(device=latent.device, dtype=torch.bool)
    if not bool(region.any()):
        return latent.clone()
    H, W = region.shape
    ring = F.max_pool2d(region[None, None].float(), 3, 1, 1)[0, 0].bool() & ~region
    out = latent.clone().float()
    if not bool(ring.any()):
        out[..., region] = out[..., region].mean(-1, keepdim=True)
        return out.to(latent.dtype)
    level = out[..., ring].mean(-1)[..., None, None]                 # (B, C, 1, 1): the ring's mean
    # the solve only reads the region and its ring: run it on the region's box grown by one pixel
    # (where the box reaches the image border, the border still reflects)
    ys, xs = torch.nonzero(region, as_tuple=True)
    y0, y1 = max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, H)
    x0, x1 = max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, W)
    reg = region[y0:y1, x0:x1]
    x = out[..., y0:y1, x0:x1] - level
    zero = torch.zeros((), dtype=x.dtype, device=x.device)

    def laplace(v: torch.Tensor) -> torch.Tensor:       # 4·v − Σ neighbours, on the region only
        return torch.where(reg, 4 * v - _neighbour_sum(v), zero)

    b = torch.where(reg, _neighbour_sum(torch.where(reg, zero, x)), zero)   # the fixed ring's pull
    u = torch.zeros_like(x)                               # the region starts at the ring's mean
    r = b.clone()
    p = r.clone()
    rr = r.pow(2).sum((-2, -1), keepdim=True)
    stop = (MEMBRANE_TOL ** 2) * b.pow(2).sum((-2, -1), keepdim=True)
    for i in range(iters or 4 * ((y1 - y0) + (x1 - x0))):
        if i % _CHECK_EVERY == 0 and bool((rr <= stop).all()):
            break
        Ap = laplace(p)
        alpha = rr / (p * Ap).sum((-2, -1), keepdim=True).clamp(min=1e-30)
        u = u + alpha * p
        r = r - alpha * Ap
        rr_next = r.pow(2).sum((-2, -1), keepdim=True)
        p = r + rr_next / rr.clamp(min=1e-30) * p
        rr = rr_next
    out[..., y0:y1, x0:x1] = torch.where(reg, u + level, out[..., y0:y1, x0:x1])
    return out.to(latent.dtype)


def _correlate(f: torch.Tensor, g: torch.Tensor, reach: int) -> torch.Tensor:
    """Σ_p f[..., p] · g[..., p + d] summed over the leading (channel) axis, for every offset
    d = (dy, dx) with |dy|, |dx| ≤ ``reach``: (2·reach + 1)² in float64, ``g`` read as 0 outside
    the image (f, g (C, H, W) or (H, W)), by FFT."""
    f = f.double().reshape(-1, *f.shape[-2:])
    g = g.double().reshape(-1, *g.shape[-2:])
    H, W = f.shape[-2:]
    sh = (H + 2 * reach, W + 2 * reach)
    gp = F.pad(g, (reach, reach, reach, reach))
    # correlation = convolution with f flipped; the full FFT size holds it without wrap-around
    full = (sh[0] + H - 1, sh[1] + W - 1)
    prod = torch.fft.rfft2(gp, full) * torch.fft.rfft2(f.flip(-2, -1), full)
    out = torch.fft.irfft2(prod.sum(0), full)
    return out[H - 1:H + 2 * reach, W - 1:W + 2 * reach]


def texture_offsets(latent: torch.Tensor, region: torch.Tensor, avoid: torch.Tensor | None = None,
                    ring: int = 2, reach: int = 0, count: int = 1) -> list[tuple[int, int]]:
    """[ours] The ``count`` offsets (dy, dx) of :func:`texture_fill`'s copies, best first: among
    the offsets (|dx|, |dy| ≤ ``reach``; 0: min(H, W) // 2) whose copy of ``region`` lies inside
    the image and off ``region`` and ``avoid``, and whose copy of the ``ring`` pixels around the
    region off ``avoid`` exists (inside, off both) for at least half of them, those with the least
    mean square mismatch over those ring pixels (the best: ties go to the first in row-major offset
    order). Empty when no offset qualifies. All offsets at once by FFT correlations (a few FFTs of
    (H + 2·reach)² per channel), not a loop over them."""
    z = latent.detach().double().cpu()
    R = region.to(torch.bool).cpu()
    H, W = R.shape
    reach = reach or max(1, min(H, W) // 2)
    near = F.max_pool2d(R[None, None].float(), 2 * ring + 1, 1, ring)[0, 0].bool()
    bad = R if avoid is None else R | avoid.to(torch.bool).cpu()
    rim = (near & ~bad).double()
    valid = (~bad).double()                            # 0 outside the image too (zero padding)
    n_rim, n_reg = float(rim.sum()), float(R.sum())
    if n_reg == 0 or n_rim == 0:
        return []
    sq = z.pow(2).sum(0)
    seen = _correlate(rim, valid, reach)                                   # ring pixels with a copy
    inside = _correlate(R.double(), valid, reach)                          # region pixels with a copy
    err = (_correlate(rim * sq, valid, reach) - 2 * _correlate(rim * z, valid * z, reach)
           + _correlate(rim, valid * sq, reach))
    ok = (inside > n_reg - 0.5) & (2 * seen > n_rim - 0.5)
    if not bool(ok.any()):
        return []
    mean = torch.where(ok, err / seen.clamp(min=1), torch.full_like(err, float("inf"))).reshape(-1)
    best = float(mean.min())
    first = int(torch.nonzero(mean <= best + 1e-9 * (1.0 + abs(best)))[0])
    rest = [int(k) for k in torch.sort(mean, stable=True).indices[:count] if int(k) != first]
    picked = [k for k in [first, *rest][:count] if bool(torch.isfinite(mean[k]))]
    return [(k // (2 * reach + 1) - reach, k % (2 * reach + 1) - reach) for k in picked]


def texture_offset(latent: torch.Tensor, region: torch.Tensor, avoid: torch.Tensor | None = None,
                   ring: int = 2, reach: int = 0) -> tuple[int, int] | None:
    """[ours] The best offset of :func:`texture_offsets`; None when no offset qualifies."""
    got = texture_offsets(latent, region, avoid, ring, reach)
    return got[0] if got else None


def texture_fill(latent: torch.Tensor, region: torch.Tensor, avoid: torch.Tensor | None = None,
                 ring: int = 2, reach: int = 0, copies: int = 1) -> torch.Tensor | None:
    """[ours] The image's own continuation into ``region`` (H, W): the latent (C, H, W) copied from
    the offset (|dx|, |dy| ≤ ``reach``; 0: min(H, W) // 2) whose copy best matches the ``ring``
    pixels around the region off ``avoid`` (mean square over the ring pixels whose copy lies
    inside the image and off ``region`` and ``avoid``, at least half of the ring;
    :func:`texture_offsets`), plus the membrane (:func:`harmonic_fill`) of the copy's mismatch on
    the ring, so it joins without a step. A texture continues with its own cells, a smooth
    background as a smooth one. The region's copy must lie inside the image and off ``region``
    and ``avoid``. ``copies`` > 1 [ours]: the mean of that many such fills from the best offsets
    (the texture's expected continuation given the ring: one copy's phase error, where the
    texture's period is no whole number of pixels, averages out). None when no offset qualifies."""
    offs = texture_offsets(latent, region, avoid, ring, reach, count=max(1, copies))
    if not offs:
        return None
    z = latent.detach().float()
    R = region.to(torch.bool).cpu()
    H, W = R.shape
    near = F.max_pool2d(R[None, None].float(), 2 * ring + 1, 1, ring)[0, 0].bool()
    bad = R if avoid is None else R | avoid.to(torch.bool).cpu()
    ys, xs = torch.nonzero(R, as_tuple=True)
    ry, rx = torch.nonzero(near & ~bad, as_tuple=True)
    shifted = z.clone()
    shifted[:, ys, xs] = 0
    mismatch = torch.zeros_like(z)      # the copies' mean step on the ring (0 where one has no copy)
    for dy, dx in offs:
        qy, qx = ry + dy, rx + dx
        ok = (qy >= 0) & (qy < H) & (qx >= 0) & (qx < W)
        ok[ok.clone()] = ~bad[qy[ok], qx[ok]]
        shifted[:, ys, xs] += z[:, ys + dy, xs + dx] / len(offs)
        mismatch[:, ry[ok], rx[ok]] += (z[:, ry[ok], rx[ok]] - z[:, qy[ok], qx[ok]]) / len(offs)
    return shifted + harmonic_fill(mismatch[None], R)[0]


def continued_fill(latent: torch.Tensor, region: torch.Tensor, avoid: torch.Tensor | None = None,
                   copies: int = 8, ring: int = 2) -> torch.Tensor:
    """[ours] The hole fill of a textured or a smooth ground, (C, H, W): :func:`texture_fill` (the
    mean of ``copies`` copies) where the texture continued predicts the surroundings better than
    the membrane does, :func:`harmonic_fill` otherwise. The test holds out the ``ring`` pixels
    around ``region`` (off ``avoid``): both fills are computed for the region grown by the ring,
    from what lies beyond it, and the one with the smaller mean square error on the ring fills the
    region. On a smooth ground a copy carries other places' light and shadows and the membrane
    wins; on a texture the copy continues the cells."""
    tex = continued_texture(latent, region, avoid, copies, ring)
    return harmonic_fill(latent.detach().float()[None], region.to(torch.bool).cpu())[0] if tex is None else tex


def continued_texture(latent: torch.Tensor, region: torch.Tensor, avoid: torch.Tensor | None = None,
                      copies: int = 8, ring: int = 2) -> torch.Tensor | None:
    """[ours] :func:`continued_fill`'s texture fill where it wins the held-out ring test, None where
    the membrane does (a smooth ground)."""
    z = latent.detach().float()
    R = region.to(torch.bool).cpu()
    av = None if avoid is None else avoid.to(torch.bool).cpu()
    grown = F.max_pool2d(R[None, None].float(), 2 * ring + 1, 1, ring)[0, 0].bool()
    if av is not None:
        grown &= ~av | R
    band = grown & ~R
    if not bool(band.any()):
        return None
    held = texture_fill(z, grown, av, ring, copies=copies)
    if held is None:
        return None
    e_tex = float((held - z)[:, band].pow(2).mean())
    e_mem = float((harmonic_fill(z[None], grown)[0] - z)[:, band].pow(2).mean())
    if e_tex >= e_mem:
        return None
    return texture_fill(z, R, av, ring, copies=copies)


def _grow(mask: torch.Tensor, r: int = 1) -> torch.Tensor:
    return F.max_pool2d(mask[None, None].float(), 2 * r + 1, 1, r)[0, 0] > 0


def _ring4(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: the pixels off ``mask`` with a 4-neighbour on it (its outline, as 4-connected
    regions meet; :func:`_grow` takes the 8 neighbours)."""
    ring = torch.zeros_like(mask)
    ring[1:] |= mask[:-1]
    ring[:-1] |= mask[1:]
    ring[:, 1:] |= mask[:, :-1]
    ring[:, :-1] |= mask[:, 1:]
    return ring & ~mask


#: a region is joined to the paint across a jump below this share of the edge threshold: on the v3
#: world (seeds 101 / 202 / 303) a limb's base meets its painted free segment at 0.00–0.04 × the
#: painted content's contrast, an object in front meets the dragged one at 0.45–1.1 × [ours]
JOIN = 0.5


def _linked_components(z: torch.Tensor, free: torch.Tensor, jump: float) -> torch.Tensor:
    """Labels (H, W) long (-1 off ``free``) of the 4-connected components of ``free`` where two
    neighbours are linked when ‖z_p − z_q‖ < ``jump`` (``z`` (C, H, W)): regions bounded by edges."""
    H, W = free.shape
    dx = ((z[:, :, 1:] - z[:, :, :-1]).norm(dim=0) < jump) & free[:, 1:] & free[:, :-1]
    dy = ((z[:, 1:, :] - z[:, :-1, :]).norm(dim=0) < jump) & free[1:, :] & free[:-1, :]
    fr, lx, ly = free.tolist(), dx.tolist(), dy.tolist()
    lab = [[-1] * W for _ in range(H)]
    n = 0
    for r in range(H):
        for c in range(W):
            if fr[r][c] and lab[r][c] < 0:
                lab[r][c] = n
                stack = [(r, c)]
                while stack:
                    y, x = stack.pop()
                    for yy, xx, ok in ((y, x + 1, x + 1 < W and lx[y][x]), (y, x - 1, x > 0 and lx[y][x - 1]),
                                       (y + 1, x, y + 1 < H and ly[y][x]), (y - 1, x, y > 0 and ly[y - 1][x])):
                        if ok and lab[yy][xx] < 0:
                            lab[yy][xx] = n
                            stack.append((yy, xx))
                n += 1
    return torch.tensor(lab, dtype=torch.long)


#: [ours] two regions are one when more than this share of their common boundary is no edge (a jump
#: below the edge threshold): an object whose outline dips under the threshold at a few pixels (a dim
#: occluder beside a brightly lit painted object, toy scene 126006: 0.48 × the content's contrast at
#: its weakest pair, 0.5 × the threshold) stays apart from the ground it touches there. 0: one weak
#: pair joins them, as before
LINK_SHARE = 0.5


def _merged_regions(z: torch.Tensor, free: torch.Tensor, jump: float, share: float) -> torch.Tensor:
    """Labels (H, W) long (-1 off ``free``): the components of ``free`` linked at half the edge
    threshold ``jump`` (:func:`_linked_components`), then two adjacent ones merged when more than
    ``share`` of the 4-neighbour pairs across their common boundary differ by less than ``jump``
    (``LINK_SHARE``; 0: by one such pair, the same as linking at ``jump``)."""
    lab = _linked_components(z, free, 0.5 * jump)
    n = int(lab.max()) + 1
    if n <= 1:
        return lab
    pairs, weak = [], []
    for d, a, b in (((z[:, :, 1:] - z[:, :, :-1]).norm(dim=0), lab[:, :-1], lab[:, 1:]),
                    ((z[:, 1:, :] - z[:, :-1, :]).norm(dim=0), lab[:-1, :], lab[1:, :])):
        on = (a >= 0) & (b >= 0) & (a != b)
        lo, hi = torch.minimum(a[on], b[on]), torch.maximum(a[on], b[on])
        pairs.append(lo * n + hi)
        weak.append(d[on] < jump)
    key, w = torch.cat(pairs), torch.cat(weak).to(torch.float64)
    if not key.numel():
        return lab
    uniq, inv = torch.unique(key, return_inverse=True)
    frac = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inv, w) / torch.bincount(inv).to(torch.float64)
    join = (frac > share) if share > 0 else (frac > 0)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k in uniq[join].tolist():
        ra, rb = root(k // n), root(k % n)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = torch.tensor([root(i) for i in range(n)])
    _, new = torch.unique(roots, return_inverse=True)
    return torch.where(lab >= 0, new[lab.clamp(min=0)], lab)


#: [ours] a region that touches the image border is ground when it runs along at least this share of
#: the border, when another region of the image repeats it (means within the edge jump: a texture's
#: cells, the halves of a two-tone ground), or when only the paint and the frame bound it (ground the
#: paint cuts off in a corner); the other regions the frame cuts are objects (0: every border region
#: is ground, as before)
FRAME_CONTACT = 0.125
#: [ours] a region that one other region alone, or the paint alone, encloses (the hollow of a ring, a
#: window in a frame) is ground seen through it when its mean is within the edge jump of the ground within
#: this many pixels around the enclosing region or paint: compared with the ground beside it, not with the
#: ground regions' means, which a light's gradient moves by more than the jump across the image (0: the
#: means alone, as before)
HOLE_REACH = 2
#: [ours] an unpainted region is a repeat of the ground (no object in front) within this × the edge jump of a
#: ground region's mean: on tuning seeds 216–229, 11 ground regions next to textured objects were read as objects,
#: 9 of them missing 1.0 by 2–9 %; the objects in front lie at 1.37–1.94 (one at 1.03). ``continued`` keeps 1.0
REPEAT_SLACK = 1.1


def _region_means(z: torch.Tensor, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(means (n, C), present (n,) bool) of the labelled regions ``lab`` (-1: none) of ``z`` (C, H, W),
    n = the largest label + 1; one pass over the pixels, not a mask per label."""
    on = lab >= 0
    n = int(lab.max()) + 1
    idx = lab[on]
    sums = torch.zeros(n, z.shape[0], dtype=z.dtype).index_add_(0, idx, z[:, on].T)
    counts = torch.bincount(idx, minlength=n)
    return sums / counts.clamp(min=1)[:, None].to(z.dtype), counts > 0


def _ground_regions(lab: torch.Tensor, border: torch.Tensor, regions: list[int], *, means: torch.Tensor,
                    present: torch.Tensor, jump: float, joined: torch.Tensor | None = None) -> list[int]:
    """The border ``regions`` that are ground (``FRAME_CONTACT``), of the labelled regions ``lab``
    with their ``means`` (:func:`_region_means`). A region with a pixel in ``joined`` ((H, W) bool:
    unpainted pixels joined to the paint) is the rest of the painted object or the ground the paint
    runs into, and witnesses no repeat: the base of a dragged limb is no texture's cell, and an
    object the frame cuts that matches its colour within the jump stays an object."""
    on = lab >= 0
    contact = torch.bincount(lab[border & on], minlength=means.shape[0])
    witness = present.clone()
    if joined is not None and bool((joined & on).any()):
        witness[torch.unique(lab[joined & on])] = False
    out = []
    for k in regions:
        w = witness.clone()
        w[k] = bool(present[k])
        d = (means[w] - means[k]).norm(dim=1)
        repeated = int((d < jump).sum()) > 1          # itself, and another region
        part = lab == k
        pocket = not bool((_grow(part) & on & ~part).any())
        if float(contact[k]) >= FRAME_CONTACT * float(border.sum()) or repeated or pocket:
            out.append(k)
    return out


class FrontObjects:
    """[ours] The unpainted objects in front of a painted region, found once and then selected by
    where they touch (:meth:`touching`); :func:`unpainted_objects` is one selection.

    The unpainted pixels are split into regions at edges: neighbours whose latents differ by at
    least ``contrast`` × the painted content's strongest contrast (its distance from the harmonic
    continuation of its surroundings, the yardstick of :func:`content_pixels`) lie in different
    regions. A region that touches the image border is background (the ground, or a texture that
    runs across the image) unless it is an object the frame cuts (``FRAME_CONTACT``); a region
    joined to a painted pixel (a jump below ``JOIN`` × the edge's:
    no edge at all) is the rest of the painted object (a limb's base) or background the paint runs
    into; a region enclosed by edges, off the border and apart from the paint, is an object in
    front unless its mean is within ``REPEAT_SLACK`` × the edge jump of a ground region's mean (a texture's cell
    repeats the background's own regions). ``contrast`` 0: none."""

    def __init__(self, latent: torch.Tensor, painted: torch.Tensor, contrast: float):
        P = painted.to(torch.bool).cpu()
        self.hw = P.shape
        self.lab = None
        self._standing: dict[float, torch.Tensor] = {}
        self.painted = P
        if contrast <= 0 or not bool(P.any()):
            return
        z = latent.detach().float().cpu()
        z = z[0] if z.dim() == 4 else z
        top = float((z - harmonic_fill(z[None], P)[0]).norm(dim=0)[P].max())
        if top <= 0:
            return
        self.z, self.jump = z, contrast * top
        self.lab = _merged_regions(z, ~P, self.jump, LINK_SHARE)
        border = torch.zeros_like(P)
        border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
        # unpainted pixels joined to a painted neighbour (a jump below JOIN × the edge's): the rest of the
        # painted object (a limb's base) or background the paint ends in, never an object in front of it
        joined = torch.zeros_like(P)
        sx = (z[:, :, 1:] - z[:, :, :-1]).norm(dim=0) < JOIN * self.jump     # (H, W-1): x ↔ x+1, no edge
        sy = (z[:, 1:, :] - z[:, :-1, :]).norm(dim=0) < JOIN * self.jump     # (H-1, W): y ↔ y+1
        self._no_edge = (sx, sy)
        joined[:, :-1] |= sx & P[:, 1:] & ~P[:, :-1]
        joined[:, 1:] |= sx & P[:, :-1] & ~P[:, 1:]
        joined[:-1, :] |= sy & P[1:, :] & ~P[:-1, :]
        joined[1:, :] |= sy & P[:-1, :] & ~P[1:, :]
        ground = torch.unique(self.lab[border & (self.lab >= 0)]).tolist()
        means, present = _region_means(z, self.lab) if ground else (None, None)
        if FRAME_CONTACT > 0 and ground:
            ground = _ground_regions(self.lab, border, ground, means=means, present=present, jump=self.jump,
                                     joined=joined)
        ground_t = torch.tensor(ground, dtype=torch.long)
        self.ground = torch.isin(self.lab, ground_t)
        self.excluded = joined | self.ground
        self.means = means[ground_t] if ground else z.new_zeros(0, z.shape[0])
        self._verdict: dict[int, bool] = {}

    def _is_object(self, k: int) -> bool:
        if k not in self._verdict:
            part = self.lab == k
            self._verdict[k] = not bool((part & self.excluded).any()) and not self._repeats_ground(part, REPEAT_SLACK)
            if self._verdict[k] and HOLE_REACH > 0 and self._see_through(part):
                self._verdict[k] = False
        return self._verdict[k]

    def _repeats_ground(self, part: torch.Tensor, slack: float = 1.0) -> bool:
        """``part``'s mean is within ``slack`` × the edge jump of a ground region's: a repeat of the
        background's own regions (a texture's cell), no object."""
        near = float((self.means - self.z[:, part].mean(1)).norm(dim=1).min()) if self.means.shape[0] else float("inf")
        return near < slack * self.jump

    def _see_through(self, part: torch.Tensor) -> bool:
        """``HOLE_REACH``: ``part`` is a hole in one enclosing region, or in the paint (the hollow of a
        painted ring), and shows the ground beside it."""
        around = torch.unique(self.lab[_ring4(part)]).tolist()   # 4-neighbours: the regions are 4-connected
        if len(around) != 1:
            return False
        encl = self.painted if around[0] < 0 else self.lab == around[0]
        near = _grow(encl, HOLE_REACH) & self.ground
        return bool(near.any()) and float((self.z[:, near].mean(1) - self.z[:, part].mean(1)).norm()) < self.jump

    def continued(self, vacant: torch.Tensor) -> torch.Tensor:
        """[ours] (H, W) bool: the pixels of ``vacant`` (painted pixels that are no moving content)
        that continue a :meth:`standing` region, reached from it through 4-neighbours across no edge
        (steps below ``JOIN`` × the edge jump). They are the rest of an object that stays (a limb's base
        under the paint at its joint, another object the paint runs over) and stay where they are; the
        hole fill would draw ground there and split the object."""
        out = torch.zeros(self.hw, dtype=torch.bool)
        vacant = vacant.to(torch.bool).cpu()
        if self.lab is None or not bool(vacant.any()):
            return out
        sx, sy = self._no_edge
        front = self.standing()
        while bool(front.any()):
            new = torch.zeros_like(out)
            new[:, 1:] |= front[:, :-1] & sx
            new[:, :-1] |= front[:, 1:] & sx
            new[1:, :] |= front[:-1, :] & sy
            new[:-1, :] |= front[1:, :] & sy
            front = new & vacant & ~out
            out |= front
        return out

    def standing(self, slack: float = 1.0) -> torch.Tensor:
        """[ours] (H, W) bool: the unpainted regions neither ground nor a repeat of the ground's regions
        (a texture's cell, within ``slack`` × the edge jump): the objects and the rest of the painted one
        (a limb's base). :meth:`continued` starts from them (slack 1); ``content_score``'s texture copy
        takes none for ground (``REPEAT_SLACK``: a texture's cells just off the strict test stay ground)."""
        if slack not in self._standing:
            out = torch.zeros(self.hw, dtype=torch.bool)
            for k in [] if self.lab is None else torch.unique(self.lab[(self.lab >= 0) & ~self.ground]).tolist():
                if not self._repeats_ground(self.lab == k, slack):
                    out |= self.lab == k
            self._standing[slack] = out
        return self._standing[slack].clone()

    def touching(self, near: torch.Tensor) -> torch.Tensor:
        """(H, W) bool: the objects in front that touch ``near`` ((H, W) bool, 4-neighbours)."""
        out = torch.zeros(self.hw, dtype=torch.bool)
        if self.lab is None:
            return out
        seed = _grow(near.to(torch.bool).cpu())
        for k in torch.unique(self.lab[seed & (self.lab >= 0)]).tolist():
            if self._is_object(k):
                out |= self.lab == k
        return out


def unpainted_objects(latent: torch.Tensor, painted: torch.Tensor, near: torch.Tensor,
                      contrast: float) -> torch.Tensor:
    """[ours] The unpainted objects (:class:`FrontObjects`) that touch ``near`` ((H, W) bool, e.g.
    the painted region and the moved content's destination): (H, W) bool. ``contrast`` 0: none."""
    return FrontObjects(latent, painted, contrast).touching(near)


def carried_hidden(source: torch.Tensor, hw: tuple[int, int], content: torch.Tensor, covering: torch.Tensor,
                   reach: int) -> torch.Tensor:
    """[ours] (H, W) bool: the ``covering`` pixels (objects in front at the source) within ``reach``
    latent pixels of the carried ``content``, each carried as the nearest carried content pixel is
    (its destination plus the same offset). ``source``: each destination pixel's source
    pixel (flat index), -1 where none (:attr:`FineMap.source`), (H·W,) on the grid ``hw`` (H, W).
    ``reach`` 0: none."""
    H, W = hw
    out = torch.zeros(H, W, dtype=torch.bool)
    src = source.reshape(-1)
    at = torch.nonzero(src >= 0).flatten()
    if reach <= 0 or not at.numel():
        return out
    dest_of = torch.full((H * W,), -1, dtype=torch.long)
    dest_of[src[at]] = at                          # a destination of each carried source pixel
    carried = (dest_of >= 0).reshape(H, W) & content.to(torch.bool).cpu()
    near = covering.to(torch.bool).cpu() & _grow(carried, reach) & ~carried
    if not bool(near.any()):
        return out
    p = torch.nonzero(near)
    q = torch.nonzero(carried)
    j = torch.cdist(p.double(), q.double()).argmin(1)
    qd = dest_of[q[j, 0] * W + q[j, 1]]
    y = torch.div(qd, W, rounding_mode="floor") + p[:, 0] - q[j, 0]
    x = qd % W + p[:, 1] - q[j, 1]
    ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
    out[y[ok], x[ok]] = True
    return out


def hidden_destination(fine: FineMap, content: torch.Tensor, covering: torch.Tensor, reach: int,
                       keep: torch.Tensor | None = None) -> torch.Tensor:
    """[ours] (H, W) bool: where the moved content's hidden part may lie after the edit, for the
    background lock to leave to the model (``FineMap.released``). An object dragged out from behind
    another shows only its visible part; its hidden part lies under the objects in front that cover
    it at its source (``covering``: :meth:`FrontObjects.touching` the paint). Their pixels within
    ``reach`` latent pixels of the content (``content``, the pixels that move) are carried as the
    nearest content pixel is (its destination plus the same offset: exact for moves, the offset
    unturned for rotations), less the map's own pixels (free already) and ``keep`` (objects in
    front after the edit, which stay). ``reach`` 0: none."""
    out = carried_hidden(fine.source, fine.hw, content, covering, reach)
    out &= ~fine.free
    if keep is not None:
        out &= ~keep.to(torch.bool).cpu()
    return out
