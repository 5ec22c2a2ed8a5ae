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
#: how far the moving content reaches past ``content_contrast``: grown into its part's faint group (ours,
#: :func:`grown_content`) or not at all
CONTENT_GROWTHS = ("split", "none")
#: :func:`grown_content`'s lowest threshold, as a share of the part's strongest contrast [ours]: most of a
#: cast shadow scores 0.0–0.2 on the toy world's lit scenes, a shaded side 0.38–0.5 (the thresholds found on
#: the tuning seeds were 0.29–0.48: the floor guards a part with no second group)
SPLIT_FLOOR = 0.2
#: [ours] a part grows only when its two-class threshold lies at most this × ``content_contrast``: a split
#: at the cut itself finds no second group, only the cut's blurred edge pixels (a tile's edge next to the
#: object, 237001; a limb's edge at its joint, 14009019: thresholds 0.47; a shaded side's were 0.29–0.44)
SPLIT_CEILING = 0.9

# the fills come from ``correspondence_latent`` at call time: that module imports ``correspondence``,
# which re-exports this one


def content_pixels(latent: torch.Tensor, editable: torch.Tensor, contrast: float,
                   behind: torch.Tensor | None = None, one_piece: bool = False,
                   texture: bool = False, anchors: torch.Tensor | None = None,
                   score: torch.Tensor | None = None, grow: bool = False, objects=None) -> torch.Tensor:
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
    :func:`content_score` (same ``behind``, ``texture`` and ``objects``) when the caller has it already.
    ``grow`` [ours]: the kept pixels are then grown into their part's faint group
    (:func:`grown_content`, with ``anchors`` and :func:`growth_avoid`'s pixels): an object's shaded
    side moves with it. ``objects``: the unpainted objects around the paint
    (``correspondence_latent.FrontObjects``), whose rest the growth never enters and the texture
    continuation never copies (:func:`content_score`)."""
    P = editable.to(torch.bool).cpu()
    if contrast <= 0 or not bool(P.any()):
        return P.clone()
    lab = _components(P)                 # the paint's parts, read once for the rules below
    membrane = None
    if score is None:
        z, membrane = _membrane_contrast(latent, P, behind)
        score = _scored(z, membrane, P, lab, behind=behind, texture=texture, objects=objects)
    if membrane is None and anchors is not None and anchors.numel():
        membrane = _membrane_contrast(latent, P, behind)[1]
    keep = _kept(P, lab, score, membrane, contrast, behind=behind, one_piece=one_piece, anchors=anchors)
    if not grow:
        return keep
    return grown_content(keep, P, score, contrast, lab=lab, anchors=anchors,
                         avoid=growth_avoid(P, keep, score, contrast, objects))


def _kept(P: torch.Tensor, lab: torch.Tensor, score: torch.Tensor, membrane: torch.Tensor | None,
          contrast: float, *, behind: torch.Tensor | None, one_piece: bool,
          anchors: torch.Tensor | None) -> torch.Tensor:
    """:func:`content_pixels`' rules on a scored paint ``P`` (parts ``lab``): the pixels at or above
    ``contrast``, less the faint parts apart from every anchor (``membrane``, the membrane contrast,
    is needed with ``anchors``), then the largest pieces with ``one_piece``."""
    keep = P & (score >= contrast)
    if anchors is not None and anchors.numel():
        keep &= ~_unanchored_faint(membrane, P, lab, anchors, contrast)
    if one_piece:
        keep = largest_pieces(keep, P, lab, behind, held=_anchor_cells(anchors, P.shape))
    return keep


def growth_avoid(editable: torch.Tensor, keep: torch.Tensor, score: torch.Tensor, contrast: float,
                 objects=None) -> torch.Tensor:
    """[ours] (H, W) bool: the painted pixels :func:`grown_content` never enters, given the content
    ``keep``: those standing out (``score`` ≥ ``contrast``) that the content rules left out (a
    smaller piece, a faint part apart from every handle: background, filled), and with ``objects``
    (``correspondence_latent.FrontObjects``) the painted pixels that continue an unpainted object
    (``FrontObjects.continued`` of the paint not kept): a limb's base under the paint at its joint
    stays (``stay_continued``)."""
    P = editable.to(torch.bool).cpu()
    keep = keep.to(torch.bool).cpu()
    out = P & (score.cpu() >= contrast) & ~keep
    if objects is not None:
        out |= objects.continued(P & ~keep)
    return out


def moving_score(latent: torch.Tensor, editable: torch.Tensor, contrast: float, *, texture: bool,
                 one_piece: bool, grow: bool, anchors: torch.Tensor | None = None, objects=None,
                 behind: torch.Tensor | None = None) -> torch.Tensor:
    """(H, W) float: :func:`content_score` with :func:`content_pixels`' rules folded in, so that the
    pixels at or above ``contrast`` are its content: with ``one_piece`` (and ``anchors``) the
    standing-out pixels it leaves out (outside the largest piece of their part, or in a faint part
    apart from every anchor) score 0; with ``grow`` (and ``objects``) those it grows into score ``contrast``.
    ``behind``: as :func:`content_pixels`' (the objects in front touching the paint)."""
    P = editable.to(torch.bool).cpu()
    if not bool(P.any()):
        return torch.zeros(P.shape, dtype=torch.float32)
    z, membrane = _membrane_contrast(latent, P, behind)      # once: the score and the faint-part rule read it
    lab = _components(P)
    score = _scored(z, membrane, P, lab, behind=behind, texture=texture, objects=objects)
    if contrast <= 0 or not (one_piece or grow):
        return score
    keep = _kept(P, lab, score, membrane, contrast, behind=behind, one_piece=one_piece,
                 anchors=anchors if one_piece else None)
    if grow:                # only the parts nearest to a handle grow, whatever the piece rule
        keep = grown_content(keep, P, score, contrast, lab=lab, anchors=anchors,
                             avoid=growth_avoid(P, keep, score, contrast, objects))
    return torch.where(keep, score.clamp(min=contrast), torch.where(score < contrast, score, torch.zeros_like(score)))


def grown_content(keep: torch.Tensor, editable: torch.Tensor, score: torch.Tensor, contrast: float, *,
                  floor: float = SPLIT_FLOOR, lab: torch.Tensor | None = None,
                  anchors: torch.Tensor | None = None, avoid: torch.Tensor | None = None) -> torch.Tensor:
    """[ours] ``content_growth`` "split": the content ``keep`` ((H, W) bool, within ``editable``)
    grown through 4-connected painted pixels whose ``score`` (:func:`content_score`) is at least
    their part's two-class threshold: the cut that best splits the part's scores into two groups
    (Otsu's), clamped to [``floor``, ``contrast``]; a part whose threshold lies above
    ``SPLIT_CEILING`` × ``contrast`` has no second group and does not grow. A lit object's shaded
    side stands out from the ground by less than half its lit side's contrast and is left behind by
    ``content_contrast`` alone (toy scene 219000: IoU 0.525 for all three methods); it still scores
    with the object's group (0.38–0.5), most of a cast shadow with the ground's (0.0–0.2). The growth
    never steps diagonally: a shadow's umbra touching the object's corner scores as high as a shaded
    side (up to 0.47 on 219000, above its part's threshold 0.36) and was carried with 8-connected
    growth (BG 0.006 → 0.136). The split needs ground painted with the object: where the paint is
    mostly object, the two groups are the lit side and the rest, and the threshold lies above the
    cut (no growth). ``anchors``: (k, 2) points (x, y), the drags'
    handles; only the parts nearest to one grow (a part apart from every handle is not the dragged
    object). ``avoid``: pixels the growth never enters (:func:`growth_avoid`). ``lab``: the paint's
    8-connected parts when the caller has them."""
    P = editable.to(torch.bool).cpu()
    keep = keep.to(torch.bool).cpu() & P
    if contrast <= 0 or not bool(keep.any()):
        return keep
    lab = _components(P) if lab is None else lab
    seed = keep if anchors is None or not anchors.numel() else keep & _anchored_parts(P, lab, anchors)
    score = score.float().cpu()
    low = torch.full(P.shape, float("inf"))
    for k in range(int(lab.max()) + 1):
        part = lab == k
        t = two_class_threshold(score[part])
        if t <= SPLIT_CEILING * contrast:
            low[part] = min(contrast, max(floor, t))
    allowed = P & (score >= low)
    if avoid is not None:
        allowed &= ~avoid.to(torch.bool).cpu()
    from .correspondence_latent import _ring4

    grown = seed
    while True:
        near = (grown | _ring4(grown)) & (allowed | seed)
        if torch.equal(near, grown):
            return keep | grown
        grown = near


def two_class_threshold(values: torch.Tensor) -> float:
    """Otsu's threshold of ``values`` (1-D): the midpoint of the cut between sorted neighbours that
    maximises the between-group variance (the first such cut on ties); 0.0 for fewer than two values."""
    v = torch.sort(values.detach().double().flatten().cpu()).values
    n = v.numel()
    if n < 2:
        return 0.0
    k = torch.arange(1, n, dtype=torch.float64)        # pixels in the lower group
    low = torch.cumsum(v, 0)[:-1]
    m0, m1 = low / k, (v.sum() - low) / (n - k)
    between = k * (n - k) * (m0 - m1) ** 2
    i = int(torch.argmax(between))
    return float((v[i] + v[i + 1]) / 2)


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
    anchored = _anchored_ids(P, lab, anchors)
    for k in torch.nonzero(~anchored & (tops < contrast * tops.max())).flatten().tolist():
        out |= lab == k
    return out


def _anchored_ids(P: torch.Tensor, lab: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(n,) bool over the connected parts ``lab`` of the paint ``P``: those nearest to one of
    ``anchors`` ((k, 2) points (x, y))."""
    yx = torch.nonzero(P).double()
    pts = anchors.detach().double().cpu().reshape(-1, 2).flip(1)          # (y, x)
    anchored = torch.zeros(int(lab.max()) + 1, dtype=torch.bool)
    anchored[lab[P][torch.cdist(pts, yx).argmin(1)]] = True
    return anchored


def _anchored_parts(P: torch.Tensor, lab: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: the connected parts of the paint nearest to one of ``anchors`` (:func:`_anchored_ids`)."""
    ids = torch.nonzero(_anchored_ids(P, lab, anchors)).flatten()
    return torch.isin(lab, ids) & P


def content_score(latent: torch.Tensor, editable: torch.Tensor,
                  behind: torch.Tensor | None = None, texture: bool = False, objects=None) -> torch.Tensor:
    """(H, W) float: each pixel of ``editable``'s contrast against the region's harmonic fill
    over the strongest such contrast of its 8-connected part (1 in a part without contrast, 0
    outside ``editable``); :func:`content_pixels` keeps those at or above its ``contrast``.
    ``texture``: the contrast is the smaller of that and the contrast against the image's own
    continuation (:func:`texture_fill`); the yardstick stays the membrane's. ``objects``
    (``correspondence_latent.FrontObjects``) [ours]: the continuation neither matches nor copies
    their standing regions (:meth:`~.correspondence_latent.FrontObjects.standing`): a limb's base
    is no ground, and a copy shifted along the limb continued the limb into its painted free
    segment, part of which then scored as ground (toy bend 14017011: 21 of 31 limb pixels ≥ 0.5 with
    the copy free, 30 with the objects kept out). A base within ``REPEAT_SLACK`` of a ground region's
    mean counts as ground here and may still be copied."""
    P = editable.to(torch.bool).cpu()
    if not bool(P.any()):
        return torch.zeros(P.shape, dtype=torch.float32)
    z, membrane = _membrane_contrast(latent, P, behind)
    return _scored(z, membrane, P, _components(P), behind=behind, texture=texture, objects=objects)


def _scored(z: torch.Tensor, s: torch.Tensor, P: torch.Tensor, lab: torch.Tensor, *,
            behind: torch.Tensor | None, texture: bool, objects=None) -> torch.Tensor:
    """:func:`content_score` from the membrane contrast ``s`` and the paint's parts ``lab``."""
    from .correspondence_latent import texture_fill

    out = torch.zeros(P.shape, dtype=torch.float32)
    both = s       # the test's contrast; the yardstick (``top``) stays the membrane's
    if texture:
        avoid = None if behind is None else behind.to(torch.bool).cpu()
        if objects is not None:
            from .correspondence_latent import REPEAT_SLACK

            kept = objects.standing(REPEAT_SLACK)
            avoid = kept if avoid is None else avoid | kept
        tex = texture_fill(z, P, avoid=avoid)
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
