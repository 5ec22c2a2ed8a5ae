"""[ours] A painted cast shadow carried with the object's motion (LazyDrag's ``cast_shadow``,
docs/lazydrag.md). Pure torch.

A shadow cast on a ground plane by a light is the object's silhouette projected along the light:
s(x) ≈ blur(silhouette(x − d)), d the shadow's offset from the object (for a point light the
silhouette is also enlarged about the light's foot). If the object moves by a rigid motion T
(rotation R about a pivot c, then a translation), the projected silhouette moves by
T_s(y) = T(y − d) + d: the same translation, the rotation R about c + d — not about c. A shadow
rotated about the object's own pivot swings away from it; one left where it was is wrong as soon
as the object turns. ``d`` is read from the image (:func:`shadow_offset`): the painted region's
content (the object) and its rest (the shadow, ``content_pixels``' complement in the paint).
:func:`carried_shadow` maps each pixel of the edit to the shadow pixel whose darkening it
receives; the LazyDrag Patch adds that darkening (the source's deviation from the hole fill) to
the destination's own ground."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .correspondence import _match  # first: it loads correspondence_latent, which imports it back
from .correspondence_fields import _components, move_displacement
from .correspondence_latent import _correlate

#: the silhouette's enlargement tried by :func:`shadow_offset` (a point light enlarges the
#: shadow by z/(z − h); a painted shadow also takes in the penumbra): a nuisance parameter of
#: the fit, not used for the motion [ours]
SHADOW_SCALES = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)
#: sub-pixel steps of the offset search (2: half latent pixels) [ours]
SUBSTEPS = 2
#: the shadow is carried only by a motion that moves the object's centroid by at most this share
#: of the object's radius (√(area/π)): a rotation or a swing in place. A move changes the object's
#: place relative to the light, and with it the shadow's offset (a point light at height z casts an
#: object at height h by (c − light's foot)·h/(z − h)), which one shadow does not tell; carried
#: by the move itself, the shadow lands beside the new one (lit moves, tuning seeds 10101–10106:
#: shadow 0.084 → 0.093, BG 0.003 → 0.012) [ours]
IN_PLACE = 0.5
#: a shadow the image frame cuts goes on beyond it as the object's silhouette shifted by the shadow's
#: offset (the model :func:`shadow_offset` fits), within this many latent pixels of the frame: a pixel
#: whose preimage under the shadow's motion falls there takes the darkening of the nearest visible
#: shadow pixel. 0: nothing is carried from outside the image, so a shadow turned inward from the
#: frame leaves lit ground where its cut part lands [ours]
BEYOND_FRAME = 8


def shadow_offset(content: torch.Tensor, shadow: torch.Tensor,
                  scales: tuple[float, ...] = SHADOW_SCALES) -> tuple[float, float] | None:
    """[ours] The offset d = (dx, dy), in pixels of the grid, of a cast shadow from its object:
    ``content`` (H, W) bool the object's pixels, ``shadow`` (H, W) bool the visible shadow's
    (painted, not object). The model: the shadow is the object's silhouette enlarged by s about
    its centroid c and shifted by d, seen where the object does not cover it; (d, s) maximise the
    IoU between that visible part and ``shadow`` (s over ``scales``, d in steps of 1/SUBSTEPS
    pixel up to the extent of object and shadow; ties: the smallest |d|, then the smallest s).
    c + d is where the object's centroid casts its shadow: the pivot of the shadow's rotation.
    None when either mask is empty or no offset overlaps the shadow."""
    C, S = content.to(torch.bool).cpu(), shadow.to(torch.bool).cpu() & ~content.to(torch.bool).cpu()
    if not bool(C.any()) or not bool(S.any()):
        return None
    both = C | S
    ys, xs = torch.nonzero(both, as_tuple=True)
    extent = int(max(int(ys.max() - ys.min()), int(xs.max() - xs.min()))) + 1
    # crop to the two masks' box grown by the search's reach, on a grid SUBSTEPS finer
    H, W = C.shape
    y0, y1 = max(int(ys.min()) - extent, 0), min(int(ys.max()) + extent + 1, H)
    x0, x1 = max(int(xs.min()) - extent, 0), min(int(xs.max()) + extent + 1, W)
    k = SUBSTEPS
    up = lambda m: m[y0:y1, x0:x1].repeat_interleave(k, 0).repeat_interleave(k, 1).double()  # noqa: E731
    Cf, Sf = up(C), up(S)
    h, w = Cf.shape
    cy, cx = (torch.nonzero(Cf).double().mean(0)).tolist()
    gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    reach = k * extent
    n_s = float(Sf.sum())
    best, pick = 0.0, None
    for s in scales:
        qx, qy = cx + (gx - cx) / s, cy + (gy - cy) / s     # the enlarged silhouette's preimage
        grid = torch.stack(((qx + 0.5) / w * 2 - 1, (qy + 0.5) / h * 2 - 1), -1)[None].float()
        sil = F.grid_sample(Cf[None, None].float(), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)[0, 0].double()
        inter = _correlate(sil, Sf, reach)              # Σ sil(p) S(p + d)
        seen = _correlate(sil, 1.0 - Cf, reach)         # the shifted silhouette off the object
        iou = inter / (seen + n_s - inter).clamp(min=1e-9)
        dy, dx = torch.meshgrid(torch.arange(-reach, reach + 1), torch.arange(-reach, reach + 1), indexing="ij")
        r2 = (dy * dy + dx * dx).double()
        top = float(iou.max())
        if top <= 1e-9:
            continue
        at = iou >= top - 1e-9
        j = int(torch.where(at, r2, torch.full_like(r2, float("inf"))).reshape(-1).argmin())
        if pick is None or top > best + 1e-9 or (abs(top - best) <= 1e-9 and float(r2.reshape(-1)[j]) < pick[2]):
            best, pick = top, (int(dx.reshape(-1)[j]) / k, int(dy.reshape(-1)[j]) / k, float(r2.reshape(-1)[j]))
    return None if pick is None else (pick[0], pick[1])


def _shifted(mask: torch.Tensor, d: tuple[float, float]) -> torch.Tensor:
    """(H, W) float: ``mask`` moved by d = (dx, dy) pixels, read bilinearly (0 off the image)."""
    H, W = mask.shape
    gy, gx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    grid = torch.stack(((gx - d[0] + 0.5) / W * 2 - 1, (gy - d[1] + 0.5) / H * 2 - 1), -1)[None].float()
    return F.grid_sample(mask.float()[None, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0, 0]


def keeps_place(moved: float, content: torch.Tensor, in_place: float | None = IN_PLACE) -> bool:
    """Whether a motion that moves the object's centroid by ``moved`` (pixels of the grid) keeps
    ``content`` ((H, W) bool, the object) where it stands: at most ``in_place`` × its radius
    √(area/π) (``IN_PLACE``; None: any motion). A shadow is carried only by such a motion."""
    return in_place is None or moved <= in_place * (float(content.sum()) / math.pi) ** 0.5


def carried_shadow(editable: torch.Tensor, content: torch.Tensor, *, source: torch.Tensor, drag: torch.Tensor,
                   handles: torch.Tensor, targets: torch.Tensor, modes: list[str], scales: torch.Tensor,
                   angles: torch.Tensor, gate_unit: float = 1.0, offset: bool = True,
                   in_place: float | None = IN_PLACE, beyond_frame: int | None = None) -> torch.Tensor:
    """[ours] (H·W,) long: for each pixel, the flat index of the painted shadow pixel whose
    darkening it receives after the edit, -1 for none. On the latent-pixel grid (H, W) of a
    :class:`~.correspondence.FineMap`: ``editable`` the painted region, ``content`` the part of it
    that moves (the rest, in each connected part of the paint, is its shadow), ``source`` /
    ``drag`` the map's per-pixel source and drag (-1: none), ``handles`` … ``angles`` the map's
    drags in pixel coordinates.

    Per painted part whose content the map moves with ``move`` drags only (a rigid, rotating or
    scaling move; an elastic drag's shadow is not carried) that keep its centroid within
    ``in_place`` × its radius (``IN_PLACE``; None: any motion): the shadow's offset d
    (:func:`shadow_offset`; ``offset`` False: d = 0, the shadow moved with the object's own
    motion) and the part's drags conjugated by it — handle and target shifted by d, so a
    rotation turns the shadow about the pivot's own shadow. Each pixel looks up its source
    through the inverse motion (``_match``'s backward rule: the shadow read bilinearly at the exact
    preimage, ≥ ½, the nearest shadow pixel). The shadow the object hides at its source (its pixels
    under its own silhouette shifted by d) shows once the object turns: a pixel whose preimage falls
    there takes the darkening of the nearest visible shadow pixel. A pixel where the moved content
    lands receives no shadow (the object is on top). A shadow the frame cuts continues beyond it
    (``beyond_frame`` latent pixels, None: ``BEYOND_FRAME``) as the silhouette shifted by d, so a
    shadow turned inward from the frame arrives whole; the pixels it reaches take the darkening of
    the nearest visible shadow pixel."""
    P = editable.to(torch.bool).cpu()
    Cm = content.to(torch.bool).cpu() & P
    H, W = P.shape
    N = H * W
    out = torch.full((N,), -1, dtype=torch.long)
    src, drg = source.cpu(), drag.cpu()
    lab = _components(P)
    moved = (src >= 0) & (drg >= 0)
    for k in range(int(lab.max()) + 1):
        part = lab == k
        C, S = Cm & part, part & ~Cm
        if not bool(C.any()) or not bool(S.any()):
            continue
        mine = moved & part.reshape(-1)[src.clamp(min=0)]
        idx = sorted({int(i) for i in drg[mine].tolist()})
        if not idx or any(modes[i] != "move" for i in idx):
            continue
        if in_place is not None:   # only motions that keep the object where it stands
            yx = torch.nonzero(C).double().mean(0)
            c = torch.stack((yx[1], yx[0]))
            moves = [float(move_displacement(c[None], handles[i], targets[i], scales[i], float(angles[i])).norm())
                     for i in idx]
            if not keeps_place(max(moves), C, in_place):
                continue
        d = shadow_offset(C, S) if offset else (0.0, 0.0)
        if d is None:
            continue
        shift = torch.tensor(d, dtype=torch.float64)
        # the shadow the object hides at its source (its pixels under its own silhouette shifted by d)
        # shows once it turns: it takes the darkening of the nearest visible shadow pixel (the umbra)
        hidden = C & (_shifted(C, d) >= 0.5)
        m = BEYOND_FRAME if beyond_frame is None else max(int(beyond_frame), 0)
        if not bool(S[0].any() or S[-1].any() or S[:, 0].any() or S[:, -1].any()):
            m = 0      # the frame cuts no shadow
        # the grid grown by m on every side: inside, the visible shadow and the hidden one; outside,
        # the silhouette's shadow (C shifted by d) where the frame cuts it
        Hb, Wb = H + 2 * m, W + 2 * m
        big = F.pad(C.float()[None, None], (m, m, m, m))[0, 0] > 0.5
        big = _shifted(big, d) >= 0.5 if m else big
        big[m:m + H, m:m + W] = S | hidden
        chosen, _, _ = _match(big, handles[idx] + shift + m, targets[idx] + shift + m,
                              modes=[modes[i] for i in idx], scales=scales[idx], angles=angles[idx], circle=None,
                              gate_unit=gate_unit, backward=True)
        chosen = chosen.reshape(Hb, Wb)[m:m + H, m:m + W].reshape(-1)
        has = chosen < Hb * Wb
        cy, cx = torch.div(chosen, Wb, rounding_mode="floor") - m, chosen % Wb - m
        inside = has & (cy >= 0) & (cy < H) & (cx >= 0) & (cx < W)
        chosen = torch.where(inside, cy * W + cx, torch.full_like(chosen, N))
        under = inside & hidden.reshape(-1)[chosen.clamp(max=N - 1)]
        # a source under the object, or beyond the frame: the nearest visible shadow pixel's darkening
        far = under | (has & ~inside)
        if bool(far.any()):
            vis = torch.nonzero(S.reshape(-1)).flatten()
            q = torch.stack((cy[far], cx[far]), 1)
            dist = (q[:, None, :] - torch.stack((vis // W, vis % W), 1)[None]).pow(2).sum(-1)
            chosen[far] = vis[dist.argmin(1)]
        got = (chosen < N) & (src < 0) & (out < 0)
        out[got] = chosen[got]
    return out
