"""What ContextDrag's patches read from a latent reverse map (``core/reverse_mapping.py``):
the sub-token shifts of the moved content, the latent pixels each moved token is re-embedded from,
the latent pixels an edit changes (docs/contextdrag.md); the hole slots and the reference tokens'
position ids: ``core/reverse_ids.py``."""
from __future__ import annotations

import torch

from . import geometry
from .geometry import bilinear_read, connected_components, kept_area_level, nearest_of_four, outline_on, round_half_up
from .reverse_mapping import (
    SNAP_TOL,
    ReverseMap,
    injection_pairs,
    reverse_lookup,
)


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
    shift = _pair_shifts(rmap, dst_idx, src_idx, patch)
    pick = _first_per_source(src_idx)
    return src_idx[pick], shift[pick]


def _back(rmap: ReverseMap, dst_idx: torch.Tensor) -> torch.Tensor:
    """q + W(q) (n, 2) float64 for flat token indices: the map's stored field, else the
    inverse-distance field of its drags with its own parameters."""
    w = rmap.grid_hw[1]
    if rmap.back is not None:
        return rmap.back.reshape(-1, 2)[dst_idx]
    return _field(rmap, torch.stack([dst_idx % w, dst_idx // w], 1).to(torch.float64))


def _field(rmap: ReverseMap, pts: torch.Tensor) -> torch.Tensor:
    """p + W(p) (n, 2) float64 at (n, 2) float64 points in token units: the inverse-distance field
    of the map's drags with its own parameters."""
    prm = rmap.params
    return reverse_lookup(pts, rmap.handles, rmap.targets, anchor=prm.get("anchor", "target"),
                          power=prm.get("power", 2.0), eps=prm.get("eps", 1e-12),
                          fixed_point_iters=prm.get("fixed_point_iters", 5))


def _pair_shifts(rmap: ReverseMap, dst_idx: torch.Tensor, src_idx: torch.Tensor, patch: int,
                 back: torch.Tensor | None = None) -> torch.Tensor:
    """(n, 2) long (dx, dy) latent-pixel shifts of each pair (see :func:`subtoken_shifts`);
    ``back``: :func:`_back` of ``dst_idx`` when the caller has it."""
    w = rmap.grid_hw[1]
    s = torch.stack([src_idx % w, src_idx // w], 1).to(torch.float64)
    frac = (_back(rmap, dst_idx) if back is None else back) - s
    shift = round_half_up(frac * patch).long().clamp(-(patch - 1), patch - 1)
    shift[(frac.abs() > 0.5 + 1e-9).any(1)] = 0
    return shift


WARPS = ("token", "pixel", "motion")


def _token_coord(j: torch.Tensor, patch: int) -> torch.Tensor:
    """Token coordinate (float64; token centres are integers) of latent-pixel index ``j``'s centre."""
    return (j.to(torch.float64) + 0.5) / patch - 0.5


def _latent_pixel(v: torch.Tensor, patch: int) -> torch.Tensor:
    """Index (long) of the latent pixel nearest to token coordinate ``v``: :func:`_token_coord`'s inverse."""
    return round_half_up((v + 0.5) * patch - 0.5).long()


def _pair_pixels(rmap: ReverseMap, dst_idx: torch.Tensor, src_idx: torch.Tensor, patch: int,
                 warp: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, off) (n, patch, patch): the reference latent pixels (long) each pair's destination q
    shows, by sub-token shift of its source token (``warp="token"``, see :func:`subtoken_shifts`)
    or by the reverse field looked up at each of q's latent pixels (``"pixel"`` [ours]).

    ``"pixel"``: the latent pixel (i, j) of token q has its centre at q + ((j − ½) / patch,
    (i − ½) / patch) in token units (patch 2: ±¼); its source is the nearest latent pixel to
    the field's continuous source there (:func:`reverse_lookup` with the map's own drags and
    parameters), taken as the token warp's pixel moved by the field's departure from its token's
    translation, so for a translation both warps give the same pixels, ties included (a merged
    map of several drag groups stores its field per token only, :attr:`ReverseMap.back`, and
    keeps the token warp). For a rotation,
    scaling or bend each latent pixel follows the field instead of its whole token, so the
    region turns and scales below the token grid. A destination held in place (an anchor: its
    source more than half a token from q + W(q)) shows its source unshifted, as with tokens.

    ``"motion"`` [ours]: as ``"pixel"``, and where the map knows a part's exact motion (a scaled or
    rotated ``move`` drag, :func:`motion_parts`) its pairs look each latent pixel up through that
    motion's inverse (:func:`_motion_pixels`), merged maps included; ``off`` (bool) marks its
    pixels off the moving shape.

    In every warp ``off`` also marks [ours] the pixels whose source lies outside the latent (a
    sub-pixel shift past the frame's edge): they show no moved content either. The clamp to the
    latent alone repeated the edge pixel row one pixel past the moved content (toy scene 202024:
    a ring moved up from the image's bottom edge by a half token showed its bottom row twice)."""
    h, w = rmap.grid_hw
    b_tok = _back(rmap, dst_idx).to(torch.float64)                                # (n, 2) x, y
    rows, cols = _patch_grid(src_idx, _pair_shifts(rmap, dst_idx, src_idx, patch, back=b_tok), (h, w), patch,
                             clamp=False)
    if warp not in WARPS:
        raise ValueError(f"warp must be one of {WARPS}, got {warp!r}")
    if warp != "token" and dst_idx.numel() and rmap.back is None:
        rows, cols = _field_pixels(rmap, dst_idx, src_idx, b_tok, rows=rows, cols=cols, patch=patch)
    frame = (rows < 0) | (rows >= h * patch) | (cols < 0) | (cols >= w * patch)
    rows, cols = rows.clamp(0, h * patch - 1), cols.clamp(0, w * patch - 1)
    if warp == "motion" and dst_idx.numel():
        return _motion_pixels(rmap, dst_idx, src_idx, rows=rows, cols=cols, patch=patch, off=frame)
    return rows, cols, frame


def _field_pixels(rmap: ReverseMap, dst_idx: torch.Tensor, src_idx: torch.Tensor, b_tok: torch.Tensor, *,
                  rows: torch.Tensor, cols: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``warp="pixel"`` on the token warp's (rows, cols): see :func:`_pair_pixels`."""
    h, w = rmap.grid_hw
    # the token warp's pixels, moved by how far the field at each pixel departs from the field at
    # its token translated (zero for a translation: both warps agree to the last tie)
    off = _token_coord(torch.arange(patch), patch)                              # pixel centres, token units
    oy, ox = off[:, None].expand(patch, patch), off[None, :].expand(patch, patch)
    qx = (dst_idx % w).to(torch.float64)[:, None, None] + ox
    qy = (dst_idx // w).to(torch.float64)[:, None, None] + oy
    b = _field(rmap, torch.stack([qx.reshape(-1), qy.reshape(-1)], 1)).reshape(-1, patch, patch, 2)
    dx = b[..., 0] - (b_tok[:, 0, None, None] + ox)
    dy = b[..., 1] - (b_tok[:, 1, None, None] + oy)
    s = torch.stack([src_idx % w, src_idx // w], 1).to(torch.float64)
    held = ((b_tok - s).abs() > 0.5 + 1e-9).any(1)[:, None, None]   # anchors: their source unshifted
    rows = torch.where(held, rows, rows + round_half_up(dy * patch).long())
    cols = torch.where(held, cols, cols + round_half_up(dx * patch).long())
    return rows, cols


def motion_parts(rmap: ReverseMap) -> list[tuple[torch.Tensor, dict]]:
    """[(part (h, w) bool, motion)] for the map's exact part motions (``params["motions"]``: each
    a ``move`` drag with a scale or an angle, ``{"handle", "target", "scale", "angle"}`` in token
    units and degrees, and ``"at"`` where the part is found by another point than the handle: a
    swing's pivot may lie nearer another part), each with the connected part of M_SRC it moves (the
    part its handle (``at``) lies in, else the nearest: the rule of the pipeline's point drags)."""
    return parts_of_motions(rmap.src_mask, rmap.params.get("motions") or [])


def parts_of_motions(region: torch.Tensor, motions: list[dict]) -> list[tuple[torch.Tensor, dict]]:
    """[(part (h, w) bool, motion)]: each motion with the connected part of ``region`` (token grid)
    its ``at`` (else its handle) lies in, else the nearest (see :func:`motion_parts`)."""
    if not motions:
        return []
    lab = connected_components(region.to(torch.bool).cpu())
    yx = torch.nonzero(lab >= 0)
    if not yx.shape[0]:
        return []
    pts = yx.flip(1).to(torch.float64)
    out = []
    for m in motions:
        j = int(((pts - torch.tensor(m.get("at", m["handle"]), dtype=torch.float64)) ** 2).sum(1).argmin())
        out.append((lab == lab[yx[j, 0], yx[j, 1]], m))
    return out


def _motion_pixels(rmap: ReverseMap, dst_idx: torch.Tensor, src_idx: torch.Tensor, *, rows: torch.Tensor,
                   cols: torch.Tensor, patch: int,
                   off: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``warp="motion"`` [ours]: a pair whose source token lies in a part with an exact motion
    (:func:`motion_parts`), or whose destination the motion's carriers serve (``"carried"``, see
    :func:`motion_map`), shows at each latent pixel of q the reference latent pixel nearest to that
    motion's inverse image of the pixel's centre, p = handle + R(−angle)·(x − target) / scale (the
    motion the drag states, which the map's point drags only sample at token centres: the
    inverse-distance field between them is flat near each, so token blocks stayed rigid). Other
    pairs keep ``rows`` / ``cols``; a part with a motion holds no anchor (the motion governs it).

    Also returns ``off`` (n, patch, patch) bool [ours]: the pixels whose inverse image lies off the
    moving shape though its nearest latent pixel is on it — the moving mask
    (:attr:`ReverseMap.fine_mask`) read bilinearly there is below ½, i.e. the shape's edge passes
    between the pixel centres (a rasterised shape turned by a fraction of a pixel: the nearest
    pixel alone left the old part's edge pixels on the vacated side of a bent limb's joint).
    Such a pixel shows no moved content (:func:`moved_patch_pixels`). ``off`` given: the other
    pairs keep it (:func:`_pair_pixels`' pixels past the frame); else they are all False, as are
    the motion's pairs without a fine mask."""
    from .correspondence_fields import move_inverse

    h, w = rmap.grid_hw
    parts = motion_parts(rmap)
    off_shape = torch.zeros(rows.shape, dtype=torch.bool) if off is None else off.clone()
    if not parts:
        return rows, cols, off_shape
    fine = rmap.fine_mask
    s = torch.stack([src_idx % w, src_idx // w], 1)
    off = _token_coord(torch.arange(patch), patch)                              # pixel centres, token units
    rows, cols = rows.clone(), cols.clone()
    for part, m in parts:
        sel = part[s[:, 1], s[:, 0]]
        if m.get("carried"):
            sel = sel | torch.isin(dst_idx, torch.tensor(m["carried"], dtype=torch.long))
        if not bool(sel.any()):
            continue
        q = dst_idx[sel]
        qx, qy = torch.broadcast_tensors((q % w).to(torch.float64)[:, None, None] + off[None, None, :],
                                         (q // w).to(torch.float64)[:, None, None] + off[None, :, None])
        p = move_inverse(torch.stack([qx.reshape(-1), qy.reshape(-1)], 1), m["handle"], m["target"],
                         m.get("scale", (1.0, 1.0)), float(m.get("angle", 0.0))).reshape(-1, patch, patch, 2)
        r = _latent_pixel(p[..., 1], patch).clamp(0, h * patch - 1)
        c = _latent_pixel(p[..., 0], patch).clamp(0, w * patch - 1)
        if fine is not None:
            on = outline_on(fine, (p[..., 0] + 0.5) * patch - 0.5, (p[..., 1] + 0.5) * patch - 0.5,
                            float(m.get("level", 0.5)), geometry.resamples(m.get("angle", 0.0), m.get("scale", (1, 1))))
            off_shape[sel] = ~on
            r, c = _onto_shape(fine, p, patch, rows=r, cols=c, on=on)
        if fine is None:
            off_shape[sel] = False
        rows[sel], cols[sel] = r, c
    return rows, cols, off_shape


def _onto_shape(mask: torch.Tensor, p: torch.Tensor, patch: int, *, rows: torch.Tensor, cols: torch.Tensor,
                on: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[ours] ``rows`` / ``cols`` where the inverse image ``p`` (token units) lies ``on`` the shape
    (``mask`` read bilinearly ≥ ½) but its nearest latent pixel is off it: the nearest of the four
    latent pixels around ``p`` that is on the mask instead (LazyDrag's backward map's rule). A
    rasterised ring or bar shrunk by a scale has most inverse images between its pixels: the
    nearest pixel alone showed its hollow or the ground, and the shape vanished."""
    br, bc, best = nearest_of_four(mask, (p[..., 0] + 0.5) * patch - 0.5, (p[..., 1] + 0.5) * patch - 0.5)
    use = on & ~mask[rows, cols] & torch.isfinite(best)
    return torch.where(use, br, rows), torch.where(use, bc, cols)


def _thin_level(pix: torch.Tensor, cov: torch.Tensor, patch: int, motion: dict) -> float:
    """[ours] The level (:func:`~.geometry.kept_area_level`) at which a latent pixel whose inverse
    image reads the moving pixels ``pix`` bilinearly (``cov``, :func:`_coverage`) shows the part: 1/2,
    or lower where 1/2 keeps under ``AREA_KEEP`` of its scaled area in the frame (a one-pixel ring
    shrunk by a scale: toy scene 141027 had no destination token). :func:`motion_map` takes the tokens
    holding such pixels, :func:`_motion_pixels` shows them (the motion's ``"level"``)."""
    from .correspondence_fields import move_displacement

    (sx, sy), (ys, xs) = motion.get("scale", (1.0, 1.0)), torch.nonzero(pix, as_tuple=True)
    at = torch.stack([_token_coord(xs, patch), _token_coord(ys, patch)], 1)
    to = at + move_displacement(at, motion["handle"], motion["target"], (sx, sy), float(motion.get("angle", 0.0)))
    h, w = pix.shape[0] / patch, pix.shape[1] / patch
    landed = (to[:, 0] >= -0.5) & (to[:, 0] < w - 0.5) & (to[:, 1] >= -0.5) & (to[:, 1] < h - 0.5)
    return kept_area_level(cov[cov > 0], float(landed.sum()) * float(sx) * float(sy))


def _far_tokens(edit: torch.Tensor, ring: int = 2) -> torch.Tensor:
    """[ours] Flat token indices that may lend their reference token to a scale-up's destination
    (:func:`motion_map`), farthest from ``edit`` (h, w) first: outside it grown by ``ring`` tokens.
    A lent token's own place keeps no reference token; it lies where the background lock holds the
    image, away from the context the edited tokens read."""
    h, w = edit.shape
    near = torch.nn.functional.max_pool2d(edit.float()[None, None], 2 * ring + 1, 1, ring)[0, 0] > 0
    idx = torch.nonzero(~near.reshape(-1)).flatten()
    if not idx.numel():
        return idx
    e = torch.nonzero(edit.reshape(-1)).flatten()
    if not e.numel():
        return idx
    ty, tx = (idx // w).to(torch.float64), (idx % w).to(torch.float64)
    ey, ex = (e // w).to(torch.float64), (e % w).to(torch.float64)
    d = ((ty[:, None] - ey[None]) ** 2 + (tx[:, None] - ex[None]) ** 2).min(1).values
    return idx[torch.argsort(-d, stable=True)]


def _borrow(pool: torch.Tensor, used: torch.Tensor) -> int:
    """The first token of ``pool`` not ``used`` (-1: none)."""
    free = pool[~used[pool]] if pool.numel() else pool
    return int(free[0]) if free.numel() else -1


def _coverage(mask: torch.Tensor, p: torch.Tensor, patch: int) -> torch.Tensor:
    """``mask`` (H, W) bool read bilinearly at token coordinates ``p`` (..., 2) x, y (outside the
    grid: 0)."""
    return bilinear_read(mask, (p[..., 0] + 0.5) * patch - 0.5, (p[..., 1] + 0.5) * patch - 0.5)


def motion_map(rmap: ReverseMap, patch: int = 2) -> ReverseMap:
    """``rmap`` with each exactly moved part's destinations and sources rebuilt from its motion
    (:func:`motion_parts`) [ours; ``warp="motion"``]: a reference token carries one destination
    only (its position ids are that destination's), and the reverse field's rounding gives a
    rotated or scaled part a destination set with gaps and sources shared by two destinations
    (one of which then showed nothing: a quarter to a half of a rotated object's latent pixels on
    the toy benchmark).

    Per part: the destination tokens are those holding a latent pixel whose inverse image
    (nearest latent pixel) is a moving pixel of the part (its :attr:`~ReverseMap.fine_mask`
    pixels, else all of its tokens' pixels), minus tokens another group already claims. Each
    takes the part token under its centre's inverse image, the best-fitting destination first;
    a destination left without one takes the unused part token nearest to that image (a
    *carrier*: its content is re-embedded from the motion's pixels anyway, :func:`_motion_pixels`),
    and when none is left (a scale-up), its own reference token if that lies outside M_SRC (re-
    embedded in place, ids unchanged); otherwise [ours] a reference token lent from far from the
    edit (:func:`_far_tokens`: a scale-up over its own source had no token left there, and the
    stretched object showed a band of ground). The carried destinations are listed in the
    motion's ``"carried"``."""
    from .correspondence_fields import move_inverse

    parts = motion_parts(rmap)
    if not parts:
        return rmap
    h, w = rmap.grid_hw
    dst, src = rmap.dst_mask.clone(), rmap.src.clone()
    tok_src = src[..., 1] * w + src[..., 0]                                   # (h, w), -1 (·w) where none
    moving = rmap.fine_mask
    ys, xs = torch.meshgrid(torch.arange(h * patch), torch.arange(w * patch), indexing="ij")
    centres = torch.stack([_token_coord(xs.reshape(-1), patch), _token_coord(ys.reshape(-1), patch)], 1)
    tys, txs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                              indexing="ij")
    tok_centres = torch.stack([txs.reshape(-1), tys.reshape(-1)], 1)
    motions = []
    for part, _m in parts:
        mine = dst & (part.reshape(-1)[tok_src.clamp(min=0)].reshape(h, w)) & (tok_src >= 0)
        dst &= ~mine
        src[mine] = -1
    used = torch.zeros(h * w, dtype=torch.bool)
    used[(src[..., 1] * w + src[..., 0])[dst]] = True
    pool = _far_tokens(rmap.src_mask | rmap.dst_mask | dst)
    for part, m in parts:
        pix = part.repeat_interleave(patch, 0).repeat_interleave(patch, 1)
        if moving is not None and tuple(moving.shape) == tuple(pix.shape):
            pix = pix & moving
        args = (m["handle"], m["target"], m.get("scale", (1.0, 1.0)), float(m.get("angle", 0.0)))
        p = move_inverse(centres, *args)
        r, c = _latent_pixel(p[:, 1], patch), _latent_pixel(p[:, 0], patch)
        ok = (r >= 0) & (r < h * patch) & (c >= 0) & (c < w * patch)
        hit = torch.zeros(h * patch * w * patch, dtype=torch.bool)
        hit[ok] = pix[r[ok], c[ok]]
        cov = _coverage(pix, p, patch)
        level = _thin_level(pix, cov, patch, m)
        if level < 0.5:
            hit |= cov >= level - 1e-9
            m = {**m, "level": level}
        q_mask = hit.reshape(h, patch, w, patch).any(3).any(1) & ~dst
        q = torch.nonzero(q_mask.reshape(-1)).flatten()
        if not q.numel():
            motions.append(m)
            continue
        b = move_inverse(tok_centres[q], *args)                                 # (n, 2) x, y
        pref = torch.ceil(b - 0.5 - SNAP_TOL).long()
        inside = (pref[:, 0] >= 0) & (pref[:, 0] < w) & (pref[:, 1] >= 0) & (pref[:, 1] < h)
        pref_idx = torch.where(inside, pref[:, 1].clamp(0, h - 1) * w + pref[:, 0].clamp(0, w - 1), -1)
        fit = (b - pref.to(torch.float64)).norm(dim=1)
        flat_part = part.reshape(-1)
        got = torch.full((q.numel(),), -1, dtype=torch.long)
        for k in torch.argsort(fit, stable=True).tolist():
            s_k = int(pref_idx[k])
            if s_k >= 0 and bool(flat_part[s_k]) and not bool(used[s_k]):
                got[k], used[s_k] = s_k, True
        carried = []
        for k in torch.nonzero(got < 0).flatten().tolist():
            spare = torch.nonzero(flat_part & ~used).flatten()
            if spare.numel():
                d = (tok_centres[spare] - b[k]).norm(dim=1)
                s_k = int(spare[int(d.argmin())])
            elif not bool(rmap.src_mask.reshape(-1)[q[k]]) and not bool(used[q[k]]):
                s_k = int(q[k])
            else:
                s_k = _borrow(pool, used)
                if s_k < 0:
                    continue
            got[k], used[s_k] = s_k, True
            carried.append(int(q[k]))
        keep = got >= 0
        qk, sk = q[keep], got[keep]
        dst.view(-1)[qk] = True
        src.view(-1, 2)[qk] = torch.stack([sk % w, sk // w], 1)
        motions.append({**m, "carried": carried})
    from dataclasses import replace

    return replace(rmap, dst_mask=dst, src=src, params={**rmap.params, "motions": motions})


def _patch_grid(src_idx: torch.Tensor, shift: torch.Tensor, grid_hw, patch: int, clamp: bool = True) -> tuple:
    """(rows, cols) (n, patch, patch) long: the latent pixels of each source token moved by ``shift``
    (clamped to the latent unless ``clamp`` is False)."""
    h, w = grid_hw
    off = torch.arange(patch)
    oy, ox = off[:, None].expand(patch, patch), off[None, :].expand(patch, patch)
    rows = ((src_idx // w) * patch + shift[:, 1])[:, None, None] + oy
    cols = ((src_idx % w) * patch + shift[:, 0])[:, None, None] + ox
    if not clamp:
        return rows, cols
    return rows.clamp(0, h * patch - 1), cols.clamp(0, w * patch - 1)


def _first_per_source(src_idx: torch.Tensor) -> torch.Tensor:
    """Indices into the (ascending-destination) pairs of each source's first destination, by source."""
    order = torch.sort(src_idx, stable=True).indices
    s_sorted = src_idx[order]
    first = torch.ones_like(s_sorted, dtype=torch.bool)
    first[1:] = s_sorted[1:] != s_sorted[:-1]
    return order[first]


def moved_patch_pixels(rmap: ReverseMap, *, subtoken: bool, composite: bool, patch: int = 2,
                       warp: str = "token", fill_vacated: bool = False,
                       spill_onto: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token_flat_idx (n,), rows (n, patch, patch), cols (n, patch, patch)) long: the reference
    tokens whose content changes, and the reference latent pixels each is re-embedded from
    (Position-Consistent Attention), in the token's own pixel layout. Tokens left as they are
    (no shift, nothing composited) are not listed.

    A source token s with its first destination q (row-major) takes pixel (i, j) from the
    reference at s's pixel shifted by :func:`subtoken_shifts` (``subtoken``; else unshifted), and,
    with ``composite`` and a :attr:`ReverseMap.fine_mask`, from the reference at q's own pixel
    (i, j) wherever the shifted source pixel lies outside the fine region (the background the
    token was cut with) and q's pixel lies outside it too (else the old object would come back);
    so a token half object, half background puts the object on the destination's background
    [departure: the paper moves whole tokens].

    With both, region pixels that no destination carries are pasted too ("spill"): a drag of a
    fractional token splits each source token's pixels over two destination tokens, and where the
    region's edge pixel row lies in a token whose neighbour across the edge is not in M_SRC, the
    destination that would carry it has its source outside M_SRC and is no destination (a thin ring
    lost an arc on the toy benchmark). The reference token at such a q (one token around M_DST, not
    in M_SRC: it stays where it is, with its own ids) is re-embedded with those region pixels over
    its own.

    ``warp="pixel"`` (with ``subtoken``) looks each destination latent pixel up through the
    reverse field instead of shifting the whole source token (:func:`_pair_pixels`).

    ``fill_vacated`` [ours] (with ``composite``): a destination pixel whose source pixel is no
    moving content while its own pixel is painted (an object or shadow that moves away: this part
    at its old place, or another part) shows the reference *filled* there, not the source's
    surroundings (the background of another place: on the toy benchmark a square edge in another
    object's colour where one object lands on the other's vacated area). Its row is then offset by
    ``patch · h``: an index into the filled reference stacked below the reference.

    ``spill_onto`` [ours] (Position-Consistent Attention's ``fill_in_place``): the spill may also
    land on a vacated token that is no source (shown in place with the fill), whose other painted
    pixels then show the filled reference (with ``fill_vacated``): a half-token move loses an edge
    row where the token that would carry it is such a token."""
    h, w = rmap.grid_hw
    dst_idx, src_idx = injection_pairs(rmap)
    empty = torch.zeros(0, dtype=torch.long)
    if not dst_idx.numel():
        return empty, empty.reshape(0, patch, patch), empty.reshape(0, patch, patch)
    pick = _first_per_source(src_idx)
    s, q = src_idx[pick], dst_idx[pick]
    shift = torch.zeros(s.numel(), 2, dtype=torch.long)
    if subtoken:   # every pair's pixels (the composite below needs them all); by source, first destination each
        all_r, all_c, all_off = _pair_pixels(rmap, dst_idx, src_idx, patch, warp)
        rows, cols, off_shape = all_r[pick], all_c[pick], all_off[pick]
    else:
        rows, cols = _patch_grid(s, shift, (h, w), patch)
        off_shape = torch.zeros(rows.shape, dtype=torch.bool)
    own_r, own_c = _patch_grid(s, torch.zeros_like(shift), (h, w), patch)
    fine = rmap.fine_mask
    if composite and fine is not None:
        if tuple(fine.shape) != (h * patch, w * patch):
            raise ValueError(f"fine_mask {tuple(fine.shape)} does not match the {h}x{w} grid at "
                             f"{patch} latent pixels per token")
        q_rows, q_cols = _patch_grid(q, torch.zeros_like(shift), (h, w), patch)
        moving = fine[rows, cols] & ~off_shape           # warp="motion": the shape's sub-pixel edge
        bg = ~moving & ~fine[q_rows, q_cols]
        rows, cols = torch.where(bg, q_rows, rows), torch.where(bg, q_cols, cols)
        if fill_vacated:
            vac = ~moving & rmap.painted[q_rows, q_cols]
            rows, cols = torch.where(vac, q_rows + h * patch, rows), torch.where(vac, q_cols, cols)
        if subtoken:
            got = torch.zeros_like(fine)
            got[all_r[~all_off], all_c[~all_off]] = True      # a pixel read past the frame reads nothing
            sp = _spill(rmap, fine & ~got, patch, warp, onto=spill_onto)
            if sp is not None:
                z = torch.zeros(sp[0].numel(), 2, dtype=torch.long)
                own = _patch_grid(sp[0], z, (h, w), patch)
                sp_r = sp[1]
                if fill_vacated and spill_onto:   # a vacated token spilled onto shows the fill around it
                    kept = (sp[1] == own[0]) & (sp[2] == own[1]) & rmap.painted[own[0], own[1]]
                    sp_r = torch.where(kept, own[0] + h * patch, sp[1])
                s = torch.cat([s, sp[0]])
                rows, cols = torch.cat([rows, sp_r]), torch.cat([cols, sp[2]])
                own_r, own_c = torch.cat([own_r, own[0]]), torch.cat([own_c, own[1]])
    changed = ((rows != own_r) | (cols != own_c)).flatten(1).any(1)
    return s[changed], rows[changed], cols[changed]


def lost_at(rmap: ReverseMap, cand: torch.Tensor, lost: torch.Tensor, patch: int, warp: str):
    """(tokens, rows, cols, take (n, patch, patch)) or None: of the tokens ``cand`` (flat), those
    whose latent pixels, looked up through the reverse field from the source token it gives them,
    would show a ``lost`` region pixel; ``rows`` / ``cols`` each pixel's source, ``take`` where
    that source is lost (:func:`_spill`, :func:`~fluxdrag.core.reverse_landed.hole_spill`)."""
    if not cand.numel():
        return None
    h, w = rmap.grid_hw
    back = _back(rmap, cand)
    src_xy = torch.ceil(back - 0.5 - SNAP_TOL).long()
    ok = (src_xy[:, 0] >= 0) & (src_xy[:, 0] < w) & (src_xy[:, 1] >= 0) & (src_xy[:, 1] < h)
    rows, cols, off = _pair_pixels(rmap, cand[ok], src_xy[ok, 1] * w + src_xy[ok, 0], patch, warp)
    # [ours] a source past the frame by under a token still has pixels on the latent: each latent
    # pixel reads the source pixel the translation gives it, round(patch · back) + its offset (the
    # token warp's pixels, with no token to shift; "pixel" / "motion" do not add the field's
    # departure here), and those past the frame read nothing (toy scene 202018: a ring at the
    # image's left edge moved by a half token lost that column)
    lim = torch.tensor([w, h], dtype=torch.float64)
    edge = ~ok & ((back > -1.0) & (back < lim)).all(1)
    if bool(edge.any()):
        o = torch.arange(patch)
        er = round_half_up(patch * back[edge, 1]).long()[:, None, None] + o[None, :, None].expand(-1, patch, patch)
        ec = round_half_up(patch * back[edge, 0]).long()[:, None, None] + o[None, None, :].expand(-1, patch, patch)
        e_off = (er < 0) | (er >= h * patch) | (ec < 0) | (ec >= w * patch)
        rows = torch.cat([rows, er.clamp(0, h * patch - 1)])
        cols = torch.cat([cols, ec.clamp(0, w * patch - 1)])
        off = torch.cat([off, e_off])
        cand = torch.cat([cand[ok], cand[edge]])
    else:
        cand = cand[ok]
    take = lost[rows, cols] & ~off
    near = _near_own_group(rmap, cand, rows // patch, cols // patch)
    if near is not None:
        take &= near
    keep = take.flatten(1).any(1)
    if not bool(keep.any()):
        return None
    return cand[keep], rows[keep], cols[keep], take[keep]


def _near_own_group(rmap: ReverseMap, cand: torch.Tensor, tr: torch.Tensor, tc: torch.Tensor):
    """(n, patch, patch) bool or None [ours]: on a map merged from drag groups (``drag_groups``
    "component", :attr:`ReverseMap.back` stored), whether the source token (``tr``, ``tc``) of each
    candidate pixel belongs to a group with a destination token within one token of the candidate.
    The stored field at a token is the nearest group's, so near one group's destination it reached
    into another group's region and spilled that group's lost edge pixels with the wrong motion
    (toy scene 210026: a ring's pixels pasted beside the other object). The groups are those the
    map was merged from (:func:`~fluxdrag.core.reverse_groups.group_labels`). None on other maps."""
    from .reverse_groups import group_labels

    group = group_labels(rmap)
    if group is None:
        return None
    h, w = rmap.grid_hw
    n = int(group.max()) + 1
    if n < 2:
        return None
    dst_group = torch.full((h, w), -1, dtype=torch.long)
    s = rmap.src[rmap.dst_mask]
    dst_group[rmap.dst_mask] = torch.where((s >= 0).all(1), group[s[:, 1].clamp(min=0), s[:, 0].clamp(min=0)], -1)
    one = torch.stack([(dst_group == g).float() for g in range(n)])[:, None]
    reach = torch.nn.functional.max_pool2d(one, 3, stride=1, padding=1)[:, 0] > 0      # (n, h, w)
    g_px = group[tr, tc]
    ok = reach[:, cand // w, cand % w].T                                                 # (cand, n)
    return (g_px >= 0) & torch.gather(ok, 1, g_px.clamp(min=0).flatten(1)).reshape(g_px.shape)


def _motion_pixels_of(rmap: ReverseMap, patch: int) -> torch.Tensor:
    """(h·patch, w·patch) bool: the latent pixels of the tokens of the map's parts with an exact
    motion (:func:`motion_parts`)."""
    h, w = rmap.grid_hw
    parts = torch.zeros(h, w, dtype=torch.bool)
    for part, _m in motion_parts(rmap):
        parts |= part
    return parts.repeat_interleave(patch, 0).repeat_interleave(patch, 1)


def _spill(rmap: ReverseMap, lost: torch.Tensor, patch: int, warp: str = "token", onto: bool = False):
    """(tokens q, rows, cols) of the reference tokens around M_DST that get the ``lost`` region
    pixels their shifted source would carry (see :func:`moved_patch_pixels`), or None. The tokens
    are those outside M_SRC, and with ``onto`` the vacated ones that are no source too (shown in
    place with the hole fill, Position-Consistent Attention's ``fill_in_place``).

    A part with an exact motion (:func:`motion_parts`: rotated, scaled or swung) spills nothing
    [ours], in every warp as in :func:`~fluxdrag.core.reverse_landed.hole_spill`: the motion warp
    shows each of its destination pixels, and the source pixels none reads are the turned or
    shrunk raster's, not a lost row (a one-pixel ring scaled by 0.67 got eight
    of them pasted at the corners around its destination: IoU 0.60, BG 0.072)."""
    lost = lost & ~_motion_pixels_of(rmap, patch)
    if not bool(lost.any()):
        return None
    h, w = rmap.grid_hw
    ring = torch.nn.functional.max_pool2d(rmap.dst_mask.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
    free = ~rmap.src_mask | (rmap.vacated_mask & ~rmap.used_source_mask) if onto else ~rmap.src_mask
    cand = torch.nonzero((ring & ~rmap.dst_mask & free).reshape(-1)).flatten()
    got = lost_at(rmap, cand, lost, patch, warp)
    if got is None:
        return None
    cand, rows, cols, take = got
    q_rows, q_cols = _patch_grid(cand, torch.zeros(cand.numel(), 2, dtype=torch.long), (h, w), patch)
    return cand, torch.where(take, rows, q_rows), torch.where(take, cols, q_cols)
