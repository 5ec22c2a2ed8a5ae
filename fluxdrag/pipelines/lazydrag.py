"""LazyDrag (arXiv 2509.12203): correspondence map → Uni-Inv inversion caching what the map needs →
attention control on a model clone (``attention_patches/lazydrag.py``) → sampling back.

The nodes expose the steps (Correspondence Map, Invert, LazyDrag Patch, Sample From Inversion);
:func:`run_lazydrag` chains them for scripts, bench and tests with the nodes' defaults."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..attention_patches.lazydrag import BACKGROUND_QUERY, CACHE_NAME, HOLE_FILLS, LazyDragControl, LazyDragPlan
from ..attention_patches.router import patch_model
from ..core import solvers
from ..core.cast_shadow import carried_shadow
from ..core.correspondence import (
    CONTENT_GROWTHS,
    CONTENT_PIECES,
    CONTENT_REFERENCES,
    SWING_PIVOTS,
    FineMap,
    FrontObjects,
    build_correspondence,
    compose_initial_latent,
    content_pixels,
    default_editable_region,
    hidden_destination,
    latent_region,
    token_to_latent,
)
from ..core.drag_sets import split_drags
from ..core.instructions import (
    LATENT_PX,
    TOKEN_PX,
    depth_rule,
    parse_instructions,
    pixel_mask_to_token_mask,
    to_token_space,
)
from .common import FluxDragInputError, check_finite, check_latent, mask_at, require_flux
from .inversion import CACHE_POLICIES, SCHEDULERS, InversionSettings, run_inversion, run_sampling
from .settings import SILENT, node_fields, overrides, paper_settings, pick, setting, validate

NODE_MAP = "FluxDrag Correspondence Map"
NODE_PATCH = "FluxDrag LazyDrag Patch"
RESOLUTIONS = ("pixel", "token")
MAPPINGS = ("backward", "forward")
DEPTHS = ("auto", "over", "under")
CAST_SHADOWS = ("offset", "object", "off")


@dataclass
class LazyDragSettings:
    """Every LazyDrag input, the only place its defaults live: the Correspondence Map's
    (``node="map"``), the LazyDrag Patch's (``"patch"``) and, for :func:`run_lazydrag`, the
    inversion's (``"invert"``: FluxDrag Invert's inputs as LazyDrag runs it, Uni-Inv). Departures
    from the paper carry its value (docs/lazydrag.md)."""

    METHOD: ClassVar[str] = "LazyDrag"

    # the inversion (FluxDrag Invert in the node graph)
    steps: int = setting(28, "Steps of the full schedule.", min=1, max=1000, main=True, node="invert")
    solver: str = setting("uni_inv", "Inversion solver (the paper: Uni-Inv).", options=solvers.SOLVERS,
                          main=True, node="invert")
    strength: float = setting(1.0, "How far to invert.", min=0.01, max=1.0, step=0.01, main=True,
                              node="invert")
    scheduler: str = setting("simple", "Sigma schedule.", options=SCHEDULERS, main=True, node="invert")
    inversion_guidance: float = setting(1.0, "FLUX distilled guidance during inversion.", min=0.0,
                                        max=100.0, step=0.1, main=True, node="invert")
    cache_policy: str = setting("cpu", "Where the edit cache lives (see FluxDrag Invert).",
                                options=CACHE_POLICIES, main=True, node="invert")
    cache_budget_gb: float = setting(0.0, "Cache budget in GiB (0 = automatic).", min=0.0, max=4096.0,
                                     step=0.5, main=True, node="invert")
    # Correspondence Map
    transition_width: int = setting(1, "Width in tokens of the transition band around the moved area "
                                       "(the paper leaves it open; 1–2 is our choice).",
                                    min=0, max=8, main=True, node="map", paper=SILENT)
    activation: float = setting(0.8, "Fraction of sampling steps with identity preservation and output "
                                     "merging (paper: 40 of 50 = 0.8). Lower: more natural, may miss "
                                     "targets; higher: accurate, may warp.",
                                min=0.0, max=1.0, step=0.02, main=True, node="map")
    seed: int = setting(0, "Seed of the noise that fills the vacated (inpaint) area.", min=0,
                        max=0xFFFFFFFFFFFFFFFF, main=True, node="map", seed=True)
    background_query: str = setting(
        "live", "live: only background keys and values are cached, the queries stay the edit's own — a "
                "third less cache memory, and the same result when background_lock is 1 (its default). "
                "cached: queries cached too (the paper) — better background with background_lock < 1 or "
                "ComfyUI's KSampler.", options=BACKGROUND_QUERY, paper="cached", node="map")
    resolution: str = setting(
        "pixel", "pixel (ours): the initial latent and the Patch's latent locks follow the editable mask "
                 "per latent pixel (8 px) — only the masked content moves, no box of source background "
                 "travels with it. token (paper): whole 16 px tokens.",
        options=RESOLUTIONS, paper="token", node="map")
    mapping: str = setting(
        "backward", "backward (ours): each destination of a move/rotate/scale looks up its source, so "
                    "enlarged or rotated content has no holes. forward (paper): sources are pushed and "
                    "rounded.", options=MAPPINGS, paper="forward", node="map")
    rigid_tolerance: float = setting(
        0.2, "Several drags on one part of the mask that fit a rigid motion (residual ≤ this × drag "
             "length) become one rotation + move (ours). 0: never (paper: each drag bends its own cell).",
        min=0.0, max=1.0, step=0.05, paper=0.0, node="map")
    content_contrast: float = setting(
        0.5, "Only the painted pixels that stand out from what their surroundings continue into the "
              "mask (≥ this × the part's strongest contrast) move; the rest (a cast shadow, background "
              "painted with the object) is vacated and filled, not carried to the target (ours; 'pixel' "
              "maps, painted masks). 0: the whole painted region moves (the paper).",
        min=0.0, max=1.0, step=0.05, paper=0.0, node="map")
    content_piece: str = setting(
        "largest", "Of the painted pixels that stand out (content_contrast), which move: largest (ours): "
                   "the largest connected piece of each painted part and every piece a drag's handle lies on "
                   "— a dragged object is one piece; a "
                   "texture's cell or a shadow's edge standing out elsewhere in the paint is filled, not "
                   "carried; all: every one of them.", options=CONTENT_PIECES, paper="all", node="map")
    content_reference: str = setting(
        "texture", "What a painted pixel must stand out from to move (content_contrast): texture (ours): "
                   "both the membrane of its surroundings and the image's own continuation into the paint "
                   "(the best-matching offset copy), so a texture's cells under a painted shadow stay; "
                   "membrane: the membrane only.", options=CONTENT_REFERENCES, paper="membrane", node="map")
    swing: bool = setting(
        True, "A lone 'drag' drag on a part of a painted mask swings the part rigidly about its far end "
              "(the pivot on the handle→target bisector nearest to the part's point farthest from the "
              "handle): an articulated part bends about its joint (ours). Off: the drag bends its cell "
              "elastically (the paper).", paper=False, node="map")
    swing_pivot: str = setting(
        "shaft", "Where swing pivots, on the handle→target bisector: shaft (ours): where the axis of the part's "
                 "shaft (its points within 0.7 of the farthest distance from the handle) crosses it — a "
                 "limb's free segment points at its joint, while paint around the joint (a shadow over the "
                 "base) pulls the far end off it; far_end: nearest the centroid of the part's far end (its "
                 "points beyond 0.8 of that distance). The paper has no swing.",
        options=SWING_PIVOTS, paper=SILENT, node="map")
    swing_base: str = setting(
        "keep", "What swing does with the painted pixels beyond its pivot (on the far side of the line through "
                "the pivot across the pivot→handle direction): keep (ours): they stay where they are, with "
                "the background — paint over the start of the part that stays (a limb's base under its "
                "painted shadow) is not carried round the joint; swing: they swing with the part. The paper "
                "has no swing.", options=("keep", "swing"), paper=SILENT, node="map")
    occluder_contrast: float = setting(
        0.5, "Unpainted objects in front: unpainted regions enclosed by edges (neighbours differing by ≥ "
              "this × the dragged content's strongest contrast), off the image border, not joined to the "
              "paint and unlike the background's own regions. The vacated area is filled with the "
              "background continued behind them, not with their colour (ours; 'pixel' maps, painted "
              "masks). 0: none (the paper).",
        min=0.0, max=1.0, step=0.05, paper=0.0, node="map")
    depth: str = setting(
        "auto", "Where the moved content lands on an unpainted object in front (see occluder_contrast). "
                "auto (ours): it stays behind the objects it was behind at its source (they touch the "
                "paint) and covers the others; under (ours): it goes behind every one; over: it covers "
                "them (the paper). A drag's own \"depth\" in the instructions (behind = under, front = "
                "over) overrides this for what that drag moves.", options=DEPTHS, paper="over", node="map")
    cast_shadow: str = setting(
        "offset", "What becomes of the painted pixels that do not move (content_contrast's rest: a cast shadow): "
                  "offset (ours): carried with the object's motion as a darkening of the destination's own "
                  "ground, the motion conjugated by the shadow's offset from the object (read from the image: "
                  "the best fit of the object's silhouette, shifted, to the painted rest), so a rotation turns "
                  "the shadow about the pivot's own shadow; object (ours): the same with no offset (the shadow "
                  "turns about the object's pivot); off: vacated and filled only, no shadow at the target (the "
                  "paper has no shadow handling). Only for parts moved by 'move' drags (a move, a rotation, a "
                  "swing); acts through the Patch's latent locks.",
        options=CAST_SHADOWS, paper="off", node="map")
    gate_reference: int = setting(
        512, "The gate A = min(1, |p−s|⁻²) measures distance in units of min(H, W)/gate_reference tokens: "
             "one token at this image size, the same image fraction at any size (ours). 0: one token at "
             "any size (the paper read literally).", min=0, max=8192, paper=0, node="map")
    # LazyDrag Patch
    background: bool = setting(True, "Background preservation: replace background q,k,v with the "
                                     "inversion's at every step.", main=True, node="patch")
    identity: bool = setting(True, "Identity preservation: append cached source K/V re-encoded at the "
                                   "destination (until the activation step).", main=True, node="patch")
    refine: bool = setting(True, "Gated output merging y ← (1−γ)y + γȳ_M(x), γ = h_t·A(x).", main=True,
                           node="patch")
    mask_text: bool = setting(True, "Hide the appended identity tokens from text queries (our reading; "
                                    "the paper is silent).", main=True, node="patch", paper=SILENT)
    h_max: float = setting(0.8, "Peak output-merge strength h_t (CharaConsist's 0.8).", min=0.0, max=1.0,
                           step=0.05, main=True, node="patch")
    hold: float = setting(0.2, "Fraction of steps at h_max before the cosine decay.", min=0.0, max=1.0,
                          step=0.05, main=True, node="patch")
    end: float = setting(0.6, "Fraction of steps where h_t reaches 0.", min=0.0, max=1.0, step=0.05,
                         main=True, node="patch")
    background_lock: float = setting(
        1.0, "Fraction of sampling steps after which the background tokens' latent is reset to the "
             "inversion's at the same sigma (ours, not in the paper; needs FluxDrag Sample From "
             "Inversion). 1: the background ends exactly as the source; 0: attention control only, as in "
             "the paper.", min=0.0, max=1.0, step=0.05, paper=0.0, node="patch")
    # content lock: every step, like the background lock — the moved content follows its sources'
    # inversion path to the end, so it arrives as exact as the background stays (a free step
    # re-generates it: where the inversion is not exact the object drifts, issue 18's identity error).
    content_lock: float = setting(
        1.0, "Fraction of steps during which the moved pixels follow their sources' inversion path (ours; "
             "needs the map's resolution 'pixel'). 1: the object arrives exactly as it was, like the locked "
             "background; below 1 the model re-generates it in the last steps (blending, at the cost of "
             "identity drift). 0: as in the paper.", min=0.0, max=1.0, step=0.05, paper=0.0, node="patch")
    # hole lock: the first 80 % of the steps, the paper's activation fraction for its own identity
    # controls; the model alone shapes the vacated area's last 20 % (blending, detail).
    hole_lock: float = setting(
        0.8, "Fraction of steps during which the vacated pixels follow the fill of their surroundings "
             "(hole_fill), noised to the step's sigma (ours; 'pixel' maps): no fragments of the object "
             "stay behind. 0: the paper's free inpainting from noise.",
        min=0.0, max=1.0, step=0.05, paper=0.0, node="patch")
    hole_fill: str = setting(
        "texture", "What the vacated pixels follow under hole_lock: texture (ours): the image's own "
                   "continuation into the painted region (the mean of hole_copies copies of its surroundings "
                   "from the best-matching offsets, each joined to the ring by the membrane of its mismatch) "
                   "where it predicts the 2-pixel ring around the region, held out, better than the membrane "
                   "does; on a smooth ground the membrane. A textured ground continues with its own cells. "
                   "membrane: the smooth harmonic fill of the surroundings. The paper has no hole fill "
                   "(hole_lock 0).",
        options=HOLE_FILLS, paper="membrane", node="patch")
    hole_copies: int = setting(
        8, "hole_fill texture: how many of the best-matching offset copies are averaged (ours; 1: the best "
           "copy alone). A texture whose period is no whole number of pixels repeats only roughly at any "
           "one offset; the mean of several is its expected continuation.",
        min=1, max=64, node="patch", paper=SILENT)
    lock_margin: int = setting(0, "Latent pixels (8 px) around the moved content and its hole left free "
                                  "of the background lock, for blending ('pixel' maps).", min=0, max=16,
                               node="patch", paper=SILENT)
    hole_rim: int = setting(
        1, "hole_lock: the vacated pixels within this many latent pixels (8 px) of the moved content stay under "
           "the hole lock for as long as content_lock holds the content, not only for hole_lock's steps (ours). A "
           "free vacated pixel next to the locked outline is where the model extends the object it sees (a "
           "rotation in place leaves its hole all along the outline); the rest of the hole is still the model's "
           "for the last steps. Around a swing's part only with swing_rim. 0: every vacated pixel is released "
           "after hole_lock's steps.",
        min=0, max=16, node="patch", paper=0)
    reveal_release: int = setting(
        2, "An object dragged out from behind another (ours): the pixels of the objects in front that cover the "
           "painted content at its source, within this many latent pixels (8 px) of it, carried with the content, "
           "are left free of the background lock, so the model can draw the part that was hidden there (the "
           "lock would hold the old background). Raise it when a large part was hidden. Needs occluder_contrast "
           "> 0 and content_contrast > 0. 0: none, the hidden part stays background.",
        min=0, max=16, node="map", paper=0)
    stay_continued: bool = setting(
        True, "Painted pixels that nothing moves and that continue an unpainted object across no edge (a bent "
              "limb's base under the paint at its joint, another object the paint runs over) stay where they are "
              "(ours). Off: they are vacated, and the hole fill draws ground there, which split bent limbs at the "
              "joint. Needs occluder_contrast > 0 and content_contrast > 0.", node="map", paper=False)
    swing_rim: bool = setting(
        True, "hole_rim also around a swing's part (a limb bent about its joint, swing): the vacated pixels next to "
              "the bent part stay under the hole lock while content_lock holds it, where the model otherwise "
              "extends the part into the ground it left (ours; on 80 tuning bends the hole error 0.133 → 0.119). "
              "Off: no rim next to the bent part itself, whose vacated neighbours are the model's from hole_lock's "
              "end (pixels next to base pixels kept in place, stay_continued, are held either way).",
        node="patch", paper=False)
    content_growth: str = setting(
        "split", "How far the moving content (content_contrast) reaches: split (ours): grown, through side-by-side "
                 "painted pixels only, into those that score with the object rather than the ground (the two-group "
                 "split of the part's contrasts, at least 0.2 and at most 0.9 × content_contrast of its strongest; a part "
                 "whose split lies higher does not grow), so a lit object's "
                 "shaded side moves with it while a cast shadow stays. Needs a painted mask with some ground painted "
                 "around the object (a paint on the object alone has no second group) and content_contrast > 0. "
                 "none: content_contrast alone.",
        options=CONTENT_GROWTHS, node="map", paper="none")


#: LazyDrag as in the paper (every departure at the paper's value)
PAPER = paper_settings(LazyDragSettings)
MAP_FIELDS = tuple(s.name for s in node_fields(LazyDragSettings, "map"))
PATCH_FIELDS = tuple(s.name for s in node_fields(LazyDragSettings, "patch"))


def build_plan(drag_instructions, latent_samples: torch.Tensor, mask=None,
               settings: LazyDragSettings | None = None, **kw) -> LazyDragPlan:
    """The validated map record, pure and before any model call (``kw``: overrides of the map's
    settings fields)."""
    s = overrides(settings, LazyDragSettings, **kw)
    validate(s, NODE_MAP, MAP_FIELDS)
    check_latent(latent_samples, NODE_MAP)
    H, W = latent_samples.shape[-2] * 8, latent_samples.shape[-1] * 8
    try:
        ins = parse_instructions(drag_instructions)
        half = LATENT_PX / 2 if s.resolution == "pixel" else TOKEN_PX / 2
        ins = split_drags(ins, half, "LazyDrag", f"half a {'latent cell' if s.resolution == 'pixel' else 'token'}"
                          f" at resolution {s.resolution!r}", stacklevel=3).instructions
        td = to_token_space(ins, (H, W))
        region = pixel = None
        px = mask_at(mask, H, W) if mask is not None else ins.mask
        if mask is not None:
            region = pixel_mask_to_token_mask(px)
        if s.resolution == "pixel":
            if px is not None:
                pixel = latent_region(px, (H // 8, W // 8))
            else:   # the default discs on the token grid, at latent resolution
                pixel = default_editable_region(td, td.grid_hw).repeat_interleave(2, 0) \
                    .repeat_interleave(2, 1)
        content = front = objects = None
        if px is not None and pixel is not None and s.occluder_contrast > 0:   # found once, selected twice more below
            objects = FrontObjects(latent_samples[:1], pixel, s.occluder_contrast)
            front = objects.touching(pixel)
        if px is not None and s.content_contrast > 0:   # a painted mask, not the default discs
            content = content_pixels(latent_samples[:1], pixel, s.content_contrast, behind=front,
                                     one_piece=s.content_piece == "largest",
                                     texture=s.content_reference == "texture", anchors=token_to_latent(td.handles),
                                     grow=s.content_growth == "split", objects=objects)
        cmap = build_correspondence(td, td.grid_hw, region_mask=region, transition_width=s.transition_width,
                                    gate_reference=s.gate_reference, backward=s.mapping == "backward",
                                    rigid_tolerance=s.rigid_tolerance, pixel_mask=pixel,
                                    swing=s.swing, content_mask=content, swing_pivot=s.swing_pivot,
                                    swing_base=s.swing_base)
        stated = [i for i, d in enumerate(ins.drags) if d.depth != "auto"]
        if stated and (px is None or cmap.fine is None or s.occluder_contrast <= 0):
            warnings.warn(f"{NODE_MAP}: drag(s) {', '.join(map(str, stated))} state a depth, which needs a "
                          "painted mask, resolution 'pixel' and occluder_contrast > 0 (they find the objects "
                          "in front); it is ignored. Paint the mask and set them, or leave depth out",
                          stacklevel=2)
        if px is not None and cmap.fine is not None and s.occluder_contrast > 0:
            cmap.fine = behind_objects(latent_samples[:1], cmap.fine, s.occluder_contrast, s.depth, objects=objects,
                                       depths=cmap.drags.depths)
        if s.stay_continued and objects is not None and content is not None and cmap.fine is not None:
            cmap.fine = _stay_continued(cmap.fine, objects, content)
        if content is not None and cmap.fine is not None and s.cast_shadow != "off":
            cmap.fine = with_shadow(cmap, content, objects, offset=s.cast_shadow == "offset")
        if content is not None and cmap.fine is not None and front is not None and s.reveal_release > 0:
            fine = cmap.fine
            released = hidden_destination(fine, content, front, s.reveal_release,
                                          keep=objects.touching(fine.editable | fine.destination))
            fine.released = released if bool(released.any()) else None
    except ValueError as e:
        raise FluxDragInputError(f"{NODE_MAP}: {e}") from None
    return LazyDragPlan(cmap, activation=s.activation, seed=s.seed, background_query=s.background_query)


def _stay_continued(fine: FineMap, objects: FrontObjects, content: torch.Tensor) -> FineMap:
    """``stay_continued``: the vacated painted pixels that no destination reads and that continue an
    unpainted object (:meth:`FrontObjects.continued`) become their own sources. Without a swing they
    must be no ``content`` too (content a scale-down leaves unread moves: a ghost would stay); a
    swing's unread content by its pivot is the joint, which turns into itself, and may stay."""
    src = fine.source
    read = torch.zeros(src.numel(), dtype=torch.bool)
    read[src[src >= 0]] = True
    vacant = fine.vacated & ~read.reshape(fine.hw)
    if fine.joined is None:
        vacant &= ~content.to(torch.bool).cpu()
    stay = objects.continued(vacant)
    return fine.staying(stay) if bool(stay.any()) else fine


def behind_objects(latent: torch.Tensor, fine: FineMap, contrast: float, depth: str,
                   objects: FrontObjects | None = None, depths: list[str] | None = None) -> FineMap:
    """[ours] The pixel map with the unpainted objects in front (``unpainted_objects``) that touch
    the painted region or the destination: the hole fill continues the background behind them
    (``fill_region``). ``depth`` "under": the moved content is not written over any of them;
    "auto": not over those that already cover the painted object at its source (they touch the
    paint: it was behind them), written over the others as with "over". ``objects``: the
    :class:`FrontObjects` of ``latent`` painted by ``fine.editable`` when already found.

    ``depths``: the map's drags' stated depth intents (``TokenDrags.depths``: auto | front |
    behind, the instructions' per-drag ``depth``); each destination pixel follows the intent of
    the drag that moves it (``fine.drag``): behind = "under", front = "over", auto = ``depth``."""
    objects = objects or FrontObjects(latent, fine.editable, contrast)
    front = objects.touching(fine.editable | fine.destination)
    if not bool(front.any()):
        return fine

    def kept(rule: str) -> torch.Tensor | None:     # the objects the moved content stays behind
        return front if rule == "under" else objects.touching(fine.editable) if rule == "auto" else None

    rules = sorted({depth_rule(d, depth) for d in (depths or ["auto"])})
    source = fine.source
    if len(rules) == 1:                     # one rule for every drag
        keep = kept(rules[0])
        keep = None if keep is None else keep.reshape(-1)
    elif fine.drag is None:
        raise ValueError("per-drag depths need the map's drag of each destination pixel (FineMap.drag)")
    else:                                   # each pixel by its drag's rule
        rules = [depth_rule(d, depth) for d in depths]
        keep = torch.zeros_like(front.reshape(-1))
        for i, rule in enumerate(rules):
            k = kept(rule)
            if k is not None:
                keep |= k.reshape(-1) & (fine.drag == i)
    if keep is not None:
        source = torch.where(keep, -1, source)
    return FineMap(source, fine.editable, (source >= 0).reshape(fine.hw), fine.editable | front,
                   drag=None if fine.drag is None else torch.where(source >= 0, fine.drag, -1),
                   joined=None if fine.joined is None else fine.joined & (source >= 0).reshape(fine.hw))


def with_shadow(cmap, content: torch.Tensor, objects: FrontObjects | None, offset: bool = True) -> FineMap:
    """[ours] The map's pixel map with the painted shadow carried (``cast_shadow``:
    :func:`~..core.cast_shadow.carried_shadow` on the map's final drags, in latent-pixel
    coordinates), not onto an unpainted object (:class:`FrontObjects`) the carried shadow would
    fall on: the darkening is the ground's."""
    fine, td = cmap.fine, cmap.drags
    if fine.drag is None:
        return fine
    shadow = carried_shadow(fine.editable, content, source=fine.source, drag=fine.drag,
                            handles=token_to_latent(td.handles), targets=token_to_latent(td.targets),
                            modes=td.modes, scales=td.scales, angles=td.angles,
                            gate_unit=2.0 * cmap.gate_unit, offset=offset)
    if objects is not None and bool((shadow >= 0).any()):
        on = objects.touching((shadow >= 0).reshape(fine.hw)) & ~fine.editable
        shadow = torch.where(on.reshape(-1), -1, shadow)
    return FineMap(fine.source, fine.editable, fine.destination, fine.fill_region, drag=fine.drag,
                   shadow=shadow if bool((shadow >= 0).any()) else None, joined=fine.joined)


def inversion_trajectory(inversion) -> dict:
    """sigma_key → model-space latent of the inversion at that sigma (σ = 0: the source)."""
    from ..core.cache import sigma_key

    inv = inversion.sigmas.flip(0).tolist()
    out = {sigma_key(s): z for s, z in zip(inv[1:], inversion.trajectory)}
    if inversion.z_0 is not None:
        out[sigma_key(0.0)] = inversion.z_0.detach().cpu()
    return out



def apply_lazydrag(model, inversion, plan: LazyDragPlan, settings: LazyDragSettings | None = None,
                   **kw) -> tuple:
    """(patched MODEL, initial model-space latent, controller) for a LazyDrag edit (``kw``:
    overrides of the Patch's settings fields)."""
    s = overrides(settings, LazyDragSettings, **kw)
    validate(s, NODE_PATCH, PATCH_FIELDS)
    require_flux(model, NODE_PATCH)
    if not isinstance(plan, LazyDragPlan):
        raise FluxDragInputError(f"{NODE_PATCH}: input 'map' must come from {NODE_MAP}.")
    control = pick(s, PATCH_FIELDS)
    locked = max(s.background_lock, s.content_lock, s.hole_lock) > 0
    traj = inversion_trajectory(inversion) if locked else None
    if inversion.cache_policy == "paired":
        if tuple(inversion.z_T.shape[-2:]) != tuple(2 * g for g in plan.cmap.grid_hw):
            raise FluxDragInputError(f"{NODE_PATCH}: input 'map' was built for another image size "
                                     f"than the inversion's latent; rebuild it from that latent.")
        ctrl = LazyDragControl(plan, None, inversion.sigmas, paired_batch=int(inversion.z_T.shape[0]),
                               trajectory=traj, **control)
    else:
        cache = inversion.caches.get(CACHE_NAME)
        if cache is None or inversion.edit_map is not plan:
            raise FluxDragInputError(
                f"{NODE_PATCH}: the inversion holds no LazyDrag cache for this map. Connect the same "
                f"'map' output of {NODE_MAP} to FluxDrag Invert's 'edit_map' input.")
        if cache.freed:  # only a caller that freed the record itself gets here
            raise FluxDragInputError(
                f"{NODE_PATCH}: the inversion's cache was freed (free_caches); run FluxDrag Invert again.")
        ctrl = LazyDragControl(plan, cache, inversion.sigmas, trajectory=traj, **control)
    z0 = check_finite(compose_initial_latent(inversion.z_T, plan.cmap, plan.seed), NODE_PATCH,
                      "initial latent")
    return patch_model(model, ctrl), z0, ctrl


def inversion_settings(s: LazyDragSettings) -> InversionSettings:
    """The FluxDrag Invert settings of a LazyDrag run."""
    return InversionSettings(steps=s.steps, solver=s.solver, strength=s.strength, scheduler=s.scheduler,
                             guidance=s.inversion_guidance, cache_policy=s.cache_policy,
                             cache_budget_gb=s.cache_budget_gb)


def run_lazydrag(model, latent: dict, drag_instructions, positive, settings: LazyDragSettings | None = None,
                 mask=None) -> torch.Tensor:
    """One LazyDrag edit as the node chain runs it; returns the model-space edited latent. Plan
    (every check) first, then invert, patch and sample."""
    s = settings or LazyDragSettings()
    validate(s, "FluxDrag LazyDrag")
    plan = build_plan(drag_instructions, latent["samples"], mask, s)
    rec = run_inversion(model, latent, positive, inversion_settings(s), edit_map=plan)
    patched, z0, _ = apply_lazydrag(model, rec, plan, s)
    return run_sampling(patched, rec, positive, start=z0)
