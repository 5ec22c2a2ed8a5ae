"""[ours] The content test of a painted region: which painted pixels carry the dragged object (they
move) and which are the scene around it (a cast shadow, a penumbra, ground painted with the object:
vacated and filled). Pure torch; split from ``correspondence_latent``, whose fills it reads."""
from __future__ import annotations

import torch

from .correspondence_fields import _components

#: which standing-out pixels move: the largest piece of each painted part (ours) or all of them
CONTENT_PIECES = ("largest", "all")
#: what a painted pixel must stand out from: the texture continued too (ours) or the membrane only
CONTENT_REFERENCES = ("texture", "membrane")

# the fills come from ``correspondence_latent`` at call time: that module imports ``correspondence``,
# which re-exports this one


def content_pixels(latent: torch.Tensor, editable: torch.Tensor, contrast: float,
                   behind: torch.Tensor | None = None, one_piece: bool = False,
                   texture: bool = False, anchors: torch.Tensor | None = None,
                   score: torch.Tensor | None = None) -> torch.Tensor:
    """[ours] The painted pixels that carry content: (H, W) bool, those of ``editable`` whose
    latent stands out from the region's harmonic fill (:func:`harmonic_fill`, what the
    surroundings would continue into it) by at least ``contrast`` × the strongest such contrast
    of their connected part (8-connected; norm over channels, ``latent`` (C, H, W) or
    (1, C, H, W)). The rest of the painted region (a cast shadow, a penumbra, background painted
    with the object) changes with the scene, not with the object: it is vacated and filled,
    never carried to the target. ``contrast`` 0: every painted pixel (the paper moves the whole
    region). ``behind`` [ours]: unpainted objects in front (:func:`~.correspondence_latent.unpainted_objects`); the fill
    runs behind them too, so a shadow painted next to one is not read against its colour.
    ``one_piece`` [ours]: the dragged object is one piece: of each part's standing-out pixels only
    the largest 8-connected piece moves (pieces that only an object in front of them, ``behind``,
    separates count as one); the smaller ones (a texture's cell or a shadow's edge inside the
    paint) are background and are filled. ``texture`` [ours]: a pixel must also stand out from the
    image's own continuation into the region (:func:`texture_fill`) by ``contrast`` × the same
    yardstick (the membrane's strongest contrast): a texture's cell in the painted shadow stands
    out from the membrane, not from the texture continued. ``anchors`` [ours]: (k, 2) points (x, y)
    on the grid, the drags' handles; a connected part of the paint nearest to none of them (a shadow
    painted apart from its object) carries content only when its strongest contrast is at least
    ``contrast`` × the strongest of all parts: the per-part yardstick would otherwise pick the
    darkest of a detached shadow as an object (toy scene 128007: 0.23 ×). ``score``: this region's
    :func:`content_score` (same ``behind`` and ``texture``) when the caller has it already."""
    P = editable.to(torch.bool).cpu()
    if contrast <= 0 or not bool(P.any()):
        return P.clone()
    z, membrane = _membrane_contrast(latent, P, behind)
    lab = _components(P)                 # the paint's parts, read once for the three rules below
    scored = _scored(z, membrane, P, lab, behind=behind, texture=texture) if score is None else score
    keep = P & (scored >= contrast)
    if anchors is not None and anchors.numel():
        keep &= ~_unanchored_faint(membrane, P, lab, anchors, contrast)
    if one_piece:
        keep = largest_pieces(keep, P, lab, behind, held=_anchor_cells(anchors, P.shape))
    return keep


def largest_pieces(keep: torch.Tensor, P: torch.Tensor, lab: torch.Tensor, behind: torch.Tensor | None,
                   held: torch.Tensor | None = None) -> torch.Tensor:
    """``content_pixels``' one-piece rule: of ``keep``'s pixels in each connected part (``lab``, the
    8-connected parts of the paint ``P``) only the largest piece, with every piece a handle lies on
    (``held``); pieces joined through ``behind`` (objects in front, off the paint) count as one."""
    bridge = None if behind is None else behind.to(torch.bool).cpu() & ~P
    out = torch.zeros_like(P)
    for k in range(int(lab.max()) + 1):
        out |= _largest_piece(keep & (lab == k), bridge, held)
    return out


def _anchor_cells(anchors: torch.Tensor | None, hw: tuple) -> torch.Tensor | None:
    """(H, W) bool: the cells under ``anchors`` ((k, 2) points (x, y), cell centres at integers), or
    None without anchors."""
    if anchors is None or not anchors.numel():
        return None
    H, W = hw
    pts = torch.floor(anchors.detach().double().cpu().reshape(-1, 2) + 0.5).long()   # half up, as the maps
    out = torch.zeros(hw, dtype=torch.bool)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H)
    out[pts[ok, 1], pts[ok, 0]] = True
    return out


def _membrane_contrast(latent: torch.Tensor, P: torch.Tensor,
                       behind: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (C, H, W) float, s (H, W)): ``latent`` on the CPU and each pixel's distance from the
    harmonic fill of the paint ``P`` (with ``behind``, the objects in front, filled over too)."""
    from .correspondence_latent import harmonic_fill

    z = latent.detach().float().cpu()
    z = z[0] if z.dim() == 4 else z
    region = P if behind is None else P | behind.to(torch.bool).cpu()
    return z, (z - harmonic_fill(z[None], region)[0]).norm(dim=0)


def _unanchored_faint(membrane: torch.Tensor, P: torch.Tensor, lab: torch.Tensor,
                      anchors: torch.Tensor, contrast: float) -> torch.Tensor:
    """(H, W) bool: the connected parts ``lab`` of the paint ``P`` nearest to none of ``anchors``
    whose strongest contrast against the harmonic fill (``membrane``) is under ``contrast`` × the
    strongest part's."""
    n = int(lab.max()) + 1
    out = torch.zeros_like(P)
    if n <= 1:
        return out
    tops = torch.tensor([float(membrane[lab == k].max()) for k in range(n)])
    yx = torch.nonzero(P).double()
    pts = anchors.detach().double().cpu().reshape(-1, 2).flip(1)          # (y, x)
    near = lab[P][torch.cdist(pts, yx).argmin(1)]
    anchored = torch.zeros(n, dtype=torch.bool)
    anchored[near] = True
    for k in torch.nonzero(~anchored & (tops < contrast * tops.max())).flatten().tolist():
        out |= lab == k
    return out


def content_score(latent: torch.Tensor, editable: torch.Tensor,
                  behind: torch.Tensor | None = None, texture: bool = False) -> torch.Tensor:
    """(H, W) float: each pixel of ``editable``'s contrast against the region's harmonic fill
    over the strongest such contrast of its 8-connected part (1 in a part without contrast, 0
    outside ``editable``); :func:`content_pixels` keeps those at or above its ``contrast``.
    ``texture``: the contrast is the smaller of that and the contrast against the image's own
    continuation (:func:`texture_fill`); the yardstick stays the membrane's."""
    P = editable.to(torch.bool).cpu()
    if not bool(P.any()):
        return torch.zeros(P.shape, dtype=torch.float32)
    z, membrane = _membrane_contrast(latent, P, behind)
    return _scored(z, membrane, P, _components(P), behind=behind, texture=texture)


def _scored(z: torch.Tensor, s: torch.Tensor, P: torch.Tensor, lab: torch.Tensor, *,
            behind: torch.Tensor | None, texture: bool) -> torch.Tensor:
    """:func:`content_score` from the membrane contrast ``s`` and the paint's parts ``lab``."""
    from .correspondence_latent import texture_fill

    out = torch.zeros(P.shape, dtype=torch.float32)
    both = s       # the test's contrast; the yardstick (``top``) stays the membrane's
    if texture:
        tex = texture_fill(z, P, avoid=None if behind is None else behind.to(torch.bool).cpu())
        if tex is not None:
            both = torch.minimum(s, (z - tex).norm(dim=0))
    for k in range(int(lab.max()) + 1):
        part = lab == k
        top = float(s[part].max())
        out[part] = both[part] / top if top > 0 else 1.0
    return out


def _largest_piece(mask: torch.Tensor, bridge: torch.Tensor | None,
                   held: torch.Tensor | None = None) -> torch.Tensor:
    """The largest 8-connected piece of ``mask`` (by its own pixels), pieces joined through
    ``bridge`` pixels counting as one; ``held`` ((H, W) bool, the drags' handle cells): every piece
    a handle lies on is kept too [ours] — a paint over two dragged objects moves both, not only the
    larger."""
    lab = _components(mask if bridge is None else mask | bridge)
    if int(lab.max()) < 1:
        return mask.clone()
    counts = torch.bincount(lab[mask], minlength=int(lab.max()) + 1)
    keep = lab == int(counts.argmax())
    if held is not None:
        ids = lab[held & (mask if bridge is None else mask | bridge)]
        if ids.numel():
            keep |= torch.isin(lab, ids)
    return mask & keep
