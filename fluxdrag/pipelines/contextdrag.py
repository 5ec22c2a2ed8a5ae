"""ContextDrag on FLUX.1 Kontext (arXiv 2512.19604 §3.2–3.3): the reverse map (LRM) from the
drags on the reference latent's token grid, and the two MODEL patches (Context Token Injection,
Position-Consistent Attention; ``attention_patches/contextdrag.py``) on clones of the MODEL.
Sampling is ComfyUI's own (the Kontext graph with a ReferenceLatent)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ..attention_patches.contextdrag import (
    CTI_MODES,
    DEPTHS,
    HIDE_FROM,
    HOLE_FILLS,
    VISIBILITY,
    WARPS,
    ContextTokenInjection,
    PositionConsistentAttention,
    parse_block_list,
)
from ..attention_patches.router import patch_model
from ..core.correspondence_content import CONTENT_GROWTHS, CONTENT_PIECES, CONTENT_REFERENCES
from ..core.drag_sets import split_drags
from ..core.geometry import round_half_up
from ..core.instructions import TOKEN_PX, parse_instructions, pixel_mask_to_token_mask, to_token_space
from ..core.instructions import rescale as rescale_instructions
from ..core.reverse_mapping import ANCHORS, DRAG_GROUPS, HIDE_SETS, ReverseMap, build_reverse_map
from .common import FluxDragInputError, check_latent, mask_at, require_flux
from .settings import SILENT, node_fields, overrides, paper_settings, pick, setting, validate

NODE_MAP = "FluxDrag Reverse Mapping"
NODE_CTI = "FluxDrag Context Token Injection"
NODE_PCA = "FluxDrag Position-Consistent Attention"
HULLS = ("component", "all", "none")
COLLISIONS = ("mean", "first")


@dataclass
class ContextDragSettings:
    """Every ContextDrag input, the only place its defaults live: Reverse Mapping's (``node="map"``),
    Context Token Injection's (``"cti"``), Position-Consistent Attention's (``"pca"``) and the
    blocks/steps both patches act in (``"patch"``, on FluxDrag ContextDrag Options). The paper
    does not say which blocks, steps or reading it uses: those defaults are our guesses."""

    METHOD: ClassVar[str] = "ContextDrag"

    anchor: str = setting("target", "Reverse lookup: inverse-distance weights anchored on the targets (the "
                                    "paper's review reading) or an inversion of the forward field anchored "
                                    "on the handles [guess].", options=ANCHORS, main=True, node="map",
                          paper=SILENT)
    hull: str = setting("component", "Coarse target region: convex hull per connected region ('component' "
                                     "[guess]), one hull over everything ('all', the literal reading) or "
                                     "the displaced cells grown by one ('none').", options=HULLS, main=True,
                        node="map", paper="all")
    drag_groups: str = setting("component", "Which drags displace which part of the region [departure]: "
                                            "each connected part by its own drags ('component': those "
                                            "whose handle lies in it, else the nearest), or every token by "
                                            "the inverse-distance field of all drags ('all', the paper's "
                                            "formula). With several objects dragged apart, 'all' mixes their "
                                            "drags between them: a strip of tokens between two objects "
                                            "becomes destinations of edge tokens of one of them. On the "
                                            "Options node: the map node builds the grouped map, the patches "
                                            "rebuild it with one field for 'all'.",
                               options=DRAG_GROUPS, node="patch", paper="all")
    power: float = setting(2.0, "Inverse-distance weighting exponent (paper: 2).", min=0.0, max=8.0,
                           step=0.1, main=True, node="map")
    mode: str = setting("replace", "'replace': the image tokens' K/V at the destination become the reference "
                                   "tokens' [guess]; 'append': the reference K/V are added as extra keys "
                                   "(the other reading).", options=CTI_MODES, main=True, node="cti",
                        paper=SILENT)
    visible_to: str = setting("image", "Append mode only: which queries see the appended tokens — all image "
                                       "queries [guess], only the destination query, or all.",
                              options=VISIBILITY, main=True, node="cti", paper=SILENT)
    rewrite_ids: bool = setting(True, "Give each moved reference token the position ids of its destination "
                                      "(mean over several destinations).", main=True, node="pca")
    hide: str = setting("vacated", "Reference tokens hidden from image queries: the vacated area (default "
                                   "[guess]; with rewrite_ids and a rigid drag it is empty: no mask), the "
                                   "whole source region, the non-moved tokens under the destination that "
                                   "share position ids with the moved ones ('overlap'), vacated + overlap, "
                                   "or none. With rewrite_ids, tokens that are a source are never hidden. "
                                   "Measured on the toy Kontext (issue 28): hiding the overlap costs BG, "
                                   "IoU and hole error.",
                        options=HIDE_SETS, main=True, node="pca", paper=SILENT)
    hole_fill: str = setting("continued", "What fills the vacated area [ours; the paper leaves it to the "
                                          "model]. The reference tokens under the destination that are no "
                                          "source (their position now shows the moved token, composited on "
                                          "that background) move to the vacated tokens, re-embedded from the "
                                          "reference with the moved region filled from its surroundings: "
                                          "'continued' (LazyDrag's hole fill: a texture continued where the "
                                          "image's own offset copies predict the surroundings better than the "
                                          "membrane, the membrane on a smooth ground), 'harmonic' (membrane "
                                          "interpolation) or 'surroundings' (onion peeling), so the model keeps "
                                          "a background there instead of inventing one next to the pasted "
                                          "object. 'none': no reference "
                                          "token holds the vacated positions and the model fills them (the "
                                          "paper; better where the hole reveals something, e.g. an occluded "
                                          "object). On the Options node, read by Position-Consistent "
                                          "Attention.", options=HOLE_FILLS, node="patch", paper="none")
    background_lock: float = setting(1.0, "Background lock [ours; the paper relies on Kontext to keep the "
                                          "background]: in this fraction of the steps (from the first), "
                                          "outside the edited latent pixels (the region, where it lands, and "
                                          "lock_margin pixels around them) the model's velocity is the one "
                                          "that denoises to the reference, so the background is the "
                                          "reference's there. 0 = off (the paper).", min=0.0, max=1.0,
                                     step=0.05, node="patch", paper=0.0)
    lock_margin: int = setting(0, "Background lock: latent pixels around the edited ones (the region and "
                                  "where it lands, at latent-pixel level with a drawn mask, else their "
                                  "tokens) left free for the model to blend the edit in [ours].", min=0, max=16,
                               node="patch", paper=SILENT)
    hide_from: str = setting("image", "Queries the hidden tokens are hidden from [guess: image].",
                             options=HIDE_FROM, main=True, node="pca", paper=SILENT)
    collision: str = setting("mean", "Position of a reference token that is the source of several "
                                     "destinations: their mean [guess] or the first.", options=COLLISIONS,
                             main=True, node="pca", paper=SILENT)
    double_blocks: str = setting("all", "Double-stream blocks to act in: 'all', 'none' or indices/ranges like "
                                        "'0-9, 15' (FLUX.1 has 19). The paper does not say which [guess: all].",
                                 node="patch", paper=SILENT)
    single_blocks: str = setting("all", "Single-stream blocks to act in: 'all', 'none' or e.g. '0-37' (FLUX.1 "
                                        "has 38) [guess: all].", node="patch", paper=SILENT)
    start: float = setting(0.0, "First sampling step where the patch acts, as a fraction of the steps.",
                           min=0.0, max=1.0, step=0.01, node="patch", paper=SILENT)
    end: float = setting(1.0, "Fraction of the steps where the patch stops acting (1 = to the end) "
                              "[guess: all steps].", min=0.0, max=1.0, step=0.01, node="patch", paper=SILENT)
    reference_index: int = setting(0, "Which ReferenceLatent (in chaining order) is the drag source; 0 = the "
                                      "first.", min=0, max=15, node="patch", paper=SILENT)
    subtoken: bool = setting(True, "Sub-token precision [departure: the paper moves whole tokens]. The map's "
                                   "coarse region also holds the cells the displaced tokens round to and its "
                                   "reverse lookup rounds half down (the mirror of the forward half-up), so a "
                                   "half-token drag moves the whole region instead of losing a row; and "
                                   "Position-Consistent Attention shifts each moved reference token's content by "
                                   "the rest of the drag below the token grid (whole latent pixels, re-embedded "
                                   "with the model's own input layer), so the object lands where the drag ends. "
                                   "Off = the paper's reading (cells inside the hull, half-up rounding, whole "
                                   "tokens).", node="patch", paper=False)
    composite: bool = setting(True, "Moved tokens carry the region's pixels only [departure: the paper moves "
                                    "whole tokens]. A token on the region's edge is part object, part the "
                                    "background it was cut with; each moved reference token is re-embedded "
                                    "(the model's own input layer) with its latent pixels outside the drawn "
                                    "region taken from the reference at its destination, so the object lands "
                                    "on the destination's own background. Needs the region at pixel level "
                                    "(the instructions' mask or the mask input; the default discs are whole "
                                    "tokens); with subtoken on, region pixels a fractional drag leaves "
                                    "between destinations are pasted onto the reference tokens there. "
                                    "Off = whole "
                                    "tokens. On the Options node; CTI injects what PCA re-embeds.", node="patch",
                          paper=False)

    warp: str = setting("motion", "How the moved content follows the drag below the token grid (with subtoken) "
                                  "[ours; the paper moves whole tokens]: 'motion' (as 'pixel', and a part "
                                  "moved by a rotating or scaled move drag, or swung, is rebuilt from that "
                                  "exact motion: each of its destination latent pixels shows the reference "
                                  "pixel at the motion's inverse, and every destination token gets its own "
                                  "reference token); 'pixel' looks each latent pixel of a destination token "
                                  "up through the reverse field; 'token' shifts each source token's content "
                                  "as a whole by the rest of the drag (a field of token translations: a "
                                  "rotated object comes out jagged). All the same for a translation. On the "
                                  "Options node, read by both patches.", options=WARPS, node="patch",
                        paper="token")

    move_affine: str = setting("points", "A 'move' drag with a scale or an angle [ours; the paper's drags are "
                                         "point pairs]: 'points' adds one point drag per region token of "
                                         "its part, p -> target + scale * R(angle) (p - handle), so the reverse "
                                         "field scales / rotates the region as the drag asks; 'translate' reads "
                                         "it as its handle -> target only (the region moves unscaled). On the "
                                         "Options node: the map node builds the 'points' map, the patches drop "
                                         "its added drags for 'translate'.",
                               options=("points", "translate"), node="patch", paper="translate")
    content_contrast: float = setting(
        0.5, "Only the painted pixels that stand out from the region's harmonic fill (>= this x the "
             "part's strongest contrast) move; the rest of the painted region (a cast shadow, background "
             "painted with the object) is vacated and filled, not carried to the target [ours, as "
             "LazyDrag's content_contrast]. Needs a painted mask (instructions' mask or the mask input). "
             "0: the whole painted region moves (the paper). On the Options node.",
        min=0.0, max=1.0, step=0.05, node="patch", paper=0.0)
    rigid_tolerance: float = setting(
        0.2, "Several drags on one part of the mask that fit a rigid motion (residual <= this x drag "
             "length) become one rotating move drag, followed by point drags (move_affine) [ours, as "
             "LazyDrag's rigid_tolerance]: the reverse field then rotates the part instead of blending "
             "its drags' translations. 0: never (the paper's field of point drags). On the Options "
             "node: the map node builds with the default, the patches rebuild for another value.",
        min=0.0, max=1.0, step=0.05, node="patch", paper=0.0)
    occluder_contrast: float = setting(
        0.5, "The hole fill continues the background behind the unpainted objects that touch the painted "
             "region (regions enclosed by edges of >= this x the painted content's strongest contrast, off "
             "the border, not joined to the paint) instead of spreading their colour into the vacated "
             "area [ours, as LazyDrag's occluder_contrast]; they stay as they are. 0: the fill reads every "
             "pixel around the region. On the Options node, read by Position-Consistent Attention.",
        min=0.0, max=1.0, step=0.05, node="patch", paper=0.0)
    depth: str = setting(
        "auto", "Where the moved content lands on an unpainted object in front (see occluder_contrast) [ours, "
                "as LazyDrag's depth]: auto: it stays behind the objects it was behind at its source (they "
                "touch the paint) and covers the others; under: it goes behind every one; over: it covers "
                "them (the paper pastes the moved tokens). A drag's own \"depth\" in the instructions "
                "(behind = under, front = over) overrides it for its part. On the Options node, read by "
                "Position-Consistent Attention.", options=DEPTHS, node="patch", paper="over")
    swing: bool = setting(
        True, "A lone 'drag' drag on a part of a painted mask swings the part rigidly about its far end "
              "(the pivot on the handle -> target bisector nearest to the part's point farthest from the "
              "handle) [ours, as LazyDrag's swing]: an articulated part bends about its joint, as a "
              "rotating move drag (with move_affine 'points'; warp). Off: the drag moves the part by its reverse field "
              "(the paper). On the Options node: the map node builds with the default, the patches "
              "rebuild for the other value.", node="patch", paper=False)
    stay_continued: bool = setting(
        True, "Painted pixels that do not move and continue an unpainted object across no edge (a bent limb's "
              "base under the paint at its joint) leave the painted region: they are not filled with ground and "
              "stay as they are [ours, as LazyDrag's stay_continued; found by the map node at the default "
              "content_contrast and occluder_contrast]. Needs content_contrast > 0 and occluder_contrast > 0. "
              "Off: they are filled, which split bent limbs at the joint. On the Options node.",
        node="patch", paper=False)
    content_piece: str = setting(
        "largest", "Of the painted pixels that stand out (content_contrast), which move: largest (ours, as "
                   "LazyDrag's): the largest connected piece of each painted part and every piece a drag's "
                   "handle lies on, and no faint part apart from every handle (a shadow painted apart) — a "
                   "dragged object is one piece; a texture's "
                   "cell or a shadow's edge standing out elsewhere in the paint is filled, not carried; all: "
                   "every one of them. The map node picks the pieces at the default content_contrast: with a lower "
                   "one on the Options node, faint pixels of the smaller pieces may move too.",
        options=CONTENT_PIECES, main=True, node="map", paper="all")
    content_reference: str = setting(
        "texture", "What a painted pixel must stand out from to move (content_contrast): texture (ours, as "
                   "LazyDrag's): both the membrane of its surroundings and the image's own continuation into "
                   "the paint (the best-matching offset copy), so a texture's cells under a painted shadow "
                   "stay; membrane: the membrane only.",
        options=CONTENT_REFERENCES, main=True, node="map", paper="membrane")
    hole_rim: int = setting(
        1, "The vacated pixels within this many latent pixels (8 px) of the moved content are held to the hole "
           "fill by the background lock, in its steps [ours, as LazyDrag's hole_rim]: a free vacated pixel next "
           "to the moved outline is where the model extends the object it sees (a rotation in place, a bent "
           "limb). Where an object in front at the source may reveal the content's hidden part (see "
           "occluder_contrast), or a content pixel the map carries nowhere may show, the rim is left free. "
           "Needs the region at pixel level (a painted mask: the instructions' or the mask input), hole_fill "
           "other than 'none' and background_lock > 0. "
           "0: the model draws the whole hole. On the Options node, read by Position-Consistent Attention.",
        min=0, max=16, node="patch", paper=0)
    fill_in_place: bool = setting(
        True, "The tokens of the region that are vacated and no source (a painted shadow, paint nothing moves "
              "from) show the hole fill in place, visible to the image queries [ours]: re-embedded from the "
              "reference with the painted region filled (hole_fill), as the hole slots are. Off: they show the old "
              "content, hidden from the image queries with hide vacated (the default) or source, and the model "
              "draws them with no reference there. Needs hole_fill other than 'none' and rewrite_ids. On the "
              "Options node, read by Position-Consistent Attention.", node="patch", paper=False)
    content_growth: str = setting(
        "split", "How far the moving content reaches [ours, as LazyDrag's content_growth]: split: grown, through "
                 "side-by-side painted pixels only, into those that score with the object rather than the ground "
                 "(the two-group split of the part's contrasts, from 0.2 up to 0.9 x content_contrast of its strongest), "
                 "so a lit object's shaded side moves with it while a cast shadow stays (paint some ground around "
                 "it); none: content_contrast alone. The map node grows at the default content_contrast: the grown "
                 "pixels score it, and move only at an Options content_contrast at or below it.",
        options=CONTENT_GROWTHS, main=True, node="map", paper="none")

PAPER = paper_settings(ContextDragSettings)
MAP_FIELDS = tuple(s.name for s in node_fields(ContextDragSettings, "map"))
CTI_FIELDS = tuple(s.name for s in node_fields(ContextDragSettings, "cti"))
PCA_FIELDS = tuple(s.name for s in node_fields(ContextDragSettings, "pca"))
PATCH_FIELDS = tuple(s.name for s in node_fields(ContextDragSettings, "patch"))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def require_kontext_flux(model, node: str, input_name: str = "model"):
    """The FLUX.1 diffusion module of ``model`` (Kontext [dev] loads as plain FLUX.1), or a
    clear error for other families and for FLUX.2 / Fill / Canny / Depth variants."""
    dm = require_flux(model, node, input_name)
    uc = dict(getattr(getattr(model.model, "model_config", None), "unet_config", {}) or {})
    kind = uc.get("image_model", "flux")
    c_in, c_out = uc.get("in_channels", 16), uc.get("out_channels", 16)
    if kind != "flux" or int(getattr(dm, "patch_size", 2)) != 2 or c_in != c_out:
        what = (f"a {kind} model" if kind != "flux"
                else f"a FLUX.1 variant with {c_in} input channels (Fill/Canny/Depth)")
        raise FluxDragInputError(
            f"{node}: input '{input_name}' is {what}, but ContextDrag needs FLUX.1 Kontext [dev] "
            f"(flux1-kontext-dev.safetensors with UNETLoader; fp8/GGUF fine) sampled with a "
            f"ReferenceLatent. Connect a Kontext model.")
    return dm


def _require_map(rmap, node: str) -> ReverseMap:
    if not isinstance(rmap, ReverseMap):
        raise FluxDragInputError(f"{node}: input 'map' must come from {NODE_MAP} "
                                 f"(got {type(rmap).__name__}).")
    return rmap


def _blocks(dm, double_blocks: str, single_blocks: str, node: str) -> dict:
    try:
        return {
            "double_blocks": parse_block_list(double_blocks, len(dm.double_blocks), "double_blocks"),
            "single_blocks": parse_block_list(single_blocks, len(dm.single_blocks), "single_blocks"),
        }
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input {e}") from None


def _window(start: float, end: float, node: str) -> dict:
    if not 0.0 <= start <= end <= 1.0:
        raise FluxDragInputError(f"{node}: inputs 'start' ({start}) and 'end' ({end}) must satisfy "
                                 f"0 <= start <= end <= 1 (fractions of the sampling steps).")
    return {"start": float(start), "end": float(end)}


def build_map(drag_instructions, latent_samples: torch.Tensor, mask=None,
              settings: ContextDragSettings | None = None, **kw) -> ReverseMap:
    """LRM on the token grid of ``latent_samples`` (the reference latent); ``kw``: overrides of the
    map's settings fields."""
    st = overrides(settings, ContextDragSettings, **kw)
    validate(st, NODE_MAP, MAP_FIELDS)
    anchor, hull, power = st.anchor, st.hull, st.power
    check_latent(latent_samples, NODE_MAP)
    if latent_samples.shape[0] > 1:
        warnings.warn(f"input 'latent' has a batch of {latent_samples.shape[0]}: ContextDrag edits with "
                      f"one map, and Kontext's sampler makes as many images as its own empty latent "
                      f"holds (usually 1) — the other references are not edited one by one; queue "
                      f"each image separately", stacklevel=2)
    H, W = latent_samples.shape[-2] * 8, latent_samples.shape[-1] * 8
    try:
        ins = split_drags(parse_instructions(drag_instructions), TOKEN_PX / 2, "ContextDrag",
                          "half a token", stacklevel=3).instructions
        td = to_token_space(ins, (H, W))  # an anchor is a point mapped to itself
        region = td.mask
        if mask is not None:
            region = pixel_mask_to_token_mask(mask_at(mask, H, W))
        if region is not None and not region.any():
            raise ValueError("the editable mask is empty; draw the region to move or leave it out")
        pixels = mask_at(mask, H, W) if mask is not None else None
        if pixels is None and ins.mask is not None:
            pixels = (ins.mask if tuple(ins.image_size) == (W, H) else rescale_instructions(ins, (W, H)).mask)
        fine = None if pixels is None else latent_pixel_mask(pixels)
        score = continued = objects = None
        dflt = ContextDragSettings()
        if fine is not None and fine.shape == tuple(latent_samples.shape[-2:]):
            if dflt.occluder_contrast > 0:
                from ..core.correspondence import FrontObjects

                objects = FrontObjects(latent_samples[:1], fine, dflt.occluder_contrast)
            score = _content_score(latent_samples[:1], fine, st, td.handles, objects)
        if score is not None and objects is not None and dflt.content_contrast > 0:
            continued = objects.continued(fine & ~_content(fine, score, dflt.content_contrast))
        # the map node always builds with the defaults of rigid_tolerance / move_affine / swing
        # (Options fields); the patches rebuild from the drags kept in params when they differ (map_for)
        moving = _content(fine, score, dflt.content_contrast)
        handles, targets, motions = map_drags(td, region, dflt.rigid_tolerance, dflt.move_affine, swing=dflt.swing,
                                              pixels=moving)
        rmap = build_reverse_map(handles, targets, region, td.grid_hw, power=power, anchor=anchor,
                                 hull=hull != "none", hull_groups="all" if hull == "all" else "component",
                                 snap=True, drag_groups="component", pixel_region=fine)
    except ValueError as e:
        raise FluxDragInputError(f"{NODE_MAP}: {e}") from None
    drags = {k: v for k, v in td.to_dict().items() if k != "mask"}
    return replace(rmap, fine_mask=fine, paint_mask=fine, content_score=score, continued=continued,
                   params={**rmap.params, "drags": drags, "rigid_tolerance": dflt.rigid_tolerance,
                           "move_affine": dflt.move_affine, "swing": dflt.swing, "motions": motions})


def _content_score(latent: torch.Tensor, fine: torch.Tensor, st: ContextDragSettings,
                   handles: torch.Tensor, objects=None) -> torch.Tensor:
    """The painted pixels' content score (``core.correspondence_content.moving_score``, with
    ``content_reference``, ``content_piece`` and ``content_growth``): a pixel moves where it reaches
    ``st.content_contrast``. ``objects`` (the map node's, at the default occluder_contrast), as LazyDrag's
    content: the fill runs behind those touching the paint, so an object in front's edge in the paint is no
    content (52 `occlusion` tuning maps: 277 -> 14 carried pixels off the object); the growth never enters their rest."""
    from ..core import correspondence  # noqa: F401  (imports correspondence_latent in its order)
    from ..core.correspondence import token_to_latent
    from ..core.correspondence_content import moving_score

    return moving_score(latent, fine, st.content_contrast, texture=st.content_reference == "texture",
                        one_piece=st.content_piece == "largest", grow=st.content_growth == "split",
                        anchors=token_to_latent(handles), objects=objects,
                        behind=None if objects is None else objects.touching(fine))


def _content(paint: torch.Tensor | None, score: torch.Tensor | None, contrast: float) -> torch.Tensor | None:
    """The painted latent pixels that move at ``content_contrast`` (see :func:`map_for`), or None."""
    if paint is None or score is None or contrast <= 0:
        return paint
    return paint & (score >= contrast)


def map_drags(td, region: torch.Tensor | None, rigid_tolerance: float, move_affine: str, *, swing: bool,
              pixels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """(handles, targets, motions) the reverse map is built from: ``td``'s drags, those of one part
    that fit a rigid motion fused into one rotating move drag (``rigid_tolerance``,
    :func:`~fluxdrag.core.correspondence_fields.fuse_rigid_drags`), then each scaled / rotated
    move drag followed by point drags (``move_affine="points"``, :func:`affine_point_drags`);
    ``motions``: those drags' exact motions (:func:`affine_motions`, read by ``warp="motion"``),
    empty with ``move_affine="translate"``. ``swing``: a lone ``drag`` drag on a part becomes a
    rotation about the part's far end first
    (:func:`~fluxdrag.core.correspondence_fields.swing_lone_drags`, with ``pixels``, the moving
    content at latent pixels, when known), with ``move_affine="points"`` only (its move drag, from
    the pivot to itself, is no translation to read). A swung drag's part is the one its own handle
    lies on, not the one nearest its pivot (whose own drag, pivot -> pivot, is left out where the
    pivot lies off the region: a held destination outside M_SRC). Without a region (the default discs) the drags as
    given."""
    if region is None:
        return td.handles, td.targets, []
    from ..core.correspondence_fields import fuse_rigid_drags, swing_lone_drags

    if rigid_tolerance > 0:
        px = None if pixels is None else pixels.to(torch.bool).cpu()
        td = fuse_rigid_drags(td, region, rigid_tolerance, pixel_region=px)   # [ours] parts apart at pixels
    if move_affine != "points":
        return td.handles, td.targets, []
    at = td.handles                                  # where each drag's part is (a swing moves its handle)
    if swing:
        td = swing_lone_drags(td, region, pixels)
    handles, targets = affine_point_drags(td, region, at=at)
    # a swing's own drag (pivot -> pivot) is a fixed point the reverse map holds as a destination of
    # itself: off the region that is a source outside M_SRC; its part's point drags carry the motion
    off = torch.zeros(handles.shape[0], dtype=torch.bool)
    for i, (x, y) in enumerate(round_half_up(td.handles).long().tolist()):
        inside = 0 <= y < region.shape[0] and 0 <= x < region.shape[1]
        off[i] = not torch.equal(at[i], td.handles[i]) and inside and not bool(region[y, x])
    return handles[~off], targets[~off], affine_motions(td, at=at)


def affine_motions(td, at: torch.Tensor | None = None) -> list[dict]:
    """The ``move`` drags of ``td`` with a scale or an angle, as JSON motions ``{"handle",
    "target", "scale", "angle"}`` (token units, degrees; ``core.reverse_tokens.motion_parts``),
    with ``"at"``, the point whose part the drag moves, where ``at`` gives one off its handle."""
    angles = td.angles if td.angles is not None else torch.zeros(len(td.modes), dtype=torch.float64)
    out = []
    for i, mode in enumerate(td.modes):
        scale, angle = [float(v) for v in td.scales[i]], float(angles[i])
        if mode == "move" and (scale != [1.0, 1.0] or angle % 360 != 0):
            out.append({"handle": [float(v) for v in td.handles[i]], "target": [float(v) for v in td.targets[i]],
                        "scale": scale, "angle": angle})
            if at is not None and not torch.equal(at[i].to(torch.float64), td.handles[i].to(torch.float64)):
                out[-1]["at"] = [float(v) for v in at[i]]
    return out


def affine_point_drags(td, region: torch.Tensor, at: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(handles, targets) (n, 2) token (x, y): ``td``'s drags, each ``move`` drag with a scale or
    an angle followed by one point drag per region token of its connected part (the part its
    handle lies in, else the nearest; ``at`` (n, 2): the points to find the parts by instead, a
    swung drag's own handle), p → target + r·R(angle)·(p − handle), the instruction's
    own motion [ours]. The reverse field interpolates its drags exactly at their targets, so with
    these drags it inverts the scaling / rotation over the region instead of translating it by
    handle → target (the paper's field of point drags reads a move drag as its two points)."""
    from ..core.correspondence_fields import move_displacement
    from ..core.reverse_tokens import parts_of_motions

    new_h, new_t = [td.handles.to(torch.float64)], [td.targets.to(torch.float64)]
    for part, m in parts_of_motions(region, affine_motions(td, at)):
        pts = torch.nonzero(part).flip(1).to(torch.float64)
        new_h.append(pts)
        new_t.append(pts + move_displacement(pts, m["handle"], m["target"], m["scale"], m["angle"]))
    return torch.cat(new_h), torch.cat(new_t)


def latent_pixel_mask(pixels: torch.Tensor, px: int = 8) -> torch.Tensor:
    """A bool (H, W) image mask on the latent-pixel grid (H/px, W/px): a latent pixel is in when
    any of its image pixels is (edge pixels move with the region)."""
    H, W = pixels.shape
    return pixels.bool().reshape(H // px, px, W // px, px).any(3).any(1)


def map_for(rmap: ReverseMap, subtoken: bool, *, drag_groups: str, move_affine: str,
            content_contrast: float, rigid_tolerance: float, warp: str, swing: bool,
            stay_continued: bool = False) -> ReverseMap:
    """(Values from :class:`ContextDragSettings`, where their defaults live.)
    :func:`_map_for`, then the moving content: with ``content_contrast`` > 0 and a map that
    knows its pixels' contrast (:attr:`ReverseMap.content_score`, from the map node), only the
    painted pixels at or above it move (:attr:`ReverseMap.fine_mask`); the whole painted region
    (:attr:`ReverseMap.paint_mask`) is still vacated, filled and left free of the lock. With
    ``warp="motion"`` (and ``subtoken``), each exactly moved part's destinations and sources are
    rebuilt from its motion (:func:`~fluxdrag.core.reverse_tokens.motion_map`). ``stay_continued``
    [ours]: the painted pixels that continue an unpainted object (:attr:`ReverseMap.continued`, from
    the map node) and do not move leave the painted region: they are not filled, and the lock
    holds them (a bent limb's base under the paint at its joint)."""
    paint = rmap.painted
    out = _map_for(rmap, subtoken, drag_groups, move_affine, rigid_tolerance, swing=swing,
                   content=_content(paint, rmap.content_score, content_contrast))
    if paint is not None and rmap.content_score is not None:
        fine = _content(paint, rmap.content_score, content_contrast)
        if out.fine_mask is None or not torch.equal(fine, out.fine_mask) or out.paint_mask is None:
            out = replace(out, fine_mask=fine, paint_mask=paint, content_score=rmap.content_score)
    if warp == "motion" and subtoken:
        from ..core.reverse_tokens import motion_map

        out = motion_map(out)
    if stay_continued and rmap.continued is not None and out.paint_mask is not None and content_contrast > 0 \
            and tuple(rmap.continued.shape) == tuple(out.paint_mask.shape):
        stay = rmap.continued & ~(out.fine_mask if out.fine_mask is not None else torch.zeros_like(rmap.continued))
        if bool(stay.any()):
            out = replace(out, paint_mask=out.paint_mask & ~stay)
    return out


def patched_map(rmap: ReverseMap, st: ContextDragSettings) -> ReverseMap:
    """The map as the patches read it with the settings ``st`` (:func:`map_for` with their values)."""
    return map_for(rmap, st.subtoken, drag_groups=st.drag_groups, move_affine=st.move_affine,
                   content_contrast=st.content_contrast, rigid_tolerance=st.rigid_tolerance, warp=st.warp,
                   swing=st.swing, stay_continued=st.stay_continued and st.occluder_contrast > 0)


def _map_for(rmap: ReverseMap, subtoken: bool, drag_groups: str, move_affine: str, rigid_tolerance: float, *,
             swing: bool, content: torch.Tensor | None = None) -> ReverseMap:
    """``rmap`` with the rounding ``subtoken``, the ``drag_groups``, ``move_affine`` and
    ``rigid_tolerance`` asked for: the map node always builds the sub-token map (``snap``, see
    ``ContextDragSettings.subtoken``) with its drags grouped by component and prepared with the
    defaults (:func:`map_drags`); otherwise it is rebuilt from the same region and parameters and
    the instructions' drags kept in its params (literal rounding: cells inside the hull, half-up;
    ``"all"``: one field of every drag). A map without its drags (from JSON of an older version)
    keeps its drags. ``swing`` (a map without the key was built without it) swings lone drags
    about the far end of ``content``, the moving latent pixels (:func:`map_drags`)."""
    p = rmap.params
    redrag = "drags" in p and (p.get("move_affine") != move_affine
                               or float(p.get("rigid_tolerance", -1)) != float(rigid_tolerance)
                               or bool(p.get("swing", False)) != bool(swing))
    if bool(p.get("snap", False)) == bool(subtoken) and p.get("drag_groups", "all") == drag_groups and not redrag:
        return rmap
    handles, targets = rmap.handles, rmap.targets
    if redrag:
        from ..core.instruction_tokens import TokenDrags

        td = TokenDrags.from_dict({**p["drags"], "mask": None})
        handles, targets, motions = map_drags(td, rmap.src_mask, rigid_tolerance, move_affine, swing=swing,
                                              pixels=content)
    new = build_reverse_map(handles, targets, rmap.src_mask, rmap.grid_hw, power=p["power"],
                            eps=p["eps"], hull=p["hull"], hull_groups=p["hull_groups"], hull_tol=p["hull_tol"],
                            dilate=p["dilate"], anchor=p["anchor"], fixed_point_iters=p["fixed_point_iters"],
                            snap=bool(subtoken), drag_groups=drag_groups, pixel_region=rmap.painted)
    keep = {k: p[k] for k in ("drags", "rigid_tolerance", "move_affine", "swing", "motions") if k in p}
    if redrag:
        keep.update(rigid_tolerance=float(rigid_tolerance), move_affine=move_affine, swing=bool(swing),
                    motions=motions)
    return replace(new, fine_mask=rmap.fine_mask, paint_mask=rmap.paint_mask, content_score=rmap.content_score,
                   params={**new.params, **keep})


def apply_cti(model, rmap, settings: ContextDragSettings | None = None, **kw) -> tuple:
    """(patched MODEL clone, controller); ``kw``: overrides of the settings fields."""
    return _apply(model, rmap, overrides(settings, ContextDragSettings, **kw), ContextTokenInjection,
                  node=NODE_CTI, fields=CTI_FIELDS)


def apply_pca(model, rmap, settings: ContextDragSettings | None = None, **kw) -> tuple:
    """(patched MODEL clone, controller); ``kw``: overrides of the settings fields."""
    st = overrides(settings, ContextDragSettings, **kw)
    validate(st, NODE_PCA, PCA_FIELDS + PATCH_FIELDS)
    check_hole_fill(st)
    warn_unused_depth(rmap, st)
    return _apply(model, rmap, st, PositionConsistentAttention, node=NODE_PCA, fields=PCA_FIELDS,
                  subtoken=st.subtoken, composite=st.composite, hole_fill=st.hole_fill,
                  background_lock=st.background_lock, lock_margin=st.lock_margin, warp=st.warp,
                  occluder_contrast=st.occluder_contrast, depth=st.depth, hole_rim=st.hole_rim,
                  fill_in_place=st.fill_in_place)


def warn_unused_depth(rmap, st: ContextDragSettings) -> None:
    """Warn that the drags' stated depths are ignored when the objects in front cannot be found
    (no painted mask, or ``occluder_contrast`` 0)."""
    stated = [i for i, d in enumerate(((getattr(rmap, "params", None) or {}).get("drags") or {}).get("depths") or [])
              if d != "auto"]
    if stated and (st.occluder_contrast <= 0 or getattr(rmap, "painted", None) is None):
        warnings.warn(f"{NODE_PCA}: drag(s) {', '.join(map(str, stated))} state a depth, which needs a painted "
                      "mask and occluder_contrast > 0 (they find the objects in front); it is ignored. Paint "
                      "the mask and set occluder_contrast, or leave depth out", stacklevel=3)


#: ``hide`` sets that hold the hole fill's slots (the non-source reference tokens under M_DST)
HIDES_SLOTS = ("overlap", "vacated_overlap")


def check_hole_fill(st: ContextDragSettings) -> None:
    """Refuse ``hole_fill`` with a ``hide`` set that hides its slots (before any model work).

    The hole fill moves the non-source reference tokens under the destination onto the vacated
    tokens; ``hide="overlap"`` / ``"vacated_overlap"`` hide exactly those tokens from the image
    queries, so the fill would be computed, hidden and do nothing. The two readings exclude each
    other (the overlap hidden: the model fills the hole; the hole fill: those tokens show a
    background there), so the combination is an error naming both settings and the fix rather
    than a silent precedence rule."""
    if st.rewrite_ids and st.hole_fill != "none" and st.hide in HIDES_SLOTS:
        raise FluxDragInputError(
            f"{NODE_PCA}: input 'hide' is {st.hide!r}, which hides the reference tokens under the "
            f"destination, and 'hole_fill' (FluxDrag ContextDrag Options) is {st.hole_fill!r}, which "
            f"moves exactly those tokens onto the vacated area: the fill would be hidden and do nothing. "
            f"Set hide to 'vacated' (the default) to keep the hole fill, or set hole_fill to 'none' on "
            f"the Options node to let the model fill the hole under that mask.")


def _apply(model, rmap, st: ContextDragSettings, controller: type, *, node: str, fields: tuple,
           **extra) -> tuple:
    """Validate ``fields`` (+ the shared patch fields), check the model and the map (with the
    rounding ``st.subtoken`` asks for), then put one ``controller`` on a clone of ``model``."""
    validate(st, node, fields + PATCH_FIELDS)
    dm = require_kontext_flux(model, node)
    rmap = patched_map(_require_map(rmap, node), st)
    ctrl = controller(rmap, **pick(st, fields), **extra, **_patch_args(dm, st, node))
    return patch_model(model, ctrl), ctrl


def _patch_args(dm, st: ContextDragSettings, node: str) -> dict:
    return {**_blocks(dm, st.double_blocks, st.single_blocks, node), **_window(st.start, st.end, node),
            "reference_index": st.reference_index}
